/* markov_mix.c -- mixtures of Markov chains and MDPs from short trajectories (see markov_mix.h).
** Contexts: c = s*A + a, the thing a next-state distribution is conditioned on. */
#include "markov_mix.h"

#include <gsl/gsl_eigen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

void plm_mm_defaults(plm_mm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->K = 2;
    o->iters = 20;
    o->tol = 1e-8;
    o->smooth = 0.1;
    o->init = PLM_MM_SPECTRAL;
    o->restarts = 1;
    o->seed = 1;
}

void plm_markov_mix_free(plm_mm_fit *f)
{
    if (!f) return;
    free(f->P), free(f->w), free(f->resp), free(f->labels), free(f->cluster);
    memset(f, 0, sizeof *f);
}

/* One transition of a trajectory: its context, the next state, and which half of the context's visits in
** this trajectory it belongs to (visits alternate, so each half is an independent sample of the row). */
typedef struct step {
    int c, next, half;
} step;

static int cmp_step(const void *x, const void *y)
{
    const step *a = x, *b = y;
    return (a->c > b->c) - (a->c < b->c);
}

/* Per trajectory: its steps sorted by context (mergesort keeps time order within a context). */
typedef struct traj {
    step *st;
    size_t n;
} traj;

static void sort_steps(step *st, size_t n, step *tmp)
{
    /* stable bottom-up merge sort on the context */
    size_t width, i;
    for (width = 1; width < n; width *= 2) {
        for (i = 0; i < n; i += 2 * width) {
            size_t lo = i, mid = i + width < n ? i + width : n, hi = i + 2 * width < n ? i + 2 * width : n;
            size_t p = lo, q = mid, k = lo;
            while (p < mid && q < hi) tmp[k++] = st[q].c < st[p].c ? st[q++] : st[p++];
            while (p < mid) tmp[k++] = st[p++];
            while (q < hi) tmp[k++] = st[q++];
        }
        memcpy(st, tmp, n * sizeof *st);
    }
    (void)cmp_step;
}

static double lse(const double *v, int n)
{
    double m = -INFINITY, s = 0;
    int i;
    for (i = 0; i < n; i++)
        if (v[i] > m) m = v[i];
    if (m == -INFINITY) return m;
    for (i = 0; i < n; i++) s += exp(v[i] - m);
    return m + log(s);
}

/* ---- EM ---- */

/* E-step: resp (N*K) from log P and w; returns the log-likelihood. */
static double estep(const traj *tr, size_t N, int K, int C, int S, const double *logP, const double *w, double *resp)
{
    double ll = 0, v[64], *vv = K <= 64 ? v : malloc((size_t)K * sizeof *vv);
    size_t n, i;
    int k;
    for (n = 0; n < N; n++) {
        double z;
        for (k = 0; k < K; k++) {
            const double *lp = logP + (size_t)k * C * S;
            double l = log(w[k]);
            for (i = 0; i < tr[n].n; i++) l += lp[(size_t)tr[n].st[i].c * S + tr[n].st[i].next];
            vv[k] = l;
        }
        z = lse(vv, K);
        ll += z;
        for (k = 0; k < K; k++) resp[n * K + k] = exp(vv[k] - z);
    }
    if (vv != v) free(vv);
    return ll;
}

/* M-step: P (K*C*S) and w from resp. */
static void mstep(const traj *tr, size_t N, int K, int C, int S, double smooth, const double *resp, double *P,
                  double *logP, double *w)
{
    size_t n, i, r;
    int k;
    for (r = 0; r < (size_t)K * C * S; r++) P[r] = smooth;
    for (k = 0; k < K; k++) w[k] = 0;
    for (n = 0; n < N; n++)
        for (k = 0; k < K; k++) {
            double g = resp[n * K + k];
            double *pk = P + (size_t)k * C * S;
            w[k] += g;
            if (g == 0) continue;
            for (i = 0; i < tr[n].n; i++) pk[(size_t)tr[n].st[i].c * S + tr[n].st[i].next] += g;
        }
    for (r = 0; r < (size_t)K * C; r++) {
        double *row = P + r * S, z = 0;
        int j;
        for (j = 0; j < S; j++) z += row[j];
        for (j = 0; j < S; j++) {
            row[j] = z > 0 ? row[j] / z : 1.0 / S;
            logP[r * S + j] = log(row[j]);
        }
    }
    for (k = 0; k < K; k++) w[k] = (w[k] + 1e-12) / ((double)N + K * 1e-12);
}

/* ---- spectral clustering ---- */

/* Top r eigenvectors (largest algebraic eigenvalues) of the symmetric n x n matrix B by subspace iteration on
** B + sigma I; V is n*r row-major, lam r. */
static int top_eigvecs(const double *B, size_t n, int r, uint64_t seed, double *V, double *lam)
{
    double sigma = 0, *W = malloc(n * (size_t)r * sizeof *W);
    size_t i, j;
    int it, a, b;
    plm_rng g;
    if (!W) return -1;
    for (i = 0; i < n * n; i++) sigma += B[i] * B[i];
    sigma = sqrt(sigma);
    plm_rng_init(&g, seed, 99);
    for (i = 0; i < n * (size_t)r; i++) V[i] = plm_rng_uniform(&g) - 0.5;
    for (it = 0; it < 500; it++) {
        /* W = (B + sigma I) V */
        for (i = 0; i < n; i++)
            for (a = 0; a < r; a++) {
                double s = sigma * V[i * r + a];
                const double *bi = B + i * n;
                for (j = 0; j < n; j++) s += bi[j] * V[j * r + a];
                W[i * r + a] = s;
            }
        /* Gram-Schmidt */
        for (a = 0; a < r; a++) {
            double nrm = 0;
            for (b = 0; b < a; b++) {
                double d = 0;
                for (i = 0; i < n; i++) d += W[i * r + a] * W[i * r + b];
                for (i = 0; i < n; i++) W[i * r + a] -= d * W[i * r + b];
            }
            for (i = 0; i < n; i++) nrm += W[i * r + a] * W[i * r + a];
            nrm = sqrt(nrm);
            if (nrm == 0) nrm = 1;
            for (i = 0; i < n; i++) W[i * r + a] /= nrm;
        }
        {   /* converged when the basis stops moving (Gram-Schmidt keeps signs, so a plain difference works) */
            double ch = 0;
            for (i = 0; i < n * (size_t)r; i++) ch = fmax(ch, fabs(W[i] - V[i]));
            memcpy(V, W, n * (size_t)r * sizeof *V);
            if (ch < 1e-9) break;
        }
        if (it % 64 == 0 && plm_interrupted()) {
            free(W);
            return 1;
        }
    }
    for (a = 0; a < r; a++) {   /* Rayleigh quotients */
        double q = 0;
        for (i = 0; i < n; i++) {
            double s = 0;
            for (j = 0; j < n; j++) s += B[i * n + j] * V[j * r + a];
            q += V[i * r + a] * s;
        }
        lam[a] = q;
    }
    free(W);
    return 0;
}

/* k-means on n points of dimension r (k-means++ seeding, `tries` restarts, lowest within-cluster sum kept). */
static void kmeans(const double *X, size_t n, int r, int K, uint64_t seed, int *lab)
{
    double *cen = malloc((size_t)K * r * sizeof *cen), *d2 = malloc(n * sizeof *d2), best = INFINITY;
    int *cur = malloc(n * sizeof *cur), tries, k, a;
    size_t i;
    plm_rng g;
    if (!cen || !d2 || !cur) {
        for (i = 0; i < n; i++) lab[i] = 0;
        free(cen), free(d2), free(cur);
        return;
    }
    plm_rng_init(&g, seed, 7);
    for (tries = 0; tries < 10; tries++) {
        double sse = 0;
        int iter;
        /* k-means++ */
        size_t first = (size_t)plm_rng_uint(&g, n);
        memcpy(cen, X + first * r, (size_t)r * sizeof *cen);
        for (k = 1; k < K; k++) {
            double tot = 0, u;
            for (i = 0; i < n; i++) {
                double m = INFINITY;
                int j;
                for (j = 0; j < k; j++) {
                    double s = 0;
                    for (a = 0; a < r; a++) s += (X[i * r + a] - cen[j * r + a]) * (X[i * r + a] - cen[j * r + a]);
                    if (s < m) m = s;
                }
                d2[i] = m;
                tot += m;
            }
            u = plm_rng_uniform(&g) * tot;
            for (i = 0; i + 1 < n && (u -= d2[i]) > 0; i++) {}
            memcpy(cen + (size_t)k * r, X + i * r, (size_t)r * sizeof *cen);
        }
        for (iter = 0; iter < 100; iter++) {
            int changed = 0;
            sse = 0;
            for (i = 0; i < n; i++) {
                double m = INFINITY;
                int arg = 0;
                for (k = 0; k < K; k++) {
                    double s = 0;
                    for (a = 0; a < r; a++) s += (X[i * r + a] - cen[k * r + a]) * (X[i * r + a] - cen[k * r + a]);
                    if (s < m) m = s, arg = k;
                }
                if (iter == 0 || cur[i] != arg) changed = 1;
                cur[i] = arg;
                sse += m;
            }
            if (!changed) break;
            for (k = 0; k < K; k++) {
                size_t cnt = 0;
                for (a = 0; a < r; a++) cen[k * r + a] = 0;
                for (i = 0; i < n; i++)
                    if (cur[i] == k) {
                        cnt++;
                        for (a = 0; a < r; a++) cen[k * r + a] += X[i * r + a];
                    }
                for (a = 0; a < r && cnt; a++) cen[k * r + a] /= (double)cnt;
            }
        }
        if (sse < best) {
            best = sse;
            memcpy(lab, cur, n * sizeof *lab);
        }
    }
    free(cen), free(d2), free(cur);
}

/* Subspace estimation and clustering: labels lab[N] in 0..K-1. */
static plm_status spectral(plm_ctx *ctx, const traj *tr, size_t N, int K, int C, int S, uint64_t seed, int *lab)
{
    const int r = K < S ? K : S, re = K > 1 ? K - 1 : 1;
    double *M = calloc((size_t)C * S * S, sizeof *M);
    double *Vc = malloc((size_t)C * S * r * sizeof *Vc);
    /* projections: per trajectory, per context group with both halves: r values for each half */
    size_t *gstart = malloc((N + 1) * sizeof *gstart), ngroups = 0, n, i, m;
    int *gctx = NULL;
    double *q = NULL, *D = NULL, *E = NULL, *lam = NULL, *pbar = NULL;
    double u0[512];
    gsl_eigen_symmv_workspace *ws = gsl_eigen_symmv_alloc((size_t)S);
    gsl_matrix *A = gsl_matrix_alloc((size_t)S, (size_t)S), *evec = gsl_matrix_alloc((size_t)S, (size_t)S);
    gsl_vector *eval = gsl_vector_alloc((size_t)S);
    plm_status st = PLM_OK;
    int c, j, a;
    if (!M || !Vc || !gstart || !ws || !A || !evec || !eval || S > 512) {
        st = S > 512 ? plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: spectral initialisation supports up to 512 states "
                                "(got %d); use init = \"random\"", S)
                     : plm_fail(ctx, PLM_ENOMEM, "markov.mixture_fit: out of memory");
        goto done;
    }
    /* (1) M_c = sum over trajectories of (counts in half 0)(counts in half 1)^T: its expectation is a weighted
    ** sum of p_k(.|c) p_k(.|c)^T, whose top-r eigenvectors span the K rows. */
    for (n = 0; n < N; n++) {
        const step *s = tr[n].st;
        for (i = 0; i < tr[n].n;) {
            size_t e = i, x, y;
            while (e < tr[n].n && s[e].c == s[i].c) e++;
            for (x = i; x < e; x++)
                for (y = i; y < e; y++)
                    if (s[x].half == 0 && s[y].half == 1) M[((size_t)s[i].c * S + s[x].next) * S + s[y].next] += 1;
            i = e;
        }
        if (n % 1024 == 0 && plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "markov.mixture_fit: interrupted");
            goto done;
        }
    }
    for (c = 0; c < C; c++) {
        const double *Mc = M + (size_t)c * S * S;
        for (i = 0; i < (size_t)S; i++)
            for (j = 0; j < S; j++) gsl_matrix_set(A, i, (size_t)j, 0.5 * (Mc[i * S + j] + Mc[(size_t)j * S + i]));
        gsl_eigen_symmv(A, eval, evec, ws);
        gsl_eigen_symmv_sort(eval, evec, GSL_EIGEN_SORT_VAL_DESC);
        for (i = 0; i < (size_t)S; i++)
            for (a = 0; a < r; a++) Vc[((size_t)c * S + i) * r + a] = gsl_matrix_get(evec, i, (size_t)a);
    }
    /* (2) each trajectory's visits of a context, centred at the pooled row of that context and projected on
    ** its subspace: u = V_c^T sum over visits (e_next - pbar_c). Different trajectories are independent, so
    ** <u_m, u_n> is an unbiased estimate of n_m n_n <V^T(p_m - pbar), V^T(p_n - pbar)>: positive within a
    ** component, negative across. One visit per trajectory is enough, where a distance estimator needs two. */
    pbar = calloc((size_t)C * S, sizeof *pbar);
    if (!pbar) {
        st = plm_fail(ctx, PLM_ENOMEM, "markov.mixture_fit: out of memory");
        goto done;
    }
    for (n = 0; n < N; n++)
        for (i = 0; i < tr[n].n; i++) pbar[(size_t)tr[n].st[i].c * S + tr[n].st[i].next] += 1;
    for (c = 0; c < C; c++) {
        double z = 0;
        for (j = 0; j < S; j++) z += pbar[(size_t)c * S + j];
        for (j = 0; j < S && z > 0; j++) pbar[(size_t)c * S + j] /= z;
    }
    for (n = 0; n < N; n++) {
        const step *s = tr[n].st;
        gstart[n] = ngroups;
        for (i = 0; i < tr[n].n;) {
            size_t e = i;
            while (e < tr[n].n && s[e].c == s[i].c) e++;
            ngroups++;
            i = e;
        }
    }
    gstart[N] = ngroups;
    gctx = malloc((ngroups ? ngroups : 1) * sizeof *gctx);
    q = malloc((ngroups ? ngroups : 1) * (size_t)r * sizeof *q);
    D = malloc(N * N * sizeof *D);
    E = malloc(N * (size_t)re * sizeof *E);
    lam = malloc((size_t)re * sizeof *lam);
    if (!gctx || !q || !D || !E || !lam) {
        st = plm_fail(ctx, PLM_ENOMEM, "markov.mixture_fit: out of memory (N=%zu trajectories)", N);
        goto done;
    }
    for (n = 0; n < N; n++) {
        const step *s = tr[n].st;
        size_t g = gstart[n];
        for (i = 0; i < tr[n].n; g++) {
            size_t e = i, x;
            int cc = s[i].c;
            const double *v = Vc + (size_t)cc * S * r, *pb = pbar + (size_t)cc * S;
            while (e < tr[n].n && s[e].c == cc) e++;
            for (j = 0; j < S; j++) u0[j] = -(double)(e - i) * pb[j];
            for (x = i; x < e; x++) u0[s[x].next] += 1;
            gctx[g] = cc;
            for (a = 0; a < r; a++) {
                double p0 = 0;
                for (j = 0; j < S; j++) p0 += v[(size_t)j * r + a] * u0[j];
                q[g * r + a] = p0;
            }
            i = e;
        }
    }
    /* (3) the similarity matrix of those estimates over shared contexts (diagonal left out: a trajectory with
    ** itself is not independent), double-centred */
    for (n = 0; n < N; n++) {
        D[n * N + n] = 0;
        for (m = n + 1; m < N; m++) {
            size_t x = gstart[n], y = gstart[m];
            double d = 0;
            while (x < gstart[n + 1] && y < gstart[m + 1]) {
                if (gctx[x] < gctx[y]) x++;
                else if (gctx[x] > gctx[y]) y++;
                else {
                    for (a = 0; a < r; a++) d += q[x * r + a] * q[y * r + a];
                    x++, y++;
                }
            }
            D[n * N + m] = D[m * N + n] = d;
        }
        if (n % 256 == 0 && plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "markov.mixture_fit: interrupted");
            goto done;
        }
    }
    /* (4) spectral embedding (top eigenvectors of the centred similarity) and k-means in it */
    {
        double *rowm = calloc(N, sizeof *rowm), all = 0;
        if (!rowm) {
            st = plm_fail(ctx, PLM_ENOMEM, "markov.mixture_fit: out of memory");
            goto done;
        }
        for (n = 0; n < N; n++) {
            for (m = 0; m < N; m++) rowm[n] += D[n * N + m];
            rowm[n] /= (double)N;
            all += rowm[n];
        }
        all /= (double)N;
        for (n = 0; n < N; n++)
            for (m = 0; m < N; m++) D[n * N + m] = D[n * N + m] - rowm[n] - rowm[m] + all;
        free(rowm);
    }
    if (top_eigvecs(D, N, re, seed, E, lam)) {
        st = plm_fail(ctx, PLM_EINTR, "markov.mixture_fit: interrupted");
        goto done;
    }
    for (n = 0; n < N; n++)
        for (a = 0; a < re; a++) E[n * re + a] *= sqrt(lam[a] > 0 ? lam[a] : 0);
    kmeans(E, N, re, K, seed, lab);
done:
    free(M), free(Vc), free(gstart), free(gctx), free(q), free(D), free(E), free(lam), free(pbar);
    if (ws) gsl_eigen_symmv_free(ws);
    if (A) gsl_matrix_free(A);
    if (evec) gsl_matrix_free(evec);
    if (eval) gsl_vector_free(eval);
    return st;
}

static plm_status run_em(plm_ctx *ctx, const traj *tr, size_t N, int K, int C, int S, const plm_mm_opts *o,
                         double *P, double *logP, double *w, double *resp, double *ll, int *iters)
{
    double prev = -INFINITY;
    int it;
    *ll = estep(tr, N, K, C, S, logP, w, resp);
    for (it = 0; it < o->iters; it++) {
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "markov.mixture_fit: interrupted");
        mstep(tr, N, K, C, S, o->smooth, resp, P, logP, w);
        prev = *ll;
        *ll = estep(tr, N, K, C, S, logP, w, resp);
        if (*ll - prev < o->tol) {
            it++;
            break;
        }
    }
    *iters = it;
    return PLM_OK;
}

plm_status plm_markov_mix_fit(plm_ctx *ctx, const plm_mm_data *d, const plm_mm_opts *o, plm_mm_fit *out)
{
    const int K = o->K, S = d->S, A = d->A, C = S * A;
    size_t N = d->N, n, t, total = 0;
    traj *tr = NULL;
    step *all = NULL, *tmp = NULL;
    int *cnt = NULL;
    double *logP = NULL, *bestP = NULL, *bestw = NULL, *bestr = NULL;
    plm_status st = PLM_OK;
    memset(out, 0, sizeof *out);
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: K must be >= 1 (got %d)", K);
    if (S < 1 || A < 1) return plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: need S >= 1 states and A >= 1 actions");
    if (N < (size_t)K) return plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: %zu trajectories cannot make K = %d components", N, K);
    if (o->iters < 0) return plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: iters must be >= 0 (got %d)", o->iters);
    if (!(o->smooth > 0) || isinf(o->smooth))
        return plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: smooth must be > 0 (got %g)", o->smooth);
    if (o->restarts < 1) return plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: restarts must be >= 1 (got %d)", o->restarts);
    for (n = 0; n < N; n++) {
        for (t = 0; t < d->len[n]; t++) {
            if (d->s[n][t] < 0 || d->s[n][t] >= S)
                return plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: trajectory %zu, step %zu: state %d is outside 0..%d",
                                n, t, d->s[n][t], S - 1);
            if (d->a && t + 1 < d->len[n] && (d->a[n][t] < 0 || d->a[n][t] >= A))
                return plm_fail(ctx, PLM_EINVAL, "markov.mixture_fit: trajectory %zu, step %zu: action %d is outside 0..%d",
                                n, t, d->a[n][t], A - 1);
        }
        if (d->len[n] > 1) total += d->len[n] - 1;
    }
    tr = calloc(N, sizeof *tr);
    all = malloc((total ? total : 1) * sizeof *all);
    tmp = malloc((total ? total : 1) * sizeof *tmp);
    cnt = calloc((size_t)C, sizeof *cnt);
    out->P = malloc((size_t)K * C * S * sizeof *out->P);
    logP = malloc((size_t)K * C * S * sizeof *logP);
    out->w = malloc((size_t)K * sizeof *out->w);
    out->resp = malloc(N * (size_t)K * sizeof *out->resp);
    out->labels = malloc(N * sizeof *out->labels);
    out->cluster = malloc(N * sizeof *out->cluster);
    bestP = malloc((size_t)K * C * S * sizeof *bestP);
    bestw = malloc((size_t)K * sizeof *bestw);
    bestr = malloc(N * (size_t)K * sizeof *bestr);
    if (!tr || !all || !tmp || !cnt || !out->P || !logP || !out->w || !out->resp || !out->labels || !out->cluster ||
        !bestP || !bestw || !bestr) {
        st = plm_fail(ctx, PLM_ENOMEM, "markov.mixture_fit: out of memory");
        goto done;
    }
    out->K = K, out->S = S, out->A = A, out->N = N;
    /* steps of every trajectory, halves alternating over each context's visits */
    total = 0;
    for (n = 0; n < N; n++) {
        tr[n].st = all + total;
        tr[n].n = d->len[n] > 1 ? d->len[n] - 1 : 0;
        for (t = 0; t < tr[n].n; t++) {
            int c = d->s[n][t] * A + (d->a ? d->a[n][t] : 0);
            tr[n].st[t].c = c;
            tr[n].st[t].next = d->s[n][t + 1];
        }
        sort_steps(tr[n].st, tr[n].n, tmp);
        for (t = 0; t < tr[n].n; t++) {
            int c = tr[n].st[t].c;
            if (t == 0 || tr[n].st[t - 1].c != c) cnt[c] = 0;
            tr[n].st[t].half = cnt[c]++ & 1;
        }
        total += tr[n].n;
    }
    if (o->init == PLM_MM_SPECTRAL) {
        int k;
        if (K == 1)
            for (n = 0; n < N; n++) out->cluster[n] = 0;
        else if ((st = spectral(ctx, tr, N, K, C, S, o->seed, out->cluster)))
            goto done;
        for (n = 0; n < N; n++)
            for (k = 0; k < K; k++) out->resp[n * K + k] = out->cluster[n] == k;
        mstep(tr, N, K, C, S, o->smooth, out->resp, out->P, logP, out->w);
        if ((st = run_em(ctx, tr, N, K, C, S, o, out->P, logP, out->w, out->resp, &out->loglik, &out->iters))) goto done;
    } else {
        double best = -INFINITY;
        int rs;
        plm_rng g;
        for (n = 0; n < N; n++) out->cluster[n] = -1;
        for (rs = 0; rs < o->restarts; rs++) {
            size_t r;
            double ll;
            int it, k;
            plm_rng_init(&g, o->seed, 1000 + (uint64_t)rs);
            for (r = 0; r < (size_t)K * C; r++) {   /* rows ~ Dirichlet(1, ..., 1) */
                double z = 0;
                int j;
                for (j = 0; j < S; j++) z += out->P[r * S + j] = -log(plm_rng_uniform(&g));
                for (j = 0; j < S; j++) {
                    out->P[r * S + j] /= z;
                    logP[r * S + j] = log(out->P[r * S + j]);
                }
            }
            for (k = 0; k < K; k++) out->w[k] = 1.0 / K;
            if ((st = run_em(ctx, tr, N, K, C, S, o, out->P, logP, out->w, out->resp, &ll, &it))) goto done;
            if (ll > best) {
                best = ll;
                out->loglik = ll, out->iters = it;
                memcpy(bestP, out->P, (size_t)K * C * S * sizeof *bestP);
                memcpy(bestw, out->w, (size_t)K * sizeof *bestw);
                memcpy(bestr, out->resp, N * (size_t)K * sizeof *bestr);
            }
        }
        memcpy(out->P, bestP, (size_t)K * C * S * sizeof *bestP);
        memcpy(out->w, bestw, (size_t)K * sizeof *bestw);
        memcpy(out->resp, bestr, N * (size_t)K * sizeof *bestr);
    }
    for (n = 0; n < N; n++) {
        int k, arg = 0;
        for (k = 1; k < K; k++)
            if (out->resp[n * K + k] > out->resp[n * K + arg]) arg = k;
        out->labels[n] = arg;
    }
done:
    free(tr), free(all), free(tmp), free(cnt), free(logP), free(bestP), free(bestw), free(bestr);
    if (st) plm_markov_mix_free(out);
    return st;
}

plm_status plm_markov_mix_classify(plm_ctx *ctx, const plm_mm_fit *f, const int *s, const int *a, size_t len,
                                   double *post, int *label)
{
    const int K = f->K, S = f->S, A = f->A;
    size_t t;
    int k;
    double z;
    for (t = 0; t < len; t++) {
        if (s[t] < 0 || s[t] >= S)
            return plm_fail(ctx, PLM_EINVAL, "mixture:classify: step %zu: state %d is outside 0..%d", t, s[t], S - 1);
        if (a && t + 1 < len && (a[t] < 0 || a[t] >= A))
            return plm_fail(ctx, PLM_EINVAL, "mixture:classify: step %zu: action %d is outside 0..%d", t, a[t], A - 1);
    }
    for (k = 0; k < K; k++) {
        double l = log(f->w[k]);
        const double *pk = f->P + (size_t)k * S * A * S;
        for (t = 0; t + 1 < len; t++) l += log(pk[((size_t)s[t] * A + (a ? a[t] : 0)) * S + s[t + 1]]);
        post[k] = l;
    }
    z = lse(post, K);
    *label = 0;
    for (k = 0; k < K; k++) {
        post[k] = exp(post[k] - z);
        if (post[k] > post[*label]) *label = k;
    }
    return PLM_OK;
}
