/* l_static.c -- static model programs: a plume.model run once with symbolic values under the "trace" hooks
** becomes a graphical model (runtime/gmodel.h): m:sample returns a symbol (its value on the support, a
** transform of unconstrained coordinates), distributions take symbolic parameters, m:observe and m:factor add
** terms, m:deterministic records outputs. plume.infer's "nuts", "hmc", "slice", "gibbs" and "auto" (the default:
** exact Gibbs for discrete and conjugate sites, NUTS on the rest) run the kernels of runtime/hmc.h, slice.h,
** gibbs.h, and option `kernel` a plume.kernel value (l_kernel.c), on the compiled target through the chain
** driver plm_mcmc_run, natively on every thread; plume.graph shows the traced graph. A program whose structure
** depends on its choices (a symbol in an `if`, a symbolic loop bound, a discrete site compared with `==`)
** cannot be traced: the trace fails, and the failure is the reason given ("auto" and plume.kernel.mh then run
** the trace MH with it). */
#include "l_expr.h"
#include "ldist.h"
#include "linfer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmodel.h"
#include "hmc.h"
#include "lkernel.h"
#include "slice.h"
#include "lgibbs.h"

#define PLM_L_MGRAPH "plume.modelgraph"
#define MAXDIM 64
/* registry key: why the traced model's density is zero everywhere (a numeric observation outside its support) */
#define DEAD_KEY "plume.static.dead"

typedef struct tracer {
    plm_l_exec ex;   /* first: the handle's hooks receive &ex */
    plm_gmodel *gm;
    plm_graph *g;
} tracer;

/* Raise msg blamed on the model program's line (the caller of the m: method). */
static int trace_error(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    luaL_where(L, 1);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

static const char *trace_addr(lua_State *L, const char *fn)
{
    if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
        trace_error(L, "%s: address must be a string (got %s)", fn, luaL_typename(L, 2));
    return lua_tostring(L, 2);
}

void plm_l_push_syms(lua_State *L, const int *v, int dim)
{
    int i;
    lua_getiuservalue(L, 1, 1);   /* the graph holder */
    if (dim == 1) {
        plm_l_pushsym(L, -1, v[0]);
    } else {
        lua_createtable(L, dim, 0);
        for (i = 0; i < dim; i++) {
            plm_l_pushsym(L, -2, v[i]);
            lua_rawseti(L, -2, i + 1);
        }
    }
    lua_remove(L, -2);
}

/* The symbolic distribution at index 3 (numeric ones become constants of the graph), pushed. */
static plm_l_symdist *trace_dist(lua_State *L, tracer *t, const char *fn, const char *addr)
{
    plm_dist *nd = plm_l_testobj(L, 3, PLM_L_DIST);
    plm_l_symdist *sd;
    if (nd && (nd->kind == PLM_DIST_TRUNCATED || nd->kind == PLM_DIST_DIRICHLET || nd->kind == PLM_DIST_MULTINOMIAL))
        trace_error(L, "%s '%s': %s is not supported by the static compiler yet", fn, addr,
                    plm_dist_info_of(nd->kind)->name);
    if (!(sd = plm_l_tosymdist(L, 3, t->g)))
        trace_error(L, "%s: dist must be a distribution (got %s)", fn, luaL_typename(L, 3));
    return sd;
}

/* Nodes of the value at idx for a distribution of dimension dim into x. */
static void trace_nodes(lua_State *L, tracer *t, int idx, int dim, const char *fn, const char *addr, int *x)
{
    int i;
    char what[128];
    snprintf(what, sizeof what, "%s: value of '%s'", fn, addr);
    if (dim == 1 && lua_type(L, idx) != LUA_TTABLE) {
        x[0] = plm_l_tonode(L, idx, t->g, what);
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE || luaL_len(L, idx) != dim)
        trace_error(L, "%s must be a table of %d numbers", what, dim);
    for (i = 0; i < dim; i++) {
        lua_geti(L, idx, i + 1);
        x[i] = plm_l_tonode(L, -1, t->g, what);
        lua_pop(L, 1);
    }
}

static int trace_symbolic(lua_State *L, plm_l_exec *ex, plm_l_method which)
{
    tracer *t = (tracer *)ex;
    plm_ctx *ctx = &ex->ctx;
    int x[MAXDIM], dim, i;
    const char *addr;
    plm_l_symdist *sd;
    plm_ctx_clear(ctx);
    switch (which) {
    case PLM_L_M_SAMPLE: {
        plm_dist *nd = plm_l_testobj(L, 3, PLM_L_DIST);
        addr = trace_addr(L, "m:sample");
        if (nd && nd->kind == PLM_DIST_DIRICHLET) {
            /* a latent probability vector (numeric concentrations): gmodel's simplex site */
            plm_symdist d;
            int *a = plm_l_scratch(L, (size_t)nd->dim * sizeof *a);
            if (nd->dim > MAXDIM) return trace_error(L, "m:sample '%s': dimension over %d", addr, MAXDIM);
            for (i = 0; i < nd->dim; i++)
                if ((a[i] = plm_graph_const(t->g, nd->v[i])) < 0) return luaL_error(L, "plume: out of memory while tracing");
            d.kind = PLM_DIST_DIRICHLET, d.K = nd->dim, d.np = nd->dim, d.p = a;
            if (plm_gmodel_latent(ctx, t->gm, addr, &d, x)) return trace_error(L, "m:sample '%s': %s", addr, ctx->msg);
            lua_pop(L, 1);   /* the scratch */
            plm_l_push_syms(L, x, nd->dim);
            return 1;
        }
        sd = trace_dist(L, t, "m:sample", addr);
        if ((dim = plm_symdist_dim(&sd->d)) > MAXDIM) return trace_error(L, "m:sample '%s': dimension over %d", addr, MAXDIM);
        if (plm_gmodel_latent(ctx, t->gm, addr, &sd->d, x)) return trace_error(L, "m:sample '%s': %s", addr, ctx->msg);
        if (sd->shift) {   /* categorical: 0-based in the graph, 1-based in Lua and in the draws */
            t->gm->sites[t->gm->n - 1].base = sd->shift;
            x[0] = plm_graph_op(t->g, PLM_OP_ADD, x[0], plm_graph_const(t->g, sd->shift), -1);
        }
        plm_l_push_syms(L, x, dim);
        return 1;
    }
    case PLM_L_M_OBSERVE: {
        plm_dist *nd = plm_l_testobj(L, 3, PLM_L_DIST);
        addr = trace_addr(L, "m:observe");
        if (nd && !plm_l_hassym(L, 4)) {
            /* numbers only: the term is a constant, computed as the dynamic engines do */
            double buf[MAXDIM], *v = nd->dim <= MAXDIM ? buf : plm_l_scratch(L, (size_t)nd->dim * sizeof *v);
            if (!plm_l_todistvalue(L, 4, nd, v))
                return trace_error(L, "m:observe: value of '%s' must be %s", addr, nd->dim == 1 ? "a number" : "a table of numbers");
            double lp = plm_dist_logpdf(nd, v);
            if (lp == -INFINITY && lua_getfield(L, LUA_REGISTRYINDEX, DEAD_KEY) == LUA_TNIL) {
                /* the density is zero whatever the latent values: said at inference in the dynamic engines' words */
                lua_pushfstring(L, "m:observe '%s': value %s is outside the support of ", addr, plm_l_value_str(L, nd, v, nd->dim));
                lua_remove(L, -2);
                luaL_tolstring(L, 3, NULL);
                lua_concat(L, 2);
                lua_setfield(L, LUA_REGISTRYINDEX, DEAD_KEY);
            }
            lua_settop(L, 4);
            if (plm_gmodel_observe_const(ctx, t->gm, addr, nd->kind, lp)) return trace_error(L, "m:observe: %s", ctx->msg);
            return 0;
        }
        sd = trace_dist(L, t, "m:observe", addr);
        if ((dim = plm_symdist_dim(&sd->d)) > MAXDIM) return trace_error(L, "m:observe '%s': dimension over %d", addr, MAXDIM);
        trace_nodes(L, t, 4, dim, "m:observe", addr, x);
        if (sd->shift) x[0] = plm_graph_op(t->g, PLM_OP_SUB, x[0], plm_graph_const(t->g, sd->shift), -1);
        if (plm_gmodel_observe(ctx, t->gm, addr, &sd->d, x)) return trace_error(L, "m:observe: %s", ctx->msg);
        return 0;
    }
    case PLM_L_M_FACTOR:
        if (lua_type(L, 2) == LUA_TNUMBER && (isnan(lua_tonumber(L, 2)) || lua_tonumber(L, 2) == INFINITY))
            return luaL_error(L, "m:factor: log weight is %s", isnan(lua_tonumber(L, 2)) ? "NaN" : "+inf");   /* as l_model.c */
        if (plm_gmodel_factor(ctx, t->gm, plm_l_tonode(L, 2, t->g, "m:factor: log weight")))
            return trace_error(L, "m:factor: %s", ctx->msg);
        return 0;
    case PLM_L_M_DETERMINISTIC:
        addr = trace_addr(L, "m:deterministic");
        if (lua_type(L, 3) == LUA_TTABLE) {
            dim = (int)luaL_len(L, 3);
            if (dim < 1 || dim > MAXDIM)
                return trace_error(L, "m:deterministic: value of '%s' must have 1..%d entries", addr, MAXDIM);
        } else
            dim = 1;
        trace_nodes(L, t, 3, dim, "m:deterministic", addr, x);
        for (i = 0; i < dim; i++)
            if (x[i] < 0) return luaL_error(L, "plume: out of memory while tracing");
        if (plm_gmodel_deterministic(ctx, t->gm, addr, dim, x)) return trace_error(L, "m:deterministic: %s", ctx->msg);
        lua_settop(L, 3);
        return 1;
    }
    return 0;
}

static const plm_l_hooks trace_hooks = {"trace", NULL, NULL, trace_symbolic};

/* Called protected: run the program (fn, handle, args... on the stack) under the tracing error handler,
** which turns errors about symbols into advice ("use plume.math.exp"). */
static int traced_call(lua_State *L)
{
    plm_l_trace_call(L, lua_gettop(L) - 1, 0, NULL);
    return 0;
}

/* Trace pg once. Returns 1 with the finished model in *out, or 0 with the reason it is not static pushed (the
** error the trace met, with the program's line). The graph holder is left on the stack under the result. */
int plm_l_trace_static(lua_State *L, const plm_l_program *pg, plm_gmodel **out)
{
    tracer t;
    plm_l_handle *h = lua_touserdata(L, pg->handle);
    plm_ctx ctx;
    int i, st;
    memset(&t, 0, sizeof t);
    plm_ctx_clear(&ctx);
    *out = NULL;
    t.g = plm_l_newgraph(L);
    if (plm_gmodel_new(&ctx, t.g, &t.gm)) return plm_l_fail(L, &ctx);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, pg->handle, 1);
    t.ex.hooks = &trace_hooks;
    lua_pushcfunction(L, traced_call);
    lua_pushvalue(L, pg->fn);
    lua_pushvalue(L, pg->handle);
    for (i = 0; i < pg->nargs; i++) lua_pushvalue(L, pg->args + i);
    h->ex = &t.ex;
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, DEAD_KEY);
    st = lua_pcall(L, 2 + pg->nargs, 0, 0);
    h->ex = NULL;
    lua_pushnil(L);
    lua_setiuservalue(L, pg->handle, 1);
    if (st != LUA_OK) {
        if (!lua_isstring(L, -1)) {
            lua_pop(L, 1);
            lua_pushstring(L, "the program raised a non-string error while traced");
        }
        return 0;
    }
    if (plm_gmodel_finish(&ctx, t.gm)) {
        lua_pushstring(L, ctx.msg);
        return 0;
    }
    if (!plm_l_static_check(L, pg, t.gm)) return 0;
    *out = t.gm;
    return 1;
}

/* ---- plume.infer's "nuts", "hmc" and "auto" ---- */

/* How far from 0 a transformed coordinate of a prior draw may start: e^-20 = 2e-9 and e^20 = 5e8 for a positive
** site. A vague gamma(0.001, 0.001) on a precision puts half its mass below 1e-298 (JAGS's "typical value", the
** median, is there too): a draw there makes every child's scale astronomically large or underflows to 0. The
** limit keeps such a start far in the prior's tail, with children dispersed widely around their means, which
** is where a Gibbs sweep moves fastest toward the data. */
#define INIT_ULIM 20.0
#define INIT_MEDIAN_OF 5

/* Fill u (chains x dim) from `init` (0: none): named sites from their values, the rest by ancestral draws from
** their priors given the sites before them (plm_gmodel_prior_draws, transformed coordinates kept within
** +-INIT_ULIM), as JAGS starts chains from its priors, chain c from stream 2^32 + c of the seed (apart from the
** kernel's streams, whatever the thread count). Sites with an improper prior start uniform(-2, 2) on the
** unconstrained scale as Stan does. Discrete sites then move to their most probable values given the rest
** (plm_gmodel_discrete_modes): a mixture's labels drawn from their prior would mix every component's points
** and pull the means together in the first sweep. A chain whose start has a non-finite log density draws again (10 times),
** then falls back to uniform(-2, 2) starts (100 times) with discrete sites at the first whole values of finite
** density; if none is finite, the error names the site. */
static void static_inits(lua_State *L, const plm_gmodel *gm, const plm_l_infer_opts *o, double *u)
{
    int c, d = gm->dim, C = o->chains, n = gm->n, k, round, left = C, discrete = plm_gmodel_first_discrete(gm) >= 0;
    plm_rng *r = plm_l_scratch(L, (size_t)C * sizeof *r);
    unsigned char *keep = plm_l_scratch(L, (size_t)C * (size_t)n);
    double *U = plm_l_scratch(L, (size_t)C * (size_t)d * sizeof *U + 1);
    char *ok = plm_l_scratch(L, (size_t)C);
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    memset(keep, 0, (size_t)C * (size_t)n);
    memset(ok, 0, (size_t)C);
    for (c = 0; c < C; c++) {
        double *uc = u + (size_t)c * (size_t)d;
        int i, tab;
        plm_rng_init(&r[c], o->seed, (1ull << 32) + (uint64_t)c);
        for (i = 0; i < d; i++) uc[i] = 0;
        if (!o->init)
            continue;
        else if (lua_isfunction(L, o->init)) {
            lua_pushvalue(L, o->init);
            lua_pushinteger(L, c + 1);
            lua_call(L, 1, 1);
            if (!lua_istable(L, -1))
                luaL_error(L, "plume.infer: option 'init' must return a table of values by site name (chain %d got %s)",
                           c + 1, luaL_typename(L, -1));
        } else
            lua_pushvalue(L, o->init);
        tab = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, tab)) {
            const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            int s = name ? plm_gmodel_find(gm, name) : -1, dim;
            double x[MAXDIM];
            if (s < 0 || gm->sites[s].kind != PLM_GSITE_LATENT)
                luaL_error(L, "plume.infer: init names %s%s%s, which is not a latent site of the model", name ? "'" : "",
                           name ? name : luaL_typename(L, -2), name ? "'" : "");
            dim = gm->sites[s].dim;
            if (dim == 1 && lua_type(L, -1) == LUA_TNUMBER)
                x[0] = lua_tonumber(L, -1);
            else if (dim > 1 && lua_istable(L, -1) && luaL_len(L, -1) == dim)
                for (i = 0; i < dim; i++) x[i] = (lua_geti(L, -1, i + 1), lua_tonumber(L, -1)), lua_pop(L, 1);
            else
                luaL_error(L, "plume.infer: init value of '%s' must be %s (got %s)", name,
                           dim == 1 ? "a number" : "a table of numbers", luaL_typename(L, -1));
            if (plm_gmodel_unconstrain(&ctx, gm, s, x, uc + gm->sites[s].first)) luaL_error(L, "plume.infer: %s", ctx.msg);
            keep[(size_t)c * (size_t)n + (size_t)s] = 1;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    /* ancestral draws for every chain at once; a chain whose start is not finite draws again */
    for (round = 0; round < 10 && left; round++) {
        for (c = 0; c < C; c++)
            for (k = 0; k < d; k++) U[(size_t)k * (size_t)C + (size_t)c] = u[(size_t)c * (size_t)d + (size_t)k];
        if (plm_gmodel_prior_draws(&ctx, gm, U, (size_t)C, r, 1, keep, INIT_ULIM, INIT_MEDIAN_OF, 1)) luaL_error(L, "plume.infer: %s", ctx.msg);
        for (c = 0; c < C; c++) {
            double *uc = u + (size_t)c * (size_t)d;
            if (ok[c]) continue;
            for (k = 0; k < d; k++) uc[k] = U[(size_t)k * (size_t)C + (size_t)c];
            if (discrete && plm_gmodel_discrete_modes(&ctx, gm, uc, keep + (size_t)c * (size_t)n))
                luaL_error(L, "plume.infer: %s", ctx.msg);
            if (plm_gmodel_blame(&ctx, gm, uc) == PLM_OK) ok[c] = 1, left--;
        }
    }
    for (c = 0; c < C && left; c++) {
        double *uc = u + (size_t)c * (size_t)d, *given = plm_l_scratch(L, (size_t)d * sizeof *given + 1);
        int tries;
        if (ok[c]) continue;
        memcpy(given, uc, (size_t)d * sizeof *uc);
        for (tries = 0; tries < 100 && !ok[c]; tries++) {
            for (k = 0; k < d; k++) uc[k] = -2 + 4 * plm_rng_uniform(&r[c]);
            if (plm_gmodel_first_discrete(gm) >= 0 && plm_gmodel_init_discrete(&ctx, gm, uc)) luaL_error(L, "plume.infer: %s", ctx.msg);
            for (k = 0; k < d; k++)
                if (keep[(size_t)c * (size_t)n + (size_t)gm->owner[k]]) uc[k] = given[k];
            ok[c] = plm_gmodel_blame(&ctx, gm, uc) == PLM_OK;
        }
        if (!ok[c]) luaL_error(L, "plume.infer: the log density at chain %d's initial point is not finite: %s", c + 1, ctx.msg);
        left--;
    }
}

/* One entry of auto's report: a site and the label of its update (NULL: NUTS). */
typedef struct auto_pick {
    int site;
    const char *label;
} auto_pick;

/* Is name base[k] (k a whole number)? Sets *blen (the length of base) and *k. */
static int entry_of(const char *name, size_t *blen, long *k)
{
    const char *lb = strrchr(name, '[');
    char *end;
    size_t len = strlen(name);
    if (!lb || len < 3 || name[len - 1] != ']' || lb == name) return 0;
    *k = strtol(lb + 1, &end, 10);
    if (end != name + len - 1 || end == lb + 1) return 0;
    *blen = (size_t)(lb - name);
    return 1;
}

/* Add picks[0..n-1] to b, the entries of one vector of sites with one label gathered where the first of them
** stands ("alpha[1..30]"; "z[2..9 (5 sites)]" when some are missing), each run of a label followed by it:
** "mu[1..3] (normal-normal), tau (gamma), z[1..300] (enumeration)". done: n scratch bytes. */
static void add_picks(luaL_Buffer *b, const plm_gmodel *gm, const auto_pick *picks, int n, char *done)
{
    int i, j, next;
    memset(done, 0, (size_t)n);
    for (i = 0; i < n; i = next) {
        const char *name = gm->sites[picks[i].site].name;
        size_t blen, bl2;
        long k, lo, hi, count = 1;
        char num[96];
        done[i] = 1;
        if (entry_of(name, &blen, &lo)) {
            hi = lo;
            for (j = i + 1; j < n; j++) {
                const char *o = gm->sites[picks[j].site].name;
                if (done[j] || picks[j].label != picks[i].label || !entry_of(o, &bl2, &k) || bl2 != blen ||
                    strncmp(o, name, blen) != 0)
                    continue;
                done[j] = 1, count++;
                if (k < lo) lo = k;
                if (k > hi) hi = k;
            }
        }
        if (count > 1) {
            luaL_addlstring(b, name, blen);
            if (hi - lo + 1 == count)
                snprintf(num, sizeof num, "[%ld..%ld]", lo, hi);
            else
                snprintf(num, sizeof num, "[%ld..%ld (%ld sites)]", lo, hi, count);
            luaL_addstring(b, num);
        } else
            luaL_addstring(b, name);
        for (next = i + 1; next < n && done[next]; next++) {}
        if (picks[i].label && (next == n || picks[next].label != picks[i].label)) {
            luaL_addstring(b, " (");
            luaL_addstring(b, picks[i].label);
            luaL_addchar(b, ')');
        }
        if (next < n) luaL_addstring(b, ", ");
    }
}

static const char *gibbs_label(plm_gibbs_how how)
{
    switch (how) {
    case PLM_GIBBS_ENUM: return "enumeration";
    case PLM_GIBBS_NORMAL: return "normal-normal";
    case PLM_GIBBS_GAMMA: return "gamma";
    case PLM_GIBBS_INV_GAMMA: return "inverse-gamma";
    case PLM_GIBBS_BETA: return "beta";
    case PLM_GIBBS_DIRICHLET: return "dirichlet-categorical";
    case PLM_GIBBS_MVNORMAL: return "mvnormal-mvnormal";
    default: return "none";
    }
}

/* method "auto" on a static graph: exact Gibbs (gibbs.h) for every latent site that has an exact conditional
** (finite discrete sites by enumeration, conjugate continuous ones in closed form), NUTS restricted to the
** coordinates of the continuous rest, cycled (Gibbs first); NUTS alone when no site is Gibbs-able, Gibbs
** alone when every one is. Normal-normal sites that share terms and whose joint conditional is Gaussian
** (plm_gibbs_gaussian_blocks) are drawn jointly, one gaussian_block kernel per block: single-site Gibbs mixes
** slowly on correlated coefficients (a regression on uncentred predictors); NUTS also moves a block whose terms'
** means read one of its sites (plm_gibbs_block_means_read). Pushes what it picked and why
** ("gibbs-block on beta[1..4] (gaussian block); gibbs on z[1..3] (enumeration); nuts on sigma (...)"), and
** prints it unless quiet. Returns NULL with the reason pushed when a discrete site has no exact conditional
** (an unbounded support): "auto" then runs MH. */
static plm_kernel *auto_kernel(lua_State *L, plm_gmodel *gm, const plm_hmc_opts *ho, int quiet)
{
    const char *fn = "plume.infer";
    plm_ctx ctx;
    plm_kernel *nuts = NULL, *gibbs = NULL, *k, **ks;
    auto_pick *gp = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *gp), *np, *bp;
    int *gs = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *gs), *coords, *cand, *block, *bs;
    int i, j, b, ng = 0, nn = 0, nc = 0, ncand = 0, nblocks = 0, nk = 0, nbp = 0;
    char *done, *nuts_mask, refused[400];
    auto_pick *wp;
    int nwith;
    np = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *np);
    bp = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *bp);
    coords = plm_l_scratch(L, ((size_t)gm->dim + 1) * sizeof *coords);
    cand = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *cand);
    block = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *block);
    bs = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *bs);
    done = plm_l_scratch(L, (size_t)gm->n + 1);
    plm_ctx_clear(&ctx);
    for (i = 0; i < gm->n; i++) {
        const plm_gsite *s = &gm->sites[i];
        plm_gibbs_plan plan;
        if (s->kind != PLM_GSITE_LATENT) continue;
        if (plm_gibbs_plan_site(&ctx, gm, i, &plan)) plm_l_fail_in(L, &ctx, fn);
        if (plan.how == PLM_GIBBS_NORMAL) cand[ncand++] = i;
        if (plan.how != PLM_GIBBS_NONE) {
            gs[ng] = i;
            gp[ng].site = i;
            gp[ng++].label = gibbs_label(plan.how);
        } else if (s->discrete) {
            lua_pushfstring(L, "site '%s' is discrete (%s) and has no exact conditional (%s)", s->name,
                            plm_dist_info_of((plm_dist_kind)s->dist)->name, plan.why);
            return NULL;
        } else {
            np[nn].site = i;
            np[nn++].label = NULL;
            for (j = 0; j < s->dim; j++) coords[nc++] = s->first + j;
        }
    }
    if (ncand > 1 && plm_gibbs_gaussian_blocks(&ctx, gm, cand, ncand, block, &nblocks, refused, sizeof refused))
        plm_l_fail_in(L, &ctx, fn);
    if (ncand < 2) refused[0] = 0, block[0] = -1;
    ks = plm_l_scratch(L, ((size_t)nblocks + 3) * sizeof *ks);
    /* the sites of blocks leave the single-site list */
    for (i = 0, j = 0, b = 0; i < ng; i++) {
        while (b < ncand && cand[b] < gs[i]) b++;
        if (b < ncand && cand[b] == gs[i] && block[b] >= 0) continue;
        gs[j] = gs[i], gp[j++] = gp[i];
    }
    ng = j;
    if (ng && plm_kernel_gibbs(&ctx, gm, gs, ng, &gibbs)) plm_l_fail_in(L, &ctx, fn);
    /* a block whose terms' means read a NUTS site (8 schools' tau in mu + tau * theta_tilde[j]) is coupled to it
    ** beyond what alternating updates resolve: NUTS then moves the block's sites too, jointly with that site */
    nuts_mask = plm_l_scratch(L, (size_t)gm->dim + 1);
    memset(nuts_mask, 0, (size_t)gm->dim + 1);
    for (i = 0; i < nc; i++) nuts_mask[coords[i]] = 1;
    nwith = 0;
    wp = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *wp);
    for (b = 0; b < nblocks; b++) {
        int n = 0, reads = 0;
        for (i = 0; i < ncand; i++)
            if (block[i] == b) bs[n++] = cand[i], bp[nbp].site = cand[i], bp[nbp++].label = "gaussian block";
        if (plm_kernel_gaussian_block(&ctx, gm, bs, n, &ks[nk++])) plm_l_fail_in(L, &ctx, fn);
        if (nn && plm_gibbs_block_means_read(&ctx, gm, bs, n, nuts_mask, &reads)) plm_l_fail_in(L, &ctx, fn);
        for (i = 0; reads && i < n; i++) {
            coords[nc++] = gm->sites[bs[i]].first;
            wp[nwith].site = bs[i], wp[nwith++].label = NULL;
        }
    }
    /* the single-site updates after the blocks: from a start far from the data (rats from the BUGS inits,
    ** alpha[i] drawn around alpha_c = 150 while the data sit near 240), precisions updated first see the
    ** start's residuals, shrink the blocks onto their hubs, and Gibbs then needs thousands of sweeps to leave */
    if (gibbs) ks[nk++] = gibbs;
    if (nn) {
        if (plm_kernel_nuts(&ctx, ho, &nuts)) plm_l_fail_in(L, &ctx, fn);
        if (nc < gm->dim && plm_kernel_restrict(&ctx, nuts, coords, nc, &nuts)) plm_l_fail_in(L, &ctx, fn);
        ks[nk++] = nuts;
    }
    if (nk > 1) {
        if (plm_kernel_cycle(&ctx, (const plm_kernel **)ks, nk, &k)) plm_l_fail_in(L, &ctx, fn);
    } else
        k = ks[0];
    {
        luaL_Buffer bf;
        int first = 1;
        luaL_buffinit(L, &bf);
        if (ng) {
            luaL_addstring(&bf, "gibbs on ");
            add_picks(&bf, gm, gp, ng, done);
            first = 0;
        }
        for (b = 0, i = 0; b < nblocks; b++) {
            int n = 0;
            for (j = 0; j < ncand; j++) n += block[j] == b;
            luaL_addstring(&bf, first ? "gibbs-block on " : "; gibbs-block on ");
            add_picks(&bf, gm, bp + i, n, done);
            i += n, first = 0;
        }
        if (refused[0]) {
            luaL_addstring(&bf, " (single-site, not a gaussian block: ");
            luaL_addstring(&bf, refused);
            luaL_addchar(&bf, ')');
        }
        if (nn) {
            luaL_addstring(&bf, first ? "nuts on " : "; nuts on ");
            add_picks(&bf, gm, np, nn, done);
            luaL_addstring(&bf, first ? " (continuous; no discrete or conjugate site for gibbs)" : " (continuous, no conjugate pair)");
            if (nwith) {
                luaL_addstring(&bf, " with ");
                add_picks(&bf, gm, wp, nwith, done);
                luaL_addstring(&bf, " (their block's means read it)");
            }
        }
        luaL_pushresult(&bf);
        if (!quiet) printf("auto: %s\n", lua_tostring(L, -1)), fflush(stdout);
    }
    return k;
}

int plm_l_infer_static(lua_State *L, const plm_l_program *pg, const plm_l_infer_opts *o, int opts)
{
    const char *fn = "plume.infer";
    int is_auto = strcmp(o->method, "auto") == 0, hmc = strcmp(o->method, "hmc") == 0, threads, c, j;
    int slice = strcmp(o->method, "slice") == 0, user = strcmp(o->method, "kernel") == 0, needs_grad;
    plm_hmc_opts ho;
    plm_mcmc_opts mo;
    plm_gmodel *gm;
    plm_target *target;
    plm_kernel *k;
    plm_draws *U;
    plm_results *R;
    plm_ctx ctx;
    plm_status st;
    double t0 = plm_l_now(), t1, t2, accept, *u0 = NULL;
    long total_div = 0, max_depth_hits = 0;
    int picked = 0;   /* auto: the stack index of what it picked */
    plm_ctx_clear(&ctx);
    memset(&ho, 0, sizeof ho);
    ho.delta = plm_l_optnum(L, opts, fn, "delta", 0.8);
    ho.max_depth = (int)plm_l_optint(L, opts, fn, "max_depth", 10);
    ho.dense = plm_l_optbool(L, opts, fn, "dense", 0);
    ho.steps = (int)plm_l_optint(L, opts, fn, "steps", 10);
    if (!hmc && opts && lua_getfield(L, opts, "steps") != LUA_TNIL)
        return luaL_error(L, "%s: option 'steps' applies to method \"hmc\" only", fn);
    if (opts) lua_pop(L, !hmc);
    threads = plm_l_threads(L, opts, fn);
    if (!(ho.delta > 0 && ho.delta < 1)) return luaL_error(L, "%s: option 'delta' must be in (0, 1) (got %f)", fn, (lua_Number)ho.delta);
    if (ho.max_depth < 1 || ho.max_depth > 30)
        return luaL_error(L, "%s: option 'max_depth' must be in 1..30 (got %d)", fn, ho.max_depth);
    if (ho.steps < 1 || ho.steps > 100000) return luaL_error(L, "%s: option 'steps' must be in 1..1e5 (got %d)", fn, ho.steps);
    if (!plm_l_trace_static(L, pg, &gm)) {
        if (is_auto) return 0;
        if (user) {   /* trace kernels (mh, gibbs, Lua functions, composites) run on a dynamic program, saying why */
            const char *bad;
            lua_getfield(L, opts, "kernel");
            bad = plm_l_kernel_not_trace(L, -1);
            lua_pop(L, 1);
            if (!bad) return 0;
            return luaL_error(L, "%s: kernel %s needs a static model (one whose structure does not depend on its "
                                 "random choices), and this one is not: %s (on a dynamic program, use plume.kernel.mh{sites = ...}, "
                                 "plume.kernel.gibbs{sites = ...}, Lua functions and their cycles, mixtures and "
                                 "repetitions)", fn, bad,
                              lua_tostring(L, -1));
        }
        return luaL_error(L, "%s: method \"%s\" needs a static model (one whose structure does not depend on its "
                             "random choices), and this one is not: %s", fn, o->method, lua_tostring(L, -1));
    }
    if (lua_getfield(L, LUA_REGISTRYINDEX, DEAD_KEY) == LUA_TSTRING)
        return luaL_error(L, "%s: no starting point of finite log density: whatever the latent values, %s", fn, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (strcmp(o->method, "gibbs") == 0) {
        u0 = plm_l_scratch(L, (size_t)o->chains * (size_t)gm->dim * sizeof *u0);
        static_inits(L, gm, o, u0);
        return plm_l_infer_gibbs(L, gm, o, u0, threads);
    }
    if (!user && !is_auto && (c = plm_gmodel_first_discrete(gm)) >= 0) {
        return luaL_error(L, "%s: method \"%s\": site '%s' is discrete (%s), and %s moves continuous sites only (use "
                             "method = \"gibbs\" or \"auto\")", fn, o->method, gm->sites[c].name,
                          plm_dist_info_of((plm_dist_kind)gm->sites[c].dist)->name, slice ? "slice sampling" : "gradient-based MCMC");
    }
    needs_grad = !slice && !user;
    if ((st = plm_gmodel_target(&ctx, gm, &target)) && (st != PLM_ENOTSUP || needs_grad)) {
        if (st != PLM_ENOTSUP) return plm_l_fail_in(L, &ctx, fn);
        lua_pushfstring(L, "the log density has no gradient: %s", ctx.msg);
        if (is_auto) return 0;
        return luaL_error(L, "%s: method \"%s\": %s", fn, o->method, lua_tostring(L, -1));
    }
    t1 = plm_l_now();
    if (user) {
        lua_getfield(L, opts, "kernel");
        k = plm_l_kernel_build(L, -1, gm, fn);
        lua_pop(L, 1);
    } else if (slice) {
        if (plm_kernel_slice(&ctx, 0, 0, &k)) return plm_l_fail_in(L, &ctx, fn);
    } else if (is_auto) {
        if (!(k = auto_kernel(L, gm, &ho, o->quiet))) return 0;
        picked = lua_gettop(L);
    }
    else if ((hmc ? plm_kernel_hmc : plm_kernel_nuts)(&ctx, &ho, &k))
        return plm_l_fail_in(L, &ctx, fn);
    memset(&mo, 0, sizeof mo);
    mo.chains = o->chains;
    mo.warmup = o->warmup;
    mo.samples = (o->samples + o->thin - 1) / o->thin;   /* samples counts iterations, as for "mh" */
    mo.thin = o->thin;
    mo.seed = o->seed;
    mo.threads = threads;
    /* ancestral starts (static_inits), not the driver's uniform(-2, 2) ones */
    u0 = plm_l_scratch(L, (size_t)o->chains * (size_t)gm->dim * sizeof *u0);
    static_inits(L, gm, o, u0);
    mo.init = u0;
    st = (o->local ? plm_mcmc_run_local : plm_mcmc_run)(&ctx, target, k, &mo, &U, &accept);
    t2 = plm_l_now();
    if (st == PLM_EINTR) {
        plm_interrupt_clear();
        return luaL_error(L, "%s: interrupted", fn);
    }
    if (st == PLM_EDEAD && !o->init) {
        /* say which site makes the density vanish, at one of the starts the driver tried */
        double *u = plm_l_scratch(L, (size_t)gm->dim * sizeof *u);
        plm_ctx bc;
        plm_rng r;
        int i;
        plm_ctx_clear(&bc);
        plm_rng_init(&r, o->seed, 0);
        for (i = 0; i < gm->dim; i++) u[i] = -2 + 4 * plm_rng_uniform(&r);
        if (plm_gmodel_blame(&bc, gm, u))
            return luaL_error(L, "%s: no starting point of finite log density in 100 random starts; at the first, %s",
                              fn, bc.msg);
    }
    if (st) return plm_l_fail_in(L, &ctx, fn);
    R = plm_l_newresults(L, o->chains, 0);
    if (plm_gmodel_draws(&ctx, gm, U, plm_results_draws(R), threads)) return plm_l_fail_in(L, &ctx, fn);
    /* per-chain diagnostics from the kernel's columns; a composite kernel's children report theirs as
    ** "k1.accept_stat__", ..., which become the series "k1.accept_rate", "k1.step_size", ... */
    for (j = 0; j < plm_draws_ncols(U); j++) {
        static const char *const diag[][2] = {{"accept_stat__", "accept_rate"}, {"stepsize__", "step_size"},
                                              {"divergent__", "divergent"}, {"treedepth__", "treedepth"}};
        const char *name = plm_draws_name(U, j);
        size_t len = strlen(name);
        int d;
        for (d = 0; d < 4; d++) {
            size_t dl = strlen(diag[d][0]);
            char series[160];
            if (len < dl || strcmp(name + len - dl, diag[d][0]) != 0 || len - dl >= 120) continue;
            snprintf(series, sizeof series, "%.*s%s", (int)(len - dl), name, diag[d][1]);
            for (c = 0; c < o->chains; c++) {
                size_t n = plm_draws_len(U, c), i, m = 0;
                const double *v = plm_draws_chain(U, j, c);
                double sum = 0, last = NAN;
                long ndiv = 0;
                /* NaN marks iterations where a mixture's child did not run */
                for (i = 0; i < n; i++)
                    if (!isnan(v[i])) sum += v[i], m++, last = v[i], ndiv += v[i] != 0;
                if (d == 2) total_div += ndiv;
                if (d == 3)
                    for (i = 0; i < n; i++) max_depth_hits += v[i] >= ho.max_depth;
                if (plm_results_push(&ctx, R, series, d == 1 ? last : d == 2 ? (double)ndiv : m ? sum / (double)m : NAN))
                    return plm_l_fail_in(L, &ctx, fn);
            }
        }
    }
    if (plm_results_set_int(&ctx, R, "divergences", total_div) ||
        (!hmc && !slice && plm_results_set_int(&ctx, R, "max_treedepth_hits", max_depth_hits)) ||
        plm_results_set(&ctx, R, "compile_time", t1 - t0) || plm_results_set(&ctx, R, "sampling_time", t2 - t1) ||
        plm_results_set_int(&ctx, R, "dim", gm->dim))
        return plm_l_fail_in(L, &ctx, fn);
    plm_l_static_finish(L, R, U, o->output, fn);
    if (picked) {
        lua_pushvalue(L, picked);
        lua_setfield(L, -2, "kernel");
    }
    return 1;
}

/* ---- plume.graph(model, data) ---- */

typedef struct mgraph {
    plm_gmodel *gm;   /* NULL for a dynamic program */
} mgraph;

int plm_l_push_program(lua_State *L, int model, int data, plm_l_program *pg, const char *fn)
{
    int nargs = 1, k;
    if (!lua_istable(L, model) || lua_getfield(L, model, "fn") != LUA_TFUNCTION) return luaL_error(L, "%s: expected a plume.model (got %s)", fn, luaL_typename(L, model));
    pg->fn = lua_gettop(L);
    plm_l_newhandle(L);
    pg->handle = lua_gettop(L);
    pg->args = pg->handle + 1;
    if (luaL_getmetafield(L, data, "__name") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "plume.args") == 0) {
        lua_pop(L, 1);
        nargs = (lua_getfield(L, data, "n"), (int)lua_tointeger(L, -1));
        lua_pop(L, 1);
        luaL_checkstack(L, nargs + 16, fn);
        for (k = 1; k <= nargs; k++) lua_rawgeti(L, data, k);
    } else {
        if (lua_gettop(L) > pg->handle) lua_pop(L, 1);   /* a __name that is not plume.args */
        lua_pushvalue(L, data);
    }
    pg->nargs = nargs;
    return 0;
}

static int l_graph(lua_State *L)
{
    plm_l_program pg;
    plm_gmodel *gm;
    int res;
    lua_settop(L, 2);
    if (!lua_istable(L, 1)) return luaL_error(L, "plume.graph: expected a plume.model (got %s)", luaL_typename(L, 1));
    plm_l_push_program(L, 1, 2, &pg, "plume.graph");
    res = plm_l_trace_static(L, &pg, &gm);
    lua_newtable(L);
    lua_pushstring(L, res ? "static" : "dynamic");
    lua_setfield(L, -2, "mode");
    if (!res) {
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "why");
    } else {
        mgraph *mg = plm_gc_alloc(sizeof *mg);
        if (!mg) return luaL_error(L, "plume: out of memory");
        mg->gm = gm;
        plm_l_pushobj(L, mg, PLM_L_MGRAPH);
        lua_setfield(L, -2, "_g");
        lua_pushinteger(L, gm->dim);
        lua_setfield(L, -2, "dim");
    }
    luaL_setmetatable(L, PLM_L_MGRAPH ".object");
    return 1;
}

static plm_gmodel *check_graph(lua_State *L, const char *fn)
{
    mgraph *mg;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "_g");
    mg = plm_l_testobj(L, -1, PLM_L_MGRAPH);
    if (!mg) {
        lua_getfield(L, 1, "why");
        luaL_error(L, "%s: the program is dynamic, so it has no static graph (%s)", fn, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    return mg->gm;
}

static void push_site(lua_State *L, const plm_gmodel *gm, int i)
{
    const plm_gsite *s = &gm->sites[i];
    int k;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, s->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, plm_gsite_kind_name(s->kind));
    lua_setfield(L, -2, "kind");
    if (s->dist >= 0) {
        lua_pushstring(L, plm_dist_info_of((plm_dist_kind)s->dist)->name);
        lua_setfield(L, -2, "distribution");
    }
    if (s->kind != PLM_GSITE_FACTOR) {
        lua_pushinteger(L, s->dim ? s->dim : 1);
        lua_setfield(L, -2, "dim");
    }
    lua_createtable(L, s->nparents, 0);
    for (k = 0; k < s->nparents; k++) {
        lua_pushstring(L, gm->sites[s->parents[k]].name);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "parents");
}

/* g:nodes() -> { {name=, kind=, distribution=, dim=, parents={...}}, ... } in program order */
static int l_graph_nodes(lua_State *L)
{
    plm_gmodel *gm = check_graph(L, "graph:nodes");
    int i;
    lua_createtable(L, gm->n, 0);
    for (i = 0; i < gm->n; i++) {
        push_site(L, gm, i);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* g:markov_blanket(name) -> names of the sites in its Markov blanket, in program order */
static int l_graph_blanket(lua_State *L)
{
    plm_gmodel *gm = check_graph(L, "graph:markov_blanket");
    const char *name = luaL_checkstring(L, 2);
    int i = plm_gmodel_find(gm, name), n, k, *out;
    if (i < 0) return luaL_error(L, "graph:markov_blanket: no site named '%s'", name);
    out = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *out);
    n = plm_gmodel_blanket(gm, i, out);
    lua_createtable(L, n, 0);
    for (k = 0; k < n; k++) {
        lua_pushstring(L, gm->sites[out[k]].name);
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

/* g:gibbs_plan() -> { {site=, update=, why=}, ... }: which exact Gibbs update each latent site has (l_gibbs.c) */
static int l_graph_gibbs_plan(lua_State *L)
{
    return plm_l_gibbs_plan(L, check_graph(L, "graph:gibbs_plan"));
}

static void add_quoted(luaL_Buffer *b, const char *s)
{
    luaL_addchar(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') luaL_addchar(b, '\\');
        luaL_addchar(b, *s);
    }
    luaL_addchar(b, '"');
}

/* g:dot() -> Graphviz text: latent sites as ellipses, observed as shaded boxes, deterministic as dashed
** ellipses, factors as diamonds; an edge from each parent */
static int l_graph_dot(lua_State *L)
{
    plm_gmodel *gm = check_graph(L, "graph:dot");
    luaL_Buffer b;
    int i, k;
    static const char *const shape[] = {"ellipse", "box, style=filled, fillcolor=gray85", "ellipse, style=dashed",
                                        "diamond"};
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "digraph model {\n");
    for (i = 0; i < gm->n; i++) {
        const plm_gsite *s = &gm->sites[i];
        char line[256];
        luaL_addstring(&b, "  ");
        add_quoted(&b, s->name);
        snprintf(line, sizeof line, " [shape=%s, label=\"", shape[s->kind]);
        luaL_addstring(&b, line);
        for (const char *p = s->name; *p; p++) {
            if (*p == '"' || *p == '\\') luaL_addchar(&b, '\\');
            luaL_addchar(&b, *p);
        }
        if (s->dist >= 0) {
            luaL_addstring(&b, "\\n");
            luaL_addstring(&b, plm_dist_info_of((plm_dist_kind)s->dist)->name);
        }
        luaL_addstring(&b, "\"];\n");
    }
    for (i = 0; i < gm->n; i++)
        for (k = 0; k < gm->sites[i].nparents; k++) {
            luaL_addstring(&b, "  ");
            add_quoted(&b, gm->sites[gm->sites[i].parents[k]].name);
            luaL_addstring(&b, " -> ");
            add_quoted(&b, gm->sites[i].name);
            luaL_addstring(&b, ";\n");
        }
    luaL_addstring(&b, "}\n");
    luaL_pushresult(&b);
    return 1;
}

static int l_graph_tostring(lua_State *L)
{
    lua_getfield(L, 1, "mode");
    if (strcmp(lua_tostring(L, -1), "static") == 0) {
        plm_gmodel *gm = check_graph(L, "graph");
        int i, nl = 0, no = 0, nd = 0;
        for (i = 0; i < gm->n; i++)
            nl += gm->sites[i].kind == PLM_GSITE_LATENT, no += gm->sites[i].kind == PLM_GSITE_OBSERVED,
                nd += gm->sites[i].kind == PLM_GSITE_DETERMINISTIC;
        lua_pushfstring(L, "plume.graph (static: %d latent sites in %d coordinates, %d observed, %d deterministic)", nl,
                        gm->dim, no, nd);
    } else {
        lua_getfield(L, 1, "why");
        lua_pushfstring(L, "plume.graph (dynamic: %s)", lua_tostring(L, -1));
    }
    return 1;
}

int plm_l_static_finish(lua_State *L, plm_results *R, plm_draws *U, const char *output, const char *fn)
{
    if (output && plm_l_mpi_writes(L, output)) {   /* under mpirun, rank 0 writes */
        plm_ctx ctx;
        plm_status st;
        FILE *f = fopen(output, "w");
        if (!f) return luaL_error(L, "%s: cannot open '%s' for writing", fn, output);
        plm_ctx_clear(&ctx);
        st = plm_draws_write_csv(&ctx, plm_results_draws(R), f);
        if (fclose(f) || st) return luaL_error(L, "%s: writing '%s' failed", fn, output);
    }
    plm_l_push_results(L, R);
    plm_l_pushdraws(L, U);
    lua_setfield(L, -2, "sampler");
    return 1;
}

void plm_l_open_static(lua_State *L)
{
    static const luaL_Reg methods[] = {{"nodes", l_graph_nodes}, {"markov_blanket", l_graph_blanket},
                                       {"dot", l_graph_dot}, {"gibbs_plan", l_graph_gibbs_plan}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_MGRAPH, NULL, NULL);
    lua_pop(L, 1);
    luaL_newmetatable(L, PLM_L_MGRAPH ".object");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_graph_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, "plume.graph");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_graph);
    lua_setfield(L, -2, "graph");
}
