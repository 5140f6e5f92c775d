/* l_particles.c -- the particle population shared by plume.smc and plume.beam: each particle runs the
** program as a Lua coroutine; the population advances every particle to its next checkpoint, serves the
** requests they yield in batches, and is rebuilt from chosen parents (the first copy of a parent keeps its
** coroutine, the others replay it). Also plume._request, _smc_register, _smc_adopt and _dist_hook.
**
** A running coroutine cannot be copied, so a resampled particle that needs a second copy gets a new coroutine
** that re-runs the program silently up to its parent's checkpoint, reusing the parent's choices in order
** (requests on the way are served again; LM backends answer them from their prefix cache). A copy rebuilt from a
** record -- its parent was on another MPI rank, l_smc.c -- replays strictly: every choice is rescored and the
** replay checked against the record, so a program that cannot be replayed stops with an error. */
#include "lparticles.h"
#include "ldist.h"
#include "comm.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char request_tag = 'R';   /* its address marks a yield that carries a request */

/* the address of a beam branch yield (its value is irrelevant) */
const char plm_l_branch_tag = 'B';

/* Two log densities that must agree, up to rounding in the last places (the same binary computes both). */
static int same_logp(double a, double b)
{
    return a == b || fabs(a - b) <= 1e-9 * (1 + fabs(a));
}

/* The same for sums of n terms computed on another rank: an LM backend's logits depend in their last digits on
** the make-up of the batch they were decoded in (llama.cpp's kernels are not batch-invariant), so a prefix
** decoded again on the receiving rank scores about 1e-5 nats a token away from the sender's. Allow 1e-3 nats a
** term: a replay that went another way (another choice's density, a changed value) differs by far more. */
static int same_sum(double a, double b, size_t n)
{
    return same_logp(a, b) || fabs(a - b) <= 1e-3 * (double)n;
}

/* A particle rebuilt from a record (it moved between ranks) replays strictly: each choice must be in the record
** under the same address, and is rescored under the distribution the replay meets -- a density that differs from
** the recorded one means the program did not retrace its steps (it read state outside its arguments and choices,
** or the record was altered), and continuing would silently change the particle, so it is an error. */
static int strict_sample(lua_State *L, particle *p, const char *addr, const plm_dist *d, double *x, double *lp)
{
    const plm_site *s = plm_trace_find(p->rec->tr, addr);
    if (!s || s->kind != PLM_SITE_LATENT || s->dim != d->dim)
        return luaL_error(L, "plume.smc: particle %d, replayed from its record on rank %d, made the choice '%s', which its "
                             "record %s: a particle moves between ranks by replaying its choices, which needs a program "
                             "whose choices depend only on its arguments and earlier choices (no side effects)",
                          (int)p->rec->gidx + 1, plm_comm_rank(), addr, !s ? "lacks" : "holds with another kind or size");
    memcpy(x, s->value, (size_t)d->dim * sizeof *x);
    *lp = plm_dist_logpdf(d, x);
    if (!isnan(s->logp) && !same_logp(*lp, s->logp)) {   /* serialised records carry no densities (NaN) */
        char a[32], b[32];   /* lua_pushfstring has no %.17g */
        snprintf(a, sizeof a, "%.17g", *lp);
        snprintf(b, sizeof b, "%.17g", s->logp);
        return luaL_error(L, "plume.smc: particle %d, replayed from its record on rank %d, rescored the choice '%s' = %s to "
                             "log density %s where its record says %s: the replay diverged (a program with side "
                             "effects, or an altered record)", (int)p->rec->gidx + 1, plm_comm_rank(), addr,
                          plm_l_value_str(L, d, x, d->dim), a, b);
    }
    return PLM_L_CHOSEN;
}

/* The replay of a record is over (it reached the record's last checkpoint, or the end): the trace it rebuilt
** must hold the record's choices in the same order with the same values, and the same log prior and log
** likelihood. Then the particle goes on as any other. */
static void strict_verify(lua_State *L, particle *p)
{
    const pop_rec *r = p->rec;
    const plm_trace *tr = p->ex.tr;
    size_t i, k = 0;
    int who = (int)r->gidx + 1, rank = plm_comm_rank();
    for (i = 0; i < tr->n; i++) {
        const plm_site *s = &tr->sites[i], *o;
        if (s->kind == PLM_SITE_OBSERVED) continue;
        if (k >= r->tr->n)
            luaL_error(L, "plume.smc: particle %d, replayed from its record on rank %d, made more choices than its record "
                          "('%s' is new): the replay diverged", who, rank, s->addr);
        o = &r->tr->sites[k++];
        if (strcmp(o->addr, s->addr) != 0 || o->dim != s->dim ||
            memcmp(o->value, s->value, (size_t)s->dim * sizeof *s->value) != 0)
            luaL_error(L, "plume.smc: particle %d, replayed from its record on rank %d, has '%s' where its record has '%s' "
                          "(or another value): the replay diverged", who, rank, s->addr, o->addr);
    }
    if (k != r->tr->n || (!r->done && p->ex.checkpoints != r->checkpoints))
        luaL_error(L, "plume.smc: particle %d, replayed from its record on rank %d, stopped after %d of its %d choices "
                      "(checkpoint %d of %d): the replay diverged", who, rank, (int)k, (int)r->tr->n, p->ex.checkpoints,
                   r->checkpoints);
    if (!same_sum(tr->logprior, r->logprior, k) || !same_sum(tr->loglik, r->loglik, (size_t)p->ex.checkpoints + 1)) {
        char msg[160];
        snprintf(msg, sizeof msg, "log prior %.17g and log likelihood %.17g where its record says %.17g and %.17g",
                 tr->logprior, tr->loglik, r->logprior, r->loglik);
        luaL_error(L, "plume.smc: particle %d, replayed from its record on rank %d, scores %s: the replay diverged", who,
                   rank, msg);
    }
    p->rec = NULL;
    p->keeps_done = 0;
}

/* A resampled copy re-running its parent's history makes the same choices in the same order: take the
** parent's site at the same position (by address if the order differs), sharing its value rather than copying
** it, and its log density rather than evaluating it again (a copy with a record replays strictly, above). */
static int smc_sample(lua_State *L, plm_l_exec *ex, const char *addr, const plm_dist *d, double *x, double *lp)
{
    if (ex->checkpoints < ex->replay_until && ((particle *)ex)->rec)   /* ex is the first member of its particle */
        return strict_sample(L, (particle *)ex, addr, d, x, lp);
    if (ex->checkpoints < ex->replay_until) {
        const plm_site *s = ex->tr->n < ex->old->n && strcmp(ex->old->sites[ex->tr->n].addr, addr) == 0
                                ? &ex->old->sites[ex->tr->n] : plm_trace_find(ex->old, addr);
        if (s && s->kind == PLM_SITE_LATENT && s->dim == d->dim && s->logp > -INFINITY) {
            if (plm_trace_add_shared(&ex->ctx, ex->tr, s)) luaL_error(L, "m:sample: %s", plm_ctx_errmsg(&ex->ctx));
            return plm_l_hand_over(L, ex, d, s->value);
        }
    }
    if (ex->pin) {
        /* conditional SMC: the reference particle takes the pinned path's value wherever it has one */
        const plm_site *s = plm_trace_find(ex->pin, addr);
        if (s && s->kind == PLM_SITE_LATENT && s->dim == d->dim) {
            memcpy(x, s->value, (size_t)d->dim * sizeof *x);
            *lp = plm_dist_logpdf(d, x);
            if (*lp == -INFINITY)
                return luaL_error(L, "plume.smc: the pinned value of '%s' has probability 0 under its proposal", addr);
            return PLM_L_CHOSEN;
        }
    }
    plm_l_sample_fresh(L, ex, addr, d, x, lp);
    return PLM_L_CHOSEN;
}

/* Every observe and factor is a checkpoint: the particle hands control back to the scheduler with the weight
** it gathered (unless it is silently replaying its parent's history). */
static int smc_checkpoint(lua_State *L, plm_l_exec *ex, double logw)
{
    if (ex->checkpoints < ex->replay_until) {
        ex->checkpoints++;
        /* a record's replay ends at the checkpoint where its particle stood */
        if (ex->checkpoints == ex->replay_until && ((particle *)ex)->rec) strict_verify(L, (particle *)ex);
        return 0;
    }
    ex->checkpoints++;
    ex->step_logw += logw;
    {
        lua_KFunction k = ex->yield_k;   /* inside m:sample (a twisted token): m:sample returns its value after */
        ex->yield_k = NULL;
        return lua_yieldk(L, 0, 0, k);
    }
}

const plm_l_hooks plm_l_smc_hooks = {"smc", smc_sample, smc_checkpoint, NULL};

particle *plm_l_pop_grow(engine *E, int need)
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
void plm_l_pop_spawn(engine *E, int i, const plm_trace *parent, int replay, double logw, int parent_objs)
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
    p->ex.hooks = &plm_l_smc_hooks;
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
    if (E->twist) lua_pushvalue(L, E->twist);
    else lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.smc.twist");
    plm_l_run_enter(L);
    st = lua_resume(co, L, p->narg, &nres);
    plm_l_run_leave(L);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.smc.objs");
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.smc.adopt");
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.smc.twist");
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
        if (p->rec) strict_verify(L, p);   /* a finished particle's record replays to the end */
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
void plm_l_pop_advance(engine *E)
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

double plm_l_pop_ess(const particle *p, int n, double *lse)
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

/* Slot j of the new population takes over particle q of the old one: its state, coroutine, handle, value, objects
** and adopted contexts (old5: the stack indices of the old population's tables of these, in that order), with log
** weight lw. */
static void take_over(lua_State *L, engine *E, int j, particle *old, int q, const int old5[5], double lw)
{
    particle *p = &E->p[j];
    *p = old[q];
    p->ex.rng = &p->rng;
    p->rng.gsl.state = p->rng.s;
    lua_rawgeti(L, old5[0], q + 1);
    lua_rawseti(L, E->cos, j + 1);
    lua_rawgeti(L, old5[1], q + 1);
    ((plm_l_handle *)lua_touserdata(L, -1))->ex = &p->ex;
    lua_rawseti(L, E->handles, j + 1);
    lua_rawgeti(L, old5[2], q + 1);
    lua_rawseti(L, E->vals, j + 1);
    lua_rawgeti(L, old5[3], q + 1);
    lua_rawseti(L, E->objs, j + 1);
    lua_rawgeti(L, old5[4], q + 1);
    lua_rawseti(L, E->adopt, j + 1);
    p->logw = lw;
    if (p->state == P_CHECK) p->state = P_RUN;
}

/* The end of a rebuild: the new population's five tables (on top of the stack, under `used`) move into the old
** tables' slots old5 (as take_over), the stack drops them and `used`, and pending branch requests, which belonged
** to the old indices, are dropped. */
static void settle(lua_State *L, engine *E, const int old5[5])
{
    lua_copy(L, E->cos, old5[0]);
    lua_copy(L, E->handles, old5[1]);
    lua_copy(L, E->vals, old5[2]);
    lua_copy(L, E->objs, old5[3]);
    lua_copy(L, E->adopt, old5[4]);
    lua_pop(L, 6);   /* five tables and `used` */
    E->cos = old5[0], E->handles = old5[1], E->vals = old5[2], E->objs = old5[3], E->adopt = old5[4];
    lua_newtable(L);
    lua_replace(L, E->reqs);
}

void plm_l_pop_rebuild(engine *E, const int *par, const double *lw, int m, const branch *br)
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
        plm_l_pop_grow(E, m);
        for (j = 0; j < m; j++) {
            int q = par[j];
            particle *p = &E->p[j];
            if (!used[q]) {
                used[q] = 1;
                take_over(L, E, j, old, q, (const int[5]){cos, handles, vals, objs, adopt}, lw[j]);
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
                plm_l_pop_spawn(E, j, old[q].ex.tr, 0, lw[j], lua_gettop(L));
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
                p->ex.hooks = &plm_l_beam_hooks;
                p->ex.replay_sites = old[q].ex.tr->n;
                p->ex.target = a;
                p->ex.target_val = v;
            } else {
                int done = old[q].state == P_DONE;
                lua_rawgeti(L, objs, q + 1);
                /* a copy of a finished particle replays every choice (also those after its last checkpoint,
                ** such as the token that ended it), so it ends as the same path */
                plm_l_pop_spawn(E, j, old[q].ex.tr, done ? INT_MAX : old[q].ex.checkpoints, lw[j], lua_gettop(L));
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
        settle(L, E, (const int[5]){cos, handles, vals, objs, adopt});
        plm_unroot(r);
    }
}

/* The population rebuilt slot by slot from src (see pop_src): kept local parents move with their coroutines,
** the other slots are new coroutines replaying a local parent (forking its objects; strictly when src gives a
** snapshot of its choices as rec) or a record from another rank (strictly). Local parents that no slot keeps
** release their objects and disarm their handles. */
void plm_l_pop_rebuild_src(engine *E, const pop_src *src, const double *lw, int m)
{
    lua_State *L = E->L;
    int old_n = E->n, j, q;
    unsigned char *used;   /* per old particle: 1 a slot replays it, 2 a slot keeps it */
    particle *old;
    int cos, handles, vals, objs, adopt;
    long r;
    old = plm_gc_alloc((size_t)(old_n ? old_n : 1) * sizeof *old);
    if (!old) luaL_error(L, "plume.smc: out of memory");
    if (old_n) memcpy(old, E->p, (size_t)old_n * sizeof *old);
    r = plm_root(old);
    used = plm_l_scratch(L, (size_t)old_n + 1);
    memset(used, 0, (size_t)old_n + 1);
    for (j = 0; j < m; j++)
        if (src[j].parent >= 0) used[src[j].parent] |= src[j].keep ? 2 : 1;
    for (q = 0; q < old_n; q++)
        if (!used[q]) close_objects(L, E->objs, q);
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
    plm_l_pop_grow(E, m);
    for (j = 0; j < m; j++) {
        const pop_src *s = &src[j];
        particle *p = &E->p[j];
        q = s->parent;
        if (q >= 0 && s->keep) {
            take_over(L, E, j, old, q, (const int[5]){cos, handles, vals, objs, adopt}, lw[j]);
        } else if (q >= 0) {
            E->next_stream = s->stream;
            lua_rawgeti(L, objs, q + 1);
            plm_l_pop_spawn(E, j, old[q].ex.tr, old[q].state == P_DONE ? INT_MAX : old[q].ex.checkpoints, lw[j],
                            lua_gettop(L));
            lua_pop(L, 1);
            E->p[j].rec = s->rec;   /* a snapshot of the parent's choices: the replay is checked against it */
        } else {
            const pop_rec *rc = s->rec;
            E->next_stream = s->stream;
            plm_l_pop_spawn(E, j, rc->tr, rc->done ? INT_MAX : rc->checkpoints, lw[j], 0);
            p = &E->p[j];
            p->rec = rc;
            if (s->keep) {   /* it continues its parent: after the replay it draws what the parent would have */
                memcpy(p->rng.s, rc->rng, sizeof p->rng.s);
                p->keeps_done = rc->done;
            }
        }
        E->n = j + 1;
    }
    for (q = 0; q < old_n; q++) {
        if (used[q] == 1) close_objects(L, objs, q);   /* replayed elsewhere; its copies forked what they need */
        if (!(used[q] & 2)) {
            lua_rawgeti(L, handles, q + 1);
            ((plm_l_handle *)lua_touserdata(L, -1))->ex = NULL;
            lua_pop(L, 1);
        }
    }
    settle(L, E, (const int[5]){cos, handles, vals, objs, adopt});
    plm_unroot(r);
}

int plm_l_pop_finished(const engine *E)
{
    for (int i = 0; i < E->n; i++)
        if (E->p[i].state != P_DONE && E->p[i].state != P_DEAD) return 0;
    return 1;
}

/* The population as a result table (left on the stack, its index returned): draws of every particle's choices
** weighted by its log weight (recorded into R, with the engine's series and scalars), values (program return
** values; values.n slots, since dead particles leave holes), log_weights normalised to sum to one in exp,
** and, with scores, the raw log weights. Handles are disarmed: the programs are over. */
int plm_l_pop_results(engine *E, plm_results *R, int with_scores)
{
    lua_State *L = E->L;
    int res, i;
    plm_trace **tr = plm_l_scratch(L, (size_t)(E->n ? E->n : 1) * sizeof *tr);
    double *logw = plm_l_scratch(L, (size_t)(E->n ? E->n : 1) * sizeof *logw);
    for (i = 0; i < E->n; i++) tr[i] = E->p[i].ex.tr, logw[i] = E->p[i].logw;
    for (i = 0; i < E->n; i++) {
        lua_rawgeti(L, E->handles, i + 1);
        ((plm_l_handle *)lua_touserdata(L, -1))->ex = NULL;
        lua_pop(L, 1);
    }
    res = plm_l_pop_results_of(L, R, tr, logw, E->n, E->vals, with_scores, E->who);
    lua_replace(L, -3);
    lua_pop(L, 1);
    if (E->root) plm_unroot(E->root);
    E->root = 0;
    return res - 2;
}

int plm_l_pop_results_of(lua_State *L, plm_results *R, plm_trace *const *tr, const double *logw, int n, int vals,
                         int with_scores, const char *who)
{
    int res, i;
    double m = -INFINITY, lse = 0;
    for (i = 0; i < n; i++) m = fmax(m, logw[i]);
    for (i = 0; i < n; i++) lse += exp(logw[i] - m);
    lse = m + log(lse);
    for (i = 0; i < n; i++) plm_l_record(L, R, tr[i], 0, logw[i], who);
    res = plm_l_push_results(L, R);
    lua_createtable(L, n, 0);   /* values */
    lua_createtable(L, n, 0);   /* log weights */
    lua_createtable(L, n, 0);   /* scores */
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, vals, i + 1);
        lua_rawseti(L, -4, i + 1);
        lua_pushnumber(L, logw[i] - lse);
        lua_rawseti(L, -3, i + 1);
        lua_pushnumber(L, logw[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (with_scores)
        lua_setfield(L, res, "scores");
    else
        lua_pop(L, 1);
    lua_setfield(L, res, "log_weights");
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    lua_setfield(L, res, "values");
    lua_pushinteger(L, n);
    lua_setfield(L, res, "particles");
    return res;
}

/* The stack of plume.smc(model, args, opts) / plume.beam(...) rearranged for the engines: fn, opts, nargs,
** args... The engines are the Lua functions themselves (no Lua wrapper), so that errors they raise blame the
** caller's line. */
void plm_l_pop_arrange(lua_State *L, const char *fn)
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
int plm_l_pop_posterior(lua_State *L)
{
    lua_getfield(L, lua_upvalueindex(1), "_posterior");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    return 1;
}

/* Every particle dead: say at which step, and why when rejections killed them. */
void plm_l_pop_all_dead(engine *E, long step)
{
    if (E->reject[0])
        luaL_error(E->L, "%s: every particle has weight -inf after step %d (%d rejected; the last: %s)", E->who, (int)step,
                   (int)E->rejected, E->reject);
    luaL_error(E->L, "%s: every particle has weight -inf after step %d", E->who, (int)step);
}

/* Particles are coroutines of one Lua state: they cannot run on several threads. Refuse threads > 1 rather
** than accept and ignore it. */
void plm_l_pop_refuse_threads(lua_State *L, int opts, const char *fn)
{
    lua_Integer th = plm_l_optint(L, opts, fn, "threads", 1);
    if (th != 1)
        luaL_error(L, "%s: option 'threads' must be 1 (got %d): the particles are coroutines of one Lua state and run "
                      "on one thread", fn, (int)th);
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

void plm_l_open_particles(lua_State *L)
{
    lua_pushcfunction(L, l_request);
    lua_setfield(L, -2, "_request");
    lua_pushcfunction(L, l_dist_hook);
    lua_setfield(L, -2, "_dist_hook");
    lua_pushcfunction(L, l_smc_register);
    lua_setfield(L, -2, "_smc_register");
    lua_pushcfunction(L, l_smc_adopt);
    lua_setfield(L, -2, "_smc_adopt");
}
