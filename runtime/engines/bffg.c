/* bffg.c -- the BFFG engine: models (a DAG of nodes joined by kernels; latent nodes that nodes with several parents
** tie together are drawn as clusters), the backward filter that fuses messages from the leaves to the roots, and
** forward guiding with per-edge weights, in parallel over draws. The kernels' algebra is in bffg_kernel.c. */
#include "bffg_impl.h"

#include <math.h>
#include <string.h>

#include "bffg_reaction.h"
#include "par.h"

#include "bffg_dag.h"

plm_status plm_bffg_model_new(plm_ctx *ctx, plm_bffg_model **out)
{
    plm_init();
    if (!(*out = plm_gc_alloc(sizeof **out))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    return PLM_OK;
}

static const char *space(int discrete) { return discrete ? "discrete" : "continuous"; }

static int nparents_of(const node *nd) { return nd->np > 1 ? nd->np : nd->parent >= 0; }
static const int *parents_of(const node *nd) { return nd->np > 1 ? nd->parents : &nd->parent; }

static int uf_find(int *uf, int x)
{
    while (uf[x] != x) x = uf[x] = uf[uf[x]];
    return x;
}

/* Join the sets of a and b (the smaller index becomes the root); 1 when they were apart. */
static int uf_union(int *uf, int a, int b)
{
    a = uf_find(uf, a), b = uf_find(uf, b);
    if (a == b) return 0;
    if (a < b) uf[b] = a;
    else uf[a] = b;
    return 1;
}

/* Merge every strongly connected component of the graph of units (edges parent unit -> child unit) into one unit:
** a cluster whose members are joined through a node outside it (a -> c -> b) would otherwise be its own ancestor.
** Tarjan's algorithm, iterative (chains may be long). Returns 1 when something merged, -1 when out of memory. */
static int merge_cycles(plm_bffg_model *m, int *uf)
{
    int n = m->n, i, j, ne = 0, idx = 0, sp = 0, cp = 0, merged = 0;
    int *deg = plm_gc_alloc_atomic((size_t)(5 * n + 1) * sizeof *deg), *adj, *ix, *low, *stk, *cs, *it;
    char *on;
    for (i = 0; i < n; i++) ne += nparents_of(&m->nodes[i]);
    adj = plm_gc_alloc_atomic((size_t)(ne + 1) * sizeof *adj), on = plm_gc_alloc_atomic((size_t)n + 1);
    it = plm_gc_alloc_atomic((size_t)(n + 1) * sizeof *it);
    if (!deg || !adj || !on || !it) return -1;
    ix = deg + n + 1, low = ix + n, stk = low + n, cs = stk + n;
    /* CSR adjacency over units (node indices of union-find roots): deg[u]..deg[u+1] */
    for (i = 0; i <= n; i++) deg[i] = 0;
    for (i = 0; i < n; i++) {
        int u = uf_find(uf, i);
        for (j = 0; j < nparents_of(&m->nodes[i]); j++)
            if (uf_find(uf, parents_of(&m->nodes[i])[j]) != u) deg[uf_find(uf, parents_of(&m->nodes[i])[j]) + 1]++;
    }
    for (i = 0; i < n; i++) deg[i + 1] += deg[i];
    for (i = 0; i < n; i++) it[i] = deg[i];
    for (i = 0; i < n; i++) {
        int u = uf_find(uf, i);
        for (j = 0; j < nparents_of(&m->nodes[i]); j++) {
            int p = uf_find(uf, parents_of(&m->nodes[i])[j]);
            if (p != u) adj[it[p]++] = u;
        }
    }
    for (i = 0; i < n; i++) ix[i] = -1, on[i] = 0;
    for (i = 0; i < n; i++) {
        if (uf[i] != i || ix[i] >= 0) continue;
        ix[i] = low[i] = idx++, stk[sp++] = i, on[i] = 1;
        cs[cp] = i, it[cp++] = deg[i];
        while (cp > 0) {
            int v = cs[cp - 1];
            if (it[cp - 1] < deg[v + 1]) {
                int w = adj[it[cp - 1]++];
                if (ix[w] < 0) {
                    ix[w] = low[w] = idx++, stk[sp++] = w, on[w] = 1;
                    cs[cp] = w, it[cp++] = deg[w];
                } else if (on[w] && ix[w] < low[v])
                    low[v] = ix[w];
                continue;
            }
            cp--;
            if (cp > 0 && low[v] < low[cs[cp - 1]]) low[cs[cp - 1]] = low[v];
            if (low[v] == ix[v]) {
                int w;
                do {
                    w = stk[--sp];
                    on[w] = 0;
                    if (w != v) merged = 1, uf[w] = v;   /* w is a root: relink it directly */
                } while (w != v);
            }
        }
    }
    if (merged)   /* keep the smallest index as each set's root, as uf_union does */
        for (i = 0; i < n; i++) {
            int r = uf_find(uf, i);
            if (i < r) uf[r] = i, uf[i] = i;
        }
    return merged;
}

/* A cluster member's kernel must have a closed-form joint law with the others. */
static plm_status check_member(plm_ctx *ctx, const plm_bffg_model *m, const group *g, const node *nd)
{
    const node *last = &m->nodes[m->n - 1];
    const char *kind = nd->k->ops->name;
    if ((strcmp(kind, "linear_gaussian") != 0 && strcmp(kind, "discrete") != 0) || nd->k->aux)
        return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents; the exact filter must then draw '%s' jointly "
                                         "with '%s' (%d nodes), but '%s' has a %s kernel%s, whose joint law has no closed "
                                         "form (only linear_gaussian and discrete kernels without aux can be joined)",
                        last->name, nd->name, m->nodes[g->mem[0] == (int)(nd - m->nodes) ? g->mem[1] : g->mem[0]].name,
                        g->nmem, nd->name, kind, nd->k->aux ? " with an aux" : "");
    if (nd->k->discrete_out != g->discrete)
        return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents; the exact filter must then draw '%s' (%s) "
                                         "jointly with '%s' (%s): mixed discrete and continuous nodes cannot be joined",
                        last->name, nd->name, space(nd->k->discrete_out), m->nodes[g->mem[0]].name, space(g->discrete));
    return PLM_OK;
}

/* The joint kernel of cluster g given its parent unit's value (Din doubles or states; 0: a prior). Continuous:
** member i is X_i = sum_j M_ij X_j + E_i x + beta_i + G_i eps_i over earlier members j, so the joint is
** X = T (E x + beta + G eps) with T = (I - M)^-1, computed by forward substitution over the rows (M is strictly
** lower triangular in member order): B = T E, beta = T beta, Q = (T G)(T G)'. Discrete: the product of the
** members' conditional tables, for every parent state and joint state. */
static plm_status joint_kernel(plm_ctx *ctx, const plm_bffg_model *m, group *g, int Din)
{
    const group *pg = g->pgroup >= 0 ? &m->groups[g->pgroup] : NULL;
    int D = g->D, r, j, l, a, b;
    if (g->discrete) {
        int rows = Din ? Din : 1, x, s;
        double *P;
        if ((double)rows * D > 1e7)
            return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents; the exact filter must then draw %d nodes "
                                             "jointly ('%s' ...), whose table has %.0f entries (at most 1e7)",
                            m->nodes[m->n - 1].name, g->nmem, m->nodes[g->mem[0]].name, (double)rows * D);
        if (!(P = plm_gc_alloc_atomic((size_t)rows * D * sizeof *P))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        for (x = 0; x < rows; x++) {
            double sum = 0;
            for (s = 0; s < D; s++) {
                double p = 1;
                for (r = 0; r < g->nmem && p > 0; r++) {
                    const node *nd = &m->nodes[g->mem[r]];
                    int row = 0, np = nparents_of(nd);
                    for (j = 0; j < np; j++) {
                        const node *q = &m->nodes[parents_of(nd)[j]];
                        int st = q->group >= 0 && &m->groups[q->group] == g ? (s / g->off[q->slot]) % g->dim[q->slot]
                                 : pg ? (x / pg->off[q->slot]) % pg->dim[q->slot] : x;
                        row = row * q->k->dout + st;
                    }
                    p *= nd->k->P[(size_t)row * g->dim[r] + (s / g->off[r]) % g->dim[r]];
                }
                sum += P[(size_t)x * D + s] = p;
            }
            /* products of rows summing to 1 sum to 1 up to rounding: renormalise for the check in _discrete */
            for (s = 0; s < D; s++) P[(size_t)x * D + s] /= sum;
        }
        return plm_bffg_kernel_discrete(ctx, Din, D, P, &g->k);
    } else {
        int rt = 0, cols, gc;
        double *Y, *M, *B, *beta, *Q;
        for (r = 0; r < g->nmem; r++) rt += m->nodes[g->mem[r]].k->r;
        cols = Din + 1 + rt;
        Y = plm_gc_alloc_atomic((size_t)D * cols * sizeof *Y), M = plm_gc_alloc_atomic((size_t)D * D * sizeof *M);
        B = plm_gc_alloc_atomic((size_t)D * (Din ? Din : 1) * sizeof *B), beta = plm_gc_alloc_atomic((size_t)D * sizeof *beta);
        Q = plm_gc_alloc_atomic((size_t)D * D * sizeof *Q);
        if (!Y || !M || !B || !beta || !Q) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        memset(Y, 0, (size_t)D * cols * sizeof *Y), memset(M, 0, (size_t)D * D * sizeof *M);
        for (r = 0, gc = 0; r < g->nmem; r++) {
            const node *nd = &m->nodes[g->mem[r]];
            const plm_bffg_kernel *k = nd->k;
            int o = g->off[r], d = g->dim[r], np = nparents_of(nd), s = 0;
            for (j = 0; j < np; j++) {   /* the columns of B that read parent j, into M (inside) or E (the parent unit) */
                const node *q = &m->nodes[parents_of(nd)[j]];
                int inside = q->group >= 0 && &m->groups[q->group] == g, w = q->k->dout;
                int c0 = inside ? g->off[q->slot] : pg ? pg->off[q->slot] : 0;
                for (a = 0; a < d; a++)
                    for (l = 0; l < w; l++) {
                        double v = k->B[a * k->din + s + l];
                        if (inside) M[(o + a) * D + c0 + l] += v;
                        else Y[(o + a) * cols + c0 + l] += v;
                    }
                s += w;
            }
            for (a = 0; a < d; a++) {
                Y[(o + a) * cols + Din] = k->beta[a];
                for (l = 0; l < k->r; l++) Y[(o + a) * cols + Din + 1 + gc + l] = k->G[a * k->r + l];
            }
            gc += k->r;
        }
        for (a = 0; a < D; a++)   /* Y := T Y, row by row */
            for (b = 0; b < a; b++)
                if (M[a * D + b] != 0)
                    for (l = 0; l < cols; l++) Y[a * cols + l] += M[a * D + b] * Y[b * cols + l];
        for (a = 0; a < D; a++) {
            for (l = 0; l < Din; l++) B[a * Din + l] = Y[a * cols + l];
            beta[a] = Y[a * cols + Din];
            for (b = 0; b <= a; b++) {
                double acc = 0;
                for (l = 0; l < rt; l++) acc += Y[a * cols + Din + 1 + l] * Y[b * cols + Din + 1 + l];
                Q[a * D + b] = Q[b * D + a] = acc;
            }
        }
        return plm_bffg_kernel_linear_gaussian(ctx, D, Din, B, beta, Q, &g->k);
    }
}

/* The unit of node i: its cluster's first member, or itself. */
static int unit_of(const plm_bffg_model *m, int i)
{
    return m->nodes[i].group >= 0 ? m->groups[m->nodes[i].group].mem[0] : i;
}

/* The parent unit of unit u, or -1. */
static int unit_parent(const plm_bffg_model *m, int u)
{
    const node *nd = &m->nodes[u];
    int p = nd->group >= 0 ? m->groups[nd->group].pnode : nd->parent;
    return p >= 0 ? unit_of(m, p) : -1;
}

/* The clusters from scratch, then the drawing order. Latent nodes are merged (union-find) until (1) the parents
** outside every unit lie in one unit and (2) the graph of units has no cycle; each cluster then gets its joint
** kernel. Without nodes of several parents every unit is one node and nothing changes. */
static plm_status rebuild_groups(plm_ctx *ctx, plm_bffg_model *m)
{
    int n = m->n, i, j, ng = 0, maxstack = 0, changed, t;
    int *uf = plm_gc_alloc_atomic((size_t)(3 * n + 1) * sizeof *uf), *ext, *cnt;
    char *seen;
    if (!uf || !(seen = plm_gc_alloc_atomic((size_t)n + 1)))
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    ext = uf + n, cnt = ext + n;
    for (i = 0; i < n; i++) uf[i] = i;
    do {
        int cyc;
        changed = 0;
        for (i = 0; i < n; i++) ext[i] = -1;
        for (i = 0; i < n; i++) {   /* (1) */
            const node *nd = &m->nodes[i];
            int u = uf_find(uf, i);
            for (j = 0; j < nparents_of(nd); j++) {
                int pu = uf_find(uf, parents_of(nd)[j]);
                if (pu == u) continue;
                if (ext[u] < 0) ext[u] = pu;
                else changed |= uf_union(uf, ext[u], pu), ext[u] = uf_find(uf, ext[u]);
                u = uf_find(uf, i);
            }
        }
        if ((cyc = merge_cycles(m, uf)) < 0) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");   /* (2) */
        changed |= cyc;
    } while (changed);
    for (i = 0; i < n; i++) cnt[i] = 0;
    for (i = 0; i < n; i++) cnt[uf[i] = uf_find(uf, i)]++;
    for (i = 0; i < n; i++) {
        m->nodes[i].group = -1;
        ng += cnt[i] > 1 && uf[i] == i;
        if (m->nodes[i].np > 1) {
            int w = 0;
            for (j = 0; j < m->nodes[i].np; j++) w += m->nodes[m->nodes[i].parents[j]].k->discrete_out ? 1 : m->nodes[m->nodes[i].parents[j]].k->dout;
            if (w > maxstack) maxstack = w;
        }
    }
    m->groups = plm_gc_alloc((size_t)(ng ? ng : 1) * sizeof *m->groups);
    if (!m->groups) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    m->ngroups = 0, m->gwork = maxstack;
    /* the clusters' members and joint spaces first (a cluster's parent unit may come later in node order) */
    for (i = 0; i < n; i++) {
        group *g;
        int r;
        double Dd = 1;
        if (!(cnt[i] > 1 && uf[i] == i)) continue;
        g = &m->groups[m->ngroups];
        memset(g, 0, sizeof *g);
        g->mem = plm_gc_alloc_atomic((size_t)cnt[i] * sizeof *g->mem);
        g->off = plm_gc_alloc_atomic((size_t)cnt[i] * sizeof *g->off);
        g->dim = plm_gc_alloc_atomic((size_t)cnt[i] * sizeof *g->dim);
        if (!g->mem || !g->off || !g->dim) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        g->discrete = m->nodes[i].k->discrete_out;
        g->pnode = g->pgroup = -1;
        for (j = i; j < n; j++)
            if (uf[j] == i) {
                m->nodes[j].group = m->ngroups, m->nodes[j].slot = g->nmem;
                g->dim[g->nmem] = m->nodes[j].k->dout;
                g->mem[g->nmem++] = j;
            }
        for (r = 0; r < g->nmem; r++) {
            plm_status st = check_member(ctx, m, g, &m->nodes[g->mem[r]]);
            if (st) return st;
        }
        if (g->discrete) {
            for (r = g->nmem - 1; r >= 0; r--) g->off[r] = (int)Dd, Dd *= g->dim[r];
            if (Dd > 1e7)
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents; the exact filter must then draw %d "
                                                 "nodes jointly ('%s' ...), which have %.0f joint states (at most 1e7)",
                                m->nodes[n - 1].name, g->nmem, m->nodes[i].name, Dd);
            g->D = (int)Dd;
        } else
            for (r = 0; r < g->nmem; r++) g->off[r] = g->D, g->D += g->dim[r];
        m->ngroups++;
    }
    for (t = 0; t < m->ngroups; t++) {
        group *g = &m->groups[t];
        int r, Din = 0;
        plm_status st;
        for (r = 0; r < g->nmem && g->pnode < 0; r++) {
            const node *nd = &m->nodes[g->mem[r]];
            for (j = 0; j < nparents_of(nd); j++)
                if (m->nodes[parents_of(nd)[j]].group != t) {
                    g->pnode = parents_of(nd)[j];
                    break;
                }
        }
        if (g->pnode >= 0) {
            const node *p = &m->nodes[g->pnode];
            g->pgroup = p->group;
            Din = p->group >= 0 ? m->groups[p->group].D : p->k->dout;
            if (p->k->discrete_out != g->discrete)
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents; the exact filter must then draw '%s' "
                                                 "jointly with others, given its %s parent '%s': mixed discrete and "
                                                 "continuous nodes cannot be joined", m->nodes[n - 1].name,
                                m->nodes[g->mem[0]].name, space(p->k->discrete_out), p->name);
        }
        if ((st = joint_kernel(ctx, m, g, Din))) return st;
        r = g->discrete ? 2 : g->D + Din;
        if (r > m->gwork) m->gwork = r;
    }
    /* the drawing order: each unit after its parent unit (walk up to the first unit already placed, then place the
    ** walk from the top); in node order when no unit comes before its parent unit */
    for (i = 0; i < n; i++) seen[i] = 0;
    for (i = 0, t = 0; i < n; i++) {
        int u = unit_of(m, i), top = 0, *walk = ext;   /* ext is free now */
        while (u >= 0 && !seen[u]) seen[u] = 1, walk[top++] = u, u = unit_parent(m, u);
        while (top > 0) {
            u = walk[--top];
            if (m->nodes[u].group >= 0) {
                const group *g = &m->groups[m->nodes[u].group];
                for (j = 0; j < g->nmem; j++) m->order[t++] = g->mem[j];
            } else
                m->order[t++] = u;
        }
    }
    return PLM_OK;
}

plm_status plm_bffg_add(plm_ctx *ctx, plm_bffg_model *m, const char *name, int parent, const plm_bffg_kernel *k,
                        const double *value, int *index)
{
    return plm_bffg_add_multi(ctx, m, name, parent < 0 ? 0 : 1, &parent, k, value, index);
}

plm_status plm_bffg_add_multi(plm_ctx *ctx, plm_bffg_model *m, const char *name, int nparents, const int *parents,
                              const plm_bffg_kernel *k, const double *value, int *index)
{
    node *nd;
    int w, parent = nparents > 0 ? parents[0] : -1, i, j;
    if (!name || !*name) return plm_fail(ctx, PLM_EINVAL, "bffg: a node needs a non-empty name");
    if (!k) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has no kernel", name);
    if (plm_bffg_find(m, name) >= 0) return plm_fail(ctx, PLM_EINVAL, "bffg: there is already a node named '%s'", name);
    if (nparents < 0 || (nparents > 0 && !parents)) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': bad parent list", name);
    for (i = 0; i < nparents; i++)
        if (parents[i] < -1 || parents[i] >= m->n || (nparents > 1 && parents[i] < 0))
            return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': no parent node %d", name, parents[i]);
    if (nparents > 1) {
        /* several parents: all discrete or all continuous, latent, and the kernel's input is their stacked value;
        ** rebuild_groups then joins whatever the exact filter needs to draw jointly */
        int dis = m->nodes[parents[0]].k->discrete_out;
        double size = dis ? 1 : 0;
        if (strcmp(k->ops->name, "linear_gaussian") != 0 && strcmp(k->ops->name, "discrete") != 0)
            return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents, but a %s kernel takes one parent (only "
                                             "linear_gaussian and discrete kernels take the stacked value of several)",
                            name, k->ops->name);
        for (i = 0; i < nparents; i++) {
            const node *p = &m->nodes[parents[i]];
            for (j = 0; j < i; j++)
                if (parents[j] == parents[i]) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' names parent '%s' twice", name, p->name);
            if (p->value)
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': its parent '%s' is observed, and observed nodes must be "
                                                 "leaves", name, p->name);
            if (p->k->discrete_out != dis)
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents, and then they must be all discrete or "
                                                 "all continuous: '%s' is %s, '%s' is %s", name, m->nodes[parents[0]].name,
                                space(dis), p->name, space(p->k->discrete_out));
            if (dis) size *= p->k->dout;
            else size += p->k->dout;
        }
        if (k->discrete_in != dis || k->din != size)
            return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': its kernel takes a %s value of %s %d, but its %d parents stack to "
                                             "%s %.0f (%s)", name, space(k->discrete_in), k->discrete_in ? "states" : "dimension",
                            k->din, nparents, dis ? "states" : "dimension", size,
                            dis ? "the product of their numbers of states, the first parent slowest"
                                : "the sum of their dimensions, in the order given");
        if (!k->ops->logpdf && value)
            return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' cannot be observed through a %s kernel", name, k->ops->name);
    } else if (parent == -1) {
        if (k->din != 0)
            return plm_fail(ctx, PLM_EINVAL, "bffg: root '%s' needs a prior (a kernel with no input), not a kernel from "
                                             "%d %s", name, k->din, k->discrete_in ? "states" : "dimensions");
        if (value) return plm_fail(ctx, PLM_EINVAL, "bffg: root '%s' cannot be observed", name);
    } else if (value && !k->ops->logpdf) {
        return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' cannot be observed through a %s kernel (no density): make it "
                                         "latent and observe it through another kernel", name, k->ops->name);
    } else {
        const node *p = &m->nodes[parent];
        if (p->value) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': its parent '%s' is observed, and observed nodes "
                                                       "must be leaves", name, p->name);
        if (k->din == 0) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has parent '%s' but its kernel is a prior", name, p->name);
        if (k->discrete_in != p->k->discrete_out || k->din != p->k->dout)
            return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': its kernel takes a %s value of dimension %d, but parent '%s' "
                                             "is %s of dimension %d", name, space(k->discrete_in), k->din, p->name,
                            space(p->k->discrete_out), p->k->dout);
    }
    w = k->discrete_out ? 1 : k->dout;
    if (value) {
        if (k->discrete_out) {
            if (!(value[0] >= 0 && value[0] < k->dout && value[0] == floor(value[0])))
                return plm_fail(ctx, PLM_EDOM, "bffg: node '%s': observed state %g is not in 0..%d", name, value[0], k->dout - 1);
        } else
            for (i = 0; i < w; i++)
                if (!isfinite(value[i]))
                    return plm_fail(ctx, PLM_EDOM, "bffg: node '%s': observed value[%d] must be finite (got %g)", name, i + 1, value[i]);
    }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 16;
        node *nn = plm_gc_alloc((size_t)cap * sizeof *nn);
        if (!nn) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        int *no = plm_gc_alloc_atomic((size_t)cap * sizeof *no);
        if (!no) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        if (m->n) memcpy(nn, m->nodes, (size_t)m->n * sizeof *nn), memcpy(no, m->order, (size_t)m->n * sizeof *no);
        m->nodes = nn, m->order = no, m->cap = cap;
    }
    nd = &m->nodes[m->n];
    memset(nd, 0, sizeof *nd);
    if (!(nd->name = plm_gc_alloc_atomic(strlen(name) + 1))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    strcpy(nd->name, name);
    nd->parent = parent;
    nd->np = nparents;
    nd->group = -1;
    if (nparents > 1) {
        if (!(nd->parents = plm_gc_alloc_atomic((size_t)nparents * sizeof *nd->parents)))
            return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        memcpy(nd->parents, parents, (size_t)nparents * sizeof *parents);
    }
    nd->k = k;
    nd->offset = -1;
    if (value) {
        if (!(nd->value = plm_gc_alloc_atomic((size_t)w * sizeof *value))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        memcpy(nd->value, value, (size_t)w * sizeof *value);
    } else {
        nd->offset = (long)m->width;
        m->width += (size_t)w;
    }
    m->order[m->n] = m->n;   /* after its parent unit, which is placed */
    m->n++;
    if (nparents > 1) {
        plm_status st = rebuild_groups(ctx, m);
        if (st) {   /* leave the model as it was */
            plm_ctx c2;
            plm_ctx_clear(&c2);
            m->n--;
            if (!value) m->width -= (size_t)w;
            rebuild_groups(&c2, m);
            return st;
        }
    }
    if (index) *index = m->n - 1;
    return PLM_OK;
}

int plm_bffg_nnodes(const plm_bffg_model *m) { return m->n; }
size_t plm_bffg_draw_width(const plm_bffg_model *m) { return m->width; }

int plm_bffg_find(const plm_bffg_model *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->nodes[i].name, name) == 0) return i;
    return -1;
}

void plm_bffg_node(const plm_bffg_model *m, int i, plm_bffg_node_info *info)
{
    const node *nd = &m->nodes[i];
    info->name = nd->name;
    info->parent = nd->parent;
    info->nparents = nd->np;
    info->parents = nd->np > 1 ? nd->parents : &nd->parent;
    info->observed = nd->value != NULL;
    info->discrete = nd->k->discrete_out;
    info->dim = nd->k->dout;
    info->width = nd->k->discrete_out ? 1 : nd->k->dout;
    info->offset = nd->offset;
    info->kernel = nd->k;
    info->value = nd->value;
}

/* ---- backward filter ---------------------------------------------------------------------------------- */

/* The messages of one filter come from one block (a filter makes about three per node, and pCN makes a filter
** per parameter move: one allocation instead of hundreds). */
typedef struct msg_arena {
    char *p;
    size_t left;
} msg_arena;

static size_t msg_bytes(int discrete, int dim)
{
    size_t nv = (size_t)(dim ? dim : 1), nh = discrete ? 0 : (size_t)dim * dim;
    return (sizeof(plm_bffg_msg) + (nv + nh) * sizeof(double) + 15) & ~(size_t)15;
}

/* A message of the constant function 1 on a space, from the arena (its own block if the arena is used up, which
** the sizing in plm_bffg_backward rules out: such a block would be left to the collector). */
static plm_bffg_msg *msg_new(msg_arena *a, int discrete, int dim)
{
    size_t nv = (size_t)(dim ? dim : 1), bytes = msg_bytes(discrete, dim);
    plm_bffg_msg *h;
    int i;
    if (bytes <= a->left) {
        h = (plm_bffg_msg *)a->p;
        a->p += bytes, a->left -= bytes;
    } else if (!(h = plm_gc_alloc(bytes)))
        return NULL;
    memset(h, 0, bytes);
    h->v = (double *)(h + 1);
    h->discrete = discrete, h->dim = dim;
    if (discrete)
        for (i = 0; i < dim; i++) h->v[i] = 1;
    else if (dim)
        h->H = h->v + nv;
    return h;
}

/* The space of the message node i sends up (to its parent unit, or a constant for a root); 0 when it sends
** none (a cluster's members after its first: the cluster sends one). */
static int up_shape(const plm_bffg_model *m, int i, int *discrete, int *dim)
{
    const node *nd = &m->nodes[i];
    *discrete = 0, *dim = 0;
    if (nd->group >= 0) {
        const group *g = &m->groups[nd->group];
        if (g->mem[0] != i) return 0;
        if (g->pnode >= 0)
            *discrete = g->discrete, *dim = g->pgroup >= 0 ? m->groups[g->pgroup].D : m->nodes[g->pnode].k->dout;
    } else if (nd->np > 1)
        *discrete = nd->k->discrete_in, *dim = nd->k->din;
    else if (nd->parent >= 0)
        *discrete = m->nodes[nd->parent].k->discrete_out, *dim = m->nodes[nd->parent].k->dout;
    return 1;
}

/* into *= add: messages multiply, so constants and Gaussian parameters add; discrete vectors multiply and are
** rescaled to max 1, the scale going to the constant. A gamma message fuses only with constant ones (one exact
** observation ahead): returns -1 when two messages cannot be multiplied in their families. */
static int msg_fuse(plm_bffg_msg *into, const plm_bffg_msg *add)
{
    int i, n = into->dim;
    if (add->gamma || into->gamma) {
        const plm_bffg_msg *g = add->gamma ? add : into, *o = add->gamma ? into : add;
        if (o->gamma || o->discrete || o->v[0] != 0 || o->H[0] != 0) return -1;
        into->gamma = 1, into->gy = g->gy, into->gk = g->gk, into->gb = g->gb;
        into->c += add->c;
        return 0;
    }
    into->c += add->c;
    if (into->discrete) {
        double mx = 0;
        for (i = 0; i < n; i++) mx = fmax(mx, into->v[i] *= add->v[i]);
        if (mx > 0) {
            for (i = 0; i < n; i++) into->v[i] /= mx;
            into->c += log(mx);
        } else
            into->c = -INFINITY;
    } else {
        for (i = 0; i < n; i++) into->v[i] += add->v[i];
        for (i = 0; i < n * n; i++) into->H[i] += add->H[i];
    }
    return 0;
}

double plm_bffg_filter_loglik(const plm_bffg_filter *f) { return f->loglik; }

const plm_bffg_msg *plm_bffg_message(const plm_bffg_filter *f, int i)
{
    return (i >= 0 && i < f->m->n && f->m->nodes[i].group < 0) ? f->msg[i] : NULL;
}

/* Multiply the cluster's joint message by msg, a message on the stacked value of the nsub members sub (node
** indices, in the stacked order) of cluster g. */
static plm_status embed(plm_ctx *ctx, const plm_bffg_model *m, const group *g, plm_bffg_msg *joint, int nsub,
                        const int *sub, const plm_bffg_msg *msg)
{
    int D = g->D, j, a, b, l;
    int *map = plm_gc_alloc_atomic((size_t)(g->discrete ? nsub : msg->dim) * sizeof *map + sizeof *map);
    if (!map) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    if (msg->gamma)
        return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': a gamma-process message cannot reach nodes drawn jointly "
                                         "(joined by a node with several parents)", m->nodes[sub[0]].name);
    joint->c += msg->c;
    if (g->discrete) {
        double mx = 0;
        for (j = 0; j < nsub; j++) map[j] = m->nodes[sub[j]].slot;
        for (a = 0; a < D; a++) {
            int sidx = 0;
            for (j = 0; j < nsub; j++) sidx = sidx * g->dim[map[j]] + (a / g->off[map[j]]) % g->dim[map[j]];
            mx = fmax(mx, joint->v[a] *= msg->v[sidx]);
        }
        if (mx > 0) {
            for (a = 0; a < D; a++) joint->v[a] /= mx;
            joint->c += log(mx);
        } else
            joint->c = -INFINITY;
        return PLM_OK;
    }
    for (j = 0, a = 0; j < nsub; j++) {   /* stacked coordinate -> joint coordinate */
        int r = m->nodes[sub[j]].slot;
        for (l = 0; l < g->dim[r]; l++) map[a++] = g->off[r] + l;
    }
    for (a = 0; a < msg->dim; a++) {
        joint->v[map[a]] += msg->v[a];
        for (b = 0; b < msg->dim; b++) joint->H[map[a] * D + map[b]] += msg->H[a * msg->dim + b];
    }
    return PLM_OK;
}

/* The highest node whose own message is zero: the observations below it are impossible for every value. */
static plm_status impossible(plm_ctx *ctx, const plm_bffg_model *m, plm_bffg_msg **msg, int i)
{
    while (m->nodes[i].parent >= 0 && msg[m->nodes[i].parent]->c == -INFINITY) i = m->nodes[i].parent;
    return plm_fail(ctx, PLM_EDOM, "bffg: the observations below node '%s' have probability 0 under the model",
                    m->nodes[i].name);
}

plm_status plm_bffg_backward(plm_ctx *ctx, const plm_bffg_model *m, const double *const *values,
                             plm_bffg_filter **out)
{
    return plm_bffg_backward_reuse(ctx, m, values, NULL, out);
}

plm_status plm_bffg_backward_reuse(plm_ctx *ctx, const plm_bffg_model *m, const double *const *values,
                                   plm_bffg_spare *spare, plm_bffg_filter **out)
{
    /* one block: the filter, then its per-node and per-group tables (pCN makes a filter per parameter move) */
    size_t nn = (size_t)(m->n ? m->n : 1), ng = (size_t)m->ngroups + 1;
    plm_bffg_filter *f = plm_gc_alloc(sizeof *f + 4 * nn * sizeof(void *) + 2 * ng * sizeof(void *) + nn * sizeof(size_t));
    size_t *moff, total = 0;   /* per latent node: the offset of its guide's slice of f->mem */
    size_t nmsg = 0;           /* the messages' bytes (msg_arena) */
    msg_arena A = {NULL, 0};
    int i, t, n = m->n, disc, dim;
    plm_status st;
    if (!f) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    f->values = (const double **)(f + 1), f->msg = (plm_bffg_msg **)(f->values + nn), f->up = f->msg + nn;
    f->guide = (void **)(f->up + nn), f->gmsg = (plm_bffg_msg **)(f->guide + nn), f->gguide = (void **)(f->gmsg + ng);
    moff = (size_t *)(f->gguide + ng);
    if (n == 0) return plm_fail(ctx, PLM_EINVAL, "bffg: the model has no nodes");
    f->m = m;
    for (i = 0; i < n; i++) {
        if (!m->nodes[i].value) nmsg += msg_bytes(m->nodes[i].k->discrete_out, m->nodes[i].k->dout);
        if (up_shape(m, i, &disc, &dim)) nmsg += msg_bytes(disc, dim);
    }
    for (i = 0; i < m->ngroups; i++) nmsg += msg_bytes(m->groups[i].discrete, m->groups[i].D);
    if (spare && spare->msgs && spare->nmsgs >= nmsg) {
        f->msgs = spare->msgs, f->nmsgs = spare->nmsgs;
        spare->msgs = NULL;
    } else if ((f->msgs = plm_gc_alloc(nmsg ? nmsg : 1)))
        f->nmsgs = nmsg;
    else
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    A.p = f->msgs, A.left = f->nmsgs;
    for (i = 0; i < n; i++) {
        const node *nd = &m->nodes[i];
        f->values[i] = nd->value;
        if (values && values[i]) {
            int w = nd->k->discrete_out ? 1 : nd->k->dout, j;
            double *v;
            if (!nd->value) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' is latent, so it cannot be given a value", nd->name);
            if (!(v = plm_gc_alloc_atomic((size_t)w * sizeof *v))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
            memcpy(v, values[i], (size_t)w * sizeof *v);
            for (j = 0; j < w; j++)
                if (nd->k->discrete_out ? !(v[0] >= 0 && v[0] < nd->k->dout && v[0] == floor(v[0])) : !isfinite(v[j]))
                    return plm_fail(ctx, PLM_EDOM, "bffg: node '%s': observed value %g is out of range", nd->name, v[j]);
            f->values[i] = v;
        }
        if (!nd->value) {
            if (!(f->msg[i] = msg_new(&A, nd->k->discrete_out, nd->k->dout))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
            if (nd->k->work > f->work) f->work = nd->k->work;
        } else if (nd->k->work > f->work)
            f->work = nd->k->work;
    }
    for (i = 0; i < m->ngroups; i++) {
        const group *g = &m->groups[i];
        if (!(f->gmsg[i] = msg_new(&A, g->discrete, g->D))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        if (g->k->work > f->work) f->work = g->k->work;
    }
    f->kwork = f->work;
    f->work += (size_t)m->gwork;
    /* the latent nodes' guides' grid storage, one block (see guide_mem) */
    for (i = 0; i < n; i++) {
        moff[i] = total;
        if (!m->nodes[i].value && m->nodes[i].k->ops->guide_mem) total += m->nodes[i].k->ops->guide_mem(m->nodes[i].k);
    }
    f->mem = NULL, f->nmem = 0;
    if (total && spare && spare->mem && spare->nmem >= total) {   /* (every double of it is written below) */
        f->mem = spare->mem, f->nmem = spare->nmem;
        spare->mem = NULL;
    } else if (total) {
        if (!(f->mem = plm_gc_alloc_atomic(total * sizeof *f->mem))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        f->nmem = total;
    }
    /* the drawing order puts every unit after its parent unit, so one sweep from its end fuses every message
    ** before it is pulled back */
    for (t = n - 1; t >= 0; t--) {
        const node *nd;
        const plm_bffg_kernel *back;
        plm_bffg_msg *up;
        i = m->order[t], nd = &m->nodes[i];
        back = nd->k->aux ? nd->k->aux : nd->k;
        if ((t & 1023) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg: interrupted");
        if (nd->group >= 0) {   /* a cluster, at its first member (the others come after it in the order) */
            int gi = nd->group;
            const group *g = &m->groups[gi];
            if (g->mem[0] != i) continue;
            up_shape(m, i, &disc, &dim);
            if (!(up = msg_new(&A, disc, dim))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
            if (f->gmsg[gi]->c == -INFINITY)
                return plm_fail(ctx, PLM_EDOM, "bffg: the observations below node '%s' and the nodes drawn jointly with it "
                                               "have probability 0 under the model", nd->name);
            if ((st = g->k->ops->guide(ctx, g->k, f->gmsg[gi], &f->gguide[gi])) ||
                (st = g->k->ops->pullback(ctx, g->k, f->gmsg[gi], up)))
                return st;
            if (up->c == -INFINITY)
                return plm_fail(ctx, PLM_EDOM, "bffg: the observations below node '%s' and the nodes drawn jointly with it "
                                               "have probability 0 under the model", nd->name);
            if (g->pnode < 0)
                f->loglik += up->c;
            else if (msg_fuse(g->pgroup >= 0 ? f->gmsg[g->pgroup] : f->msg[g->pnode], up))
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': an exact gamma-process observation cannot be combined "
                                                 "with another message at the same node", m->nodes[g->pnode].name);
            continue;
        }
        up_shape(m, i, &disc, &dim);
        if (!(up = msg_new(&A, disc, dim))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        if (!nd->value) {
            if (f->msg[i]->c == -INFINITY) return impossible(ctx, m, f->msg, i);
            if (nd->k->ops->guide_at) {
                if ((st = nd->k->ops->guide_at(ctx, nd->k, f->msg[i], f->mem ? f->mem + moff[i] : NULL, &f->guide[i])))
                    return st;
            } else if ((st = nd->k->ops->guide(ctx, nd->k, f->msg[i], &f->guide[i])))
                return st;
            if (back == nd->k && back->ops->guide_msg)
                back->ops->guide_msg(back, f->guide[i], up);
            else if ((st = back->ops->pullback(ctx, back, f->msg[i], up)))
                return st;
        } else if ((st = back->ops->observe(ctx, back, f->values[i], up)))
            return st;
        if (up->c == -INFINITY) return impossible(ctx, m, f->msg, nd->parent >= 0 ? nd->parent : i);
        f->up[i] = up;
        if (nd->parent >= 0 && m->nodes[nd->parent].group >= 0) {
            int gi = m->nodes[nd->parent].group;
            if ((st = embed(ctx, m, &m->groups[gi], f->gmsg[gi], nparents_of(nd), parents_of(nd), up))) return st;
        } else if (nd->parent >= 0) {
            if (msg_fuse(f->msg[nd->parent], up))
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': an exact gamma-process observation cannot be combined "
                                                 "with another message at the same node", m->nodes[nd->parent].name);
        } else
            f->loglik += up->c;
    }
    *out = f;
    return PLM_OK;
}

/* ---- forward guiding ---------------------------------------------------------------------------------- */

typedef struct fwd {
    const plm_bffg_filter *f;
    uint64_t seed;
    double *draws, *logw, *edge;
    volatile int stop;
    int failed;   /* a worker could not allocate its workspace */
} fwd;

/* The value a node's kernel takes: its parent's, or (several parents) their stacked value gathered into xbuf. */
static const double *parent_value(const plm_bffg_model *m, const node *nd, const double *row, double *xbuf)
{
    int j, l, a = 0;
    if (nd->np < 2) return nd->parent >= 0 ? row + m->nodes[nd->parent].offset : NULL;
    if (nd->k->discrete_in) {
        double sidx = 0;
        for (j = 0; j < nd->np; j++) {
            const node *p = &m->nodes[nd->parents[j]];
            sidx = sidx * p->k->dout + row[p->offset];
        }
        xbuf[0] = sidx;
        return xbuf;
    }
    for (j = 0; j < nd->np; j++) {
        const node *p = &m->nodes[nd->parents[j]];
        for (l = 0; l < p->k->dout; l++) xbuf[a++] = row[p->offset + l];
    }
    return xbuf;
}

/* Spread a cluster's joint value y (D doubles, or one joint state) over its members' places in row. */
static void scatter(const plm_bffg_model *m, const group *g, const double *y, double *row)
{
    for (int r = 0; r < g->nmem; r++) {
        const node *nd = &m->nodes[g->mem[r]];
        if (g->discrete)
            row[nd->offset] = (double)(((int)y[0] / g->off[r]) % g->dim[r]);
        else
            memcpy(row + nd->offset, y + g->off[r], (size_t)g->dim[r] * sizeof *y);
    }
}

/* Gather a cluster's joint value from its members' places in row into y. */
static void gather(const plm_bffg_model *m, const group *g, const double *row, double *y)
{
    int s = 0;
    for (int r = 0; r < g->nmem; r++) {
        const node *nd = &m->nodes[g->mem[r]];
        if (g->discrete)
            s += (int)row[nd->offset] * g->off[r];
        else
            memcpy(y + g->off[r], row + nd->offset, (size_t)g->dim[r] * sizeof *y);
    }
    if (g->discrete) y[0] = s;
}

/* The draw of node i into row, from the random stream r or (r NULL) the innovations z; returns its log weight.
** A cluster is drawn whole at its first member (the others add 0), from its parent unit's value. */
static double draw_node(const plm_bffg_filter *f, int i, double *row, double *work, plm_rng *r, const double *z)
{
    const plm_bffg_model *m = f->m;
    const node *nd = &m->nodes[i];
    double *gbuf = work + f->kwork, lw;   /* m->gwork doubles: a cluster's joint value and its parent unit's, or a
                                          ** node's stacked parents */
    const double *x;
    if (nd->group >= 0) {
        const group *g = &m->groups[nd->group];
        double *xb = gbuf + (g->discrete ? 1 : g->D);
        if (g->mem[0] != i) return 0;
        if (g->pnode < 0)
            x = NULL;
        else if (g->pgroup >= 0)
            gather(m, &m->groups[g->pgroup], row, xb), x = xb;
        else
            x = row + m->nodes[g->pnode].offset;
        lw = r ? g->k->ops->sample(g->k, f->gguide[nd->group], x, gbuf, r, work)
               : g->k->ops->sample_z(g->k, f->gguide[nd->group], x, z, gbuf, work);
        scatter(m, g, gbuf, row);
        return lw;
    }
    x = parent_value(m, nd, row, gbuf);
    if (f->values[i]) return nd->k->ops->logpdf(nd->k, x, f->values[i], work);
    return r ? nd->k->ops->sample(nd->k, f->guide[i], x, row + nd->offset, r, work)
             : nd->k->ops->sample_z(nd->k, f->guide[i], x, z, row + nd->offset, work);
}

/* Draw s into row (and its edge weights into edge, or NULL); returns the total log weight, NaN when a kernel
** failed (*bad: the first such node). */
static double draw_one(const plm_bffg_filter *f, uint64_t seed, size_t s, double *row, double *work, double *edge,
                       int *bad)
{
    const plm_bffg_model *m = f->m;
    double total = 0;
    plm_rng r;
    int t;
    plm_rng_init(&r, seed, (uint64_t)s);
    for (t = 0; t < m->n; t++) {
        int i = m->order[t];
        double lw = draw_node(f, i, row, work, &r, NULL);
        if (edge) edge[i] = lw;
        if (isnan(lw) && bad && *bad < 0) *bad = i;
        total += lw;
    }
    return total;
}

static void forward_chunk(void *arg, size_t begin, size_t end, int worker)
{
    fwd *a = arg;
    const plm_bffg_filter *f = a->f;
    size_t s, width = f->m->width;
    double *work = plm_gc_alloc_atomic((f->work ? f->work : 1) * sizeof *work);
    (void)worker;
    if (!work) {
        a->failed = 1;
        return;
    }
    for (s = begin; s < end && !a->stop; s++) {
        if ((s & 255) == 0 && plm_interrupted()) {
            a->stop = 1;
            break;
        }
        a->logw[s] = draw_one(f, a->seed, s, a->draws + s * width, work,
                              a->edge ? a->edge + s * (size_t)f->m->n : NULL, NULL);
    }
}

/* A NaN weight means a kernel's draw failed (a diffusion path that left the finite numbers): name the first draw
** and its node, the same for any thread count. */
static plm_status report_nan(plm_ctx *ctx, const plm_bffg_filter *f, uint64_t seed, const double *logw, size_t n)
{
    size_t s;
    for (s = 0; s < n; s++)
        if (isnan(logw[s])) {
            double *row = plm_gc_alloc_atomic((f->m->width + 1) * sizeof *row);
            double *work = plm_gc_alloc_atomic((f->work + 1) * sizeof *work);
            int bad = -1;
            if (!row || !work) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
            draw_one(f, seed, s, row, work, NULL, &bad);
            return plm_fail(ctx, PLM_EDOM, "bffg: draw %zu: the guided draw of node '%s' failed (a diffusion path left "
                                           "the finite numbers: reduce dt, or check the parameters and the auxiliary; "
                                           "or a reaction rate was negative or not finite)",
                            s + 1, bad >= 0 ? f->m->nodes[bad].name : "?");
        }
    return PLM_OK;
}

plm_status plm_bffg_forward(plm_ctx *ctx, const plm_bffg_filter *f, size_t n, uint64_t seed, int threads,
                            double *draws, double *logw, double *edge_logw)
{
    fwd a;
    memset(&a, 0, sizeof a);
    a.f = f, a.seed = seed, a.draws = draws, a.logw = logw, a.edge = edge_logw;
    if (n == 0) return PLM_OK;
    if (!draws || !logw) return plm_fail(ctx, PLM_EINVAL, "bffg: forward needs draw and weight buffers");
    plm_parallel_for(threads, n, 256, forward_chunk, &a);
    if (a.failed) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    if (a.stop || plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg: interrupted");   /* a draw cut short is NaN */
    return report_nan(ctx, f, seed, logw, n);
}

double plm_bffg_logmeanexp(const double *logw, size_t n)
{
    double mx = -INFINITY, s = 0;
    size_t i;
    if (n == 0) return -INFINITY;
    for (i = 0; i < n; i++) mx = fmax(mx, logw[i]);
    if (mx == -INFINITY) return -INFINITY;
    for (i = 0; i < n; i++) s += exp(logw[i] - mx);
    return mx + log(s / (double)n);
}

double plm_bffg_ess(const double *logw, size_t n)
{
    double mx = -INFINITY, s = 0, s2 = 0;
    size_t i;
    for (i = 0; i < n; i++) mx = fmax(mx, logw[i]);
    if (mx == -INFINITY) return 0;
    for (i = 0; i < n; i++) {
        double w = exp(logw[i] - mx);
        s += w, s2 += w * w;
    }
    return s * s / s2;
}

/* ---- innovations (pCN MCMC, bffg_mcmc.c) -------------------------------------------------------------- */

/* Innovations of node i's draw: its cluster's (for its first member), else its kernel's (latent nodes). */
static size_t node_nz(const plm_bffg_model *m, int i)
{
    const node *nd = &m->nodes[i];
    if (nd->group >= 0) return m->groups[nd->group].mem[0] == i ? m->groups[nd->group].k->nz : 0;
    return nd->value ? 0 : nd->k->nz;
}

size_t plm_bffg_nz(const plm_bffg_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->n; i++) n += node_nz(m, i);
    return n;
}

size_t plm_bffg_filter_work(const plm_bffg_filter *f) { return f->work ? f->work : 1; }

double plm_bffg_draw_z(const plm_bffg_filter *f, const double *z, double *row, double *work)
{
    const plm_bffg_model *m = f->m;
    double total = 0;
    int t;
    for (t = 0; t < m->n; t++) {
        total += draw_node(f, m->order[t], row, work, NULL, z);
        z += node_nz(m, m->order[t]);
    }
    return total;
}

double plm_bffg_draw_z2(const plm_bffg_filter *f0, const double *z0, double *row0, double *work0, const plm_bffg_filter *f1,
                        const double *z1, double *row1, double *work1, double *ll1)
{
    const plm_bffg_model *m0 = f0->m, *m1 = f1->m;
    double t0 = 0, t1 = 0;
    int t;
    for (t = 0; t < m0->n; t++) {
        int i = m0->order[t];
        const node *a = &m0->nodes[i], *b = &m1->nodes[i];
        double l0, l1;
        if (a->group >= 0 || f0->values[i] || f1->values[i] || a->np > 1 || a->parent < 0 || b->parent < 0 ||
            !plm_bffg_sde_sample_z2(a->k, f0->guide[i], a->parent >= 0 ? row0 + m0->nodes[a->parent].offset : NULL, z0,
                                    row0 + a->offset, &l0, b->k, f1->guide[i],
                                    b->parent >= 0 ? row1 + m1->nodes[b->parent].offset : NULL, z1, row1 + b->offset, &l1)) {
            l0 = draw_node(f0, i, row0, work0, NULL, z0);
            l1 = draw_node(f1, i, row1, work1, NULL, z1);
        }
        t0 += l0, t1 += l1;
        z0 += node_nz(m0, i), z1 += node_nz(m1, i);
    }
    *ll1 = t1;
    return t0;
}

