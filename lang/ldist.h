/* ldist.h -- plume.dist objects as Lua values (lang/l_dist.c). Internal to lang/. */
#ifndef PLM_LDIST_H
#define PLM_LDIST_H

#include <lua.h>

#include "plume.h"

/* plume.dist objects (lang/l_dist.c). */
#define PLM_L_DIST "plume.dist"
plm_dist *plm_l_checkdist(lua_State *L, int idx, const char *fn, const char *arg);
void plm_l_pushdist(lua_State *L, plm_dist *d);
/* Read one value of d from the Lua value at idx into x (d->dim doubles); categorical values are shifted
** from 1-based to 0-based. Returns 0 and leaves x alone when the Lua value has the wrong shape or type. */
int plm_l_todistvalue(lua_State *L, int idx, const plm_dist *d, double *x);
/* Push one value of d from x (scalars as numbers, integers for discrete kinds, vectors as tables). */
void plm_l_pushdistvalue(lua_State *L, const plm_dist *d, const double *x);

#endif
