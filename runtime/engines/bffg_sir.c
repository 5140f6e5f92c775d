/* bffg_sir.c -- BFFG for the SIR interacting particle system of bffg_sir.h.
**
** Backward, under the auxiliary (individuals independent, i's chain with transition P~_i(t) built from lambda_i(t)
** infected neighbours), per individual: a_i(t, s) = p(observations of i at times >= t | x_i(t) = s) and
** u_i(t, s) = p(observations of i at times > t | x_i(t) = s) = sum_s' P~_i(t)(s, s') a_i(t + 1, s'), with
** a_i(t, s) = g_i(t, s) u_i(t, s) (g: the emission probabilities of i's observations at t) and u_i(T) = 1. Each is
** kept as a vector with max 1 and its log scale.
** Forward, the guided transition of the true dynamics is q(x' | x) = prod_i p_i(x'_i | x) a_i(t + 1, x'_i) / Z_i(t, x)
** with Z_i(t, x) = sum_s' p_i(s' | x) a_i(t + 1, s') (the true transition factorises over individuals given x), and
** the initial draw q0 = prod_i pi_i a_i(0) / Z0_i. Then p(x, y) / q(x) telescopes to
**   log w = sum_i log Z0_i + sum_{t < T} sum_i [log Z_i(t, x_t) - log u_i(t, x_i(t))],
** each step's term known before x_{t+1} is drawn (so guided SMC resamples before moving). When the true transition
** equals the auxiliary (beta = 0, or no neighbours) Z_i(t, x) = u_i(t, x_i) and every weight is sum_i log Z0_i,
** which is then the exact log-likelihood. sum_i log Z0_i is always the auxiliary model's exact log-likelihood. */
#include "bffg_sir.h"

#include <math.h>
#include <string.h>

#include "par.h"
#include "rng.h"

/* Where the true infection probability can take more than one value, the auxiliary's is kept in [AUX_FLOOR,
** 1 - AUX_FLOOR]: a zero there would make the backward messages zero where the true process goes, and the guided
** paths would miss part of the posterior. */
#define AUX_FLOOR 1e-9

typedef struct sir_filter {
    const plm_bffg_sir *m;
    double *av, *uv;     /* (T+1)*N*3: the rescaled a_i(t) and u_i(t), index (t*N + i)*3 + s */
    double *ca, *cu;     /* (T+1)*N: their log scales */
    double *pw;          /* maxdeg + 1: (1 - eps)(1 - beta)^n, the probability of escaping infection with n infected neighbours */
    double logz0;        /* sum_i log Z0_i */
} sir_filter;

static double aux_pinf(const plm_bffg_sir *m, int i, double lambda)
{
    double p = 1 - (1 - m->eps) * pow(1 - m->beta, lambda);
    if (m->beta > 0 && m->adj_start[i + 1] > m->adj_start[i]) p = fmin(fmax(p, AUX_FLOOR), 1 - AUX_FLOOR);
    return p;
}

static int is_prob_row(const double *p, int K)
{
    double s = 0;
    for (int j = 0; j < K; j++) {
        if (!(p[j] >= 0) || !isfinite(p[j])) return 0;
        s += p[j];
    }
    return fabs(s - 1) <= 1e-9;
}

static plm_status check_model(plm_ctx *ctx, const plm_bffg_sir *m)
{
    int i, j;
    if (m->N < 1) return plm_fail(ctx, PLM_EINVAL, "bffg_sir: needs at least one individual (got %d)", m->N);
    if (m->T < 0) return plm_fail(ctx, PLM_EINVAL, "bffg_sir: T must be >= 0 (got %d)", m->T);
    if (!(m->beta >= 0 && m->beta <= 1)) return plm_fail(ctx, PLM_EINVAL, "bffg_sir: beta must be in [0, 1] (got %g)", m->beta);
    if (!(m->gamma >= 0 && m->gamma <= 1)) return plm_fail(ctx, PLM_EINVAL, "bffg_sir: gamma must be in [0, 1] (got %g)", m->gamma);
    if (!(m->eps >= 0 && m->eps <= 1)) return plm_fail(ctx, PLM_EINVAL, "bffg_sir: eps must be in [0, 1] (got %g)", m->eps);
    if (!m->adj_start || !m->init || !m->emission || m->M < 1)
        return plm_fail(ctx, PLM_EINVAL, "bffg_sir: missing graph, initial probabilities or emission matrix");
    for (i = 0; i < m->N; i++) {
        if (m->adj_start[i + 1] < m->adj_start[i]) return plm_fail(ctx, PLM_EINVAL, "bffg_sir: bad neighbour offsets at %d", i + 1);
        for (j = m->adj_start[i]; j < m->adj_start[i + 1]; j++)
            if (m->adj[j] < 0 || m->adj[j] >= m->N || m->adj[j] == i)
                return plm_fail(ctx, PLM_EINVAL, "bffg_sir: individual %d has neighbour %d (must be in 1..%d and not itself)",
                                i + 1, m->adj[j] + 1, m->N);
        if (!is_prob_row(m->init + 3 * i, 3))
            return plm_fail(ctx, PLM_EINVAL, "bffg_sir: the initial probabilities of individual %d must be >= 0 and sum to 1", i + 1);
    }
    for (i = 0; i < 3; i++)
        if (!is_prob_row(m->emission + (size_t)i * m->M, m->M))
            return plm_fail(ctx, PLM_EINVAL, "bffg_sir: row %d of the emission matrix must be >= 0 and sum to 1", i + 1);
    for (i = 0; i < m->nobs; i++) {
        if (m->obs_i[i] < 0 || m->obs_i[i] >= m->N)
            return plm_fail(ctx, PLM_EINVAL, "bffg_sir: observation %d names individual %d (there are %d)", i + 1, m->obs_i[i] + 1, m->N);
        if (m->obs_t[i] < 0 || m->obs_t[i] > m->T)
            return plm_fail(ctx, PLM_EINVAL, "bffg_sir: observation %d is at time %d (times are 0..%d)", i + 1, m->obs_t[i], m->T);
        if (m->obs_y[i] < 0 || m->obs_y[i] >= m->M)
            return plm_fail(ctx, PLM_EINVAL, "bffg_sir: observation %d is symbol %d (symbols are 1..%d)", i + 1, m->obs_y[i] + 1, m->M);
    }
    if (m->lambda)
        for (i = 0; i < m->N * m->T; i++)
            if (!(m->lambda[i] >= 0) || !isfinite(m->lambda[i]))
                return plm_fail(ctx, PLM_EINVAL, "bffg_sir: lambda[%d] must be finite and >= 0 (got %g)", i + 1, m->lambda[i]);
    return PLM_OK;
}

plm_status plm_bffg_sir_mean_field(plm_ctx *ctx, const plm_bffg_sir *m, double *lambda)
{
    int N = m->N, t, i, j;
    double *cur, *nxt;
    plm_status st;
    if ((st = check_model(ctx, m))) return st;
    if (!(cur = plm_gc_alloc_atomic(6 * (size_t)N * sizeof *cur))) return plm_fail(ctx, PLM_ENOMEM, "bffg_sir: out of memory");
    nxt = cur + 3 * N;
    memcpy(cur, m->init, 3 * (size_t)N * sizeof *cur);
    for (t = 0; t < m->T; t++) {
        for (i = 0; i < N; i++) {
            double l = 0;
            for (j = m->adj_start[i]; j < m->adj_start[i + 1]; j++) l += cur[3 * m->adj[j] + 1];
            lambda[t * N + i] = l;
        }
        for (i = 0; i < N; i++) {
            double p = 1 - (1 - m->eps) * pow(1 - m->beta, lambda[t * N + i]), *c = cur + 3 * i;
            nxt[3 * i] = c[0] * (1 - p);
            nxt[3 * i + 1] = c[0] * p + c[1] * (1 - m->gamma);
            nxt[3 * i + 2] = c[2] + c[1] * m->gamma;
        }
        memcpy(cur, nxt, 3 * (size_t)N * sizeof *cur);
    }
    return PLM_OK;
}

/* Rescale v (3) to max 1; returns the log of the scale (-inf when v is zero). */
static double rescale3(double *v)
{
    double mx = fmax(v[0], fmax(v[1], v[2]));
    if (!(mx > 0)) return -INFINITY;
    v[0] /= mx, v[1] /= mx, v[2] /= mx;
    return log(mx);
}

static plm_status sir_backward(plm_ctx *ctx, const plm_bffg_sir *m, sir_filter *f)
{
    int N = m->N, T = m->T, t, i, s, maxdeg = 0;
    size_t cells = (size_t)(T + 1) * N, q;
    double *lambda = NULL;
    plm_status st;
    if ((st = check_model(ctx, m))) return st;
    f->m = m;
    for (i = 0; i < N; i++)
        if (m->adj_start[i + 1] - m->adj_start[i] > maxdeg) maxdeg = m->adj_start[i + 1] - m->adj_start[i];
    f->av = plm_gc_alloc_atomic(cells * 3 * sizeof *f->av);
    f->uv = plm_gc_alloc_atomic(cells * 3 * sizeof *f->uv);
    f->ca = plm_gc_alloc_atomic(cells * sizeof *f->ca);
    f->cu = plm_gc_alloc_atomic(cells * sizeof *f->cu);
    f->pw = plm_gc_alloc_atomic((size_t)(maxdeg + 1) * sizeof *f->pw);
    if (!f->av || !f->uv || !f->ca || !f->cu || !f->pw) return plm_fail(ctx, PLM_ENOMEM, "bffg_sir: out of memory");
    for (s = 0; s <= maxdeg; s++) f->pw[s] = (1 - m->eps) * pow(1 - m->beta, s);
    if (!(lambda = (double *)m->lambda)) {
        if (!(lambda = plm_gc_alloc_atomic(((size_t)N * T + 1) * sizeof *lambda)))
            return plm_fail(ctx, PLM_ENOMEM, "bffg_sir: out of memory");
        if ((st = plm_bffg_sir_mean_field(ctx, m, lambda))) return st;
    }
    /* g into av (the emissions of each individual's observations at each time) */
    for (q = 0; q < cells * 3; q++) f->av[q] = 1;
    for (i = 0; i < m->nobs; i++)
        for (s = 0; s < 3; s++) f->av[((size_t)m->obs_t[i] * N + m->obs_i[i]) * 3 + s] *= m->emission[(size_t)s * m->M + m->obs_y[i]];
    f->logz0 = 0;
    for (i = 0; i < N; i++) {
        double *a, *u, z0;
        if ((i & 255) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg_sir: interrupted");
        u = f->uv + ((size_t)T * N + i) * 3;
        u[0] = u[1] = u[2] = 1;
        f->cu[(size_t)T * N + i] = 0;
        for (t = T;; t--) {
            size_t c = (size_t)t * N + i;
            a = f->av + c * 3, u = f->uv + c * 3;
            for (s = 0; s < 3; s++) a[s] *= u[s];
            if ((f->ca[c] = f->cu[c] + rescale3(a)) == -INFINITY)
                return plm_fail(ctx, PLM_EDOM, "bffg_sir: the observations of individual %d from time %d on have probability 0 "
                                               "under the auxiliary model", i + 1, t);
            if (t == 0) break;
            {   /* u(t - 1) = P~(t - 1) a(t) */
                double p = aux_pinf(m, i, lambda[(size_t)(t - 1) * N + i]), *up = f->uv + (c - N) * 3;
                up[0] = (1 - p) * a[0] + p * a[1];
                up[1] = (1 - m->gamma) * a[1] + m->gamma * a[2];
                up[2] = a[2];
                f->cu[c - N] = f->ca[c] + rescale3(up);
            }
        }
        a = f->av + (size_t)i * 3;
        z0 = m->init[3 * i] * a[0] + m->init[3 * i + 1] * a[1] + m->init[3 * i + 2] * a[2];
        if (!(z0 > 0))
            return plm_fail(ctx, PLM_EDOM, "bffg_sir: the observations of individual %d have probability 0 under the auxiliary "
                                           "model", i + 1);
        f->logz0 += f->ca[i] + log(z0);
    }
    return PLM_OK;
}

/* One draw from the 3 weights q (sum S > 0): the last state with positive weight absorbs rounding. */
static int pick3(const double *q, double S, plm_rng *r)
{
    double u = plm_rng_uniform(r) * S;
    int j, last = 0;
    for (j = 0; j < 3; j++)
        if (q[j] > 0) {
            last = j;
            if (u < q[j]) return j;
            u -= q[j];
        }
    return last;
}

static void draw_initial(const sir_filter *f, unsigned char *x0, plm_rng *r)
{
    const plm_bffg_sir *m = f->m;
    for (int i = 0; i < m->N; i++) {
        const double *a = f->av + (size_t)i * 3, *pi = m->init + 3 * i;
        double q[3] = {pi[0] * a[0], pi[1] * a[1], pi[2] * a[2]};
        x0[i] = (unsigned char)pick3(q, q[0] + q[1] + q[2], r);
    }
}

/* The weight of step t at states x (N): sum_i log Z_i(t, x) - log u_i(t, x_i); with x1 non-NULL also draws the
** states at t + 1 from the guided transition. ninf: N ints of workspace. */
static double step(const sir_filter *f, int t, const unsigned char *restrict x, unsigned char *restrict x1, plm_rng *r,
                   int *restrict ninf)
{
    const plm_bffg_sir *m = f->m;
    int N = m->N, i, j;
    const double *a1 = f->av + (size_t)(t + 1) * N * 3, *u = f->uv + (size_t)t * N * 3;
    const double *ca1 = f->ca + (size_t)(t + 1) * N, *cu = f->cu + (size_t)t * N;
    double lw = 0;
    for (i = 0; i < N; i++) {
        int k = 0;
        for (j = m->adj_start[i]; j < m->adj_start[i + 1]; j++) k += x[m->adj[j]] == 1;
        ninf[i] = k;
    }
    for (i = 0; i < N; i++) {
        const double *a = a1 + 3 * i;
        double q[3], Z;
        int s = x[i];
        if (s == 0) {
            double esc = f->pw[ninf[i]];
            q[0] = esc * a[0], q[1] = (1 - esc) * a[1], q[2] = 0;
        } else if (s == 1)
            q[0] = 0, q[1] = (1 - m->gamma) * a[1], q[2] = m->gamma * a[2];
        else
            q[0] = q[1] = 0, q[2] = a[2];
        Z = q[0] + q[1] + q[2];
        if (!(Z > 0)) {
            if (x1) x1[i] = (unsigned char)s;
            lw = -INFINITY;
            continue;
        }
        lw += ca1[i] + log(Z) - cu[i] - log(u[3 * i + s]);
        if (x1) x1[i] = (unsigned char)pick3(q, Z, r);
    }
    return lw;
}

typedef struct sir_job {
    const sir_filter *f;
    size_t width;          /* (T+1)*N */
    unsigned char *paths;
    double *out;           /* IS: total log weights; SMC: this step's weights */
    uint64_t seed, stream0;
    int t;                 /* SMC: the step; -1: the initial draw */
    int draw;              /* SMC: 0 weights only, 1 draws only */
    volatile int stop;
    int failed;
} sir_job;

static void is_chunk(void *arg, size_t begin, size_t end, int worker)
{
    sir_job *J = arg;
    const sir_filter *f = J->f;
    int N = f->m->N, T = f->m->T, t;
    int *ninf = plm_gc_alloc_atomic((size_t)N * sizeof *ninf);
    (void)worker;
    if (!ninf) {
        J->failed = 1;
        return;
    }
    for (size_t s = begin; s < end && !J->stop; s++) {
        unsigned char *p = J->paths + s * J->width;
        double lw = f->logz0;
        plm_rng r;
        if ((s & 63) == 0 && plm_interrupted()) {
            J->stop = 1;
            break;
        }
        plm_rng_init(&r, J->seed, (uint64_t)s);
        draw_initial(f, p, &r);
        for (t = 0; t < T; t++) lw += step(f, t, p + (size_t)t * N, p + (size_t)(t + 1) * N, &r, ninf);
        J->out[s] = lw;
    }
}

static void smc_chunk(void *arg, size_t begin, size_t end, int worker)
{
    sir_job *J = arg;
    const sir_filter *f = J->f;
    int N = f->m->N, t = J->t;
    int *ninf = plm_gc_alloc_atomic((size_t)N * sizeof *ninf);
    (void)worker;
    if (!ninf) {
        J->failed = 1;
        return;
    }
    for (size_t s = begin; s < end && !J->stop; s++) {
        unsigned char *p = J->paths + s * J->width;
        plm_rng r;
        if ((s & 63) == 0 && plm_interrupted()) {
            J->stop = 1;
            break;
        }
        plm_rng_init(&r, J->seed, J->stream0 + s);
        if (t < 0)
            draw_initial(f, p, &r);
        else if (J->draw)
            step(f, t, p + (size_t)t * N, p + (size_t)(t + 1) * N, &r, ninf);
        else
            J->out[s] = step(f, t, p + (size_t)t * N, NULL, NULL, ninf);
    }
}

plm_status plm_bffg_sir_run(plm_ctx *ctx, const plm_bffg_sir *m, size_t n, int smc, plm_resample_scheme scheme,
                            double ess_threshold, uint64_t seed, int threads, unsigned char *paths, double *logw,
                            double *loglik, double *loglik_aux, size_t *resamples)
{
    sir_filter f;
    sir_job J;
    size_t width, s, nres = 0;
    plm_status st;
    int t;
    memset(&f, 0, sizeof f);
    if (n == 0) return plm_fail(ctx, PLM_EINVAL, "bffg_sir: needs at least one sample");
    if (!paths || !logw || !loglik) return plm_fail(ctx, PLM_EINVAL, "bffg_sir: needs path, weight and loglik buffers");
    if (!(ess_threshold >= 0 && ess_threshold <= 1))
        return plm_fail(ctx, PLM_EINVAL, "bffg_sir: ess_threshold must be in [0, 1] (got %g)", ess_threshold);
    if ((st = sir_backward(ctx, m, &f))) return st;
    if (loglik_aux) *loglik_aux = f.logz0;
    width = (size_t)(m->T + 1) * m->N;
    memset(&J, 0, sizeof J);
    J.f = &f, J.width = width, J.paths = paths, J.seed = seed;
    if (!smc) {
        J.out = logw;
        plm_parallel_for(threads, n, 64, is_chunk, &J);
        if (J.failed) return plm_fail(ctx, PLM_ENOMEM, "bffg_sir: out of memory");
        if (J.stop) return plm_fail(ctx, PLM_EINTR, "bffg_sir: interrupted");
        {
            double mx = -INFINITY, sum = 0;
            for (s = 0; s < n; s++) mx = fmax(mx, logw[s]);
            if (mx == -INFINITY) return plm_fail(ctx, PLM_EDOM, "bffg_sir: every guided path has weight 0");
            for (s = 0; s < n; s++) sum += exp(logw[s] - mx);
            *loglik = mx + log(sum / (double)n);
        }
    } else {
        double *inc = plm_gc_alloc_atomic(n * sizeof *inc), *W = plm_gc_alloc_atomic(n * sizeof *W), logz = f.logz0;
        size_t *counts = plm_gc_alloc_atomic(n * sizeof *counts), *anc = plm_gc_alloc_atomic(n * sizeof *anc);
        unsigned char *other = plm_gc_alloc_atomic(n * width), *cur = paths, *tmp;
        if (!inc || !W || !counts || !anc || !other) return plm_fail(ctx, PLM_ENOMEM, "bffg_sir: out of memory");
        J.out = inc;
        for (s = 0; s < n; s++) logw[s] = 0;
        for (t = -1; t < m->T; t++) {
            double lse_prev, lse;
            /* weights of step t (before the move: they depend on the states at t only) */
            if (t >= 0) {
                J.t = t, J.draw = 0, J.paths = cur;
                plm_parallel_for(threads, n, 64, smc_chunk, &J);
                if (J.failed) return plm_fail(ctx, PLM_ENOMEM, "bffg_sir: out of memory");
                if (J.stop) return plm_fail(ctx, PLM_EINTR, "bffg_sir: interrupted");
                lse_prev = plm_resample_normalise(logw, n, W);
                for (s = 0; s < n; s++) logw[s] += inc[s];
                lse = plm_resample_normalise(logw, n, W);
                if (lse == -INFINITY)
                    return plm_fail(ctx, PLM_EDOM, "bffg_sir: every particle has weight 0 at step %d", t + 1);
                logz += lse - lse_prev;
                if (ess_threshold >= 1 || plm_resample_ess(logw, n) <= ess_threshold * (double)n) {
                    plm_rng rr;
                    plm_rng_init(&rr, seed, UINT64_MAX - (uint64_t)t);
                    if ((st = plm_resample_counts(ctx, scheme, W, n, n, &rr, counts, inc))) return st;
                    plm_resample_ancestors(counts, n, anc);
                    for (s = 0; s < n; s++) memcpy(other + s * width, cur + anc[s] * width, (size_t)(t + 1) * m->N);
                    tmp = cur, cur = other, other = tmp;
                    for (s = 0; s < n; s++) logw[s] = 0;
                    nres++;
                }
            }
            /* the move to t + 1 */
            J.t = t, J.draw = 1, J.paths = cur, J.stream0 = (uint64_t)(t + 1) * n;
            plm_parallel_for(threads, n, 64, smc_chunk, &J);
            if (J.failed) return plm_fail(ctx, PLM_ENOMEM, "bffg_sir: out of memory");
            if (J.stop) return plm_fail(ctx, PLM_EINTR, "bffg_sir: interrupted");
        }
        if (cur != paths) memcpy(paths, cur, n * width);
        *loglik = logz;
        for (s = 0; s < n; s++) logw[s] += f.logz0;
    }
    if (resamples) *resamples = nres;
    return PLM_OK;
}
