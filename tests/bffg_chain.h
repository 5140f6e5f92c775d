/* bffg_chain.h -- a step of a hidden Markov chain as BFFG nodes, for the bffg tests' chains: the latent x_t and
** its observed child y_t. */
#ifndef PLM_TESTS_BFFG_CHAIN_H
#define PLM_TESTS_BFFG_CHAIN_H

#include <stdio.h>

#include "bffg.h"
#include "check.h"

/* Adds "x<t>" (kernel k from node prev, -1 for a root) and "y<t>" (kernel obs from x<t>, observed value *y) to m;
** returns x<t>'s node. */
static inline int bffg_step(plm_ctx *ctx, plm_bffg_model *m, int t, int prev, const plm_bffg_kernel *k,
                            const plm_bffg_kernel *obs, const double *y)
{
    char name[32];
    int cur = -1;
    snprintf(name, sizeof name, "x%d", t);
    CHECK(plm_bffg_add(ctx, m, name, prev, k, NULL, &cur) == PLM_OK);
    snprintf(name, sizeof name, "y%d", t);
    CHECK(plm_bffg_add(ctx, m, name, cur, obs, y, NULL) == PLM_OK);
    return cur;
}

#endif
