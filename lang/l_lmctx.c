/* l_lmctx.c -- language-model contexts inside model programs: lm:context(prompt) and the primitives behind
** ctx:next_token(), ctx:observe_text(), ctx:mask() (written in lang/plume/_lm.lua, where they may yield).
**
** A context owns a KV sequence of its backend. Under plume.smc every particle's next-token request is
** yielded to the scheduler and served by plume._lmctx_batch, which extends all the particles' sequences in
** ONE plm_lm_seq_extend call (one llama_decode). The sequence of a new context is forked from a template
** holding the evaluated prompt, so a prompt shared by all particles is evaluated once. When resampling copies
** a particle, its contexts are forked (__plume_fork: the KV cache is copied, nothing is evaluated) and the copy
** adopts them while it replays its parent's history, taking the next-token distributions the parent already
** computed from the context's history instead of asking the model again. */
#include "lutil.h"
#include "ldist.h"
#include "llm.h"
#include "ltwist.h"
#include "larray.h"
#include "lcons.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLM_L_LMCTX "plume.lmctx"

typedef struct lmctx {
    plm_lm *lm;          /* borrowed from the lm userdata held in uservalue 1 */
    int seq;             /* the backend sequence, -1 until first needed */
    size_t seq_len;      /* tokens of toks[] already in seq */
    plm_token *toks;     /* prompt, then generated tokens; toks[n..full) is an adopted snapshot's future */
    size_t n, full, cap;
    size_t prompt_len;
    unsigned char *mask; /* n_vocab flags: 1 = allowed next; NULL when no mask is pending */
    /* twisted SMC (ctx:twist): the twist (uservalue 3) and its state for the current prefix */
    int twisted;
    plm_twist_proposal proposal;   /* user proposals: the function is uservalue 4 */
    double logpsi_prev;            /* log psi of the current prefix (0 at the prompt: psi_0 = 1) */
    double *tstate;                /* the twist's state (plm_l_twist_state_doubles) */
    plm_l_cons *cons;    /* the constraint of the last ctx:mask(constraint), NULL when none */
    plm_cstate *cst;     /* cst[k]: its state after the first k generated tokens, for k < ncst */
    size_t ncst, capcst;
} lmctx;

/* uservalues: 1 = lm userdata, 2 = history table (position n + 1 -> dist userdata or score number), 3 = twist,
** 4 = user proposal function */

static lmctx *checkctx(lua_State *L, int idx, const char *fn)
{
    lmctx *c = luaL_testudata(L, idx, PLM_L_LMCTX);
    if (!c) luaL_error(L, "%s: expected an LM context (got %s)", fn, luaL_typename(L, idx));
    if (!c->toks) luaL_error(L, "%s: the context has been closed", fn);
    return c;
}

static void reserve(lua_State *L, lmctx *c, size_t need)
{
    if (need > c->cap) {
        size_t nc = need * 2 + 16;
        plm_token *t = realloc(c->toks, nc * sizeof *t);
        if (!t) luaL_error(L, "lm context: out of memory");
        c->toks = t;
        c->cap = nc;
    }
}

/* forget the states of generated tokens from k on (all of them, and the constraint, when k is 0) */
static void cons_truncate(lmctx *c, size_t k)
{
    while (c->ncst > k) plm_cons_release(c->cons->c, c->cst[--c->ncst]);
    if (k == 0) {
        plm_l_cons_release(c->cons);
        c->cons = NULL;
        free(c->cst);
        c->cst = NULL;
        c->capcst = 0;
    }
}

static int ctx_gc(lua_State *L)
{
    lmctx *c = lua_touserdata(L, 1);
    if (c->cons) cons_truncate(c, 0);
    if (c->seq >= 0 && c->lm) plm_lm_seq_free(c->lm, c->seq);
    c->seq = -1;
    free(c->toks);
    free(c->mask);
    free(c->tstate);
    c->toks = NULL;
    c->mask = NULL;
    c->tstate = NULL;
    return 0;
}

/* a new, empty context userdata for the lm at index lmidx */
static lmctx *newctx(lua_State *L, int lmidx)
{
    lmctx *c = lua_newuserdatauv(L, sizeof *c, 4);
    memset(c, 0, sizeof *c);
    c->seq = -1;
    c->lm = plm_l_checklm(L, lmidx, "lm:context", "self");
    luaL_setmetatable(L, PLM_L_LMCTX);
    lua_pushvalue(L, lmidx);
    lua_setiuservalue(L, -2, 1);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 2);
    return c;
}

/* Tokenize s with c's lm into a scratch userdata pushed on the stack. */
static plm_token *tokenize(lua_State *L, plm_lm *lm, const char *s, size_t len, size_t *n, const char *fn)
{
    plm_ctx ctx;
    plm_token *t;
    plm_ctx_clear(&ctx);
    if (plm_lm_tokenize(lm, &ctx, s, len, NULL, 0, n)) plm_l_fail(L, &ctx);
    t = plm_l_scratch(L, (*n ? *n : 1) * sizeof *t);
    if (plm_lm_tokenize(lm, &ctx, s, len, t, *n, n)) luaL_error(L, "%s: %s", fn, plm_ctx_errmsg(&ctx));
    return t;
}

/* ctx:twist(twist [, {proposal = "twist" | "p0" | function(prefix, logp0) -> log q}]) -> ctx: from here on,
** every token sampled from ctx:next_token() is proposed from q and weighted by p0 psi_t / (psi_{t-1} q) (a factor
** and a checkpoint of m:sample); see runtime/lm/twist.h. */
static int l_ctx_twist(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:twist");
    plm_l_twist *tw = plm_l_checktwist(L, 2, "ctx:twist", "twist");
    const char *fn = "ctx:twist";
    static const char *const names[] = {"proposal", NULL};
    lua_settop(L, 3);
    c->proposal = PLM_TWIST_PROP_TWIST;
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 4);
    if (!lua_isnil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        plm_l_checkopts(L, 3, fn, names);
        lua_getfield(L, 3, "proposal");
        if (lua_isfunction(L, -1)) {
            c->proposal = PLM_TWIST_PROP_USER;
            lua_pushvalue(L, -1);
            lua_setiuservalue(L, 1, 4);
        } else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "p0") == 0)
            c->proposal = PLM_TWIST_PROP_P0;
        else if (!lua_isnil(L, -1) && !(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "twist") == 0))
            return luaL_error(L, "%s: proposal must be \"twist\", \"p0\" or a function(prefix, logp0) -> log q (got %s)", fn,
                              luaL_tolstring(L, -1, NULL));
        lua_pop(L, 1);
    }
    if (c->n != c->prompt_len) return luaL_error(L, "%s: attach the twist before the first token is generated", fn);
    free(c->tstate);
    if (!(c->tstate = malloc(plm_l_twist_state_doubles(tw) * sizeof *c->tstate))) return luaL_error(L, "%s: out of memory", fn);
    plm_l_twist_start(tw, c->tstate);
    c->logpsi_prev = 0;
    c->twisted = 1;
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, 1, 3);
    lua_settop(L, 1);
    return 1;
}

/* plume._lmctx_new(lm, prompt): adopts the running particle's next snapshot when it replays, else makes a
** new context; either way registers it as state of the running particle. */
static int l_ctx_new(lua_State *L)
{
    size_t plen, np;
    const char *prompt = luaL_optlstring(L, 2, "", &plen);
    plm_lm *lm = plm_l_checklm(L, 1, "lm:context", "self");
    plm_token *pt = tokenize(L, lm, prompt, plen, &np, "lm:context");   /* slot 3 */
    lmctx *c;
    if (lm->max_ctx && np + (lm->bos >= 0) > lm->max_ctx)
        return luaL_error(L, "lm:context: the prompt has %d tokens, longer than the model's context of %d", (int)np,
                          (int)lm->max_ctx);
    plm_l_pushmodule(L);
    lua_getfield(L, -1, "_smc_adopt");
    lua_call(L, 0, 1);
    lua_remove(L, -2);
    c = luaL_testudata(L, -1, PLM_L_LMCTX);
    if (c && c->toks && c->lm == lm && c->prompt_len == np && c->full >= np && memcmp(c->toks, pt, np * sizeof *pt) == 0) {
        c->n = np;   /* replay from the prompt, following the snapshot's tokens */
        if (c->twisted) {   /* the twist's state is rebuilt along the replay */
            lua_getiuservalue(L, -1, 3);
            plm_l_twist_start(lua_touserdata(L, -1), c->tstate);
            lua_pop(L, 1);
            c->logpsi_prev = 0;
        }
    } else {
        lua_pop(L, 1);
        c = newctx(L, 1);
        reserve(L, c, np + 16);
        memcpy(c->toks, pt, np * sizeof *pt);
        c->n = c->full = c->prompt_len = np;
    }
    plm_l_pushmodule(L);
    lua_getfield(L, -1, "_smc_register");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    /* plume.smc(..., {twist =}) twists every context its program makes */
    if (lua_getfield(L, LUA_REGISTRYINDEX, "plume.smc.twist") == LUA_TTABLE && !c->twisted) {
        int opt = lua_gettop(L);
        lua_pushcfunction(L, l_ctx_twist);
        lua_pushvalue(L, opt - 1);
        lua_getfield(L, opt, "twist");
        lua_createtable(L, 0, 1);
        lua_getfield(L, opt, "proposal");
        lua_setfield(L, -2, "proposal");
        lua_call(L, 3, 0);
    }
    lua_pop(L, 1);
    return 1;
}

/* ctx:_cached() -> the next-token distribution at the current position if already known, else nil */
static int l_ctx_cached(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:next_token");
    lua_getiuservalue(L, 1, 2);
    if (lua_rawgeti(L, -1, (lua_Integer)c->n + 1) == LUA_TUSERDATA) return 1;
    lua_pushnil(L);
    return 1;
}

/* Make sure c has a sequence: fork the template for (lm, prompt), creating the template on first use. The
** context userdata must be at stack index cidx. */
static void ensure_seq(lua_State *L, int cidx, lmctx *c)
{
    plm_ctx ctx;
    int tpl = -1;
    plm_ctx_clear(&ctx);
    if (c->seq >= 0) return;
    lua_getfield(L, LUA_REGISTRYINDEX, "plume.lmctx.templates");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_newtable(L);
        lua_pushstring(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "plume.lmctx.templates");
    }
    lua_getiuservalue(L, cidx, 1);              /* templates, lm */
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_getiuservalue(L, cidx, 1);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_pushlstring(L, (const char *)c->toks, c->prompt_len * sizeof *c->toks);   /* key: the prompt's tokens */
    if (lua_rawget(L, -2) == LUA_TNUMBER) tpl = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (tpl < 0) {
        const plm_token *p = c->toks;
        size_t len = c->prompt_len;
        if (plm_lm_seq_new(c->lm, &ctx, &tpl) || plm_lm_seq_extend(c->lm, &ctx, 1, &tpl, &p, &len, NULL))
            plm_l_fail(L, &ctx);
        lua_pushlstring(L, (const char *)c->toks, c->prompt_len * sizeof *c->toks);
        lua_pushinteger(L, tpl);
        lua_rawset(L, -3);
    }
    lua_pop(L, 2);
    if (plm_lm_seq_fork(c->lm, &ctx, tpl, &c->seq)) plm_l_fail(L, &ctx);
    c->seq_len = c->prompt_len;
}

/* plume._lmctx_batch({ctx, ...}) -> {dist, ...}: the next-token distribution of every context at its current
** position, in one batched sequence extension (and one batched plain call for contexts whose sequence is
** ahead of them, which only happens after a replay diverged from its snapshot). */
static int l_ctx_batch(lua_State *L)
{
    plm_ctx ctx;
    lua_Integer n = (luaL_checktype(L, 1, LUA_TTABLE), luaL_len(L, 1)), i;
    int *seqs, ns = 0, nplain = 0, V;
    size_t *lens, *plens;
    const plm_token **toks, **ptoks;
    int *which_s, *which_p;
    double *out, *pout;
    plm_lm *lm = NULL;
    plm_ctx_clear(&ctx);
    if (n == 0) {
        lua_newtable(L);
        return 1;
    }
    seqs = plm_l_scratch(L, (size_t)n * sizeof *seqs);
    lens = plm_l_scratch(L, (size_t)n * sizeof *lens);
    plens = plm_l_scratch(L, (size_t)n * sizeof *plens);
    toks = plm_l_scratch(L, (size_t)n * sizeof *toks);
    ptoks = plm_l_scratch(L, (size_t)n * sizeof *ptoks);
    which_s = plm_l_scratch(L, (size_t)n * sizeof *which_s);
    which_p = plm_l_scratch(L, (size_t)n * sizeof *which_p);
    for (i = 1; i <= n; i++) {
        lmctx *c;
        lua_rawgeti(L, 1, i);
        c = checkctx(L, -1, "lm batch");
        if (lm && c->lm != lm) return luaL_error(L, "lm batch: contexts of different models in one batch");
        lm = c->lm;
        if (c->seq >= 0 && c->seq_len > c->n) {
            /* the sequence ran ahead (a replay diverged): no KV state for this prefix; ask plainly */
            ptoks[nplain] = c->toks;
            plens[nplain] = c->n;
            which_p[nplain++] = (int)i;
        } else {
            ensure_seq(L, lua_gettop(L), c);
            seqs[ns] = c->seq;
            toks[ns] = c->toks + c->seq_len;
            lens[ns] = c->n - c->seq_len;
            which_s[ns++] = (int)i;
        }
        lua_pop(L, 1);
    }
    V = lm->n_vocab;
    out = plm_l_scratch(L, (size_t)ns * V * sizeof *out);
    pout = plm_l_scratch(L, (size_t)nplain * V * sizeof *pout);
    if (ns && plm_lm_seq_extend(lm, &ctx, (size_t)ns, seqs, toks, lens, out)) return plm_l_fail(L, &ctx);
    if (nplain && plm_lm_next_logprobs(lm, &ctx, (size_t)nplain, ptoks, plens, pout)) return plm_l_fail(L, &ctx);
    lua_createtable(L, (int)n, 0);
    for (int pass = 0; pass < 2; pass++) {
        int m = pass ? nplain : ns, *which = pass ? which_p : which_s;
        double *rows = pass ? pout : out;
        for (int k = 0; k < m; k++) {
            plm_dist *d;
            lmctx *c;
            lua_rawgeti(L, 1, which[k]);
            c = lua_touserdata(L, -1);
            if (!pass) c->seq_len = c->n;
            if (plm_dist_new_categorical_logits(&ctx, rows + (size_t)k * V, V, &d)) return plm_l_fail(L, &ctx);
            d->base = 0;   /* token ids are 0-based */
            plm_l_pushdist(L, d);
            lua_getiuservalue(L, -2, 2);
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, (lua_Integer)c->n + 1);   /* remember it: replays and masks reuse it */
            lua_pop(L, 1);
            lua_rawseti(L, -3, which[k]);
            lua_pop(L, 1);
        }
    }
    return 1;
}

static void append_token(lua_State *L, lmctx *c, plm_token t)
{
    if (t < 0 || t >= c->lm->n_vocab) luaL_error(L, "lm context: token %d out of range 0..%d", (int)t, c->lm->n_vocab - 1);
    if (c->n < c->full && c->toks[c->n] == t) {
        c->n++;   /* replay following the snapshot */
    } else {
        if (c->n < c->full) {
            /* the replay diverged from the snapshot: its future (and a sequence holding it) is void */
            c->full = c->n;
            if (c->cons && c->ncst > c->n - c->prompt_len + 1) cons_truncate(c, c->n - c->prompt_len + 1);
            if (c->seq_len > c->n) {
                plm_lm_seq_free(c->lm, c->seq);
                c->seq = -1;
                c->seq_len = 0;
            }
        }
        reserve(L, c, c->n + 1);
        c->toks[c->n++] = t;
        c->full = c->n;
    }
    free(c->mask);
    c->mask = NULL;
}

/* the hook of a next-token distribution: the sampled token joins the context */
static int l_token_hook(lua_State *L)
{
    lmctx *c = checkctx(L, lua_upvalueindex(1), "ctx:next_token");
    append_token(L, c, (plm_token)luaL_checkinteger(L, 1));
    return 0;
}

/* the hook of a twisted next-token distribution: the token joins the context and the twist's state, and the
** hook returns the token's incremental log weight (m:sample makes it a factor and a checkpoint). Upvalues: the
** context, and the step's rows (V increments, then V log psi values). */
static int l_twisted_token_hook(lua_State *L)
{
    lmctx *c = checkctx(L, lua_upvalueindex(1), "ctx:next_token");
    const double *rows = lua_touserdata(L, lua_upvalueindex(2));
    plm_token t = (plm_token)luaL_checkinteger(L, 1);
    int V = c->lm->n_vocab;
    append_token(L, c, t);
    lua_getiuservalue(L, lua_upvalueindex(1), 3);
    plm_l_twist_advance(lua_touserdata(L, -1), c->tstate, t);
    c->logpsi_prev = rows[V + t];
    lua_pushnumber(L, rows[t]);
    return 1;
}

/* ctx:_bind for a twisted context: p0 is d (already masked); the proposal and the increments of this step */
static int bind_twisted(lua_State *L, lmctx *c, plm_dist *d)
{
    plm_ctx ctx;
    int V = c->lm->n_vocab, v, cidx = 1;
    double *rows = lua_newuserdatauv(L, 2 * (size_t)V * sizeof *rows, 0);   /* inc, logpsi */
    int rows_idx = lua_gettop(L);
    double *logq = plm_l_scratch(L, (size_t)V * sizeof *logq);
    const plm_token *gen = c->toks + c->prompt_len;
    size_t ngen = c->n - c->prompt_len;
    plm_dist *q;
    plm_ctx_clear(&ctx);
    lua_getiuservalue(L, cidx, 3);
    plm_l_twist_rows(L, lua_gettop(L), c->lm, c->tstate, c->prompt_len, gen, ngen, d->aux, rows + V);
    lua_pop(L, 1);
    if (c->proposal == PLM_TWIST_PROP_USER) {
        plm_l_array *a;
        lua_getiuservalue(L, cidx, 4);
        lua_createtable(L, (int)ngen, 0);
        for (size_t i = 0; i < ngen; i++) {
            lua_pushinteger(L, gen[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        a = plm_l_newarray(L, (size_t)V);
        memcpy(a->data, d->aux, (size_t)V * sizeof *logq);
        lua_call(L, 2, 1);
        if ((a = plm_l_toarray(L, -1)) && (int)a->n == V)
            memcpy(logq, a->data, (size_t)V * sizeof *logq);
        else if (lua_istable(L, -1) && (int)luaL_len(L, -1) == V)
            for (v = 0; v < V; v++) {
                lua_rawgeti(L, -1, v + 1);
                logq[v] = lua_tonumber(L, -1);
                lua_pop(L, 1);
            }
        else
            return luaL_error(L, "ctx:twist: the proposal must return %d log-probabilities (one per token), got %s", V,
                              luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    if (plm_twist_step(&ctx, V, c->proposal, d->aux, rows + V, c->logpsi_prev, logq, rows))
        return plm_l_fail_as(L, &ctx, "ctx:next_token");
    if (plm_dist_new_categorical_logits(&ctx, logq, V, &q)) return plm_l_fail(L, &ctx);
    q->base = 0;
    plm_l_pushdist(L, q);
    lua_pushvalue(L, cidx);
    lua_pushvalue(L, rows_idx);
    lua_pushcclosure(L, l_twisted_token_hook, 2);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* ctx:_bind(dist) -> a distribution over the same tokens (restricted to a pending mask) whose sampled value
** is appended to the context */
static int l_ctx_bind(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:next_token");
    plm_dist *d = plm_l_checkdist(L, 2, "ctx:next_token", "dist"), *out = d;
    if (c->mask) {
        plm_ctx ctx;
        int V = d->K, v, any = 0;
        double *lg = plm_l_scratch(L, (size_t)V * sizeof *lg);
        for (v = 0; v < V; v++) {
            lg[v] = c->mask[v] ? d->aux[v] : -INFINITY;
            any |= lg[v] > -INFINITY;
        }
        /* a mask that allows nothing has already given this particle weight -inf: keep the plain distribution */
        if (any) {
            if (plm_dist_new_categorical_logits(&ctx, lg, V, &out)) return plm_l_fail(L, &ctx);
            out->base = 0;
        }
        lua_pop(L, 1);
    }
    if (c->twisted) return bind_twisted(L, c, out);
    plm_l_pushdist(L, out);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, l_token_hook, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* ctx:_score(text) -> log p(text | context); the tokens join the context */
static int l_ctx_score(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:observe_text");
    size_t len, k, j;
    const char *s = luaL_checklstring(L, 2, &len);
    plm_token *t = tokenize(L, c->lm, s, len, &k, "ctx:observe_text");   /* slot 3 */
    plm_ctx ctx;
    double lp = 0, *lps;
    plm_ctx_clear(&ctx);
    lua_getiuservalue(L, 1, 2);                                           /* slot 4: history */
    if (k == 0) {
        lua_pushnumber(L, 0);
        return 1;
    }
    /* replaying a snapshot that already scored this text here */
    if (c->n + k <= c->full && memcmp(c->toks + c->n, t, k * sizeof *t) == 0 &&
        lua_rawgeti(L, 4, (lua_Integer)c->n + 1) == LUA_TNUMBER) {
        c->n += k;
        return 1;
    }
    lua_settop(L, 4);
    lps = plm_l_scratch(L, k * sizeof *lps);
    if (plm_lm_score(c->lm, &ctx, c->toks, c->n, t, k, lps)) return plm_l_fail(L, &ctx);
    for (j = 0; j < k; j++) lp += lps[j];
    lua_pushnumber(L, lp);
    lua_rawseti(L, 4, (lua_Integer)c->n + 1);
    for (j = 0; j < k; j++) append_token(L, c, t[j]);
    lua_pushnumber(L, lp);
    return 1;
}

/* ctx:append_text(text): force text into the context (a tool's output, a template), with no weight */
static int l_ctx_append(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:append_text");
    size_t len, k, j;
    const char *s = luaL_checklstring(L, 2, &len);
    plm_token *t = tokenize(L, c->lm, s, len, &k, "ctx:append_text");
    for (j = 0; j < k; j++) append_token(L, c, t[j]);
    lua_settop(L, 1);
    return 1;
}

/* ctx:model() -> the lm of this context */
static int l_ctx_model(lua_State *L)
{
    checkctx(L, 1, "ctx:model");
    lua_getiuservalue(L, 1, 1);
    return 1;
}

/* ctx:_mass(dist, allowed) -> probability that the next token is in the allowed list */
static int l_ctx_mass(lua_State *L)
{
    plm_dist *d;
    lua_Integer n, i;
    double p = 0;
    checkctx(L, 1, "ctx:mask");
    d = plm_l_checkdist(L, 2, "ctx:mask", "dist");
    luaL_checktype(L, 3, LUA_TTABLE);
    n = luaL_len(L, 3);
    {
        unsigned char *seen = plm_l_scratch(L, (size_t)d->K);
        memset(seen, 0, (size_t)d->K);
        for (i = 1; i <= n; i++) {
            lua_Integer t;
            int ok;
            lua_rawgeti(L, 3, i);
            t = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok || t < 0 || t >= d->K)
                return luaL_error(L, "ctx:mask: allowed[%d] must be a token id in 0..%d", (int)i, d->K - 1);
            if (!seen[t]) p += d->v[t];
            seen[t] = 1;
        }
    }
    lua_pushnumber(L, p > 1 ? 1 : p);
    return 1;
}

/* ctx:_set_mask(allowed, keep): the next token is restricted to allowed (keep) or to the rest (not keep) */
static int l_ctx_set_mask(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:mask");
    int keep = lua_toboolean(L, 3) || (lua_isnumber(L, 3) && lua_tonumber(L, 3) != 0);
    lua_Integer n, i;
    int V = c->lm->n_vocab;
    luaL_checktype(L, 2, LUA_TTABLE);
    free(c->mask);
    if (!(c->mask = malloc((size_t)V))) return luaL_error(L, "ctx:mask: out of memory");
    memset(c->mask, keep ? 0 : 1, (size_t)V);
    n = luaL_len(L, 2);
    for (i = 1; i <= n; i++) {
        lua_Integer t;
        lua_rawgeti(L, 2, i);
        t = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (t >= 0 && t < V) c->mask[t] = (unsigned char)keep;
    }
    return 0;
}

/* The state of constraint k after the generated tokens (advanced lazily from the last known one). */
static plm_cstate cons_state(lua_State *L, lmctx *c, plm_l_cons *k)
{
    size_t want = c->n - c->prompt_len;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (c->cons != k) {
        if (c->cons) cons_truncate(c, 0);
        c->cons = k;
        plm_l_cons_retain(k);
    }
    if (c->capcst < want + 1) {
        size_t nc = want * 2 + 16;
        plm_cstate *ns = realloc(c->cst, nc * sizeof *ns);
        if (!ns) luaL_error(L, "ctx:mask: out of memory");
        c->cst = ns;
        c->capcst = nc;
    }
    if (c->ncst == 0) c->cst[c->ncst++] = plm_cons_start(k->c);
    while (c->ncst <= want) {
        plm_token t = c->toks[c->prompt_len + c->ncst - 1];
        if (plm_cons_advance(&ctx, k->c, c->cst[c->ncst - 1], c->lm->tok_bytes[t], c->lm->tok_len[t], &c->cst[c->ncst]))
            plm_l_fail(L, &ctx);
        c->ncst++;
    }
    return c->cst[want];
}

/* the allowed-next vector of constraint (arg 2) at the context's position, into scratch memory; final: only EOS
** (when the text so far is a sentence) */
static unsigned char *cons_allowed(lua_State *L, lmctx *c, int final)
{
    plm_l_cons *k = plm_l_testcons(L, 2);
    plm_vtrie *t;
    plm_cstate s;
    unsigned char *allowed = plm_l_scratch(L, (size_t)c->lm->n_vocab);
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (!k) luaL_error(L, "ctx:mask: expected a constraint (got %s)", luaL_typename(L, 2));
    lua_getiuservalue(L, 1, 1);
    t = plm_l_vtrie(L, -1);
    lua_pop(L, 1);
    s = cons_state(L, c, k);
    if (final) {
        int acc = plm_cons_status(k->c, s) == PLM_CONS_ACCEPT;
        for (int v = 0; v < c->lm->n_vocab; v++) allowed[v] = (unsigned char)(acc && plm_lm_is_eos(c->lm, v));
    } else if (plm_cons_mask(&ctx, k->c, t, s, allowed, NULL))
        plm_l_fail(L, &ctx);
    return allowed;
}

/* ctx:_cmass(constraint, dist, final) -> probability that the next token keeps the text in the constraint */
static int l_ctx_cmass(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:mask");
    plm_dist *d = plm_l_checkdist(L, 3, "ctx:mask", "dist");
    unsigned char *allowed = cons_allowed(L, c, lua_toboolean(L, 4));
    double p = 0;
    for (int v = 0; v < d->K && v < c->lm->n_vocab; v++)
        if (allowed[v]) p += d->v[v];
    lua_pushnumber(L, p > 1 ? 1 : p);
    return 1;
}

/* ctx:_cset_mask(constraint, keep, final): the next token is restricted to those the constraint allows (keep)
** or to the rest */
static int l_ctx_cset_mask(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:mask");
    int keep = lua_toboolean(L, 3) || (lua_isnumber(L, 3) && lua_tonumber(L, 3) != 0), V = c->lm->n_vocab;
    unsigned char *allowed = cons_allowed(L, c, lua_toboolean(L, 4));
    free(c->mask);
    if (!(c->mask = malloc((size_t)V))) return luaL_error(L, "ctx:mask: out of memory");
    for (int v = 0; v < V; v++) c->mask[v] = (unsigned char)(keep ? allowed[v] : !allowed[v]);
    return 0;
}

/* ctx:check(constraint) -> "dead" | "alive" | "accept": the constraint on the generated bytes, kept incrementally
** (a potential for SMC: m:factor(ctx:check(c) == "dead" and -math.huge or 0)) */
static int l_ctx_check(lua_State *L)
{
    static const char *const names[] = {"dead", "alive", "accept"};
    lmctx *c = checkctx(L, 1, "ctx:check");
    plm_l_cons *k = plm_l_testcons(L, 2);
    if (!k) return luaL_error(L, "ctx:check: expected a constraint (got %s)", luaL_typename(L, 2));
    lua_pushstring(L, names[plm_cons_status(k->c, cons_state(L, c, k))]);
    return 1;
}

static int push_text(lua_State *L, lmctx *c, size_t from)
{
    plm_ctx ctx;
    size_t len;
    char *buf;
    plm_ctx_clear(&ctx);
    if (plm_lm_detokenize(c->lm, &ctx, c->toks + from, c->n - from, NULL, 0, &len)) return plm_l_fail(L, &ctx);
    buf = plm_l_scratch(L, len + 1);
    if (plm_lm_detokenize(c->lm, &ctx, c->toks + from, c->n - from, buf, len + 1, &len)) return plm_l_fail(L, &ctx);
    lua_pushlstring(L, buf, len);
    return 1;
}

/* ctx:text() -> the text generated after the prompt; ctx:full_text() -> prompt included */
static int l_ctx_text(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:text");
    return push_text(L, c, c->prompt_len);
}

static int l_ctx_full_text(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:full_text");
    return push_text(L, c, 0);
}

/* ctx:tokens() -> the generated token ids (0-based) */
static int l_ctx_tokens(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:tokens");
    size_t i;
    lua_createtable(L, (int)(c->n - c->prompt_len), 0);
    for (i = c->prompt_len; i < c->n; i++) {
        lua_pushinteger(L, c->toks[i]);
        lua_rawseti(L, -2, (lua_Integer)(i - c->prompt_len + 1));
    }
    return 1;
}

/* ctx:len() -> number of generated tokens */
static int l_ctx_len(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:len");
    lua_pushinteger(L, (lua_Integer)(c->n - c->prompt_len));
    return 1;
}

/* snapshot for a resampled copy: the KV sequence is forked, tokens and history copied */
static int l_ctx_fork(lua_State *L)
{
    lmctx *c = checkctx(L, 1, "ctx:fork"), *d;
    plm_ctx ctx;
    lua_Integer k;
    plm_ctx_clear(&ctx);
    lua_getiuservalue(L, 1, 1);
    d = newctx(L, lua_gettop(L));
    reserve(L, d, c->n + 16);
    memcpy(d->toks, c->toks, c->n * sizeof *c->toks);
    d->n = d->full = c->n;
    d->prompt_len = c->prompt_len;
    if (c->seq >= 0 && c->seq_len <= c->n) {
        if (plm_lm_seq_fork(c->lm, &ctx, c->seq, &d->seq)) return plm_l_fail(L, &ctx);
        d->seq_len = c->seq_len;
    }
    if (c->twisted) {   /* the snapshot keeps the twist; its state restarts when a replay adopts it */
        size_t nd;
        lua_getiuservalue(L, 1, 3);
        nd = plm_l_twist_state_doubles(lua_touserdata(L, -1));
        if (!(d->tstate = malloc(nd * sizeof *d->tstate))) return luaL_error(L, "ctx:fork: out of memory");
        memcpy(d->tstate, c->tstate, nd * sizeof *d->tstate);
        lua_setiuservalue(L, -2, 3);
        lua_getiuservalue(L, 1, 4);
        lua_setiuservalue(L, -2, 4);
        d->twisted = 1;
        d->proposal = c->proposal;
        d->logpsi_prev = c->logpsi_prev;
    }
    if (c->cons && c->ncst) {   /* the constraint's states are shared, not recomputed */
        if (!(d->cst = malloc(c->ncst * sizeof *d->cst))) return luaL_error(L, "ctx:fork: out of memory");
        d->cons = c->cons;
        plm_l_cons_retain(d->cons);
        d->capcst = d->ncst = c->ncst;
        for (size_t k = 0; k < c->ncst; k++) d->cst[k] = plm_cons_copy(c->cons->c, c->cst[k]);
    }
    lua_getiuservalue(L, 1, 2);
    lua_getiuservalue(L, -2, 2);
    for (k = 1; k <= (lua_Integer)c->n + 1; k++) {
        lua_rawgeti(L, -2, k);
        lua_rawseti(L, -2, k);
    }
    lua_pop(L, 2);
    return 1;
}

static int l_ctx_tostring(lua_State *L)
{
    lmctx *c = luaL_checkudata(L, 1, PLM_L_LMCTX);
    if (!c->toks) {
        lua_pushstring(L, "lm context (closed)");
        return 1;
    }
    lua_pushfstring(L, "lm context (%s, %d prompt + %d generated tokens)", plm_lm_name(c->lm), (int)c->prompt_len,
                    (int)(c->n - c->prompt_len));
    return 1;
}

void plm_l_open_lmctx(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"_cached", l_ctx_cached}, {"_bind", l_ctx_bind}, {"_score", l_ctx_score}, {"_mass", l_ctx_mass},
        {"_set_mask", l_ctx_set_mask}, {"_cmass", l_ctx_cmass}, {"_cset_mask", l_ctx_cset_mask}, {"check", l_ctx_check},
        {"text", l_ctx_text}, {"full_text", l_ctx_full_text}, {"tokens", l_ctx_tokens}, {"len", l_ctx_len},
        {"twist", l_ctx_twist}, {"append_text", l_ctx_append}, {"model", l_ctx_model},
        {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_LMCTX);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_ctx_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_ctx_fork);
    lua_setfield(L, -2, "__plume_fork");
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__plume_close");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_ctx_new);
    lua_setfield(L, -2, "_lmctx_new");
    lua_pushcfunction(L, l_ctx_batch);
    lua_setfield(L, -2, "_lmctx_batch");
}
