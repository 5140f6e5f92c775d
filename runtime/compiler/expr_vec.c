/* expr_vec.c -- a sum of many terms of a graph with its gradient, where terms of one structure are evaluated
** together: a static model's observations (Y[i,j] ~ normal(alpha[i] + beta[i] * x[j], sigma)) differ only in
** which sites and constants they read, so each structure compiles once, as a template program whose inputs
** are those leaves, and runs over the whole group of terms as over particles (one instruction over a vector
** of terms, not one scalar instruction per term). See expr.h (plm_vsum) for the evaluation scheme. */
#include "expr_impl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Smaller groups stay in the scalar program: a template's set-up per call costs about as much as a few
** terms. */
#define VEC_MIN_GROUP 4

#define OWN_NONE (-1)     /* not read by any term */
#define OWN_SHARED (-2)   /* read by two terms or more: a leaf of each, computed once by the scalar program */

#define H_CONST 0x9e3779b97f4a7c15ull
#define H_LEAF 0xc2b2ae3d27d4eb4full

typedef struct vgroup {
    int n;              /* terms */
    int nu;             /* uniform node slots: the same node in every term (template inputs P 0..nu-1) */
    int nvn;            /* varying node slots (template inputs Y 0..nvn-1) */
    int nv;             /* varying slots in all: nodes, then constants (Y nvn..nv-1) */
    int *uleaf;         /* nu leaf indices */
    int *vleaf;         /* nvn * n: leaf index of slot k of the group's term t at k * n + t */
    double *vconst;     /* (nv - nvn) * n constants, slot-major */
    plm_prog *lp;       /* the term alone */
    plm_prog *lpg;      /* the term, then its partials by uniform node slot, then by varying node slot */
} vgroup;

struct plm_vsum {
    int nterms, ngrouped, ngroups, nleaf, dim;
    vgroup *groups;
    plm_prog *a;        /* outputs: the sum of the ungrouped terms, then the value of each leaf */
    plm_prog *b;        /* the gradient of (ungrouped terms + sum_l seed_l * leaf_l), seeds in group C */
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

/* What the grouping pass keeps per term: its serialisation (each private node in post-order as op, nargs and
** argument codes: a private node's local number >= 0, or -(2 * slot + 1) for a node leaf and -(2 * slot + 2)
** for a constant leaf) and its leaves in slot order. */
typedef struct tshape {
    int ser, nser;      /* offset and length in the serialisation pool */
    int leaf, nleaf;    /* offset and count in the leaf pool */
    uint64_t h;
    int ok;             /* 1 when the term can join a group */
} tshape;

typedef struct ibuf {
    int *v;
    int n, cap;
} ibuf;

static int ipush(ibuf *b, int x)
{
    if (b->n == b->cap) {
        int c = b->cap ? 2 * b->cap : 1024, *p = realloc(b->v, (size_t)c * sizeof *p);
        if (!p) return -1;
        b->v = p, b->cap = c;
    }
    b->v[b->n++] = x;
    return 0;
}

static int is_leaf(const plm_graph *g, const int *owner, int a, int t)
{
    int op = g->nodes[a].op;
    return op == PLM_OP_CONST || op == PLM_OP_INPUT || owner[a] != t;
}

static uint64_t node_hash(const plm_graph *g, const int *owner, const uint64_t *hs, int a, int t)
{
    if (!is_leaf(g, owner, a, t)) return hs[a];
    return g->nodes[a].op == PLM_OP_CONST ? H_CONST : H_LEAF;
}

/* The arguments of private node i in canonical order: those of a commutative op sorted by structural hash, so
** that a + b*x and b*x + a (hash-consing orders arguments by node id, which differs from term to term) read
** alike. Equal hashes keep the graph's order: a different order then only splits a group, never merges wrongly. */
static int canon_args(const plm_graph *g, const int *owner, const uint64_t *hs, int i, int t, int *args)
{
    const plm_node *nd = &g->nodes[i];
    int k;
    for (k = 0; k < nd->n; k++) args[k] = g->pool[nd->arg + k];
    if (nd->n == 2 && plm_op_commutative(nd->op) &&
        node_hash(g, owner, hs, args[0], t) > node_hash(g, owner, hs, args[1], t)) {
        int x = args[0];
        args[0] = args[1], args[1] = x;
    }
    return nd->n;
}

/* Shape of term t rooted at r: structural hashes of its private nodes (pass 1), then the serialisation in
** canonical order (pass 2). stamp/loc are per-node scratch, stk/sti a stack. Returns -1 when memory ran out. */
static int shape_term(const plm_graph *g, const int *owner, uint64_t *hs, int *stamp, int *loc, int *stk, int *sti,
                      int r, int t, tshape *ts, ibuf *ser, ibuf *leaves)
{
    int sp = 0, nloc = 0, nslot = 0, args[3], k;
    uint64_t h = 0xcbf29ce484222325ull;
    ts->ok = 0;
    if (is_leaf(g, owner, r, t)) return 0;
    /* pass 1: hashes, bottom-up; any op the template cannot hold leaves the term scalar */
    stamp[r] = 2 * t + 1;
    stk[sp] = r, sti[sp++] = 0;
    while (sp) {
        int i = stk[sp - 1];
        const plm_node *nd = &g->nodes[i];
        if (sti[sp - 1] == 0 && (plm_op_arity(nd->op) < 1 || plm_op_is_draw(nd->op))) return 0;
        if (sti[sp - 1] < nd->n) {
            int a = g->pool[nd->arg + sti[sp - 1]++];
            if (!is_leaf(g, owner, a, t) && stamp[a] != 2 * t + 1) stamp[a] = 2 * t + 1, stk[sp] = a, sti[sp++] = 0;
            continue;
        }
        {
            uint64_t ah[3] = {0, 0, 0}, x = mix((uint64_t)nd->op, (uint64_t)nd->n);
            for (k = 0; k < nd->n; k++) ah[k] = node_hash(g, owner, hs, g->pool[nd->arg + k], t);
            if (nd->n == 2 && plm_op_commutative(nd->op) && ah[0] > ah[1]) {
                uint64_t y = ah[0];
                ah[0] = ah[1], ah[1] = y;
            }
            for (k = 0; k < nd->n; k++) x = mix(x, ah[k]);
            hs[i] = x;
        }
        sp--;
    }
    /* pass 2: the serialisation, children in canonical order */
    ts->ser = ser->n, ts->leaf = leaves->n;
    stamp[r] = 2 * t + 2;
    stk[sp] = r, sti[sp++] = 0;
    while (sp) {
        int i = stk[sp - 1], n = canon_args(g, owner, hs, i, t, args);
        if (sti[sp - 1] < n) {
            int a = args[sti[sp - 1]++];
            if (!is_leaf(g, owner, a, t) && stamp[a] != 2 * t + 2) stamp[a] = 2 * t + 2, stk[sp] = a, sti[sp++] = 0;
            continue;
        }
        sp--;
        loc[i] = nloc++;
        if (ipush(ser, g->nodes[i].op) || ipush(ser, n)) return -1;
        for (k = 0; k < n; k++) {
            int a = args[k], code;
            if (is_leaf(g, owner, a, t)) {
                code = -(2 * nslot + 1) - (g->nodes[a].op == PLM_OP_CONST);
                nslot++;
                if (ipush(leaves, a)) return -1;
            } else
                code = loc[a];
            if (ipush(ser, code)) return -1;
        }
    }
    ts->nser = ser->n - ts->ser;
    ts->nleaf = leaves->n - ts->leaf;
    for (k = 0; k < ts->nser; k++) h = mix(h, (uint64_t)(int64_t)ser->v[ts->ser + k]);
    ts->h = h;
    ts->ok = 1;
    return 0;
}

/* The template of a group: its representative's serialisation replayed on a new graph whose leaves are
** constants (a constant slot with one value throughout), inputs P (uniform node slots) or inputs Y (varying
** slots). Fills the group's slot tables from the members' leaves. */
static plm_status build_template(plm_ctx *ctx, const plm_graph *g, const int *ser, int nser, const int *members,
                                 int n, const tshape *shapes, const int *leafpool, const int *leafidx, vgroup *G)
{
    const tshape *s0 = &shapes[members[0]];
    int ns = s0->nleaf, k, t, i, *slotnode = NULL, *local = NULL, nlocal = 0, out, nwrt = 0, *wrt = NULL, *outs = NULL;
    int *kindof = NULL, nu = 0, nvn = 0, nvc = 0;
    plm_graph *tg = plm_graph_new();
    plm_status st = PLM_OK;
    slotnode = malloc(((size_t)ns + 1) * sizeof *slotnode);
    kindof = malloc(((size_t)ns + 1) * sizeof *kindof);
    local = malloc(((size_t)nser + 1) * sizeof *local);
    wrt = malloc(((size_t)ns + 1) * sizeof *wrt);
    outs = malloc(((size_t)ns + 2) * sizeof *outs);
    if (!tg || !slotnode || !kindof || !local || !wrt || !outs) goto oom;
    /* slot kinds: 0 constant, one value; 1 uniform node; 2 varying node; 3 varying constant */
    for (k = 0; k < ns; k++) {
        int a0 = leafpool[s0->leaf + k], same = 1, isk = g->nodes[a0].op == PLM_OP_CONST;
        for (t = 1; t < n && same; t++) {
            int a = leafpool[shapes[members[t]].leaf + k];
            same = isk ? g->nodes[a].v == g->nodes[a0].v : a == a0;
        }
        kindof[k] = isk ? (same ? 0 : 3) : (same ? 1 : 2);
        nu += kindof[k] == 1, nvn += kindof[k] == 2, nvc += kindof[k] == 3;
    }
    G->n = n, G->nu = nu, G->nvn = nvn, G->nv = nvn + nvc;
    G->uleaf = plm_gc_alloc_atomic(((size_t)nu + 1) * sizeof *G->uleaf);
    G->vleaf = plm_gc_alloc_atomic(((size_t)nvn * (size_t)n + 1) * sizeof *G->vleaf);
    G->vconst = plm_gc_alloc_atomic(((size_t)nvc * (size_t)n + 1) * sizeof *G->vconst);
    if (!G->uleaf || !G->vleaf || !G->vconst) goto oom;
    nu = nvn = nvc = 0;
    for (k = 0; k < ns; k++) {
        int a0 = leafpool[s0->leaf + k];
        switch (kindof[k]) {
        case 0: slotnode[k] = plm_graph_const(tg, g->nodes[a0].v); break;
        case 1:
            G->uleaf[nu] = leafidx[a0];
            slotnode[k] = wrt[nwrt++] = plm_graph_input(tg, PLM_GRP_P, nu++);
            break;
        case 2:
            for (t = 0; t < n; t++) G->vleaf[(size_t)nvn * n + t] = leafidx[leafpool[shapes[members[t]].leaf + k]];
            slotnode[k] = plm_graph_input(tg, PLM_GRP_Y, nvn++);
            break;
        default:
            for (t = 0; t < n; t++) G->vconst[(size_t)nvc * n + t] = g->nodes[leafpool[shapes[members[t]].leaf + k]].v;
            slotnode[k] = plm_graph_input(tg, PLM_GRP_Y, G->nvn + nvc++);
        }
        if (slotnode[k] < 0) goto oom;
    }
    /* the varying node slots' inputs follow the uniform ones among the derivatives */
    for (k = 0; k < ns; k++)
        if (kindof[k] == 2) wrt[nwrt++] = slotnode[k];
    for (i = 0, k = 0; i < nser;) {
        int op = ser[i], na = ser[i + 1], a[3] = {-1, -1, -1}, j;
        for (j = 0; j < na; j++) {
            int c = ser[i + 2 + j];
            a[j] = c >= 0 ? local[c] : slotnode[(-c - 1) / 2];
        }
        local[nlocal++] = plm_graph_op(tg, (plm_op)op, a[0], a[1], a[2]);
        i += 2 + na;
    }
    out = local[nlocal - 1];
    if (out < 0) goto oom;
    outs[0] = out;
    if ((st = plm_prog_compile(ctx, tg, 1, outs, 1u << PLM_GRP_Y, &G->lp))) goto done;
    if ((st = plm_graph_grad(ctx, tg, out, nwrt, wrt, outs + 1))) goto done;
    st = plm_prog_compile(ctx, tg, nwrt + 1, outs, 1u << PLM_GRP_Y, &G->lpg);
    goto done;
oom:
    st = plm_fail(ctx, PLM_ENOMEM, "vsum: out of memory");
done:
    free(slotnode), free(kindof), free(local), free(wrt), free(outs);
    return st;
}

/* Split a structural group (members[0..m-1], term order) into the final groups, appended to order[*no..] with
** their starts and lengths in gstart/glen[*nfg..]: by the leaves of its node slots that take 2 to 8 distinct
** values (alpha[i] ~ normal(alpha.c, sa) and beta[i] ~ normal(beta.c, sb) share one structure; apart, their mean
** and sd are uniform operands, not vectors to gather and partials to scatter). Subgroups smaller than
** VEC_MIN_GROUP go together into one more group when they are enough, else they stay scalar. mark is per-node
** scratch stamped with *stampc and up; sub is scratch of m ints. */
static void split_group(const plm_graph *g, const tshape *shapes, const int *leafpool, const int *members, int m,
                        int *order, int *no, int *gstart, int *glen, int *nfg, int *mark, int *stampc, int *sub)
{
    const tshape *s0 = &shapes[members[0]];
    int key[8], reps[64], nkey = 0, nreps = 0, k, t, j, rest = 0;
    for (k = 0; k < s0->nleaf && nkey < 8; k++) {
        int distinct = 0, stamp = (*stampc)++;
        if (g->nodes[leafpool[s0->leaf + k]].op == PLM_OP_CONST) continue;
        for (t = 0; t < m && distinct <= 8; t++) {
            int a = leafpool[shapes[members[t]].leaf + k];
            if (mark[a] != stamp) mark[a] = stamp, distinct++;
        }
        if (distinct > 1 && distinct <= 8) key[nkey++] = k;
    }
    /* sub[t]: the first member with t's key leaves (its subgroup's name); more than 64 subgroups: no split */
    for (t = 0; t < m; t++) {
        sub[t] = 0;
        if (!nkey) continue;
        for (j = 0; j < nreps; j++) {
            int same = 1;
            for (k = 0; k < nkey && same; k++)
                same = leafpool[shapes[members[reps[j]]].leaf + key[k]] == leafpool[shapes[members[t]].leaf + key[k]];
            if (same) break;
        }
        if (j == nreps) {
            if (nreps == 64) {
                nkey = 0, t = -1, nreps = 0;   /* start again, unsplit */
                continue;
            }
            reps[nreps++] = t;
        }
        sub[t] = reps[j];
    }
    /* subgroup sizes, counted on their first member */
    for (j = 0; j < m; j++) {
        int cnt = 0;
        if (sub[j] != j) continue;
        for (t = j; t < m; t++) cnt += sub[t] == j;
        if (cnt < VEC_MIN_GROUP) {
            rest += cnt;
            continue;
        }
        gstart[*nfg] = *no, glen[*nfg] = cnt;
        for (t = j; t < m; t++)
            if (sub[t] == j) order[(*no)++] = members[t];
        (*nfg)++;
        for (t = j + 1; t < m; t++)
            if (sub[t] == j) sub[t] = -1;   /* placed */
        sub[j] = -1;
    }
    if (rest >= VEC_MIN_GROUP) {
        gstart[*nfg] = *no, glen[*nfg] = rest;
        for (t = 0; t < m; t++)
            if (sub[t] >= 0) order[(*no)++] = members[t];
        (*nfg)++;
    }
}

plm_status plm_vsum_compile(plm_ctx *ctx, plm_graph *g, int nterms, const int *terms, int dim, const int *x,
                            plm_vsum **out)
{
    int n = g->n, i, t, k, *owner = NULL, *stamp = NULL, *loc = NULL, *stk = NULL, *sti = NULL, *leafidx = NULL;
    int *table = NULL, *gnext = NULL, *gcount = NULL, *members = NULL, *grouped = NULL, *outs = NULL, *leafnode = NULL;
    int *order = NULL, *gstart = NULL, *glen = NULL, *mark = NULL, *sub = NULL;
    int cap = 16, ng = 0, s0, nleaf = 0, no = 0, stampc = 0;
    uint64_t *hs = NULL;
    tshape *shapes = NULL;
    ibuf ser = {0}, leaves = {0};
    plm_vsum *v = plm_gc_alloc(sizeof *v);
    plm_status st = PLM_OK;
    *out = NULL;
    if (!v) return plm_fail(ctx, PLM_ENOMEM, "vsum: out of memory");
    v->nterms = nterms, v->dim = dim;
    while (cap < 2 * nterms) cap *= 2;
    owner = malloc(((size_t)n + 1) * sizeof *owner);
    stamp = malloc(((size_t)n + 1) * sizeof *stamp);
    loc = malloc(((size_t)n + 1) * sizeof *loc);
    stk = malloc(((size_t)n + 1) * sizeof *stk);
    sti = malloc(((size_t)n + 1) * sizeof *sti);
    leafidx = malloc(((size_t)n + 1) * sizeof *leafidx);
    hs = malloc(((size_t)n + 1) * sizeof *hs);
    shapes = calloc((size_t)nterms + 1, sizeof *shapes);
    table = malloc((size_t)cap * sizeof *table);
    gnext = malloc(((size_t)nterms + 1) * sizeof *gnext);
    gcount = calloc((size_t)nterms + 1, sizeof *gcount);
    members = malloc(((size_t)nterms + 1) * sizeof *members);
    grouped = calloc((size_t)nterms + 1, sizeof *grouped);
    order = malloc(((size_t)nterms + 1) * sizeof *order);
    gstart = malloc(((size_t)nterms + 1) * sizeof *gstart);
    glen = malloc(((size_t)nterms + 1) * sizeof *glen);
    sub = malloc(((size_t)nterms + 1) * sizeof *sub);
    mark = malloc(((size_t)n + 1) * sizeof *mark);
    if (!order || !gstart || !glen || !sub || !mark) goto oom;
    if (!owner || !stamp || !loc || !stk || !sti || !leafidx || !hs || !shapes || !table || !gnext || !gcount ||
        !members || !grouped)
        goto oom;
    for (i = 0; i < n; i++) owner[i] = OWN_NONE, stamp[i] = -1, leafidx[i] = -1, mark[i] = -1;
    for (i = 0; i < cap; i++) table[i] = -1;
    /* owner: the one term whose root reaches a node, or OWN_SHARED; consumers have larger ids than their
    ** arguments, so one pass downwards settles each node before its arguments are visited */
    for (t = 0; t < nterms; t++) {
        int r = terms[t];
        if (r < 0 || r >= n) {
            st = plm_fail(ctx, PLM_EINVAL, "vsum: term %d is not a node", t);
            goto done;
        }
        owner[r] = owner[r] == OWN_NONE ? t : OWN_SHARED;
    }
    for (i = n - 1; i >= 0; i--) {
        const plm_node *nd = &g->nodes[i];
        if (owner[i] == OWN_NONE) continue;
        for (k = 0; k < nd->n; k++) {
            int a = g->pool[nd->arg + k];
            owner[a] = owner[a] == OWN_NONE ? owner[i] : owner[a] == owner[i] ? owner[a] : OWN_SHARED;
        }
    }
    /* shapes, and groups by shape (hash, then the serialisations compared in full) */
    for (t = 0; t < nterms; t++) {
        int r = terms[t], slot;
        gnext[t] = -1;
        if (owner[r] != t) continue;
        if (shape_term(g, owner, hs, stamp, loc, stk, sti, r, t, &shapes[t], &ser, &leaves)) goto oom;
        if (!shapes[t].ok) continue;
        for (slot = (int)(shapes[t].h & (uint64_t)(cap - 1));; slot = (slot + 1) & (cap - 1)) {
            int q = table[slot];
            if (q < 0) {
                table[slot] = t, gcount[t] = 1, members[t] = t;
                break;
            }
            if (shapes[q].h == shapes[t].h && shapes[q].nser == shapes[t].nser &&
                !memcmp(ser.v + shapes[q].ser, ser.v + shapes[t].ser, (size_t)shapes[t].nser * sizeof(int))) {
                /* append t to q's list (members[q] is its tail): term order within a group */
                gnext[members[q]] = t;
                members[q] = t;
                gcount[q]++;
                break;
            }
        }
    }
    /* the final groups: the structural ones of VEC_MIN_GROUP terms or more, split by their few-valued leaves */
    for (t = 0; t < nterms; t++) {
        int q, m = 0;
        if (gcount[t] < VEC_MIN_GROUP) continue;
        for (q = t; q >= 0; q = gnext[q]) members[m++] = q;
        split_group(g, shapes, leaves.v, members, m, order, &no, gstart, glen, &ng, mark, &stampc, sub);
    }
    v->ngroups = ng;
    if (!ng) {
        st = plm_fail(ctx, PLM_ENOTSUP, "vsum: no %d terms share a structure", VEC_MIN_GROUP);
        goto done;
    }
    v->groups = plm_gc_alloc(((size_t)ng + 1) * sizeof *v->groups);
    if (!v->groups) goto oom;
    /* leaves of grouped node slots: the values program a computes */
    for (i = 0; i < no; i++) {
        int q = order[i];
        grouped[q] = 1;
        v->ngrouped++;
        for (k = 0; k < shapes[q].nleaf; k++) {
            int a = leaves.v[shapes[q].leaf + k];
            if (g->nodes[a].op != PLM_OP_CONST && leafidx[a] < 0) leafidx[a] = nleaf++;
        }
    }
    v->nleaf = nleaf;
    outs = malloc(((size_t)nleaf + (size_t)dim + 2) * sizeof *outs);
    leafnode = malloc(((size_t)nleaf + 1) * sizeof *leafnode);
    if (!outs || !leafnode) goto oom;
    for (i = 0; i < n; i++)
        if (leafidx[i] >= 0) leafnode[leafidx[i]] = i;
    for (k = 0; k < ng; k++) {
        const tshape *s0 = &shapes[order[gstart[k]]];
        if ((st = build_template(ctx, g, ser.v + s0->ser, s0->nser, order + gstart[k], glen[k], shapes, leaves.v, leafidx,
                                 &v->groups[k])))
            goto done;
    }
    /* the scalar program: ungrouped terms and the leaves' values */
    s0 = plm_graph_const(g, 0);
    for (t = 0; t < nterms; t++)
        if (!grouped[t]) s0 = plm_graph_op(g, PLM_OP_ADD, s0, terms[t], -1);
    if (s0 < 0) goto oom;
    outs[0] = s0;
    memcpy(outs + 1, leafnode, (size_t)nleaf * sizeof *outs);
    if ((st = plm_prog_compile(ctx, g, nleaf + 1, outs, 1u << PLM_GRP_X, &v->a))) goto done;
    {
        plm_prog_info info;
        plm_prog_describe(v->a, &info);
        for (i = 0; i < n && !st; i++) {
            int grp, idx;
            if (plm_graph_is_input(g, i, &grp, &idx) && grp != PLM_GRP_X && plm_prog_uses(v->a, grp, idx))
                st = plm_fail(ctx, PLM_ENOTSUP, "vsum: the terms read input group %d (only X)", grp);
        }
        if (!st && info.ndraws) st = plm_fail(ctx, PLM_ENOTSUP, "vsum: the terms make random draws");
        if (st) goto done;
    }
    /* the gradient: d/dx of (ungrouped terms + sum_l seed_l * leaf_l), where seed_l is the sum over the groups
    ** of the partials by leaf l, given at evaluation time as input l of group C (the chain rule through the
    ** shared nodes, done once per leaf rather than once per term) */
    {
        int s = s0, l;
        for (l = 0; l < nleaf; l++)
            s = plm_graph_op(g, PLM_OP_ADD, s,
                             plm_graph_op(g, PLM_OP_MUL, plm_graph_input(g, PLM_GRP_C, l), leafnode[l], -1), -1);
        if (s < 0) goto oom;
        if ((st = plm_graph_grad(ctx, g, s, dim, x, outs))) goto done;
        if ((st = plm_prog_compile(ctx, g, dim, outs, 1u << PLM_GRP_X, &v->b))) goto done;
    }
    *out = v;
    goto done;
oom:
    st = plm_fail(ctx, PLM_ENOMEM, "vsum: out of memory");
done:
    free(owner), free(stamp), free(loc), free(stk), free(sti), free(leafidx), free(hs), free(shapes), free(table);
    free(gnext), free(gcount), free(members), free(grouped), free(outs), free(leafnode), free(ser.v), free(leaves.v);
    free(order), free(gstart), free(glen), free(sub), free(mark);
    return st;
}

void plm_vsum_describe(const plm_vsum *v, plm_vsum_info *info)
{
    plm_prog_info pi;
    int k;
    info->nterms = v->nterms;
    info->ngroups = v->ngroups;
    info->ngrouped = v->ngrouped;
    info->nleaves = v->nleaf;
    plm_prog_describe(v->a, &pi);
    info->nscalar_ins = pi.ninstructions;
    plm_prog_describe(v->b, &pi);
    info->nscalar_ins += pi.ninstructions;
    info->nvector_ins = 0;
    for (k = 0; k < v->ngroups; k++) {
        plm_prog_describe(v->groups[k].lpg, &pi);
        info->nvector_ins += pi.ninstructions;
    }
}

/* ---- evaluation ---- */

typedef struct gws {
    plm_prog_ws lp, lpg;
    double *U;          /* uniform slot values */
    double *Y;          /* varying slots, slot-major (ld = the group's size) */
} gws;

struct plm_vsum_ws {
    const plm_vsum *v;
    plm_prog_in in[PLM_NGROUPS];
    plm_prog_ws a, b;
    double *aval, **aout, *seed, *grad, **gout;
    gws *g;
};

void plm_vsum_ws_free(plm_vsum_ws *w)
{
    int k;
    if (!w) return;
    if (w->g)
        for (k = 0; k < w->v->ngroups; k++) {
            plm_prog_ws_free(&w->g[k].lp), plm_prog_ws_free(&w->g[k].lpg);
            free(w->g[k].U), free(w->g[k].Y);
        }
    plm_prog_ws_free(&w->a), plm_prog_ws_free(&w->b);
    free(w->aval), free(w->aout), free(w->seed), free(w->grad), free(w->gout), free(w->g);
    free(w);
}

plm_vsum_ws *plm_vsum_ws_new(const plm_vsum *v, const double *x)
{
    plm_vsum_ws *w = calloc(1, sizeof *w);
    int k, i;
    if (!w) return NULL;
    w->v = v;
    w->in[PLM_GRP_X].p = x, w->in[PLM_GRP_X].ld = 1;
    w->aval = malloc(((size_t)v->nleaf + 1) * sizeof *w->aval);
    w->aout = malloc(((size_t)v->nleaf + 1) * sizeof *w->aout);
    w->seed = malloc(((size_t)v->nleaf + 1) * sizeof *w->seed);
    w->grad = malloc(((size_t)v->dim + 1) * sizeof *w->grad);
    w->gout = malloc(((size_t)v->dim + 1) * sizeof *w->gout);
    w->g = calloc((size_t)v->ngroups + 1, sizeof *w->g);
    if (!w->aval || !w->aout || !w->seed || !w->grad || !w->gout || !w->g) goto fail;
    for (i = 0; i <= v->nleaf; i++) w->aout[i] = w->aval + i;
    for (i = 0; i < v->dim; i++) w->gout[i] = w->grad + i;
    w->in[PLM_GRP_C].p = w->seed, w->in[PLM_GRP_C].ld = 1;
    if (plm_prog_ws_init_block(NULL, &w->a, v->a, 1) || plm_prog_ws_init_block(NULL, &w->b, v->b, 1)) goto fail;
    plm_prog_uniforms(&w->a, w->in);   /* a's uniform part depends on constants only */
    for (k = 0; k < v->ngroups; k++) {
        const vgroup *G = &v->groups[k];
        gws *q = &w->g[k];
        q->U = malloc(((size_t)G->nu + 1) * sizeof *q->U);
        q->Y = malloc(((size_t)G->nv * (size_t)G->n + 1) * sizeof *q->Y);
        if (!q->U || !q->Y) goto fail;
        if (plm_prog_ws_init(NULL, &q->lp, G->lp) || plm_prog_ws_init(NULL, &q->lpg, G->lpg)) goto fail;
        /* constant slots never change: gathered once, here */
        memcpy(q->Y + (size_t)G->nvn * G->n, G->vconst, (size_t)(G->nv - G->nvn) * G->n * sizeof *q->Y);
    }
    return w;
fail:
    plm_vsum_ws_free(w);
    return NULL;
}

/* x[0] + ... + x[n-1] in four interleaved partial sums: one running sum waits for each addition to finish
** (its latency, four cycles or so, per term), which made the reductions a third of an evaluation. */
static double sum(const double *restrict x, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t t;
    for (t = 0; t + 4 <= n; t += 4) s0 += x[t], s1 += x[t + 1], s2 += x[t + 2], s3 += x[t + 3];
    for (; t < n; t++) s0 += x[t];
    return (s0 + s1) + (s2 + s3);
}

/* Add d[t] to seed[ix[t]], t < n. Terms of one site come in runs (Y[i,1..T] read alpha[i]): summing a run in a
** register first spares a store and reload of the same seed per term. */
static void scatter(double *restrict seed, const int *restrict ix, const double *restrict d, size_t n)
{
    size_t t;
    int cur;
    double acc;
    if (!n) return;
    cur = ix[0], acc = d[0];
    for (t = 1; t < n; t++) {
        if (ix[t] == cur) {
            acc += d[t];
            continue;
        }
        seed[cur] += acc;
        cur = ix[t], acc = d[t];
    }
    seed[cur] += acc;
}

/* Gather a group's leaves, run its template over the group by blocks, and reduce each block in place: the terms
** into the log density, and (with the gradient) the partials into the leaves' seeds, scattered by leaf index. */
static double run_group(const vgroup *G, gws *q, const double *leafv, double *seed)
{
    plm_prog_in tin[PLM_NGROUPS];
    plm_prog_ws *pw = seed ? &q->lpg : &q->lp;
    size_t n = (size_t)G->n, first, t;
    double lp = 0;
    int k, uni;
    memset(tin, 0, sizeof tin);
    for (k = 0; k < G->nu; k++) q->U[k] = leafv[G->uleaf[k]];
    for (k = 0; k < G->nvn; k++) {
        const int *ix = G->vleaf + (size_t)k * n;
        double *y = q->Y + (size_t)k * n;
        for (t = 0; t < n; t++) y[t] = leafv[ix[t]];
    }
    tin[PLM_GRP_P].p = q->U, tin[PLM_GRP_P].ld = 1;
    tin[PLM_GRP_Y].p = q->Y, tin[PLM_GRP_Y].ld = n;
    plm_prog_uniforms(pw, tin);
    for (first = 0; first < n; first += PLM_EXPR_BLOCK) {
        size_t m = n - first < PLM_EXPR_BLOCK ? n - first : PLM_EXPR_BLOCK;
        const double *d;
        plm_prog_run_block(pw, tin, first, m);
        d = plm_prog_output(pw, 0, &uni);
        lp += uni ? d[0] * (double)m : sum(d, m);
        if (!seed) continue;
        for (k = 0; k < G->nu; k++) {
            d = plm_prog_output(pw, 1 + k, &uni);
            seed[G->uleaf[k]] += uni ? d[0] * (double)m : sum(d, m);
        }
        for (k = 0; k < G->nvn; k++) {
            const int *ix = G->vleaf + (size_t)k * n + first;
            d = plm_prog_output(pw, 1 + G->nu + k, &uni);
            if (uni)
                for (t = 0; t < m; t++) seed[ix[t]] += d[0];
            else
                scatter(seed, ix, d, m);
        }
    }
    return lp;
}

double plm_vsum_eval(plm_vsum_ws *w, double *grad)
{
    const plm_vsum *v = w->v;
    double lp;
    int k;
    plm_prog_block(&w->a, w->in, 0, 1, w->aout, NULL);
    lp = w->aval[0];
    if (grad) memset(w->seed, 0, (size_t)v->nleaf * sizeof *w->seed);
    for (k = 0; k < v->ngroups; k++) lp += run_group(&v->groups[k], &w->g[k], w->aval + 1, grad ? w->seed : NULL);
    if (grad) {
        plm_prog_uniforms(&w->b, w->in);
        plm_prog_block(&w->b, w->in, 0, 1, w->gout, NULL);
        memcpy(grad, w->grad, (size_t)v->dim * sizeof *grad);
    }
    return lp;
}
