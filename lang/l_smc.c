/* l_smc.c -- sequential Monte Carlo over model programs: plume.smc(model, args, opts).
**
** Each particle runs the program as a Lua coroutine (see lparticles.h). Every m:observe and m:factor is a
** checkpoint: once every live particle has reached its next checkpoint (or finished) the driver resamples when
** the effective sample size is low, with the schemes of runtime/resample. "steer" (SMC steering, Lew et al.
** 2023) extends every particle K ways and keeps N of the N*K with the unbiased without-replacement resampling
** of Fearnhead and Clifford (2003). Under mpirun the standard method spreads its particles over the ranks, with
** results that do not depend on their number (see "a population spread over the ranks" below). */
#include "lparticles.h"
#include "comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct smc_opts {
    int N, K, steer, quiet;
    plm_resample_scheme scheme;
    double ess_threshold;
    long max_steps;
    unsigned long long seed;
    int twist;            /* stack slot of {twist =, proposal =} for the program's LM contexts, 0: none */
    plm_trace *pin;       /* conditional SMC: the reference path of particle 1, or NULL */
    int migrate;          /* 0: particles move between ranks only when they must; 1: "all"; 2: "perturb" */
} smc_opts;

static const char *const smc_option_names[] = {"particles", "ess_threshold", "seed", "method", "extensions",
                                                "max_steps", "quiet", "threads", "resample", "twist",
                                                "proposal", "pin", "migrate", NULL};

/* options.pin = {addr = value, ...}: the reference path of conditional SMC, as a trace of latent sites */
static plm_trace *pin_trace(lua_State *L, int opts)
{
    plm_ctx ctx;
    plm_trace *tr;
    plm_ctx_clear(&ctx);
    if (lua_getfield(L, opts, "pin") == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "plume.smc: option 'pin' must be a table {address = value} (got %s)", luaL_typename(L, -1));
    if (plm_trace_new(&ctx, &tr)) plm_l_fail(L, &ctx);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        double v;
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isnumber(L, -1))
            luaL_error(L, "plume.smc: option 'pin' must map addresses (strings) to numbers");
        v = lua_tonumber(L, -1);
        if (plm_trace_add(&ctx, tr, lua_tostring(L, -2), PLM_SITE_LATENT, NULL, &v, 1, 0, NULL)) plm_l_fail(L, &ctx);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return tr;
}

/* options.twist / options.proposal: a table {twist =, proposal =} pushed for the engine (lm contexts the program
** creates take it, see l_lmctx.c), its slot in o->twist; nothing when no twist is given. */
static void twist_option(lua_State *L, int opts, smc_opts *o)
{
    o->twist = 0;
    if (!opts) return;
    lua_getfield(L, opts, "proposal");
    if (lua_getfield(L, opts, "twist") == LUA_TNIL) {
        if (!lua_isnil(L, -2)) luaL_error(L, "plume.smc: option 'proposal' needs option 'twist' (with ctx:twist, give the proposal to ctx:twist)");
        lua_pop(L, 2);
        return;
    }
    lua_createtable(L, 0, 2);
    lua_insert(L, -2);
    lua_setfield(L, -2, "twist");
    lua_insert(L, -2);
    lua_setfield(L, -2, "proposal");
    o->twist = lua_gettop(L);
}

static void smc_options(lua_State *L, int opts, smc_opts *o)
{
    const char *fn = "plume.smc", *method, *scheme;
    int sc;
    o->steer = 0;
    o->migrate = 0;
    plm_l_checkopts(L, opts, fn, smc_option_names);
    o->N = (int)plm_l_optint(L, opts, fn, "particles", 100);
    o->ess_threshold = plm_l_optnum(L, opts, fn, "ess_threshold", 0.5);
    o->seed = plm_l_seed(L, opts, fn);
    method = plm_l_optstr(L, opts, fn, "method", "standard");
    o->K = (int)plm_l_optint(L, opts, fn, "extensions", 4);
    o->max_steps = (long)plm_l_optint(L, opts, fn, "max_steps", 100000);
    o->quiet = plm_l_optbool(L, opts, fn, "quiet", plm_l_quiet_default(L, lua_upvalueindex(1)));
    plm_l_pop_refuse_threads(L, opts, fn);
    scheme = plm_l_optstr(L, opts, fn, "resample", "systematic");
    if ((sc = plm_resample_scheme_by_name(scheme)) < 0)
        luaL_error(L, "%s: unknown resampling scheme '%s' (resample: %s)", fn, scheme, plm_resample_scheme_list);
    o->scheme = (plm_resample_scheme)sc;
    if (o->N < 1 || o->N > 10000000) luaL_error(L, "%s: option 'particles' must be in 1..1e7 (got %d)", fn, o->N);
    if (!(o->ess_threshold >= 0 && o->ess_threshold <= 1))
        luaL_error(L, "%s: option 'ess_threshold' must be in [0, 1] (got %f)", fn, o->ess_threshold);
    o->pin = pin_trace(L, opts);
    if (o->K < 1 || o->K > 1000) luaL_error(L, "%s: option 'extensions' must be in 1..1000 (got %d)", fn, o->K);
    {
        const char *mig = plm_l_optstr(L, opts, fn, "migrate", "needed");
        if (strcmp(mig, "needed") == 0) o->migrate = 0;
        else if (strcmp(mig, "all") == 0) o->migrate = 1;
        else if (strcmp(mig, "perturb") == 0) o->migrate = 2;
        else luaL_error(L, "%s: option 'migrate' must be \"needed\", \"all\" or \"perturb\" (got '%s')", fn, mig);
    }
    if (strcmp(method, "standard") == 0) o->steer = 0;
    else if (strcmp(method, "steer") == 0) o->steer = 1;
    else luaL_error(L, "%s: unknown method '%s' (methods: \"standard\", \"steer\")", fn, method);
}

/* The progress line of a particle engine (a program's number of steps is not known in advance, so there is no
** total and no ETA): steps done, particles alive, ESS and the rate, at most five times a second. */
static void smc_progress(plm_l_progress *pr, const char *what, long step, int alive, int n, double ess)
{
    double t;
    if (!pr->on) return;
    t = plm_l_now();
    if (t - pr->last < 0.2) return;
    pr->last = t;
    fprintf(stderr, "\rplume: %s  step %ld  alive %d/%d  ESS %.0f  %.1f steps/s  %.1fs   ", what, step, alive, n, ess,
            (double)step / fmax(t - pr->start, 1e-9), t - pr->start);
    fflush(stderr);
}

/* ---- a population spread over the ranks of an MPI job ----
**
** With more than one rank (comm.h), plume.smc's standard method gives each rank a block of the global particle
** indices (rank r holds [N r / K, N (r + 1) / K)), each rank running its particles' programs with its own
** backends. After every step each rank learns every particle's log weight and state (one allgather), so every
** rank normalises the same array in the same order and draws the same ancestors from the same generator: logz,
** ancestors and every decision are those of a one-rank run, bit for bit. A new slot whose parent lives on another
** rank is rebuilt from the parent's record (l_precord.c), sent once per parent and receiving rank, which the
** slot replays strictly (l_particles.c). A particle's generator depends only on its global index and the
** resampling history -- the first copy of a parent continues its generator (its state travels in the record),
** other copies take the next stream in global order -- so the draws do not depend on the ranks either.
** Option migrate = "all" sends every particle through its record even on one rank (a test of the replay). */
typedef struct spread {
    int on, K, me;
    int all, perturb;
    long gn;                  /* the global population size */
    const plm_trace *pin;
    long records;             /* particle records this rank wrote (sent to other ranks, or to itself under migrate) */
    uint64_t record_bytes;    /* their bytes */
} spread;

static long blk(long n, int r, int K)
{
    return (long)((long long)n * r / K);
}

/* Every rank learns every particle's log weight and state, in global order; returns 1 when all have finished.
** A slot replaying a finished parent it continues counts as finished, as its parent would on one rank. */
static int spread_gather(lua_State *L, engine *E, const spread *S, double *glogw, unsigned char *gst)
{
    /* per rank, a block of maxl log weights then maxl state bytes: 9 bytes a particle */
    long maxl = (S->gn + S->K - 1) / S->K, k, r, lo = blk(S->gn, S->me, S->K);
    size_t blkb = (size_t)(maxl ? maxl : 1) * (sizeof(double) + 1);
    unsigned char *snd = plm_l_scratch(L, blkb), *rcv = plm_l_scratch(L, blkb * (size_t)S->K);
    plm_ctx ctx;
    int fin = 1;
    plm_ctx_clear(&ctx);
    if (E->n != blk(S->gn, S->me + 1, S->K) - lo)
        luaL_error(L, "plume.smc: rank %d holds %d particles, not its share of %d (internal error)", S->me, E->n, (int)S->gn);
    memset(snd, 0, blkb);
    for (k = 0; k < E->n; k++) {
        const particle *p = &E->p[k];
        memcpy(snd + (size_t)k * sizeof(double), &p->logw, sizeof(double));
        snd[(size_t)maxl * sizeof(double) + (size_t)k] =
            (unsigned char)(p->state == P_DONE || p->keeps_done ? P_DONE : p->state == P_DEAD ? P_DEAD : P_CHECK);
    }
    if (plm_comm_allgather(&ctx, snd, blkb, rcv)) plm_l_fail_in(L, &ctx, "plume.smc");
    for (r = 0; r < S->K; r++) {
        long rlo = blk(S->gn, (int)r, S->K), rn = blk(S->gn, (int)r + 1, S->K) - rlo;
        const unsigned char *b = rcv + (size_t)r * blkb;
        for (k = 0; k < rn; k++) {
            memcpy(&glogw[rlo + k], b + (size_t)k * sizeof(double), sizeof(double));
            gst[rlo + k] = b[(size_t)maxl * sizeof(double) + (size_t)k];
            fin &= gst[rlo + k] == P_DONE || gst[rlo + k] == P_DEAD;
        }
    }
    lua_pop(L, 2);
    return fin;
}

/* The record of a local particle without serialising it: its choices as sites that share its trace's buffers,
** frozen as they are now (the parent goes on and adds sites to its trace). A copy replaying a parent on the same
** rank checks its replay against this, as one replaying a parent from another rank does, so that a program that
** cannot be replayed fails whichever rank the parent is on. */
static pop_rec *snapshot(lua_State *L, const particle *p, long gidx)
{
    pop_rec *r = plm_gc_alloc(sizeof *r);
    const plm_trace *tr = p->ex.tr;
    plm_ctx ctx;
    size_t i;
    plm_ctx_clear(&ctx);
    if (!r) luaL_error(L, "plume.smc: out of memory");
    if (plm_trace_new(&ctx, &r->tr)) plm_l_fail(L, &ctx);
    for (i = 0; i < tr->n; i++)
        if (tr->sites[i].kind != PLM_SITE_OBSERVED && plm_trace_add_shared(&ctx, r->tr, &tr->sites[i]))
            plm_l_fail_in(L, &ctx, "plume.smc");
    r->logprior = tr->logprior;
    r->loglik = tr->loglik;
    r->gidx = gidx;
    r->checkpoints = p->ex.checkpoints;
    r->done = p->state == P_DONE;
    return r;
}

/* The population after resampling: global slot j takes parent par[j] with log weight lw[j] (m slots). Parents
** on other ranks (all of them with migrate) come as records, each once per receiving rank. Returns 1 when the new
** population has finished (as plm_l_pop_finished would say of a one-rank rebuild). */
static int spread_rebuild(lua_State *L, engine *E, spread *S, const int *par, const double *lw, int m,
                          const unsigned char *gst)
{
    int top = lua_gettop(L), K = S->K, me = S->me, r, fin = 1;
    long gn = S->gn, j, q, olo = blk(gn, me, K), ohi = blk(gn, me + 1, K), nlo = blk(m, me, K), nhi = blk(m, me + 1, K);
    unsigned char *seen = plm_l_scratch(L, (size_t)gn + 1), *keep = plm_l_scratch(L, (size_t)m + 1);
    uint64_t *stream = plm_l_scratch(L, ((size_t)m + 1) * sizeof *stream), ns = E->next_stream;
    long *mark = plm_l_scratch(L, ((size_t)gn + 1) * sizeof *mark);
    size_t *sc = plm_l_scratch(L, (size_t)K * 4 * sizeof *sc), *sd = sc + K, *rc = sc + 2 * K, *rd = sc + 3 * K;
    size_t *mat = plm_l_scratch(L, (size_t)K * (size_t)K * sizeof *mat), total = 0, at = 0;
    unsigned char *rcv;
    plm_l_buf B = {NULL, 0, 0};
    pop_rec *recs, **snaps;
    pop_src *src;
    long nrec = 0;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    memset(seen, 0, (size_t)gn + 1);
    /* the first copy of a parent continues it; the others draw from new streams, numbered in global order */
    for (j = 0; j < m; j++) {
        q = par[j];
        keep[j] = !seen[q];
        seen[q] = 1;
        stream[j] = keep[j] ? 0 : ns++;
        if (!(keep[j] && gst[q] == P_DONE)) fin = 0;
    }
    /* the records this rank sends: for each rank in order, each of its parents held here, once */
    for (q = 0; q < gn; q++) mark[q] = -1;
    for (r = 0; r < K; r++) {
        sd[r] = B.n;
        for (j = blk(m, r, K); j < blk(m, r + 1, K); j++) {
            q = par[j];
            if (q < olo || q >= ohi || (r == me && !S->all) || mark[q] == r) continue;
            mark[q] = r;
            plm_l_rec_write(L, &B, &E->p[q - olo], q);
            S->records++;
        }
        sc[r] = B.n - sd[r];
        S->record_bytes += sc[r];
    }
    if (plm_comm_allgather(&ctx, sc, (size_t)K * sizeof *sc, mat)) plm_l_fail_in(L, &ctx, "plume.smc");
    for (r = 0; r < K; r++) rc[r] = mat[(size_t)r * K + me], rd[r] = total, total += rc[r];
    rcv = plm_gc_alloc_atomic(total ? total : 1);
    if (!rcv) luaL_error(L, "plume.smc: out of memory (%d bytes of particle records)", (int)total);
    if (plm_comm_alltoallv(&ctx, B.b, sc, sd, rcv, rc, rd)) plm_l_fail_in(L, &ctx, "plume.smc");
    /* read them: at most one per new slot here */
    recs = plm_gc_alloc((size_t)(nhi - nlo + 1) * sizeof *recs);
    if (!recs) luaL_error(L, "plume.smc: out of memory");
    for (q = 0; q < gn; q++) mark[q] = -1;
    while (at < total) {
        pop_rec *rc1 = &recs[nrec];
        if (nrec >= nhi - nlo) luaL_error(L, "plume.smc: rank %d received more particle records than it has slots (internal error)", me);
        at += plm_l_rec_read(L, rcv + at, total - at, rc1, 0);
        if (rc1->gidx < 0 || rc1->gidx >= gn) luaL_error(L, "plume.smc: a particle record names particle %d of %d", (int)rc1->gidx, (int)gn);
        if (S->perturb && rc1->gidx == 0) {
            /* the negative control of the replay check: particle 1's first choice is changed in transit */
            size_t i;
            for (i = 0; i < rc1->tr->n; i++)
                if (rc1->tr->sites[i].kind == PLM_SITE_LATENT) {
                    rc1->tr->sites[i].value[0] += 1;
                    break;
                }
        }
        mark[rc1->gidx] = nrec++;
    }
    src = plm_l_scratch(L, (size_t)(nhi - nlo + 1) * sizeof *src);
    snaps = plm_gc_alloc((size_t)(ohi - olo + 1) * sizeof *snaps);   /* GC memory: it holds the snapshots */
    if (!snaps) luaL_error(L, "plume.smc: out of memory");
    for (j = nlo; j < nhi; j++) {
        pop_src *s = &src[j - nlo];
        q = par[j];
        s->keep = keep[j];
        s->stream = stream[j];
        if (q >= olo && q < ohi && !S->all) {
            s->parent = (int)(q - olo);
            if (s->keep) s->rec = NULL;
            else {
                if (!snaps[q - olo]) snaps[q - olo] = snapshot(L, &E->p[q - olo], q);
                s->rec = snaps[q - olo];
            }
        } else {
            if (mark[q] < 0) luaL_error(L, "plume.smc: rank %d lacks the record of particle %d (internal error)", me, (int)q + 1);
            s->parent = -1;
            s->rec = &recs[mark[q]];
        }
    }
    plm_l_pop_rebuild_src(E, src, lw + nlo, (int)(nhi - nlo));
    /* conditional SMC: the reference particle (global slot 0, always a first copy of parent 0) keeps its path */
    if (S->pin && nlo == 0 && nhi > 0) E->p[0].ex.pin = S->pin;
    E->next_stream = ns;
    S->gn = m;
    lua_settop(L, top);
    return fin;
}

/* The finished population on every rank, in global order: each rank sends every other its particles' records
** (read as traces for the results), log weights and return values. Leaves the result table on the stack. */
static int spread_results(lua_State *L, engine *E, spread *S, plm_results *R)
{
    int K = S->K, r, i, vals;
    long gn = S->gn, lo = blk(gn, S->me, K);
    size_t *sc = plm_l_scratch(L, (size_t)K * 4 * sizeof *sc), *sd = sc + K, *rc = sc + 2 * K, *rd = sc + 3 * K;
    size_t total = 0, at = 0;
    plm_l_buf B = {NULL, 0, 0};
    unsigned char *rcv;
    plm_trace **tr;
    double *logw;
    plm_ctx ctx;
    char what[64];
    plm_ctx_clear(&ctx);
    for (i = 0; i < E->n; i++) {
        plm_l_rec_write(L, &B, &E->p[i], lo + i);
        plm_l_buf_put(L, &B, &E->p[i].logw, sizeof(double));
        lua_rawgeti(L, E->vals, i + 1);
        snprintf(what, sizeof what, "the return value of particle %d", (int)(lo + i) + 1);
        plm_l_val_write(L, &B, -1, what);
        lua_pop(L, 1);
    }
    if (plm_comm_allgather(&ctx, &B.n, sizeof B.n, rc)) plm_l_fail_in(L, &ctx, "plume.smc");
    for (r = 0; r < K; r++) sc[r] = B.n, sd[r] = 0, rd[r] = total, total += rc[r];
    rcv = plm_gc_alloc_atomic(total ? total : 1);
    if (!rcv) luaL_error(L, "plume.smc: out of memory (%d bytes of particles)", (int)total);
    if (plm_comm_alltoallv(&ctx, B.b, sc, sd, rcv, rc, rd)) plm_l_fail_in(L, &ctx, "plume.smc");
    tr = plm_gc_alloc((size_t)(gn ? gn : 1) * sizeof *tr);
    logw = plm_l_scratch(L, (size_t)(gn ? gn : 1) * sizeof *logw);
    if (!tr) luaL_error(L, "plume.smc: out of memory");
    lua_createtable(L, (int)gn, 0);
    vals = lua_gettop(L);
    for (i = 0; i < gn; i++) {
        pop_rec rec;
        if (at >= total) luaL_error(L, "plume.smc: the particles gathered from the ranks end at %d of %d (internal error)", i, (int)gn);
        at += plm_l_rec_read(L, rcv + at, total - at, &rec, 1);
        if (rec.gidx != i) luaL_error(L, "plume.smc: particle %d arrived where particle %d belongs (internal error)", (int)rec.gidx + 1, i + 1);
        tr[i] = rec.tr;
        if (total - at < sizeof(double)) luaL_error(L, "plume.smc: the particles gathered from the ranks are truncated");
        memcpy(&logw[i], rcv + at, sizeof(double));
        at += sizeof(double);
        at += plm_l_val_read(L, rcv + at, total - at);
        lua_rawseti(L, vals, i + 1);
    }
    for (i = 0; i < E->n; i++) {
        lua_rawgeti(L, E->handles, i + 1);
        ((plm_l_handle *)lua_touserdata(L, -1))->ex = NULL;
        lua_pop(L, 1);
    }
    if (E->root) plm_unroot(E->root);
    E->root = 0;
    return plm_l_pop_results_of(L, R, tr, logw, (int)gn, vals, 0, E->who);
}

/* plume.smc(model, args, opts) */
static int l_smc(lua_State *L)
{
    smc_opts o;
    engine E;
    spread S;
    plm_rng sr;
    plm_l_progress pr;
    plm_ctx ctx;
    double logz = 0, lse;
    int opts, nargs, i, *par, fin = 0, n;
    double *lw, *w, *logw;
    unsigned char *gst;
    size_t *cnt, *anc;
    long step = 0, resamples = 0;
    uint64_t bytes0;
    plm_results *R;
    plm_l_pop_arrange(L, "plume.smc");
    nargs = (int)lua_tointeger(L, 3);
    opts = lua_istable(L, 2) ? 2 : 0;
    smc_options(L, opts, &o);
    twist_option(L, opts, &o);
    if (o.pin && o.steer) luaL_error(L, "plume.smc: option 'pin' (conditional SMC) works with method = \"standard\" only");
    if (o.migrate && o.steer) luaL_error(L, "plume.smc: option 'migrate' works with method = \"standard\" only");
    memset(&E, 0, sizeof E);
    memset(&S, 0, sizeof S);
    /* the standard method spreads its particles over the ranks of an MPI job; steer runs whole on every rank */
    S.K = plm_comm_size();
    S.me = plm_comm_rank();
    S.on = !o.steer && (S.K > 1 || o.migrate);
    if (!S.on) S.K = 1, S.me = 0;
    S.all = o.migrate >= 1;
    S.perturb = o.migrate == 2;
    S.gn = o.N;
    S.pin = o.pin;
    E.twist = o.twist;
    plm_ctx_clear(&ctx);
    E.L = L;
    E.args = 4;
    E.nargs = nargs;
    E.seed = o.seed;
    E.next_stream = 1;
    E.who = "plume.smc";
    E.fn = 1;
    plm_rng_init(&sr, o.seed, 0);
    R = plm_l_newresults(L, 1, 1);
    lua_newtable(L); E.cos = lua_gettop(L);
    lua_newtable(L); E.handles = lua_gettop(L);
    lua_newtable(L); E.vals = lua_gettop(L);
    lua_newtable(L); E.reqs = lua_gettop(L);
    lua_newtable(L); E.objs = lua_gettop(L);
    lua_newtable(L); E.adopt = lua_gettop(L);
    {
        /* particle i (global) starts on stream 1 + i, whichever rank holds it */
        long lo = blk(o.N, S.me, S.K), hi = blk(o.N, S.me + 1, S.K);
        plm_l_pop_grow(&E, (int)(hi - lo) * (o.steer ? o.K : 1) + 1);
        for (i = 0; i < hi - lo; i++) {
            E.next_stream = 1 + (uint64_t)(lo + i);
            plm_l_pop_spawn(&E, i, NULL, 0, 0, 0);
            E.n = i + 1;
        }
        E.next_stream = 1 + (uint64_t)o.N;
        if (lo == 0 && hi > 0) E.p[0].ex.pin = o.pin;
    }
    plm_l_progress_start(&pr, !o.quiet);
    plm_interrupt_clear();
    bytes0 = plm_comm_bytes_sent();
    while (S.on ? !fin : !plm_l_pop_finished(&E)) {
        double ess;
        int m, alive = 0, top = lua_gettop(L);
        plm_l_check_interrupt(L, "plume.smc");
        if (++step > o.max_steps) luaL_error(L, "plume.smc: more than %d steps (raise max_steps?)", (int)o.max_steps);
        if (o.steer) {
            /* K - 1 extra copies of every unfinished particle, each carrying 1/K of its weight */
            int n0 = E.n, k;
            plm_l_pop_grow(&E, n0 * o.K);
            for (i = 0; i < n0; i++) {
                if (E.p[i].state == P_DONE || E.p[i].state == P_DEAD) continue;
                E.p[i].logw -= log((double)o.K);
                lua_rawgeti(L, E.objs, i + 1);
                for (k = 1; k < o.K; k++) {
                    plm_l_pop_spawn(&E, E.n, E.p[i].ex.tr, E.p[i].ex.checkpoints, E.p[i].logw, lua_gettop(L));
                    E.n++;
                }
                lua_pop(L, 1);
            }
        }
        for (i = 0; i < E.n; i++)
            if (E.p[i].state == P_CHECK) E.p[i].state = P_RUN;
        plm_l_pop_advance(&E);
        plm_l_check_interrupt(L, "plume.smc");
        /* the weights (of every rank's particles, in global order) as plain arrays for runtime/resample */
        n = S.on ? (int)S.gn : E.n;
        logw = plm_l_scratch(L, (size_t)n * sizeof *logw);
        w = plm_l_scratch(L, (size_t)n * sizeof *w);
        gst = plm_l_scratch(L, (size_t)n + 1);
        if (S.on)
            fin = spread_gather(L, &E, &S, logw, gst);
        else {
            for (i = 0; i < n; i++) logw[i] = E.p[i].logw;
            fin = plm_l_pop_finished(&E);
        }
        for (i = 0; i < n; i++) alive += logw[i] > -INFINITY;
        lse = plm_resample_normalise(logw, (size_t)n, w);
        if (lse == -INFINITY) plm_l_pop_all_dead(&E, step);
        ess = plm_resample_ess(logw, (size_t)n);
        /* the running estimate of the log normaliser: steer keeps every weight, so it is their mean */
        if (plm_results_push(&ctx, R, "ess_history", ess) ||
            plm_results_push(&ctx, R, "logz_history", o.steer ? lse - log((double)o.N) : logz + lse - log((double)n)))
            plm_l_fail_in(L, &ctx, "plume.smc");
        smc_progress(&pr, o.steer ? "smc-steer" : "smc", step, alive, n, ess);
        par = plm_l_scratch(L, (size_t)(n > o.N ? n : o.N) * sizeof *par);
        lw = plm_l_scratch(L, (size_t)(n > o.N ? n : o.N) * sizeof *lw);
        cnt = plm_l_scratch(L, (size_t)n * sizeof *cnt);
        anc = plm_l_scratch(L, (size_t)(n > o.N ? n : o.N) * sizeof *anc);
        if (o.steer) {
            size_t mm;
            if (plm_resample_fc(&ctx, w, (size_t)n, (size_t)o.N, &sr, anc, lw, &mm)) plm_l_fail(L, &ctx);
            m = (int)mm;
            for (i = 0; i < m; i++) par[i] = (int)anc[i], lw[i] = log(lw[i]) + lse;
            plm_l_pop_rebuild(&E, par, lw, m, NULL);
            resamples++;
        } else if (o.pin && !fin) {
            /* conditional SMC: particle 1 keeps the reference path; the other N - 1 are drawn (multinomially)
            ** from all N, every step */
            logz += lse - log((double)n);
            par[0] = 0, lw[0] = 0;
            if (o.N > 1) {
                if (plm_resample_counts(&ctx, PLM_RESAMPLE_MULTINOMIAL, w, (size_t)n, (size_t)o.N - 1, &sr, cnt, NULL))
                    plm_l_fail(L, &ctx);
                plm_resample_ancestors(cnt, (size_t)n, anc);
                for (i = 1; i < o.N; i++) par[i] = (int)anc[i - 1], lw[i] = 0;
            }
            if (S.on) fin = spread_rebuild(L, &E, &S, par, lw, o.N, gst);
            else plm_l_pop_rebuild(&E, par, lw, o.N, NULL);
            resamples++;
        } else if (ess < o.ess_threshold * n && !fin) {
            double *scratch = lw;   /* SSP's fractional parts; lw is set after */
            logz += lse - log((double)n);
            if (plm_resample_counts(&ctx, o.scheme, w, (size_t)n, (size_t)o.N, &sr, cnt, scratch)) plm_l_fail(L, &ctx);
            plm_resample_ancestors(cnt, (size_t)n, anc);
            for (i = 0; i < o.N; i++) par[i] = (int)anc[i], lw[i] = 0;
            if (S.on) fin = spread_rebuild(L, &E, &S, par, lw, o.N, gst);
            else plm_l_pop_rebuild(&E, par, lw, o.N, NULL);
            resamples++;
        }
        lua_settop(L, top);
    }
    plm_l_progress_end(&pr);
    if (S.on) {
        /* slots that continue a finished parent by replay still have to replay it (it adds no weight) */
        int any = 0, top = lua_gettop(L);
        for (i = 0; i < E.n; i++) any |= E.p[i].state == P_RUN;
        if (any) plm_l_pop_advance(&E);
        {
            uint64_t rej = (uint64_t)E.rejected;
            if (plm_comm_allreduce_u64(&ctx, &rej, 1, PLM_COMM_SUM)) plm_l_fail_in(L, &ctx, "plume.smc");
            E.rejected = (long)rej;
        }
        n = (int)S.gn;
        logw = plm_l_scratch(L, (size_t)n * sizeof *logw);
        gst = plm_l_scratch(L, (size_t)n + 1);
        spread_gather(L, &E, &S, logw, gst);
        {
            particle *pw = plm_l_scratch(L, (size_t)n * sizeof *pw);   /* the weights alone, for plm_l_pop_ess */
            double ess;
            for (i = 0; i < n; i++) pw[i].logw = logw[i];
            ess = plm_l_pop_ess(pw, n, &lse);
            if (lse == -INFINITY) plm_l_pop_all_dead(&E, step);
            logz += lse - log((double)n);
            lua_settop(L, top);
            if (!isfinite(logz)) luaL_error(L, "plume.smc: the log evidence is %g after step %d", logz, (int)step);
            /* what this rank moved: every collective of the run (not the final gathering), and the particle
            ** records among it */
            if (plm_results_set(&ctx, R, "logz", logz) || plm_results_set(&ctx, R, "ess", ess) ||
                plm_results_set_int(&ctx, R, "bytes_sent", (long long)(plm_comm_bytes_sent() - bytes0)) ||
                plm_results_set_int(&ctx, R, "records_sent", S.records) ||
                plm_results_set_int(&ctx, R, "record_bytes", (long long)S.record_bytes))
                plm_l_fail_in(L, &ctx, "plume.smc");
        }
    } else {
        plm_l_pop_ess(E.p, E.n, &lse);
        if (lse == -INFINITY) plm_l_pop_all_dead(&E, step);
        if (o.steer)
            logz = lse - log((double)o.N);   /* steer never resets weights: the evidence is their mean at the end */
        else
            logz += lse - log((double)E.n);
        if (!isfinite(logz)) luaL_error(L, "plume.smc: the log evidence is %g after step %d", logz, (int)step);
        if (plm_results_set(&ctx, R, "logz", logz) || plm_results_set(&ctx, R, "ess", plm_l_pop_ess(E.p, E.n, &lse)))
            plm_l_fail_in(L, &ctx, "plume.smc");
    }
    /* results */
    {
        int res;
        if (plm_results_set_int(&ctx, R, "resamples", resamples) || plm_results_set_int(&ctx, R, "rejected", E.rejected) ||
            plm_results_set_int(&ctx, R, "steps", step))
            plm_l_fail_in(L, &ctx, "plume.smc");
        res = S.on ? spread_results(L, &E, &S, R) : plm_l_pop_results(&E, R, 0);
        lua_pushstring(L, o.steer ? "smc-steer" : "smc");
        lua_setfield(L, res, "method");
        lua_pushstring(L, o.steer ? "fearnhead-clifford" : plm_resample_scheme_name(o.scheme));
        lua_setfield(L, res, "resample");
        lua_pushinteger(L, (lua_Integer)o.seed);
        lua_setfield(L, res, "seed");
        lua_settop(L, res);
        return plm_l_pop_posterior(L);
    }
}

void plm_l_open_smc(lua_State *L)
{
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_smc, 1);
    lua_setfield(L, -2, "smc");
}
