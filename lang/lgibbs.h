/* lgibbs.h -- the Lua face of the exact Gibbs kernels (runtime/gibbs.h), defined in l_gibbs.c: plume.infer's
** method "gibbs", kernel descriptions for plume.kernel.gibbs / plume.kernel.block_gibbs, and the per-site
** plan that plume.graph shows. Internal to lang/. */
#ifndef PLM_LGIBBS_H
#define PLM_LGIBBS_H

#include "gibbs.h"
#include "linfer.h"

/* plume.infer(model, data, {method = "gibbs"}) on the traced model gm: one kernel over every latent site in
** model order, started from u0 (chains x gm->dim, from plume.infer's init rules). Pushes the posterior and
** returns 1; raises an error naming the first site without an exact conditional (and suggesting "auto"). */
int plm_l_infer_gibbs(lua_State *L, plm_gmodel *gm, const plm_l_infer_opts *o, const double *u0, int threads);

/* plume.kernel.gibbs{sites = {...}} and plume.kernel.block_gibbs{sites = {...}} (Lua C functions; the options
** table at index 1): kernel values (lkernel.h) built by plm_kernel_gibbs / plm_kernel_block_gibbs when they meet
** a model, and composable with the other kernels. Sites absent: every latent site. */
int plm_l_kernel_gibbs(lua_State *L);
int plm_l_kernel_block_gibbs(lua_State *L);
/* plume.kernel.gaussian_block{sites = {...}}: plm_kernel_gaussian_block (scalar normal sites drawn jointly). */
int plm_l_kernel_gaussian_block(lua_State *L);

/* graph:gibbs_plan() for the graph of gm: pushes {{site=, update=, why=, block=}, ...}, one per latent site;
** block (1, 2, ...) numbers the Gaussian block auto draws the site in, absent for single-site updates. */
int plm_l_gibbs_plan(lua_State *L, const plm_gmodel *gm);

#endif
