/* dist.h -- probability distributions: validated construction, sampling, log densities, moments, and
** batch forms that fill or score whole arrays in one call. Parameterisations follow Stan's.
** Values are doubles; discrete values are whole numbers stored as doubles. Categorical values are 0-based
** in C (0..K-1); the Lua layer shifts them to 1..K. Vector-valued kinds (dirichlet, multinomial, mvnormal)
** take and return dim doubles per value. plm_dist objects are GC memory: never free them. */
#ifndef PLM_DIST_H
#define PLM_DIST_H

#include <stddef.h>

#include "ctx.h"
#include "rng.h"

typedef enum plm_dist_kind {
    PLM_DIST_NORMAL,        /* (mu, sigma) */
    PLM_DIST_LOGNORMAL,     /* (mu, sigma) of log x */
    PLM_DIST_STUDENT_T,     /* (nu, mu, sigma) */
    PLM_DIST_CAUCHY,        /* (mu, sigma) */
    PLM_DIST_LAPLACE,       /* (mu, sigma): Stan's double_exponential */
    PLM_DIST_LOGISTIC,      /* (mu, sigma) */
    PLM_DIST_EXPONENTIAL,   /* (rate) */
    PLM_DIST_GAMMA,         /* (shape alpha, rate beta) */
    PLM_DIST_INV_GAMMA,     /* (shape alpha, scale beta) */
    PLM_DIST_BETA,          /* (alpha, beta) */
    PLM_DIST_UNIFORM,       /* (a, b) */
    PLM_DIST_WEIBULL,       /* (shape alpha, scale sigma) */
    PLM_DIST_BERNOULLI,     /* (p) */
    PLM_DIST_BINOMIAL,      /* (n, p) */
    PLM_DIST_POISSON,       /* (lambda) */
    PLM_DIST_NEG_BINOMIAL,  /* (alpha, beta): Stan's neg_binomial, mean alpha/beta */
    PLM_DIST_GEOMETRIC,     /* (p): failures before the first success, support 0, 1, 2, ... */
    PLM_DIST_CATEGORICAL,   /* probs[K] */
    PLM_DIST_DIRICHLET,     /* alpha[K] */
    PLM_DIST_MULTINOMIAL,   /* n trials, probs[K] */
    PLM_DIST_MVNORMAL,      /* mu[K], Sigma[K*K] (stored as its Cholesky factor) */
    PLM_DIST_HALFNORMAL,    /* (sigma): |normal(0, sigma)| */
    PLM_DIST_HALFCAUCHY,    /* (sigma): |cauchy(0, sigma)| */
    PLM_DIST_HALFSTUDENT_T, /* (nu, sigma): |student_t(nu, 0, sigma)| */
    PLM_DIST_TRUNCATED,     /* a scalar continuous base (d->inner) restricted to [lo, hi] = [p[0], p[1]] */
    PLM_DIST_FLAT,          /* (): the improper uniform density on the reals, log density 0; no sampler */
    PLM_DIST_NKINDS
} plm_dist_kind;

typedef enum plm_support {
    PLM_SUPPORT_REAL,       /* (-inf, inf) */
    PLM_SUPPORT_POSITIVE,   /* (0, inf) */
    PLM_SUPPORT_UNIT,       /* (0, 1) */
    PLM_SUPPORT_INTERVAL,   /* (p[0], p[1]) */
    PLM_SUPPORT_BINARY,     /* {0, 1} */
    PLM_SUPPORT_COUNT,      /* {0, 1, 2, ...} */
    PLM_SUPPORT_BOUNDED,    /* {0, ..., n} */
    PLM_SUPPORT_CATEGORY,   /* {0, ..., K-1} */
    PLM_SUPPORT_SIMPLEX,    /* K-vectors >= 0 summing to 1 */
    PLM_SUPPORT_COUNTS,     /* K-vectors of counts summing to n */
    PLM_SUPPORT_REALVEC,    /* K-vectors of reals */
    PLM_SUPPORT_TRUNCATED   /* per instance: [lo, hi] of plm_dist_bounds */
} plm_support;

typedef struct plm_dist_info {
    const char *name;         /* "normal", as in plume.dist.normal */
    int nparams;              /* scalar parameters taken by plm_dist_new (0 for vector-parameterised kinds) */
    const char *params[3];    /* their names, in order ("mu", "sigma") */
    plm_support support;
    int discrete;             /* 1 when values are whole numbers */
    int improper;             /* 1 for improper priors (no sampler, no normaliser): usable by MCMC only */
} plm_dist_info;

typedef struct plm_dist {
    plm_dist_kind kind;
    int dim;        /* doubles per value: 1, or K for dirichlet, multinomial and mvnormal */
    int K;          /* categories, or the dimension of mvnormal; 0 for scalar kinds */
    double p[3];    /* scalar parameters in plm_dist_info order; multinomial keeps n in p[0] */
    double *v;      /* probs (categorical, multinomial), alpha (dirichlet), mu (mvnormal) */
    double *aux;    /* categorical: log probs; mvnormal: lower Cholesky factor of Sigma, K*K row-major */
    double c;       /* mvnormal: -K/2 log(2 pi) - log det L; dirichlet: log normaliser;
                    ** truncated: log(F(hi) - F(lo)) of the base */
    const struct plm_dist *inner;  /* truncated: the distribution it restricts (scalar, continuous) */
    int base;       /* categorical: the label front ends show for category 0 (1 in Lua, 0 for token ids);
                    ** C values are always 0..K-1 */
} plm_dist;

/* Descriptor of a kind; plm_dist_kind_by_name returns -1 for an unknown name. */
const plm_dist_info *plm_dist_info_of(plm_dist_kind kind);
int plm_dist_kind_by_name(const char *name);

/* Check scalar parameters p (info->nparams of them) of a scalar-parameterised kind. On failure the
** message names the distribution and the parameter: "normal: sigma must be > 0 (got -1)". */
plm_status plm_dist_check(plm_ctx *ctx, plm_dist_kind kind, const double *p);

/* Constructors: validate, then return a GC-owned distribution in *out. */
plm_status plm_dist_new(plm_ctx *ctx, plm_dist_kind kind, const double *p, plm_dist **out);
/* probs must be >= 0 and sum to 1 within 1e-9 */
plm_status plm_dist_new_categorical(plm_ctx *ctx, const double *probs, int K, plm_dist **out);
/* categorical from unnormalised log weights (logits); -inf entries are impossible categories. PLM_EINVAL
** on NaN or +inf, or when every entry is -inf. */
plm_status plm_dist_new_categorical_logits(plm_ctx *ctx, const double *logits, int K, plm_dist **out);
plm_status plm_dist_new_dirichlet(plm_ctx *ctx, const double *alpha, int K, plm_dist **out);
plm_status plm_dist_new_multinomial(plm_ctx *ctx, double n, const double *probs, int K, plm_dist **out);
/* Sigma is K*K row-major, symmetric positive definite */
plm_status plm_dist_new_mvnormal(plm_ctx *ctx, const double *mu, const double *Sigma, int K, plm_dist **out);

/* truncated(base, lo, hi): base restricted to [lo, hi] and renormalised by F(hi) - F(lo). base is a scalar
** continuous kind other than flat and truncated; lo < hi, either may be infinite. PLM_EINVAL when the
** interval holds no mass that doubles can resolve (its log mass is computed from log tail probabilities, so
** a normal far in its tail is fine). */
plm_status plm_dist_new_truncated(plm_ctx *ctx, const plm_dist *base, double lo, double hi, plm_dist **out);

/* Largest whole number a discrete draw may take: counts are exact in doubles up to 2^53. Constructors refuse
** parameters whose draws could pass it (poisson lambda > 1e15, binomial n > 2^53, ...). */
#define PLM_DIST_MAX_COUNT 9007199254740992.0
#define PLM_DIST_POISSON_MAX 1e15

/* Samplers that work in doubles and in logs, exposed so that tests can drive each path directly.
** log_gamma: log of a Gamma(alpha, 1) draw, exact even where the draw itself is below the smallest
** positive double (alpha = 1e-3 gives log draws near -1000). poisson_ptrs: Hormann's PTRS, lambda >= 10
** (plm_dist_sample uses it for lambda >= 1e6, where GSL's unsigned int sampler stops being safe). */
double plm_dist_log_gamma(double alpha, plm_rng *r);
/* A standard normal draw restricted to [a, b] (a < b, either infinite): inversion, or rejection far in a tail
** (engines drawing truncated-normal conditionals). */
double plm_dist_std_truncnorm(double a, double b, plm_rng *r);
double plm_dist_poisson_ptrs(double lambda, plm_rng *r);

/* Scalar kernels on raw parameters, for compiled code and hot loops: no validation (call plm_dist_check
** once first). logpdf1 returns -inf outside the support, never NaN for valid parameters. */
double plm_dist_logpdf1(plm_dist_kind kind, const double *p, double x);
double plm_dist_sample1(plm_dist_kind kind, const double *p, plm_rng *r);

/* Any kind: x and out hold d->dim doubles. Improper kinds (flat) have no draws: sampling writes NaN, so
** callers check plm_dist_info_of(kind)->improper first. Continuous draws stay inside the open support:
** a draw below the smallest positive double is returned as that double (4.9e-324), never 0, and one above
** the largest as DBL_MAX; beta and dirichlet draws are computed from log-gammas the same way. */
double plm_dist_logpdf(const plm_dist *d, const double *x);
void plm_dist_sample(const plm_dist *d, plm_rng *r, double *out);

/* Batch forms: n values, x and out contiguous (n * d->dim doubles). logpdf_n writes n log densities. */
void plm_dist_sample_n(const plm_dist *d, plm_rng *r, size_t n, double *out);
void plm_dist_logpdf_n(const plm_dist *d, size_t n, const double *x, double *out);
/* Sum of the log densities of n values (the usual likelihood term). */
double plm_dist_logpdf_sum(const plm_dist *d, size_t n, const double *x);

/* Mean and variance (per component, d->dim doubles). PLM_EDOM when undefined (cauchy, student_t nu <= 1);
** an infinite variance is returned as +inf with PLM_OK. */
plm_status plm_dist_mean(plm_ctx *ctx, const plm_dist *d, double *out);
plm_status plm_dist_var(plm_ctx *ctx, const plm_dist *d, double *out);

/* Is x inside the support (for the Lua layer's checks of observed values and MCMC transforms)? Same as
** plm_dist_logpdf(d, x) > -inf. At a closed end of a continuous support (gamma, beta, weibull at 0, ...)
** the log density is the finite limit of the density when it has one and -inf where that limit is
** infinite: a log density is never +inf. */
int plm_dist_in_support(const plm_dist *d, const double *x);

/* The support of this instance of a scalar continuous kind as an interval: lo and hi are finite or
** infinite endpoints (open or closed alike). MCMC transforms use it to choose log, logit or identity. */
void plm_dist_bounds(const plm_dist *d, double *lo, double *hi);

#endif
