/* l_bffg_sir.c -- plume.bffg_sir{...}: backward filtering, forward guiding for an SIR interacting particle
** system on a graph (runtime/engines/bffg_sir.h). Lua reads the graph, the parameters and the observations;
** the filter and the guided paths run in C. Individuals, states and symbols are 1-based here, times 0..T. */
#include "lutil.h"

#include <math.h>
#include <string.h>


/* The numbers of the list at idx into x (n of them exactly; n < 0: any count, returned). */
static int read_nums(lua_State *L, const char *FN, int idx, double *x, int n, const char *what)
{
    int k, len;
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) luaL_error(L, "%s: %s must be a list of numbers (got %s)", FN, what, luaL_typename(L, idx));
    len = (int)lua_rawlen(L, idx);
    if (n >= 0 && len != n) luaL_error(L, "%s: %s must have %d entries (got %d)", FN, what, n, len);
    for (k = 1; k <= len; k++) {
        int ok;
        lua_rawgeti(L, idx, k);
        x[k - 1] = lua_tonumberx(L, -1, &ok);
        if (!ok) luaL_error(L, "%s: %s[%d] must be a number (got %s)", FN, what, k, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return len;
}

/* An integer in lo..hi from the list at idx, entry k. */
static int read_int(lua_State *L, const char *FN, int idx, int k, int lo, int hi, const char *what, int row)
{
    lua_Integer v;
    int ok;
    lua_rawgeti(L, idx, k);
    v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < lo || v > hi)
        luaL_error(L, "%s: %s %d: entry %d must be an integer in %d..%d (got %s)", FN, what, row, k, lo, hi,
                   luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
    return (int)v;
}

/* The graph from `neighbours` (list of lists) or `edges` (list of {i, j}, undirected) into CSR arrays. */
static void read_graph(lua_State *L, const char *FN, int opts, int N, int **start, int **adj)
{
    int i, k, ne = 0, *deg, *s, *a;
    int hasn = lua_getfield(L, opts, "neighbours") != LUA_TNIL, hase = lua_getfield(L, opts, "edges") != LUA_TNIL;
    if (hasn == hase) luaL_error(L, "%s: give the graph as 'neighbours' (a list of lists) or as 'edges' (a list of pairs)", FN);
    s = plm_l_scratch(L, (size_t)(N + 1) * sizeof *s);
    deg = plm_l_scratch(L, (size_t)(N + 1) * sizeof *deg);
    memset(deg, 0, (size_t)(N + 1) * sizeof *deg);
    if (hasn) {
        int t = lua_absindex(L, -4);
        if (!lua_istable(L, t) || (int)lua_rawlen(L, t) != N)
            luaL_error(L, "%s: 'neighbours' must be a list of %d lists (one per individual)", FN, N);
        for (i = 1; i <= N; i++) {
            lua_rawgeti(L, t, i);
            if (!lua_istable(L, -1)) luaL_error(L, "%s: neighbours[%d] must be a list of individuals", FN, i);
            deg[i - 1] = (int)lua_rawlen(L, -1);
            ne += deg[i - 1];
            lua_pop(L, 1);
        }
        a = plm_l_scratch(L, (size_t)(ne + 1) * sizeof *a);
        for (i = 0, s[0] = 0; i < N; i++) s[i + 1] = s[i] + deg[i];
        for (i = 1; i <= N; i++) {
            lua_rawgeti(L, t, i);
            for (k = 1; k <= deg[i - 1]; k++) a[s[i - 1] + k - 1] = read_int(L, FN, -1, k, 1, N, "neighbours of individual", i) - 1;
            lua_pop(L, 1);
        }
    } else {
        int t = lua_absindex(L, -3), m, *fill;
        if (!lua_istable(L, t)) luaL_error(L, "%s: 'edges' must be a list of pairs {i, j}", FN);
        m = (int)lua_rawlen(L, t);
        for (k = 1; k <= m; k++) {
            lua_rawgeti(L, t, k);
            if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2) luaL_error(L, "%s: edges[%d] must be a pair {i, j}", FN, k);
            deg[read_int(L, FN, -1, 1, 1, N, "edge", k) - 1]++;
            deg[read_int(L, FN, -1, 2, 1, N, "edge", k) - 1]++;
            lua_pop(L, 1);
        }
        a = plm_l_scratch(L, (size_t)(2 * m + 1) * sizeof *a);
        fill = plm_l_scratch(L, (size_t)(N + 1) * sizeof *fill);
        for (i = 0, s[0] = 0; i < N; i++) s[i + 1] = s[i] + deg[i], fill[i] = s[i];
        for (k = 1; k <= m; k++) {
            int u, v;
            lua_rawgeti(L, t, k);
            u = read_int(L, FN, -1, 1, 1, N, "edge", k) - 1, v = read_int(L, FN, -1, 2, 1, N, "edge", k) - 1;
            if (u == v) luaL_error(L, "%s: edges[%d] joins individual %d to itself", FN, k, u + 1);
            a[fill[u]++] = v, a[fill[v]++] = u;
            lua_pop(L, 1);
        }
    }
    *start = s, *adj = a;
}

/* The options every system shares, read from the table at 1 into m (K, base, per already set; snames at index
** `names`, a list of the K state names), then the run and its result table (left on the stack). sir: also the SIR
** summaries (infected, infection_time) and aux = a fraction of infected neighbours. */
static int run_system(lua_State *L, const char *FN, plm_bffg_ips *m, int names, int sir)
{
    plm_ctx ctx;
    lua_Integer n;
    const char *method, *rs;
    int smc, scheme, threads, i, t, N, T, M, K = m->K, res;
    double thr, loglik, loglik_aux, *init, *em, *logw, *W, mx = -INFINITY, sum = 0;
    unsigned char *paths;
    size_t nres = 0, width, k;
    uint64_t seed;
    if (lua_getfield(L, 1, "N") == LUA_TNIL) return luaL_error(L, "%s: missing 'N' (the number of individuals)", FN);
    lua_pop(L, 1);
    N = (int)plm_l_optint(L, 1, FN, "N", 0);
    T = (int)plm_l_optint(L, 1, FN, "T", -1);
    if (N < 1 || N > 1000000) return luaL_error(L, "%s: 'N' must be in 1..1e6 (got %d)", FN, N);
    if (T < 0 || T > 1000000) return luaL_error(L, "%s: 'T' (the number of steps) must be given, in 0..1e6 (got %d)", FN, T);
    m->N = N, m->T = T;
    read_graph(L, FN, 1, N, (int **)&m->adj_start, (int **)&m->adj);
    /* init: one row of K probabilities for everyone, or N rows */
    init = plm_l_scratch(L, (size_t)K * N * sizeof *init);
    if (lua_getfield(L, 1, "init") == LUA_TNIL)
        return luaL_error(L, "%s: missing 'init' (%d initial state probabilities, or one such row per individual)", FN, K);
    lua_rawgeti(L, -1, 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_pop(L, 1);
        read_nums(L, FN, -1, init, K, "init");
        for (i = 1; i < N; i++) memcpy(init + (size_t)K * i, init, (size_t)K * sizeof *init);
    } else {
        lua_pop(L, 1);
        if (!lua_istable(L, -1) || (int)lua_rawlen(L, -1) != N)
            return luaL_error(L, "%s: 'init' must be a row of %d probabilities or a list of %d such rows", FN, K, N);
        for (i = 1; i <= N; i++) {
            lua_rawgeti(L, -1, i);
            read_nums(L, FN, -1, init + (size_t)K * (i - 1), K, "init row");
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    m->init = init;
    /* emission: K rows of M (default: the state itself) */
    if (lua_getfield(L, 1, "emission") == LUA_TNIL) {
        M = K, em = plm_l_scratch(L, (size_t)K * K * sizeof *em);
        for (i = 0; i < K * K; i++) em[i] = i / K == i % K;
        lua_insert(L, -2);
    } else {
        if (!lua_istable(L, -1) || (int)lua_rawlen(L, -1) != K) return luaL_error(L, "%s: 'emission' must have %d rows (one per state)", FN, K);
        lua_rawgeti(L, -1, 1);
        M = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
        lua_pop(L, 1);
        if (M < 1) return luaL_error(L, "%s: 'emission' rows must be lists of symbol probabilities", FN);
        em = plm_l_scratch(L, (size_t)K * M * sizeof *em);
        lua_insert(L, -2);
        for (i = 1; i <= K; i++) {
            lua_rawgeti(L, -1, i);
            read_nums(L, FN, -1, em + (size_t)(i - 1) * M, M, "emission row");
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    m->M = M, m->emission = em;
    /* obs: list of {i, t, y} */
    if (lua_getfield(L, 1, "obs") != LUA_TNIL) {
        int no, *buf;
        if (!lua_istable(L, -1)) return luaL_error(L, "%s: 'obs' must be a list of {individual, time, symbol}", FN);
        no = (int)lua_rawlen(L, -1);
        buf = plm_l_scratch(L, (size_t)(3 * no + 1) * sizeof *buf);
        lua_insert(L, -2);
        for (k = 1; k <= (size_t)no; k++) {
            lua_rawgeti(L, -1, (lua_Integer)k);
            if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 3)
                return luaL_error(L, "%s: obs[%d] must be {individual, time, symbol}", FN, (int)k);
            buf[k - 1] = read_int(L, FN, -1, 1, 1, N, "observation", (int)k) - 1;
            buf[no + k - 1] = read_int(L, FN, -1, 2, 0, T, "observation", (int)k);
            buf[2 * no + k - 1] = read_int(L, FN, -1, 3, 1, M, "observation", (int)k) - 1;
            lua_pop(L, 1);
        }
        m->nobs = no, m->obs_i = buf, m->obs_t = buf + no, m->obs_y = buf + 2 * no;
    }
    lua_pop(L, 1);
    /* aux: "mean_field", or (SIR) a fraction f of infected neighbours (lambda = f x degree) */
    if (sir && lua_getfield(L, 1, "aux") == LUA_TNUMBER) {
        double fr = lua_tonumber(L, -1), *lam;
        if (!(fr >= 0 && fr <= 1)) return luaL_error(L, "%s: 'aux' as a number is the infected fraction of neighbours, in [0, 1] (got %f)", FN, fr);
        lam = plm_l_scratch(L, ((size_t)N * T * K + 1) * sizeof *lam);
        memset(lam, 0, ((size_t)N * T * K + 1) * sizeof *lam);
        for (t = 0; t < T; t++)
            for (i = 0; i < N; i++) lam[((size_t)t * N + i) * K + 1] = fr * (m->adj_start[i + 1] - m->adj_start[i]);
        m->lambda = lam;
    } else if ((sir || lua_getfield(L, 1, "aux") != LUA_TNIL) && !lua_isnil(L, -1) &&
               !(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "mean_field") == 0))
        return luaL_error(L, "%s: 'aux' must be \"mean_field\"%s (got %s)", FN, sir ? " or a fraction in [0, 1]" : "",
                          luaL_tolstring(L, -1, NULL));
    n = plm_l_optint(L, 1, FN, "samples", 1000);
    if (n < 1 || n > 100000000) return luaL_error(L, "%s: option 'samples' must be in 1..1e8 (got %d)", FN, (int)n);
    method = plm_l_optstr(L, 1, FN, "method", "is");
    if (strcmp(method, "is") != 0 && strcmp(method, "smc") != 0)
        return luaL_error(L, "%s: method '%s' is not available (methods: is, smc)", FN, method);
    smc = method[0] == 's';
    rs = plm_l_optstr(L, 1, FN, "resample", "systematic");
    if ((scheme = plm_resample_scheme_by_name(rs)) < 0)
        return luaL_error(L, "%s: unknown resample scheme '%s' (schemes: %s)", FN, rs, plm_resample_scheme_list);
    thr = plm_l_optnum(L, 1, FN, "ess_threshold", 0.5);
    if (!(thr >= 0 && thr <= 1)) return luaL_error(L, "%s: option 'ess_threshold' must be in [0, 1] (got %f)", FN, thr);
    if (!smc && (lua_getfield(L, 1, "resample") != LUA_TNIL || lua_getfield(L, 1, "ess_threshold") != LUA_TNIL))
        return luaL_error(L, "%s: options 'resample' and 'ess_threshold' are for method \"smc\"", FN);
    seed = plm_l_seed(L, 1, FN);
    threads = plm_l_threads(L, 1, FN);
    width = (size_t)(T + 1) * N;
    paths = plm_l_scratch(L, (size_t)n * width);
    logw = plm_l_scratch(L, (size_t)n * sizeof *logw);
    W = plm_l_scratch(L, (size_t)n * sizeof *W);
    plm_ctx_clear(&ctx);
    if (plm_bffg_ips_run(&ctx, m, (size_t)n, smc, (plm_resample_scheme)scheme, thr, seed, threads, paths, logw, &loglik,
                         &loglik_aux, &nres)) {
        if (ctx.status == PLM_EINTR) plm_interrupt_clear();
        return plm_l_fail_as(L, &ctx, FN);
    }
    for (k = 0; k < (size_t)n; k++) mx = fmax(mx, logw[k]);
    for (k = 0; k < (size_t)n; k++) sum += (W[k] = exp(logw[k] - mx));
    for (k = 0; k < (size_t)n; k++) W[k] /= sum;
    lua_createtable(L, 0, 12);
    res = lua_gettop(L);
    lua_pushstring(L, sir ? (smc ? "bffg-sir-smc" : "bffg-sir-is") : (smc ? "bffg-ips-smc" : "bffg-ips-is"));
    lua_setfield(L, res, "method");
    lua_pushinteger(L, n);
    lua_setfield(L, res, "samples");
    lua_pushnumber(L, loglik);
    lua_setfield(L, res, "loglik");
    lua_pushnumber(L, loglik_aux);
    lua_setfield(L, res, "loglik_aux");
    lua_pushnumber(L, plm_resample_ess(logw, (size_t)n));
    lua_setfield(L, res, "ess");
    lua_pushinteger(L, (lua_Integer)seed);
    lua_setfield(L, res, "seed");
    lua_pushvalue(L, names);
    lua_setfield(L, res, "states");
    if (smc) {
        lua_pushinteger(L, (lua_Integer)nres);
        lua_setfield(L, res, "resamples");
    }
    plm_l_pushvec(L, logw, (size_t)n);
    lua_setfield(L, res, "log_weights");
    /* marginals[i][t + 1] = the K state probabilities; SIR: infected[i] = P(not S at T), infection_time[i] = E[first
    ** time not S | infected by T] (nil when never) */
    {
        double *marg = plm_l_scratch(L, width * K * sizeof *marg), *pinf = plm_l_scratch(L, (size_t)N * 2 * sizeof *pinf);
        memset(marg, 0, width * K * sizeof *marg);
        memset(pinf, 0, (size_t)N * 2 * sizeof *pinf);
        for (k = 0; k < (size_t)n; k++) {
            const unsigned char *p = paths + k * width;
            for (t = 0; t <= T; t++)
                for (i = 0; i < N; i++) marg[((size_t)t * N + i) * K + p[(size_t)t * N + i]] += W[k];
            for (i = 0; i < N && sir; i++)
                for (t = 0; t <= T; t++)
                    if (p[(size_t)t * N + i] != 0) {
                        pinf[2 * i] += W[k], pinf[2 * i + 1] += W[k] * t;
                        break;
                    }
        }
        lua_createtable(L, N, 0);
        for (i = 0; i < N; i++) {
            lua_createtable(L, T + 1, 0);
            for (t = 0; t <= T; t++) {
                plm_l_pushvec(L, marg + ((size_t)t * N + i) * K, (size_t)K);
                lua_rawseti(L, -2, t + 1);
            }
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, res, "marginals");
        if (sir) {
            lua_createtable(L, N, 0);
            lua_createtable(L, N, 0);
            for (i = 0; i < N; i++) {
                lua_pushnumber(L, pinf[2 * i]);
                lua_rawseti(L, -3, i + 1);
                if (pinf[2 * i] > 0) {
                    lua_pushnumber(L, pinf[2 * i + 1] / pinf[2 * i]);
                    lua_rawseti(L, -2, i + 1);
                }
            }
            lua_setfield(L, res, "infection_time");
            lua_setfield(L, res, "infected");
        }
    }
    lua_pushvalue(L, res);
    return 1;
}

/* plume.bffg_sir{N=, T=, neighbours= | edges=, beta=, gamma=, eps=0, init=, emission=, obs=, aux="mean_field",
** samples=1000, method="is"|"smc", seed=, threads=, resample="systematic", ess_threshold=0.5} -> result table:
** the system of bffg_sir.h with K = 3 and the rates that give S -> I with probability 1 - (1 - eps)(1 - beta)^n,
** I -> R with probability gamma. */
static int l_bffg_sir(lua_State *L)
{
    static const char *FN = "plume.bffg_sir";
    static const char *const opts[] = {"N", "T", "neighbours", "edges", "beta", "gamma", "eps", "init", "emission", "obs",
                                       "aux", "samples", "method", "seed", "threads", "resample", "ess_threshold", NULL};
    static const char *const names[3] = {"S", "I", "R"};
    plm_bffg_ips m;
    double beta, gamma, eps, *base, *per;
    int i;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    plm_l_checkopts(L, 1, FN, opts);
    memset(&m, 0, sizeof m);
    beta = plm_l_optnum(L, 1, FN, "beta", NAN);
    gamma = plm_l_optnum(L, 1, FN, "gamma", NAN);
    eps = plm_l_optnum(L, 1, FN, "eps", 0);
    if (isnan(beta) || isnan(gamma)) return luaL_error(L, "%s: missing 'beta' or 'gamma' (infection and recovery probabilities)", FN);
    if (!(beta >= 0 && beta <= 1)) return luaL_error(L, "%s: beta must be in [0, 1] (got %f)", FN, beta);
    if (!(gamma >= 0 && gamma <= 1)) return luaL_error(L, "%s: gamma must be in [0, 1] (got %f)", FN, gamma);
    if (!(eps >= 0 && eps <= 1)) return luaL_error(L, "%s: eps must be in [0, 1] (got %f)", FN, eps);
    base = plm_l_scratch(L, 9 * sizeof *base);   /* 2 */
    per = plm_l_scratch(L, 27 * sizeof *per);    /* 3 */
    memset(base, 0, 9 * sizeof *base), memset(per, 0, 27 * sizeof *per);
    base[0 * 3 + 1] = -log1p(-eps);              /* S -> I: 1 - (1 - eps)(1 - beta)^n = 1 - exp(-(base + n per)) */
    per[(0 * 3 + 1) * 3 + 1] = -log1p(-beta);     /* beta = 1: +inf, certain with one infected neighbour */
    base[1 * 3 + 2] = -log1p(-gamma);            /* I -> R */
    m.K = 3, m.base = base, m.per = per;
    lua_createtable(L, 3, 0);                    /* 4: the state names */
    for (i = 0; i < 3; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return run_system(L, FN, &m, 4, 1);
}

/* The index (0-based) of state name at idx in the names list at `names` (K entries), or a named error. */
static int state_index(lua_State *L, const char *FN, int names, int K, int idx, const char *what)
{
    const char *s = lua_tostring(L, idx);
    for (int k = 0; k < K && s; k++) {
        int eq;
        lua_rawgeti(L, names, k + 1);
        eq = strcmp(lua_tostring(L, -1), s) == 0;
        lua_pop(L, 1);
        if (eq) return k;
    }
    return luaL_error(L, "%s: %s names state '%s', which is not one of 'states'", FN, what, s ? s : luaL_typename(L, idx));
}

/* plume.bffg_ips{states = {"S", "I", "R", ...}, transitions = {{from = "S", to = "I", rate = 0.01, per = {I = 0.4}},
** ...}, N=, T=, neighbours= | edges=, init=, emission=, obs=, samples=, method=, seed=, threads=, resample=,
** ess_threshold=} -> result table: a compartmental interacting particle system with the rate of from -> to equal to
** rate + sum_k per[k] x (the neighbours in state k), over steps of one time unit (bffg_sir.h). */
static int l_bffg_ips(lua_State *L)
{
    static const char *FN = "plume.bffg_ips";
    static const char *const opts[] = {"states", "transitions", "N", "T", "neighbours", "edges", "init", "emission", "obs",
                                       "aux", "samples", "method", "seed", "threads", "resample", "ess_threshold", NULL};
    static const char *const topts[] = {"from", "to", "rate", "per", NULL};
    plm_bffg_ips m;
    double *base, *per;
    int K, i, j, nt;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    plm_l_checkopts(L, 1, FN, opts);
    memset(&m, 0, sizeof m);
    if (lua_getfield(L, 1, "states") != LUA_TTABLE)   /* 2 */
        return luaL_error(L, "%s: 'states' must be a list of state names (got %s)", FN, luaL_typename(L, 2));
    K = (int)lua_rawlen(L, 2);
    if (K < 2 || K > PLM_IPS_MAX_STATES) return luaL_error(L, "%s: 'states' must list 2..%d names (got %d)", FN, PLM_IPS_MAX_STATES, K);
    for (i = 1; i <= K; i++) {
        if (lua_rawgeti(L, 2, i) != LUA_TSTRING) return luaL_error(L, "%s: states[%d] must be a name", FN, i);
        for (j = 1; j < i; j++) {
            lua_rawgeti(L, 2, j);
            if (lua_rawequal(L, -1, -2)) return luaL_error(L, "%s: state '%s' is named twice", FN, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    base = plm_l_scratch(L, (size_t)K * K * sizeof *base);     /* 3 */
    per = plm_l_scratch(L, (size_t)K * K * K * sizeof *per);   /* 4 */
    memset(base, 0, (size_t)K * K * sizeof *base), memset(per, 0, (size_t)K * K * K * sizeof *per);
    if (lua_getfield(L, 1, "transitions") != LUA_TTABLE)   /* 5 */
        return luaL_error(L, "%s: 'transitions' must be a list of {from=, to=, rate=, per=}", FN);
    nt = (int)lua_rawlen(L, 5);
    for (i = 1; i <= nt; i++) {
        int t, from, to;
        char what[64];
        if (lua_rawgeti(L, 5, i) != LUA_TTABLE) return luaL_error(L, "%s: transitions[%d] must be a table {from=, to=, rate=, per=}", FN, i);
        t = lua_gettop(L);
        plm_l_checkopts(L, t, FN, topts);
        snprintf(what, sizeof what, "transitions[%d].from", i);
        lua_getfield(L, t, "from");
        from = state_index(L, FN, 2, K, -1, what);
        snprintf(what, sizeof what, "transitions[%d].to", i);
        lua_getfield(L, t, "to");
        to = state_index(L, FN, 2, K, -1, what);
        if (from == to) return luaL_error(L, "%s: transitions[%d] goes from '%s' to itself", FN, i, lua_tostring(L, -1));
        lua_pop(L, 2);
        base[from * K + to] += plm_l_optnum(L, t, FN, "rate", 0);
        if (!(base[from * K + to] >= 0))
            return luaL_error(L, "%s: transitions[%d].rate must be >= 0 (got %f)", FN, i, base[from * K + to]);
        if (lua_getfield(L, t, "per") != LUA_TNIL) {
            if (!lua_istable(L, -1)) return luaL_error(L, "%s: transitions[%d].per must be a table {state = rate per neighbour}", FN, i);
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                int k;
                double v = lua_tonumber(L, -1);
                snprintf(what, sizeof what, "transitions[%d].per", i);
                k = state_index(L, FN, 2, K, -2, what);
                if (!lua_isnumber(L, -1) || !(v >= 0 && v < INFINITY))
                    return luaL_error(L, "%s: transitions[%d].per.%s must be a finite rate >= 0", FN, i, lua_tostring(L, -2));
                per[(from * K + to) * K + k] += v;
                lua_pop(L, 1);
            }
        }
        lua_settop(L, 5);
    }
    m.K = K, m.base = base, m.per = per;
    return run_system(L, FN, &m, 2, 0);
}

void plm_l_open_bffg_sir(lua_State *L)
{
    lua_pushcfunction(L, l_bffg_sir);
    lua_setfield(L, -2, "bffg_sir");
    lua_pushcfunction(L, l_bffg_ips);
    lua_setfield(L, -2, "bffg_ips");
}
