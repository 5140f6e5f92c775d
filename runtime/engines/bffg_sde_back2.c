/* bffg_sde_back2.c -- the backward filter of a 2-dimensional diffusion kernel (bffg_sde.c's K->two case): the
** child's message pulled back through the auxiliary's exact step transitions, every grid message kept. Runs of equal
** steps go by the linear-fractional form of the Riccati recursion (lf_run), the rest one step at a time in the
** Cholesky form of bffg_kernel.c's pull-back (step_back2). Most of a parameter move of pCN in the default mode. */
#include "bffg_sde_impl.h"

#include <math.h>
#include <string.h>

/* One step of the backward filter for d = 2 through a linear-Gaussian step kernel of full rank: bffg_kernel.c's
** lg_pullback with the same operations in the same order, for constant sizes and in place (the steps lf_run does
** not take). c receives everything but -log det R, the determinant of the Cholesky factor R of
** I + G'HG, which is returned (>= 1 up to rounding; 0 when I + G'HG is not positive definite): the caller takes
** one log of a product of many. */
static inline double step_back2(const plm_bffg_kernel *k, double *c, double *F, double *H)
{
    const double *G = k->G, *B = k->B, *beta = k->beta;
    double GtH[4], R[4], u[2], Ht[4], Ft[2], Hb[2], T[4], uu = 0, acc, det;
    int a, b, i, j, l;
    for (a = 0; a < 2; a++)
        for (j = 0; j < 2; j++) {
            acc = 0;
            for (i = 0; i < 2; i++) acc += G[i * 2 + a] * H[i * 2 + j];
            GtH[a * 2 + j] = acc;
        }
    for (a = 0; a < 2; a++)
        for (b = 0; b <= a; b++) {
            acc = 0;
            for (j = 0; j < 2; j++) acc += GtH[a * 2 + j] * G[j * 2 + b];
            R[a * 2 + b] = acc + (a == b);
        }
    /* R = chol(I + G'HG), lower */
    if (!(R[0] > 0)) return 0;
    R[0] = sqrt(R[0]);
    R[2] = R[2] / R[0];
    acc = R[3] - R[2] * R[2];
    if (!(acc > 0)) return 0;
    R[3] = sqrt(acc);
    det = R[0] * R[3];
    /* W = R^-1 G'H (in GtH), u = R^-1 G'F */
    for (a = 0; a < 2; a++) {
        acc = 0;
        for (i = 0; i < 2; i++) acc += G[i * 2 + a] * F[i];
        u[a] = acc;
    }
    for (j = 0; j < 2; j++) {
        GtH[j] = GtH[j] / R[0];
        GtH[2 + j] = (GtH[2 + j] - R[2] * GtH[j]) / R[3];
    }
    u[0] = u[0] / R[0];
    u[1] = (u[1] - R[2] * u[0]) / R[3];
    for (a = 0; a < 2; a++) uu += u[a] * u[a];
    /* H~ = H - W'W, F~ = F - W'u */
    for (i = 0; i < 2; i++) {
        for (j = 0; j <= i; j++) {
            acc = H[i * 2 + j];
            for (a = 0; a < 2; a++) acc -= GtH[a * 2 + i] * GtH[a * 2 + j];
            Ht[i * 2 + j] = Ht[j * 2 + i] = acc;
        }
        acc = F[i];
        for (a = 0; a < 2; a++) acc -= GtH[a * 2 + i] * u[a];
        Ft[i] = acc;
    }
    /* through mu = B x + beta */
    for (i = 0; i < 2; i++) {
        acc = 0;
        for (j = 0; j < 2; j++) acc += Ht[i * 2 + j] * beta[j];
        Hb[i] = acc;
    }
    acc = 0;
    for (i = 0; i < 2; i++) acc += beta[i] * (Ft[i] - 0.5 * Hb[i]);
    *c += 0.5 * uu + acc;
    for (l = 0; l < 2; l++) {
        acc = 0;
        for (i = 0; i < 2; i++) acc += B[i * 2 + l] * (Ft[i] - Hb[i]);
        F[l] = acc;
    }
    for (i = 0; i < 2; i++)
        for (l = 0; l < 2; l++) {
            acc = 0;
            for (j = 0; j < 2; j++) acc += Ht[i * 2 + j] * B[j * 2 + l];
            T[i * 2 + l] = acc;
        }
    for (l = 0; l < 2; l++)
        for (a = 0; a <= l; a++) {
            acc = 0;
            for (i = 0; i < 2; i++) acc += B[i * 2 + l] * T[i * 2 + a];
            H[l * 2 + a] = H[a * 2 + l] = acc;
        }
    return det;
}

#define RENORM 16

/* Two doubles as one value (GCC and Clang vector extensions; SSE2 on x86-64): lf_run keeps the rows of its 2 x 2
** matrices this way, half the instructions of the scalar loop, with the same operations in the same order. */
typedef double v2d __attribute__((vector_size(16)));

static inline v2d v2_load(const double *p)
{
    v2d v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A run of n steps through one linear-Gaussian step kernel sk (d = 2, full rank), from the message (c, F, H) at grid
** point k1 down to k1 - n, by the linear-fractional form of the backward Riccati recursion: with H = Y X^-1 and
** F = X^-T g (X = I, Y = H, g = F at the run's end), the pull-back through x' = Phi x + m + N(0, Q) is
**   X <- Phi^-1 (X + Q Y),  Y <- Phi' Y,  g <- g - Y' m,
** linear in (X, Y, g): no square root, and no division on the way from one step to the next, where step_back2 has
** two square roots and seven divisions (the backward filter is most of a parameter move of pCN in the default mode;
** this form takes about half step_back2's time per step here). The step's log det(I + Q H) telescopes to
** log det Phi + log det X_k - log det X_k+1, and the constant's quadratic part is
**   F'm - m'Hm / 2 + (F - H m)' Q Phi^-T F_k / 2   (F, H at the step's end, F_k at its start).
** X is reset to I (Y, g to the message) every RENORM steps and whenever it drifts from I, so that X^-1 stays well
** conditioned. Returns the number of steps done (< n when a determinant is not positive: the caller goes on with
** step_back2 from there, so nothing is lost but speed); *c, F, H hold the message at k1 - (returned), and with g
** every grid message is stored. *ldet accumulates half the log det terms, as step_back2's log det R (the caller
** subtracts them once: c holds everything else). */
static size_t lf_run(const plm_bffg_kernel *sk, size_t k1, size_t n, double *c, double *F, double *H, double *ldet,
                     sde_guide *g)
{
    const double *Gm = sk->G;
    /* (local copies: the stores of the grid messages below could alias sk's arrays, which would reload them at
    ** every step) */
    const double Phi[4] = {sk->B[0], sk->B[1], sk->B[2], sk->B[3]}, m[2] = {sk->beta[0], sk->beta[1]};
    double Q[4], Pi[4], P[4], dPhi, ldPhi, seg = 0;
    v2d X0, X1, Y0, Y1, gg, Hr0, Hr1, Fv, mv = v2_load(m), Pc0, Pc1, qacc = {0, 0};
    const v2d e0 = {1, 0}, e1 = {0, 1};
    size_t done = 0, inseg = 0;
    int i, j;
    for (i = 0; i < 2; i++)
        for (j = 0; j < 2; j++) Q[i * 2 + j] = Gm[i * 2] * Gm[j * 2] + Gm[i * 2 + 1] * Gm[j * 2 + 1];
    dPhi = Phi[0] * Phi[3] - Phi[1] * Phi[2];
    if (!(dPhi > 0) || !isfinite(dPhi)) return 0;
    ldPhi = log(dPhi);
    Pi[0] = Phi[3] / dPhi, Pi[1] = -Phi[1] / dPhi, Pi[2] = -Phi[2] / dPhi, Pi[3] = Phi[0] / dPhi;
    for (i = 0; i < 2; i++)   /* P = Q Phi^-T: P_ij = sum_l Q_il Pi_jl */
        for (j = 0; j < 2; j++) P[i * 2 + j] = Q[i * 2] * Pi[j * 2] + Q[i * 2 + 1] * Pi[j * 2 + 1];
    Pc0 = (v2d){P[0], P[2]}, Pc1 = (v2d){P[1], P[3]};   /* P's columns */
    X0 = e0, X1 = e1;
    Hr0 = v2_load(H), Hr1 = v2_load(H + 2), Fv = v2_load(F);
    Y0 = Hr0, Y1 = Hr1, gg = Fv;
    while (done < n) {
        v2d QY0, QY1, Xn0, Xn1, Yn0, Yn1, gn, I0, I1, Hn0, Hn1, Fn, Hm, w, PF, qv;
        double det, id, h01;
        /* the recursion: rows of X + Q Y, of Phi^-1 (X + Q Y) and of Phi' Y */
        QY0 = X0 + Q[0] * Y0 + Q[1] * Y1;
        QY1 = X1 + Q[2] * Y0 + Q[3] * Y1;
        Xn0 = Pi[0] * QY0 + Pi[1] * QY1;
        Xn1 = Pi[2] * QY0 + Pi[3] * QY1;
        Yn0 = Phi[0] * Y0 + Phi[2] * Y1;
        Yn1 = Phi[1] * Y0 + Phi[3] * Y1;
        gn = gg - (m[0] * Y0 + m[1] * Y1);
        /* the message at the step's start: H = Yn Xn^-1 (made symmetric), F = Xn^-T gn */
        det = Xn0[0] * Xn1[1] - Xn0[1] * Xn1[0];
        if (!(det > 0) || !isfinite(det)) break;
        id = 1 / det;
        I0 = (v2d){Xn1[1], -Xn0[1]} * id;   /* rows of Xn^-1 */
        I1 = (v2d){-Xn1[0], Xn0[0]} * id;
        Hn0 = Yn0[0] * I0 + Yn0[1] * I1;
        Hn1 = Yn1[0] * I0 + Yn1[1] * I1;
        h01 = 0.5 * (Hn0[1] + Hn1[0]);
        Hn0[1] = Hn1[0] = h01;
        Fn = gn[0] * I0 + gn[1] * I1;
        if (!(Hn0[0] >= 0 && Hn1[1] >= 0 && isfinite(Fn[0]) && isfinite(Fn[1]))) break;
        /* the constant: F'm - m'Hm / 2 + (F - H m)' P F_k / 2 with F, H the step's end (H symmetric: H m =
        ** m0 H_row0 + m1 H_row1) */
        Hm = m[0] * Hr0 + m[1] * Hr1;
        w = Fv - Hm;
        PF = Fn[0] * Pc0 + Fn[1] * Pc1;
        qv = Fv * mv - 0.5 * (mv * Hm) + 0.5 * (w * PF);
        qacc += qv;   /* (as two sums, added at the end: one short dependency per step) */
        Hr0 = Hn0, Hr1 = Hn1, Fv = Fn;
        done++, inseg++;
        if (g) {
            memcpy(g->F + 2 * (k1 - done), &Fv, sizeof Fv);
            memcpy(g->H + 4 * (k1 - done), &Hr0, sizeof Hr0);
            memcpy(g->H + 4 * (k1 - done) + 2, &Hr1, sizeof Hr1);
        }
        if (inseg == RENORM ||
            !(det > 0.25 && fabs(Xn0[0]) < 4 && fabs(Xn0[1]) < 4 && fabs(Xn1[0]) < 4 && fabs(Xn1[1]) < 4)) {
            /* restart from the message: X = I */
            seg += (double)inseg * ldPhi + log(det);
            inseg = 0;
            X0 = e0, X1 = e1, Y0 = Hr0, Y1 = Hr1, gg = Fv;
        } else
            X0 = Xn0, X1 = Xn1, Y0 = Yn0, Y1 = Yn1, gg = gn;
    }
    if (inseg) seg += (double)inseg * ldPhi + log(X0[0] * X1[1] - X0[1] * X1[0]);
    memcpy(F, &Fv, sizeof Fv);
    memcpy(H, &Hr0, sizeof Hr0);
    memcpy(H + 2, &Hr1, sizeof Hr1);
    *c += qacc[0] + qacc[1];
    *ldet += 0.5 * seg;
    return done;
}

/* sde_backward for K->two (bffg_sde.c): the message stays in registers, each grid message is stored once. Runs of 4 or more
** steps through one step kernel (every step of an equally spaced grid) go by lf_run; a run it cannot finish, and
** single steps, by step_back2, whose log determinants are summed as one log per 2^600 or so of their product. */
plm_status plm_bffg_sde_backward2(plm_ctx *ctx, const sde_kernel *K, const plm_bffg_msg *child, sde_guide *g,
                                  plm_bffg_msg *out)
{
    double c = child->c, F[2], H[4], prod = 1, logdet = 0;
    size_t k = K->N;
    memcpy(F, child->v, sizeof F);
    memcpy(H, child->H, sizeof H);
    if (g) {
        g->c[1] = c;
        memcpy(g->F + 2 * k, F, sizeof F);
        memcpy(g->H + 4 * k, H, sizeof H);
    }
    for (size_t r = K->nrun; k > 0;) {
        const plm_bffg_kernel *sk = K->step[k - 1];
        size_t n, done;
        double det;
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg: interrupted");
        while (K->run[r - 1] >= k) r--;   /* the run of step k - 1: from K->run[r - 1] */
        n = k - K->run[r - 1];
        if (n > 4096) n = 4096;
        if (n >= 4 && (done = lf_run(sk, k, n, &c, F, H, &logdet, g)) > 0) {
            k -= done;
            continue;
        }
        for (; n > 0; n--, k--) {   /* (n steps, all with step_back2 when lf_run could not start) */
            if (!(det = step_back2(K->step[k - 1], &c, F, H))) return plm_fail(ctx, PLM_EDOM, ILL_CONDITIONED);
            prod *= det;
            if (!(prod < 0x1p600 && prod > 0x1p-600)) {
                logdet += log(prod);
                prod = 1;
            }
            if (g) {
                memcpy(g->F + 2 * (k - 1), F, sizeof F);
                memcpy(g->H + 4 * (k - 1), H, sizeof H);
            }
        }
    }
    c -= logdet + log(prod);
    if (g) g->c[0] = c;
    out->c = c;
    memcpy(out->v, F, sizeof F);
    memcpy(out->H, H, sizeof H);
    return PLM_OK;
}

