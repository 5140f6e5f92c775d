/* l_learned.c -- learned block proposals from Lua (runtime/engines/learned.h): plume.proposals.train, .load
** and .mixture_inputs; proposal objects (:sample, :logq, :save); and plume.kernel.learned, a kernel value that
** plume.infer builds on a static graph (plm_l_learned_build, called by l_kernel.c) into the C kernel, which
** then runs with no Lua call per proposal. Discrete block values are 1-based in Lua, 0-based in C. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "learned.h"
#include "lkernel.h"
#include "lmodel.h"
#include "lutil.h"

#define PLM_L_PROPOSAL "plume.proposal"
#define DEFAULT_LIBRARY "stdlib/proposals"

static int readable(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static plm_learned_prop *check_prop(lua_State *L, int idx, const char *fn)
{
    return plm_l_checkobj(L, idx, PLM_L_PROPOSAL, fn, "proposal");
}

/* ---- training ---- */

typedef struct progress_ud {
    int show;
    const char *motif;
} progress_ud;

static int show_progress(void *ud, long epoch, long epochs, double train_ll, double heldout_ll)
{
    const progress_ud *p = ud;
    if (p->show) {
        fprintf(stderr, "\rplume.proposals.train %s: epoch %ld/%ld  train log q %.4f  held-out log q %.4f%s", p->motif,
                epoch, epochs, train_ll, heldout_ll, epoch == epochs ? "\n" : "");
        fflush(stderr);
    }
    return 0;
}

/* plume.proposals.train(motif, {samples=, epochs=, hidden=, seed=, out=, batch=, lr=, activation=, heldout=,
** K_max= / S_max=, progress=}) -> proposal */
static int l_train(lua_State *L)
{
    static const char *const names[] = {"samples", "epochs", "hidden", "seed", "out", "batch", "lr", "activation",
                                        "heldout", "K_max", "S_max", "progress", NULL};
    const char *fn = "plume.proposals.train", *name = luaL_checkstring(L, 1), *out, *act;
    const plm_motif_def *d = plm_motif_find(name);
    plm_learned_train_opts o;
    plm_learned_prop *p;
    progress_ud pu;
    plm_ctx ctx;
    int i;
    if (!d) return luaL_error(L, "%s: unknown motif '%s' (motifs: mixture, grid, chain)", fn, name);
    if (lua_isnoneornil(L, 2)) lua_newtable(L), lua_replace(L, 2);
    luaL_checktype(L, 2, LUA_TTABLE);
    plm_l_checkopts(L, 2, fn, names);
    memset(&o, 0, sizeof o);
    o.samples = (long)plm_l_optint(L, 2, fn, "samples", 20000);
    o.epochs = (long)plm_l_optint(L, 2, fn, "epochs", 10);
    o.heldout = (long)plm_l_optint(L, 2, fn, "heldout", 0);
    o.batch = (int)plm_l_optint(L, 2, fn, "batch", 64);
    o.lr = plm_l_optnum(L, 2, fn, "lr", 1e-3);
    o.seed = plm_l_seed(L, 2, fn);
    out = plm_l_optstr(L, 2, fn, "out", NULL);
    act = plm_l_optstr(L, 2, fn, "activation", "tanh");
    if (strcmp(act, "tanh") == 0) o.act = PLM_NN_TANH;
    else if (strcmp(act, "relu") == 0) o.act = PLM_NN_RELU;
    else return luaL_error(L, "%s: option 'activation' must be \"tanh\" or \"relu\" (got \"%s\")", fn, act);
    if (o.heldout < 0) return luaL_error(L, "%s: option 'heldout' must be >= 0 (got %d)", fn, (int)o.heldout);
    switch (lua_getfield(L, 2, "hidden")) {
    case LUA_TNIL: o.nhidden = 2, o.hidden[0] = o.hidden[1] = 64; break;
    case LUA_TNUMBER: o.nhidden = 2, o.hidden[0] = o.hidden[1] = (int)plm_l_optint(L, 2, fn, "hidden", 64); break;
    case LUA_TTABLE:
        o.nhidden = (int)luaL_len(L, -1);
        if (o.nhidden > PLM_NN_MAXHIDDEN)
            return luaL_error(L, "%s: option 'hidden' lists %d layers, at most %d", fn, o.nhidden, PLM_NN_MAXHIDDEN);
        for (i = 0; i < o.nhidden; i++) {
            lua_geti(L, -1, i + 1);
            if (!lua_isinteger(L, -1)) return luaL_error(L, "%s: hidden[%d] must be an integer (got %s)", fn, i + 1, luaL_typename(L, -1));
            o.hidden[i] = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        break;
    default: return luaL_error(L, "%s: option 'hidden' must be a layer width or a list of widths (got %s)", fn, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    for (i = 0; i < d->nshape; i++) {
        lua_Integer v = plm_l_optint(L, 2, fn, d->shape_names[i], d->shape_default[i]);
        o.shape[i] = (int)(v < -1000000 ? -1000000 : v > 1000000 ? 1000000 : v);
    }
    for (i = 0; i < 2; i++) {   /* a shape option of another motif is a mistake worth naming */
        const char *k = i ? "S_max" : "K_max";
        if (d->nshape > 0 && strcmp(d->shape_names[0], k) == 0) continue;
        if (lua_getfield(L, 2, k) != LUA_TNIL)
            return luaL_error(L, "%s: option '%s' is not a parameter of motif %s", fn, k, d->name);
        lua_pop(L, 1);
    }
    pu.show = plm_l_optbool(L, 2, fn, "progress", 1);
    pu.motif = d->name;
    o.progress = show_progress;
    o.ud = &pu;
    plm_ctx_clear(&ctx);
    if (plm_learned_train(&ctx, d, &o, &p)) {
        if (ctx.status == PLM_EINTR) plm_interrupt_clear();
        return plm_l_fail_as(L, &ctx, fn);
    }
    if (out) {
        if (plm_learned_save(&ctx, out, p)) return plm_l_fail_as(L, &ctx, fn);
        snprintf(p->path, sizeof p->path, "%s", out);
    }
    plm_l_pushobj(L, p, PLM_L_PROPOSAL);
    return 1;
}

/* plume.proposals.load(path) -> proposal */
static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    plm_learned_prop *p;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_learned_load(&ctx, path, &p)) return plm_l_fail_as(L, &ctx, "plume.proposals.load");
    plm_l_pushobj(L, p, PLM_L_PROPOSAL);
    return 1;
}

/* Read a list of n numbers at idx into x. */
static void read_vec(lua_State *L, int idx, int n, double *x, const char *fn, const char *what)
{
    int i;
    luaL_argexpected(L, lua_istable(L, idx), idx, "table of numbers");
    if ((int)luaL_len(L, idx) != n)
        luaL_error(L, "%s: %s must have %d numbers (got %d)", fn, what, n, (int)luaL_len(L, idx));
    for (i = 0; i < n; i++) {
        lua_geti(L, idx, i + 1);
        if (!lua_isnumber(L, -1)) luaL_error(L, "%s: %s[%d] must be a number (got %s)", fn, what, i + 1, luaL_typename(L, -1));
        x[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
}

/* Values from Lua (discrete members 1-based) to the network's (0-based), checked. */
static void read_values(lua_State *L, const plm_learned_prop *p, int idx, double *v, const char *fn)
{
    int j;
    read_vec(L, idx, p->nmem, v, fn, "values");
    for (j = 0; j < p->nmem; j++)
        if (p->nn.mem[j].kind == PLM_NN_DISCRETE) {
            if (v[j] != floor(v[j]) || v[j] < 1 || v[j] > p->nn.mem[j].card)
                luaL_error(L, "%s: values[%d] must be a category in 1..%d (got %f)", fn, j + 1, p->nn.mem[j].card, (lua_Number)v[j]);
            v[j] -= 1;
        }
}

/* p:sample(inputs [, seed]) -> values, logq */
static int l_sample(lua_State *L)
{
    const char *fn = "proposal:sample";
    plm_learned_prop *p = check_prop(L, 1, fn);
    double *x = plm_l_scratch(L, (size_t)p->nin * sizeof *x), v[PLM_NN_MAXMEM], lq;
    plm_nn_ws w;
    plm_rng r, *rp = plm_l_default_rng(L);
    int j;
    read_vec(L, 2, p->nin, x, fn, "inputs");
    if (!lua_isnoneornil(L, 3)) {
        plm_rng_init(&r, (uint64_t)plm_l_checkint(L, 3, fn, "seed"), 0);
        rp = &r;
    }
    if (plm_nn_ws_init(NULL, &w, &p->nn, 1)) return luaL_error(L, "%s: out of memory", fn);
    plm_nn_sample(&p->nn, &w, x, rp, v, &lq);
    plm_nn_ws_free(&w);
    for (j = 0; j < p->nmem; j++)
        if (p->nn.mem[j].kind == PLM_NN_DISCRETE) v[j] += 1;
    plm_l_pushvec(L, v, (size_t)p->nmem);
    lua_pushnumber(L, lq);
    return 2;
}

/* p:logq(inputs, values) -> log q(values | inputs) */
static int l_logq(lua_State *L)
{
    const char *fn = "proposal:logq";
    plm_learned_prop *p = check_prop(L, 1, fn);
    double *x = plm_l_scratch(L, (size_t)p->nin * sizeof *x), v[PLM_NN_MAXMEM], lq;
    plm_nn_ws w;
    read_vec(L, 2, p->nin, x, fn, "inputs");
    read_values(L, p, 3, v, fn);
    if (plm_nn_ws_init(NULL, &w, &p->nn, 1)) return luaL_error(L, "%s: out of memory", fn);
    plm_nn_logq(&p->nn, &w, 1, x, v, &lq, NULL);
    plm_nn_ws_free(&w);
    lua_pushnumber(L, lq);
    return 1;
}

/* p:save(path) */
static int l_save(lua_State *L)
{
    plm_learned_prop *p = check_prop(L, 1, "proposal:save");
    const char *path = luaL_checkstring(L, 2);
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_learned_save(&ctx, path, p)) return plm_l_fail_as(L, &ctx, "proposal:save");
    return 0;
}

/* p:evaluate(n [, seed]) -> mean log q per block on n fresh instantiations of the motif's prior */
static int l_evaluate(lua_State *L)
{
    const char *fn = "proposal:evaluate";
    plm_learned_prop *p = check_prop(L, 1, fn);
    lua_Integer n = plm_l_checkint(L, 2, fn, "n");
    uint64_t seed = lua_isnoneornil(L, 3) ? plm_l_default_seed(L) : (uint64_t)plm_l_checkint(L, 3, fn, "seed");
    double mean;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (n < 1 || n > 10000000) return luaL_error(L, "%s: n must be in 1..1e7 (got %I)", fn, n);
    if (plm_learned_eval(&ctx, p, (long)n, seed, 7, &mean)) return plm_l_fail_as(L, &ctx, fn);
    lua_pushnumber(L, mean);
    return 1;
}

static int l_prop_index(lua_State *L)
{
    plm_learned_prop *p = check_prop(L, 1, "proposal");
    const char *k = luaL_checkstring(L, 2);
    int i;
    if (strcmp(k, "motif") == 0) lua_pushstring(L, p->meta.motif);
    else if (strcmp(k, "inputs") == 0) lua_pushinteger(L, p->nin);
    else if (strcmp(k, "members") == 0) lua_pushinteger(L, p->nmem);
    else if (strcmp(k, "heldout") == 0) lua_pushnumber(L, p->meta.heldout);
    else if (strcmp(k, "seed") == 0) lua_pushinteger(L, (lua_Integer)p->meta.seed);
    else if (strcmp(k, "samples") == 0) lua_pushinteger(L, p->meta.samples);
    else if (strcmp(k, "epochs") == 0) lua_pushinteger(L, p->meta.epochs);
    else if (strcmp(k, "weights") == 0) lua_pushinteger(L, (lua_Integer)p->nn.nparam);
    else if (strcmp(k, "path") == 0) p->path[0] ? (void)lua_pushstring(L, p->path) : lua_pushnil(L);
    else if (strcmp(k, "shape") == 0) {
        lua_newtable(L);
        for (i = 0; i < p->motif->nshape; i++) {
            lua_pushinteger(L, p->meta.shape[i]);
            lua_setfield(L, -2, p->motif->shape_names[i]);
        }
    } else {
        luaL_getmetatable(L, PLM_L_PROPOSAL);
        lua_getfield(L, -1, "methods");
        lua_getfield(L, -1, k);
    }
    return 1;
}

static int l_prop_tostring(lua_State *L)
{
    plm_learned_prop *p = check_prop(L, 1, "proposal");
    lua_pushfstring(L, "plume.proposal{motif = %s, inputs = %d, members = %d, weights = %d, held-out log q = %f}",
                    p->meta.motif, p->nin, p->nmem, (int)p->nn.nparam, (lua_Number)p->meta.heldout);
    return 1;
}

/* plume.proposals.mixture_inputs{K_max=, k=, w=, mu=, sd=, prior_mean=, prior_sd=, y=, C=, B=} -> inputs: the
** mixture motif's features (k is 1-based; mu[k] is ignored), for proposals used outside a graph. */
static int l_mixture_inputs(lua_State *L)
{
    static const char *const names[] = {"K_max", "k", "w", "mu", "sd", "prior_mean", "prior_sd", "y", "C", "B", NULL};
    const char *fn = "plume.proposals.mixture_inputs";
    int kmax, K, k, j, nin;
    double lw[64], mu[64], sd[64], tot = 0, *x;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, names);
    kmax = (int)plm_l_optint(L, 1, fn, "K_max", 8);
    if (kmax < 2 || kmax > 16) return luaL_error(L, "%s: K_max must be in 2..16 (got %d)", fn, kmax);
    if (lua_getfield(L, 1, "w") != LUA_TTABLE) return luaL_error(L, "%s: option 'w' (the weights) is required", fn);
    K = (int)luaL_len(L, -1);
    if (K < 1 || K > kmax) return luaL_error(L, "%s: %d weights, but K_max is %d", fn, K, kmax);
    read_vec(L, lua_gettop(L), K, lw, fn, "w");
    lua_getfield(L, 1, "mu");
    read_vec(L, lua_gettop(L), K, mu, fn, "mu");
    lua_getfield(L, 1, "sd");
    read_vec(L, lua_gettop(L), K, sd, fn, "sd");
    k = (int)plm_l_optint(L, 1, fn, "k", 1);
    if (k < 1 || k > K) return luaL_error(L, "%s: k must be in 1..%d (got %d)", fn, K, k);
    for (j = 0; j < K; j++) {
        if (!(lw[j] >= 0) || !(sd[j] > 0)) return luaL_error(L, "%s: w[%d] must be >= 0 and sd[%d] > 0", fn, j + 1, j + 1);
        tot += lw[j];
    }
    for (j = 0; j < K; j++) lw[j] = log(lw[j] / tot);
    {   /* the motif's input count for this K_max */
        plm_nn_member mem[PLM_NN_MAXMEM];
        int shape[PLM_NN_MAXSHAPE] = {kmax}, nmem;
        plm_motif_find("mixture")->layout(shape, &nin, &nmem, mem);
    }
    x = plm_l_scratch(L, (size_t)nin * sizeof *x);
    {
        double s = plm_l_optnum(L, 1, fn, "prior_sd", 1);
        if (!(s > 0)) return luaL_error(L, "%s: prior_sd must be > 0 (got %f)", fn, (lua_Number)s);
        plm_motif_mixture_features(kmax, K, k - 1, lw, mu, sd, plm_l_optnum(L, 1, fn, "prior_mean", 0), s,
                                   plm_l_optnum(L, 1, fn, "y", 0), plm_l_optnum(L, 1, fn, "C", 0),
                                   plm_l_optnum(L, 1, fn, "B", 0), x);
    }
    plm_l_pushvec(L, x, (size_t)nin);
    return 1;
}

/* plume.proposals.draw(motif, n [, seed] [, shape]) -> inputs, values: n instantiations from the motif's prior
** (what training learns from): two lists of n lists; discrete values 1-based. shape: {K_max = ..} or {S_max = ..}. */
static int l_draw(lua_State *L)
{
    const char *fn = "plume.proposals.draw", *name = luaL_checkstring(L, 1);
    const plm_motif_def *d = plm_motif_find(name);
    lua_Integer n = plm_l_checkint(L, 2, fn, "n"), i;
    int shape[PLM_NN_MAXSHAPE], nin, nmem, j;
    plm_nn_member mem[PLM_NN_MAXMEM];
    double x[4096], v[PLM_NN_MAXMEM];
    plm_rng r;
    plm_ctx ctx;
    if (!d) return luaL_error(L, "%s: unknown motif '%s' (motifs: mixture, grid, chain)", fn, name);
    if (n < 1 || n > 1000000) return luaL_error(L, "%s: n must be in 1..1e6 (got %I)", fn, n);
    plm_rng_init(&r, lua_isnoneornil(L, 3) ? plm_l_default_seed(L) : (uint64_t)plm_l_checkint(L, 3, fn, "seed"), 0);
    for (j = 0; j < d->nshape; j++)
        shape[j] = lua_istable(L, 4) ? (int)plm_l_optint(L, 4, fn, d->shape_names[j], d->shape_default[j]) : d->shape_default[j];
    plm_ctx_clear(&ctx);
    if (plm_motif_check_shape(&ctx, d, shape)) return plm_l_fail_as(L, &ctx, fn);
    d->layout(shape, &nin, &nmem, mem);
    lua_createtable(L, (int)n, 0);
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
        d->draw(shape, &r, x, v);
        for (j = 0; j < nmem; j++)
            if (mem[j].kind == PLM_NN_DISCRETE) v[j] += 1;
        plm_l_pushvec(L, x, (size_t)nin);
        lua_rawseti(L, -3, i);
        plm_l_pushvec(L, v, (size_t)nmem);
        lua_rawseti(L, -2, i);
    }
    return 2;
}

/* ---- the kernel ---- */

/* plume.kernel.learned{library = "stdlib/proposals", motifs = {...}, proposals = {p, ...}} */
int plm_l_kernel_learned(lua_State *L)
{
    static const char *const names[] = {"library", "motifs", "proposals", "_drop_reverse", NULL};
    const char *fn = "plume.kernel.learned";
    int i, n;
    if (lua_isnoneornil(L, 1)) lua_newtable(L), lua_replace(L, 1);
    luaL_argexpected(L, lua_istable(L, 1), 1, "options table");
    lua_settop(L, 1);
    plm_l_checkopts(L, 1, fn, names);
    lua_newtable(L);
    lua_pushstring(L, "learned");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, plm_l_optstr(L, 1, fn, "library", DEFAULT_LIBRARY));
    lua_setfield(L, -2, "library");
    if (lua_getfield(L, 1, "motifs") != LUA_TNIL) {
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_createtable(L, 1, 0);
            lua_insert(L, -2);
            lua_rawseti(L, -2, 1);
        }
        if (!lua_istable(L, -1)) return luaL_error(L, "%s: option 'motifs' must be a list of motif names (got %s)", fn, luaL_typename(L, -1));
        n = (int)luaL_len(L, -1);
        if (n < 1) return luaL_error(L, "%s: option 'motifs' is empty", fn);
        for (i = 1; i <= n; i++) {
            const char *m;
            lua_geti(L, -1, i);
            m = lua_tostring(L, -1);
            if (lua_type(L, -1) != LUA_TSTRING || !plm_motif_find(m))
                return luaL_error(L, "%s: motifs[%d] must be one of mixture, grid, chain (got %s)", fn, i, luaL_tolstring(L, -1, NULL));
            lua_pop(L, 1);
        }
        lua_setfield(L, -2, "motifs");
    } else
        lua_pop(L, 1);
    if (lua_getfield(L, 1, "proposals") != LUA_TNIL) {
        if (!lua_istable(L, -1)) return luaL_error(L, "%s: option 'proposals' must be a list of proposals (got %s)", fn, luaL_typename(L, -1));
        n = (int)luaL_len(L, -1);
        for (i = 1; i <= n; i++) {
            lua_geti(L, -1, i);
            if (!plm_l_testobj(L, -1, PLM_L_PROPOSAL))
                return luaL_error(L, "%s: proposals[%d] is not a proposal (got %s)", fn, i, luaL_typename(L, -1));
            lua_pop(L, 1);
        }
        lua_setfield(L, -2, "proposals");
    } else
        lua_pop(L, 1);
    /* _drop_reverse: a deliberately wrong kernel (no reverse density), the negative control of the tests */
    lua_pushboolean(L, plm_l_optbool(L, 1, fn, "_drop_reverse", 0));
    lua_setfield(L, -2, "_drop_reverse");
    luaL_setmetatable(L, PLM_L_KERNEL);
    return 1;
}

/* Does motif d occur in gm? */
static int occurs(lua_State *L, const plm_learned_prop *p, plm_gmodel *gm, const char *fn)
{
    plm_motif_occs *o;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (p->motif->detect(&ctx, p->motif, p->meta.shape, gm, &o)) plm_l_fail_in(L, &ctx, fn);
    return o != NULL;
}

plm_kernel *plm_l_learned_build(lua_State *L, int idx, plm_gmodel *gm, const char *fn)
{
    plm_learned_prop *props[16];
    int n = 0, i, explicit_motifs, base = lua_gettop(L);
    const char *lib;
    plm_kernel *k;
    plm_ctx ctx;
    idx = lua_absindex(L, idx);
    plm_ctx_clear(&ctx);
    /* proposals given as objects come first; the library's files for the motifs named (all three when none) */
    if (lua_getfield(L, idx, "proposals") == LUA_TTABLE)
        for (i = 1; i <= (int)luaL_len(L, -1); i++) {
            if (n == 16) luaL_error(L, "%s: at most 16 proposals in one learned kernel", fn);
            lua_geti(L, -1, i);
            props[n++] = check_prop(L, -1, fn);
            lua_pop(L, 1);
        }
    lua_pop(L, 1);
    lib = (lua_getfield(L, idx, "library"), lua_tostring(L, -1));
    explicit_motifs = lua_getfield(L, idx, "motifs") == LUA_TTABLE;
    if (explicit_motifs || n == 0) {
        int nm = explicit_motifs ? (int)luaL_len(L, -1) : 3;
        static const char *const all[] = {"mixture", "grid", "chain"};
        for (i = 0; i < nm; i++) {
            const char *m = explicit_motifs ? (lua_geti(L, -1, i + 1), lua_tostring(L, -1)) : all[i];
            char path[1024];
            plm_learned_prop *p;
            snprintf(path, sizeof path, "%s/%s.plmprop", lib, m);
            if (strcmp(lib, DEFAULT_LIBRARY) == 0) {
                /* the default library: the working directory's, else the source tree's, else the installed one
                ** (make install copies the files to PREFIX/share/plume/proposals) */
                static const char *const dirs[] = {
#ifdef PLM_PROPOSALS_DIR
                    PLM_PROPOSALS_DIR,
#endif
#ifdef PLM_PROPOSALS_SHARE
                    PLM_PROPOSALS_SHARE,
#endif
                    NULL};
                int k;
                for (k = 0; dirs[k] && !readable(path); k++) snprintf(path, sizeof path, "%s/%s.plmprop", dirs[k], m);
            }
            if (explicit_motifs) lua_pop(L, 1);
            if (plm_learned_load(&ctx, path, &p)) plm_l_fail_in(L, &ctx, fn);
            if (strcmp(p->meta.motif, m) != 0)
                luaL_error(L, "%s: proposal file '%s' is for motif %s, not %s", fn, path, p->meta.motif, m);
            if (!explicit_motifs && !occurs(L, p, gm, fn)) continue;
            if (n == 16) luaL_error(L, "%s: at most 16 proposals in one learned kernel", fn);
            props[n++] = p;
        }
        if (!n) luaL_error(L, "%s: none of the motifs mixture, grid, chain occurs in this model", fn);
    }
    if (plm_kernel_learned(&ctx, gm, props, n, &k, NULL)) plm_l_fail_in(L, &ctx, fn);
    if (lua_getfield(L, idx, "_drop_reverse") == LUA_TBOOLEAN && lua_toboolean(L, -1)) plm_learned_set_broken(k, 1);
    lua_settop(L, base);
    return k;
}

void plm_l_open_learned(lua_State *L)
{
    static const luaL_Reg fns[] = {{"train", l_train}, {"load", l_load}, {"mixture_inputs", l_mixture_inputs},
                                   {"draw", l_draw}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"sample", l_sample}, {"logq", l_logq}, {"save", l_save}, {"evaluate", l_evaluate},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__index", l_prop_index}, {"__tostring", l_prop_tostring}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_PROPOSAL, NULL, meta);   /* __index is a function: the methods go in a field */
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "proposals");
}
