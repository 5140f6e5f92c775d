#!/bin/sh
# bffg_ips_vs_sir.sh -- the generic interacting-particle engine (plm_bffg_ips_run) against the SIR engine it
# replaced (runtime/engines/bffg_sir.c at commit 4cf1bd1, taken from git), side by side in one process on the
# 10 x 10 grid of bench/bffg_sir.lua: guided SMC, 2,000 particles, one thread, three seeds. Prints CPU seconds,
# the log-likelihood estimates (which must agree) and the ratio new/old.
# usage: sh bench/bffg_ips_vs_sir.sh   (after make; BUILD defaults to build)
BUILD=${BUILD:-build}
set -e
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
git show 4cf1bd1:runtime/engines/bffg_sir.c > "$D/bffg_sir_old.c"
git show 4cf1bd1:runtime/engines/bffg_sir.h | sed 's/PLM_BFFG_SIR_H/PLM_BFFG_SIR_OLD_H/' > "$D/bffg_sir_old.h"
sed -i 's/#include "bffg_sir.h"/#include "bffg_sir_old.h"/' "$D/bffg_sir_old.c"
cat > "$D/main.c" <<'CEOF'
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "bffg_sir_old.h"   /* the former SIR engine (extracted by bench/bffg_ips_vs_sir.sh) */
#include "rng.h"
#include "bffg_sir.h"   /* the generic engine */
static double cpu(void) { return (double)clock() / CLOCKS_PER_SEC; }
int main(void)
{
    enum { side = 10, N = side * side, T = 50 };
    static int start[N + 1], adj[4 * N], oi[N * T], ot[N * T], oy[N * T];
    static double init[3 * N], base[9], per[27];
    static unsigned char paths[2000 * (T + 1) * N];
    static double logw[2000];
    double em[6] = {0.95, 0.05, 0.15, 0.85, 0.9, 0.1}, beta = 0.3, gamma = 0.1, eps = 0.001, ll, la;
    int i, no = 0, r, c, k = 0, rep;
    plm_rng g;
    plm_init();
    for (i = 0; i < N; i++) {
        r = i / side, c = i % side;
        start[i] = k;
        if (c > 0) adj[k++] = i - 1;
        if (c + 1 < side) adj[k++] = i + 1;
        if (r > 0) adj[k++] = i - side;
        if (r + 1 < side) adj[k++] = i + side;
        init[3 * i] = i ? 1 : 0, init[3 * i + 1] = i ? 0 : 1, init[3 * i + 2] = 0;
    }
    start[N] = k;
    plm_rng_init(&g, 7, 0);
    for (int t = 5; t <= T; t += 5)
        for (i = (t / 5) % 3; i < N; i += 3) oi[no] = i, ot[no] = t, oy[no] = plm_rng_uniform(&g) < 0.2, no++;
    plm_bffg_sir old = {N, T, start, adj, beta, gamma, eps, init, 2, em, no, oi, ot, oy, NULL};
    memset(base, 0, sizeof base), memset(per, 0, sizeof per);
    base[1] = -log1p(-eps), per[(0 * 3 + 1) * 3 + 1] = -log1p(-beta), base[1 * 3 + 2] = -log1p(-gamma);
    plm_bffg_ips neu = {N, T, 3, start, adj, base, per, init, 2, em, no, oi, ot, oy, NULL};
    for (rep = 0; rep < 3; rep++) {
        double t0 = cpu(), t1, t2;
        plm_bffg_sir_run(NULL, &old, 2000, 1, PLM_RESAMPLE_SYSTEMATIC, 0.5, rep + 1, 1, paths, logw, &ll, &la, NULL);
        t1 = cpu();
        printf("old: %.3f s  loglik %.6f\n", t1 - t0, ll);
        plm_bffg_ips_run(NULL, &neu, 2000, 1, PLM_RESAMPLE_SYSTEMATIC, 0.5, rep + 1, 1, paths, logw, &ll, &la, NULL);
        t2 = cpu();
        printf("new: %.3f s  loglik %.6f  (new/old %.2f)\n", t2 - t1, ll, (t2 - t1) / (t1 - t0));
    }
    return 0;
}
CEOF
INC="-I$D -Iruntime -Iruntime/base -Iruntime/compiler -Iruntime/markov -Iruntime/engines -Iruntime/lm"
cc -std=c11 -D_GNU_SOURCE -O2 $INC "$D/main.c" "$D/bffg_sir_old.c" "$BUILD/libplume.a" \
   $(pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4) -lgsl -lgslcblas -lgc -lffi -lcsv -lcjson -lreadline \
   -lpthread -ldl -lm -lstdc++ -o "$D/bench"
"$D/bench"
