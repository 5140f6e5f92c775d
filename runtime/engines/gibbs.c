/* gibbs.c -- exact Gibbs kernels on static graphs (see gibbs.h). Each update has a small program copied out
** of the model's graph: for an enumeration the site's blanket terms (its own and its children's), for a
** conjugate site the statistics of the closed form (conjugacy.c decides which). In these copies the site's
** coordinate is an input of group Z, varying per particle, and every other coordinate is uniform: the work
** that does not depend on the site runs once per update, and all values of an enumeration (or the two points
** a conjugate update needs) run as particles of one block. The log density is carried from update to update
** by differences (of the enumerated terms, or of the conjugate conditional's shape), so a sweep never
** evaluates the whole model. No Lua and no allocation per step. */
#include "gibbs_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_blas.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>

typedef struct gibbs_cfg {
    const plm_gmodel *m;
    gibbs_update *up;
    int nup;
    int block;          /* block kernel: one joint update of the sites below */
    int *bsites, *bcoord, *bsize, nb;
    long bspace;        /* points in the block's product space */
    int maxsupport;     /* points of the largest enumeration (weights buffer) */
    int maxstats;       /* outputs of the largest statistics program */
    int maxK;           /* entries of the largest mvnormal site (its workspace) */
} gibbs_cfg;

typedef struct gibbs_chain {
    const gibbs_cfg *cfg;
    plm_prog_ws *wb, *ws;   /* per update: blanket and statistics workspaces */
    double *w, *aux;        /* per point of an enumeration: blanket terms, binomial n */
    double *z;              /* the points: value k of block site j at z[j * maxsupport + k] */
    double *S;              /* statistics: output o of particle i at S[2 * o + i] */
    double **oS;
    double *ow[2];
    double *mv;             /* mvnormal updates: 2 K^2 + 3 K doubles */
} gibbs_chain;

static void chain_free(void *p)
{
    gibbs_chain *c = p;
    int i;
    if (!c) return;
    for (i = 0; i < c->cfg->nup; i++) {
        if (c->wb && c->wb[i].p) plm_prog_ws_free(&c->wb[i]);
        if (c->ws && c->ws[i].p) plm_prog_ws_free(&c->ws[i]);
    }
    free(c->w), free(c->aux), free(c->z), free(c->S), free(c->oS), free(c->wb), free(c->ws), free(c->mv);
    free(c);
}

static void *chain_new(const plm_kernel *k, const plm_target *t)
{
    const gibbs_cfg *cfg = k->cfg;
    gibbs_chain *c = calloc(1, sizeof *c);
    int i, ms = cfg->maxstats + 1, nz = cfg->block ? cfg->nb : 1;
    int blk = cfg->maxsupport < PLM_EXPR_BLOCK ? cfg->maxsupport : PLM_EXPR_BLOCK;
    (void)t;
    if (!c) return NULL;
    c->cfg = cfg;
    c->wb = calloc((size_t)cfg->nup + 1, sizeof *c->wb);
    c->ws = calloc((size_t)cfg->nup + 1, sizeof *c->ws);
    c->w = malloc(((size_t)cfg->maxsupport + 2) * sizeof *c->w);
    c->aux = malloc(((size_t)cfg->maxsupport + 2) * sizeof *c->aux);
    c->z = malloc(((size_t)cfg->maxsupport + 2) * (size_t)nz * sizeof *c->z);
    c->S = malloc(2 * (size_t)ms * sizeof *c->S);
    c->oS = malloc((size_t)ms * sizeof *c->oS);
    c->mv = malloc((2 * (size_t)cfg->maxK * (size_t)cfg->maxK + 3 * (size_t)cfg->maxK + 1) * sizeof *c->mv);
    if (!c->wb || !c->ws || !c->w || !c->aux || !c->z || !c->S || !c->oS || !c->mv) goto fail;
    for (i = 0; i < ms; i++) c->oS[i] = c->S + 2 * i;
    c->ow[0] = c->w, c->ow[1] = c->aux;
    if (!cfg->block)
        for (i = 0; i < cfg->maxsupport; i++) c->z[i] = i;   /* the values of an enumeration, in order */
    for (i = 0; i < cfg->nup; i++) {
        if (cfg->up[i].blanket && plm_prog_ws_init_block(NULL, &c->wb[i], cfg->up[i].blanket, blk < 2 ? 2 : blk)) goto fail;
        if (cfg->up[i].stats && plm_prog_ws_init_block(NULL, &c->ws[i], cfg->up[i].stats, 2)) goto fail;
    }
    return c;
fail:
    chain_free(c);
    return NULL;
}

/* Run program w at the rest of u (uniform) for points z[first .. first + m) (z[j * ld + i]: coordinate j of
** point i), outputs to o[k] + first. The uniform pass runs when `fresh` (u changed since the last call). */
static void eval_points(plm_prog_ws *w, const double *u, const double *z, size_t ld, size_t first, size_t m,
                        double *const *o, int fresh)
{
    plm_prog_in in[PLM_NGROUPS];
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = u;
    in[PLM_GRP_X].ld = 1;
    in[PLM_GRP_Z].p = z;
    in[PLM_GRP_Z].ld = ld;
    if (fresh) plm_prog_uniforms(w, in);
    plm_prog_block(w, in, first, m, o, NULL);
}

/* Draw an index from unnormalised log weights w[0..n-1]; -1 when none is finite (or one is NaN or +inf). */
static long draw_log_weights(const double *w, long n, plm_rng *r)
{
    double mx = -INFINITY, tot = 0, v;
    long i;
    for (i = 0; i < n; i++) {
        if (isnan(w[i]) || w[i] == INFINITY) return -1;
        if (w[i] > mx) mx = w[i];
    }
    if (mx == -INFINITY) return -1;
    for (i = 0; i < n; i++) tot += exp(w[i] - mx);
    v = plm_rng_uniform(r) * tot;
    for (i = 0; i < n; i++) {
        double e = exp(w[i] - mx);
        if (v < e) return i;
        v -= e;
    }
    for (i = n - 1; i >= 0; i--)   /* rounding at the top end: the last point of positive weight */
        if (w[i] > -INFINITY) return i;
    return -1;
}

/* All points 0..n-1 of the program w in blocks of PLM_EXPR_BLOCK (the uniform pass once). */
void plm_gibbs_eval_all(plm_prog_ws *w, const double *u, const double *z, size_t ld, long n, double *const *o)
{
    long first;
    for (first = 0; first < n; first += PLM_EXPR_BLOCK)
        eval_points(w, u, z, ld, (size_t)first, (size_t)(n - first < PLM_EXPR_BLOCK ? n - first : PLM_EXPR_BLOCK), o,
                    first == 0);
}

static plm_status enum_update(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_chain *c, plm_prog_ws *wb, plm_ctx *ctx,
                              plm_rng *r, double *u, double *lp)
{
    const plm_gsite *s = &cfg->m->sites[up->site];
    double old = u[up->coord];
    long n = up->support, pick;
    if (!n) {   /* binomial: n is a parameter (free of the site), read at the current point */
        eval_points(wb, u, c->z, (size_t)cfg->maxsupport, 0, 1, c->ow, 1);
        if (!(c->aux[0] >= 0 && c->aux[0] == floor(c->aux[0]) && c->aux[0] < cfg->maxsupport))
            return plm_fail(ctx, PLM_EDOM, "gibbs: site '%s' (binomial) has n = %g: enumeration needs a whole number "
                            "below %d", s->name, c->aux[0], cfg->maxsupport);
        n = (long)c->aux[0] + 1;
    }
    plm_gibbs_eval_all(wb, u, c->z, (size_t)cfg->maxsupport, n, c->ow);
    if ((pick = draw_log_weights(c->w, n, r)) < 0)
        return plm_fail(ctx, PLM_EDOM, "gibbs: the full conditional of '%s' (%s) has no value of positive finite "
                        "probability", s->name, plm_dist_info_of((plm_dist_kind)s->dist)->name);
    u[up->coord] = (double)pick;
    if (old >= 0 && old < n && old == floor(old)) *lp += c->w[pick] - c->w[(long)old];
    else *lp = NAN;   /* the old value was outside the support: recompute in full */
    return PLM_OK;
}

/* The parameters of a conjugate site's full conditional at u into par: normal (mean, sd), gamma (shape, rate),
** inverse-gamma (shape, scale), beta (a, b), each of the site's value. */
static plm_status conj_params(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_chain *c, plm_prog_ws *ws,
                              plm_ctx *ctx, const double *u, double *par)
{
    const plm_gsite *s = &cfg->m->sites[up->site];
    const double *S = c->S;   /* output o of point i at S[2 * o + i] */
    double a, b, pt[2];
    int ch, j = 2;
    switch (up->how) {
    case PLM_GIBBS_NORMAL: {
        double prec, num;
        /* the children's means are affine in the site: their values at 0 and 1 give slope and intercept */
        pt[0] = 0, pt[1] = 1;
        eval_points(ws, u, pt, 2, 0, 2, c->oS, 1);
        if (!(S[2] > 0)) goto badparam;
        prec = 1 / (S[2] * S[2]);
        num = S[0] * prec;
        for (ch = 0; ch < up->nchild; ch++, j += 3) {
            double ic = S[2 * j], sl = S[2 * j + 1] - ic, sd = S[2 * j + 2], y = S[2 * j + 4], w;
            if (!(sd > 0)) goto badchild;
            w = 1 / (sd * sd);
            prec += sl * sl * w;
            num += sl * (y - ic) * w;
        }
        par[0] = num / prec, par[1] = 1 / sqrt(prec);
        return PLM_OK;
    }
    case PLM_GIBBS_GAMMA: case PLM_GIBBS_INV_GAMMA:
        /* at x = 1 (coordinate log 1 = 0) every child parameter c x^k is its coefficient c */
        pt[0] = 0;
        eval_points(ws, u, pt, 1, 0, 1, c->oS, 1);
        a = S[0], b = S[2];
        if (!(a > 0 && b > 0)) goto badparam;
        for (ch = 0; ch < up->nchild; ch++) {
            switch (up->cfam[ch]) {
            case CHILD_NORMAL: {
                double d = S[2 * (j + 2)] - S[2 * j], sd = S[2 * (j + 1)];
                if (!(sd > 0)) goto badchild;
                a += 0.5, b += 0.5 * d * d / (sd * sd);
                j += 3;
                break;
            }
            case CHILD_POISSON:
                a += S[2 * (j + 1)], b += S[2 * j];
                j += 2;
                break;
            case CHILD_EXPONENTIAL:
                a += 1, b += S[2 * j] * S[2 * (j + 1)];
                j += 2;
                break;
            default:   /* CHILD_GAMMA */
                a += S[2 * j], b += S[2 * (j + 1)] * S[2 * (j + 2)];
                j += 3;
            }
        }
        break;
    default:   /* PLM_GIBBS_BETA: the children's statistics do not depend on the site */
        pt[0] = u[up->coord];
        eval_points(ws, u, pt, 1, 0, 1, c->oS, 1);
        a = S[0], b = S[2];
        if (!(a > 0 && b > 0)) goto badparam;
        for (ch = 0; ch < up->nchild; ch++)
            if (up->cfam[ch] == CHILD_BINOMIAL) {
                a += S[2 * (j + 1)], b += S[2 * j] - S[2 * (j + 1)];
                j += 2;
            } else {
                a += S[2 * j], b += 1 - S[2 * j];
                j += 1;
            }
    }
    if (!(a > 0 && b > 0 && isfinite(a) && isfinite(b))) goto badchild;
    par[0] = a, par[1] = b;
    return PLM_OK;
badparam:
    return plm_fail(ctx, PLM_EDOM, "gibbs: the prior of '%s' (%s) has invalid parameters (%g, %g)", s->name,
                    plm_dist_info_of((plm_dist_kind)s->dist)->name, S[0], S[2]);
badchild:
    return plm_fail(ctx, PLM_EDOM, "gibbs: a child of '%s' has invalid parameters or values (a non-positive scale, or "
                    "counts outside their range)", s->name);
}

static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* The site's blanket terms as a function of its coordinate u, up to a constant: the conditional's log density
** at the value plus the log Jacobian of the coordinate. Conjugacy means the children's terms are exactly this
** shape in the site, so differences of it are differences of the model's log density, without evaluating
** the children again. */
static double conj_shape(int how, const double *par, double u)
{
    double z;
    switch (how) {
    case PLM_GIBBS_NORMAL: z = (u - par[0]) / par[1]; return -0.5 * z * z;
    case PLM_GIBBS_GAMMA: return par[0] * u - par[1] * exp(u);          /* (a - 1) log x - b x + log x */
    case PLM_GIBBS_INV_GAMMA: return -par[0] * u - par[1] * exp(-u);    /* -(a + 1) log x - b / x + log x */
    default: return -par[0] * softplus(-u) - par[1] * softplus(u);      /* a log x + b log(1 - x) */
    }
}

/* A conjugate update: the closed-form draw, as the unconstrained coordinate, and the change of the log
** density from the conditional's shape. */
static plm_status conj_update(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_chain *c, plm_prog_ws *ws,
                              plm_ctx *ctx, plm_rng *r, double *u, double *lp)
{
    double par[2], newu;
    plm_status st;
    if ((st = conj_params(cfg, up, c, ws, ctx, u, par))) return st;
    switch (up->how) {
    case PLM_GIBBS_NORMAL: newu = par[0] + par[1] * plm_rng_normal(r); break;
    /* the log of a Gamma(a, b) draw, exact in logs, is the coordinate itself */
    case PLM_GIBBS_GAMMA: newu = plm_dist_log_gamma(par[0], r) - log(par[1]); break;
    case PLM_GIBBS_INV_GAMMA: newu = log(par[1]) - plm_dist_log_gamma(par[0], r); break;
    /* logit of G1 / (G1 + G2) is log G1 - log G2: the unconstrained coordinate without cancellation */
    default: newu = plm_dist_log_gamma(par[0], r) - plm_dist_log_gamma(par[1], r);
    }
    *lp += conj_shape(up->how, par, newu) - conj_shape(up->how, par, u[up->coord]);
    u[up->coord] = newu;
    return PLM_OK;
}

/* The K concentrations of a dirichlet site's full conditional at u into par: the prior's plus the counts of
** its categorical children's values. */
static plm_status dir_params(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_chain *c, plm_prog_ws *ws, plm_ctx *ctx,
                             const double *u, double *par)
{
    const plm_gsite *s = &cfg->m->sites[up->site];
    const double *S = c->S;   /* output o at S[2 * o] (one point) */
    int k, ch, K = s->dim;
    eval_points(ws, u, u + up->coord, 1, 0, 1, c->oS, 1);
    for (k = 0; k < K; k++) {
        par[k] = S[2 * k];
        if (!(par[k] > 0 && isfinite(par[k])))
            return plm_fail(ctx, PLM_EDOM, "gibbs: the prior of '%s' (dirichlet) has concentration %d = %g", s->name, k + 1,
                            par[k]);
    }
    for (ch = 0; ch < up->nchild; ch++) {
        double y = S[2 * (K + ch)];
        if (!(y >= 0 && y < K && y == floor(y)))
            return plm_fail(ctx, PLM_EDOM, "gibbs: a categorical child of '%s' has value %g, outside 0..%d", s->name, y, K - 1);
        par[(int)y] += 1;
    }
    return PLM_OK;
}

/* A dirichlet site's blanket terms as a function of its K coordinates, up to a constant: sum par_k log x_k (the
** conditional's density times the Jacobian's prod x_k) less (mean u)^2 / 2, with log x_k = u_k - logsumexp(u). */
static double dir_shape(const double *par, const double *u, int K)
{
    double mx = u[0], tot = 0, lse, mean = 0, r = 0;
    int k;
    for (k = 1; k < K; k++) mx = u[k] > mx ? u[k] : mx;
    for (k = 0; k < K; k++) tot += exp(u[k] - mx), mean += u[k] / K;
    lse = mx + log(tot);
    for (k = 0; k < K; k++) r += par[k] * (u[k] - lse);
    return r - 0.5 * mean * mean;
}

/* A dirichlet update: gamma(par_k) draws in logs, centred (the simplex point), plus a standard normal draw of
** their mean, the coordinate the normal term of the site holds: an exact draw of the K coordinates. */
static plm_status dir_update(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_chain *c, plm_prog_ws *ws, plm_ctx *ctx,
                             plm_rng *r, double *u, double *lp)
{
    int k, K = cfg->m->sites[up->site].dim;
    double *par = c->w, *nu = c->aux, mean = 0, shift;
    plm_status st;
    if ((st = dir_params(cfg, up, c, ws, ctx, u, par))) return st;
    for (k = 0; k < K; k++) nu[k] = plm_dist_log_gamma(par[k], r), mean += nu[k] / K;
    shift = plm_rng_normal(r) - mean;
    for (k = 0; k < K; k++) nu[k] += shift;
    *lp += dir_shape(par, nu, K) - dir_shape(par, u + up->coord, K);
    memcpy(u + up->coord, nu, (size_t)K * sizeof *nu);
    return PLM_OK;
}

/* P += Sigma^-1 and h += Sigma^-1 y for a gaussian term of covariance Sigma (K x K) centred at y; A: K x K work.
** Returns 0 when Sigma is not positive definite. */
static int add_gaussian(double *P, double *h, const double *Sigma, const double *y, int K, double *A)
{
    gsl_matrix_view a = gsl_matrix_view_array(A, (size_t)K, (size_t)K);
    int i, j;
    memcpy(A, Sigma, (size_t)K * (size_t)K * sizeof *A);
    if (gsl_linalg_cholesky_decomp1(&a.matrix) || gsl_linalg_cholesky_invert(&a.matrix)) return 0;
    for (i = 0; i < K; i++)
        for (j = 0; j < K; j++) {
            P[i * K + j] += A[i * K + j];
            h[i] += A[i * K + j] * y[j];
        }
    return 1;
}

/* The full conditional of an mvnormal site at u: the Cholesky factor L (lower, K x K) of its precision, the sum
** of the prior's and the children's precisions, and its mean, P^-1 times the sum of precision-weighted means. */
static plm_status mvn_conditional(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_chain *c, plm_prog_ws *ws,
                                  plm_ctx *ctx, const double *u, double *L, double *mean)
{
    const plm_gsite *s = &cfg->m->sites[up->site];
    int K = s->dim, ch, k, o, ok = 1;
    double *A = c->mv + (size_t)K * (size_t)K, *y = A + (size_t)K * (size_t)K + 2 * (size_t)K, *Sg = c->w;
    gsl_error_handler_t *old;
    gsl_matrix_view l = gsl_matrix_view_array(L, (size_t)K, (size_t)K);
    gsl_vector_view hv = gsl_vector_view_array(mean, (size_t)K);
    eval_points(ws, u, u + up->coord, 1, 0, 1, c->oS, 1);
    memset(L, 0, (size_t)K * (size_t)K * sizeof *L);
    memset(mean, 0, (size_t)K * sizeof *mean);
    old = gsl_set_error_handler_off();
    /* the prior: mean at outputs 0..K-1, covariance after; each child after it (c->w holds K*K numbers) */
    for (k = 0; k < K * K; k++) Sg[k] = c->S[2 * (K + k)];
    for (k = 0; k < K; k++) y[k] = c->S[2 * k];
    if (!add_gaussian(L, mean, Sg, y, K, A)) {
        gsl_set_error_handler(old);
        return plm_fail(ctx, PLM_EDOM, "gibbs: the prior of '%s' (mvnormal) has a covariance that is not positive definite",
                        s->name);
    }
    o = K + K * K;
    for (ch = 0; ch < up->nchild && ok; ch++) {
        if (up->cfam[ch] == CHILD_MVNORMAL) {
            for (k = 0; k < K * K; k++) Sg[k] = c->S[2 * (o + k)];
            for (k = 0; k < K; k++) y[k] = c->S[2 * (o + K * K + k)];
            ok = add_gaussian(L, mean, Sg, y, K, A);
            o += K * K + K;
        } else {
            double sd = c->S[2 * o], yv = c->S[2 * (o + 1)];
            k = up->cfam[ch] - CHILD_COMPONENT;
            ok = sd > 0 && isfinite(sd) && isfinite(yv);
            if (ok) L[k * K + k] += 1 / (sd * sd), mean[k] += yv / (sd * sd);
            o += 2;
        }
    }
    ok = ok && !gsl_linalg_cholesky_decomp1(&l.matrix) && !gsl_linalg_cholesky_svx(&l.matrix, &hv.vector);
    gsl_set_error_handler(old);
    if (!ok)
        return plm_fail(ctx, PLM_EDOM, "gibbs: a child of '%s' has an invalid covariance or sd (not positive definite, "
                        "or not finite)", s->name);
    return PLM_OK;
}

/* -(x - mean)' P (x - mean) / 2 with P = L L': the conditional's log density up to a constant (the value is the
** coordinate itself, no Jacobian). */
static double mvn_shape(const double *L, const double *mean, const double *x, int K)
{
    double r = 0;
    int i, j;
    for (i = 0; i < K; i++) {
        double t = 0;
        for (j = i; j < K; j++) t += L[j * K + i] * (x[j] - mean[j]);
        r += t * t;
    }
    return -0.5 * r;
}

/* An mvnormal update: mean + L'^-1 z with z standard normal, whose covariance is (L L')^-1. */
static plm_status mvn_update(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_chain *c, plm_prog_ws *ws, plm_ctx *ctx,
                             plm_rng *r, double *u, double *lp)
{
    int k, K = cfg->m->sites[up->site].dim;
    double *L = c->mv, *mean = c->mv + 2 * (size_t)K * (size_t)K, *z = mean + K;
    gsl_matrix_view l = gsl_matrix_view_array(L, (size_t)K, (size_t)K);
    gsl_vector_view zv = gsl_vector_view_array(z, (size_t)K);
    plm_status st;
    if ((st = mvn_conditional(cfg, up, c, ws, ctx, u, L, mean))) return st;
    for (k = 0; k < K; k++) z[k] = plm_rng_normal(r);
    gsl_blas_dtrsv(CblasLower, CblasTrans, CblasNonUnit, &l.matrix, &zv.vector);
    for (k = 0; k < K; k++) z[k] += mean[k];
    *lp += mvn_shape(L, mean, z, K) - mvn_shape(L, mean, u + up->coord, K);
    memcpy(u + up->coord, z, (size_t)K * sizeof *z);
    return PLM_OK;
}

static plm_status block_update(const gibbs_cfg *cfg, gibbs_chain *c, plm_prog_ws *wb, plm_ctx *ctx, plm_rng *r,
                               double *u, double *lp)
{
    long p, pick, oldp = 0, ld = cfg->maxsupport;
    int k;
    /* the product space in mixed radix, the last site fastest; the current point's index for lp */
    for (k = 0; k < cfg->nb; k++) oldp = oldp * cfg->bsize[k] + (long)u[cfg->bcoord[k]];
    for (p = 0; p < cfg->bspace; p++) {
        long q = p;
        for (k = cfg->nb - 1; k >= 0; k--) {
            c->z[(size_t)k * (size_t)ld + (size_t)p] = (double)(q % cfg->bsize[k]);
            q /= cfg->bsize[k];
        }
    }
    plm_gibbs_eval_all(wb, u, c->z, (size_t)ld, cfg->bspace, c->ow);
    if ((pick = draw_log_weights(c->w, cfg->bspace, r)) < 0)
        return plm_fail(ctx, PLM_EDOM, "block_gibbs: the joint conditional of '%s' and the rest of the block has no "
                        "point of positive finite probability", cfg->m->sites[cfg->bsites[0]].name);
    for (k = 0; k < cfg->nb; k++) u[cfg->bcoord[k]] = c->z[(size_t)k * (size_t)ld + (size_t)pick];
    if (oldp >= 0 && oldp < cfg->bspace) *lp += c->w[pick] - c->w[oldp];
    else *lp = NAN;
    return PLM_OK;
}

static plm_status gibbs_step(const plm_kernel *k, void *state, plm_ctx *ctx, const plm_target *t, void *tws, plm_rng *r,
                             double *u, double *lp, double *stat, double *extra)
{
    const gibbs_cfg *cfg = k->cfg;
    gibbs_chain *c = state;
    plm_status st = PLM_OK;
    int i;
    (void)extra;
    if (!isfinite(*lp)) *lp = NAN;   /* increments from a non-finite start mean nothing: recompute at the end */
    if (cfg->block)
        st = block_update(cfg, c, &c->wb[0], ctx, r, u, lp);
    else
        for (i = 0; i < cfg->nup && !st; i++) {
            const gibbs_update *up = &cfg->up[i];
            st = up->how == PLM_GIBBS_ENUM        ? enum_update(cfg, up, c, &c->wb[i], ctx, r, u, lp)
                 : up->how == PLM_GIBBS_DIRICHLET ? dir_update(cfg, up, c, &c->ws[i], ctx, r, u, lp)
                 : up->how == PLM_GIBBS_MVNORMAL  ? mvn_update(cfg, up, c, &c->ws[i], ctx, r, u, lp)
                                                  : conj_update(cfg, up, c, &c->ws[i], ctx, r, u, lp);
        }
    if (st) return st;
    if (isnan(*lp)) *lp = plm_target_logp(t, tws, u);
    if (isnan(*lp)) return plm_fail(ctx, PLM_EDOM, "gibbs: the log density is NaN after the update");
    *stat = 1;
    return PLM_OK;
}

static const plm_kernel_ops gibbs_ops = {"gibbs", 0, NULL, chain_new, chain_free, gibbs_step, NULL};
static const plm_kernel_ops block_ops = {"block_gibbs", 0, NULL, chain_new, chain_free, gibbs_step, NULL};

/* Compile outputs outs of the model's graph through a copy holding only the nodes they read, with the
** coordinates move[0..nmove-1] as inputs of group Z (varying) and the rest uniform. Compiling reads the
** whole graph it is given, and a model has one small update per site. */
plm_status plm_gibbs_compile_small(plm_ctx *ctx, const plm_graph *g, int nout, const int *outs, int nmove,
                                   const int *move, plm_prog **out)
{
    plm_graph *h;
    int *so = malloc(((size_t)nout + 1) * sizeof *so);
    plm_status st;
    if (!so) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    st = plm_graph_extract(ctx, g, nout, outs, nmove, move, PLM_GRP_Z, &h, so);
    if (!st) st = plm_prog_compile(ctx, h, nout, so, 1u << PLM_GRP_Z, out);
    free(so);
    return st;
}

/* The blanket program of the sites sites[0..n-1] (their coordinates in group Z): output 0 the sum of their
** terms and their children's, each term once; output 1 the node `extra` when it is >= 0 (binomial n). */
static plm_status blanket_prog(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, int *scratch, char *seen,
                               int extra, plm_prog **out)
{
    plm_graph *h;
    int i, k, nc, nt = 0, sum, outs[2], move[64];
    plm_status st;
    if (n > 64) return plm_fail(ctx, PLM_EINVAL, "gibbs: a block of more than 64 sites");
    memset(seen, 0, (size_t)m->n + 1);
    for (i = 0; i < n; i++) {
        seen[sites[i]] = 1;
        move[i] = m->sites[sites[i]].first;
        nc = plm_gibbs_children(m, sites[i], scratch);
        for (k = 0; k < nc; k++) seen[scratch[k]] = 1;
    }
    for (i = 0; i < m->n; i++)
        if (seen[i] && m->sites[i].logp >= 0) scratch[nt++] = m->sites[i].logp;
    if (extra >= 0) scratch[nt++] = extra;
    /* the terms are copied out of the model's graph, and summed in the copy */
    if ((st = plm_graph_extract(ctx, m->g, nt, scratch, n, move, PLM_GRP_Z, &h, scratch))) return st;
    sum = plm_graph_const(h, 0);
    for (i = 0; i < nt - (extra >= 0); i++) sum = plm_graph_op(h, PLM_OP_ADD, sum, scratch[i], -1);
    if (sum < 0) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    outs[0] = sum;
    outs[1] = extra >= 0 ? scratch[nt - 1] : sum;
    return plm_prog_compile(ctx, h, 2, outs, 1u << PLM_GRP_Z, out);
}

plm_status plm_gibbs_check_site(plm_ctx *ctx, const plm_gmodel *m, int s, const char *fn)
{
    if (!m->finished) return plm_fail(ctx, PLM_EINVAL, "%s: the model is not finished", fn);
    if (s < 0 || s >= m->n) return plm_fail(ctx, PLM_EINVAL, "%s: no site number %d (the model has %d sites)", fn, s + 1, m->n);
    if (m->sites[s].kind != PLM_GSITE_LATENT)
        return plm_fail(ctx, PLM_EINVAL, "%s: site '%s' is %s, not latent: nothing to update", fn, m->sites[s].name,
                        plm_gsite_kind_name(m->sites[s].kind));
    return PLM_OK;
}

plm_status plm_kernel_gibbs(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out)
{
    gibbs_cfg *cfg;
    plm_kernel *k;
    int i, *scratch = NULL, *ch = NULL;
    char *seen = NULL;
    plm_status st = PLM_OK;
    *out = NULL;
    if (nsites < 1) return plm_fail(ctx, PLM_EINVAL, "gibbs: no sites to update");
    for (i = 0; i < nsites; i++)
        if ((st = plm_gibbs_check_site(ctx, m, sites[i], "gibbs"))) return st;
    cfg = plm_gc_alloc(sizeof *cfg);
    k = plm_gc_alloc(sizeof *k);
    if (!cfg || !k || !(cfg->up = plm_gc_alloc((size_t)nsites * sizeof *cfg->up)))
        return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    scratch = malloc(((size_t)m->n + 1) * sizeof *scratch);
    ch = malloc(((size_t)m->n + 1) * sizeof *ch);
    seen = malloc((size_t)m->n + 1);
    if (!scratch || !ch || !seen) {
        st = plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
        goto done;
    }
    cfg->m = m;
    cfg->nup = nsites;
    cfg->maxsupport = 2;
    for (i = 0; i < nsites && !st; i++) {
        gibbs_update *up = &cfg->up[i];
        const plm_gsite *s = &m->sites[sites[i]];
        int how, *stats, nstats, *cfam, nchild, nc = plm_gibbs_children(m, sites[i], ch);
        char why[200];
        if ((st = plm_gibbs_find(ctx, m, sites[i], ch, nc, &how, &stats, &nstats, &cfam, &nchild, why, sizeof why))) break;
        if (how == PLM_GIBBS_NONE) {
            st = plm_fail(ctx, PLM_ENOTSUP, "gibbs: site '%s' has no exact conditional: %s", s->name, why);
            break;
        }
        up->site = sites[i], up->how = how, up->coord = s->first;
        up->cfam = cfam, up->nchild = nchild, up->nstats = nstats;
        if (how == PLM_GIBBS_ENUM) {
            up->support = s->dist == PLM_DIST_BINOMIAL ? 0 : s->dist == PLM_DIST_BERNOULLI ? 2 : s->K;
            if (s->dist == PLM_DIST_BINOMIAL) {
                double n;
                up->support = 0;
                if (plm_graph_is_const(m->g, s->params[0], &n) && n + 1 > cfg->maxsupport && n < PLM_GIBBS_MAX_SUPPORT)
                    cfg->maxsupport = (int)n + 1;
                else if (!plm_graph_is_const(m->g, s->params[0], &n))
                    cfg->maxsupport = PLM_GIBBS_MAX_SUPPORT;
            } else if (up->support > cfg->maxsupport)
                cfg->maxsupport = up->support;
        } else if (how == PLM_GIBBS_DIRICHLET || how == PLM_GIBBS_MVNORMAL) {
            /* all K coordinates vary in the statistics program; the chain's w and aux hold K numbers each */
            int k, *move = plm_gc_alloc_atomic((size_t)s->dim * sizeof *move);
            if (!move) {
                st = plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
                break;
            }
            for (k = 0; k < s->dim; k++) move[k] = s->first + k;
            if (nstats > cfg->maxstats) cfg->maxstats = nstats;
            if (s->dim > cfg->maxsupport) cfg->maxsupport = s->dim;
            if (how == PLM_GIBBS_MVNORMAL && s->dim * s->dim > cfg->maxsupport) cfg->maxsupport = s->dim * s->dim;
            if (how == PLM_GIBBS_MVNORMAL && s->dim > cfg->maxK) cfg->maxK = s->dim;
            if ((st = plm_gibbs_compile_small(ctx, m->g, nstats, stats, s->dim, move, &up->stats))) break;
        } else {
            if (nstats > cfg->maxstats) cfg->maxstats = nstats;
            if ((st = plm_gibbs_compile_small(ctx, m->g, nstats, stats, 1, &s->first, &up->stats))) break;
        }
        if (how == PLM_GIBBS_ENUM)   /* conjugate updates need no blanket: the conditional's shape gives lp */
            st = blanket_prog(ctx, m, &sites[i], 1, scratch, seen, s->dist == PLM_DIST_BINOMIAL ? s->params[0] : -1,
                              &up->blanket);
    }
    if (st) goto done;
    k->ops = &gibbs_ops;
    k->cfg = cfg;
    *out = k;
done:
    free(scratch), free(ch), free(seen);
    return st;
}

plm_status plm_kernel_block_gibbs(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out)
{
    gibbs_cfg *cfg;
    plm_kernel *k;
    int i, j, *scratch, *ch;
    char *seen;
    double space = 1;
    plm_status st;
    *out = NULL;
    if (nsites < 1) return plm_fail(ctx, PLM_EINVAL, "block_gibbs: no sites to update");
    cfg = plm_gc_alloc(sizeof *cfg);
    k = plm_gc_alloc(sizeof *k);
    if (!cfg || !k || !(cfg->up = plm_gc_alloc(sizeof *cfg->up)) || !(cfg->bsites = plm_gc_alloc_atomic((size_t)nsites * sizeof(int))) ||
        !(cfg->bcoord = plm_gc_alloc_atomic((size_t)nsites * sizeof(int))) ||
        !(cfg->bsize = plm_gc_alloc_atomic((size_t)nsites * sizeof(int))))
        return plm_fail(ctx, PLM_ENOMEM, "block_gibbs: out of memory");
    for (i = 0; i < nsites; i++) {
        const plm_gsite *s;
        double n = 0;
        if ((st = plm_gibbs_check_site(ctx, m, sites[i], "block_gibbs"))) return st;
        s = &m->sites[sites[i]];
        for (j = 0; j < i; j++)
            if (sites[j] == sites[i]) return plm_fail(ctx, PLM_EINVAL, "block_gibbs: site '%s' is listed twice", s->name);
        if (!s->discrete || (s->dist != PLM_DIST_BERNOULLI && s->dist != PLM_DIST_CATEGORICAL &&
                             !(s->dist == PLM_DIST_BINOMIAL && plm_graph_is_const(m->g, s->params[0], &n))))
            return plm_fail(ctx, PLM_EINVAL, "block_gibbs: site '%s' (%s) is not finite discrete (bernoulli, categorical, "
                            "binomial with a constant n)", s->name, plm_dist_info_of((plm_dist_kind)s->dist)->name);
        cfg->bsites[i] = sites[i];
        cfg->bcoord[i] = s->first;
        cfg->bsize[i] = s->dist == PLM_DIST_BERNOULLI ? 2 : s->dist == PLM_DIST_CATEGORICAL ? s->K : (int)fmin(n + 1, 1e9);
        space *= cfg->bsize[i];
        if (space > PLM_GIBBS_MAX_BLOCK)
            return plm_fail(ctx, PLM_EINVAL, "block_gibbs: the joint support of the block has more than %d points (at "
                            "site '%s'): split the block", PLM_GIBBS_MAX_BLOCK, s->name);
    }
    scratch = malloc(((size_t)m->n + 1) * sizeof *scratch);
    ch = malloc(((size_t)m->n + 1) * sizeof *ch);
    seen = malloc((size_t)m->n + 1);
    if (!scratch || !ch || !seen) {
        free(scratch), free(ch), free(seen);
        return plm_fail(ctx, PLM_ENOMEM, "block_gibbs: out of memory");
    }
    cfg->m = m;
    cfg->block = 1;
    cfg->nb = nsites;
    cfg->bspace = (long)space;
    cfg->nup = 1;
    cfg->maxsupport = (int)space;
    cfg->maxstats = nsites;
    cfg->up[0].site = sites[0];
    cfg->up[0].how = PLM_GIBBS_ENUM;
    st = blanket_prog(ctx, m, sites, nsites, scratch, seen, -1, &cfg->up[0].blanket);
    free(scratch), free(ch), free(seen);
    if (st) return st;
    k->ops = &block_ops;
    k->cfg = cfg;
    *out = k;
    return PLM_OK;
}


plm_status plm_gibbs_conditional(plm_ctx *ctx, const plm_kernel *k, int i, const double *u, double *out, int cap, int *n)
{
    const gibbs_cfg *cfg;
    gibbs_chain *c;
    const gibbs_update *up;
    plm_status st = PLM_OK;
    double *v;
    long npts, j;
    *n = 0;
    if (plm_gibbs_is_gaussian_block(k)) return plm_gibbs_gaussian_conditional(ctx, k, i, u, out, cap, n);
    if (k->ops != &gibbs_ops && k->ops != &block_ops) return plm_fail(ctx, PLM_EINVAL, "gibbs: not a Gibbs kernel");
    cfg = k->cfg;
    if (i < 0 || i >= cfg->nup) return plm_fail(ctx, PLM_EINVAL, "gibbs: no update %d (the kernel has %d)", i, cfg->nup);
    up = &cfg->up[i];
    if (!(c = chain_new(k, NULL))) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    if (!(v = malloc((size_t)cfg->m->dim * sizeof *v))) {
        chain_free(c);
        return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    }
    memcpy(v, u, (size_t)cfg->m->dim * sizeof *v);
    if (up->how == PLM_GIBBS_MVNORMAL) {
        int K = cfg->m->sites[up->site].dim;
        double *L = c->mv;
        gsl_matrix_view l = gsl_matrix_view_array(L, (size_t)K, (size_t)K);
        if (cap < K + K * K) st = plm_fail(ctx, PLM_EINVAL, "gibbs: out needs %d doubles", K + K * K);
        else if (!(st = mvn_conditional(cfg, up, c, &c->ws[i], ctx, v, L, out))) {
            gsl_linalg_cholesky_invert(&l.matrix);
            memcpy(out + K, L, (size_t)K * (size_t)K * sizeof *L);
            *n = K + K * K;
        }
        goto done;
    }
    if (up->how == PLM_GIBBS_DIRICHLET) {
        int K = cfg->m->sites[up->site].dim;
        if (cap < K) st = plm_fail(ctx, PLM_EINVAL, "gibbs: out needs %d doubles", K);
        else if (!(st = dir_params(cfg, up, c, &c->ws[i], ctx, v, out))) *n = K;
        goto done;
    }
    if (up->how != PLM_GIBBS_ENUM) {
        if (cap < 2) st = plm_fail(ctx, PLM_EINVAL, "gibbs: out needs 2 doubles");
        else if (!(st = conj_params(cfg, up, c, &c->ws[i], ctx, v, out))) *n = 2;
        goto done;
    }
    if (cfg->block) {
        for (j = 0; j < cfg->bspace; j++) {
            long q = j;
            int b;
            for (b = cfg->nb - 1; b >= 0; b--) {
                c->z[(size_t)b * (size_t)cfg->maxsupport + (size_t)j] = (double)(q % cfg->bsize[b]);
                q /= cfg->bsize[b];
            }
        }
        npts = cfg->bspace;
    } else if (!(npts = up->support)) {
        eval_points(&c->wb[i], v, c->z, (size_t)cfg->maxsupport, 0, 1, c->ow, 1);
        npts = (long)c->aux[0] + 1;
    }
    if (npts > cap) {
        st = plm_fail(ctx, PLM_EINVAL, "gibbs: the conditional has %ld points, out holds %d", npts, cap);
        goto done;
    }
    plm_gibbs_eval_all(&c->wb[i], v, c->z, (size_t)cfg->maxsupport, npts, c->ow);
    memcpy(out, c->w, (size_t)npts * sizeof *out);
    *n = (int)npts;
done:
    free(v);
    chain_free(c);
    return st;
}
