/* l_static_check.c -- is a traced graph the program? A trace with symbolic values sees every arithmetic
** operation and every comparison Lua hands to a metamethod, but not `z == 1` or `x == 0`: Lua compares a
** symbol with a number without asking it (both sides must be userdata for __eq), so a program that branches on
** such a test traces one branch silently. Since discrete sites became symbols, `if z == 1 then ... end` is an
** ordinary thing to write. So a traced graph is checked against the program itself: the program runs on
** numbers at a few draws from its prior, and each run must make the graph's latent sites and no others, and
** score the log density the graph gives at the same values. A program that fails is dynamic, with the
** reason; one that passes every draw is compiled. (A branch whose other side has prior probability below
** about 1/8 per run can pass unseen; the manual says so.) */
#include "linfer.h"
#include "lmodel.h"
#include "lutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmodel.h"
#include "trace.h"

#define NCHECK 8
#define CHECK_SEED 0x5eedc0deull

/* Run pg once on numbers from the prior into ex->tr: 1 when it ran, 0 when a parameter was invalid (a
** rejection: the draw says nothing), -1 on another error (message pushed). */
static int run_prior(lua_State *L, const plm_l_program *pg, plm_l_exec *ex)
{
    plm_l_handle *h = lua_touserdata(L, pg->handle);
    int i, st;
    plm_trace_clear(ex->tr);
    lua_pushvalue(L, pg->fn);
    lua_pushvalue(L, pg->handle);
    for (i = 0; i < pg->nargs; i++) lua_pushvalue(L, pg->args + i);
    h->ex = ex;
    plm_l_run_enter(L);
    st = lua_pcall(L, 1 + pg->nargs, 0, 0);
    plm_l_run_leave(L);
    h->ex = NULL;
    if (st == LUA_OK) return 1;
    if (plm_l_isreject(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_isstring(L, -1)) {
        lua_pop(L, 1);
        lua_pushstring(L, "the program raised a non-string error");
    }
    return -1;
}

/* Compare one run with the graph: 1 when they agree, 0 with the reason pushed. */
static int agrees(lua_State *L, const plm_gmodel *gm, const plm_trace *tr, double *u)
{
    size_t k, nlat = 0;
    int i, exact = 1;
    double lp;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    for (i = 0; i < gm->n; i++) {
        const plm_gsite *s = &gm->sites[i];
        const plm_site *t;
        if (s->kind != PLM_GSITE_LATENT) continue;
        nlat++;
        t = plm_trace_find(tr, s->name);
        if (!t || t->kind != PLM_SITE_LATENT || t->dim != s->dim) {
            lua_pushfstring(L, "site '%s' of the traced graph is not made by every run of the program (its structure "
                               "depends on its random choices)", s->name);
            return 0;
        }
        if (s->discrete)
            u[s->first] = t->value[0];   /* the coordinate holds the value itself, as plm_dist keeps it */
        else if (plm_gmodel_unconstrain(&ctx, gm, i, t->value, u + s->first))
            exact = 0;   /* a support that depends on other sites, or a draw on its edge: no density check */
    }
    for (k = 0; k < tr->n; k++)
        if (tr->sites[k].kind == PLM_SITE_LATENT && plm_gmodel_find(gm, tr->sites[k].addr) < 0) {
            lua_pushfstring(L, "a run of the program makes site '%s', which the traced graph does not have (its "
                               "structure depends on its random choices)", tr->sites[k].addr);
            return 0;
        }
    if (nlat != tr->nlatent) {
        lua_pushstring(L, "the program's runs make a different number of latent sites than its traced graph");
        return 0;
    }
    if (!exact || plm_gmodel_logdensity(&ctx, gm, u, &lp)) return 1;
    {
        double want = plm_trace_score(tr);
        if (want == lp || (isnan(want) && isnan(lp))) return 1;
        if (isfinite(want) && isfinite(lp) && fabs(want - lp) <= 1e-7 * (1 + fabs(want))) return 1;
        lua_pushfstring(L, "at a draw from the prior the program scores log density %f but its traced graph %f: a "
                           "value depends on a random choice in a way tracing cannot see (a test such as `z == 1` "
                           "or `x == 0` on a sampled value)", want, lp);
        return 0;
    }
}

int plm_l_static_check(lua_State *L, const plm_l_program *pg, const plm_gmodel *gm)
{
    plm_l_exec ex;
    plm_trace *tr;
    plm_rng rng;
    plm_ctx ctx;
    double *u;
    int r, ran, top = lua_gettop(L);
    plm_ctx_clear(&ctx);
    if (plm_trace_new(&ctx, &tr)) return plm_l_fail(L, &ctx);
    u = plm_l_scratch(L, ((size_t)gm->dim + 1) * sizeof *u);
    memset(&ex, 0, sizeof ex);
    ex.hooks = &plm_l_prior_hooks;
    ex.tr = tr;
    ex.rng = &rng;
    for (r = 0; r < NCHECK; r++) {
        plm_rng_init(&rng, CHECK_SEED, (uint64_t)r);
        ran = run_prior(L, pg, &ex);
        if (ran < 0) lua_pushfstring(L, "the program fails when run on numbers: %s", lua_tostring(L, -1));
        if (ran < 0 || (ran && !agrees(L, gm, tr, u))) {
            lua_replace(L, top + 1);   /* the reason, over the scratch buffer */
            lua_settop(L, top + 1);
            return 0;
        }
    }
    lua_settop(L, top);
    return 1;
}
