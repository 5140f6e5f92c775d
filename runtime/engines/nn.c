/* nn.c -- multilayer perceptrons with softmax and Gaussian-mixture heads, autoregressive over a block's
** members (see nn.h). Each member has its own perceptron; a batch runs member by member, as B x width
** row-major matrices through cblas_dgemm, and the backward pass follows right after each member's forward
** pass, so the workspace holds one member's activations at a time. Single evaluations (the MH kernel's) run
** through plain loops instead (see "single evaluations" below). The file format is nn_io.c's. */
#include "nn.h"

#include <gsl/gsl_cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_SQRT_2PI 0.91893853320467274178
/* A head's log sd is clamped to this range (its gradient is zero outside), so that one bad minibatch cannot
** make a component a spike or flat. */
#define LSD_MIN (-9.0)
#define LSD_MAX 6.0

static int enc_width(const plm_nn_member *m) { return m->kind == PLM_NN_DISCRETE ? m->card : 1; }
static int out_width(const plm_nn_member *m) { return m->kind == PLM_NN_DISCRETE ? m->card : 3 * m->card; }

plm_status plm_nn_init(plm_ctx *ctx, plm_nn *nn, int nin, int nmem, const plm_nn_member *mem, int nhidden,
                       const int *hidden, int act)
{
    int j, l, w0;
    size_t off = 0;
    memset(nn, 0, sizeof *nn);
    if (nin < 1 || nin > PLM_NN_MAXWIDTH) return plm_fail(ctx, PLM_EINVAL, "nn: inputs must be in 1..%d (got %d)", PLM_NN_MAXWIDTH, nin);
    if (nmem < 1 || nmem > PLM_NN_MAXMEM) return plm_fail(ctx, PLM_EINVAL, "nn: members must be in 1..%d (got %d)", PLM_NN_MAXMEM, nmem);
    if (nhidden < 0 || nhidden > PLM_NN_MAXHIDDEN)
        return plm_fail(ctx, PLM_EINVAL, "nn: hidden layers must be in 0..%d (got %d)", PLM_NN_MAXHIDDEN, nhidden);
    if (act != PLM_NN_TANH && act != PLM_NN_RELU) return plm_fail(ctx, PLM_EINVAL, "nn: unknown activation %d", act);
    for (l = 0; l < nhidden; l++)
        if (hidden[l] < 1 || hidden[l] > PLM_NN_MAXWIDTH)
            return plm_fail(ctx, PLM_EINVAL, "nn: hidden layer %d must have 1..%d units (got %d)", l + 1, PLM_NN_MAXWIDTH, hidden[l]);
    nn->nin = nin, nn->nmem = nmem, nn->nhidden = nhidden, nn->act = act, nn->nlayer = nhidden + 1, nn->rowmult = 1;
    for (l = 0; l < nhidden; l++) nn->hidden[l] = hidden[l];
    w0 = nin;
    nn->maxwidth = nin;
    for (j = 0; j < nmem; j++) {
        const plm_nn_member *m = &mem[j];
        if ((m->kind != PLM_NN_DISCRETE && m->kind != PLM_NN_CONTINUOUS) || m->card < 1 || m->card > 1024 ||
            (m->kind == PLM_NN_DISCRETE && m->card < 2) || m->ncat_at < -1 || m->ncat_at >= nin ||
            (m->kind == PLM_NN_CONTINUOUS && m->ncat_at != -1))
            return plm_fail(ctx, PLM_EINVAL, "nn: member %d (kind %d, %d categories or components) is invalid", j + 1,
                            m->kind, m->card);
        if (m->skip != 0 && (m->skip != 1 || (m->kind != PLM_NN_DISCRETE && m->base_at != -1) ||
                             (m->base_at != -1 && (m->base_at < 0 || m->base_at > nin - m->card)) ||
                             (m->pair_of != -1 && (m->pair_of < 0 || m->pair_of >= j || mem[m->pair_of].kind != PLM_NN_DISCRETE ||
                                                   m->pair_at < 0 ||
                                                   (long)m->pair_at + (long)mem[m->pair_of].card *
                                                   (m->kind == PLM_NN_DISCRETE ? m->card : 2) > nin))))
            return plm_fail(ctx, PLM_EINVAL, "nn: member %d's skip logits (skip %d, base at %d, pair at %d of member %d) are invalid",
                            j + 1, m->skip, m->base_at, m->pair_at, m->pair_of + 1);
        if (m->rows != 0 && (m->rows != 1 || m->kind != PLM_NN_DISCRETE || m->row_w < 1 || m->row_at < 0 ||
                             (long)m->row_at + (long)m->card * m->row_w > nin || m->rshared_w < 0 ||
                             (m->rshared_w > 0 && (m->rshared_at < 0 || m->rshared_at > nin - m->rshared_w))))
            return plm_fail(ctx, PLM_EINVAL, "nn: member %d's per-category perceptron (rows %d, table at %d of width %d, "
                            "shared %d at %d) is invalid", j + 1, m->rows, m->row_at, m->row_w, m->rshared_w, m->rshared_at);
        if (m->pair2 != 0 && (m->pair2 != 1 || !m->skip || m->kind != PLM_NN_DISCRETE || m->pair_of < 0 || m->pair2_of < 0 ||
                              m->pair2_of >= j || m->pair2_of == m->pair_of || mem[m->pair2_of].kind != PLM_NN_DISCRETE ||
                              (long)m->pair_at + (long)mem[m->pair_of].card * mem[m->pair2_of].card * m->card > nin))
            return plm_fail(ctx, PLM_EINVAL, "nn: member %d's second pair member (%d, member %d) is invalid", j + 1, m->pair2,
                            m->pair2_of + 1);
        if (m->fixed != 0 && (m->fixed != 1 || m->kind != PLM_NN_DISCRETE || m->fixed_at < 0 || m->fixed_at >= nin))
            return plm_fail(ctx, PLM_EINVAL, "nn: member %d's fixed flag (%d, input %d) is invalid", j + 1, m->fixed,
                            m->fixed_at);
        nn->mem[j] = *m;
        if (!m->fixed) nn->mem[j].fixed_at = -1;
        if (!m->pair2) nn->mem[j].pair2_of = -1;
        if (!m->skip) nn->mem[j].base_at = nn->mem[j].pair_at = nn->mem[j].pair_of = -1;
        else if (m->pair_of < 0) nn->mem[j].pair_at = -1;
        if (!m->rows) nn->mem[j].row_at = nn->mem[j].row_w = nn->mem[j].rshared_at = nn->mem[j].rshared_w = -1;
        else if (!m->rshared_w) nn->mem[j].rshared_at = -1;
        if (w0 > PLM_NN_MAXWIDTH) return plm_fail(ctx, PLM_EINVAL, "nn: member %d reads %d inputs, more than %d", j + 1, w0, PLM_NN_MAXWIDTH);
        nn->width[j][0] = m->rows ? m->row_w + m->rshared_w : w0;
        for (l = 0; l < nhidden; l++) nn->width[j][l + 1] = hidden[l];
        nn->width[j][nn->nlayer] = m->rows ? 1 : out_width(m);
        if (m->rows && m->card > nn->rowmult) nn->rowmult = m->card;
        if (m->rows && m->card > nn->maxwidth) nn->maxwidth = m->card;   /* its logits, in the single-evaluation scratch */
        for (l = 0; l < nn->nlayer; l++) {
            nn->off[j][l] = off;
            off += (size_t)nn->width[j][l + 1] * ((size_t)nn->width[j][l] + 1);
        }
        for (l = 0; l <= nn->nlayer; l++)
            if (nn->width[j][l] > nn->maxwidth) nn->maxwidth = nn->width[j][l];
        w0 += enc_width(m);
    }
    nn->nparam = off;
    nn->bin1 = nhidden == 0;
    for (j = 0; j < nmem; j++)
        if (mem[j].kind != PLM_NN_DISCRETE || mem[j].card != 2 || mem[j].rows || mem[j].ncat_at >= 0) nn->bin1 = 0;
    if (!(nn->theta = calloc(off, sizeof *nn->theta))) return plm_fail(ctx, PLM_ENOMEM, "nn: out of memory");
    return PLM_OK;
}

void plm_nn_free(plm_nn *nn)
{
    if (!nn) return;
    free(nn->theta);
    nn->theta = NULL;
}

void plm_nn_randomize(plm_nn *nn, plm_rng *r)
{
    int j, l;
    for (j = 0; j < nn->nmem; j++)
        for (l = 0; l < nn->nlayer; l++) {
            int ni = nn->width[j][l], no = nn->width[j][l + 1];
            double *W = nn->theta + nn->off[j][l], a = sqrt(6.0 / (ni + no));
            size_t k;
            for (k = 0; k < (size_t)ni * no; k++) W[k] = a * (2 * plm_rng_uniform(r) - 1);
            memset(W + (size_t)ni * no, 0, (size_t)no * sizeof *W);
            /* a head with skip logits starts at them: its perceptron's part, the output layer, starts at zero (the
            ** uniform draws above are still made, so the other members' weights do not depend on it) */
            if (nn->mem[j].skip && l + 1 == nn->nlayer) memset(W, 0, (size_t)ni * no * sizeof *W);
        }
}

/* The width of the "mt" layout (nn.h, plm_nn_ws) of nn, or 0 where it does not apply. A network without hidden
** layer has its heads' outputs there, which differ in width; a grid's (bin1) has its own path. */
static int fused_width(const plm_nn *nn)
{
    int j, wd = nn->width[0][1];
    if (nn->bin1 || nn->nhidden == 0) return 0;
    for (j = 0; j < nn->nmem; j++)
        if (nn->mem[j].rows || nn->width[j][1] != wd) return 0;
    return nn->nmem * wd;
}

/* The single-evaluation copies of the weights: for member j, layer l, W transposed (in x out, so that the column
** of input i is contiguous) at the same offset as W in theta, then b; and the "mt" layout where it applies. */
static void transpose_weights(const plm_nn *nn, plm_nn_ws *w)
{
    int j, l, i, o;
    for (j = 0; j < nn->nmem; j++)
        for (l = 0; l < nn->nlayer; l++) {
            int ni = nn->width[j][l], no = nn->width[j][l + 1];
            const double *W = nn->theta + nn->off[j][l];
            double *T = w->wt + nn->off[j][l];
            for (o = 0; o < no; o++)
                for (i = 0; i < ni; i++) T[(size_t)i * no + o] = W[(size_t)o * ni + i];
            memcpy(T + (size_t)ni * no, W + (size_t)ni * no, (size_t)no * sizeof *T);
        }
    if (w->mtw)
        for (j = 0; j < nn->nmem; j++) {
            int ni = nn->width[j][0], no = nn->width[j][1];
            const double *W = nn->theta + nn->off[j][0];
            for (i = 0; i <= nn->nin; i++)
                for (o = 0; o < no; o++)
                    w->mt[(size_t)i * w->mtw + (size_t)j * no + o] = i < nn->nin ? W[(size_t)o * ni + i] : W[(size_t)ni * no + o];
        }
}

plm_status plm_nn_ws_init(plm_ctx *ctx, plm_nn_ws *w, const plm_nn *nn, int maxbatch)
{
    size_t one = (size_t)maxbatch * (size_t)nn->rowmult * (size_t)nn->maxwidth;
    memset(w, 0, sizeof *w);
    if (maxbatch < 1) return plm_fail(ctx, PLM_EINVAL, "nn: batch must be >= 1 (got %d)", maxbatch);
    w->maxbatch = maxbatch;
    w->maxrows = (size_t)maxbatch * (size_t)nn->rowmult;
    w->swidth = nn->maxwidth;
    w->in = malloc(one * sizeof *w->in);
    w->act = malloc(one * (size_t)(nn->nlayer + 1) * sizeof *w->act);
    w->dact = malloc(2 * one * sizeof *w->dact);
    w->out = malloc(one * sizeof *w->out);
    w->dout = malloc(one * sizeof *w->dout);
    w->wt = malloc((nn->nparam ? nn->nparam : 1) * sizeof *w->wt);
    w->s = malloc(7 * (size_t)nn->maxwidth * sizeof *w->s);
    w->nz = malloc((size_t)nn->maxwidth * sizeof *w->nz);
    w->xp = malloc(plm_nn_xpart_size(nn) * sizeof *w->xp);
    w->mtw = fused_width(nn);
    w->mt = malloc(((size_t)nn->nin + 1) * (size_t)w->mtw * sizeof *w->mt + 1);
    if (!w->in || !w->act || !w->dact || !w->out || !w->dout || !w->wt || !w->s || !w->nz || !w->xp || !w->mt) {
        plm_nn_ws_free(w);
        return plm_fail(ctx, PLM_ENOMEM, "nn: out of memory");
    }
    transpose_weights(nn, w);
    return PLM_OK;
}

void plm_nn_ws_sync(plm_nn_ws *w, const plm_nn *nn) { transpose_weights(nn, w); }

void plm_nn_ws_free(plm_nn_ws *w)
{
    free(w->in), free(w->act), free(w->dact), free(w->out), free(w->dout), free(w->wt), free(w->s), free(w->nz), free(w->xp);
    free(w->mt);
    memset(w, 0, sizeof *w);
}

/* Fill rows 0..B-1 of member j's input matrix (B x width[j][0]) into w->act (layer 0). */
static void member_input(const plm_nn *nn, plm_nn_ws *w, int j, int B, const double *X, const double *V)
{
    int b, i, w0 = nn->width[j][0];
    const plm_nn_member *mj = &nn->mem[j];
    if (mj->rows) {   /* B card rows: (b, c) reads row c of b's table and b's shared inputs */
        for (b = 0; b < B; b++)
            for (i = 0; i < mj->card; i++) {
                double *row = w->act + ((size_t)b * mj->card + i) * w0;
                const double *x = X + (size_t)b * nn->nin;
                memcpy(row, x + mj->row_at + (size_t)i * mj->row_w, (size_t)mj->row_w * sizeof *row);
                if (mj->rshared_w) memcpy(row + mj->row_w, x + mj->rshared_at, (size_t)mj->rshared_w * sizeof *row);
            }
        return;
    }
    for (b = 0; b < B; b++) {
        double *row = w->act + (size_t)b * w0;
        int c = nn->nin;
        memcpy(row, X + (size_t)b * nn->nin, (size_t)nn->nin * sizeof *row);
        for (i = 0; i < j; i++) {
            const plm_nn_member *m = &nn->mem[i];
            double v = V[(size_t)b * nn->nmem + i];
            if (m->kind == PLM_NN_DISCRETE) {
                memset(row + c, 0, (size_t)m->card * sizeof *row);
                if (v >= 0 && v < m->card) row[c + (int)v] = 1;
                c += m->card;
            } else
                row[c++] = v;
        }
    }
}

/* Activations of layer l (B x width) start at act + (l-th slot). */
static double *layer_act(const plm_nn *nn, plm_nn_ws *w, int l)
{
    return w->act + (size_t)l * w->maxrows * (size_t)nn->maxwidth;
}

/* Member j's forward pass on the B rows in layer 0: the head's raw outputs into w->out (B x out width). */
static void member_forward(const plm_nn *nn, plm_nn_ws *w, int j, int B)
{
    int l, b, k;
    for (l = 0; l < nn->nlayer; l++) {
        int ni = nn->width[j][l], no = nn->width[j][l + 1];
        const double *W = nn->theta + nn->off[j][l], *bias = W + (size_t)ni * no;
        const double *A = layer_act(nn, w, l);
        double *Z = l + 1 == nn->nlayer ? w->out : layer_act(nn, w, l + 1);
        for (b = 0; b < B; b++) memcpy(Z + (size_t)b * no, bias, (size_t)no * sizeof *Z);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, no, ni, 1.0, A, ni, W, ni, 1.0, Z, no);
        if (l + 1 < nn->nlayer) {
            size_t n = (size_t)B * no;
            if (nn->act == PLM_NN_TANH)
                for (k = 0; k < (int)n; k++) Z[k] = tanh(Z[k]);
            else
                for (k = 0; k < (int)n; k++) Z[k] = Z[k] > 0 ? Z[k] : 0;
        }
    }
}

/* Member j's backward pass from the head gradients in w->dout (B x out width): accumulates into grad. */
static void member_backward(const plm_nn *nn, plm_nn_ws *w, int j, int B, double *grad)
{
    size_t one = w->maxrows * (size_t)nn->maxwidth;
    double *dZ = w->dout, *dA = w->dact;
    int l, b, k;
    for (l = nn->nlayer - 1; l >= 0; l--) {
        int ni = nn->width[j][l], no = nn->width[j][l + 1];
        const double *W = nn->theta + nn->off[j][l], *A = layer_act(nn, w, l);
        double *gW = grad + nn->off[j][l], *gb = gW + (size_t)ni * no;
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, no, ni, B, 1.0, dZ, no, A, ni, 1.0, gW, ni);
        for (b = 0; b < B; b++)
            for (k = 0; k < no; k++) gb[k] += dZ[(size_t)b * no + k];
        if (l == 0) break;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, ni, no, 1.0, dZ, no, W, ni, 0.0, dA, ni);
        /* through the activation: A = tanh(Z) has dA/dZ = 1 - A^2; relu passes where A > 0 */
        for (k = 0; k < B * ni; k++)
            dA[k] *= nn->act == PLM_NN_TANH ? 1 - A[k] * A[k] : (A[k] > 0);
        dZ = dA;
        dA = dA == w->dact ? w->dact + one : w->dact;
    }
}

static double lse(const double *a, int n)
{
    double mx = -INFINITY, s = 0;
    int i;
    for (i = 0; i < n; i++)
        if (a[i] > mx) mx = a[i];
    if (mx == -INFINITY) return mx;
    for (i = 0; i < n; i++) s += a[i] == mx ? 1.0 : exp(a[i] - mx);   /* exp(0) is 1 exactly */
    return s == 1 ? mx : mx + log(s);   /* log(1) is 0 exactly: one head component or category needs no log */
}

/* lse() keeping its terms for a draw: e[i] = exp(a[i] - max a) (1 at the max) and their sum *s; the same number. */
static double lse_e(const double *a, int n, double *e, double *s)
{
    double mx = -INFINITY, t = 0;
    int i;
    for (i = 0; i < n; i++)
        if (a[i] > mx) mx = a[i];
    *s = 0;
    if (mx == -INFINITY) {   /* nothing possible: head_sample then returns the last category, as it did */
        memset(e, 0, (size_t)n * sizeof *e);
        return mx;
    }
    for (i = 0; i < n; i++) t += e[i] = a[i] == mx ? 1.0 : exp(a[i] - mx);
    *s = t;
    return t == 1 ? mx : mx + log(t);
}

/* Member j's skip logits (nn.h) at inputs x and block values v (those before j) added to its head outputs o. */
static void add_skip(const plm_nn *nn, int j, const double *x, const double *v, double *o)
{
    const plm_nn_member *m = &nn->mem[j];
    int c;
    if (!m->skip) return;
    if (m->base_at >= 0)
        for (c = 0; c < m->card; c++) o[c] += x[m->base_at + c];
    if (m->pair_of >= 0) {
        double pv = v[m->pair_of];
        int k = (int)pv;
        if (pv >= 0 && k < nn->mem[m->pair_of].card && k == pv) {
            if (m->kind == PLM_NN_DISCRETE && m->pair2) {
                double pv2 = v[m->pair2_of];
                int k2 = (int)pv2, c1 = nn->mem[m->pair_of].card;
                if (pv2 >= 0 && k2 < nn->mem[m->pair2_of].card && k2 == pv2) {
                    const double *row = x + m->pair_at + (size_t)(k + c1 * k2) * (size_t)m->card;
                    for (c = 0; c < m->card; c++) o[c] += row[c];
                }
            } else if (m->kind == PLM_NN_DISCRETE) {
                const double *row = x + m->pair_at + (size_t)k * (size_t)m->card;
                for (c = 0; c < m->card; c++) o[c] += row[c];
            } else {   /* every component's mean and raw log sd */
                const double *row = x + m->pair_at + 2 * (size_t)k;
                for (c = 0; c < m->card; c++) o[m->card + c] += row[0], o[2 * m->card + c] += row[1];
            }
        }
    }
}

static int valid_cats(const plm_nn_member *m, const double *x)
{
    int n;
    if (m->ncat_at < 0) return m->card;
    n = (int)x[m->ncat_at];
    return n < 1 ? 1 : n > m->card ? m->card : n;
}

/* Member m is absent from the block of inputs x (nn.h): its value is 0 and its log q 0. */
static int is_fixed(const plm_nn_member *m, const double *x) { return m->fixed && x[m->fixed_at] != 0; }

/* The mixture head's log sd of component k from the raw output s. */
static double head_lsd(double s) { return s < LSD_MIN ? LSD_MIN : s > LSD_MAX ? LSD_MAX : s; }

/* The log normaliser of the head outputs o: the softmax's over the valid categories, or the mixture weights'. */
static double head_norm(const plm_nn_member *m, const double *x, const double *o)
{
    return lse(o, m->kind == PLM_NN_DISCRETE ? valid_cats(m, x) : m->card);
}

/* log q of value v under the head outputs o with log normaliser z = head_norm(m, x, o) (and, with d, d log q / d o
** into d). */
static double head_logq_z(const plm_nn_member *m, const double *x, const double *o, double z, double v, double *d)
{
    int c, n = m->card;
    if (m->kind == PLM_NN_DISCRETE) {
        int nv = valid_cats(m, x), k = (int)v;
        double lq;
        if (d) memset(d, 0, (size_t)n * sizeof *d);
        if (!(v >= 0 && k < nv && k == v)) return -INFINITY;
        lq = o[k] - z;
        if (d) {
            for (c = 0; c < nv; c++) d[c] = -exp(o[c] - z);
            d[k] += 1;
        }
        return lq;
    } else {
        double comp[1024], za = z, lq;
        for (c = 0; c < n; c++) {
            double ls = head_lsd(o[2 * n + c]), e = (v - o[n + c]) * exp(-ls);
            comp[c] = o[c] - za - 0.5 * e * e - ls - LOG_SQRT_2PI;
        }
        lq = lse(comp, n);
        if (d) {
            if (!isfinite(lq)) {
                memset(d, 0, 3 * (size_t)n * sizeof *d);
                return lq;
            }
            for (c = 0; c < n; c++) {
                double r = exp(comp[c] - lq), pi = exp(o[c] - za), raw = o[2 * n + c], ls = head_lsd(raw);
                double iv = exp(-2 * ls), e2 = (v - o[n + c]) * (v - o[n + c]) * iv;
                d[c] = r - pi;
                d[n + c] = r * (v - o[n + c]) * iv;
                d[2 * n + c] = raw > LSD_MIN && raw < LSD_MAX ? r * (e2 - 1) : 0;
            }
        }
        return lq;
    }
}

static double head_logq(const plm_nn_member *m, const double *x, const double *o, double v, double *d)
{
    return head_logq_z(m, x, o, head_norm(m, x, o), v, d);
}

void plm_nn_logq(const plm_nn *nn, plm_nn_ws *w, int B, const double *X, const double *V, double *logq, double *grad)
{
    int j, b;
    for (b = 0; b < B; b++) logq[b] = 0;
    for (j = 0; j < nn->nmem; j++) {
        const plm_nn_member *m = &nn->mem[j];
        int no = m->rows ? m->card : nn->width[j][nn->nlayer];
        member_input(nn, w, j, B, X, V);
        member_forward(nn, w, j, m->rows ? B * m->card : B);   /* rows: B card outputs of width 1, i.e. B x card */
        if (m->skip)   /* constants to the weights: the gradient w.r.t. the outputs is unchanged */
            for (b = 0; b < B; b++)
                add_skip(nn, j, X + (size_t)b * nn->nin, V + (size_t)b * nn->nmem, w->out + (size_t)b * no);
        for (b = 0; b < B; b++) {
            const double *x = X + (size_t)b * nn->nin;
            double v = V[(size_t)b * nn->nmem + j];
            if (is_fixed(m, x)) {   /* no draw, no density: nothing flows back from this head */
                logq[b] += v == 0 ? 0 : -INFINITY;
                if (grad) memset(w->dout + (size_t)b * no, 0, (size_t)no * sizeof *w->dout);
                continue;
            }
            logq[b] += head_logq(m, x, w->out + (size_t)b * no, v, grad ? w->dout + (size_t)b * no : NULL);
        }
        if (grad) member_backward(nn, w, j, m->rows ? B * m->card : B, grad);
    }
}

/* head_norm keeping the softmax's unnormalised terms e and their sum *s (lse_e), for head_sample. */
static double head_norm_e(const plm_nn_member *m, const double *x, const double *o, double *e, double *s)
{
    return lse_e(o, m->kind == PLM_NN_DISCRETE ? valid_cats(m, x) : m->card, e, s);
}

/* A continuous head's 1 / sd per component (one exp each), which its draw and the log q of the new and the old value
** share (head_logq_inv). */
static void head_inv(const plm_nn_member *m, const double *o, double *inv)
{
    int c, n = m->card;
    for (c = 0; c < n; c++) inv[c] = exp(-head_lsd(o[2 * n + c]));
}

/* head_logq_z of a continuous member with inv from head_inv: the same numbers. */
static double head_logq_inv(const plm_nn_member *m, const double *o, double z, const double *inv, double v)
{
    double comp[1024];
    int c, n = m->card;
    for (c = 0; c < n; c++) {
        double ls = head_lsd(o[2 * n + c]), e = (v - o[n + c]) * inv[c];
        comp[c] = o[c] - z - 0.5 * e * e - ls - LOG_SQRT_2PI;
    }
    return lse(comp, n);
}

/* Draw from the head outputs o, given the terms e and sum s of head_norm_e (and a continuous head's inv): the
** category, or the mixture component, c with probability e[c] / s (the exps that the normaliser took, not as many
** again), and then a normal draw with sd 1 / inv[c]. */
static double head_sample(const plm_nn_member *m, const double *x, const double *o, const double *e, double s,
                          const double *inv, plm_rng *r)
{
    int c, n = m->kind == PLM_NN_DISCRETE ? valid_cats(m, x) : m->card;
    double u = plm_rng_uniform(r) * s;
    for (c = 0; c < n - 1; c++) {
        u -= e[c];
        if (u < 0) break;
    }
    if (m->kind == PLM_NN_DISCRETE) return c;
    return o[m->card + c] + plm_rng_normal(r) / inv[c];
}

/* ---- single evaluations ----
** One point at a time, cblas_dgemm spends most of its time on call overhead and its reference loops. Here a layer
** is y = b + sum_i a_i W[:, i] over the columns of the transposed weights (w->wt), skipping the a_i that are zero:
** half of a relu layer's units, every one-hot code but the hot one. The inputs x reach member j's first layer
** through the same columns for the new and the old block, so that part (xpart) is computed once per member. The
** numbers are those of the batched pass up to rounding (the order of the sums differs); plm_nn_sample and
** plm_nn_propose share this code, so a draw's density is the same number whichever of them scores it. */

/* y[0..no) += a_k * T[idx_k * no + o] for the n (idx, a) pairs; four columns per pass over y. O3: GCC's -O2 cost
** model does not vectorise loops of unknown length. Two clones, chosen when the program loads: AVX2 (four doubles
** per instruction) where the processor has it, SSE2 elsewhere. They give the same numbers: each y[o] is the same
** sequence of IEEE multiplications and additions in either (C11 mode does not contract them into FMAs), only more
** lanes run at once. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NN_CLONES
#endif
NN_CLONES __attribute__((optimize("O3"))) static void add_columns(int no, int n, const int *idx, const double *a,
                                                         const double *T, double *restrict y)
{
    int k = 0, o;
    for (; k + 4 <= n; k += 4) {
        const double *restrict c0 = T + (size_t)idx[k] * no, *restrict c1 = T + (size_t)idx[k + 1] * no;
        const double *restrict c2 = T + (size_t)idx[k + 2] * no, *restrict c3 = T + (size_t)idx[k + 3] * no;
        double a0 = a[k], a1 = a[k + 1], a2 = a[k + 2], a3 = a[k + 3];
        for (o = 0; o < no; o++) y[o] = y[o] + a0 * c0[o] + a1 * c1[o] + a2 * c2[o] + a3 * c3[o];
    }
    for (; k < n; k++) {
        const double *restrict c = T + (size_t)idx[k] * no;
        double ak = a[k];
        for (o = 0; o < no; o++) y[o] += ak * c[o];
    }
}

/* The "mt" pass (nn.h, plm_nn_ws): xp[o] = mt[nin][o] + sum of x_i mt[i][o] over i in increasing order, for o < mtw:
** every member's first-layer part at once. Sixteen or eight running sums stay in registers through one pass over x,
** where add_columns loads and stores y per four inputs and member_xpart gathers the nonzero inputs once per member.
** Zero inputs are skipped four at a time (a mixture's padding slots, beyond its K, are runs of zeros that stay put
** from one proposal to the next, so the test is well predicted); a single zero is not: it adds an exact zero to a sum
** of finite weights, and a test per input cost more than the product. The vectors are written out (GCC's vector
** extension, each lane the scalar sum in that order): left to itself, GCC vectorises the loop over the inputs
** instead, with a shuffle per product. Narrow hidden layers (layer_single) take the same pass. */
typedef double nn_v4 __attribute__((vector_size(32)));
/* *p as a vector (any alignment). A macro: a function returning a 32-byte vector has another ABI with AVX. */
#define V4(p) (__extension__({ nn_v4 v4_; memcpy(&v4_, (p), sizeof v4_); v4_; }))

#define XP_ZERO4(x, i) ((x)[i] == 0 && (x)[(i) + 1] == 0 && (x)[(i) + 2] == 0 && (x)[(i) + 3] == 0)
NN_CLONES static void xpart_mt(int nin, int mtw, const double *restrict x, const double *restrict mt, double *restrict xp)
{
    const double *bias = mt + (size_t)nin * mtw;
    int o0 = 0, i, k;
    for (; o0 + 16 <= mtw; o0 += 16) {
        nn_v4 a0 = V4(bias + o0), a1 = V4(bias + o0 + 4), a2 = V4(bias + o0 + 8), a3 = V4(bias + o0 + 12);
        for (i = 0; i < nin; i += 4) {
            int n = nin - i < 4 ? nin - i : 4;
            if (n == 4 && XP_ZERO4(x, i)) continue;
            for (k = i; k < i + n; k++) {
                const double *c = mt + (size_t)k * mtw + o0;
                double xk = x[k];
                a0 = a0 + xk * V4(c), a1 = a1 + xk * V4(c + 4);
                a2 = a2 + xk * V4(c + 8), a3 = a3 + xk * V4(c + 12);
            }
        }
        memcpy(xp + o0, &a0, sizeof a0), memcpy(xp + o0 + 4, &a1, sizeof a1);
        memcpy(xp + o0 + 8, &a2, sizeof a2), memcpy(xp + o0 + 12, &a3, sizeof a3);
    }
    for (; o0 + 8 <= mtw; o0 += 8) {
        nn_v4 a0 = V4(bias + o0), a1 = V4(bias + o0 + 4);
        for (i = 0; i < nin; i += 4) {
            int n = nin - i < 4 ? nin - i : 4;
            if (n == 4 && XP_ZERO4(x, i)) continue;
            for (k = i; k < i + n; k++) {
                const double *c = mt + (size_t)k * mtw + o0;
                double xk = x[k];
                a0 = a0 + xk * V4(c), a1 = a1 + xk * V4(c + 4);
            }
        }
        memcpy(xp + o0, &a0, sizeof a0), memcpy(xp + o0 + 4, &a1, sizeof a1);
    }
    for (; o0 < mtw; o0++) {
        double a = bias[o0];
        for (i = 0; i < nin; i++) a = a + x[i] * mt[(size_t)i * mtw + o0];
        xp[o0] = a;
    }
}
#undef XP_ZERO4

/* y (no) = b + sum_i act(z_i) T[i] over the nonzero activations of the pre-activations z (ni), T the transposed
** layer (b follows it). The nonzero ones are gathered without a branch: relu zeroes half the units at random. A
** narrow layer (a binary head: the columns would be two numbers long) is instead a dot product of each row of W
** (the layer as stored, out x in) with the nonzero activations, in four running sums. */
static void layer_single(const plm_nn *nn, plm_nn_ws *w, int ni, int no, const double *T, const double *W, const double *z,
                         double *y)
{
    double *val = w->s + 5 * (size_t)w->swidth;
    int i, n = 0;
    if (no <= 16 && no % 4 == 0) {   /* narrow (a mixture's hidden layer): every unit, the sums held in registers */
        if (nn->act == PLM_NN_TANH)
            for (i = 0; i < ni; i++) val[i] = tanh(z[i]);
        else
            for (i = 0; i < ni; i++) val[i] = z[i] > 0 ? z[i] : 0;
        xpart_mt(ni, no, val, T, y);   /* T is in mt's layout: input i's column at i no, then the bias */
        return;
    }
    if (nn->act == PLM_NN_TANH)
        for (i = 0; i < ni; i++) {
            double a = tanh(z[i]);
            w->nz[n] = i, val[n] = a, n += a != 0;
        }
    else
        for (i = 0; i < ni; i++) w->nz[n] = i, val[n] = z[i], n += z[i] > 0;   /* relu's nonzero units */
    if (no < 4) {
        int o, k;
        for (o = 0; o < no; o++) {
            const double *row = W + (size_t)o * ni;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (k = 0; k + 4 <= n; k += 4) {
                s0 += val[k] * row[w->nz[k]], s1 += val[k + 1] * row[w->nz[k + 1]];
                s2 += val[k + 2] * row[w->nz[k + 2]], s3 += val[k + 3] * row[w->nz[k + 3]];
            }
            for (; k < n; k++) s0 += val[k] * row[w->nz[k]];
            y[o] = W[(size_t)ni * no + o] + ((s0 + s1) + (s2 + s3));
        }
        return;
    }
    memcpy(y, T + (size_t)ni * no, (size_t)no * sizeof *y);
    add_columns(no, n, w->nz, val, T, y);
}

/* A member with rows = 1: its whole perceptron, per category, into its card logits xp (they read x alone). */
static void member_rows(const plm_nn *nn, plm_nn_ws *w, int j, const double *x, double *xp)
{
    const plm_nn_member *m = &nn->mem[j];
    int ni = nn->width[j][0], no = nn->width[j][1], nl = nn->nlayer, c, i, l;
    const double *T = w->wt + nn->off[j][0];
    double *in = w->s, *y = w->s + w->swidth, *t, *val = w->s + 5 * (size_t)w->swidth;
    for (c = 0; c < m->card; c++) {
        int n = 0;
        memcpy(in, x + m->row_at + (size_t)c * m->row_w, (size_t)m->row_w * sizeof *in);
        if (m->rshared_w) memcpy(in + m->row_w, x + m->rshared_at, (size_t)m->rshared_w * sizeof *in);
        for (i = 0; i < ni; i++) w->nz[n] = i, val[n] = in[i], n += in[i] != 0;
        t = nl == 1 ? xp + c : y;
        memcpy(t, T + (size_t)ni * no, (size_t)no * sizeof *t);
        add_columns(no, n, w->nz, val, T, t);
        for (l = 1; l < nl; l++) {
            double *u = l + 1 == nl ? xp + c : t == y ? in : y;
            layer_single(nn, w, nn->width[j][l], nn->width[j][l + 1], w->wt + nn->off[j][l], nn->theta + nn->off[j][l], t, u);
            t = u;
        }
    }
}

/* Member j's first layer with its bias, the part that reads the inputs x (not the members before j): into xp. A
** member with rows = 1: its logits. */
static void member_xpart(const plm_nn *nn, plm_nn_ws *w, int j, const double *x, double *xp)
{
    int ni = nn->width[j][0], no = nn->width[j][1];
    const double *T = w->wt + nn->off[j][0];
    double *val = w->s + 5 * (size_t)w->swidth;
    int i, n = 0;
    (void)ni;
    if (nn->mem[j].rows) {
        member_rows(nn, w, j, x, xp);
        return;
    }
    if (no == 2) {   /* a binary head with no hidden layer (a grid block): two running sums, no gather */
        double s0 = T[(size_t)ni * 2], s1 = T[(size_t)ni * 2 + 1];
        for (i = 0; i < nn->nin; i++)
            if (x[i] != 0) s0 += x[i] * T[2 * (size_t)i], s1 += x[i] * T[2 * (size_t)i + 1];
        xp[0] = s0, xp[1] = s1;
        return;
    }
    for (i = 0; i < nn->nin; i++) w->nz[n] = i, val[n] = x[i], n += x[i] != 0;
    memcpy(xp, T + (size_t)ni * no, (size_t)no * sizeof *xp);
    add_columns(no, n, w->nz, val, T, xp);
}

/* Member j's head outputs into o for the block values v[0..j) before it, from its x part xp. */
static void member_single(const plm_nn *nn, plm_nn_ws *w, int j, const double *xp, const double *v, double *o)
{
    int l, i, c = nn->nin, no = nn->width[j][1], nl = nn->nlayer;
    const double *T = w->wt + nn->off[j][0];
    double *a = w->s, *z = w->s + w->swidth, one = 1;
    double *y = nl == 1 ? o : z;
    if (nn->mem[j].rows) {   /* its logits are its x part */
        memcpy(o, xp, (size_t)nn->mem[j].card * sizeof *o);
        return;
    }
    memcpy(y, xp, (size_t)no * sizeof *y);
    for (i = 0; i < j; i++) {   /* the members before j: one hot column, or a continuous value's column */
        const plm_nn_member *m = &nn->mem[i];
        if (m->kind == PLM_NN_DISCRETE) {
            if (v[i] >= 0 && v[i] < m->card) {
                int idx = c + (int)v[i];
                add_columns(no, 1, &idx, &one, T, y);   /* 1 * w is w: the same sum as the code's product */
            }
            c += m->card;
        } else {
            int idx = c++;
            add_columns(no, 1, &idx, &v[i], T, y);
        }
    }
    for (l = 1; l < nl; l++) {
        double *t = l + 1 == nl ? o : y == z ? a : z;
        layer_single(nn, w, nn->width[j][l], nn->width[j][l + 1], w->wt + nn->off[j][l], nn->theta + nn->off[j][l], y, t);
        y = t;
    }
}

static void propose_bin1(const plm_nn *nn, plm_nn_ws *w, const double *x, const double *xp, const double *vold, plm_rng *r,
                         double *v, double *lq_new, double *lq_old);

void plm_nn_sample(const plm_nn *nn, plm_nn_ws *w, const double *x, plm_rng *r, double *v, double *logq)
{
    double *xp = w->s + 2 * (size_t)w->swidth, *o = w->s + 3 * (size_t)w->swidth;
    int j;
    if (nn->bin1) {   /* the kernel's way, so that a draw's density is the same number whichever scores it */
        plm_nn_xpart(nn, w, x, w->xp);
        propose_bin1(nn, w, x, w->xp, NULL, r, v, logq, NULL);
        return;
    }
    *logq = 0;
    if (w->mtw) xpart_mt(nn->nin, w->mtw, x, w->mt, w->xp);
    for (j = 0; j < nn->nmem; j++) {
        if (is_fixed(&nn->mem[j], x)) {
            v[j] = 0;
            continue;
        }
        if (w->mtw)
            xp = w->xp + (size_t)j * (size_t)nn->width[0][1];
        else
            member_xpart(nn, w, j, x, xp);
        member_single(nn, w, j, xp, v, o);
        add_skip(nn, j, x, v, o);
        const plm_nn_member *m = &nn->mem[j];
        double *e = w->s + 6 * (size_t)w->swidth, *inv = e + m->card, se, z = head_norm_e(m, x, o, e, &se);
        if (m->kind == PLM_NN_CONTINUOUS) head_inv(m, o, inv);
        v[j] = head_sample(m, x, o, e, se, inv, r);
        *logq += m->kind == PLM_NN_CONTINUOUS ? head_logq_inv(m, o, z, inv, v[j]) : head_logq_z(m, x, o, z, v[j], NULL);
    }
}

/* Member j's part is at xp + j * xp_width(nn): the widest first layer's output. */
static size_t xp_width(const plm_nn *nn)
{
    int j, wd = 1;
    for (j = 0; j < nn->nmem; j++) {
        if (nn->width[j][1] > wd) wd = nn->width[j][1];
        if (nn->mem[j].rows && nn->mem[j].card > wd) wd = nn->mem[j].card;
    }
    return (size_t)wd;
}

size_t plm_nn_xpart_size(const plm_nn *nn) { return (size_t)nn->nmem * xp_width(nn); }

void plm_nn_xpart(const plm_nn *nn, plm_nn_ws *w, const double *x, double *xp)
{
    int j;
    size_t wd = xp_width(nn);
    if (w->mtw) {   /* the members' parts side by side: xp_width is their common width */
        xpart_mt(nn->nin, w->mtw, x, w->mt, xp);
        return;
    }
    for (j = 0; j < nn->nmem; j++)
        if (!is_fixed(&nn->mem[j], x)) member_xpart(nn, w, j, x, xp + (size_t)j * wd);   /* an absent one's is unused */
}

/* A bin1 network's (nn.h) member j head outputs o[0..1] for the block values v before it: member_single and
** add_skip with their sums in the same order, inline. */
static inline void bin1_out(const plm_nn *nn, const double *T, int j, const double *x, const double *xpj, const double *v,
                            double *o)
{
    const plm_nn_member *m = &nn->mem[j];
    int i;
    o[0] = xpj[0], o[1] = xpj[1];
    for (i = 0; i < j; i++)
        if (v[i] >= 0 && v[i] < 2) {
            const double *c = T + 2 * ((size_t)nn->nin + 2 * (size_t)i + (size_t)(int)v[i]);
            o[0] += c[0], o[1] += c[1];
        }
    if (!m->skip) return;
    if (m->base_at >= 0) o[0] += x[m->base_at], o[1] += x[m->base_at + 1];
    if (m->pair_of >= 0) {
        double pv = v[m->pair_of];
        int k = (int)pv;
        if (pv >= 0 && k < 2 && k == pv) {
            const double *row;
            if (m->pair2) {
                double pv2 = v[m->pair2_of];
                int k2 = (int)pv2;
                if (!(pv2 >= 0 && k2 < 2 && k2 == pv2)) return;
                row = x + m->pair_at + (size_t)(k + 2 * k2) * 2;
            } else {
                row = x + m->pair_at + (size_t)k * 2;
            }
            o[0] += row[0], o[1] += row[1];
        }
    }
}

/* A binary head's log normaliser z of outputs o, and the probability p0 of category 0: with e = exp(-|o1 - o0|),
** z = max(o) + log1p(e) and p0 = 1 / (1 + e) or e / (1 + e): one exp and one log1p where lse() and head_sample() take
** two exps and a log. Non-finite outputs go the general way (lse(), p0 = exp(o0 - z)). */
static inline double bin1_norm(const double *o, double *p0)
{
    double d = o[1] - o[0], e, z;
    if (!isfinite(d)) {
        z = lse(o, 2);
        *p0 = exp(o[0] - z);
        return z;
    }
    e = exp(-fabs(d));
    *p0 = d <= 0 ? 1 / (1 + e) : e / (1 + e);
    return (d <= 0 ? o[0] : o[1]) + log1p(e);
}

/* plm_nn_propose_xp for a bin1 network (also plm_nn_sample's way for one: vold NULL, then lq_old is untouched). */
static void propose_bin1(const plm_nn *nn, plm_nn_ws *w, const double *x, const double *xp, const double *vold, plm_rng *r,
                         double *v, double *lq_new, double *lq_old)
{
    size_t wd = xp_width(nn);
    int j, same = vold != NULL;
    double o[2], oo[2];
    *lq_new = 0;
    if (vold) *lq_old = 0;
    for (j = 0; j < nn->nmem; j++) {
        const plm_nn_member *m = &nn->mem[j];
        const double *T = w->wt + nn->off[j][0];
        double z, zo, p0, q0;
        int k;
        if (is_fixed(m, x)) {
            v[j] = 0;
            if (vold && vold[j] != 0) *lq_old = -INFINITY;
            same = same && vold[j] == 0;
            continue;
        }
        bin1_out(nn, T, j, x, xp + (size_t)j * wd, v, o);
        z = bin1_norm(o, &p0);
        v[j] = k = plm_rng_uniform(r) < p0 ? 0 : 1;
        *lq_new += o[k] - z;
        if (!vold) continue;
        if (same) {
            zo = z, oo[0] = o[0], oo[1] = o[1];
        } else {
            bin1_out(nn, T, j, x, xp + (size_t)j * wd, vold, oo);
            zo = bin1_norm(oo, &q0);
        }
        k = (int)vold[j];
        *lq_old += vold[j] >= 0 && k < 2 && k == vold[j] ? oo[k] - zo : -INFINITY;
        same = same && memcmp(&v[j], &vold[j], sizeof *v) == 0;
    }
}

void plm_nn_propose_xp(const plm_nn *nn, plm_nn_ws *w, const double *x, const double *xp, const double *vold, plm_rng *r,
                       double *v, double *lq_new, double *lq_old)
{
    double *o = w->s + 3 * (size_t)w->swidth, *oo = w->s + 4 * (size_t)w->swidth;
    size_t wd = xp_width(nn);
    int j, same = 1;   /* same: the new block's members so far equal the old block's, so their outputs do too */
    if (nn->bin1) {
        propose_bin1(nn, w, x, xp, vold, r, v, lq_new, lq_old);
        return;
    }
    *lq_new = *lq_old = 0;
    for (j = 0; j < nn->nmem; j++) {
        const plm_nn_member *m = &nn->mem[j];
        const double *xpj = xp + (size_t)j * wd;
        double z, zo, *e = w->s + 6 * (size_t)w->swidth, se;
        if (is_fixed(m, x)) {
            v[j] = 0;
            if (vold[j] != 0) *lq_old = -INFINITY;
            same = same && vold[j] == 0;
            continue;
        }
        member_single(nn, w, j, xpj, v, o);
        add_skip(nn, j, x, v, o);
        z = head_norm_e(m, x, o, e, &se);
        if (!same) member_single(nn, w, j, xpj, vold, oo), add_skip(nn, j, x, vold, oo);
        zo = same ? z : head_norm(m, x, oo);
        if (m->kind == PLM_NN_CONTINUOUS) {   /* e holds the card mixture terms; the sds' inverses follow them */
            double *inv = e + m->card, *invo = same ? inv : e + 2 * m->card;
            head_inv(m, o, inv);
            if (!same) head_inv(m, oo, invo);
            v[j] = head_sample(m, x, o, e, se, inv, r);
            *lq_new += head_logq_inv(m, o, z, inv, v[j]);
            *lq_old += head_logq_inv(m, same ? o : oo, zo, invo, vold[j]);
        } else {
            v[j] = head_sample(m, x, o, e, se, NULL, r);
            *lq_new += head_logq_z(m, x, o, z, v[j], NULL);
            *lq_old += head_logq_z(m, x, same ? o : oo, zo, vold[j], NULL);
        }
        same = same && memcmp(&v[j], &vold[j], sizeof *v) == 0;
    }
}

void plm_nn_propose(const plm_nn *nn, plm_nn_ws *w, const double *x, const double *vold, plm_rng *r, double *v,
                    double *lq_new, double *lq_old)
{
    plm_nn_xpart(nn, w, x, w->xp);
    plm_nn_propose_xp(nn, w, x, w->xp, vold, r, v, lq_new, lq_old);
}

plm_status plm_nn_adam_init(plm_ctx *ctx, plm_nn_adam *a, size_t n, double lr)
{
    memset(a, 0, sizeof *a);
    a->n = n, a->lr = lr, a->b1 = 0.9, a->b2 = 0.999, a->eps = 1e-8;
    a->m = calloc(n ? n : 1, sizeof *a->m);
    a->v = calloc(n ? n : 1, sizeof *a->v);
    if (!a->m || !a->v) {
        plm_nn_adam_free(a);
        return plm_fail(ctx, PLM_ENOMEM, "nn: out of memory");
    }
    return PLM_OK;
}

void plm_nn_adam_step(plm_nn_adam *a, double *theta, const double *grad)
{
    size_t i;
    double c1, c2;
    a->t++;
    c1 = 1 - pow(a->b1, (double)a->t);
    c2 = 1 - pow(a->b2, (double)a->t);
    for (i = 0; i < a->n; i++) {
        double g = grad[i];
        if (!isfinite(g)) continue;   /* a non-finite gradient entry is skipped, not spread into the moments */
        a->m[i] = a->b1 * a->m[i] + (1 - a->b1) * g;
        a->v[i] = a->b2 * a->v[i] + (1 - a->b2) * g * g;
        theta[i] += a->lr * (a->m[i] / c1) / (sqrt(a->v[i] / c2) + a->eps);
    }
}

void plm_nn_adam_free(plm_nn_adam *a)
{
    free(a->m), free(a->v);
    a->m = a->v = NULL;
}
