#!/bin/sh
# Install the Debian packages plume needs. As root: apt-get installs what is missing. Otherwise: print the
# exact command and stop, so nothing half-builds.
PKGS="gcc make pkg-config lua5.4 liblua5.4-dev libgsl-dev libgc-dev libffi-dev libreadline-dev tmux"
# Peers that only the benchmarks run (`sh scripts/deps.sh bench`, called by bench/run.sh).
BENCH_PKGS="python3-pomegranate"
[ "$1" = bench ] && PKGS="$PKGS $BENCH_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing; } || {
        echo "deps: apt-get failed to install:$missing" >&2; exit 1; }
else
    echo "plume needs these Debian packages:$missing" >&2
    echo "install them with: sudo apt-get install$missing" >&2
    exit 1
fi
