/* l_beam.c -- plume.beam(model, args, opts): beam search over the finite discrete choices of a program. The
** program runs on the particle population (lparticles.h) with beam yields at categorical and bernoulli
** choices: every hypothesis is extended by its most probable values and the best `beams` are kept. */
#include "lparticles.h"
#include "ldist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Beam search resumes a branching m:sample here with the value it chose (in C's representation). */
static int sample_branch_k(lua_State *L, int status, lua_KContext kctx)
{
    plm_l_exec *ex = ((plm_l_handle *)luaL_checkudata(L, 1, PLM_L_HANDLE))->ex;
    const char *addr = lua_tostring(L, 2);
    plm_dist *d = plm_l_checkdist(L, 3, "m:sample", "dist");
    double x = lua_tonumber(L, -1);
    (void)status;
    (void)kctx;
    lua_pop(L, 1);
    return plm_l_sample_finish(L, ex, addr, d, &x, plm_dist_logpdf(d, &x));
}

/* A copy replays its parent's sites (those made before the branch), takes the value chosen for it at the
** branch, and yields at every new finite discrete choice so that the beam can branch. */
static int beam_sample(lua_State *L, plm_l_exec *ex, const char *addr, const plm_dist *d, double *x, double *lp)
{
    plm_site *s = ex->old ? plm_trace_find(ex->old, addr) : NULL;
    if (ex->target && strcmp(addr, ex->target) == 0) {
        memcpy(x, ex->target_val, (size_t)d->dim * sizeof *x);
        *lp = plm_dist_logpdf(d, x);
        return PLM_L_CHOSEN;
    }
    if (s && (size_t)(s - ex->old->sites) < ex->replay_sites && s->kind == PLM_SITE_LATENT && s->dim == d->dim) {
        memcpy(x, s->value, (size_t)d->dim * sizeof *x);
        *lp = plm_dist_logpdf(d, x);
        return PLM_L_CHOSEN;
    }
    if (d->kind == PLM_DIST_CATEGORICAL || d->kind == PLM_DIST_BERNOULLI) {
        lua_settop(L, 3);
        lua_pushlightuserdata(L, (void *)&plm_l_branch_tag);
        lua_pushvalue(L, 3);
        lua_pushvalue(L, 2);
        return lua_yieldk(L, 3, 0, sample_branch_k);
    }
    plm_l_sample_fresh(L, ex, addr, d, x, lp);
    return PLM_L_CHOSEN;
}

/* beam search syncs at branches, not at checkpoints */
const plm_l_hooks plm_l_beam_hooks = {"beam", beam_sample, NULL, NULL};

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
    plm_results *R;
    plm_ctx ctx;
    int K, B, nargs, opts, i, j;
    long step = 0, max_steps;
    plm_l_pop_arrange(L, fn);
    nargs = (int)lua_tointeger(L, 3);
    opts = lua_istable(L, 2) ? 2 : 0;
    {
        static const char *const names[] = {"beams", "branch", "seed", "max_steps", "quiet", "threads", NULL};
        plm_l_checkopts(L, opts, fn, names);
    }
    plm_l_pop_refuse_threads(L, opts, fn);
    K = (int)plm_l_optint(L, opts, fn, "beams", 8);
    B = (int)plm_l_optint(L, opts, fn, "branch", K);
    max_steps = (long)plm_l_optint(L, opts, fn, "max_steps", 100000);
    if (K < 1 || K > 100000) luaL_error(L, "%s: option 'beams' must be in 1..100000 (got %d)", fn, K);
    if (B < 1 || B > 100000) luaL_error(L, "%s: option 'branch' must be in 1..100000 (got %d)", fn, B);
    memset(&E, 0, sizeof E);
    plm_ctx_clear(&ctx);
    R = plm_l_newresults(L, 1, 1);
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
    plm_l_pop_grow(&E, K + 1);
    plm_l_pop_spawn(&E, 0, NULL, 0, 0, 0);
    E.p[0].ex.hooks = &plm_l_beam_hooks;
    E.n = 1;
    for (;;) {
        cand *c;
        int nc = 0, keep;
        double *val = plm_l_scratch(L, (size_t)B * sizeof *val), *lp = plm_l_scratch(L, (size_t)B * sizeof *lp);
        if (++step > max_steps) luaL_error(L, "%s: more than %d steps (raise max_steps?)", fn, (int)max_steps);
        plm_l_pop_advance(&E);
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
                plm_l_pop_rebuild(&E, par, lw, keep, NULL);
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
            plm_l_pop_rebuild(&E, par, lw, keep, br);
            lua_pop(L, 3);
        }
        lua_pop(L, 3);   /* val, lp, c */
    }
    /* results: hypotheses best first, scored by their log joint (log prior of the choices + log likelihood) */
    {
        int res;
        if (plm_results_set_int(&ctx, R, "steps", step)) plm_l_fail_in(L, &ctx, fn);
        res = plm_l_pop_results(&E, R, 1);
        lua_pushstring(L, "beam");
        lua_setfield(L, res, "method");
        lua_settop(L, res);
        return plm_l_pop_posterior(L);
    }
}


void plm_l_open_beam(lua_State *L)
{
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_beam, 1);
    lua_setfield(L, -2, "beam");
}
