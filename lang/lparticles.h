/* lparticles.h -- the particle population behind plume.smc and plume.beam (internal to lang/): particles are
** coroutines running the program, stopped at checkpoints (m:observe, m:factor), at beam branches, or at
** batched requests. l_particles.c implements it; l_smc.c and l_beam.c are the two engines on top. */
#ifndef PLM_LPARTICLES_H
#define PLM_LPARTICLES_H

#include "lmodel.h"

#define SMC_FLAG "plume.smc.active"

/* The engines' hooks for the `m` handle (lmodel.h): SMC replays a copy's parent silently up to its checkpoint
** and yields at every observe and factor after it; beam search replays up to the branch, takes the chosen
** value there, and yields at every new finite discrete choice (a branch yield: tag, dist, addr). */
extern const plm_l_hooks plm_l_smc_hooks;
extern const plm_l_hooks plm_l_beam_hooks;
extern const char plm_l_branch_tag;

enum { P_RUN, P_CHECK, P_PENDING, P_DONE, P_DEAD, P_BRANCH };

typedef struct particle {
    plm_l_exec ex;
    plm_rng rng;
    double logw;      /* log weight since the last resampling */
    int state;
    int narg;         /* values to pass at the next resume */
    /* a particle rebuilt from a record that came from another rank (or was forced through one, option migrate):
    ** while it replays, each choice is checked against the record and rescored (see strict_sample) */
    const struct pop_rec *rec;
    int keeps_done;   /* continues a finished parent by replay: counts as finished while it replays */
} particle;

/* A particle's record, as it travels between ranks: its choices (latent and deterministic sites with their log
** densities; observations are remade by the replay), the totals of its trace, the checkpoints it passed,
** whether it finished, and its generator's state. Serialised by plm_l_rec_write. */
typedef struct pop_rec {
    plm_trace *tr;
    double logprior, loglik;
    long gidx;                /* its global index in the population it was recorded from */
    int checkpoints, done;
    uint64_t rng[4];
} pop_rec;

/* Where new slot j of a rebuilt population comes from: a local parent (parent >= 0) or a record. keep: the slot
** continues its parent -- keeps the coroutine and generator of a local parent, replays a record and then takes
** its generator's state; otherwise it replays its parent and draws from a new generator of stream `stream`. */
typedef struct pop_src {
    int parent;
    const pop_rec *rec;
    int keep;
    uint64_t stream;
} pop_src;

/* The population lives in GC memory (it points at traces), rooted while the engine runs; the Lua side keeps
** coroutines and handles in tables at fixed stack slots, indexed like the particles. */
typedef struct engine {
    lua_State *L;
    int fn, args, nargs;      /* stack slots of the model function and its arguments */
    int cos, handles, vals;   /* stack slots of tables: coroutines, handles, return values */
    int reqs;                 /* table: pending request per particle */
    int objs;                 /* table: per particle, the objects it registered (plume._smc_register) */
    int adopt;                /* table: per particle, snapshots its replay adopts in order (plume._smc_adopt) */
    int twist;                /* stack slot of {twist =, proposal =} for new LM contexts (0: none) */
    particle *p;
    int n, cap;
    long root;
    uint64_t seed, next_stream;
    const char *who;          /* "plume.smc" or "plume.beam", for messages */
    char reject[512];         /* the last rejection that killed a particle ("" when none) */
    long rejected;            /* particles killed by rejections */
} engine;

/* A beam-search branch for new slot j: resume with value (kept parent) or replay up to the branch and take
** value there (copy). NULL for SMC. */
typedef struct branch {
    int done;
    double value;
} branch;

/* Make room for `need` particles (moving them keeps their handles and streams valid). */
particle *plm_l_pop_grow(engine *E, int need);
/* Create particle slot i: a new coroutine that will run the program, replaying `parent` (a trace) up to
** `replay` checkpoints; parent_objs is the stack slot of the parent's registered objects (0: none). */
void plm_l_pop_spawn(engine *E, int i, const plm_trace *parent, int replay, double logw, int parent_objs);
/* Advance every running particle to its next checkpoint (or the end), serving requests in batches. */
void plm_l_pop_advance(engine *E);
/* ESS of the particles' weights; *lse receives the log of their sum. */
double plm_l_pop_ess(const particle *p, int n, double *lse);
/* Rebuild the population from parents: slot j gets parent par[j] with log weight lw[j]. The first copy of
** each parent keeps its coroutine; the others replay it (beam copies take br[j]'s value at the branch). */
void plm_l_pop_rebuild(engine *E, const int *par, const double *lw, int m, const branch *br);
/* The same, slot by slot from src (for populations spread over ranks; lparticles.h pop_src). */
void plm_l_pop_rebuild_src(engine *E, const pop_src *src, const double *lw, int m);
int plm_l_pop_finished(const engine *E);

/* Growable bytes in GC memory (nothing leaks when an error unwinds). */
typedef struct plm_l_buf {
    unsigned char *b;
    size_t n, cap;
} plm_l_buf;
void plm_l_buf_put(lua_State *L, plm_l_buf *B, const void *x, size_t n);
/* Append particle p's record (global index gidx) to B. */
void plm_l_rec_write(lua_State *L, plm_l_buf *B, const particle *p, long gidx);
/* Read one record from b[0..n) into r (a new trace; with for_results, categorical values are shifted to their
** labels and the trace is only fit for plm_l_record). Returns the bytes read; a malformed record is an error. */
size_t plm_l_rec_read(lua_State *L, const unsigned char *b, size_t n, pop_rec *r, int for_results);
/* Append the Lua value at idx (nil, booleans, numbers, strings, tables of these) to B; other types are an
** error naming `what`. plm_l_val_read pushes one back and returns the bytes read. */
void plm_l_val_write(lua_State *L, plm_l_buf *B, int idx, const char *what);
size_t plm_l_val_read(lua_State *L, const unsigned char *b, size_t n);
/* The result table of a population given as arrays (global order): traces, log weights, and the table of
** return values at stack slot vals (see plm_l_pop_results). */
int plm_l_pop_results_of(lua_State *L, plm_results *R, plm_trace *const *tr, const double *logw, int n, int vals,
                         int with_scores, const char *who);
/* The population as a result table (left on the stack, its index returned): the particles' traces are
** recorded into R (which holds the engine's series and scalars) and its table gets values, log_weights,
** particles and, with scores, the raw log weights. */
int plm_l_pop_results(engine *E, plm_results *R, int with_scores);
/* Rearrange plume.smc/plume.beam's arguments: fn, opts, nargs, args... */
void plm_l_pop_arrange(lua_State *L, const char *fn);
/* The result table on top becomes a posterior object (plume._posterior, from upvalue 1). */
int plm_l_pop_posterior(lua_State *L);
/* Every particle dead: an error naming the step, and why when rejections killed them. */
void plm_l_pop_all_dead(engine *E, long step);
/* Refuse threads > 1 (particles are coroutines of one Lua state). */
void plm_l_pop_refuse_threads(lua_State *L, int opts, const char *fn);

#endif
