/* lssm.h -- what the plume.ssm binding files share (internal to lang/): l_ssm.c builds models by tracing,
** l_ssm_methods.c holds :simulate, :logjoint, :logjoint_grad, :set_params and the fields. */
#ifndef PLM_LSSM_H
#define PLM_LSSM_H

#include "l_expr.h"
#include "pmcmc.h"
#include "results.h"

#define PLM_L_SSM "plume.ssm"
#define MAX_COV 256

/* covariate slots created while tracing: (column, lag) pairs */
typedef struct cov_reg {
    int n;
    int col[MAX_COV], lag[MAX_COV];
} cov_reg;

typedef struct l_ssm {
    plm_ssm *m;
    double *data;
    int xdisc, ydisc;
    cov_reg reg;     /* filled by the series while tracing */
} l_ssm;

/* The ssm userdata at idx (an error naming fn otherwise). */
l_ssm *plm_l_checkssm(lua_State *L, int idx, const char *fn);
/* Its metamethods: fields and methods by name, and tostring. */
int plm_l_ssm_index(lua_State *L);
int plm_l_ssm_tostring(lua_State *L);
/* Observations ys at idx as ys[(t-1)*ydim + k]: a list of numbers (ydim 1; NaN or 0/0 marks a missing
** one), a plume.array, or a list of ydim-lists; *T receives their number. Pushes the owner of the memory. */
double *plm_l_ssm_ys(lua_State *L, int idx, int ydim, const char *fn, long *T);
/* The parameters to sample of the plume.ssm m at stack index 1, read from opts.params as plume.pmmh reads them
** (l_pmcmc.c): a prior samples, a number holds; *saved receives the model's own values (put them back after the
** run), *run the values for the run (NaN for the sampled ones). Memory is scratch on the stack. */
void plm_l_ssm_params(lua_State *L, int opts, const char *fn, plm_ssm *m, plm_ssm_prior *P, double **saved,
                      double **run);
/* Push the results R of a particle MCMC run as a posterior object (plume._posterior, as plume.infer's) with the
** run's settings as fields (l_pmcmc.c). */
void plm_l_pmcmc_posterior(lua_State *L, plm_results *R, const char *method, int chains, long samples, long warmup,
                           uint64_t seed, size_t N);
/* The "conjugate" series of the posterior at the top (plm_pgibbs_run's flags per sampled parameter) becomes
** {name = true | false}: whether every chain drew that parameter from its conjugate conditional. */
void plm_l_pmcmc_conjugate(lua_State *L, const plm_ssm_prior *P);
/* Option 'distribute' of PMMH and SMC^2 ("particles" or "chains"; l_pmcmc.c): how a run under mpirun uses the
** ranks. Without it, "chains" when there are at least as many chains (theta-particles) as ranks, else "particles". */
plm_spread plm_l_spread(lua_State *L, int opts, const char *fn, size_t chains);

#endif
