/* bffg.c -- the BFFG engine: models (a forest of nodes joined by kernels), the backward filter that fuses
** messages from the leaves to the roots, and forward guiding with per-edge weights, in parallel over draws.
** The kernels' algebra is in bffg_kernel.c. */
#include "bffg_impl.h"

#include <math.h>
#include <string.h>

#include "par.h"

typedef struct node {
    char *name;
    int parent;
    const plm_bffg_kernel *k;
    double *value;   /* observed value, or NULL */
    long offset;     /* in a draw, for latent nodes */
} node;

struct plm_bffg_model {
    node *nodes;
    int n, cap;
    size_t width;    /* doubles per draw */
};

struct plm_bffg_filter {
    const plm_bffg_model *m;
    const double **values;   /* per node: the observed value in use (NULL for latent nodes) */
    plm_bffg_msg **msg;      /* per latent node: the fused message */
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

plm_status plm_bffg_add(plm_ctx *ctx, plm_bffg_model *m, const char *name, int parent, const plm_bffg_kernel *k,
                        const double *value, int *index)
{
    node *nd;
    int w;
    if (!name || !*name) return plm_fail(ctx, PLM_EINVAL, "bffg: a node needs a non-empty name");
    if (!k) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s' has no kernel", name);
    if (plm_bffg_find(m, name) >= 0) return plm_fail(ctx, PLM_EINVAL, "bffg: there is already a node named '%s'", name);
    if (parent < -1 || parent >= m->n) return plm_fail(ctx, PLM_EINVAL, "bffg: node '%s': no parent node %d", name, parent);
    if (parent == -1) {
        if (k->din != 0)
            return plm_fail(ctx, PLM_EINVAL, "bffg: root '%s' needs a prior (a kernel with no input), not a kernel from "
                                             "%d %s", name, k->din, k->discrete_in ? "states" : "dimensions");
        if (value) return plm_fail(ctx, PLM_EINVAL, "bffg: root '%s' cannot be observed", name);
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
        int i;
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
    nd->k = k;
    nd->offset = -1;
    if (value) {
        if (!(nd->value = plm_gc_alloc_atomic((size_t)w * sizeof *value))) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        memcpy(nd->value, value, (size_t)w * sizeof *value);
    } else {
        nd->offset = (long)m->width;
        m->width += (size_t)w;
    }
    if (index) *index = m->n;
    m->n++;
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
** rescaled to max 1, the scale going to the constant. */
static void msg_fuse(plm_bffg_msg *into, const plm_bffg_msg *add)
{
    int i, n = into->dim;
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
}

double plm_bffg_filter_loglik(const plm_bffg_filter *f) { return f->loglik; }

const plm_bffg_msg *plm_bffg_message(const plm_bffg_filter *f, int i)
{
    return (i >= 0 && i < f->m->n) ? f->msg[i] : NULL;
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
    /* children come after their parents, so one sweep from the last node fuses every message before it is
    ** pulled back */
    for (i = n - 1; i >= 0; i--) {
        const node *nd = &m->nodes[i];
        const plm_bffg_kernel *back = nd->k->aux ? nd->k->aux : nd->k;
        plm_bffg_msg *up;
        if ((i & 1023) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg: interrupted");
        if (nd->parent >= 0) {
            const plm_bffg_kernel *pk = m->nodes[nd->parent].k;
            up = msg_new(pk->discrete_out, pk->dout);
        } else
            up = msg_new(0, 0);
        if (!up) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
        if (!nd->value) {
            if (f->msg[i]->c == -INFINITY) return impossible(ctx, m, f->msg, i);
            if ((st = nd->k->ops->guide(ctx, nd->k, f->msg[i], &f->guide[i]))) return st;
            if ((st = back->ops->pullback(ctx, back, f->msg[i], up))) return st;
        } else if ((st = back->ops->observe(ctx, back, f->values[i], up)))
            return st;
        if (up->c == -INFINITY) return impossible(ctx, m, f->msg, nd->parent >= 0 ? nd->parent : i);
        if (nd->parent >= 0)
            msg_fuse(f->msg[nd->parent], up);
        else
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

static void forward_chunk(void *arg, size_t begin, size_t end, int worker)
{
    fwd *a = arg;
    const plm_bffg_filter *f = a->f;
    const plm_bffg_model *m = f->m;
    size_t s, width = m->width;
    double *work = plm_gc_alloc_atomic((f->work ? f->work : 1) * sizeof *work);
    plm_rng r;
    (void)worker;
    if (!work) {
        a->failed = 1;
        return;
    }
    for (s = begin; s < end && !a->stop; s++) {
        double *row = a->draws + s * width, total = 0;
        int i;
        if ((s & 255) == 0 && plm_interrupted()) {
            a->stop = 1;
            break;
        }
        plm_rng_init(&r, a->seed, (uint64_t)s);
        for (i = 0; i < m->n; i++) {
            const node *nd = &m->nodes[i];
            const double *x = nd->parent >= 0 ? row + m->nodes[nd->parent].offset : NULL;
            double lw = f->values[i] ? nd->k->ops->logpdf(nd->k, x, f->values[i], work)
                                     : nd->k->ops->sample(nd->k, f->guide[i], x, row + nd->offset, &r, work);
            if (a->edge) a->edge[s * (size_t)m->n + (size_t)i] = lw;
            total += lw;
        }
        a->logw[s] = total;
    }
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
    if (a.stop) return plm_fail(ctx, PLM_EINTR, "bffg: interrupted");
    return PLM_OK;
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
