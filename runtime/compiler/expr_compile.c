/* expr_compile.c -- the compiler from graph outputs to a plm_prog: liveness, the uniform/varying split, a*b+c
** fusion, hoisted reciprocals, and linear-scan allocation of block registers. */
#include "expr_impl.h"

#include <stdlib.h>
#include <string.h>

static int grow_ins(plm_ins **v, int *cap, int n)
{
    if (n < *cap) return 0;
    {
        int c = *cap ? 2 * *cap : 32;
        plm_ins *p = plm_gc_alloc_atomic((size_t)c * sizeof *p);
        if (!p) return -1;
        if (*v) memcpy(p, *v, (size_t)n * sizeof *p);
        *v = p;
        *cap = c;
    }
    return 0;
}

plm_status plm_prog_compile(plm_ctx *ctx, const plm_graph *g, int nout, const int *outs, unsigned varying,
                            plm_prog **out)
{
    int n = g->n, i, j, o;
    unsigned char *live = NULL, *vary = NULL, *fused = NULL;
    int *uses = NULL, *reg = NULL, *insnode = NULL, *lastuse = NULL, *freelist = NULL, *fma_c = NULL, *recip = NULL;
    int capu = 0, capv = 0, npool = 0, nfree = 0, ntmp = 0;
    plm_prog *p = plm_gc_alloc(sizeof *p);
    plm_status st = PLM_OK;
    if (!p) return plm_fail(ctx, PLM_ENOMEM, "compile: out of memory");
    for (o = 0; o < nout; o++)
        if (outs[o] < 0 || outs[o] >= n) return plm_fail(ctx, PLM_EINVAL, "compile: output %d is not a node", o);
    p->g = g;
    p->varying = varying;
    p->nout = nout;
    p->outreg = plm_gc_alloc_atomic((size_t)(nout + 1) * sizeof(int));
    p->outuni = plm_gc_alloc_atomic((size_t)(nout + 1) * sizeof(int));
    p->regpool = plm_gc_alloc_atomic((size_t)(g->npool + 1) * sizeof(int));
    live = calloc((size_t)n + 1, 3);
    uses = calloc((size_t)n + 1, sizeof(int) * 5);
    if (!p->outreg || !p->outuni || !p->regpool || !live || !uses) {
        st = plm_fail(ctx, PLM_ENOMEM, "compile: out of memory");
        goto done;
    }
    vary = live + n;
    fused = live + 2 * n;
    reg = uses + n;
    lastuse = uses + 2 * n;
    fma_c = uses + 3 * n;
    freelist = uses + 4 * n;
    for (o = 0; o < nout; o++) live[outs[o]] = 1;
    for (i = n - 1; i >= 0; i--) {
        const plm_node *nd = &g->nodes[i];
        if (!live[i]) continue;
        p->nlive++;
        for (j = 0; j < nd->n; j++) {
            live[g->pool[nd->arg + j]] = 1;
            uses[g->pool[nd->arg + j]]++;
        }
    }
    for (o = 0; o < nout; o++) uses[outs[o]] += 1000000;   /* outputs are never fused away */
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        if (nd->op == PLM_OP_INPUT)
            vary[i] = (varying >> nd->grp) & 1;
        else if (plm_op_is_draw(nd->op))
            vary[i] = 1;
        else
            for (j = 0; j < nd->n; j++) vary[i] |= vary[g->pool[nd->arg + j]];
    }
    /* fuse a varying product used once into the sum that consumes it: a*b + c in one pass */
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        fma_c[i] = -1;
        if (!live[i] || !vary[i] || nd->op != PLM_OP_ADD) continue;
        for (j = 0; j < 2; j++) {
            int m = g->pool[nd->arg + j];
            if (g->nodes[m].op == PLM_OP_MUL && vary[m] && uses[m] == 1 && !fused[m]) {
                fused[m] = 1;
                fma_c[i] = m;
                break;
            }
        }
    }
    /* x / u with u uniform becomes x * (1/u): the reciprocal is one uniform instruction per call, and a
    ** multiply is several times cheaper than a divide in the block loop */
    recip = malloc((size_t)(n + 1) * sizeof *recip);
    if (!recip) goto oom;
    for (i = 0; i < n; i++) recip[i] = -1;
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        if (live[i] && vary[i] && !fused[i] && nd->op == PLM_OP_DIV && !vary[g->pool[nd->arg + 1]])
            recip[g->pool[nd->arg + 1]] = -2;
    }
    /* uniform pre-pass: one slot per uniform live node, in topological order */
    p->nuni = 0;
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        plm_ins in = {0};
        if (!live[i] || vary[i]) continue;
        reg[i] = p->nuni++;
        in.op = nd->op;
        in.d = reg[i];
        in.k = nd->v;
        in.kind = nd->idx;
        in.c = nd->grp;
        in.fn = nd->fn;
        if (nd->op == PLM_OP_INPUT) {
            in.a = nd->idx;
        } else if (nd->op == PLM_OP_NATIVE || nd->op == PLM_OP_NATIVE_D || nd->op == PLM_OP_LOGPDF) {
            in.n = nd->n;
            in.argoff = npool;
            for (j = 0; j < nd->n; j++) p->regpool[npool++] = reg[g->pool[nd->arg + j]] * 2 + 1;
        } else if (nd->op != PLM_OP_CONST) {
            in.a = nd->n > 0 ? reg[g->pool[nd->arg]] : 0;
            in.b = nd->n > 1 ? reg[g->pool[nd->arg + 1]] : 0;
            in.c = nd->n > 2 ? reg[g->pool[nd->arg + 2]] : 0;
        }
        if (grow_ins(&p->uins, &capu, p->nuins)) goto oom;
        p->uins[p->nuins++] = in;
        if (recip[i] == -2) {
            plm_ins r = {0};
            r.op = PLM_OP_INV;
            r.a = reg[i];
            r.d = recip[i] = p->nuni++;
            if (grow_ins(&p->uins, &capu, p->nuins)) goto oom;
            p->uins[p->nuins++] = r;
        }
    }
    /* varying inputs read the caller's arrays in place */
    p->nvin = 0;
    for (i = 0; i < n; i++)
        if (live[i] && vary[i] && g->nodes[i].op == PLM_OP_INPUT) p->nvin++;
    p->vin_grp = plm_gc_alloc_atomic((size_t)(p->nvin + 1) * sizeof(int));
    p->vin_idx = plm_gc_alloc_atomic((size_t)(p->nvin + 1) * sizeof(int));
    insnode = malloc((size_t)(n + 1) * sizeof *insnode);
    if (!p->vin_grp || !p->vin_idx || !insnode) goto oom;
    p->nvin = 0;
    for (i = 0; i < n; i++)
        if (live[i] && vary[i] && g->nodes[i].op == PLM_OP_INPUT) {
            p->vin_grp[p->nvin] = g->nodes[i].grp;
            p->vin_idx[p->nvin] = g->nodes[i].idx;
            reg[i] = p->nuni + p->nvin++;
        }
    /* varying instructions in topological order, arguments as node ids for now */
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        plm_ins in = {0};
        if (!live[i] || !vary[i] || nd->op == PLM_OP_INPUT || fused[i]) continue;
        in.op = nd->op;
        in.kind = nd->idx;
        in.fn = nd->fn;
        in.a = in.b = in.c = -1;
        if (fma_c[i] >= 0) {
            const plm_node *m = &g->nodes[fma_c[i]];
            in.op = PLM_OP_FMA;
            in.a = g->pool[m->arg];
            in.b = g->pool[m->arg + 1];
            in.c = g->pool[nd->arg] == fma_c[i] ? g->pool[nd->arg + 1] : g->pool[nd->arg];
            if (!vary[in.a]) {   /* the evaluator wants the varying factor first */
                int t = in.a;
                in.a = in.b;
                in.b = t;
            }
        } else if (plm_op_arity(nd->op) >= 1) {
            in.a = g->pool[nd->arg];
            if (nd->n > 1) in.b = g->pool[nd->arg + 1];
            if (nd->n > 2) in.c = g->pool[nd->arg + 2];
            if (nd->n == 2 && plm_op_commutative(nd->op) && !vary[in.a]) {
                int t = in.a;
                in.a = in.b;
                in.b = t;
            }
            if (nd->op == PLM_OP_DIV && !vary[in.b]) {
                in.op = PLM_OP_MUL;
                in.b = -2 - recip[in.b];   /* a uniform slot, not a node: decoded below */
            }
        } else {
            in.n = nd->n;
            in.argoff = -1 - nd->arg;   /* node ids in the graph pool until registers are known */
        }
        if (grow_ins(&p->vins, &capv, p->nvins)) goto oom;
        insnode[p->nvins] = i;
        p->vins[p->nvins++] = in;
    }
    /* last use of each varying temporary; outputs live to the end */
    for (i = 0; i < n; i++) lastuse[i] = -1;
    for (i = 0; i < p->nvins; i++) {
        plm_ins *in = &p->vins[i];
        if (in->a >= 0) lastuse[in->a] = i;
        if (in->b >= 0) lastuse[in->b] = i;
        if (in->c >= 0) lastuse[in->c] = i;
        if (in->argoff < 0)
            for (j = 0; j < in->n; j++) lastuse[g->pool[-1 - in->argoff + j]] = i;
    }
    for (o = 0; o < nout; o++) lastuse[outs[o]] = p->nvins;
    /* linear-scan allocation: the destination is taken before the arguments are released, so an
    ** instruction never writes a block it reads (restrict holds and the loops vectorise) */
    for (i = 0; i < p->nvins; i++) {
        plm_ins *in = &p->vins[i];
        int nd = insnode[i], r, args[3] = {in->a, in->b, in->c};
        r = nfree ? freelist[--nfree] : p->nuni + p->nvin + ntmp++;
        reg[nd] = r;
        in->d = r;
        in->mode = 0;
        for (j = 0; j < 3; j++)
            if ((args[j] >= 0 && !vary[args[j]]) || args[j] <= -2) in->mode |= 1 << j;
        in->a = in->a >= 0 ? reg[in->a] : 0;
        in->b = in->b >= 0 ? reg[in->b] : in->b <= -2 ? -2 - in->b : 0;
        in->c = in->c >= 0 ? reg[in->c] : 0;
        if (in->argoff < 0) {
            int off = -1 - in->argoff;
            in->argoff = npool;
            for (j = 0; j < in->n; j++) {
                int a = g->pool[off + j];
                p->regpool[npool++] = reg[a] * 2 + !vary[a];
            }
        }
        /* release temporaries whose last use is here */
        for (j = 0; j < 3; j++) {
            int a = args[j];
            if (a >= 0 && vary[a] && lastuse[a] == i && g->nodes[a].op != PLM_OP_INPUT) {
                lastuse[a] = -2;
                freelist[nfree++] = reg[a];
            }
        }
        if (in->n && g->nodes[nd].n) {
            const plm_node *gn = &g->nodes[nd];
            for (j = 0; j < gn->n; j++) {
                int a = g->pool[gn->arg + j];
                if (vary[a] && lastuse[a] == i && g->nodes[a].op != PLM_OP_INPUT) {
                    lastuse[a] = -2;
                    freelist[nfree++] = reg[a];
                }
            }
        }
        if (plm_op_is_draw(g->nodes[nd].op)) p->ndraws++;
    }
    p->ntmp = ntmp;
    for (o = 0; o < nout; o++) {
        p->outreg[o] = reg[outs[o]];
        p->outuni[o] = !vary[outs[o]];
    }
    *out = p;
    goto done;
oom:
    st = plm_fail(ctx, PLM_ENOMEM, "compile: out of memory");
done:
    free(live);
    free(uses);
    free(insnode);
    free(recip);
    return st;
}

int plm_prog_nout(const plm_prog *p)
{
    return p->nout;
}

void plm_prog_describe(const plm_prog *p, plm_prog_info *info)
{
    info->nout = p->nout;
    info->nlive = p->nlive;
    info->ninstructions = p->nuins + p->nvins;
    info->nuniform = p->nuins;
    info->nregisters = p->ntmp;
    info->ndraws = p->ndraws;
}
