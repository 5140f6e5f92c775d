#!/bin/sh
# Install the Debian packages plume needs. As root: apt-get installs what is missing. Otherwise: print the
# exact command and stop, so nothing half-builds.
# gnuplot-nox draws plume.plot; libcsv/libcjson parse plume.read_csv/read_json; libxml2-utils (xmllint) checks
# the SVG plots in the tests; luarocks and man-db (groff) let the tests build the rock and render the man page;
# fortunes is the English corpus examples/grammar_aligned_json.lua trains its n-gram model on.
# libopenmpi-dev and openmpi-bin: the MPI layer (runtime/base/comm.c) and the mpirun tests (tests/cli/mpi_*.sh).
PKGS="gcc make pkg-config lua5.4 liblua5.4-dev libgsl-dev libgc-dev libffi-dev libreadline-dev tmux
      gnuplot-nox libcsv-dev libcjson-dev libxml2-utils luarocks man-db fortunes libopenmpi-dev openmpi-bin"
# npm and git fetch llama.cpp below. Asked for by command, not by package: a nodejs from another source
# (NodeSource) ships its own npm and conflicts with Debian's.
command -v git >/dev/null 2>&1 || PKGS="$PKGS git"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
# Peers that only the benchmarks run (`sh scripts/deps.sh bench`, called by bench/run.sh).
BENCH_PKGS="python3-pomegranate"
[ "$1" = bench ] && PKGS="$PKGS $BENCH_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
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
fi

# llama.cpp (optional; the llama LM backend dlopens it at run time). The npm registry ships it prebuilt:
# @node-llama-cpp/linux-x64 holds libllama, libggml* and the CPU backends; node-llama-cpp holds the matching
# source as a git bundle, from which only the headers are taken. Everything lands in build/llama/ (ignored by
# git). Any failure warns and goes on: plume builds without it and the llama tests print SKIP.
NLC_VERSION=3.21.1
LL=build/llama
# The reason is kept in build/llama.missing, which tests/run.sh prints beside the count of skipped tests.
llama_warn() {
    echo "deps: llama.cpp not installed ($1); the llama backend will be unavailable" >&2
    mkdir -p build && echo "$1" > build/llama.missing
}
if [ ! -f "$LL/.installed-$NLC_VERSION" ]; then
    if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
        llama_warn "no prebuilt package for $(uname -s)-$(uname -m); point PLUME_LLAMA_LIB at your own build"
    elif ! command -v npm >/dev/null 2>&1 || ! command -v git >/dev/null 2>&1; then
        llama_warn "npm or git not found"
    else
        tmp=$(mktemp -d)
        if (cd "$tmp" && npm pack --silent "@node-llama-cpp/linux-x64@$NLC_VERSION" >/dev/null 2>&1 &&
                npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null 2>&1 &&
                tar xzf node-llama-cpp-linux-x64-$NLC_VERSION.tgz &&
                mkdir src && tar xzf node-llama-cpp-$NLC_VERSION.tgz -C src package/llama/gitRelease.bundle &&
                git clone -q src/package/llama/gitRelease.bundle llama.cpp >/dev/null 2>&1); then
            rm -rf "$LL" && mkdir -p "$LL/lib" "$LL/include" &&
            cp "$tmp"/package/bins/linux-x64/*.so "$LL/lib/" &&
            ln -sf libllama.v0.4.0.so "$LL/lib/libllama.so" &&
            cp "$tmp"/llama.cpp/include/llama.h "$tmp"/llama.cpp/ggml/include/*.h "$LL/include/" &&
            touch "$LL/.installed-$NLC_VERSION" && rm -f build/llama.missing || llama_warn "could not copy the files into $LL"
        else
            llama_warn "npm pack or git clone failed"
        fi
        rm -rf "$tmp"
    fi
fi
exit 0
