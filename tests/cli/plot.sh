#!/bin/sh
# plume.plot without gnuplot says which Debian package to install; with it, a text plot prints.
out=$(PLUME_GNUPLOT=/nonexistent/gnuplot "$PLUME" --quiet -e 'plume.plot.smc({ess_history = {1, 2}})' 2>&1)
echo "$out" | grep -q 'gnuplot not found (/nonexistent/gnuplot); install the Debian package gnuplot-nox' &&
    echo "PASS plot_without_gnuplot_names_the_package" || echo "FAIL plot_without_gnuplot_names_the_package: $out"
if command -v gnuplot >/dev/null 2>&1; then
    out=$("$PLUME" --quiet -e 'print(plume.plot.smc({ess_history = {5, 3, 4}, particles = 5}))')
    echo "$out" | grep -q 'ESS' && [ "$(echo "$out" | wc -l)" -ge 20 ] &&
        echo "PASS plot_text_prints" || echo "FAIL plot_text_prints: $out"
else
    echo "SKIP plot_text_prints: gnuplot not found (Debian package gnuplot-nox)"
fi
