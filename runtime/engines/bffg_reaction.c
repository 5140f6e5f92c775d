/* bffg_reaction.c -- reaction networks as BFFG kernels: the linear-noise approximation as the backward filter's
** auxiliary, exact guided jump processes forward.
**
** Backward. Near a reference path x*(t), the counts of a network with rates lambda_r and changes S_r move like
** the linear diffusion dX = (B X + beta) dt + sigma dW with B = sum_r S_r grad lambda_r(x*)' (the Jacobian of the
** rate equation's drift f(x) = sum_r S_r lambda_r(x)), beta = f(x*) - B x*, a = sigma sigma' = sum_r lambda_r(x*)
** S_r S_r' (van Kampen's linear-noise approximation, the diffusion whose first two infinitesimal moments match
** the jump process at x*). On each grid step the auxiliary is held constant at the reference there and its
** transition is exactly Gaussian (plm_bffg_aux_transition), so the child's Gaussian message is pulled back step
** by step through linear-Gaussian kernels, as for a diffusion (bffg_sde.c): no ODE for (c, F, H), no inverse of
** H, a singular a (conservation laws, reactions that cannot fire) allowed.
**
** Forward. Any jump process with intensities lambda~_r(t, x) that vanish exactly where lambda_r does has a
** density against the original on the paths over [t0, t1]:
**   log dP/dP~ = integral of sum_r (lambda~_r - lambda_r)(t, X_t) dt + sum over jumps of log(lambda_r / lambda~_r).
** The guided intensities are Doob's h-transform by the Gaussian message: lambda~_r = lambda_r h(x + S_r) / h(x) =
** lambda_r exp(e_r(x)), e_r(x) = S_r'(F - H x) - S_r'H S_r / 2, with (F, H) the mean of the messages at the two
** ends of the grid step the time lies in (log h at the step's midpoint to second order in the step; e_r is clamped to [-EMAX, EMAX] so that a far-off state cannot make the rate overflow;
** any such choice keeps the formula exact). Within a step they do not depend on time, so the guided process is
** simulated exactly by Gillespie's direct method, restarted at each grid time (memorylessness), and the weight
** above is computed exactly: the integrand is constant between events. There is no discretisation error
** anywhere; the grid only sets how closely the guiding follows the filter's message (thinning against a bound
** would be exact too, but the bound on h(x + S)/h(x) over a step is as hard as the simulation). The engine adds
** the observation terms: the weight of a path is unbiased for p(y) whatever the auxiliary. */
#include "bffg_reaction.h"

#include "bffg_impl.h"

#include <gsl/gsl_cdf.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EMAX 40.0
#define MAX_Z 1000000
#define MAX_STEPS 10000000
#define MAX_JUMPS 100000000

struct plm_reactions {
    int d, R, np;
    double *S;          /* R*d */
    double *params;     /* np */
    plm_prog *rate;     /* R outputs, varying in X */
    plm_prog *jac;      /* R*d outputs: d lambda_r / d x_j at r*d + j */
};

plm_status plm_reactions_new(plm_ctx *ctx, plm_graph *g, int d, int R, int np, const double *S, const int *rate,
                             const double *params, plm_reactions **out)
{
    plm_reactions *n;
    int *jac, xin[PLM_RX_MAX_SPECIES], r, j;
    plm_status st;
    plm_init();
    if (d < 1 || d > PLM_RX_MAX_SPECIES)
        return plm_fail(ctx, PLM_EINVAL, "reactions: the number of species must be in 1..%d (got %d)", PLM_RX_MAX_SPECIES, d);
    if (R < 1 || R > PLM_RX_MAX_REACTIONS)
        return plm_fail(ctx, PLM_EINVAL, "reactions: the number of reactions must be in 1..%d (got %d)", PLM_RX_MAX_REACTIONS, R);
    if (np < 0) return plm_fail(ctx, PLM_EINVAL, "reactions: bad number of parameters %d", np);
    for (r = 0; r < R * d; r++)
        if (!isfinite(S[r]))
            return plm_fail(ctx, PLM_EINVAL, "reactions: reaction %d: stoich[%d] must be finite (got %g)", r / d + 1, r % d + 1, S[r]);
    for (r = 0; r < np; r++)
        if (!isfinite(params[r])) return plm_fail(ctx, PLM_EINVAL, "reactions: parameter %d must be finite (got %g)", r + 1, params[r]);
    n = plm_gc_alloc(sizeof *n);
    jac = plm_gc_alloc_atomic((size_t)R * d * sizeof *jac);
    if (!n || !jac || !(n->S = plm_gc_alloc_atomic((size_t)R * d * sizeof *n->S)) ||
        !(n->params = plm_gc_alloc_atomic((size_t)(np + 1) * sizeof *n->params)))
        return plm_fail(ctx, PLM_ENOMEM, "reactions: out of memory");
    n->d = d, n->R = R, n->np = np;
    memcpy(n->S, S, (size_t)R * d * sizeof *S);
    if (np) memcpy(n->params, params, (size_t)np * sizeof *params);
    for (j = 0; j < d; j++) xin[j] = plm_graph_input(g, PLM_GRP_X, j);
    for (r = 0; r < R; r++)
        if ((st = plm_graph_grad(ctx, g, rate[r], d, xin, jac + r * d))) return st;
    if ((st = plm_prog_compile(ctx, g, R, rate, 1u << PLM_GRP_X, &n->rate)) ||
        (st = plm_prog_compile(ctx, g, R * d, jac, 1u << PLM_GRP_X, &n->jac)))
        return st;
    *out = n;
    return PLM_OK;
}

const double *plm_reactions_params(const plm_reactions *net) { return net->params; }

plm_status plm_reactions_with(plm_ctx *ctx, const plm_reactions *net, const double *params, plm_reactions **out)
{
    plm_reactions *n = plm_gc_alloc(sizeof *n);
    int i;
    if (!n || !(n->params = plm_gc_alloc_atomic((size_t)(net->np + 1) * sizeof *n->params)))
        return plm_fail(ctx, PLM_ENOMEM, "reactions: out of memory");
    for (i = 0; i < net->np; i++)
        if (!isfinite(params[i])) return plm_fail(ctx, PLM_EINVAL, "reactions: parameter %d must be finite (got %g)", i + 1, params[i]);
    n->d = net->d, n->R = net->R, n->np = net->np, n->S = net->S, n->rate = net->rate, n->jac = net->jac;
    if (net->np) memcpy(n->params, params, (size_t)net->np * sizeof *params);
    *out = n;
    return PLM_OK;
}

void plm_reactions_size(const plm_reactions *net, int *d, int *R, int *np)
{
    if (d) *d = net->d;
    if (R) *R = net->R;
    if (np) *np = net->np;
}

/* One-point evaluation of a program of the network at x (bound once: x and out are fixed addresses). */
typedef struct point {
    plm_prog_point pt;
    plm_prog_in in[PLM_NGROUPS];
    double *outp[PLM_RX_MAX_REACTIONS * PLM_RX_MAX_SPECIES];
} point;

static plm_status point_init(plm_ctx *ctx, point *p, const plm_reactions *net, const plm_prog *prog, const double *x,
                             double *out)
{
    int k, nout = plm_prog_nout(prog);
    plm_status st;
    memset(p->in, 0, sizeof p->in);
    p->in[PLM_GRP_P].p = net->params;
    p->in[PLM_GRP_X].p = x;
    p->in[PLM_GRP_X].ld = 1;
    for (k = 0; k < nout; k++) p->outp[k] = out + k;
    if ((st = plm_prog_check(ctx, prog, p->in, 0))) return st;
    return plm_prog_point_init(ctx, &p->pt, prog, p->in, p->outp, NULL);
}

/* The index of the first rate that is negative or not finite, or -1. */
static int bad_rate(const double *lam, int R)
{
    for (int r = 0; r < R; r++)
        if (!(lam[r] >= 0 && lam[r] < INFINITY)) return r;
    return -1;
}

static plm_status rate_fail(plm_ctx *ctx, const plm_reactions *net, const double *x, const double *lam, int r)
{
    char buf[256];
    int j, len = 0;
    for (j = 0; j < net->d && len < 200; j++) len += snprintf(buf + len, sizeof buf - (size_t)len, "%s%g", j ? ", " : "", x[j]);
    return plm_fail(ctx, PLM_EDOM, "reactions: the rate of reaction %d is %g at x = (%s): rates must be finite and >= 0",
                    r + 1, lam[r], buf);
}

plm_status plm_reactions_rates(plm_ctx *ctx, const plm_reactions *net, const double *x, double *lambda)
{
    point *p = malloc(sizeof *p);
    plm_status st;
    if (!p) return plm_fail(ctx, PLM_ENOMEM, "reactions: out of memory");
    if (!(st = point_init(ctx, p, net, net->rate, x, lambda))) {
        plm_prog_point_run(&p->pt);
        plm_prog_point_free(&p->pt);
    }
    free(p);
    return st;
}

/* f(x) = sum_r S_r lambda_r(x) with the rates evaluated by p (bound to x and lam). */
static void drift(const plm_reactions *net, point *p, const double *lam, double *f)
{
    int r, j, d = net->d;
    plm_prog_point_run(&p->pt);
    for (j = 0; j < d; j++) f[j] = 0;
    for (r = 0; r < net->R; r++)
        for (j = 0; j < d; j++) f[j] += net->S[r * d + j] * lam[r];
}

/* x over time h by classical Runge-Kutta in ceil(h / dt) steps; x, lam: the addresses p is bound to; w: 5 d. */
static void rk4(const plm_reactions *net, point *p, double *x, double *lam, double h, double dt, double *w)
{
    int d = net->d, j, s, ns = (int)fmax(1, ceil(h / dt * (1 - 1e-12)));
    double *x0 = w, *k1 = w + d, *k2 = k1 + d, *k3 = k2 + d, *k4 = k3 + d, e = h / ns;
    for (s = 0; s < ns; s++) {
        memcpy(x0, x, (size_t)d * sizeof *x);
        drift(net, p, lam, k1);
        for (j = 0; j < d; j++) x[j] = x0[j] + 0.5 * e * k1[j];
        drift(net, p, lam, k2);
        for (j = 0; j < d; j++) x[j] = x0[j] + 0.5 * e * k2[j];
        drift(net, p, lam, k3);
        for (j = 0; j < d; j++) x[j] = x0[j] + e * k3[j];
        drift(net, p, lam, k4);
        for (j = 0; j < d; j++) x[j] = x0[j] + e / 6 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]);
    }
}

plm_status plm_reactions_ode(plm_ctx *ctx, const plm_reactions *net, const double *x0, size_t n, const double *times,
                             double dt, double *out)
{
    int d = net->d;
    double *w = malloc((size_t)(7 * d + net->R) * sizeof *w), *x, *lam;
    point *p = malloc(sizeof *p);
    plm_status st = PLM_OK;
    size_t i;
    if (!w || !p) {
        free(w);
        free(p);
        return plm_fail(ctx, PLM_ENOMEM, "reactions: out of memory");
    }
    x = w + 5 * d, lam = x + d;
    if (!(dt > 0 && isfinite(dt))) st = plm_fail(ctx, PLM_EINVAL, "reactions.ode: dt must be finite and > 0 (got %g)", dt);
    for (i = 1; i < n && !st; i++)
        if (!(times[i] >= times[i - 1]))
            st = plm_fail(ctx, PLM_EINVAL, "reactions.ode: times must increase (times[%zu] = %g after %g)", i + 1, times[i], times[i - 1]);
    if (!st && n > 0 && !(st = point_init(ctx, p, net, net->rate, x, lam))) {
        memcpy(x, x0, (size_t)d * sizeof *x);
        for (i = 0; i < n; i++) {
            if (i > 0 && times[i] > times[i - 1]) rk4(net, p, x, lam, times[i] - times[i - 1], dt, w);
            memcpy(out + i * d, x, (size_t)d * sizeof *x);
        }
        plm_prog_point_free(&p->pt);
        for (i = 0; i < n * (size_t)d && !st; i++)
            if (!isfinite(out[i])) st = plm_fail(ctx, PLM_EDOM, "reactions.ode: the solution left the finite numbers (reduce dt)");
    }
    free(w);
    free(p);
    return st;
}

plm_status plm_reactions_simulate(plm_ctx *ctx, const plm_reactions *net, const double *x0, size_t n, const double *times,
                                  uint64_t seed, uint64_t stream, size_t max_jumps, double *out)
{
    int d = net->d, R = net->R, r, j;
    double *x = malloc((size_t)(d + R) * sizeof *x), *lam, t;
    point *p = malloc(sizeof *p);
    size_t i, jumps = 0;
    plm_status st = PLM_OK;
    plm_rng rng;
    if (!x || !p) {
        free(x);
        free(p);
        return plm_fail(ctx, PLM_ENOMEM, "reactions: out of memory");
    }
    lam = x + d;
    if (!max_jumps) max_jumps = MAX_JUMPS;
    for (i = 1; i < n && !st; i++)
        if (!(times[i] >= times[i - 1]))
            st = plm_fail(ctx, PLM_EINVAL, "reactions.simulate: times must increase (times[%zu] = %g after %g)", i + 1, times[i], times[i - 1]);
    if (st || n == 0 || (st = point_init(ctx, p, net, net->rate, x, lam))) goto done;
    plm_rng_init(&rng, seed, stream);
    memcpy(x, x0, (size_t)d * sizeof *x);
    t = times[0];
    for (i = 0; i < n && !st; i++) {
        for (;;) {
            double tot = 0, v;
            plm_prog_point_run(&p->pt);
            if ((r = bad_rate(lam, R)) >= 0) {
                st = rate_fail(ctx, net, x, lam, r);
                break;
            }
            for (r = 0; r < R; r++) tot += lam[r];
            /* no event before times[i]: by memorylessness the clock may restart there */
            if (tot == 0 || (t -= log(plm_rng_uniform(&rng)) / tot) > times[i]) {
                t = times[i];
                break;
            }
            v = plm_rng_uniform(&rng) * tot;
            for (r = 0; r < R - 1 && (v -= lam[r]) >= 0; r++) {}
            for (j = 0; j < d; j++) x[j] += net->S[r * d + j];
            if (++jumps > max_jumps) {
                st = plm_fail(ctx, PLM_EINVAL, "reactions.simulate: more than %zu jumps before t = %g", max_jumps, times[i]);
                break;
            }
            if ((jumps & 0xffff) == 0 && plm_interrupted()) {
                st = plm_fail(ctx, PLM_EINTR, "reactions.simulate: interrupted");
                break;
            }
        }
        if (!st) memcpy(out + i * d, x, (size_t)d * sizeof *x);
    }
    plm_prog_point_free(&p->pt);
done:
    free(x);
    free(p);
    return st;
}

/* ---- the kernel --------------------------------------------------------------------------------------- */

typedef struct rx_kernel {
    const plm_reactions *net;
    const plm_reactions *origin;       /* the network it was first made from (plm_bffg_kernel_reaction_with keeps it) */
    plm_bffg_reaction_opts o;          /* as made (o.at points at a copy), for remaking at other parameters */
    size_t M;                          /* innovations that drive the first M uniforms of a path (sample_z) */
    int d, R, omit;
    size_t N;                          /* grid steps */
    double *t;                         /* N + 1 grid times */
    const plm_bffg_kernel **step;      /* N linear-Gaussian kernels: the LNA's transition over each step */
} rx_kernel;

/* The guided intensities of every grid step k: e_r(x) = E[k R + r] - HS[(k R + r) d ..]'x with E = S_r'F - S_r'HS_r/2
** and HS = H S_r, from the mean (F, H) of the messages at t[k] and t[k + 1]; and the message at t0 for the parent. */
typedef struct rx_guide {
    double *E, *HS;
    double c0, *F0, *H0;
} rx_guide;

static double *dalloc(size_t n) { return plm_gc_alloc_atomic((n ? n : 1) * sizeof(double)); }

/* Half of step k's guided intensities from the message h: E = (S_r'F - S_r'H S_r / 2) / 2, HS = H S_r / 2, set (first)
** or added. */
static void guide_half(const rx_kernel *K, rx_guide *g, size_t k, const plm_bffg_msg *h, int first)
{
    int d = K->d, R = K->R, r, i, j;
    for (r = 0; r < R; r++) {
        const double *Sr = K->net->S + (size_t)r * d;
        double *hs = g->HS + ((size_t)k * R + r) * d, sf = 0, shs = 0;
        for (i = 0; i < d; i++) {
            double acc = 0;
            for (j = 0; j < d; j++) acc += h->H[i * d + j] * Sr[j];
            hs[i] = (first ? 0 : hs[i]) + 0.5 * acc;
            sf += Sr[i] * h->v[i];
            shs += Sr[i] * acc;
        }
        g->E[k * R + r] = (first ? 0 : g->E[k * R + r]) + 0.5 * (sf - 0.5 * shs);
    }
}

typedef struct rx_visit {
    const rx_kernel *K;
    rx_guide *g;
} rx_visit;

/* plm_bffg_pullback_grid's visit for a guide: the message at t[k] gives the second half of step k's intensities
** and the first half of step k - 1's; the one at t0 is the parent's. */
static void guide_grid_msg(void *ud, size_t k, const plm_bffg_msg *h)
{
    const rx_visit *w = ud;
    size_t d = (size_t)w->K->d;
    if (k < w->K->N) guide_half(w->K, w->g, k, h, 0);
    if (k > 0) guide_half(w->K, w->g, k - 1, h, 1);
    if (k == 0) {
        w->g->c0 = h->c;
        memcpy(w->g->F0, h->v, d * sizeof *h->v);
        memcpy(w->g->H0, h->H, d * d * sizeof *h->H);
    }
}

/* The child's message carried back to t0; with g, the guided intensities of every step too (step k is guided by
** the mean of the messages at t[k + 1] and t[k]). */
static plm_status rx_backward(plm_ctx *ctx, const rx_kernel *K, const plm_bffg_msg *child, rx_guide *g, plm_bffg_msg *out)
{
    rx_visit w = {K, g};
    if (child->gamma)
        return plm_fail(ctx, PLM_EINVAL, "bffg: a gamma process's message cannot be carried back through a reaction network");
    return plm_bffg_pullback_grid(ctx, K->d, K->N, K->step, child, g ? guide_grid_msg : NULL, &w, out);
}

static plm_status rx_pullback(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, plm_bffg_msg *out)
{
    return rx_backward(ctx, k->impl, child, NULL, out);
}

static plm_status rx_guide_new(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, void **guide)
{
    const rx_kernel *K = k->impl;
    size_t d = (size_t)K->d, nr = K->N * (size_t)K->R;
    rx_guide *g = plm_gc_alloc(sizeof *g);
    plm_bffg_msg out = {0, K->d, 0, NULL, NULL, 0, 0, 0, 0};
    plm_status st;
    if (!g || !(g->E = dalloc(nr)) || !(g->HS = dalloc(nr * d)) || !(g->F0 = dalloc(d)) || !(g->H0 = dalloc(d * d)) ||
        !(out.v = dalloc(d)) || !(out.H = dalloc(d * d)))
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    if ((st = rx_backward(ctx, K, child, g, &out))) return st;
    *guide = g;
    return PLM_OK;
}

static void rx_guide_msg(const plm_bffg_kernel *k, const void *guide, plm_bffg_msg *out)
{
    const rx_guide *g = guide;
    size_t d = (size_t)((const rx_kernel *)k->impl)->d;
    out->c = g->c0;
    memcpy(out->v, g->F0, d * sizeof *out->v);
    memcpy(out->H, g->H0, d * d * sizeof *out->H);
}

/* The uniforms that drive a path: from the random stream r, or (z non-NULL) Phi(z[0]), ..., Phi(z[M - 1]) and then
** the stream tail. */
typedef struct usrc {
    const double *z;
    size_t used, M;
    plm_rng *r;
} usrc;

static inline double next_uniform(usrc *u)
{
    if (u->z && u->used < u->M) {
        double v = gsl_cdf_ugaussian_P(u->z[u->used++]);
        return fmin(fmax(v, 0x1.0p-54), 1 - 0x1.0p-54);   /* inside (0, 1), like plm_rng_uniform's */
    }
    return plm_rng_uniform(u->r);
}

/* One guided path from x0 (see the top of the file); returns log dP/dP~ of the path, NaN when a rate was negative
** or not finite, the path made more than MAX_JUMPS jumps, or it was interrupted. work: x (d), lambda (R), the
** guided lambda (R), e (R). */
static double rx_path(const plm_bffg_kernel *k, const void *guide, const double *x0, double *y, usrc *u, double *work)
{
    const rx_kernel *K = k->impl;
    const rx_guide *g = guide;
    const plm_reactions *net = K->net;
    int d = K->d, R = K->R, r, j;
    double *x = work, *lam = x + d, *gl = lam + R, *e = gl + R, lw = 0, t;
    size_t kk, jumps = 0;
    point *p = malloc(sizeof *p);
    if (!p) return NAN;
    memcpy(x, x0, (size_t)d * sizeof *x);
    if (point_init(NULL, p, net, net->rate, x, lam)) {
        free(p);
        return NAN;
    }
    for (kk = 0; kk < K->N && !isnan(lw); kk++) {
        const double *E = g->E + kk * R, *HS = g->HS + kk * (size_t)R * d;
        double tend = K->t[kk + 1];
        t = K->t[kk];
        for (;;) {
            double tot = 0, gtot = 0, tau, v;
            int last = -1;
            plm_prog_point_run(&p->pt);
            for (r = 0; r < R; r++) {
                double er = E[r];
                if (!(lam[r] >= 0 && lam[r] < INFINITY)) {
                    lw = NAN;
                    break;
                }
                for (j = 0; j < d; j++) er -= HS[r * d + j] * x[j];
                er = er > EMAX ? EMAX : er < -EMAX ? -EMAX : er;
                e[r] = er;
                gl[r] = lam[r] > 0 ? lam[r] * exp(er) : 0;
                if (gl[r] > 0) last = r;
                tot += lam[r], gtot += gl[r];
            }
            if (isnan(lw)) break;
            tau = gtot > 0 ? -log(next_uniform(u)) / gtot : INFINITY;
            if (t + tau >= tend) {   /* no event in this step: the clock restarts at the next grid time */
                if (K->omit != 1) lw += (gtot - tot) * (tend - t);
                break;
            }
            if (K->omit != 1) lw += (gtot - tot) * tau;
            t += tau;
            v = next_uniform(u) * gtot;
            for (r = 0; r < last && (v -= gl[r]) >= 0; r++) {}
            while (gl[r] == 0) r++;   /* rounding never picks a reaction that cannot fire */
            if (K->omit != 2) lw -= e[r];   /* log(lambda_r / lambda~_r) */
            for (j = 0; j < d; j++) x[j] += net->S[r * d + j];
            if (++jumps > MAX_JUMPS || ((jumps & 0xffff) == 0 && plm_interrupted())) {
                lw = NAN;
                break;
            }
        }
    }
    plm_prog_point_free(&p->pt);
    free(p);
    memcpy(y, x, (size_t)d * sizeof *y);
    return lw;
}

static double rx_sample(const plm_bffg_kernel *k, const void *guide, const double *x0, double *y, plm_rng *rng,
                        double *work)
{
    usrc u = {NULL, 0, 0, rng};
    return rx_path(k, guide, x0, y, &u, work);
}

/* The path as a function of innovations (pCN): z[0..M-1] give its first M uniforms through Phi, and the bits of
** z[M] seed the stream of the rest. Under z ~ N(0, I) the uniforms are independent and uniform, so the weight stays
** unbiased for p(y); a pCN move keeps the first M close (the event times and choices of the path's start move
** little) and refreshes the tail (an independent move of that block, reversible too). */
static double rx_sample_z(const plm_bffg_kernel *k, const void *guide, const double *x, const double *z, double *y,
                          double *work)
{
    const rx_kernel *K = k->impl;
    uint64_t bits;
    plm_rng tail;
    usrc u;
    memcpy(&bits, &z[K->M], sizeof bits);
    plm_rng_init(&tail, bits, 0x72656163ULL);
    u.z = z, u.used = 0, u.M = K->M, u.r = &tail;
    return rx_path(k, guide, x, y, &u, work);
}

static const plm_bffg_kernel_ops rx_ops = {"reactions", rx_pullback, NULL, rx_guide_new, rx_sample, NULL, rx_sample_z,
                                           rx_guide_msg, NULL, NULL, NULL, NULL};

/* The kernel of net over o; origin is the network whose parameters MCMC moves (net itself, or the one net was
** remade from), M the innovations of sample_z (0: from the expected number of events along the reference). */
static plm_status rx_make(plm_ctx *ctx, const plm_reactions *net, const plm_bffg_reaction_opts *o,
                          const plm_reactions *origin, size_t M, plm_bffg_kernel **out)
{
    const char *fn = "markov_kernel.reactions";
    int d, R, i, j, r;
    double span, steps, *w, *x, *xm, *lam, *J, *B, *beta, *a, *Phi, *m, *Q, events = 0;
    size_t N, n;
    plm_bffg_kernel *k;
    rx_kernel *K;
    point *pr = NULL, *pj = NULL;
    plm_status st = PLM_OK;
    plm_init();
    if (!net) return plm_fail(ctx, PLM_EINVAL, "%s: missing network", fn);
    d = net->d, R = net->R;
    if (!(isfinite(o->t0) && isfinite(o->t1) && o->t1 > o->t0))
        return plm_fail(ctx, PLM_EINVAL, "%s: needs finite t0 < t1 (got t0 = %g, t1 = %g)", fn, o->t0, o->t1);
    if (!(o->dt > 0) || !isfinite(o->dt)) return plm_fail(ctx, PLM_EINVAL, "%s: dt must be finite and > 0 (got %g)", fn, o->dt);
    if (o->omit < 0 || o->omit > 2) return plm_fail(ctx, PLM_EINVAL, "%s: bad omit %d", fn, o->omit);
    if (!o->at) return plm_fail(ctx, PLM_EINVAL, "%s: missing the reference state 'at'", fn);
    for (i = 0; i < d; i++)
        if (!isfinite(o->at[i])) return plm_fail(ctx, PLM_EINVAL, "%s: at[%d] must be finite (got %g)", fn, i + 1, o->at[i]);
    span = o->t1 - o->t0;
    steps = ceil(span / o->dt * (1 - 1e-12));
    if (!(steps <= MAX_STEPS))
        return plm_fail(ctx, PLM_EINVAL, "%s: (t1 - t0) / dt = %g steps is over the limit of %d", fn, steps, MAX_STEPS);
    N = steps < 1 ? 1 : (size_t)steps;
    k = plm_gc_alloc(sizeof *k);
    K = plm_gc_alloc(sizeof *K);
    if (!k || !K || !(K->t = dalloc(N + 1)) || !(K->step = plm_gc_alloc(N * sizeof *K->step)))
        return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    K->net = net, K->origin = origin, K->d = d, K->R = R, K->N = N, K->omit = o->omit;
    K->o = *o;
    if (!(K->o.at = dalloc((size_t)d))) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    memcpy((double *)K->o.at, o->at, (size_t)d * sizeof *o->at);
    for (n = 0; n < N; n++) K->t[n] = fmin(o->t0 + (double)n * o->dt, o->t1);
    K->t[N] = o->t1;
    w = malloc(((size_t)7 * d + 2 * (size_t)R + (size_t)R * d + 5 * (size_t)d * d + (size_t)d) * sizeof *w);
    pr = malloc(sizeof *pr), pj = malloc(sizeof *pj);
    if (!w || !pr || !pj) {
        st = plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    /* w: rk4 scratch (5d), x, xm, lam, J, B, beta, a, Phi, m, Q */
    x = w + 5 * d, xm = x + d, lam = xm + d, J = lam + R, B = J + (size_t)R * d, beta = B + (size_t)d * d,
    a = beta + d, Phi = a + (size_t)d * d, m = Phi + (size_t)d * d, Q = m + d;
    if ((st = point_init(ctx, pr, net, net->rate, xm, lam))) goto done;
    if ((st = point_init(ctx, pj, net, net->jac, xm, J))) {
        plm_prog_point_free(&pr->pt);
        goto done;
    }
    memcpy(x, o->at, (size_t)d * sizeof *x);
    for (n = 0; n < N && !st; n++) {
        double h = K->t[n + 1] - K->t[n];
        plm_bffg_kernel *sk;
        if (!(h > 0)) {
            st = plm_fail(ctx, PLM_EINVAL, "%s: dt = %g is too small for the interval [%g, %g]", fn, o->dt, o->t0, o->t1);
            break;
        }
        if ((n & 1023) == 0 && plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "%s: interrupted", fn);
            break;
        }
        /* the reference over the step: the midpoint of the rate equation's path (or `at` throughout) */
        memcpy(xm, x, (size_t)d * sizeof *x);
        if (o->ode) {
            rk4(net, pr, xm, lam, h, h, w);   /* xm = x(t[n + 1]) */
            for (i = 0; i < d; i++) {
                double next = xm[i];
                xm[i] = 0.5 * (x[i] + next);
                x[i] = next;
            }
        }
        plm_prog_point_run(&pr->pt);
        plm_prog_point_run(&pj->pt);
        for (i = 0; i < d; i++)
            if (!isfinite(xm[i])) {
                st = plm_fail(ctx, PLM_EDOM, "%s: the rate equation's solution from 'at' left the finite numbers (use ode = false)", fn);
                break;
            }
        for (r = 0; r < R && !st; r++) {
            if (!isfinite(lam[r])) st = rate_fail(ctx, net, xm, lam, r);
            for (j = 0; j < d && !st; j++)
                if (!isfinite(J[r * d + j]))
                    st = plm_fail(ctx, PLM_EDOM, "%s: the derivative of the rate of reaction %d in species %d is %g at the reference", fn,
                                  r + 1, j + 1, J[r * d + j]);
        }
        if (st) break;
        for (r = 0; r < R; r++) events += fmax(lam[r], 0) * h;
        /* B = sum_r S_r grad lambda_r', beta = f(x*) - B x*, a = sum_r max(lambda_r, 0) S_r S_r' */
        for (i = 0; i < d; i++) {
            double f = 0;
            for (j = 0; j < d; j++) {
                double bij = 0, aij = 0;
                for (r = 0; r < R; r++) {
                    bij += net->S[r * d + i] * J[r * d + j];
                    aij += fmax(lam[r], 0) * net->S[r * d + i] * net->S[r * d + j];
                }
                B[i * d + j] = bij, a[i * d + j] = aij;
            }
            for (r = 0; r < R; r++) f += net->S[r * d + i] * lam[r];
            beta[i] = f;
        }
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++) beta[i] -= B[i * d + j] * xm[j];
        /* steps of one length with a constant reference share one transition */
        if (!o->ode && n > 0 && fabs(h - (K->t[n] - K->t[n - 1])) <= 1e-10 * h) {
            K->step[n] = K->step[n - 1];
            continue;
        }
        if ((st = plm_bffg_aux_transition(ctx, d, B, beta, a, h, Phi, m, Q))) break;
        if ((st = plm_bffg_kernel_linear_gaussian(ctx, d, d, Phi, m, Q, &sk))) {
            if (st == PLM_EINVAL)
                st = plm_fail(ctx, PLM_EINVAL, "%s: the linear-noise transition over a step is not a Gaussian (%s)", fn,
                              ctx ? ctx->msg : "");
            break;
        }
        K->step[n] = sk;
    }
    plm_prog_point_free(&pr->pt);
    plm_prog_point_free(&pj->pt);
done:
    free(w);
    free(pr);
    free(pj);
    if (st) return st;
    /* a path takes one uniform per grid step and two per event: room for twice the reference's events */
    K->M = M ? M : (size_t)fmin((double)N + 4 * ceil(events) + 32, MAX_Z);
    k->ops = &rx_ops;
    k->din = k->dout = d;
    k->impl = K;
    k->nz = K->M + 1;
    k->work = (size_t)(d + 3 * R);
    *out = k;
    return PLM_OK;
}

plm_status plm_bffg_kernel_reaction(plm_ctx *ctx, const plm_reactions *net, const plm_bffg_reaction_opts *o,
                                    plm_bffg_kernel **out)
{
    return rx_make(ctx, net, o, net, 0, out);
}

const plm_reactions *plm_bffg_kernel_reaction_of(const plm_bffg_kernel *k)
{
    return k->ops == &rx_ops ? ((const rx_kernel *)k->impl)->origin : NULL;
}

plm_status plm_bffg_kernel_reaction_with(plm_ctx *ctx, const plm_bffg_kernel *k, const double *params, plm_bffg_kernel **out)
{
    const rx_kernel *K = k->impl;
    plm_reactions *net;
    plm_status st;
    if (k->ops != &rx_ops) return plm_fail(ctx, PLM_EINVAL, "bffg: not a reaction-network kernel");
    if ((st = plm_reactions_with(ctx, K->net, params, &net))) return st;
    return rx_make(ctx, net, &K->o, K->origin, K->M, out);
}

const void *plm_bffg_mcmc_owner(const plm_bffg_mcmc_opts *o, int *np, const double **params)
{
    if (o->sde) {
        if (np) *np = o->sde->np;
        if (params) *params = o->sde->params;
        return o->sde;
    }
    if (o->net) {
        if (np) *np = o->net->np;
        if (params) *params = o->net->params;
        return o->net;
    }
    if (np) *np = 0;
    if (params) *params = NULL;
    return NULL;
}
