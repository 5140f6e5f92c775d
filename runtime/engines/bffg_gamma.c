/* bffg_gamma.c -- increments of a gamma process as a BFFG kernel: y = x + G, G ~ Gamma(shape t, rate).
**
** Exact messages for exact observations. An observed value y of the process gives the message
** h(x) = Gamma(y - x; s, b) (s = shape t, b = rate), and gamma densities with one rate convolve into gamma densities
** (shapes add), so pulling h back through another increment of shape s' gives Gamma(y - x; s + s', b): messages
** stay in the family log h(x) = c + (k - 1) log(y - x) - b (y - x) (plm_bffg_msg's gamma fields). Written as
** exp(c) Gamma(k)/b^k times the Gamma(k, b) density, the pull-back's constant is
** c' = c + lgamma(k) - k log b + (k + s) log b - lgamma(k + s).
** The guided increment q(g) ~ Gamma(g; s, b) h(x + g) is g = (y - x) U, U ~ Beta(s, k): the Dirichlet law of the
** increments of a gamma bridge given its total. Its weight log p(g) - log q(g) = log h'(x) - log h(x + g) is the
** same for every draw along a chain (it telescopes to the exact log-likelihood). */
#include "bffg_impl.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <math.h>

typedef struct gamma_kernel {
    double s, b;   /* shape of one increment (shape * t) and rate */
} gamma_kernel;

static double gmsg(const plm_bffg_msg *h, double x)
{
    return x < h->gy ? h->c + (h->gk - 1) * log(h->gy - x) - h->gb * (h->gy - x) : -INFINITY;
}

static plm_status gamma_pullback(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, plm_bffg_msg *out)
{
    const gamma_kernel *G = k->impl;
    double K;
    if (!child->gamma) {
        if (child->v[0] != 0 || child->H[0] != 0)
            return plm_fail(ctx, PLM_EINVAL, "markov_kernel.gamma_process: only exact observations of the process (through "
                                             "gamma_process kernels) can be carried back through it");
        out->c = child->c;   /* nothing observed ahead: h = constant */
        return PLM_OK;
    }
    if (child->gb != G->b)
        return plm_fail(ctx, PLM_EINVAL, "markov_kernel.gamma_process: rates differ along the process (%g and %g): the "
                                         "messages are exact only for one rate", G->b, child->gb);
    K = child->gk + G->s;
    out->gamma = 1, out->gy = child->gy, out->gk = K, out->gb = G->b;
    out->c = child->c + lgamma(child->gk) - child->gk * log(G->b) + K * log(G->b) - lgamma(K);
    return PLM_OK;
}

static plm_status gamma_observe(plm_ctx *ctx, const plm_bffg_kernel *k, const double *y, plm_bffg_msg *out)
{
    const gamma_kernel *G = k->impl;
    (void)ctx;
    out->gamma = 1, out->gy = y[0], out->gk = G->s, out->gb = G->b;
    out->c = G->s * log(G->b) - lgamma(G->s);
    return PLM_OK;
}

static plm_status gamma_guide(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, void **guide)
{
    plm_bffg_msg *h = plm_gc_alloc(sizeof *h);
    (void)k;
    if (!h) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    *h = *child;
    *guide = h;
    return PLM_OK;
}

/* The guided increment with its Beta (or, nothing observed ahead, Gamma) variate u given, or drawn from r. */
static double gamma_draw(const plm_bffg_kernel *k, const void *guide, const double *x, double *y, plm_rng *r,
                         const double *z)
{
    const gamma_kernel *G = k->impl;
    const plm_bffg_msg *h = guide;
    double D, u, K, lp;
    if (!h->gamma) {
        y[0] = x[0] + (r ? gsl_ran_gamma(&r->gsl, G->s, 1 / G->b) : gsl_cdf_gamma_Pinv(gsl_cdf_ugaussian_P(z[0]), G->s, 1 / G->b));
        return 0;
    }
    D = h->gy - x[0];
    if (!(D > 0)) {   /* unreachable from a parent drawn from its own guided kernel */
        y[0] = x[0];
        return -INFINITY;
    }
    if (r)
        u = gsl_ran_beta(&r->gsl, G->s, h->gk);
    else {
        double p = fmin(fmax(gsl_cdf_ugaussian_P(z[0]), 0x1.0p-54), 1 - 0x1.0p-54);
        u = gsl_cdf_beta_Pinv(p, G->s, h->gk);
    }
    u = fmin(fmax(u, 0x1.0p-60), 1 - 0x1.0p-53);   /* keep both sides of the split positive */
    y[0] = x[0] + D * u;
    if (!(y[0] < h->gy)) y[0] = nextafter(h->gy, -INFINITY);   /* x + D u rounded onto the observation */
    /* log h'(x) - log h(y), h' the pulled-back message (shape K = s + k) */
    K = h->gk + G->s;
    lp = h->c + lgamma(h->gk) - h->gk * log(G->b) + K * log(G->b) - lgamma(K) + (K - 1) * log(D) - G->b * D;
    return lp - gmsg(h, y[0]);
}

static double gamma_sample(const plm_bffg_kernel *k, const void *guide, const double *x, double *y, plm_rng *r,
                           double *work)
{
    (void)work;
    return gamma_draw(k, guide, x, y, r, NULL);
}

static double gamma_sample_z(const plm_bffg_kernel *k, const void *guide, const double *x, const double *z, double *y,
                             double *work)
{
    (void)work;
    return gamma_draw(k, guide, x, y, NULL, z);
}

static double gamma_logpdf(const plm_bffg_kernel *k, const double *x, const double *y, double *work)
{
    const gamma_kernel *G = k->impl;
    double d = y[0] - x[0];
    (void)work;
    return d > 0 ? G->s * log(G->b) - lgamma(G->s) + (G->s - 1) * log(d) - G->b * d : -INFINITY;
}

static const plm_bffg_kernel_ops gamma_ops = {"gamma_process", gamma_pullback, gamma_observe, gamma_guide, gamma_sample,
                                              gamma_logpdf,    gamma_sample_z, NULL, NULL, NULL, NULL, NULL};

plm_status plm_bffg_kernel_gamma(plm_ctx *ctx, double shape, double rate, double t, plm_bffg_kernel **out)
{
    const char *fn = "markov_kernel.gamma_process";
    plm_bffg_kernel *k;
    gamma_kernel *G;
    plm_init();
    if (!(shape > 0) || !isfinite(shape)) return plm_fail(ctx, PLM_EINVAL, "%s: shape must be finite and > 0 (got %g)", fn, shape);
    if (!(rate > 0) || !isfinite(rate)) return plm_fail(ctx, PLM_EINVAL, "%s: rate must be finite and > 0 (got %g)", fn, rate);
    if (!(t > 0) || !isfinite(t)) return plm_fail(ctx, PLM_EINVAL, "%s: t must be finite and > 0 (got %g)", fn, t);
    k = plm_gc_alloc(sizeof *k);
    G = plm_gc_alloc_atomic(sizeof *G);
    if (!k || !G) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    G->s = shape * t, G->b = rate;
    k->ops = &gamma_ops;
    k->din = k->dout = 1;
    k->impl = G;
    k->nz = 1;
    *out = k;
    return PLM_OK;
}
