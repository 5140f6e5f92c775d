/* l_speculative.c -- plume.speculative: speculative sampling as an exact sampler (runtime/lm/speculative.h). */
#include "lutil.h"
#include "llm.h"

#include <string.h>

/* plume.speculative(target, draft, {k = 4, max_tokens = 32, prompt = "", seed =, rule = "exact"})
** -> text, {tokens =, acceptance =, tokens_per_call =, rounds =, proposed =, accepted =} */
static int l_speculative(lua_State *L)
{
    static const char *const names[] = {"k", "max_tokens", "prompt", "seed", "rule", NULL};
    const char *fn = "plume.speculative", *rule;
    plm_lm *target = plm_l_checklm(L, 1, fn, "target");
    plm_lm *draft = plm_l_checklm(L, 2, fn, "draft");
    plm_spec_stats stats;
    plm_ctx ctx;
    plm_rng rng;
    plm_token *prompt, *out;
    size_t np, n, len;
    lua_Integer k, T;
    plm_spec_rule r;
    char *buf;
    plm_ctx_clear(&ctx);
    memset(&stats, 0, sizeof stats);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    if (lua_isnil(L, 3)) {
        lua_newtable(L);
        lua_replace(L, 3);
    }
    plm_l_checkopts(L, 3, fn, names);
    k = plm_l_optint(L, 3, fn, "k", 4);
    T = plm_l_optint(L, 3, fn, "max_tokens", 32);
    if (k < 1 || k > 256) return luaL_error(L, "%s: k must be in 1..256 (got %d)", fn, (int)k);
    if (T < 1 || T > 1000000) return luaL_error(L, "%s: max_tokens must be in 1..1e6 (got %d)", fn, (int)T);
    rule = plm_l_optstr(L, 3, fn, "rule", "exact");
    if (strcmp(rule, "exact") == 0) r = PLM_SPEC_EXACT;
    else if (strcmp(rule, "accept_all") == 0) r = PLM_SPEC_ACCEPT_ALL;
    else return luaL_error(L, "%s: unknown rule '%s' (rules: \"exact\", \"accept_all\")", fn, rule);
    plm_rng_init(&rng, plm_l_seed(L, 3, fn), 0);
    lua_getfield(L, 3, "prompt");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    }
    prompt = plm_l_checktokens(L, lua_gettop(L), target, fn, "prompt", &np);
    out = plm_l_scratch(L, (size_t)T * sizeof *out);
    plm_interrupt_clear();
    if (plm_speculative(&ctx, target, draft, prompt, np, (int)k, (size_t)T, &rng, r, out, &n, &stats))
        return plm_l_fail_as(L, &ctx, fn);
    /* the continuation's bytes as they are (as lm:sample_text), so that prompt .. text is the whole text */
    len = 0;
    for (size_t i = 0; i < n; i++) len += target->tok_len[out[i]];
    buf = plm_l_scratch(L, len + 1);
    len = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + len, target->tok_bytes[out[i]], target->tok_len[out[i]]);
        len += target->tok_len[out[i]];
    }
    lua_pushlstring(L, buf, len);
    lua_createtable(L, 0, 8);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, out[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "tokens");
    lua_pushnumber(L, stats.proposed ? (double)stats.accepted / stats.proposed : 0);
    lua_setfield(L, -2, "acceptance");
    lua_pushnumber(L, stats.rounds ? (double)stats.tokens / stats.rounds : 0);
    lua_setfield(L, -2, "tokens_per_call");
    lua_pushinteger(L, stats.rounds);
    lua_setfield(L, -2, "target_calls");
    lua_pushinteger(L, stats.draft_calls);
    lua_setfield(L, -2, "draft_calls");
    lua_pushinteger(L, stats.proposed);
    lua_setfield(L, -2, "proposed");
    lua_pushinteger(L, stats.accepted);
    lua_setfield(L, -2, "accepted");
    return 2;
}

void plm_l_open_speculative(lua_State *L)
{
    lua_pushcfunction(L, l_speculative);
    lua_setfield(L, -2, "speculative");
}
