/* l_results.c -- the results binding every engine uses (runtime/results.h: draws from traces, series,
** scalars, CSV streaming) and the progress line of long runs. */
#include "lmodel.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define RESULTS_META "plume.results"

typedef struct rbox {
    plm_results *R;
} rbox;

static int results_gc(lua_State *L)
{
    rbox *b = lua_touserdata(L, 1);
    plm_results_free(b->R);
    b->R = NULL;
    return 0;
}

plm_results *plm_l_newresults(lua_State *L, int nchains, int weighted)
{
    rbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    plm_ctx ctx;
    b->R = NULL;
    if (luaL_newmetatable(L, RESULTS_META)) {
        lua_pushcfunction(L, results_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    plm_ctx_clear(&ctx);
    if (plm_results_new(&ctx, nchains, weighted, &b->R)) plm_l_fail(L, &ctx);
    return b->R;
}

plm_results *plm_l_toresults(lua_State *L, int idx)
{
    rbox *b = luaL_checkudata(L, idx, RESULTS_META);
    return b->R;
}

int plm_l_fail_in(lua_State *L, plm_ctx *ctx, const char *fn)
{
    return luaL_error(L, "%s: %s", fn, ctx->msg[0] ? ctx->msg : "unknown error");
}

void plm_l_record(lua_State *L, plm_results *R, const plm_trace *tr, int chain, double lw, const char *fn)
{
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_results_add_trace(&ctx, R, tr, chain, lw)) plm_l_fail_in(L, &ctx, fn);
}

void plm_l_pushdraws(lua_State *L, plm_draws *D)
{
    plm_l_pushobj(L, D, PLM_L_DRAWS);
}

int plm_l_push_results(lua_State *L, plm_results *R)
{
    const char *name;
    const double *v;
    size_t n, k;
    double x;
    long long iv;
    int i, isint;
    lua_newtable(L);
    plm_l_pushdraws(L, plm_results_draws(R));
    lua_setfield(L, -2, "_draws");
    for (i = 0; plm_results_series_at(R, i, &name, &v, &n); i++) {
        lua_createtable(L, (int)n, 0);
        for (k = 0; k < n; k++) {
            lua_pushnumber(L, v[k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, -2, name);
    }
    for (i = 0; plm_results_scalar_at(R, i, &name, &x, &iv, &isint); i++) {
        if (isint) lua_pushinteger(L, (lua_Integer)iv);
        else lua_pushnumber(L, x);
        lua_setfield(L, -2, name);
    }
    return lua_gettop(L);
}

/* ---- progress ---- */

double plm_l_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void plm_l_progress_show(plm_l_progress *p, const char *what, int chain, int nchains, long it, long total, int warm)
{
    double t;
    if (!p->on) return;
    t = plm_l_now();
    if (t - p->last < 0.2 && it < total) return;
    p->last = t;
    fprintf(stderr, "\rplume: %s chain %d/%d  %ld/%ld%s  %.1fs   ", what, chain + 1, nchains, it, total,
            warm ? " (warmup)" : "         ", t - p->start);
    fflush(stderr);
}

void plm_l_progress_end(plm_l_progress *p)
{
    if (p->on && p->last > 0) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

void plm_l_progress_start(plm_l_progress *p, int on)
{
    p->on = on && isatty(2);
    p->last = 0;
    p->start = plm_l_now();
}

void plm_l_check_interrupt(lua_State *L, const char *fn)
{
    if (plm_interrupted()) {
        plm_interrupt_clear();
        luaL_error(L, "%s: interrupted", fn);
    }
}

int plm_l_quiet_default(lua_State *L, int mod)
{
    int q;
    if (!plm_l_mpi_chatty()) return 1;   /* ranks other than 0 under mpirun */
    if (lua_type(L, mod) != LUA_TTABLE) return 0;
    lua_getfield(L, mod, "quiet");
    q = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return q;
}
