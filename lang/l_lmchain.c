/* l_lmchain.c -- lm:markov_chain{context =, temperature =}: a language model as a Markov chain on its contexts
** (runtime/lm/lmchain.h), with :stationary(), :spectral_gap(), :mixing_time(eps), :sample(n). The method is
** added to the plume.lm metatable's methods here, so l_lm.c does not know about chains. States are numbered
** from 1 (state 1 is the start context); tokens are ids from 0, as everywhere in plume.lm. */
#include "lutil.h"
#include "llm.h"
#include "lmchain.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PLM_L_LMCHAIN "plume.lmchain"

typedef struct l_lmchain {
    plm_lmchain *c;   /* owned; the lm is the userdata's user value (kept alive for detokenize) */
    int K;
    double T;
} l_lmchain;

static l_lmchain *check(lua_State *L, int idx, const char *fn)
{
    l_lmchain *u = luaL_testudata(L, idx, PLM_L_LMCHAIN);
    if (!u || !u->c)
        luaL_error(L, "%s: self must be a plume.lmchain (got %s); call it with ':'", fn, luaL_typename(L, idx));
    return u;
}

static plm_lm *lm_of(lua_State *L, int idx)
{
    plm_lm *lm;
    lua_getiuservalue(L, idx, 1);
    lm = plm_l_checklm(L, -1, "lmchain", "lm");
    lua_pop(L, 1);
    return lm;
}

/* The start option: a string (tokenized by lm) or a list of token ids; none is the empty context. Pushes the
** owner of the memory. */
static plm_token *start_tokens(lua_State *L, int idx, plm_lm *lm, const char *fn, size_t *n)
{
    *n = 0;
    if (lua_isnoneornil(L, idx)) return plm_l_scratch(L, sizeof(plm_token));
    return plm_l_checktokens(L, idx, lm, fn, "start", n);
}

/* lm:markov_chain{context = K, temperature = 1, start = "", max_states = 100000} */
static int l_markov_chain(lua_State *L)
{
    static const char *const opts[] = {"context", "temperature", "start", "max_states", NULL};
    const char *FN = "lm:markov_chain";
    plm_lm *lm = plm_l_checklm(L, 1, FN, "self");
    plm_lmchain_opts o;
    lua_Integer K, maxs;
    l_lmchain *u;
    plm_ctx ctx;
    luaL_checktype(L, 2, LUA_TTABLE);
    plm_l_checkopts(L, 2, FN, opts);
    lua_getfield(L, 2, "context");
    if (lua_isnil(L, -1)) luaL_error(L, "%s: option 'context' (the number of tokens of state) is required", FN);
    lua_pop(L, 1);
    K = plm_l_optint(L, 2, FN, "context", 1);
    if (K < 1 || K > 64) luaL_error(L, "%s: option 'context' must be in 1..64 (got %I)", FN, (lua_Integer)K);
    maxs = plm_l_optint(L, 2, FN, "max_states", 100000);
    if (maxs < 1 || maxs > 100000000)
        luaL_error(L, "%s: option 'max_states' must be in 1..1e8 (got %I)", FN, (lua_Integer)maxs);
    memset(&o, 0, sizeof o);
    o.context = (int)K;
    o.temperature = plm_l_optnum(L, 2, FN, "temperature", 1);
    if (!(o.temperature >= 0)) {
        char got[32];
        snprintf(got, sizeof got, "%g", o.temperature);
        luaL_error(L, "%s: option 'temperature' must be >= 0 (got %s)", FN, got);
    }
    o.max_states = (size_t)maxs;
    lua_getfield(L, 2, "start");
    o.start = start_tokens(L, -1, lm, FN, &o.nstart);
    u = lua_newuserdatauv(L, sizeof *u, 1);
    u->c = NULL, u->K = o.context, u->T = o.temperature;
    luaL_setmetatable(L, PLM_L_LMCHAIN);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    if (plm_lmchain_new(&ctx, lm, &o, &u->c)) return plm_l_fail_as(L, &ctx, FN);
    return 1;
}

static int l_gc(lua_State *L)
{
    l_lmchain *u = luaL_testudata(L, 1, PLM_L_LMCHAIN);
    if (u && u->c) plm_lmchain_free(u->c), u->c = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    l_lmchain *u = check(L, 1, "lmchain:tostring");
    int nc = plm_lmchain_closed_classes(u->c);
    lua_pushfstring(L, "plume.lmchain: %d states, %d transitions (context %d, temperature %f); %d closed class%s",
                    (int)plm_lmchain_n_states(u->c), (int)plm_lmchain_nnz(u->c), u->K, u->T, nc, nc == 1 ? "" : "es");
    if (nc == 1 && plm_lmchain_period(u->c) > 1) {
        lua_pushfstring(L, ", period %d", plm_lmchain_period(u->c));
        lua_concat(L, 2);
    }
    return 1;
}

/* chain:stationary() -> pi (one entry per state) */
static int l_stationary(lua_State *L)
{
    l_lmchain *u = check(L, 1, "lmchain:stationary");
    size_t n = plm_lmchain_n_states(u->c);
    double *pi = plm_l_scratch(L, n * sizeof *pi);
    plm_ctx ctx;
    if (plm_lmchain_stationary(&ctx, u->c, pi)) return plm_l_fail_as(L, &ctx, "lmchain:stationary");
    plm_l_pushvec(L, pi, n);
    return 1;
}

/* chain:spectral_gap() -> 1 - |lambda_2|, |lambda_2| */
static int l_spectral_gap(lua_State *L)
{
    l_lmchain *u = check(L, 1, "lmchain:spectral_gap");
    double gap, l2;
    plm_ctx ctx;
    if (plm_lmchain_spectral_gap(&ctx, u->c, &gap, &l2)) return plm_l_fail_as(L, &ctx, "lmchain:spectral_gap");
    lua_pushnumber(L, gap);
    lua_pushnumber(L, l2);
    return 2;
}

/* chain:mixing_time(eps [, {from = "worst" | "start" | state, max_steps = 100000, threads = 0}]) -> t */
static int l_mixing_time(lua_State *L)
{
    static const char *const opts[] = {"from", "max_steps", "threads", NULL};
    const char *FN = "lmchain:mixing_time";
    l_lmchain *u = check(L, 1, FN);
    double eps = plm_l_checknum(L, 2, FN, "eps");
    long from = -1;
    lua_Integer maxs;
    size_t t;
    int threads;
    plm_ctx ctx;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        plm_l_checkopts(L, 3, FN, opts);
    }
    maxs = plm_l_optint(L, lua_isnoneornil(L, 3) ? 0 : 3, FN, "max_steps", 100000);
    if (maxs < 0) luaL_error(L, "%s: option 'max_steps' must be >= 0 (got %I)", FN, (lua_Integer)maxs);
    threads = plm_l_threads(L, lua_isnoneornil(L, 3) ? 0 : 3, FN);
    if (!lua_isnoneornil(L, 3)) {
        lua_getfield(L, 3, "from");
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *f = lua_tostring(L, -1);
            if (strcmp(f, "start") == 0) from = 0;
            else if (strcmp(f, "worst") != 0)
                luaL_error(L, "%s: option 'from' must be \"worst\", \"start\" or a state number (got \"%s\")", FN, f);
        } else if (!lua_isnil(L, -1)) {
            int ok;
            lua_Integer s = lua_tointegerx(L, -1, &ok);
            if (!ok) luaL_error(L, "%s: option 'from' must be \"worst\", \"start\" or a state number", FN);
            from = (long)s - 1;
            if (from < 0) luaL_error(L, "%s: option 'from' must be a state 1..%d (got %I)", FN,
                                     (int)plm_lmchain_n_states(u->c), (lua_Integer)s);
        }
        lua_pop(L, 1);
    }
    if (plm_lmchain_mixing_time(&ctx, u->c, eps, from, (size_t)maxs, threads, &t)) return plm_l_fail_as(L, &ctx, FN);
    lua_pushinteger(L, (lua_Integer)t);
    return 1;
}

/* chain:sample(n [, seed]) -> tokens (the n drawn ids), text, states (1-based) */
static int l_sample(lua_State *L)
{
    const char *FN = "lmchain:sample";
    l_lmchain *u = check(L, 1, FN);
    lua_Integer n = plm_l_checkint(L, 2, FN, "n");
    plm_lm *lm = lm_of(L, 1);
    uint64_t seed;
    int32_t *st;
    plm_token *tok;
    size_t i, len, nb;
    plm_rng r;
    plm_ctx ctx;
    char *text;
    if (n < 0 || n > 100000000) luaL_error(L, "%s: n must be in 0..1e8 (got %I)", FN, (lua_Integer)n);
    if (lua_isnoneornil(L, 3)) seed = plm_l_default_seed(L);
    else seed = (uint64_t)plm_l_checkint(L, 3, FN, "seed");
    st = plm_l_scratch(L, ((size_t)n + 1) * sizeof *st);
    tok = plm_l_scratch(L, ((size_t)n + 1) * sizeof *tok);
    plm_rng_init(&r, seed, 0);
    if (plm_lmchain_sample(&ctx, u->c, &r, 0, (size_t)n, st)) return plm_l_fail_as(L, &ctx, FN);
    for (i = 0; i < (size_t)n; i++) {
        const plm_token *s = plm_lmchain_state(u->c, (size_t)st[i], &len);
        tok[i] = s[len - 1];
    }
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < (size_t)n; i++) {
        lua_pushinteger(L, tok[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (plm_lm_detokenize(lm, &ctx, tok, (size_t)n, NULL, 0, &nb)) return plm_l_fail_as(L, &ctx, FN);
    text = plm_l_scratch(L, nb + 1);
    if (plm_lm_detokenize(lm, &ctx, tok, (size_t)n, text, nb, &nb)) return plm_l_fail_as(L, &ctx, FN);
    lua_pushlstring(L, text, nb);
    lua_remove(L, -2);   /* the scratch */
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < (size_t)n; i++) {
        lua_pushinteger(L, (lua_Integer)st[i] + 1);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 3;
}

static void push_state(lua_State *L, const plm_lmchain *c, size_t i)
{
    size_t len, j;
    const plm_token *t = plm_lmchain_state(c, i, &len);
    lua_createtable(L, (int)len, 0);
    for (j = 0; j < len; j++) {
        lua_pushinteger(L, t[j]);
        lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
}

/* chain:states() -> {tokens of state 1, ...} */
static int l_states(lua_State *L)
{
    l_lmchain *u = check(L, 1, "lmchain:states");
    size_t n = plm_lmchain_n_states(u->c), i;
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        push_state(L, u->c, i);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* chain:state(i) -> tokens, text */
static int l_state(lua_State *L)
{
    const char *FN = "lmchain:state";
    l_lmchain *u = check(L, 1, FN);
    lua_Integer i = plm_l_checkint(L, 2, FN, "i");
    size_t n = plm_lmchain_n_states(u->c), len, nb;
    plm_lm *lm = lm_of(L, 1);
    const plm_token *t;
    plm_ctx ctx;
    char *text;
    if (i < 1 || (size_t)i > n) luaL_error(L, "%s: i must be a state 1..%d (got %I)", FN, (int)n, (lua_Integer)i);
    push_state(L, u->c, (size_t)i - 1);
    t = plm_lmchain_state(u->c, (size_t)i - 1, &len);
    if (plm_lm_detokenize(lm, &ctx, t, len, NULL, 0, &nb)) return plm_l_fail_as(L, &ctx, FN);
    text = plm_l_scratch(L, nb + 1);
    if (plm_lm_detokenize(lm, &ctx, t, len, text, nb, &nb)) return plm_l_fail_as(L, &ctx, FN);
    lua_pushlstring(L, text, nb);
    lua_remove(L, -2);
    return 2;
}

/* chain:transitions(i) -> successors (states, 1-based), probabilities */
static int l_transitions(lua_State *L)
{
    const char *FN = "lmchain:transitions";
    l_lmchain *u = check(L, 1, FN);
    lua_Integer i = plm_l_checkint(L, 2, FN, "i");
    size_t n = plm_lmchain_n_states(u->c), m, j;
    const int32_t *succ;
    const double *prob;
    if (i < 1 || (size_t)i > n) luaL_error(L, "%s: i must be a state 1..%d (got %I)", FN, (int)n, (lua_Integer)i);
    plm_lmchain_row(u->c, (size_t)i - 1, &succ, &prob, &m);
    lua_createtable(L, (int)m, 0);
    for (j = 0; j < m; j++) {
        lua_pushinteger(L, (lua_Integer)succ[j] + 1);
        lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
    plm_l_pushvec(L, prob, m);
    return 2;
}

static int l_index(lua_State *L)
{
    l_lmchain *u = check(L, 1, "lmchain");
    const char *k = lua_tostring(L, 2);
    if (k && strcmp(k, "n_states") == 0) lua_pushinteger(L, (lua_Integer)plm_lmchain_n_states(u->c));
    else if (k && strcmp(k, "nnz") == 0) lua_pushinteger(L, (lua_Integer)plm_lmchain_nnz(u->c));
    else if (k && strcmp(k, "context") == 0) lua_pushinteger(L, u->K);
    else if (k && strcmp(k, "temperature") == 0) lua_pushnumber(L, u->T);
    else if (k && strcmp(k, "closed_classes") == 0) lua_pushinteger(L, plm_lmchain_closed_classes(u->c));
    else if (k && strcmp(k, "period") == 0) {
        if (plm_lmchain_closed_classes(u->c) == 1) lua_pushinteger(L, plm_lmchain_period(u->c));
        else lua_pushnil(L);
    } else {
        lua_getmetatable(L, 1);
        lua_getfield(L, -1, "methods");
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
    }
    return 1;
}

void plm_l_open_lmchain(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"stationary", l_stationary}, {"spectral_gap", l_spectral_gap}, {"mixing_time", l_mixing_time},
        {"sample", l_sample},         {"states", l_states},             {"state", l_state},
        {"transitions", l_transitions}, {NULL, NULL},
    };
    static const luaL_Reg meta[] = {{"__index", l_index}, {"__gc", l_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_LMCHAIN);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    /* lm:markov_chain joins the methods of plume.lm (opened before this module) */
    luaL_getmetatable(L, PLM_L_LM);
    lua_getfield(L, -1, "methods");
    lua_pushcfunction(L, l_markov_chain);
    lua_setfield(L, -2, "markov_chain");
    lua_pop(L, 2);
}
