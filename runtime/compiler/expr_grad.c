/* expr_grad.c -- symbolic reverse-mode derivatives over an expression graph: the adjoint of each node is
** built as new nodes of the same graph, so a derivative compiles like any other output. */
#include "expr_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void acc(plm_graph *g, int *adj, int node, int contrib)
{
    if (plm_graph_isk(g, contrib, 0)) return;
    adj[node] = adj[node] == -2 ? contrib : ADD(adj[node], contrib);
}

plm_status plm_graph_grad(plm_ctx *ctx, plm_graph *g, int out, int nwrt, const int *wrt, int *res)
{
    int n0 = g->n, i, j;
    unsigned char *dep, *anc;
    int *adj;
    if (out < 0 || out >= n0) return plm_fail(ctx, PLM_EINVAL, "gradient: invalid output node %d", out);
    dep = calloc((size_t)n0, 2);
    adj = malloc((size_t)n0 * sizeof *adj);
    if (!dep || !adj) {
        free(dep);
        free(adj);
        return plm_fail(ctx, PLM_ENOMEM, "gradient: out of memory");
    }
    anc = dep + n0;
    for (j = 0; j < nwrt; j++)
        if (wrt[j] >= 0 && wrt[j] < n0) dep[wrt[j]] = 1;
    /* dep: depends on some wrt node; anc: an ancestor of out. Only nodes with both carry adjoints. */
    for (i = 0; i < n0; i++) {
        const plm_node *nd = &g->nodes[i];
        if (dep[i] || plm_op_is_draw(nd->op)) continue;
        for (j = 0; j < nd->n; j++)
            if (dep[g->pool[nd->arg + j]]) dep[i] = 1;
    }
    anc[out] = 1;
    for (i = out; i >= 0; i--) {
        const plm_node *nd = &g->nodes[i];
        if (!anc[i]) continue;
        for (j = 0; j < nd->n; j++) anc[g->pool[nd->arg + j]] = 1;
    }
    for (i = 0; i < n0; i++) adj[i] = -2;   /* -2: zero */
    adj[out] = K(1);
    for (i = out; i >= 0; i--) {
        plm_node nd = g->nodes[i];   /* a copy: the node array moves as nodes are appended */
        int a, b, c, G = adj[i], self = i, isw = 0;
        if (G == -2 || !anc[i] || !dep[i]) continue;
        if (G < 0) goto oom;
        for (j = 0; j < nwrt; j++)
            if (wrt[j] == i) isw = 1;
        if (isw) continue;   /* a wrt node is a leaf of the derivative */
        a = nd.n > 0 ? g->pool[nd.arg] : -1;
        b = nd.n > 1 ? g->pool[nd.arg + 1] : -1;
        c = nd.n > 2 ? g->pool[nd.arg + 2] : -1;
        switch (nd.op) {
        case PLM_OP_NEG: acc(g, adj, a, OP1(PLM_OP_NEG, G)); break;
        case PLM_OP_EXP: acc(g, adj, a, MUL(G, self)); break;
        case PLM_OP_LOG: acc(g, adj, a, DIV(G, a)); break;
        case PLM_OP_LOG1P: acc(g, adj, a, DIV(G, ADD(a, K(1)))); break;
        case PLM_OP_EXPM1: acc(g, adj, a, MUL(G, ADD(self, K(1)))); break;
        case PLM_OP_SQRT: acc(g, adj, a, DIV(MUL(G, K(0.5)), self)); break;
        case PLM_OP_SIN: acc(g, adj, a, MUL(G, OP1(PLM_OP_COS, a))); break;
        case PLM_OP_COS: acc(g, adj, a, OP1(PLM_OP_NEG, MUL(G, OP1(PLM_OP_SIN, a)))); break;
        case PLM_OP_TAN: acc(g, adj, a, MUL(G, ADD(K(1), MUL(self, self)))); break;
        case PLM_OP_ASIN: acc(g, adj, a, DIV(G, OP1(PLM_OP_SQRT, SUB(K(1), MUL(a, a))))); break;
        case PLM_OP_ACOS: acc(g, adj, a, OP1(PLM_OP_NEG, DIV(G, OP1(PLM_OP_SQRT, SUB(K(1), MUL(a, a)))))); break;
        case PLM_OP_ATAN: acc(g, adj, a, DIV(G, ADD(K(1), MUL(a, a)))); break;
        case PLM_OP_SINH: acc(g, adj, a, MUL(G, OP1(PLM_OP_COSH, a))); break;
        case PLM_OP_COSH: acc(g, adj, a, MUL(G, OP1(PLM_OP_SINH, a))); break;
        case PLM_OP_TANH: acc(g, adj, a, MUL(G, SUB(K(1), MUL(self, self)))); break;
        case PLM_OP_LOGISTIC: acc(g, adj, a, MUL(G, MUL(self, SUB(K(1), self)))); break;
        case PLM_OP_SOFTPLUS: acc(g, adj, a, MUL(G, OP1(PLM_OP_LOGISTIC, a))); break;
        case PLM_OP_ABS: acc(g, adj, a, MUL(G, OP1(PLM_OP_SIGN, a))); break;
        case PLM_OP_LGAMMA: acc(g, adj, a, MUL(G, OP1(PLM_OP_DIGAMMA, a))); break;
        case PLM_OP_DIGAMMA: acc(g, adj, a, MUL(G, OP1(PLM_OP_TRIGAMMA, a))); break;
        case PLM_OP_ERF:
            acc(g, adj, a, MUL(G, MUL(K(M_2_SQRTPI), OP1(PLM_OP_EXP, OP1(PLM_OP_NEG, MUL(a, a))))));
            break;
        case PLM_OP_PHI:
            acc(g, adj, a, MUL(G, MUL(K(INV_SQRT_2PI), OP1(PLM_OP_EXP, MUL(K(-0.5), MUL(a, a))))));
            break;
        case PLM_OP_FLOOR: case PLM_OP_SIGN: case PLM_OP_LT: case PLM_OP_LE: case PLM_OP_EQ: case PLM_OP_NE:
        case PLM_OP_AND: case PLM_OP_OR:
            break;
        case PLM_OP_INV: acc(g, adj, a, OP1(PLM_OP_NEG, MUL(G, MUL(self, self)))); break;
        case PLM_OP_ADD: acc(g, adj, a, G); acc(g, adj, b, G); break;
        case PLM_OP_SUB: acc(g, adj, a, G); acc(g, adj, b, OP1(PLM_OP_NEG, G)); break;
        case PLM_OP_MUL: acc(g, adj, a, MUL(G, b)); acc(g, adj, b, MUL(G, a)); break;
        case PLM_OP_DIV: acc(g, adj, a, DIV(G, b)); acc(g, adj, b, OP1(PLM_OP_NEG, DIV(MUL(G, self), b))); break;
        case PLM_OP_POW:
            if (dep[a]) acc(g, adj, a, MUL(G, MUL(b, OP2(PLM_OP_POW, a, SUB(b, K(1))))));
            if (dep[b]) acc(g, adj, b, MUL(G, MUL(self, OP1(PLM_OP_LOG, a))));
            break;
        case PLM_OP_MIN:
            acc(g, adj, a, SEL(OP2(PLM_OP_LE, a, b), G, K(0)));
            acc(g, adj, b, SEL(OP2(PLM_OP_LE, a, b), K(0), G));
            break;
        case PLM_OP_MAX:
            acc(g, adj, a, SEL(OP2(PLM_OP_LE, b, a), G, K(0)));
            acc(g, adj, b, SEL(OP2(PLM_OP_LE, b, a), K(0), G));
            break;
        case PLM_OP_ATAN2: {
            int r2 = ADD(MUL(a, a), MUL(b, b));
            acc(g, adj, a, DIV(MUL(G, b), r2));
            acc(g, adj, b, OP1(PLM_OP_NEG, DIV(MUL(G, a), r2)));
            break;
        }
        case PLM_OP_SELECT: acc(g, adj, b, SEL(a, G, K(0))); acc(g, adj, c, SEL(a, K(0), G)); break;
        case PLM_OP_FMA: acc(g, adj, a, MUL(G, b)); acc(g, adj, b, MUL(G, a)); acc(g, adj, c, G); break;
        case PLM_OP_NATIVE: {
            int args[PLM_NATIVE_MAXARGS];
            if (!nd.fn->grad) {
                free(dep);
                free(adj);
                return plm_fail(ctx, PLM_ENOTSUP, "gradient: native function '%s' has no grad function",
                                nd.fn->name ? nd.fn->name : "?");
            }
            memcpy(args, g->pool + nd.arg, (size_t)nd.n * sizeof *args);
            for (j = 0; j < nd.n; j++)
                if (dep[args[j]]) acc(g, adj, args[j], MUL(G, plm_graph_native_d(g, nd.fn, j, args)));
            break;
        }
        default:
            free(dep);
            free(adj);
            return plm_fail(ctx, PLM_ENOTSUP, "gradient: no derivative for %s", plm_op_name((plm_op)nd.op));
        }
    }
    for (j = 0; j < nwrt; j++) {
        int w = wrt[j];
        res[j] = (w >= 0 && w < n0 && adj[w] != -2) ? adj[w] : K(0);
        if (res[j] < 0) goto oom;
    }
    free(dep);
    free(adj);
    return PLM_OK;
oom:
    free(dep);
    free(adj);
    return plm_fail(ctx, PLM_ENOMEM, "gradient: out of memory");
}
