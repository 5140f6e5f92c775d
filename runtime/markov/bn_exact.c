/* bn_exact.c -- exact marginals of grid Bayesian networks of binary nodes by a frontier forward-backward pass.
**
** In raster order node t has parents t - W (up) and t - 1 (left), W the width, so the W most recent nodes
** (the frontier) are all that the rest of the grid reads from the past: a chain on 2^W frontier states with
** two successors each. State s after node t holds x_{t-k} in bit k (k = 0..W-1; bits of nodes before the
** first are 0): node t + 1 reads its up parent in bit W - 1 and its left one in bit 0, and moves the chain to
** ((s << 1) | x) & (2^W - 1). */
#include "bn_exact.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BN_MAX_WIDTH 22
#define BN_MAX_CELLS ((size_t)1 << 28)

static plm_status check_grid(plm_ctx *ctx, const plm_bn_grid *g)
{
    int v, n;
    if (g->rows < 1 || g->cols < 1)
        return plm_failm(ctx, PLM_EINVAL, "bn_grid", "rows and cols must be >= 1 (got %d x %d)", g->rows, g->cols);
    if (!g->cpt) return plm_failm(ctx, PLM_EINVAL, "bn_grid", "cpt is missing");
    n = g->rows * g->cols;
    for (v = 0; v < 4 * n; v++) {
        double p = g->cpt[v];
        if (!(p >= 0 && p <= 1))
            return plm_failm(ctx, PLM_EINVAL, "bn_grid", "node (%d, %d): P(x = 1 | up = %d, left = %d) = %g is not in [0, 1]",
                            v / 4 / g->cols + 1, v / 4 % g->cols + 1, (v >> 1) & 1, v & 1, p);
    }
    if (g->evidence)
        for (v = 0; v < n; v++)
            if (g->evidence[v] < -1 || g->evidence[v] > 1)
                return plm_failm(ctx, PLM_EINVAL, "bn_grid", "node (%d, %d): evidence %d is not -1 (latent), 0 or 1",
                                v / g->cols + 1, v % g->cols + 1, g->evidence[v]);
    return PLM_OK;
}

/* P(x_t = 1 | frontier s) for node t of a grid W wide (absent parents read as 0). */
static inline double p_one(const double *cpt, int t, int W, unsigned s)
{
    unsigned up = t >= W ? (s >> (W - 1)) & 1u : 0u;
    unsigned left = t % W ? s & 1u : 0u;
    return cpt[4 * t + 2 * up + left];
}

/* The pass on a grid of width W (the caller transposed it when that is narrower). alpha holds n * 2^W. */
static plm_status frontier_pass(plm_ctx *ctx, int n, int W, const double *cpt, const int *ev, double *alpha,
                                double *marg, double *logz)
{
    size_t S = (size_t)1 << W, s;
    unsigned mask = (unsigned)(S - 1), half = (unsigned)(S >> 1);
    double *beta = malloc(2 * S * sizeof *beta), *next = beta ? beta + S : NULL, lz = 0;
    int t;
    if (!beta) return plm_failm(ctx, PLM_ENOMEM, "bn_grid", "out of memory for %zu frontier states", S);
    /* forward: alpha_t(s) = P(frontier s after t, evidence up to t), scaled to sum to 1 with log c_t kept in
    ** lz -- unscaled, a 15 x 15 grid with 100 observed nodes is already near 1e-30 */
    for (t = 0; t < n; t++) {
        double *a = alpha + (size_t)t * S, sum = 0;
        const double *prev = t ? alpha + (size_t)(t - 1) * S : NULL;
        if ((t & 7) == 0 && plm_interrupted()) {
            free(beta);
            return plm_failm(ctx, PLM_EINTR, "bn_grid", "interrupted");
        }
        for (s = 0; s < S; s++) {
            /* s's two predecessors differ in the bit that leaves the frontier */
            unsigned x = (unsigned)s & 1u, r0 = (unsigned)s >> 1, r1 = r0 | half;
            double w = 0;
            if (ev && ev[t] >= 0 && (unsigned)ev[t] != x) { a[s] = 0; continue; }
            if (!prev) {
                if (r0 == 0) w = x ? p_one(cpt, t, W, 0) : 1 - p_one(cpt, t, W, 0);
            } else {
                double p0 = p_one(cpt, t, W, r0), p1 = p_one(cpt, t, W, r1);
                w = prev[r0] * (x ? p0 : 1 - p0) + prev[r1] * (x ? p1 : 1 - p1);
            }
            a[s] = w;
            sum += w;
        }
        if (!(sum > 0)) {
            free(beta);
            return plm_failm(ctx, PLM_EDOM, "bn_grid", "the evidence has probability 0 (at node (%d, %d) in the order "
                            "of the pass)", t / W + 1, t % W + 1);
        }
        for (s = 0; s < S; s++) a[s] /= sum;
        lz += log(sum);
    }
    if (logz) *logz = lz;
    /* backward: beta_t(s) = P(evidence after t | frontier s), scaled; marg_t from alpha_t beta_t */
    for (s = 0; s < S; s++) beta[s] = 1;
    for (t = n - 1; t >= 0; t--) {
        const double *a = alpha + (size_t)t * S;
        double num = 0, den = 0, bsum = 0;
        for (s = 0; s < S; s++) {
            double w = a[s] * beta[s];
            den += w;
            if (s & 1) num += w;
        }
        marg[t] = num / den;
        if (t == 0) break;
        if ((t & 7) == 0 && plm_interrupted()) {
            free(beta);
            return plm_failm(ctx, PLM_EINTR, "bn_grid", "interrupted");
        }
        /* beta_{t-1}(r) = sum_x P(x_t = x | r) [evidence] beta_t(((r << 1) | x) & mask) */
        for (s = 0; s < S; s++) {
            unsigned r = (unsigned)s, s0 = (r << 1) & mask, s1 = s0 | 1u;
            double p = p_one(cpt, t, W, r), w = 0;
            if (!ev || ev[t] != 1) w += (1 - p) * beta[s0];
            if (!ev || ev[t] != 0) w += p * beta[s1];
            next[s] = w;
            bsum += w;
        }
        for (s = 0; s < S; s++) beta[s] = next[s] / bsum;
    }
    free(beta);
    return PLM_OK;
}

plm_status plm_bn_grid_marginals(plm_ctx *ctx, const plm_bn_grid *g, double *marg, double *logz)
{
    plm_status st;
    int n, W, transpose, i, j;
    double *alpha, *cpt = NULL, *m = NULL;
    int *ev = NULL;
    if ((st = check_grid(ctx, g)) != PLM_OK) return st;
    n = g->rows * g->cols;
    transpose = g->cols > g->rows;
    W = transpose ? g->rows : g->cols;
    if (W > BN_MAX_WIDTH || ((size_t)n << W) > BN_MAX_CELLS)
        return plm_failm(ctx, PLM_ENOTSUP, "bn_grid", "a %d x %d grid needs %d x 2^%d frontier probabilities, more "
                        "than the exact pass allows (2^28)", g->rows, g->cols, n, W);
    alpha = malloc(((size_t)n << W) * sizeof *alpha);
    if (!alpha) return plm_failm(ctx, PLM_ENOMEM, "bn_grid", "out of memory for %d x 2^%d frontier probabilities", n, W);
    if (!transpose) {
        st = frontier_pass(ctx, n, W, g->cpt, g->evidence, alpha, marg, logz);
        free(alpha);
        return st;
    }
    /* wider than tall: run on the transpose, where node (j, i) has up and left swapped */
    cpt = malloc(4 * (size_t)n * sizeof *cpt);
    m = malloc((size_t)n * sizeof *m);
    ev = g->evidence ? malloc((size_t)n * sizeof *ev) : NULL;
    if (!cpt || !m || (g->evidence && !ev)) {
        free(alpha), free(cpt), free(m), free(ev);
        return plm_failm(ctx, PLM_ENOMEM, "bn_grid", "out of memory");
    }
    for (i = 0; i < g->rows; i++)
        for (j = 0; j < g->cols; j++) {
            int v = i * g->cols + j, u = j * W + i, up, left;
            for (up = 0; up < 2; up++)
                for (left = 0; left < 2; left++) cpt[4 * u + 2 * left + up] = g->cpt[4 * v + 2 * up + left];
            if (ev) ev[u] = g->evidence[v];
        }
    st = frontier_pass(ctx, n, W, cpt, ev, alpha, m, logz);
    if (st == PLM_OK)
        for (i = 0; i < g->rows; i++)
            for (j = 0; j < g->cols; j++) marg[i * g->cols + j] = m[j * W + i];
    free(alpha), free(cpt), free(m), free(ev);
    return st;
}

plm_status plm_bn_grid_logp(plm_ctx *ctx, const plm_bn_grid *g, const int *x, double *logp)
{
    plm_status st;
    int i, j, C;
    double s = 0;
    if ((st = check_grid(ctx, g)) != PLM_OK) return st;
    C = g->cols;
    for (i = 0; i < g->rows; i++)
        for (j = 0; j < C; j++) {
            int v = i * C + j, up = i ? x[v - C] : 0, left = j ? x[v - 1] : 0;
            double p;
            if (x[v] != 0 && x[v] != 1)
                return plm_failm(ctx, PLM_EINVAL, "bn_grid", "node (%d, %d) has value %d, not 0 or 1", i + 1, j + 1, x[v]);
            p = g->cpt[4 * v + 2 * up + left];
            s += log(x[v] ? p : 1 - p);
        }
    *logp = s;
    return PLM_OK;
}
