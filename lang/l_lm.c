/* l_lm.c -- plume.lm: language-model backends from Lua (llama.cpp, n-gram, native libraries), the tiny GGUF
** writer, and the lm object's methods: tokenize/detokenize, next-token log-probabilities (one context or a
** batch), logprob of a continuation, sample_text. Token ids are 0-based in Lua too: they are ids, not positions;
** a row of log-probabilities is a plume.array whose entry tok + 1 belongs to token tok. */
#include "lutil.h"
#include "larray.h"
#include "llm.h"

#include <dlfcn.h>
#include <ffi.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct l_lm {
    plm_lm *lm;
} l_lm;

plm_lm *plm_l_checklm(lua_State *L, int idx, const char *fn, const char *arg)
{
    l_lm *u = luaL_testudata(L, idx, PLM_L_LM);
    if (!u || !u->lm) luaL_error(L, "%s: %s must be a language model (got %s)", fn, arg, luaL_typename(L, idx));
    return u->lm;
}

void plm_l_pushlm(lua_State *L, plm_lm *lm)
{
    l_lm *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->lm = lm;
    luaL_setmetatable(L, PLM_L_LM);
}

static int l_lm_gc(lua_State *L)
{
    l_lm *u = luaL_checkudata(L, 1, PLM_L_LM);
    plm_lm_free(u->lm);
    u->lm = NULL;
    return 0;
}

/* Wrap a new backend in the shared result cache unless opts says cache = false; push it. */
static int push_new_lm(lua_State *L, plm_lm *lm, int opts, const char *fn)
{
    plm_ctx ctx;
    if (plm_l_optbool(L, opts, fn, "cache", 1)) {
        lua_Integer mb = plm_l_optint(L, opts, fn, "cache_mb", 256);
        if (mb < 1 || mb > 1 << 20) {
            plm_lm_free(lm);
            return luaL_error(L, "%s: option 'cache_mb' must be 1..1048576 (got %I)", fn, mb);
        }
        if (!(lm = plm_lm_cache_new(&ctx, lm, (size_t)mb << 20))) return plm_l_fail(L, &ctx);
    }
    plm_l_pushlm(L, lm);
    return 1;
}

/* A token list from a string (tokenized by lm) or a Lua table of integer ids. Pushes the owner of the memory. */
plm_token *plm_l_checktokens(lua_State *L, int idx, plm_lm *lm, const char *fn, const char *arg, size_t *n)
{
    plm_ctx ctx;
    plm_token *t;
    size_t i, len;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tolstring(L, idx, &len);
        if (plm_lm_tokenize(lm, &ctx, s, len, NULL, 0, n)) plm_l_fail(L, &ctx);
        t = plm_l_scratch(L, (*n + 1) * sizeof *t);
        if (plm_lm_tokenize(lm, &ctx, s, len, t, *n, n)) plm_l_fail(L, &ctx);
        return t;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: %s must be a string or a table of token ids (got %s)", fn, arg, luaL_typename(L, idx));
    len = (size_t)lua_rawlen(L, idx);
    t = plm_l_scratch(L, (len + 1) * sizeof *t);
    for (i = 0; i < len; i++) {
        int ok;
        lua_Integer v;
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) luaL_error(L, "%s: %s[%d] must be an integer token id", fn, arg, (int)i + 1);
        if (v < 0 || v >= lm->n_vocab)
            luaL_error(L, "%s: %s[%d] is %d, outside the vocabulary (ids 0..%d)", fn, arg, (int)i + 1, (int)v,
                       lm->n_vocab - 1);
        t[i] = (plm_token)v;
    }
    *n = len;
    return t;
}

static void push_tokens(lua_State *L, const plm_token *t, size_t n)
{
    size_t i;
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushinteger(L, t[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static int l_tokenize(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:tokenize", "self");
    size_t n;
    plm_token *t;
    luaL_checktype(L, 2, LUA_TSTRING);
    t = plm_l_checktokens(L, 2, lm, "lm:tokenize", "text", &n);
    push_tokens(L, t, n);
    return 1;
}

static int l_detokenize(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:detokenize", "self");
    plm_ctx ctx;
    size_t n, nb;
    plm_token *t;
    char *buf;
    luaL_checktype(L, 2, LUA_TTABLE);
    t = plm_l_checktokens(L, 2, lm, "lm:detokenize", "tokens", &n);
    if (plm_lm_detokenize(lm, &ctx, t, n, NULL, 0, &nb)) return plm_l_fail(L, &ctx);
    buf = plm_l_scratch(L, nb + 1);
    if (plm_lm_detokenize(lm, &ctx, t, n, buf, nb, &nb)) return plm_l_fail(L, &ctx);
    lua_pushlstring(L, buf, nb);
    return 1;
}

static int l_is_eos(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:is_eos", "self");
    lua_Integer t = plm_l_checkint(L, 2, "lm:is_eos", "token");
    lua_pushboolean(L, t >= 0 && t < lm->n_vocab && plm_lm_is_eos(lm, (plm_token)t));
    return 1;
}

static int l_next_logprobs(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:next_logprobs", "self");
    plm_ctx ctx;
    size_t n;
    const plm_token *t = plm_l_checktokens(L, 2, lm, "lm:next_logprobs", "tokens", &n);
    plm_l_array *a = plm_l_newarray(L, (size_t)lm->n_vocab);
    if (plm_lm_next_logprobs(lm, &ctx, 1, &t, &n, a->data)) return plm_l_fail(L, &ctx);
    return 1;
}

/* Many contexts, one backend call (one llama_decode, or one batch of cache misses). */
static int l_next_logprobs_batch(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:next_logprobs_batch", "self");
    plm_ctx ctx;
    size_t n, i, V = (size_t)lm->n_vocab;
    const plm_token **ptrs;
    size_t *lens;
    double *out;
    int base;
    luaL_checktype(L, 2, LUA_TTABLE);
    n = (size_t)lua_rawlen(L, 2);
    if (n == 0) {
        lua_newtable(L);
        return 1;
    }
    ptrs = plm_l_scratch(L, n * sizeof *ptrs);
    lens = plm_l_scratch(L, n * sizeof *lens);
    out = plm_l_scratch(L, n * V * sizeof *out);
    lua_createtable(L, (int)n, 0);   /* keeps every context's token memory alive */
    base = lua_gettop(L);
    for (i = 0; i < n; i++) {
        char arg[32];
        snprintf(arg, sizeof arg, "contexts[%d]", (int)i + 1);
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        ptrs[i] = plm_l_checktokens(L, -1, lm, "lm:next_logprobs_batch", arg, &lens[i]);
        lua_rawseti(L, base, (lua_Integer)i + 1);
        lua_pop(L, 1);
    }
    if (plm_lm_next_logprobs(lm, &ctx, n, ptrs, lens, out)) return plm_l_fail(L, &ctx);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        plm_l_array *a = plm_l_newarray(L, V);
        memcpy(a->data, out + i * V, V * sizeof *out);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* lm:logprob(prompt, continuation) -> total log-probability, per-token table */
static int l_logprob(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:logprob", "self");
    plm_ctx ctx;
    size_t np, nc, j;
    const plm_token *p = plm_l_checktokens(L, 2, lm, "lm:logprob", "prompt", &np);
    const plm_token *c = plm_l_checktokens(L, 3, lm, "lm:logprob", "continuation", &nc);
    double *lp = plm_l_scratch(L, (nc + 1) * sizeof *lp), total = 0;
    if (plm_lm_score(lm, &ctx, p, np, c, nc, lp)) return plm_l_fail(L, &ctx);
    for (j = 0; j < nc; j++) total += lp[j];
    lua_pushnumber(L, total);
    plm_l_pushvec(L, lp, nc);
    return 2;
}

static plm_token sample_row(const double *row, size_t V, double temp, plm_rng *r)
{
    size_t v, best = 0;
    double m = -INFINITY, s = 0, u;
    for (v = 0; v < V; v++)
        if (row[v] > m) {
            m = row[v];
            best = v;
        }
    if (temp == 0) return (plm_token)best;
    for (v = 0; v < V; v++) s += exp((row[v] - m) / temp);
    u = plm_rng_uniform(r) * s;
    for (v = 0; v < V; v++) {
        u -= exp((row[v] - m) / temp);
        if (u < 0) return (plm_token)v;
    }
    return (plm_token)best;   /* rounding left u >= 0: the mode is the safe answer */
}

static const char *const sample_text_options[] = {"stop", "max_tokens", "temperature", "seed", NULL};

/* lm:sample_text(prompt, {stop=, max_tokens=, temperature=, seed=}) -> text, logp, reason */
static int l_sample_text(lua_State *L)
{
    static const char *FN = "lm:sample_text";
    plm_lm *lm = plm_l_checklm(L, 1, FN, "self");
    plm_ctx ctx;
    size_t np, V = (size_t)lm->n_vocab, nstop = 0, i, tlen = 0, tcap = 256;
    const plm_token *p = plm_l_checktokens(L, 2, lm, FN, "prompt", &np);
    int opts = lua_istable(L, 3) ? 3 : 0, seq = -1;
    lua_Integer max_tokens, t;
    double temp, logp = 0;
    unsigned long long seed;
    const char *stops[16];
    size_t stoplen[16];
    double *row = plm_l_scratch(L, V * sizeof *row);
    char *text;
    const char *reason = "max_tokens";
    plm_rng rng;
    plm_status st;
    if (!lua_isnoneornil(L, 3) && !opts) return luaL_error(L, "%s: options must be a table (got %s)", FN, luaL_typename(L, 3));
    plm_l_checkopts(L, opts, FN, sample_text_options);
    max_tokens = plm_l_optint(L, opts, FN, "max_tokens", 64);
    temp = plm_l_optnum(L, opts, FN, "temperature", 1.0);
    seed = plm_l_seed(L, opts, FN);
    if (max_tokens < 0 || max_tokens > 1000000)
        return luaL_error(L, "%s: option 'max_tokens' must be 0..1e6 (got %I)", FN, max_tokens);
    if (!(temp >= 0) || !isfinite(temp))
        return luaL_error(L, "%s: option 'temperature' must be a finite number >= 0 (got %f)", FN, temp);
    if (opts) {
        lua_getfield(L, opts, "stop");
        if (lua_type(L, -1) == LUA_TSTRING) {
            stops[0] = lua_tolstring(L, -1, &stoplen[0]);
            nstop = 1;
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            size_t k = (size_t)lua_rawlen(L, -1);
            if (k > 16) return luaL_error(L, "%s: at most 16 stop strings (got %d)", FN, (int)k);
            for (i = 0; i < k; i++) {
                lua_rawgeti(L, -1, (lua_Integer)i + 1);
                if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "%s: stop[%d] must be a string", FN, (int)i + 1);
                stops[nstop] = lua_tolstring(L, -1, &stoplen[nstop]);
                nstop++;
                lua_pop(L, 1);   /* the string stays alive in the stop table, which stays on the stack */
            }
        } else if (!lua_isnil(L, -1))
            return luaL_error(L, "%s: option 'stop' must be a string or a table of strings (got %s)", FN,
                              luaL_typename(L, -1));
        for (i = 0; i < nstop; i++)
            if (stoplen[i] == 0) return luaL_error(L, "%s: stop strings must not be empty", FN);
    }
    plm_rng_init(&rng, seed, 0);
    if (!(text = malloc(tcap))) return luaL_error(L, "%s: out of memory", FN);
    /* from here on no Lua error until the sequence is freed */
    st = plm_lm_seq_new(lm, &ctx, &seq);
    if (!st) st = plm_lm_seq_extend(lm, &ctx, 1, &seq, &p, &np, row);
    for (t = 0; !st && t < max_tokens; t++) {
        plm_token tok = sample_row(row, V, temp, &rng);
        const plm_token *tp = &tok;
        size_t one = 1, bl = lm->tok_len[tok], from;
        int hit = 0;
        logp += row[tok];
        if (plm_lm_is_eos(lm, tok)) {
            reason = "eos";
            break;
        }
        if (tlen + bl > tcap) {
            char *nt;
            while (tlen + bl > tcap) tcap *= 2;
            if (!(nt = realloc(text, tcap))) {
                st = plm_fail(&ctx, PLM_ENOMEM, "%s: out of memory", FN);
                break;
            }
            text = nt;
        }
        memcpy(text + tlen, lm->tok_bytes[tok], bl);
        tlen += bl;
        for (i = 0; i < nstop && !hit; i++) {   /* a stop string may straddle tokens: search the new tail */
            size_t k;
            from = tlen >= bl + stoplen[i] ? tlen - bl - stoplen[i] + 1 : 0;
            for (k = from; k + stoplen[i] <= tlen; k++)
                if (memcmp(text + k, stops[i], stoplen[i]) == 0) {
                    tlen = k;
                    hit = 1;
                    break;
                }
        }
        if (hit) {
            reason = "stop";
            break;
        }
        if (t + 1 < max_tokens) st = plm_lm_seq_extend(lm, &ctx, 1, &seq, &tp, &one, row);
    }
    if (seq >= 0) plm_lm_seq_free(lm, seq);
    if (st) {
        free(text);
        return plm_l_fail(L, &ctx);
    }
    lua_pushlstring(L, text, tlen);
    free(text);
    lua_pushnumber(L, logp);
    lua_pushstring(L, reason);
    return 3;
}

static int l_cache_stats(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:cache_stats", "self");
    size_t h, m;
    plm_lm_cache_stats(lm, &h, &m);
    lua_pushinteger(L, (lua_Integer)h);
    lua_pushinteger(L, (lua_Integer)m);
    return 2;
}

/* lm:stats() -> {cache_hits, cache_misses, decode_calls, decode_tokens, decode_seconds} (llama fields: 0 otherwise) */
static int l_stats(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:stats", "self");
    size_t h, m;
    plm_llama_stats s;
    plm_lm_cache_stats(lm, &h, &m);
    plm_llama_get_stats(lm, &s);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)h);
    lua_setfield(L, -2, "cache_hits");
    lua_pushinteger(L, (lua_Integer)m);
    lua_setfield(L, -2, "cache_misses");
    lua_pushinteger(L, s.decode_calls);
    lua_setfield(L, -2, "decode_calls");
    lua_pushinteger(L, s.decode_tokens);
    lua_setfield(L, -2, "decode_tokens");
    lua_pushnumber(L, s.decode_seconds);
    lua_setfield(L, -2, "decode_seconds");
    return 1;
}

/* The n-gram model under a cache, or NULL. */
static const plm_lm *ngram_of(const plm_lm *lm)
{
    if (plm_ngram_order(lm)) return lm;
    lm = plm_lm_cache_inner(lm);
    return lm && plm_ngram_order(lm) ? lm : NULL;
}

static int l_write_arpa(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm:write_arpa", "self");
    const char *path = luaL_checkstring(L, 2);
    const plm_lm *ng = ngram_of(lm);
    plm_ctx ctx;
    if (!ng) return luaL_error(L, "lm:write_arpa: only n-gram models can be written as ARPA (this is %s)", plm_lm_name(lm));
    if (plm_ngram_write_arpa(&ctx, ng, path)) return plm_l_fail(L, &ctx);
    return 0;
}

static int l_lm_index(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "lm", "self");
    const char *k = lua_tostring(L, 2);
    if (k && strcmp(k, "n_vocab") == 0) lua_pushinteger(L, lm->n_vocab);
    else if (k && strcmp(k, "bos") == 0) {
        if (lm->bos >= 0) lua_pushinteger(L, lm->bos);
        else lua_pushnil(L);
    } else if (k && strcmp(k, "eos") == 0) push_tokens(L, lm->eos, (size_t)lm->n_eos);
    else if (k && strcmp(k, "name") == 0) lua_pushstring(L, plm_lm_name(lm));
    else if (k && strcmp(k, "max_ctx") == 0) {
        if (lm->max_ctx) lua_pushinteger(L, (lua_Integer)lm->max_ctx);
        else lua_pushnil(L);
    } else if (k && strcmp(k, "order") == 0) {
        const plm_lm *ng = ngram_of(lm);
        if (ng) lua_pushinteger(L, plm_ngram_order(ng));
        else lua_pushnil(L);
    } else {
        lua_getmetatable(L, 1);
        lua_getfield(L, -1, "methods");
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
    }
    return 1;
}

static int l_lm_tostring(lua_State *L)
{
    plm_lm *lm = plm_l_checklm(L, 1, "tostring", "self");
    const plm_lm *ng = ngram_of(lm);
    if (ng) lua_pushfstring(L, "plume.lm(ngram, order %d, %d tokens)", plm_ngram_order(ng), lm->n_vocab);
    else lua_pushfstring(L, "plume.lm(%s, %d tokens)", plm_lm_name(lm), lm->n_vocab);
    return 1;
}

/* ---- constructors ---- */

static int l_llama(lua_State *L)
{
    static const char *FN = "plume.lm.llama";
    plm_llama_opts o;
    plm_ctx ctx;
    plm_lm *lm;
    static const char *const names[] = {"model", "ctx",      "seqs",  "threads", "split_kv", "no_prefix_reuse",
                                        "cache", "cache_mb", NULL};
    lua_Integer n_ctx, seqs;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, FN, names);
    o.model = plm_l_optstr(L, 1, FN, "model", NULL);
    if (!o.model) return luaL_error(L, "%s: option 'model' (a GGUF file) is required", FN);
    n_ctx = plm_l_optint(L, 1, FN, "ctx", 4096);
    seqs = plm_l_optint(L, 1, FN, "seqs", 64);
    o.threads = plm_l_threads(L, 1, FN);
    o.split_kv = plm_l_optbool(L, 1, FN, "split_kv", 0);
    o.no_prefix_reuse = plm_l_optbool(L, 1, FN, "no_prefix_reuse", 0);
    if (n_ctx < 8 || n_ctx > 1 << 24) return luaL_error(L, "%s: option 'ctx' must be 8..16777216 (got %I)", FN, n_ctx);
    if (seqs < 1 || seqs > 4096) return luaL_error(L, "%s: option 'seqs' must be 1..4096 (got %I)", FN, seqs);
    o.ctx = (int)n_ctx;
    o.seqs = (int)seqs;
    if (plm_llama_new(&ctx, &o, &lm)) return plm_l_fail(L, &ctx);
    return push_new_lm(L, lm, 1, FN);
}

static int l_available(lua_State *L)
{
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    lua_pushboolean(L, plm_llama_available(&ctx));
    lua_pushstring(L, ctx.msg);
    return 2;
}

/* A size option of write_tiny_gguf as an int: values beyond an int are refused here, before a cast could
** wrap them into range (the writer then checks the real limits). */
static int tiny_size(lua_State *L, int opts, const char *key, int def)
{
    lua_Integer v = plm_l_optint(L, opts, "plume.lm.write_tiny_gguf", key, def);
    if (v < 0 || v > 1 << 30)
        luaL_error(L, "plume.lm.write_tiny_gguf: option '%s' must be in 0..2^30 (got %I)", key, v);
    return (int)v;
}

static int l_write_tiny_gguf(lua_State *L)
{
    static const char *FN = "plume.lm.write_tiny_gguf";
    const char *path = luaL_checkstring(L, 1);
    plm_gguf_tiny_opts o;
    plm_ctx ctx;
    uint64_t n;
    int opts = lua_istable(L, 2) ? 2 : 0;
    static const char *const names[] = {"n_embd", "n_layer", "n_head", "n_ff", "ctx", "seed", NULL};
    plm_l_checkopts(L, opts, FN, names);
    plm_gguf_tiny_defaults(&o);
    o.n_embd = tiny_size(L, opts, "n_embd", o.n_embd);
    o.n_layer = tiny_size(L, opts, "n_layer", o.n_layer);
    o.n_head = tiny_size(L, opts, "n_head", o.n_head);
    o.n_ff = tiny_size(L, opts, "n_ff", 0);
    o.ctx = tiny_size(L, opts, "ctx", o.ctx);
    o.seed = (uint64_t)plm_l_optint(L, opts, FN, "seed", 1);
    if (plm_gguf_write_tiny(&ctx, path, &o, &n)) return plm_l_fail(L, &ctx);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int l_ngram(lua_State *L)   /* plume.lm.ngram{ arpa = } (called through the table's __call) */
{
    static const char *FN = "plume.lm.ngram";
    plm_ctx ctx;
    plm_lm *lm;
    const char *arpa;
    static const char *const names[] = {"arpa", "cache", "cache_mb", NULL};
    if (!lua_istable(L, 2)) return luaL_error(L, "%s: expected an options table {arpa = \"file.arpa\"}", FN);
    plm_l_checkopts(L, 2, FN, names);
    arpa = plm_l_optstr(L, 2, FN, "arpa", NULL);
    if (!arpa) return luaL_error(L, "%s: option 'arpa' (a file name) is required", FN);
    if (plm_ngram_load_arpa(&ctx, arpa, &lm)) return plm_l_fail(L, &ctx);
    return push_new_lm(L, lm, 2, FN);
}

static int l_ngram_train(lua_State *L)
{
    static const char *FN = "plume.lm.ngram.train";
    plm_ctx ctx;
    plm_lm *lm;
    size_t len;
    const char *text, *out;
    lua_Integer order;
    static const char *const names[] = {"text", "order", "out", "cache", "cache_mb", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, FN, names);
    lua_getfield(L, 1, "text");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "%s: option 'text' must be a string (got %s)", FN, luaL_typename(L, -1));
    text = lua_tolstring(L, -1, &len);
    order = plm_l_optint(L, 1, FN, "order", 3);
    out = plm_l_optstr(L, 1, FN, "out", NULL);
    if (order < 1 || order > 9) return luaL_error(L, "%s: option 'order' must be 1..9 (got %I)", FN, order);
    if (plm_ngram_train(&ctx, text, len, (int)order, &lm)) return plm_l_fail(L, &ctx);
    if (out && plm_ngram_write_arpa(&ctx, lm, out)) {
        plm_lm_free(lm);
        return plm_l_fail(L, &ctx);
    }
    return push_new_lm(L, lm, 1, FN);
}

/* plume.lm.native{ lib =, symbol =, arg = }: the library's `int symbol(const char *arg, plm_lm_native_spec *)`
** is called through libffi, so plume needs no compiled-in knowledge of the library. */
static int l_native(lua_State *L)
{
    static const char *FN = "plume.lm.native";
    const char *lib, *sym, *arg;
    void *h, *fn, *pspec;
    plm_lm_native_spec spec;
    ffi_cif cif;
    ffi_type *atypes[2] = {&ffi_type_pointer, &ffi_type_pointer};
    void *avals[2];
    ffi_arg rc = 0;
    plm_ctx ctx;
    plm_lm *lm;
    static const char *const names[] = {"lib", "symbol", "arg", "cache", "cache_mb", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, FN, names);
    lib = plm_l_optstr(L, 1, FN, "lib", NULL);
    sym = plm_l_optstr(L, 1, FN, "symbol", NULL);
    arg = plm_l_optstr(L, 1, FN, "arg", "");
    if (!lib || !sym) return luaL_error(L, "%s: options 'lib' (a shared library) and 'symbol' are required", FN);
    if (!(h = dlopen(lib, RTLD_NOW | RTLD_LOCAL))) {
        const char *e = dlerror();
        return luaL_error(L, "%s: cannot load '%s': %s", FN, lib, e ? e : "?");
    }
    if (!(fn = dlsym(h, sym))) return luaL_error(L, "%s: '%s' has no symbol '%s'", FN, lib, sym);
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 2, &ffi_type_sint, atypes) != FFI_OK)
        return luaL_error(L, "%s: libffi cannot prepare the call", FN);
    memset(&spec, 0, sizeof spec);
    spec.bos = -1;
    pspec = &spec;
    avals[0] = &arg;
    avals[1] = &pspec;
    ffi_call(&cif, FFI_FN(fn), &rc, avals);
    if ((int)rc != 0) return luaL_error(L, "%s: %s(\"%s\") returned %d", FN, sym, arg, (int)rc);
    if (!(lm = plm_lm_native_new(&ctx, &spec.fns, spec.user, spec.n_vocab, spec.bos, spec.eos, spec.n_eos)))
        return plm_l_fail(L, &ctx);
    return push_new_lm(L, lm, 1, FN);
}

void plm_l_open_lm(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"tokenize", l_tokenize},
        {"detokenize", l_detokenize},
        {"is_eos", l_is_eos},
        {"next_logprobs", l_next_logprobs},
        {"next_logprobs_batch", l_next_logprobs_batch},
        {"logprob", l_logprob},
        {"sample_text", l_sample_text},
        {"cache_stats", l_cache_stats},
        {"stats", l_stats},
        {"write_arpa", l_write_arpa},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__index", l_lm_index},
        {"__gc", l_lm_gc},
        {"__tostring", l_lm_tostring},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"llama", l_llama},
        {"available", l_available},
        {"write_tiny_gguf", l_write_tiny_gguf},
        {"native", l_native},
        {NULL, NULL},
    };
    luaL_newmetatable(L, PLM_L_LM);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pushstring(L, PLM_L_LM);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);

    luaL_newlib(L, fns);             /* plume.lm */
    lua_newtable(L);                 /* plume.lm.ngram: callable, with .train */
    lua_pushcfunction(L, l_ngram_train);
    lua_setfield(L, -2, "train");
    lua_newtable(L);
    lua_pushcfunction(L, l_ngram);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "ngram");
    lua_setfield(L, -2, "lm");
}
