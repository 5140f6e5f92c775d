/* expr_impl.h -- what the files of the expression compiler share and nobody else sees: the graph (expr.c),
** derivatives (expr_grad.c), symbolic distributions (expr_dist.c), the compiler (expr_compile.c) and the
** evaluator (expr_eval.c). Not installed; users include expr.h. */
#ifndef PLM_EXPR_IMPL_H
#define PLM_EXPR_IMPL_H

#include "expr.h"

#define LOG_SQRT_2PI 0.91893853320467274178
#define LOG_PI 1.14472988584940017414
#define INV_SQRT_2PI 0.39894228040143267794

/* ---- the graph (expr.c) ---- */

typedef struct plm_node {
    int op;
    int n;            /* argument count */
    int arg;          /* offset of the arguments in the graph's argument pool */
    int grp, idx;     /* input: group and index; sample/logpdf: kind; native_d: which partial */
    double v;         /* constant value */
    const plm_native *fn;
    unsigned uniq;    /* draws get distinct values so hash-consing never merges two draws */
} plm_node;

struct plm_graph {
    plm_node *nodes;
    int n, cap;
    int *pool;
    int npool, cappool;
    int *hash;        /* open addressing, node id + 1, 0 = empty */
    int caphash;
    unsigned ndraws;
};

/* ---- compiled programs (built by expr_compile.c, run by expr_eval.c) ---- */

typedef struct plm_ins {
    int op, mode;        /* mode bit k set: argument k is uniform (a scalar) */
    int d, a, b, c;      /* registers */
    int kind, n, argoff; /* sample/logpdf kind; n-ary argument count and offset in the register-list pool */
    double k;
    const plm_native *fn;
} plm_ins;

struct plm_prog {
    const plm_graph *g;
    unsigned varying;            /* bit g set: group g is varying */
    int nout;
    int *outreg, *outuni;        /* register of output o, and whether it is uniform */
    plm_ins *uins, *vins;        /* uniform pre-pass (run once per call) and per-block instructions */
    int nuins, nvins;
    int *regpool;                /* argument registers of n-ary instructions */
    int nuni;                    /* uniform slots: registers 0..nuni-1 */
    int nvin;                    /* varying input slots: registers nuni..nuni+nvin-1 */
    int *vin_grp, *vin_idx;
    int ntmp;                    /* temporaries: registers nuni+nvin.. */
    int ndraws;                  /* draws per particle per evaluation */
    int nlive;                   /* live nodes (for reports) */
    int native_state;            /* expr_native.c: 0 not tried, 1 native_fn is set, -1 tried and failed */
    void *native_fn;             /* its plm_prog_native_fn */
};

/* ---- ops (expr.c) ---- */

/* 0 for leaves, 1..3 for fixed-arity ops, -1 for n-ary ones. */
int plm_op_arity(int op);
/* A fresh random draw (never merged, independent of everything for derivatives). */
int plm_op_is_draw(int op);
int plm_op_commutative(int op);

/* ---- graph helpers (expr.c) ---- */

/* Is node id the constant k? */
int plm_graph_isk(const plm_graph *g, int id, double k);
/* Partial derivative k of a native call with argument nodes args (fn->grad must be set). */
int plm_graph_native_d(plm_graph *g, const plm_native *fn, int k, const int *args);
/* plm_dist_logpdf1 of kind with np <= 3 parameter nodes p at node x, as one opaque node (no derivative). */
int plm_graph_logpdf_generic(plm_graph *g, int kind, int np, const int *p, int x);

/* Node builders for expr_grad.c and expr_dist.c: they expect `plm_graph *g` in scope, and propagate -1. */
#define K(v) plm_graph_const(g, (v))
#define OP1(o, a) plm_graph_op(g, (o), (a), -1, -1)
#define OP2(o, a, b) plm_graph_op(g, (o), (a), (b), -1)
#define ADD(a, b) OP2(PLM_OP_ADD, a, b)
#define SUB(a, b) OP2(PLM_OP_SUB, a, b)
#define MUL(a, b) OP2(PLM_OP_MUL, a, b)
#define DIV(a, b) OP2(PLM_OP_DIV, a, b)
#define SEL(c, a, b) plm_graph_op(g, PLM_OP_SELECT, (c), (a), (b))

/* ---- the evaluator (expr_eval.c) ---- */

/* plm_prog_block without the copies of the outputs, for a program that makes no draws; then plm_prog_output
** gives output o in place: its block of m values (valid until the next run on w), or its one value when it is
** uniform (*uniform = 1). For callers that read each output once. */
void plm_prog_run_block(plm_prog_ws *w, const plm_prog_in *in, size_t first, size_t m);
static inline const double *plm_prog_output(const plm_prog_ws *w, int o, int *uniform)
{
    *uniform = w->p->outuni[o];
    return *uniform ? w->u + w->p->outreg[o] : w->R[w->p->outreg[o]];
}

/* Prepare the evaluator's tables once per process (thread-safe; cheap after the first call). */
void plm_expr_init(void);

/* A native function at x (folding uses it on constants, the evaluator per particle). */
static inline double plm_native_call(const plm_native *f, const double *x)
{
    switch (f->nargs) {
    case 0: return ((double (*)(void))f->fn)();
    case 1: return ((double (*)(double))f->fn)(x[0]);
    case 2: return ((double (*)(double, double))f->fn)(x[0], x[1]);
    case 3: return ((double (*)(double, double, double))f->fn)(x[0], x[1], x[2]);
    case 4: return ((double (*)(double, double, double, double))f->fn)(x[0], x[1], x[2], x[3]);
    case 5: return ((double (*)(double, double, double, double, double))f->fn)(x[0], x[1], x[2], x[3], x[4]);
    default:
        return ((double (*)(double, double, double, double, double, double))f->fn)(x[0], x[1], x[2], x[3], x[4],
                                                                                    x[5]);
    }
}

/* Partial derivative k of a native function at x, through its grad function. */
static inline double plm_native_call_d(const plm_native *f, const double *x, int k)
{
    double d[PLM_NATIVE_MAXARGS] = {0};
    switch (f->nargs) {
    case 1: ((void (*)(double, double *))f->grad)(x[0], d); break;
    case 2: ((void (*)(double, double, double *))f->grad)(x[0], x[1], d); break;
    case 3: ((void (*)(double, double, double, double *))f->grad)(x[0], x[1], x[2], d); break;
    case 4: ((void (*)(double, double, double, double, double *))f->grad)(x[0], x[1], x[2], x[3], d); break;
    case 5:
        ((void (*)(double, double, double, double, double, double *))f->grad)(x[0], x[1], x[2], x[3], x[4], d);
        break;
    default:
        ((void (*)(double, double, double, double, double, double, double *))f->grad)(x[0], x[1], x[2], x[3], x[4],
                                                                                       x[5], d);
    }
    return d[k];
}

#endif
