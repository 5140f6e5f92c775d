/* l_hmm.c -- plume.hmm: hidden Markov models from Lua. The model lives in C (runtime/hmm.h); this file
** converts parameters and observations (1-based symbols and states in Lua, 0-based in C), checks them
** with messages that name the argument and the 1-based position, and returns results as Lua tables. */
#include "lutil.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PLM_L_HMM "plume.hmm"

static plm_hmm *check_hmm(lua_State *L, int idx, const char *fn)
{
    return plm_l_checkobj(L, idx, PLM_L_HMM, fn, "self");
}

/* A number as a person writes it (luaL_error's %f prints -2 as -2.0). */
static const char *num(char *buf, double v)
{
    if (isnan(v))
        snprintf(buf, 32, "nan");
    else
        snprintf(buf, 32, "%.10g", v);
    return buf;
}

/* ---- construction ---- */

/* emit given as one plume.dist per state? */
static int is_dist_list(lua_State *L, int idx)
{
    int yes;
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    lua_rawgeti(L, idx, 1);
    yes = plm_l_testobj(L, -1, PLM_L_DIST) != NULL;
    lua_pop(L, 1);
    return yes;
}

/* plume.hmm{init=, trans=, emit=}: init defaults to uniform. */
static int l_hmm_new(lua_State *L)
{
    const char *fn = "hmm";
    size_t K, kr, kc, n;
    double *init = NULL, *trans;
    plm_hmm *h = NULL;
    plm_ctx ctx;
    plm_status st;
    int top;
    static const char *const fields[] = {"trans", "init", "emit", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, fields);
    lua_getfield(L, 1, "trans");
    if (lua_isnil(L, -1)) return luaL_error(L, "hmm: trans is required (a K x K matrix of transition probabilities)");
    trans = plm_l_checkmat(L, -1, fn, "trans", &kr, &kc);
    if (kr == 0) return luaL_error(L, "hmm: trans must have at least one row");
    if (kr != kc) return luaL_error(L, "hmm: trans must be square (got %d x %d)", (int)kr, (int)kc);
    K = kr;
    lua_getfield(L, 1, "init");
    if (lua_isnil(L, -1)) {
        size_t k;
        init = plm_l_scratch(L, K * sizeof *init);
        for (k = 0; k < K; k++) init[k] = 1.0 / (double)K;
    } else {
        init = plm_l_checkvec(L, -1, fn, "init", &n, 0);
        if (n != K) return luaL_error(L, "hmm: init has %d entries, but trans is %d x %d", (int)n, (int)K, (int)K);
    }
    lua_getfield(L, 1, "emit");
    top = lua_gettop(L);
    if (lua_isnil(L, top)) return luaL_error(L, "hmm: emit is required (a K x M matrix or one distribution per state)");
    if (is_dist_list(L, top)) {
        plm_dist **d;
        size_t k;
        n = (size_t)luaL_len(L, top);
        if (n != K) return luaL_error(L, "hmm: emit has %d distributions, but there are %d states", (int)n, (int)K);
        d = plm_l_scratch(L, K * sizeof *d);
        for (k = 0; k < K; k++) {
            char arg[32];
            lua_rawgeti(L, top, (lua_Integer)k + 1);
            snprintf(arg, sizeof arg, "emit[%d]", (int)k + 1);
            d[k] = plm_l_checkdist(L, -1, fn, arg);
            lua_pop(L, 1);
        }
        st = plm_hmm_new_dists(&ctx, (int)K, init, trans, d, &h);
    } else {
        size_t er, ec;
        double *em = plm_l_checkmat(L, top, fn, "emit", &er, &ec);
        if (er != K) return luaL_error(L, "hmm: emit has %d rows, but there are %d states", (int)er, (int)K);
        st = plm_hmm_new_categorical(&ctx, (int)K, (int)ec, init, trans, em, &h);
    }
    if (st) return plm_l_fail(L, &ctx);
    plm_l_pushobj(L, h, PLM_L_HMM);
    return 1;
}

/* ---- observations ---- */

/* Is the Lua value at idx a list of sequences (rather than one sequence)? */
static int is_multi(lua_State *L, int idx, const plm_hmm *h)
{
    int multi = 0;
    plm_l_array *a;
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    lua_rawgeti(L, idx, 1);
    if ((a = plm_l_toarray(L, -1)))
        multi = h->emit != PLM_HMM_MVNORMAL || (a->cols == (size_t)h->D && a->rows != a->n);
    else if (lua_type(L, -1) == LUA_TTABLE) {
        if (h->emit != PLM_HMM_MVNORMAL)
            multi = 1;
        else {
            int t = lua_rawgeti(L, -1, 1);
            multi = t == LUA_TTABLE || plm_l_toarray(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return multi;
}

/* One observation value (Lua value at the top of the stack) into x (D doubles), checked. pos is 1-based. */
static void read_obs(lua_State *L, const plm_hmm *h, const char *fn, const char *arg, size_t pos, double *x)
{
    int t = lua_type(L, -1);
    char nb[32];
    if (h->emit == PLM_HMM_MVNORMAL) {
        plm_l_array *a = plm_l_toarray(L, -1);
        int i;
        if (a) {
            if (a->n != (size_t)h->D)
                luaL_error(L, "%s: %s[%I] has %d entries, but the emissions have dimension %d", fn, arg, (lua_Integer)pos, (int)a->n, h->D);
            memcpy(x, a->data, a->n * sizeof *x);
        } else {
            if (t != LUA_TTABLE) luaL_error(L, "%s: %s[%I] must be a vector of %d numbers (got %s)", fn, arg, (lua_Integer)pos, h->D, lua_typename(L, t));
            if (luaL_len(L, -1) != h->D)
                luaL_error(L, "%s: %s[%I] has %d entries, but the emissions have dimension %d", fn, arg, (lua_Integer)pos, (int)luaL_len(L, -1), h->D);
            for (i = 0; i < h->D; i++) {
                if (lua_rawgeti(L, -1, i + 1) != LUA_TNUMBER)
                    luaL_error(L, "%s: %s[%I][%d] must be a number (got %s)", fn, arg, (lua_Integer)pos, i + 1, luaL_typename(L, -1));
                x[i] = lua_tonumber(L, -1);
                lua_pop(L, 1);
            }
        }
        for (i = 0; i < h->D; i++)
            if (!isfinite(x[i])) luaL_error(L, "%s: %s[%I][%d] is %s, but observations must be finite", fn, arg, (lua_Integer)pos, i + 1, num(nb, x[i]));
        return;
    }
    if (t == LUA_TBOOLEAN && h->emit == PLM_HMM_BERNOULLI)
        x[0] = lua_toboolean(L, -1);
    else if (t == LUA_TNUMBER)
        x[0] = lua_tonumber(L, -1);
    else
        luaL_error(L, "%s: %s[%I] must be a number (got %s)", fn, arg, (lua_Integer)pos, lua_typename(L, t));
}

/* Check one scalar observation (as the user wrote it) and convert it to C's convention. */
static double conv_obs(lua_State *L, const plm_hmm *h, const char *fn, const char *arg, size_t pos, double v)
{
    char nb[32];
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL:
        if (v != floor(v) || !isfinite(v))
            luaL_error(L, "%s: %s[%I] is %s, but symbols are whole numbers 1..%d", fn, arg, (lua_Integer)pos, num(nb, v), h->M);
        if (v < 1 || v > h->M)
            luaL_error(L, "%s: %s[%I] is %s, but there are %d symbols (1..%d)", fn, arg, (lua_Integer)pos, num(nb, v), h->M, h->M);
        return v - 1;
    case PLM_HMM_POISSON:
        if (!(v >= 0 && isfinite(v) && v == floor(v)))
            luaL_error(L, "%s: %s[%I] is %s, but poisson observations are counts 0, 1, 2, ...", fn, arg, (lua_Integer)pos, num(nb, v));
        return v;
    case PLM_HMM_BERNOULLI:
        if (v != 0 && v != 1) luaL_error(L, "%s: %s[%I] is %s, but bernoulli observations are 0 or 1", fn, arg, (lua_Integer)pos, num(nb, v));
        return v;
    default:
        if (!isfinite(v)) luaL_error(L, "%s: %s[%I] is %s, but observations must be finite", fn, arg, (lua_Integer)pos, num(nb, v));
        return v;
    }
}

/* One sequence at idx -> T*D doubles in C's convention; pushes the owner of the memory. */
static double *check_seq(lua_State *L, int idx, const plm_hmm *h, const char *fn, const char *arg, size_t *T)
{
    const size_t D = (size_t)h->D;
    plm_l_array *a;
    double *y;
    size_t t, n;
    char nb[32];
    idx = lua_absindex(L, idx);
    if ((a = plm_l_toarray(L, idx))) {
        if (D > 1 && a->cols != D)
            luaL_error(L, "%s: %s must be a %d-column plume.array for %d-dimensional emissions (got %d x %d)", fn, arg,
                       (int)D, (int)D, (int)a->rows, (int)a->cols);
        n = D > 1 ? a->rows : a->n;
        if (n == 0) luaL_error(L, "%s: %s is empty", fn, arg);
        y = plm_l_scratch(L, n * D * sizeof *y);
        for (t = 0; t < n * D; t++) y[t] = D > 1 ? a->data[t] : conv_obs(L, h, fn, arg, t + 1, a->data[t]);
        for (t = 0; D > 1 && t < n * D; t++)
            if (!isfinite(y[t])) luaL_error(L, "%s: %s[%I][%d] is %s, but observations must be finite", fn, arg, (lua_Integer)(t / D) + 1, (int)(t % D) + 1, num(nb, y[t]));
        *T = n;
        return y;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: %s must be an array of observations (got %s)", fn, arg, luaL_typename(L, idx));
    n = (size_t)luaL_len(L, idx);
    if (n == 0) luaL_error(L, "%s: %s is empty", fn, arg);
    y = plm_l_scratch(L, n * D * sizeof *y);
    for (t = 0; t < n; t++) {
        lua_rawgeti(L, idx, (lua_Integer)t + 1);
        read_obs(L, h, fn, arg, t + 1, y + t * D);
        if (D == 1 && h->emit != PLM_HMM_MVNORMAL) y[t] = conv_obs(L, h, fn, arg, t + 1, y[t]);
        lua_pop(L, 1);
    }
    *T = n;
    return y;
}

/* Several sequences: ys[q], Ts[q] for the list at idx. Pushes one owner (a table holding every buffer). */
static size_t check_seqs(lua_State *L, int idx, const plm_hmm *h, const char *fn, const char *arg, double ***ys,
                         size_t **Ts)
{
    size_t q, nseq;
    idx = lua_absindex(L, idx);
    nseq = (size_t)luaL_len(L, idx);
    if (nseq == 0) luaL_error(L, "%s: %s is empty", fn, arg);
    lua_createtable(L, (int)nseq + 2, 0);
    *ys = plm_l_scratch(L, nseq * sizeof **ys);
    lua_rawseti(L, -2, (lua_Integer)nseq + 1);
    *Ts = plm_l_scratch(L, nseq * sizeof **Ts);
    lua_rawseti(L, -2, (lua_Integer)nseq + 2);
    for (q = 0; q < nseq; q++) {
        char sub[64];
        snprintf(sub, sizeof sub, "%s[%d]", arg, (int)q + 1);
        lua_rawgeti(L, idx, (lua_Integer)q + 1);
        (*ys)[q] = check_seq(L, -1, h, fn, sub, &(*Ts)[q]);
        lua_rawseti(L, -3, (lua_Integer)q + 1);   /* keep the owner */
        lua_pop(L, 1);
    }
    return nseq;
}

/* ---- pushing results ---- */

static void push_rows(lua_State *L, const double *x, size_t rows, size_t cols)
{
    plm_l_pushmat(L, x, rows, cols);
}

static void push_path(lua_State *L, const int *p, size_t T)
{
    size_t t;
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        lua_pushinteger(L, p[t] + 1);
        lua_rawseti(L, -2, (lua_Integer)t + 1);
    }
}

/* One observation in Lua's convention. */
static void push_obs(lua_State *L, const plm_hmm *h, const double *y)
{
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: lua_pushinteger(L, (lua_Integer)y[0] + 1); break;
    case PLM_HMM_POISSON:
    case PLM_HMM_BERNOULLI: lua_pushinteger(L, (lua_Integer)y[0]); break;
    case PLM_HMM_NORMAL: lua_pushnumber(L, y[0]); break;
    case PLM_HMM_MVNORMAL: plm_l_pushvec(L, y, (size_t)h->D); break;
    }
}

/* ---- methods ---- */

/* Apply a one-sequence method to each sequence when given a list: results become lists. */
typedef int (*seq_method)(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg);

static int for_each_seq(lua_State *L, const char *fn, seq_method m)
{
    plm_hmm *h = check_hmm(L, 1, fn);
    if (lua_isnoneornil(L, 2)) return luaL_error(L, "%s: obs is required", fn);
    if (is_multi(L, 2, h)) {
        lua_Integer q, n = luaL_len(L, 2);
        int base, nres = 0, r;
        lua_settop(L, 2);
        base = lua_gettop(L);
        for (q = 1; q <= n; q++) {
            char arg[32];
            snprintf(arg, sizeof arg, "obs[%d]", (int)q);
            lua_rawgeti(L, 2, q);
            nres = m(L, h, lua_gettop(L), fn, arg);
            if (q == 1) {   /* make result lists below the per-call values */
                for (r = 0; r < nres; r++) lua_newtable(L), lua_insert(L, base + 1 + r);
            }
            for (r = nres; r >= 1; r--) lua_rawseti(L, base + r, q);
            lua_pop(L, 1);   /* the sequence */
        }
        return nres;
    }
    return m(L, h, 2, fn, "obs");
}

static int m_loglik(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg)
{
    size_t T;
    double *y = check_seq(L, obs, h, fn, arg, &T), ll;
    plm_ctx ctx;
    if (plm_hmm_loglik(&ctx, h, T, y, &ll)) return plm_l_fail_as(L, &ctx, fn);
    lua_pop(L, 1);
    lua_pushnumber(L, ll);
    return 1;
}

/* h:loglik(obs): log p(obs); a list of sequences gives the sum. */
static int l_hmm_loglik(lua_State *L)
{
    const char *fn = "hmm:loglik";
    plm_hmm *h = check_hmm(L, 1, fn);
    if (lua_isnoneornil(L, 2)) return luaL_error(L, "%s: obs is required", fn);
    if (is_multi(L, 2, h)) {
        lua_Integer q, n = luaL_len(L, 2);
        double total = 0;
        lua_settop(L, 2);
        for (q = 1; q <= n; q++) {
            char arg[32];
            snprintf(arg, sizeof arg, "obs[%d]", (int)q);
            lua_rawgeti(L, 2, q);
            m_loglik(L, h, 3, fn, arg);
            total += lua_tonumber(L, -1);
            lua_settop(L, 2);
        }
        lua_pushnumber(L, total);
        return 1;
    }
    return m_loglik(L, h, 2, fn, "obs");
}

/* Filtering (posterior = 0) or smoothing probabilities of one sequence, as T rows of K numbers or, with
** as_array, as one T x K plume.array filled in place: building T Lua tables costs more than the recursions. */
static int state_probs(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg, int posterior, int as_array)
{
    size_t T;
    double *y = check_seq(L, obs, h, fn, arg, &T), ll, *p;
    plm_l_array *A = NULL;
    plm_ctx ctx;
    if (as_array) {
        A = plm_l_newarray(L, T * (size_t)h->K);
        A->rows = T;
        A->cols = (size_t)h->K;
        p = A->data;
    } else
        p = plm_l_scratch(L, T * h->K * sizeof *p);
    if ((posterior ? plm_hmm_posterior : plm_hmm_filter)(&ctx, h, T, y, p, &ll)) return plm_l_fail_as(L, &ctx, fn);
    if (as_array)
        lua_replace(L, -2);   /* the array takes the place of y's owner */
    else {
        push_rows(L, p, T, (size_t)h->K);
        lua_replace(L, -3);
        lua_pop(L, 1);        /* the scratch buffer */
    }
    lua_pushnumber(L, ll);
    return 2;
}

static int m_filter(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg) { return state_probs(L, h, obs, fn, arg, 0, 0); }
static int m_filter_arr(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg) { return state_probs(L, h, obs, fn, arg, 0, 1); }
static int m_posterior(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg) { return state_probs(L, h, obs, fn, arg, 1, 0); }
static int m_posterior_arr(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg) { return state_probs(L, h, obs, fn, arg, 1, 1); }

/* The option {as = "table" | "array"} of filter and posterior, at index 3; 1 for "array". */
static int opt_as_array(lua_State *L, const char *fn)
{
    static const char *const names[] = {"as", NULL};
    const char *as;
    int opts = lua_istable(L, 3) ? 3 : 0;
    if (!opts && !lua_isnoneornil(L, 3)) return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    plm_l_checkopts(L, opts, fn, names);
    as = plm_l_optstr(L, opts, fn, "as", "table");
    if (strcmp(as, "table") != 0 && strcmp(as, "array") != 0)
        return luaL_error(L, "%s: option 'as' must be \"table\" or \"array\" (got \"%s\")", fn, as);
    lua_settop(L, 2);
    return strcmp(as, "array") == 0;
}

/* h:filter(obs [, {as = "array"}]) and h:posterior(obs [, {as = "array"}]) */
static int l_hmm_filter(lua_State *L)
{
    int arr = opt_as_array(L, "hmm:filter");
    return for_each_seq(L, "hmm:filter", arr ? m_filter_arr : m_filter);
}

static int l_hmm_posterior(lua_State *L)
{
    int arr = opt_as_array(L, "hmm:posterior");
    return for_each_seq(L, "hmm:posterior", arr ? m_posterior_arr : m_posterior);
}

static int m_viterbi(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg)
{
    size_t T;
    double *y = check_seq(L, obs, h, fn, arg, &T), logp;
    int *path = plm_l_scratch(L, T * sizeof *path);
    plm_ctx ctx;
    if (plm_hmm_viterbi(&ctx, h, T, y, path, &logp)) return plm_l_fail_as(L, &ctx, fn);
    push_path(L, path, T);
    lua_replace(L, -3);
    lua_pop(L, 1);
    lua_pushnumber(L, logp);
    return 2;
}

static int l_hmm_viterbi(lua_State *L) { return for_each_seq(L, "hmm:viterbi", m_viterbi); }

static int m_predict(lua_State *L, plm_hmm *h, int obs, const char *fn, const char *arg)
{
    const size_t K = (size_t)h->K, D = (size_t)h->D;
    const size_t M = h->emit == PLM_HMM_CATEGORICAL ? (size_t)h->M : h->emit == PLM_HMM_BERNOULLI ? 2 : 0;
    size_t T;
    double *y = check_seq(L, obs, h, fn, arg, &T);
    int top = lua_gettop(L);
    plm_hmm_pred pr;
    plm_ctx ctx;
    pr.weights = plm_l_scratch(L, (T + 1) * K * sizeof(double));
    pr.logpred = plm_l_scratch(L, T * sizeof(double));
    pr.probs = M ? plm_l_scratch(L, (T + 1) * M * sizeof(double)) : NULL;
    pr.mean = h->emit != PLM_HMM_CATEGORICAL ? plm_l_scratch(L, (T + 1) * D * sizeof(double)) : NULL;
    if (plm_hmm_predict(&ctx, h, T, y, &pr)) return plm_l_fail_as(L, &ctx, fn);
    lua_createtable(L, 0, 8);
    push_rows(L, pr.weights, T, K);
    lua_setfield(L, -2, "weights");
    plm_l_pushvec(L, pr.logpred, T);
    lua_setfield(L, -2, "logpred");
    if (M) {
        push_rows(L, pr.probs, T, M);
        lua_setfield(L, -2, "probs");
    }
    if (pr.mean) {
        if (D > 1)
            push_rows(L, pr.mean, T, D);
        else
            plm_l_pushvec(L, pr.mean, T);
        lua_setfield(L, -2, "mean");
    }
    /* the predictive after the last observation */
    lua_createtable(L, 0, 3);
    plm_l_pushvec(L, pr.weights + T * K, K);
    lua_setfield(L, -2, "weights");
    if (M) {
        plm_l_pushvec(L, pr.probs + T * M, M);
        lua_setfield(L, -2, "probs");
    }
    if (pr.mean) {
        if (D > 1)
            plm_l_pushvec(L, pr.mean + T * D, D);
        else
            lua_pushnumber(L, pr.mean[T]);
        lua_setfield(L, -2, "mean");
    }
    lua_setfield(L, -2, "next");
    lua_pushnumber(L, pr.logloss);
    lua_setfield(L, -2, "logloss");
    if (!isnan(pr.accuracy)) {
        lua_pushnumber(L, pr.accuracy);
        lua_setfield(L, -2, "accuracy");
    }
    lua_pushnumber(L, -pr.logloss * (double)T);
    lua_setfield(L, -2, "loglik");
    lua_replace(L, top);   /* over the observations' owner */
    lua_settop(L, top);
    return 1;
}

static int l_hmm_predict(lua_State *L) { return for_each_seq(L, "hmm:predict", m_predict); }

/* h:sample(T [, seed]) -> states, obs */
static int l_hmm_sample(lua_State *L)
{
    const char *fn = "hmm:sample";
    plm_hmm *h = check_hmm(L, 1, fn);
    lua_Integer T = plm_l_checkint(L, 2, fn, "T");
    unsigned long long seed;
    int *st;
    double *y;
    plm_rng r;
    plm_ctx ctx;
    lua_Integer t;
    /* The states and observations become Lua tables of T entries: 1e8 of them is already gigabytes. */
    if (T < 1 || T > 100000000) return luaL_error(L, "%s: T must be in 1..1e8 (got %I)", fn, T);
    seed = lua_isnoneornil(L, 3) ? plm_l_default_seed(L) : (unsigned long long)plm_l_checkint(L, 3, fn, "seed");
    st = plm_l_scratch(L, (size_t)T * sizeof *st);
    y = plm_l_scratch(L, (size_t)T * h->D * sizeof *y);
    plm_rng_init(&r, seed, 0);
    if (plm_hmm_sample(&ctx, h, (size_t)T, &r, st, y)) return plm_l_fail_as(L, &ctx, fn);
    push_path(L, st, (size_t)T);
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        push_obs(L, h, y + (size_t)t * h->D);
        lua_rawseti(L, -2, t + 1);
    }
    return 2;
}

/* h:fit(data [, {iters=, tol=, restarts=, seed=}]) -> fitted model, trace */
static int l_hmm_fit(lua_State *L)
{
    const char *fn = "hmm:fit";
    plm_hmm *h = check_hmm(L, 1, fn), *out;
    plm_hmm_fit_opts o;
    double **ys, *trace;
    size_t *Ts, nseq;
    int ntrace, opts = lua_istable(L, 3) ? 3 : 0;
    lua_Integer iters, restarts;
    char nb[32];
    plm_ctx ctx;
    static const char *const names[] = {"iters", "tol", "restarts", "seed", "threads", NULL};
    if (lua_isnoneornil(L, 2)) return luaL_error(L, "%s: data is required", fn);
    if (!lua_isnoneornil(L, 3) && !opts) return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    plm_l_checkopts(L, opts, fn, names);
    plm_hmm_fit_defaults(&o);
    iters = plm_l_optint(L, opts, fn, "iters", o.iters);
    restarts = plm_l_optint(L, opts, fn, "restarts", o.restarts);
    o.tol = plm_l_optnum(L, opts, fn, "tol", o.tol);
    if (iters < 0 || iters > 1000000) return luaL_error(L, "%s: option 'iters' must be in 0..1000000 (got %I)", fn, iters);
    if (restarts < 1 || restarts > 100000) return luaL_error(L, "%s: option 'restarts' must be in 1..100000 (got %I)", fn, restarts);
    if (!(o.tol >= 0)) return luaL_error(L, "%s: option 'tol' must be >= 0 (got %s)", fn, num(nb, o.tol));
    o.iters = (int)iters, o.restarts = (int)restarts;
    o.seed = plm_l_seed(L, opts, fn);
    o.threads = plm_l_threads(L, opts, fn);
    if (is_multi(L, 2, h))
        nseq = check_seqs(L, 2, h, fn, "data", &ys, &Ts);
    else {
        ys = plm_l_scratch(L, sizeof *ys);
        Ts = plm_l_scratch(L, sizeof *Ts);
        ys[0] = check_seq(L, 2, h, fn, "data", &Ts[0]);
        nseq = 1;
    }
    if (plm_hmm_fit(&ctx, h, nseq, (const double *const *)ys, Ts, &o, &out, &trace, &ntrace)) return plm_l_fail_as(L, &ctx, fn);
    plm_l_pushobj(L, out, PLM_L_HMM);
    plm_l_pushvec(L, trace, (size_t)ntrace);
    return 2;
}

static int l_hmm_stationary(lua_State *L)
{
    plm_hmm *h = check_hmm(L, 1, "hmm:stationary");
    double *pi = plm_l_scratch(L, (size_t)h->K * sizeof *pi);
    plm_ctx ctx;
    if (plm_hmm_stationary(&ctx, h, pi)) return plm_l_fail_as(L, &ctx, "hmm:stationary");
    plm_l_pushvec(L, pi, (size_t)h->K);
    return 1;
}

static int l_hmm_entropy_rate(lua_State *L)
{
    plm_hmm *h = check_hmm(L, 1, "hmm:entropy_rate");
    double H;
    plm_ctx ctx;
    if (plm_hmm_entropy_rate(&ctx, h, &H)) return plm_l_fail_as(L, &ctx, "hmm:entropy_rate");
    lua_pushnumber(L, H);
    return 1;
}

/* ---- fields and printing ---- */

/* emit as the user gave it: a K x M matrix, or a list of plume.dist */
static void push_emit(lua_State *L, const plm_hmm *h)
{
    int k;
    if (h->emit == PLM_HMM_CATEGORICAL) {
        push_rows(L, h->par, (size_t)h->K, (size_t)h->M);
        return;
    }
    lua_createtable(L, h->K, 0);
    for (k = 0; k < h->K; k++) {
        plm_dist *d;
        plm_ctx ctx;
        if (plm_hmm_state_dist(&ctx, h, k, &d)) plm_l_fail(L, &ctx);
        plm_l_pushdist(L, d);
        lua_rawseti(L, -2, k + 1);
    }
}

static int l_hmm_index(lua_State *L)
{
    plm_hmm *h = check_hmm(L, 1, "hmm");
    const char *key = lua_tostring(L, 2);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL || !key) return 1;
    if (strcmp(key, "init") == 0)
        plm_l_pushvec(L, h->init, (size_t)h->K);
    else if (strcmp(key, "trans") == 0)
        push_rows(L, h->trans, (size_t)h->K, (size_t)h->K);
    else if (strcmp(key, "emit") == 0)
        push_emit(L, h);
    else if (strcmp(key, "K") == 0)
        lua_pushinteger(L, h->K);
    else if (strcmp(key, "M") == 0 && h->emit == PLM_HMM_CATEGORICAL)
        lua_pushinteger(L, h->M);
    else if (strcmp(key, "D") == 0)
        lua_pushinteger(L, h->D);
    else if (strcmp(key, "family") == 0)
        lua_pushstring(L, plm_hmm_emit_name(h->emit));
    else
        lua_pushnil(L);
    return 1;
}

static void add_row(luaL_Buffer *b, const double *x, int n)
{
    char num[32];
    int i;
    luaL_addchar(b, '{');
    for (i = 0; i < n; i++) {
        if (i == 8 && n > 10) {
            snprintf(num, sizeof num, ", ... (%d more)", n - i);
            luaL_addstring(b, num);
            break;
        }
        snprintf(num, sizeof num, "%s%.4g", i ? ", " : "", x[i]);
        luaL_addstring(b, num);
    }
    luaL_addchar(b, '}');
}

static void add_rows(luaL_Buffer *b, const char *label, const double *x, int rows, int cols)
{
    char line[64];
    int i;
    for (i = 0; i < rows; i++) {
        if (i == 8 && rows > 10) {
            snprintf(line, sizeof line, "\n          ... (%d more rows)", rows - i);
            luaL_addstring(b, line);
            break;
        }
        snprintf(line, sizeof line, "\n  %-6s%s", i == 0 ? label : "", i == 0 ? "= " : "  ");
        luaL_addstring(b, line);
        add_row(b, x + (size_t)i * cols, cols);
    }
}

static int l_hmm_tostring(lua_State *L)
{
    plm_hmm *h = check_hmm(L, 1, "tostring");
    luaL_Buffer b;
    char head[128];
    int k;
    luaL_buffinit(L, &b);
    if (h->emit == PLM_HMM_CATEGORICAL)
        snprintf(head, sizeof head, "plume.hmm: %d states, categorical emissions over %d symbols", h->K, h->M);
    else if (h->emit == PLM_HMM_MVNORMAL)
        snprintf(head, sizeof head, "plume.hmm: %d states, %d-dimensional mvnormal emissions", h->K, h->D);
    else
        snprintf(head, sizeof head, "plume.hmm: %d states, %s emissions", h->K, plm_hmm_emit_name(h->emit));
    luaL_addstring(&b, head);
    luaL_addstring(&b, "\n  init  = ");
    add_row(&b, h->init, h->K);
    add_rows(&b, "trans", h->trans, h->K, h->K);
    if (h->emit == PLM_HMM_CATEGORICAL)
        add_rows(&b, "emit", h->par, h->K, h->M);
    else
        for (k = 0; k < h->K && k < 10; k++) {
            plm_dist *d;
            plm_ctx ctx;
            if (plm_hmm_state_dist(&ctx, h, k, &d)) continue;
            snprintf(head, sizeof head, "\n  %-6s%s", k == 0 ? "emit" : "", k == 0 ? "= " : "  ");
            luaL_addstring(&b, head);
            plm_l_pushdist(L, d);
            luaL_tolstring(L, -1, NULL);
            lua_remove(L, -2);
            luaL_addvalue(&b);
        }
    luaL_pushresult(&b);
    return 1;
}

void plm_l_open_hmm(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"loglik", l_hmm_loglik}, {"filter", l_hmm_filter}, {"posterior", l_hmm_posterior},
        {"viterbi", l_hmm_viterbi}, {"sample", l_hmm_sample}, {"predict", l_hmm_predict},
        {"fit", l_hmm_fit}, {"stationary", l_hmm_stationary}, {"entropy_rate", l_hmm_entropy_rate},
        {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_HMM, NULL, NULL);
    lua_pushcfunction(L, l_hmm_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, methods);
    lua_pushcclosure(L, l_hmm_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_hmm_new);
    lua_setfield(L, -2, "hmm");
}
