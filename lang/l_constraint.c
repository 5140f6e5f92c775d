/* l_constraint.c -- constraints over bytes as Lua values: plume.regex(pattern), plume.grammar(text) (with
** plume.grammar.json), the methods of a constraint, and the two whole-text samplers plume.masked_decode
** (locally masked decoding) and plume.asap (grammar-aligned sampling). The automata, masks and samplers are
** in runtime/lm/constraint.h; ctx:mask(constraint) is in l_lmctx.c; plume.json_schema in lang/plume/_constraint.lua. */
#include "lutil.h"
#include "llm.h"
#include "lcons.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLM_L_VTRIE "plume.vtrie"

void plm_l_cons_retain(plm_l_cons *k) { k->refs++; }

void plm_l_cons_release(plm_l_cons *k)
{
    if (k && --k->refs == 0) {
        plm_cons_free(k->c);
        free(k);
    }
}

typedef struct lcons_ud {
    plm_l_cons *k;
} lcons_ud;

plm_l_cons *plm_l_testcons(lua_State *L, int idx)
{
    lcons_ud *u = luaL_testudata(L, idx, PLM_L_CONS);
    return u ? u->k : NULL;
}

static plm_cons *checkcons(lua_State *L, int idx, const char *fn)
{
    plm_l_cons *k = plm_l_testcons(L, idx);
    if (!k) luaL_error(L, "%s: expected a constraint (plume.regex, plume.grammar, plume.json_schema; got %s)", fn,
                       luaL_typename(L, idx));
    return k->c;
}

static int cons_gc(lua_State *L)
{
    lcons_ud *u = lua_touserdata(L, 1);
    plm_l_cons_release(u->k);
    u->k = NULL;
    return 0;
}

/* push a new constraint value owning c; uservalue 1 is its source text */
static void pushcons(lua_State *L, plm_cons *c, int src)
{
    lcons_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->k = NULL;
    luaL_setmetatable(L, PLM_L_CONS);
    if (!(u->k = malloc(sizeof *u->k))) {
        plm_cons_free(c);
        luaL_error(L, "constraint: out of memory");
    }
    u->k->c = c;
    u->k->refs = 1;
    lua_pushvalue(L, src);
    lua_setiuservalue(L, -2, 1);
}

/* plume.regex(pattern) */
static int l_regex(lua_State *L)
{
    size_t len;
    const char *p = luaL_checklstring(L, 1, &len);
    plm_ctx ctx;
    plm_cons *c;
    plm_ctx_clear(&ctx);
    if (plm_regex_compile(&ctx, p, len, &c)) return plm_l_fail_as(L, &ctx, "plume.regex");
    pushcons(L, c, 1);
    return 1;
}

/* plume.grammar(text) (the __call of the plume.grammar table: the text is argument 2) */
static int l_grammar(lua_State *L)
{
    size_t len;
    const char *p;
    plm_ctx ctx;
    plm_cons *c;
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "plume.grammar: the grammar must be a string (got %s)", luaL_typename(L, 2));
    p = lua_tolstring(L, 2, &len);
    plm_ctx_clear(&ctx);
    if (plm_grammar_compile(&ctx, p, len, &c)) return plm_l_fail_as(L, &ctx, "plume.grammar");
    pushcons(L, c, 2);
    return 1;
}

/* c:check(text) -> "dead" | "alive" | "accept" */
static int l_check(lua_State *L)
{
    plm_cons *c = checkcons(L, 1, "constraint:check");
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    plm_ctx ctx;
    int st;
    static const char *const names[] = {"dead", "alive", "accept"};
    plm_ctx_clear(&ctx);
    if (plm_cons_check(&ctx, c, s, len, &st)) return plm_l_fail(L, &ctx);
    lua_pushstring(L, names[st]);
    return 1;
}

/* c:matches(text) -> whether the whole text is in the language */
static int l_matches(lua_State *L)
{
    plm_cons *c = checkcons(L, 1, "constraint:matches");
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    plm_ctx ctx;
    int st;
    plm_ctx_clear(&ctx);
    if (plm_cons_check(&ctx, c, s, len, &st)) return plm_l_fail(L, &ctx);
    lua_pushboolean(L, st == PLM_CONS_ACCEPT);
    return 1;
}

static int vtrie_gc(lua_State *L)
{
    plm_vtrie **t = lua_touserdata(L, 1);
    plm_vtrie_free(*t);
    *t = NULL;
    return 0;
}

plm_vtrie *plm_l_vtrie(lua_State *L, int idx)
{
    plm_lm *lm = plm_l_checklm(L, idx, "constraint", "lm");
    plm_vtrie **t;
    plm_ctx ctx;
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, LUA_REGISTRYINDEX, "plume.vtries") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_newtable(L);
        lua_pushstring(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "plume.vtries");
    }
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TUSERDATA) {
        t = lua_touserdata(L, -1);
        lua_pop(L, 2);
        return *t;
    }
    lua_pop(L, 1);
    t = lua_newuserdatauv(L, sizeof *t, 0);
    *t = NULL;
    if (luaL_newmetatable(L, PLM_L_VTRIE)) {
        lua_pushcfunction(L, vtrie_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    plm_ctx_clear(&ctx);
    if (plm_vtrie_new(&ctx, lm, t)) return plm_l_fail(L, &ctx), NULL;
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    lua_pop(L, 2);
    return *t;
}

/* c:allowed(lm [, text]) -> the token ids that may follow text (default "") */
static int l_allowed(lua_State *L)
{
    plm_cons *c = checkcons(L, 1, "constraint:allowed");
    plm_lm *lm = plm_l_checklm(L, 2, "constraint:allowed", "lm");
    plm_vtrie *t = plm_l_vtrie(L, 2);
    size_t len, n = 0;
    const char *s = luaL_optlstring(L, 3, "", &len);
    unsigned char *allowed = plm_l_scratch(L, (size_t)lm->n_vocab);
    plm_ctx ctx;
    plm_cstate s0 = plm_cons_start(c), st;
    plm_status e;
    plm_ctx_clear(&ctx);
    e = plm_cons_advance(&ctx, c, s0, s, len, &st);
    plm_cons_release(c, s0);
    if (e) return plm_l_fail(L, &ctx);
    e = plm_cons_mask(&ctx, c, t, st, allowed, NULL);
    plm_cons_release(c, st);
    if (e) return plm_l_fail(L, &ctx);
    lua_newtable(L);
    for (int v = 0; v < lm->n_vocab; v++)
        if (allowed[v]) {
            lua_pushinteger(L, v);
            lua_rawseti(L, -2, (lua_Integer)++n);
        }
    return 1;
}

static int l_cons_index(lua_State *L)
{
    plm_cons *c = checkcons(L, 1, "constraint");
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "kind") == 0) {
        lua_pushstring(L, plm_cons_kind(c));
        return 1;
    }
    if (strcmp(k, "source") == 0) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

static int l_cons_tostring(lua_State *L)
{
    plm_cons *c = checkcons(L, 1, "constraint");
    size_t len;
    const char *src;
    lua_getiuservalue(L, 1, 1);
    src = lua_tolstring(L, -1, &len);
    if (src && len <= 40 && !memchr(src, '\n', len))
        lua_pushfstring(L, "plume.%s(%s)", plm_cons_kind(c), src);
    else
        lua_pushfstring(L, "plume.%s(%d bytes)", plm_cons_kind(c), (int)len);
    return 1;
}

/* ---- samplers over whole texts ---- */

typedef struct gen_opts {
    const plm_token *prompt;
    size_t np;
    lua_Integer samples, max_tokens;
    unsigned long long seed;
} gen_opts;

static const char *const gen_option_names[] = {"prompt", "samples", "max_tokens", "seed", NULL};

static void gen_options(lua_State *L, int opts, plm_lm *lm, const char *fn, gen_opts *o)
{
    if (!lua_isnoneornil(L, opts) && !lua_istable(L, opts))
        luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, opts));
    if (!lua_istable(L, opts)) opts = 0;
    plm_l_checkopts(L, opts, fn, gen_option_names);
    o->samples = plm_l_optint(L, opts, fn, "samples", 1);
    o->max_tokens = plm_l_optint(L, opts, fn, "max_tokens", 32);
    o->seed = plm_l_seed(L, opts, fn);
    if (o->samples < 1 || o->samples > 100000000)
        luaL_error(L, "%s: option 'samples' must be in 1..1e8 (got %I)", fn, o->samples);
    if (o->max_tokens < 1 || o->max_tokens > 100000)
        luaL_error(L, "%s: option 'max_tokens' must be in 1..1e5 (got %I)", fn, o->max_tokens);
    if (opts && lua_getfield(L, opts, "prompt") != LUA_TNIL) {
        o->prompt = plm_l_checktokens(L, lua_gettop(L), lm, fn, "prompt", &o->np);
    } else {
        o->prompt = plm_l_scratch(L, sizeof(plm_token));
        o->np = 0;
    }
}

/* push the bytes of n tokens */
static void push_bytes(lua_State *L, const plm_lm *lm, const plm_token *t, size_t n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) luaL_addlstring(&b, lm->tok_bytes[t[i]], lm->tok_len[t[i]]);
    luaL_pushresult(&b);
}

/* the result table of both samplers: texts, logp, logq (and failed for masked decoding) */
static int run_sampler(lua_State *L, int asap)
{
    const char *fn = asap ? "plume.asap" : "plume.masked_decode";
    plm_lm *lm = plm_l_checklm(L, 1, fn, "lm");
    plm_cons *c = checkcons(L, 2, fn);
    plm_vtrie *t;
    gen_opts o;
    plm_ctx ctx;
    plm_rng rng;
    plm_asap *a = NULL;
    plm_token *out;
    int res;
    lua_Integer i, failed = 0;
    plm_status st = PLM_OK;
    lua_settop(L, 3);
    gen_options(L, 3, lm, fn, &o);
    t = plm_l_vtrie(L, 1);
    out = plm_l_scratch(L, (size_t)o.max_tokens * sizeof *out);
    plm_ctx_clear(&ctx);
    plm_rng_init(&rng, o.seed, 0);
    lua_createtable(L, 0, 6);
    res = lua_gettop(L);
    lua_createtable(L, (int)o.samples, 0);   /* texts */
    lua_createtable(L, (int)o.samples, 0);   /* logp */
    lua_createtable(L, (int)o.samples, 0);   /* logq */
    lua_createtable(L, asap ? (int)o.samples : 0, 0);   /* ASAp's EFG(root) after each sample */
    if (asap && (st = plm_asap_new(&ctx, lm, c, t, o.prompt, o.np, (size_t)o.max_tokens, &a))) return plm_l_fail(L, &ctx);
    plm_interrupt_clear();
    for (i = 1; i <= o.samples && !st; i++) {
        size_t n;
        double lp, lq;
        st = asap ? plm_asap_sample(&ctx, a, &rng, out, &n, &lp, &lq)
                  : plm_cons_sample_masked(&ctx, lm, c, t, o.prompt, o.np, (size_t)o.max_tokens, &rng, out, &n, &lp, &lq);
        if (st) break;
        if (lp == -INFINITY) {   /* masked decoding reached a state that allows nothing */
            failed++;
            lua_pushboolean(L, 0);
        } else
            push_bytes(L, lm, out, n);
        lua_rawseti(L, res + 1, i);
        lua_pushnumber(L, lp);
        lua_rawseti(L, res + 2, i);
        lua_pushnumber(L, lq);
        lua_rawseti(L, res + 3, i);
        if (asap) {
            lua_pushnumber(L, plm_asap_mass(a));
            lua_rawseti(L, res + 4, i);
        }
    }
    if (a) {
        lua_pushnumber(L, plm_asap_mass(a));
        lua_setfield(L, res, "mass");
        lua_pushinteger(L, (lua_Integer)plm_asap_nodes(a));
        lua_setfield(L, res, "nodes");
        plm_asap_free(a);
    }
    if (st) return plm_l_fail_as(L, &ctx, fn);
    if (asap)
        lua_setfield(L, res, "mass_history");
    else
        lua_pop(L, 1);
    lua_setfield(L, res, "logq");
    lua_setfield(L, res, "logp");
    lua_setfield(L, res, "texts");
    lua_pushinteger(L, failed);
    lua_setfield(L, res, "failed");
    return 1;
}

/* plume.masked_decode(lm, c, {prompt=, samples=1, max_tokens=32, seed=}) */
static int l_masked_decode(lua_State *L) { return run_sampler(L, 0); }

/* plume.asap(lm, c, {prompt=, samples=1, max_tokens=32, seed=}) */
static int l_asap(lua_State *L) { return run_sampler(L, 1); }

void plm_l_open_constraint(lua_State *L)
{
    static const luaL_Reg methods[] = {{"check", l_check}, {"matches", l_matches}, {"allowed", l_allowed}, {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_CONS);
    lua_pushcfunction(L, cons_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_cons_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_cons_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_regex);
    lua_setfield(L, -2, "regex");
    lua_pushcfunction(L, l_masked_decode);
    lua_setfield(L, -2, "masked_decode");
    lua_pushcfunction(L, l_asap);
    lua_setfield(L, -2, "asap");
    /* plume.grammar: callable, with the generic JSON grammar as .json (and its text as .json_source) */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushcfunction(L, l_grammar);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    lua_pushcfunction(L, l_grammar);
    lua_pushvalue(L, -2);
    lua_pushstring(L, plm_grammar_json_source());
    lua_call(L, 2, 1);
    lua_setfield(L, -2, "json");
    lua_pushstring(L, plm_grammar_json_source());
    lua_setfield(L, -2, "json_source");
    lua_setfield(L, -2, "grammar");
}
