/* lmodel.h -- what the model-program engines share (internal to lang/): the execution state behind the
** `m` handle, the recorder that turns traces into draws, and progress/interrupt helpers. l_model.c holds
** the handle methods and the prior/IS/MH engines; l_smc.c the particle engines. */
#ifndef PLM_LMODEL_H
#define PLM_LMODEL_H

#include "lutil.h"

#define PLM_L_HANDLE "plume.m"
#define PLM_L_DRAWS "plume.draws"

enum {
    EX_PRIOR,     /* every choice drawn fresh */
    EX_REPLAY,    /* MH: reuse old values; the target address takes the proposed value */
    EX_SMC        /* particles: reuse old values until `replay_until` checkpoints, then fresh; yield at checkpoints */
};

typedef struct plm_l_exec {
    int mode;
    plm_trace *tr;            /* being built */
    const plm_trace *old;     /* EX_REPLAY / EX_SMC replay: the values to reuse */
    const char *target;       /* EX_REPLAY: the address whose value is proposed */
    const double *target_val;
    double fresh;             /* sum of log densities of latent values drawn fresh in this run */
    plm_rng *rng;
    plm_ctx ctx;
    int checkpoints;          /* EX_SMC: observe/factor statements passed */
    int replay_until;         /* EX_SMC: checkpoints to replay silently from `old` */
    double step_logw;         /* EX_SMC: log weight gathered since the last yield */
    int beam;                 /* EX_SMC under beam search: yield at finite discrete choices instead */
    size_t replay_sites;      /* beam: sites of `old` made before the branch (the copy replays only those) */
} plm_l_exec;

/* The tag of a beam-search branch yield: m:sample yields (tag, dist) and is resumed with the chosen value. */
extern const char plm_l_branch_tag;

typedef struct plm_l_handle {
    plm_l_exec *ex;           /* NULL outside a run */
} plm_l_handle;

/* Push a new handle userdata (disarmed). */
plm_l_handle *plm_l_newhandle(lua_State *L);

/* Recorder: appends traces (latent and deterministic sites) to a draws table. Pushes a userdata that owns
** its scratch memory; keep it on the stack while recording. */
typedef struct plm_l_recorder plm_l_recorder;
plm_l_recorder *plm_l_newrecorder(lua_State *L, plm_draws *D);
void plm_l_record(lua_State *L, plm_l_recorder *r, const plm_trace *tr, int chain, double lw);
void plm_l_pushdraws(lua_State *L, plm_draws *D);
/* Write each recorded draw to a CSV file at path as it is produced (NULL: no file; when a site appears after
** the header was written, the table so far replaces the file by rename); close finishes it. */
void plm_l_recorder_output(lua_State *L, plm_l_recorder *r, const char *path, const char *fn);
void plm_l_recorder_close(lua_State *L, plm_l_recorder *r, const char *fn);

/* Progress line on stderr (only when `on`), and Ctrl-C: raise "fn: interrupted". */
typedef struct plm_l_progress {
    int on;
    double last, start;
} plm_l_progress;
void plm_l_progress_start(plm_l_progress *p, int on);
void plm_l_progress_show(plm_l_progress *p, const char *what, int chain, int nchains, long it, long total, int warm);
void plm_l_progress_end(plm_l_progress *p);
void plm_l_check_interrupt(lua_State *L, const char *fn);

/* plume.quiet as set by the CLI's --quiet */
int plm_l_quiet_default(lua_State *L);

#endif
