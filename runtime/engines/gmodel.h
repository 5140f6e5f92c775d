/* gmodel.h -- static graphical models: the sites of a model program traced once with symbolic values, over
** one expression graph. Each latent site owns coordinates of an unconstrained point u (inputs of group X):
** its value is a transform of them onto the support (log for one finite bound, scaled logit for two, as
** transform.h) and its term of the log density carries the log Jacobian, so the sum of the terms is a target
** on R^dim for gradient-based kernels. Observations, factors and deterministic values are terms and outputs
** of the same graph. A gmodel also knows its dependency structure (parents, Markov blankets) and maps draws
** of u back to the values users see. A gmodel is GC memory. */
#ifndef PLM_GMODEL_H
#define PLM_GMODEL_H

#include "ctx.h"
#include "draws.h"
#include "expr.h"
#include "target.h"
#include "trace.h"

typedef enum plm_gsite_kind {
    PLM_GSITE_LATENT,
    PLM_GSITE_OBSERVED,
    PLM_GSITE_DETERMINISTIC,
    PLM_GSITE_FACTOR
} plm_gsite_kind;

typedef struct plm_gsite {
    const char *name;
    plm_gsite_kind kind;
    int dist;               /* plm_dist_kind of latent and observed sites, -1 otherwise */
    int dim;                /* scalars in the value (0 for factors) */
    int first;              /* latent: its first coordinate of u */
    int *value;             /* dim nodes: the value (latent: on its support, from the transform) */
    int lo, hi;             /* latent scalar: bound nodes, -1 where unbounded */
    int logp;               /* its term of the log density, -1 for deterministic sites */
    int density;            /* latent: the log density of its value alone (logp less the log Jacobian) */
    int *parents;           /* latent sites (indices into sites) whose coordinates the term or value reads */
    int nparents;
    plm_symdist prior;      /* latent: its distribution (parameter nodes), for drawing from the prior */
    int discrete;           /* latent: 1 for a discrete kind, whose one coordinate holds the value itself (a whole
                            ** number, no transform, no Jacobian; gradients w.r.t. it are never used) */
    int base;               /* added to the value in draws: 1 for categorical sites of a 1-based front end */
    int *params;            /* latent and observed: the distribution's parameter nodes (plm_symdist p, unguarded) */
    int nparams;
    int K;                  /* categories (categorical) or dimension (mvnormal); 0 for scalar kinds */
} plm_gsite;

typedef struct plm_gmodel {
    plm_graph *g;
    plm_gsite *sites;
    int n, cap;
    int dim;                /* coordinates of u */
    int *x, xcap;           /* the input node of each coordinate */
    int *owner;             /* the latent site of each coordinate */
    plm_trace *index;       /* site names, for uniqueness and look-up (position = site index) */
    int lp;                 /* the sum of the terms, after plm_gmodel_finish */
    int finished;
    plm_prog *dens;         /* the sites' own terms (plm_gmodel_logdensity), compiled once by plm_gmodel_finish */
} plm_gmodel;

/* A new model over g (GC). */
plm_status plm_gmodel_new(plm_ctx *ctx, plm_graph *g, plm_gmodel **out);

/* A latent site of symbolic distribution d: value receives plm_symdist_dim(d) nodes. Continuous scalar kinds
** (bounds from the kind's support; uniform's may be symbolic), mvnormal and the scalar discrete kinds
** (bernoulli, binomial, poisson, neg_binomial, geometric, categorical: a discrete site, value 0-based for
** categorical), and dirichlet (K coordinates: the value is softmax(u), with a standard normal on mean u) are
** supported; PLM_ENOTSUP (the message says why) for multinomial; PLM_EINVAL for a name used twice. */
plm_status plm_gmodel_latent(plm_ctx *ctx, plm_gmodel *m, const char *name, const plm_symdist *d, int *value);
/* An observation x (plm_symdist_dim(d) nodes, usually constants) of d. */
plm_status plm_gmodel_observe(plm_ctx *ctx, plm_gmodel *m, const char *name, const plm_symdist *d, const int *x);
/* An observation whose log density is a known number (a numeric distribution and value). */
plm_status plm_gmodel_observe_const(plm_ctx *ctx, plm_gmodel *m, const char *name, int dist, double logp);
/* A term of the log density (m:factor), named "factor#k". */
plm_status plm_gmodel_factor(plm_ctx *ctx, plm_gmodel *m, int node);
/* A recorded value of dim nodes. */
plm_status plm_gmodel_deterministic(plm_ctx *ctx, plm_gmodel *m, const char *name, int dim, const int *value);

/* Close the model: sum the terms and find each site's parents. PLM_EINVAL when it has no latent site. */
plm_status plm_gmodel_finish(plm_ctx *ctx, plm_gmodel *m);

/* The continuous coordinates of u (those of non-discrete latent sites), in order, into coords (at most
** m->dim); returns their count. Gradient-based kernels move only these. */
int plm_gmodel_continuous(const plm_gmodel *m, int *coords);
/* The first discrete latent site, or -1 when there is none (for messages: "site 'z' is discrete"). */
int plm_gmodel_first_discrete(const plm_gmodel *m);
/* Valid whole numbers for the discrete coordinates of u: each becomes the smallest of 0, 1, ..., 63 at which
** its own term is finite given the rest of u (tried jointly, smallest first). Continuous coordinates are
** left as they are. A start for samplers whose random uniform(-2, 2) start means nothing on a discrete site. */
plm_status plm_gmodel_init_discrete(plm_ctx *ctx, const plm_gmodel *m, double *u);

/* Starting values for the discrete latent sites not marked in keep (NULL, or m->n flags): each becomes the value
** in 0..63 that maximises its own term plus its children's at the rest of u (a mixture's labels go to their
** most probable components given the means in u). All sites move to each value together, so where discrete
** sites read each other this is a heuristic start, not a joint mode; a site whose terms are never finite
** keeps its value. */
plm_status plm_gmodel_discrete_modes(plm_ctx *ctx, const plm_gmodel *m, double *u, const unsigned char *keep);

/* N ancestral draws of the latent sites from their priors, point j of N from rng[j]: sites in model order (a
** site's parameters read only sites before it), each drawn given the values drawn before it, and mapped to u
** into U (m->dim x N, coordinate-major: coordinate k of point j at U[k * N + j]). keep (NULL, or N x m->n flags,
** keep[j * m->n + i]) marks sites whose coordinates in U are given, not drawn (a user's init), later sites
** being drawn given them. ulim > 0 keeps each transformed coordinate (a scalar site with a bound) in
** [-ulim, ulim] before the sites after it are drawn given it (0: no limit). median_of > 1 (odd): each scalar
** site takes the median of that many draws given its parents, a draw from the prior's central part (vector
** sites take one draw). A site with an improper prior (no
** sampler): PLM_ENOTSUP naming it, unless improper_uniform, when its coordinates are uniform(-2, 2) from
** rng[j]. A draw the transform cannot map (0 for a positive site, at double precision) is +-inf in U. */
plm_status plm_gmodel_prior_draws(plm_ctx *ctx, const plm_gmodel *m, double *U, size_t N, plm_rng *rng, int nthreads,
                                  const unsigned char *keep, double ulim, int median_of, int improper_uniform);

/* Index of the site named name, or -1. */
int plm_gmodel_find(const plm_gmodel *m, const char *name);

/* The Markov blanket of site i (parents, children, children's other parents), as site indices in model
** order into out (at most m->n); returns the count. */
int plm_gmodel_blanket(const plm_gmodel *m, int i, int *out);

/* The target on u (log density and compiled gradient). PLM_ENOTSUP when an op has no derivative (*out then
** holds a target without a gradient). */
plm_status plm_gmodel_target(plm_ctx *ctx, plm_gmodel *m, plm_target **out);

/* u for a latent site's value x (dim doubles) into u (dim doubles). PLM_EINVAL when x is outside the support
** (the message names the site) or the bounds depend on other sites. */
plm_status plm_gmodel_unconstrain(plm_ctx *ctx, const plm_gmodel *m, int site, const double *x, double *u);

/* Why the log density at u is not finite: fails with PLM_EDEAD and a message naming the first site whose
** term is -inf, +inf or NaN and, for a latent site, its value ("site 'sigma' (latent, gamma) has log density
** -inf at sigma = 0"). Returns PLM_OK when every term is finite. */
plm_status plm_gmodel_blame(plm_ctx *ctx, const plm_gmodel *m, const double *u);

/* The model's log density at u on the scale of the sites' values: the sum of every site's own term, without
** the log Jacobians of the transforms (what a run of the program on those values scores), into *lp. */
plm_status plm_gmodel_logdensity(plm_ctx *ctx, const plm_gmodel *m, const double *u, double *lp);

/* Append to D (empty, with U's chain count) one column per scalar of every latent and deterministic site
** ("x" for a scalar, "x[1]", ... for vectors), in model order, and one row for each draw of U, whose first
** m->dim columns are coordinates of u (as plm_mcmc_run makes them). nthreads as plm_prog_eval. */
plm_status plm_gmodel_draws(plm_ctx *ctx, const plm_gmodel *m, const plm_draws *U, plm_draws *D, int nthreads);

/* "latent", "observed", "deterministic", "factor". */
const char *plm_gsite_kind_name(plm_gsite_kind k);

#endif
