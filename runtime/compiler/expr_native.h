/* expr_native.h -- native code for compiled programs: C source generated from a plm_prog, compiled by the
** system C compiler into a shared object cached under a hash of its source, and loaded with dlopen. The
** generated code performs the interpreter's operations in the interpreter's order with the same libm functions
** (and -ffp-contract=off), so its results are the interpreter's bit for bit. Any failure (no compiler, a
** compile or dlopen error, an unwritable cache) gives NULL, and the caller keeps the interpreter.
** Environment: PLUME_NATIVE=0 turns native code off; PLUME_CC names the compiler (default cc); the cache is
** $XDG_CACHE_HOME/plume, else $HOME/.cache/plume, else /tmp/plume-<uid>. */
#ifndef PLM_EXPR_NATIVE_H
#define PLM_EXPR_NATIVE_H

#include "expr.h"

/* A program's varying part at one point: R is the evaluator's register table (plm_prog_ws.R after
** plm_prog_uniforms and with the varying inputs bound, as plm_prog_point_init leaves it), out[o] receives
** output o, ev is plm_op_eval (for the rarer operations, so that they round as the interpreter's). */
typedef void (*plm_prog_native_fn)(double *const *R, double *const *out, double (*ev)(plm_op, double, double, double));

/* The native code of p's varying part, compiled at the first call (one compile at a time per process; later
** calls, and other processes, find it in the caches), or NULL where native code is off, p has instructions it
** does not cover (draws, native calls, densities), or anything failed. Thread-safe. */
plm_prog_native_fn plm_prog_native(const plm_prog *p);

/* The register table that native code with xlocal (plm_prog_native_parts) reads, R[r][0] for p's uniform registers,
** evaluated once at inputs in and written into mem (plm_prog_native_regs_size(p) bytes, aligned for a pointer, kept
** by the caller as long as it runs that code): for a caller that runs that code many times at the same uniform
** inputs. NULL when out of memory. No checks: plm_prog_check first. */
size_t plm_prog_native_regs_size(const plm_prog *p);
double *const *plm_prog_native_regs(const plm_prog *p, const plm_prog_in *in, void *mem);

/* Is native code on: PLUME_NATIVE is not "0" and no plm_native_suspend is in effect. */
int plm_native_enabled(void);
/* Turns native code off (+1) or back on (-1) for the whole process while a run that asked for the interpreter
** (plume.bffg{native = false}) is in progress; calls nest. */
void plm_native_suspend(int delta);

/* The C source that plm_prog_native compiles for p (malloc'd; the caller frees it), or NULL when p has
** instructions native code does not cover. For tests and for reading. */
char *plm_prog_native_source(const plm_prog *p);

/* The parts of p's varying part as C statements (malloc'd strings, the caller frees them; -1 when p has
** instructions native code does not cover): prologue reads the registers that stay fixed from R (locals u<r>), body
** computes the outputs. With xlocal the body reads state coordinate i from a local double x<i> and assigns output o
** to a local b<o> (both declared by the caller; every varying input must be of group X), for callers that write a
** whole loop around it (bffg_sde.c's guided path); else it writes out[o][0]. Both may call ev (plm_op_eval).
** xlocal 2: the body for two evaluations side by side, lane 0 and lane 1 of two-double vectors -- x<i>, u<r>, b<o> and
** the temporaries are of a type pv2 (double, vector_size 16) and the rarer operations go through macros PV_CMP,
** PV_AND, PV_OR, PV_SEL, PV_F1, PV_F2, PV_EV1, PV_EV2 and a function pv2s (a number in both lanes), all defined by
** the caller (bffg_sde_native.c), lane by lane; each lane performs the scalar body's operations in its order. */
int plm_prog_native_parts(const plm_prog *p, int xlocal, char **prologue, char **body);

/* The function `symbol` of C source src compiled and loaded (expr_native.h's cache and compiler), or NULL on any
** failure or with native code off. Loaded once per process per source (thread-safe). */
void *plm_native_symbol(const char *src, const char *symbol);

#endif
