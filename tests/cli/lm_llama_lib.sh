#!/bin/sh
# PLUME_LLAMA_LIB: a llama.cpp of another version, a library that is not llama.cpp, or a missing file is
# refused with a clear message, and the llama tests then SKIP instead of failing.
if "$PLUME" --quiet -e 'local ok, why = plume.lm.available(); os.exit(why:find("built without", 1, true) and 0 or 1)'; then
    echo "SKIP lm_llama_lib: plume was built without llama.cpp's headers"
    exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/t.lua" <<'LUA'
local ok, why = plume.lm.available()
assert(not ok, "expected the library to be refused")
local ok2, err = pcall(plume.lm.llama, { model = os.getenv("MODEL") })
assert(not ok2 and err:find(os.getenv("WANT"), 1, true), err)
LUA
MODEL="$dir/m.gguf" "$PLUME" --quiet -e 'plume.lm.write_tiny_gguf(os.getenv("MODEL"), {n_embd = 16, n_layer = 1, n_head = 2})'
echo 'const char *llama_version(void) { return "0.3.9"; }' > "$dir/old.c"
if ${CC:-cc} -shared -fPIC -o "$dir/libllama-old.so" "$dir/old.c"; then
    PLUME_LLAMA_LIB="$dir/libllama-old.so" MODEL="$dir/m.gguf" WANT="is llama.cpp version '0.3.9', but plume was built for 0.4.0" \
        "$PLUME" --quiet "$dir/t.lua" && echo "PASS lm_llama_refuses_other_version" || echo "FAIL lm_llama_refuses_other_version"
fi
libm=$(ls /lib/x86_64-linux-gnu/libm.so.6 /usr/lib/x86_64-linux-gnu/libm.so.6 /lib64/libm.so.6 2>/dev/null | head -n 1)
if [ -n "$libm" ]; then
    PLUME_LLAMA_LIB="$libm" MODEL="$dir/m.gguf" WANT="has no llama_version" "$PLUME" --quiet "$dir/t.lua" &&
        echo "PASS lm_llama_refuses_foreign_library" || echo "FAIL lm_llama_refuses_foreign_library"
fi
PLUME_LLAMA_LIB="$dir/none.so" MODEL="$dir/m.gguf" WANT="llama.cpp not available" "$PLUME" --quiet "$dir/t.lua" &&
    echo "PASS lm_llama_missing_library_is_reported" || echo "FAIL lm_llama_missing_library_is_reported"
PLUME_LLAMA_LIB="$dir/none.so" "$BUILD/tests/test_lm_llama" | grep -q '^SKIP' &&
    echo "PASS lm_llama_tests_skip_without_library" || echo "FAIL lm_llama_tests_skip_without_library"
PLUME_LLAMA_LIB="$dir/none.so" "$PLUME" --quiet tests/lua/test_lm.lua | grep -q '^SKIP llama' &&
    echo "PASS lm_lua_tests_skip_without_library" || echo "FAIL lm_lua_tests_skip_without_library"
PLUME_LLAMA_LIB="$dir/none.so" "$PLUME" --quiet tests/lua/test_lm_programs.lua | grep -q '^SKIP tiny_llama' &&
    echo "PASS lm_program_tests_skip_without_library" || echo "FAIL lm_program_tests_skip_without_library"
(cd examples && PLUME_LLAMA_LIB="$dir/none.so" "$PLUME" --quiet lm_smc_tiny.lua) | grep -q '^SKIP example lm_smc_tiny' &&
    echo "PASS lm_example_skips_without_library" || echo "FAIL lm_example_skips_without_library"
