/* lmchain.c -- a language model as a Markov chain on its last-K-token contexts: construction by breadth-first
** search with batched next-token calls, the class structure (Tarjan), the stationary distribution, the
** spectral gap and the mixing time. Rows are stored compressed (CSR): a state has as many successors as
** tokens of positive probability, so memory is O(states x support), never O(states^2) unless a dense method
** is asked for and the chain is small enough for it. */
#include "lmchain.h"

#include "par.h"
#include "u64map.h"

#include <gsl/gsl_complex_math.h>
#include <gsl/gsl_eigen.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 256             /* contexts per next_logprobs call */
#define DEFAULT_MAX 100000

struct plm_lmchain {
    int K, V;
    double T;
    size_t n, cap;            /* states */
    plm_token *tok;           /* n * K tokens, state i at tok + i*K */
    int *len;                 /* tokens in state i (K except for the growing start contexts) */
    size_t *rowp;             /* CSR: row i is succ/prob[rowp[i] .. rowp[i+1]) */
    int32_t *succ;
    double *prob;
    size_t nnz, nnzcap;
    int32_t *slot;            /* open-addressing table of state indices, -1 empty */
    size_t nslot;
    int nclosed, period;
    unsigned char *closed;    /* 1 for the states of the closed class (when there is exactly one) */
    size_t nclass;
    size_t dense_stat, dense_eig;   /* the dense methods up to these many states */
};

/* ---- Construction --------------------------------------------------------------------------------- */

static uint64_t state_hash(const plm_token *t, int len)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
    int i;
    for (i = 0; i < len; i++) h = plm_u64map_hash(h ^ (uint32_t)t[i]);
    return h;
}

static int same_state(const plm_lmchain *c, size_t i, const plm_token *t, int len)
{
    return c->len[i] == len && memcmp(c->tok + i * (size_t)c->K, t, (size_t)len * sizeof *t) == 0;
}

static int rehash(plm_lmchain *c, size_t nslot)
{
    int32_t *s = malloc(nslot * sizeof *s);
    size_t i;
    if (!s) return -1;
    for (i = 0; i < nslot; i++) s[i] = -1;
    for (i = 0; i < c->n; i++) {
        size_t h = (size_t)state_hash(c->tok + i * (size_t)c->K, c->len[i]) & (nslot - 1);
        while (s[h] >= 0) h = (h + 1) & (nslot - 1);
        s[h] = (int32_t)i;
    }
    free(c->slot);
    c->slot = s, c->nslot = nslot;
    return 0;
}

/* The index of state t (len tokens), added when absent. -1: out of memory; -2: over the limit. */
static long find_or_add(plm_lmchain *c, const plm_token *t, int len, size_t max_states)
{
    size_t h = (size_t)state_hash(t, len) & (c->nslot - 1);
    while (c->slot[h] >= 0) {
        if (same_state(c, (size_t)c->slot[h], t, len)) return c->slot[h];
        h = (h + 1) & (c->nslot - 1);
    }
    if (c->n >= max_states) return -2;
    if (c->n == c->cap) {
        size_t cap = c->cap * 2;
        plm_token *tk = realloc(c->tok, cap * (size_t)c->K * sizeof *tk);
        int *ln;
        if (!tk) return -1;
        c->tok = tk;
        if (!(ln = realloc(c->len, cap * sizeof *ln))) return -1;
        c->len = ln, c->cap = cap;
    }
    if (len) memcpy(c->tok + c->n * (size_t)c->K, t, (size_t)len * sizeof *t);   /* the empty context has no tokens */
    c->len[c->n] = len;
    c->slot[h] = (int32_t)c->n;
    c->n++;
    if (2 * c->n > c->nslot && rehash(c, 2 * c->nslot)) return -1;
    return (long)(c->n - 1);
}

static int push_edge(plm_lmchain *c, int32_t to, double p)
{
    if (c->nnz == c->nnzcap) {
        size_t cap = c->nnzcap * 2;
        int32_t *s = realloc(c->succ, cap * sizeof *s);
        double *q;
        if (!s) return -1;
        c->succ = s;
        if (!(q = realloc(c->prob, cap * sizeof *q))) return -1;
        c->prob = q, c->nnzcap = cap;
    }
    c->succ[c->nnz] = to, c->prob[c->nnz] = p;
    c->nnz++;
    return 0;
}

/* The next-token probabilities at temperature T from a normalised log row l (V): into p (V), zero where a
** token cannot follow. Returns the number of tokens with p > 0 (0 when every entry of l is -inf). At T = 0
** the maximal entries share the mass; at T = inf every finite entry gets the same; in between,
** exp((l - max) / T) renormalised, so that tiny T underflows smoothly into the greedy limit. */
static int tempered(const double *l, int V, double T, double *p)
{
    double m = -INFINITY, s = 0;
    int v, k = 0;
    for (v = 0; v < V; v++)
        if (l[v] > m) m = l[v];
    if (!(m > -INFINITY)) return 0;
    for (v = 0; v < V; v++) {
        if (T == 0) p[v] = l[v] == m;
        else if (isinf(T)) p[v] = l[v] > -INFINITY;
        else p[v] = exp((l[v] - m) / T);
        s += p[v];
    }
    for (v = 0; v < V; v++) {
        p[v] /= s;
        k += p[v] > 0;
    }
    return k;
}

static void describe(const plm_lmchain *c, size_t i, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "{");
    int j;
    for (j = 0; j < c->len[i] && len < cap; j++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%d", j ? ", " : "", (int)c->tok[i * (size_t)c->K + j]);
    if (len < cap) snprintf(buf + len, cap - len, "}");
}

static void find_classes(plm_lmchain *c);

plm_status plm_lmchain_new(plm_ctx *ctx, plm_lm *lm, const plm_lmchain_opts *o, plm_lmchain **out)
{
    plm_lmchain *c;
    const int K = o->context, V = lm->n_vocab;
    size_t max_states = o->max_states ? o->max_states : DEFAULT_MAX, done = 0, i, nst;
    plm_token *ctxbuf = NULL, *next = NULL;
    const plm_token *ptrs[BATCH];
    size_t lens[BATCH];
    double *rows = NULL, *p = NULL;
    plm_status st = PLM_OK;
    *out = NULL;
    if (K < 1) return plm_failm(ctx, PLM_EINVAL, "lmchain", "context must be >= 1 (got %d)", K);
    if (lm->max_ctx && (size_t)K + 1 > lm->max_ctx)
        return plm_failm(ctx, PLM_EINVAL, "lmchain", "context %d is longer than the model accepts (%zu tokens)", K,
                         lm->max_ctx - 1);
    if (!(o->temperature >= 0)) return plm_failm(ctx, PLM_EINVAL, "lmchain", "temperature must be >= 0 (got %g)", o->temperature);
    for (i = 0; i < o->nstart; i++)
        if (o->start[i] < 0 || o->start[i] >= V)
            return plm_failm(ctx, PLM_EINVAL, "lmchain", "start token %zu is %d, outside 0..%d", i + 1, (int)o->start[i], V - 1);
    if (!(c = calloc(1, sizeof *c))) return plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
    c->K = K, c->V = V, c->T = o->temperature;
    c->dense_stat = o->dense_limit ? o->dense_limit : PLM_LMCHAIN_DENSE_STATIONARY;
    c->dense_eig = o->dense_limit ? o->dense_limit : PLM_LMCHAIN_DENSE_EIGEN;
    c->cap = 64, c->nnzcap = 256, c->nslot = 128;
    c->tok = malloc(c->cap * (size_t)K * sizeof *c->tok);
    c->len = malloc(c->cap * sizeof *c->len);
    c->succ = malloc(c->nnzcap * sizeof *c->succ);
    c->prob = malloc(c->nnzcap * sizeof *c->prob);
    c->rowp = malloc(sizeof *c->rowp);
    ctxbuf = malloc((size_t)BATCH * K * sizeof *ctxbuf);
    next = malloc(((size_t)K + 1) * sizeof *next);
    rows = malloc((size_t)BATCH * V * sizeof *rows);
    p = malloc((size_t)V * sizeof *p);
    if (!c->tok || !c->len || !c->succ || !c->prob || !c->rowp || !ctxbuf || !next || !rows || !p || rehash(c, c->nslot)) {
        st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
        goto fail;
    }
    c->rowp[0] = 0;
    nst = o->nstart > (size_t)K ? (size_t)K : o->nstart;
    find_or_add(c, o->start + (o->nstart - nst), (int)nst, max_states);
    /* Breadth-first: states are numbered as found and their rows built in that order, so the CSR grows at
    ** its end; a batch's contexts are copied out first because adding states may move c->tok. */
    while (done < c->n) {
        size_t nb = c->n - done < BATCH ? c->n - done : BATCH, b;
        size_t *rp;
        for (b = 0; b < nb; b++) {
            memcpy(ctxbuf + b * K, c->tok + (done + b) * (size_t)K, (size_t)c->len[done + b] * sizeof *ctxbuf);
            ptrs[b] = ctxbuf + b * K, lens[b] = (size_t)c->len[done + b];
        }
        if ((st = plm_lm_next_logprobs(lm, ctx, nb, ptrs, lens, rows))) goto fail;
        if (!(rp = realloc(c->rowp, (done + nb + 1) * sizeof *rp))) {
            st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
            goto fail;
        }
        c->rowp = rp;
        for (b = 0; b < nb; b++) {
            const plm_token *s = ctxbuf + b * K;
            int len = (int)lens[b], nl, v;
            if (!tempered(rows + b * (size_t)V, V, c->T, p)) {
                char d[128];
                describe(c, done + b, d, sizeof d);
                st = plm_failm(ctx, PLM_EDOM, "lmchain", "the model gives every token probability 0 after the context %s", d);
                goto fail;
            }
            /* the successor after token v: the context grows to K tokens, then slides */
            nl = len < K ? len + 1 : K;
            memcpy(next, s + (len - (nl - 1)), (size_t)(nl - 1) * sizeof *next);
            for (v = 0; v < V; v++) {
                long j;
                if (!(p[v] > 0)) continue;
                next[nl - 1] = v;
                if ((j = find_or_add(c, next, nl, max_states)) < 0 || push_edge(c, (int32_t)j, p[v])) {
                    if (j == -2) {
                        double vk = pow((double)V, (double)K);
                        st = plm_failm(ctx, PLM_EDOM, "lmchain",
                                       "more than %zu reachable states (the limit max_states = %zu; context = %d over %d "
                                       "tokens allows up to %.4g): raise max_states or lower context or temperature",
                                       max_states, max_states, K, V, vk);
                    } else
                        st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
                    goto fail;
                }
            }
            c->rowp[done + b + 1] = c->nnz;
        }
        done += nb;
        if (plm_interrupted()) {
            st = plm_failm(ctx, PLM_EINTR, "lmchain", "interrupted");
            goto fail;
        }
    }
    find_classes(c);
    if (c->nclosed < 0 || (c->nclosed == 1 && !c->closed)) {
        st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
        goto fail;
    }
    free(ctxbuf), free(next), free(rows), free(p);
    *out = c;
    return PLM_OK;
fail:
    free(ctxbuf), free(next), free(rows), free(p);
    plm_lmchain_free(c);
    return st;
}

void plm_lmchain_free(plm_lmchain *c)
{
    if (!c) return;
    free(c->tok), free(c->len), free(c->rowp), free(c->succ), free(c->prob), free(c->slot), free(c->closed);
    free(c);
}

size_t plm_lmchain_n_states(const plm_lmchain *c) { return c->n; }
size_t plm_lmchain_nnz(const plm_lmchain *c) { return c->nnz; }
int plm_lmchain_closed_classes(const plm_lmchain *c) { return c->nclosed; }
int plm_lmchain_period(const plm_lmchain *c) { return c->period; }

const plm_token *plm_lmchain_state(const plm_lmchain *c, size_t i, size_t *len)
{
    *len = (size_t)c->len[i];
    return c->tok + i * (size_t)c->K;
}

void plm_lmchain_row(const plm_lmchain *c, size_t i, const int32_t **succ, const double **prob, size_t *n)
{
    *succ = c->succ + c->rowp[i], *prob = c->prob + c->rowp[i];
    *n = c->rowp[i + 1] - c->rowp[i];
}

/* ---- Structure ------------------------------------------------------------------------------------ */

static size_t gcd(size_t a, size_t b)
{
    while (b) {
        size_t r = a % b;
        a = b, b = r;
    }
    return a;
}

/* Tarjan's strongly connected components without recursion (a chain of 10^5 states would overflow the C
** stack), then the closed classes; for a single closed class, its period: the gcd over its edges u -> v of
** level(u) + 1 - level(v) for breadth-first levels from one of its states. On allocation failure the
** structure is left unknown (closed = NULL) and plm_lmchain_new reports it. */
static void find_classes(plm_lmchain *c)
{
    const size_t n = c->n;
    long *index = malloc(n * sizeof *index), *low = malloc(n * sizeof *low), *comp = malloc(n * sizeof *comp);
    size_t *stack = malloc(n * sizeof *stack), *call = malloc(n * sizeof *call), *edge = malloc(n * sizeof *edge);
    unsigned char *on = calloc(n, 1), *open = NULL;
    long next = 0, ncomp = 0, closed_comp = -1;
    size_t sp = 0, cp, r, i;
    c->nclosed = -1, c->period = 0;   /* -1: unknown (out of memory) */
    if (!index || !low || !comp || !stack || !call || !edge || !on) goto done;
    for (i = 0; i < n; i++) index[i] = -1;
    for (r = 0; r < n; r++) {
        if (index[r] >= 0) continue;
        cp = 0;
        call[cp++] = r, edge[r] = c->rowp[r];
        index[r] = low[r] = next++, stack[sp++] = r, on[r] = 1;
        while (cp) {
            size_t u = call[cp - 1];
            if (edge[u] < c->rowp[u + 1]) {
                size_t v = (size_t)c->succ[edge[u]++];
                if (index[v] < 0) {
                    index[v] = low[v] = next++, stack[sp++] = v, on[v] = 1;
                    edge[v] = c->rowp[v];
                    call[cp++] = v;
                } else if (on[v] && index[v] < low[u])
                    low[u] = index[v];
                continue;
            }
            if (low[u] == index[u]) {
                size_t w;
                do {
                    w = stack[--sp];
                    on[w] = 0, comp[w] = ncomp;
                } while (w != u);
                ncomp++;
            }
            cp--;
            if (cp && low[u] < low[call[cp - 1]]) low[call[cp - 1]] = low[u];
        }
    }
    /* a class is closed when no edge leaves it */
    if (!(open = calloc((size_t)ncomp, 1))) goto done;
    c->nclosed = 0;
    for (i = 0; i < n; i++)
        for (size_t e = c->rowp[i]; e < c->rowp[i + 1]; e++)
            if (comp[c->succ[e]] != comp[i]) open[comp[i]] = 1;
    for (long k = 0; k < ncomp; k++)
        if (!open[k]) c->nclosed++, closed_comp = k;
    if (c->nclosed == 1 && (c->closed = calloc(n, 1))) {
        size_t root = 0, head = 0, tail = 0, g = 0;
        long *level = index;   /* reused */
        for (i = 0; i < n; i++) {
            level[i] = -1;
            if (comp[i] == closed_comp) c->closed[i] = 1, c->nclass++, root = i;
        }
        level[root] = 0, stack[tail++] = root;
        while (head < tail) {
            size_t u = stack[head++];
            for (size_t e = c->rowp[u]; e < c->rowp[u + 1]; e++) {
                size_t v = (size_t)c->succ[e];
                if (level[v] < 0) level[v] = level[u] + 1, stack[tail++] = v;
                else g = gcd(g, (size_t)labs(level[u] + 1 - level[v]));
            }
        }
        c->period = g ? (int)g : 1;
    }
done:
    free(index), free(low), free(comp), free(stack), free(call), free(edge), free(on), free(open);
}

/* ---- Stationary distribution ------------------------------------------------------------------------ */

/* y = x P over all states (y zeroed here). */
static void step(const plm_lmchain *c, const double *restrict x, double *restrict y)
{
    size_t i, e;
    memset(y, 0, c->n * sizeof *y);
    for (i = 0; i < c->n; i++) {
        const double xi = x[i];
        if (xi == 0) continue;
        for (e = c->rowp[i]; e < c->rowp[i + 1]; e++) y[c->succ[e]] += xi * c->prob[e];
    }
}

static plm_status dense_stationary(plm_ctx *ctx, const plm_lmchain *c, double *pi)
{
    const size_t m = c->nclass;
    long *at = malloc(c->n * sizeof *at);
    size_t *who = malloc(m * sizeof *who), i, k = 0;
    gsl_matrix *A = gsl_matrix_calloc(m, m);
    gsl_permutation *perm = gsl_permutation_alloc(m);
    gsl_vector *b = gsl_vector_calloc(m), *x = gsl_vector_alloc(m);
    plm_status st = PLM_OK;
    int sign;
    if (!at || !who || !A || !perm || !b || !x) {
        st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
        goto done;
    }
    for (i = 0; i < c->n; i++) {
        at[i] = c->closed[i] ? (long)k : -1;
        if (c->closed[i]) who[k++] = i;
    }
    /* (P_C - I)^T pi = 0, with the last equation replaced by sum(pi) = 1 */
    for (k = 0; k < m; k++) {
        size_t u = who[k];
        *gsl_matrix_ptr(A, k, k) -= 1;
        for (size_t e = c->rowp[u]; e < c->rowp[u + 1]; e++) *gsl_matrix_ptr(A, (size_t)at[c->succ[e]], k) += c->prob[e];
    }
    for (k = 0; k < m; k++) gsl_matrix_set(A, m - 1, k, 1);
    gsl_vector_set(b, m - 1, 1);
    if (gsl_linalg_LU_decomp(A, perm, &sign) || gsl_linalg_LU_solve(A, perm, b, x)) {
        st = plm_failm(ctx, PLM_ERUNTIME, "lmchain", "the stationary equations are singular");
        goto done;
    }
    memset(pi, 0, c->n * sizeof *pi);
    {
        double s = 0;
        for (k = 0; k < m; k++) s += (pi[who[k]] = fmax(gsl_vector_get(x, k), 0));   /* rounding: -1e-17 */
        for (k = 0; k < m; k++) pi[who[k]] /= s;
    }
done:
    free(at), free(who);
    if (A) gsl_matrix_free(A);
    if (perm) gsl_permutation_free(perm);
    if (b) gsl_vector_free(b);
    if (x) gsl_vector_free(x);
    return st;
}

/* Power iteration on the lazy chain (P + I) / 2: the same stationary distribution, and aperiodic. */
static plm_status power_stationary(plm_ctx *ctx, const plm_lmchain *c, double *pi)
{
    double *y = malloc(c->n * sizeof *y);
    size_t i, it;
    if (!y) return plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
    for (i = 0; i < c->n; i++) pi[i] = c->closed[i] ? 1.0 / (double)c->nclass : 0;
    for (it = 0; it < 1000000; it++) {
        double d = 0;
        step(c, pi, y);
        for (i = 0; i < c->n; i++) {
            double v = 0.5 * (pi[i] + y[i]);
            d += fabs(v - pi[i]);
            pi[i] = v;
        }
        if (d < 1e-13) break;
        if ((it & 255) == 0 && plm_interrupted()) {
            free(y);
            return plm_failm(ctx, PLM_EINTR, "lmchain", "interrupted");
        }
    }
    free(y);
    if (it == 1000000)
        return plm_failm(ctx, PLM_ERUNTIME, "lmchain", "power iteration for the stationary distribution did not converge "
                                                      "in 10^6 steps (%zu states)", c->nclass);
    return PLM_OK;
}

plm_status plm_lmchain_stationary(plm_ctx *ctx, const plm_lmchain *c, double *pi)
{
    if (c->nclosed != 1)
        return plm_failm(ctx, PLM_EDOM, "lmchain", "the stationary distribution is not unique: the chain has %d closed "
                                                  "classes of states", c->nclosed);
    return c->nclass <= c->dense_stat ? dense_stationary(ctx, c, pi) : power_stationary(ctx, c, pi);
}

/* ---- Spectral gap --------------------------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static plm_status dense_lambda2(plm_ctx *ctx, const plm_lmchain *c, double *lambda2)
{
    const size_t n = c->n;
    gsl_matrix *P = gsl_matrix_calloc(n, n);
    gsl_vector_complex *ev = gsl_vector_complex_alloc(n);
    gsl_eigen_nonsymm_workspace *w = gsl_eigen_nonsymm_alloc(n);
    double *mod = malloc(n * sizeof *mod);
    plm_status st = PLM_OK;
    size_t i;
    if (!P || !ev || !w || !mod) {
        st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
        goto done;
    }
    for (i = 0; i < n; i++)
        for (size_t e = c->rowp[i]; e < c->rowp[i + 1]; e++) gsl_matrix_set(P, i, (size_t)c->succ[e], c->prob[e]);
    if (gsl_eigen_nonsymm(P, ev, w)) {
        st = plm_failm(ctx, PLM_ERUNTIME, "lmchain", "the eigenvalue iteration did not converge (%zu states)", n);
        goto done;
    }
    for (i = 0; i < n; i++) mod[i] = gsl_complex_abs(gsl_vector_complex_get(ev, i));
    qsort(mod, n, sizeof *mod, cmp_desc);
    *lambda2 = n > 1 ? fmin(mod[1], 1) : 0;   /* mod[0] is the eigenvalue 1 */
done:
    if (P) gsl_matrix_free(P);
    if (ev) gsl_vector_complex_free(ev);
    if (w) gsl_eigen_nonsymm_free(w);
    free(mod);
    return st;
}

/* |lambda_2| by restarted Arnoldi on row vectors summing to zero (an invariant subspace of x -> x P that
** excludes the eigenvalue 1 of pi; rounding drift is removed by subtracting sum(x) pi): M steps build an
** orthonormal Krylov basis and the Hessenberg matrix H of the operator on it, whose eigenvalue of largest
** modulus (GSL's solver on M x M) estimates lambda_2; the next cycle starts from the last Krylov vector, so
** the cycles are a power iteration that the Ritz values accelerate. Stops when the estimate changes by less
** than 1e-12 between cycles, or after 1000 cycles (the last estimate is returned). */
static plm_status arnoldi_lambda2(plm_ctx *ctx, const plm_lmchain *c, double *lambda2)
{
    enum { M = 20, CYCLES = 1000 };
    const size_t n = c->n;
    double *pi = malloc(n * sizeof *pi), *Q = malloc((M + 1) * n * sizeof *Q), prev = -1;
    gsl_matrix *H = gsl_matrix_alloc(M, M);
    gsl_vector_complex *ev = gsl_vector_complex_alloc(M);
    gsl_eigen_nonsymm_workspace *ws = gsl_eigen_nonsymm_alloc(M);
    plm_status st;
    plm_rng r;
    size_t i, cyc;
    int j, k, m;
    if (!pi || !Q || !H || !ev || !ws) {
        st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
        goto done;
    }
    if ((st = plm_lmchain_stationary(ctx, c, pi))) goto done;
    plm_rng_init(&r, 20240601, 0);
    for (i = 0; i < n; i++) Q[i] = plm_rng_normal(&r);
    *lambda2 = 0;
    for (cyc = 0; cyc < CYCLES; cyc++) {
        double best = 0, *q0 = Q, s = 0, nrm = 0;
        for (i = 0; i < n; i++) s += q0[i];
        for (i = 0; i < n; i++) q0[i] -= s * pi[i], nrm += q0[i] * q0[i];
        nrm = sqrt(nrm);
        if (!(nrm > 1e-300)) break;   /* nothing left outside pi: every other eigenvalue is 0 */
        for (i = 0; i < n; i++) q0[i] /= nrm;
        gsl_matrix_set_zero(H);
        for (m = 0; m < M; m++) {
            double *w = Q + (size_t)(m + 1) * n, h;
            step(c, Q + (size_t)m * n, w);
            for (s = 0, i = 0; i < n; i++) s += w[i];
            for (i = 0; i < n; i++) w[i] -= s * pi[i];
            for (k = 0; k <= m; k++) {   /* modified Gram-Schmidt, twice for orthogonality */
                for (j = 0; j < 2; j++) {
                    const double *qk = Q + (size_t)k * n;
                    double d = 0;
                    for (i = 0; i < n; i++) d += w[i] * qk[i];
                    for (i = 0; i < n; i++) w[i] -= d * qk[i];
                    *gsl_matrix_ptr(H, (size_t)k, (size_t)m) += d;
                }
            }
            for (h = 0, i = 0; i < n; i++) h += w[i] * w[i];
            h = sqrt(h);
            if (m + 1 < M) gsl_matrix_set(H, (size_t)m + 1, (size_t)m, h);
            if (!(h > 1e-14)) {   /* the Krylov space is invariant: its Ritz values are exact */
                m++;
                break;
            }
            for (i = 0; i < n; i++) w[i] /= h;
        }
        {
            gsl_matrix_view Hm = gsl_matrix_submatrix(H, 0, 0, (size_t)(m < M ? m : M), (size_t)(m < M ? m : M));
            gsl_eigen_nonsymm_workspace *w2 = m < M ? gsl_eigen_nonsymm_alloc((size_t)m) : ws;
            gsl_vector_complex_view e2 = gsl_vector_complex_subvector(ev, 0, (size_t)(m < M ? m : M));
            int bad = !w2 || gsl_eigen_nonsymm(&Hm.matrix, &e2.vector, w2);
            if (w2 && w2 != ws) gsl_eigen_nonsymm_free(w2);
            if (bad) {
                st = plm_failm(ctx, PLM_ERUNTIME, "lmchain", "the Arnoldi eigenvalue problem did not converge");
                goto done;
            }
            for (k = 0; k < (m < M ? m : M); k++) best = fmax(best, gsl_complex_abs(gsl_vector_complex_get(&e2.vector, k)));
        }
        *lambda2 = fmin(best, 1);
        if (m < M || fabs(*lambda2 - prev) < 1e-12) break;
        prev = *lambda2;
        memmove(Q, Q + (size_t)M * n, n * sizeof *Q);   /* restart from the last Krylov vector */
        if (plm_interrupted()) {
            st = plm_failm(ctx, PLM_EINTR, "lmchain", "interrupted");
            goto done;
        }
    }
done:
    free(pi), free(Q);
    if (H) gsl_matrix_free(H);
    if (ev) gsl_vector_complex_free(ev);
    if (ws) gsl_eigen_nonsymm_free(ws);
    return st;
}

plm_status plm_lmchain_spectral_gap(plm_ctx *ctx, const plm_lmchain *c, double *gap, double *lambda2)
{
    double l2 = 1;
    plm_status st = PLM_OK;
    if (c->nclosed == 1 && c->period == 1)
        st = c->n <= c->dense_eig ? dense_lambda2(ctx, c, &l2) : arnoldi_lambda2(ctx, c, &l2);
    if (st) return st;
    *gap = 1 - l2;
    if (lambda2) *lambda2 = l2;
    return PLM_OK;
}

/* ---- Mixing time ---------------------------------------------------------------------------------- */

typedef struct mixjob {
    const plm_lmchain *c;
    const double *pi;
    double eps;
    size_t max_steps, first;   /* starts first .. first + count - 1 */
    size_t *t;                 /* per start: steps to mix, or (size_t)-1 */
    double *dist;              /* per start: TV reached (for the message when it did not mix) */
    int oom, intr;
} mixjob;

static void mix_chunk(void *arg, size_t begin, size_t end, int worker)
{
    mixjob *j = arg;
    const plm_lmchain *c = j->c;
    const size_t n = c->n;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    size_t s;
    (void)worker;
    if (!x || !y) {
        j->oom = 1;
        free(x), free(y);
        return;
    }
    for (s = begin; s < end && !j->intr; s++) {
        size_t t = 0, i;
        memset(x, 0, n * sizeof *x);
        x[j->first + s] = 1;
        for (;;) {
            double tv = 0, *sw;
            for (i = 0; i < n; i++) tv += fabs(x[i] - j->pi[i]);
            tv *= 0.5;
            j->dist[s] = tv;
            if (tv <= j->eps) {
                j->t[s] = t;
                break;
            }
            if (t == j->max_steps) {
                j->t[s] = (size_t)-1;
                break;
            }
            step(c, x, y);
            sw = x, x = y, y = sw;
            t++;
            if ((t & 15) == 0 && plm_interrupted()) {
                j->intr = 1;
                break;
            }
        }
    }
    free(x), free(y);
}

plm_status plm_lmchain_mixing_time(plm_ctx *ctx, const plm_lmchain *c, double eps, long from, size_t max_steps,
                                   int threads, size_t *t)
{
    mixjob j;
    size_t count = from < 0 ? c->n : 1, s;
    double *pi;
    plm_status st;
    if (!(eps > 0 && eps < 1)) return plm_failm(ctx, PLM_EINVAL, "lmchain", "eps must be in (0, 1) (got %g)", eps);
    if (from >= 0 && (size_t)from >= c->n)
        return plm_failm(ctx, PLM_EINVAL, "lmchain", "from must be a state 1..%zu (got %ld)", c->n, from + 1);
    if (c->nclosed != 1)
        return plm_failm(ctx, PLM_EDOM, "lmchain", "the chain never mixes: it has %d closed classes of states", c->nclosed);
    if (c->period > 1)
        return plm_failm(ctx, PLM_EDOM, "lmchain", "the chain never mixes: its closed class is periodic (period %d)", c->period);
    if (!(pi = malloc(c->n * sizeof *pi))) return plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
    if ((st = plm_lmchain_stationary(ctx, c, pi))) {
        free(pi);
        return st;
    }
    memset(&j, 0, sizeof j);
    j.c = c, j.pi = pi, j.eps = eps, j.max_steps = max_steps, j.first = from < 0 ? 0 : (size_t)from;
    j.t = malloc(count * sizeof *j.t), j.dist = malloc(count * sizeof *j.dist);
    if (!j.t || !j.dist) st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
    else {
        plm_parallel_for(threads, count, 1, mix_chunk, &j);
        if (j.intr) st = plm_failm(ctx, PLM_EINTR, "lmchain", "interrupted");
        else if (j.oom) st = plm_failm(ctx, PLM_ENOMEM, "lmchain", "out of memory");
        else {
            *t = 0;
            for (s = 0; s < count && !st; s++) {
                if (j.t[s] == (size_t)-1)
                    st = plm_failm(ctx, PLM_ERUNTIME, "lmchain", "not mixed after max_steps = %zu steps: the distance "
                                   "from state %zu is still %.3g > eps = %g", max_steps, j.first + s + 1, j.dist[s], eps);
                else if (j.t[s] > *t)
                    *t = j.t[s];
            }
        }
    }
    free(pi), free(j.t), free(j.dist);
    return st;
}

/* ---- Sampling ----------------------------------------------------------------------------------- */

plm_status plm_lmchain_sample(plm_ctx *ctx, const plm_lmchain *c, plm_rng *r, size_t from, size_t n, int32_t *states)
{
    size_t s = from, i;
    if (from >= c->n) return plm_failm(ctx, PLM_EINVAL, "lmchain", "from must be a state 1..%zu (got %zu)", c->n, from + 1);
    for (i = 0; i < n; i++) {
        size_t e = c->rowp[s], last = c->rowp[s + 1] - 1;
        double u = plm_rng_uniform(r), acc = 0;
        /* rounding may leave the cumulative sum just under 1: the last successor takes the rest */
        for (; e < last; e++) {
            acc += c->prob[e];
            if (u < acc) break;
        }
        s = (size_t)c->succ[e];
        states[i] = (int32_t)s;
        if ((i & 65535) == 65535 && plm_interrupted()) return plm_failm(ctx, PLM_EINTR, "lmchain", "interrupted");
    }
    return PLM_OK;
}
