/* expr.h -- the expression graph of traced models and its compiler to block-evaluated instruction sequences.
** A plm_graph is an append-only DAG of scalar nodes (ids are ints in topological order); construction
** hash-conses (a node built twice is one node) and folds constants. A plm_prog is a compiled set of outputs:
** nodes that depend only on "uniform" inputs (parameters, time, covariates) are evaluated once per call,
** the rest run as a linear instruction sequence over blocks of PLM_EXPR_BLOCK particles, one switch per
** instruction per block. Graphs and programs are GC memory: never free them.
** Node builders return a node id >= 0, or -1 when memory ran out or an argument was -1 (errors propagate,
** so a caller may check only the final id). */
#ifndef PLM_EXPR_H
#define PLM_EXPR_H

#include <stddef.h>

#include "ctx.h"
#include "dist.h"
#include "rng.h"

#define PLM_EXPR_BLOCK 256

/* Input groups. A group is bound at evaluation time to a vector (uniform: the same for every particle)
** or to a component-major array (varying: component k of particle i at p[k*ld + i]); which groups are
** varying is fixed when a program is compiled. The names are the conventions of ssm and sde. */
enum {
    PLM_GRP_P = 0,   /* parameters */
    PLM_GRP_T,       /* time and step quantities (t, dt, sqrt(dt)) */
    PLM_GRP_C,       /* covariates at the current time */
    PLM_GRP_X,       /* the state (previous state in a transition) */
    PLM_GRP_Y,       /* an observation */
    PLM_GRP_Z,       /* a second state (the new state whose transition density is scored) */
    PLM_NGROUPS
};

typedef enum plm_op {
    PLM_OP_CONST, PLM_OP_INPUT,
    /* unary */
    PLM_OP_NEG, PLM_OP_EXP, PLM_OP_LOG, PLM_OP_LOG1P, PLM_OP_EXPM1, PLM_OP_SQRT, PLM_OP_SIN, PLM_OP_COS,
    PLM_OP_TAN, PLM_OP_ASIN, PLM_OP_ACOS, PLM_OP_ATAN, PLM_OP_SINH, PLM_OP_COSH, PLM_OP_TANH,
    PLM_OP_LOGISTIC, PLM_OP_SOFTPLUS, PLM_OP_ABS, PLM_OP_LGAMMA, PLM_OP_DIGAMMA, PLM_OP_TRIGAMMA,
    PLM_OP_ERF, PLM_OP_PHI, PLM_OP_FLOOR, PLM_OP_SIGN, PLM_OP_INV,
    /* binary */
    PLM_OP_ADD, PLM_OP_SUB, PLM_OP_MUL, PLM_OP_DIV, PLM_OP_POW, PLM_OP_MIN, PLM_OP_MAX, PLM_OP_ATAN2,
    PLM_OP_LT, PLM_OP_LE, PLM_OP_EQ, PLM_OP_NE, PLM_OP_AND, PLM_OP_OR,
    /* ternary */
    PLM_OP_SELECT,   /* a != 0 ? b : c */
    PLM_OP_FMA,      /* a * b + c: made by the compiler, also valid to build */
    /* n-ary */
    PLM_OP_NATIVE,   /* fn(args...) through a plain C pointer */
    PLM_OP_NATIVE_D, /* partial derivative k of a native function */
    PLM_OP_STDNORMAL,/* a fresh standard normal draw per particle (no arguments) */
    PLM_OP_UNIFORM,  /* a fresh uniform (0,1) draw per particle */
    PLM_OP_SAMPLE,   /* a draw of dist kind `kind` with the args as its raw parameters */
    PLM_OP_SAMPLE_CAT,/* a 0-based categorical draw with the args as probabilities */
    PLM_OP_LOGPDF,   /* plm_dist_logpdf1(kind, args[0..np-1], args[np]) */
    PLM_OP_NOPS
} plm_op;

#define PLM_NATIVE_MAXARGS 6

/* A native scalar function: fn takes nargs doubles and returns a double; grad (optional) takes the same
** doubles and a double* receiving the nargs partial derivatives. */
typedef struct plm_native {
    const char *name;
    int nargs;
    void *fn;
    void *grad;
} plm_native;

/* A graph and a compiled program are opaque: build and inspect them through the functions below. */
typedef struct plm_graph plm_graph;
typedef struct plm_prog plm_prog;

/* A new empty graph (GC memory), or NULL when memory ran out. */
plm_graph *plm_graph_new(void);

/* Leaf nodes. */
int plm_graph_const(plm_graph *g, double v);
int plm_graph_input(plm_graph *g, int group, int index);
/* An operation of 1, 2 or 3 arguments (unused ones are ignored); folds constants and simple identities. */
int plm_graph_op(plm_graph *g, plm_op op, int a, int b, int c);
/* A call of a native function; nargs must equal fn->nargs (<= PLM_NATIVE_MAXARGS). fn must outlive g. */
int plm_graph_native(plm_graph *g, const plm_native *fn, const int *args);
/* A fresh draw (never merged with another): op is PLM_OP_STDNORMAL, PLM_OP_UNIFORM, PLM_OP_SAMPLE (kind,
** np raw parameters) or PLM_OP_SAMPLE_CAT (np probabilities). */
int plm_graph_draw(plm_graph *g, plm_op op, int kind, int np, const int *params);

/* Value of a constant node (NAN when the node is not a constant); is_const says which. */
int plm_graph_is_const(const plm_graph *g, int id, double *v);
/* Number of nodes in g (their ids are 0..size-1). */
int plm_graph_size(const plm_graph *g);
/* The op of node id, or -1 when id is not a node of g. nargs and args (either may be NULL) receive its
** argument count and argument ids; args stays valid until g grows. */
int plm_graph_node(const plm_graph *g, int id, int *nargs, const int **args);
/* 1 when node id is an input, with its group and index in *group and *index (either may be NULL). */
int plm_graph_is_input(const plm_graph *g, int id, int *group, int *index);

/* A new graph (GC) holding only the nodes that outs[0..nout-1] depend on, with the same constants and inputs,
** except that input move[k] of group PLM_GRP_X becomes input k of group to_grp (nmove may be 0); subouts
** (may alias outs) receives the outputs' ids there. For callers that compile many small programs from one
** large graph (a compile costs the size of the graph it reads), and that vary a few coordinates per particle
** while the rest stay uniform. */
plm_status plm_graph_extract(plm_ctx *ctx, const plm_graph *g, int nout, const int *outs, int nmove, const int *move,
                             int to_grp, plm_graph **sub, int *subouts);

/* Symbolic reverse-mode derivative: res[j] = d out / d wrt[j] as new nodes (wrt are any nodes, usually
** inputs; draws are treated as independent of everything). PLM_ENOTSUP names an op without a derivative
** (a native function without grad, a generic logpdf). */
plm_status plm_graph_grad(plm_ctx *ctx, plm_graph *g, int out, int nwrt, const int *wrt, int *res);

/* Symbolic distributions: kind plus argument nodes. Scalar kinds: p[0..nparams-1] in plm_dist_info order.
** categorical: p = K probabilities. mvnormal: p = K means then K*K covariance entries (row-major). */
typedef struct plm_symdist {
    plm_dist_kind kind;
    int K;            /* categories or dimension, 0 for scalar kinds */
    int np;
    int *p;
} plm_symdist;

/* Dimension of a value of d (1, or K for mvnormal). */
int plm_symdist_dim(const plm_symdist *d);
/* Build the draw of d: out receives plm_symdist_dim(d) nodes. Categorical draws are 0-based. */
plm_status plm_symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, int *out);
/* Build log p(x | d) as one node; x holds plm_symdist_dim(d) nodes. */
plm_status plm_symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, const int *x, int *out);

/* ---- compiled programs ---- */

/* Compile outputs outs[0..nout-1] of g; groups whose bit is set in `varying` are per particle. The graph
** may grow afterwards (programs only read the nodes they were compiled from). */
plm_status plm_prog_compile(plm_ctx *ctx, const plm_graph *g, int nout, const int *outs, unsigned varying,
                            plm_prog **out);

/* Number of outputs of p. */
int plm_prog_nout(const plm_prog *p);

/* Sizes of a compiled program, for reports and benchmarks. */
typedef struct plm_prog_info {
    int nout;            /* outputs */
    int nlive;           /* graph nodes the outputs depend on */
    int ninstructions;   /* instructions in all */
    int nuniform;        /* of which in the uniform pre-pass (run once per call) */
    int nregisters;      /* block temporaries */
    int ndraws;          /* random draws per particle per evaluation */
} plm_prog_info;
void plm_prog_describe(const plm_prog *p, plm_prog_info *info);

/* Binding of one input group for an evaluation: uniform groups read p[idx]; varying ones p[idx*ld + i]. */
typedef struct plm_prog_in {
    const double *p;
    size_t ld;
} plm_prog_in;

/* Evaluate over particles 0..n-1: output o of particle i goes to out[o][i]. in has PLM_NGROUPS entries
** (unused groups may be {NULL, 0}); rng[i] is the stream of particle i (may be NULL when the program makes
** no draws). nthreads > 1 splits the particles by block across threads (results do not depend on it).
** Returns PLM_OK, PLM_ENOMEM, or PLM_EINVAL when an input the program reads is unbound. */
plm_status plm_prog_eval(plm_ctx *ctx, const plm_prog *p, size_t n, const plm_prog_in *in, double *const *out,
                         plm_rng *rng, int nthreads);

/* Low-level evaluation for callers that loop over steps themselves (SDE paths, fused engines): a workspace
** per thread (plm_prog_ws_init mallocs it; plm_prog_ws_free), plm_prog_uniforms after any change of the
** uniform inputs, then plm_prog_block for particles [first, first + m), m <= PLM_EXPR_BLOCK: varying inputs
** are read at p + idx*ld + first, outputs written at out[o] + first, streams rng[first + j]. No checks:
** call plm_prog_check once first. */
typedef struct plm_prog_ws {   /* fields are private to the evaluator */
    const plm_prog *p;
    double *u;
    double **R;
} plm_prog_ws;
plm_status plm_prog_ws_init(plm_ctx *ctx, plm_prog_ws *w, const plm_prog *p);
/* The same for blocks of at most `block` particles (1..PLM_EXPR_BLOCK): a caller that evaluates one point
** at a time (an MCMC target) keeps its temporaries contiguous, instead of one PLM_EXPR_BLOCK stride apart,
** where a few hundred of them alias in the cache. */
plm_status plm_prog_ws_init_block(plm_ctx *ctx, plm_prog_ws *w, const plm_prog *p, int block);
void plm_prog_ws_free(plm_prog_ws *w);
void plm_prog_uniforms(plm_prog_ws *w, const plm_prog_in *in);
void plm_prog_block(plm_prog_ws *w, const plm_prog_in *in, size_t first, size_t m, double *const *out, plm_rng *rng);
/* Evaluation at one point, many times over with the same addresses (the drift of a guided diffusion path, once
** per Euler step): plm_prog_point_init binds the varying inputs (read at in[g].p + idx * in[g].ld) and the outputs
** (written at out[o][0]) and decodes the program into direct addresses; it runs the uniform part once (again with
** plm_prog_uniforms(&pt->w, in) after a change of a uniform input). plm_prog_point_run evaluates the varying part:
** the same operations as plm_prog_block with m = 1, bit for bit. rng: the stream of a program that draws (else
** NULL). plm_prog_point_free releases it. No checks: call plm_prog_check once first. */
typedef struct plm_prog_point {   /* fields are private to the evaluator */
    plm_prog_ws w;
    void *code;
    int n;
    const plm_prog_in *in;
    plm_rng *rng;
} plm_prog_point;
plm_status plm_prog_point_init(plm_ctx *ctx, plm_prog_point *pt, const plm_prog *p, const plm_prog_in *in,
                               double *const *out, plm_rng *rng);
void plm_prog_point_run(plm_prog_point *pt);
void plm_prog_point_free(plm_prog_point *pt);
/* Does p read input idx of group grp? */
int plm_prog_uses(const plm_prog *p, int grp, int idx);
/* PLM_EINVAL when an input group the program reads is unbound in `in`, or it draws and with_rng is 0. */
plm_status plm_prog_check(plm_ctx *ctx, const plm_prog *p, const plm_prog_in *in, int with_rng);

/* ---- sums of many terms, vectorised over terms of one structure (expr_vec.c) ---- */

/* A compiled sum of terms (nodes of g, each a term of a log density over the point x: inputs of group X) with
** its gradient by x[0..dim-1]. Terms whose private subgraphs (the nodes no other term reads) have one structure
** -- the same ops, differing only in the constants and shared nodes (the leaves) they read -- form a group when
** there are at least 4 of them: the structure compiles once, as a template over its leaves, and runs over the
** group's terms as over particles, with the leaves gathered by index, the terms summed and their partials
** scattered back onto the leaves. A scalar program computes the ungrouped terms and the leaves; the gradient
** flows from the leaves to x through a second one (d/dx of ungrouped terms + sum of seed_l * leaf_l, the seeds
** being the partials summed by leaf). Equal to the plain sum up to rounding (summation order). GC memory.
** PLM_ENOTSUP when the terms read an input group other than X, draw, or have no derivative: the caller then
** compiles the plain sum. g grows (the scalar parts and the gradient are built in it). */
typedef struct plm_vsum plm_vsum;
typedef struct plm_vsum_ws plm_vsum_ws;
plm_status plm_vsum_compile(plm_ctx *ctx, plm_graph *g, int nterms, const int *terms, int dim, const int *x,
                            plm_vsum **out);

typedef struct plm_vsum_info {
    int nterms, ngroups;
    int ngrouped;        /* terms in groups */
    int nleaves;         /* distinct non-constant leaves the groups read */
    int nscalar_ins;     /* instructions of the scalar programs (value and gradient) */
    int nvector_ins;     /* instructions of the groups' templates (value and partials), each run per group */
} plm_vsum_info;
void plm_vsum_describe(const plm_vsum *v, plm_vsum_info *info);

/* A workspace per thread that reads the point at x (dim doubles; the caller writes it before each evaluation),
** or NULL when memory ran out. plm_vsum_eval returns the sum at x and, when grad is not NULL, writes its
** gradient there (dim doubles). */
plm_vsum_ws *plm_vsum_ws_new(const plm_vsum *v, const double *x);
void plm_vsum_ws_free(plm_vsum_ws *w);
double plm_vsum_eval(plm_vsum_ws *w, double *grad);

/* The scalar value of a unary, binary or ternary op (NAN for other ops): the same kernels the evaluator runs,
** so plain-Lua values of plume.math functions round exactly as compiled ones. */
double plm_op_eval(plm_op op, double a, double b, double c);

/* Names for messages and listings. */
const char *plm_op_name(plm_op op);

#endif
