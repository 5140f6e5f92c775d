/* host.c -- a C program that embeds plume: run a model written in Lua, read its result through the Lua
** API, and call the C runtime directly. Build against an installed plume:
**     cc host.c $(pkg-config --cflags --libs plume) -o host
*/
#include <lauxlib.h>
#include <plume.h>
#include <plume_lua.h>
#include <stdio.h>

static const char *model =
    "local coin = plume.model(function(m, data)\n"
    "  local p = m:sample('p', plume.dist.beta(1, 1))\n"
    "  for i, y in ipairs(data) do m:observe('y' .. i, plume.dist.bernoulli(p), y) end\n"
    "end)\n"
    "local post = plume.infer(coin, {1, 0, 1, 1, 1, 0, 1, 1}, {samples = 2000, chains = 4, seed = 1, quiet = true})\n"
    "result = post:summary().p\n";

int main(void)
{
    plm_State *P = plm_open();
    lua_State *L;
    plm_dist *d;
    plm_ctx ctx;
    double x = 0.5, p[2] = {0, 1};

    if (!P) {
        fprintf(stderr, "host: cannot open plume\n");
        return 1;
    }
    if (plm_dostring(P, model) != 0) {
        fprintf(stderr, "host: %s\n", plm_errmsg(P));
        plm_close(P);
        return 1;
    }
    L = plm_lua(P);
    lua_getglobal(L, "result");
    lua_getfield(L, -1, "mean");
    lua_getfield(L, -2, "rhat");
    printf("posterior mean of p: %.2f (rhat %.3f)\n", lua_tonumber(L, -2), lua_tonumber(L, -1));
    lua_pop(L, 3);

    /* errors come back as messages, not crashes */
    if (plm_dostring(P, "plume.dist.normal(0, -1)") != 0) printf("error as expected: %s\n", plm_errmsg(P));

    /* the C runtime on its own */
    if (plm_dist_new(&ctx, PLM_DIST_NORMAL, p, &d) != PLM_OK) {
        fprintf(stderr, "host: %s\n", plm_ctx_errmsg(&ctx));
        return 1;
    }
    printf("normal(0, 1) log density at 0.5: %.13f\n", plm_dist_logpdf(d, &x));
    plm_close(P);
    return 0;
}
