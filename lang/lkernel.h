/* lkernel.h -- MCMC kernels as Lua values (plume.kernel.*), internal to lang/. A kernel value is a
** description (a table with metatable "plume.kernel": kind, sites, options, children) or, on dynamic programs,
** a Lua function from trace to trace; plume.infer builds the C kernel (runtime/engines/mcmc.h,
** kernel_compose.h) once it has traced the model's static graph, since the sites' coordinates are known only
** then, or a trace kernel (runtime/engines/mh_trace.h) when the program is dynamic. */
#ifndef PLM_LKERNEL_H
#define PLM_LKERNEL_H

#include <lua.h>

#include "gmodel.h"
#include "mcmc.h"

#define PLM_L_KERNEL "plume.kernel"

/* A kernel over the latent sites of a static graph, made from the graph: elliptical slice, and Gibbs once
** merged (runtime/engines/gibbs.h has this very signature). */
typedef plm_status (*plm_l_site_kernel_fn)(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites,
                                           plm_kernel **out);

/* Is the value at idx a kernel value? */
int plm_l_iskernel(lua_State *L, int idx);
/* __tostring of kernels (l_kernel_show.c): "plume.kernel nuts{mu, sigma; max_depth = 8}" */
int plm_l_kernel_tostring(lua_State *L);

/* Build the kernel value at idx for gm (finished, with its target made). Raises an error naming `fn` and the
** site for a site that does not exist, is not latent, or is discrete under a continuous kernel. */
plm_kernel *plm_l_kernel_build(lua_State *L, int idx, plm_gmodel *gm, const char *fn);

/* A kernel value of `kind` over the sites of the options table at index 1 ({sites = {...}}), built by
** `build` at inference time; discrete: 1 when the kernel may move discrete sites. Pushes it; returns 1. */
int plm_l_kernel_sites(lua_State *L, const char *kind, plm_l_site_kernel_fn build, int discrete);
/* A kernel made from the graph by a C function (plm_l_kernel_sites), kept in the value as a userdata. */
typedef struct site_builder {
    plm_l_site_kernel_fn build;
    int discrete;
} site_builder;

/* plume.kernel.learned{library =, motifs =, proposals =} (l_learned.c), and the C kernel of such a value for gm
** (plm_l_kernel_build calls it for kind "learned"). */
int plm_l_kernel_learned(lua_State *L);
plm_kernel *plm_l_learned_build(lua_State *L, int idx, plm_gmodel *gm, const char *fn);

/* ---- on dynamic programs ---- */

/* What a kernel written in Lua needs of the engine running the chain (l_infer.c): the engine's program
** callback's user data starts with this. lua_err is set when a Lua error is left on top of L's stack. */
typedef struct plm_l_trace_host {
    lua_State *L;
    int lua_err;
    /* The program the engine runs: stack indices in the frame of the C function running the chain. A kernel
    ** that runs the program from another frame (tr:with) points it at copies in its own frame meanwhile. */
    const struct plm_l_program *pg;
} plm_l_trace_host;

/* Is the value at idx a kernel value or a Lua function usable as one (plume.infer's `kernel`, or a child of a
** composite)? Does it hold a Lua function (then it runs on the program's dynamic traces only)? */
int plm_l_iskernel_or_fn(lua_State *L, int idx);
int plm_l_kernel_has_fn(lua_State *L, int idx);

/* NULL when the value at idx is made only of trace kernels (mh, gibbs, Lua functions and their cycles,
** mixtures and repetitions); else the kind of the first kernel that needs a static graph. */
const char *plm_l_kernel_not_trace(lua_State *L, int idx);

/* Build the trace kernel of the value at idx (checked by plm_l_kernel_not_trace; errors name fn). The Lua
** functions it holds are pushed on the stack, where the kernel finds them: they must stay there, at the same
** indices, while the kernel runs. */
plm_kernel *plm_l_trace_kernel_build(lua_State *L, int idx, const char *fn);

#endif
