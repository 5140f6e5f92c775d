#!/bin/sh
# mpi_smc_llama.sh -- plume.smc over a program on a transformer (llama.cpp, a tiny random-weight model), its
# particles spread over 2 ranks, each rank with its own backend: the same logz, texts and log weights as one rank,
# on every rank, with particles moving (their contexts rebuilt by decoding their prefix again on the receiving
# rank). Also migrate = "all" on one rank: every particle rebuilt from its record, the same results.
. tests/mpi.sh
if [ "$("$P" -e 'io.write(tostring(plume.lm.available()))')" != true ]; then
    echo "SKIP mpi_smc_llama: llama.cpp is not available here"; exit 0
fi
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$P" -e "plume.lm.write_tiny_gguf('$d/tiny.gguf', { n_embd = 64, n_layer = 2, n_head = 4, n_ff = 128, ctx = 256, seed = 7 })"
"$P" --quiet tests/lua/smc_ranks_llama.lua "$d/tiny.gguf" 2>"$d/one.err" || { echo "FAIL smc_llama_one_rank_runs: $(cat "$d/one.err")"; exit 0; }
ref=$(cut -d' ' -f2-4 "$d/one.err")
"$P" --quiet tests/lua/smc_ranks_llama.lua "$d/tiny.gguf" all 2>"$d/all.err"
got=$(cut -d' ' -f2-4 "$d/all.err"); moved=$(cut -d' ' -f6 "$d/all.err")
[ "$got" = "$ref" ] && [ "${moved:-0}" -gt 0 ] && echo "PASS smc_llama_migrate_all_equals_default ($moved records)" \
    || echo "FAIL smc_llama_migrate_all_equals_default: '$got' vs '$ref' ($moved records): $(tail -2 "$d/all.err")"
mpi_ready mpi_smc_llama_np2_matches_one_rank || exit 0
if ! mpi_run 2 --quiet tests/lua/smc_ranks_llama.lua "$d/tiny.gguf" 2>"$d/np.err"; then
    echo "FAIL mpi_smc_llama_np2_matches_one_rank: mpirun failed: $(tail -3 "$d/np.err")"; exit 0
fi
why=""
for r in 0 1; do
    got=$(grep "^R$r " "$d/np.err" | cut -d' ' -f2-4)
    [ "$got" = "$ref" ] || why="$why; rank $r has '$got', one rank '$ref'"
done
moved=$(grep '^R[0-9]* ' "$d/np.err" | awk '{s += $6} END {print s + 0}')
[ "$moved" -gt 0 ] || why="$why; no particle moved between ranks"
[ -z "$why" ] && echo "PASS mpi_smc_llama_np2_matches_one_rank ($moved records moved)" || echo "FAIL mpi_smc_llama_np2_matches_one_rank$why"
