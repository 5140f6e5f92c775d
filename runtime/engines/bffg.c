/* bffg.c -- the BFFG engine: models (a forest of nodes joined by kernels), the backward filter that fuses
** messages from the leaves to the roots, and forward guiding with per-edge weights, in parallel over draws.
** The kernels' algebra is in bffg_kernel.c. */
#include "bffg_impl.h"

#include <math.h>
#include <string.h>

#include "par.h"

typedef struct node {
    char *name;
    int parent;      /* the first parent; -1 for a root */
    int np;          /* parents: 0 (a root), 1, or several */
    int *parents;    /* np indices, when np >= 2 */
    const plm_bffg_kernel *k;
    double *value;   /* observed value, or NULL */
    long offset;     /* in a draw, for latent nodes */
    int group;       /* a root joined to other roots by a node with several parents: its group; else -1 */
    int slot;        /* its place among the group's roots */
} node;

/* Roots joined by nodes with several parents (directly or through a chain of such nodes). The exact message
** on their parents is a function of all of them together, so the group is filtered and drawn as one joint root:
** a prior that is the product of the roots' priors (block-diagonal Gaussian, or the outer product of
** categoricals over the product of their states), the messages of all their children fused on the joint space. */
typedef struct group {
    int nroots;
    int *roots;         /* node indices, in node order */
    int discrete;
    int D;              /* the joint dimension, or the number of joint states */
    int *off;           /* per root: its first coordinate (Gaussian), or its stride (discrete; the first root slowest) */
    int *dim;           /* per root: d or K */
    plm_bffg_kernel *prior;
} group;

struct plm_bffg_model {
    node *nodes;
    int n, cap;
    size_t width;    /* doubles per draw */
    group *groups;
    int ngroups;
    int gwork;       /* doubles a draw needs for the groups: the largest joint value plus the largest stacked parents */
};

struct plm_bffg_filter {
    const plm_bffg_model *m;
    plm_bffg_msg **gmsg;     /* per group: the fused message on the joint space */
    void **gguide;           /* per group: the joint prior's guided form */
    size_t kwork;            /* doubles of workspace the kernels need (the groups' buffers follow) */
    const double **values;   /* per node: the observed value in use (NULL for latent nodes) */
    plm_bffg_msg **msg;      /* per latent node: the fused message */
    plm_bffg_msg **up;       /* per node: the message it sends to its parent (or, for a root, its constant) */
    void **guide;            /* per latent node: its kernel's guided form toward that message */
    double loglik;
    size_t work;             /* doubles of workspace a draw needs */
};

plm_status plm_bffg_model_new(plm_ctx *ctx, plm_bffg_model **out)
{
    plm_init();
    if (!(*out = plm_gc_alloc(sizeof **out))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    return PLM_OK;
}

static const char *space(int discrete) { return discrete ? "discrete" : "continuous"; }

/* The group structures from scratch: roots are joined (union-find) through every node with several parents,
** then each group of two or more roots gets its joint prior. */
static plm_status rebuild_groups(plm_ctx *ctx, plm_bffg_model *m)
{
    int n = m->n, i, j, ng = 0, *uf = plm_gc_alloc_atomic((size_t)n * sizeof *uf), *cnt, maxstack = 0;
    if (!uf || !(cnt = plm_gc_alloc_atomic((size_t)n * sizeof *cnt))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    for (i = 0; i < n; i++) uf[i] = i, cnt[i] = 0;
    for (i = 0; i < n; i++) {
        const node *nd = &m->nodes[i];
        int w = 0;
        if (nd->np < 2) continue;
        for (j = 0; j < nd->np; j++) w += m->nodes[nd->parents[j]].k->discrete_out ? 1 : m->nodes[nd->parents[j]].k->dout;
        if (w > maxstack) maxstack = w;
        for (j = 1; j < nd->np; j++) {
            int a = nd->parents[0], b = nd->parents[j];
            while (uf[a] != a) a = uf[a];
            while (uf[b] != b) b = uf[b];
            if (a != b) uf[a > b ? a : b] = a < b ? a : b;
        }
    }
    for (i = 0; i < n; i++) {
        int r = i;
        while (uf[r] != r) r = uf[r];
        uf[i] = r;
        cnt[r]++;
    }
    for (i = 0; i < n; i++) m->nodes[i].group = -1, ng += cnt[i] > 1 && uf[i] == i;
    m->groups = plm_gc_alloc((size_t)(ng ? ng : 1) * sizeof *m->groups);
    if (!m->groups) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    m->ngroups = 0, m->gwork = maxstack;
    for (i = 0; i < n; i++) {
        group *g;
        int r, D = 0, dis;
        double *beta = NULL, *Q = NULL, *P = NULL;
        plm_status st;
        if (!(cnt[i] > 1 && uf[i] == i)) continue;
        g = &m->groups[m->ngroups];
        memset(g, 0, sizeof *g);
        g->roots = plm_gc_alloc_atomic((size_t)cnt[i] * sizeof *g->roots);
        g->off = plm_gc_alloc_atomic((size_t)cnt[i] * sizeof *g->off);
        g->dim = plm_gc_alloc_atomic((size_t)cnt[i] * sizeof *g->dim);
        if (!g->roots || !g->off || !g->dim) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        for (j = i; j < n; j++)
            if (uf[j] == i) {
                m->nodes[j].group = m->ngroups, m->nodes[j].slot = g->nroots;
                g->dim[g->nroots] = m->nodes[j].k->dout;
                g->roots[g->nroots++] = j;
            }
        g->discrete = dis = m->nodes[i].k->discrete_out;
        if (dis) {
            double Dd = 1;
            for (r = g->nroots - 1; r >= 0; r--) g->off[r] = (int)Dd, Dd *= g->dim[r];
            if (Dd > 1e7)
                return plm_fail(ctx, PLM_EINVAL, "bffg: the roots joined with '%s' have %.0f joint states (at most 1e7)",
                                m->nodes[i].name, Dd);
            D = (int)Dd;
            if (!(P = plm_gc_alloc_atomic((size_t)D * sizeof *P))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
            for (j = 0; j < D; j++) {
                double p = 1;
                for (r = 0; r < g->nroots; r++) p *= m->nodes[g->roots[r]].k->P[(j / g->off[r]) % g->dim[r]];
                P[j] = p;
            }
            /* the product of normalised rows sums to 1 up to rounding: renormalise for the check in _discrete */
            {
                double sum = 0;
                for (j = 0; j < D; j++) sum += P[j];
                for (j = 0; j < D; j++) P[j] /= sum;
            }
            st = plm_bffg_kernel_discrete(ctx, 0, D, P, &g->prior);
        } else {
            for (r = 0; r < g->nroots; r++) g->off[r] = D, D += g->dim[r];
            beta = plm_gc_alloc_atomic((size_t)D * sizeof *beta), Q = plm_gc_alloc_atomic((size_t)D * D * sizeof *Q);
            if (!beta || !Q) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
            memset(Q, 0, (size_t)D * D * sizeof *Q);
            for (r = 0; r < g->nroots; r++) {
                const plm_bffg_kernel *k = m->nodes[g->roots[r]].k;
                int d = k->dout, o = g->off[r], a, b, l;
                memcpy(beta + o, k->beta, (size_t)d * sizeof *beta);
                for (a = 0; a < d; a++)   /* Q = G G' */
                    for (b = 0; b < d; b++) {
                        double acc = 0;
                        for (l = 0; l < k->r; l++) acc += k->G[a * k->r + l] * k->G[b * k->r + l];
                        Q[(o + a) * D + o + b] = acc;
                    }
            }
            st = plm_bffg_kernel_linear_gaussian(ctx, D, 0, NULL, beta, Q, &g->prior);
        }
        if (st) return st;
        g->D = D;
        if (maxstack + (dis ? 1 : D) > m->gwork) m->gwork = maxstack + (dis ? 1 : D);
        m->ngroups++;
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
        /* several parents: each a root with a Gaussian or categorical prior (see rebuild_groups), all of one kind,
        ** and the kernel's input is their stacked value */
        int dis = m->nodes[parents[0]].k->discrete_out;
        double size = dis ? 1 : 0;
        for (i = 0; i < nparents; i++) {
            const node *p = &m->nodes[parents[i]];
            const char *kind = p->k->ops->name;
            for (j = 0; j < i; j++)
                if (parents[j] == parents[i]) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' names parent '%s' twice", name, p->name);
            if (p->parent >= 0)
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents, and then they must be roots; '%s' is not "
                                                 "(the exact message on parents that share ancestors needs their joint law: "
                                                 "not supported)", name, p->name);
            if (strcmp(kind, dis ? "discrete" : "linear_gaussian") != 0 || p->k->aux)
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has several parents, and then they must be roots with a "
                                                 "normal, mvnormal, fixed or categorical prior, all discrete or all continuous: "
                                                 "'%s' has a %s %s prior", name, p->name, space(p->k->discrete_out), kind);
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
        if (m->n) memcpy(nn, m->nodes, (size_t)m->n * sizeof *nn);
        m->nodes = nn, m->cap = cap;
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

/* A message of the constant function 1 on a space. */
static plm_bffg_msg *msg_new(int discrete, int dim)
{
    plm_bffg_msg *h = plm_gc_alloc(sizeof *h);
    int i;
    if (!h || !(h->v = plm_gc_alloc_atomic((size_t)(dim ? dim : 1) * sizeof(double)))) return NULL;
    h->discrete = discrete, h->dim = dim;
    if (discrete)
        for (i = 0; i < dim; i++) h->v[i] = 1;
    else if (dim && !(h->H = plm_gc_alloc_atomic((size_t)dim * dim * sizeof(double))))
        return NULL;
    return h;
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

/* Multiply the group's joint message by msg, a message on the stacked value of the nsub roots sub (node indices,
** in the stacked order) of group g. */
static plm_status embed(plm_ctx *ctx, const plm_bffg_model *m, const group *g, plm_bffg_msg *joint, int nsub,
                        const int *sub, const plm_bffg_msg *msg)
{
    int D = g->D, j, a, b, l;
    int *map = plm_gc_alloc_atomic((size_t)(g->discrete ? nsub : msg->dim) * sizeof *map + sizeof *map);
    if (!map) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    if (msg->gamma)
        return plm_fail(ctx, PLM_EINVAL, "bffg: root '%s': a gamma-process message cannot reach roots joined by a node "
                                         "with several parents", m->nodes[sub[0]].name);
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
    plm_bffg_filter *f = plm_gc_alloc(sizeof *f);
    int i, n = m->n;
    plm_status st;
    if (!f || !(f->values = plm_gc_alloc((size_t)(n ? n : 1) * sizeof *f->values)) ||
        !(f->msg = plm_gc_alloc((size_t)(n ? n : 1) * sizeof *f->msg)) ||
        !(f->up = plm_gc_alloc((size_t)(n ? n : 1) * sizeof *f->up)) ||
        !(f->guide = plm_gc_alloc((size_t)(n ? n : 1) * sizeof *f->guide)))
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    if (n == 0) return plm_fail(ctx, PLM_EINVAL, "bffg: the model has no nodes");
    f->m = m;
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
            if (!(f->msg[i] = msg_new(nd->k->discrete_out, nd->k->dout))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
            if (nd->k->work > f->work) f->work = nd->k->work;
        } else if (nd->k->work > f->work)
            f->work = nd->k->work;
    }
    if (!(f->gmsg = plm_gc_alloc((size_t)(m->ngroups + 1) * sizeof *f->gmsg)) ||
        !(f->gguide = plm_gc_alloc((size_t)(m->ngroups + 1) * sizeof *f->gguide)))
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    for (i = 0; i < m->ngroups; i++) {
        const group *g = &m->groups[i];
        if (!(f->gmsg[i] = msg_new(g->discrete, g->D))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        if (g->prior->work > f->work) f->work = g->prior->work;
    }
    f->kwork = f->work;
    f->work += (size_t)m->gwork;
    /* children come after their parents, so one sweep from the last node fuses every message before it is
    ** pulled back */
    for (i = n - 1; i >= 0; i--) {
        const node *nd = &m->nodes[i];
        const plm_bffg_kernel *back = nd->k->aux ? nd->k->aux : nd->k;
        plm_bffg_msg *up;
        if ((i & 1023) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg: interrupted");
        if (nd->group >= 0) continue;   /* a joined root: its group is filtered below */
        if (nd->np > 1)
            up = msg_new(nd->k->discrete_in, nd->k->din);
        else if (nd->parent >= 0) {
            const plm_bffg_kernel *pk = m->nodes[nd->parent].k;
            up = msg_new(pk->discrete_out, pk->dout);
        } else
            up = msg_new(0, 0);
        if (!up) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        if (!nd->value) {
            if (f->msg[i]->c == -INFINITY) return impossible(ctx, m, f->msg, i);
            if ((st = nd->k->ops->guide(ctx, nd->k, f->msg[i], &f->guide[i]))) return st;
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
            if ((st = embed(ctx, m, &m->groups[gi], f->gmsg[gi], nd->np > 1 ? nd->np : 1, nd->np > 1 ? nd->parents : &nd->parent, up)))
                return st;
        } else if (nd->parent >= 0) {
            if (msg_fuse(f->msg[nd->parent], up))
                return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': an exact gamma-process observation cannot be combined "
                                                 "with another message at the same node", m->nodes[nd->parent].name);
        } else
            f->loglik += up->c;
    }
    /* each group of joined roots: its joint prior toward the fused joint message */
    for (i = 0; i < m->ngroups; i++) {
        const group *g = &m->groups[i];
        plm_bffg_msg *up = msg_new(0, 0);
        if (!up) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        if (f->gmsg[i]->c == -INFINITY)
            return plm_fail(ctx, PLM_EDOM, "bffg: the observations below root '%s' and the roots joined to it have "
                                           "probability 0 under the model", m->nodes[g->roots[0]].name);
        if ((st = g->prior->ops->guide(ctx, g->prior, f->gmsg[i], &f->gguide[i])) ||
            (st = g->prior->ops->pullback(ctx, g->prior, f->gmsg[i], up)))
            return st;
        if (up->c == -INFINITY)
            return plm_fail(ctx, PLM_EDOM, "bffg: the observations below root '%s' and the roots joined to it have "
                                           "probability 0 under the model", m->nodes[g->roots[0]].name);
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

/* Spread a group's joint value y (D doubles, or one joint state) over its roots' places in row. */
static void scatter(const plm_bffg_model *m, const group *g, const double *y, double *row)
{
    for (int r = 0; r < g->nroots; r++) {
        const node *nd = &m->nodes[g->roots[r]];
        if (g->discrete)
            row[nd->offset] = (double)(((int)y[0] / g->off[r]) % g->dim[r]);
        else
            memcpy(row + nd->offset, y + g->off[r], (size_t)g->dim[r] * sizeof *y);
    }
}

/* The draw of node i into row, from the random stream r or (r NULL) the innovations z; returns its log weight.
** A joined root draws its whole group when it is the group's first root (the others add 0). */
static double draw_node(const plm_bffg_filter *f, int i, double *row, double *work, plm_rng *r, const double *z)
{
    const plm_bffg_model *m = f->m;
    const node *nd = &m->nodes[i];
    double *gbuf = work + f->kwork, lw;   /* m->gwork doubles: a group's joint value, or a node's stacked parents */
    const double *x;
    if (nd->group >= 0) {
        const group *g = &m->groups[nd->group];
        if (g->roots[0] != i) return 0;
        lw = r ? g->prior->ops->sample(g->prior, f->gguide[nd->group], NULL, gbuf, r, work)
               : g->prior->ops->sample_z(g->prior, f->gguide[nd->group], NULL, z, gbuf, work);
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
    int i;
    plm_rng_init(&r, seed, (uint64_t)s);
    for (i = 0; i < m->n; i++) {
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

/* Innovations of node i's draw: a joined root's group's (for its first root), else its kernel's (latent nodes). */
static size_t node_nz(const plm_bffg_model *m, int i)
{
    const node *nd = &m->nodes[i];
    if (nd->group >= 0) return m->groups[nd->group].roots[0] == i ? m->groups[nd->group].prior->nz : 0;
    return nd->value ? 0 : nd->k->nz;
}

size_t plm_bffg_nz(const plm_bffg_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->n; i++) n += node_nz(m, i);
    return n;
}

void plm_bffg_filter_discard(plm_bffg_filter *f)
{
    const plm_bffg_model *m = f->m;
    for (int i = 0; i < m->n; i++) {
        const plm_bffg_kernel *k = m->nodes[i].k;
        if (f->guide[i] && k->ops->guide_free) k->ops->guide_free(k, f->guide[i]);
        f->guide[i] = NULL;
    }
}

size_t plm_bffg_filter_work(const plm_bffg_filter *f) { return f->work ? f->work : 1; }

double plm_bffg_draw_z(const plm_bffg_filter *f, const double *z, double *row, double *work)
{
    const plm_bffg_model *m = f->m;
    double total = 0;
    int i;
    for (i = 0; i < m->n; i++) {
        total += draw_node(f, i, row, work, NULL, z);
        z += node_nz(m, i);
    }
    return total;
}

plm_status plm_bffg_model_with(plm_ctx *ctx, const plm_bffg_model *m, const plm_sde *s, const double *params, int how,
                               plm_bffg_model **out)
{
    plm_bffg_model *c = plm_gc_alloc(sizeof *c);
    node *nn = plm_gc_alloc((size_t)(m->n ? m->n : 1) * sizeof *nn);
    plm_status st;
    int i;
    if (!c || !nn) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    *c = *m;
    memcpy(nn, m->nodes, (size_t)m->n * sizeof *nn);
    c->nodes = nn, c->cap = m->n ? m->n : 1;
    for (i = 0; i < m->n; i++)
        if (plm_bffg_kernel_sde_of(m->nodes[i].k) == s) {
            plm_bffg_kernel *k;
            if ((st = plm_bffg_kernel_sde_remake(ctx, m->nodes[i].k, params, how, &k))) return st;
            c->nodes[i].k = k;
        }
    *out = c;
    return PLM_OK;
}

/* ---- guided SMC along a chain ------------------------------------------------------------------------- */

/* log h(x) of a message */
static double msg_eval(const plm_bffg_msg *h, const double *x)
{
    double l = h->c;
    int i, j, d = h->dim;
    if (h->discrete) {
        double v = h->v[(int)x[0]];
        return v > 0 ? l + log(v) : -INFINITY;
    }
    if (h->gamma) return x[0] < h->gy ? l + (h->gk - 1) * log(h->gy - x[0]) - h->gb * (h->gy - x[0]) : -INFINITY;
    for (i = 0; i < d; i++) {
        double hx = 0;
        for (j = 0; j < d; j++) hx += h->H[i * d + j] * x[j];
        l += x[i] * (h->v[i] - 0.5 * hx);
    }
    return l;
}

typedef struct smc_job {
    const plm_bffg_filter *f;
    int node;                          /* the latent node of this stage */
    const int *obs;                    /* its observed children */
    int nobs;
    const plm_bffg_msg *psi, *psi_prev;   /* the messages from the chain ahead of this node and of its parent */
    uint64_t seed, stream0;
    double *draws, *inc;
    volatile int stop;
    int failed;
} smc_job;

/* The incremental log weight of particle s at this stage: the guided draw's edge weight, the densities of the
** observed children, and the change of the twisting function, log psi(x_i) - log psi_prev(x_parent). */
static void smc_chunk(void *arg, size_t begin, size_t end, int worker)
{
    smc_job *J = arg;
    const plm_bffg_filter *f = J->f;
    const plm_bffg_model *m = f->m;
    const node *nd = &m->nodes[J->node];
    double *work = plm_gc_alloc_atomic((f->work ? f->work : 1) * sizeof *work);
    size_t s;
    (void)worker;
    if (!work) {
        J->failed = 1;
        return;
    }
    for (s = begin; s < end && !J->stop; s++) {
        double *row = J->draws + s * m->width, *y = row + nd->offset, lw;
        const double *x = nd->parent >= 0 ? row + m->nodes[nd->parent].offset : NULL;
        plm_rng r;
        int o;
        if ((s & 63) == 0 && plm_interrupted()) {
            J->stop = 1;
            break;
        }
        plm_rng_init(&r, J->seed, J->stream0 + s);
        lw = nd->k->ops->sample(nd->k, f->guide[J->node], x, y, &r, work);
        for (o = 0; o < J->nobs; o++) {
            const node *on = &m->nodes[J->obs[o]];
            lw += on->k->ops->logpdf(on->k, y, f->values[J->obs[o]], work);
        }
        if (J->psi) lw += msg_eval(J->psi, y);
        if (J->psi_prev) lw -= msg_eval(J->psi_prev, x);
        J->inc[s] = lw;
    }
}

plm_status plm_bffg_smc(plm_ctx *ctx, const plm_bffg_filter *f, size_t n, uint64_t seed, int threads,
                        plm_resample_scheme scheme, double ess_threshold, double *draws, double *logw, double *loglik,
                        size_t *resamples)
{
    const plm_bffg_model *m = f->m;
    int nn = m->n, i, root = -1, nroots = 0, *next, *obs, *obs_start, *nobs, stage;
    size_t s, width = m->width, nres = 0, *counts, *anc;
    double *W, *inc, *cur = draws, *other, logz = 0;
    plm_status st = PLM_OK;
    if (n == 0) return plm_fail(ctx, PLM_EINVAL, "bffg smc: needs at least one particle");
    if (!draws || !logw || !loglik) return plm_fail(ctx, PLM_EINVAL, "bffg smc: needs draw, weight and loglik buffers");
    if (!(ess_threshold >= 0 && ess_threshold <= 1))
        return plm_fail(ctx, PLM_EINVAL, "bffg smc: ess_threshold must be in [0, 1] (got %g)", ess_threshold);
    next = plm_gc_alloc_atomic((size_t)(3 * nn + 2) * sizeof *next);
    obs = plm_gc_alloc_atomic((size_t)(nn + 1) * sizeof *obs);
    W = plm_gc_alloc_atomic(n * sizeof *W), inc = plm_gc_alloc_atomic(n * sizeof *inc);
    other = plm_gc_alloc_atomic((n * width + 1) * sizeof *other);
    counts = plm_gc_alloc_atomic(n * sizeof *counts), anc = plm_gc_alloc_atomic(n * sizeof *anc);
    if (!next || !obs || !W || !inc || !other || !counts || !anc) return plm_fail(ctx, PLM_ENOMEM, "bffg smc: out of memory");
    obs_start = next + nn, nobs = next + 2 * nn;
    for (i = 0; i < nn; i++) next[i] = -1, nobs[i] = 0;
    /* the chain: one root, each latent node with at most one latent child; observed children listed per node */
    for (i = 0; i < nn; i++) {
        const node *nd = &m->nodes[i];
        if (nd->np > 1)
            return plm_fail(ctx, PLM_EINVAL, "bffg smc: node '%s' has several parents, so the latent nodes are not a chain; "
                                             "use method \"is\"", nd->name);
        if (nd->value) {
            nobs[nd->parent]++;
            continue;
        }
        if (nd->parent < 0) {
            root = i, nroots++;
            continue;
        }
        if (next[nd->parent] >= 0)
            return plm_fail(ctx, PLM_EINVAL, "bffg smc: the latent nodes must form a chain, but '%s' has two latent children "
                                             "('%s' and '%s'); use method \"is\" for trees", m->nodes[nd->parent].name,
                            m->nodes[next[nd->parent]].name, nd->name);
        next[nd->parent] = i;
    }
    if (nroots != 1) return plm_fail(ctx, PLM_EINVAL, "bffg smc: the latent nodes must form one chain (found %d roots)", nroots);
    for (i = 0, s = 0; i < nn; i++) obs_start[i] = (int)s, s += (size_t)nobs[i];
    for (i = 0; i < nn; i++) nobs[i] = 0;
    for (i = 0; i < nn; i++)
        if (m->nodes[i].value) {
            int p = m->nodes[i].parent;
            obs[obs_start[p] + nobs[p]++] = i;
        }
    for (s = 0; s < n; s++) logw[s] = 0;
    for (i = root, stage = 0; i >= 0; i = next[i], stage++) {
        smc_job J;
        double lse_prev, lse;
        memset(&J, 0, sizeof J);
        J.f = f, J.node = i, J.obs = obs + obs_start[i], J.nobs = nobs[i];
        J.psi = next[i] >= 0 ? f->up[next[i]] : NULL;
        J.psi_prev = m->nodes[i].parent >= 0 ? f->up[i] : NULL;
        J.seed = seed, J.stream0 = (uint64_t)stage * n, J.draws = cur, J.inc = inc;
        plm_parallel_for(threads, n, 64, smc_chunk, &J);
        if (J.failed) return plm_fail(ctx, PLM_ENOMEM, "bffg smc: out of memory");
        if (J.stop || plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg smc: interrupted");
        for (s = 0; s < n; s++)
            if (isnan(inc[s]))
                return plm_fail(ctx, PLM_EDOM, "bffg smc: particle %zu: the guided draw of node '%s' failed (a diffusion "
                                               "path left the finite numbers: reduce dt, or check the parameters and the "
                                               "auxiliary)", s + 1, m->nodes[i].name);
        lse_prev = plm_resample_normalise(logw, n, W);
        for (s = 0; s < n; s++) logw[s] += inc[s];
        lse = plm_resample_normalise(logw, n, W);
        if (lse == -INFINITY)
            return plm_fail(ctx, PLM_EDOM, "bffg smc: every particle has weight 0 after node '%s' (the observations are "
                                           "impossible for all %zu particles)", m->nodes[i].name, n);
        logz += lse - lse_prev;
        /* resample at observation times (not after the last stage: its weights are the output) */
        if (nobs[i] > 0 && next[i] >= 0 && (ess_threshold >= 1 || plm_resample_ess(logw, n) <= ess_threshold * (double)n)) {
            plm_rng rr;
            double *t;
            plm_rng_init(&rr, seed, UINT64_MAX - (uint64_t)stage);
            if ((st = plm_resample_counts(ctx, scheme, W, n, n, &rr, counts, inc))) return st;
            plm_resample_ancestors(counts, n, anc);
            for (s = 0; s < n; s++) memcpy(other + s * width, cur + anc[s] * width, width * sizeof *cur);
            t = cur, cur = other, other = t;
            for (s = 0; s < n; s++) logw[s] = 0;
            nres++;
        }
    }
    if (cur != draws) memcpy(draws, cur, n * width * sizeof *draws);
    *loglik = logz;
    if (resamples) *resamples = nres;
    return PLM_OK;
}
