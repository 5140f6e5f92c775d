/* l_twist.c -- plume.twist: twists for twisted SMC over LM contexts (function twists; exact HMM x automaton
** guides, GeLaTo and TRACE; token automata for keyword constraints; learned table and network twists). The
** numerics are in runtime/lm/twist.c, twist_learn.c and twistnet.c; contexts use twists through ltwist.h (lang/l_lmctx.c). */
#include "lutil.h"
#include "larray.h"
#include "llm.h"
#include "ltwist.h"
#include "lmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLM_L_TDFA "plume.automaton"

enum { TW_FUNC, TW_GUIDE, TW_NET };

struct plm_l_twist {
    int kind;
    int max_tokens;        /* 0: only EOS ends the text (function twists) */
    plm_hmmguide *g;       /* TW_GUIDE, owned */
    plm_twistnet *net;     /* TW_NET, owned */
};
/* uservalue 1 of a function twist: its spec table {psi =, batch =, phi =} */

typedef struct ltdfa {
    plm_tdfa *d;           /* owned */
} ltdfa;

plm_l_twist *plm_l_checktwist(lua_State *L, int idx, const char *fn, const char *arg)
{
    plm_l_twist *tw = luaL_testudata(L, idx, PLM_L_TWIST);
    if (!tw) luaL_error(L, "%s: %s must be a twist from plume.twist (got %s)", fn, arg, luaL_typename(L, idx));
    return tw;
}

size_t plm_l_twist_state_doubles(const plm_l_twist *tw)
{
    return tw->kind == TW_GUIDE ? (size_t)tw->g->K + 3 : tw->kind == TW_NET ? 2 : 1;
}

/* a guide's state in a context's doubles: alpha[K], then s, logw, t */
static void unpack(const plm_l_twist *tw, double *state, plm_hmmguide_state *st)
{
    int K = tw->g->K;
    st->alpha = state;
    st->s = (int)state[K];
    st->logw = state[K + 1];
    st->t = (int)state[K + 2];
}

static void pack(const plm_l_twist *tw, const plm_hmmguide_state *st, double *state)
{
    int K = tw->g->K;
    state[K] = st->s;
    state[K + 1] = st->logw;
    state[K + 2] = st->t;
}

void plm_l_twist_start(const plm_l_twist *tw, double *state)
{
    if (tw->kind == TW_GUIDE) {
        plm_hmmguide_state st;
        unpack(tw, state, &st);
        plm_hmmguide_start(tw->g, &st);
        pack(tw, &st, state);
    } else if (tw->kind == TW_NET) {   /* the automaton state, the tokens generated */
        state[0] = tw->net->start;
        state[1] = 0;
    } else
        state[0] = 0;
}

void plm_l_twist_advance(const plm_l_twist *tw, double *state, plm_token v)
{
    if (tw->kind == TW_GUIDE) {
        plm_hmmguide_state st;
        double *scratch = malloc((size_t)tw->g->K * sizeof *scratch);
        if (!scratch) return;   /* the state stays behind; the next rows are then those of the old prefix */
        unpack(tw, state, &st);
        plm_hmmguide_advance(tw->g, &st, v, scratch);
        pack(tw, &st, state);
        free(scratch);
    } else if (tw->kind == TW_NET) {
        if (state[0] >= 0) state[0] = tw->net->next[(size_t)state[0] * tw->net->V + v];
        state[1] += 1;
    } else
        state[0] += 1;
}

/* call f(tokens, v) at the top of the stack's function slot fidx; a number or an error naming what */
static double call_tv(lua_State *L, int fidx, int toks, plm_token v, const char *what)
{
    double r;
    int isnum;
    lua_pushvalue(L, fidx);
    lua_pushvalue(L, toks);
    lua_pushinteger(L, v);
    lua_call(L, 2, 1);
    r = lua_tonumberx(L, -1, &isnum);
    if (!isnum) luaL_error(L, "twist: %s returned %s for token %d, not a log value", what, luaL_typename(L, -1), (int)v);
    if (isnan(r)) luaL_error(L, "twist: %s returned NaN for token %d, not a log value", what, (int)v);
    if (r == INFINITY) luaL_error(L, "twist: %s returned +inf for token %d (log values must be < +inf)", what, (int)v);
    lua_pop(L, 1);
    return r;
}

/* a network twist's row: the prefix features, then the network (errors raised as "fn: message") */
static void net_row(lua_State *L, const plm_twistnet *n, plm_lm *lm, int s, int t, const plm_token *full, size_t nfull,
                    const plm_token *gen, size_t ngen, double *out, const char *fn)
{
    plm_ctx ctx;
    double *f = plm_l_scratch(L, ((size_t)n->D + 1) * sizeof *f);
    double *work = plm_l_scratch(L, plm_twistnet_work(n) * sizeof *work);
    plm_ctx_clear(&ctx);
    if (n->V != lm->n_vocab) luaL_error(L, "%s: the twist is over %d tokens, the model has %d", fn, n->V, lm->n_vocab);
    if (plm_twistnet_features(n, &ctx, lm, full, nfull, gen, ngen, f)) plm_l_fail_as(L, &ctx, fn);
    plm_twistnet_logpsi(n, f, s, t, out, work);
    lua_pop(L, 2);
}

void plm_l_twist_rows(lua_State *L, int twidx, plm_lm *lm, const double *state, size_t nprompt, const plm_token *gen,
                      size_t ngen, const double *logp0, double *out)
{
    plm_l_twist *tw = lua_touserdata(L, twidx);
    int V = lm->n_vocab, v, top = lua_gettop(L), all_final, toks, fpsi, fbatch, fphi;
    if (tw->kind == TW_NET) {
        net_row(L, tw->net, lm, (int)state[0], (int)state[1], gen - nprompt, nprompt + ngen, gen, ngen, out, "ctx:twist");
        for (v = 0; v < V; v++)
            if (logp0[v] == -INFINITY) out[v] = -INFINITY;
        lua_settop(L, top);
        return;
    }
    if (tw->kind == TW_GUIDE) {
        plm_hmmguide_state st;
        double *scratch = plm_l_scratch(L, 2 * (size_t)tw->g->K * sizeof *scratch);
        if (tw->g->V != V) luaL_error(L, "ctx:twist: the twist is over %d tokens, the model has %d", tw->g->V, V);
        unpack(tw, (double *)state, &st);
        plm_hmmguide_logpsi(tw->g, &st, out, scratch);
        for (v = 0; v < V; v++)
            if (logp0[v] == -INFINITY) out[v] = -INFINITY;
        lua_settop(L, top);
        return;
    }
    all_final = tw->max_tokens > 0 && ngen + 1 >= (size_t)tw->max_tokens;
    if (tw->max_tokens > 0 && ngen + 1 > (size_t)tw->max_tokens) {
        for (v = 0; v < V; v++) out[v] = -INFINITY;   /* past the twist's horizon: no target mass */
        return;
    }
    lua_createtable(L, (int)ngen, 0);
    for (size_t i = 0; i < ngen; i++) {
        lua_pushinteger(L, gen[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    toks = lua_gettop(L);
    lua_getiuservalue(L, twidx, 1);
    lua_getfield(L, -1, "psi");
    fpsi = lua_gettop(L);
    lua_getfield(L, -2, "batch");
    fbatch = lua_gettop(L);
    lua_getfield(L, -3, "phi");
    fphi = lua_gettop(L);
    if (!all_final && !lua_isnil(L, fbatch)) {
        plm_l_array *a;
        lua_pushvalue(L, fbatch);
        lua_pushvalue(L, toks);
        lua_call(L, 1, 1);
        if ((a = plm_l_toarray(L, -1))) {
            if ((int)a->n != V) luaL_error(L, "twist: batch returned %d values, expected one per token (%d)", (int)a->n, V);
            memcpy(out, a->data, (size_t)V * sizeof *out);
        } else if (lua_istable(L, -1)) {
            if ((int)luaL_len(L, -1) != V) luaL_error(L, "twist: batch returned %d values, expected one per token (%d)", (int)luaL_len(L, -1), V);
            for (v = 0; v < V; v++) {
                lua_rawgeti(L, -1, v + 1);
                out[v] = lua_tonumber(L, -1);
                lua_pop(L, 1);
            }
        } else
            luaL_error(L, "twist: batch returned %s, not a plume.array or list of log values", luaL_typename(L, -1));
        for (v = 0; v < V; v++)
            if (isnan(out[v]) || out[v] == INFINITY) luaL_error(L, "twist: batch returned %f for token %d", out[v], v);
        lua_pop(L, 1);
    }
    for (v = 0; v < V; v++) {
        int final = all_final || plm_lm_is_eos(lm, v);
        if (logp0[v] == -INFINITY) {
            out[v] = -INFINITY;
            continue;
        }
        if (final)
            out[v] = call_tv(L, fphi, toks, v, "phi");
        else if (lua_isnil(L, fbatch))
            out[v] = call_tv(L, fpsi, toks, v, "psi");
    }
    lua_settop(L, top);
}

static int l_twist_gc(lua_State *L)
{
    plm_l_twist *tw = lua_touserdata(L, 1);
    plm_hmmguide_free(tw->g);
    plm_twistnet_free(tw->net);
    tw->g = NULL;
    tw->net = NULL;
    return 0;
}

static plm_l_twist *newtwist(lua_State *L, int kind)
{
    plm_l_twist *tw = lua_newuserdatauv(L, sizeof *tw, 1);
    memset(tw, 0, sizeof *tw);
    tw->kind = kind;
    luaL_setmetatable(L, PLM_L_TWIST);
    return tw;
}

/* plume.twist{ psi = function(prefix, v), batch = function(prefix), phi = function(prefix, v), max_tokens = } */
static int l_twist_new(lua_State *L)
{
    static const char *const names[] = {"psi", "batch", "phi", "max_tokens", NULL};
    const char *fn = "plume.twist";
    plm_l_twist *tw;
    lua_Integer T;
    luaL_checktype(L, 2, LUA_TTABLE);
    plm_l_checkopts(L, 2, fn, names);
    lua_getfield(L, 2, "phi");
    if (!lua_isfunction(L, -1)) return luaL_error(L, "%s: phi must be a function(prefix, v) -> log phi of the finished text (got %s)", fn, luaL_typename(L, -1));
    lua_getfield(L, 2, "psi");
    lua_getfield(L, 2, "batch");
    if (!lua_isfunction(L, -1) && !lua_isfunction(L, -2))
        return luaL_error(L, "%s: give psi = function(prefix, v) or batch = function(prefix) -> one log psi per token", fn);
    lua_pop(L, 3);
    T = plm_l_optint(L, 2, fn, "max_tokens", 0);
    if (T < 0 || T > 1000000) return luaL_error(L, "%s: max_tokens must be in 0..1e6 (got %d)", fn, (int)T);
    tw = newtwist(L, TW_FUNC);
    tw->max_tokens = (int)T;
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* plume.twist.keywords(lm, {"word", ...}) -> an automaton accepting the texts that contain every keyword token */
static int l_twist_keywords(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "plume.twist.keywords", "lm");
    plm_token kw[16];
    plm_ctx ctx;
    int nk, k;
    ltdfa *a;
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 2, LUA_TTABLE);
    nk = (int)luaL_len(L, 2);
    if (nk < 1 || nk > 16) return luaL_error(L, "plume.twist.keywords: between 1 and 16 keywords (got %d)", nk);
    for (k = 0; k < nk; k++) {
        size_t n;
        plm_token *t;
        lua_rawgeti(L, 2, k + 1);
        if (lua_isinteger(L, -1)) {
            lua_Integer id = lua_tointeger(L, -1);
            if (id < 0 || id >= lm->n_vocab) return luaL_error(L, "plume.twist.keywords: keyword %d is token %d, outside 0..%d", k + 1, (int)id, lm->n_vocab - 1);
            kw[k] = (plm_token)id;
            lua_pop(L, 1);
            continue;
        }
        t = plm_l_checktokens(L, -1, lm, "plume.twist.keywords", "keyword", &n);
        if (n != 1)
            return luaL_error(L, "plume.twist.keywords: keyword %d ('%s') is %d tokens; keywords must be single tokens", k + 1,
                              lua_tostring(L, -2), (int)n);
        kw[k] = t[0];
        lua_pop(L, 2);
    }
    a = lua_newuserdatauv(L, sizeof *a, 0);
    a->d = NULL;
    luaL_setmetatable(L, PLM_L_TDFA);
    if (plm_tdfa_keywords(&ctx, lm->n_vocab, kw, nk, &a->d)) return plm_l_fail_as(L, &ctx, "plume.twist.keywords");
    return 1;
}

static plm_tdfa *checkdfa(lua_State *L, int idx, const char *fn);

/* plume.twist.automaton{ states = S, vocab = V, next = function(s, v) -> state or nil | S x V table, accept =
** {s, ...}, start = 0 }: a token automaton from its transition table (states and tokens 0-based; nil or -1 =
** rejected), for automata built elsewhere */
static int l_twist_automaton(lua_State *L)
{
    static const char *const names[] = {"states", "vocab", "next", "accept", "start", NULL};
    const char *fn = "plume.twist.automaton";
    lua_Integer S, V, start, s, v, n, i;
    plm_ctx ctx;
    ltdfa *a;
    int isfn;
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, names);
    S = plm_l_optint(L, 1, fn, "states", 0);
    V = plm_l_optint(L, 1, fn, "vocab", 0);
    start = plm_l_optint(L, 1, fn, "start", 0);
    if (S < 1 || S > 1000000) return luaL_error(L, "%s: states must be in 1..1e6 (got %d)", fn, (int)S);
    if (V < 1 || V > 10000000) return luaL_error(L, "%s: vocab must be in 1..1e7 (got %d)", fn, (int)V);
    if (start < 0 || start >= S) return luaL_error(L, "%s: start must be in 0..%d (got %d)", fn, (int)S - 1, (int)start);
    a = lua_newuserdatauv(L, sizeof *a, 0);
    a->d = NULL;
    luaL_setmetatable(L, PLM_L_TDFA);
    if (plm_tdfa_new(&ctx, (int)S, (int)V, &a->d)) return plm_l_fail_as(L, &ctx, fn);
    a->d->start = (int)start;
    lua_getfield(L, 1, "next");
    isfn = lua_isfunction(L, -1);
    if (!isfn && !lua_istable(L, -1)) return luaL_error(L, "%s: next must be a function(s, v) or a table of rows (got %s)", fn, luaL_typename(L, -1));
    for (s = 0; s < S; s++) {
        if (!isfn && lua_rawgeti(L, -1, s + 1) != LUA_TTABLE) return luaL_error(L, "%s: next[%d] must be a row of %d states", fn, (int)s + 1, (int)V);
        for (v = 0; v < V; v++) {
            lua_Integer t;
            int ok;
            if (isfn) {
                lua_pushvalue(L, -1);
                lua_pushinteger(L, s);
                lua_pushinteger(L, v);
                lua_call(L, 2, 1);
            } else
                lua_rawgeti(L, -1, v + 1);
            if (lua_isnil(L, -1)) t = -1, ok = 1;
            else t = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok || t < -1 || t >= S) return luaL_error(L, "%s: next(%d, %d) must be a state in 0..%d, or nil", fn, (int)s, (int)v, (int)S - 1);
            a->d->next[(size_t)s * V + v] = (int32_t)t;
        }
        if (!isfn) lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "accept") != LUA_TTABLE) return luaL_error(L, "%s: accept must be a list of accepting states", fn);
    n = (lua_Integer)luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
        lua_Integer t;
        int ok;
        lua_rawgeti(L, -1, i);
        t = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || t < 0 || t >= S) return luaL_error(L, "%s: accept[%d] must be a state in 0..%d", fn, (int)i, (int)S - 1);
        a->d->accept[t] = 1;
    }
    lua_pop(L, 1);
    return 1;
}

static plm_tdfa *checkdfa(lua_State *L, int idx, const char *fn)
{
    ltdfa *a = luaL_testudata(L, idx, PLM_L_TDFA);
    if (!a || !a->d) luaL_error(L, "%s: expected an automaton (plume.twist.keywords) (got %s)", fn, luaL_typename(L, idx));
    return a->d;
}

static int l_tdfa_gc(lua_State *L)
{
    ltdfa *a = lua_touserdata(L, 1);
    plm_tdfa_free(a->d);
    a->d = NULL;
    return 0;
}

/* a list of token ids at idx into scratch (pushed) */
static plm_token *checkids(lua_State *L, int idx, int V, const char *fn, size_t *n)
{
    plm_token *t;
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (size_t)luaL_len(L, idx);
    t = plm_l_scratch(L, (*n ? *n : 1) * sizeof *t);
    for (size_t i = 0; i < *n; i++) {
        lua_Integer id;
        int ok;
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        id = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || id < 0 || id >= V) luaL_error(L, "%s: token %d must be an id in 0..%d", fn, (int)i + 1, V - 1);
        t[i] = (plm_token)id;
    }
    return t;
}

/* automaton:run(tokens) -> final state (0-based), or nil when rejected; automaton:accepts(tokens) -> boolean */
static int l_tdfa_run(lua_State *L)
{
    plm_tdfa *d = checkdfa(L, 1, "automaton:run");
    size_t n;
    plm_token *t = checkids(L, 2, d->V, "automaton:run", &n);
    int s = plm_tdfa_run(d, t, n);
    if (s < 0) lua_pushnil(L);
    else lua_pushinteger(L, s);
    return 1;
}

static int l_tdfa_accepts(lua_State *L)
{
    plm_tdfa *d = checkdfa(L, 1, "automaton:accepts");
    size_t n;
    plm_token *t = checkids(L, 2, d->V, "automaton:accepts", &n);
    int s = plm_tdfa_run(d, t, n);
    lua_pushboolean(L, s >= 0 && d->accept[s]);
    return 1;
}

static int l_tdfa_index(lua_State *L)
{
    plm_tdfa *d = checkdfa(L, 1, "automaton");
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "states") == 0) lua_pushinteger(L, d->S);
    else if (strcmp(k, "vocab") == 0) lua_pushinteger(L, d->V);
    else if (strcmp(k, "run") == 0) lua_pushcfunction(L, l_tdfa_run);
    else if (strcmp(k, "accepts") == 0) lua_pushcfunction(L, l_tdfa_accepts);
    else lua_pushnil(L);
    return 1;
}

/* the K x V emission matrix and chain of a plume.hmm whose symbols are the V tokens (symbol v + 1 = token v) */
static plm_hmm *check_token_hmm(lua_State *L, int idx, int V, const char *fn)
{
    plm_hmm *h = plm_l_checkobj(L, idx, "plume.hmm", fn, "hmm");
    if (h->emit != PLM_HMM_CATEGORICAL) return luaL_error(L, "%s: the HMM must have categorical emissions (got %s)", fn, plm_hmm_emit_name(h->emit)), NULL;
    if (h->M != V) return luaL_error(L, "%s: the HMM emits %d symbols, the vocabulary has %d tokens (symbol v + 1 is token v)", fn, h->M, V), NULL;
    return h;
}

/* shared by plume.twist.hmm and plume.twist.trace: the guide from an HMM, an automaton, weights and options */
static int push_guide(lua_State *L, plm_hmm *h, const plm_tdfa *d, const double *logw, plm_lm *lm, int T, double eps,
                      const char *fn)
{
    plm_ctx ctx;
    plm_l_twist *tw;
    plm_ctx_clear(&ctx);
    tw = newtwist(L, TW_GUIDE);
    tw->max_tokens = T;
    if (plm_hmmguide_new(&ctx, h->K, h->M, h->init, h->trans, h->par, d, logw, lm ? lm->eos : NULL, lm ? lm->n_eos : 0,
                         T, eps, &tw->g))
        return plm_l_fail_as(L, &ctx, fn);
    return 1;
}

static const char *const guide_names[] = {"max_tokens", "lm", "smoothing", "weights", NULL};

/* plume.twist.hmm(h, automaton, {max_tokens =, lm =, smoothing = 1e-6, weights =}) */
static int l_twist_hmm(lua_State *L)
{
    const char *fn = "plume.twist.hmm";
    plm_tdfa *d = checkdfa(L, 2, fn);
    plm_hmm *h;
    plm_lm *lm = NULL;
    double eps, *logw = NULL;
    lua_Integer T;
    luaL_checktype(L, 3, LUA_TTABLE);
    plm_l_checkopts(L, 3, fn, guide_names);
    h = check_token_hmm(L, 1, d->V, fn);
    T = plm_l_optint(L, 3, fn, "max_tokens", 0);
    if (T < 1) return luaL_error(L, "%s: max_tokens (the horizon) must be >= 1 (got %d)", fn, (int)T);
    eps = plm_l_optnum(L, 3, fn, "smoothing", 1e-6);
    if (lua_getfield(L, 3, "lm") != LUA_TNIL) lm = plm_l_checklm(L, -1, fn, "lm");
    if (lua_getfield(L, 3, "weights") != LUA_TNIL) {
        size_t n;
        logw = plm_l_checkvec(L, lua_gettop(L), fn, "weights", &n, 0);
        if ((int)n != d->V) return luaL_error(L, "%s: weights has %d entries, expected one log weight per token (%d)", fn, (int)n, d->V);
    }
    return push_guide(L, h, d, logw, lm, (int)T, eps, fn);
}

/* plume.twist.trace(h, {weights =, max_tokens =, lm =, smoothing =}): TRACE -- the attribute is a log-linear
** classifier p(a | x) = prod_t exp(weights[x_t]) (weights <= 0); the twist is its exact expectation under the HMM */
static int l_twist_trace(lua_State *L)
{
    const char *fn = "plume.twist.trace";
    plm_hmm *h = plm_l_checkobj(L, 1, "plume.hmm", fn, "hmm");
    plm_tdfa *d;
    plm_ctx ctx;
    int r;
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "weights");
    if (lua_isnil(L, -1)) return luaL_error(L, "%s: weights (one log weight <= 0 per token) is required", fn);
    lua_pop(L, 1);
    if (plm_tdfa_new(&ctx, 1, h->M, &d)) return plm_l_fail_as(L, &ctx, fn);
    for (int v = 0; v < h->M; v++) d->next[v] = 0;
    d->accept[0] = 1;
    /* reuse plume.twist.hmm's option handling with a one-state accepting automaton */
    {
        ltdfa *a = lua_newuserdatauv(L, sizeof *a, 0);
        a->d = d;
        luaL_setmetatable(L, PLM_L_TDFA);
    }
    lua_pushcfunction(L, l_twist_hmm);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, 2);
    lua_call(L, 3, 1);
    r = 1;
    return r;
}

/* twist:logpsi(prefix [, lm [, prompt]]) for a network twist: prefix holds the generated token ids; lm (and the
** prompt's text) are needed only when the net reads the LM's hidden state */
static int net_logpsi(lua_State *L, const plm_twistnet *n)
{
    const char *fn = "twist:logpsi";
    size_t ng, np = 0, i;
    plm_token *gen, *full, *pt = NULL;
    lua_settop(L, 4);
    gen = checkids(L, 2, n->V, fn, &ng);
    plm_lm *lm = lua_isnoneornil(L, 3) ? NULL : plm_l_checklm(L, 3, fn, "lm");
    int s = n->start;
    plm_l_array *a;
    if ((n->features & PLM_TN_HIDDEN) && !lm) return luaL_error(L, "%s: this net reads the LM's hidden state: give the lm", fn);
    if (lm && !lua_isnoneornil(L, 4)) pt = plm_l_checktokens(L, 4, lm, fn, "prompt", &np);
    full = plm_l_scratch(L, (np + ng + 1) * sizeof *full);
    if (np) memcpy(full, pt, np * sizeof *full);
    if (ng) memcpy(full + np, gen, ng * sizeof *full);
    for (i = 0; i < ng && s >= 0; i++) s = n->next[(size_t)s * n->V + gen[i]];
    a = plm_l_newarray(L, (size_t)n->V);
    if (lm) net_row(L, n, lm, s, (int)ng, full, np + ng, full + np, ng, a->data, fn);
    else {
        double *f = plm_l_scratch(L, ((size_t)n->D + 1) * sizeof *f), *work = plm_l_scratch(L, plm_twistnet_work(n) * sizeof *work);
        plm_ctx ctx;
        plm_ctx_clear(&ctx);
        if (plm_twistnet_features(n, &ctx, NULL, full, ng, full, ng, f)) return plm_l_fail_as(L, &ctx, fn);
        plm_twistnet_logpsi(n, f, s, (int)ng, a->data, work);
        lua_pop(L, 2);
    }
    return 1;
}

/* twist:logpsi(prefix) -> plume.array of log psi(prefix, v) for every token v (an HMM guide; for checking) */
static int l_twist_logpsi(lua_State *L)
{
    plm_l_twist *tw = plm_l_checktwist(L, 1, "twist:logpsi", "self");
    size_t n, i;
    plm_token *t;
    plm_hmmguide_state st;
    double *scratch;
    plm_l_array *a;
    if (tw->kind == TW_NET) return net_logpsi(L, tw->net);
    if (tw->kind != TW_GUIDE) return luaL_error(L, "twist:logpsi: only HMM guides and learned twists have it");
    t = checkids(L, 2, tw->g->V, "twist:logpsi", &n);
    st.alpha = plm_l_scratch(L, (size_t)tw->g->K * sizeof(double));
    scratch = plm_l_scratch(L, 2 * (size_t)tw->g->K * sizeof(double));
    plm_hmmguide_start(tw->g, &st);
    for (i = 0; i < n; i++) plm_hmmguide_advance(tw->g, &st, t[i], scratch);
    a = plm_l_newarray(L, (size_t)tw->g->V);
    plm_hmmguide_logpsi(tw->g, &st, a->data, scratch);
    return 1;
}

/* plume.twist.table(automaton, {max_tokens =, lm =}) -> a learnable twist: psi = exp(W[r][s]) for automaton
** state s with r tokens left, W = 0 until twist:learn */
static int l_twist_table(lua_State *L)
{
    static const char *const names[] = {"max_tokens", "lm", NULL};
    const char *fn = "plume.twist.table";
    plm_tdfa *d = checkdfa(L, 1, fn);
    plm_lm *lm = NULL;
    plm_l_twist *tw;
    plm_ctx ctx;
    lua_Integer T;
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 2, LUA_TTABLE);
    plm_l_checkopts(L, 2, fn, names);
    T = plm_l_optint(L, 2, fn, "max_tokens", 0);
    if (T < 1 || T > 100000) return luaL_error(L, "%s: max_tokens (the horizon) must be in 1..100000 (got %d)", fn, (int)T);
    if (lua_getfield(L, 2, "lm") != LUA_TNIL) lm = plm_l_checklm(L, -1, fn, "lm");
    tw = newtwist(L, TW_GUIDE);
    tw->max_tokens = (int)T;
    if (plm_twist_table_new(&ctx, d, lm ? lm->eos : NULL, lm ? lm->n_eos : 0, (int)T, &tw->g)) return plm_l_fail_as(L, &ctx, fn);
    return 1;
}

/* plume.twist.net{automaton =, max_tokens =, lm =, features = {"state", "left", "token", "bag", "hidden"},
** hidden = 32, bag = 64, window = 4, seed =} -> a learnable network twist (runtime/lm/twistnet.h); psi = 1 until
** twist:learn */
static int l_twist_net(lua_State *L)
{
    static const char *const names[] = {"automaton", "max_tokens", "lm", "features", "hidden", "bag", "window", "seed", NULL};
    static const char *const fnames[] = {"state", "left", "token", "bag", "hidden", NULL};
    const char *fn = "plume.twist.net";
    plm_tdfa *d;
    plm_lm *lm = NULL;
    plm_l_twist *tw;
    plm_ctx ctx;
    lua_Integer T, H, B, W;
    int features = PLM_TN_STATE | PLM_TN_LEFT | PLM_TN_TOKEN | PLM_TN_BAG, E = 0;
    unsigned long long seed;
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, names);
    if (lua_getfield(L, 1, "automaton") == LUA_TNIL) return luaL_error(L, "%s: automaton (the constraint, from plume.twist.keywords or plume.twist.automaton) is required", fn);
    d = checkdfa(L, -1, fn);
    T = plm_l_optint(L, 1, fn, "max_tokens", 0);
    if (T < 1 || T > 100000) return luaL_error(L, "%s: max_tokens (the horizon) must be in 1..100000 (got %d)", fn, (int)T);
    H = plm_l_optint(L, 1, fn, "hidden", 32);
    B = plm_l_optint(L, 1, fn, "bag", 64);
    W = plm_l_optint(L, 1, fn, "window", 4);
    if (H < 1 || H > 4096) return luaL_error(L, "%s: hidden (units) must be in 1..4096 (got %d)", fn, (int)H);
    if (B < 1 || B > 65536) return luaL_error(L, "%s: bag (buckets) must be in 1..65536 (got %d)", fn, (int)B);
    if (W < 1 || W > 1024) return luaL_error(L, "%s: window must be in 1..1024 (got %d)", fn, (int)W);
    if (lua_getfield(L, 1, "lm") != LUA_TNIL) lm = plm_l_checklm(L, -1, fn, "lm");
    if (lm && lm->n_vocab != d->V) return luaL_error(L, "%s: the automaton reads %d tokens, the model has %d", fn, d->V, lm->n_vocab);
    if (lua_getfield(L, 1, "features") != LUA_TNIL) {
        int k, nf;
        if (!lua_istable(L, -1)) return luaL_error(L, "%s: features must be a list of names (state, left, token, bag, hidden)", fn);
        nf = (int)luaL_len(L, -1);
        features = 0;
        for (k = 1; k <= nf; k++) {
            const char *name;
            int j;
            lua_rawgeti(L, -1, k);
            name = lua_tostring(L, -1);
            for (j = 0; fnames[j] && !(name && strcmp(name, fnames[j]) == 0); j++) {}
            if (!fnames[j]) return luaL_error(L, "%s: unknown feature '%s' (features: state, left, token, bag, hidden)", fn, luaL_tolstring(L, -1, NULL));
            features |= 1 << j;
            lua_pop(L, 1);
        }
    }
    if (features & PLM_TN_HIDDEN) {
        if (!lm) return luaL_error(L, "%s: the feature 'hidden' (the LM's last hidden state) needs lm =", fn);
        if ((E = plm_lm_hidden_dim(lm)) <= 0)
            return luaL_error(L, "%s: the feature 'hidden' needs a backend that gives hidden states; %s gives none (only llama.cpp models do)", fn,
                              plm_lm_name(lm));
    }
    seed = plm_l_seed(L, 1, fn);
    tw = newtwist(L, TW_NET);
    tw->max_tokens = (int)T;
    if (plm_twistnet_new(&ctx, d, lm ? lm->eos : NULL, lm ? lm->n_eos : 0, (int)T, (int)H, features, (int)B, (int)W, E, seed, &tw->net))
        return plm_l_fail_as(L, &ctx, fn);
    return 1;
}

static void net_progress(void *ud, int it, int iters, double logz, double ess, double gnorm, double heldout)
{
    plm_l_progress *pr = ud;
    double t;
    if (!pr->on) return;
    t = plm_l_now();
    if (t - pr->last < 0.2 && it < iters && isnan(heldout)) return;
    pr->last = t;
    if (isnan(heldout))
        fprintf(stderr, "\rplume: twist:learn  iteration %d/%d  log Z %.4f  ESS %.1f  |grad| %.3g  %.1fs   ", it, iters, logz, ess, gnorm, t - pr->start);
    else
        fprintf(stderr, "\rplume: twist:learn  iteration %d/%d  log Z %.4f  ESS %.1f  |grad| %.3g  held-out log Z %.4f  %.1fs\n", it, iters,
                logz, ess, gnorm, heldout, t - pr->start);
    fflush(stderr);
}

static void ctl_progress(void *ud, int it, int iters, double logz, double ess)
{
    plm_l_progress *pr = ud;
    double t;
    if (!pr->on) return;
    t = plm_l_now();
    if (t - pr->last < 0.2 && it < iters) return;
    pr->last = t;
    fprintf(stderr, "\rplume: twist:learn  iteration %d/%d  log Z %.4f  ESS %.1f  %.1fs   ", it, iters, logz, ess, t - pr->start);
    fflush(stderr);
}

/* twist:learn(lm, {prompt = "", particles = 64, iters = 50, lr = 0.5, seed =, quiet =}) -> plume.array of the
** iterations' log Z estimates: contrastive twist learning of a table twist */
static int l_twist_learn(lua_State *L)
{
    static const char *const names[] = {"prompt", "particles", "iters", "lr", "seed", "quiet", "eval_every", "heldout", NULL};
    const char *fn = "twist:learn";
    plm_l_twist *tw = plm_l_checktwist(L, 1, fn, "self");
    plm_lm *lm = plm_l_checklm(L, 2, fn, "lm");
    plm_l_progress pr;
    plm_ctx ctx;
    plm_token *prompt;
    size_t np;
    lua_Integer N, iters;
    double lr;
    plm_l_array *trace;
    unsigned long long seed;
    plm_status st;
    plm_ctx_clear(&ctx);
    lua_settop(L, 3);
    if (lua_isnil(L, 3)) {
        lua_newtable(L);
        lua_replace(L, 3);
    }
    luaL_checktype(L, 3, LUA_TTABLE);
    plm_l_checkopts(L, 3, fn, names);
    if (!(tw->kind == TW_NET || (tw->kind == TW_GUIDE && tw->g->K == 1)))
        return luaL_error(L, "%s: only learned twists (plume.twist.table, plume.twist.net) are learned", fn);
    N = plm_l_optint(L, 3, fn, "particles", 64);
    iters = plm_l_optint(L, 3, fn, "iters", 50);
    lr = plm_l_optnum(L, 3, fn, "lr", tw->kind == TW_NET ? 0.02 : 0.5);
    if (N < 2 || N > 1000000) return luaL_error(L, "%s: particles must be in 2..1e6 (got %d)", fn, (int)N);
    if (iters < 1 || iters > 1000000) return luaL_error(L, "%s: iters must be in 1..1e6 (got %d)", fn, (int)iters);
    if (!(lr > 0 && lr < 1e6)) return luaL_error(L, "%s: lr must be > 0 (got %f)", fn, lr);
    seed = plm_l_seed(L, 3, fn);
    lua_getfield(L, 3, "prompt");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    }
    prompt = plm_l_checktokens(L, lua_gettop(L), lm, fn, "prompt", &np);
    trace = plm_l_newarray(L, (size_t)iters);
    lua_getfield(L, 3, "quiet");
    plm_l_progress_start(&pr, !(lua_isnil(L, -1) ? 0 : lua_toboolean(L, -1)));
    lua_pop(L, 1);
    plm_interrupt_clear();
    if (tw->kind == TW_NET) {
        lua_Integer every = plm_l_optint(L, 3, fn, "eval_every", iters >= 10 ? iters / 10 : 1);
        lua_Integer nh = plm_l_optint(L, 3, fn, "heldout", 4);
        plm_l_array *ho;
        if (every < 1 || every > iters) return luaL_error(L, "%s: eval_every must be in 1..iters (got %d)", fn, (int)every);
        if (nh < 0 || nh > 100000) return luaL_error(L, "%s: heldout (sweeps per evaluation) must be in 0..1e5 (got %d)", fn, (int)nh);
        ho = plm_l_newarray(L, nh ? (size_t)(iters / every) : 0);
        st = plm_twistnet_ctl(&ctx, lm, tw->net, prompt, np, (int)N, (int)iters, lr, seed, (int)every, (int)nh, trace->data,
                              ho->data, net_progress, &pr);
        plm_l_progress_end(&pr);
        if (st) return plm_l_fail_as(L, &ctx, fn);
        return 2;
    }
    st = plm_twist_ctl(&ctx, lm, tw->g, prompt, np, (int)N, (int)iters, lr, seed, trace->data, ctl_progress, &pr);
    plm_l_progress_end(&pr);
    if (st) return plm_l_fail_as(L, &ctx, fn);
    return 1;
}

/* twist:save(path): a versioned text file (HMM guides and table twists) */
static int l_twist_save(lua_State *L)
{
    plm_l_twist *tw = plm_l_checktwist(L, 1, "twist:save", "self");
    const char *path = luaL_checkstring(L, 2);
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (tw->kind == TW_FUNC) return luaL_error(L, "twist:save: function twists cannot be saved (they are Lua code)");
    if (!plm_l_mpi_writes(L, path)) return 0;   /* under mpirun, rank 0 writes */
    if (tw->kind == TW_NET ? plm_twistnet_save(&ctx, tw->net, path) : plm_hmmguide_save(&ctx, tw->g, path))
        return plm_l_fail_as(L, &ctx, "twist:save");
    return 0;
}

/* plume.twist.load(path) -> the twist saved there */
static int l_twist_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    plm_ctx ctx;
    plm_l_twist *tw;
    char magic[16] = {0};
    FILE *f = fopen(path, "rb");
    plm_ctx_clear(&ctx);
    if (f) {   /* network twists have their own file kind */
        size_t k = fread(magic, 1, sizeof magic - 1, f);
        magic[k] = 0;
        fclose(f);
    }
    if (strncmp(magic, "plume-twistnet", 14) == 0) {
        tw = newtwist(L, TW_NET);
        if (plm_twistnet_load(&ctx, path, &tw->net)) return plm_l_fail_as(L, &ctx, "plume.twist.load");
        tw->max_tokens = tw->net->T;
        return 1;
    }
    tw = newtwist(L, TW_GUIDE);
    if (plm_hmmguide_load(&ctx, path, &tw->g)) return plm_l_fail_as(L, &ctx, "plume.twist.load");
    tw->max_tokens = tw->g->T;
    return 1;
}

static int l_twist_tostring(lua_State *L)
{
    plm_l_twist *tw = plm_l_checktwist(L, 1, "tostring", "twist");
    if (tw->kind == TW_NET)
        lua_pushfstring(L, "plume.twist(net: %d hidden units, %d parameters, %d automaton states, %d tokens, horizon %d%s)",
                        tw->net->H, (int)tw->net->P, tw->net->S, tw->net->V, tw->net->T,
                        (tw->net->features & PLM_TN_HIDDEN) ? ", reads the LM's hidden state" : "");
    else if (tw->kind == TW_GUIDE && tw->g->K == 1)
        lua_pushfstring(L, "plume.twist(table: %d automaton states, %d tokens, horizon %d)", tw->g->S, tw->g->V, tw->g->T);
    else if (tw->kind == TW_GUIDE)
        lua_pushfstring(L, "plume.twist(hmm guide: %d hidden states x %d automaton states, %d tokens, horizon %d)", tw->g->K,
                        tw->g->S, tw->g->V, tw->g->T);
    else if (tw->max_tokens)
        lua_pushfstring(L, "plume.twist(functions, horizon %d)", tw->max_tokens);
    else
        lua_pushstring(L, "plume.twist(functions)");
    return 1;
}

static int l_twist_index(lua_State *L)
{
    plm_l_twist *tw = plm_l_checktwist(L, 1, "twist", "self");
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "logpsi") == 0) lua_pushcfunction(L, l_twist_logpsi);
    else if (strcmp(k, "learn") == 0) lua_pushcfunction(L, l_twist_learn);
    else if (strcmp(k, "save") == 0) lua_pushcfunction(L, l_twist_save);
    else if (strcmp(k, "max_tokens") == 0) lua_pushinteger(L, tw->max_tokens);
    else if (strcmp(k, "kind") == 0) lua_pushstring(L, tw->kind == TW_NET ? "net" : tw->kind == TW_GUIDE ? "hmm" : "functions");
    else lua_pushnil(L);
    return 1;
}

void plm_l_open_twist(lua_State *L)
{
    static const luaL_Reg fns[] = {{"keywords", l_twist_keywords}, {"hmm", l_twist_hmm}, {"trace", l_twist_trace},
                                   {"automaton", l_twist_automaton}, {"table", l_twist_table}, {"net", l_twist_net},
                                   {"load", l_twist_load}, {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_TWIST);
    lua_pushcfunction(L, l_twist_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_twist_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_twist_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, PLM_L_TDFA);
    lua_pushcfunction(L, l_tdfa_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tdfa_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_twist_new);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "twist");
}
