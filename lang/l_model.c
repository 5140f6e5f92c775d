/* l_model.c -- dynamic model programs: the `m` handle (m:sample, m:observe, m:factor, m:deterministic)
** and the engines that run a Lua program many times: "prior" (forward sampling), "is" (likelihood
** weighting) and "mh" (single-site trace Metropolis-Hastings). The program is genuinely dynamic (Lua
** decides which choices exist), so one Lua call per run is the unit of work; everything around it --
** traces, proposals, acceptance, adaptation, draws storage and diagnostics -- is C.
**
** MH follows the lightweight-MH recipe (Wingate, Stuhlmueller and Goodman 2011): pick a latent site
** uniformly, propose a new value for it, re-run the program reusing every other old value that is still
** valid, and correct for the sites that appeared (fresh) or vanished (stale) and for the changed number
** of sites. Continuous scalars move by a Gaussian random walk in an unconstrained space (log for positive,
** logit for unit and interval supports, with the Jacobian), its scale adapted per site during warm-up
** towards an acceptance rate of 0.44; mvnormal sites move jointly; discrete and simplex sites are
** re-drawn from their prior. */
#include "lmodel.h"
#include "plume_lua.h"
#include "transform.h"

#include <lualib.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXDIM_STACK 64

typedef plm_l_exec exec;
typedef plm_l_handle handle;

static exec *check_active(lua_State *L, const char *fn)
{
    handle *h = luaL_testudata(L, 1, PLM_L_HANDLE);
    if (!h) return luaL_error(L, "%s: call it with ':' on the model handle (m:%s(...))", fn, fn + 2), NULL;
    if (!h->ex) return luaL_error(L, "%s: called outside a model run (the handle is only valid while plume runs the model)", fn), NULL;
    return h->ex;
}

static const char *check_addr(lua_State *L, const char *fn)
{
    if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
        luaL_error(L, "%s: address must be a string (got %s)", fn, luaL_typename(L, 2));
    return lua_tostring(L, 2);
}

static void add_site(lua_State *L, exec *ex, const char *fn, const char *addr, plm_site_kind kind,
                     const plm_dist *d, const double *x, int dim, double lp)
{
    if (plm_trace_add(&ex->ctx, ex->tr, addr, kind, d, x, dim, lp, NULL))
        luaL_error(L, "%s: %s", fn, plm_ctx_errmsg(&ex->ctx));
}

/* "7", "0.25" or "{0.2, 0.8}": a value of d as the user writes it (categorical labels shifted), for messages */
static const char *value_str(lua_State *L, const plm_dist *d, const double *x, int dim)
{
    luaL_Buffer b;
    char num[32];
    int i;
    if (dim == 1) {
        snprintf(num, sizeof num, "%.15g", x[0] + (d && d->kind == PLM_DIST_CATEGORICAL ? d->base : 0));
        return lua_pushstring(L, num);
    }
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '{');
    for (i = 0; i < dim && i < 8; i++) {
        if (i) luaL_addstring(&b, ", ");
        snprintf(num, sizeof num, "%.15g", x[i]);
        luaL_addstring(&b, num);
    }
    if (dim > 8) luaL_addstring(&b, ", ...");
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* A log density of +inf (a density with a pole at the value) or NaN would make every weight and acceptance
** ratio meaningless: it is an error that names the site, the value and the distribution (at stack idx). */
static void check_density(lua_State *L, const char *fn, const char *addr, int idx, const plm_dist *d, const double *x,
                          double lp)
{
    if (!(lp == INFINITY || isnan(lp))) return;
    {
        const char *dist = luaL_tolstring(L, idx, NULL), *value = value_str(L, d, x, d->dim);
        luaL_error(L, "%s '%s': the log density of %s at %s is %s", fn, addr, dist, value, isnan(lp) ? "NaN" : "+inf");
    }
}

/* While MH looks for a starting point the handle's user value is a table of initial values by address
** (plume.infer's `init`, possibly empty); at other times it is nil. Returns 1 when addr has an initial value
** (then in x); sets *start when a start is being looked for. */
static int init_value(lua_State *L, const exec *ex, const char *addr, const plm_dist *d, double *x, int *start)
{
    *start = 0;
    if (ex->mode != EX_PRIOR) return 0;
    if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    *start = 1;
    if (lua_getfield(L, -1, addr) == LUA_TNIL) {
        lua_pop(L, 2);
        return 0;
    }
    if (!plm_l_todistvalue(L, -1, d, x))
        luaL_error(L, "plume.infer: init value of '%s' must be %s (got %s)", addr,
                   d->dim == 1 ? "a number" : "a table of numbers", luaL_typename(L, -1));
    lua_pop(L, 2);
    if (!(plm_dist_logpdf(d, x) > -INFINITY)) {
        const char *dist = luaL_tolstring(L, 3, NULL), *value = value_str(L, d, x, d->dim);
        luaL_error(L, "plume.infer: init value of '%s' is %s, outside the support of %s", addr, value, dist);
    }
    return 1;
}

/* m:sample(addr, dist) -> value */
/* Record the chosen value x of a latent site and hand it to the program (and to the distribution's hook). */
static int hand_over(lua_State *L, const plm_dist *d, const double *x);

static int finish_sample(lua_State *L, exec *ex, const char *addr, const plm_dist *d, const double *x, double lp)
{
    add_site(L, ex, "m:sample", addr, PLM_SITE_LATENT, d, x, d->dim, lp);
    return hand_over(L, d, x);
}

/* Hand the value x of d to the program (and to the distribution's hook). */
static int hand_over(lua_State *L, const plm_dist *d, const double *x)
{
    plm_l_pushdistvalue(L, d, x);
    /* a distribution with a hook (an LM context's next-token distribution) learns the chosen value */
    if (lua_getiuservalue(L, 3, 1) == LUA_TFUNCTION) {
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
    } else
        lua_pop(L, 1);
    return 1;
}

/* Beam search resumes a branching m:sample here with the value it chose (in C's representation). */
static int sample_branch_k(lua_State *L, int status, lua_KContext kctx)
{
    exec *ex = check_active(L, "m:sample");
    const char *addr = lua_tostring(L, 2);
    plm_dist *d = plm_l_checkdist(L, 3, "m:sample", "dist");
    double x = lua_tonumber(L, -1);
    (void)status;
    (void)kctx;
    lua_pop(L, 1);
    return finish_sample(L, ex, addr, d, &x, plm_dist_logpdf(d, &x));
}

/* the address of a beam branch yield (its value is irrelevant) */
const char plm_l_branch_tag = 'B';

/* m:sample(addr, dist) -> value */
static int l_m_sample(lua_State *L)
{
    exec *ex = check_active(L, "m:sample");
    const char *addr = check_addr(L, "m:sample");
    plm_dist *d = plm_l_checkdist(L, 3, "m:sample", "dist");
    double buf[MAXDIM_STACK], *x = d->dim <= MAXDIM_STACK ? buf : plm_l_scratch(L, (size_t)d->dim * sizeof(double));
    double lp = -INFINITY;
    int have = 0, start = 0;
    if (ex->mode == EX_SMC && ex->beam) {
        /* beam search: a copy replays its parent's sites (those made before the branch), takes the value chosen
        ** for it at the branch, and yields at every new finite discrete choice so that the beam can branch */
        plm_site *s = ex->old ? plm_trace_find(ex->old, addr) : NULL;
        if (ex->target && strcmp(addr, ex->target) == 0) {
            memcpy(x, ex->target_val, (size_t)d->dim * sizeof *x);
            lp = plm_dist_logpdf(d, x);
            have = 1;
        } else if (s && (size_t)(s - ex->old->sites) < ex->replay_sites && s->kind == PLM_SITE_LATENT && s->dim == d->dim) {
            memcpy(x, s->value, (size_t)d->dim * sizeof *x);
            lp = plm_dist_logpdf(d, x);
            have = 1;
        } else if (d->kind == PLM_DIST_CATEGORICAL || d->kind == PLM_DIST_BERNOULLI) {
            lua_settop(L, 3);
            lua_pushlightuserdata(L, (void *)&plm_l_branch_tag);
            lua_pushvalue(L, 3);
            lua_pushvalue(L, 2);
            return lua_yieldk(L, 3, 0, sample_branch_k);
        }
    } else if (ex->mode == EX_SMC && ex->checkpoints < ex->replay_until) {
        /* a resampled copy re-running its parent's history makes the same choices in the same order: take the
        ** parent's site at the same position (by address if the order differs), sharing its value rather than
        ** copying it, and its log density rather than evaluating it again */
        const plm_site *s = ex->tr->n < ex->old->n && strcmp(ex->old->sites[ex->tr->n].addr, addr) == 0
                                ? &ex->old->sites[ex->tr->n] : plm_trace_find(ex->old, addr);
        if (s && s->kind == PLM_SITE_LATENT && s->dim == d->dim && s->logp > -INFINITY) {
            if (plm_trace_add_shared(&ex->ctx, ex->tr, s)) luaL_error(L, "m:sample: %s", plm_ctx_errmsg(&ex->ctx));
            return hand_over(L, d, s->value);
        }
    } else if (ex->mode == EX_REPLAY) {
        if (ex->target && strcmp(addr, ex->target) == 0) {
            memcpy(x, ex->target_val, (size_t)d->dim * sizeof *x);
            lp = plm_dist_logpdf(d, x);
            have = 1;
        } else {
            plm_site *s = plm_trace_find(ex->old, addr);
            if (s && s->kind == PLM_SITE_LATENT && s->dim == d->dim && s->dist && s->dist->kind == d->kind) {
                memcpy(x, s->value, (size_t)d->dim * sizeof *x);
                lp = plm_dist_logpdf(d, x);
                have = lp > -INFINITY;   /* an old value outside the new support is re-drawn instead (see mh_chain) */
            }
        }
    } else if (init_value(L, ex, addr, d, x, &start)) {
        lp = plm_dist_logpdf(d, x);
        have = 1;
    }
    if (!have && plm_dist_info_of(d->kind)->improper) {
        /* an improper prior has no sampler: MH starts it as Stan does, uniformly in (-2, 2) on the unconstrained
        ** scale; nothing else may draw it (a proposal cannot make it appear, "prior" and "is" cannot weight it) */
        double lo, hi, lj;
        if (!start)
            return luaL_error(L, "m:sample '%s': %s is an improper prior: it has no sampler, so only method = \"mh\" "
                                 "can use it, on a site that exists from the first run", addr, luaL_tolstring(L, 3, NULL));
        plm_dist_bounds(d, &lo, &hi);
        x[0] = plm_transform_from_free(lo, hi, -2 + 4 * plm_rng_uniform(ex->rng), &lj);
        lp = plm_dist_logpdf(d, x);
        have = 1;
    }
    if (!have) {
        plm_dist_sample(d, ex->rng, x);
        lp = plm_dist_logpdf(d, x);
        ex->fresh += lp;
    }
    check_density(L, "m:sample", addr, 3, d, x, lp);
    return finish_sample(L, ex, addr, d, x, lp);
}

/* Under the particle engines every observe and factor is a checkpoint: the particle hands control back to the
** scheduler with the weight it gathered (unless it is silently replaying its parent's history). */
static int checkpoint(lua_State *L, exec *ex, double logw)
{
    if (ex->mode != EX_SMC || ex->beam) return 0;   /* beam search syncs at branches, not checkpoints */
    if (ex->checkpoints < ex->replay_until) {
        ex->checkpoints++;
        return 0;
    }
    ex->checkpoints++;
    ex->step_logw += logw;
    return lua_yield(L, 0);
}

/* m:observe(addr, dist, value) */
static int l_m_observe(lua_State *L)
{
    exec *ex = check_active(L, "m:observe");
    const char *addr = check_addr(L, "m:observe");
    plm_dist *d = plm_l_checkdist(L, 3, "m:observe", "dist");
    double buf[MAXDIM_STACK], *x = d->dim <= MAXDIM_STACK ? buf : plm_l_scratch(L, (size_t)d->dim * sizeof(double));
    if (!plm_l_todistvalue(L, 4, d, x)) {
        if (d->dim == 1)
            return luaL_error(L, "m:observe: value of '%s' must be a number (got %s)", addr, luaL_typename(L, 4));
        return luaL_error(L, "m:observe: value of '%s' must be a table of %d numbers", addr, d->dim);
    }
    /* outside the support the weight is -inf (never NaN); the engines deal with dead runs */
    {
        double lp = plm_dist_logpdf(d, x);
        check_density(L, "m:observe", addr, 3, d, x, lp);
        add_site(L, ex, "m:observe", addr, PLM_SITE_OBSERVED, d, x, d->dim, lp);
        /* a hooked distribution (an LM mask) learns the observed value too */
        if (lua_getiuservalue(L, 3, 1) == LUA_TFUNCTION) {
            lua_pushvalue(L, 4);
            lua_call(L, 1, 0);
        } else
            lua_pop(L, 1);
        return checkpoint(L, ex, lp);
    }
}

/* m:factor(logw) */
static int l_m_factor(lua_State *L)
{
    exec *ex = check_active(L, "m:factor");
    double w = plm_l_checknum(L, 2, "m:factor", "log weight");
    if (isnan(w)) return luaL_error(L, "m:factor: log weight is NaN");
    if (w == INFINITY) return luaL_error(L, "m:factor: log weight is +inf");
    ex->tr->loglik += w;
    return checkpoint(L, ex, w);
}

/* m:deterministic(addr, value) -> value */
static int l_m_deterministic(lua_State *L)
{
    exec *ex = check_active(L, "m:deterministic");
    const char *addr = check_addr(L, "m:deterministic");
    if (lua_type(L, 3) == LUA_TNUMBER) {
        double v = lua_tonumber(L, 3);
        add_site(L, ex, "m:deterministic", addr, PLM_SITE_DETERMINISTIC, NULL, &v, 1, 0);
    } else if (lua_type(L, 3) == LUA_TBOOLEAN) {
        double v = lua_toboolean(L, 3);
        add_site(L, ex, "m:deterministic", addr, PLM_SITE_DETERMINISTIC, NULL, &v, 1, 0);
    } else if (lua_type(L, 3) == LUA_TTABLE || plm_l_toarray(L, 3)) {
        size_t n;
        double *v = plm_l_checkvec(L, 3, "m:deterministic", "value", &n, 1);
        add_site(L, ex, "m:deterministic", addr, PLM_SITE_DETERMINISTIC, NULL, v, (int)n, 0);
        lua_pop(L, 1);
    } else
        return luaL_error(L, "m:deterministic: value of '%s' must be a number or a table of numbers (got %s)", addr,
                          luaL_typename(L, 3));
    lua_settop(L, 3);
    return 1;
}

static int l_m_tostring(lua_State *L)
{
    handle *h = luaL_checkudata(L, 1, PLM_L_HANDLE);
    lua_pushstring(L, h->ex ? "plume model handle (running)" : "plume model handle (idle)");
    return 1;
}

/* ---- running a program ---- */

typedef struct program {
    int fn;          /* stack index of the model function */
    int handle;      /* stack index of the handle userdata */
    int args;        /* stack index of the first argument */
    int nargs;
} program;

/* Why the last run of a program was rejected (the rejection's message), for the error an engine raises when
** it finds nothing but rejections. */
typedef struct why {
    char msg[400];
} why;

/* Run the program once under ex, bracketed as an engine-driven run (lutil.h): an invalid parameter met
** inside becomes a rejection, and run_keep returns 1 with its message in *w (when w is not NULL): the
** caller treats the run as log density -inf. Other errors from the program are re-raised after the handle
** is disarmed. Returns 0 after a complete run; with keep, its first return value is left on the stack.
**
** Each run makes garbage Lua cannot weigh: a distribution is a small Lua box rooting a GC object several
** times its size, so Lua's pacer sees a fraction of what the run allocates and lets millions of boxes --
** and what they root -- pile up (1.8 GB for 4 x 10^4 iterations of a 100-observation model). A collector
** step per run, sized by the sites the run made, keeps memory flat in the number of iterations. */
static int run_keep(lua_State *L, const program *pg, exec *ex, int keep, why *w)
{
    handle *h = lua_touserdata(L, pg->handle);
    int i, st, rejected = 0;
    plm_trace_clear(ex->tr);
    ex->fresh = 0;
    lua_pushvalue(L, pg->fn);
    lua_pushvalue(L, pg->handle);
    for (i = 0; i < pg->nargs; i++) lua_pushvalue(L, pg->args + i);
    h->ex = ex;
    plm_l_run_enter(L);
    st = lua_pcall(L, 1 + pg->nargs, keep ? 1 : 0, 0);
    plm_l_run_leave(L);
    h->ex = NULL;
    if (st != LUA_OK) {
        if (!plm_l_isreject(L, -1)) lua_error(L);
        if (w) {
            const char *m = (lua_getfield(L, -1, "msg"), lua_tostring(L, -1));
            snprintf(w->msg, sizeof w->msg, "%s", m ? m : "rejected");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (keep) lua_pushnil(L);
        rejected = 1;
    }
    lua_gc(L, LUA_GCSTEP, (int)(ex->tr->n / 8 + 1));   /* as if each site had made 128 bytes */
    return rejected;
}

static int run(lua_State *L, const program *pg, exec *ex, why *w)
{
    return run_keep(L, pg, ex, 0, w);
}

/* ---- transforms for random-walk proposals ---- */

static int rw_kind(const plm_dist *d)
{
    const plm_dist_info *info = plm_dist_info_of(d->kind);
    if (d->kind == PLM_DIST_MVNORMAL) return 2;
    if (info->discrete || d->dim != 1) return 0;
    return 1;
}

/* x -> u (unconstrained), by the support of this instance (plm_dist_bounds: truncated and half- kinds
** narrow their kind's support) */
static double to_free(const plm_dist *d, double x)
{
    double lo, hi;
    plm_dist_bounds(d, &lo, &hi);
    return plm_transform_to_free(lo, hi, x);
}

/* u -> x, and log |dx/du| */
static double from_free(const plm_dist *d, double u, double *logjac)
{
    double lo, hi;
    plm_dist_bounds(d, &lo, &hi);
    return plm_transform_from_free(lo, hi, u, logjac);
}

/* ---- per-site adaptation state ---- */

typedef struct adapt {
    char *addr;
    double log_scale;
    double n;              /* proposals made at this site */
    double acc;            /* sum of acceptance probabilities */
} adapt;

typedef struct adapt_table {
    adapt *a;
    int n, cap;
} adapt_table;

static adapt *adapt_get(lua_State *L, adapt_table *t, const char *addr)
{
    int i;
    for (i = 0; i < t->n; i++)
        if (strcmp(t->a[i].addr, addr) == 0) return &t->a[i];
    if (t->n == t->cap) {
        int nc = t->cap ? 2 * t->cap : 16;
        adapt *na = realloc(t->a, (size_t)nc * sizeof *na);
        if (!na) return luaL_error(L, "plume.infer: out of memory"), NULL;
        t->a = na;
        t->cap = nc;
    }
    t->a[t->n].addr = strdup(addr);
    if (!t->a[t->n].addr) return luaL_error(L, "plume.infer: out of memory"), NULL;
    t->a[t->n].log_scale = log(0.5);
    t->a[t->n].n = t->a[t->n].acc = 0;
    return &t->a[t->n++];
}

static void adapt_free(adapt_table *t)
{
    int i;
    for (i = 0; i < t->n; i++) free(t->a[i].addr);
    free(t->a);
    t->a = NULL;
    t->n = t->cap = 0;
}

/* The adaptation table is malloc'd; a Lua error (interrupt, model error) would leak it, so it lives in a
** userdata whose __gc frees it. */
static int adapt_gc(lua_State *L)
{
    adapt_free(lua_touserdata(L, 1));
    return 0;
}

static adapt_table *new_adapt_table(lua_State *L)
{
    adapt_table *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    if (luaL_newmetatable(L, "plume.adapt")) {
        lua_pushcfunction(L, adapt_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return t;
}

/* ---- recording draws ---- */

struct plm_l_recorder {
    plm_draws *D;
    FILE *out;          /* `output` option: draws are appended here as they are produced */
    char *out_path;
    int out_cols;       /* columns in the header written; -1 before the first draw */
    int *col;           /* cached column of trace position i, or -1 */
    const char **name;  /* address the cache was made for */
    double *row;
    int cap, rowcap;
};
typedef plm_l_recorder recorder;

static int rec_gc(lua_State *L)
{
    recorder *r = lua_touserdata(L, 1);
    if (r->out) fclose(r->out);
    r->out = NULL;
    free(r->out_path);
    r->out_path = NULL;
    free(r->col);
    free(r->name);
    free(r->row);
    r->col = NULL;
    r->name = NULL;
    r->row = NULL;
    return 0;
}

plm_l_recorder *plm_l_newrecorder(lua_State *L, plm_draws *D)
{
    recorder *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->D = D;
    r->out_cols = -1;
    if (luaL_newmetatable(L, "plume.recorder")) {
        lua_pushcfunction(L, rec_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return r;
}

void plm_l_recorder_output(lua_State *L, plm_l_recorder *r, const char *path, const char *fn)
{
    if (!path) return;
    if (!(r->out = fopen(path, "w"))) luaL_error(L, "%s: cannot open '%s' for writing", fn, path);
    if (!(r->out_path = strdup(path))) luaL_error(L, "%s: out of memory", fn);
    r->out_cols = -1;
}

void plm_l_recorder_close(lua_State *L, plm_l_recorder *r, const char *fn)
{
    if (!r->out) return;
    if (fclose(r->out) != 0) {
        r->out = NULL;
        luaL_error(L, "%s: could not finish writing '%s'", fn, r->out_path);
    }
    r->out = NULL;
}

static int column_for(lua_State *L, recorder *r, const char *addr, int i, int dim)
{
    char name[512];
    int c;
    if (dim == 1) return plm_draws_col(r->D, addr, 1);
    snprintf(name, sizeof name, "%s[%d]", addr, i + 1);
    c = plm_draws_col(r->D, name, 1);
    if (c < 0) luaL_error(L, "plume.infer: out of memory");
    return c;
}

/* A site first seen now cannot join a header already written. The whole table (this draw included) is
** written to a new file that then replaces the old one by rename, so a reader always finds a complete CSV
** with one header; later draws are appended to it. Columns appear a bounded number of times (once per
** site), so the rewrites cost little next to the run. */
static void rewrite_output(lua_State *L, recorder *r)
{
    plm_ctx ctx;
    size_t n = strlen(r->out_path);
    char *tmp = malloc(n + 8);
    FILE *f;
    int ok;
    plm_ctx_clear(&ctx);
    if (!tmp) luaL_error(L, "plume.infer: out of memory");
    memcpy(tmp, r->out_path, n);
    memcpy(tmp + n, ".new", 5);
    f = fopen(tmp, "w");
    ok = f && plm_draws_write_csv(&ctx, r->D, f) == PLM_OK;
    ok = (f && fclose(f) == 0) && ok;
    ok = ok && rename(tmp, r->out_path) == 0;
    free(tmp);
    fclose(r->out);
    r->out = ok ? fopen(r->out_path, "a") : NULL;
    if (!r->out) luaL_error(L, "plume.infer: cannot rewrite '%s' with the columns of a new site", r->out_path);
    r->out_cols = plm_draws_ncols(r->D);
}

/* Append the latent and deterministic values of tr as one draw of chain. */
void plm_l_record(lua_State *L, recorder *r, const plm_trace *tr, int chain, double lw)
{
    plm_ctx ctx;
    size_t i;
    int j, k = 0;
    plm_ctx_clear(&ctx);
    if ((int)tr->n > r->cap) {
        int nc = (int)tr->n * 2;
        int *col = realloc(r->col, (size_t)nc * sizeof *col);
        const char **nm;
        if (!col) luaL_error(L, "plume.infer: out of memory");
        r->col = col;
        nm = realloc(r->name, (size_t)nc * sizeof *nm);
        if (!nm) luaL_error(L, "plume.infer: out of memory");
        r->name = nm;
        for (j = r->cap; j < nc; j++) r->col[j] = -1, r->name[j] = NULL;
        r->cap = nc;
    }
    for (i = 0; i < tr->n; i++) {
        const plm_site *s = &tr->sites[i];
        if (s->kind == PLM_SITE_OBSERVED) continue;
        for (j = 0; j < s->dim; j++) {
            int c;
            /* cache the column of the first component of each trace position; same address, same columns */
            if (j == 0 && r->name[i] && strcmp(r->name[i], s->addr) == 0 && r->col[i] >= 0)
                c = r->col[i];
            else {
                c = column_for(L, r, s->addr, j, s->dim);
                if (c < 0) luaL_error(L, "plume.infer: out of memory");
                if (j == 0) {
                    r->col[i] = c;
                    r->name[i] = plm_draws_name(r->D, c);   /* stable GC string owned by D */
                }
            }
            if (s->dim > 1 && j > 0) c = r->col[i] + j;   /* vector columns are added consecutively */
            if (c >= r->rowcap) {
                int nc = 2 * (c + 1);
                double *row = realloc(r->row, (size_t)nc * sizeof *row);
                if (!row) luaL_error(L, "plume.infer: out of memory");
                for (k = r->rowcap; k < nc; k++) row[k] = NAN;
                r->row = row;
                r->rowcap = nc;
            }
            {
                const plm_dist *d = s->dist;
                double v = s->value[j];
                if (d && d->kind == PLM_DIST_CATEGORICAL) v += d->base;   /* labels as Lua shows them */
                r->row[c] = v;
            }
        }
    }
    {
        int nc = plm_draws_ncols(r->D);
        if (nc > r->rowcap) {
            double *row = realloc(r->row, (size_t)nc * sizeof *row);
            if (!row) luaL_error(L, "plume.infer: out of memory");
            for (k = r->rowcap; k < nc; k++) row[k] = NAN;
            r->row = row;
            r->rowcap = nc;
        }
        if (plm_draws_push(&ctx, r->D, chain, r->row, nc, lw)) plm_l_fail(L, &ctx);
        for (k = 0; k < nc; k++) r->row[k] = NAN;
        if (r->out) {
            if (r->out_cols < 0) {
                plm_draws_csv_header(r->D, r->out);
                r->out_cols = nc;
            }
            if (nc == r->out_cols) {
                plm_draws_csv_row(r->D, r->out, chain, plm_draws_len(r->D, chain) - 1);
                fflush(r->out);
            } else
                rewrite_output(L, r);
        }
    }
}

/* ---- progress ---- */

typedef plm_l_progress progress;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void plm_l_progress_show(progress *p, const char *what, int chain, int nchains, long it, long total, int warm)
{
    double t;
    if (!p->on) return;
    t = now();
    if (t - p->last < 0.2 && it < total) return;
    p->last = t;
    fprintf(stderr, "\rplume: %s chain %d/%d  %ld/%ld%s  %.1fs   ", what, chain + 1, nchains, it, total,
            warm ? " (warmup)" : "         ", t - p->start);
    fflush(stderr);
}

void plm_l_progress_end(progress *p)
{
    if (p->on && p->last > 0) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

void plm_l_progress_start(progress *p, int on)
{
    p->on = on && isatty(2);
    p->last = 0;
    p->start = now();
}

void plm_l_check_interrupt(lua_State *L, const char *fn)
{
    if (plm_interrupted()) {
        plm_interrupt_clear();
        luaL_error(L, "%s: interrupted", fn);
    }
}

int plm_l_quiet_default(lua_State *L)
{
    int q = 0;
    lua_getglobal(L, "plume");
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_getfield(L, -1, "quiet");
        q = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return q;
}

plm_l_handle *plm_l_newhandle(lua_State *L)
{
    handle *h = lua_newuserdatauv(L, sizeof *h, 1);
    h->ex = NULL;
    luaL_setmetatable(L, PLM_L_HANDLE);
    return h;
}

/* ---- engines ---- */

typedef struct options {
    const char *method;
    const char *output;
    long samples, warmup, thin;
    int chains, threads, quiet;
    int init;                 /* stack index of the `init` option (a table or a function), 0 when absent */
    unsigned long long seed;
} options;

void plm_l_pushdraws(lua_State *L, plm_draws *D)
{
    plm_l_pushobj(L, D, PLM_L_DRAWS);
}

static void describe_dead(lua_State *L, const plm_trace *tr, why *w);

/* prior / is: independent runs from the prior; stream i for run i */
static int engine_independent(lua_State *L, const program *pg, const options *o, int weighted)
{
    plm_ctx ctx;
    plm_draws *D;
    plm_trace *tr;
    recorder *rec;
    exec ex;
    plm_rng rng;
    progress pr;
    double *lw, mx = -INFINITY;
    long i, alive = 0;
    why w;
    plm_ctx_clear(&ctx);
    plm_l_progress_start(&pr, !o->quiet);
    if (plm_draws_new(&ctx, 1, &D) || plm_trace_new(&ctx, &tr)) return plm_l_fail(L, &ctx);
    plm_draws_set_weighted(D, weighted);
    plm_l_pushdraws(L, D);
    rec = plm_l_newrecorder(L, D);
    plm_l_recorder_output(L, rec, o->output, "plume.infer");
    lw = plm_l_scratch(L, (size_t)o->samples * sizeof *lw);
    lua_createtable(L, (int)(o->samples < 1000000 ? o->samples : 1000000), 0);   /* return values */
    memset(&ex, 0, sizeof ex);
    ex.mode = EX_PRIOR;
    ex.tr = tr;
    ex.rng = &rng;
    for (i = 0; i < o->samples; i++) {
        int rejected, tries = 0;
        plm_rng_init(&rng, o->seed, (uint64_t)i);
        /* A rejected run (an invalid parameter met inside) has density zero. "is" keeps it with weight -inf;
        ** "prior" draws again from the same stream: its draws are the prior restricted to the valid runs. */
        while ((rejected = run_keep(L, pg, &ex, 1, &w)) && !weighted) {
            lua_pop(L, 1);
            plm_l_check_interrupt(L, "plume.infer");
            if (++tries == 1000)
                return luaL_error(L, "plume.infer: draw %d of the prior was rejected 1000 times in a row; the last "
                                     "time: %s", (int)i + 1, w.msg);
        }
        lua_rawseti(L, -2, i + 1);
        lw[i] = weighted ? (rejected ? -INFINITY : tr->loglik) : 0;
        if (lw[i] > -INFINITY)
            alive++;
        else if (!rejected)
            describe_dead(L, tr, &w);   /* kept for the message when every run is dead */
        if (lw[i] > mx) mx = lw[i];
        plm_l_record(L, rec, tr, 0, lw[i]);
        plm_l_check_interrupt(L, "plume.infer");
        if ((i & 255) == 0) plm_l_progress_show(&pr, weighted ? "is" : "prior", 0, 1, i, o->samples, 0);
    }
    plm_l_progress_end(&pr);
    plm_l_recorder_close(L, rec, "plume.infer");
    if (weighted && alive == 0)
        return luaL_error(L, "plume.infer: every one of the %d samples has weight -inf; the last: %s", (int)o->samples,
                          w.msg);
    lua_newtable(L);                  /* draws, rec, lw, values, result */
    lua_insert(L, -2);
    lua_setfield(L, -2, "values");
    lua_insert(L, -4);                /* result, draws, rec, lw */
    lua_pop(L, 2);
    lua_setfield(L, -2, "_draws");
    if (weighted) {
        lua_pushnumber(L, plm_logsumexp(lw, (size_t)o->samples) - log((double)o->samples));
        lua_setfield(L, -2, "logz");
    }
    return 1;
}

/* pick the k-th latent site of tr */
static plm_site *nth_latent(const plm_trace *tr, size_t k)
{
    size_t i;
    for (i = 0; i < tr->n; i++)
        if (tr->sites[i].kind == PLM_SITE_LATENT && k-- == 0) return &tr->sites[i];
    return NULL;
}

/* Why a run has log density -inf, in the user's words, into w: the first site whose density is zero
** ("m:observe 'y[3]': value 7 is outside the support of binomial(5, 0.3)"), or a factor of -inf. */
static void describe_dead(lua_State *L, const plm_trace *tr, why *w)
{
    size_t i;
    for (i = 0; i < tr->n; i++) {
        const plm_site *s = &tr->sites[i];
        if (s->kind == PLM_SITE_DETERMINISTIC || s->logp > -INFINITY) continue;
        const char *dist, *value;
        plm_l_pushdist(L, (plm_dist *)s->dist);
        dist = luaL_tolstring(L, -1, NULL);
        value = value_str(L, s->dist, s->value, s->dim);
        snprintf(w->msg, sizeof w->msg, "%s '%s': value %s is outside the support of %s",
                 s->kind == PLM_SITE_OBSERVED ? "m:observe" : "m:sample", s->addr, value, dist);
        lua_pop(L, 3);
        return;
    }
    snprintf(w->msg, sizeof w->msg, "m:factor: a log weight of -inf");
}

/* The sum of the log densities of old's latent sites that the proposal nw did not reuse -- absent from nw,
** re-drawn under another kind or dimension, or re-drawn because the old value fell outside the new support --
** other than the target. *irreversible is set when such a re-drawn site's new value lies inside its old
** support (see mh_chain). */
static double stale_logp(const plm_trace *old, const plm_trace *nw, const plm_site *target, int *irreversible)
{
    double s = 0;
    size_t i;
    *irreversible = 0;
    for (i = 0; i < old->n; i++) {
        const plm_site *a = &old->sites[i], *b;
        if (a->kind != PLM_SITE_LATENT || a == target) continue;
        b = plm_trace_find(nw, a->addr);
        if (!b || b->kind != PLM_SITE_LATENT || b->dist->kind != a->dist->kind || b->dim != a->dim) {
            s += a->logp;   /* re-drawn under a new kind: stale here, fresh in nw (and so in reverse) */
            continue;
        }
        if (memcmp(b->value, a->value, (size_t)a->dim * sizeof(double)) == 0) continue;   /* reused */
        s += a->logp;
        if (plm_dist_logpdf(a->dist, b->value) > -INFINITY) *irreversible = 1;
    }
    return s;
}

/* Look for a starting point: runs from the prior, with the chain's init values (the table at stack index
** init, or none when 0) and improper sites started uniformly on the unconstrained scale. */
static void mh_start(lua_State *L, const program *pg, exec *ex, int c, int init, int worker)
{
    why w;
    int tries, rejected = 0;
    if (init) lua_pushvalue(L, init);
    else lua_newtable(L);
    lua_setiuservalue(L, pg->handle, 1);   /* start mode: see init_value */
    for (tries = 0; tries < 1000; tries++) {
        if (plm_interrupted()) break;
        if (!(rejected = run(L, pg, ex, &w)) && plm_trace_score(ex->tr) > -INFINITY) break;
        if (!rejected) describe_dead(L, ex->tr, &w);
    }
    lua_pushnil(L);
    lua_setiuservalue(L, pg->handle, 1);
    if (plm_interrupted()) {
        if (!worker) plm_interrupt_clear();
        luaL_error(L, "plume.infer: interrupted");
    }
    if (tries == 1000)
        luaL_error(L, "plume.infer: chain %d found no starting point with finite log density in 1000 tries from the "
                      "prior%s; the last try %s: %s", c + 1, init ? " and the init values" : "",
                   rejected ? "was rejected" : "had density zero at", w.msg);
}

/* One MH chain: chain c's stream, draws recorded as chain rec_chain of rec, init values from the table at stack
** index init (0: none). On a worker thread (worker = 1) an interrupt is left set for the other chains to see.
** Returns the mean acceptance probability after warm-up.
**
** Reversibility when supports move. A proposal re-runs the program reusing each old value whose address,
** kind and dimension still match; an old value that falls outside its site's new support (b ~ uniform(0,
** 1 - a) after a moved a) is re-drawn fresh. The ratio below counts fresh draws in the forward proposal
** density and the old values they replace as the reverse move's fresh draws (Wingate et al. 2011). That is
** right only when the reverse move would re-draw them too, i.e. when the new value lies outside the old
** support; if it lies inside, the reverse move would reuse it and could never restore the old value: the
** reverse proposal density is zero, and so is the acceptance probability (stale_logp's *irreversible). Without
** this, moves that push b out of its support and back are accepted asymmetrically: mean(a) 0.71 instead
** of 0.5 in the example above. */
static double mh_chain(lua_State *L, const program *pg, const options *o, int c, recorder *rec, int rec_chain,
                       progress *pr, int init, int worker)
{
    plm_ctx ctx;
    plm_trace *tr, *prop;
    exec ex;
    plm_rng rng;
    adapt_table *at;
    long it, total = o->warmup + o->samples, nprop = 0;
    size_t sweep = 0;
    double nacc = 0;
    double buf[MAXDIM_STACK], *big = NULL;
    int bigdim = 0;
    if (init) init = lua_absindex(L, init);
    at = new_adapt_table(L);
    plm_ctx_clear(&ctx);
    if (plm_trace_new(&ctx, &tr) || plm_trace_new(&ctx, &prop)) return plm_l_fail(L, &ctx), 0;
    plm_rng_init(&rng, o->seed, (uint64_t)c);
    memset(&ex, 0, sizeof ex);
    ex.rng = &rng;
    ex.mode = EX_PRIOR;
    ex.tr = tr;
    mh_start(L, pg, &ex, c, init, worker);
    for (it = 0; it < total; it++) {
        int warm = it < o->warmup;
        size_t step, nsteps;
        /* One iteration is a sweep of as many single-site moves as there are latent sites. After
        ** warm-up the count is frozen: a number of moves that depended on the current state would
        ** break invariance of the posterior when the number of sites varies (trans-dimensional models). */
        if (warm || sweep == 0) {
            if (tr->nlatent > sweep) sweep = tr->nlatent;
            nsteps = tr->nlatent;
        } else
            nsteps = sweep;
        for (step = 0; step < nsteps && tr->nlatent > 0; step++) {
            plm_site *s = nth_latent(tr, plm_rng_uint(&rng, tr->nlatent));
            int irreversible;
            const plm_dist *d = s->dist;
            int kind = rw_kind(d), j;
            adapt *ad = NULL;
            double corr = 0, loga, a, *xnew = buf;
            if (plm_interrupted()) {
                if (!worker) plm_interrupt_clear();
                luaL_error(L, "plume.infer: interrupted");
            }
            if (d->dim > MAXDIM_STACK) {
                /* one scratch buffer per chain, grown when a larger site appears (kept on the stack below at) */
                if (d->dim > bigdim) {
                    lua_pop(L, big ? 1 : 0);
                    big = plm_l_scratch(L, (size_t)d->dim * sizeof(double));
                    bigdim = d->dim;
                    lua_insert(L, -2);   /* under the adaptation table */
                }
                xnew = big;
            }
            if (kind == 1) {
                double u, un, lj0, lj1;
                ad = adapt_get(L, at, s->addr);
                u = to_free(d, s->value[0]);
                from_free(d, u, &lj0);
                un = u + exp(ad->log_scale) * plm_rng_normal(&rng);
                xnew[0] = from_free(d, un, &lj1);
                corr = lj1 - lj0;
            } else if (kind == 2) {
                ad = adapt_get(L, at, s->addr);
                for (j = 0; j < d->dim; j++)
                    xnew[j] = s->value[j] + exp(ad->log_scale) / sqrt((double)d->dim) * plm_rng_normal(&rng);
            } else {
                plm_dist_sample(d, &rng, xnew);
                corr = plm_dist_logpdf(d, s->value) - plm_dist_logpdf(d, xnew);
            }
            ex.mode = EX_REPLAY;
            ex.tr = prop;
            ex.old = tr;
            ex.target = s->addr;
            ex.target_val = xnew;
            if (run(L, pg, &ex, NULL))
                a = 0;   /* rejected: an invalid parameter, log density -inf */
            else {
                /* the target's old density is not a stale term: the move proposed its new value */
                double stale = stale_logp(tr, prop, s, &irreversible);
                loga = plm_trace_score(prop) - plm_trace_score(tr) + corr + log((double)tr->nlatent) -
                       log((double)(prop->nlatent ? prop->nlatent : 1)) + stale - ex.fresh;
                a = irreversible || isnan(loga) ? 0 : (loga >= 0 ? 1 : exp(loga));
            }
            if (ad && warm) {
                /* Robbins-Monro on the log scale towards 0.44 acceptance (1-D optimum) */
                ad->n += 1;
                ad->log_scale += (a - 0.44) / pow(ad->n + 1, 0.6);
                if (ad->log_scale > 10) ad->log_scale = 10;
                if (ad->log_scale < -20) ad->log_scale = -20;
            }
            if (!warm) nprop++, nacc += a;
            if (plm_rng_uniform(&rng) < a) {
                plm_trace *t = tr;
                tr = prop;
                prop = t;
            }
        }
        if (!warm && (it - o->warmup) % o->thin == 0) plm_l_record(L, rec, tr, rec_chain, 0);
        if (pr && (it & 63) == 0) plm_l_progress_show(pr, "mh", c, o->chains, it, total, warm);
    }
    lua_pop(L, big ? 2 : 1);   /* adaptation table (and the big scratch) */
    return nprop ? nacc / (double)nprop : NAN;
}

/* ---- chains on several threads: one Lua state per chain ----
** A model program is Lua, and a Lua state runs on one thread at a time; so for threads > 1 each chain gets its
** own state holding a copy of the program and its arguments. Copies are made of plain data (numbers,
** strings, tables), Lua functions (with their upvalues) and distributions; a program that closes over
** anything else -- or that fails in its own state, say by reading a global of the user's script -- runs on
** the calling state instead. Each chain does exactly what it would do there, so the draws are the same. */

typedef struct dumpbuf {
    char *p;
    size_t n, cap;
} dumpbuf;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    dumpbuf *b = ud;
    (void)L;
    if (b->n + sz > b->cap) {
        size_t nc = (b->n + sz) * 2 + 256;
        char *q = realloc(b->p, nc);
        if (!q) return 1;
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, p, sz);
    b->n += sz;
    return 0;
}

/* Library values (plume.dist, plume.dist.normal, math.exp, string.format, ...) are not copied but looked up
** by name: search the globals and the plume module two levels deep for the value at idx of `from`; push the
** value at the same place in `to`. Returns 0 when it is not a library value. */
static int push_same_library_value(lua_State *from, int idx, lua_State *to)
{
    static const char *const roots[] = {"plume", NULL};
    int r;
    for (r = -1; r < 1; r++) {
        int root;
        if (r < 0) lua_pushglobaltable(from);
        else lua_getglobal(from, roots[r]);
        if (!lua_istable(from, -1)) {
            lua_pop(from, 1);
            continue;
        }
        root = lua_gettop(from);
        lua_pushnil(from);
        while (lua_next(from, root)) {
            int found = 0;
            if (lua_type(from, -2) == LUA_TSTRING) {
                if (lua_rawequal(from, -1, idx)) found = 1;
                else if (lua_istable(from, -1)) {
                    int sub = lua_gettop(from);
                    lua_pushnil(from);
                    while (lua_next(from, sub)) {
                        if (lua_type(from, -2) == LUA_TSTRING && lua_rawequal(from, -1, idx)) {
                            /* root[k1][k2] */
                            if (r < 0) lua_pushglobaltable(to);
                            else lua_getglobal(to, roots[r]);
                            lua_getfield(to, -1, lua_tostring(from, -4));
                            lua_getfield(to, -1, lua_tostring(from, -2));
                            lua_replace(to, -3);
                            lua_pop(to, 1);
                            lua_pop(from, 5);
                            return !lua_isnil(to, -1) || (lua_pop(to, 1), 0);
                        }
                        lua_pop(from, 1);
                    }
                }
            }
            if (found) {
                if (r < 0) lua_pushglobaltable(to);
                else lua_getglobal(to, roots[r]);
                lua_getfield(to, -1, lua_tostring(from, -2));
                lua_remove(to, -2);
                lua_pop(from, 3);
                return !lua_isnil(to, -1) || (lua_pop(to, 1), 0);
            }
            lua_pop(from, 1);
        }
        lua_pop(from, 1);
    }
    return 0;
}

/* Copy the value at idx of `from` onto `to`. Returns 0 when it cannot be copied (then `to` may hold partial
** values above its original top: the caller discards the state). */
static int xcopy(lua_State *from, int idx, lua_State *to, int depth)
{
    idx = lua_absindex(from, idx);
    if (depth > 32 || !lua_checkstack(to, 8) || !lua_checkstack(from, 8)) return 0;
    switch (lua_type(from, idx)) {
    case LUA_TNIL: lua_pushnil(to); return 1;
    case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); return 1;
    case LUA_TNUMBER:
        if (lua_isinteger(from, idx)) lua_pushinteger(to, lua_tointeger(from, idx));
        else lua_pushnumber(to, lua_tonumber(from, idx));
        return 1;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(from, idx, &n);
        lua_pushlstring(to, s, n);
        return 1;
    }
    case LUA_TTABLE: {
        int same;
        /* the plume module and the globals are the other state's own */
        lua_getglobal(from, "plume");
        same = lua_rawequal(from, -1, idx);
        lua_pop(from, 1);
        if (same) return lua_getglobal(to, "plume"), 1;
        lua_pushglobaltable(from);
        same = lua_rawequal(from, -1, idx);
        lua_pop(from, 1);
        if (same) return lua_pushglobaltable(to), 1;
        if (push_same_library_value(from, idx, to)) return 1;
        if (lua_getmetatable(from, idx)) {
            lua_pop(from, 1);
            return 0;
        }
        lua_newtable(to);
        lua_pushnil(from);
        while (lua_next(from, idx)) {
            if (!xcopy(from, -2, to, depth + 1) || !xcopy(from, -1, to, depth + 1)) {
                lua_pop(from, 2);
                return 0;
            }
            lua_rawset(to, -3);
            lua_pop(from, 1);
        }
        return 1;
    }
    case LUA_TFUNCTION: {
        dumpbuf db = {NULL, 0, 0};
        const char *name;
        int i, ok;
        if (lua_iscfunction(from, idx)) return push_same_library_value(from, idx, to);
        lua_pushvalue(from, idx);
        ok = lua_dump(from, dump_writer, &db, 0) == 0 && db.p;
        lua_pop(from, 1);
        ok = ok && luaL_loadbufferx(to, db.p, db.n, "=model", "b") == LUA_OK;
        free(db.p);
        if (!ok) return 0;
        for (i = 1; (name = lua_getupvalue(from, idx, i)) != NULL; i++) {
            if (strcmp(name, "_ENV") == 0)
                lua_pushglobaltable(to);
            else if (!xcopy(from, -1, to, depth + 1)) {
                lua_pop(from, 1);
                return 0;
            }
            lua_pop(from, 1);
            lua_setupvalue(to, -2, i);
        }
        return 1;
    }
    case LUA_TUSERDATA: {
        plm_dist *d = plm_l_testobj(from, idx, PLM_L_DIST);
        plm_l_array *a = plm_l_toarray(from, idx);
        if (d) {
            plm_l_pushdist(to, d);   /* distributions are immutable GC objects: share */
            return 1;
        }
        if (a) {
            plm_l_array *c = plm_l_newarray(to, a->n);
            memcpy(c->data, a->data, a->n * sizeof *a->data);
            c->rows = a->rows;
            c->cols = a->cols;
            return 1;
        }
        return 0;
    }
    default:
        return 0;
    }
}

typedef struct chainjob {
    lua_State **S;         /* one state per chain */
    plm_draws **D;         /* one single-chain draws table per chain (rooted by a box on its state) */
    const options *o;
    int nargs;
    double *accept;
    char **err;            /* malloc'd message of a chain that failed */
} chainjob;

/* chain_main(job, c, fn, args..., handle, recorder, draws, init or nil): runs in chain c's own state */
static int chain_main(lua_State *L)
{
    chainjob *J = lua_touserdata(L, 1);
    int c = (int)lua_tointeger(L, 2);
    program pg;
    pg.fn = 3;
    pg.args = 4;
    pg.nargs = J->nargs;
    pg.handle = 4 + J->nargs;
    J->accept[c] = mh_chain(L, &pg, J->o, c, lua_touserdata(L, 5 + J->nargs), 0, NULL,
                            lua_istable(L, 7 + J->nargs) ? 7 + J->nargs : 0, 1);
    return 0;
}

static void chain_worker(void *arg, size_t begin, size_t end, int worker)
{
    chainjob *J = arg;
    size_t c;
    (void)worker;
    for (c = begin; c < end; c++) {
        lua_State *S = J->S[c];
        int i, top = lua_gettop(S);
        lua_pushcfunction(S, chain_main);
        lua_pushlightuserdata(S, J);
        lua_pushinteger(S, (lua_Integer)c);
        for (i = 1; i <= top; i++) lua_pushvalue(S, i);
        if (lua_pcall(S, 2 + top, 0, 0) != LUA_OK) {
            const char *m = lua_tostring(S, -1);
            J->err[c] = strdup(m ? m : "error");
            lua_pop(S, 1);
        }
    }
}

/* Run the chains on their own states in parallel and merge their draws into D chain by chain. Returns 1 when
** done; 0 when the program cannot be copied or a chain failed in its own state (the caller then runs
** everything on L, which also reports a genuine error with its proper message). */
static int mh_parallel(lua_State *L, const program *pg, const options *o, plm_draws *D, double *accept, int inits)
{
    int C = o->chains, c, ok = 1, i;
    chainjob J;
    plm_ctx ctx;
    double *row = NULL;
    plm_ctx_clear(&ctx);
    memset(&J, 0, sizeof J);
    J.o = o;
    J.nargs = pg->nargs;
    J.accept = accept;
    J.S = calloc((size_t)C, sizeof *J.S);
    J.D = calloc((size_t)C, sizeof *J.D);
    J.err = calloc((size_t)C, sizeof *J.err);
    if (!J.S || !J.D || !J.err) ok = 0;
    for (c = 0; ok && c < C; c++) {
        lua_State *S = J.S[c] = luaL_newstate();
        if (!S) {
            ok = 0;
            break;
        }
        luaL_openlibs(S);
        luaL_requiref(S, "plume", luaopen_plume, 1);
        lua_pop(S, 1);
        lua_settop(S, 0);
        ok = xcopy(L, pg->fn, S, 0);
        for (i = 0; ok && i < pg->nargs; i++) ok = xcopy(L, pg->args + i, S, 0);
        if (!ok || plm_draws_new(&ctx, 1, &J.D[c])) {
            ok = 0;
            break;
        }
        lua_settop(S, 1 + pg->nargs);
        plm_l_newhandle(S);
        plm_l_newrecorder(S, J.D[c]);
        plm_l_pushdraws(S, J.D[c]);   /* stays on the stack: it roots the table while the state lives */
        lua_rawgeti(L, inits, c + 1);
        ok = xcopy(L, -1, S, 0);
        lua_pop(L, 1);
    }
    if (ok) {
        plm_parallel_for(o->threads, (size_t)C, 1, chain_worker, &J);
        for (c = 0; c < C; c++) {
            if (J.err[c]) {
                ok = 0;
                /* an interrupt is not a reason to start again on this state (the chains left it set, so that
                ** every thread stops at its next run) */
                if (plm_interrupted()) {
                    plm_interrupt_clear();
                    for (i = 0; i < C; i++) free(J.err[i]), lua_close(J.S[i]);
                    free(J.S), free(J.D), free(J.err);
                    return luaL_error(L, "plume.infer: interrupted"), 0;
                }
            }
        }
    }
    if (ok) {
        /* merge chain by chain: columns are added in the order a single state would have added them */
        for (c = 0; c < C && ok; c++) {
            plm_draws *Dc = J.D[c];
            int nc = plm_draws_ncols(Dc), j, *map = malloc((size_t)(nc ? nc : 1) * sizeof *map);
            size_t k, len = plm_draws_len(Dc, 0);
            if (!map) ok = 0;
            for (j = 0; ok && j < nc; j++)
                if ((map[j] = plm_draws_col(D, plm_draws_name(Dc, j), 1)) < 0) ok = 0;
            if (ok) {
                int nd = plm_draws_ncols(D);
                double *r = realloc(row, (size_t)(nd ? nd : 1) * sizeof *row);
                if (!r) ok = 0;
                else row = r;
                for (k = 0; ok && k < len; k++) {
                    for (j = 0; j < nd; j++) row[j] = NAN;
                    for (j = 0; j < nc; j++) row[map[j]] = plm_draws_chain(Dc, j, 0)[k];
                    if (plm_draws_push(&ctx, D, c, row, nd, 0)) ok = 0;
                }
            }
            free(map);
        }
    }
    free(row);
    for (c = 0; c < C; c++) {
        if (J.S && J.S[c]) lua_close(J.S[c]);
        if (J.err) free(J.err[c]);
    }
    free(J.S), free(J.D), free(J.err);
    if (!ok && plm_draws_len(D, 0)) return luaL_error(L, "plume.infer: out of memory while merging chains"), 0;
    return ok;
}

/* Push a table of each chain's init values (chain c at [c]; absent without `init`) and return its index: the
** option's table for every chain, or what its function returns for chain c (1-based). */
static int push_inits(lua_State *L, const options *o)
{
    int c;
    lua_createtable(L, o->chains, 0);
    for (c = 0; o->init && c < o->chains; c++) {
        if (lua_isfunction(L, o->init)) {
            lua_pushvalue(L, o->init);
            lua_pushinteger(L, c + 1);
            lua_call(L, 1, 1);
            if (!lua_istable(L, -1))
                luaL_error(L, "plume.infer: option 'init' must return a table of values by site name (chain %d got %s)",
                           c + 1, luaL_typename(L, -1));
        } else
            lua_pushvalue(L, o->init);
        lua_rawseti(L, -2, c + 1);
    }
    return lua_gettop(L);
}

static int engine_mh(lua_State *L, const program *pg, const options *o)
{
    plm_ctx ctx;
    plm_draws *D;
    recorder *rec;
    progress pr;
    double *accept_rate;
    int c, done = 0, inits;
    plm_ctx_clear(&ctx);
    plm_l_progress_start(&pr, !o->quiet);
    if (plm_draws_new(&ctx, o->chains, &D)) return plm_l_fail(L, &ctx);
    plm_l_pushdraws(L, D);
    rec = plm_l_newrecorder(L, D);
    plm_l_recorder_output(L, rec, o->output, "plume.infer");
    accept_rate = plm_l_scratch(L, (size_t)o->chains * sizeof(double));
    inits = push_inits(L, o);
    /* several threads: chains on their own Lua states (not with `output`, which streams draws in order) */
    if (o->threads > 1 && o->chains > 1 && !o->output) done = mh_parallel(L, pg, o, D, accept_rate, inits);
    for (c = 0; !done && c < o->chains; c++) {
        lua_rawgeti(L, inits, c + 1);
        accept_rate[c] = mh_chain(L, pg, o, c, rec, c, &pr, lua_istable(L, -1) ? -1 : 0, 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);   /* inits */
    plm_l_progress_end(&pr);
    plm_l_recorder_close(L, rec, "plume.infer");
    lua_newtable(L);
    lua_pushvalue(L, -4);
    lua_setfield(L, -2, "_draws");
    lua_createtable(L, o->chains, 0);
    for (c = 0; c < o->chains; c++) {
        lua_pushnumber(L, accept_rate[c]);
        lua_rawseti(L, -2, c + 1);
    }
    lua_setfield(L, -2, "accept_rate");
    return 1;
}

static const char *const option_names[] = {"method", "samples", "warmup", "chains", "seed", "threads", "quiet", "output",
                                           "init", "thin", NULL};

static void check_option_names(lua_State *L, int opts, const char *fn)
{
    plm_l_checkopts(L, opts, fn, option_names);
}

/* plume._run(fn, opts, nargs, args...): the engine behind plume.infer (lang/plume/_model.lua checks the model). */
static int l_run(lua_State *L)
{
    const char *fn = "plume.infer";
    program pg;
    options o;
    int opts, nargs, quiet_default = 0;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    nargs = (int)luaL_checkinteger(L, 3);
    lua_settop(L, 3 + nargs);
    opts = 2;
    if (lua_type(L, opts) != LUA_TTABLE && !lua_isnoneornil(L, opts))
        return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, opts));
    if (lua_isnoneornil(L, opts)) opts = 0;
    check_option_names(L, opts, fn);
    quiet_default = plm_l_quiet_default(L);
    o.method = plm_l_optstr(L, opts, fn, "method", "mh");
    o.samples = (long)plm_l_optint(L, opts, fn, "samples", 1000);
    o.warmup = (long)plm_l_optint(L, opts, fn, "warmup", o.samples);
    o.chains = (int)plm_l_optint(L, opts, fn, "chains", 4);
    /* chains run on several threads only when asked: each then runs on a copy of the program */
    o.threads = plm_l_optint(L, opts, fn, "threads", 1) > 1 ? plm_l_threads(L, opts, fn) : 1;
    o.quiet = plm_l_optbool(L, opts, fn, "quiet", quiet_default);
    o.seed = plm_l_seed(L, opts, fn);
    o.output = plm_l_optstr(L, opts, fn, "output", NULL);
    o.thin = (long)plm_l_optint(L, opts, fn, "thin", 1);
    o.init = 0;
    if (opts && lua_getfield(L, opts, "init") != LUA_TNIL) {
        if (!lua_istable(L, -1) && !lua_isfunction(L, -1))
            return luaL_error(L, "%s: option 'init' must be a table of values by site name or a function(chain) "
                                 "returning one (got %s)", fn, luaL_typename(L, -1));
        o.init = lua_gettop(L);   /* stays below the arguments' copies: index stable for the run */
    } else if (opts)
        lua_pop(L, 1);
    if (o.thin < 1) return luaL_error(L, "%s: option 'thin' must be >= 1 (got %I)", fn, (lua_Integer)o.thin);
    if (o.samples < 1 || o.samples > 100000000) return luaL_error(L, "%s: option 'samples' must be in 1..1e8 (got %I)", fn, (lua_Integer)o.samples);
    if (o.warmup < 0) return luaL_error(L, "%s: option 'warmup' must be >= 0 (got %I)", fn, (lua_Integer)o.warmup);
    if (o.chains < 1 || o.chains > 1024) return luaL_error(L, "%s: option 'chains' must be in 1..1024 (got %d)", fn, o.chains);

    pg.fn = 1;
    pg.args = 4;
    pg.nargs = nargs;
    plm_l_newhandle(L);
    pg.handle = lua_gettop(L);
    plm_interrupt_clear();
    if (strcmp(o.method, "mh") != 0 && (o.init || o.thin != 1))
        return luaL_error(L, "%s: option '%s' applies to method \"mh\" only", fn, o.init ? "init" : "thin");
    if (strcmp(o.method, "mh") == 0) engine_mh(L, &pg, &o);
    else if (strcmp(o.method, "is") == 0) engine_independent(L, &pg, &o, 1);
    else if (strcmp(o.method, "prior") == 0) engine_independent(L, &pg, &o, 0);
    else return luaL_error(L, "%s: unknown method '%s' (methods: \"prior\", \"is\", \"mh\")", fn, o.method);
    lua_pushstring(L, o.method);
    lua_setfield(L, -2, "method");
    lua_pushinteger(L, strcmp(o.method, "mh") == 0 ? o.chains : 1);
    lua_setfield(L, -2, "chains");
    lua_pushinteger(L, o.samples);
    lua_setfield(L, -2, "samples");
    lua_pushinteger(L, strcmp(o.method, "mh") == 0 ? o.warmup : 0);
    lua_setfield(L, -2, "warmup");
    lua_pushinteger(L, (lua_Integer)o.seed);
    lua_setfield(L, -2, "seed");
    return 1;
}

/* ---- the draws object seen from Lua (wrapped by lang/plume/_results.lua) ---- */

static plm_draws *checkdraws(lua_State *L, int idx)
{
    return plm_l_checkobj(L, idx, PLM_L_DRAWS, "draws", "self");
}

/* D:columns() -> {names} */
static int l_draws_columns(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    int i, n = plm_draws_ncols(D);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, plm_draws_name(D, i));
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* D:column(name) -> flat array of all chains' draws (nil when no such column) */
static int l_draws_column(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    int col = plm_draws_col(D, luaL_checkstring(L, 2), 0), c;
    lua_Integer k = 1;
    if (col < 0) return 0;
    lua_newtable(L);
    for (c = 0; c < plm_draws_nchains(D); c++) {
        const double *v = plm_draws_chain(D, col, c);
        size_t i, n = plm_draws_len(D, c);
        for (i = 0; i < n; i++) {
            if (isnan(v[i])) lua_pushboolean(L, 0);   /* absent in this draw: false keeps the array dense */
            else lua_pushnumber(L, v[i]);
            lua_rawseti(L, -2, k++);
        }
    }
    return 1;
}

/* D:logw() -> flat array of log weights */
static int l_draws_logw(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    int c;
    lua_Integer k = 1;
    lua_newtable(L);
    for (c = 0; c < plm_draws_nchains(D); c++) {
        const double *v = plm_draws_logw(D, c);
        size_t i, n = plm_draws_len(D, c);
        for (i = 0; i < n; i++) {
            lua_pushnumber(L, v[i]);
            lua_rawseti(L, -2, k++);
        }
    }
    return 1;
}

/* D:summary(name) -> {mean=, sd=, ...} */
static int l_draws_summary(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int col = plm_draws_col(D, name, 0);
    plm_summary s;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (col < 0) return luaL_error(L, "summary: no site named '%s'", name);
    if (plm_draws_summary(&ctx, D, col, &s)) return plm_l_fail(L, &ctx);
    lua_createtable(L, 0, 10);
#define F(k) (lua_pushnumber(L, s.k), lua_setfield(L, -2, #k))
    F(mean); F(sd); F(q5); F(q50); F(q95); F(mcse_mean); F(ess_bulk); F(ess_tail); F(rhat);
#undef F
    lua_pushinteger(L, (lua_Integer)s.n);
    lua_setfield(L, -2, "n");
    {
        lua_Integer missing = 0;
        int c;
        size_t i;
        for (c = 0; c < plm_draws_nchains(D); c++) {
            const double *v = plm_draws_chain(D, col, c);
            for (i = 0; i < plm_draws_len(D, c); i++) missing += isnan(v[i]);
        }
        lua_pushinteger(L, missing);
        lua_setfield(L, -2, "missing");
    }
    return 1;
}

static int write_file(lua_State *L, int json)
{
    plm_draws *D = checkdraws(L, 1);
    const char *path = luaL_checkstring(L, 2);
    plm_ctx ctx;
    FILE *f = fopen(path, "w");
    plm_status st;
    plm_ctx_clear(&ctx);
    if (!f) return luaL_error(L, "%s: cannot open '%s' for writing", json ? "write_json" : "write_csv", path);
    st = json ? plm_draws_write_json(&ctx, D, f) : plm_draws_write_csv(&ctx, D, f);
    if (fclose(f) != 0 && !st) st = plm_fail(&ctx, PLM_EIO, "%s: could not finish writing '%s'", json ? "write_json" : "write_csv", path);
    if (st) return plm_l_fail(L, &ctx);
    return 0;
}

static int l_draws_write_csv(lua_State *L) { return write_file(L, 0); }
static int l_draws_write_json(lua_State *L) { return write_file(L, 1); }

static int l_draws_shape(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    lua_pushinteger(L, plm_draws_nchains(D));
    lua_pushinteger(L, (lua_Integer)plm_draws_len(D, 0));
    lua_pushboolean(L, plm_draws_weighted(D));
    {
        lua_Integer total = 0;
        int c;
        for (c = 0; c < plm_draws_nchains(D); c++) total += (lua_Integer)plm_draws_len(D, c);
        lua_pushinteger(L, total);
    }
    return 4;
}

void plm_l_open_model(lua_State *L)
{
    static const luaL_Reg hmethods[] = {
        {"sample", l_m_sample}, {"observe", l_m_observe}, {"factor", l_m_factor},
        {"deterministic", l_m_deterministic}, {NULL, NULL}};
    static const luaL_Reg dmethods[] = {
        {"columns", l_draws_columns}, {"column", l_draws_column}, {"logw", l_draws_logw},
        {"summary", l_draws_summary}, {"write_csv", l_draws_write_csv}, {"write_json", l_draws_write_json},
        {"shape", l_draws_shape}, {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_HANDLE);
    luaL_newlib(L, hmethods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_m_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    plm_l_newmeta(L, PLM_L_DRAWS, dmethods, NULL);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_run);
    lua_setfield(L, -2, "_run");
}
