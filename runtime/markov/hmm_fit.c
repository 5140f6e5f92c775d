/* hmm_fit.c -- Baum-Welch (EM) for the HMM object: E-steps over many sequences in parallel, closed-form
** M-steps for every emission family, random restarts. Deterministic for any number of threads. */
#include "hmm_impl.h"

#include "par.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Baum-Welch --------------------------------------------------------------------------------------- */

void plm_hmm_fit_defaults(plm_hmm_fit_opts *o)
{
    o->iters = 100;
    o->tol = 1e-6;
    o->restarts = 1;
    o->seed = 1;
    o->threads = 0;
}

/* The data and the scratch shared by every E-step of a fit. Sequences are processed in rounds of `slots`
** in parallel, each into its own statistics slot; the slots are then added to the total in sequence order,
** so the result is the same for any number of threads. */
typedef struct fitdata {
    size_t nseq, Ttot, Tmax;
    const double *const *ys;
    const size_t *Ts;
    double *mean, *var;   /* per coordinate over all observations (D each), for random starts and floors */
    int nthreads;
    size_t slots;         /* sequences per round */
    double *post, *logB;  /* per worker: Tmax*K each (logB only for non-categorical) */
    double *work;         /* per worker: 4K */
    double *slot_stats;   /* slots * stats_len */
    double *slot_ll;      /* slots */
    plm_status *slot_st;  /* slots */
    plm_ctx *slot_ctx;    /* slots */
} fitdata;

/* Expected sufficient statistics. Moments are taken about the current means (mu0), which keeps the
** variance update E[(y - mu0)^2] - (mu - mu0)^2 free of the cancellation of E[y^2] - mu^2. */
typedef struct stats {
    double *init;   /* K */
    double *xi;     /* K*K */
    double *g;      /* K: sum of gamma */
    double *s1;     /* categorical: M*K counts (transposed); others: K*D */
    double *s2;     /* normal: K; mvnormal: K*D*D */
} stats;

static size_t stats_len(const plm_hmm *h)
{
    const size_t K = h->K, D = h->D;
    return 2 * K + K * K + (h->emit == PLM_HMM_CATEGORICAL ? (size_t)h->M * K : K * D + K * D * D);
}

static void stats_bind(const plm_hmm *h, double *mem, stats *s)
{
    const size_t K = h->K, D = h->D;
    s->init = mem, s->xi = mem + K, s->g = s->xi + K * K, s->s1 = s->g + K;
    s->s2 = s->s1 + (h->emit == PLM_HMM_CATEGORICAL ? (size_t)h->M * K : K * D);
}

/* E-step of one sequence into the zeroed statistics s, with scratch post/logB/work. */
static plm_status estep_seq(plm_ctx *ctx, const plm_hmm *h, size_t q, size_t T, const double *y, double *post,
                            double *logB, double *work, stats *s, double *loglik)
{
    const int K = h->K, D = h->D;
    plm_chain c = chain_of(h);
    emis em = emis_cat(h, y);
    size_t t;
    int k;
    plm_status st;
    if (h->emit != PLM_HMM_CATEGORICAL) {
        if (plm_hmm_emit_rows(h, T, y, logB)) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        em.logB = logB;
    }
    st = plm_hmm_fwd_all(ctx, &c, T, &em, post, work, loglik);
    if (st == PLM_EDOM) {   /* "observation 3 (symbol 4) has probability 0 ..." gains the sequence number */
        char why[PLM_MSG_MAX];
        snprintf(why, sizeof why, "%s", plm_ctx_errbody(ctx));
        return plm_failm(ctx, PLM_EDOM, "hmm", "sequence %zu: %s", q + 1, why);
    }
    if (st || (st = plm_hmm_bwd_pass(ctx, &c, T, &em, post, s->xi, work))) return st;
    for (k = 0; k < K; k++) s->init[k] += post[k];
    for (t = 0; t < T; t++) {
        const double *restrict g = post + t * K;
        for (k = 0; k < K; k++) s->g[k] += g[k];
        switch (h->emit) {
        case PLM_HMM_CATEGORICAL: {
            double *restrict row = s->s1 + (size_t)y[t] * K;
            for (k = 0; k < K; k++) row[k] += g[k];
            break;
        }
        case PLM_HMM_NORMAL:
            for (k = 0; k < K; k++) {
                const double d = y[t] - h->par[2 * k];
                s->s1[k] += g[k] * d;
                s->s2[k] += g[k] * d * d;
            }
            break;
        case PLM_HMM_POISSON:
        case PLM_HMM_BERNOULLI:
            for (k = 0; k < K; k++) s->s1[k] += g[k] * y[t];
            break;
        case PLM_HMM_MVNORMAL:
            for (k = 0; k < K; k++) {
                const double *mu = h->par + (size_t)k * D, *yt = y + t * D;
                double *s1 = s->s1 + (size_t)k * D, *s2 = s->s2 + (size_t)k * D * D;
                int i, j;
                for (i = 0; i < D; i++) {
                    const double di = g[k] * (yt[i] - mu[i]);
                    s1[i] += di;
                    for (j = 0; j <= i; j++) s2[i * D + j] += di * (yt[j] - mu[j]);
                }
            }
            break;
        }
    }
    return PLM_OK;
}

typedef struct estep_job {
    const plm_hmm *h;
    fitdata *fd;
    size_t q0;   /* first sequence of the round */
} estep_job;

static void estep_chunk(void *arg, size_t begin, size_t end, int worker)
{
    estep_job *j = arg;
    fitdata *fd = j->fd;
    const size_t K = (size_t)j->h->K, len = stats_len(j->h);
    size_t i;
    for (i = begin; i < end; i++) {
        const size_t q = j->q0 + i;
        stats s;
        memset(fd->slot_stats + i * len, 0, len * sizeof(double));
        stats_bind(j->h, fd->slot_stats + i * len, &s);
        fd->slot_st[i] = estep_seq(&fd->slot_ctx[i], j->h, q, fd->Ts[q], fd->ys[q], fd->post + (size_t)worker * fd->Tmax * K,
                                   fd->logB ? fd->logB + (size_t)worker * fd->Tmax * K : NULL, fd->work + (size_t)worker * 4 * K,
                                   &s, &fd->slot_ll[i]);
    }
}

/* E-step over all sequences: the expected statistics and the total log-likelihood. */
static plm_status estep(plm_ctx *ctx, const plm_hmm *h, fitdata *fd, double *smem, stats *s, double *loglik)
{
    const size_t len = stats_len(h);
    size_t q0, i, l;
    memset(smem, 0, len * sizeof *smem);
    stats_bind(h, smem, s);
    *loglik = 0;
    for (q0 = 0; q0 < fd->nseq; q0 += fd->slots) {
        const size_t n = fd->nseq - q0 < fd->slots ? fd->nseq - q0 : fd->slots;
        estep_job job = {h, fd, q0};
        plm_parallel_for(fd->nthreads, n, 1, estep_chunk, &job);
        for (i = 0; i < n; i++) {
            const double *restrict add = fd->slot_stats + i * len;
            if (fd->slot_st[i]) {   /* the worker's failure, status and prefix intact */
                *ctx = fd->slot_ctx[i];
                return fd->slot_st[i];
            }
            *loglik += fd->slot_ll[i];
            for (l = 0; l < len; l++) smem[l] += add[l];
        }
    }
    return PLM_OK;
}

/* M-step: closed-form maximisers of the expected complete-data log-likelihood. A state with no expected
** visits keeps its old parameters; a normal variance is floored at 1e-10 of the data's (the constrained
** maximum, since the objective is unimodal in the variance), so EM still cannot lower the likelihood. */
static plm_status mstep(plm_ctx *ctx, const plm_hmm *h, const fitdata *fd, const stats *s, plm_hmm **out)
{
    const int K = h->K, D = h->D;
    const size_t KK = (size_t)K * K;
    size_t npar = h->emit == PLM_HMM_CATEGORICAL ? (size_t)K * h->M
                : h->emit == PLM_HMM_MVNORMAL ? (size_t)K * D * (1 + D) : (size_t)K * (h->emit == PLM_HMM_NORMAL ? 2 : 1);
    double *init = malloc((K + KK + npar) * sizeof *init), *trans, *par, tot = 0;
    plm_status st;
    int i, j, k;
    if (!init) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    trans = init + K, par = trans + KK;
    memcpy(par, h->par, npar * sizeof *par);
    for (k = 0; k < K; k++) tot += s->init[k];
    for (k = 0; k < K; k++) init[k] = s->init[k] / tot;
    for (i = 0; i < K; i++) {
        double rs = 0;
        for (j = 0; j < K; j++) rs += s->xi[(size_t)i * K + j];
        for (j = 0; j < K; j++) trans[(size_t)i * K + j] = rs > 0 ? s->xi[(size_t)i * K + j] / rs : h->trans[(size_t)i * K + j];
    }
    for (k = 0; k < K; k++) {
        const double g = s->g[k];
        if (!(g > 1e-300)) continue;
        switch (h->emit) {
        case PLM_HMM_CATEGORICAL: {
            const int M = h->M;
            int m;
            for (m = 0; m < M; m++) par[(size_t)k * M + m] = s->s1[(size_t)m * K + k] / g;
            break;
        }
        case PLM_HMM_NORMAL: {
            const double d = s->s1[k] / g, floor_var = 1e-10 * (fd->var[0] > 0 ? fd->var[0] : 1);
            double v = s->s2[k] / g - d * d;
            if (!(v > floor_var)) v = floor_var;
            par[2 * k] = h->par[2 * k] + d;
            par[2 * k + 1] = sqrt(v);
            break;
        }
        case PLM_HMM_POISSON: par[k] = s->s1[k] / g; break;
        case PLM_HMM_BERNOULLI: {
            const double p = s->s1[k] / g;
            par[k] = p < 0 ? 0 : p > 1 ? 1 : p;
            break;
        }
        case PLM_HMM_MVNORMAL: {
            double *mu = par + (size_t)k * D, *S = par + (size_t)K * D + (size_t)k * D * D, ridge = 0, trace = 0;
            const double *s1 = s->s1 + (size_t)k * D, *s2 = s->s2 + (size_t)k * D * D;
            int tries;
            for (i = 0; i < D; i++)
                for (j = 0; j <= i; j++)
                    S[i * D + j] = S[j * D + i] = s2[i * D + j] / g - (s1[i] / g) * (s1[j] / g);
            for (i = 0; i < D; i++) mu[i] = h->par[(size_t)k * D + i] + s1[i] / g, trace += fd->var[i];
            /* a state that owns fewer than D+1 distinct points has a singular covariance: add the smallest
            ** ridge (a multiple of the data's scale) that makes it positive definite */
            for (tries = 0; tries < 40; tries++) {
                plm_dist *d;
                plm_ctx sub;
                if (!plm_dist_new_mvnormal(&sub, mu, S, D, &d)) break;
                ridge = ridge ? 10 * ridge : 1e-10 * (trace > 0 ? trace / D : 1);
                for (i = 0; i < D; i++) S[i * D + i] += ridge;
            }
            break;
        }
        }
    }
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: st = plm_hmm_new_categorical(ctx, K, h->M, init, trans, par, out); break;
    case PLM_HMM_MVNORMAL: st = plm_hmm_new_mvnormal(ctx, K, D, init, trans, par, par + (size_t)K * D, out); break;
    default: st = plm_hmm_new_scalar(ctx, h->emit, K, init, trans, par, out);
    }
    free(init);
    return st;
}

/* Dirichlet(1, ..., 1) draw into p (n). */
static void flat_dirichlet(plm_rng *r, double *p, int n)
{
    double s = 0;
    int i;
    for (i = 0; i < n; i++) s += (p[i] = -log(plm_rng_uniform(r)));
    for (i = 0; i < n; i++) p[i] /= s;
}

/* A random observation from the data (uniform over all time points). */
static const double *random_obs(plm_rng *r, const fitdata *fd, int D)
{
    size_t u = plm_rng_uint(r, fd->Ttot), q = 0;
    while (u >= fd->Ts[q]) u -= fd->Ts[q++];
    return fd->ys[q] + u * D;
}

/* A random starting model for restarts: flat Dirichlet chain and categorical rows; normal and mvnormal
** means at random data points with the data's spread; poisson rates at random data points + 0.5. */
static plm_status random_start(plm_ctx *ctx, const plm_hmm *h, const fitdata *fd, plm_rng *r, plm_hmm **out)
{
    const int K = h->K, D = h->D;
    const size_t KK = (size_t)K * K;
    size_t npar = h->emit == PLM_HMM_CATEGORICAL ? (size_t)K * h->M
                : h->emit == PLM_HMM_MVNORMAL ? (size_t)K * D * (1 + D) : (size_t)K * (h->emit == PLM_HMM_NORMAL ? 2 : 1);
    double *init = calloc(K + KK + npar, sizeof *init), *trans, *par;
    plm_status st;
    int i, k;
    if (!init) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    trans = init + K, par = trans + KK;
    flat_dirichlet(r, init, K);
    for (i = 0; i < K; i++) flat_dirichlet(r, trans + (size_t)i * K, K);
    for (k = 0; k < K; k++) switch (h->emit) {
        case PLM_HMM_CATEGORICAL: flat_dirichlet(r, par + (size_t)k * h->M, h->M); break;
        case PLM_HMM_NORMAL:
            par[2 * k] = random_obs(r, fd, 1)[0];
            par[2 * k + 1] = fd->var[0] > 0 ? sqrt(fd->var[0]) : 1;
            break;
        case PLM_HMM_POISSON: par[k] = random_obs(r, fd, 1)[0] + 0.5; break;
        case PLM_HMM_BERNOULLI: par[k] = 0.1 + 0.8 * plm_rng_uniform(r); break;
        case PLM_HMM_MVNORMAL: {
            double *S = par + (size_t)K * D + (size_t)k * D * D;
            memcpy(par + (size_t)k * D, random_obs(r, fd, D), (size_t)D * sizeof *par);
            for (i = 0; i < D; i++) S[i * D + i] = fd->var[i] > 0 ? fd->var[i] : 1;
            break;
        }
        }
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: st = plm_hmm_new_categorical(ctx, K, h->M, init, trans, par, out); break;
    case PLM_HMM_MVNORMAL: st = plm_hmm_new_mvnormal(ctx, K, D, init, trans, par, par + (size_t)K * D, out); break;
    default: st = plm_hmm_new_scalar(ctx, h->emit, K, init, trans, par, out);
    }
    free(init);
    return st;
}

/* One EM run from `start`; the trace (malloc'd, iters+1 doubles) and the final model are returned. */
static plm_status em_run(plm_ctx *ctx, const plm_hmm *start, fitdata *fd, const plm_hmm_fit_opts *o, double *smem,
                         plm_hmm **out, double *trace, int *ntrace)
{
    const plm_hmm *cur = start;
    stats s;
    double ll, ll_next;
    plm_status st;
    int it;
    if ((st = estep(ctx, cur, fd, smem, &s, &ll))) return st;
    trace[0] = ll;
    *ntrace = 1;
    for (it = 0; it < o->iters; it++) {
        plm_hmm *next;
        if ((st = mstep(ctx, cur, fd, &s, &next))) return st;
        if ((st = estep(ctx, next, fd, smem, &s, &ll_next))) {
            if (st != PLM_EDOM) return st;
            break;   /* unreachable in exact arithmetic: the M-step cannot make the data impossible */
        }
        /* EM cannot lower the likelihood; a lower value is rounding at the optimum: keep cur and stop */
        if (ll_next < ll) break;
        trace[(*ntrace)++] = ll_next;
        cur = next;
        if (ll_next - ll < o->tol) break;
        ll = ll_next;
    }
    *out = (plm_hmm *)cur;
    return PLM_OK;
}

plm_status plm_hmm_fit(plm_ctx *ctx, const plm_hmm *h, size_t nseq, const double *const *ys, const size_t *Ts,
                       const plm_hmm_fit_opts *opts, plm_hmm **out, double **trace, int *ntrace)
{
    const int K = h->K, D = h->D;
    plm_hmm_fit_opts o;
    fitdata fd;
    double *smem = NULL, *tr = NULL, *best_tr = NULL, best_ll = -INFINITY;
    plm_hmm *best = NULL;
    plm_status st = PLM_OK;
    int best_n = 0, r;
    size_t q, t;
    if (opts) o = *opts;
    else plm_hmm_fit_defaults(&o);
    if (o.iters < 0) return plm_failm(ctx, PLM_EINVAL, "hmm", "iters must be >= 0 (got %d)", o.iters);
    if (o.restarts < 1) return plm_failm(ctx, PLM_EINVAL, "hmm", "restarts must be >= 1 (got %d)", o.restarts);
    if (!(o.tol >= 0)) return plm_failm(ctx, PLM_EINVAL, "hmm", "tol must be >= 0 (got %g)", o.tol);
    if (nseq == 0) return plm_failm(ctx, PLM_EINVAL, "hmm", "no sequences");
    memset(&fd, 0, sizeof fd);
    fd.nseq = nseq, fd.ys = ys, fd.Ts = Ts;
    for (q = 0; q < nseq; q++) {
        plm_status sq = plm_hmm_check_obs(ctx, h, Ts[q], ys[q]);
        if (sq) {
            char msg[PLM_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", plm_ctx_errbody(ctx));
            return plm_failm(ctx, sq, "hmm", "sequence %zu: %s", q + 1, msg);
        }
        fd.Ttot += Ts[q];
        if (Ts[q] > fd.Tmax) fd.Tmax = Ts[q];
    }
    /* threads: no more than sequences, and no more than the scratch (2 Tmax K doubles each) allows */
    fd.nthreads = o.threads > 0 ? o.threads : plm_default_threads();
    if ((size_t)fd.nthreads > nseq) fd.nthreads = (int)nseq;
    while (fd.nthreads > 1 && (size_t)fd.nthreads * fd.Tmax * K > ((size_t)1 << 27)) fd.nthreads--;
    fd.slots = nseq < 64 ? nseq : 64;
    while (fd.slots > (size_t)fd.nthreads && fd.slots * stats_len(h) > ((size_t)1 << 23)) fd.slots /= 2;
    {
        const size_t nw = (size_t)fd.nthreads, sl = fd.slots;
        if (!(fd.mean = calloc(2 * (size_t)D, sizeof(double))) || !(fd.post = malloc(nw * fd.Tmax * K * sizeof(double)))
            || !(fd.work = malloc(nw * 4 * (size_t)K * sizeof(double))) || !(smem = malloc(stats_len(h) * sizeof *smem))
            || !(fd.slot_stats = malloc(sl * stats_len(h) * sizeof(double))) || !(fd.slot_ll = malloc(sl * sizeof(double)))
            || !(fd.slot_st = malloc(sl * sizeof *fd.slot_st)) || !(fd.slot_ctx = malloc(sl * sizeof *fd.slot_ctx))
            || !(tr = malloc(((size_t)o.iters + 1) * sizeof *tr)) || !(best_tr = malloc(((size_t)o.iters + 1) * sizeof *tr))
            || (h->emit != PLM_HMM_CATEGORICAL && !(fd.logB = malloc(nw * fd.Tmax * K * sizeof(double))))) {
            st = plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
            goto done;
        }
    }
    fd.var = fd.mean + D;
    /* data mean and variance per coordinate (Welford, so large offsets do not cancel) */
    {
        size_t n = 0;
        double *m2 = fd.var;
        for (q = 0; q < nseq; q++)
            for (t = 0; t < Ts[q]; t++) {
                int i;
                n++;
                for (i = 0; i < D; i++) {
                    const double x = ys[q][t * D + i], d = x - fd.mean[i];
                    fd.mean[i] += d / (double)n;
                    m2[i] += d * (x - fd.mean[i]);
                }
            }
        for (int i = 0; i < D; i++) fd.var[i] = m2[i] / (double)n;
    }
    for (r = 0; r < o.restarts; r++) {
        const plm_hmm *start = h;
        plm_hmm *res;
        int n;
        if (r > 0) {
            plm_rng rng;
            plm_hmm *rs;
            plm_rng_init(&rng, o.seed, (uint64_t)r);
            if ((st = random_start(ctx, h, &fd, &rng, &rs))) goto done;
            start = rs;
        }
        st = em_run(ctx, start, &fd, &o, smem, &res, tr, &n);
        if (st == PLM_EDOM && r > 0) continue;   /* a random start that cannot explain the data */
        if (st) goto done;
        if (!best || tr[n - 1] > best_ll) {
            double *sw = best_tr;
            best = res, best_ll = tr[n - 1], best_n = n;
            best_tr = tr, tr = sw;
        }
    }
    if (!(*trace = plm_gc_alloc_atomic((size_t)best_n * sizeof **trace))) {
        st = plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        goto done;
    }
    memcpy(*trace, best_tr, (size_t)best_n * sizeof **trace);
    *ntrace = best_n;
    *out = best;
done:
    free(fd.mean), free(fd.post), free(fd.work), free(fd.logB), free(smem), free(tr), free(best_tr);
    free(fd.slot_stats), free(fd.slot_ll), free(fd.slot_st), free(fd.slot_ctx);
    return st;
}
