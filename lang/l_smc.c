/* l_smc.c -- sequential Monte Carlo over model programs: plume.smc(model, args, opts).
**
** Each particle runs the program as a Lua coroutine. Every m:observe and m:factor is a checkpoint: the
** particle yields to the scheduler with the weight it gathered, and once every live particle has reached its
** next checkpoint (or finished) the scheduler resamples when the effective sample size is low. Expensive
** requests a particle makes on the way (an LM's next-token distribution) are yielded too, through
** plume._request(fn, req): the scheduler collects all pending requests of one kind and serves them with a
** single call fn({req1, req2, ...}), so a language model decodes every particle's next token in one batch.
**
** A running coroutine cannot be copied, so a resampled particle that needs a second copy gets a new coroutine
** that re-runs the program silently up to its parent's checkpoint, reusing the parent's choices by address
** (requests on the way are served again; LM backends answer them from their prefix cache). The first copy of
** each parent simply keeps the parent's coroutine. "steer" (SMC steering, Lew et al. 2023) extends every
** particle K ways and keeps N of the N*K with the unbiased without-replacement resampling of Fearnhead and
** Clifford (2003). */
#include "lmodel.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static const char request_tag = 'R';   /* its address marks a yield that carries a request */
#define SMC_FLAG "plume.smc.active"

enum { P_RUN, P_CHECK, P_PENDING, P_DONE, P_DEAD, P_BRANCH };

typedef struct particle {
    plm_l_exec ex;
    plm_rng rng;
    double logw;      /* log weight since the last resampling */
    int state;
    int narg;         /* values to pass at the next resume */
} particle;

/* The population lives in GC memory (it points at traces), rooted while the engine runs; the Lua side keeps
** coroutines and handles in tables at fixed stack slots, indexed like the particles. */
typedef struct engine {
    lua_State *L;
    int fn, args, nargs;      /* stack slots of the model function and its arguments */
    int cos, handles, vals;   /* stack slots of tables: coroutines, handles, return values */
    int reqs;                 /* table: pending request per particle */
    int objs;                 /* table: per particle, the objects it registered (plume._smc_register) */
    int adopt;                /* table: per particle, snapshots its replay adopts in order (plume._smc_adopt) */
    particle *p;
    int n, cap;
    long root;
    uint64_t seed, next_stream;
    const char *who;          /* "plume.smc" or "plume.beam", for messages */
    char reject[512];         /* the last rejection that killed a particle ("" when none) */
    long rejected;            /* particles killed by rejections */
} engine;

static particle *grow(engine *E, int need)
{
    if (need > E->cap) {
        int nc = need * 2;
        particle *np = plm_gc_alloc((size_t)nc * sizeof *np);
        long nr;
        if (!np) return luaL_error(E->L, "plume.smc: out of memory"), NULL;
        if (E->p) memcpy(np, E->p, (size_t)E->n * sizeof *np);
        nr = plm_root(np);
        if (E->root) plm_unroot(E->root);
        E->root = nr;
        E->p = np;
        E->cap = nc;
        /* the moved particles' handles and rng pointers must follow them */
        for (int i = 0; i < E->n; i++) {
            E->p[i].ex.rng = &E->p[i].rng;
            E->p[i].rng.gsl.state = E->p[i].rng.s;
            lua_rawgeti(E->L, E->handles, i + 1);
            ((plm_l_handle *)lua_touserdata(E->L, -1))->ex = &E->p[i].ex;
            lua_pop(E->L, 1);
        }
    }
    return E->p;
}

/* Stateful objects a particle created (LM contexts) cannot be rebuilt by replay alone without redoing their
** work: a copy asks each of its parent's registered objects for a snapshot (metamethod __plume_fork), and
** its replay adopts them in creation order instead of making new ones. */
static void fork_objects(engine *E, int i, int parent_objs)
{
    lua_State *L = E->L;
    lua_Integer k, n;
    lua_newtable(L);
    if (parent_objs) {
        n = luaL_len(L, parent_objs);
        for (k = 1; k <= n; k++) {
            lua_rawgeti(L, parent_objs, k);
            if (luaL_getmetafield(L, -1, "__plume_fork") != LUA_TNIL) {
                lua_insert(L, -2);
                lua_call(L, 1, 1);
                lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
            } else
                lua_pop(L, 1);
        }
    }
    lua_rawseti(L, E->adopt, i + 1);
    lua_newtable(L);
    lua_rawseti(L, E->objs, i + 1);
}

/* A particle that leaves the population releases what its objects hold (an LM context's KV sequence) at once,
** through their __plume_close metamethod, rather than whenever the garbage collector runs. */
static void close_objects(lua_State *L, int objs, int i)
{
    lua_Integer k, n;
    if (lua_rawgeti(L, objs, i + 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    n = luaL_len(L, -1);
    for (k = 1; k <= n; k++) {
        lua_rawgeti(L, -1, k);
        if (luaL_getmetafield(L, -1, "__plume_close") != LUA_TNIL) {
            lua_insert(L, -2);
            lua_call(L, 1, 0);
        } else
            lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Create particle slot i: a new coroutine that will run the program, replaying `parent` (a trace) up to
** `replay` checkpoints; parent_objs is the stack slot of the parent's registered objects (0: none). */
static void spawn(engine *E, int i, const plm_trace *parent, int replay, double logw, int parent_objs)
{
    lua_State *L = E->L, *co;
    particle *p = &E->p[i];
    plm_l_handle *h;
    plm_ctx ctx;
    int k;
    memset(p, 0, sizeof *p);
    plm_ctx_clear(&ctx);
    if (plm_trace_new(&ctx, &p->ex.tr)) plm_l_fail(L, &ctx);
    plm_rng_init(&p->rng, E->seed, E->next_stream++);
    p->ex.rng = &p->rng;
    p->ex.mode = EX_SMC;
    p->ex.old = parent;
    p->ex.replay_until = replay;
    p->logw = logw;
    p->state = P_RUN;
    co = lua_newthread(L);
    lua_rawseti(L, E->cos, i + 1);
    h = plm_l_newhandle(L);
    h->ex = &p->ex;
    lua_pushvalue(L, -1);
    lua_rawseti(L, E->handles, i + 1);
    lua_rawgeti(L, E->cos, i + 1);
    co = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, E->fn);
    lua_insert(L, -2);              /* fn, handle */
    for (k = 0; k < E->nargs; k++) lua_pushvalue(L, E->args + k);
    lua_xmove(L, co, 2 + E->nargs);
    p->narg = 1 + E->nargs;
    lua_pushnil(L);
    lua_rawseti(L, E->vals, i + 1);
    fork_objects(E, i, parent_objs);
}

/* A log weight of +inf or NaN cannot be normalised: an error naming the site that produced it (the last one
** recorded; m:factor refuses such weights itself). -inf is fine: the particle dies. */
static void check_weight(engine *E, const particle *p)
{
    double w = p->ex.step_logw;
    const plm_trace *tr = p->ex.tr;
    if (w == INFINITY || isnan(w)) {
        const char *addr = tr->n ? tr->sites[tr->n - 1].addr : "?";
        luaL_error(E->L, "%s: site '%s' has log density %s, which cannot weight a particle", E->who, addr,
                   isnan(w) ? "NaN" : "+inf");
    }
}

/* Resume particle i once; classify how it stopped. */
static void step_one(engine *E, int i)
{
    lua_State *L = E->L, *co;
    particle *p = &E->p[i];
    int nres = 0, st;
    lua_rawgeti(L, E->cos, i + 1);
    co = lua_tothread(L, -1);
    lua_pop(L, 1);
    p->ex.step_logw = 0;
    lua_rawgeti(L, E->objs, i + 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.smc.objs");
    lua_rawgeti(L, E->adopt, i + 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.smc.adopt");
    plm_l_run_enter(L);
    st = lua_resume(co, L, p->narg, &nres);
    plm_l_run_leave(L);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.smc.objs");
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.smc.adopt");
    p->narg = 0;
    if (st == LUA_YIELD) {
        const void *tag = nres == 3 ? lua_touserdata(co, -3) : NULL;
        if (tag == &plm_l_branch_tag || tag == &request_tag) {
            /* keep the pair: {dist, addr} of a beam branch, or {fn, req} of a request for the batch */
            lua_createtable(L, 2, 0);
            lua_xmove(co, L, 2);
            lua_rawseti(L, -3, 2);
            lua_rawseti(L, -2, 1);
            lua_rawseti(L, E->reqs, i + 1);
            lua_pop(co, 1);
            p->state = tag == &request_tag ? P_PENDING : P_BRANCH;
            return;
        }
        lua_pop(co, nres);
        check_weight(E, p);
        p->logw += p->ex.step_logw;
        p->state = p->logw == -INFINITY ? P_DEAD : P_CHECK;
        return;
    }
    if (st == LUA_OK) {
        if (nres > 0) {
            lua_xmove(co, L, 1);
            lua_rawseti(L, E->vals, i + 1);
            lua_pop(co, nres - 1);
        }
        check_weight(E, p);
        p->logw += p->ex.step_logw;
        p->state = p->logw == -INFINITY ? P_DEAD : P_DONE;
        return;
    }
    /* a rejection (an invalid parameter met inside the program) kills this particle only */
    if (plm_l_isreject(co, -1)) {
        lua_getfield(co, -1, "msg");
        snprintf(E->reject, sizeof E->reject, "%s", lua_isstring(co, -1) ? lua_tostring(co, -1) : "rejected");
        lua_pop(co, 2);
        E->rejected++;
        p->logw = -INFINITY;
        p->state = P_DEAD;
        lua_rawgeti(L, E->handles, i + 1);
        ((plm_l_handle *)lua_touserdata(L, -1))->ex = NULL;
        lua_pop(L, 1);
        return;
    }
    /* an error in the program: re-raise its message (it carries the program's file:line) */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, SMC_FLAG);
    lua_xmove(co, L, 1);
    lua_error(L);
}

/* Serve pending requests in batches: one call per distinct request function. */
static void serve(engine *E)
{
    lua_State *L = E->L;
    int i, j;
    for (i = 0; i < E->n; i++) {
        int nb = 0, *idx;
        if (E->p[i].state != P_PENDING) continue;
        idx = plm_l_scratch(L, (size_t)E->n * sizeof *idx);   /* slot -1 */
        lua_rawgeti(L, E->reqs, i + 1);
        lua_rawgeti(L, -1, 1);                                  /* fn */
        lua_remove(L, -2);
        lua_newtable(L);                                        /* the batch */
        for (j = i; j < E->n; j++) {
            if (E->p[j].state != P_PENDING) continue;
            lua_rawgeti(L, E->reqs, j + 1);
            lua_rawgeti(L, -1, 1);
            if (!lua_rawequal(L, -1, -4)) {
                lua_pop(L, 2);
                continue;
            }
            lua_rawgeti(L, -2, 2);
            lua_rawseti(L, -4, nb + 1);
            lua_pop(L, 2);
            idx[nb++] = j;
        }
        lua_call(L, 1, 1);                                      /* results = fn(batch) */
        if (!lua_istable(L, -1)) luaL_error(L, "plume.smc: a request handler returned %s, not a table of results", luaL_typename(L, -1));
        for (j = 0; j < nb; j++) {
            lua_State *co;
            lua_rawgeti(L, E->cos, idx[j] + 1);
            co = lua_tothread(L, -1);
            lua_pop(L, 1);
            lua_rawgeti(L, -1, j + 1);
            lua_xmove(L, co, 1);
            E->p[idx[j]].narg = 1;
            E->p[idx[j]].state = P_RUN;
            lua_pushnil(L);
            lua_rawseti(L, E->reqs, idx[j] + 1);
        }
        lua_pop(L, 2);                                          /* results, idx */
    }
}

/* Advance every running particle to its next checkpoint (or the end), serving requests in batches. */
static void advance(engine *E)
{
    int i, pending;
    lua_pushboolean(E->L, 1);
    lua_setfield(E->L, LUA_REGISTRYINDEX, SMC_FLAG);
    do {
        pending = 0;
        for (i = 0; i < E->n; i++)
            if (E->p[i].state == P_RUN) {
                if (plm_interrupted()) {
                    lua_pushnil(E->L);
                    lua_setfield(E->L, LUA_REGISTRYINDEX, SMC_FLAG);
                    plm_l_check_interrupt(E->L, E->who);
                }
                step_one(E, i);
            }
        for (i = 0; i < E->n; i++) pending += E->p[i].state == P_PENDING;
        if (pending) serve(E);
    } while (pending);
    lua_pushnil(E->L);
    lua_setfield(E->L, LUA_REGISTRYINDEX, SMC_FLAG);
}

static double ess_of(const particle *p, int n, double *lse)
{
    double m = -INFINITY, s = 0, s2 = 0;
    int i;
    for (i = 0; i < n; i++)
        if (p[i].logw > m) m = p[i].logw;
    if (m == -INFINITY) {
        *lse = -INFINITY;
        return 0;
    }
    for (i = 0; i < n; i++) {
        double w = exp(p[i].logw - m);
        s += w;
        s2 += w * w;
    }
    *lse = m + log(s);
    return s * s / s2;
}

/* Rebuild the population from parents: slot j gets parent par[j] with log weight lw[j]. The first copy of
** each parent keeps its coroutine; the others replay it. */
/* A beam-search branch for new slot j: resume with value (kept parent) or replay up to the branch and take
** value there (copy). NULL for SMC. */
typedef struct branch {
    int done;
    double value;
} branch;

static void rebuild(engine *E, const int *par, const double *lw, int m, const branch *br)
{
    lua_State *L = E->L;
    int old_n = E->n, j;
    char *used;
    particle *old;
    int cos, handles, vals, objs, adopt;
    /* keep the old population and its tables while the new one is built */
    old = plm_gc_alloc((size_t)old_n * sizeof *old);
    if (!old) luaL_error(L, "plume.smc: out of memory");
    memcpy(old, E->p, (size_t)old_n * sizeof *old);
    {
        long r = plm_root(old);
        used = plm_l_scratch(L, (size_t)old_n);
        memset(used, 0, (size_t)old_n);
        /* parents that leave no copy release their objects first, so that copies can take their place */
        for (j = 0; j < m; j++) used[par[j]] = 1;
        for (j = 0; j < old_n; j++)
            if (!used[j]) close_objects(L, E->objs, j);
        memset(used, 0, (size_t)old_n);
        cos = E->cos, handles = E->handles, vals = E->vals, objs = E->objs, adopt = E->adopt;
        lua_newtable(L);
        lua_newtable(L);
        lua_newtable(L);
        lua_newtable(L);
        lua_newtable(L);
        E->cos = lua_gettop(L) - 4;
        E->handles = E->cos + 1;
        E->vals = E->cos + 2;
        E->objs = E->cos + 3;
        E->adopt = E->cos + 4;
        E->n = 0;
        grow(E, m);
        for (j = 0; j < m; j++) {
            int q = par[j];
            particle *p = &E->p[j];
            if (!used[q]) {
                used[q] = 1;
                *p = old[q];
                p->ex.rng = &p->rng;
                p->rng.gsl.state = p->rng.s;
                lua_rawgeti(L, cos, q + 1);
                lua_rawseti(L, E->cos, j + 1);
                lua_rawgeti(L, handles, q + 1);
                ((plm_l_handle *)lua_touserdata(L, -1))->ex = &p->ex;
                lua_rawseti(L, E->handles, j + 1);
                lua_rawgeti(L, vals, q + 1);
                lua_rawseti(L, E->vals, j + 1);
                lua_rawgeti(L, objs, q + 1);
                lua_rawseti(L, E->objs, j + 1);
                lua_rawgeti(L, adopt, q + 1);
                lua_rawseti(L, E->adopt, j + 1);
                p->logw = lw[j];
                if (p->state == P_CHECK) p->state = P_RUN;
                if (br && !br[j].done) {   /* a beam parent resumes with the value chosen for it */
                    lua_rawgeti(L, E->cos, j + 1);
                    lua_pushnumber(lua_tothread(L, -1), br[j].value);
                    lua_pop(L, 1);
                    p->narg = 1;
                    p->state = P_RUN;
                }
            } else if (br) {
                /* a beam copy replays its parent's sites made before the branch and takes its own value there */
                const char *addr;
                size_t alen;
                char *a;
                double *v;
                lua_rawgeti(L, objs, q + 1);
                spawn(E, j, old[q].ex.tr, 0, lw[j], lua_gettop(L));
                lua_rawgeti(L, E->reqs, q + 1);
                lua_rawgeti(L, -1, 2);
                addr = lua_tolstring(L, -1, &alen);
                a = plm_gc_alloc_atomic(alen + 1);
                v = plm_gc_alloc_atomic(sizeof *v);
                if (!a || !v) luaL_error(L, "plume.beam: out of memory");
                memcpy(a, addr, alen + 1);
                *v = br[j].value;
                lua_pop(L, 3);
                p = &E->p[j];
                p->ex.beam = 1;
                p->ex.replay_sites = old[q].ex.tr->n;
                p->ex.target = a;
                p->ex.target_val = v;
            } else {
                int done = old[q].state == P_DONE;
                lua_rawgeti(L, objs, q + 1);
                /* a copy of a finished particle replays every choice (also those after its last checkpoint,
                ** such as the token that ended it), so it ends as the same path */
                spawn(E, j, old[q].ex.tr, done ? INT_MAX : old[q].ex.checkpoints, lw[j], lua_gettop(L));
                lua_pop(L, 1);
            }
            E->n = j + 1;
        }
        /* disarm handles of parents that left no copy */
        for (j = 0; j < old_n; j++)
            if (!used[j]) {
                lua_rawgeti(L, handles, j + 1);
                ((plm_l_handle *)lua_touserdata(L, -1))->ex = NULL;
                lua_pop(L, 1);
            }
        /* move the new tables into the old slots */
        lua_copy(L, E->cos, cos);
        lua_copy(L, E->handles, handles);
        lua_copy(L, E->vals, vals);
        lua_copy(L, E->objs, objs);
        lua_copy(L, E->adopt, adopt);
        lua_pop(L, 6);   /* five tables and `used` */
        E->cos = cos, E->handles = handles, E->vals = vals, E->objs = objs, E->adopt = adopt;
        /* pending branches belonged to the old indices */
        lua_newtable(L);
        lua_replace(L, E->reqs);
        plm_unroot(r);
    }
}

typedef struct smc_opts {
    int N, K, steer, quiet;
    plm_resample_scheme scheme;
    double ess_threshold;
    long max_steps;
    unsigned long long seed;
} smc_opts;

static const char *const smc_option_names[] = {"particles", "ess_threshold", "seed", "method", "extensions",
                                                "max_steps", "quiet", "threads", "resample", NULL};

/* Particles are coroutines of one Lua state: they cannot run on several threads. Refuse threads > 1 rather
** than accept and ignore it. */
static void refuse_threads(lua_State *L, int opts, const char *fn)
{
    lua_Integer th = plm_l_optint(L, opts, fn, "threads", 1);
    if (th != 1)
        luaL_error(L, "%s: option 'threads' must be 1 (got %d): the particles are coroutines of one Lua state and run "
                      "on one thread", fn, (int)th);
}

static void smc_options(lua_State *L, int opts, smc_opts *o)
{
    const char *fn = "plume.smc", *method, *scheme;
    int sc;
    o->steer = 0;
    plm_l_checkopts(L, opts, fn, smc_option_names);
    o->N = (int)plm_l_optint(L, opts, fn, "particles", 100);
    o->ess_threshold = plm_l_optnum(L, opts, fn, "ess_threshold", 0.5);
    o->seed = plm_l_seed(L, opts, fn);
    method = plm_l_optstr(L, opts, fn, "method", "standard");
    o->K = (int)plm_l_optint(L, opts, fn, "extensions", 4);
    o->max_steps = (long)plm_l_optint(L, opts, fn, "max_steps", 100000);
    o->quiet = plm_l_optbool(L, opts, fn, "quiet", plm_l_quiet_default(L));
    refuse_threads(L, opts, fn);
    scheme = plm_l_optstr(L, opts, fn, "resample", "systematic");
    if ((sc = plm_resample_scheme_by_name(scheme)) < 0)
        luaL_error(L, "%s: unknown resampling scheme '%s' (resample: %s)", fn, scheme, plm_resample_scheme_list);
    o->scheme = (plm_resample_scheme)sc;
    if (o->N < 1 || o->N > 10000000) luaL_error(L, "%s: option 'particles' must be in 1..1e7 (got %d)", fn, o->N);
    if (!(o->ess_threshold >= 0 && o->ess_threshold <= 1))
        luaL_error(L, "%s: option 'ess_threshold' must be in [0, 1] (got %f)", fn, o->ess_threshold);
    if (o->K < 1 || o->K > 1000) luaL_error(L, "%s: option 'extensions' must be in 1..1000 (got %d)", fn, o->K);
    if (strcmp(method, "standard") == 0) o->steer = 0;
    else if (strcmp(method, "steer") == 0) o->steer = 1;
    else luaL_error(L, "%s: unknown method '%s' (methods: \"standard\", \"steer\")", fn, method);
}

static int all_finished(const engine *E)
{
    for (int i = 0; i < E->n; i++)
        if (E->p[i].state != P_DONE && E->p[i].state != P_DEAD) return 0;
    return 1;
}

/* The population as a result table (left on the stack, its index returned): draws of every particle's choices
** weighted by its log weight, values (program return values; values.n slots, since dead particles leave
** holes), log_weights normalised to sum to one in exp, and, with scores, the raw log weights. Handles are
** disarmed: the programs are over. */
static int push_population(engine *E, int with_scores)
{
    lua_State *L = E->L;
    plm_ctx ctx;
    plm_draws *D;
    plm_l_recorder *rec;
    int res, i;
    double m = -INFINITY, lse = 0;
    plm_ctx_clear(&ctx);
    if (plm_draws_new(&ctx, 1, &D)) plm_l_fail(L, &ctx);
    plm_draws_set_weighted(D, 1);
    for (i = 0; i < E->n; i++) m = fmax(m, E->p[i].logw);
    for (i = 0; i < E->n; i++) lse += exp(E->p[i].logw - m);
    lse = m + log(lse);
    lua_newtable(L);
    res = lua_gettop(L);
    plm_l_pushdraws(L, D);
    lua_setfield(L, res, "_draws");
    rec = plm_l_newrecorder(L, D);
    lua_createtable(L, E->n, 0);   /* values */
    lua_createtable(L, E->n, 0);   /* log weights */
    lua_createtable(L, E->n, 0);   /* scores */
    for (i = 0; i < E->n; i++) {
        plm_l_record(L, rec, E->p[i].ex.tr, 0, E->p[i].logw);
        lua_rawgeti(L, E->vals, i + 1);
        lua_rawseti(L, -4, i + 1);
        lua_pushnumber(L, E->p[i].logw - lse);
        lua_rawseti(L, -3, i + 1);
        lua_pushnumber(L, E->p[i].logw);
        lua_rawseti(L, -2, i + 1);
        lua_rawgeti(L, E->handles, i + 1);
        ((plm_l_handle *)lua_touserdata(L, -1))->ex = NULL;
        lua_pop(L, 1);
    }
    if (with_scores)
        lua_setfield(L, res, "scores");
    else
        lua_pop(L, 1);
    lua_setfield(L, res, "log_weights");
    lua_pushinteger(L, E->n);
    lua_setfield(L, -2, "n");
    lua_setfield(L, res, "values");
    lua_pop(L, 1);   /* recorder */
    lua_pushinteger(L, E->n);
    lua_setfield(L, res, "particles");
    if (E->root) plm_unroot(E->root);
    E->root = 0;
    return res;
}

/* The stack of plume.smc(model, args, opts) / plume.beam(...) rearranged for the engines: fn, opts, nargs,
** args... The engines are the Lua functions themselves (no Lua wrapper), so that errors they raise blame the
** caller's line. */
static void arrange_call(lua_State *L, const char *fn)
{
    lua_Integer n, k;
    lua_settop(L, 3);
    if (lua_isfunction(L, 1))
        lua_pushvalue(L, 1);
    else if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "plume.model") == 0) {
        lua_pop(L, 1);
        lua_getfield(L, 1, "fn");
    } else
        luaL_error(L, "%s: expected a plume.model (got %s)", fn, luaL_typename(L, 1));
    if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
        luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
        luaL_error(L, "%s: args must be a list of the model's arguments (got %s)", fn, luaL_typename(L, 2));
    lua_pushvalue(L, 3);
    n = 0;
    if (lua_istable(L, 2)) {
        if (lua_getfield(L, 2, "n") == LUA_TNUMBER) n = lua_tointeger(L, -1);
        else n = (lua_Integer)lua_rawlen(L, 2);
        lua_pop(L, 1);
    }
    if (n < 0 || n > 200) luaL_error(L, "%s: args has %d entries (at most 200)", fn, (int)n);
    lua_pushinteger(L, n);
    luaL_checkstack(L, (int)n + 8, fn);
    for (k = 1; k <= n; k++) lua_rawgeti(L, 2, k);
    lua_rotate(L, 1, -3);
    lua_settop(L, 3 + (int)n);
}

/* The result table on top becomes a posterior object (plume._posterior, from the plume table upvalue). */
static int to_posterior(lua_State *L)
{
    lua_getfield(L, lua_upvalueindex(1), "_posterior");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    return 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The progress line of a particle engine (a program's number of steps is not known in advance, so there is no
** total and no ETA): steps done, particles alive, ESS and the rate, at most five times a second. */
static void smc_progress(plm_l_progress *pr, const char *what, long step, int alive, int n, double ess)
{
    double t;
    if (!pr->on) return;
    t = now();
    if (t - pr->last < 0.2) return;
    pr->last = t;
    fprintf(stderr, "\rplume: %s  step %ld  alive %d/%d  ESS %.0f  %.1f steps/s  %.1fs   ", what, step, alive, n, ess,
            (double)step / fmax(t - pr->start, 1e-9), t - pr->start);
    fflush(stderr);
}

/* Every particle dead: say at which step, and why when rejections killed them. */
static void all_dead(engine *E, long step)
{
    if (E->reject[0])
        luaL_error(E->L, "%s: every particle has weight -inf after step %d (%d rejected; the last: %s)", E->who, (int)step,
                   (int)E->rejected, E->reject);
    luaL_error(E->L, "%s: every particle has weight -inf after step %d", E->who, (int)step);
}

/* plume.smc(model, args, opts) */
static int l_smc(lua_State *L)
{
    smc_opts o;
    engine E;
    plm_rng sr;
    plm_l_progress pr;
    plm_ctx ctx;
    double logz = 0, lse;
    int opts, nargs, i, *par;
    double *lw, *w, *logw;
    size_t *cnt, *anc;
    long step = 0, resamples = 0;
    int ess_hist;
    arrange_call(L, "plume.smc");
    nargs = (int)lua_tointeger(L, 3);
    opts = lua_istable(L, 2) ? 2 : 0;
    smc_options(L, opts, &o);
    memset(&E, 0, sizeof E);
    plm_ctx_clear(&ctx);
    E.L = L;
    E.args = 4;
    E.nargs = nargs;
    E.seed = o.seed;
    E.next_stream = 1;
    E.who = "plume.smc";
    E.fn = 1;
    plm_rng_init(&sr, o.seed, 0);
    lua_newtable(L); E.cos = lua_gettop(L);
    lua_newtable(L); E.handles = lua_gettop(L);
    lua_newtable(L); E.vals = lua_gettop(L);
    lua_newtable(L); E.reqs = lua_gettop(L);
    lua_newtable(L); E.objs = lua_gettop(L);
    lua_newtable(L); E.adopt = lua_gettop(L);
    lua_newtable(L); ess_hist = lua_gettop(L);
    grow(&E, o.N * (o.steer ? o.K : 1));
    for (i = 0; i < o.N; i++) {
        spawn(&E, i, NULL, 0, 0, 0);
        E.n = i + 1;
    }
    plm_l_progress_start(&pr, !o.quiet);
    plm_interrupt_clear();
    while (!all_finished(&E)) {
        double ess;
        int m, alive = 0;
        plm_l_check_interrupt(L, "plume.smc");
        if (++step > o.max_steps) luaL_error(L, "plume.smc: more than %d steps (raise max_steps?)", (int)o.max_steps);
        if (o.steer) {
            /* K - 1 extra copies of every unfinished particle, each carrying 1/K of its weight */
            int n0 = E.n, k;
            grow(&E, n0 * o.K);
            for (i = 0; i < n0; i++) {
                if (E.p[i].state == P_DONE || E.p[i].state == P_DEAD) continue;
                E.p[i].logw -= log((double)o.K);
                lua_rawgeti(L, E.objs, i + 1);
                for (k = 1; k < o.K; k++) {
                    spawn(&E, E.n, E.p[i].ex.tr, E.p[i].ex.checkpoints, E.p[i].logw, lua_gettop(L));
                    E.n++;
                }
                lua_pop(L, 1);
            }
        }
        for (i = 0; i < E.n; i++)
            if (E.p[i].state == P_CHECK) E.p[i].state = P_RUN;
        advance(&E);
        plm_l_check_interrupt(L, "plume.smc");
        /* the weights as plain arrays for runtime/resample */
        logw = plm_l_scratch(L, (size_t)E.n * sizeof *logw);
        w = plm_l_scratch(L, (size_t)E.n * sizeof *w);
        for (i = 0; i < E.n; i++) logw[i] = E.p[i].logw, alive += E.p[i].logw > -INFINITY;
        lse = plm_resample_normalise(logw, (size_t)E.n, w);
        if (lse == -INFINITY) all_dead(&E, step);
        ess = plm_resample_ess(logw, (size_t)E.n);
        lua_pushnumber(L, ess);
        lua_rawseti(L, ess_hist, step);
        smc_progress(&pr, o.steer ? "smc-steer" : "smc", step, alive, E.n, ess);
        par = plm_l_scratch(L, (size_t)(E.n > o.N ? E.n : o.N) * sizeof *par);
        lw = plm_l_scratch(L, (size_t)(E.n > o.N ? E.n : o.N) * sizeof *lw);
        cnt = plm_l_scratch(L, (size_t)E.n * sizeof *cnt);
        anc = plm_l_scratch(L, (size_t)(E.n > o.N ? E.n : o.N) * sizeof *anc);
        if (o.steer) {
            size_t mm;
            if (plm_resample_fc(&ctx, w, (size_t)E.n, (size_t)o.N, &sr, anc, lw, &mm)) plm_l_fail(L, &ctx);
            m = (int)mm;
            for (i = 0; i < m; i++) par[i] = (int)anc[i], lw[i] = log(lw[i]) + lse;
            rebuild(&E, par, lw, m, NULL);
            resamples++;
        } else if (ess < o.ess_threshold * E.n && !all_finished(&E)) {
            double *scratch = lw;   /* SSP's fractional parts; lw is set after */
            logz += lse - log((double)E.n);
            if (plm_resample_counts(&ctx, o.scheme, w, (size_t)E.n, (size_t)o.N, &sr, cnt, scratch)) plm_l_fail(L, &ctx);
            plm_resample_ancestors(cnt, (size_t)E.n, anc);
            for (i = 0; i < o.N; i++) par[i] = (int)anc[i], lw[i] = 0;
            rebuild(&E, par, lw, o.N, NULL);
            resamples++;
        }
        lua_pop(L, 6);
    }
    plm_l_progress_end(&pr);
    ess_of(E.p, E.n, &lse);
    if (lse == -INFINITY) all_dead(&E, step);
    if (o.steer)
        logz = lse - log((double)o.N);   /* steer never resets weights: the evidence is their mean at the end */
    else
        logz += lse - log((double)E.n);
    if (!isfinite(logz)) luaL_error(L, "plume.smc: the log evidence is %g after step %d", logz, (int)step);
    /* results */
    {
        int res = push_population(&E, 0);
        lua_pushnumber(L, logz);
        lua_setfield(L, res, "logz");
        lua_pushnumber(L, ess_of(E.p, E.n, &lse));
        lua_setfield(L, res, "ess");
        lua_pushvalue(L, ess_hist);
        lua_setfield(L, res, "ess_history");
        lua_pushinteger(L, resamples);
        lua_setfield(L, res, "resamples");
        lua_pushinteger(L, E.rejected);
        lua_setfield(L, res, "rejected");
        lua_pushinteger(L, step);
        lua_setfield(L, res, "steps");
        lua_pushstring(L, o.steer ? "smc-steer" : "smc");
        lua_setfield(L, res, "method");
        lua_pushstring(L, o.steer ? "fearnhead-clifford" : plm_resample_scheme_name(o.scheme));
        lua_setfield(L, res, "resample");
        lua_pushinteger(L, (lua_Integer)o.seed);
        lua_setfield(L, res, "seed");
        lua_settop(L, res);
        return to_posterior(L);
    }
}

/* ---- beam search ---- */

typedef struct cand {
    int parent;
    int done;
    double score, value;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;   /* best first */
    if (x->parent != y->parent) return x->parent - y->parent;        /* then a fixed order: reproducible */
    return (x->value > y->value) - (x->value < y->value);
}

/* The B most probable values of a finite discrete distribution (C representation), with their log masses. */
static int top_values(const plm_dist *d, int B, double *val, double *lp)
{
    int n = 0, K = d->kind == PLM_DIST_BERNOULLI ? 2 : d->K, v, j;
    for (v = 0; v < K; v++) {
        double x = v, l = plm_dist_logpdf(d, &x);
        if (l == -INFINITY) continue;
        if (n < B)
            j = n++;
        else if (l > lp[B - 1])
            j = B - 1;
        else
            continue;
        for (; j > 0 && lp[j - 1] < l; j--) {   /* insertion keeps the list sorted, most probable first */
            val[j] = val[j - 1];
            lp[j] = lp[j - 1];
        }
        val[j] = x;
        lp[j] = l;
    }
    return n;
}

/* plume.beam(model, args, opts): beam search over the finite discrete choices of a program */
static int l_beam(lua_State *L)
{
    const char *fn = "plume.beam";
    engine E;
    int K, B, nargs, opts, i, j;
    long step = 0, max_steps;
    arrange_call(L, fn);
    nargs = (int)lua_tointeger(L, 3);
    opts = lua_istable(L, 2) ? 2 : 0;
    {
        static const char *const names[] = {"beams", "branch", "seed", "max_steps", "quiet", "threads", NULL};
        plm_l_checkopts(L, opts, fn, names);
    }
    refuse_threads(L, opts, fn);
    K = (int)plm_l_optint(L, opts, fn, "beams", 8);
    B = (int)plm_l_optint(L, opts, fn, "branch", K);
    max_steps = (long)plm_l_optint(L, opts, fn, "max_steps", 100000);
    if (K < 1 || K > 100000) luaL_error(L, "%s: option 'beams' must be in 1..100000 (got %d)", fn, K);
    if (B < 1 || B > 100000) luaL_error(L, "%s: option 'branch' must be in 1..100000 (got %d)", fn, B);
    memset(&E, 0, sizeof E);
    E.L = L;
    E.who = fn;
    E.fn = 1;
    E.args = 4;
    E.nargs = nargs;
    E.seed = plm_l_seed(L, opts, fn);
    E.next_stream = 1;
    lua_newtable(L); E.cos = lua_gettop(L);
    lua_newtable(L); E.handles = lua_gettop(L);
    lua_newtable(L); E.vals = lua_gettop(L);
    lua_newtable(L); E.reqs = lua_gettop(L);
    lua_newtable(L); E.objs = lua_gettop(L);
    lua_newtable(L); E.adopt = lua_gettop(L);
    grow(&E, K + 1);
    spawn(&E, 0, NULL, 0, 0, 0);
    E.p[0].ex.beam = 1;
    E.n = 1;
    for (;;) {
        cand *c;
        int nc = 0, keep;
        double *val = plm_l_scratch(L, (size_t)B * sizeof *val), *lp = plm_l_scratch(L, (size_t)B * sizeof *lp);
        if (++step > max_steps) luaL_error(L, "%s: more than %d steps (raise max_steps?)", fn, (int)max_steps);
        advance(&E);
        plm_l_check_interrupt(L, fn);
        c = plm_l_scratch(L, (size_t)E.n * (size_t)(B + 1) * sizeof *c);
        for (i = 0; i < E.n; i++) {
            particle *p = &E.p[i];
            double sc = plm_trace_score(p->ex.tr);
            if (p->state == P_DONE && sc > -INFINITY) {
                c[nc].parent = i, c[nc].done = 1, c[nc].score = sc, c[nc].value = 0;
                nc++;
            } else if (p->state == P_BRANCH && sc > -INFINITY) {
                plm_dist *d;
                int m;
                lua_rawgeti(L, E.reqs, i + 1);
                lua_rawgeti(L, -1, 1);
                d = plm_l_checkdist(L, -1, fn, "choice");
                lua_pop(L, 2);
                m = top_values(d, B, val, lp);
                for (j = 0; j < m; j++) {
                    c[nc].parent = i, c[nc].done = 0, c[nc].score = sc + lp[j], c[nc].value = val[j];
                    nc++;
                }
            }
        }
        if (nc == 0) luaL_error(L, "%s: every hypothesis has log probability -inf", fn);
        qsort(c, (size_t)nc, sizeof *c, cmp_cand);
        keep = nc < K ? nc : K;
        {
            /* all kept hypotheses finished: done (they are sorted best first) */
            int unfinished = 0;
            for (j = 0; j < keep; j++) unfinished += !c[j].done;
            if (!unfinished) {
                int *par = plm_l_scratch(L, (size_t)keep * sizeof *par);
                double *lw = plm_l_scratch(L, (size_t)keep * sizeof *lw);
                for (j = 0; j < keep; j++) par[j] = c[j].parent, lw[j] = c[j].score;
                rebuild(&E, par, lw, keep, NULL);
                lua_pop(L, 5);
                break;
            }
        }
        /* the new population: the first candidate of a parent keeps its coroutine (resumed with the value),
        ** the others are copies that replay the parent's sites up to the branch and take their value there */
        {
            int *par = plm_l_scratch(L, (size_t)keep * sizeof *par);
            double *lw = plm_l_scratch(L, (size_t)keep * sizeof *lw);
            branch *br = plm_l_scratch(L, (size_t)keep * sizeof *br);
            for (j = 0; j < keep; j++) {
                par[j] = c[j].parent;
                lw[j] = c[j].score;
                br[j].done = c[j].done;
                br[j].value = c[j].value;
            }
            rebuild(&E, par, lw, keep, br);
            lua_pop(L, 3);
        }
        lua_pop(L, 3);   /* val, lp, c */
    }
    /* results: hypotheses best first, scored by their log joint (log prior of the choices + log likelihood) */
    {
        int res = push_population(&E, 1);
        lua_pushinteger(L, step);
        lua_setfield(L, res, "steps");
        lua_pushstring(L, "beam");
        lua_setfield(L, res, "method");
        lua_settop(L, res);
        return to_posterior(L);
    }
}

/* plume._request(fn, req): inside plume.smc, yield the request to the scheduler (served in a batch);
** elsewhere call fn({req})[1] directly. */
static int l_request(lua_State *L)
{
    int active;
    luaL_checkany(L, 1);
    luaL_checkany(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, SMC_FLAG);
    active = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (active && lua_isyieldable(L)) {
        lua_pushlightuserdata(L, (void *)&request_tag);
        lua_insert(L, 1);
        lua_settop(L, 3);
        return lua_yield(L, 3);
    }
    lua_settop(L, 2);
    lua_createtable(L, 1, 0);
    lua_insert(L, 2);
    lua_rawseti(L, 2, 1);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1)) return luaL_error(L, "plume._request: the handler returned %s, not a table of results", luaL_typename(L, -1));
    lua_rawgeti(L, -1, 1);
    return 1;
}

/* plume._smc_register(obj) -> obj: inside plume.smc, remember obj as state of the running particle (see
** fork_objects); elsewhere a no-op. */
static int l_smc_register(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    if (lua_getfield(L, LUA_REGISTRYINDEX, "plume.smc.objs") == LUA_TTABLE) {
        lua_pushvalue(L, 1);
        lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    }
    lua_settop(L, 1);
    return 1;
}

/* plume._smc_adopt() -> the next snapshot the running particle's replay should adopt, or nil. */
static int l_smc_adopt(lua_State *L)
{
    lua_Integer n, k;
    lua_settop(L, 0);
    if (lua_getfield(L, LUA_REGISTRYINDEX, "plume.smc.adopt") != LUA_TTABLE) return 0;
    n = luaL_len(L, 1);
    if (n == 0) return 0;
    lua_rawgeti(L, 1, 1);
    for (k = 1; k < n; k++) {   /* shift the rest down: lists are short (one entry per context) */
        lua_rawgeti(L, 1, k + 1);
        lua_rawseti(L, 1, k);
    }
    lua_pushnil(L);
    lua_rawseti(L, 1, n);
    return 1;
}

/* plume._dist_hook(d, fn): fn(value) is called whenever m:sample draws or replays a value from d. */
static int l_dist_hook(lua_State *L)
{
    plm_l_checkdist(L, 1, "plume._dist_hook", "dist");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_setiuservalue(L, 1, 1);
    lua_settop(L, 1);
    return 1;
}

void plm_l_open_smc(lua_State *L)
{
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_smc, 1);
    lua_setfield(L, -2, "smc");
    lua_pushcfunction(L, l_request);
    lua_setfield(L, -2, "_request");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_beam, 1);
    lua_setfield(L, -2, "beam");
    lua_pushcfunction(L, l_dist_hook);
    lua_setfield(L, -2, "_dist_hook");
    lua_pushcfunction(L, l_smc_register);
    lua_setfield(L, -2, "_smc_register");
    lua_pushcfunction(L, l_smc_adopt);
    lua_setfield(L, -2, "_smc_adopt");
}
