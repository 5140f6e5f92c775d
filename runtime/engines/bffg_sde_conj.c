/* bffg_sde_conj.c -- what the conjugate parameter update of pCN (bffg_conj.c) needs from a diffusion kernel: its
** guided path with every grid state kept, the inverse (the innovations and log weight that give a path under
** another guide), and the Euler likelihood of a kept path as a quadratic form in parameters that enter the drift
** linearly.
**
** The Euler likelihood. On the grid, the path's increments are dX_k = b(X_k; theta) dt_k + sig sqrt(dt_k) Z_k.
** With b(x; theta) = phi0(x) + Phi(x) theta_B in the block theta_B, and sig+ the pseudo-inverse of sig,
**   Z_k = u_k - V_k theta_B,  u_k = sig+ (dX_k - phi0 dt_k) / sqrt(dt_k),  V_k = sig+ Phi sqrt(dt_k),
** so log p(X | theta) = const - sum |u_k - V_k theta_B|^2 / 2: a Gaussian in theta_B with precision sum V'V and
** precision times mean sum V'u. Phi = d b / d theta_B is built symbolically from the drift's expression
** (plm_bffg_sde_conj_prog), which also proves the drift linear in the block: every second derivative in it is the
** constant 0. The noise need not drive every coordinate (hypoelliptic models such as FitzHugh-Nagumo): a parameter
** must then enter only the drift of coordinates it drives (sig sig+ Phi = Phi, checked at every step), or the path
** alone would fix it. */
#include "bffg_sde_impl.h"

#include <gsl/gsl_eigen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

size_t plm_bffg_sde_grid(const plm_bffg_kernel *k, int *d, int *nz_step)
{
    const sde_kernel *K;
    if (!plm_bffg_kernel_sde_of(k)) return 0;
    K = k->impl;
    if (d) *d = K->d;
    if (nz_step) *nz_step = K->diag ? K->d : K->m;
    return K->N;
}

/* ---- the drift and the diffusion at a state ---------------------------------------------------------------- */

/* K's programs' inputs: its parameters, the time T (t, dt, sqrt(dt); at the first step here) and the state x. */
static void inputs_at(const sde_kernel *K, plm_prog_in *in, double *T, double *x)
{
    memset(in, 0, PLM_NGROUPS * sizeof *in);
    in[PLM_GRP_P].p = K->params;
    in[PLM_GRP_T].p = T;
    in[PLM_GRP_X].p = x;
    in[PLM_GRP_X].ld = 1;
    T[0] = K->t[0], T[1] = K->t[1] - K->t[0], T[2] = sqrt(T[1]);
}

/* The drift of K at the state x, for parameters p (np values), as a program point. */
typedef struct drift_at {
    plm_prog_point pt;
    plm_prog_in in[PLM_NGROUPS];
    double *bo[64];
    int ready;
} drift_at;

static plm_status drift_init(const sde_kernel *K, drift_at *D, const double *p, double *T, double *x, double *b)
{
    int i;
    memset(D->in, 0, sizeof D->in);
    D->in[PLM_GRP_P].p = p;
    D->in[PLM_GRP_T].p = T;
    D->in[PLM_GRP_X].p = x;
    D->in[PLM_GRP_X].ld = 1;
    for (i = 0; i < K->d; i++) D->bo[i] = b + i;
    D->ready = plm_prog_point_init(NULL, &D->pt, K->s->drift_prog, D->in, D->bo, NULL) == PLM_OK;
    return D->ready ? PLM_OK : PLM_ENOMEM;
}

static void drift_eval(const sde_kernel *K, drift_at *D, plm_prog_native_fn nat)
{
    if (K->drift_t) plm_prog_uniforms(&D->pt.w, D->in);
    if (nat) nat(D->pt.w.R, D->bo, plm_op_eval);
    else plm_prog_point_run(&D->pt);
}

static void drift_free(drift_at *D)
{
    if (D->ready) plm_prog_point_free(&D->pt);
    D->ready = 0;
}

/* The diffusion at the current inputs into sig; with S (nn * d) given, its Moore-Penrose pseudo-inverse sig+ too,
** and with N0 (nn * nn) given, I - sig+ sig (the innovations' part that does not move the state). nn: noises per
** step (d for a diagonal diffusion). Returns 0 when the eigensolver's memory could not be allocated. */
static int pinv(const sde_kernel *K, const double *sig, double *S, double *N0);

static int diffusion_at(const sde_kernel *K, plm_prog_ws *ws, const plm_prog_in *in, double *sig, double *S, double *N0)
{
    int nsig = K->diag ? K->d : K->d * K->m, i;
    double *so[64 * 64];
    for (i = 0; i < nsig; i++) so[i] = sig + i;
    plm_prog_block(ws, in, 0, 1, so, NULL);
    return S ? pinv(K, sig, S, N0) : 1;
}

/* S = sig+ and (N0 given) N0 = I - sig+ sig for K's diffusion value sig; 0 when out of memory. */
static int pinv(const sde_kernel *K, const double *sig, double *S, double *N0)
{
    int d = K->d, nn = K->diag ? d : K->m, i, j, l;
    double M[64], V[64], lam[8], lmax = 0;
    gsl_eigen_symmv_workspace *w;
    if (K->diag || nn == 1) {   /* the common cases in closed form (a state-dependent diffusion needs this per step) */
        double ss = 0, smax = 0;
        for (i = 0; i < (K->diag ? d : d * nn); i++) smax = fmax(smax, fabs(sig[i]));
        if (!K->diag) {   /* one noise: sig+ = sig' / |sig|^2 */
            for (i = 0; i < d; i++) ss += sig[i] * sig[i];
            for (i = 0; i < d; i++) S[i] = ss > 0 ? sig[i] / ss : 0;
            if (N0) N0[0] = ss > 0 ? 0 : 1;
            return 1;
        }
        for (i = 0; i < d; i++) {   /* diagonal: 1 / sig_i, and 0 (with the innovation kept) where sig_i is 0 */
            int live = fabs(sig[i]) > 1e-300 && fabs(sig[i]) > 1e-12 * smax;
            for (j = 0; j < d; j++) {
                S[i * d + j] = i == j && live ? 1 / sig[i] : 0;
                if (N0) N0[i * d + j] = i == j && !live;
            }
        }
        return 1;
    }
    /* M = sig' sig (nn x nn), its eigenvectors V and values lam; sig+ = V lam+ V' sig' */
    for (i = 0; i < nn; i++)
        for (j = 0; j < nn; j++) {
            double acc = 0;
            for (l = 0; l < d; l++) {
                double a = K->diag ? (l == i ? sig[l] : 0) : sig[l * nn + i];
                double c = K->diag ? (l == j ? sig[l] : 0) : sig[l * nn + j];
                acc += a * c;
            }
            M[i * nn + j] = acc;
        }
    if (!(w = gsl_eigen_symmv_alloc((size_t)nn))) return 0;
    {
        gsl_matrix_view mv = gsl_matrix_view_array(M, (size_t)nn, (size_t)nn);
        gsl_matrix_view vv = gsl_matrix_view_array(V, (size_t)nn, (size_t)nn);
        gsl_vector_view lv = gsl_vector_view_array(lam, (size_t)nn);
        gsl_eigen_symmv(&mv.matrix, &lv.vector, &vv.matrix, w);
    }
    gsl_eigen_symmv_free(w);
    for (i = 0; i < nn; i++) lmax = fmax(lmax, lam[i]);
    for (i = 0; i < nn; i++) lam[i] = lam[i] > 1e-12 * lmax ? 1 / lam[i] : 0;
    for (i = 0; i < nn; i++)   /* S = V lam+ V' sig' */
        for (j = 0; j < d; j++) {
            double acc = 0;
            for (l = 0; l < nn; l++) {
                double vs = 0;
                for (int q = 0; q < nn; q++) vs += V[q * nn + l] * (K->diag ? (j == q ? sig[j] : 0) : sig[j * nn + q]);
                acc += V[i * nn + l] * lam[l] * vs;
            }
            S[i * d + j] = acc;
        }
    if (N0)
        for (i = 0; i < nn; i++)
            for (j = 0; j < nn; j++) {
                double acc = i == j;
                for (l = 0; l < d; l++) acc -= S[i * d + l] * (K->diag ? (l == j ? sig[l] : 0) : sig[l * nn + j]);
                N0[i * nn + j] = acc;
            }
    return 1;
}

/* ---- the path, forward or inverse, and the Euler likelihood's quadratic form ---------------------------- */

/* The quadratic form's state along one path: prog gives at a state x the drift b(x) (d outputs) and its derivatives
** Phi[i][j] = d b_i / d theta_j (outputs d + i nb + j) of the block, which do not depend on theta_B (checked when the
** program is made: plm_bffg_sde_conj_prog). */
typedef struct conj_acc {
    int nb;
    const int *idx;
    const char *const *names;   /* the block's parameters' names for messages, or NULL */
    double *P, *mv;
    plm_status st;
    plm_ctx *ctx;
} conj_acc;

/* "parameter 'name'", or "sde parameter i" without names. */
static const char *param_name(const char *const *names, const int *idx, int j, char *buf, size_t n)
{
    if (names && names[j]) snprintf(buf, n, "parameter '%s'", names[j]);
    else snprintf(buf, n, "sde parameter %d", idx[j] + 1);
    return buf;
}

/* One step's share of the quadratic form: bp the drift and its derivatives at x, X1 the next state. */
static inline __attribute__((always_inline)) int
acc_step(const sde_kernel *K, conj_acc *A, const double *bp, const double *x, const double *X1, const double *sig,
         const double *S, double dt, double sdt, const int d, const int nn)
{
    int nb = A->nb, i, j, l, q;
    const double *Phi = bp + d;   /* Phi[i * nb + j] */
    double V[8][4], u[8], e[8], rs = 1 / sdt;
    /* u = sig+ (dX - phi0 dt) / sqrt(dt), phi0 = b(theta) - Phi theta_B; V = sig+ Phi (times sqrt(dt) below) */
    for (i = 0; i < d; i++) {
        double phi0 = bp[i];
        for (j = 0; j < nb; j++) phi0 -= Phi[i * nb + j] * K->params[A->idx[j]];
        e[i] = (X1[i] - x[i] - phi0 * dt) * rs;
    }
    for (l = 0; l < nn; l++) {
        double acc = 0;
        for (i = 0; i < d; i++) acc += S[l * d + i] * e[i];
        u[l] = acc;
        for (j = 0; j < nb; j++) {
            acc = 0;
            for (i = 0; i < d; i++) acc += S[l * d + i] * Phi[i * nb + j];
            V[l][j] = acc;
        }
    }
    /* the noise must drive whatever the block moves: Phi = sig sig+ Phi */
    for (j = 0; j < nb; j++)
        for (i = 0; i < d; i++) {
            double back = 0, ph = Phi[i * nb + j];
            for (l = 0; l < nn; l++) back += (K->diag ? (i == l ? sig[i] : 0) : sig[i * nn + l]) * V[l][j];
            if (!(fabs(back - ph) <= 1e-9 * (fabs(ph) + fabs(back)) + 1e-300)) {
                char nm[96];
                A->st = plm_fail(A->ctx, PLM_EINVAL, "bffg mcmc: conjugate update: %s enters the drift of coordinate %d, "
                                                     "which the noise does not drive: given the path it is fixed; give it "
                                                     "a random-walk block", param_name(A->names, A->idx, j, nm, sizeof nm),
                                 i + 1);
                return 1;
            }
        }
    for (j = 0; j < nb; j++) {
        double acc = 0;
        for (l = 0; l < nn; l++) acc += V[l][j] * u[l];
        A->mv[j] += acc * sdt;
        for (q = 0; q < nb; q++) {
            acc = 0;
            for (l = 0; l < nn; l++) acc += V[l][j] * V[l][q];
            A->P[j * nb + q] += acc * dt;
        }
    }
    return 0;
}

/* The walk of plm_bffg_sde_walk, with the dimensions as constants for the common small cases (0: K's). */
static inline __attribute__((always_inline)) double
walk_d(const plm_bffg_kernel *k, const void *guide, double *X, const double *zin, double *zout, int inverse, const int D,
       const int M)
{
    const sde_kernel *K = k->impl;
    const sde_guide *g = guide;
    int d = D ? D : K->d, m = M ? M : K->m, nn = K->diag ? d : m, i, j, l, same_a = 0, ok = 1;
    double x[8], b[8], sig[64], a[64] = {0}, da[64] = {0}, r[8], S[64], N0[64], T[3], intG = 0, lw;
    plm_prog_native_fn nat = K->drift_native && plm_native_enabled() ? K->drift_native : NULL;
    plm_prog_ws ws;
    plm_prog_in in[PLM_NGROUPS];
    drift_at Dr;
    size_t kk, N = K->N;
    inputs_at(K, in, T, x);
    memcpy(x, X, (size_t)d * sizeof *x);
    if (drift_init(K, &Dr, K->params, T, x, b)) return NAN;
    if (plm_prog_ws_init_block(NULL, &ws, K->s->diff_prog, 1)) {
        drift_free(&Dr);
        return NAN;
    }
    plm_prog_uniforms(&ws, in);
    lw = logh(g, 0, d, x);
    for (kk = 0; kk < N && ok; kk++) {
        double Fk[2];
        const double *F = guide_F(g, kk, d, Fk), *H = g->H + kk * (size_t)d * d;
        double dt = K->t[kk + 1] - K->t[kk], sdt = K->t[N + 1 + kk];
        double *xn = X + (kk + 1) * (size_t)d;
        for (i = 0; i < d; i++) x[i] = X[kk * (size_t)d + i];
        T[0] = K->t[kk], T[1] = dt, T[2] = sdt;
        drift_eval(K, &Dr, nat);
        if (K->diff_var || kk == 0) {
            if (K->diff_t) plm_prog_uniforms(&ws, in);
            if (!diffusion_at(K, &ws, in, sig, inverse ? S : NULL, inverse ? N0 : NULL)) {
                ok = 0;
                break;
            }
            same_a = diff_moments(K, d, m, sig, a, da);
        }
        intG += guide_r_G(K, F, H, d, x, b, da, same_a, r) * dt;   /* r = F - H x, and G */
        if (!inverse) {   /* x' = x + (b + a r) dt + sig sqrt(dt) z, as sde_path_d */
            const double *zk = zin + kk * (size_t)nn;
            for (i = 0; i < d; i++) {
                double drift = b[i], noise = 0;
                for (j = 0; j < d; j++) drift += a[i * d + j] * r[j];
                if (K->diag) noise = sig[i] * (zk[i] * sdt);
                else
                    for (l = 0; l < m; l++) noise += sig[i * m + l] * (zk[l] * sdt);
                xn[i] = x[i] + drift * dt + noise;
                ok &= isfinite(xn[i]);
            }
        } else {   /* z = sig+ (x' - x - (b + a r) dt) / sqrt(dt) + (I - sig+ sig) zold */
            double e[8], rs = 1 / sdt;
            const double *zo = zin + kk * (size_t)nn;
            double *zk = zout + kk * (size_t)nn;
            for (i = 0; i < d; i++) {
                double drift = b[i];
                for (j = 0; j < d; j++) drift += a[i * d + j] * r[j];
                e[i] = (xn[i] - x[i] - drift * dt) * rs;
            }
            for (l = 0; l < nn; l++) {
                double acc = 0;
                for (i = 0; i < d; i++) acc += S[l * d + i] * e[i];
                for (j = 0; j < nn; j++) acc += N0[l * nn + j] * zo[j];
                zk[l] = acc;
                ok &= isfinite(acc);
            }
        }
    }
    drift_free(&Dr);
    plm_prog_ws_free(&ws);
    if (!ok) return NAN;
    return lw - logh(g, N, d, X + N * (size_t)d) + intG;
}

static double walk(const plm_bffg_kernel *k, const void *guide, double *X, const double *zin, double *zout, int inverse)
{
    const sde_kernel *K = k->impl;
    if (K->d == 1 && K->m == 1) return walk_d(k, guide, X, zin, zout, inverse, 1, 1);
    if (K->d == 2 && K->m == 1) return walk_d(k, guide, X, zin, zout, inverse, 2, 1);
    if (K->d == 2 && K->m == 2) return walk_d(k, guide, X, zin, zout, inverse, 2, 2);
    return walk_d(k, guide, X, zin, zout, inverse, 0, 0);
}

double plm_bffg_sde_walk(const plm_bffg_kernel *k, const void *guide, double *X, const double *zin, double *zout, int inverse)
{
    const sde_kernel *K = k->impl;
    const sde_guide *g = guide;
    if (K->d > 8 || (K->diag ? K->d : K->m) > 8) return NAN;   /* (bffg_conj.c refuses such kernels first) */
    if (inverse && K->path_native && K->path_native->inv && K->plan && K->drift_native && plm_native_enabled()) {
        /* natively where the path is native: a constant diffusion, so sig+ once */
        const path_plan *Pl = K->plan;
        double S[64], N0[64], intG = 0;
        int d = K->d;
        if (!pinv(K, Pl->sig, S, N0)) return NAN;
        if (K->path_native->inv(Pl->R, plm_op_eval, K->N, K->t, g->F, g->L, g->v, g->H, K->B, K->beta, Pl->a, Pl->da,
                                Pl->same_a, S, N0, zin, X, zout, &intG))
            return NAN;
        return logh(g, 0, d, X) - logh(g, K->N, d, X + K->N * (size_t)d) + intG;
    }
    return walk(k, guide, X, zin, zout, inverse);
}

/* The quadratic form over the kept path X: no step depends on another's result, so the CPU overlaps them. */
static inline __attribute__((always_inline)) plm_status acc_pass_d(const sde_kernel *K, conj_acc *A, const plm_prog *prog,
                                                                  const double *X, const int D, const int M)
{
    int d = D ? D : K->d, m = M ? M : K->m, nn = K->diag ? d : m, i, nout = d + d * A->nb;
    double x[8], sig[64], S[64], T[3], bp[40], *bo[40];
    plm_prog_native_fn nat = plm_native_enabled() ? plm_prog_native(prog) : NULL;
    plm_prog_ws ws;
    plm_prog_in in[PLM_NGROUPS];
    plm_prog_point pt;
    size_t kk, N = K->N;
    plm_status st = PLM_OK;
    (void)m;
    inputs_at(K, in, T, x);
    for (i = 0; i < d; i++) x[i] = X[i];
    for (i = 0; i < nout; i++) bo[i] = bp + i;
    if (plm_prog_point_init(NULL, &pt, prog, in, bo, NULL))
        return plm_fail(A->ctx, PLM_ENOMEM, "bffg mcmc: conjugate update: out of memory");
    if (plm_prog_ws_init_block(NULL, &ws, K->s->diff_prog, 1)) {
        plm_prog_point_free(&pt);
        return plm_fail(A->ctx, PLM_ENOMEM, "bffg mcmc: conjugate update: out of memory");
    }
    plm_prog_uniforms(&ws, in);
    for (kk = 0; kk < N; kk++) {
        double dt = K->t[kk + 1] - K->t[kk], sdt = K->t[N + 1 + kk];
        for (i = 0; i < d; i++) x[i] = X[kk * (size_t)d + i];
        T[0] = K->t[kk], T[1] = dt, T[2] = sdt;
        if (K->drift_t) plm_prog_uniforms(&pt.w, in);
        if (nat) nat(pt.w.R, bo, plm_op_eval);
        else plm_prog_point_run(&pt);
        if (K->diff_var || kk == 0) {
            if (K->diff_t) plm_prog_uniforms(&ws, in);
            if (!diffusion_at(K, &ws, in, sig, S, NULL)) {
                st = plm_fail(A->ctx, PLM_ENOMEM, "bffg mcmc: conjugate update: out of memory");
                break;
            }
        }
        if (acc_step(K, A, bp, x, X + (kk + 1) * (size_t)d, sig, S, dt, sdt, d, nn)) {
            st = A->st;
            break;
        }
    }
    plm_prog_ws_free(&ws);
    plm_prog_point_free(&pt);
    return st;
}

static plm_status acc_pass(const sde_kernel *K, conj_acc *A, const plm_prog *prog, const double *X)
{
    if (K->d == 1 && K->m == 1) return acc_pass_d(K, A, prog, X, 1, 1);
    if (K->d == 2 && K->m == 1) return acc_pass_d(K, A, prog, X, 2, 1);
    if (K->d == 2 && K->m == 2) return acc_pass_d(K, A, prog, X, 2, 2);
    return acc_pass_d(K, A, prog, X, 0, 0);
}

plm_status plm_bffg_sde_conj_prog(plm_ctx *ctx, const plm_sde *s, int nb, const int *idx, const char *const *names,
                                  plm_prog **out)
{
    const char *fn = "bffg mcmc: conjugate update";
    int d = s->dim, i, j, l, outs[40], pin[4], dd[4];
    char nm[96];
    plm_status st;
    if (nb < 1 || nb > 4 || d > 8)
        return plm_fail(ctx, PLM_EINVAL, "%s: 1 to 4 parameters in a block and at most 8 states (got %d, %d)", fn, nb, d);
    for (j = 0; j < nb; j++) {
        if (idx[j] < 0 || idx[j] >= s->np) return plm_fail(ctx, PLM_EINVAL, "%s: no sde parameter %d", fn, idx[j] + 1);
        if (plm_prog_uses(s->diff_prog, PLM_GRP_P, idx[j]))
            return plm_fail(ctx, PLM_EINVAL, "%s: %s enters the diffusion coefficient; give it a random-walk block", fn,
                            param_name(names, idx, j, nm, sizeof nm));
        pin[j] = plm_graph_input(s->g, PLM_GRP_P, idx[j]);
    }
    /* b, and Phi = d b / d theta_B symbolically; the drift is linear in the block exactly when every second derivative
    ** d Phi_ij / d theta_l is the constant 0 */
    for (i = 0; i < d; i++) {
        outs[i] = s->drift[i];
        if ((st = plm_graph_grad(ctx, s->g, s->drift[i], nb, pin, outs + d + i * nb))) return st;
        for (j = 0; j < nb; j++) {
            if ((st = plm_graph_grad(ctx, s->g, outs[d + i * nb + j], nb, pin, dd))) return st;
            for (l = 0; l < nb; l++) {
                double v;
                if (!(plm_graph_is_const(s->g, dd[l], &v) && v == 0))
                    return plm_fail(ctx, PLM_EINVAL, "%s: the drift is not linear in %s (coordinate %d%s); give it a "
                                                     "random-walk block", fn, param_name(names, idx, l == j ? j : l, nm,
                                                     sizeof nm), i + 1, l == j ? "" : ", jointly with the block");
            }
        }
    }
    return plm_prog_compile(ctx, s->g, d + d * nb, outs, 1u << PLM_GRP_X, out);
}

void plm_bffg_sde_keep_prepare(const plm_bffg_kernel *k)
{
    const sde_kernel *K = plm_bffg_kernel_sde_of(k) ? k->impl : NULL;
    if (K && K->path_native && plm_native_enabled()) plm_bffg_path_native_keep((plm_bffg_path_native *)K->path_native);
}

plm_status plm_bffg_sde_keep(plm_ctx *ctx, const plm_bffg_kernel *k, const void *guide, double *X, const double *z, int nb,
                             const int *idx, const char *const *names, const plm_prog *prog, double *P, double *mv,
                             double *lw)
{
    const sde_kernel *K = k->impl;
    const sde_guide *g = guide;
    int d = K->d;
    conj_acc A;
    if (K->d > 8 || (K->diag ? K->d : K->m) > 8)
        return plm_fail(ctx, PLM_EINVAL, "bffg mcmc: conjugate update: at most 8 states and noises (got %d)", K->d);
    /* the path: natively where sample_z runs natively (the same draw bit for bit), else by the walk */
    if (K->path_native && K->path_native->keep && K->plan && K->drift_native && plm_native_enabled()) {
        const path_plan *Pl = K->plan;
        double x[8], intG = 0;
        memcpy(x, X, (size_t)d * sizeof *x);
        *lw = logh(g, 0, d, x);
        if (K->path_native->keep(Pl->R, plm_op_eval, K->N, K->t, g->F, g->L, g->v, g->H, K->B, K->beta, Pl->a, Pl->da,
                                 Pl->same_a, Pl->sig, z, x, &intG, X)) {
            *lw = NAN;
            return PLM_OK;
        }
        *lw += intG - logh(g, K->N, d, x);
    } else if (!isfinite(*lw = walk(k, guide, X, z, NULL, 0)))
        return PLM_OK;
    memset(&A, 0, sizeof A);
    A.nb = nb, A.idx = idx, A.names = names, A.P = P, A.mv = mv, A.ctx = ctx;
    return acc_pass(K, &A, prog, X);
}
