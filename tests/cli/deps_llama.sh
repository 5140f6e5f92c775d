#!/bin/sh
# On Linux x86-64 the set-up (scripts/deps.sh) either installs llama.cpp into build/llama or records why it
# could not in build/llama.missing, which tests/run.sh prints with the count of skipped tests: the llama
# tests are never missing without a reason.
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "SKIP deps_llama: no prebuilt llama.cpp for $(uname -s)-$(uname -m)"
    exit 0
fi
if ls build/llama/.installed-* >/dev/null 2>&1; then
    env -u PLUME_LLAMA_LIB "$PLUME" --quiet -e 'local ok, why = plume.lm.available(); assert(ok, why)' &&
        echo "PASS deps_llama_installed_and_loadable" || echo "FAIL deps_llama_installed_and_loadable"
elif [ -s build/llama.missing ]; then
    echo "SKIP deps_llama: llama.cpp not installed: $(head -n 1 build/llama.missing)"
else
    echo "FAIL deps_llama: llama.cpp is neither installed in build/llama nor explained in build/llama.missing (run make deps)"
fi
