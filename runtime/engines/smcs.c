/* smcs.c -- SMC samplers for static models (see smcs.h).
**
** The cloud lives component-major (u[k*N + i]), the layout compiled programs read, so one evaluation pass
** scores every particle. Per particle the state is u, its prior term and its K likelihood terms (K = 1 for
** tempering: their sum; K = the number of observed and factor sites for IBIS). The target of a move is
** prior + lambda * (sum of the first nt terms). */
#include "smcs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>

#include "par.h"
#include "transform.h"

void plm_smcs_opts_default(plm_smcs_opts *o)
{
    memset(o, 0, sizeof *o);
    o->method = PLM_SMCS_TEMPERING;
    o->N = 1000;
    o->ess_target = 0.5;
    o->ess_threshold = 0.5;
    o->moves = 5;
    o->chain_length = 10;
    o->scheme = PLM_RESAMPLE_SYSTEMATIC;
    o->seed = 1;
    o->nthreads = 1;
    o->max_steps = 10000;
    o->kernel = PLM_SMCS_RW;
    o->leapfrog = 10;
}

void plm_smcs_result_free(plm_smcs_result *res)
{
    free(res->u), free(res->logw), free(res->lambda), free(res->ess), free(res->accept), free(res->logz_inc);
    memset(res, 0, sizeof *res);
}

typedef struct smcs {
    plm_ctx *ctx;
    const plm_gmodel *m;
    const plm_smcs_opts *o;
    int d, K, nthreads;
    size_t N;
    int *term_site;          /* IBIS: the site of each term */
    plm_prog *eval;          /* outputs: prior, then the K terms */
    /* the cloud: U (d*N), prior (N), T (K*N), lik (N: sum of the first nt terms), logw (N, normalised) */
    double *U, *prior, *T, *lik, *logw, *W;
    /* proposals and the next cloud: the same shapes */
    double *U2, *prior2, *T2, *lik2;
    double *Z;               /* proposals of the current pass (d*N) */
    double *L;               /* d*d: lower Cholesky factor of the proposal covariance, times the scale */
    double *mean;
    plm_rng *rng;            /* stream of particle slot i */
    plm_rng rs;              /* resampling */
    size_t *counts, *anc;
    double *scratch;
    unsigned char *acc;      /* accepted in the current pass */
    long evals;
    int prior_node, *term_node;   /* graph nodes of the prior and of each term (HMC targets) */
    double eps, *sd;         /* HMC: step size, and the cloud's standard deviations (the inverse metric's roots) */
    double *hq, *hp, *hg;    /* HMC: positions, momenta, gradients of a pass (d x n) */
    double *hlp, *heps, *hh0, *hlogu;   /* log densities, step sizes, initial -energies, log uniforms (n) */
} smcs;

/* ---- evaluation ---- */

/* Score n points of Uin (ld) into prior[i] and terms T[k*ldt + i]; lik[i] = sum of the first nt terms. A NaN
** anywhere fails with the site blamed at that point. */
static plm_status evaluate(smcs *S, const double *Uin, size_t ld, size_t n, double *prior, double *T, size_t ldt,
                           double *lik, int nt)
{
    plm_prog_in in[PLM_NGROUPS];
    double *outb[65], **out = S->K + 1 <= 65 ? outb : malloc(((size_t)S->K + 1) * sizeof *out);
    plm_status st;
    size_t i;
    int k;
    if (!out) return plm_fail(S->ctx, PLM_ENOMEM, "smc_sampler: out of memory");
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = Uin;
    in[PLM_GRP_X].ld = ld;
    out[0] = prior;
    for (k = 0; k < S->K; k++) out[k + 1] = T + (size_t)k * ldt;
    st = plm_prog_eval(S->ctx, S->eval, n, in, out, NULL, S->nthreads);
    if (out != outb) free(out);
    if (st) return st;
    S->evals += (long)n;
    for (i = 0; i < n; i++) {
        double s = 0;
        for (k = 0; k < nt; k++) s += T[(size_t)k * ldt + i];
        lik[i] = s;
        if (isnan(prior[i]) || isnan(s)) {
            double *u = malloc(((size_t)S->d + 1) * sizeof *u);
            if (!u) return plm_fail(S->ctx, PLM_ENOMEM, "smc_sampler: out of memory");
            for (k = 0; k < S->d; k++) u[k] = Uin[(size_t)k * ld + i];
            st = plm_gmodel_blame(S->ctx, S->m, u);
            free(u);
            if (st) return plm_fail(S->ctx, PLM_EDOM, "smc_sampler: the log density is NaN at a particle: %s",
                                    S->ctx->msg);
            return plm_fail(S->ctx, PLM_EDOM, "smc_sampler: the log density is NaN at a particle");
        }
    }
    return PLM_OK;
}

/* The program of prior and terms, and the IBIS term sites. */
static plm_status build_eval(smcs *S)
{
    plm_gmodel *m = (plm_gmodel *)S->m;
    plm_graph *g = m->g;
    int i, nt = 0, prior = plm_graph_const(g, 0), lik = plm_graph_const(g, 0), *outs;
    plm_status st;
    for (i = 0; i < m->n; i++) nt += m->sites[i].kind != PLM_GSITE_LATENT && m->sites[i].logp >= 0;
    if (S->o->method == PLM_SMCS_IBIS && nt == 0)
        return plm_fail(S->ctx, PLM_EINVAL, "smc_sampler: method \"ibis\" needs observed or factor sites (the model has "
                        "none)");
    S->K = S->o->method == PLM_SMCS_IBIS ? nt : 1;
    outs = malloc(((size_t)S->K + 1) * sizeof *outs);
    S->term_site = malloc(((size_t)S->K + 1) * sizeof *S->term_site);
    if (!outs || !S->term_site) {
        free(outs);
        return plm_fail(S->ctx, PLM_ENOMEM, "smc_sampler: out of memory");
    }
    nt = 0;
    for (i = 0; i < m->n; i++) {
        const plm_gsite *s = &m->sites[i];
        if (s->logp < 0) continue;
        if (s->kind == PLM_GSITE_LATENT)
            prior = plm_graph_op(g, PLM_OP_ADD, prior, s->logp, -1);
        else if (S->o->method == PLM_SMCS_IBIS)
            S->term_site[nt] = i, outs[1 + nt++] = s->logp;
        else
            lik = plm_graph_op(g, PLM_OP_ADD, lik, s->logp, -1);
    }
    outs[0] = prior;
    if (S->o->method != PLM_SMCS_IBIS) outs[1] = lik, S->term_site[0] = -1;
    for (i = 0; i <= S->K; i++)
        if (outs[i] < 0) {
            free(outs);
            return plm_fail(S->ctx, PLM_ENOMEM, "smc_sampler: out of memory");
        }
    if (!(S->term_node = malloc(((size_t)S->K + 1) * sizeof *S->term_node))) {
        free(outs);
        return plm_fail(S->ctx, PLM_ENOMEM, "smc_sampler: out of memory");
    }
    S->prior_node = prior;
    memcpy(S->term_node, outs + 1, (size_t)S->K * sizeof *outs);
    st = plm_prog_compile(S->ctx, g, S->K + 1, outs, 1u << PLM_GRP_X, &S->eval);
    free(outs);
    return st;
}

/* ---- prior draws ---- */

/* Draw the cloud from the prior (gmodel's ancestral draws), particle i from its stream. */
static plm_status draw_prior(smcs *S)
{
    plm_status st = plm_gmodel_prior_draws(S->ctx, S->m, S->U, S->N, S->rng, S->nthreads, NULL, 0, 1, 0);
    if (st == PLM_ENOTSUP) {
        char why[sizeof S->ctx->msg];
        snprintf(why, sizeof why, "%s", S->ctx->msg);
        return plm_fail(S->ctx, st, "smc_sampler: %s: SMC samplers start from prior draws", why);
    }
    return st;
}

/* ---- moves ---- */

/* Weighted mean and covariance of the cloud (weights W) into S->mean and S->L, then L := scale * chol(cov).
** A covariance that is not positive definite (a collapsed cloud) falls back to its diagonal, floored. */
static void proposal_cov(smcs *S, const double *U, const double *W, size_t N)
{
    const int d = S->d;
    double *C = S->L, sc = S->o->scale > 0 ? S->o->scale : 2.38 / sqrt((double)d);
    gsl_error_handler_t *old;
    gsl_matrix_view v;
    int a, b, bad;
    size_t i;
    for (a = 0; a < d; a++) {
        double s = 0;
        for (i = 0; i < N; i++) s += W[i] * U[(size_t)a * N + i];
        S->mean[a] = s;
    }
    for (a = 0; a < d; a++)
        for (b = 0; b <= a; b++) {
            double s = 0, ma = S->mean[a], mb = S->mean[b];
            const double *ua = U + (size_t)a * N, *ub = U + (size_t)b * N;
            for (i = 0; i < N; i++) s += W[i] * (ua[i] - ma) * (ub[i] - mb);
            C[a * d + b] = C[b * d + a] = s;
        }
    for (a = 0; a < d; a++) C[a * d + a] += 1e-10 * (1 + C[a * d + a]);
    old = gsl_set_error_handler_off();
    v = gsl_matrix_view_array(C, (size_t)d, (size_t)d);
    bad = gsl_linalg_cholesky_decomp1(&v.matrix) != 0;
    gsl_set_error_handler(old);
    for (a = 0; a < d && !bad; a++) bad = !(C[a * d + a] > 0) || !isfinite(C[a * d + a]);
    if (bad) {   /* recompute the diagonal alone */
        for (a = 0; a < d; a++) {
            double s = 0, ma = S->mean[a];
            for (i = 0; i < N; i++) s += W[i] * (U[(size_t)a * N + i] - ma) * (U[(size_t)a * N + i] - ma);
            for (b = 0; b < d; b++) C[a * d + b] = 0;
            C[a * d + a] = sqrt(s > 1e-20 && isfinite(s) ? s : 1e-10);
        }
    }
    for (a = 0; a < d; a++)
        for (b = 0; b < d; b++) C[a * d + b] = b <= a ? sc * C[a * d + b] : 0;
}

/* Proposals for n particles of U (stride N) from slot `from` on, into Z (stride n): u + L z, z from the stream of
** slot j (0..n-1), so chunks on any thread draw the same numbers. */
typedef struct pass {
    smcs *S;
    size_t n;
    const double *U;                  /* from: d x N */
    size_t from;                      /* first slot of the n sources */
} pass;

static void propose_chunk(void *arg, size_t begin, size_t end, int worker)
{
    const pass *P = arg;
    smcs *S = P->S;
    const int d = S->d;
    const size_t n = P->n;
    size_t j;
    int a, b;
    (void)worker;
    for (j = begin; j < end; j++) {
        plm_rng *r = &S->rng[j];
        for (a = 0; a < d; a++) S->Z[(size_t)a * n + j] = plm_rng_normal(r);
        /* Z := u + L z in place: row a reads z_0..z_a, so rows run downwards */
        for (a = d - 1; a >= 0; a--) {
            double s = P->U[(size_t)a * S->N + P->from + j];
            for (b = 0; b <= a; b++) s += S->L[a * d + b] * S->Z[(size_t)b * n + j];
            S->Z[(size_t)a * n + j] = s;
        }
    }
}

static double tempered(double prior, double lik, double lambda)
{
    return lambda > 0 ? prior + lambda * lik : prior;
}

/* Propose for the n particles at slots from..from+n-1 of the cloud (U, prior, T, lik), score the proposals into
** slots 0..n-1 of (Z, prior2, T2, lik2) and decide acceptance into S->acc (one uniform of slot j's stream). */
static plm_status mh_pass(smcs *S, const double *U, size_t from, size_t n, const double *prior, const double *lik,
                          double lambda, int nt, long *naccept)
{
    pass P;
    plm_status st;
    size_t j;
    P.S = S, P.n = n, P.U = U, P.from = from;
    plm_parallel_for(S->nthreads, n, 256, propose_chunk, &P);
    if ((st = evaluate(S, S->Z, n, n, S->prior2, S->T2, S->N, S->lik2, nt))) return st;
    for (j = 0; j < n; j++) {
        double lnew = tempered(S->prior2[j], S->lik2[j], lambda), lold = tempered(prior[from + j], lik[from + j], lambda);
        double u = plm_rng_uniform(&S->rng[j]);
        S->acc[j] = lnew > -INFINITY && (lold == -INFINITY || log(u) < lnew - lold);
        *naccept += S->acc[j];
    }
    return PLM_OK;
}

/* Copy particle src of (Us with leading dimension lds, ps, Ts at stride N, ls) to slot dst of (U, prior, T, lik). */
static void put(smcs *S, double *U, double *prior, double *T, double *lik, size_t dst, const double *Us, size_t lds,
                const double *ps, const double *Ts, const double *ls, size_t src)
{
    int k;
    for (k = 0; k < S->d; k++) U[(size_t)k * S->N + dst] = Us[(size_t)k * lds + src];
    for (k = 0; k < S->K; k++) T[(size_t)k * S->N + dst] = Ts[(size_t)k * S->N + src];
    prior[dst] = ps[src];
    lik[dst] = ls[src];
}

static void swap_clouds(smcs *S)
{
    double *t;
    t = S->U, S->U = S->U2, S->U2 = t;
    t = S->prior, S->prior = S->prior2, S->prior2 = t;
    t = S->T, S->T = S->T2, S->T2 = t;
    t = S->lik, S->lik = S->lik2, S->lik2 = t;
}

/* ---- HMC moves ----
** Every leapfrog step evaluates the log density and its gradient for all the particles of a pass in one call
** of a compiled program (threads over particles); the per-particle arithmetic between calls is plain loops. */

/* The program of prior + lambda * (first nt terms) and its gradient (d + 1 outputs); lambda is datum 0 of
** group P, so every move builds the same graph nodes and only compiles. */
static plm_status hmc_program(smcs *S, int nt, plm_prog **out)
{
    plm_graph *g = S->m->g;
    int lik = plm_graph_const(g, 0), lp, k, *outs;
    plm_status st;
    for (k = 0; k < nt; k++) lik = plm_graph_op(g, PLM_OP_ADD, lik, S->term_node[k], -1);
    lp = plm_graph_op(g, PLM_OP_ADD, S->prior_node,
                      plm_graph_op(g, PLM_OP_MUL, plm_graph_input(g, PLM_GRP_P, 0), lik, -1), -1);
    if (lp < 0 || !(outs = malloc(((size_t)S->d + 1) * sizeof *outs)))
        return plm_fail(S->ctx, PLM_ENOMEM, "smc_sampler: out of memory");
    outs[0] = lp;
    st = plm_graph_grad(S->ctx, g, lp, S->d, S->m->x, outs + 1);
    if (st == PLM_ENOTSUP)
        st = plm_fail(S->ctx, PLM_ENOTSUP, "smc_sampler: kernel \"hmc\" needs the gradient of the log density, and "
                      "it has none (%s); use kernel \"rw\"", S->ctx->msg);
    if (!st) st = plm_prog_compile(S->ctx, g, S->d + 1, outs, 1u << PLM_GRP_X, out);
    free(outs);
    return st;
}

/* Log densities into S->hlp and gradients into S->hg (d x n) at the n points of S->hq. */
static plm_status hmc_eval(smcs *S, const plm_prog *p, double lambda, size_t n, double **out)
{
    plm_prog_in in[PLM_NGROUPS];
    int k;
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = S->hq;
    in[PLM_GRP_X].ld = n;
    in[PLM_GRP_P].p = &lambda;
    out[0] = S->hlp;
    for (k = 0; k < S->d; k++) out[k + 1] = S->hg + (size_t)k * n;
    S->evals += (long)n;
    return plm_prog_eval(S->ctx, p, n, in, out, NULL, S->nthreads);
}

/* One HMC step of the particles in slots from..from+n-1, the results in slots to..to+n-1. Particle j draws its
** step-size jitter, momentum and acceptance uniform from stream j, in that order. */
static plm_status hmc_pass(smcs *S, const plm_prog *prog, double lambda, size_t from, size_t to, size_t n,
                           long *naccept)
{
    const int d = S->d, nleap = S->o->leapfrog;
    const size_t N = S->N;
    double **out = malloc(((size_t)d + 1) * sizeof *out);
    plm_status st;
    size_t j;
    int k, l;
    if (!out) return plm_fail(S->ctx, PLM_ENOMEM, "smc_sampler: out of memory");
    for (k = 0; k < d; k++) memcpy(S->hq + (size_t)k * n, S->U + (size_t)k * N + from, n * sizeof *S->hq);
    if ((st = hmc_eval(S, prog, lambda, n, out))) goto done;
    for (j = 0; j < n; j++) {
        plm_rng *r = &S->rng[j];
        double k0 = 0;
        S->heps[j] = S->eps * (0.8 + 0.4 * plm_rng_uniform(r));
        /* p ~ N(0, M) with M = diag(1 / sd^2): p = z / sd, kinetic energy 0.5 sum (sd p)^2 */
        for (k = 0; k < d; k++) {
            double z = plm_rng_normal(r);
            S->hp[(size_t)k * n + j] = z / S->sd[k];
            k0 += 0.5 * z * z;
        }
        S->hh0[j] = S->hlp[j] - k0;
        S->hlogu[j] = log(plm_rng_uniform(r));
    }
    for (l = 0; l < nleap; l++) {
        if (plm_interrupted()) {
            st = plm_fail(S->ctx, PLM_EINTR, "smc_sampler: interrupted");
            goto done;
        }
        for (k = 0; k < d; k++) {
            double *q = S->hq + (size_t)k * n, *p = S->hp + (size_t)k * n, *g = S->hg + (size_t)k * n;
            double v = S->sd[k] * S->sd[k];
            for (j = 0; j < n; j++) {
                p[j] += 0.5 * S->heps[j] * g[j];
                q[j] += S->heps[j] * v * p[j];
            }
        }
        if ((st = hmc_eval(S, prog, lambda, n, out))) goto done;
        for (k = 0; k < d; k++) {
            double *p = S->hp + (size_t)k * n, *g = S->hg + (size_t)k * n;
            for (j = 0; j < n; j++) p[j] += 0.5 * S->heps[j] * g[j];
        }
    }
    for (j = 0; j < n; j++) {
        double k1 = 0, h1;
        int ok;
        for (k = 0; k < d; k++) {
            double sp = S->sd[k] * S->hp[(size_t)k * n + j];
            k1 += 0.5 * sp * sp;
        }
        h1 = S->hlp[j] - k1;
        /* a non-finite end point (a divergence) is rejected */
        ok = isfinite(h1) && (S->hh0[j] == -INFINITY || S->hlogu[j] < h1 - S->hh0[j]);
        *naccept += ok;
        for (k = 0; k < d; k++)
            S->U[(size_t)k * N + to + j] = ok ? S->hq[(size_t)k * n + j] : S->U[(size_t)k * N + from + j];
    }
done:
    free(out);
    return st;
}

/* The weighted standard deviation of each coordinate (floored) into S->sd. */
static void cloud_sd(smcs *S, const double *W)
{
    size_t i, N = S->N;
    int a;
    for (a = 0; a < S->d; a++) {
        const double *ua = S->U + (size_t)a * N;
        double m = 0, v = 0;
        for (i = 0; i < N; i++) m += W[i] * ua[i];
        for (i = 0; i < N; i++) v += W[i] * (ua[i] - m) * (ua[i] - m);
        S->sd[a] = v > 1e-20 && isfinite(v) ? sqrt(v) : 1e-10;
    }
}

/* HMC moves after resampling (the starting points are in slots 0..M-1): in place, or waste-free chains; then
** the cloud's terms are evaluated again. */
static plm_status hmc_moves(smcs *S, double lambda, int nt, size_t M, long *nacc, long *nprop)
{
    plm_prog *p;
    plm_status st;
    int s;
    if ((st = hmc_program(S, nt, &p))) return st;
    if (!S->o->waste_free)
        for (s = 0; s < S->o->moves; s++) {
            if ((st = hmc_pass(S, p, lambda, 0, 0, S->N, nacc))) return st;
            *nprop += (long)S->N;
        }
    else
        for (s = 1; s < (int)S->o->chain_length; s++) {
            if ((st = hmc_pass(S, p, lambda, (size_t)(s - 1) * M, (size_t)s * M, M, nacc))) return st;
            *nprop += (long)M;
        }
    return evaluate(S, S->U, S->N, S->N, S->prior, S->T, S->N, S->lik, nt);
}

/* Resample the weighted cloud (S->W) and move it with Metropolis steps targeting prior + lambda * (first nt
** terms); the weights become equal. Writes the mean acceptance rate. */
static plm_status resample_move(smcs *S, double lambda, int nt, double *accept)
{
    const size_t N = S->N;
    size_t j, i, M;
    long nacc = 0, nprop = 0;
    int s, k;
    plm_status st;
    if (S->o->kernel == PLM_SMCS_HMC) cloud_sd(S, S->W);
    else proposal_cov(S, S->U, S->W, N);
    M = S->o->waste_free ? N / S->o->chain_length : N;
    if ((st = plm_resample_counts(S->ctx, S->o->scheme, S->W, N, M, &S->rs, S->counts, S->scratch))) return st;
    plm_resample_ancestors(S->counts, N, S->anc);
    /* the starting points into slots 0..M-1 of the second cloud */
    for (j = 0; j < M; j++) put(S, S->U2, S->prior2, S->T2, S->lik2, j, S->U, N, S->prior, S->T, S->lik, S->anc[j]);
    swap_clouds(S);
    if (S->o->kernel == PLM_SMCS_HMC) {
        double rate;
        if ((st = hmc_moves(S, lambda, nt, M, &nacc, &nprop))) return st;
        rate = (double)nacc / (double)nprop;
        if (rate > 0.9) S->eps *= 1.2;
        else if (rate < 0.6) S->eps *= 0.6;
    } else if (!S->o->waste_free) {
        for (s = 0; s < S->o->moves; s++) {
            if (plm_interrupted()) return plm_fail(S->ctx, PLM_EINTR, "smc_sampler: interrupted");
            if ((st = mh_pass(S, S->U, 0, N, S->prior, S->lik, lambda, nt, &nacc))) return st;
            nprop += (long)N;
            for (j = 0; j < N; j++)
                if (S->acc[j]) {
                    for (k = 0; k < S->d; k++) S->U[(size_t)k * N + j] = S->Z[(size_t)k * N + j];
                    for (k = 0; k < S->K; k++) S->T[(size_t)k * N + j] = S->T2[(size_t)k * N + j];
                    S->prior[j] = S->prior2[j], S->lik[j] = S->lik2[j];
                }
        }
    } else {
        /* chain j's state at step s sits in slot s*M + j: step s proposes from slot (s-1)*M + j */
        size_t P = S->o->chain_length;
        for (s = 1; s < (int)P; s++) {
            size_t from = (size_t)(s - 1) * M, to = (size_t)s * M;
            if (plm_interrupted()) return plm_fail(S->ctx, PLM_EINTR, "smc_sampler: interrupted");
            if ((st = mh_pass(S, S->U, from, M, S->prior, S->lik, lambda, nt, &nacc))) return st;
            nprop += (long)M;
            for (j = 0; j < M; j++) {
                if (S->acc[j])
                    put(S, S->U, S->prior, S->T, S->lik, to + j, S->Z, M, S->prior2, S->T2, S->lik2, j);
                else
                    put(S, S->U, S->prior, S->T, S->lik, to + j, S->U, N, S->prior, S->T, S->lik, from + j);
            }
        }
    }
    for (i = 0; i < N; i++) S->logw[i] = -log((double)N), S->W[i] = 1 / (double)N;
    *accept = nprop ? (double)nacc / (double)nprop : NAN;
    return PLM_OK;
}

/* ---- the samplers ---- */

/* Add loginc (NULL: lambda * lik) to the log weights; returns the log evidence increment log sum W exp(inc) and
** renormalises. -inf when every particle gets weight 0. */
static double reweight(smcs *S, const double *loginc, double delta)
{
    size_t i, N = S->N;
    double lz;
    for (i = 0; i < N; i++) S->logw[i] += loginc ? loginc[i] : (delta > 0 ? delta * S->lik[i] : 0);
    lz = plm_resample_normalise(S->logw, N, S->W);
    if (lz == -INFINITY || isnan(lz)) return lz;
    for (i = 0; i < N; i++) S->logw[i] = S->W[i] > 0 ? log(S->W[i]) : -INFINITY;
    return lz;
}

/* The CESS fraction of delta * lik under the current weights. */
static double cess_at(smcs *S, double delta, double *tmp)
{
    size_t i;
    for (i = 0; i < S->N; i++) tmp[i] = delta > 0 ? delta * S->lik[i] : 0;
    return plm_resample_cess(S->W, tmp, S->N) / (double)S->N;
}

/* Which site makes every particle's likelihood 0: blame at particle 0. */
static plm_status all_dead(smcs *S, const char *when)
{
    double *u = malloc(((size_t)S->d + 1) * sizeof *u);
    plm_ctx bc;
    int k;
    if (!u) return plm_fail(S->ctx, PLM_ENOMEM, "smc_sampler: out of memory");
    for (k = 0; k < S->d; k++) u[k] = S->U[(size_t)k * S->N];
    plm_ctx_clear(&bc);
    plm_gmodel_blame(&bc, S->m, u);
    free(u);
    return plm_fail(S->ctx, PLM_EDEAD, "smc_sampler: every particle has likelihood 0 %s%s%s", when,
                    bc.status ? "; at the first, " : "", bc.status ? bc.msg : "");
}

/* Grow *p to nc doubles; 0 when memory ran out (*p then unchanged). */
static int grow(double **p, long nc)
{
    double *q = realloc(*p, (size_t)nc * sizeof *q);
    if (!q) return 0;
    *p = q;
    return 1;
}

/* Append one step to the result's series. */
static plm_status push_step(plm_ctx *ctx, plm_smcs_result *res, long *cap, double lambda, double ess, double acc,
                            double lz)
{
    if (res->steps == *cap) {
        long nc = *cap ? 2 * *cap : 64;
        if (!grow(&res->lambda, nc) || !grow(&res->ess, nc) || !grow(&res->accept, nc) || !grow(&res->logz_inc, nc))
            return plm_fail(ctx, PLM_ENOMEM, "smc_sampler: out of memory");
        *cap = nc;
    }
    res->lambda[res->steps] = lambda;
    res->ess[res->steps] = ess;
    res->accept[res->steps] = acc;
    res->logz_inc[res->steps++] = lz;
    return PLM_OK;
}

static plm_status run_tempering(smcs *S, plm_smcs_result *res, long *cap, double *tmp)
{
    double lambda = 0, acc;
    plm_status st;
    size_t i;
    for (i = 0; i < S->N && !(S->lik[i] > -INFINITY); i++) {}
    if (i == S->N) return all_dead(S, "at every prior draw");
    while (lambda < 1) {
        double lo = 0, hi = 1 - lambda, delta, lz, ess;
        int it;
        if (res->steps >= S->o->max_steps)
            return plm_fail(S->ctx, PLM_EDEAD, "smc_sampler: tempering did not reach temperature 1 in %ld steps (at %g); "
                            "raise max_steps or particles", S->o->max_steps, lambda);
        if (plm_interrupted()) return plm_fail(S->ctx, PLM_EINTR, "smc_sampler: interrupted");
        if (cess_at(S, hi, tmp) >= S->o->ess_target)
            delta = hi;
        else {
            for (it = 0; it < 100 && hi - lo > 1e-12 * (lambda + hi); it++) {
                double mid = 0.5 * (lo + hi);
                if (cess_at(S, mid, tmp) >= S->o->ess_target) lo = mid;
                else hi = mid;
            }
            delta = lo > 0 ? lo : hi;
        }
        lz = reweight(S, NULL, delta);
        if (!(lz > -INFINITY)) return all_dead(S, "after reweighting");
        res->logz += lz;
        lambda = delta >= 1 - lambda ? 1 : lambda + delta;
        ess = plm_resample_ess(S->logw, S->N) / (double)S->N;
        if ((st = resample_move(S, lambda, 1, &acc))) return st;
        res->moves_done++;
        if ((st = push_step(S->ctx, res, cap, lambda, ess, acc, lz))) return st;
    }
    return PLM_OK;
}

static plm_status run_ibis(smcs *S, plm_smcs_result *res, long *cap)
{
    const size_t N = S->N;
    plm_status st;
    size_t i;
    int t;
    for (t = 0; t < S->K; t++) {
        double lz, ess, acc = NAN;
        const double *inc = S->T + (size_t)t * N;
        if (plm_interrupted()) return plm_fail(S->ctx, PLM_EINTR, "smc_sampler: interrupted");
        lz = reweight(S, inc, 0);
        if (!(lz > -INFINITY)) {
            char when[300];
            snprintf(when, sizeof when, "at term %d ('%s')", t + 1, S->m->sites[S->term_site[t]].name);
            return all_dead(S, when);
        }
        res->logz += lz;
        for (i = 0; i < N; i++) S->lik[i] += inc[i];
        ess = plm_resample_ess(S->logw, N) / (double)N;
        if (ess < S->o->ess_threshold) {
            if ((st = resample_move(S, 1, t + 1, &acc))) return st;
            res->moves_done++;
        }
        if ((st = push_step(S->ctx, res, cap, 1, ess, acc, lz))) return st;
    }
    return PLM_OK;
}

static plm_status check_opts(plm_ctx *ctx, const plm_smcs_opts *o)
{
    if (o->N < 2) return plm_fail(ctx, PLM_EINVAL, "smc_sampler: particles must be >= 2 (got %zu)", o->N);
    if (!(o->ess_target > 0 && o->ess_target < 1))
        return plm_fail(ctx, PLM_EINVAL, "smc_sampler: ess_target must be in (0, 1) (got %g)", o->ess_target);
    if (!(o->ess_threshold > 0 && o->ess_threshold <= 1))
        return plm_fail(ctx, PLM_EINVAL, "smc_sampler: ess_threshold must be in (0, 1] (got %g)", o->ess_threshold);
    if (o->moves < 1) return plm_fail(ctx, PLM_EINVAL, "smc_sampler: moves must be >= 1 (got %d)", o->moves);
    if (!(o->scale >= 0) || !isfinite(o->scale))
        return plm_fail(ctx, PLM_EINVAL, "smc_sampler: scale must be > 0 (got %g)", o->scale);
    if (o->leapfrog < 1) return plm_fail(ctx, PLM_EINVAL, "smc_sampler: leapfrog must be >= 1 (got %d)", o->leapfrog);
    if (!(o->step_size >= 0) || !isfinite(o->step_size))
        return plm_fail(ctx, PLM_EINVAL, "smc_sampler: step_size must be > 0 (got %g)", o->step_size);
    if (o->max_steps < 1) return plm_fail(ctx, PLM_EINVAL, "smc_sampler: max_steps must be >= 1 (got %ld)", o->max_steps);
    if (o->waste_free && (o->chain_length < 2 || o->N % o->chain_length != 0 || o->N / o->chain_length < 2))
        return plm_fail(ctx, PLM_EINVAL, "smc_sampler: waste-free moves need chain_length >= 2 dividing particles into "
                        "at least 2 chains (got particles = %zu, chain_length = %zu)", o->N, o->chain_length);
    return PLM_OK;
}

plm_status plm_smcs_run(plm_ctx *ctx, plm_gmodel *m, const plm_smcs_opts *o, plm_smcs_result *res)
{
    smcs S;
    plm_status st;
    size_t N = o->N, i, dN;
    long cap = 0;
    double *tmp = NULL;
    memset(res, 0, sizeof *res);
    if ((st = check_opts(ctx, o))) return st;
    if (!m->finished && (st = plm_gmodel_finish(ctx, m))) return st;
    {   /* the moves (random walk, HMC) are continuous: a discrete site has no move here */
        int c = plm_gmodel_first_discrete(m);
        if (c >= 0)
            return plm_failm(ctx, PLM_ENOTSUP, "smc_sampler", "needs a static model with continuous latent sites: site "
                             "'%s' is discrete (%s)", m->sites[c].name, plm_dist_info_of((plm_dist_kind)m->sites[c].dist)->name);
    }
    memset(&S, 0, sizeof S);
    S.ctx = ctx, S.m = m, S.o = o, S.N = N, S.d = m->dim;
    S.nthreads = o->nthreads > 0 ? o->nthreads : plm_default_threads();
    if ((st = build_eval(&S))) goto done;
    dN = (size_t)S.d * N;
    S.U = malloc(dN * sizeof *S.U), S.U2 = malloc(dN * sizeof *S.U2), S.Z = malloc(dN * sizeof *S.Z);
    S.T = malloc((size_t)S.K * N * sizeof *S.T), S.T2 = malloc((size_t)S.K * N * sizeof *S.T2);
    S.prior = malloc(N * sizeof(double)), S.prior2 = malloc(N * sizeof(double));
    S.lik = malloc(N * sizeof(double)), S.lik2 = malloc(N * sizeof(double));
    S.logw = malloc(N * sizeof(double)), S.W = malloc(N * sizeof(double)), S.scratch = malloc(N * sizeof(double));
    tmp = malloc(N * sizeof *tmp);
    S.L = malloc((size_t)S.d * (size_t)S.d * sizeof *S.L), S.mean = malloc((size_t)S.d * sizeof *S.mean);
    S.rng = malloc(N * sizeof *S.rng), S.counts = malloc(N * sizeof *S.counts), S.anc = malloc(N * sizeof *S.anc);
    S.acc = malloc(N);
    S.sd = malloc(((size_t)S.d + 1) * sizeof *S.sd);
    if (o->kernel == PLM_SMCS_HMC) {
        S.hq = malloc(dN * sizeof(double)), S.hp = malloc(dN * sizeof(double)), S.hg = malloc(dN * sizeof(double));
        S.hlp = malloc(N * sizeof(double)), S.heps = malloc(N * sizeof(double)), S.hh0 = malloc(N * sizeof(double));
        S.hlogu = malloc(N * sizeof(double));
        if (!S.hq || !S.hp || !S.hg || !S.hlp || !S.heps || !S.hh0 || !S.hlogu) {
            st = plm_fail(ctx, PLM_ENOMEM, "smc_sampler: out of memory for %zu particles of dimension %d", N, S.d);
            goto done;
        }
    }
    S.eps = o->step_size > 0 ? o->step_size : 0.5;
    if (!S.sd || !S.U || !S.U2 || !S.Z || !S.T || !S.T2 || !S.prior || !S.prior2 || !S.lik || !S.lik2 || !S.logw || !S.W ||
        !S.scratch || !tmp || !S.L || !S.mean || !S.rng || !S.counts || !S.anc || !S.acc) {
        st = plm_fail(ctx, PLM_ENOMEM, "smc_sampler: out of memory for %zu particles of dimension %d", N, S.d);
        goto done;
    }
    for (i = 0; i < N; i++) plm_rng_init(&S.rng[i], o->seed, (uint64_t)i + 1);
    plm_rng_init(&S.rs, o->seed, 0);
    if ((st = draw_prior(&S))) goto done;
    if ((st = evaluate(&S, S.U, N, N, S.prior, S.T, N, S.lik, o->method == PLM_SMCS_IBIS ? 0 : 1))) goto done;
    for (i = 0; i < N; i++) S.logw[i] = -log((double)N), S.W[i] = 1 / (double)N;
    st = o->method == PLM_SMCS_IBIS ? run_ibis(&S, res, &cap) : run_tempering(&S, res, &cap, tmp);
    if (st) goto done;
    res->N = N, res->dim = S.d;
    res->u = S.U, S.U = NULL;
    res->logw = S.logw, S.logw = NULL;
    for (i = 1; i < N && !res->weighted; i++) res->weighted = res->logw[i] != res->logw[0];
    res->evals = S.evals;
done:
    if (st) plm_smcs_result_free(res);
    free(S.U), free(S.U2), free(S.Z), free(S.T), free(S.T2), free(S.prior), free(S.prior2), free(S.lik), free(S.lik2);
    free(S.logw), free(S.W), free(S.scratch), free(tmp), free(S.L), free(S.mean), free(S.rng), free(S.counts);
    free(S.anc), free(S.acc), free(S.term_site), free(S.term_node), free(S.sd);
    free(S.hq), free(S.hp), free(S.hg), free(S.hlp), free(S.heps), free(S.hh0), free(S.hlogu);
    return st;
}
