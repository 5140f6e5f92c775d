/* bffg_sde.c -- diffusions over a time interval as BFFG kernels: guided proposals (Schauer, van der Meulen and
** van Zanten, "Guided proposals for simulating multi-dimensional diffusion bridges", Bernoulli 2017; van der
** Meulen and Schauer, "Automatic Backward Filtering Forward Guiding for Markov processes and graphical models").
**
** Backward. The child's message h(t1, x) = exp(c + F'x - x'Hx/2) is carried back to t0 under a linear auxiliary
** diffusion dX~ = (B~ X~ + beta~) dt + sigma~ dW. Its transition over one grid step is exactly Gaussian (closed
** form for constant B~: the matrix exponential and Van Loan's integral), so the message at every grid point is
** the child's message pulled back through those linear-Gaussian steps (bffg_kernel.c's pull-back): exact for
** the auxiliary whatever the step, with no ODE to integrate and no inverse of H. The time grid matters only
** to the forward pass.
**
** Forward. The guided diffusion dX = b dt + a r dt + sigma dW, r = F(t) - H(t) x, is simulated by Euler on the
** grid, and the path gets the log likelihood ratio of the true process to the guided one,
**   log h~(t0, x0) - log h~(t1, X(t1)) + integral_t0^t1 G(s, X(s)) ds,
**   G(s, x) = (b - b~)'r - tr[(a - a~)(H - r r')] / 2,
** the Girsanov density dP/dP° (Doob's h-transform by h~, which is space-time harmonic for the auxiliary's
** generator L~, so (d/dt + L) h~ / h~ = (L - L~) h~ / h~ = G). With the auxiliary equal to the target, G = 0
** identically and the weight does not depend on the grid at all. */
#include "bffg_sde_impl.h"

#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the kernel --------------------------------------------------------------------------------------- */

static double *dalloc(size_t n) { return plm_gc_alloc_atomic((n ? n : 1) * sizeof(double)); }

static plm_status sde_steps(plm_ctx *ctx, sde_kernel *K, const sde_kernel *like);

plm_status plm_bffg_pullback_grid(plm_ctx *ctx, int d, size_t N, const plm_bffg_kernel *const *step,
                                  const plm_bffg_msg *child, void (*visit)(void *ud, size_t k, const plm_bffg_msg *h),
                                  void *ud, plm_bffg_msg *out)
{
    size_t k, dd = (size_t)d * d;
    plm_bffg_msg a = {0, d, 0, NULL, NULL, 0, 0, 0, 0}, b = a, *cur = &a, *nxt = &b;
    plm_status st;
    if (!(a.v = dalloc((size_t)d)) || !(a.H = dalloc(dd)) || !(b.v = dalloc((size_t)d)) || !(b.H = dalloc(dd)))
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    a.c = child->c;
    memcpy(a.v, child->v, (size_t)d * sizeof *a.v);
    memcpy(a.H, child->H, dd * sizeof *a.H);
    for (k = N + 1; k-- > 0;) {
        if (visit) visit(ud, k, cur);
        if (k == 0) break;
        if ((k & 4095) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg: interrupted");
        if ((st = step[k - 1]->ops->pullback(ctx, step[k - 1], cur, nxt))) return st;
        {
            plm_bffg_msg *t = cur;
            cur = nxt, nxt = t;
        }
    }
    out->c = cur->c;
    memcpy(out->v, cur->v, (size_t)d * sizeof *cur->v);
    memcpy(out->H, cur->H, dd * sizeof *cur->H);
    return PLM_OK;
}

typedef struct sde_keep {
    const sde_kernel *K;
    sde_guide *g;
} sde_keep;

/* plm_bffg_pullback_grid's visit for a guide: every grid message, and the constants at t0 and t1. */
static void keep_grid_msg(void *ud, size_t k, const plm_bffg_msg *h)
{
    const sde_keep *w = ud;
    size_t d = (size_t)w->K->d;
    if (k == w->K->N) w->g->c[1] = h->c;
    if (k == 0) w->g->c[0] = h->c;
    memcpy(w->g->F + k * d, h->v, d * sizeof *h->v);
    memcpy(w->g->H + k * d * d, h->H, d * d * sizeof *h->H);
}

/* Pull child back through the steps N-1..0; with g, keep every grid message. */
static plm_status sde_backward(plm_ctx *ctx, const sde_kernel *K, const plm_bffg_msg *child, sde_guide *g,
                               plm_bffg_msg *out)
{
    sde_keep w = {K, g};
    plm_status st;
    if (child->gamma)
        return plm_fail(ctx, PLM_EINVAL, "bffg: a gamma process's message cannot be carried back through a diffusion");
    /* a kernel remade with a frozen auxiliary makes its steps on first need (while its filter is built, on one
    ** thread) */
    if (!K->step && (st = sde_steps(ctx, (sde_kernel *)K, NULL))) return st;
    if (K->two) return plm_bffg_sde_backward2(ctx, K, child, g, out);
    return plm_bffg_pullback_grid(ctx, K->d, K->N, K->step, child, g ? keep_grid_msg : NULL, &w, out);
}

static plm_status sde_pullback(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, plm_bffg_msg *out)
{
    return sde_backward(ctx, k->impl, child, NULL, out);
}

/* Build K->frz from K's own guide g (made by the full filter toward child): see sde_frozen. The cache checks itself
** against g (c(t0) and F(t0) from the affine map at K's own beta~ must agree with the filter's), and stays unready
** when they disagree beyond rounding, so kernels made from it fall back to the full filter. */
static plm_status frozen_build(plm_ctx *ctx, const sde_kernel *K, const plm_bffg_msg *child, const sde_guide *g)
{
    sde_frozen *z = K->frz;
    size_t N = K->N, k;
    double Psi[4] = {0, 0, 0, 0}, M[16], E[16], v[4], c0, tol;
    const plm_bffg_kernel *prev = NULL;
    int a, b, i, j;
    plm_status st;
    if (!(z->L = dalloc((N + 1) * 8))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    z->H = g->H;
    memcpy(z->Hend, child->H, sizeof z->Hend);
    memset(z->Om, 0, sizeof z->Om);
    z->logdet = 0;
    memset(z->L + 8 * N, 0, 8 * sizeof *z->L);
    z->L[8 * N] = z->L[8 * N + 5] = 1;   /* L_N = [I 0] (2 x 4, row-major) */
    for (k = N; k-- > 0;) {
        const plm_bffg_kernel *sk = K->step[k];
        const double *H = g->H + 4 * (k + 1), *G = sk->G, *Phi = sk->B, *L1 = z->L + 8 * (k + 1);
        double R[4], P[4], S[4], Ht[4], PL[8], SL[8], HP[4], Hpsi[4], PsiS[4], t, *L0 = z->L + 8 * k;
        if (sk != prev) {   /* Psi = integral_0^h exp(B~ u) du: the top right of exp([[B~, I], [0, 0]] h) */
            double A[16], X[16], h = K->t[k + 1] - K->t[k];
            memset(A, 0, sizeof A);
            for (i = 0; i < 2; i++) {
                for (j = 0; j < 2; j++) A[i * 4 + j] = K->B[i * 2 + j] * h;
                A[i * 4 + 2 + i] = h;
            }
            if ((st = plm_expm(ctx, 4, A, X))) return st;
            for (i = 0; i < 2; i++)
                for (j = 0; j < 2; j++) Psi[i * 2 + j] = X[i * 4 + 2 + j];
            prev = sk;
        }
        /* R = chol(I + G'HG), P = R^-1 G' */
        for (a = 0; a < 2; a++)
            for (b = 0; b < 2; b++) {
                double acc = a == b;
                for (i = 0; i < 2; i++)
                    for (j = 0; j < 2; j++) acc += G[i * 2 + a] * H[i * 2 + j] * G[j * 2 + b];
                R[a * 2 + b] = acc;
            }
        if (!(R[0] > 0)) return plm_fail(ctx, PLM_EDOM, ILL_CONDITIONED);
        R[0] = sqrt(R[0]), R[2] = R[2] / R[0], t = R[3] - R[2] * R[2];
        if (!(t > 0)) return plm_fail(ctx, PLM_EDOM, ILL_CONDITIONED);
        R[3] = sqrt(t);
        z->logdet += log(R[0] * R[3]);
        for (j = 0; j < 2; j++) {
            P[j] = G[j * 2] / R[0];
            P[2 + j] = (G[j * 2 + 1] - R[2] * P[j]) / R[3];
        }
        /* HP = H P' (2 x 2), S = I - HP P, H~ = H - HP HP' */
        for (i = 0; i < 2; i++)
            for (a = 0; a < 2; a++) HP[i * 2 + a] = H[i * 2] * P[a * 2] + H[i * 2 + 1] * P[a * 2 + 1];
        for (i = 0; i < 2; i++)
            for (j = 0; j < 2; j++) {
                S[i * 2 + j] = (i == j) - HP[i * 2] * P[j] - HP[i * 2 + 1] * P[2 + j];
                Ht[i * 2 + j] = H[i * 2 + j] - HP[i * 2] * HP[j * 2] - HP[i * 2 + 1] * HP[j * 2 + 1];
            }
        for (i = 0; i < 2; i++)
            for (j = 0; j < 4; j++) {
                PL[i * 4 + j] = P[i * 2] * L1[j] + P[i * 2 + 1] * L1[4 + j];
                SL[i * 4 + j] = S[i * 2] * L1[j] + S[i * 2 + 1] * L1[4 + j];
            }
        for (i = 0; i < 2; i++)
            for (j = 0; j < 2; j++) {
                Hpsi[i * 2 + j] = Ht[i * 2] * Psi[j] + Ht[i * 2 + 1] * Psi[2 + j];   /* H~ Psi */
                PsiS[i * 2 + j] = Psi[i] * S[j] + Psi[2 + i] * S[2 + j];             /* Psi' S */
            }
        /* L_k = Phi'(S L - H~ Psi J) */
        for (i = 0; i < 2; i++)
            for (j = 0; j < 4; j++) {
                double w0 = SL[j] - (j >= 2 ? Hpsi[j - 2] : 0), w1 = SL[4 + j] - (j >= 2 ? Hpsi[2 + j - 2] : 0);
                L0[i * 4 + j] = Phi[i] * w0 + Phi[2 + i] * w1;
            }
        /* Om += (PL)'(PL) + M + M' - J'Psi'H~Psi J, M = J'Psi'S L */
        memset(M, 0, sizeof M);
        for (i = 0; i < 2; i++)
            for (j = 0; j < 4; j++) M[(2 + i) * 4 + j] = PsiS[i * 2] * L1[j] + PsiS[i * 2 + 1] * L1[4 + j];
        for (i = 0; i < 4; i++)
            for (j = 0; j < 4; j++) {
                double acc = PL[i] * PL[j] + PL[4 + i] * PL[4 + j] + M[i * 4 + j] + M[j * 4 + i];
                if (i >= 2 && j >= 2) acc -= Psi[i - 2] * Hpsi[j - 2] + Psi[2 + i - 2] * Hpsi[2 + j - 2];
                z->Om[i * 4 + j] += acc;
            }
    }
    /* the self-check at K's own beta~ */
    v[0] = child->v[0], v[1] = child->v[1], v[2] = K->beta[0], v[3] = K->beta[1];
    c0 = child->c - z->logdet;
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++) E[i * 4 + j] = 0.5 * v[i] * z->Om[i * 4 + j] * v[j], c0 += E[i * 4 + j];
    tol = 1e-7 * (1 + fabs(g->c[0]) + fabs(child->c) + z->logdet);
    z->ready = fabs(c0 - g->c[0]) <= tol;
    for (i = 0; i < 2 && z->ready; i++) {
        double F0 = 0;
        for (j = 0; j < 4; j++) F0 += z->L[i * 4 + j] * v[j];
        z->ready = fabs(F0 - g->F[i]) <= 1e-7 * (1 + fabs(g->F[i]));
    }
    return PLM_OK;
}

/* The guide of a kernel remade with a frozen auxiliary, from the cache (see sde_frozen): H the cache's, F(t_k) = L_k v
** read through guide_F, c(t0) from Om. */
static void frozen_guide(const sde_kernel *K, const plm_bffg_msg *child, sde_guide *g)
{
    const sde_frozen *z = K->src;
    double *v = g->v, q = 0;
    int i, j;
    v[0] = child->v[0], v[1] = child->v[1], v[2] = K->beta[0], v[3] = K->beta[1];
    g->F = NULL, g->H = z->H, g->L = z->L;
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++) q += v[i] * z->Om[i * 4 + j] * v[j];
    g->c[1] = child->c;
    g->c[0] = child->c + 0.5 * q - z->logdet;
}

/* The grid storage of a guide of K: none when its guide will come from a frozen cache, and none for a kernel
** that keeps a cache (how 1: the cache keeps the guide's H, which must outlive the filter), else the messages at
** the N + 1 grid points and the message at t0. */
static size_t sde_guide_mem(const plm_bffg_kernel *k)
{
    const sde_kernel *K = k->impl;
    size_t np = K->N + 1, d = (size_t)K->d;
    if ((K->src && K->src->ready) || K->frz) return 0;
    return np * (d + d * d) + d + d * d;
}

static plm_status sde_guide_at(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, double *mem, void **guide)
{
    const sde_kernel *K = k->impl;
    size_t np = K->N + 1, d = (size_t)K->d;
    sde_guide *g = plm_gc_alloc(sizeof *g);
    plm_bffg_msg out = {0, K->d, 0, NULL, NULL, 0, 0, 0, 0};
    plm_status st;
    if (!g) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    *guide = g;
    if (K->src && K->src->ready && !child->gamma && memcmp(child->H, K->src->Hend, sizeof K->src->Hend) == 0) {
        /* a frozen auxiliary: H is the cache's, F and c affine and quadratic in [F_N; beta~] */
        frozen_guide(K, child, g);
        return PLM_OK;
    }
    /* the grid messages and the message at t0 in the filter's storage, else in one allocation of its own (a
    ** parameter move of pCN makes a guide per diffusion kernel: collector allocations of this size are not cheap) */
    if (mem && !K->frz) g->F = mem;
    else if (!(g->F = dalloc(np * (d + d * d) + d + d * d)))
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    else
        g->own = 1;
    g->H = g->F + np * d, out.v = g->H + np * d * d, out.H = out.v + d;
    if ((st = sde_backward(ctx, K, child, g, &out))) return st;
    if (K->frz && K->two && !child->gamma) return frozen_build(ctx, K, child, g);
    return PLM_OK;
}

static plm_status sde_guide_new(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, void **guide)
{
    return sde_guide_at(ctx, k, child, NULL, guide);
}

/* A guide and its grid messages: one block (F, and H unless it is a frozen cache's). A kernel that keeps a frozen
** cache (how 1) shares its guide's H with the cache, so its guides are left to the collector. */
static void sde_guide_free(const plm_bffg_kernel *k, void *guide)
{
    const sde_kernel *K = k->impl;
    sde_guide *g = guide;
    if (K->frz) return;
    if (g->own) plm_gc_free(g->F);
    plm_gc_free(g);
}

void plm_bffg_kernel_sde_free(plm_bffg_kernel *k)
{
    sde_kernel *K;
    if (!plm_bffg_kernel_sde_of(k)) return;
    K = k->impl;
    if (K->frz) return;   /* a cache's owner: kernels remade from it refer to it */
    if (!K->plan_shared) plm_gc_free(K->plan);   /* with its arrays (path_plan_make) */
    if (K->step)   /* its distinct step kernels, one per run: each one block, with G apart when Q is singular */
        for (size_t r = 0; r < K->nrun; r++) {
            plm_bffg_kernel *sk = (plm_bffg_kernel *)K->step[K->run[r]];
            if (sk->G != sk->L) plm_gc_free(sk->G);
            plm_gc_free(sk);
        }
    plm_gc_free((void *)K->step);   /* (K->run is shared with the kernels remade from this one: the collector's) */
    plm_gc_free(k);         /* with K and its parameters (sde_make) */
}

static void sde_guide_msg(const plm_bffg_kernel *k, const void *guide, plm_bffg_msg *out)
{
    const sde_guide *g = guide;
    int d = ((const sde_kernel *)k->impl)->d;
    double Fk[2];
    out->c = g->c[0];
    memcpy(out->v, guide_F(g, 0, d, Fk), (size_t)d * sizeof *out->v);
    memcpy(out->H, g->H, d * d * sizeof *out->H);
}

/* K->plan for a kernel with a native path (path_native's conditions: the drift does not read the time, the
** diffusion reads neither time nor state), evaluated as sde_path_d evaluates them at its first step. */
static plm_status path_plan_make(plm_ctx *ctx, sde_kernel *K)
{
    const plm_sde *s = K->s;
    int d = K->d, m = K->m, nsig = K->diag ? d : d * m, i;
    double T[3], x[8] = {0}, *so[64];
    plm_prog_in in[PLM_NGROUPS];
    plm_prog_ws ws;
    /* one block: the plan, its doubles, then the register table */
    size_t nd = (size_t)nsig + 2 * (size_t)d * d;
    path_plan *P = plm_gc_alloc(sizeof *P + nd * sizeof(double) + plm_prog_native_regs_size(s->drift_prog));
    if (!P) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    P->sig = (double *)(P + 1), P->a = P->sig + nsig, P->da = P->a + (size_t)d * d;
    memset(in, 0, sizeof in);
    in[PLM_GRP_P].p = K->params;
    in[PLM_GRP_T].p = T;
    in[PLM_GRP_X].p = x;
    in[PLM_GRP_X].ld = 1;
    T[0] = K->t[0], T[1] = K->t[1] - K->t[0], T[2] = sqrt(T[1]);
    for (i = 0; i < nsig; i++) so[i] = P->sig + i;
    if (!(P->R = plm_prog_native_regs(s->drift_prog, in, P->sig + nd)) || plm_prog_ws_init_block(NULL, &ws, s->diff_prog, 1))
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    plm_prog_uniforms(&ws, in);
    plm_prog_block(&ws, in, 0, 1, so, NULL);
    plm_prog_ws_free(&ws);
    P->same_a = diff_moments(K, d, m, P->sig, P->a, P->da);
    K->plan = P;
    return PLM_OK;
}

/* One guided path from x0 by Euler, driven by the innovations z (N * noise dimension standard normals) or, with z
** NULL, by the stream rng; returns the log weight (NaN when the path left the finite numbers or the workspace
** could not be allocated: the engine reports it). The drift's uniform part is recomputed per step only when it
** reads the time, and a diffusion that reads neither the state nor the time is evaluated once per path: the
** forward pass is the inner loop of pCN MCMC. work: x, b, sig, a, r, z (see below). */
static inline __attribute__((always_inline)) double
sde_path_d(const plm_bffg_kernel *k, const void *guide, const double *x0, const double *zin, double *y, plm_rng *rng,
           double *work, const int D, const int M)
{
    const sde_kernel *K = k->impl;
    const sde_guide *g = guide;
    const plm_sde *s = K->s;
    int d = D ? D : K->d, m = M ? M : K->m, i, j, l, nsig = K->diag ? d : d * m, nn = K->diag ? d : m;
    double *x = work, *b = x + d, *sig = b + d, *a = sig + nsig, *da = a + (size_t)d * d, *r = da + (size_t)d * d;
    double *z = r + d, T[3], *bo[64], *so[64 * 64], intG = 0, lw;
    int same_a = 0;   /* a = a~ at this step: the trace term of G is 0 (a constant diffusion equal to the auxiliary's) */
    plm_prog_point wb;   /* the drift, at x into b, decoded once per path */
    plm_prog_native_fn nat = K->drift_native && plm_native_enabled() ? K->drift_native : NULL;
    path_fn pnat = K->path_native && zin && nat ? K->path_native->fn : NULL;
    plm_prog_ws ws;
    plm_prog_in in[PLM_NGROUPS];
    size_t kk;
    if (pnat && K->plan) {   /* the whole path natively, its fixed inputs made with the kernel */
        const path_plan *P = K->plan;
        memcpy(x, x0, (size_t)d * sizeof *x);
        lw = logh(g, 0, d, x);
        if (pnat(P->R, plm_op_eval, K->N, K->t, g->F, g->L, g->v, g->H, K->B, K->beta, P->a, P->da, P->same_a, P->sig, zin, x, &intG)) {
            for (j = 0; j < d; j++) y[j] = x0[j];
            return NAN;
        }
        memcpy(y, x, (size_t)d * sizeof *y);
        return lw - logh(g, K->N, d, x) + intG;
    }
    memset(in, 0, sizeof in);
    in[PLM_GRP_P].p = K->params;
    in[PLM_GRP_T].p = T;
    in[PLM_GRP_X].p = x;
    in[PLM_GRP_X].ld = 1;
    for (i = 0; i < d; i++) bo[i] = b + i;
    for (i = 0; i < nsig; i++) so[i] = sig + i;
    memcpy(x, x0, (size_t)d * sizeof *x);
    lw = logh(g, 0, d, x);
    T[0] = K->t[0], T[1] = K->t[1] - K->t[0], T[2] = sqrt(T[1]);
    if (plm_prog_point_init(NULL, &wb, s->drift_prog, in, bo, NULL)) return NAN;
    if (plm_prog_ws_init_block(NULL, &ws, s->diff_prog, 1)) {
        plm_prog_point_free(&wb);
        return NAN;
    }
    plm_prog_uniforms(&ws, in);
    for (kk = 0; kk < K->N; kk++) {
        double Fk[2];
        const double *F = guide_F(g, kk, d, Fk), *H = g->H + kk * (size_t)d * d;
        double dt = K->t[kk + 1] - K->t[kk], sdt = K->t[K->N + 1 + kk];
        T[0] = K->t[kk], T[1] = dt, T[2] = sdt;
        if (K->drift_t) plm_prog_uniforms(&wb.w, in);
        if (nat) nat(wb.w.R, bo, plm_op_eval);
        else plm_prog_point_run(&wb);
        if (K->diff_var || kk == 0) {
            if (K->diff_t) plm_prog_uniforms(&ws, in);
            plm_prog_block(&ws, in, 0, 1, so, NULL);
            same_a = diff_moments(K, d, m, sig, a, da);   /* a = sig sig', da = a - a~ */
        }
        if (pnat) {   /* the whole path natively (the drift at step 0 above is computed again there) */
            if (pnat(wb.w.R, plm_op_eval, K->N, K->t, g->F, g->L, g->v, g->H, K->B, K->beta, a, da, same_a, sig, zin, x, &intG)) {
                plm_prog_point_free(&wb);
                plm_prog_ws_free(&ws);
                for (j = 0; j < d; j++) y[j] = x0[j];
                return NAN;
            }
            break;
        }
        intG += guide_r_G(K, F, H, d, x, b, da, same_a, r) * dt;   /* r = F - H x, and G */
        /* x += (b + a r) dt + sig sqrt(dt) z */
        if (zin)
            for (l = 0; l < nn; l++) z[l] = zin[kk * nn + l] * sdt;
        else
            for (l = 0; l < nn; l++) z[l] = plm_rng_normal(rng) * sdt;
        for (i = 0; i < d; i++) {
            double drift = b[i], noise = 0;
            for (j = 0; j < d; j++) drift += a[i * d + j] * r[j];
            if (K->diag) noise = sig[i] * z[i];
            else
                for (l = 0; l < m; l++) noise += sig[i * m + l] * z[l];
            z[m + i] = x[i] + drift * dt + noise;   /* the new state, after the noise */
        }
        for (i = 0; i < d; i++)
            if (!isfinite(x[i] = z[m + i])) {
                plm_prog_point_free(&wb);
                plm_prog_ws_free(&ws);
                for (j = 0; j < d; j++) y[j] = x0[j];
                return NAN;
            }
    }
    plm_prog_point_free(&wb);
    plm_prog_ws_free(&ws);
    memcpy(y, x, (size_t)d * sizeof *y);
    return lw - logh(g, K->N, d, x) + intG;
}

/* The path with the dimensions as constants for the common small cases (the compiler unrolls the d x d loops), else
** generic. */
static double sde_path(const plm_bffg_kernel *k, const void *guide, const double *x0, const double *zin, double *y,
                       plm_rng *rng, double *work)
{
    const sde_kernel *K = k->impl;
    if (K->d == 1 && K->m == 1) return sde_path_d(k, guide, x0, zin, y, rng, work, 1, 1);
    if (K->d == 2 && K->m == 2) return sde_path_d(k, guide, x0, zin, y, rng, work, 2, 2);
    if (K->d == 2 && K->m == 1) return sde_path_d(k, guide, x0, zin, y, rng, work, 2, 1);
    return sde_path_d(k, guide, x0, zin, y, rng, work, 0, 0);
}

static double sde_sample(const plm_bffg_kernel *k, const void *guide, const double *x0, double *y, plm_rng *rng,
                         double *work)
{
    return sde_path(k, guide, x0, NULL, y, rng, work);
}

static double sde_sample_z(const plm_bffg_kernel *k, const void *guide, const double *x0, const double *z, double *y,
                           double *work)
{
    return sde_path(k, guide, x0, z, y, NULL, work);
}

int plm_bffg_sde_sample_z2(const plm_bffg_kernel *k0, const void *guide0, const double *x0, const double *z0, double *y0,
                           double *lw0, const plm_bffg_kernel *k1, const void *guide1, const double *x1, const double *z1,
                           double *y1, double *lw1)
{
    const sde_kernel *K[2];
    const sde_guide *g[2] = {guide0, guide1};
    const double *xs[2] = {x0, x1};
    double xb[2][8], intG[2] = {0, 0}, lw[2];
    path_args A[2];
    int w, d;
    if (!plm_bffg_kernel_sde_of(k0) || !plm_bffg_kernel_sde_of(k1)) return 0;
    K[0] = k0->impl, K[1] = k1->impl;
    if (!K[0]->path_native || !K[0]->path_native->fn2 || K[1]->path_native != K[0]->path_native || !K[0]->plan ||
        !K[1]->plan || K[0]->t != K[1]->t || K[0]->N != K[1]->N || !K[0]->drift_native || !plm_native_enabled())
        return 0;
    d = K[0]->d;
    for (w = 0; w < 2; w++) {
        const path_plan *P = K[w]->plan;
        memcpy(xb[w], xs[w], (size_t)d * sizeof **xb);
        lw[w] = logh(g[w], 0, d, xb[w]);
        A[w].R = P->R, A[w].F = g[w]->F, A[w].L = g[w]->L, A[w].v = g[w]->v, A[w].H = g[w]->H, A[w].B = K[w]->B;
        A[w].beta = K[w]->beta, A[w].a = P->a, A[w].da = P->da, A[w].sig = P->sig, A[w].zin = w ? z1 : z0;
        A[w].x = xb[w], A[w].intG = &intG[w], A[w].same_a = P->same_a;
    }
    if (K[0]->path_native->fn2(plm_op_eval, K[0]->N, K[0]->t, &A[0], &A[1])) return 0;   /* each alone says which */
    memcpy(y0, xb[0], (size_t)d * sizeof *y0);
    memcpy(y1, xb[1], (size_t)d * sizeof *y1);
    *lw0 = lw[0] - logh(g[0], K[0]->N, d, xb[0]) + intG[0];
    *lw1 = lw[1] - logh(g[1], K[1]->N, d, xb[1]) + intG[1];
    return 1;
}

static const plm_bffg_kernel_ops sde_ops = {"sde", sde_pullback, NULL, sde_guide_new, sde_sample, NULL, sde_sample_z,
                                            sde_guide_msg, sde_guide_free, NULL, sde_guide_mem, sde_guide_at};

/* The auxiliary's exact transition over each step of K's grid (steps of equal length share one), and K->two.
** like: a kernel on the same grid (the one K is remade from) whose steps are already made, or NULL: K's runs of
** steps sharing one transition are like's, without comparing the step lengths again, and the work is one transition
** per run, not per step (a parameter move remakes every kernel). */
static plm_status sde_steps(plm_ctx *ctx, sde_kernel *K, const sde_kernel *like)
{
    const char *fn = "markov_kernel.sde";
    const plm_bffg_sde_opts *o = &K->o;
    int d = K->d;
    size_t n, r, N = K->N;
    double *Phi, *mm, *Q;
    plm_status st;
    if (like && (like->t != K->t || !like->step)) like = NULL;
    if (!(K->step = plm_gc_alloc(N * sizeof *K->step)) || !(Phi = dalloc((size_t)d * d * 2 + (size_t)d)))
        return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    mm = Phi + (size_t)d * d, Q = mm + d;
    if (like)
        K->run = like->run, K->nrun = like->nrun;
    else {
        size_t *run = plm_gc_alloc_atomic((N + 1) * sizeof *run);
        if (!run) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
        /* steps that differ only by the rounding of t0 + n dt share one transition (a relative change of 1e-10 in
        ** a step changes its transition far below the Euler error of the forward pass) */
        for (n = 0, r = 0; n < N; n++) {
            double h = K->t[n + 1] - K->t[n];
            if (n == 0 || !(fabs(h - (K->t[n] - K->t[n - 1])) <= 1e-10 * h)) run[r++] = n;
        }
        run[r] = N;
        K->run = run, K->nrun = r;
    }
    K->two = d == 2;
    for (r = 0; r < K->nrun; r++) {
        size_t n0 = K->run[r];
        double h = K->t[n0 + 1] - K->t[n0];
        plm_bffg_kernel *sk;
        if (!(h > 0)) return plm_fail(ctx, PLM_EINVAL, "%s: dt = %g is too small for the interval [%g, %g]", fn, o->dt, o->t0, o->t1);
        if ((r & 1023) == 1023 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "%s: interrupted", fn);
        if ((st = plm_bffg_aux_transition(ctx, d, K->B, K->beta, K->a, h, Phi, mm, Q))) return st;
        if ((st = plm_bffg_kernel_linear_gaussian(ctx, d, d, Phi, mm, Q, &sk))) {
            char why[PLM_MSG_MAX];
            if (st != PLM_EINVAL) return st;
            snprintf(why, sizeof why, "%s", ctx ? ctx->msg : "");
            return plm_fail(ctx, PLM_EINVAL, "%s: the auxiliary's transition over a step is not a Gaussian (%s)", fn, why);
        }
        for (n = n0; n < K->run[r + 1]; n++) K->step[n] = sk;
        K->two = K->two && sk->r == 2 && !sk->aux && !sk->mean;
    }
    plm_gc_free(Phi);
    return PLM_OK;
}

/* Grid sizes are checked before anything is allocated (the guide keeps (N + 1)(d^2 + d + 1) doubles). */
#define MAX_STEPS 10000000

/* The kernel of s with parameters params (np values) and options o. The linearisation reads the parameters
** through a shallow copy of s, so that s itself never changes (kernels for new parameters are made on threads). */
static plm_status sde_make(plm_ctx *ctx, const plm_sde *s0, const double *params, const plm_bffg_sde_opts *o,
                           const sde_kernel *from, int how, sde_kernel *sib, const double *lin, plm_bffg_kernel **out)
{
    const char *fn = "markov_kernel.sde";
    plm_bffg_kernel *k;
    sde_kernel *K;
    int d, i, j, nout;
    double span, steps, *J, *f, *G, Jst[96];
    size_t n, N;
    plm_prog_in in[PLM_NGROUPS];
    double T[3] = {0, 0, 0};
    plm_status st;
    plm_sde s1, *s = &s1;
    s1 = *s0;
    s1.params = (double *)params;
    d = s->dim;
    if (!(isfinite(o->t0) && isfinite(o->t1) && o->t1 > o->t0))
        return plm_fail(ctx, PLM_EINVAL, "%s: needs finite t0 < t1 (got t0 = %g, t1 = %g)", fn, o->t0, o->t1);
    if (!(o->dt > 0) || !isfinite(o->dt)) return plm_fail(ctx, PLM_EINVAL, "%s: dt must be finite and > 0 (got %g)", fn, o->dt);
    span = o->t1 - o->t0;
    steps = ceil(span / o->dt * (1 - 1e-12));
    if (!(steps <= MAX_STEPS))
        return plm_fail(ctx, PLM_EINVAL, "%s: (t1 - t0) / dt = %g steps is over the limit of %d", fn, steps, MAX_STEPS);
    N = steps < 1 ? 1 : (size_t)steps;
    for (i = 0; i < s->np; i++)
        if (isnan(s->params[i])) return plm_fail(ctx, PLM_EINVAL, "%s: the sde's parameter %d has no value (set it)", fn, i + 1);
    if (!o->at && (!o->B || !o->a))
        return plm_fail(ctx, PLM_EINVAL, "%s: give the linearisation point 'at' or the whole auxiliary (B and sigma)", fn);
    memset(in, 0, sizeof in);
    in[PLM_GRP_P].p = s->params;
    in[PLM_GRP_T].p = T;
    in[PLM_GRP_X].p = T;
    /* (a kernel remade from another reads the same inputs of the same programs: checked when that one was made) */
    if (!from && ((st = plm_prog_check(ctx, s->drift_prog, in, 0)) || (st = plm_prog_check(ctx, s->diff_prog, in, 0))))
        return st;
    /* one block: the kernel, its sde_kernel, then the parameters and the auxiliary (a parameter move of pCN remakes
    ** every diffusion kernel) */
    k = plm_gc_alloc(sizeof *k + sizeof *K + ((size_t)s->np + (size_t)d * d * 2 + (size_t)d) * sizeof(double));
    /* a kernel remade at new parameters (from: the original, with the same options) shares its grid */
    if (!k) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    K = (sde_kernel *)(k + 1);
    K->params = (double *)(K + 1);
    if (!(K->t = from ? from->t : dalloc(2 * N + 1))) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    K->B = K->params + s->np, K->a = K->B + (size_t)d * d, K->beta = K->a + (size_t)d * d;
    nout = plm_prog_nout(s->diff_prog);
    /* scratch: the linearisation (J, f, G), on the stack when small */
    if ((size_t)d * d + (size_t)d + (size_t)nout <= sizeof Jst / sizeof *Jst) J = Jst;
    else if (!(J = dalloc((size_t)d * d + (size_t)d + (size_t)nout))) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    f = J + (size_t)d * d, G = f + d;
    memcpy(K->params, s->params, (size_t)s->np * sizeof *K->params);
    K->s = s0, K->d = d, K->m = s->m, K->N = N;
    K->drift_native = from ? from->drift_native : plm_prog_native(s0->drift_prog);   /* NULL: the interpreter */
    /* keep the options, with copies of what they point to (a remade kernel shares from's copies, which never change) */
    K->o = *o;
    if (!from) {
        const double *src[4] = {o->at, o->B, o->beta, o->a};
        size_t len[4] = {(size_t)d, (size_t)d * d, (size_t)d, (size_t)d * d};
        double *dst[4];
        for (i = 0; i < 4; i++) {
            dst[i] = NULL;
            if (src[i]) {
                if (!(dst[i] = dalloc(len[i]))) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
                memcpy(dst[i], src[i], len[i] * sizeof *dst[i]);
            }
        }
        K->o.at = dst[0], K->o.B = dst[1], K->o.beta = dst[2], K->o.a = dst[3];
    }
    if (from) {   /* the same programs */
        K->drift_t = from->drift_t, K->diff_t = from->diff_t, K->diff_var = from->diff_var, K->diag = from->diag;
    } else {
        K->drift_t = K->diff_t = 0;
        for (i = 0; i < 3; i++) {
            K->drift_t |= plm_prog_uses(s->drift_prog, PLM_GRP_T, i);
            K->diff_t |= plm_prog_uses(s->diff_prog, PLM_GRP_T, i);
        }
        K->diff_var = K->diff_t;
        for (i = 0; i < d; i++) K->diff_var |= plm_prog_uses(s->diff_prog, PLM_GRP_X, i);
        K->diag = nout == d && s->m == d;   /* a vector of G_ii (a d x 1 matrix has m = 1) */
    }
    K->path_native = from ? from->path_native
                          : K->drift_native && !K->drift_t && !K->diff_var ? plm_bffg_path_native_make(s0, d, s->m, K->diag) : NULL;
    /* the auxiliary: given parts, the rest from the linearisation at (at, t0) */
    if (o->at) {
        for (i = 0; i < d; i++)
            if (!isfinite(o->at[i])) return plm_fail(ctx, PLM_EINVAL, "%s: at[%d] must be finite (got %g)", fn, i + 1, o->at[i]);
        /* a diffusion that reads neither the state nor the time has a sibling's a~ at the same parameters */
        int same_a = sib && sib->s == s0 && !K->diff_var && memcmp(sib->params, K->params, (size_t)s->np * sizeof *K->params) == 0;
        if (lin) {   /* the Jacobian and drift at `at`, evaluated for a whole parameter move at once */
            memcpy(J, how == 2 ? from->B : lin, (size_t)d * d * sizeof *J);
            memcpy(f, lin + (size_t)d * d, (size_t)d * sizeof *f);
            if (how != 2 && !same_a && (st = plm_sde_diffusion(ctx, s, o->t0, 1, o->at, 1, G))) return st;
        } else if (how == 2) {   /* only the drift: B~ and a~ are from's (below) */
            if ((st = plm_sde_drift(ctx, s, o->t0, 1, o->at, 1, f))) return st;
            memcpy(J, from->B, (size_t)d * d * sizeof *J);
        } else if ((st = plm_sde_jacobian(ctx, s, o->t0, 1, o->at, 1, J)) ||
                   (st = plm_sde_drift(ctx, s, o->t0, 1, o->at, 1, f)) ||
                   (!same_a && (st = plm_sde_diffusion(ctx, s, o->t0, 1, o->at, 1, G))))
            return st;
        memcpy(K->B, J, (size_t)d * d * sizeof *J);
        for (i = 0; i < d; i++) {
            double acc = f[i];
            for (j = 0; j < d; j++) acc -= J[i * d + j] * o->at[j];
            K->beta[i] = acc;
        }
        if (how != 2 && same_a) memcpy(K->a, sib->a, (size_t)d * d * sizeof *K->a);
        for (i = 0; i < d && how != 2 && !same_a; i++)
            for (j = 0; j < d; j++) {
                double v = 0;
                if (K->diag) v = i == j ? G[i] * G[i] : 0;
                else
                    for (int l = 0; l < s->m; l++) v += G[i * s->m + l] * G[j * s->m + l];
                K->a[i * d + j] = v;
            }
    }
    if (o->B) {
        memcpy(K->B, o->B, (size_t)d * d * sizeof *K->B);
        if (o->beta) memcpy(K->beta, o->beta, (size_t)d * sizeof *K->beta);
        else if (!o->at) memset(K->beta, 0, (size_t)d * sizeof *K->beta);
    } else if (o->beta)
        memcpy(K->beta, o->beta, (size_t)d * sizeof *K->beta);
    if (o->a) memcpy(K->a, o->a, (size_t)d * d * sizeof *K->a);
    if (how == 2) {   /* B~ and a~ frozen at from's; beta~ = b(at) - B~ at at the new parameters (or as given) */
        memcpy(K->B, from->B, (size_t)d * d * sizeof *K->B);
        memcpy(K->a, from->a, (size_t)d * d * sizeof *K->a);
        if (!o->beta && o->at)
            for (i = 0; i < d; i++) {
                double acc = f[i];
                for (j = 0; j < d; j++) acc -= K->B[i * d + j] * o->at[j];
                K->beta[i] = acc;
            }
    }
    for (i = 0; i < d * d; i++)
        if (!isfinite(K->B[i]) || !isfinite(K->a[i]))
            return plm_fail(ctx, PLM_EINVAL, "%s: the auxiliary's %s[%d][%d] is not finite (%g)", fn, isfinite(K->B[i]) ? "a" : "B",
                            i / d + 1, i % d + 1, isfinite(K->B[i]) ? K->a[i] : K->B[i]);
    for (i = 0; i < d; i++)
        if (!isfinite(K->beta[i])) return plm_fail(ctx, PLM_EINVAL, "%s: the auxiliary's beta[%d] is not finite (%g)", fn, i + 1, K->beta[i]);
    /* the grid, and the auxiliary's exact transition over each step (steps of equal length share one) */
    for (n = 0; n <= N && !from; n++) {
        if (o->time_change) {
            double u = (double)n / (double)N;
            K->t[n] = o->t0 + span * u * (2 - u);
        } else
            K->t[n] = fmin(o->t0 + (double)n * o->dt, o->t1);
    }
    if (!from) K->t[N] = o->t1;
    for (n = 0; n < N && !from; n++) K->t[N + 1 + n] = sqrt(K->t[n + 1] - K->t[n]);
    if (how == 2) {   /* the steps when a full filter needs them (sde_steps) */
        K->step = NULL, K->run = NULL, K->nrun = 0;
        K->two = from->two;
        K->src = from->frz;
    } else if ((st = sde_steps(ctx, K, from)))
        return st;
    if (how == 1 && d == 2 && !(K->frz = plm_gc_alloc(sizeof *K->frz))) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    /* The plan reads the parameters and a~ alone (a native path's drift does not read the time, its diffusion
    ** neither time nor state): a sibling remade at the same parameters with the same a~ (the kernels of one
    ** parameter move: plm_bffg_model_with) shares its plan, one set-up per move instead of one per kernel. */
    K->plan = NULL, K->plan_shared = 0;
    if (K->path_native && sib && sib->plan && sib->s == s0 && sib->path_native && sib->diag == K->diag && sib->d == d &&
        sib->m == K->m && memcmp(sib->params, K->params, (size_t)s->np * sizeof *K->params) == 0 &&
        memcmp(sib->a, K->a, (size_t)d * d * sizeof *K->a) == 0) {
        K->plan = sib->plan;
        K->plan_shared = sib->plan_shared = 1;
    } else if (K->path_native && (st = path_plan_make(ctx, K)))
        return st;
    k->ops = &sde_ops;
    k->din = k->dout = d;
    k->impl = K;
    k->nz = N * (size_t)(K->diag ? d : s->m);
    /* sample: x, b, sig (d or d*m), a (d*d), r, z (m) and the new state (d) */
    k->work = (size_t)(4 * d + (K->diag ? d : d * s->m) + 2 * d * d + s->m);
    if (J != Jst) plm_gc_free(J);
    *out = k;
    return PLM_OK;
}

plm_status plm_bffg_kernel_sde(plm_ctx *ctx, const plm_sde *s, const plm_bffg_sde_opts *o, plm_bffg_kernel **out)
{
    plm_init();
    if (!s) return plm_fail(ctx, PLM_EINVAL, "markov_kernel.sde: missing sde");
    return sde_make(ctx, s, s->params, o, NULL, 0, NULL, NULL, out);
}

const plm_sde *plm_bffg_kernel_sde_of(const plm_bffg_kernel *k)
{
    return k && k->ops == &sde_ops ? ((const sde_kernel *)k->impl)->s : NULL;
}

int plm_bffg_kernel_sde_native(const plm_bffg_kernel *k)
{
    const sde_kernel *K = plm_bffg_kernel_sde_of(k) ? k->impl : NULL;
    if (!K || !K->drift_native || !plm_native_enabled()) return 0;
    return K->path_native ? 2 : 1;
}

plm_status plm_bffg_kernel_sde_with(plm_ctx *ctx, const plm_bffg_kernel *k, const double *params, plm_bffg_kernel **out)
{
    const sde_kernel *K;
    if (!plm_bffg_kernel_sde_of(k)) return plm_fail(ctx, PLM_EINVAL, "bffg: not a diffusion kernel");
    K = k->impl;
    return sde_make(ctx, K->s, params, &K->o, K, 0, NULL, NULL, out);
}

void plm_bffg_kernel_sde_span(const plm_bffg_kernel *k, double *t0, double *t1)
{
    const sde_kernel *K = plm_bffg_kernel_sde_of(k) ? k->impl : NULL;
    *t0 = K ? K->o.t0 : NAN;
    *t1 = K ? K->o.t1 : NAN;
}

plm_status plm_bffg_kernel_sde_piece(plm_ctx *ctx, const plm_bffg_kernel *k, double t0, double t1, plm_bffg_kernel **out)
{
    const sde_kernel *K;
    plm_bffg_sde_opts o;
    *out = NULL;
    if (!plm_bffg_kernel_sde_of(k)) return plm_fail(ctx, PLM_EINVAL, "bffg: not a diffusion kernel");
    K = k->impl;
    if (!(t0 >= K->o.t0 && t1 <= K->o.t1 && t0 < t1))
        return plm_fail(ctx, PLM_EINVAL, "markov_kernel.sde: the piece [%g, %g] is not inside the interval [%g, %g]", t0, t1,
                        K->o.t0, K->o.t1);
    o = K->o;
    o.t0 = t0, o.t1 = t1;
    return sde_make(ctx, K->s, K->params, &o, NULL, 0, NULL, NULL, out);
}

plm_status plm_bffg_kernel_sde_remake(plm_ctx *ctx, const plm_bffg_kernel *k, const double *params, int how,
                                      plm_bffg_kernel *sib, plm_bffg_kernel **out)
{
    const sde_kernel *K;
    if (!plm_bffg_kernel_sde_of(k)) return plm_fail(ctx, PLM_EINVAL, "bffg: not a diffusion kernel");
    if (how < 0 || how > 2) return plm_fail(ctx, PLM_EINVAL, "bffg: remake: how must be 0, 1 or 2 (got %d)", how);
    K = k->impl;
    return sde_make(ctx, K->s, params, &K->o, K, how, plm_bffg_kernel_sde_of(sib) ? sib->impl : NULL, NULL, out);
}

plm_status plm_bffg_kernels_sde_remake(plm_ctx *ctx, const plm_bffg_kernel *const *ks, int n, const double *params, int how,
                                       plm_bffg_kernel **out)
{
    const sde_kernel *K0 = n > 0 && plm_bffg_kernel_sde_of(ks[0]) ? ks[0]->impl : NULL;
    plm_bffg_kernel *sib = NULL;
    double *X = NULL, *L = NULL;
    int i, j, d = K0 ? K0->d : 0, batch = K0 && n > 1 && how >= 0 && how <= 2, dd = d * d;
    plm_status st = PLM_OK;
    /* one evaluation of the Jacobian and the drift at every kernel's linearisation point: kernels of one sde
    ** whose drift does not read the time (each kernel's own t0 would not matter), all with a point `at`, and
    ** parameters that are numbers (else each kernel reports its own error) */
    for (i = 0; batch && i < n; i++) {
        const sde_kernel *K = plm_bffg_kernel_sde_of(ks[i]) ? ks[i]->impl : NULL;
        batch = K && K->s == K0->s && K->o.at && !K->drift_t;
    }
    for (j = 0; batch && j < K0->s->np; j++) batch = !isnan(params[j]);
    if (batch) {
        plm_sde s1 = *K0->s;
        size_t nn = (size_t)n;
        s1.params = (double *)params;
        if (!(X = calloc(nn * (size_t)(d + dd + d), sizeof *X))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        L = X + nn * (size_t)d;   /* J (dd components), then f (d), each component over the n points */
        for (i = 0; i < n; i++)
            for (j = 0; j < d; j++) X[(size_t)j * nn + (size_t)i] = ((const sde_kernel *)ks[i]->impl)->o.at[j];
        if ((how != 2 && (st = plm_sde_jacobian(ctx, &s1, 0, nn, X, nn, L))) ||
            (st = plm_sde_drift(ctx, &s1, 0, nn, X, nn, L + (size_t)dd * nn))) {
            free(X);
            return st;
        }
    }
    for (i = 0; i < n && st == PLM_OK; i++) {
        const sde_kernel *K;
        double lin[72];   /* J and f of kernel i (d <= 8 here) */
        if (!plm_bffg_kernel_sde_of(ks[i])) {
            st = plm_fail(ctx, PLM_EINVAL, "bffg: not a diffusion kernel");
            break;
        }
        K = ks[i]->impl;
        if (batch && dd + d <= 72)
            for (j = 0; j < dd + d; j++) lin[j] = L[(size_t)j * (size_t)n + (size_t)i];
        st = sde_make(ctx, K->s, params, &K->o, K, how, plm_bffg_kernel_sde_of(sib) ? sib->impl : NULL,
                      batch && dd + d <= 72 ? lin : NULL, &out[i]);
        sib = out[i];
    }
    free(X);
    return st;
}
