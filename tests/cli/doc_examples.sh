#!/bin/sh
# doc_examples.sh -- the manual's Lua examples run: for each doc/*.md, its ```lua blocks are joined in order
# into one script (later blocks may use what earlier ones defined, as a reader would) and run by the real
# binary in a scratch directory. A `local` at the start of a line (a block's top level, outside a `do ... end`
# block of its own) becomes a global, so the manual is not limited to Lua's 200 locals per function. Blocks fenced as ```lua-fragment are
# illustrations and are skipped.
P=${PLUME:-build/plume}
case "$P" in /*) ;; *) P="$PWD/$P" ;; esac
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for f in doc/*.md; do
    name=$(basename "$f" .md)
    awk '
        /^```lua[ \t]*$/ { inblock = 1; n++; print "-- block " n; next }
        /^```/ && inblock { inblock = 0; next }
        inblock && /^do([ \t]|$)/ { own++ }
        inblock && /^end([ \t]|$)/ && own { own-- }
        inblock { if (!own) sub(/^local /, ""); print }
    ' "$f" > "$T/$name.lua"
    grep -q "block" "$T/$name.lua" || continue
    if (cd "$T" && "$P" --quiet "$name.lua" > "$T/$name.out" 2>&1); then
        echo "PASS doc_examples_run_$name"
    else
        echo "FAIL doc_examples_run_$name: $(tail -3 "$T/$name.out")"
    fi
done
