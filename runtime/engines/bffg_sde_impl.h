/* bffg_sde_impl.h -- private to the diffusion kernels (bffg_sde.c, bffg_sde_conj.c): a diffusion kernel's fields and
** its guides' layout. Not installed. */
#ifndef PLM_BFFG_SDE_IMPL_H
#define PLM_BFFG_SDE_IMPL_H

#include "bffg_impl.h"
#include "bffg_sde_native.h"
#include "expr_native.h"

#include <string.h>

/* A diffusion kernel (k->impl). */
typedef struct sde_kernel {
    const plm_sde *s;
    double *params;                   /* the parameters when the kernel was made */
    int d, m, diag;                   /* state and noise dimensions; diag: diffusion given as d entries */
    int drift_t, diff_t, diff_var;    /* the drift reads the time; the diffusion reads the time; ... time or state */
    plm_bffg_sde_opts o;              /* the options it was made with (pointers to copies), for new parameters */
    size_t N;                         /* steps */
    double *t;                        /* N + 1 grid times, then the N square roots of the steps (for the forward pass) */
    double *B, *beta, *a;             /* the auxiliary */
    const plm_bffg_kernel **step;     /* N linear-Gaussian kernels: the auxiliary's transition over each step (NULL
                                      ** until needed in a kernel remade with a frozen B~, a~) */
    const size_t *run;                /* with step: the first step of each run of steps sharing one kernel, then N */
    size_t nrun;                      /* (runs; shared by the kernels remade from this one, as t is) */
    int two;                          /* d = 2 and every step's covariance has rank 2: step_back2 applies */
    struct sde_frozen *frz;           /* (how 1) filled when this kernel's guide is made: see sde_frozen */
    const struct sde_frozen *src;     /* (how 2) the frozen cache of the kernel this one was remade from */
    plm_prog_native_fn drift_native;  /* the drift's native code (expr_native.h), or NULL: the interpreter */
    const plm_bffg_path_native *path_native;   /* the whole guided path natively (bffg_sde_native.h), or NULL */
    struct path_plan *plan;           /* with path_native: its inputs that stay fixed (see path_plan), or NULL */
    int plan_shared;                  /* plan is also another kernel's (a sibling's: see sde_make): left to the collector */
} sde_kernel;

/* the native path's functions: bffg_sde_native.h */
typedef plm_bffg_path_fn path_fn;
typedef plm_bffg_path_args path_args;

/* What the native path reads that is fixed for a kernel: the drift's uniform registers and the constant diffusion's
** sig, a = sig sig' and a - a~ (a~ the auxiliary's), evaluated once when the kernel is made rather than at every
** path: pCN runs a kernel's path thousands of times, and the set-up cost as much as a tenth of a 1,000-step path. */
typedef struct path_plan {
    double *const *R;
    double *sig, *a, *da;   /* nsig, d * d, d * d */
    int same_a;             /* a = a~: the trace term of G is 0 */
} path_plan;

/* A frozen auxiliary (plm_bffg_kernel_sde_remake, how 1 and 2). With B~ and a~ fixed, the messages' H(t_k) on the
** grid depend only on the message H_N at t1, and the pull-back is affine in F and in the intercept beta~ (each
** step's mean is m_k = Psi_k beta~, Psi_k = integral_0^h exp(B~ u) du): for v = [F_N; beta~] (2d = 4 values),
**   F_k = L_k v (L_k: d x 2d),  c(t0) = c_N + v'Om v / 2 - logdet,
** with L_N = [I 0] and, through a step with P = R^-1 G', S = I - H P'P, H~ = H - H P'P H (bffg_kernel.c's algebra,
** H the message at the step's end):
**   L_k = Phi'(S L_k+1 - H~ Psi J),  Om += (P L)'(P L) + M + M' - J'Psi'H~ Psi J,  M = J'Psi'S L (L = L_k+1),
** J = [0 I] picking beta~, logdet = sum log det R. A kernel remade at new parameters with the same B~, a~ (beta~
** relinearised) then gets its guide in O(N d^2) without a square root, and c(t0) in O(1), whenever its child's
** H_N is the one the cache was made with (bit for bit; else the full filter runs). d = 2 only (step_back2's case). */
typedef struct sde_frozen {
    int ready;
    double Hend[4];   /* the H_N it was made with */
    double *L;        /* (N + 1) * 8 */
    double *H;        /* (N + 1) * 4: the grid messages' H, shared by the guides made from the cache */
    double Om[16], logdet;
} sde_frozen;

/* The messages at the grid points: log h~(t_k, x) = c[k] + F[k]'x - x'H[k]x/2, k = 0..N. Only c[0] and c[N] are
** read (the forward pass needs the normalising constant at the ends alone), and only they are kept. */
typedef struct sde_guide {
    double c[2], *F, *H;   /* c[0] at t0, c[1] at t1 */
    int own;               /* F (with H) is the guide's own allocation, not the filter's storage */
    const double *L;       /* a frozen cache's (frozen_guide): F is NULL, and F(t_k) = L_k v is formed where it is read */
    double v[4];
} sde_guide;

/* F(t_k) of guide g: a pointer into g->F, or formed from the frozen cache into Fk (d = 2). A parameter move of pCN
** with fixed_aux makes a guide per diffusion kernel and reads most of them once: forming F in the forward pass
** costs four products per step off its critical path, where storing it cost an allocation of the whole grid. */
static inline const double *guide_F(const sde_guide *g, size_t k, int d, double *Fk)
{
    const double *L = g->L, *v = g->v;
    if (!L) return g->F + k * (size_t)d;
    L += 8 * k;
    Fk[0] = L[0] * v[0] + L[1] * v[1] + L[2] * v[2] + L[3] * v[3];
    Fk[1] = L[4] * v[0] + L[5] * v[1] + L[6] * v[2] + L[7] * v[3];
    return Fk;
}

/* log h~(t_k, x) at k = 0 or N (c[0] or c[1]). */
static inline double logh(const sde_guide *g, size_t k, int d, const double *x)
{
    double Fk[2];
    const double *F = guide_F(g, k, d, Fk), *H = g->H + k * (size_t)d * d;
    double l = g->c[k != 0];
    for (int i = 0; i < d; i++) {
        double hx = 0;
        for (int j = 0; j < d; j++) hx += H[i * d + j] * x[j];
        l += x[i] * (F[i] - 0.5 * hx);
    }
    return l;
}

/* a = sig sig' and da = a - a~ for K's diffusion value sig; returns 1 when da = 0 (a constant diffusion equal to the
** auxiliary's). */
static inline int diff_moments(const sde_kernel *K, int d, int m, const double *sig, double *a, double *da)
{
    int i, j, l, same = 1;
    for (i = 0; i < d; i++)
        for (j = 0; j <= i; j++) {
            double v = 0;
            if (K->diag) v = i == j ? sig[i] * sig[i] : 0;
            else
                for (l = 0; l < m; l++) v += sig[i * m + l] * sig[j * m + l];
            a[i * d + j] = a[j * d + i] = v;
            da[i * d + j] = v - K->a[i * d + j];
            da[j * d + i] = v - K->a[j * d + i];
        }
    for (i = 0; i < d * d; i++) same &= da[i] == 0;
    return same;
}

/* The guiding at one Euler step: r = F - H x into r, and returns G = (b - b~)'r - tr[(a - a~)(H - r r')] / 2 at x
** (the trace term only when a != a~), b the drift at x. The forward and inverse walks share it, in this order of
** operations. */
static inline double guide_r_G(const sde_kernel *K, const double *F, const double *H, int d, const double *x,
                               const double *b, const double *da, int same_a, double *r)
{
    double Gk = 0, tr = 0;
    int i, j;
    for (i = 0; i < d; i++) {
        double acc = F[i];
        for (j = 0; j < d; j++) acc -= H[i * d + j] * x[j];
        r[i] = acc;
    }
    for (i = 0; i < d; i++) {
        double bt = K->beta[i];
        for (j = 0; j < d; j++) bt += K->B[i * d + j] * x[j];
        Gk += (b[i] - bt) * r[i];
        if (!same_a)
            for (j = 0; j < d; j++) tr += da[i * d + j] * (H[j * d + i] - r[j] * r[i]);
    }
    return Gk - 0.5 * tr;
}

#define ILL_CONDITIONED                                                                                        \
    "bffg: a Gaussian message lost positive semi-definiteness (I + G'HG is not positive definite); the model is " \
    "too ill-conditioned"

/* sde_backward for K->two (bffg_sde_back2.c): child pulled back through K's steps into out, with g every grid
** message kept. PLM_EDOM when a message loses positive semi-definiteness, PLM_EINTR. */
plm_status plm_bffg_sde_backward2(plm_ctx *ctx, const sde_kernel *K, const plm_bffg_msg *child, sde_guide *g,
                                  plm_bffg_msg *out);

#endif
