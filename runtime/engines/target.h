/* target.h -- log densities that engines sample: the one interface between models and MCMC kernels.
** A target is an unnormalised log density on R^dim (the unconstrained scale, Jacobians included), with an
** optional gradient. Models implement it (compiled graphs here; traced programs and ssm log joints in their
** own modules); kernels only call it. Evaluations need a workspace, one per chain, so that chains on several
** threads never share scratch memory. */
#ifndef PLM_TARGET_H
#define PLM_TARGET_H

#include <stddef.h>

#include "ctx.h"
#include "expr.h"

typedef struct plm_target plm_target;

/* The operations of one kind of target (the shape of SQLite's sqlite3_module: a new model kind is a new
** table). logp returns the log density at u (dim doubles), -inf outside the support; NaN means the model
** could not be evaluated there and kernels report it as an error. logp_grad also writes the gradient into
** g (dim doubles); it is NULL for targets without gradients. ws_new returns a workspace or NULL when memory
** ran out; targets that need none set ws_new and ws_free to NULL. */
typedef struct plm_target_ops {
    const char *name;
    void *(*ws_new)(const plm_target *t);
    void (*ws_free)(void *ws);
    double (*logp)(const plm_target *t, void *ws, const double *u);
    double (*logp_grad)(const plm_target *t, void *ws, const double *u, double *g);
} plm_target_ops;

struct plm_target {
    const plm_target_ops *ops;
    void *self;                 /* the model behind it, owned by whoever made the target */
    int dim;
    const char *const *names;   /* dim coordinate names for results, or NULL ("x[1]", ... are used) */
};

/* Workspace helpers that do the right thing for targets without workspaces. */
void *plm_target_ws_new(const plm_target *t);
void plm_target_ws_free(const plm_target *t, void *ws);
static inline double plm_target_logp(const plm_target *t, void *ws, const double *u)
{
    return t->ops->logp(t, ws, u);
}

/* A target from an expression graph: log density node `lp` of inputs `x` (dim nodes, usually
** plm_graph_input(g, PLM_GRP_X, i)), with data bound to group PLM_GRP_P from `data` (ndata doubles,
** copied; NULL when the graph reads none). The gradient is derived symbolically and compiled with the log
** density, so logp_grad costs one pass. PLM_ENOTSUP when an op has no derivative (the target is then
** made without a gradient: *out is still set), PLM_EINVAL when the graph draws random numbers or reads
** an input group other than X and P. The target and its programs are GC memory. */
plm_status plm_target_from_graph(plm_ctx *ctx, plm_graph *g, int lp, int dim, const int *x, const double *data,
                                 size_t ndata, plm_target **out);

/* The same for the sum of nodes terms[0..nterms-1] (inputs X only, no data): terms of one structure (a model's
** repeated observations) are evaluated together as vectors (plm_vsum, expr.h), the rest as by
** plm_target_from_graph, to which it falls back when no group forms. Same statuses. */
plm_status plm_target_from_terms(plm_ctx *ctx, plm_graph *g, int nterms, const int *terms, int dim, const int *x,
                                 plm_target **out);

/* Check a gradient against central finite differences at u: the largest relative error
** |g - fd| / max(1, |fd|) over coordinates, for tests and for users writing native gradients. */
double plm_target_check_grad(const plm_target *t, const double *u, double h);

#endif
