/* bffg_mcmc.c -- pCN MCMC over the innovations of the guided process, with random-walk Metropolis updates of
** diffusion parameters that recompute the backward filter (van der Meulen and Schauer, "Automatic Backward
** Filtering Forward Guiding ..."; the scheme of BridgeSDEInference.jl). See plm_bffg_mcmc in bffg.h.
**
** Why it is exact: a guided draw is a deterministic function x(theta, Z) of innovations Z ~ N(0, I), and its
** total log weight logw(theta, Z) = log p(x, y | theta) - log q(x | theta) has E_Z exp(logw) = p(y | theta). So
** pi(theta, Z) = p(theta) N(Z; 0, I) exp(logw(theta, Z)) has the posterior as its theta-marginal and, mapped
** through x(theta, Z), the posterior of the path. The pCN move Z' = rho Z + sqrt(1 - rho^2) W is reversible with
** respect to N(0, I), so its acceptance ratio is exp(logw(Z') - logw(Z)); a parameter move keeps Z and its
** ratio is the likelihood-estimate ratio times the prior and Jacobian ratio on the unconstrained scale.
**
** With fixed_aux the auxiliary's B~ and a~ are those of the linearisation at some theta_a and only its intercept
** beta~ follows theta: the auxiliary is still a function of theta alone, so the argument above holds unchanged,
** and the backward filter at theta' is read off a cache made at theta_a (plm_bffg_kernel_sde_remake, how 2: H(t)
** does not change, F(t) and c are affine and quadratic in the intercept), no square root or factorisation per
** step. theta_a moves to the current theta at a few warm-up iterations only (a change of the target's
** parametrisation, allowed while the draws are discarded). */
#include "bffg_dag.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "bffg_reaction.h"
#include "dist.h"
#include "expr_native.h"
#include "par.h"
#include "vmath.h"

/* ---- the models and filters of parameter moves ---------------------------------------------------------- */

plm_status plm_bffg_model_with(plm_ctx *ctx, const plm_bffg_model *m, const void *owner, const double *params, int how,
                               plm_bffg_model **out)
{
    plm_bffg_model *c = plm_gc_alloc(sizeof *c);
    node *nn = plm_gc_alloc((size_t)(m->n ? m->n : 1) * sizeof *nn);
    /* the owner's diffusion kernels, remade together (plm_bffg_kernels_sde_remake); collector memory: it holds
    ** collector objects */
    const plm_bffg_kernel **ks = plm_gc_alloc((size_t)(m->n ? m->n : 1) * sizeof *ks);
    plm_bffg_kernel **made = plm_gc_alloc((size_t)(m->n ? m->n : 1) * sizeof *made);
    plm_status st;
    int i, nk = 0;
    if (!c || !nn || !ks || !made) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    *c = *m;
    memcpy(nn, m->nodes, (size_t)m->n * sizeof *nn);
    c->nodes = nn, c->cap = m->n ? m->n : 1;
    for (i = 0; i < m->n; i++)
        if ((const void *)plm_bffg_kernel_sde_of(m->nodes[i].k) == owner) ks[nk++] = m->nodes[i].k;
        else if ((const void *)plm_bffg_kernel_reaction_of(m->nodes[i].k) == owner) {
            plm_bffg_kernel *k;
            if ((st = plm_bffg_kernel_reaction_with(ctx, m->nodes[i].k, params, &k))) return st;
            c->nodes[i].k = k;
        }
    if (nk && (st = plm_bffg_kernels_sde_remake(ctx, ks, nk, params, how, made))) return st;
    for (i = 0, nk = 0; i < m->n; i++)
        if ((const void *)plm_bffg_kernel_sde_of(m->nodes[i].k) == owner) c->nodes[i].k = made[nk++];
    plm_gc_free(ks);
    plm_gc_free(made);
    *out = c;
    return PLM_OK;
}

void plm_bffg_filter_discard(plm_bffg_filter *f)
{
    const plm_bffg_model *m = f->m;
    for (int i = 0; i < m->n; i++) {
        const plm_bffg_kernel *k = m->nodes[i].k;
        if (f->guide[i] && k->ops->guide_free) k->ops->guide_free(k, f->guide[i]);
        f->guide[i] = NULL;
    }
    plm_gc_free(f->mem);   /* the guides' grid storage (guide_at) */
    f->mem = NULL;
}

void plm_bffg_filter_release(plm_bffg_filter *f)
{
    if (f) plm_bffg_filter_free(f, NULL);
}

void plm_bffg_filter_free(plm_bffg_filter *f, const plm_bffg_model *base)
{
    plm_bffg_filter_free_to(f, base, NULL);
}

void plm_bffg_filter_free_to(plm_bffg_filter *f, const plm_bffg_model *base, plm_bffg_spare *spare)
{
    const plm_bffg_model *m = f->m;
    int i;
    if (spare && !spare->mem && f->mem) spare->mem = f->mem, spare->nmem = f->nmem, f->mem = NULL;
    if (spare && !spare->msgs && f->msgs) spare->msgs = f->msgs, spare->nmsgs = f->nmsgs, f->msgs = NULL;
    plm_bffg_filter_discard(f);
    for (i = 0; i < m->n; i++)
        if (f->values[i] != m->nodes[i].value) plm_gc_free((void *)f->values[i]);
    plm_gc_free(f->msgs);   /* every message (bffg.c, msg_arena) */
    plm_gc_free(f);   /* with its tables (plm_bffg_backward) */
    if (!base || m == base) return;
    for (i = 0; i < m->n; i++)
        if (m->nodes[i].k != base->nodes[i].k) plm_bffg_kernel_sde_free((plm_bffg_kernel *)m->nodes[i].k);
    plm_gc_free(m->nodes);
    plm_gc_free((void *)m);
}

/* ---- the chains ---------------------------------------------------------------------------------------- */

typedef struct chain_job {
    const plm_bffg_model *m;
    const double *const *values;
    const plm_bffg_mcmc_opts *o;
    const plm_bffg_filter *f0;   /* the filter at the initial parameters, shared */
    const plm_bffg_model *ma;    /* fixed_aux: the model at the initial parameters whose kernels keep their caches */
    const double *theta0;        /* the sde's full parameter vector at the start */
    double *draws, *loglik, *stats;
    plm_ctx *ctxs;               /* one per chain */
    plm_prog **conj_prog;        /* per block: its conjugate update's program, or NULL */
    pthread_mutex_t emit_lock;   /* serialises o->emit */
    volatile int stop;
} chain_job;

/* x = T(e) for a prior with support (lo, hi); returns log |dx/de|. */
static double to_constrained(double e, double lo, double hi, double *x)
{
    if (isinf(lo) && isinf(hi)) {
        *x = e;
        return 0;
    }
    if (isinf(hi)) {
        *x = lo + exp(e);
        return e;
    }
    if (isinf(lo)) {
        *x = hi - exp(e);
        return e;
    }
    {
        double s = 1 / (1 + exp(-e));
        *x = lo + (hi - lo) * s;
        return log(hi - lo) + log(s) + log1p(-s);
    }
}

static double to_free(double x, double lo, double hi)
{
    if (isinf(lo) && isinf(hi)) return x;
    if (isinf(hi)) return log(x - lo);
    if (isinf(lo)) return log(hi - x);
    return log((x - lo) / (hi - x));
}

/* log prior + log Jacobian of the free parameters e (theta receives the constrained values). */
static double log_target_theta(const plm_bffg_mcmc_opts *o, const double *e, double *theta)
{
    double lp = 0;
    for (int j = 0; j < o->nparams; j++) {
        double lo, hi, x;
        plm_dist_bounds(o->prior[j], &lo, &hi);
        lp += to_constrained(e[j], lo, hi, &x);
        theta[j] = x;
        lp += plm_dist_logpdf(o->prior[j], &x);
    }
    return lp;
}

/* The filter of the model at parameters theta (nparams values placed into the full vector full). A failure of
** the kernels or of the filter at these parameters (a degenerate auxiliary, impossible observations) is a
** rejection, returned as NULL with the reason in ctx; PLM_ENOMEM and PLM_EINTR are errors (*fatal set). */
static plm_bffg_filter *filter_at(plm_ctx *ctx, const chain_job *J, const double *theta, double *full, int how,
                                        const plm_bffg_model *base, const plm_bffg_model **model, plm_bffg_spare *sp,
                                        int *fatal)
{
    const plm_bffg_mcmc_opts *o = J->o;
    plm_bffg_model *mt;
    plm_bffg_filter *f;
    plm_status st;
    for (int j = 0; j < o->nparams; j++) full[o->index[j]] = theta[j];
    if ((st = plm_bffg_model_with(ctx, base ? base : J->m, plm_bffg_mcmc_owner(o, NULL, NULL), full, how, &mt)) ||
        (st = plm_bffg_backward_reuse(ctx, mt, J->values, sp, &f))) {
        *fatal = st == PLM_ENOMEM || st == PLM_EINTR;
        return NULL;
    }
    if (model) *model = mt;
    return f;
}

/* The block of parameter j (one block when o->block is NULL). */
#define BLOCK(o, j) ((o)->block ? (o)->block[j] : 0)

/* Block b's proposal: e2 = e with the block's free parameters moved by exp(lstep) L xi (L: np x np, the blocks'
** lower Cholesky factors, zero across blocks; the identity until warm-up has adapted it); theta2 receives the
** constrained values; returns the log prior and Jacobian at e2. */
static double propose(const plm_bffg_mcmc_opts *o, int b, const double *e, const double *xi, double lstep, const double *L,
                      double *e2, double *theta2)
{
    int np = o->nparams;
    for (int j = 0; j < np; j++) {
        double acc = 0;
        if (BLOCK(o, j) != b) {
            e2[j] = e[j];
            continue;
        }
        for (int k = 0; k <= j; k++)
            if (BLOCK(o, k) == b) acc += L[j * np + k] * xi[k];
        e2[j] = e[j] + exp(lstep) * acc;
    }
    return log_target_theta(o, e2, theta2);
}

/* ---- the random walk's shape (adapt_cov) ---------------------------------------------------------------- */

/* An isotropic random walk crawls along a ridge of the posterior (two drift parameters of which the data fix
** mostly a combination, as FitzHugh-Nagumo's gamma and beta), however its step is tuned.
** With adapt_cov each block's proposal takes the shape of the free parameters' covariance in warm-up: Welford
** sums over windows of 25, 50, 100, ... iterations from 15% to 85% of warm-up (the first 15% the chain is still
** on its way; the last 15% tunes the step alone, for the kernel it will keep), the covariance shrunk toward
** 1e-3 I for short windows as Stan shrinks its metric, and L its Cholesky factor scaled to determinant 1: L is
** the shape, exp(lstep) (adapted to the acceptance target as before) the size. Warm-up only: the kept chain's
** kernel is fixed, so the target is exact. */
typedef struct rw_shape {
    double *L, *mean, *m2;   /* np x np, np, np x np (entries within blocks only) */
    double wn;               /* draws in the window */
    size_t wstart, wlen, lo, hi;   /* the window's first iteration and length; the adaptation's span [lo, hi) */
} rw_shape;

static void shape_init(rw_shape *S, double *mem, int np, size_t warmup)
{
    S->L = mem, S->mean = mem + np * np, S->m2 = S->mean + np;
    memset(mem, 0, (size_t)(2 * np * np + np) * sizeof *mem);
    for (int j = 0; j < np; j++) S->L[j * np + j] = 1;
    S->wn = 0;
    S->lo = warmup * 15 / 100, S->hi = warmup * 85 / 100;
    S->wstart = S->lo, S->wlen = 25;
}

/* Warm-up iteration it ended at e: one more draw for the window, and at its end the new shape of each block that
** moves by a random walk (walks[b]). */
static void shape_observe(rw_shape *S, const plm_bffg_mcmc_opts *o, const int *walks, int nb, size_t it, const double *e)
{
    int np = o->nparams, j, k, b;
    double dn;
    if (it < S->lo || it >= S->hi) return;
    dn = (S->wn += 1);
    for (j = 0; j < np; j++) {   /* Welford: m2 += (e - mean_old)(e - mean_new)' */
        double dj = e[j] - S->mean[j];
        S->mean[j] += dj / dn;
        for (k = 0; k <= j; k++)
            if (BLOCK(o, k) == BLOCK(o, j)) S->m2[j * np + k] += dj * (e[k] - S->mean[k]);
    }
    if (!(it + 1 - S->wstart >= S->wlen || it + 1 == S->hi) || dn < 10) return;
    for (b = 0; b < nb; b++) {
        double C[64], ld, w = dn / (dn + 5), f;
        int idx[9], db = 0;
        if (!walks[b]) continue;
        for (j = 0; j < np && db < 9; j++)
            if (BLOCK(o, j) == b) idx[db++] = j;
        if (db == 0 || db > 8) continue;   /* (larger blocks keep their scalar step) */
        for (j = 0; j < db; j++) {
            for (k = 0; k < db; k++) {
                int hi = idx[j] > idx[k] ? idx[j] : idx[k], lo = idx[j] > idx[k] ? idx[k] : idx[j];
                C[j * db + k] = w * S->m2[hi * np + lo] / (dn - 1) + (j == k ? 1e-3 * (1 - w) : 0);
            }
        }
        if (plm_bffg_chol_lower(C, db, &ld) != 0 || !isfinite(ld)) continue;   /* (the old shape kept) */
        f = exp(-ld / db);
        for (j = 0; j < db; j++)
            for (k = 0; k < db; k++) S->L[idx[j] * np + idx[k]] = f * C[j * db + k];
    }
    memset(S->mean, 0, (size_t)np * sizeof *S->mean);
    memset(S->m2, 0, (size_t)np * np * sizeof *S->m2);
    S->wn = 0, S->wstart = it + 1, S->wlen *= 2;
}

/* The conjugate update of block b (bffg_conj.c): the block's Gaussian conditional given the kept path, times its
** normal priors, proposes theta2 (the block's normals xi, its uniform u), accepted with the exact ratio of the target in
** the path's coordinates. On acceptance returns 1 with the new filter in *fp, its innovations in z2, its draw in row2
** and log weight in *ll2; 0 when rejected, -1 on an error (in ctx), and then a filter left in *fp is the caller's to
** free. */
static int conj_move(chain_job *J, plm_ctx *ctx, plm_bffg_conj *C, int b, const plm_bffg_filter *f, const double *z,
                     const double *theta, const double *xi, double u, double *theta2, double *full, double *z2, double *row2,
                     double *work, const plm_bffg_model *ma, plm_bffg_spare *sp, plm_bffg_filter **fp, double *ll2)
{
    const plm_bffg_mcmc_opts *o = J->o;
    double P[16], mv[4], mu[4], dv[4], ell, ell2, ldet, lr = 0;
    int jj, kk, j, nb = 0, sel[4], fatal = 0;
    *fp = NULL;
    for (j = 0; j < o->nparams; j++)
        if (BLOCK(o, j) == b) sel[nb++] = j;
    if (plm_bffg_conj_keep(ctx, C, f, z, P, mv, &ell)) return -1;
    if (!isfinite(ell)) return 0;
    for (jj = 0; jj < nb; jj++) {   /* a normal prior is conjugate: its precision and precision times mean */
        const plm_dist *d = o->prior[sel[jj]];
        if (d->kind == PLM_DIST_NORMAL) {
            P[jj * nb + jj] += 1 / (d->p[1] * d->p[1]);
            mv[jj] += d->p[0] / (d->p[1] * d->p[1]);
        }
    }
    /* P = L L' by Cholesky; mu = P^-1 mv; theta2 = mu + L^-T xi */
    if (plm_bffg_chol_lower(P, nb, &ldet) || !isfinite(ldet)) {
        plm_fail(ctx, PLM_EDOM, "bffg mcmc: conjugate update: the block's conditional given the path is not a proper "
                                "Gaussian (a parameter the path does not inform, with a prior that is not normal?)");
        return -1;
    }
    memcpy(mu, mv, (size_t)nb * sizeof *mu);
    plm_bffg_solve_lower(P, nb, mu, 1);
    plm_bffg_solve_lower_t(P, nb, mu);
    for (jj = 0; jj < nb; jj++) dv[jj] = xi[sel[jj]];
    plm_bffg_solve_lower_t(P, nb, dv);   /* L^-T xi */
    /* log q(theta) - log q(theta2) = |xi|^2 / 2 - |L'(theta - mu)|^2 / 2 */
    for (jj = 0; jj < nb; jj++) {
        double acc = 0;
        for (kk = jj; kk < nb; kk++) acc += P[kk * nb + jj] * (theta[sel[kk]] - mu[kk]);
        lr += 0.5 * xi[sel[jj]] * xi[sel[jj]] - 0.5 * acc * acc;
    }
    memcpy(theta2, theta, (size_t)o->nparams * sizeof *theta2);
    for (jj = 0; jj < nb; jj++) {
        double lo, hi, x = theta2[sel[jj]] = mu[jj] + dv[jj];
        plm_dist_bounds(o->prior[sel[jj]], &lo, &hi);
        if (!(x > lo && x < hi)) return 0;
        lr += plm_dist_logpdf(o->prior[sel[jj]], &x) - plm_dist_logpdf(o->prior[sel[jj]], &theta[sel[jj]]);
    }
    if (!isfinite(lr)) return 0;
    if (!(*fp = filter_at(ctx, J, theta2, full, o->fixed_aux ? 2 : 0, ma, NULL, sp, &fatal))) return fatal ? -1 : 0;
    ell2 = plm_bffg_conj_innov(C, f, *fp, z, z2);
    if (!(u < exp(ell2 - ell + lr))) return 0;   /* (NaN: rejected) */
    *ll2 = plm_bffg_draw_z(*fp, z2, row2, work);
    /* the innovations found draw the kept path again (up to rounding), or the move is dropped */
    return isfinite(*ll2) && plm_bffg_conj_same(C, row2);
}

static void run_chain(chain_job *J, int c)
{
    const plm_bffg_mcmc_opts *o = J->o;
    plm_ctx *ctx = &J->ctxs[c];
    const plm_bffg_model *m = J->m;
    const plm_bffg_filter *f = J->f0, *f2;
    plm_bffg_filter *fp, *own = NULL;   /* a parameter proposal's filter; f when this chain made it in such a move */
    const plm_bffg_model *ma = J->ma;   /* fixed_aux: the model whose kernels hold the frozen caches */
    const plm_bffg_model *pbase = m;    /* the model the parameter moves' models are remade from */
    size_t nz = plm_bffg_nz(m), width = plm_bffg_draw_width(m), np = (size_t)o->nparams, it, total = o->warmup + o->iters;
    size_t rowlen = np + width, l, acc_z = 0, acc_t = 0, acc_c = 0, work_n;
    double *z, *z2, *z3, *w, *row, *row2, *row3, *work, *work3, *theta, *theta2, *e, *e2, *full, ll, ll2, ll3 = NAN, lt, lt2;
    double lrho = log(o->rho / (1 - o->rho)), *lstep, *xi, *u2;   /* per block: log step, uniform; xi: per parameter */
    double *xw, *uw;   /* a conjugate block's random walk after it (conjugate 2): per parameter, per block */
    int j, b, fatal = 0, nall, nb = o->block && o->nblocks > 0 ? o->nblocks : 1, nconj = 0, nwalk = 0, *walks;
    rw_shape S;   /* the random walks' shape (adapt_cov) */
    plm_bffg_spare spare = {NULL, 0, NULL, 0};   /* a dropped filter's storage, for the next one */
    plm_bffg_conj **conj;   /* per block: its conjugate update's state, or NULL (a random walk); collector memory */
    plm_rng r, zr[4];   /* zr: the pCN moves' fresh innovations, four streams in turn (plm_vnormal_fill) */
    plm_bffg_mcmc_owner(o, &nall, NULL);   /* the parameters' owner: the sde or the reaction network */
    plm_rng_init(&r, o->seed, (uint64_t)c);
    for (j = 0; j < 4; j++) plm_rng_init(&zr[j], o->seed, ((uint64_t)1 << 40) + 4 * (uint64_t)c + (uint64_t)j);
    work_n = plm_bffg_filter_work(f) + 64;
    z = plm_gc_alloc_atomic((4 * nz + 3 * width + 6 * np + 3 * (size_t)nb + (size_t)nall + 2) * sizeof *z);
    work = plm_gc_alloc_atomic(work_n * 8 * sizeof *work);   /* work3: the parameter proposal's draw */
    if (!z || !work) {
        plm_fail(ctx, PLM_ENOMEM, "bffg mcmc: out of memory");
        return;
    }
    if (!(conj = plm_gc_alloc((size_t)nb * sizeof *conj)) || !(walks = plm_gc_alloc_atomic((size_t)nb * sizeof *walks)) ||
        !(S.L = plm_gc_alloc_atomic((2 * np * np + np + 1) * sizeof *S.L))) {
        plm_fail(ctx, PLM_ENOMEM, "bffg mcmc: out of memory");
        return;
    }
    work3 = work + 4 * work_n;
    z2 = z + nz, z3 = z2 + nz, w = z3 + nz, row = w + nz, row2 = row + width, row3 = row2 + width, theta = row3 + width, theta2 = theta + np, e = theta2 + np,
    e2 = e + np, xi = e2 + np, lstep = xi + np, u2 = lstep + nb, full = u2 + nb, xw = full + nall, uw = xw + np;
    for (b = 0; b < nb; b++) lstep[b] = log(o->step);
    if (J->theta0) memcpy(full, J->theta0, (size_t)nall * sizeof *full);
    for (j = 0; j < (int)np; j++) {
        double lo, hi;
        plm_dist_bounds(o->prior[j], &lo, &hi);
        e[j] = to_free(J->theta0[o->index[j]], lo, hi);
    }
    lt = log_target_theta(o, e, theta);
    for (b = 0; b < nb; b++) {   /* the conjugate blocks' states */
        int sel[4], nsel = 0;
        const char *nm[4];
        conj[b] = NULL;
        if (!o->conjugate || !o->conjugate[b] || np == 0) continue;
        for (j = 0; j < (int)np; j++)   /* (at most 4: plm_bffg_mcmc checked) */
            if (BLOCK(o, j) == b && nsel < 4) nm[nsel] = o->names ? o->names[j] : NULL, sel[nsel++] = o->index[j];
        if (plm_bffg_conj_new(ctx, m, f, o->sde, nsel, sel, nm, J->conj_prog[b], &conj[b])) {
            J->stop = 1;
            return;
        }
        nconj++;
        nwalk += o->conjugate[b] == 2;
    }
    shape_init(&S, S.L, (int)np, o->warmup);
    for (b = 0; b < nb; b++) walks[b] = !conj[b] || o->conjugate[b] == 2;
    /* a start with a finite weight: a few tries of fresh innovations */
    for (int tries = 0;; tries++) {
        for (l = 0; l < nz; l++) z[l] = plm_rng_normal(&r);
        ll = plm_bffg_draw_z(f, z, row, work);
        if (isfinite(ll)) break;
        if (tries == 100) {
            plm_fail(ctx, PLM_EDOM, "bffg mcmc: chain %d: no guided draw with a finite weight in 100 tries", c + 1);
            return;
        }
    }
    for (it = 0; it < total && !J->stop; it++) {
        double rho = 1 / (1 + exp(-lrho)), s = sqrt(1 - rho * rho), a;
        if ((it & 15) == 0 && plm_interrupted()) {
            J->stop = 1;
            plm_fail(ctx, PLM_EINTR, "bffg mcmc: interrupted");
            return;
        }
        int refreeze = np > 0 && o->fixed_aux && it < o->warmup && it > 0 &&
                       (it == o->warmup / 8 || it == o->warmup / 4 || it == o->warmup / 2 || it == 3 * o->warmup / 4);
        int ahead = np > 0 && !refreeze && !conj[0], path_moved = 0, lt_ok;
        double u1;
        /* Every random number of the iteration is drawn at its start: its pCN innovations from the chain's four
        ** innovation streams, then from the chain's stream the path's uniform and, block by block, the normals of
        ** its parameters' proposal and its uniform. So the first block's filter can be made first and its guided
        ** draw with the
        ** current innovations run side by side with the path proposal's draw (plm_bffg_draw_z2): that is the draw
        ** the parameter move needs whenever the path move is rejected (three times in four at the usual
        ** acceptance), and the two Euler loops overlap in the CPU where each alone waits on every step's latency.
        ** When the path move is accepted the parameter proposal is drawn again with the new innovations. The chain
        ** is the same draw for draw as with the moves in turn. */
        plm_vnormal_fill(zr, w, nz);
        for (l = 0; l < nz; l++) z2[l] = rho * z[l] + s * w[l];
        u1 = plm_rng_uniform(&r);
        for (b = 0; b < nb && np > 0; b++) {
            for (j = 0; j < (int)np; j++)
                if (BLOCK(o, j) == b) xi[j] = plm_rng_normal(&r);
            u2[b] = plm_rng_uniform(&r);
        }
        for (b = 0; b < nb && nwalk > 0; b++)   /* (after the others: chains without such blocks draw as before) */
            if (conj[b] && o->conjugate[b] == 2) {
                for (j = 0; j < (int)np; j++)
                    if (BLOCK(o, j) == b) xw[j] = plm_rng_normal(&r);
                uw[b] = plm_rng_uniform(&r);
            }
        lt2 = np > 0 && !conj[0] ? propose(o, 0, e, xi, lstep[0], S.L, e2, theta2) : 0;
        lt_ok = isfinite(lt2);
        fp = NULL;
        if (ahead && lt_ok) {
            fp = filter_at(ctx, J, theta2, full, o->fixed_aux ? 2 : 0, ma, NULL, &spare, &fatal);
            if (fatal) return;
        }
        if (fp)
            ll2 = plm_bffg_draw_z2(f, z2, row2, work, fp, z, row3, work3, &ll3);
        else
            ll2 = plm_bffg_draw_z(f, z2, row2, work);
        /* 1. the path */
        a = isnan(ll2) ? 0 : fmin(1, exp(ll2 - ll));
        if (u1 < a) {
            double *t = z;
            z = z2, z2 = t;
            t = row, row = row2, row2 = t;
            ll = ll2, path_moved = 1;
            if (it >= o->warmup) acc_z++;
        }
        if (it < o->warmup && o->target_accept > 0)
            lrho = fmin(fmax(lrho - (a - o->target_accept) / pow((double)it + 10, 0.6), -10), 10);
        /* 2. the parameters */
        if (refreeze) {
            /* move the frozen auxiliary to the current theta: the same innovations, the new guide */
            const plm_bffg_model *m2 = NULL;
            if ((f2 = filter_at(ctx, J, theta, full, 1, NULL, &m2, &spare, &fatal))) {
                ll2 = plm_bffg_draw_z(f2, z, row2, work);
                if (isfinite(ll2)) {
                    double *t = row;
                    row = row2, row2 = t;
                    if (own) plm_bffg_filter_free_to(own, ma ? ma : m, &spare);
                    f = f2, ll = ll2, ma = m2, own = NULL;   /* its guides hold the frozen caches: kept */
                }
            }
            if (fatal) return;
            plm_ctx_clear(ctx);
        }
        for (b = 0; b < nb && np > 0; b++) {
            int walk = conj[b] && o->conjugate[b] == 2;   /* a random walk of the block after its conjugate move */
            pbase = ma ? ma : m;   /* the model fp's is remade from (filter_at) */
            if (conj[b]) {
                int got = conj_move(J, ctx, conj[b], b, f, z, theta, xi, u2[b], theta2, full, z3, row3, work, ma, &spare, &fp, &ll3);
                if (got < 0) {
                    J->stop = 1;
                    return;
                }
                plm_ctx_clear(ctx);
                if (got) {
                    double *t = row;
                    row = row3, row3 = t;
                    t = z, z = z3, z3 = t;
                    memcpy(theta, theta2, np * sizeof *theta);
                    for (j = 0; j < (int)np; j++) {
                        double lo, hi;
                        plm_dist_bounds(o->prior[j], &lo, &hi);
                        e[j] = to_free(theta[j], lo, hi);
                    }
                    lt = log_target_theta(o, e, theta2);   /* (theta2: scratch; theta keeps the values fp was made at) */
                    if (own) plm_bffg_filter_free_to(own, pbase, &spare);
                    f = own = fp, ll = ll3;
                    if (it >= o->warmup) acc_t++, acc_c++;
                } else if (fp)
                    plm_bffg_filter_free_to(fp, pbase, &spare);
                if (!walk) continue;
            }
            if (b > 0 || !ahead) {   /* a later block, or the first after a move of the frozen auxiliary */
                if (b > 0 || walk) lt2 = propose(o, b, e, walk ? xw : xi, lstep[b], S.L, e2, theta2), lt_ok = isfinite(lt2);
                fp = lt_ok ? filter_at(ctx, J, theta2, full, o->fixed_aux ? 2 : 0, ma, NULL, &spare, &fatal) : NULL;
                if (fatal) return;
                if (fp) ll3 = plm_bffg_draw_z(fp, z, row3, work);
            } else if (fp && path_moved)   /* drawn ahead with the innovations the path move replaced */
                ll3 = plm_bffg_draw_z(fp, z, row3, work);
            a = 0;
            if (fp && !isnan(ll3)) a = fmin(1, exp(ll3 + lt2 - ll - lt));
            plm_ctx_clear(ctx);   /* a rejected parameter is not an error */
            if ((walk ? uw[b] : u2[b]) < a) {
                double *t = row;
                row = row3, row3 = t;
                memcpy(e, e2, np * sizeof *e);
                memcpy(theta, theta2, np * sizeof *theta);
                if (own) plm_bffg_filter_free_to(own, pbase, &spare);
                f = own = fp, ll = ll3, lt = lt2;
                if (it >= o->warmup) acc_t++;
            } else if (fp)
                plm_bffg_filter_free_to(fp, pbase, &spare);
            if (it < o->warmup && o->target_accept_theta > 0)
                lstep[b] = fmin(fmax(lstep[b] + (a - o->target_accept_theta) / pow((double)it + 10, 0.6), -12), 1);
        }
        if (it < o->warmup && o->adapt_cov && np > 1) shape_observe(&S, o, walks, nb, it, e);
        if (it >= o->warmup) {
            size_t k = (size_t)c * o->iters + (it - o->warmup);
            double *out = J->draws + k * rowlen;
            memcpy(out, theta, np * sizeof *out);
            memcpy(out + np, row, width * sizeof *out);
            if (J->loglik) J->loglik[k] = ll;
            if (o->emit) {
                int bad;
                pthread_mutex_lock(&J->emit_lock);
                bad = o->emit(o->emit_ud, c, it - o->warmup, out, rowlen, ll);
                pthread_mutex_unlock(&J->emit_lock);
                if (bad) {
                    J->stop = 1;
                    plm_fail(ctx, PLM_EIO, "bffg mcmc: chain %d: the draw %zu could not be written", c + 1, it - o->warmup + 1);
                    return;
                }
            }
        }
    }
    if (J->stats) {
        double n = o->iters ? (double)o->iters : 1;
        J->stats[5 * c] = (double)acc_z / n;
        J->stats[5 * c + 1] = np ? (double)acc_t / (n * (nb + nwalk)) : NAN;
        J->stats[5 * c + 2] = 1 / (1 + exp(-lrho));
        J->stats[5 * c + 3] = np && (!conj[0] || o->conjugate[0] == 2) ? exp(lstep[0]) : NAN;
        J->stats[5 * c + 4] = nconj ? (double)acc_c / (n * nconj) : NAN;
    }
}

static void chain_chunk(void *arg, size_t begin, size_t end, int worker)
{
    (void)worker;
    for (size_t c = begin; c < end; c++) run_chain(arg, (int)c);
}

plm_status plm_bffg_mcmc(plm_ctx *ctx, const plm_bffg_model *m, const double *const *values, const plm_bffg_mcmc_opts *o,
                         double *draws, double *loglik, double *stats)
{
    chain_job J;
    plm_bffg_filter *f0;
    double *theta0 = NULL;
    const plm_bffg_model *ma = NULL;
    plm_prog **conj_prog = NULL;
    plm_status st;
    int c, j, b, nall;
    const double *pall;
    const void *owner = plm_bffg_mcmc_owner(o, &nall, &pall);   /* the sde or the reaction network */
    if (o->chains < 1) return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: chains must be >= 1 (got %d)", o->chains);
    if (!(o->rho >= 0 && o->rho < 1)) return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: rho must be in [0, 1) (got %g)", o->rho);
    if (!(o->target_accept >= 0 && o->target_accept < 1))
        return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: target_accept must be in (0, 1), or 0 to keep rho (got %g)", o->target_accept);
    if (!(o->target_accept_theta >= 0 && o->target_accept_theta < 1))
        return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: the parameters' target acceptance must be in (0, 1) (got %g)",
                        o->target_accept_theta);
    if (o->iters < 1) return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: needs at least one iteration");
    if (!draws) return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: needs a draw buffer");
    if (o->nparams > 0) {
        if (!owner || !o->index || !o->prior)
            return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: parameters need the sde or network, their indices and their priors");
        if (!(o->step > 0 && isfinite(o->step))) return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: step must be > 0 (got %g)", o->step);
        if (o->block) {
            int b, used;
            if (o->nblocks < 1 || o->nblocks > o->nparams)
                return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: nblocks must be in 1..%d (got %d)", o->nparams, o->nblocks);
            for (j = 0; j < o->nparams; j++)
                if (o->block[j] < 0 || o->block[j] >= o->nblocks)
                    return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: parameter %d's block %d is not in 0..%d", j + 1, o->block[j],
                                    o->nblocks - 1);
            for (b = 0; b < o->nblocks; b++) {
                for (used = 0, j = 0; j < o->nparams; j++) used |= o->block[j] == b;
                if (!used) return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: block %d has no parameter", b + 1);
            }
        }
        if (o->conjugate) {
            int nb = o->block ? o->nblocks : 1;
            for (j = 0; j < nb; j++)
                if (o->conjugate[j] && !o->sde)
                    return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: conjugate updates are for the parameters of a diffusion (sde)");
            for (j = 0; j < m->n; j++) plm_bffg_sde_keep_prepare(m->nodes[j].k);   /* (its native code, before threads) */
            if (!(conj_prog = plm_gc_alloc((size_t)nb * sizeof *conj_prog)))
                return plm_fail(ctx, PLM_ENOMEM, "bffg mcmc: out of memory");
            for (b = 0; b < nb; b++) {   /* each conjugate block's program, built into the sde's graph before threads */
                int sel[4], nsel = 0;
                const char *nm[4];
                if (!o->conjugate[b]) continue;
                for (j = 0; j < o->nparams; j++)
                    if (BLOCK(o, j) == b) {
                        if (nsel == 4)
                            return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: a conjugate block has at most 4 parameters (block %d)",
                                            b + 1);
                        nm[nsel] = o->names ? o->names[j] : NULL, sel[nsel++] = o->index[j];
                    }
                if ((st = plm_bffg_sde_conj_prog(ctx, o->sde, nsel, sel, nm, &conj_prog[b]))) return st;
                if (plm_native_enabled()) plm_prog_native(conj_prog[b]);
            }
        }
        if (!(theta0 = plm_gc_alloc_atomic((size_t)nall * sizeof *theta0)))
            return plm_fail(ctx, PLM_ENOMEM, "bffg mcmc: out of memory");
        memcpy(theta0, pall, (size_t)nall * sizeof *theta0);
        for (j = 0; j < o->nparams; j++) {
            double lo, hi, x;
            if (o->index[j] < 0 || o->index[j] >= nall)
                return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: parameter index %d is not one of the sde's or network's", o->index[j]);
            if (o->init) theta0[o->index[j]] = o->init[j];
            x = theta0[o->index[j]];
            plm_dist_bounds(o->prior[j], &lo, &hi);
            if (!(x > lo && x < hi) || !isfinite(plm_dist_logpdf(o->prior[j], &x)))
                return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: the initial value %g of parameter %d is outside its prior's "
                                                 "support", x, j + 1);
        }
        {
            int fatal = 0;
            double *full = plm_gc_alloc_atomic((size_t)nall * sizeof *full), *th = plm_gc_alloc_atomic(
                (size_t)o->nparams * sizeof *th);
            chain_job J0;
            const plm_bffg_filter *f;
            if (!full || !th) return plm_fail(ctx, PLM_ENOMEM, "bffg mcmc: out of memory");
            memcpy(full, theta0, (size_t)nall * sizeof *full);
            for (j = 0; j < o->nparams; j++) th[j] = theta0[o->index[j]];
            memset(&J0, 0, sizeof J0);
            J0.m = m, J0.values = values, J0.o = o;
            if (!(f = filter_at(ctx, &J0, th, full, o->fixed_aux ? 1 : 0, NULL, &ma, NULL, &fatal)))
                return ctx ? ctx->status : PLM_EINVAL;
            f0 = (plm_bffg_filter *)f;
        }
    } else if ((st = plm_bffg_backward(ctx, m, values, &f0)))
        return st;
    memset(&J, 0, sizeof J);
    J.m = m, J.values = values, J.o = o, J.f0 = f0, J.ma = ma, J.theta0 = theta0, J.draws = draws, J.loglik = loglik, J.stats = stats;
    J.conj_prog = conj_prog;
    pthread_mutex_init(&J.emit_lock, NULL);
    if (!(J.ctxs = plm_gc_alloc_atomic((size_t)o->chains * sizeof *J.ctxs))) return plm_fail(ctx, PLM_ENOMEM, "bffg mcmc: out of memory");
    for (c = 0; c < o->chains; c++) plm_ctx_clear(&J.ctxs[c]);
    st = plm_parallel_for(o->threads, (size_t)o->chains, 1, chain_chunk, &J);
    pthread_mutex_destroy(&J.emit_lock);
    if (st) return plm_fail(ctx, st, "bffg mcmc: could not start the threads");
    for (c = 0; c < o->chains; c++)
        if (J.ctxs[c].status) {
            if (ctx) *ctx = J.ctxs[c];
            return J.ctxs[c].status;
        }
    return PLM_OK;
}
