#!/bin/sh
# mcmc_peers.sh -- plume, JAGS and Stan on five models: minimum bulk ESS per second (bench/mcmc_peers.lua).
# usage: [JAGS_MULT=5] [TOOLS=plume,jags,stan] sh bench/mcmc_peers.sh [samples per chain] [models, comma-separated]
# writes bench/mcmc_peers.out; JAGS runs JAGS_MULT times the samples (and warm-up) per chain
cd "$(dirname "$0")/.." || exit 1
[ -x build/plume ] || make -s build/plume || exit 1
exec build/plume --quiet bench/mcmc_peers.lua "${1:-1000}" "${2:-}" bench/mcmc_peers.out
