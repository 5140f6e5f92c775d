/* twistnet.c -- the network twist, its CTL training with Adam, and its checksummed file (see twistnet.h).
** theta is laid out as Wp (H x D, row-major), Et (V x H), As (S x H), wr (H), b1 (H), w2 (H), b2 (1); a block whose
** feature is off is absent. */
#include "twistnet.h"

#include <gsl/gsl_cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"
#include "rng.h"

#define TWISTNET_FILE_VERSION 1

void plm_twistnet_free(plm_twistnet *n)
{
    if (!n) return;
    free(n->next);
    free(n->accept);
    free(n->eos);
    free(n->theta);
    free(n);
}

/* point the views into theta and return the parameter count (theta may be NULL to count) */
static size_t layout(plm_twistnet *n, double *theta)
{
    size_t p = 0, H = (size_t)n->H;
#define VIEW(ptr, on, size) n->ptr = (on) ? (theta ? theta + p : NULL) : NULL, p += (on) ? (size) : 0;
    VIEW(Wp, n->D > 0, H * (size_t)n->D)
    VIEW(Et, n->features & PLM_TN_TOKEN, (size_t)n->V * H)
    VIEW(As, n->features & PLM_TN_STATE, (size_t)n->S * H)
    VIEW(wr, n->features & PLM_TN_LEFT, H)
    VIEW(b1, 1, H)
    VIEW(w2, 1, H)
    VIEW(b2, 1, 1)
#undef VIEW
    return p;
}

/* the shape checks shared by new and load; n's sizes are set, nothing allocated */
static plm_status check_shape(plm_ctx *ctx, const plm_twistnet *n)
{
    if (n->V < 1 || n->S < 1 || (double)n->S * n->V > 1e9)
        return plm_fail(ctx, PLM_EINVAL, "twist net: %d automaton states x %d tokens is out of range", n->S, n->V);
    if (n->T < 1 || n->T > 100000) return plm_fail(ctx, PLM_EINVAL, "twist net: max_tokens must be in 1..100000 (got %d)", n->T);
    if (n->H < 1 || n->H > 4096) return plm_fail(ctx, PLM_EINVAL, "twist net: hidden must be in 1..4096 (got %d)", n->H);
    if (n->features < 0 || n->features > 31) return plm_fail(ctx, PLM_EINVAL, "twist net: feature bits %d out of range", n->features);
    if ((n->features & PLM_TN_BAG) && (n->B < 1 || n->B > 65536 || n->window < 1 || n->window > 1024))
        return plm_fail(ctx, PLM_EINVAL, "twist net: bag must be in 1..65536 and window in 1..1024 (got %d, %d)", n->B, n->window);
    if ((n->features & PLM_TN_HIDDEN) ? (n->E < 1 || n->E > 65536) : n->E != 0)
        return plm_fail(ctx, PLM_EINVAL, "twist net: the hidden-state size %d does not fit the features", n->E);
    if (n->start < 0 || n->start >= n->S) return plm_fail(ctx, PLM_EINVAL, "twist net: start state %d out of range", n->start);
    if ((double)n->V * n->H > 1e8) return plm_fail(ctx, PLM_EINVAL, "twist net: %d tokens x %d hidden units is too large", n->V, n->H);
    return PLM_OK;
}

/* allocate the tables of a net whose sizes are set */
static plm_status alloc_net(plm_ctx *ctx, plm_twistnet *n)
{
    n->D = ((n->features & PLM_TN_BAG) ? n->B : 0) + n->E;
    n->P = layout(n, NULL);
    n->next = malloc((size_t)n->S * n->V * sizeof *n->next);
    n->accept = calloc((size_t)n->S, 1);
    n->eos = calloc((size_t)n->V, 1);
    n->theta = calloc(n->P, sizeof *n->theta);
    if (!n->next || !n->accept || !n->eos || !n->theta) return plm_fail(ctx, PLM_ENOMEM, "twist net: out of memory");
    layout(n, n->theta);
    return PLM_OK;
}

plm_status plm_twistnet_new(plm_ctx *ctx, const plm_tdfa *dfa, const plm_token *eos, int n_eos, int T, int H,
                            int features, int B, int window, int E, uint64_t seed, plm_twistnet **out)
{
    plm_twistnet *n;
    plm_status st;
    plm_rng rng;
    *out = NULL;
    if (!(n = calloc(1, sizeof *n))) return plm_fail(ctx, PLM_ENOMEM, "twist net: out of memory");
    n->V = dfa->V, n->S = dfa->S, n->T = T, n->H = H, n->features = features, n->start = dfa->start;
    n->B = (features & PLM_TN_BAG) ? B : 0, n->window = (features & PLM_TN_BAG) ? window : 0;
    n->E = (features & PLM_TN_HIDDEN) ? E : 0;
    if ((st = check_shape(ctx, n)) || (st = alloc_net(ctx, n))) {
        plm_twistnet_free(n);
        return st;
    }
    memcpy(n->next, dfa->next, (size_t)n->S * n->V * sizeof *n->next);
    memcpy(n->accept, dfa->accept, (size_t)n->S);
    for (int i = 0; i < n_eos; i++)
        if (eos[i] >= 0 && eos[i] < n->V) n->eos[eos[i]] = 1;
    /* the first layer's inputs: D prefix features plus one token, one state and tokens left per candidate */
    plm_rng_init(&rng, seed, 0);
    {
        double fan = n->D + !!(features & PLM_TN_TOKEN) + !!(features & PLM_TN_STATE) + !!(features & PLM_TN_LEFT);
        double sd = 1 / sqrt(fan > 0 ? fan : 1);
        size_t H_ = (size_t)H, i;
        if (n->Wp)
            for (i = 0; i < H_ * (size_t)n->D; i++) n->Wp[i] = sd * plm_rng_normal(&rng);
        if (n->Et)
            for (i = 0; i < (size_t)n->V * H_; i++) n->Et[i] = sd * plm_rng_normal(&rng);
        if (n->As)
            for (i = 0; i < (size_t)n->S * H_; i++) n->As[i] = sd * plm_rng_normal(&rng);
        if (n->wr)
            for (i = 0; i < H_; i++) n->wr[i] = sd * plm_rng_normal(&rng);
    }
    *out = n;
    return PLM_OK;
}

size_t plm_twistnet_work(const plm_twistnet *n)
{
    return ((size_t)n->V + 5) * (size_t)n->H + 2 * (size_t)n->V;
}

plm_status plm_twistnet_features(const plm_twistnet *n, plm_ctx *ctx, plm_lm *lm, const plm_token *full, size_t nfull,
                                 const plm_token *gen, size_t t, double *f)
{
    double *h = f + ((n->features & PLM_TN_BAG) ? n->B : 0);
    if (n->features & PLM_TN_BAG) {
        size_t j = t > (size_t)n->window ? t - (size_t)n->window : 0;
        memset(f, 0, (size_t)n->B * sizeof *f);
        for (; j < t; j++) f[((uint32_t)gen[j] * 2654435761u) % (uint32_t)n->B] += 1;   /* Knuth's multiplicative hash */
    }
    if (n->features & PLM_TN_HIDDEN) {
        if (plm_lm_hidden_dim(lm) != n->E)
            return plm_fail(ctx, PLM_EINVAL, "twist net: the net reads hidden states of %d numbers, the model gives %d", n->E,
                            plm_lm_hidden_dim(lm));
        return plm_lm_hidden(lm, ctx, 1, &full, &nfull, h);
    }
    return PLM_OK;
}

/* u = b1 + Wp f: the prefix's share of every candidate's first layer */
static void prefix_part(const plm_twistnet *n, const double *f, double *u)
{
    memcpy(u, n->b1, (size_t)n->H * sizeof *u);
    if (n->Wp) cblas_dgemv(CblasRowMajor, CblasNoTrans, n->H, n->D, 1.0, n->Wp, n->D, f, 1, 1.0, u, 1);
}

/* kinds of candidate: 1 = through the network, 0 = final (phi = accepting), -1 = impossible */
static int candidate(const plm_twistnet *n, int s, int t, plm_token v, int *s2)
{
    *s2 = n->next[(size_t)s * n->V + v];
    if (*s2 < 0) return -1;
    if (n->eos[v] || t + 1 >= n->T) return 0;
    return 1;
}

/* one candidate's hidden activations a (H) from the prefix part u */
static void activations(const plm_twistnet *n, const double *u, int s2, int t, plm_token v, double *restrict a)
{
    int H = n->H, k;
    double left = (double)(n->T - (t + 1)) / n->T;
    const double *et = n->Et ? n->Et + (size_t)v * H : NULL, *as = n->As ? n->As + (size_t)s2 * H : NULL;
    for (k = 0; k < H; k++) {
        double z = u[k];
        if (et) z += et[k];
        if (as) z += as[k];
        if (n->wr) z += n->wr[k] * left;
        a[k] = tanh(z);
    }
}

void plm_twistnet_logpsi(const plm_twistnet *n, const double *f, int s, int t, double *out, double *work)
{
    int V = n->V, H = n->H, v, m = 0, s2;
    double *u = work, *A = work + H, *o = A + (size_t)V * H;
    int *which = (int *)(o + V);   /* V ints fit in V doubles */
    if (s < 0 || t >= n->T) {
        for (v = 0; v < V; v++) out[v] = -INFINITY;
        return;
    }
    prefix_part(n, f, u);
    /* the non-final candidates' activations as the rows of A, then one matrix-vector product with w2 */
    for (v = 0; v < V; v++) {
        int kind = candidate(n, s, t, v, &s2);
        if (kind < 0) out[v] = -INFINITY;
        else if (kind == 0) out[v] = n->accept[s2] ? 0 : -INFINITY;
        else {
            activations(n, u, s2, t, v, A + (size_t)m * H);
            which[m++] = v;
        }
    }
    if (m == 0) return;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, m, H, 1.0, A, H, n->w2, 1, 0.0, o, 1);
    for (int k = 0; k < m; k++) out[which[k]] = o[k] + n->b2[0];
}

void plm_twistnet_grad(const plm_twistnet *n, const double *f, int s, int t, const plm_token *vs, const double *c,
                       int m, double *grad, double *work)
{
    int H = n->H, k, j, s2;
    double *u = work, *a = work + H, *dzsum = work + 2 * (size_t)H, *dz = work + 3 * (size_t)H;
    double left = (double)(n->T - (t + 1)) / n->T;
    plm_twistnet g;   /* views into grad, laid out as theta */
    if (s < 0 || t >= n->T) return;
    g = *n;
    layout(&g, grad);
    prefix_part(n, f, u);
    memset(dzsum, 0, (size_t)H * sizeof *dzsum);
    for (j = 0; j < m; j++) {
        plm_token v = vs[j];
        if (c[j] == 0 || candidate(n, s, t, v, &s2) <= 0) continue;
        activations(n, u, s2, t, v, a);
        g.b2[0] += c[j];
        for (k = 0; k < H; k++) {
            g.w2[k] += c[j] * a[k];
            dz[k] = c[j] * n->w2[k] * (1 - a[k] * a[k]);
            dzsum[k] += dz[k];
        }
        if (g.Et) cblas_daxpy(H, 1.0, dz, 1, g.Et + (size_t)v * H, 1);
        if (g.As) cblas_daxpy(H, 1.0, dz, 1, g.As + (size_t)s2 * H, 1);
        if (g.wr) cblas_daxpy(H, left, dz, 1, g.wr, 1);
    }
    cblas_daxpy(H, 1.0, dzsum, 1, g.b1, 1);
    if (g.Wp) cblas_dger(CblasRowMajor, H, n->D, 1.0, dzsum, 1, f, 1, g.Wp, n->D);   /* Wp += dzsum f^T */
}

/* ---- contrastive twist learning ---- */

/* The particle system of one twisted SMC sweep (buffers reused across sweeps). */
typedef struct sweep {
    int N, V, T, D;
    size_t L, np;
    plm_token *toks, *toks2;     /* N x L: prompt, then generated tokens */
    int *len, *len2, *s, *s2, *idx, *sb;   /* sb: each particle's automaton state before this step's token */
    unsigned char *done, *done2;
    double *psiprev, *psiprev2;
    double *feats, *feats2;      /* N x T x D: the prefix features at each step */
    double *rows, *logq, *logpsi, *inc, *lw, *w, *work, *cbuf;
    plm_token *vbuf;
    size_t *cnt, *anc, *lens;
    const plm_token **ptr;
} sweep;

static void sweep_free(sweep *w)
{
    free(w->toks), free(w->toks2), free(w->len), free(w->len2), free(w->s), free(w->s2), free(w->idx), free(w->sb);
    free(w->done), free(w->done2), free(w->psiprev), free(w->psiprev2), free(w->feats), free(w->feats2);
    free(w->rows), free(w->logq), free(w->logpsi), free(w->inc), free(w->lw), free(w->w), free(w->work), free(w->cbuf);
    free(w->vbuf), free(w->cnt), free(w->anc), free(w->lens), free(w->ptr);
}

static plm_status sweep_alloc(plm_ctx *ctx, sweep *w, const plm_twistnet *n, int N, size_t np)
{
    size_t NV = (size_t)N * n->V, F = (size_t)N * n->T * (n->D ? n->D : 1);
    memset(w, 0, sizeof *w);
    w->N = N, w->V = n->V, w->T = n->T, w->D = n->D, w->np = np, w->L = np + (size_t)n->T;
#define A(p, k) if (!((w->p) = malloc((k) * sizeof *(w->p)))) goto nomem;
    A(toks, (size_t)N * w->L) A(toks2, (size_t)N * w->L) A(len, N) A(len2, N) A(s, N) A(s2, N) A(idx, N) A(sb, N)
    A(done, N) A(done2, N) A(psiprev, N) A(psiprev2, N) A(feats, F) A(feats2, F) A(rows, NV) A(logq, NV)
    A(logpsi, (size_t)n->V) A(inc, (size_t)n->V) A(lw, N) A(w, N) A(work, plm_twistnet_work(n)) A(cbuf, (size_t)n->V)
    A(vbuf, (size_t)n->V) A(cnt, N) A(anc, N) A(lens, N) A(ptr, N)
#undef A
    return PLM_OK;
nomem:
    sweep_free(w);
    return plm_fail(ctx, PLM_ENOMEM, "twist net: out of memory");
}

/* One twisted SMC sweep with the twist-induced proposal; *lz receives log Z-hat, *ess the final ESS. When grad
** is not NULL it receives sum_t (E_sigma - E_pi_t)[grad log psi_t] (see plm_twistnet_ctl). */
static plm_status run_sweep(plm_ctx *ctx, plm_lm *lm, const plm_twistnet *n, sweep *w, const plm_token *prompt,
                            plm_rng *rng, double *grad, double *lz, double *ess)
{
    int N = w->N, V = n->V, T = n->T, D = n->D, i, t, v;
    size_t L = w->L, np = w->np, FD = (size_t)T * D;
    plm_status st;
    *lz = 0;
    for (i = 0; i < N; i++) {
        memcpy(w->toks + (size_t)i * L, prompt, np * sizeof *w->toks);
        w->len[i] = (int)np, w->s[i] = n->start, w->done[i] = 0, w->psiprev[i] = 0, w->w[i] = 1.0 / N;
    }
    for (t = 0; t < T; t++) {
        int m = 0, alldone = 1;
        double mx = -INFINITY, sum = 0;
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "twist net: interrupted");
        for (i = 0; i < N; i++)
            if (!w->done[i]) w->idx[m] = i, w->ptr[m] = w->toks + (size_t)i * L, w->lens[m] = (size_t)w->len[i], m++;
        if (m == 0) break;
        if ((st = plm_lm_next_logprobs(lm, ctx, (size_t)m, w->ptr, w->lens, w->rows))) return st;
        for (i = 0; i < N; i++) w->lw[i] = 0;   /* finished particles: no increment */
        for (int k = 0; k < m; k++) {
            double u, acc = 0, ci = -INFINITY, *f, *lq = w->logq + (size_t)k * V;
            i = w->idx[k];
            f = w->feats + (size_t)i * FD + (size_t)t * D;
            if ((st = plm_twistnet_features(n, ctx, lm, w->toks + (size_t)i * L, (size_t)w->len[i], w->toks + (size_t)i * L + np,
                                            (size_t)t, f)))
                return st;
            plm_twistnet_logpsi(n, f, w->s[i], t, w->logpsi, w->work);
            if ((st = plm_twist_step(ctx, V, PLM_TWIST_PROP_TWIST, w->rows + (size_t)k * V, w->logpsi, w->psiprev[i], lq, w->inc)))
                return st;
            for (v = 0; v < V && ci == -INFINITY; v++) ci = w->inc[v];
            w->lw[i] = ci;
            if (ci == -INFINITY) {
                w->done[i] = 1;
                continue;
            }
            u = plm_rng_uniform(rng);
            for (v = 0; v < V; v++) {
                acc += exp(lq[v]);
                if (u < acc) break;
            }
            if (v == V)
                for (v = V - 1; v > 0 && lq[v] == -INFINITY; v--) {}
            w->toks[(size_t)i * L + w->len[i]++] = v;
            w->psiprev[i] = w->logpsi[v];
            w->sb[i] = w->s[i];
            w->s[i] = n->next[(size_t)w->s[i] * V + v];
            if (n->eos[v] || t + 1 == T) w->done[i] = 1;
        }
        for (i = 0; i < N; i++) mx = fmax(mx, w->lw[i]);
        if (mx == -INFINITY) return plm_fail(ctx, PLM_EDEAD, "twist net: every particle has weight -inf at step %d", t + 1);
        for (i = 0; i < N; i++) sum += (w->w[i] = exp(w->lw[i] - mx));
        for (i = 0; i < N; i++) w->w[i] /= sum;
        *lz += mx + log(sum / N);
        if (grad) {   /* pi_t: each particle's prefix extended by q_t, weighted by its normalised weight */
            for (int k = 0; k < m; k++) {
                int c = 0;
                const double *lq = w->logq + (size_t)k * V;
                i = w->idx[k];
                if (w->w[i] == 0) continue;
                for (v = 0; v < V; v++)
                    if (lq[v] > -INFINITY) w->vbuf[c] = v, w->cbuf[c++] = -w->w[i] * exp(lq[v]);
                plm_twistnet_grad(n, w->feats + (size_t)i * FD + (size_t)t * D, w->sb[i], t, w->vbuf, w->cbuf, c, grad, w->work);
            }
        }
        for (i = 0; i < N; i++) alldone &= w->done[i];
        if (alldone || t + 1 == T) break;
        /* resample every step (multinomial) */
        if ((st = plm_resample_counts(ctx, PLM_RESAMPLE_MULTINOMIAL, w->w, (size_t)N, (size_t)N, rng, w->cnt, NULL))) return st;
        plm_resample_ancestors(w->cnt, (size_t)N, w->anc);
        for (i = 0; i < N; i++) {
            size_t a = w->anc[i];
            memcpy(w->toks2 + (size_t)i * L, w->toks + a * L, (size_t)w->len[a] * sizeof *w->toks);
            if (D) memcpy(w->feats2 + (size_t)i * FD, w->feats + a * FD, (size_t)(t + 1) * D * sizeof *w->feats);
            w->len2[i] = w->len[a], w->s2[i] = w->s[a], w->done2[i] = w->done[a], w->psiprev2[i] = w->psiprev[a];
        }
#define SWAP(a, b) do { void *tmp_ = (void *)w->a; *(void **)&w->a = (void *)w->b; *(void **)&w->b = tmp_; } while (0)
        SWAP(toks, toks2); SWAP(feats, feats2); SWAP(len, len2); SWAP(s, s2); SWAP(done, done2); SWAP(psiprev, psiprev2);
#undef SWAP
        for (i = 0; i < N; i++) w->w[i] = 1.0 / N;
    }
    *ess = 0;
    for (i = 0; i < N; i++) *ess += w->w[i] * w->w[i];
    *ess = 1 / *ess;
    if (grad)   /* sigma: the final weighted particles' paths, one candidate per step */
        for (i = 0; i < N; i++) {
            int s = n->start;
            double c = w->w[i];
            if (c == 0) continue;
            for (t = 0; t + np < (size_t)w->len[i]; t++) {
                plm_token v = w->toks[(size_t)i * L + np + (size_t)t];
                plm_twistnet_grad(n, w->feats + (size_t)i * FD + (size_t)t * D, s, t, &v, &c, 1, grad, w->work);
                s = n->next[(size_t)s * V + v];
                if (s < 0) break;
            }
        }
    return PLM_OK;
}

plm_status plm_twistnet_ctl(plm_ctx *ctx, plm_lm *lm, plm_twistnet *n, const plm_token *prompt, size_t np, int N,
                            int iters, double lr, uint64_t seed, int eval_every, int n_heldout, double *logz,
                            double *heldout, plm_twistnet_progress progress, void *ud)
{
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double *grad = NULL, *m1 = NULL, *m2 = NULL, b1t = 1, b2t = 1;
    sweep w;
    plm_rng rng, hrng;
    plm_status st;
    size_t P = n->P, j;
    int it, k = 0;
    if (n->V != lm->n_vocab) return plm_fail(ctx, PLM_EINVAL, "twist net: the twist is over %d tokens, the model has %d", n->V, lm->n_vocab);
    if (N < 2 || iters < 1 || !(lr > 0)) return plm_fail(ctx, PLM_EINVAL, "twist net: particles >= 2, iters >= 1 and lr > 0 (got %d, %d, %g)", N, iters, lr);
    if ((n->features & PLM_TN_HIDDEN) && plm_lm_hidden_dim(lm) != n->E)
        return plm_fail(ctx, PLM_EINVAL, "twist net: the net reads hidden states of %d numbers, the model gives %d", n->E, plm_lm_hidden_dim(lm));
    if ((st = sweep_alloc(ctx, &w, n, N, np))) return st;
    grad = malloc(P * sizeof *grad), m1 = calloc(P, sizeof *m1), m2 = calloc(P, sizeof *m2);
    if (!grad || !m1 || !m2) {
        st = plm_fail(ctx, PLM_ENOMEM, "twist net: out of memory");
        goto out;
    }
    plm_rng_init(&rng, seed, 0);
    for (it = 0; it < iters; it++) {
        double lz, ess, gn = 0, ho = NAN;
        memset(grad, 0, P * sizeof *grad);
        if ((st = run_sweep(ctx, lm, n, &w, prompt, &rng, grad, &lz, &ess))) goto out;
        /* Adam, ascending sum_t (E_sigma - E_pi_t)[grad log psi_t] */
        b1t *= beta1, b2t *= beta2;
        for (j = 0; j < P; j++) {
            double g = grad[j];
            gn += g * g;
            m1[j] = beta1 * m1[j] + (1 - beta1) * g;
            m2[j] = beta2 * m2[j] + (1 - beta2) * g * g;
            n->theta[j] += lr * (m1[j] / (1 - b1t)) / (sqrt(m2[j] / (1 - b2t)) + eps);
        }
        if (logz) logz[it] = lz;
        if (eval_every > 0 && n_heldout > 0 && (it + 1) % eval_every == 0) {
            /* held-out sweeps: the same seeds at every evaluation, so that the numbers are comparable */
            double s = 0, l, e;
            for (int h = 0; h < n_heldout; h++) {
                plm_rng_init(&hrng, seed, 1000 + (uint64_t)h);
                if ((st = run_sweep(ctx, lm, n, &w, prompt, &hrng, NULL, &l, &e))) goto out;
                s += l;
            }
            ho = s / n_heldout;
            if (heldout) heldout[k] = ho;
            k++;
        }
        if (progress) progress(ud, it + 1, iters, lz, ess, sqrt(gn), ho);
    }
    st = PLM_OK;
out:
    sweep_free(&w);
    free(grad), free(m1), free(m2);
    return st;
}

/* ---- the file ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int k;
    if (b->oom) return;
    for (;;) {
        va_start(ap, fmt);
        k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        {
            size_t cap = (b->cap ? 2 * b->cap : 4096) + (size_t)k;
            char *q = realloc(b->p, cap);
            if (!q) {
                b->oom = 1;
                return;
            }
            b->p = q, b->cap = cap;
        }
    }
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return h;
}

plm_status plm_twistnet_save(plm_ctx *ctx, const plm_twistnet *n, const char *path)
{
    sbuf b = {0};
    FILE *f;
    size_t i, SV = (size_t)n->S * n->V;
    sb_printf(&b, "plume-twistnet %d\n%d %d %d %d %d %d %d %d %d\n", TWISTNET_FILE_VERSION, n->V, n->S, n->T, n->H,
              n->features, n->B, n->window, n->E, n->start);
    for (i = 0; i < (size_t)n->S; i++) sb_printf(&b, "%d%c", n->accept[i], i + 1 == (size_t)n->S ? '\n' : ' ');
    for (i = 0; i < (size_t)n->V; i++) sb_printf(&b, "%d%c", n->eos[i], (i + 1) % 64 == 0 || i + 1 == (size_t)n->V ? '\n' : ' ');
    for (i = 0; i < SV; i++) sb_printf(&b, "%d%c", (int)n->next[i], (i + 1) % 32 == 0 || i + 1 == SV ? '\n' : ' ');
    for (i = 0; i < n->P; i++) sb_printf(&b, "%.17g%c", n->theta[i], (i + 1) % 8 == 0 || i + 1 == n->P ? '\n' : ' ');
    if (b.oom) {
        free(b.p);
        return plm_fail(ctx, PLM_ENOMEM, "twist net: out of memory writing '%s'", path);
    }
    sb_printf(&b, "checksum %016llx\n", (unsigned long long)fnv1a(b.p, b.n));
    if (b.oom || !(f = fopen(path, "w"))) {
        free(b.p);
        return b.oom ? plm_fail(ctx, PLM_ENOMEM, "twist net: out of memory") : plm_fail(ctx, PLM_EIO, "twist net: cannot write '%s'", path);
    }
    if (fwrite(b.p, 1, b.n, f) != b.n) {
        fclose(f);
        free(b.p);
        return plm_fail(ctx, PLM_EIO, "twist net: error writing '%s'", path);
    }
    free(b.p);
    if (fclose(f) != 0) return plm_fail(ctx, PLM_EIO, "twist net: error writing '%s'", path);
    return PLM_OK;
}

/* the next integer of the text at *p; 0 when there is none */
static int next_int(char **p, long *x)
{
    char *e;
    *x = strtol(*p, &e, 10);
    if (e == *p) return 0;
    *p = e;
    return 1;
}

plm_status plm_twistnet_load(plm_ctx *ctx, const char *path, plm_twistnet **out)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL, *p, *cs, magic[32];
    long size, x;
    int version, used;
    unsigned long long want;
    plm_twistnet *n = NULL;
    plm_status st;
    size_t i;
    *out = NULL;
    if (!f) return plm_fail(ctx, PLM_EIO, "twist net: cannot open '%s'", path);
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 || !(text = malloc((size_t)size + 1)) ||
        fread(text, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(text);
        return plm_fail(ctx, PLM_EIO, "twist net: cannot read '%s'", path);
    }
    fclose(f);
    text[size] = 0;
    if (sscanf(text, "%31s %d", magic, &version) != 2 || strcmp(magic, "plume-twistnet") != 0) {
        free(text);
        return plm_fail(ctx, PLM_EPARSE, "twist net: '%s' is not a plume twist-net file", path);
    }
    if (version != TWISTNET_FILE_VERSION) {
        free(text);
        return plm_fail(ctx, PLM_EPARSE, "twist net: '%s' is version %d; this plume reads version %d", path, version,
                        TWISTNET_FILE_VERSION);
    }
    /* the checksum line ends the file; it covers every byte before it */
    cs = strstr(text, "\nchecksum ");
    if (!cs || sscanf(cs + 10, "%16llx%n", &want, &used) != 1 || used != 16) {
        free(text);
        return plm_fail(ctx, PLM_EPARSE, "twist net: '%s' has no checksum line (truncated?)", path);
    }
    if (fnv1a(text, (size_t)(cs + 1 - text)) != (uint64_t)want) {
        free(text);
        return plm_fail(ctx, PLM_EPARSE, "twist net: '%s' fails its checksum: the file is corrupted", path);
    }
    *cs = 0;
    if (!(n = calloc(1, sizeof *n))) {
        free(text);
        return plm_fail(ctx, PLM_ENOMEM, "twist net: out of memory");
    }
    p = strchr(text, '\n');
    {
        long h[9];
        for (int k = 0; k < 9; k++)
            if (!p || !next_int(&p, &h[k]) || h[k] < -1 || h[k] > 1000000000L) goto bad;
        n->V = (int)h[0], n->S = (int)h[1], n->T = (int)h[2], n->H = (int)h[3], n->features = (int)h[4];
        n->B = (int)h[5], n->window = (int)h[6], n->E = (int)h[7], n->start = (int)h[8];
    }
    if (!(n->features & PLM_TN_BAG) && (n->B || n->window)) goto bad;
    if ((st = check_shape(ctx, n))) {
        char why[PLM_MSG_MAX];
        const char *msg = plm_ctx_errmsg(ctx);
        snprintf(why, sizeof why, "%s", strncmp(msg, "twist net: ", 11) == 0 ? msg + 11 : msg);
        plm_twistnet_free(n);
        free(text);
        return plm_fail(ctx, PLM_EPARSE, "twist net: '%s': %s", path, why);
    }
    if ((st = alloc_net(ctx, n))) {
        plm_twistnet_free(n);
        free(text);
        return st;
    }
    for (i = 0; i < (size_t)n->S; i++) {
        if (!next_int(&p, &x) || (x != 0 && x != 1)) goto bad;
        n->accept[i] = (unsigned char)x;
    }
    for (i = 0; i < (size_t)n->V; i++) {
        if (!next_int(&p, &x) || (x != 0 && x != 1)) goto bad;
        n->eos[i] = (unsigned char)x;
    }
    for (i = 0; i < (size_t)n->S * n->V; i++) {
        if (!next_int(&p, &x) || x < -1 || x >= n->S) goto bad;
        n->next[i] = (int32_t)x;
    }
    for (i = 0; i < n->P; i++) {
        char *e;
        n->theta[i] = strtod(p, &e);
        if (e == p || !isfinite(n->theta[i])) goto bad;
        p = e;
    }
    while (*p == ' ' || *p == '\n') p++;
    if (*p) goto bad;
    free(text);
    *out = n;
    return PLM_OK;
bad:
    plm_twistnet_free(n);
    free(text);
    return plm_fail(ctx, PLM_EPARSE, "twist net: '%s' is truncated or holds a value out of range", path);
}
