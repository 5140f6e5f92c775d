/* smc2.c -- SMC^2 over the native particle filter (see smc2.h). The theta-cloud is particle-major
** (u[i*d + j]); inc[i*T + t] holds the filter increments of particle i. */
#include "smc2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>

#include "comm.h"
#include "par.h"

void plm_smc2_opts_default(plm_smc2_opts *o)
{
    memset(o, 0, sizeof *o);
    plm_pf_opts_default(&o->pf);
    o->pf.N = 100;
    o->Ntheta = 1000;
    o->ess_threshold = 0.5;
    o->moves = 3;
    o->nx_accept = 0.2;
    o->scheme = PLM_RESAMPLE_SYSTEMATIC;
    o->seed = 1;
    o->nthreads = 1;
}

void plm_smc2_result_free(plm_smc2_result *res)
{
    free(res->theta), free(res->logw), free(res->logz_inc), free(res->ess), free(res->accept);
    memset(res, 0, sizeof *res);
}

typedef struct smc2 {
    const plm_ssm *m;
    const plm_ssm_prior *P;
    const plm_smc2_opts *o;
    long T;
    const double *ys;
    size_t N;
    int d;
    double *u, *lprior, *inc, *cum;       /* the cloud: u, log prior (+ Jacobian), increments, their sum to t */
    double *u2, *lprior2, *inc2, *cum2;   /* the other buffer (resampling, proposals) */
    double *L;                            /* scaled Cholesky factor of the proposal covariance */
    plm_rng *rng;
    unsigned char *acc;
    plm_status *st;                       /* per slot: a filter failure other than a zero likelihood */
    plm_ctx *ctxs;                        /* its message */
    long t;                               /* moves target y_1..y_(t+1) */
    size_t nx;                            /* x-particles of the filters now */
    int proposing;                        /* 0: initial filters; 1: a PMMH step (proposals into the second buffer,
                                          ** acceptance in acc); 2: the exchange step (new filters at u, into the
                                          ** second buffer) */
    int K, rank;                          /* ranks sharing the theta-particles (1: none) */
    size_t lo, hi;                        /* this rank's theta-particles */
    int pf_spread, pf_threads;            /* the filters: spread over the ranks; their threads */
    double *rec;                          /* records for the all-gather (chains over ranks) */
} smc2;

/* Run particle i's filter at u (d coordinates) with a seed from its stream: increments into inc (T), the log
** prior + Jacobian returned. A zero likelihood leaves every increment -inf. */
static double run_filter(smc2 *S, size_t i, plm_ssm *mm, double *par, const double *u, double *inc)
{
    plm_pf_opts o = S->o->pf;
    plm_pf_result res;
    o.N = S->nx;
    plm_status st;
    double lp = plm_ssm_prior_set(S->P, u, par);
    long t;
    o.seed = plm_rng_next(&S->rng[i]);
    o.nthreads = S->pf_threads;
    o.distribute = S->pf_spread;
    o.history = 0;
    o.moments = NULL;
    if (lp == -INFINITY) st = PLM_EDOM;
    else st = plm_pf_run(&S->ctxs[i], mm, S->T, S->ys, &o, &res);
    if (st == PLM_OK) {
        memcpy(inc, res.logz_inc, (size_t)S->T * sizeof *inc);
        plm_pf_result_free(&res);
        return lp;
    }
    if (st != PLM_EDOM) S->st[i] = st;
    for (t = 0; t < S->T; t++) inc[t] = -INFINITY;
    return lp;
}

static void chunk(void *arg, size_t begin, size_t end, int worker)
{
    smc2 *S = arg;
    const int d = S->d;
    double *par = malloc(((size_t)S->m->np + 1) * sizeof *par), z[64];
    plm_ssm mm;
    size_t i;
    int a, b;
    long t;
    (void)worker;
    if (!par) {
        for (i = begin; i < end; i++) S->st[i] = PLM_ENOMEM;
        return;
    }
    plm_ssm_with_params(S->m, par, &mm);
    begin += S->lo, end += S->lo;
    for (i = begin; i < end; i++) {
        double *ui = S->u + i * (size_t)d, *vi = S->u2 + i * (size_t)d, lnew, lold;
        if (plm_interrupted()) {
            S->st[i] = PLM_EINTR;
            continue;
        }
        if (!S->proposing) {
            S->lprior[i] = run_filter(S, i, &mm, par, ui, S->inc + i * (size_t)S->T);
            continue;
        }
        if (S->proposing == 2)   /* the exchange step: the same point, a new filter */
            memcpy(vi, ui, (size_t)d * sizeof *vi);
        else {
            for (a = 0; a < d; a++) z[a] = plm_rng_normal(&S->rng[i]);
            for (a = 0; a < d; a++) {
                double s = ui[a];
                for (b = 0; b <= a; b++) s += S->L[a * d + b] * z[b];
                vi[a] = s;
            }
        }
        S->lprior2[i] = run_filter(S, i, &mm, par, vi, S->inc2 + i * (size_t)S->T);
        S->cum2[i] = 0;
        for (t = 0; t <= S->t; t++) S->cum2[i] += S->inc2[i * (size_t)S->T + (size_t)t];
        if (S->proposing == 2) continue;
        lnew = S->lprior2[i] + S->cum2[i];
        lold = S->lprior[i] + S->cum[i];
        S->acc[i] = lnew > -INFINITY && (lold == -INFINITY || log(plm_rng_uniform(&S->rng[i])) < lnew - lold);
    }
    free(par);
}

/* Theta-particle rank of block owner: the block of rank r is [part(r), part(r + 1)). */
static size_t part(size_t N, int r, int K)
{
    return (N * (size_t)r + (size_t)K - 1) / (size_t)K;
}

/* One round of filters (chunk) over this rank's theta-particles, then, with the particles shared over ranks,
** what each rank computed goes to every rank: per particle its status, log prior, sum, acceptance, proposal,
** increments and stream state, so every rank continues with the whole cloud. */
static plm_status round_of_filters(plm_ctx *ctx, smc2 *S, int nthreads)
{
    const size_t d = (size_t)S->d, T = (size_t)S->T, w = 4 + d + T + 4, N = S->N;
    size_t i, *counts;
    int r;
    plm_status st;
    plm_parallel_for(S->pf_spread ? 1 : nthreads, S->hi - S->lo, 1, chunk, S);
    if (S->K == 1) return PLM_OK;
    for (i = S->lo; i < S->hi; i++) {
        double *R = S->rec + i * w;
        int two = S->proposing != 0;
        R[0] = (double)S->st[i];
        R[1] = two ? S->lprior2[i] : S->lprior[i];
        R[2] = S->cum2[i];
        R[3] = S->acc[i];
        memcpy(R + 4, S->u2 + i * d, d * sizeof *R);
        memcpy(R + 4 + d, (two ? S->inc2 : S->inc) + i * T, T * sizeof *R);
        memcpy(R + 4 + d + T, S->rng[i].s, sizeof S->rng[i].s);
    }
    if (!(counts = malloc((size_t)S->K * sizeof *counts))) return plm_fail(ctx, PLM_ENOMEM, "smc2: out of memory");
    for (r = 0; r < S->K; r++) counts[r] = (part(N, r + 1, S->K) - part(N, r, S->K)) * w * sizeof *S->rec;
    st = plm_comm_allgatherv(ctx, NULL, counts, S->rec);
    free(counts);
    if (st) return st;
    for (r = 0; r < S->K; r++) {
        if (r == S->rank) continue;
        for (i = part(N, r, S->K); i < part(N, r + 1, S->K); i++) {
            const double *R = S->rec + i * w;
            int two = S->proposing != 0;
            S->st[i] = (plm_status)R[0];
            if (S->st[i])
                snprintf(S->ctxs[i].msg, sizeof S->ctxs[i].msg, "smc2: theta-particle %zu failed on rank %d (its message "
                         "says why)", i + 1, r);
            *(two ? &S->lprior2[i] : &S->lprior[i]) = R[1];
            S->cum2[i] = R[2];
            S->acc[i] = (unsigned char)R[3];
            memcpy(S->u2 + i * d, R + 4, d * sizeof *R);
            memcpy((two ? S->inc2 : S->inc) + i * T, R + 4 + d, T * sizeof *R);
            memcpy(S->rng[i].s, R + 4 + d + T, sizeof S->rng[i].s);
        }
    }
    return PLM_OK;
}

/* The first slot's failure (lowest index: the same whatever the threads), into ctx. */
static plm_status first_failure(smc2 *S, plm_ctx *ctx)
{
    size_t i;
    for (i = 0; i < S->N; i++)
        if (S->st[i]) {
            if (S->st[i] == PLM_EINTR) return plm_fail(ctx, PLM_EINTR, "smc2: interrupted");
            if (S->st[i] == PLM_ENOMEM) return plm_fail(ctx, PLM_ENOMEM, "smc2: out of memory");
            memcpy(ctx->msg, S->ctxs[i].msg, sizeof ctx->msg);
            return ctx->status = S->st[i];
        }
    return PLM_OK;
}

/* L := scale * chol(weighted covariance of u), the diagonal when that fails. */
static void proposal_cov(smc2 *S, const double *W)
{
    const int d = S->d;
    double mean[64], *C = S->L, sc = S->o->scale > 0 ? S->o->scale : 2.38 / sqrt((double)d);
    gsl_error_handler_t *old;
    gsl_matrix_view v;
    size_t i;
    int a, b, bad;
    for (a = 0; a < d; a++) {
        mean[a] = 0;
        for (i = 0; i < S->N; i++) mean[a] += W[i] * S->u[i * (size_t)d + (size_t)a];
    }
    for (a = 0; a < d; a++)
        for (b = 0; b <= a; b++) {
            double s = 0;
            for (i = 0; i < S->N; i++)
                s += W[i] * (S->u[i * (size_t)d + (size_t)a] - mean[a]) * (S->u[i * (size_t)d + (size_t)b] - mean[b]);
            C[a * d + b] = C[b * d + a] = s;
        }
    for (a = 0; a < d; a++) C[a * d + a] += 1e-10 * (1 + C[a * d + a]);
    old = gsl_set_error_handler_off();
    v = gsl_matrix_view_array(C, (size_t)d, (size_t)d);
    bad = gsl_linalg_cholesky_decomp1(&v.matrix) != 0;
    gsl_set_error_handler(old);
    for (a = 0; a < d && !bad; a++) bad = !(C[a * d + a] > 0) || !isfinite(C[a * d + a]);
    for (a = 0; a < d; a++)
        for (b = 0; b < d; b++)
            if (bad) C[a * d + b] = a == b ? sqrt(C[a * d + a] > 1e-20 && isfinite(C[a * d + a]) ? C[a * d + a] : 1e-10) : 0;
    for (a = 0; a < d; a++)
        for (b = 0; b < d; b++) C[a * d + b] = b <= a ? sc * C[a * d + b] : 0;
}

static void copy_particle(smc2 *S, size_t dst, size_t src, int from2)
{
    const size_t d = (size_t)S->d, T = (size_t)S->T;
    double *u = from2 ? S->u2 : S->u, *lp = from2 ? S->lprior2 : S->lprior, *inc = from2 ? S->inc2 : S->inc;
    double *cum = from2 ? S->cum2 : S->cum;
    double *ut = from2 ? S->u : S->u2, *lpt = from2 ? S->lprior : S->lprior2, *inct = from2 ? S->inc : S->inc2;
    double *cumt = from2 ? S->cum : S->cum2;
    memcpy(ut + dst * d, u + src * d, d * sizeof *u);
    memcpy(inct + dst * T, inc + src * T, T * sizeof *inc);
    lpt[dst] = lp[src];
    cumt[dst] = cum[src];
}

plm_status plm_smc2_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_ssm_prior *P,
                        const plm_smc2_opts *o, plm_smc2_result *res)
{
    smc2 S;
    plm_rng rs;
    plm_status st;
    const size_t N = o->Ntheta;
    double *logw = NULL, *W = NULL, *scratch = NULL, *par = NULL;
    size_t *counts = NULL, *anc = NULL, i;
    int nthreads = o->nthreads > 0 ? o->nthreads : plm_default_threads(), j;
    long t;
    memset(res, 0, sizeof *res);
    memset(&S, 0, sizeof S);
    if (P->nfree < 1) return plm_fail(ctx, PLM_EINVAL, "smc2: no parameter has a prior: nothing to sample");
    if (P->nfree > 64) return plm_fail(ctx, PLM_EINVAL, "smc2: at most 64 parameters with priors (got %d)", P->nfree);
    if (T < 1) return plm_fail(ctx, PLM_EINVAL, "smc2: no observations (T = %ld)", T);
    if (N < 2) return plm_fail(ctx, PLM_EINVAL, "smc2: theta particles must be >= 2 (got %zu)", N);
    if (o->pf.N < 1) return plm_fail(ctx, PLM_EINVAL, "smc2: x particles must be >= 1 (got %zu)", o->pf.N);
    if (!(o->ess_threshold > 0 && o->ess_threshold <= 1))
        return plm_fail(ctx, PLM_EINVAL, "smc2: ess_threshold must be in (0, 1] (got %g)", o->ess_threshold);
    if (o->moves < 1) return plm_fail(ctx, PLM_EINVAL, "smc2: moves must be >= 1 (got %d)", o->moves);
    if (!(o->nx_accept > 0 && o->nx_accept < 1))
        return plm_fail(ctx, PLM_EINVAL, "smc2: nx_accept must be in (0, 1) (got %g)", o->nx_accept);
    if (!(o->scale >= 0) || !isfinite(o->scale)) return plm_fail(ctx, PLM_EINVAL, "smc2: scale must be > 0 (got %g)", o->scale);
    if ((st = plm_ssm_prior_check(ctx, m, P))) return st;
    S.m = m, S.P = P, S.o = o, S.T = T, S.ys = ys, S.N = N, S.d = P->nfree, S.nx = o->pf.N;
    S.K = 1, S.lo = 0, S.hi = N, S.pf_threads = 1;
    if (plm_comm_size() > 1 && o->distribute == PLM_SPREAD_PARTICLES) {
        S.pf_spread = 1;   /* every theta-particle in turn on the main thread, its filter over the ranks */
        S.pf_threads = nthreads;
    } else if (plm_comm_size() > 1 && o->distribute == PLM_SPREAD_CHAINS) {
        S.K = plm_comm_size(), S.rank = plm_comm_rank();
        S.lo = part(N, S.rank, S.K), S.hi = part(N, S.rank + 1, S.K);
        if (!(S.rec = malloc(N * (8 + (size_t)S.d + (size_t)T) * sizeof *S.rec))) {
            st = plm_fail(ctx, PLM_ENOMEM, "smc2: out of memory for %zu theta-particles and %ld observations", N, T);
            goto done;
        }
    }
    S.u = malloc(N * (size_t)S.d * sizeof *S.u), S.u2 = malloc(N * (size_t)S.d * sizeof *S.u2);
    S.inc = malloc(N * (size_t)T * sizeof *S.inc), S.inc2 = malloc(N * (size_t)T * sizeof *S.inc2);
    S.lprior = malloc(N * sizeof(double)), S.lprior2 = malloc(N * sizeof(double));
    S.cum = calloc(N, sizeof(double)), S.cum2 = calloc(N, sizeof(double));
    S.L = malloc((size_t)S.d * (size_t)S.d * sizeof *S.L), S.rng = malloc(N * sizeof *S.rng), S.acc = malloc(N);
    S.st = calloc(N, sizeof *S.st), S.ctxs = calloc(N, sizeof *S.ctxs);
    logw = malloc(N * sizeof *logw), W = malloc(N * sizeof *W), scratch = malloc(N * sizeof *scratch);
    counts = malloc(N * sizeof *counts), anc = malloc(N * sizeof *anc);
    par = malloc(((size_t)m->np + 1) * sizeof *par);
    res->logz_inc = malloc((size_t)T * sizeof(double)), res->ess = malloc((size_t)T * sizeof(double));
    res->accept = malloc((size_t)T * sizeof(double));
    if (!S.u || !S.u2 || !S.inc || !S.inc2 || !S.lprior || !S.lprior2 || !S.cum || !S.cum2 || !S.L || !S.rng || !S.acc ||
        !S.st || !S.ctxs || !logw || !W || !scratch || !counts || !anc || !par || !res->logz_inc || !res->ess ||
        !res->accept) {
        st = plm_fail(ctx, PLM_ENOMEM, "smc2: out of memory for %zu theta-particles and %ld observations", N, T);
        goto done;
    }
    for (i = 0; i < N; i++) plm_rng_init(&S.rng[i], o->seed, (uint64_t)i + 1);
    plm_rng_init(&rs, o->seed, 0);
    for (i = 0; i < N; i++) plm_ssm_prior_draw(P, &S.rng[i], S.u + i * (size_t)S.d), logw[i] = -log((double)N);
    if ((st = round_of_filters(ctx, &S, nthreads)) || (st = first_failure(&S, ctx))) goto done;
    res->filters = (long)N;
    for (t = 0; t < T; t++) {
        double lz, ess, acc = NAN;
        for (i = 0; i < N; i++) {
            double v = S.inc[i * (size_t)T + (size_t)t];
            logw[i] += v;
            S.cum[i] += v;
        }
        lz = plm_resample_normalise(logw, N, W);
        if (!(lz > -INFINITY)) {
            st = plm_fail(ctx, PLM_EDEAD, "smc2: every theta-particle has likelihood 0 at time %ld", t + 1);
            goto done;
        }
        res->logz += lz;
        for (i = 0; i < N; i++) logw[i] = W[i] > 0 ? log(W[i]) : -INFINITY;
        ess = plm_resample_ess(logw, N) / (double)N;
        if (ess < o->ess_threshold && t < T - 1) {
            long nacc = 0;
            int s;
            proposal_cov(&S, W);
            if ((st = plm_resample_counts(ctx, o->scheme, W, N, N, &rs, counts, scratch))) goto done;
            plm_resample_ancestors(counts, N, anc);
            for (i = 0; i < N; i++) copy_particle(&S, i, anc[i], 0);
            for (i = 0; i < N; i++) copy_particle(&S, i, i, 1);
            S.t = t;
            S.proposing = 1;
            for (s = 0; s < o->moves; s++) {
                if ((st = round_of_filters(ctx, &S, nthreads)) || (st = first_failure(&S, ctx))) goto done;
                res->filters += (long)N;
                for (i = 0; i < N; i++)
                    if (S.acc[i]) nacc++, copy_particle(&S, i, i, 1);
            }
            S.proposing = 0;
            for (i = 0; i < N; i++) logw[i] = -log((double)N);
            acc = (double)nacc / ((double)N * o->moves);
            res->rejuvenations++;
            if (acc < o->nx_accept && 2 * S.nx <= o->nx_max) {
                /* exchange: new filters of 2 N_x for every particle (proposals at u itself, into the second
                ** buffer), weights times p^_new(y_1:t) / p^_old(y_1:t) */
                S.nx *= 2;
                S.proposing = 2;
                st = round_of_filters(ctx, &S, nthreads);
                S.proposing = 0;
                if (st || (st = first_failure(&S, ctx))) goto done;
                res->filters += (long)N;
                for (i = 0; i < N; i++) {
                    logw[i] = S.cum2[i] - S.cum[i];
                    if (isnan(logw[i])) logw[i] = -INFINITY;   /* both -inf: the particle had weight 0 */
                    copy_particle(&S, i, i, 1);
                }
                if (!(plm_resample_normalise(logw, N, W) > -INFINITY)) {
                    st = plm_fail(ctx, PLM_EDEAD, "smc2: every theta-particle has likelihood 0 after the exchange "
                                  "step at time %ld", t + 1);
                    goto done;
                }
                for (i = 0; i < N; i++) logw[i] = W[i] > 0 ? log(W[i]) : -INFINITY;
                res->exchanges++;
            }
        }
        res->logz_inc[t] = lz, res->ess[t] = ess, res->accept[t] = acc;
    }
    res->Ntheta = N, res->nfree = S.d, res->T = T, res->nx = S.nx;
    if (!(res->theta = malloc(N * (size_t)S.d * sizeof *res->theta))) {
        st = plm_fail(ctx, PLM_ENOMEM, "smc2: out of memory");
        goto done;
    }
    memcpy(par, m->params, (size_t)m->np * sizeof *par);
    for (i = 0; i < N; i++) {
        plm_ssm_prior_set(P, S.u + i * (size_t)S.d, par);
        for (j = 0; j < S.d; j++) res->theta[i * (size_t)S.d + (size_t)j] = par[P->idx[j]];
    }
    res->logw = logw, logw = NULL;
done:
    if (st) plm_smc2_result_free(res);
    free(S.u), free(S.u2), free(S.inc), free(S.inc2), free(S.lprior), free(S.lprior2), free(S.cum), free(S.cum2);
    free(S.L), free(S.rng), free(S.acc), free(S.st), free(S.ctxs), free(logw), free(W), free(scratch), free(counts);
    free(anc), free(par), free(S.rec);
    return st;
}
