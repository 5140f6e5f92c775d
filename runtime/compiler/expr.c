/* expr.c -- expression graphs: construction through one hash-consing door, constant folding and exact
** identities, op names. Derivatives are in expr_grad.c, symbolic distributions in expr_dist.c, the compiler
** in expr_compile.c and the evaluator in expr_eval.c. See expr.h for the contracts. */
#include "expr_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *op_names[PLM_OP_NOPS] = {
    "const", "input", "neg", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "asin", "acos",
    "atan", "sinh", "cosh", "tanh", "logistic", "softplus", "abs", "lgamma", "digamma", "trigamma", "erf",
    "phi", "floor", "sign", "inv", "add", "sub", "mul", "div", "pow", "min", "max", "atan2", "lt", "le", "eq",
    "ne", "and", "or", "select", "fma", "native", "native_d", "stdnormal", "uniform", "sample", "sample_cat",
    "logpdf"};

const char *plm_op_name(plm_op op)
{
    return op >= 0 && op < PLM_OP_NOPS ? op_names[op] : "?";
}

int plm_op_arity(int op)
{
    if (op <= PLM_OP_INPUT) return 0;
    if (op <= PLM_OP_INV) return 1;
    if (op <= PLM_OP_OR) return 2;
    if (op <= PLM_OP_FMA) return 3;
    return -1;
}

int plm_op_is_draw(int op)
{
    return op == PLM_OP_STDNORMAL || op == PLM_OP_UNIFORM || op == PLM_OP_SAMPLE || op == PLM_OP_SAMPLE_CAT;
}

/* ---- graph construction ---- */

plm_graph *plm_graph_new(void)
{
    plm_graph *g = plm_gc_alloc(sizeof *g);
    plm_expr_init();   /* every program comes from a graph: the evaluator is ready before use */
    if (!g) return NULL;
    g->cap = 64;
    g->nodes = plm_gc_alloc_atomic((size_t)g->cap * sizeof *g->nodes);
    g->cappool = 128;
    g->pool = plm_gc_alloc_atomic((size_t)g->cappool * sizeof *g->pool);
    g->caphash = 128;
    g->hash = plm_gc_alloc_atomic((size_t)g->caphash * sizeof *g->hash);
    if (!g->nodes || !g->pool || !g->hash) return NULL;
    return g;
}

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static uint64_t node_hash(const plm_graph *g, const plm_node *nd)
{
    uint64_t h = (uint64_t)nd->op * 31 + (uint64_t)nd->n, bits;
    int i;
    memcpy(&bits, &nd->v, sizeof bits);
    h = mix(h, bits);
    h = mix(h, (uint64_t)(unsigned)nd->grp << 32 | (unsigned)nd->idx);
    h = mix(h, (uint64_t)(uintptr_t)nd->fn);
    h = mix(h, nd->uniq);
    for (i = 0; i < nd->n; i++) h = mix(h, (uint64_t)g->pool[nd->arg + i]);
    return h;
}

static int node_equal(const plm_graph *g, const plm_node *x, const int *xargs, const plm_node *y)
{
    if (x->op != y->op || x->n != y->n || x->grp != y->grp || x->idx != y->idx || x->fn != y->fn ||
        x->uniq != y->uniq || memcmp(&x->v, &y->v, sizeof x->v) != 0)
        return 0;
    return x->n == 0 || memcmp(xargs, g->pool + y->arg, (size_t)x->n * sizeof *xargs) == 0;
}

static int rehash(plm_graph *g, int cap)
{
    int *h = plm_gc_alloc_atomic((size_t)cap * sizeof *h), i;
    if (!h) return -1;
    for (i = 0; i < g->n; i++) {
        uint64_t k = node_hash(g, &g->nodes[i]) & (uint64_t)(cap - 1);
        while (h[k]) k = (k + 1) & (uint64_t)(cap - 1);
        h[k] = i + 1;
    }
    g->hash = h;
    g->caphash = cap;
    return 0;
}

/* Find or append node nd with arguments args: the single door through which nodes enter a graph. */
static int intern(plm_graph *g, plm_node nd, const int *args)
{
    uint64_t k;
    int i, id;
    for (i = 0; i < nd.n; i++)
        if (args[i] < 0) return -1;
    /* hash with the arguments in a temporary pool slot: append them first, drop them if found */
    if (g->npool + nd.n > g->cappool) {
        int cap = 2 * (g->npool + nd.n);
        int *p = plm_gc_alloc_atomic((size_t)cap * sizeof *p);
        if (!p) return -1;
        memcpy(p, g->pool, (size_t)g->npool * sizeof *p);
        g->pool = p;
        g->cappool = cap;
    }
    if (nd.n) memcpy(g->pool + g->npool, args, (size_t)nd.n * sizeof *args);
    nd.arg = g->npool;
    k = node_hash(g, &nd) & (uint64_t)(g->caphash - 1);
    while (g->hash[k]) {
        id = g->hash[k] - 1;
        if (node_equal(g, &nd, args, &g->nodes[id])) return id;
        k = (k + 1) & (uint64_t)(g->caphash - 1);
    }
    if (g->n == g->cap) {
        int cap = 2 * g->cap;
        plm_node *p = plm_gc_alloc_atomic((size_t)cap * sizeof *p);
        if (!p) return -1;
        memcpy(p, g->nodes, (size_t)g->n * sizeof *p);
        g->nodes = p;
        g->cap = cap;
    }
    id = g->n++;
    g->nodes[id] = nd;
    g->npool += nd.n;
    g->hash[k] = id + 1;
    if (2 * g->n > g->caphash && rehash(g, 2 * g->caphash)) return -1;
    return id;
}

int plm_graph_const(plm_graph *g, double v)
{
    plm_node nd = {0};
    nd.op = PLM_OP_CONST;
    if (v == 0) v = 0.0;   /* -0 and 0 are one constant */
    nd.v = v;
    return intern(g, nd, NULL);
}

int plm_graph_input(plm_graph *g, int group, int index)
{
    plm_node nd = {0};
    nd.op = PLM_OP_INPUT;
    nd.grp = group;
    nd.idx = index;
    return intern(g, nd, NULL);
}

int plm_graph_is_const(const plm_graph *g, int id, double *v)
{
    if (id < 0 || id >= g->n || g->nodes[id].op != PLM_OP_CONST) {
        if (v) *v = NAN;
        return 0;
    }
    if (v) *v = g->nodes[id].v;
    return 1;
}

int plm_graph_size(const plm_graph *g)
{
    return g->n;
}

int plm_graph_node(const plm_graph *g, int id, int *nargs, const int **args)
{
    if (id < 0 || id >= g->n) return -1;
    if (nargs) *nargs = g->nodes[id].n;
    if (args) *args = g->pool + g->nodes[id].arg;
    return g->nodes[id].op;
}

int plm_graph_is_input(const plm_graph *g, int id, int *group, int *index)
{
    if (id < 0 || id >= g->n || g->nodes[id].op != PLM_OP_INPUT) return 0;
    if (group) *group = g->nodes[id].grp;
    if (index) *index = g->nodes[id].idx;
    return 1;
}

int plm_graph_isk(const plm_graph *g, int id, double k)
{
    double v;
    return plm_graph_is_const(g, id, &v) && v == k;
}

int plm_op_commutative(int op)
{
    return op == PLM_OP_ADD || op == PLM_OP_MUL || op == PLM_OP_MIN || op == PLM_OP_MAX || op == PLM_OP_EQ ||
           op == PLM_OP_NE || op == PLM_OP_AND || op == PLM_OP_OR;
}

int plm_graph_op(plm_graph *g, plm_op op, int a, int b, int c)
{
    int ar = plm_op_arity(op), args[3], i, allk = 1;
    double v[3] = {0, 0, 0};
    plm_node nd = {0};
    if (ar < 1) return -1;
    args[0] = a, args[1] = b, args[2] = c;
    for (i = 0; i < ar; i++) {
        if (args[i] < 0 || args[i] >= g->n) return -1;
        if (!plm_graph_is_const(g, args[i], &v[i])) allk = 0;
    }
    if (allk) return plm_graph_const(g, plm_op_eval(op, v[0], v[1], v[2]));
    /* identities that keep every finite result exact */
    switch (op) {
    case PLM_OP_NEG:
        if (g->nodes[a].op == PLM_OP_NEG) return g->pool[g->nodes[a].arg];
        break;
    case PLM_OP_LOG:
        if (g->nodes[a].op == PLM_OP_EXP) return g->pool[g->nodes[a].arg];
        break;
    case PLM_OP_ADD:
        if (plm_graph_isk(g, a, 0)) return b;
        if (plm_graph_isk(g, b, 0)) return a;
        if (g->nodes[b].op == PLM_OP_NEG) return plm_graph_op(g, PLM_OP_SUB, a, g->pool[g->nodes[b].arg], -1);
        if (g->nodes[a].op == PLM_OP_NEG) return plm_graph_op(g, PLM_OP_SUB, b, g->pool[g->nodes[a].arg], -1);
        break;
    case PLM_OP_SUB:
        if (plm_graph_isk(g, b, 0)) return a;
        if (plm_graph_isk(g, a, 0)) return plm_graph_op(g, PLM_OP_NEG, b, -1, -1);
        if (g->nodes[b].op == PLM_OP_NEG) return plm_graph_op(g, PLM_OP_ADD, a, g->pool[g->nodes[b].arg], -1);
        break;
    case PLM_OP_MUL:
        if (plm_graph_isk(g, a, 1)) return b;
        if (plm_graph_isk(g, b, 1)) return a;
        if (plm_graph_isk(g, a, 0) || plm_graph_isk(g, b, 0)) return plm_graph_const(g, 0);
        if (plm_graph_isk(g, a, -1)) return plm_graph_op(g, PLM_OP_NEG, b, -1, -1);
        if (plm_graph_isk(g, b, -1)) return plm_graph_op(g, PLM_OP_NEG, a, -1, -1);
        break;
    case PLM_OP_DIV:
        if (plm_graph_isk(g, b, 1)) return a;
        if (plm_graph_isk(g, a, 1)) return plm_graph_op(g, PLM_OP_INV, b, -1, -1);
        /* x / k -> x * (1/k) when 1/k is exact (powers of two): same result, a cheaper instruction */
        if (plm_graph_is_const(g, b, &v[1]) && v[1] != 0) {
            int e;
            double m = frexp(v[1], &e);
            if (fabs(m) == 0.5) return plm_graph_op(g, PLM_OP_MUL, a, plm_graph_const(g, 1 / v[1]), -1);
        }
        break;
    case PLM_OP_POW:
        if (plm_graph_is_const(g, b, &v[1])) {
            if (v[1] == 1) return a;
            if (v[1] == 0) return plm_graph_const(g, 1);
            if (v[1] == 2) return plm_graph_op(g, PLM_OP_MUL, a, a, -1);
            if (v[1] == 3) return plm_graph_op(g, PLM_OP_MUL, plm_graph_op(g, PLM_OP_MUL, a, a, -1), a, -1);
            if (v[1] == -1) return plm_graph_op(g, PLM_OP_INV, a, -1, -1);
        }
        break;
    case PLM_OP_SELECT:
        if (plm_graph_is_const(g, a, &v[0])) return v[0] != 0 ? b : c;
        if (b == c) return b;
        break;
    default:
        break;
    }
    if (plm_op_commutative(op) && args[0] > args[1]) {
        int t = args[0];
        args[0] = args[1];
        args[1] = t;
    }
    nd.op = op;
    nd.n = ar;
    return intern(g, nd, args);
}

static int native_node(plm_graph *g, int op, const plm_native *fn, int k, const int *args)
{
    plm_node nd = {0};
    double x[PLM_NATIVE_MAXARGS] = {0};
    int i, allk = 1;
    if (!fn || fn->nargs < 0 || fn->nargs > PLM_NATIVE_MAXARGS || !fn->fn) return -1;
    if (op == PLM_OP_NATIVE_D && !fn->grad) return -1;
    for (i = 0; i < fn->nargs; i++) {
        if (args[i] < 0 || args[i] >= g->n) return -1;
        if (!plm_graph_is_const(g, args[i], &x[i])) allk = 0;
    }
    if (allk) return plm_graph_const(g, op == PLM_OP_NATIVE ? plm_native_call(fn, x) : plm_native_call_d(fn, x, k));
    nd.op = op;
    nd.n = fn->nargs;
    nd.fn = fn;
    nd.idx = k;
    return intern(g, nd, args);
}

int plm_graph_native(plm_graph *g, const plm_native *fn, const int *args)
{
    return native_node(g, PLM_OP_NATIVE, fn, 0, args);
}

int plm_graph_native_d(plm_graph *g, const plm_native *fn, int k, const int *args)
{
    return native_node(g, PLM_OP_NATIVE_D, fn, k, args);
}

int plm_graph_draw(plm_graph *g, plm_op op, int kind, int np, const int *params)
{
    plm_node nd = {0};
    if (!plm_op_is_draw(op) || np < 0) return -1;
    nd.op = op;
    nd.idx = kind;
    nd.n = (op == PLM_OP_STDNORMAL || op == PLM_OP_UNIFORM) ? 0 : np;
    nd.uniq = ++g->ndraws;
    return intern(g, nd, params);
}

int plm_graph_logpdf_generic(plm_graph *g, int kind, int np, const int *p, int x)
{
    plm_node nd = {0};
    int args[4], i;
    if (np > 3) return -1;
    for (i = 0; i < np; i++) args[i] = p[i];
    args[np] = x;
    nd.op = PLM_OP_LOGPDF;
    nd.idx = kind;
    nd.n = np + 1;
    return intern(g, nd, args);
}

/* ---- extraction ---- */

/* Open-addressing map from node ids of the source graph to ids of the copy (-1 until copied). */
typedef struct idmap {
    int *key, *val, cap, n;
} idmap;

static int idmap_slot(const idmap *m, int key)
{
    unsigned k = ((unsigned)key * 2654435761u) & (unsigned)(m->cap - 1);
    while (m->key[k] >= 0 && m->key[k] != key) k = (k + 1) & (unsigned)(m->cap - 1);
    return (int)k;
}

static int idmap_grow(idmap *m)
{
    idmap nm;
    int i;
    nm.cap = m->cap ? 2 * m->cap : 256;
    nm.n = m->n;
    nm.key = malloc((size_t)nm.cap * sizeof *nm.key);
    nm.val = malloc((size_t)nm.cap * sizeof *nm.val);
    if (!nm.key || !nm.val) return free(nm.key), free(nm.val), -1;
    for (i = 0; i < nm.cap; i++) nm.key[i] = -1;
    for (i = 0; i < m->cap; i++)
        if (m->key[i] >= 0) {
            int s = idmap_slot(&nm, m->key[i]);
            nm.key[s] = m->key[i], nm.val[s] = m->val[i];
        }
    free(m->key), free(m->val);
    *m = nm;
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

plm_status plm_graph_extract(plm_ctx *ctx, const plm_graph *g, int nout, const int *outs, int nmove, const int *move,
                             int to_grp, plm_graph **sub, int *subouts)
{
    idmap m = {0};
    int *stack = NULL, *ids = NULL, top = 0, capst = 0, n = 0, i, j;
    plm_graph *h = plm_graph_new();
    plm_status st = PLM_OK;
    *sub = NULL;
    if (!h || idmap_grow(&m)) {
        st = plm_fail(ctx, PLM_ENOMEM, "graph: out of memory");
        goto done;
    }
    /* the set of nodes the outputs read, by a walk with the map as its visited set */
    for (i = 0; i < nout; i++) {
        if (outs[i] < 0 || outs[i] >= g->n) {
            st = plm_fail(ctx, PLM_EINVAL, "graph: output %d is not a node", i);
            goto done;
        }
        if (top + 1 > capst) {
            int *ns = realloc(stack, (size_t)(capst = 2 * capst + 64) * sizeof *ns);
            if (!ns) goto nomem;
            stack = ns;
        }
        stack[top++] = outs[i];
    }
    while (top) {
        int id = stack[--top], s;
        const plm_node *nd = &g->nodes[id];
        if (2 * (m.n + 1) > m.cap && idmap_grow(&m)) goto nomem;
        s = idmap_slot(&m, id);
        if (m.key[s] >= 0) continue;
        m.key[s] = id, m.val[s] = -1, m.n++;
        if (top + nd->n > capst) {
            int *ns = realloc(stack, (size_t)(capst = 2 * capst + nd->n + 64) * sizeof *ns);
            if (!ns) goto nomem;
            stack = ns;
        }
        for (j = 0; j < nd->n; j++) stack[top++] = g->pool[nd->arg + j];
    }
    if (!(ids = malloc(((size_t)m.n + 1) * sizeof *ids))) goto nomem;
    for (i = 0; i < m.cap; i++)
        if (m.key[i] >= 0) ids[n++] = m.key[i];
    qsort(ids, (size_t)n, sizeof *ids, cmp_int);   /* ids are topological: arguments come first */
    for (i = 0; i < n; i++) {
        plm_node nd = g->nodes[ids[i]];
        int args[64], *a = nd.n <= 64 ? args : malloc((size_t)nd.n * sizeof *a), id;
        if (!a) goto nomem;
        for (j = 0; j < nd.n; j++) a[j] = m.val[idmap_slot(&m, g->pool[nd.arg + j])];
        if (plm_op_is_draw(nd.op)) nd.uniq = ++h->ndraws;
        for (j = 0; nd.op == PLM_OP_INPUT && nd.grp == PLM_GRP_X && j < nmove; j++)
            if (nd.idx == move[j]) {
                nd.grp = to_grp, nd.idx = j;
                break;
            }
        id = intern(h, nd, a);
        if (a != args) free(a);
        if (id < 0) goto nomem;
        m.val[idmap_slot(&m, ids[i])] = id;
    }
    for (i = 0; i < nout; i++) subouts[i] = m.val[idmap_slot(&m, outs[i])];
    *sub = h;
    goto done;
nomem:
    st = plm_fail(ctx, PLM_ENOMEM, "graph: out of memory");
done:
    free(m.key), free(m.val), free(stack), free(ids);
    return st;
}
