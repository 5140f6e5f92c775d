#!/bin/sh
# run.sh -- run every benchmark (`make bench` builds bench/*.c into $BUILD/bench/ and calls this).
# Each prints its own table of times and ratios, measured side by side in the same run.
BUILD=${BUILD:-build}
set -e
sh scripts/deps.sh bench || echo "bench: peers missing; their comparisons will be skipped"

echo "== kalman: square-root Kalman filter vs a textbook C loop =="
"$BUILD/bench/kalman"
echo "== hmm_fb: HMM forward-backward / Viterbi, plume vs hand-written C =="
"$BUILD/bench/hmm_fb"
echo "== hmm_pomegranate: plume vs pomegranate 0.14.8 on the same HMM and data =="
if /usr/bin/python3 -c "import pomegranate" 2>/dev/null; then
    /usr/bin/python3 bench/hmm_pomegranate.py "$BUILD/bench/hmm_fb" 16 32 200000
else
    echo "skipped: python3-pomegranate is not installed"
fi
echo "== lm_decode: forked KV + batched llama_decode vs prefix reuse vs re-evaluating every prefix (27.5M GGUF) =="
"$BUILD/bench/lm_decode" 1
echo "== constraint_cost: masked JSON decoding, the constraint's time next to llama_decode's (27.5M and 64-wide GGUF) =="
"$BUILD/bench/constraint_cost" 1
echo "== lm_smc: plume.smc over an LM program, plume's overhead apart from llama_decode (27.5M GGUF, 64 x 32) =="
"$BUILD/plume" bench/lm_smc.lua 1 naive
echo "== ssm_sv: stochastic-volatility ssm (compiled from Lua) vs hand-written C+GSL; 50-node compile time =="
"$BUILD/bench/ssm_sv" 5
echo "== grad_rate: gradients per second of static models (rats, 1,000-point mixture), vectorised vs scalar programs =="
"$BUILD/bench/grad_rate" 7
echo "== pf_sv: bootstrap particle filter on the sv ssm (plume.smc native) vs a hand-written C filter, 1 and 2 threads =="
"$BUILD/bench/pf_sv" 5
echo "== paris_online: on-line PaRIS, N = 1e3, 1e4, 1e5 with N~ = 2 (work per particle constant, memory O(N)) =="
"$BUILD/plume" bench/paris_online.lua 1
echo "== ppg_bias: PPG (8 particles) vs PaRIS at 8 particles and at the same particle-steps: bias, sd, RMSE, CPU =="
"$BUILD/plume" bench/ppg_bias.lua 50
echo "== sde_fhn: FitzHugh-Nagumo Euler-Maruyama (compiled from Lua) vs hand-written C+GSL =="
"$BUILD/bench/sde_fhn" 5
echo "== markov_mixture: two gridworld MDPs, spectral start vs random-start EM (label accuracy) =="
"$BUILD/plume" bench/markov_mixture.lua 10
echo "== learned_speed: plume.kernel.learned vs single-site Gibbs, microseconds per sweep (mixture, 10x10 grid, HMM chain) =="
"$BUILD/plume" bench/learned_speed.lua 300
echo "== mh_threads: trace MH chains on 1 and 2 threads (separate Lua states) =="
"$BUILD/plume" bench/mh_threads.lua
echo "== mh_memory: peak RSS of trace MH after 1e4 and 1e5 iterations (flat when the engine collects) =="
"$BUILD/plume" bench/mh_memory.lua
echo "== smc_cost: plume.smc over a program, CPU time and peak RSS at 25 / 50 / 100 steps (replay cost) =="
"$BUILD/plume" bench/smc_cost.lua
echo "== smc_sampler: SMC samplers (tempering, waste-free; RW and HMC moves) vs NUTS, evidence and ESS/s =="
"$BUILD/plume" bench/smc_sampler.lua 20 2000
echo "== twisted_smc: rejection vs plain SMC vs HMM-guided twisted SMC on a rare keyword constraint (Z ~ 3e-5), equal CPU time =="
"$BUILD/plume" bench/twisted_smc.lua 3
echo "== bffg_ips_vs_sir: the generic interacting-particle engine vs the SIR engine it replaced, SIR on a 10 x 10 grid =="
BUILD="$BUILD" sh bench/bffg_ips_vs_sir.sh
echo "== mpi_chains: plume.infer's chains (rats, NUTS) on 1 and 2 MPI ranks, one thread each; identical draws =="
sh bench/mpi_chains.sh 4 1000
