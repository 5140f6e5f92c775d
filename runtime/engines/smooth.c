/* smooth.c -- FFBS and PaRIS over a filter's history (see smooth.h).
**
** Both need draws from the backward kernel: given a state x' at time t, an index i at t - 1 with probability
** proportional to W_{t-1}^i p(x' | x_{t-1}^i). The exact draw scores all N particles (O(N)). The accept-reject
** draw proposes i from W_{t-1} (a binary search in the cumulative weights) and accepts with probability
** p(x' | x_{t-1}^i) / bound; its expected cost is O(1) when the densities are not much below the bound, but a
** few draws can take very long (Douc et al. 2011), hence Dau and Chopin's hybrid: a fixed number of rounds,
** then the exact draw for the requests still waiting. Every round scores all waiting requests in one call of
** the compiled density. */
#include "smooth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void plm_smooth_opts_default(plm_smooth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->M = 100;
    o->Ntilde = 2;
    o->rejection = 0;
    o->max_tries = 10;
    o->mh_steps = 5;
    o->log_bound_const = NAN;
    o->seed = 1;
    o->nthreads = 1;
}

/* Threads only pay for calls over several thousand particles (waking the pool costs more below); results
** do not depend on the count. */
static int threads_for(size_t n, int nthreads)
{
    return n >= 8 * PLM_EXPR_BLOCK ? nthreads : 1;
}

/* The first i with cdf[i] > u (cdf nondecreasing, u < cdf[n-1]). */
static size_t search(const double *cdf, size_t n, double u)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* The log bound at time t: the caller's program (uniform inputs only) or the constant. */
static plm_status log_bound_at(plm_ctx *ctx, const plm_ssm *m, const plm_smooth_opts *o, long t, double *lb)
{
    plm_prog_in in[PLM_NGROUPS];
    double tcb[64], *tc = m->ncov < 63 ? tcb : malloc(((size_t)m->ncov + 1) * sizeof *tc), *out = lb;
    plm_status st;
    if (!o->log_bound && isnan(o->log_bound_const) && o->gauss) {
        if (tc != tcb) free(tc);
        return plm_ssm_gauss_log_bound(ctx, o->gauss, t, lb);
    }
    if (!o->log_bound) {
        *lb = o->log_bound_const;
        if (tc != tcb) free(tc);
        return isnan(*lb) ? plm_fail(ctx, PLM_EINVAL, "smooth: rejection sampling needs a bound of the transition "
                                                        "density (none was given or derived)")
                          : PLM_OK;
    }
    if (!tc) return plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
    st = plm_ssm_bind(ctx, m, o->log_bound, t, tc, in);
    if (!st) st = plm_prog_eval(ctx, o->log_bound, 1, in, &out, NULL, 1);
    if (tc != tcb) free(tc);
    if (!st && isnan(*lb)) st = plm_fail(ctx, PLM_EDOM, "smooth: the bound of the transition density is NaN at t = %ld", t);
    return st;
}

typedef struct bwork {
    double *cdf, *lp, *xa, *xb, *xfull;   /* N, max(n, N), dim*n, dim*n, dim*N */
    double *lcur;                         /* n: the MH chains' current log densities */
    double *aprob;                        /* N: alias table of W_{t-1} (Walker, Vose): keep probability... */
    uint32_t *alias, *work;               /* N: ... and the alias of each column; scratch */
    size_t *wait;                         /* n */
    uint32_t *cand;                       /* n: the MH proposals */
} bwork;

static plm_status bwork_init(plm_ctx *ctx, bwork *w, size_t N, size_t n, size_t dim)
{
    size_t big = n > N ? n : N;
    w->cdf = malloc(N * sizeof *w->cdf);
    w->lp = malloc(big * sizeof *w->lp);
    w->xa = malloc(dim * n * sizeof *w->xa);
    w->xb = malloc(dim * n * sizeof *w->xb);
    w->xfull = malloc(dim * N * sizeof *w->xfull);
    w->wait = malloc(n * sizeof *w->wait);
    w->lcur = malloc(n * sizeof *w->lcur);
    w->cand = malloc(n * sizeof *w->cand);
    w->aprob = malloc(N * sizeof *w->aprob);
    w->alias = malloc(N * sizeof *w->alias);
    w->work = malloc(N * sizeof *w->work);
    if (!w->cdf || !w->lp || !w->xa || !w->xb || !w->xfull || !w->wait || !w->lcur || !w->cand || !w->aprob ||
        !w->alias || !w->work)
        return plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
    return PLM_OK;
}

static void bwork_free(bwork *w)
{
    free(w->cdf);
    free(w->lp);
    free(w->xa);
    free(w->xb);
    free(w->xfull);
    free(w->wait);
    free(w->lcur);
    free(w->cand);
    free(w->aprob);
    free(w->alias);
    free(w->work);
}

/* The alias table of the weights exp(lw_i) / acc (Vose's method): a draw is then one uniform and at most two
** memory reads, where a binary search reads log2(N) scattered cache lines -- what keeps the backward draws O(1)
** each for large N. */
static void alias_build(bwork *w, const double *lw, size_t N, double acc)
{
    uint32_t *small = w->work, *large = w->work + N;   /* small grows up, large grows down: N slots together */
    size_t ns = 0, nl = 0, i;
    for (i = 0; i < N; i++) {
        w->aprob[i] = exp(lw[i]) / acc * (double)N;
        if (w->aprob[i] < 1) small[ns++] = (uint32_t)i;
        else *--large = (uint32_t)i, nl++;
    }
    while (ns > 0 && nl > 0) {
        uint32_t s = small[--ns], l = *large;
        w->alias[s] = l;
        w->aprob[l] -= 1 - w->aprob[s];
        if (w->aprob[l] < 1) {   /* l moves from the large list to the small one */
            large++, nl--;
            small[ns++] = l;
        }
    }
    while (nl > 0) w->aprob[*large] = 1, large++, nl--;
    while (ns > 0) w->aprob[small[--ns]] = 1;   /* rounding leftovers */
}

static uint32_t alias_draw(const bwork *w, size_t N, double u)
{
    double x = u * (double)N;
    size_t k = (size_t)x;
    if (k >= N) k = N - 1;
    return x - (double)k < w->aprob[k] ? (uint32_t)k : w->alias[k];
}

/* n backward draws at time t >= 2 among the N particles xp (component-major) with normalised log weights lw
** of t - 1: request r has the state tgt[k*n + r] at t and its stream rng[r] (every request draws from rng[0]
** when shared: the draws run in order on the calling thread, so one stream per step is as reproducible and
** spares the memory traffic of a state per request); idx[r] receives its index. */
#define RNG(q) (shared ? rng : &rng[q])

static plm_status backward(plm_ctx *ctx, const plm_ssm *m, const plm_smooth_opts *o, long t, size_t N,
                           const double *xp, const double *lw, size_t n, const double *tgt, plm_rng *rng, int shared,
                           const uint32_t *start, uint32_t *idx, bwork *w, plm_smooth_stats *stats)
{
    const size_t dim = (size_t)m->dim;
    size_t i, k, r, nw = n;
    double acc = 0, lb = 0;
    plm_status st;
    int round;
    for (i = 0; i < N; i++) w->cdf[i] = (acc += exp(lw[i]));
    for (r = 0; r < n; r++) w->wait[r] = r;
    if (o->rejection || start) alias_build(w, lw, N, acc);
    if (o->rejection) {
        if ((st = log_bound_at(ctx, m, o, t, &lb))) return st;
        for (round = 0; round < o->max_tries && nw > 0; round++) {
            size_t keep = 0;
            for (k = 0; k < dim; k++)
                for (r = 0; r < nw; r++) {
                    size_t q = w->wait[r];
                    if (k == 0) idx[q] = alias_draw(w, N, plm_rng_uniform(RNG(q)));
                    w->xa[k * nw + r] = xp[k * N + idx[q]];
                    w->xb[k * nw + r] = tgt[k * n + q];
                }
            if ((st = plm_ssm_trans_logpdf(ctx, m, t, nw, w->xa, w->xb, nw, w->lp, threads_for(nw, o->nthreads)))) return st;
            stats->proposals += (double)nw;
            for (r = 0; r < nw; r++) {
                size_t q = w->wait[r];
                if (w->lp[r] > lb + 1e-9 * fmax(1, fabs(lb)))
                    return plm_fail(ctx, PLM_EINVAL, "smooth: the transition density at t = %ld is %g on the log "
                                    "scale, above the bound %g: the bound is wrong", t, w->lp[r], lb);
                if (log(plm_rng_uniform(RNG(q))) < w->lp[r] - lb)
                    stats->accepted += 1;
                else
                    w->wait[keep++] = q;
            }
            nw = keep;
        }
    }
    /* Metropolis-Hastings from each waiting request's ancestor: proposals j ~ W_{t-1}, accepted with
    ** probability p(x' | x^j) / p(x' | x^cur); all waiting requests move together, one density call per step */
    if (start && o->mh_steps > 0 && nw > 0) {
        int s;
        for (s = -1; s < o->mh_steps; s++) {
            for (k = 0; k < dim; k++)
                for (r = 0; r < nw; r++) {
                    size_t q = w->wait[r];
                    if (k == 0) {
                        if (s < 0) idx[q] = start[q];
                        else w->cand[r] = alias_draw(w, N, plm_rng_uniform(RNG(q)));
                    }
                    w->xa[k * nw + r] = xp[k * N + (s < 0 ? idx[q] : w->cand[r])];
                    w->xb[k * nw + r] = tgt[k * n + q];
                }
            if ((st = plm_ssm_trans_logpdf(ctx, m, t, nw, w->xa, w->xb, nw, w->lp, threads_for(nw, o->nthreads))))
                return st;
            for (r = 0; r < nw; r++) {
                size_t q = w->wait[r];
                if (s < 0) {
                    w->lcur[r] = w->lp[r];
                    continue;
                }
                if (log(plm_rng_uniform(RNG(q))) < w->lp[r] - w->lcur[r]) {
                    idx[q] = w->cand[r];
                    w->lcur[r] = w->lp[r];
                }
            }
        }
        stats->mh += (double)nw;
        return PLM_OK;
    }
    /* the exact kernel for every request still waiting */
    for (r = 0; r < nw; r++) {
        size_t q = w->wait[r];
        double mx = -INFINITY, s = 0, u;
        if ((r & 63) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "smooth: interrupted at t = %ld", t);
        for (k = 0; k < dim; k++) {
            double v = tgt[k * n + q];
            for (i = 0; i < N; i++) w->xfull[k * N + i] = v;
        }
        if ((st = plm_ssm_trans_logpdf(ctx, m, t, N, xp, w->xfull, N, w->lp, threads_for(N, o->nthreads)))) return st;
        for (i = 0; i < N; i++) {
            w->lp[i] += lw[i];
            if (w->lp[i] > mx) mx = w->lp[i];
        }
        if (!(mx > -INFINITY))
            return plm_fail(ctx, PLM_EDOM, "smooth: a state at t = %ld has no possible parent at t = %ld (every "
                            "backward weight is %g)", t, t - 1, mx);
        for (i = 0; i < N; i++) s += (w->lp[i] = exp(w->lp[i] - mx));
        u = plm_rng_uniform(RNG(q)) * s;
        for (acc = 0, i = 0; i < N - 1; i++)
            if ((acc += w->lp[i]) > u) break;
        idx[q] = (uint32_t)i;
        stats->exact += 1;
    }
    return PLM_OK;
}

#undef RNG

static plm_status check_history(plm_ctx *ctx, const plm_pf_result *h)
{
    if (!h->xs || !h->logw || !h->anc) return plm_fail(ctx, PLM_EINVAL, "smooth: the filter kept no history");
    return PLM_OK;
}

plm_status plm_ffbs(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, const plm_smooth_opts *o, double *paths,
                    double *means, double *vars, plm_smooth_stats *stats)
{
    const size_t N = h->N, M = o->M, dim = (size_t)h->dim;
    const long T = h->T;
    plm_rng *rng = NULL;
    uint32_t *idx = NULL;
    bwork w;
    plm_status st;
    size_t j, k, i;
    long t;
    memset(stats, 0, sizeof *stats);
    memset(&w, 0, sizeof w);
    if ((st = check_history(ctx, h))) return st;
    if (M < 1) return plm_fail(ctx, PLM_EINVAL, "smooth: trajectories must be >= 1 (got %zu)", M);
    rng = malloc(M * sizeof *rng);
    idx = malloc(M * sizeof *idx);
    if (!rng || !idx || (st = bwork_init(ctx, &w, N, M, dim))) {
        st = plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
        goto done;
    }
    for (j = 0; j < M; j++) plm_rng_init(&rng[j], o->seed, ((uint64_t)1 << 40) + j);
    {   /* the last time: indices from W_T */
        const double *lw = h->logw + (size_t)(T - 1) * N, *x = h->xs + (size_t)(T - 1) * dim * N;
        double acc = 0;
        for (i = 0; i < N; i++) w.cdf[i] = (acc += exp(lw[i]));
        for (j = 0; j < M; j++) idx[j] = (uint32_t)search(w.cdf, N, plm_rng_uniform(&rng[j]) * acc);
        for (k = 0; k < dim; k++)
            for (j = 0; j < M; j++) paths[((size_t)(T - 1) * dim + k) * M + j] = x[k * N + idx[j]];
    }
    for (t = T; t >= 2; t--) {
        const double *x = h->xs + (size_t)(t - 2) * dim * N;
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "smooth: interrupted at t = %ld", t);
            goto done;
        }
        if ((st = backward(ctx, m, o, t, N, x, h->logw + (size_t)(t - 2) * N, M, paths + (size_t)(t - 1) * dim * M,
                           rng, 0, NULL, idx, &w, stats)))
            goto done;
        for (k = 0; k < dim; k++)
            for (j = 0; j < M; j++) paths[((size_t)(t - 2) * dim + k) * M + j] = x[k * N + idx[j]];
    }
    if (means || vars)
        for (t = 1; t <= T; t++)
            for (k = 0; k < dim; k++) {
                const double *p = paths + ((size_t)(t - 1) * dim + k) * M;
                double mu = 0, v = 0;
                for (j = 0; j < M; j++) mu += p[j];
                mu /= (double)M;
                for (j = 0; j < M; j++) v += (p[j] - mu) * (p[j] - mu);
                if (means) means[(size_t)(t - 1) * dim + k] = mu;
                if (vars) vars[(size_t)(t - 1) * dim + k] = M > 1 ? v / (double)(M - 1) : 0;
            }
done:
    free(rng);
    free(idx);
    bwork_free(&w);
    return st;
}

/* hv[o*n + r] = h_o(t, X = xa[.. r], Z = xb[.. r]) for r < n (both component-major with ld n) */
static plm_status eval_h(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, size_t n, const double *xa,
                         const double *xb, double **out, int nthreads)
{
    plm_prog_in in[PLM_NGROUPS];
    double tcb[64], *tc = m->ncov < 63 ? tcb : malloc(((size_t)m->ncov + 1) * sizeof *tc);
    plm_status st;
    if (!tc) return plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
    st = plm_ssm_bind(ctx, m, p, t, tc, in);
    if (!st) {
        in[PLM_GRP_X].p = xa;
        in[PLM_GRP_X].ld = n;
        in[PLM_GRP_Z].p = xb;
        in[PLM_GRP_Z].ld = n;
        st = plm_prog_eval(ctx, p, n, in, out, NULL, nthreads);
    }
    if (tc != tcb) free(tc);
    return st;
}

/* ---- PaRIS ----
** The state of one run: per particle i at the current time, tau_i estimates E[S_t | x_t = x_t^i]; a step draws
** Ntilde parents of every particle from the backward kernel and sets tau_i to the average of
** tau_parent + h_t(parent, x_t^i). It needs the particles and weights of t - 1 and t only, so it runs inside the
** filter (on-line, memory O(N)) or over a history. */
typedef struct plm_paris_state {
    const plm_ssm *m;
    const plm_smooth_opts *o;
    plm_paris_fn hfn;
    void *hud;
    int K;
    size_t N, Nt, NN, dim;
    double *tau, *tau2, *hv, *tgt, *xa, **ho;
    plm_rng *rng;
    uint32_t *idx, *start;   /* NN: the backward draws; the filter's ancestors, where the MH fall-back starts */
    bwork w;
    plm_smooth_stats *stats;
} paris_st;   /* plm_paris_state of smooth.h */

static void paris_free(paris_st *P)
{
    free(P->tau);
    free(P->tau2);
    free(P->hv);
    free(P->tgt);
    free(P->xa);
    free(P->ho);
    free(P->rng);
    free(P->idx);
    free(P->start);
    bwork_free(&P->w);
}

static plm_status paris_init(plm_ctx *ctx, paris_st *P, const plm_ssm *m, size_t N, int K, plm_paris_fn hfn,
                             void *hud, const plm_smooth_opts *o, plm_smooth_stats *stats)
{
    memset(P, 0, sizeof *P);
    memset(stats, 0, sizeof *stats);
    P->m = m, P->o = o, P->hfn = hfn, P->hud = hud, P->K = K, P->stats = stats;
    P->N = N, P->dim = (size_t)m->dim;
    if (o->Ntilde < 1) return plm_fail(ctx, PLM_EINVAL, "smooth: backward draws (Ntilde) must be >= 1 (got %d)", o->Ntilde);
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "smooth: the functional has no outputs");
    P->Nt = (size_t)o->Ntilde, P->NN = N * P->Nt;
    P->tau = malloc((size_t)K * N * sizeof *P->tau);
    P->tau2 = malloc((size_t)K * N * sizeof *P->tau2);
    P->hv = malloc((size_t)K * P->NN * sizeof *P->hv);
    P->tgt = malloc(P->dim * P->NN * sizeof *P->tgt);
    P->xa = malloc(P->dim * P->NN * sizeof *P->xa);
    P->ho = malloc((size_t)K * sizeof *P->ho);
    P->rng = malloc(sizeof *P->rng);
    P->idx = malloc(P->NN * sizeof *P->idx);
    P->start = malloc(P->NN * sizeof *P->start);
    if (!P->tau || !P->tau2 || !P->hv || !P->tgt || !P->xa || !P->ho || !P->rng || !P->idx || !P->start ||
        bwork_init(ctx, &P->w, N, P->NN, P->dim))
        return plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
    return PLM_OK;
}

/* The step to time t: x the particles of t; xp and lw those of t - 1 and their normalised log weights, anc or
** anc32 (one of them) the parents' indices (all unused at t = 1, where tau = h_1(x_1, x_1)). */
static plm_status paris_step(plm_ctx *ctx, paris_st *P, long t, const double *xp, const double *lw, const double *x,
                             const size_t *anc, const uint32_t *anc32)
{
    const size_t N = P->N, Nt = P->Nt, NN = P->NN, dim = P->dim;
    const int K = P->K;
    plm_status st;
    size_t i, k, q, r;
    int j;
    if (t == 1) {
        for (j = 0; j < K; j++) P->ho[j] = P->tau + (size_t)j * N;
        return P->hfn(ctx, P->hud, 1, N, x, x, P->ho);
    }
    /* request r = i * Nt + q asks for a parent of particle i */
    for (k = 0; k < dim; k++)
        for (i = 0; i < N; i++)
            for (q = 0; q < Nt; q++) P->tgt[k * NN + i * Nt + q] = x[k * N + i];
    for (i = 0; i < N; i++)
        for (q = 0; q < Nt; q++) P->start[i * Nt + q] = anc ? (uint32_t)anc[i] : anc32[i];
    plm_rng_init(P->rng, P->o->seed, ((uint64_t)1 << 41) + (uint64_t)t);   /* this step's stream */
    if ((st = backward(ctx, P->m, P->o, t, N, xp, lw, NN, P->tgt, P->rng, 1, P->start, P->idx, &P->w, P->stats)))
        return st;
    for (k = 0; k < dim; k++)
        for (r = 0; r < NN; r++) P->xa[k * NN + r] = xp[k * N + P->idx[r]];
    for (j = 0; j < K; j++) P->ho[j] = P->hv + (size_t)j * NN;
    if ((st = P->hfn(ctx, P->hud, t, NN, P->xa, P->tgt, P->ho))) return st;
    for (j = 0; j < K; j++) {
        const double *tj = P->tau + (size_t)j * N, *hj = P->hv + (size_t)j * NN;
        double *nj = P->tau2 + (size_t)j * N;
        for (i = 0; i < N; i++) {
            double s = 0;
            for (q = 0; q < Nt; q++) s += tj[P->idx[i * Nt + q]] + hj[i * Nt + q];
            nj[i] = s / (double)Nt;
        }
    }
    {
        double *sw = P->tau;
        P->tau = P->tau2;
        P->tau2 = sw;
    }
    return PLM_OK;
}

/* out[j] = sum_i W_i tau_ij for the normalised log weights lw of the current time */
static void paris_value(const paris_st *P, const double *lw, double *out)
{
    size_t i;
    int j;
    for (j = 0; j < P->K; j++) {
        double s = 0;
        for (i = 0; i < P->N; i++) s += exp(lw[i]) * P->tau[(size_t)j * P->N + i];
        out[j] = s;
    }
}

typedef struct prog_h {
    const plm_ssm *m;
    const plm_prog *p;
    int nthreads;
} prog_h;

static plm_status prog_hfn(plm_ctx *ctx, void *ud, long t, size_t n, const double *xa, const double *xb,
                           double **out)
{
    const prog_h *H = ud;
    return eval_h(ctx, H->m, H->p, t, n, xa, xb, out, threads_for(n, H->nthreads));
}

plm_status plm_paris_fn_run(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, int K, plm_paris_fn hfn,
                            void *hud, const plm_smooth_opts *o, double *out, plm_smooth_stats *stats)
{
    const size_t N = h->N, dim = (size_t)h->dim;
    paris_st P;
    plm_status st;
    long t;
    memset(stats, 0, sizeof *stats);
    if ((st = check_history(ctx, h))) return st;
    if ((st = paris_init(ctx, &P, m, N, K, hfn, hud, o, stats))) goto done;
    for (t = 1; t <= h->T; t++) {
        const double *x = h->xs + (size_t)(t - 1) * dim * N;
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "smooth: interrupted at t = %ld", t);
            goto done;
        }
        if ((st = paris_step(ctx, &P, t, t > 1 ? x - dim * N : NULL, t > 1 ? h->logw + (size_t)(t - 2) * N : NULL, x,
                             NULL, h->anc + (size_t)(t - 1) * N)))
            goto done;
    }
    paris_value(&P, h->logw + (size_t)(h->T - 1) * N, out);
done:
    paris_free(&P);
    return st;
}

plm_status plm_paris(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, const plm_prog *hprog,
                     const plm_smooth_opts *o, double *out, plm_smooth_stats *stats)
{
    prog_h H;
    H.m = m, H.p = hprog, H.nthreads = o->nthreads;
    return plm_paris_fn_run(ctx, m, h, plm_prog_nout(hprog), prog_hfn, &H, o, out, stats);
}

/* ---- PaRIS a step at a time (smooth.h) ---- */

plm_paris_state *plm_paris_begin(plm_ctx *ctx, const plm_ssm *m, size_t N, int K, plm_paris_fn hfn, void *hud,
                                 const plm_smooth_opts *o, plm_smooth_stats *stats)
{
    paris_st *P = malloc(sizeof *P);
    if (!P) {
        plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
        return NULL;
    }
    if (paris_init(ctx, P, m, N, K, hfn, hud, o, stats)) {
        paris_free(P);
        free(P);
        return NULL;
    }
    return P;
}

plm_status plm_paris_next(plm_ctx *ctx, plm_paris_state *P, long t, const double *xp, const double *lw,
                          const double *x, const uint32_t *anc)
{
    return paris_step(ctx, P, t, xp, lw, x, NULL, anc);
}

const uint32_t *plm_paris_indices(const plm_paris_state *P)
{
    return P->idx;
}

void plm_paris_estimate(const plm_paris_state *P, const double *lw, double *out)
{
    paris_value(P, lw, out);
}

void plm_paris_end(plm_paris_state *P)
{
    if (!P) return;
    paris_free(P);
    free(P);
}

plm_status plm_paris_prog_fn(plm_ctx *ctx, void *ud, long t, size_t n, const double *xa, const double *xb,
                             double **out)
{
    const plm_paris_prog *H = ud;
    return eval_h(ctx, H->m, H->p, t, n, xa, xb, out, threads_for(n, H->nthreads));
}

/* The on-line run: the filter's hook drives the steps. */
typedef struct online {
    paris_st P;
    long T;
    double *out;
} online;

static plm_status online_hook(plm_ctx *ctx, void *ud, long t, size_t N, const double *xprev, const double *lwprev,
                              const double *x, const double *lw, const size_t *anc)
{
    online *A = ud;
    plm_status st;
    (void)N;
    if ((st = paris_step(ctx, &A->P, t, xprev, lwprev, x, anc, NULL))) return st;
    if (t == A->T) paris_value(&A->P, lw, A->out);
    return PLM_OK;
}

plm_status plm_paris_online_fn(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_pf_opts *pf,
                               int K, plm_paris_fn hfn, void *hud, const plm_smooth_opts *o, double *out,
                               plm_smooth_stats *stats, plm_pf_result *res)
{
    online A;
    plm_pf_opts po = *pf;
    plm_status st;
    memset(res, 0, sizeof *res);
    if ((st = paris_init(ctx, &A.P, m, pf->N, K, hfn, hud, o, stats))) {
        paris_free(&A.P);
        return st;
    }
    A.T = T;
    A.out = out;
    po.history = 0;
    po.hook = online_hook;
    po.hook_ud = &A;
    st = plm_pf_run(ctx, m, T, ys, &po, res);
    paris_free(&A.P);
    return st;
}

plm_status plm_paris_online(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_pf_opts *pf,
                            const plm_prog *hprog, const plm_smooth_opts *o, double *out, plm_smooth_stats *stats,
                            plm_pf_result *res)
{
    prog_h H;
    H.m = m, H.p = hprog, H.nthreads = o->nthreads;
    return plm_paris_online_fn(ctx, m, T, ys, pf, plm_prog_nout(hprog), prog_hfn, &H, o, out, stats, res);
}
