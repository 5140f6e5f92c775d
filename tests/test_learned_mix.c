/* test_learned_mix.c -- the learned mixture kernel's fast paths: the single-row network pass ("mt" layout, narrow
** layers in registers) against the batched cblas pass, the mixture motif's incrementally kept statistics against
** recomputed ones, and the kernel's exactness (its MH ratio, and its stationary law on a posterior known in closed
** form). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "learned.h"
#include "mcmc.h"
#include "model_graphs.h"

/* A network of the mixture motif's layout (K_max 8) with the given hidden layers and activation, random weights
** (large enough that the heads are far from their skip logits). */
static plm_status mix_net(plm_nn *nn, int nhidden, const int *hidden, int act, uint64_t seed)
{
    const plm_motif_def *d = plm_motif_find("mixture");
    plm_nn_member mem[PLM_NN_MAXMEM];
    int nin, nmem, shape[1] = {8};
    plm_rng r;
    plm_status st;
    d->layout(shape, &nin, &nmem, mem);
    if ((st = plm_nn_init(NULL, nn, nin, nmem, mem, nhidden, hidden, act))) return st;
    plm_rng_init(&r, seed, 0);
    plm_nn_randomize(nn, &r);
    for (size_t k = 0; k < nn->nparam; k++) nn->theta[k] += 0.3 * plm_rng_normal(&r);
    return PLM_OK;
}

/* The largest relative difference |a - b| / max(1, |b|) of the single-row densities (plm_nn_propose, new and old
** block) from the batched pass's (plm_nn_logq over all rows at once), on n prior draws of the mixture motif; *same
** is cleared unless plm_nn_sample draws the same block with the same density as plm_nn_propose, bit for bit. */
static double single_vs_batched(const plm_nn *nn, plm_nn_ws *w1, int n, uint64_t seed, int *same)
{
    const plm_motif_def *d = plm_motif_find("mixture");
    int shape[1] = {8}, nin = nn->nin, nmem = nn->nmem, i, j;
    double *X = malloc(2 * (size_t)n * nin * sizeof *X), *V = malloc(2 * (size_t)n * nmem * sizeof *V);
    double *lq = malloc(2 * (size_t)n * sizeof *lq), *lqs = malloc(2 * (size_t)n * sizeof *lqs), worst = 0;
    plm_nn_ws wb;
    plm_rng r, r1, r2;
    CHECK(X && V && lq && lqs && plm_nn_ws_init(NULL, &wb, nn, 2 * n) == PLM_OK);
    plm_rng_init(&r, seed, 1);
    for (i = 0; i < n; i++) {
        double *x = X + (size_t)2 * i * nin, *vold = V + (size_t)(2 * i + 1) * nmem, v[PLM_NN_MAXMEM], vs[PLM_NN_MAXMEM];
        double lqn, lqo, lqsamp;
        d->draw(shape, &r, x, vold);
        memcpy(x + nin, x, (size_t)nin * sizeof *x);
        r1 = r2 = r;
        plm_nn_propose(nn, w1, x, vold, &r1, v, &lqn, &lqo);
        plm_nn_sample(nn, w1, x, &r2, vs, &lqsamp);
        *same = *same && memcmp(v, vs, (size_t)nmem * sizeof *v) == 0 && memcmp(&lqn, &lqsamp, sizeof lqn) == 0;
        memcpy(V + (size_t)2 * i * nmem, v, (size_t)nmem * sizeof *v);
        lqs[2 * i] = lqn, lqs[2 * i + 1] = lqo;
        r = r1;
    }
    plm_nn_logq(nn, &wb, 2 * n, X, V, lq, NULL);
    for (j = 0; j < 2 * n; j++) {
        double e = fabs(lqs[j] - lq[j]) / fmax(1, fabs(lq[j]));
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    plm_nn_ws_free(&wb);
    free(X), free(V), free(lq), free(lqs);
    return worst;
}

/* The single-row pass of mixture networks -- one pass over the inputs for both members' first layers ("mt"), narrow
** hidden layers in registers, the heads' exps shared between draw and densities -- gives the batched pass's log q of
** the new and the old block to 1e-9 (relative), for hidden widths that take the 16-wide, 8-wide and scalar parts of
** the pass (8, 16, 12, 20, 4) and two hidden layers, relu and tanh, on 300 prior draws each; plm_nn_sample and
** plm_nn_propose draw the same block. After the weights change, plm_nn_ws_sync brings the mt layout along (and
** without it the densities are off: the negative control). */
static void test_single_row_pass_equals_batched(void)
{
    int widths[6][3] = {{1, 8}, {1, 16}, {1, 12}, {1, 20}, {1, 4}, {2, 8, 8}};
    for (int c = 0; c < 6; c++)
        for (int act = 0; act < 2; act++) {
            plm_nn nn;
            plm_nn_ws w;
            int same = 1;
            CHECK(mix_net(&nn, widths[c][0], widths[c] + 1, act, 40 + (uint64_t)c) == PLM_OK);
            CHECK(plm_nn_ws_init(NULL, &w, &nn, 2) == PLM_OK);
            CHECK(w.mtw == nn.nmem * widths[c][1]);   /* the fused first layer is taken */
            CHECK(single_vs_batched(&nn, &w, 300, 50 + (uint64_t)(2 * c + act), &same) <= 1e-9);
            CHECK(same);
            if (c == 0) {   /* new weights: stale without the sync, right with it */
                plm_rng r;
                plm_rng_init(&r, 60 + (uint64_t)act, 0);
                for (size_t k = 0; k < nn.nparam; k++) nn.theta[k] += 0.1 * plm_rng_normal(&r);
                CHECK(single_vs_batched(&nn, &w, 50, 61, &same) > 1e-3);
                plm_nn_ws_sync(&w, &nn);
                CHECK(single_vs_batched(&nn, &w, 300, 62, &same) <= 1e-9);
            }
            plm_nn_ws_free(&w);
            plm_nn_free(&nn);
        }
}

/* A Gaussian mixture as the tracer builds it: mu_k ~ normal(0, 3), z_i ~ categorical(k / (K (K + 1) / 2)), y_i ~
** normal(mu[z_i], sc (0.3 + 0.4 k)) with mu[z] and the sd chains of selects on z + 1 (as test_learned.c's gmm). */
static plm_gmodel *gmm_y(plm_ctx *ctx, int n, int K, const double *yv, double sc)
{
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int mu[8], p[8], i, k, st = 0;
    if (plm_gmodel_new(ctx, g, &m)) return NULL;
    for (k = 0; k < K; k++) {
        char name[32];
        p[0] = plm_graph_const(g, 0), p[1] = plm_graph_const(g, 3);
        snprintf(name, sizeof name, "mu[%d]", k + 1);
        mu[k] = mg_latent(ctx, m, &st, name, PLM_DIST_NORMAL, 2, p);
    }
    for (i = 0; i < n; i++) {
        char name[32];
        int zz, mean = plm_graph_const(g, NAN), sd = plm_graph_const(g, NAN), q[2], y, v[1];
        plm_symdist d = {PLM_DIST_CATEGORICAL, K, K, p};
        for (k = 0; k < K; k++) p[k] = plm_graph_const(g, (k + 1.0) / (K * (K + 1) / 2.0));
        snprintf(name, sizeof name, "z[%d]", i + 1);
        if (!st) st = plm_gmodel_latent(ctx, m, name, &d, v);
        zz = MG_OP(g, ADD, v[0], plm_graph_const(g, 1));
        for (k = K; k >= 1; k--) {
            int c = plm_graph_op(g, PLM_OP_EQ, zz, plm_graph_const(g, k), -1);
            mean = plm_graph_op(g, PLM_OP_SELECT, c, mu[k - 1], mean);
            sd = plm_graph_op(g, PLM_OP_SELECT, c, plm_graph_const(g, sc * (0.3 + 0.4 * k)), sd);
        }
        q[0] = mean, q[1] = sd;
        {
            plm_symdist dy = {PLM_DIST_NORMAL, 0, 2, q};
            y = plm_graph_const(g, yv[i]);
            snprintf(name, sizeof name, "y[%d]", i + 1);
            if (!st) st = plm_gmodel_observe(ctx, m, name, &dy, &y);
        }
    }
    return st || plm_gmodel_finish(ctx, m) ? NULL : m;
}

/* The mixture motif keeps each component's sufficient statistics (sum of 1/sd^2 and y/sd^2 of its observations)
** through accepted moves instead of recomputing them per proposal: after 3,000 accepted block moves over 40
** occurrences, the features and block densities of every occurrence from the kept workspace equal those of a fresh
** workspace started at the same point, to 1e-9 (relative; they are sums kept in a different order). */
static void test_kept_statistics_equal_recomputed(void)
{
    plm_ctx ctx;
    plm_learned_prop *p = NULL;
    plm_motif_occs *o = NULL;
    plm_motif_ws *kept = NULL;
    plm_gmodel *m;
    plm_nn_ws w;
    plm_rng r;
    double yv[40], u[64], worst = 0;
    int i, j, n = 40, occ, bad_v = 0;
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 70, 0);
    for (i = 0; i < n; i++) yv[i] = 3.0 * (i % 3) - 3 + 0.8 * plm_rng_normal(&r);
    m = gmm_y(&ctx, n, 3, yv, 1);
    CHECK(m && plm_learned_load(&ctx, "stdlib/proposals/mixture.plmprop", &p) == PLM_OK);
    if (!m || !p) return;
    CHECK(m->dim <= 64);
    CHECK(p->motif->detect(&ctx, p->motif, p->meta.shape, m, &o) == PLM_OK && o && plm_motif_count(o) == n);
    CHECK(plm_motif_ws_new(NULL, o, &kept) == PLM_OK && plm_nn_ws_init(NULL, &w, &p->nn, 2) == PLM_OK);
    if (!o || !kept) return;
    for (j = 0; j < m->dim; j++) {
        const plm_gsite *s = &m->sites[m->owner[j]];
        u[j] = s->discrete ? (double)plm_rng_uint(&r, 3) : 2 * plm_rng_normal(&r);
    }
    CHECK(plm_motif_begin(&ctx, o, kept, u) == PLM_OK);
    for (i = 0; i < 3000; i++) {   /* every proposal accepted: the statistics move at each step */
        double x[128], vold[2], v[2], lqn, lqo;
        occ = (int)plm_rng_uint(&r, (uint64_t)n);
        CHECK(plm_motif_inputs(&ctx, o, kept, occ, u, &r, x, vold) == PLM_OK);
        plm_nn_propose(&p->nn, &w, x, vold, &r, v, &lqn, &lqo);
        plm_motif_apply(o, kept, occ, u, v);
    }
    for (occ = 0; occ < n; occ++) {
        plm_motif_ws *fresh;
        plm_rng r1, r2;
        double x1[128], x2[128], v1[2], v2[2], vv[2] = {1, 0.4};
        plm_rng_init(&r1, 71, (uint64_t)occ), plm_rng_init(&r2, 71, (uint64_t)occ);   /* the same component k */
        CHECK(plm_motif_ws_new(NULL, o, &fresh) == PLM_OK && plm_motif_begin(&ctx, o, fresh, u) == PLM_OK);
        CHECK(plm_motif_inputs(&ctx, o, kept, occ, u, &r1, x1, v1) == PLM_OK);
        CHECK(plm_motif_inputs(&ctx, o, fresh, occ, u, &r2, x2, v2) == PLM_OK);
        for (j = 0; j < p->nin; j++) worst = fmax(worst, fabs(x1[j] - x2[j]) / fmax(1, fabs(x2[j])));
        bad_v += memcmp(v1, v2, sizeof v1) != 0;
        for (vv[0] = 0; vv[0] < 3; vv[0]++) {
            double a = plm_motif_logp(o, kept, occ, u, vv), b = plm_motif_logp(o, fresh, occ, u, vv);
            worst = fmax(worst, fabs(a - b) / fmax(1, fabs(b)));
        }
        plm_motif_ws_free(fresh);
    }
    CHECK(worst <= 1e-9);
    CHECK(bad_v == 0);
    {   /* the negative control: a kept workspace that missed the moves (begun at another point) is caught */
        plm_motif_ws *stale;
        double us[64], x1[128], x2[128], v1[2], v2[2], diff = 0;
        plm_rng r1, r2;
        memcpy(us, u, (size_t)m->dim * sizeof *u);
        for (j = 0; j < m->dim; j++)
            if (m->sites[m->owner[j]].discrete) us[j] = (double)(((int)us[j] + 1) % 3);
        CHECK(plm_motif_ws_new(NULL, o, &stale) == PLM_OK && plm_motif_begin(&ctx, o, stale, us) == PLM_OK);
        plm_rng_init(&r1, 72, 0), plm_rng_init(&r2, 72, 0);
        CHECK(plm_motif_inputs(&ctx, o, stale, 0, u, &r1, x1, v1) == PLM_OK);
        CHECK(plm_motif_inputs(&ctx, o, kept, 0, u, &r2, x2, v2) == PLM_OK);
        for (j = 0; j < p->nin; j++) diff = fmax(diff, fabs(x1[j] - x2[j]));
        CHECK(diff > 1e-3);
        plm_motif_ws_free(stale);
    }
    plm_nn_ws_free(&w);
    plm_motif_ws_free(kept);
}

/* The kernel's MH ratio is exact: at random points of a 12-point mixture, the learned kernel's log ratio is the
** target's log p(new) - log p(old) plus the batched network pass's log q(old) - log q(new) at the proposal's features
** (to 1e-8: the target's sums over 12 observations against the motif's closed form); the kernel with the reverse
** density left out (plm_learned_set_broken) fails it at every occurrence. */
static void test_mh_ratio_is_target_and_batched_q(void)
{
    plm_ctx ctx;
    plm_learned_prop *p = NULL;
    plm_gmodel *m;
    plm_target *t;
    plm_kernel *k;
    plm_nn_ws wb;
    plm_rng r;
    double yv[12];
    void *tws;
    int i, j, rep, nocc = 0;
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 80, 0);
    for (i = 0; i < 12; i++) yv[i] = 2.0 * (i % 3) - 2 + 0.3 * plm_rng_normal(&r);
    m = gmm_y(&ctx, 12, 3, yv, 1);
    CHECK(m && plm_learned_load(&ctx, "stdlib/proposals/mixture.plmprop", &p) == PLM_OK);
    if (!m || !p) return;
    CHECK(plm_gmodel_target(&ctx, m, &t) == PLM_OK && plm_kernel_learned(&ctx, m, &p, 1, &k, &nocc) == PLM_OK);
    CHECK(nocc == 12 && plm_nn_ws_init(NULL, &wb, &p->nn, 2) == PLM_OK);
    tws = plm_target_ws_new(t);
    for (rep = 0; rep < 20; rep++)
        for (i = 0; i < nocc; i++) {
            double u[15], un[15], v[2], lqf, lqr, lpn, lpo, lr, x[128], vold[2], X[256], V[4], lq[2];
            plm_motif_occs *o = NULL;
            plm_motif_ws *mw = NULL;
            plm_rng rk;
            for (j = 0; j < m->dim; j++) {
                const plm_gsite *s = &m->sites[m->owner[j]];
                u[j] = s->discrete ? (double)plm_rng_uint(&r, 3) : 3 * plm_rng_normal(&r);
            }
            rk = r;
            CHECK(plm_learned_debug_step(&ctx, k, 0, i, u, &r, v, &lqf, &lqr, &lpn, &lpo, &lr, un) == PLM_OK);
            CHECK_NEAR(lpn - lpo, plm_target_logp(t, tws, un) - plm_target_logp(t, tws, u), 1e-8);
            /* the features the kernel saw (the same draw of the component from the same stream) */
            CHECK(p->motif->detect(&ctx, p->motif, p->meta.shape, m, &o) == PLM_OK && plm_motif_ws_new(NULL, o, &mw) == PLM_OK);
            CHECK(plm_motif_begin(&ctx, o, mw, u) == PLM_OK && plm_motif_inputs(&ctx, o, mw, i, u, &rk, x, vold) == PLM_OK);
            memcpy(X, x, (size_t)p->nin * sizeof *x), memcpy(X + p->nin, x, (size_t)p->nin * sizeof *x);
            V[0] = v[0], V[1] = v[1], V[2] = vold[0], V[3] = vold[1];
            plm_nn_logq(&p->nn, &wb, 2, X, V, lq, NULL);
            CHECK_NEAR(lqf, lq[0], 1e-9 * fmax(1, fabs(lq[0])));
            CHECK_NEAR(lqr, lq[1], 1e-9 * fmax(1, fabs(lq[1])));
            CHECK_NEAR(lr, (lpn - lpo) + (lq[1] - lq[0]), 1e-8 * fmax(1, fabs(lr)));
            plm_motif_ws_free(mw);
        }
    {   /* the negative control: the kernel without the reverse density gives another ratio */
        double u[15], un[15], v[2], lqf, lqr, lpn, lpo, lr;
        int off = 0;
        plm_learned_set_broken(k, 1);
        for (i = 0; i < nocc; i++) {
            for (j = 0; j < m->dim; j++) u[j] = m->sites[m->owner[j]].discrete ? (double)plm_rng_uint(&r, 3) : 3 * plm_rng_normal(&r);
            CHECK(plm_learned_debug_step(&ctx, k, 0, i, u, &r, v, &lqf, &lqr, &lpn, &lpo, &lr, un) == PLM_OK);
            off += fabs(lr - (lpn - lpo + lqr - lqf)) > 1e-6;
        }
        CHECK(off == nocc);
        plm_learned_set_broken(k, 0);
    }
    plm_target_ws_free(t, tws);
    plm_nn_ws_free(&wb);
}

/* P(z = 1) and E[mu_2^2] from 4 chains of 40,000 sweeps of the kernel on a one-observation, two-component mixture
** against the closed form (z's posterior is w_j N(y; 0, sqrt(9 + sd_j^2)); given z = j, mu_j is the conjugate normal
** and the other mean keeps its prior): each within 5 Monte Carlo standard errors (batch means, 50 batches per chain,
** pooled). The observation sds are small (0.07, 0.11 against the means' prior sd 3), so that the block's
** conditional density is far from flat. No negative control here: with the reverse density left out of the ratio
** (plm_learned_set_broken) the network, close to the block's conditional, still gives these two within noise;
** test_mh_ratio_is_target_and_batched_q catches that kernel exactly. */
static double z_error(double *mu_err)
{
    plm_ctx ctx;
    plm_learned_prop *p = NULL;
    plm_gmodel *m;
    plm_target *t;
    plm_kernel *k;
    plm_mcmc_opts mo;
    plm_draws *D = NULL;
    double y = 1.3, sd[2] = {0.07, 0.11}, wt[2] = {1.0 / 3, 2.0 / 3}, pz[2], tot = 0, emu2, init[4 * 3];
    double zs = 0, zs2 = 0, ms = 0, ms2 = 0, ezhat = 0, emuhat = 0;
    int c, j, cz, cm, nb = 50, nc = 4;
    long S = 40000, i;
    plm_ctx_clear(&ctx);
    m = gmm_y(&ctx, 1, 2, &y, 0.1);
    CHECK(m && plm_learned_load(&ctx, "stdlib/proposals/mixture.plmprop", &p) == PLM_OK);
    if (!m || !p) return INFINITY;
    CHECK(plm_gmodel_target(&ctx, m, &t) == PLM_OK && plm_kernel_learned(&ctx, m, &p, 1, &k, NULL) == PLM_OK);
    for (j = 0; j < 2; j++) {
        double v = 9 + sd[j] * sd[j];
        tot += pz[j] = wt[j] * exp(-0.5 * y * y / v) / sqrt(v);
    }
    pz[0] /= tot, pz[1] /= tot;
    /* E[mu_2^2]: with z = 2 (index 1) the conjugate normal, mean 9 y / (9 + sd^2) and variance 9 sd^2 / (9 + sd^2);
    ** else its prior's second moment, 9 */
    {
        double mpost = 9 * y / (9 + sd[1] * sd[1]), vpost = 9 * sd[1] * sd[1] / (9 + sd[1] * sd[1]);
        emu2 = pz[1] * (mpost * mpost + vpost) + pz[0] * 9;
    }
    memset(&mo, 0, sizeof mo);
    for (i = 0; i < 4 * 3; i++) init[i] = 0;
    mo.chains = nc, mo.warmup = 500, mo.samples = S, mo.thin = 1, mo.seed = 9, mo.threads = 1;
    mo.init = init;
    CHECK(plm_mcmc_run_local(&ctx, t, k, &mo, &D, NULL) == PLM_OK);
    if (!D) return INFINITY;
    {   /* the columns are the target's coordinates, x[1..dim] */
        char name[32];
        cz = cm = -1;
        for (j = 0; j < m->n; j++) {
            snprintf(name, sizeof name, "x[%d]", m->sites[j].first + 1);
            if (strcmp(m->sites[j].name, "z[1]") == 0) cz = plm_draws_col(D, name, 0);
            if (strcmp(m->sites[j].name, "mu[2]") == 0) cm = plm_draws_col(D, name, 0);
        }
    }
    CHECK(cz >= 0 && cm >= 0 && plm_draws_nchains(D) == nc);
    for (c = 0; c < nc; c++) CHECK(plm_draws_len(D, c) == (size_t)S && plm_draws_chain(D, cz, c) && plm_draws_chain(D, cm, c));
    if (check_failed_) {
        for (j = 0; j < plm_draws_ncols(D); j++) printf("  column %d: %s\n", j, plm_draws_name(D, j));
        return INFINITY;
    }
    for (c = 0; c < nc; c++) {
        const double *z = plm_draws_chain(D, cz, c), *mu = plm_draws_chain(D, cm, c);
        long bl = S / nb;
        for (int b = 0; b < nb; b++) {
            double a = 0, e = 0;
            for (i = b * bl; i < (b + 1) * bl; i++) a += z[i] == 0, e += mu[i] * mu[i];
            a /= (double)bl, e /= (double)bl;
            zs += a, zs2 += a * a, ms += e, ms2 += e * e;
        }
    }
    ezhat = zs / (nb * nc), emuhat = ms / (nb * nc);
    {
        double n = nb * nc, sez = sqrt((zs2 / n - ezhat * ezhat) / (n - 1)), sem = sqrt((ms2 / n - emuhat * emuhat) / (n - 1));
        *mu_err = fabs(emuhat - emu2) / sem;
        return fabs(ezhat - pz[0]) / sez;
    }
}

static void test_kernel_leaves_posterior_invariant(void)
{
    double mu_err, z_err = z_error(&mu_err);
    CHECK(z_err < 5);
    CHECK(mu_err < 5);
    printf("  P(z = 1) off by %.2f MCSE, E[mu_2^2] by %.2f\n", z_err, mu_err);
}

int main(void)
{
    plm_init();
    RUN(test_single_row_pass_equals_batched);
    RUN(test_kept_statistics_equal_recomputed);
    RUN(test_mh_ratio_is_target_and_batched_q);
    RUN(test_kernel_leaves_posterior_invariant);
    return CHECK_DONE();
}
