/* linfer.h -- what plume.infer's drivers (l_infer.c) share with the chains that run on their own Lua states
** (l_chains.c). Internal to lang/. */
#ifndef PLM_LINFER_H
#define PLM_LINFER_H

#include "lmodel.h"

/* A model program on the stack: the function, the handle, and its arguments. */
typedef struct plm_l_program {
    int fn, handle, args, nargs;   /* stack indices (args: the first argument) */
} plm_l_program;

typedef struct plm_l_infer_opts {
    const char *method;
    const char *output;
    long samples, warmup, thin;
    int chains, threads, quiet;
    int init;                 /* stack index of the `init` option (a table or a function), 0 when absent */
    unsigned long long seed;
    const char *const *mh_sites;   /* plume.kernel.mh{sites =} on a dynamic program: the sites MH moves (names
                                   ** kept alive by the kernel value in the options); NULL: every site */
    int mh_nsites;
    const struct plm_kernel *trace_kernel;   /* option `kernel` on a dynamic program, other than a plain
                                             ** plume.kernel.mh (l_kernel.c); NULL: the trace MH on mh_sites */
    double *extra_mean;       /* with trace_kernel: chains x its nextra, each chain's mean diagnostics */
    int local;                /* distribute = "none": under mpirun every rank runs every chain (plm_mcmc_opts) */
} plm_l_infer_opts;

/* Run MH chain c of pg on L (runtime/mh_trace.h), its kept draws recorded as chain rec_chain of R, with the
** init values in the table at stack index init (0: none) and a progress line when pr is not NULL. Returns
** the kernel's status (message in ctx); PLM_ERUNTIME with *lua_err set when the program raised an error,
** whose value is then on top of L's stack. An interrupt is left raised. */
plm_status plm_l_mh_chain(lua_State *L, const plm_l_program *pg, const plm_l_infer_opts *o, int c, plm_results *R,
                          int rec_chain, plm_l_progress *pr, int init, plm_ctx *ctx, double *accept, int *lua_err);

/* Run the chains on their own Lua states in parallel, merging their draws into R chain by chain. Returns 1
** when done; 0 when the program cannot be copied or a chain failed in its own state (the caller then runs
** every chain on L, which reports a genuine error with its proper message). inits: stack index of the
** per-chain init tables. */
int plm_l_mh_parallel(lua_State *L, const plm_l_program *pg, const plm_l_infer_opts *o, plm_results *R,
                      double *accept, int inits);

/* plume.infer's "nuts", "hmc", "slice", "auto" and "kernel" (option `kernel`, a plume.kernel value read from
** opts) (l_static.c): trace pg once as a static model and run the kernel natively; opts is the options table's stack index (0: none). Returns 1 with the result table pushed,
** or 0 when "auto" found the program dynamic, with the reason (a string) pushed. Other methods' options
** are checked by the caller. */
int plm_l_infer_static(lua_State *L, const plm_l_program *pg, const plm_l_infer_opts *o, int opts);

/* The model program of the plume.model at stack index model with data at index data (a plume.args spreads into
** several arguments), pushed as function, handle and arguments (errors name fn). Returns 0. */
int plm_l_push_program(lua_State *L, int model, int data, plm_l_program *pg, const char *fn);

/* Trace pg once as a static model (l_static.c). Returns 1 with the finished model in *out, or 0 with the reason
** it is not static pushed. The graph holder is left on the stack under the result. */
typedef struct plm_gmodel plm_gmodel;
int plm_l_trace_static(lua_State *L, const plm_l_program *pg, plm_gmodel **out);
/* Check a traced graph against the program run on numbers at a few prior draws (l_static_check.c): 1 when
** every run makes the graph's latent sites and scores its log density, else 0 with the reason pushed. */
int plm_l_static_check(lua_State *L, const plm_l_program *pg, const plm_gmodel *gm);

/* The end of a static method's run (l_static.c): write the draws of R to `output` when asked, push R as a
** posterior with the unconstrained draws U as its field `sampler`. Errors name fn. Returns 1 (the posterior). */
int plm_l_static_finish(lua_State *L, plm_results *R, plm_draws *U, const char *output, const char *fn);

#endif
