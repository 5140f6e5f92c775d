/* l_bffg_mcmc.c -- plume.bffg(g, obs, {method = "mcmc", ...}): pCN over the innovations of the guided process with
** random-walk moves of a plume.sde's parameters (runtime/engines/bffg_mcmc.c), its options and its posterior. */
#include "lbffg.h"
#include "l_expr.h"
#include "lmodel.h"
#include "ldist.h"
#include "bffg_reaction.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Where the chains' draws go as they are made (plm_bffg_mcmc_opts.emit): the posterior's table, and the CSV file
** of option `output` (flushed at every draw). */
typedef struct mcmc_sink {
    plm_draws *D;
    FILE *out;
    size_t rowlen;
    int *disc;     /* per column: 1 for a discrete node (its states shown from 1, as elsewhere) */
    double *row;
    int bad;       /* a write failed */
} mcmc_sink;

static int mcmc_emit(void *ud, int chain, size_t k, const double *row, size_t len, double loglik)
{
    mcmc_sink *s = ud;
    plm_ctx c;
    (void)k;
    plm_ctx_clear(&c);
    for (size_t j = 0; j < len; j++) s->row[j] = row[j] + s->disc[j];
    if (plm_draws_push_lp(&c, s->D, chain, s->row, (int)len, 0, loglik)) return 1;
    if (s->out) {
        plm_draws_csv_row(s->D, s->out, chain, plm_draws_len(s->D, chain) - 1);
        if (fflush(s->out) != 0 || ferror(s->out)) s->bad = 1;
    }
    return s->bad;
}

/* method = "mcmc": pCN over the guided process's innovations, with random-walk updates of the parameters of one
** plume.sde (option sde) or plume.reactions (option network) named in params = {name = prior}. Leaves the posterior
** on the stack. */
void plm_l_bffg_mcmc(lua_State *L, const plm_bffg_model *m, const double **vals, lua_Integer n, uint64_t seed, int threads)
{
    const char *fn = "plume.bffg";
    plm_bffg_mcmc_opts o;
    plm_sde *sde = NULL;
    const plm_reactions *net = NULL;
    const double *pcur = NULL;   /* the owner's current parameter values */
    int np = 0, npall = 0, i, j, c, *index = NULL, nn = plm_bffg_nnodes(m);
    const plm_dist **prior = NULL;
    double *init = NULL, *draws, *ll, *stats;
    size_t width = plm_bffg_draw_width(m), rowlen;
    plm_draws *D;
    plm_ctx ctx;
    plm_status st;
    mcmc_sink sink;
    const char *output;
    int P = lua_gettop(L) + 1, S = P + 1, N = P + 2, I = P + 3;   /* params, sde or network, its names, init */
    memset(&o, 0, sizeof o);
    o.iters = (size_t)n;
    o.warmup = (size_t)plm_l_optint(L, 3, fn, "warmup", n);
    o.chains = (int)plm_l_optint(L, 3, fn, "chains", 4);
    o.rho = plm_l_optnum(L, 3, fn, "rho", 0.9);
    o.target_accept = plm_l_optnum(L, 3, fn, "target_accept", 0.25);
    o.step = plm_l_optnum(L, 3, fn, "step", 0.1);
    o.target_accept_theta = 0.3;
    o.fixed_aux = plm_l_optbool(L, 3, fn, "fixed_aux", 0);
    o.adapt_cov = plm_l_optbool(L, 3, fn, "adapt_cov", 1);
    o.seed = seed, o.threads = threads;
    output = plm_l_optstr(L, 3, fn, "output", NULL);
    memset(&sink, 0, sizeof sink);
    if (o.chains < 1 || o.chains > 1024) luaL_error(L, "%s: option 'chains' must be in 1..1024 (got %d)", fn, o.chains);
    if (!(o.rho >= 0 && o.rho < 1)) luaL_error(L, "%s: option 'rho' must be in [0, 1) (got %f)", fn, o.rho);
    if (!(o.target_accept >= 0 && o.target_accept < 1))
        luaL_error(L, "%s: option 'target_accept' must be in (0, 1), or 0 to keep rho fixed (got %f)", fn, o.target_accept);
    if (!(o.step > 0)) luaL_error(L, "%s: option 'step' must be > 0 (got %f)", fn, o.step);
    if (lua_istable(L, 3) && lua_getfield(L, 3, "params") != LUA_TNIL) {   
        if (!lua_istable(L, P)) luaL_error(L, "%s: option 'params' must be a table of parameter name -> prior", fn);
        lua_getfield(L, 3, "sde");
        if (lua_isnil(L, S)) {   /* or the reaction network they belong to */
            lua_pop(L, 1);
            lua_getfield(L, 3, "network");
            if (!(net = plm_l_tonet(L, S)))
                luaL_error(L, "%s: option 'params' needs option 'sde' (the plume.sde they belong to) or 'network' (the "
                              "plume.reactions)", fn);
            if (o.fixed_aux) luaL_error(L, "%s: option 'fixed_aux' is for diffusions (option 'sde'), not networks", fn);
            for (i = 0; i < nn; i++) {   /* its parameters must drive some node, or the chain samples their prior */
                plm_bffg_node_info info;
                plm_bffg_node(m, i, &info);
                if (plm_bffg_kernel_reaction_of(info.kernel) == net) break;
            }
            if (i == nn) luaL_error(L, "%s: no node of the model is a markov_kernel.reactions of option 'network'", fn);
            plm_reactions_size(net, NULL, NULL, &npall);
            pcur = plm_reactions_params(net);
        } else if (!(sde = plm_l_tosde(L, S)))
            luaL_error(L, "%s: option 'sde' must be a plume.sde (got %s)", fn, luaL_typename(L, S));
        else
            npall = sde->np, pcur = sde->params;
        lua_getiuservalue(L, S, 1);
        lua_getfield(L, -1, sde ? "names" : "params");
        lua_replace(L, -2);
        lua_getfield(L, 3, "init");
        if (!lua_isnil(L, I) && !lua_istable(L, I)) luaL_error(L, "%s: option 'init' must be a table of name -> value", fn);
        for (i = 1; i <= npall; i++) {
            lua_geti(L, N, i);
            if (lua_getfield(L, P, lua_tostring(L, -1)) != LUA_TNIL) np++;
            lua_pop(L, 2);
        }
        index = plm_l_scratch(L, (size_t)(np + 1) * sizeof *index);
        prior = plm_l_scratch(L, (size_t)(np + 1) * sizeof *prior);
        init = plm_l_scratch(L, (size_t)(np + 1) * sizeof *init);
        for (i = 1, j = 0; i <= npall; i++) {
            lua_geti(L, N, i);
            if (lua_getfield(L, P, lua_tostring(L, -1)) != LUA_TNIL) {
                plm_dist *d = plm_l_testobj(L, -1, PLM_L_DIST);
                if (!d || d->dim != 1 || plm_dist_info_of(d->kind)->discrete)
                    luaL_error(L, "%s: the prior of parameter '%s' must be a scalar continuous plume.dist", fn, lua_tostring(L, -2));
                index[j] = i - 1, prior[j] = d;
                init[j] = pcur[i - 1];
                if (lua_istable(L, I)) {
                    lua_getfield(L, I, lua_tostring(L, -2));
                    if (lua_isnumber(L, -1)) init[j] = lua_tonumber(L, -1);
                    lua_pop(L, 1);
                }
                if (isnan(init[j])) luaL_error(L, "%s: parameter '%s' has no value to start from (give init)", fn, lua_tostring(L, -2));
                j++;
            }
            lua_pop(L, 2);
        }
        lua_pushnil(L);   /* every name must be a parameter */
        while (lua_next(L, P)) {
            int found = 0;
            lua_pop(L, 1);
            for (i = 1; i <= npall && !found; i++) {
                lua_geti(L, N, i);
                found = lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, -2);
                lua_pop(L, 1);
            }
            if (!found)
                luaL_error(L, "%s: params names '%s', which is not a parameter of the %s", fn, luaL_tolstring(L, -1, NULL),
                           sde ? "sde" : "network");
        }
        if (np == 0) luaL_error(L, "%s: option 'params' is empty", fn);
        o.sde = sde, o.net = net, o.nparams = np, o.index = index, o.prior = prior, o.init = init;
        {   /* the names, for messages (the strings stay in the sde's name table, referenced from the stack) */
            const char **pn = plm_l_scratch(L, (size_t)(np + 1) * sizeof *pn);
            for (j = 0; j < np; j++) {
                lua_geti(L, N, index[j] + 1);
                pn[j] = lua_tostring(L, -1);
                lua_pop(L, 1);
            }
            o.names = pn;
        }
        {   /* blocks = {{name, ...}, ...}: every parameter in exactly one */
            int *blk = plm_l_scratch(L, (size_t)(np + 1) * sizeof *blk), nbk, b, k, anyc = 0;   /* (pushes its block first) */
            int *conj = plm_l_scratch(L, (size_t)(np + 1) * sizeof *conj);   /* per block (a parameter in two blocks is
                                                                               ** refused by block np + 1 at the latest) */
            if (lua_getfield(L, 3, "blocks") != LUA_TNIL) {
                if (!lua_istable(L, -1)) luaL_error(L, "%s: option 'blocks' must be a list of lists of parameter names", fn);
                nbk = (int)lua_rawlen(L, -1);
                for (j = 0; j < np; j++) blk[j] = -1;
                for (b = 1; b <= nbk; b++) {
                    lua_geti(L, -1, b);
                    if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0)
                        luaL_error(L, "%s: option 'blocks': block %d must be a non-empty list of parameter names", fn, b);
                    /* conjugate = true: a conjugate update of drift parameters (bffg.h) instead of a random walk */
                    lua_getfield(L, -1, "conjugate");
                    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
                        luaL_error(L, "%s: option 'blocks': block %d's 'conjugate' must be a boolean", fn, b);
                    conj[b - 1] = lua_toboolean(L, -1);
                    anyc |= conj[b - 1];
                    lua_pop(L, 1);
                    /* walk = true (with conjugate): the block's random walk too, after its conjugate move */
                    lua_getfield(L, -1, "walk");
                    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
                        luaL_error(L, "%s: option 'blocks': block %d's 'walk' must be a boolean", fn, b);
                    if (lua_toboolean(L, -1)) {
                        if (!conj[b - 1])
                            luaL_error(L, "%s: option 'blocks': block %d: 'walk' adds a random walk to a conjugate block "
                                          "(a block without 'conjugate' is a random walk already)", fn, b);
                        conj[b - 1] = 2;
                    }
                    lua_pop(L, 1);
                    if (conj[b - 1] && !sde)
                        luaL_error(L, "%s: option 'blocks': conjugate updates are for the parameters of a plume.sde (option "
                                      "'sde')", fn);
                    for (k = 1; k <= (int)lua_rawlen(L, -1); k++) {
                        int found = -1;
                        lua_geti(L, -1, k);
                        for (j = 0; j < np && found < 0; j++) {
                            lua_geti(L, N, index[j] + 1);
                            if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, -2)) found = j;
                            lua_pop(L, 1);
                        }
                        if (found < 0)
                            luaL_error(L, "%s: option 'blocks' names '%s', which is not one of the parameters in 'params'", fn,
                                       luaL_tolstring(L, -1, NULL));
                        if (blk[found] >= 0) luaL_error(L, "%s: option 'blocks': parameter '%s' is in two blocks", fn, lua_tostring(L, -1));
                        blk[found] = b - 1;
                        lua_pop(L, 1);
                    }
                    lua_pop(L, 1);
                }
                for (j = 0; j < np; j++)
                    if (blk[j] < 0) {
                        lua_geti(L, N, index[j] + 1);
                        luaL_error(L, "%s: option 'blocks': parameter '%s' is in no block", fn, lua_tostring(L, -1));
                    }
                o.block = blk, o.nblocks = nbk;
                if (anyc) o.conjugate = conj;
            }
            lua_pop(L, 1);
        }
    }
    rowlen = (size_t)np + width;
    draws = plm_l_scratch(L, (size_t)o.chains * (size_t)n * (rowlen ? rowlen : 1) * sizeof *draws);
    ll = plm_l_scratch(L, (size_t)o.chains * (size_t)n * sizeof *ll);
    stats = plm_l_scratch(L, (size_t)o.chains * 5 * sizeof *stats);
    plm_ctx_clear(&ctx);
    /* the posterior (parameters, then the latent nodes), filled draw by draw as the chains make them */
    if (plm_draws_new(&ctx, o.chains, &D)) plm_l_fail(L, &ctx);
    for (j = 0; j < np; j++) {
        lua_geti(L, N, index[j] + 1);
        plm_draws_col(D, lua_tostring(L, -1), 1);
        lua_pop(L, 1);
    }
    sink.D = D, sink.out = NULL, sink.rowlen = rowlen;
    sink.disc = plm_l_scratch(L, (rowlen ? rowlen : 1) * sizeof *sink.disc);
    sink.row = plm_l_scratch(L, (rowlen ? rowlen : 1) * sizeof *sink.row);
    for (j = 0; j < np; j++) sink.disc[j] = 0;
    for (i = 0; i < nn; i++) {
        plm_bffg_node_info info;
        plm_bffg_node(m, i, &info);
        if (info.observed) continue;
        for (j = 0; j < info.width; j++) {
            char name[512];
            if (info.width == 1) snprintf(name, sizeof name, "%s", info.name);
            else snprintf(name, sizeof name, "%s[%d]", info.name, j + 1);
            if (plm_draws_col(D, name, 1) != np + (int)info.offset + j) luaL_error(L, "%s: duplicate column '%s'", fn, name);
            sink.disc[np + info.offset + j] = info.discrete;
        }
    }
    if (output) {   /* the header now, each draw as it comes (mcmc_emit), so an interrupted run keeps its draws */
        if (!(sink.out = fopen(output, "w"))) luaL_error(L, "%s: cannot open '%s' for writing", fn, output);
        plm_draws_csv_header(D, sink.out);
        fflush(sink.out);
    }
    o.emit = mcmc_emit, o.emit_ud = &sink;
    st = plm_bffg_mcmc(&ctx, m, vals, &o, draws, ll, stats);
    if (sink.out && (fclose(sink.out) != 0 || sink.bad) && !st)
        st = plm_fail(&ctx, PLM_EIO, "could not finish writing '%s'", output);
    if (st) {
        if (ctx.status == PLM_EINTR) plm_interrupt_clear();
        plm_l_fail_as(L, &ctx, fn);
    }
    lua_newtable(L);
    plm_l_pushdraws(L, D);
    lua_setfield(L, -2, "_draws");
    lua_pushstring(L, "bffg-mcmc");
    lua_setfield(L, -2, "method");
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "samples");
    lua_pushinteger(L, (lua_Integer)o.warmup);
    lua_setfield(L, -2, "warmup");
    lua_pushinteger(L, o.chains);
    lua_setfield(L, -2, "chains");
    lua_pushinteger(L, (lua_Integer)seed);
    lua_setfield(L, -2, "seed");
    {
        static const char *const names[5] = {"accept", "accept_params", "rho", "step", "accept_conjugate"};
        for (j = 0; j < 5; j++) {
            if (!np && (j == 1 || j == 3)) continue;   /* no parameter moves */
            if ((j == 3 && o.conjugate && o.conjugate[0] == 1) || (j == 4 && !o.conjugate)) continue;   /* no such moves */
            lua_createtable(L, o.chains, 0);
            for (c = 0; c < o.chains; c++) {
                lua_pushnumber(L, stats[5 * c + j]);
                lua_rawseti(L, -2, c + 1);
            }
            lua_setfield(L, -2, names[j]);
        }
    }
    lua_getfield(L, lua_upvalueindex(1), "_posterior");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
}

