/* engine.c -- plume's engines from C alone, without a Lua state: NUTS and random-walk Metropolis on a
** compiled target, and one importance-sampling-and-resampling step.
**
** The model: y_i ~ normal(mu, 1), i = 1..n, with mu ~ normal(0, 10). Its posterior is normal with precision
** 1/100 + n and mean sum(y) / (1/100 + n), so the program can check the samplers against the exact answer.
** Build against an installed plume: cc engine.c $(pkg-config --cflags --libs plume) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "plume.h"

#define N_DATA 20

/* log p(mu | y) up to a constant, as an expression graph: the data are inputs of group P, mu is input X[0] */
static int build_log_posterior(plm_graph *g, int mu)
{
    int i, lp = plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, -0.5 / 100), plm_graph_op(g, PLM_OP_MUL, mu, mu, -1), -1);
    for (i = 0; i < N_DATA; i++) {
        int r = plm_graph_op(g, PLM_OP_SUB, plm_graph_input(g, PLM_GRP_P, i), mu, -1);
        lp = plm_graph_op(g, PLM_OP_SUB, lp, plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, 0.5), plm_graph_op(g, PLM_OP_MUL, r, r, -1), -1), -1);
    }
    return lp;
}

/* Run kernel k; print the posterior mean of mu with its Monte Carlo standard error; return 0 when the mean is
** within 4 MCSE of the exact one. */
static int run(const char *name, const plm_target *t, const plm_kernel *k, double exact_mean, double exact_sd)
{
    plm_mcmc_opts o = {4, 1000, 2000, 1, 2026, 0, NULL};
    plm_draws *D;
    plm_summary s;
    plm_ctx ctx;
    double accept;
    if (plm_mcmc_run(&ctx, t, k, &o, &D, &accept) || plm_draws_summary(&ctx, D, 0, &s)) {
        fprintf(stderr, "%s: %s\n", name, plm_ctx_errmsg(&ctx));
        return 1;
    }
    printf("%-5s mu: mean %.4f (mcse %.4f), sd %.4f, ess %.0f, rhat %.3f, acceptance %.2f; exact mean %.4f, sd %.4f\n",
           name, s.mean, s.mcse_mean, s.sd, s.ess_bulk, s.rhat, accept, exact_mean, exact_sd);
    return fabs(s.mean - exact_mean) <= 4 * s.mcse_mean ? 0 : 1;
}

int main(void)
{
    double y[N_DATA], sum = 0, prec, mean, sd;
    plm_graph *g;
    plm_target *t;
    plm_kernel *nuts, *rwmh;
    plm_ctx ctx;
    plm_rng r;
    int i, mu, bad = 0;

    plm_init();
    plm_rng_init(&r, 7, 0);
    for (i = 0; i < N_DATA; i++) y[i] = 1.5 + plm_rng_normal(&r), sum += y[i];
    prec = 1.0 / 100 + N_DATA;
    mean = sum / prec;
    sd = 1 / sqrt(prec);

    /* MCMC on a compiled target: the gradient is derived symbolically and compiled with the density */
    g = plm_graph_new();
    mu = plm_graph_input(g, PLM_GRP_X, 0);
    if (plm_target_from_graph(&ctx, g, build_log_posterior(g, mu), 1, &mu, y, N_DATA, &t) ||
        plm_kernel_nuts(&ctx, NULL, &nuts) || plm_kernel_rwmh(&ctx, 0, &rwmh)) {
        fprintf(stderr, "engine: %s\n", plm_ctx_errmsg(&ctx));
        return 1;
    }
    bad += run("nuts", t, nuts, mean, sd);
    bad += run("rwmh", t, rwmh, mean, sd);

    /* Importance sampling from the prior, then one systematic resampling step */
    {
        enum { M = 4000 };
        static double x[M], logw[M], w[M];
        static size_t counts[M], anc[M];
        double ess, after = 0;
        void *ws = plm_target_ws_new(t);
        for (i = 0; i < M; i++) {
            x[i] = 10 * plm_rng_normal(&r);
            /* weight = likelihood = posterior / prior */
            logw[i] = plm_target_logp(t, ws, &x[i]) + 0.5 * x[i] * x[i] / 100;
        }
        plm_target_ws_free(t, ws);
        plm_resample_normalise(logw, M, w);
        ess = plm_resample_ess(logw, M);
        if (plm_resample_counts(&ctx, PLM_RESAMPLE_SYSTEMATIC, w, M, M, &r, counts, NULL)) {
            fprintf(stderr, "resample: %s\n", plm_ctx_errmsg(&ctx));
            return 1;
        }
        plm_resample_ancestors(counts, M, anc);
        for (i = 0; i < M; i++) after += x[anc[i]] / M;
        printf("resampling: ESS %.1f of %d prior draws; mean of mu after resampling %.3f (exact %.3f)\n", ess, M,
               after, mean);
        /* with ESS draws the resampled mean has standard error about sd / sqrt(ESS) */
        if (!(fabs(after - mean) <= 5 * sd / sqrt(ess))) bad++;
    }
    printf("%s\n", bad ? "MISMATCH" : "all engines agree with the exact posterior");
    return bad ? 1 : 0;
}
