#!/bin/sh
# doc/plume.1 documents every option that `plume --help` lists, renders without groff warnings, and is
# installed by `make install` into share/man/man1.
page=doc/plume.1
if command -v man >/dev/null 2>&1; then
    text=$(MANWIDTH=100 man -l "$page" 2>/dev/null)
else
    text=$(sed 's/\\-/-/g' "$page")
fi
missing=""
for opt in $("$PLUME" --help | sed -n 's/^  \(-[-a-z]*\).*/\1/p'); do
    printf '%s\n' "$text" | grep -q -- "$opt" || missing="$missing $opt"
done
[ -n "$("$PLUME" --help | sed -n 's/^  \(-[-a-z]*\).*/\1/p')" ] && [ -z "$missing" ] &&
    echo "PASS manpage_documents_every_help_option" || echo "FAIL manpage_documents_every_help_option: missing$missing"
if command -v groff >/dev/null 2>&1; then
    warn=$(groff -man -ww -z "$page" 2>&1)
    [ -z "$warn" ] && echo "PASS manpage_renders_without_warnings" || echo "FAIL manpage_renders_without_warnings: $warn"
else
    echo "SKIP manpage_renders_without_warnings: groff not installed (Debian package man-db pulls it in)"
fi
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
if make -s install PREFIX=/usr DESTDIR="$dest" >/dev/null 2>&1 && cmp -s "$page" "$dest/usr/share/man/man1/plume.1"; then
    echo "PASS manpage_installed_by_make_install"
else
    echo "FAIL manpage_installed_by_make_install"
fi
