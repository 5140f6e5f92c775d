#!/bin/sh
# compare.sh -- run tests/golden/engines.lua with this build and diff its outputs byte for byte against a
# reference directory written by an earlier build (the draws of a refactor must not change).
# usage: sh tests/golden/compare.sh REFDIR [plume-binary]
ref=${1:?usage: compare.sh REFDIR [plume-binary]}
bin=${2:-build/plume}
new=$(mktemp -d)
trap 'rm -rf "$new"' EXIT
"$bin" --quiet tests/golden/engines.lua "$new" >/dev/null || exit 1
# the streamed file's path is inside the output directory: compare contents, not paths
if diff -r "$ref" "$new"; then echo "golden: identical ($(ls "$new" | wc -l) files)"; else echo "golden: DIFFERENT"; exit 1; fi
