/* lkernel.h -- MCMC kernels as Lua values (plume.kernel.*), internal to lang/. A kernel value is a
** description (a table with metatable "plume.kernel": kind, sites, options, children); plume.infer builds
** the C kernel (runtime/engines/mcmc.h, kernel_compose.h) once it has traced the model's static graph,
** since the sites' coordinates are known only then. */
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

/* Build the kernel value at idx for gm (finished, with its target made). Raises an error naming `fn` and the
** site for a site that does not exist, is not latent, or is discrete under a continuous kernel. */
plm_kernel *plm_l_kernel_build(lua_State *L, int idx, plm_gmodel *gm, const char *fn);

/* A kernel value of `kind` over the sites of the options table at index 1 ({sites = {...}}), built by
** `build` at inference time; discrete: 1 when the kernel may move discrete sites. Pushes it; returns 1. */
int plm_l_kernel_sites(lua_State *L, const char *kind, plm_l_site_kernel_fn build, int discrete);

#endif
