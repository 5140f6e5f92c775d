/* l_loo.c -- what a posterior says about data: pointwise log-likelihoods with PSIS-LOO and WAIC
** (runtime/loo.h) behind plume.loo, and posterior predictive draws behind post:predict. Both evaluate the
** model program at each posterior draw. A static program is traced once with symbolic values (its latent
** sites become inputs bound to the draws' columns; observed sites become their log densities, or fresh draws
** of their distributions) and the compiled outputs are evaluated in C over all draws at once. A dynamic
** program is run once per draw on numbers (slower: one Lua run per draw). */
#include "l_expr.h"
#include "ldist.h"
#include "linfer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loo.h"

#define MAXDIM 64

typedef enum ev_what { EV_LOGLIK, EV_PREDICT } ev_what;

typedef struct evaluator {
    plm_l_exec ex;          /* first: the handle's hooks receive &ex */
    ev_what what;
    int numeric;            /* 0: symbolic trace; 1: a run on the numbers of draw (chain, i) */
    const plm_draws *D;     /* the posterior draws */
    plm_graph *g;
    int *xcol, nx, xcap;    /* symbolic: the draws column bound to input k of group X */
    char **names;           /* outputs, in program order */
    int *node;              /* symbolic: their nodes */
    double *val;            /* numeric: their values at this draw (NaN: not made in this run) */
    int nout, ocap, next;   /* next: where the name search starts (runs usually repeat the same order) */
    int chain;
    size_t i;
    plm_rng *rng;
    int err;                /* 1 after out of memory */
    double *out;            /* the outputs over all draws (what evaluate returns) */
} evaluator;

#define PLM_L_EVALUATOR "plume.evaluator"

static int ev_error(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    luaL_where(L, 1);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

static void scalar_name(char *buf, size_t n, const char *addr, int dim, int k)
{
    if (dim == 1) snprintf(buf, n, "%s", addr);
    else snprintf(buf, n, "%s[%d]", addr, k + 1);
}

/* The index of output `name`, made when new (numeric runs may meet sites in a new order or for the first
** time in a later draw). */
static int output(lua_State *L, evaluator *e, const char *name)
{
    int j, k;
    for (j = 0; j < e->nout; j++) {
        k = (e->next + j) % e->nout;
        if (strcmp(e->names[k], name) == 0) return e->next = (k + 1) % e->nout, k;
    }
    if (e->nout == e->ocap) {
        int nc = e->ocap ? 2 * e->ocap : 64;
        char **nn = realloc(e->names, (size_t)nc * sizeof *nn);
        int *nd = nn ? realloc(e->node, (size_t)nc * sizeof *nd) : NULL;
        double *nv = nd ? realloc(e->val, (size_t)nc * sizeof *nv) : NULL;
        if (nn) e->names = nn;
        if (nd) e->node = nd;
        if (nv) e->val = nv;
        if (!nv) luaL_error(L, "plume: out of memory");
        e->ocap = nc;
    }
    if (!(e->names[e->nout] = malloc(strlen(name) + 1))) luaL_error(L, "plume: out of memory");
    strcpy(e->names[e->nout], name);
    e->node[e->nout] = -1;
    e->val[e->nout] = NAN;
    return e->nout++;
}

static void set_output(lua_State *L, evaluator *e, const char *name, int node, double v)
{
    int k = output(L, e, name);
    if (e->numeric ? !isnan(e->val[k]) : e->node[k] >= 0) ev_error(L, "site '%s' is made twice in one run", name);
    e->node[k] = node;
    e->val[k] = v;
}

/* The draws column of a latent scalar, or an error naming it. */
static int latent_col(lua_State *L, const evaluator *e, const char *name)
{
    int c = plm_draws_col((plm_draws *)e->D, name, 0);
    if (c < 0) ev_error(L, "latent site '%s' is not in the posterior's draws (was the posterior made by this model?)", name);
    return c;
}

static const char *ev_addr(lua_State *L, const char *fn)
{
    if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
        ev_error(L, "%s: address must be a string (got %s)", fn, luaL_typename(L, 2));
    return lua_tostring(L, 2);
}

/* Nodes of a value at idx (a number, a symbol, or a table of dim of them). */
static void value_nodes(lua_State *L, evaluator *e, int idx, int dim, const char *addr, int *x)
{
    char what[160];
    int i;
    snprintf(what, sizeof what, "value of '%s'", addr);
    if (dim == 1 && lua_type(L, idx) != LUA_TTABLE) {
        x[0] = plm_l_tonode(L, idx, e->g, what);
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE || luaL_len(L, idx) != dim) ev_error(L, "%s must be a table of %d numbers", what, dim);
    for (i = 0; i < dim; i++) {
        lua_geti(L, idx, i + 1);
        x[i] = plm_l_tonode(L, -1, e->g, what);
        lua_pop(L, 1);
    }
}

static int symbolic(lua_State *L, evaluator *e, plm_l_method which)
{
    plm_ctx *ctx = &e->ex.ctx;
    char name[512];
    int x[MAXDIM], dim, k;
    const char *addr;
    plm_l_symdist *sd;
    plm_ctx_clear(ctx);
    switch (which) {
    case PLM_L_M_SAMPLE:
        addr = ev_addr(L, "m:sample");
        if (!(sd = plm_l_tosymdist(L, 3, e->g))) ev_error(L, "m:sample: dist must be a distribution (got %s)", luaL_typename(L, 3));
        if ((dim = plm_symdist_dim(&sd->d)) > MAXDIM) ev_error(L, "m:sample '%s': dimension over %d", addr, MAXDIM);
        for (k = 0; k < dim; k++) {
            scalar_name(name, sizeof name, addr, dim, k);
            if (e->nx == e->xcap) {
                int nc = e->xcap ? 2 * e->xcap : 64, *n2 = realloc(e->xcol, (size_t)nc * sizeof *n2);
                if (!n2) luaL_error(L, "plume: out of memory");
                e->xcol = n2, e->xcap = nc;
            }
            e->xcol[e->nx] = latent_col(L, e, name);
            x[k] = plm_graph_input(e->g, PLM_GRP_X, e->nx++);
        }
        plm_l_push_syms(L, x, dim);
        return 1;
    case PLM_L_M_OBSERVE: {
        plm_dist *nd = plm_l_testobj(L, 3, PLM_L_DIST);
        int out[MAXDIM];
        addr = ev_addr(L, "m:observe");
        if (e->what == EV_LOGLIK && nd && !plm_l_hassym(L, 4)) {
            double buf[MAXDIM];
            if (nd->dim > MAXDIM || !plm_l_todistvalue(L, 4, nd, buf))
                ev_error(L, "m:observe: value of '%s' must be %s", addr, nd->dim == 1 ? "a number" : "a table of numbers");
            set_output(L, e, addr, plm_graph_const(e->g, plm_dist_logpdf(nd, buf)), 0);
            return 0;
        }
        if (!(sd = plm_l_tosymdist(L, 3, e->g))) ev_error(L, "m:observe: dist must be a distribution (got %s)", luaL_typename(L, 3));
        if ((dim = plm_symdist_dim(&sd->d)) > MAXDIM) ev_error(L, "m:observe '%s': dimension over %d", addr, MAXDIM);
        if (e->what == EV_LOGLIK) {
            value_nodes(L, e, 4, dim, addr, x);
            if (plm_l_symdist_logpdf(ctx, e->g, sd, x, &out[0])) ev_error(L, "m:observe '%s': %s", addr, ctx->msg);
            set_output(L, e, addr, out[0], 0);
            return 0;
        }
        if (plm_l_symdist_sample(ctx, e->g, sd, out)) ev_error(L, "m:observe '%s': %s", addr, ctx->msg);
        for (k = 0; k < dim; k++) {
            scalar_name(name, sizeof name, addr, dim, k);
            set_output(L, e, name, out[k], 0);
        }
        plm_l_push_syms(L, out, dim);
        return 1;
    }
    case PLM_L_M_FACTOR:
        return 0;   /* a factor is no observation: it has no pointwise likelihood and nothing to predict */
    case PLM_L_M_DETERMINISTIC:
        addr = ev_addr(L, "m:deterministic");
        if (e->what == EV_PREDICT) {
            dim = lua_type(L, 3) == LUA_TTABLE ? (int)luaL_len(L, 3) : 1;
            if (dim < 1 || dim > MAXDIM) ev_error(L, "m:deterministic: value of '%s' must have 1..%d entries", addr, MAXDIM);
            value_nodes(L, e, 3, dim, addr, x);
            for (k = 0; k < dim; k++) {
                scalar_name(name, sizeof name, addr, dim, k);
                set_output(L, e, name, x[k], 0);
            }
        }
        lua_settop(L, 3);
        return 1;
    }
    return 0;
}

/* The numeric value of a latent scalar at the current draw, or an error naming the site. */
static double draw_value(lua_State *L, const evaluator *e, const char *name)
{
    double v = plm_draws_chain(e->D, latent_col(L, e, name), e->chain)[e->i];
    if (plm_draws_is_absent(v) || isnan(v))
        ev_error(L, "latent site '%s' has no value in draw %d of chain %d", name, (int)e->i + 1, e->chain + 1);
    return v;
}

static int numeric(lua_State *L, evaluator *e, plm_l_method which)
{
    plm_dist *nd = plm_l_testobj(L, 3, PLM_L_DIST);
    double x[MAXDIM];
    char name[512];
    const char *addr;
    int k;
    switch (which) {
    case PLM_L_M_SAMPLE:
        addr = ev_addr(L, "m:sample");
        if (!nd) ev_error(L, "m:sample: dist must be a distribution (got %s)", luaL_typename(L, 3));
        if (nd->dim > MAXDIM) ev_error(L, "m:sample '%s': dimension over %d", addr, MAXDIM);
        for (k = 0; k < nd->dim; k++) {
            scalar_name(name, sizeof name, addr, nd->dim, k);
            x[k] = draw_value(L, e, name);
        }
        if (nd->kind == PLM_DIST_CATEGORICAL) x[0] -= nd->base;   /* the draws show labels */
        return plm_l_hand_over(L, &e->ex, nd, x);
    case PLM_L_M_OBSERVE:
        addr = ev_addr(L, "m:observe");
        if (!nd) ev_error(L, "m:observe: dist must be a distribution (got %s)", luaL_typename(L, 3));
        if (nd->dim > MAXDIM) ev_error(L, "m:observe '%s': dimension over %d", addr, MAXDIM);
        if (e->what == EV_LOGLIK) {
            if (!plm_l_todistvalue(L, 4, nd, x))
                ev_error(L, "m:observe: value of '%s' must be %s", addr, nd->dim == 1 ? "a number" : "a table of numbers");
            set_output(L, e, addr, -1, plm_dist_logpdf(nd, x));
            return 0;
        }
        plm_dist_sample(nd, e->rng, x);
        for (k = 0; k < nd->dim; k++) {
            scalar_name(name, sizeof name, addr, nd->dim, k);
            set_output(L, e, name, -1, x[k] + (nd->kind == PLM_DIST_CATEGORICAL ? nd->base : 0));
        }
        return plm_l_hand_over(L, &e->ex, nd, x);
    case PLM_L_M_FACTOR:
        return 0;
    case PLM_L_M_DETERMINISTIC:
        addr = ev_addr(L, "m:deterministic");
        if (e->what == EV_PREDICT) {
            int dim = lua_type(L, 3) == LUA_TTABLE ? (int)luaL_len(L, 3) : 1;
            if (dim < 1 || dim > MAXDIM) ev_error(L, "m:deterministic: value of '%s' must have 1..%d entries", addr, MAXDIM);
            for (k = 0; k < dim; k++) {
                scalar_name(name, sizeof name, addr, dim, k);
                if (dim > 1) lua_geti(L, 3, k + 1);
                else lua_pushvalue(L, 3);
                if (!lua_isnumber(L, -1)) ev_error(L, "m:deterministic: value of '%s' must be numbers", addr);
                set_output(L, e, name, -1, lua_tonumber(L, -1));
                lua_pop(L, 1);
            }
        }
        lua_settop(L, 3);
        return 1;
    }
    return 0;
}

static int ev_hook(lua_State *L, plm_l_exec *ex, plm_l_method which)
{
    evaluator *e = (evaluator *)ex;
    return e->numeric ? numeric(L, e, which) : symbolic(L, e, which);
}

static const plm_l_hooks ev_hooks = {"evaluate", NULL, NULL, ev_hook};

/* Free what e holds; e can be freed again (its __gc runs after an explicit free). */
static void ev_free(evaluator *e)
{
    int k;
    for (k = 0; k < e->nout; k++) free(e->names[k]);
    free(e->names), free(e->node), free(e->val), free(e->xcol), free(e->out);
    e->names = NULL, e->node = NULL, e->val = NULL, e->xcol = NULL, e->out = NULL;
    e->nout = e->ocap = e->nx = e->xcap = 0;
}

static int ev_gc(lua_State *L)
{
    ev_free(lua_touserdata(L, 1));
    return 0;
}

/* A new evaluator, pushed as a userdata whose __gc frees its buffers: a Lua error met while evaluating (the
** program's own, or a bad option) leaks nothing. */
static evaluator *ev_new(lua_State *L)
{
    evaluator *e = lua_newuserdatauv(L, sizeof *e, 0);
    memset(e, 0, sizeof *e);
    luaL_setmetatable(L, PLM_L_EVALUATOR);
    return e;
}

static int traced_call(lua_State *L)
{
    plm_l_trace_call(L, lua_gettop(L) - 1, 0, NULL);
    return 0;
}

/* Run the program once under e: fn at pg.fn, the handle, the args. Returns the lua_pcall status (the error
** on the stack when not LUA_OK). */
static int run_once(lua_State *L, const plm_l_program *pg, evaluator *e, int traced)
{
    plm_l_handle *h = lua_touserdata(L, pg->handle);
    int i, st;
    if (traced) lua_pushcfunction(L, traced_call);
    lua_pushvalue(L, pg->fn);
    lua_pushvalue(L, pg->handle);
    for (i = 0; i < pg->nargs; i++) lua_pushvalue(L, pg->args + i);
    h->ex = &e->ex;
    st = lua_pcall(L, pg->nargs + 1 + traced, 0, 0);
    h->ex = NULL;
    return st;
}

/* Evaluate the model at index 2 with data at 3 over every draw of D: out (nout x S, output-major) of the
** outputs named in e->names. Symbolic first; a program that cannot be traced is run per draw. out belongs to
** e (ev_free, or e's __gc after an error). *numeric_run says which happened. */
static double *evaluate(lua_State *L, const char *fn, const plm_draws *D, ev_what what, unsigned long long seed,
                        int threads, evaluator *e, int *numeric_run)
{
    int nch = plm_draws_nchains(D), c, k, outcap = 0, is_static;
    struct plm_gmodel *gm;
    size_t S = 0, off, j;
    plm_l_program pg;
    double *out = NULL;
    plm_ctx ctx;
    for (c = 0; c < nch; c++) S += plm_draws_len(D, c);
    if (!S) luaL_error(L, "%s: the posterior has no draws", fn);
    memset(e, 0, sizeof *e);
    e->what = what;
    e->D = D;
    e->ex.hooks = &ev_hooks;
    plm_l_push_program(L, 2, 3, &pg, fn);
    plm_ctx_clear(&ctx);
    /* the static compiler decides what is static (it refuses what a symbolic run would get silently wrong,
    ** such as `if z == 1` on a discrete symbol) */
    is_static = plm_l_trace_static(L, &pg, &gm);
    lua_pop(L, is_static ? 1 : 2);   /* the graph holder, and the reason when not static */
    if (is_static) {
        e->g = plm_l_newgraph(L);
        lua_setiuservalue(L, pg.handle, 1);
    }
    if (is_static && run_once(L, &pg, e, 1) == LUA_OK) {
        plm_prog *p;
        plm_prog_in in[PLM_NGROUPS];
        double *X, **o;
        plm_rng *rng = NULL;
        *numeric_run = 0;
        if (!e->nout) return NULL;
        X = plm_l_scratch(L, ((size_t)e->nx * S + 1) * sizeof *X);
        o = plm_l_scratch(L, (size_t)e->nout * sizeof *o);
        if (!(e->out = out = malloc((size_t)e->nout * S * sizeof *out))) luaL_error(L, "plume: out of memory");
        for (k = 0; k < e->nx; k++)
            for (c = 0, off = 0; c < nch; c++) {
                size_t n = plm_draws_len(D, c);
                memcpy(X + (size_t)k * S + off, plm_draws_chain(D, e->xcol[k], c), n * sizeof *X);
                off += n;
            }
        for (k = 0; k < e->nout; k++) o[k] = out + (size_t)k * S;
        memset(in, 0, sizeof in);
        in[PLM_GRP_X].p = X;
        in[PLM_GRP_X].ld = S;
        if (what == EV_PREDICT) {
            rng = plm_l_scratch(L, S * sizeof *rng);
            for (j = 0; j < S; j++) plm_rng_init(&rng[j], seed, j);
        }
        if (plm_prog_compile(&ctx, e->g, e->nout, e->node, 1u << PLM_GRP_X, &p) ||
            plm_prog_eval(&ctx, p, S, in, o, rng, threads)) {
            plm_l_fail_in(L, &ctx, fn);
        }
        return out;
    }
    /* dynamic: one run per draw on numbers */
    if (is_static) lua_pop(L, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, pg.handle, 1);
    *numeric_run = 1;
    e->numeric = 1;
    e->rng = plm_l_scratch(L, sizeof *e->rng);
    for (c = 0, off = 0; c < nch; c++) {
        size_t n = plm_draws_len(D, c);
        for (j = 0; j < n; j++, off++) {
            e->chain = c, e->i = j;
            plm_rng_init(e->rng, seed, off);
            for (k = 0; k < e->nout; k++) e->val[k] = NAN;
            if (run_once(L, &pg, e, 0) != LUA_OK) {
                lua_error(L);
            }
            if (plm_interrupted()) {
                plm_interrupt_clear();
                luaL_error(L, "%s: interrupted", fn);
            }
            if (e->ocap > outcap) {
                /* room for the outputs met so far; earlier draws keep NaN for sites they did not make */
                double *n2 = realloc(out, (size_t)e->ocap * S * sizeof *n2);
                size_t q;
                if (!n2) {
                        luaL_error(L, "plume: out of memory");
                }
                for (q = (size_t)outcap * S; q < (size_t)e->ocap * S; q++) n2[q] = NAN;
                e->out = out = n2;
                outcap = e->ocap;
            }
            for (k = 0; k < e->nout; k++) out[(size_t)k * S + off] = e->val[k];
        }
    }
    return out;
}

/* The posterior's draws, the model and the data, from (post [, model, data]): model and data default to
** the ones the posterior was made from (plume.infer and plume.laplace keep them). Leaves post, model, data
** at 1, 2, 3. */
static plm_draws *post_args(lua_State *L, const char *fn)
{
    plm_draws *D;
    lua_settop(L, 3);
    if (!lua_istable(L, 1) || lua_getfield(L, 1, "_draws") == LUA_TNIL)
        luaL_error(L, "%s: expected a posterior (got %s)", fn, luaL_typename(L, 1));
    D = plm_l_checkobj(L, -1, PLM_L_DRAWS, fn, "posterior");
    lua_pop(L, 1);
    if (lua_isnil(L, 2)) {
        lua_getfield(L, 1, "_model");
        if (lua_isnil(L, -1))
            luaL_error(L, "%s: the posterior does not know its model (it was read from a file?): pass the model and "
                          "the data as arguments", fn);
        lua_replace(L, 2);
        if (lua_isnil(L, 3)) {
            lua_getfield(L, 1, "_data");
            lua_replace(L, 3);
        }
    }
    return D;
}

/* The outputs as a results table (pushed) with D's chains. */
static void push_outputs(lua_State *L, const char *fn, const plm_draws *D, const evaluator *e, const double *out)
{
    int nch = plm_draws_nchains(D), c, k;
    size_t S = 0, off, j;
    plm_results *R = plm_l_newresults(L, nch, 0);
    plm_draws *O = plm_results_draws(R);
    double *row = plm_l_scratch(L, ((size_t)e->nout + 1) * sizeof *row);
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    for (c = 0; c < nch; c++) S += plm_draws_len(D, c);
    for (k = 0; k < e->nout; k++) plm_draws_col(O, e->names[k], 1);
    for (c = 0, off = 0; c < nch; c++)
        for (j = 0; j < plm_draws_len(D, c); j++, off++) {
            for (k = 0; k < e->nout; k++) row[k] = isnan(out[(size_t)k * S + off]) ? plm_draws_absent() : out[(size_t)k * S + off];
            if (plm_draws_push(&ctx, O, c, row, e->nout, 0)) plm_l_fail_in(L, &ctx, fn);
        }
    lua_pop(L, 1);   /* the scratch row */
    plm_l_push_results(L, R);
    lua_insert(L, -2);
    lua_setfield(L, -2, "_results");   /* the box owns the draws */
}

/* Finish a results table on the stack top as a posterior: method, chains and draws, then plume._posterior. */
static void as_posterior(lua_State *L, const plm_draws *D, const char *method, int numeric_run)
{
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    lua_pushinteger(L, plm_draws_nchains(D));
    lua_setfield(L, -2, "chains");
    lua_pushinteger(L, (lua_Integer)plm_draws_len(D, 0));
    lua_setfield(L, -2, "samples");
    lua_pushstring(L, numeric_run ? "per draw (dynamic program)" : "compiled (static program)");
    lua_setfield(L, -2, "evaluation");
    plm_l_pushmodule(L);
    lua_getfield(L, -1, "_posterior");
    lua_remove(L, -2);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
}

/* post:predict([model, newdata] [, {seed =, threads =}]) -> a posterior of every observed and deterministic
** site under each draw of post, observed sites drawn afresh from their distributions */
static int l_predict(lua_State *L)
{
    static const char *const predict_opts[] = {"seed", "threads", NULL};
    const char *fn = "post:predict";
    evaluator *e;
    double *out;
    int numeric_run, threads, opts;
    unsigned long long seed;
    plm_draws *D;
    lua_settop(L, 4);
    if (!lua_isnil(L, 4) && !lua_istable(L, 4)) return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 4));
    opts = lua_istable(L, 4) ? 4 : 0;
    plm_l_checkopts(L, opts, fn, predict_opts);
    seed = plm_l_seed(L, opts, fn);
    threads = plm_l_threads(L, opts, fn);
    lua_settop(L, 3);
    D = post_args(L, fn);
    e = ev_new(L);
    out = evaluate(L, fn, D, EV_PREDICT, seed, threads, e, &numeric_run);
    if (!e->nout) {
        ev_free(e);
        return luaL_error(L, "%s: the model has no observed or deterministic site to predict", fn);
    }
    push_outputs(L, fn, D, e, out);
    ev_free(e);
    as_posterior(L, D, "predict", numeric_run);
    return 1;
}

/* post:log_lik([model, data]) -> a posterior-shaped table of the pointwise log-likelihoods: one column per
** observed site, one row per draw */
static int l_log_lik(lua_State *L)
{
    const char *fn = "post:log_lik";
    evaluator *e;
    double *out;
    int numeric_run;
    plm_draws *D = post_args(L, fn);
    e = ev_new(L);
    out = evaluate(L, fn, D, EV_LOGLIK, 0, 1, e, &numeric_run);
    if (!e->nout) {
        ev_free(e);
        return luaL_error(L, "%s: the model has no observed site", fn);
    }
    push_outputs(L, fn, D, e, out);
    ev_free(e);
    as_posterior(L, D, "log_lik", numeric_run);
    return 1;
}

static void setnum(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void setint(lua_State *L, const char *k, size_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* plume.loo(post [, model, data]) -> PSIS-LOO and WAIC, with the pointwise values */
static int l_loo(lua_State *L)
{
    const char *fn = "plume.loo";
    evaluator *e;
    double *out;
    int numeric_run, k, nch;
    size_t S = 0, N;
    plm_loo_point *pts;
    plm_loo_totals tot;
    plm_ctx ctx;
    plm_draws *D = post_args(L, fn);
    e = ev_new(L);
    out = evaluate(L, fn, D, EV_LOGLIK, 0, 1, e, &numeric_run);
    nch = plm_draws_nchains(D);
    for (k = 0; k < nch; k++) {
        if (plm_draws_len(D, k) != plm_draws_len(D, 0)) {
            ev_free(e);
            return luaL_error(L, "%s: the chains have different lengths", fn);
        }
        S += plm_draws_len(D, k);
    }
    N = (size_t)e->nout;
    if (!N) {
        ev_free(e);
        return luaL_error(L, "%s: the model has no observed site: nothing to cross-validate", fn);
    }
    for (k = 0; k < e->nout; k++) {
        size_t s;
        for (s = 0; s < S; s++)
            if (isnan(out[(size_t)k * S + s])) {
                lua_pushfstring(L, "%s: observation '%s' has no log-likelihood under draw %d (a site absent from some "
                                   "runs, or a NaN density)", fn, e->names[k], (int)s + 1);
                ev_free(e);
                return lua_error(L);
            }
    }
    pts = plm_l_scratch(L, N * sizeof *pts);
    plm_ctx_clear(&ctx);
    if (plm_loo(&ctx, out, N, nch, S / (size_t)nch, pts, &tot)) {
        ev_free(e);
        return plm_l_fail_in(L, &ctx, fn);
    }
    lua_createtable(L, 0, 24);
    setnum(L, "elpd_loo", tot.elpd_loo);
    setnum(L, "se", tot.se_elpd_loo);
    setnum(L, "p_loo", tot.p_loo);
    setnum(L, "se_p_loo", tot.se_p_loo);
    setnum(L, "looic", tot.looic);
    setnum(L, "se_looic", tot.se_looic);
    setint(L, "n_data_points", N);
    setint(L, "n_samples", S);
    setint(L, "k_good", tot.k_good);
    setint(L, "k_ok", tot.k_ok);
    setint(L, "k_bad", tot.k_bad);
    setint(L, "k_very_bad", tot.k_very_bad);
    lua_pushboolean(L, tot.k_bad + tot.k_very_bad > 0);
    lua_setfield(L, -2, "warning");
    lua_pushstring(L, numeric_run ? "per draw (dynamic program)" : "compiled (static program)");
    lua_setfield(L, -2, "evaluation");
    lua_createtable(L, 0, 8);
    setnum(L, "elpd_waic", tot.elpd_waic);
    setnum(L, "se", tot.se_elpd_waic);
    setnum(L, "p_waic", tot.p_waic);
    setnum(L, "se_p_waic", tot.se_p_waic);
    setnum(L, "waic", tot.waic);
    setnum(L, "se_waic", tot.se_waic);
    setint(L, "p_waic_large", tot.p_waic_large);
    lua_pushboolean(L, tot.p_waic_large > 0);
    lua_setfield(L, -2, "warning");
    lua_setfield(L, -2, "waic");
    {
        static const char *const cols[] = {"names", "pareto_k", "elpd_loo_i", "p_loo_i", "lpd_i", "elpd_waic_i",
                                           "p_waic_i", "r_eff"};
        int c;
        size_t i;
        for (c = 0; c < 8; c++) {
            lua_createtable(L, (int)N, 0);
            for (i = 0; i < N; i++) {
                const plm_loo_point *p = &pts[i];
                double v[] = {0, p->k, p->elpd_loo, p->p_loo, p->lpd, p->elpd_waic, p->p_waic, p->r_eff};
                if (c == 0) lua_pushstring(L, e->names[i]);
                else lua_pushnumber(L, v[c]);
                lua_rawseti(L, -2, (lua_Integer)i + 1);
            }
            lua_setfield(L, -2, cols[c]);
        }
    }
    ev_free(e);
    luaL_setmetatable(L, "plume.loo");
    return 1;
}

static double field(lua_State *L, int t, const char *k)
{
    double v;
    lua_getfield(L, t, k);
    v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The table R's loo prints: estimates with standard errors, then the Pareto k diagnostic. */
static int l_loo_tostring(lua_State *L)
{
    char buf[1024];
    int w;
    lua_getfield(L, 1, "waic");
    w = lua_gettop(L);
    snprintf(buf, sizeof buf,
             "PSIS-LOO (%d observations, %d draws)\n"
             "           Estimate       SE\n"
             "elpd_loo %10.2f %8.2f\n"
             "p_loo    %10.2f %8.2f\n"
             "looic    %10.2f %8.2f\n"
             "Pareto k: %d good (<= 0.5), %d ok (<= 0.7), %d bad (<= 1), %d very bad (> 1)%s\n"
             "WAIC: elpd_waic %.2f (SE %.2f), p_waic %.2f, waic %.2f (SE %.2f)%s",
             (int)field(L, 1, "n_data_points"), (int)field(L, 1, "n_samples"), field(L, 1, "elpd_loo"),
             field(L, 1, "se"), field(L, 1, "p_loo"), field(L, 1, "se_p_loo"), field(L, 1, "looic"),
             field(L, 1, "se_looic"), (int)field(L, 1, "k_good"), (int)field(L, 1, "k_ok"), (int)field(L, 1, "k_bad"),
             (int)field(L, 1, "k_very_bad"),
             field(L, 1, "k_bad") + field(L, 1, "k_very_bad") > 0
                 ? "\nwarning: some Pareto k > 0.7: PSIS-LOO is unreliable for those points (refit without them, or "
                   "use k-fold cross-validation)"
                 : "",
             field(L, w, "elpd_waic"), field(L, w, "se"), field(L, w, "p_waic"), field(L, w, "waic"), field(L, w, "se_waic"),
             field(L, w, "p_waic_large") > 0 ? "\nwarning: some p_waic > 0.4: WAIC is unreliable; prefer PSIS-LOO" : "");
    lua_pushstring(L, buf);
    return 1;
}

void plm_l_open_loo(lua_State *L)
{
    luaL_newmetatable(L, PLM_L_EVALUATOR);
    lua_pushcfunction(L, ev_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, "plume.loo");
    lua_pushcfunction(L, l_loo_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_loo);
    lua_setfield(L, -2, "loo");
    lua_pushcfunction(L, l_predict);
    lua_setfield(L, -2, "_predict");
    lua_pushcfunction(L, l_log_lik);
    lua_setfield(L, -2, "_log_lik");
}
