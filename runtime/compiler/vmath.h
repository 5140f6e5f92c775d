/* vmath.h -- vector kernels over arrays: exp, and standard normal draws from per-particle streams.
** They compute what the scalar forms compute, only several lanes at a time: plm_vexp is glibc's libmvec
** (within 1 ulp of exp, as the compiled programs' exp already is), plm_vnormal gives bit for bit the draws of
** plm_rng_normal on each stream, so engines and compiled programs may switch to it without changing a
** result. Both fall back to plain loops where the CPU lacks AVX2 (or outside x86-64 glibc). */
#ifndef PLM_VMATH_H
#define PLM_VMATH_H

#include <stddef.h>

#include "rng.h"

/* d[j] = exp(a[j]) for j < m; a and d may be the same array. */
void plm_vexp(const double *a, double *d, size_t m);

/* d[j] = plm_rng_normal(&r[j]) for j < m: one draw from each of m consecutive streams, advancing each exactly
** as the scalar draw does. */
void plm_vnormal(plm_rng *r, double *d, size_t m);

/* d[j] = plm_rng_normal(&r[j % 4]) for j < n, in order: n draws from four streams taken in turn, for an engine
** that needs many normals from one chain (pCN's innovations) at the speed of four lanes. */
void plm_vnormal_fill(plm_rng r[4], double *d, size_t n);

#endif
