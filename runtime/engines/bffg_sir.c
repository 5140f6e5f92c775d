/* bffg_sir.c -- BFFG for the compartmental interacting particle systems of bffg_sir.h.
**
** Backward, under the auxiliary (individuals independent, i's chain with transition P~_i(t) built from its
** neighbours' state counts fixed at lambda_i(t)), per individual: a_i(t, s) = p(observations of i at times >= t |
** x_i(t) = s) and u_i(t, s) = p(observations of i at times > t | x_i(t) = s) = sum_s' P~_i(t)(s, s') a_i(t + 1, s'),
** with a_i(t, s) = g_i(t, s) u_i(t, s) (g: the emission probabilities of i's observations at t) and u_i(T) = 1.
** Each is kept as a vector with max 1 and its log scale.
** Forward, the guided transition of the true dynamics is q(x' | x) = prod_i p_i(x'_i | x) a_i(t + 1, x'_i) / Z_i(t, x)
** with Z_i(t, x) = sum_s' p_i(s' | x) a_i(t + 1, s') (the true transition factorises over individuals given x), and
** the initial draw q0 = prod_i pi_i a_i(0) / Z0_i. Then p(x, y) / q(x) telescopes to
**   log w = sum_i log Z0_i + sum_{t < T} sum_i [log Z_i(t, x_t) - log u_i(t, x_i(t))],
** each step's term known before x_{t+1} is drawn (so guided SMC resamples before moving). When the true transition
** equals the auxiliary (no interaction, or no neighbours) Z_i(t, x) = u_i(t, x_i) and every weight is
** sum_i log Z0_i, which is then the exact log-likelihood. sum_i log Z0_i is always the auxiliary model's exact
** log-likelihood. */
#include "bffg_sir.h"

#include <math.h>
#include <string.h>

#include "par.h"
#include "rng.h"

/* Where a true transition probability depends on the neighbours, the auxiliary's is kept >= AUX_FLOOR (and so is
** the probability of staying): a zero there would make the backward messages zero where the true process goes,
** and the guided paths would miss part of the posterior. */
#define AUX_FLOOR 1e-9
#define KMAX PLM_IPS_MAX_STATES

typedef struct ips_filter {
    const plm_bffg_ips *m;
    int K;
    double *av, *uv;     /* (T+1)*N*K: the rescaled a_i(t) and u_i(t), index (t*N + i)*K + s */
    double *ca, *cu;     /* (T+1)*N: their log scales */
    unsigned char *dep;  /* K: 1 when row s of the transition depends on the neighbours */
    double *fixed;       /* K*K: the rows that do not, and every row of an individual without neighbours */
    int *kdep;           /* K: the one neighbour state that row s depends on (SIR: I), or -1 (several, or none) */
    double **tab;        /* K: for kdep[s] >= 0, row s at n = 0..maxdeg such neighbours, n*K + s' (else NULL) */
    double logz0;        /* sum_i log Z0_i */
} ips_filter;

/* The transition probabilities out of state s (row p, K) at neighbour counts c (K; NULL: none). */
static void trans_row(const plm_bffg_ips *m, int s, const double *c, double *p)
{
    int K = m->K, j, k, ninf = 0;
    double R = 0, stay;
    for (j = 0; j < K; j++) {
        double r = 0;
        if (j != s) {
            r = m->base[s * K + j];
            if (m->per && c)
                for (k = 0; k < K; k++)
                    if (c[k] > 0) r += m->per[(s * K + j) * K + k] * c[k];   /* (an infinite rate needs a neighbour) */
        }
        p[j] = r;
        if (r == INFINITY) ninf++;
        R += r;
    }
    if (ninf) {   /* the infinite clocks ring at once: one of them, uniformly */
        for (j = 0; j < K; j++) p[j] = p[j] == INFINITY ? 1.0 / ninf : 0;
        return;
    }
    if (R == 0) {
        for (j = 0; j < K; j++) p[j] = j == s;
        return;
    }
    stay = exp(-R);
    for (j = 0; j < K; j++) p[j] = j == s ? stay : -expm1(-R) * p[j] / R;
}

/* The auxiliary's row: trans_row at the guessed counts lam, with the transitions that depend on the neighbours
** (and staying) kept >= AUX_FLOOR when i has neighbours. */
static void aux_row(const ips_filter *f, int i, int s, const double *lam, double *p)
{
    const plm_bffg_ips *m = f->m;
    int K = f->K, j, k;
    double sum = 0;
    trans_row(m, s, lam, p);
    if (!f->dep[s] || m->adj_start[i + 1] == m->adj_start[i]) return;
    for (j = 0; j < K; j++) {
        int d = j == s;
        for (k = 0; k < K && !d; k++) d = m->per[(s * K + j) * K + k] > 0;
        if (d && p[j] < AUX_FLOOR) p[j] = AUX_FLOOR;
        sum += p[j];
    }
    for (j = 0; j < K; j++) p[j] /= sum;
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

static plm_status check_model(plm_ctx *ctx, const plm_bffg_ips *m)
{
    int i, j, K = m->K;
    if (m->N < 1) return plm_fail(ctx, PLM_EINVAL, "bffg_ips: needs at least one individual (got %d)", m->N);
    if (m->T < 0) return plm_fail(ctx, PLM_EINVAL, "bffg_ips: T must be >= 0 (got %d)", m->T);
    if (K < 2 || K > KMAX) return plm_fail(ctx, PLM_EINVAL, "bffg_ips: the number of states must be in 2..%d (got %d)", KMAX, K);
    if (!m->adj_start || !m->init || !m->emission || !m->base || m->M < 1)
        return plm_fail(ctx, PLM_EINVAL, "bffg_ips: missing graph, rates, initial probabilities or emission matrix");
    for (i = 0; i < K * K; i++)
        if (i / K != i % K && !(m->base[i] >= 0))
            return plm_fail(ctx, PLM_EINVAL, "bffg_ips: the rate of %d -> %d must be >= 0 (got %g)", i / K + 1, i % K + 1, m->base[i]);
    if (m->per)
        for (i = 0; i < K * K * K; i++)
            if (!(m->per[i] >= 0))
                return plm_fail(ctx, PLM_EINVAL, "bffg_ips: the rate of %d -> %d per neighbour in state %d must be >= 0 (got %g)",
                                i / (K * K) + 1, (i / K) % K + 1, i % K + 1, m->per[i]);
    for (i = 0; i < m->N; i++) {
        if (m->adj_start[i + 1] < m->adj_start[i]) return plm_fail(ctx, PLM_EINVAL, "bffg_ips: bad neighbour offsets at %d", i + 1);
        for (j = m->adj_start[i]; j < m->adj_start[i + 1]; j++)
            if (m->adj[j] < 0 || m->adj[j] >= m->N || m->adj[j] == i)
                return plm_fail(ctx, PLM_EINVAL, "bffg_ips: individual %d has neighbour %d (must be in 1..%d and not itself)",
                                i + 1, m->adj[j] + 1, m->N);
        if (!is_prob_row(m->init + (size_t)K * i, K))
            return plm_fail(ctx, PLM_EINVAL, "bffg_ips: the initial probabilities of individual %d must be >= 0 and sum to 1", i + 1);
    }
    for (i = 0; i < K; i++)
        if (!is_prob_row(m->emission + (size_t)i * m->M, m->M))
            return plm_fail(ctx, PLM_EINVAL, "bffg_ips: row %d of the emission matrix must be >= 0 and sum to 1", i + 1);
    for (i = 0; i < m->nobs; i++) {
        if (m->obs_i[i] < 0 || m->obs_i[i] >= m->N)
            return plm_fail(ctx, PLM_EINVAL, "bffg_ips: observation %d names individual %d (there are %d)", i + 1, m->obs_i[i] + 1, m->N);
        if (m->obs_t[i] < 0 || m->obs_t[i] > m->T)
            return plm_fail(ctx, PLM_EINVAL, "bffg_ips: observation %d is at time %d (times are 0..%d)", i + 1, m->obs_t[i], m->T);
        if (m->obs_y[i] < 0 || m->obs_y[i] >= m->M)
            return plm_fail(ctx, PLM_EINVAL, "bffg_ips: observation %d is symbol %d (symbols are 1..%d)", i + 1, m->obs_y[i] + 1, m->M);
    }
    if (m->lambda)
        for (i = 0; i < m->N * m->T * K; i++)
            if (!(m->lambda[i] >= 0) || !isfinite(m->lambda[i]))
                return plm_fail(ctx, PLM_EINVAL, "bffg_ips: lambda[%d] must be finite and >= 0 (got %g)", i + 1, m->lambda[i]);
    return PLM_OK;
}

plm_status plm_bffg_ips_mean_field(plm_ctx *ctx, const plm_bffg_ips *m, double *lambda)
{
    int N = m->N, K = m->K, t, i, j, s, k;
    double *cur, *nxt, p[KMAX];
    plm_status st;
    if ((st = check_model(ctx, m))) return st;
    if (!(cur = plm_gc_alloc_atomic(2 * (size_t)N * K * sizeof *cur))) return plm_fail(ctx, PLM_ENOMEM, "bffg_ips: out of memory");
    nxt = cur + (size_t)N * K;
    memcpy(cur, m->init, (size_t)N * K * sizeof *cur);
    for (t = 0; t < m->T; t++) {
        for (i = 0; i < N; i++) {
            double *l = lambda + ((size_t)t * N + i) * K;
            for (k = 0; k < K; k++) l[k] = 0;
            for (j = m->adj_start[i]; j < m->adj_start[i + 1]; j++)
                for (k = 0; k < K; k++) l[k] += cur[(size_t)m->adj[j] * K + k];
        }
        for (i = 0; i < N; i++) {
            double *c = cur + (size_t)i * K, *x = nxt + (size_t)i * K;
            for (k = 0; k < K; k++) x[k] = 0;
            for (s = 0; s < K; s++) {
                if (c[s] == 0) continue;
                trans_row(m, s, lambda + ((size_t)t * N + i) * K, p);
                for (k = 0; k < K; k++) x[k] += c[s] * p[k];
            }
        }
        memcpy(cur, nxt, (size_t)N * K * sizeof *cur);
    }
    return PLM_OK;
}

/* Rescale v (K) to max 1; returns the log of the scale (-inf when v is zero). */
static double rescale(double *v, int K)
{
    double mx = 0;
    int j;
    for (j = 0; j < K; j++) mx = fmax(mx, v[j]);
    if (!(mx > 0)) return -INFINITY;
    for (j = 0; j < K; j++) v[j] /= mx;
    return log(mx);
}

static plm_status ips_backward(plm_ctx *ctx, const plm_bffg_ips *m, ips_filter *f)
{
    int N = m->N, T = m->T, K = m->K, t, i, s, j, k, maxdeg = 0;
    size_t cells = (size_t)(T + 1) * N, q;
    double *lambda = NULL, P[KMAX * KMAX];
    plm_status st;
    if ((st = check_model(ctx, m))) return st;
    f->m = m, f->K = K;
    f->av = plm_gc_alloc_atomic(cells * K * sizeof *f->av);
    f->uv = plm_gc_alloc_atomic(cells * K * sizeof *f->uv);
    f->ca = plm_gc_alloc_atomic(cells * sizeof *f->ca);
    f->cu = plm_gc_alloc_atomic(cells * sizeof *f->cu);
    f->dep = plm_gc_alloc_atomic((size_t)K);
    f->fixed = plm_gc_alloc_atomic((size_t)K * K * sizeof *f->fixed);
    f->kdep = plm_gc_alloc_atomic((size_t)K * sizeof *f->kdep);
    f->tab = plm_gc_alloc((size_t)K * sizeof *f->tab);
    if (!f->av || !f->uv || !f->ca || !f->cu || !f->dep || !f->fixed || !f->kdep || !f->tab)
        return plm_fail(ctx, PLM_ENOMEM, "bffg_ips: out of memory");
    for (i = 0; i < N; i++)
        if (m->adj_start[i + 1] - m->adj_start[i] > maxdeg) maxdeg = m->adj_start[i + 1] - m->adj_start[i];
    for (s = 0; s < K; s++) {
        f->dep[s] = 0, f->kdep[s] = -1, f->tab[s] = NULL;
        for (k = 0; k < K && m->per; k++) {
            int uses = 0;
            for (j = 0; j < K; j++) uses |= j != s && m->per[(s * K + j) * K + k] > 0;
            if (uses) f->kdep[s] = f->dep[s] ? -1 : k, f->dep[s] = 1;
        }
        trans_row(m, s, NULL, f->fixed + s * K);
        if (f->kdep[s] >= 0) {   /* the row as a table of the one count it depends on: no exp per draw */
            double c[KMAX];
            if (!(f->tab[s] = plm_gc_alloc_atomic((size_t)(maxdeg + 1) * K * sizeof **f->tab)))
                return plm_fail(ctx, PLM_ENOMEM, "bffg_ips: out of memory");
            for (k = 0; k < K; k++) c[k] = 0;
            for (j = 0; j <= maxdeg; j++) {
                c[f->kdep[s]] = j;
                trans_row(m, s, c, f->tab[s] + (size_t)j * K);
            }
        }
    }
    if (!(lambda = (double *)m->lambda)) {
        if (!(lambda = plm_gc_alloc_atomic(((size_t)N * T * K + 1) * sizeof *lambda)))
            return plm_fail(ctx, PLM_ENOMEM, "bffg_ips: out of memory");
        if ((st = plm_bffg_ips_mean_field(ctx, m, lambda))) return st;
    }
    /* g into av (the emissions of each individual's observations at each time) */
    for (q = 0; q < cells * K; q++) f->av[q] = 1;
    for (i = 0; i < m->nobs; i++)
        for (s = 0; s < K; s++) f->av[((size_t)m->obs_t[i] * N + m->obs_i[i]) * K + s] *= m->emission[(size_t)s * m->M + m->obs_y[i]];
    f->logz0 = 0;
    for (i = 0; i < N; i++) {
        double *a, *u, z0 = 0;
        if ((i & 255) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg_ips: interrupted");
        u = f->uv + ((size_t)T * N + i) * K;
        for (s = 0; s < K; s++) u[s] = 1;
        f->cu[(size_t)T * N + i] = 0;
        for (t = T;; t--) {
            size_t c = (size_t)t * N + i;
            a = f->av + c * K, u = f->uv + c * K;
            for (s = 0; s < K; s++) a[s] *= u[s];
            if ((f->ca[c] = f->cu[c] + rescale(a, K)) == -INFINITY)
                return plm_fail(ctx, PLM_EDOM, "bffg_ips: the observations of individual %d from time %d on have probability 0 "
                                               "under the auxiliary model", i + 1, t);
            if (t == 0) break;
            {   /* u(t - 1) = P~(t - 1) a(t) */
                double *up = f->uv + (c - N) * K;
                for (s = 0; s < K; s++) {
                    double acc = 0;
                    aux_row(f, i, s, lambda + (c - N) * K, P + s * K);
                    for (j = 0; j < K; j++) acc += P[s * K + j] * a[j];
                    up[s] = acc;
                }
                f->cu[c - N] = f->ca[c] + rescale(up, K);
            }
        }
        a = f->av + (size_t)i * K;
        for (s = 0; s < K; s++) z0 += m->init[(size_t)K * i + s] * a[s];
        if (!(z0 > 0))
            return plm_fail(ctx, PLM_EDOM, "bffg_ips: the observations of individual %d have probability 0 under the auxiliary "
                                           "model", i + 1);
        f->logz0 += f->ca[i] + log(z0);
    }
    return PLM_OK;
}

/* One draw from the K weights q (sum S > 0): the last state with positive weight absorbs rounding. */
static int pick(const double *q, int K, double S, plm_rng *r)
{
    double u = plm_rng_uniform(r) * S;
    int j, last = 0;
    for (j = 0; j < K; j++)
        if (q[j] > 0) {
            last = j;
            if (u < q[j]) return j;
            u -= q[j];
        }
    return last;
}

static void draw_initial(const ips_filter *f, unsigned char *x0, plm_rng *r)
{
    const plm_bffg_ips *m = f->m;
    int K = f->K, s;
    for (int i = 0; i < m->N; i++) {
        const double *a = f->av + (size_t)i * K, *pi = m->init + (size_t)K * i;
        double q[KMAX], S = 0;
        for (s = 0; s < K; s++) S += q[s] = pi[s] * a[s];
        x0[i] = (unsigned char)pick(q, K, S, r);
    }
}

/* The weight of step t at states x (N): sum_i log Z_i(t, x) - log u_i(t, x_i); with x1 non-NULL also draws the
** states at t + 1 from the guided transition. */
static double step(const ips_filter *f, int t, const unsigned char *restrict x, unsigned char *restrict x1, plm_rng *r)
{
    const plm_bffg_ips *m = f->m;
    int N = m->N, K = f->K, i, j;
    const double *a1 = f->av + (size_t)(t + 1) * N * K, *u = f->uv + (size_t)t * N * K;
    const double *ca1 = f->ca + (size_t)(t + 1) * N, *cu = f->cu + (size_t)t * N;
    double lw = 0;
    for (i = 0; i < N; i++) {
        const double *a = a1 + (size_t)K * i, *p;
        double q[KMAX], row[KMAX], Z = 0;
        int s = x[i];
        if (f->dep[s] && f->kdep[s] >= 0) {
            int n = 0, kd = f->kdep[s];
            for (j = m->adj_start[i]; j < m->adj_start[i + 1]; j++) n += x[m->adj[j]] == kd;
            p = f->tab[s] + (size_t)n * K;
        } else if (f->dep[s] && m->adj_start[i + 1] > m->adj_start[i]) {
            double c[KMAX];
            for (j = 0; j < K; j++) c[j] = 0;
            for (j = m->adj_start[i]; j < m->adj_start[i + 1]; j++) c[x[m->adj[j]]] += 1;
            trans_row(m, s, c, row);
            p = row;
        } else
            p = f->fixed + s * K;
        for (j = 0; j < K; j++) Z += q[j] = p[j] * a[j];
        if (!(Z > 0)) {
            if (x1) x1[i] = (unsigned char)s;
            lw = -INFINITY;
            continue;
        }
        lw += ca1[i] + log(Z) - cu[i] - log(u[(size_t)K * i + s]);
        if (x1) x1[i] = (unsigned char)pick(q, K, Z, r);
    }
    return lw;
}

typedef struct ips_job {
    const ips_filter *f;
    size_t width;          /* (T+1)*N */
    unsigned char *paths;
    double *out;           /* IS: total log weights; SMC: this step's weights */
    uint64_t seed, stream0;
    int t;                 /* SMC: the step; -1: the initial draw */
    int draw;              /* SMC: 0 weights only, 1 draws only */
    volatile int stop;
} ips_job;

static void is_chunk(void *arg, size_t begin, size_t end, int worker)
{
    ips_job *J = arg;
    const ips_filter *f = J->f;
    int N = f->m->N, T = f->m->T, t;
    (void)worker;
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
        for (t = 0; t < T; t++) lw += step(f, t, p + (size_t)t * N, p + (size_t)(t + 1) * N, &r);
        J->out[s] = lw;
    }
}

static void smc_chunk(void *arg, size_t begin, size_t end, int worker)
{
    ips_job *J = arg;
    const ips_filter *f = J->f;
    int N = f->m->N, t = J->t;
    (void)worker;
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
            step(f, t, p + (size_t)t * N, p + (size_t)(t + 1) * N, &r);
        else
            J->out[s] = step(f, t, p + (size_t)t * N, NULL, NULL);
    }
}

plm_status plm_bffg_ips_run(plm_ctx *ctx, const plm_bffg_ips *m, size_t n, int smc, plm_resample_scheme scheme,
                            double ess_threshold, uint64_t seed, int threads, unsigned char *paths, double *logw,
                            double *loglik, double *loglik_aux, size_t *resamples)
{
    ips_filter f;
    ips_job J;
    size_t width, s, nres = 0;
    plm_status st;
    int t;
    memset(&f, 0, sizeof f);
    if (n == 0) return plm_fail(ctx, PLM_EINVAL, "bffg_ips: needs at least one sample");
    if (!paths || !logw || !loglik) return plm_fail(ctx, PLM_EINVAL, "bffg_ips: needs path, weight and loglik buffers");
    if (!(ess_threshold >= 0 && ess_threshold <= 1))
        return plm_fail(ctx, PLM_EINVAL, "bffg_ips: ess_threshold must be in [0, 1] (got %g)", ess_threshold);
    if ((st = ips_backward(ctx, m, &f))) return st;
    if (loglik_aux) *loglik_aux = f.logz0;
    width = (size_t)(m->T + 1) * m->N;
    memset(&J, 0, sizeof J);
    J.f = &f, J.width = width, J.paths = paths, J.seed = seed;
    if (!smc) {
        J.out = logw;
        plm_parallel_for(threads, n, 64, is_chunk, &J);
        if (J.stop) return plm_fail(ctx, PLM_EINTR, "bffg_ips: interrupted");
        {
            double mx = -INFINITY, sum = 0;
            for (s = 0; s < n; s++) mx = fmax(mx, logw[s]);
            if (mx == -INFINITY) return plm_fail(ctx, PLM_EDOM, "bffg_ips: every guided path has weight 0");
            for (s = 0; s < n; s++) sum += exp(logw[s] - mx);
            *loglik = mx + log(sum / (double)n);
        }
    } else {
        double *inc = plm_gc_alloc_atomic(n * sizeof *inc), *W = plm_gc_alloc_atomic(n * sizeof *W), logz = f.logz0;
        size_t *counts = plm_gc_alloc_atomic(n * sizeof *counts), *anc = plm_gc_alloc_atomic(n * sizeof *anc);
        unsigned char *other = plm_gc_alloc_atomic(n * width), *cur = paths, *tmp;
        if (!inc || !W || !counts || !anc || !other) return plm_fail(ctx, PLM_ENOMEM, "bffg_ips: out of memory");
        J.out = inc;
        for (s = 0; s < n; s++) logw[s] = 0;
        for (t = -1; t < m->T; t++) {
            double lse_prev, lse;
            /* weights of step t (before the move: they depend on the states at t only) */
            if (t >= 0) {
                J.t = t, J.draw = 0, J.paths = cur;
                plm_parallel_for(threads, n, 64, smc_chunk, &J);
                if (J.stop) return plm_fail(ctx, PLM_EINTR, "bffg_ips: interrupted");
                lse_prev = plm_resample_normalise(logw, n, W);
                for (s = 0; s < n; s++) logw[s] += inc[s];
                lse = plm_resample_normalise(logw, n, W);
                if (lse == -INFINITY)
                    return plm_fail(ctx, PLM_EDOM, "bffg_ips: every particle has weight 0 at step %d", t + 1);
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
            if (J.stop) return plm_fail(ctx, PLM_EINTR, "bffg_ips: interrupted");
        }
        if (cur != paths) memcpy(paths, cur, n * width);
        *loglik = logz;
        for (s = 0; s < n; s++) logw[s] += f.logz0;
    }
    if (resamples) *resamples = nres;
    return PLM_OK;
}
