/* lmodel.h -- what the model-program engines share (internal to lang/): the `m` handle and the hooks an
** engine gives it, the results binding, and the progress line. l_model.c holds the handle; l_infer.c the
** prior/IS/MH drivers (the MH kernel is runtime/mh_trace.c); l_particles.c, l_smc.c and l_beam.c the particle
** engines; l_results.c the results binding; l_draws.c the draws object. */
#ifndef PLM_LMODEL_H
#define PLM_LMODEL_H

#include "lutil.h"

#define PLM_L_HANDLE "plume.m"
#define PLM_L_DRAWS "plume.draws"

typedef struct plm_l_exec plm_l_exec;

/* What m:sample and m:observe/m:factor do under an engine: a new engine adds a table, not a branch.
** sample chooses the value of latent site addr of d (the dist is at stack index 3): either it puts the value
** in x (d->dim doubles) with its log density in *lp and returns PLM_L_CHOSEN (m:sample checks the density,
** records the site and hands the value over), or it finishes the call itself (records a shared site, yields)
** and returns what m:sample returns. checkpoint (NULL: nothing) runs after an observation or factor of log
** weight logw and returns what the method returns (0, or a yield).
** symbolic (NULL for engines that run programs on numbers) takes over every m: call whole, before the
** handle checks its arguments, which may be symbolic: the static tracer (l_static.c) sets it; it returns
** what the method returns. */
#define PLM_L_CHOSEN (-1)
typedef enum plm_l_method { PLM_L_M_SAMPLE, PLM_L_M_OBSERVE, PLM_L_M_FACTOR, PLM_L_M_DETERMINISTIC } plm_l_method;
typedef struct plm_l_hooks {
    const char *engine;
    int (*sample)(lua_State *L, plm_l_exec *ex, const char *addr, const plm_dist *d, double *x, double *lp);
    int (*checkpoint)(lua_State *L, plm_l_exec *ex, double logw);
    int (*symbolic)(lua_State *L, plm_l_exec *ex, plm_l_method which);
} plm_l_hooks;

struct plm_mh_run;

/* The execution state behind an armed handle. */
struct plm_l_exec {
    const plm_l_hooks *hooks;
    plm_trace *tr;            /* being built */
    plm_rng *rng;
    plm_ctx ctx;
    struct plm_mh_run *mh;    /* MH: the run the kernel asked for (runtime/mh_trace.h) */
    /* particle engines (lparticles.h) */
    const plm_trace *old;     /* the parent's trace to replay */
    const char *target;       /* beam: the address whose value was chosen at the branch */
    const double *target_val;
    int checkpoints;          /* SMC: observe/factor statements passed */
    int replay_until;         /* SMC: checkpoints to replay silently from `old` */
    double step_logw;         /* SMC: log weight gathered since the last yield */
    size_t replay_sites;      /* beam: sites of `old` made before the branch (the copy replays only those) */
    lua_KFunction yield_k;    /* SMC: the continuation of a checkpoint reached inside m:sample (a twisted LM token),
                              ** so that m:sample still returns its value after the yield; NULL otherwise */
    const plm_trace *pin;     /* conditional SMC: the reference path whose choices this particle takes (or NULL) */
};

/* Forward sampling (prior, IS): every choice fresh. */
extern const plm_l_hooks plm_l_prior_hooks;

typedef struct plm_l_handle {
    plm_l_exec *ex;           /* NULL outside a run */
} plm_l_handle;

/* Push a new handle userdata (disarmed). Its user value is the MH chain's init table (l_infer.c). */
plm_l_handle *plm_l_newhandle(lua_State *L);

/* For hooks: draw a fresh value of d (an improper prior, which has no sampler, is an error naming addr);
** record a chosen value and hand it to the program; hand over a value recorded otherwise. A distribution's hook
** (an LM context's next-token distribution, uservalue 1) learns the value; when it returns a number (a twisted
** context's incremental log weight) that number is a factor of the run and a checkpoint, as m:factor. */
void plm_l_sample_fresh(lua_State *L, plm_l_exec *ex, const char *addr, const plm_dist *d, double *x, double *lp);
int plm_l_sample_finish(lua_State *L, plm_l_exec *ex, const char *addr, const plm_dist *d, const double *x, double lp);
int plm_l_hand_over(lua_State *L, plm_l_exec *ex, const plm_dist *d, const double *x);
/* The error for a fresh value of an improper prior at addr (dist at stack index 3). Never returns. */
int plm_l_improper_error(lua_State *L, const char *addr);
/* "7", "0.25" or "{0.2, 0.8}": a value of d as the user writes it (pushed; categorical labels shifted). */
const char *plm_l_value_str(lua_State *L, const plm_dist *d, const double *x, int dim);

/* Results (runtime/results.h) held by a userdata pushed on the stack (freed with it). */
plm_results *plm_l_newresults(lua_State *L, int nchains, int weighted);
plm_results *plm_l_toresults(lua_State *L, int idx);
/* Raise "fn: message" for a failed status of the results builder or a kernel. */
int plm_l_fail_in(lua_State *L, plm_ctx *ctx, const char *fn);
void plm_l_record(lua_State *L, plm_results *R, const plm_trace *tr, int chain, double lw, const char *fn);
/* Push the result table of R: _draws (the draws object), each series as an array, each scalar. */
int plm_l_push_results(lua_State *L, plm_results *R);
void plm_l_pushdraws(lua_State *L, plm_draws *D);

/* Progress line on stderr (only when `on`), and Ctrl-C: raise "fn: interrupted". */
typedef struct plm_l_progress {
    int on;
    double last, start;
} plm_l_progress;
void plm_l_progress_start(plm_l_progress *p, int on);
void plm_l_progress_show(plm_l_progress *p, const char *what, int chain, int nchains, long it, long total, int warm);
void plm_l_progress_end(plm_l_progress *p);
double plm_l_now(void);
void plm_l_check_interrupt(lua_State *L, const char *fn);

/* plume.quiet (set by the CLI's --quiet) of the plume table at stack index mod. */
int plm_l_quiet_default(lua_State *L, int mod);

#endif
