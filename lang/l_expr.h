/* l_expr.h -- symbolic Lua values for the tracing compiler, defined in l_expr.c and
** l_symdist.c, used by l_compile.c, l_native.c, l_dist.c, l_ssm.c and l_sde.c.
** A symbol is a userdata naming a node of a plm_graph; the graph is held by a "plume.graph" userdata that
** every symbol keeps alive (its user value). Internal to lang/. */
#ifndef PLM_L_EXPR_H
#define PLM_L_EXPR_H

#include "lutil.h"

#define PLM_L_SYM "plume.sym"
#define PLM_L_SYMDIST "plume.symdist"
#define PLM_L_GRAPH "plume.graph"

typedef struct plm_l_sym {
    plm_graph *g;
    int id;
} plm_l_sym;

/* A symbolic distribution: d.p points at p (np nodes). Categorical values are 1-based in Lua, 0-based in
** the graph: `shift` (1 for categorical) is added to draws and taken from values before scoring. */
typedef struct plm_l_symdist {
    plm_graph *g;
    plm_symdist d;
    int shift;
    int p[];
} plm_l_symdist;

/* Push a new empty graph holder; returns its graph. */
plm_graph *plm_l_newgraph(lua_State *L);
/* Push a symbol for node id of the graph whose holder is at holder_idx. */
void plm_l_pushsym(lua_State *L, int holder_idx, int id);

/* Inside a method of a tracing handle (the userdata at index 1, whose user value 1 holds the graph): push the
** value of nodes v, a symbol when dim is 1, else a table of dim symbols (l_static.c). */
void plm_l_push_syms(lua_State *L, const int *v, int dim);
plm_l_sym *plm_l_tosym(lua_State *L, int idx);
/* Is the value at idx a symbol, or a table (one level, or rows of a table) holding one? */
int plm_l_hassym(lua_State *L, int idx);
/* The node of the number, boolean or symbol at idx in g (numbers become constants). Raises an error naming
** `what` for other values or symbols of another graph. */
int plm_l_tonode(lua_State *L, int idx, plm_graph *g, const char *what);
/* plume.dist.<kind>(...) with symbolic arguments (called by l_dist.c): pushes a plume.symdist. */
int plm_l_symdist_new(lua_State *L, plm_dist_kind kind);
/* The distribution at idx (plume.symdist of g, or a numeric plume.dist made constant in g) as a
** symbolic distribution valid while the value stays on the stack; NULL when idx is neither. */
plm_l_symdist *plm_l_tosymdist(lua_State *L, int idx, plm_graph *g);
/* Draw and score helpers applying the categorical shift. */
plm_status plm_l_symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_l_symdist *d, int *out);
plm_status plm_l_symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_l_symdist *d, const int *x, int *out);
/* The first symbol among stack slots from..to (its slot in *where when where is not NULL), or NULL. */
plm_l_sym *plm_l_firstsym(lua_State *L, int from, int to, int *where);
/* Push a symbol for node id of the graph of the symbol or symbolic distribution at idx. */
void plm_l_pushlike(lua_State *L, int idx, int id);
/* Call the function at the stack top - nargs with nargs arguments under a handler that turns errors about
** symbols into tracing advice ("use plume.math.exp"), prefixed by `what`. Leaves nres results. */
void plm_l_trace_call(lua_State *L, int nargs, int nres, const char *what);
/* "file:line" where the Lua function at idx is defined (static buffer of the caller). */
void plm_l_funcwhere(lua_State *L, int idx, char *buf, size_t n);

/* Push ssm/sde value idx's `params` as Lua sees them: a table name -> current value, or the prior where the value is
** unset (NaN). Its user value 1 holds the `names` and `priors` tables; np values in params. */
void plm_l_push_params(lua_State *L, int idx, int np, const double *params);

/* The runtime object behind a plume.ssm / plume.sde value at idx, or NULL (for engines and benchmarks). */
plm_ssm *plm_l_tossm(lua_State *L, int idx);
plm_sde *plm_l_tosde(lua_State *L, int idx);

#endif
