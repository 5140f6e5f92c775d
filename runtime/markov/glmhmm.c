/* glmhmm.c -- switching GLM-HMMs with learnable priors (see glmhmm.h). The E-step runs forward through the
** HMM core (plm_hmm_core_loglik) and backward here in log space, to get the expected transition counts the
** core does not return; the M-step is one weighted, penalised Newton fit per state and neuron. */
#include "glmhmm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_gamma.h>

#include "hmm.h"

#define POLL_EVERY 4096

/* Hyperpriors: inverse-gamma(a, b) with n0 = 10 pseudo-observations of the given variance (a = n0/2,
** b = n0 v / 2); Dirichlet(ALPHA, ALPHA, ALPHA) on the one-hot type probabilities. */
#define HYPER_N0 10.0
#define V_GAUSS 0.25
#define V_ON 0.25
#define V_OFF 0.01
#define ALPHA 2.0

const char *plm_glmhmm_family_name(plm_glmhmm_family f) { return f == PLM_GLMHMM_POISSON ? "poisson" : "bernoulli"; }

const char *plm_glmhmm_prior_name(plm_glmhmm_prior p)
{
    return p == PLM_GLMHMM_NONE ? "none" : p == PLM_GLMHMM_GAUSSIAN ? "gaussian" : "onehot";
}

void plm_glmhmm_fit_defaults(plm_glmhmm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->K = 2, o->L = 1;
    o->family = PLM_GLMHMM_POISSON, o->prior = PLM_GLMHMM_NONE;
    o->iters = 200, o->tol = 1e-6, o->restarts = 3, o->newton = 2;
    o->ridge = 1e-4, o->stickiness = 0.95, o->seed = 1;
}

static double *gc_doubles(size_t n) { return plm_gc_alloc_atomic((n ? n : 1) * sizeof(double)); }

static plm_glmhmm *alloc_model(int K, int N, int L, plm_glmhmm_family family, plm_glmhmm_prior prior)
{
    plm_glmhmm *m = plm_gc_alloc(sizeof *m);
    const size_t P = 1 + (size_t)N * L, NN = (size_t)N * N;
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->K = K, m->N = N, m->L = L, m->P = (int)P, m->family = family, m->prior = prior;
    if (!(m->init = gc_doubles((size_t)K)) || !(m->trans = gc_doubles((size_t)K * K)) || !(m->W = gc_doubles((size_t)K * N * P)))
        return NULL;
    if (prior == PLM_GLMHMM_GAUSSIAN && !(m->wbar = gc_doubles(NN * L))) return NULL;
    if (prior == PLM_GLMHMM_ONEHOT && (!(m->type_prob = gc_doubles(NN * 3)) || !(m->resp = gc_doubles((size_t)K * NN * 3))))
        return NULL;
    return m;
}

static plm_glmhmm *copy_model(const plm_glmhmm *s)
{
    plm_glmhmm *m = alloc_model(s->K, s->N, s->L, s->family, s->prior);
    const size_t NN = (size_t)s->N * s->N;
    double *init, *trans, *W, *wbar, *tp, *resp;
    if (!m) return NULL;
    init = m->init, trans = m->trans, W = m->W, wbar = m->wbar, tp = m->type_prob, resp = m->resp;
    *m = *s;
    m->init = init, m->trans = trans, m->W = W, m->wbar = wbar, m->type_prob = tp, m->resp = resp;
    memcpy(init, s->init, (size_t)s->K * sizeof *init);
    memcpy(trans, s->trans, (size_t)s->K * s->K * sizeof *trans);
    memcpy(W, s->W, (size_t)s->K * s->N * s->P * sizeof *W);
    if (wbar) memcpy(wbar, s->wbar, NN * s->L * sizeof *wbar);
    if (tp) memcpy(tp, s->type_prob, NN * 3 * sizeof *tp), memcpy(resp, s->resp, (size_t)s->K * NN * 3 * sizeof *resp);
    return m;
}

plm_status plm_glmhmm_new(plm_ctx *ctx, int K, int N, int L, plm_glmhmm_family family, const double *init,
                          const double *trans, const double *W, plm_glmhmm **out)
{
    plm_glmhmm *m;
    plm_status st;
    size_t n, p;
    if (K < 1 || K > 64) return plm_fail(ctx, PLM_EINVAL, "glmhmm: K must be in 1..64 (got %d)", K);
    if (N < 1 || N > 4096) return plm_fail(ctx, PLM_EINVAL, "glmhmm: N must be in 1..4096 (got %d)", N);
    if (L < 1 || L > 1000) return plm_fail(ctx, PLM_EINVAL, "glmhmm: lags must be in 1..1000 (got %d)", L);
    if ((st = plm_hmm_check_chain(ctx, "glmhmm", K, init, trans))) return st;
    n = (size_t)K * N * (1 + (size_t)N * L);
    for (p = 0; p < n; p++)
        if (!isfinite(W[p])) return plm_fail(ctx, PLM_EINVAL, "glmhmm: weights entry %zu is %g (must be finite)", p + 1, W[p]);
    if (!(m = alloc_model(K, N, L, family, PLM_GLMHMM_NONE))) return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    memcpy(m->init, init, (size_t)K * sizeof *init);
    memcpy(m->trans, trans, (size_t)K * K * sizeof *trans);
    memcpy(m->W, W, n * sizeof *W);
    *out = m;
    return PLM_OK;
}

plm_status plm_glmhmm_check_spikes(plm_ctx *ctx, plm_glmhmm_family family, size_t T, int N, const double *y)
{
    size_t t;
    int i;
    if (T == 0) return plm_fail(ctx, PLM_EINVAL, "glmhmm: spikes must have at least one bin");
    for (t = 0; t < T; t++)
        for (i = 0; i < N; i++) {
            const double v = y[t * N + i];
            if (!(v >= 0) || v != floor(v) || v > 1e9)
                return plm_fail(ctx, PLM_EDOM, "glmhmm: spikes[%zu][%d] is %g: counts must be whole numbers >= 0", t + 1, i + 1, v);
            if (family == PLM_GLMHMM_BERNOULLI && v > 1)
                return plm_fail(ctx, PLM_EDOM, "glmhmm: spikes[%zu][%d] is %g, but a bernoulli model needs 0 or 1", t + 1, i + 1, v);
        }
    return PLM_OK;
}

/* ---- GLM pieces ---- */

static inline double log1pexp(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* log p(y | eta) without Poisson's -log y! (it does not depend on the parameters; added per bin) */
static inline double unit_ll(plm_glmhmm_family f, double y, double eta)
{
    return f == PLM_GLMHMM_POISSON ? y * eta - exp(eta) : y * eta - log1pexp(eta);
}

/* The design rows x_t = (1, y_{t-1}, ..., y_{t-L}), zero before the first bin, stored sparse (row t's nonzero
** entries are col/val[ptr[t] .. ptr[t+1]), columns ascending): spike counts are mostly zero, and the Newton
** Hessian then costs the square of a row's nonzeros rather than P^2. */
typedef struct design {
    size_t *ptr;   /* T+1 */
    int *col;
    double *val;
} design;

static void design_free(design *X) { free(X->ptr), free(X->col), free(X->val); }

static plm_status design_new(plm_ctx *ctx, int N, int L, size_t T, const double *y, design *X)
{
    size_t t, nnz = 0, at = 0;
    int l, j;
    X->col = NULL, X->val = NULL;
    if (!(X->ptr = malloc((T + 1) * sizeof *X->ptr))) return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    for (t = 0; t < T * N; t++) nnz += y[t] != 0;
    nnz = T + nnz * (size_t)L;
    if (!(X->col = malloc(nnz * sizeof *X->col)) || !(X->val = malloc(nnz * sizeof *X->val))) {
        design_free(X);
        return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    }
    for (t = 0; t < T; t++) {
        X->ptr[t] = at;
        X->col[at] = 0, X->val[at++] = 1;
        for (l = 0; l < L && (size_t)l < t; l++) {
            const double *yl = y + (t - l - 1) * N;
            for (j = 0; j < N; j++)
                if (yl[j] != 0) X->col[at] = 1 + l * N + j, X->val[at++] = yl[j];
        }
    }
    X->ptr[T] = at;
    return PLM_OK;
}

/* x_t . beta */
static inline double sdot(const design *X, size_t t, const double *restrict beta)
{
    double s = 0;
    size_t a;
    for (a = X->ptr[t]; a < X->ptr[t + 1]; a++) s += X->val[a] * beta[X->col[a]];
    return s;
}

static inline double dot(const double *restrict a, const double *restrict b, size_t n)
{
    double s = 0;
    size_t p;
    for (p = 0; p < n; p++) s += a[p] * b[p];
    return s;
}

/* logB (T*K) from the design X. */
static plm_status emit_rows(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const design *X, const double *y, double *logB)
{
    const int K = m->K, N = m->N;
    const size_t P = (size_t)m->P;
    size_t t;
    int k, i;
    for (t = 0; t < T; t++) {
        const double *yt = y + t * N;
        double c = 0;
        if ((t & (POLL_EVERY - 1)) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "glmhmm: interrupted");
        if (m->family == PLM_GLMHMM_POISSON)
            for (i = 0; i < N; i++) c -= gsl_sf_lnfact((unsigned)yt[i]);
        for (k = 0; k < K; k++) {
            const double *Wk = m->W + (size_t)k * N * P;
            double s = c;
            for (i = 0; i < N; i++) s += unit_ll(m->family, yt[i], sdot(X, t, Wk + (size_t)i * P));
            logB[t * K + k] = s;
        }
    }
    return PLM_OK;
}

/* logB of spikes y for a model: checks the spikes and builds the design. */
static plm_status prepare(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, design *X, double **logB)
{
    plm_status st;
    *logB = NULL;
    X->ptr = NULL, X->col = NULL, X->val = NULL;
    if ((st = plm_glmhmm_check_spikes(ctx, m->family, T, m->N, y)) || (st = design_new(ctx, m->N, m->L, T, y, X))) return st;
    if (!(*logB = malloc(T * m->K * sizeof **logB))) return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    return emit_rows(ctx, m, T, X, y, *logB);
}

static plm_chain chain_of(const plm_glmhmm *m)
{
    plm_chain c = {m->K, m->init, m->trans, NULL};
    return c;
}

plm_status plm_glmhmm_emit_loglik(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, double *logB)
{
    design X;
    double *lb;
    plm_status st = prepare(ctx, m, T, y, &X, &lb);
    if (!st) memcpy(logB, lb, T * m->K * sizeof *logB);
    design_free(&X), free(lb);
    return st;
}

plm_status plm_glmhmm_loglik(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, double *loglik)
{
    design X;
    double *logB;
    plm_chain c = chain_of(m);
    plm_status st = prepare(ctx, m, T, y, &X, &logB);
    if (!st) st = plm_hmm_core_loglik(ctx, &c, T, logB, loglik, NULL);
    design_free(&X), free(logB);
    return st;
}

plm_status plm_glmhmm_posterior(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, double *post, double *loglik)
{
    design X;
    double *logB, ll;
    plm_chain c = chain_of(m);
    plm_status st = prepare(ctx, m, T, y, &X, &logB);
    if (!st) st = plm_hmm_core_posterior(ctx, &c, T, logB, post, &ll);
    if (!st && loglik) *loglik = ll;
    design_free(&X), free(logB);
    return st;
}

plm_status plm_glmhmm_viterbi(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, int *path, double *logp)
{
    design X;
    double *logB;
    plm_chain c = chain_of(m);
    plm_status st = prepare(ctx, m, T, y, &X, &logB);
    if (!st) st = plm_hmm_core_viterbi(ctx, &c, T, logB, path, logp);
    design_free(&X), free(logB);
    return st;
}

static int draw_index(plm_rng *r, const double *p, int n)
{
    double u = plm_rng_uniform(r), c = 0;
    int i;
    for (i = 0; i < n - 1; i++)
        if (u < (c += p[i])) return i;
    return n - 1;
}

plm_status plm_glmhmm_sample(plm_ctx *ctx, const plm_glmhmm *m, size_t T, plm_rng *r, int *states, double *y)
{
    const int K = m->K, N = m->N, L = m->L;
    const size_t P = (size_t)m->P;
    double *x = malloc(P * sizeof *x);
    size_t t;
    int i;
    if (!x) return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    for (t = 0; t < T; t++) {
        const int z = states[t] = t == 0 ? draw_index(r, m->init, K) : draw_index(r, m->trans + (size_t)states[t - 1] * K, K);
        const double *Wz = m->W + (size_t)z * N * P;
        int l;
        if ((t & (POLL_EVERY - 1)) == 0 && plm_interrupted()) {
            free(x);
            return plm_fail(ctx, PLM_EINTR, "glmhmm: interrupted");
        }
        x[0] = 1;
        for (l = 0; l < L; l++) {
            if (t >= (size_t)l + 1) memcpy(x + 1 + (size_t)l * N, y + (t - l - 1) * N, (size_t)N * sizeof *x);
            else memset(x + 1 + (size_t)l * N, 0, (size_t)N * sizeof *x);
        }
        for (i = 0; i < N; i++) {
            const double eta = dot(Wz + (size_t)i * P, x, P);
            if (m->family == PLM_GLMHMM_BERNOULLI)
                y[t * N + i] = plm_rng_uniform(r) < 1 / (1 + exp(-eta));
            else {
                const double lam = exp(eta);
                if (!(lam <= 1e6)) {
                    free(x);
                    return plm_fail(ctx, PLM_EDOM, "glmhmm: the rate of neuron %d diverged at bin %zu (%g spikes per bin): "
                                    "the excitatory couplings are too strong for a Poisson network", i + 1, t + 1, lam);
                }
                y[t * N + i] = (double)gsl_ran_poisson(&r->gsl, lam);
            }
        }
    }
    free(x);
    return PLM_OK;
}

/* ---- EM ---- */

typedef struct fitwork {
    size_t T;
    const double *y;
    design X;
    double *logB;     /* T*K */
    double *gamma;    /* T*K: filtered, then smoothed probabilities */
    double *xi;       /* K*K expected transition counts */
    double *logA;     /* K*K */
    double *lb;       /* 3K: log beta of t+1, of t, and a row of exponentials */
    double *eta;      /* T */
    double *M;        /* P*P: the negative Hessian */
    double *grad, *delta, *trial, *tau, *ctr;   /* P each */
} fitwork;

/* The E-step: smoothed state probabilities and expected transition counts of the model m, and log p(y).
** Forward (filtered probabilities) by the core; backward in log space, scaled per step. */
static plm_status estep(plm_ctx *ctx, const plm_glmhmm *m, fitwork *w, double *loglik)
{
    const int K = m->K;
    const size_t T = w->T;
    plm_chain c = chain_of(m);
    double *lnext = w->lb, *lcur = w->lb + K, *e = w->lb + 2 * K;
    plm_status st;
    size_t t;
    int i, j;
    if ((st = emit_rows(ctx, m, T, &w->X, w->y, w->logB))) return st;
    if ((st = plm_hmm_core_loglik(ctx, &c, T, w->logB, loglik, w->gamma))) return st;
    for (i = 0; i < K * K; i++) w->logA[i] = log(m->trans[i]);
    memset(w->xi, 0, (size_t)K * K * sizeof *w->xi);
    for (i = 0; i < K; i++) lnext[i] = 0;
    for (t = T - 1; t-- > 0;) {
        const double *bn = w->logB + (t + 1) * K;
        double *g = w->gamma + t * K, Z = -INFINITY, zmax = -INFINITY, lmax = -INFINITY;
        if ((t & (POLL_EVERY - 1)) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "glmhmm: interrupted");
        /* lcur_i = log sum_j A_ij B_{t+1}(j) beta_{t+1}(j), each row by its own maximum */
        for (i = 0; i < K; i++) {
            double mx = -INFINITY, s = 0;
            for (j = 0; j < K; j++) {
                const double v = w->logA[i * K + j] + bn[j] + lnext[j];
                if (v > mx) mx = v;
            }
            if (mx == -INFINITY) {
                lcur[i] = -INFINITY;
                continue;
            }
            for (j = 0; j < K; j++) s += exp(w->logA[i * K + j] + bn[j] + lnext[j] - mx);
            lcur[i] = mx + log(s);
        }
        /* Z = log sum_i alpha_t(i) beta_t(i): the normaliser of both xi_t and gamma_t */
        for (i = 0; i < K; i++) {
            e[i] = g[i] > 0 ? log(g[i]) + lcur[i] : -INFINITY;
            if (e[i] > zmax) zmax = e[i];
        }
        if (zmax == -INFINITY) return plm_fail(ctx, PLM_EDOM, "glmhmm: bin %zu has probability 0 under the model", t + 1);
        Z = 0;
        for (i = 0; i < K; i++) Z += exp(e[i] - zmax);
        Z = zmax + log(Z);
        for (i = 0; i < K; i++) {
            const double la = g[i] > 0 ? log(g[i]) - Z : -INFINITY;
            if (la == -INFINITY) continue;
            for (j = 0; j < K; j++) w->xi[i * K + j] += exp(la + w->logA[i * K + j] + bn[j] + lnext[j]);
        }
        for (i = 0; i < K; i++) {
            g[i] = exp(e[i] - Z);
            if (lcur[i] > lmax) lmax = lcur[i];
        }
        for (i = 0; i < K; i++) lnext[i] = lcur[i] - lmax;
    }
    return PLM_OK;
}

plm_status plm_glmhmm_expected_counts(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, double *post,
                                      double *xi, double *loglik)
{
    const int K = m->K;
    fitwork w;
    plm_status st;
    memset(&w, 0, sizeof w);
    w.T = T, w.y = y, w.gamma = post, w.xi = xi;
    if ((st = plm_glmhmm_check_spikes(ctx, m->family, T, m->N, y))) return st;
    if ((st = design_new(ctx, m->N, m->L, T, y, &w.X))) return st;
    if (!(w.logB = malloc(T * K * sizeof(double))) || !(w.logA = malloc((size_t)K * K * sizeof(double)))
        || !(w.lb = malloc(3 * (size_t)K * sizeof(double))))
        st = plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    else
        st = estep(ctx, m, &w, loglik);
    design_free(&w.X), free(w.logB), free(w.logA), free(w.lb);
    return st;
}

/* The one-hot prior's E-step: posterior type probabilities of every state's connections given its weights. */
static void onehot_resp(plm_glmhmm *m)
{
    const int K = m->K, N = m->N, L = m->L;
    const size_t P = (size_t)m->P;
    int k, i, j, l, c;
    for (k = 0; k < K; k++)
        for (i = 0; i < N; i++)
            for (j = 0; j < N; j++) {
                const double *wk = m->W + ((size_t)k * N + i) * P + 1;
                const double *pi = m->type_prob + ((size_t)i * N + j) * 3;
                double *r = m->resp + (((size_t)k * N + i) * N + j) * 3, lp[3], mx = -INFINITY, s = 0;
                for (c = 0; c < 3; c++) {
                    const double mean = (c - 1) * m->mu, v = c == 1 ? m->s2_off : m->s2_on;
                    lp[c] = log(pi[c]) - 0.5 * L * log(2 * M_PI * v);
                    for (l = 0; l < L; l++) {
                        const double d = wk[(size_t)l * N + j] - mean;
                        lp[c] -= 0.5 * d * d / v;
                    }
                    if (lp[c] > mx) mx = lp[c];
                }
                for (c = 0; c < 3; c++) s += (r[c] = exp(lp[c] - mx));
                for (c = 0; c < 3; c++) r[c] /= s;
            }
}

static double log_invgamma(double v, double n0, double v0) { return -(n0 / 2 + 1) * log(v) - n0 * v0 / 2 / v; }

/* log p(W | hyper) + log p(hyper): the part of the objective beyond the log-likelihood. */
static double log_prior(const plm_glmhmm *m, double ridge)
{
    const int K = m->K, N = m->N, L = m->L;
    const size_t P = (size_t)m->P;
    double s = 0;
    int k, i, j, l, c;
    for (k = 0; k < K; k++)
        for (i = 0; i < N; i++) {
            const double *b = m->W + ((size_t)k * N + i) * P;
            s -= 0.5 * ridge * b[0] * b[0];
            if (m->prior == PLM_GLMHMM_NONE)
                for (l = 0; l < N * L; l++) s -= 0.5 * ridge * b[1 + l] * b[1 + l];
            else if (m->prior == PLM_GLMHMM_GAUSSIAN)
                for (l = 0; l < N * L; l++) {
                    const double d = b[1 + l] - m->wbar[(size_t)i * N * L + l];
                    s -= 0.5 * (log(2 * M_PI * m->sigma2) + d * d / m->sigma2);
                }
            else
                for (j = 0; j < N; j++) {
                    const double *pi = m->type_prob + ((size_t)i * N + j) * 3;
                    double lp[3], mx = -INFINITY, z = 0;
                    for (c = 0; c < 3; c++) {
                        const double mean = (c - 1) * m->mu, v = c == 1 ? m->s2_off : m->s2_on;
                        lp[c] = log(pi[c]) - 0.5 * L * log(2 * M_PI * v);
                        for (l = 0; l < L; l++) {
                            const double d = b[1 + (size_t)l * N + j] - mean;
                            lp[c] -= 0.5 * d * d / v;
                        }
                        if (lp[c] > mx) mx = lp[c];
                    }
                    for (c = 0; c < 3; c++) z += exp(lp[c] - mx);
                    s += mx + log(z);
                }
        }
    if (m->prior == PLM_GLMHMM_GAUSSIAN) s += log_invgamma(m->sigma2, HYPER_N0, V_GAUSS);
    if (m->prior == PLM_GLMHMM_ONEHOT) {
        for (i = 0; i < N * N * 3; i++) s += (ALPHA - 1) * log(m->type_prob[i]);
        s += log_invgamma(m->s2_on, HYPER_N0, V_ON) + log_invgamma(m->s2_off, HYPER_N0, V_OFF);
    }
    return s;
}

/* The quadratic penalty 0.5 tau_p (beta_p - ctr_p)^2 that the prior puts on state k, neuron i's coefficients
** (for the one-hot prior, its expectation under the type responsibilities). */
static void penalty(const plm_glmhmm *m, int k, int i, double ridge, double *tau, double *ctr)
{
    const int N = m->N, L = m->L;
    int l, j;
    tau[0] = ridge, ctr[0] = 0;
    for (l = 0; l < L; l++)
        for (j = 0; j < N; j++) {
            const size_t p = 1 + (size_t)l * N + j;
            if (m->prior == PLM_GLMHMM_NONE)
                tau[p] = ridge, ctr[p] = 0;
            else if (m->prior == PLM_GLMHMM_GAUSSIAN)
                tau[p] = 1 / m->sigma2, ctr[p] = m->wbar[(size_t)i * N * L + p - 1];
            else {
                const double *r = m->resp + (((size_t)k * N + i) * N + j) * 3;
                tau[p] = (r[0] + r[2]) / m->s2_on + r[1] / m->s2_off;
                ctr[p] = m->mu * (r[2] - r[0]) / m->s2_on / tau[p];
            }
        }
}

/* The weighted penalised GLM objective of one neuron: sum_t g_t log p(y_t | x_t beta) - penalty. eta (T) receives
** x_t beta. Bins where the state's probability is below G_SKIP are left out, here and in the Hessian alike: they
** change the objective by less than 1e-10 nats per bin and cost most of the time (one exp and log1p each);
** EM's outer check still keeps the objective from decreasing. */
#define G_SKIP 1e-10
static double glm_obj(plm_glmhmm_family f, size_t T, size_t P, const design *X, const double *y, int ystride,
                      const double *g, int gstride, const double *beta, const double *tau, const double *ctr, double *eta)
{
    double s = 0;
    size_t t, p;
    for (t = 0; t < T; t++) {
        const double gt = g[t * gstride];
        if (!(gt > G_SKIP)) continue;
        eta[t] = sdot(X, t, beta);
        if (gt > G_SKIP) s += gt * unit_ll(f, y[t * ystride], eta[t]);
    }
    for (p = 0; p < P; p++) s -= 0.5 * tau[p] * (beta[p] - ctr[p]) * (beta[p] - ctr[p]);
    return isnan(s) ? -INFINITY : s;
}

/* Up to `steps` Newton steps with step halving on one neuron's coefficients beta (in place); the objective
** never decreases. Returns PLM_EINTR when interrupted. */
static plm_status glm_newton(plm_ctx *ctx, plm_glmhmm_family f, size_t T, size_t P, const design *X, const double *y,
                             int ystride, const double *g, int gstride, const double *tau, const double *ctr,
                             double *beta, int steps, fitwork *w)
{
    double f0 = glm_obj(f, T, P, X, y, ystride, g, gstride, beta, tau, ctr, w->eta);
    int s;
    for (s = 0; s < steps; s++) {
        gsl_matrix_view Mv = gsl_matrix_view_array(w->M, P, P);
        gsl_vector_view gv = gsl_vector_view_array(w->grad, P), dv = gsl_vector_view_array(w->delta, P);
        double step = 1, f1 = -INFINITY;
        size_t t, p, q;
        int h, ok = 0;
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "glmhmm: interrupted");
        memset(w->M, 0, P * P * sizeof *w->M);
        for (p = 0; p < P; p++) w->grad[p] = -tau[p] * (beta[p] - ctr[p]);
        for (t = 0; t < T; t++) {
            const double gt = g[t * gstride];
            const size_t a0 = X->ptr[t], a1 = X->ptr[t + 1];
            size_t a, b;
            double mean, var;
            if (!(gt > G_SKIP)) continue;
            if (f == PLM_GLMHMM_POISSON) mean = var = exp(w->eta[t]);
            else mean = 1 / (1 + exp(-w->eta[t])), var = mean * (1 - mean);
            const double r = gt * (y[t * ystride] - mean), c = gt * var;
            for (a = a0; a < a1; a++) {
                const double cx = c * X->val[a];
                double *restrict row = w->M + (size_t)X->col[a] * P;
                w->grad[X->col[a]] += r * X->val[a];
                for (b = a0; b <= a; b++) row[X->col[b]] += cx * X->val[b];
            }
        }
        for (p = 0; p < P; p++) {
            w->M[p * P + p] += tau[p];
            for (q = 0; q < p; q++) w->M[q * P + p] = w->M[p * P + q];
        }
        if (gsl_linalg_cholesky_decomp1(&Mv.matrix) != GSL_SUCCESS) break;   /* unreachable: tau > 0 */
        gsl_linalg_cholesky_solve(&Mv.matrix, &gv.vector, &dv.vector);
        for (h = 0; h < 40; h++, step /= 2) {
            for (p = 0; p < P; p++) w->trial[p] = beta[p] + step * w->delta[p];
            f1 = glm_obj(f, T, P, X, y, ystride, g, gstride, w->trial, tau, ctr, w->eta);
            if (f1 >= f0) {
                ok = 1;
                break;
            }
        }
        if (!ok) break;
        memcpy(beta, w->trial, P * sizeof *beta);
        if (f1 - f0 <= 1e-12 * (1 + fabs(f0))) break;
        f0 = f1;
    }
    return PLM_OK;
}

/* The prior's hyperparameter M-step, in closed form given the weights (and, one-hot, the responsibilities). */
static void mstep_hyper(plm_glmhmm *m)
{
    const int K = m->K, N = m->N, L = m->L;
    const size_t P = (size_t)m->P, NL = (size_t)N * L;
    int k, i, j, l, c;
    if (m->prior == PLM_GLMHMM_GAUSSIAN) {
        double ss = 0;
        for (i = 0; i < N; i++)
            for (l = 0; l < (int)NL; l++) {
                double s = 0;
                for (k = 0; k < K; k++) s += m->W[((size_t)k * N + i) * P + 1 + l];
                m->wbar[(size_t)i * NL + l] = s / K;
            }
        for (k = 0; k < K; k++)
            for (i = 0; i < N; i++)
                for (l = 0; l < (int)NL; l++) {
                    const double d = m->W[((size_t)k * N + i) * P + 1 + l] - m->wbar[(size_t)i * NL + l];
                    ss += d * d;
                }
        m->sigma2 = (HYPER_N0 * V_GAUSS / 2 + ss / 2) / (HYPER_N0 / 2 + 1 + (double)K * N * NL / 2);
    } else if (m->prior == PLM_GLMHMM_ONEHOT) {
        double num = 0, den = 0, son = 0, soff = 0, non = 0, noff = 0;
        for (i = 0; i < N; i++)
            for (j = 0; j < N; j++) {
                double *pi = m->type_prob + ((size_t)i * N + j) * 3;
                for (c = 0; c < 3; c++) {
                    double s = 0;
                    for (k = 0; k < K; k++) s += m->resp[(((size_t)k * N + i) * N + j) * 3 + c];
                    pi[c] = (s + ALPHA - 1) / (K + 3 * (ALPHA - 1));
                }
            }
        for (k = 0; k < K; k++)
            for (i = 0; i < N; i++)
                for (j = 0; j < N; j++) {
                    const double *r = m->resp + (((size_t)k * N + i) * N + j) * 3;
                    for (l = 0; l < L; l++) {
                        const double v = m->W[((size_t)k * N + i) * P + 1 + (size_t)l * N + j];
                        num += (r[2] - r[0]) * v, den += r[2] + r[0];
                    }
                }
        m->mu = den > 0 && num > 0 ? num / den : 0;
        for (k = 0; k < K; k++)
            for (i = 0; i < N; i++)
                for (j = 0; j < N; j++) {
                    const double *r = m->resp + (((size_t)k * N + i) * N + j) * 3;
                    for (l = 0; l < L; l++) {
                        const double v = m->W[((size_t)k * N + i) * P + 1 + (size_t)l * N + j];
                        son += r[0] * (v + m->mu) * (v + m->mu) + r[2] * (v - m->mu) * (v - m->mu);
                        soff += r[1] * v * v;
                        non += r[0] + r[2], noff += r[1];
                    }
                }
        m->s2_on = (HYPER_N0 * V_ON / 2 + son / 2) / (HYPER_N0 / 2 + 1 + non / 2);
        m->s2_off = (HYPER_N0 * V_OFF / 2 + soff / 2) / (HYPER_N0 / 2 + 1 + noff / 2);
    }
}

/* Fit every state's GLMs by weighted Newton steps on the state probabilities w->gamma. */
static plm_status mstep_weights(plm_ctx *ctx, plm_glmhmm *m, double ridge, int steps, fitwork *w)
{
    const int K = m->K, N = m->N;
    const size_t P = (size_t)m->P;
    plm_status st;
    int k, i;
    for (k = 0; k < K; k++)
        for (i = 0; i < N; i++) {
            penalty(m, k, i, ridge, w->tau, w->ctr);
            if ((st = glm_newton(ctx, m->family, w->T, P, &w->X, w->y + i, N, w->gamma + k, K, w->tau, w->ctr,
                                 m->W + ((size_t)k * N + i) * P, steps, w)))
                return st;
        }
    return PLM_OK;
}

/* Transitions from the expected counts (a row never visited keeps its old values); init from gamma_0. */
static void mstep_chain(plm_glmhmm *m, const fitwork *w)
{
    const int K = m->K;
    int i, j;
    for (i = 0; i < K; i++) {
        double rs = 0;
        for (j = 0; j < K; j++) rs += w->xi[i * K + j];
        if (rs > 0)
            for (j = 0; j < K; j++) m->trans[i * K + j] = w->xi[i * K + j] / rs;
        m->init[i] = w->gamma[i];
    }
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void mstep_hyper(plm_glmhmm *m);

/* The one-hot prior's starting hyperparameters from weights: the larger half in magnitude is connected (mu is
** their mean magnitude), the smaller half is not (s2_off is their mean square); flat type probabilities. */
static plm_status onehot_start(plm_ctx *ctx, plm_glmhmm *m)
{
    const int K = m->K, N = m->N, L = m->L;
    const size_t P = (size_t)m->P, n = (size_t)K * N * N * L, NL = (size_t)N * L;
    double *a = malloc(n * sizeof *a), med, big = 0, small = 0;
    size_t p, nb = 0, ns = 0;
    int i;
    if (!a) return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    for (p = 0; p < n; p++) a[p] = fabs(m->W[(p / NL) * P + 1 + p % NL]);
    qsort(a, n, sizeof *a, cmp_double);
    med = a[n / 2];
    for (p = 0; p < n; p++) {
        if (a[p] > med) big += a[p], nb++;
        else small += a[p] * a[p], ns++;
    }
    free(a);
    m->mu = nb ? big / nb : 0.5;
    m->s2_on = V_ON;
    m->s2_off = fmax(ns ? small / ns : V_OFF, 1e-4);
    for (i = 0; i < N * N * 3; i++) m->type_prob[i] = 1.0 / 3;
    /* then fit the prior to these weights (EM of the three-type mixture with the weights fixed) */
    for (i = 0; i < 100; i++) {
        onehot_resp(m);
        mstep_hyper(m);
    }
    onehot_resp(m);
    return PLM_OK;
}

/* A one-hot model with the chain and weights of m (fitted under another prior). */
static plm_status onehot_from(plm_ctx *ctx, const plm_glmhmm *g, plm_glmhmm **out)
{
    plm_glmhmm *m = alloc_model(g->K, g->N, g->L, g->family, PLM_GLMHMM_ONEHOT);
    if (!m) return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    memcpy(m->init, g->init, (size_t)g->K * sizeof *m->init);
    memcpy(m->trans, g->trans, (size_t)g->K * g->K * sizeof *m->trans);
    memcpy(m->W, g->W, (size_t)g->K * g->N * g->P * sizeof *m->W);
    *out = m;
    return onehot_start(ctx, m);
}

/* The starting model of run `run`: a random sticky segmentation, per-state GLMs fitted to it with a unit
** ridge, and the prior's hyperparameters set from those weights. */
static plm_status start_model(plm_ctx *ctx, const plm_glmhmm_opts *o, int N, fitwork *w, int run, plm_glmhmm **out)
{
    const int K = o->K;
    const size_t T = w->T, P = 1 + (size_t)N * o->L;
    const double seglen = fmax(20.0, (double)T / (4.0 * K));
    plm_glmhmm *m = alloc_model(K, N, o->L, o->family, o->prior);
    plm_rng r;
    plm_status st;
    size_t t;
    int k, i, z;
    if (!m) return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
    plm_rng_init(&r, o->seed, (uint64_t)run + 1);
    z = (int)plm_rng_uint(&r, (uint64_t)K);
    for (t = 0; t < T; t++) {
        if (t > 0 && K > 1 && plm_rng_uniform(&r) < 1 / seglen) z = (z + 1 + (int)plm_rng_uint(&r, (uint64_t)K - 1)) % K;
        for (k = 0; k < K; k++) w->gamma[t * K + k] = k == z;
    }
    for (i = 0; i < K; i++) {
        m->init[i] = 1.0 / K;
        for (k = 0; k < K; k++) m->trans[i * K + k] = K == 1 ? 1 : i == k ? o->stickiness : (1 - o->stickiness) / (K - 1);
    }
    /* biases start at the log (or logit) of each neuron's mean rate, weights at 0 */
    for (i = 0; i < N; i++) {
        double mean = 0;
        for (t = 0; t < T; t++) mean += w->y[t * N + i];
        mean = (mean + 0.5) / ((double)T + 1);
        for (k = 0; k < K; k++) {
            double *b = m->W + ((size_t)k * N + i) * P;
            memset(b, 0, P * sizeof *b);
            b[0] = o->family == PLM_GLMHMM_POISSON ? log(mean) : log(mean / (1 - mean));
        }
    }
    {
        plm_glmhmm_prior keep = m->prior;
        m->prior = PLM_GLMHMM_NONE;
        if ((st = mstep_weights(ctx, m, 1.0, 10, w))) return st;
        m->prior = keep;
    }
    if (m->prior == PLM_GLMHMM_GAUSSIAN) mstep_hyper(m);
    if (m->prior == PLM_GLMHMM_ONEHOT && (st = onehot_start(ctx, m))) return st;
    *out = m;
    return PLM_OK;
}

/* One EM run from *cur; the trace gets the objective after each iteration (trace[0] at the start). */
static plm_status em_run(plm_ctx *ctx, const plm_glmhmm_opts *o, fitwork *w, plm_glmhmm **cur, double *trace, int *ntrace)
{
    plm_glmhmm *m = *cur, *next;
    double ll, obj, ll1, obj1;
    plm_status st;
    int it;
    if ((st = estep(ctx, m, w, &ll))) return st;
    obj = ll + (m->logprior = log_prior(m, o->ridge));
    m->loglik = ll;
    trace[0] = obj;
    *ntrace = 1;
    for (it = 0; it < o->iters; it++) {
        if (!(next = copy_model(m))) return plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
        mstep_chain(next, w);
        if ((st = mstep_weights(ctx, next, o->ridge, o->newton, w))) return st;
        mstep_hyper(next);
        if ((st = estep(ctx, next, w, &ll1))) {
            if (st != PLM_EDOM) return st;
            break;   /* unreachable in exact arithmetic: the M-step cannot make the data impossible */
        }
        obj1 = ll1 + log_prior(next, o->ridge);
        if (obj1 < obj) {
            /* rounding at the optimum: keep m, and redo its E-step so that w matches it */
            if ((st = estep(ctx, m, w, &ll))) return st;
            break;
        }
        next->loglik = ll1, next->logprior = obj1 - ll1;
        if (next->prior == PLM_GLMHMM_ONEHOT) onehot_resp(next);
        trace[(*ntrace)++] = obj1;
        m = next;
        if (obj1 - obj < o->tol) break;
        obj = obj1;
    }
    *cur = m;
    return PLM_OK;
}

plm_status plm_glmhmm_fit(plm_ctx *ctx, const plm_glmhmm_opts *o, size_t T, int N, const double *y, plm_glmhmm **out,
                          double **trace, int *ntrace)
{
    const size_t P = 1 + (size_t)N * (o->L > 0 ? o->L : 1);
    const int K = o->K;
    fitwork w;
    double *tr = NULL, *best_tr = NULL, best_obj = -INFINITY;
    plm_glmhmm *best = NULL;
    plm_status st;
    int run, best_n = 0;
    if (K < 1 || K > 64) return plm_fail(ctx, PLM_EINVAL, "glmhmm: K must be in 1..64 (got %d)", K);
    if (N < 1 || N > 4096) return plm_fail(ctx, PLM_EINVAL, "glmhmm: spikes must have 1..4096 neurons (got %d)", N);
    if (o->L < 1 || o->L > 1000) return plm_fail(ctx, PLM_EINVAL, "glmhmm: lags must be in 1..1000 (got %d)", o->L);
    if (o->iters < 0) return plm_fail(ctx, PLM_EINVAL, "glmhmm: iters must be >= 0 (got %d)", o->iters);
    if (o->restarts < 1) return plm_fail(ctx, PLM_EINVAL, "glmhmm: restarts must be >= 1 (got %d)", o->restarts);
    if (o->newton < 1) return plm_fail(ctx, PLM_EINVAL, "glmhmm: newton must be >= 1 (got %d)", o->newton);
    if (!(o->tol >= 0)) return plm_fail(ctx, PLM_EINVAL, "glmhmm: tol must be >= 0 (got %g)", o->tol);
    if (!(o->ridge > 0) || !isfinite(o->ridge)) return plm_fail(ctx, PLM_EINVAL, "glmhmm: ridge must be > 0 (got %g)", o->ridge);
    if (!(o->stickiness > 0 && o->stickiness < 1))
        return plm_fail(ctx, PLM_EINVAL, "glmhmm: stickiness must be in (0, 1) (got %g)", o->stickiness);
    if ((st = plm_glmhmm_check_spikes(ctx, o->family, T, N, y))) return st;
    memset(&w, 0, sizeof w);
    w.T = T, w.y = y;
    if ((st = design_new(ctx, N, o->L, T, y, &w.X))) return st;
    if (!(w.logB = malloc(T * K * sizeof(double)))
        || !(w.gamma = malloc(T * K * sizeof(double))) || !(w.xi = malloc((size_t)K * K * sizeof(double)))
        || !(w.logA = malloc((size_t)K * K * sizeof(double))) || !(w.lb = malloc(3 * (size_t)K * sizeof(double)))
        || !(w.eta = malloc(T * sizeof(double))) || !(w.M = malloc(P * P * sizeof(double)))
        || !(w.grad = malloc(5 * P * sizeof(double))) || !(tr = malloc(((size_t)o->iters + 1) * sizeof *tr))
        || !(best_tr = malloc(((size_t)o->iters + 1) * sizeof *tr))) {
        st = plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
        goto done;
    }
    w.delta = w.grad + P, w.trial = w.delta + P, w.tau = w.trial + P, w.ctr = w.tau + P;
    for (run = 0; run < o->restarts; run++) {
        plm_glmhmm *m = NULL;
        int n;
        if (o->prior == PLM_GLMHMM_ONEHOT) {
            /* the one-hot prior's EM is sticky (a connection typed early stays typed): start it from the
            ** Gaussian-prior fit, whose weights already share strength across states */
            plm_glmhmm_opts g = *o;
            g.prior = PLM_GLMHMM_GAUSSIAN;
            if ((st = start_model(ctx, &g, N, &w, run, &m)) || (st = em_run(ctx, &g, &w, &m, tr, &n))
                || (st = onehot_from(ctx, m, &m)))
                goto done;
        } else if ((st = start_model(ctx, o, N, &w, run, &m)))
            goto done;
        if ((st = em_run(ctx, o, &w, &m, tr, &n))) goto done;
        if (!best || tr[n - 1] > best_obj) {
            double *sw = best_tr;
            best = m, best_obj = tr[n - 1], best_n = n;
            best_tr = tr, tr = sw;
        }
    }
    if (!(*trace = plm_gc_alloc_atomic((size_t)best_n * sizeof **trace))) {
        st = plm_fail(ctx, PLM_ENOMEM, "glmhmm: out of memory");
        goto done;
    }
    memcpy(*trace, best_tr, (size_t)best_n * sizeof **trace);
    *ntrace = best_n;
    *out = best;
done:
    design_free(&w.X), free(w.logB), free(w.gamma), free(w.xi), free(w.logA), free(w.lb), free(w.eta), free(w.M), free(w.grad);
    free(tr), free(best_tr);
    return st;
}
