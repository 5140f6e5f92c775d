/* bffg_sde_native.h -- private to the diffusion kernels (bffg_sde.c, bffg_sde_native.c): the guided Euler path
** of a diffusion kernel as native code, generated from the drift's compiled program (expr_native.h) with the
** dimensions as constants. */
#ifndef PLM_BFFG_SDE_NATIVE_H
#define PLM_BFFG_SDE_NATIVE_H

#include "bffg_impl.h"
#include "expr.h"

/* The guided path of sde_path_d from step 0 to N natively, for innovations given, a drift that does not read the time
** and a diffusion that reads neither time nor state: one generated function with the drift's code inline and the
** dimensions as constants, the state and the auxiliary in registers. The same operations in the same order as
** sde_path_d's loop (bit for bit). Returns 1 when the state left the finite numbers. */
typedef int (*plm_bffg_path_fn)(double *const *R, double (*ev)(plm_op, double, double, double), size_t N, const double *t,
                                const double *F, const double *L, const double *v, const double *H, const double *B,
                                const double *beta, const double *a, const double *da, int same_a, const double *sig,
                                const double *zin, double *x, double *intG);
/* Two such paths on the same grid side by side in one loop (plm_bffg_sde_sample_z2): their steps are independent,
** so the CPU overlaps them, where one path alone waits on each step's latency. Each path's inputs as plm_bffg_path_fn's
** (the generated source declares the same struct); returns 1 or 2 when path 1 or 2 left the finite numbers. */
typedef struct plm_bffg_path_args {
    double *const *R;
    const double *F, *L, *v, *H, *B, *beta, *a, *da, *sig, *zin;
    double *x, *intG;
    int same_a;
} plm_bffg_path_args;
typedef int (*plm_bffg_path2_fn)(double (*ev)(plm_op, double, double, double), size_t N, const double *t,
                                 const plm_bffg_path_args *P0, const plm_bffg_path_args *P1);
/* plm_bffg_path_fn with every state after a step stored: X[(k + 1) d + i] (the conjugate update, bffg_sde_conj.c). */
typedef int (*plm_bffg_path_keep_fn)(double *const *R, double (*ev)(plm_op, double, double, double), size_t N,
                                     const double *t, const double *F, const double *L, const double *v, const double *H,
                                     const double *B, const double *beta, const double *a, const double *da, int same_a,
                                     const double *sig, const double *zin, double *x, double *intG, double *X);
/* The inverse (plm_bffg_sde_walk with inverse 1): the innovations zout (N nn) that give the kept path X ((N + 1) d)
** and the path's integral of G into *intG, with S = sig+ (nn x d) and N0 = I - sig+ sig (nn x nn). */
typedef int (*plm_bffg_path_inv_fn)(double *const *R, double (*ev)(plm_op, double, double, double), size_t N,
                                    const double *t, const double *F, const double *L, const double *v, const double *H,
                                    const double *B, const double *beta, const double *a, const double *da, int same_a,
                                    const double *S, const double *N0, const double *zold, const double *X, double *zout,
                                    double *intG);
typedef struct plm_bffg_path_native {
    plm_bffg_path_fn fn;
    plm_bffg_path2_fn fn2;   /* or NULL */
    plm_bffg_path_keep_fn keep;   /* or NULL: made on first use (plm_bffg_path_native_keep) */
    plm_bffg_path_inv_fn inv;     /* made with keep, or NULL */
    int keep_failed;
    const plm_sde *s;
    int d, m, diag;
} plm_bffg_path_native;

/* The native paths for kernels of s with d states, m noises (diag: the diffusion given as d entries), or NULL where
** native code is off, d or m is over 8, the drift has instructions native code does not cover, or anything failed
** (the caller keeps the interpreter). GC memory; compiled once per process per source (expr_native.h's cache). */
plm_bffg_path_native *plm_bffg_path_native_make(const plm_sde *s, int d, int m, int diag);
/* pn's path that keeps every state, compiled on first use; NULL when it could not be. Not thread-safe on first use:
** callers make it before starting threads or under their own lock (bffg_sde_conj.c serialises the first call). */
plm_bffg_path_keep_fn plm_bffg_path_native_keep(plm_bffg_path_native *pn);

#endif
