/* twist_learn.c -- saving and loading guides, and learned table twists trained by contrastive twist learning
** (see twist.h). */
#include "twist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"
#include "rng.h"

#define TWIST_FILE_VERSION 1

static void put(FILE *f, const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, "%.17g%c", x[i], (i + 1) % 8 == 0 || i + 1 == n ? '\n' : ' ');
}

plm_status plm_hmmguide_save(plm_ctx *ctx, const plm_hmmguide *g, const char *path)
{
    FILE *f = fopen(path, "w");
    size_t i;
    if (!f) return plm_fail(ctx, PLM_EIO, "twist: cannot write '%s'", path);
    fprintf(f, "plume-twist %d\n%d %d %d %d %d %d\n", TWIST_FILE_VERSION, g->K, g->V, g->S, g->T, g->start, g->logw != NULL);
    put(f, g->init, (size_t)g->K);
    put(f, g->trans, (size_t)g->K * g->K);
    put(f, g->emitT, (size_t)g->V * g->K);
    if (g->logw) put(f, g->logw, (size_t)g->V);
    for (i = 0; i < (size_t)g->V; i++) fprintf(f, "%d%c", g->eos[i], (i + 1) % 32 == 0 || i + 1 == (size_t)g->V ? '\n' : ' ');
    for (i = 0; i < (size_t)g->S * g->V; i++) fprintf(f, "%d%c", (int)g->next[i], (i + 1) % 32 == 0 || i + 1 == (size_t)g->S * g->V ? '\n' : ' ');
    for (i = 0; i < (size_t)g->S; i++) fprintf(f, "%d%c", g->accept[i], i + 1 == (size_t)g->S ? '\n' : ' ');
    put(f, g->B, (size_t)(g->T + 1) * g->K * g->S);
    if (fclose(f) != 0) return plm_fail(ctx, PLM_EIO, "twist: error writing '%s'", path);
    return PLM_OK;
}

static int get(FILE *f, double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fscanf(f, "%lf", &x[i]) != 1) return 0;
    return 1;
}

plm_status plm_hmmguide_load(plm_ctx *ctx, const char *path, plm_hmmguide **out)
{
    FILE *f = fopen(path, "r");
    plm_hmmguide *g;
    int version, haslogw, x;
    size_t i;
    char magic[32];
    *out = NULL;
    if (!f) return plm_fail(ctx, PLM_EIO, "twist: cannot open '%s'", path);
    if (fscanf(f, "%31s %d", magic, &version) != 2 || strcmp(magic, "plume-twist") != 0) {
        fclose(f);
        return plm_fail(ctx, PLM_EPARSE, "twist: '%s' is not a plume twist file", path);
    }
    if (version != TWIST_FILE_VERSION) {
        fclose(f);
        return plm_fail(ctx, PLM_EPARSE, "twist: '%s' is version %d; this plume reads version %d", path, version, TWIST_FILE_VERSION);
    }
    g = calloc(1, sizeof *g);
    if (!g) {
        fclose(f);
        return plm_fail(ctx, PLM_ENOMEM, "twist: out of memory");
    }
    if (fscanf(f, "%d %d %d %d %d %d", &g->K, &g->V, &g->S, &g->T, &g->start, &haslogw) != 6 || g->K < 1 || g->V < 1 ||
        g->S < 1 || g->T < 1 || g->start < 0 || g->start >= g->S || (double)(g->T + 1) * g->K * g->S > 1 << 28 ||
        (double)g->V * g->K > 1e9 || (double)g->S * g->V > 1e9)
        goto bad;
    g->init = malloc((size_t)g->K * sizeof *g->init);
    g->trans = malloc((size_t)g->K * g->K * sizeof *g->trans);
    g->emitT = malloc((size_t)g->V * g->K * sizeof *g->emitT);
    g->eos = malloc((size_t)g->V);
    g->next = malloc((size_t)g->S * g->V * sizeof *g->next);
    g->accept = malloc((size_t)g->S);
    g->B = malloc((size_t)(g->T + 1) * g->K * g->S * sizeof *g->B);
    if (haslogw) g->logw = malloc((size_t)g->V * sizeof *g->logw);
    if (!g->init || !g->trans || !g->emitT || !g->eos || !g->next || !g->accept || !g->B || (haslogw && !g->logw)) {
        fclose(f);
        plm_hmmguide_free(g);
        return plm_fail(ctx, PLM_ENOMEM, "twist: out of memory");
    }
    if (!get(f, g->init, (size_t)g->K) || !get(f, g->trans, (size_t)g->K * g->K) || !get(f, g->emitT, (size_t)g->V * g->K) ||
        (haslogw && !get(f, g->logw, (size_t)g->V)))
        goto bad;
    for (i = 0; i < (size_t)g->V; i++) {
        if (fscanf(f, "%d", &x) != 1 || (x != 0 && x != 1)) goto bad;
        g->eos[i] = (unsigned char)x;
    }
    for (i = 0; i < (size_t)g->S * g->V; i++) {
        if (fscanf(f, "%d", &x) != 1 || x < -1 || x >= g->S) goto bad;
        g->next[i] = x;
    }
    for (i = 0; i < (size_t)g->S; i++) {
        if (fscanf(f, "%d", &x) != 1 || (x != 0 && x != 1)) goto bad;
        g->accept[i] = (unsigned char)x;
    }
    if (!get(f, g->B, (size_t)(g->T + 1) * g->K * g->S)) goto bad;
    for (i = 0; i < (size_t)(g->T + 1) * g->K * g->S; i++)
        if (!(g->B[i] >= 0) || isinf(g->B[i])) goto bad;
    fclose(f);
    *out = g;
    return PLM_OK;
bad:
    fclose(f);
    plm_hmmguide_free(g);
    return plm_fail(ctx, PLM_EPARSE, "twist: '%s' is truncated or holds a value out of range", path);
}

plm_status plm_twist_table_new(plm_ctx *ctx, const plm_tdfa *dfa, const plm_token *eos, int n_eos, int T,
                               plm_hmmguide **out)
{
    double one = 1, *emit;
    plm_status st;
    int V = dfa->V, r, s;
    emit = malloc((size_t)V * sizeof *emit);
    if (!emit) return plm_fail(ctx, PLM_ENOMEM, "twist: out of memory");
    for (int v = 0; v < V; v++) emit[v] = 1.0 / V;
    st = plm_hmmguide_new(ctx, 1, V, &one, &one, emit, dfa, NULL, eos, n_eos, T, 0, out);
    free(emit);
    if (st) return st;
    /* psi = 1 wherever the constraint is still reachable in principle (the table learns the rest) */
    for (r = 1; r <= T; r++)
        for (s = 0; s < dfa->S; s++) (*out)->B[(size_t)r * dfa->S + s] = 1;
    return PLM_OK;
}

plm_status plm_twist_ctl(plm_ctx *ctx, plm_lm *lm, plm_hmmguide *g, const plm_token *prompt, size_t np, int N,
                         int iters, double lr, uint64_t seed, double *logz, plm_twist_progress progress, void *ud)
{
    int V = lm->n_vocab, T = g->T, S = g->S, it, t, i, v;
    size_t L = np + (size_t)T, cells = (size_t)(T + 1) * S;
    plm_token *toks = NULL, *toks2 = NULL;
    int *len = NULL, *sst = NULL, *sst2 = NULL, *len2 = NULL, *idx = NULL;
    unsigned char *done = NULL, *done2 = NULL;
    double *psiprev = NULL, *psiprev2 = NULL, *rows = NULL, *logpsi = NULL, *logq = NULL, *inc = NULL, *lw = NULL,
           *w = NULL, *mass = NULL, *gpi = NULL, *gsig = NULL, alpha = 1, scratch[2];
    size_t *cnt = NULL, *anc = NULL, *lens = NULL;
    const plm_token **ptr = NULL;
    plm_rng rng;
    plm_status st = PLM_OK;
    if (g->K != 1) return plm_fail(ctx, PLM_EINVAL, "twist: only table twists (plume.twist.table) can be learned");
    if (g->V != V) return plm_fail(ctx, PLM_EINVAL, "twist: the twist is over %d tokens, the model has %d", g->V, V);
    if (N < 2 || iters < 1 || !(lr > 0)) return plm_fail(ctx, PLM_EINVAL, "twist: particles >= 2, iters >= 1 and lr > 0 (got %d, %d, %g)", N, iters, lr);
    plm_rng_init(&rng, seed, 0);
#define ALLOC(p, n) if (!((p) = malloc((n) * sizeof *(p)))) { st = plm_fail(ctx, PLM_ENOMEM, "twist: out of memory"); goto out; }
    ALLOC(toks, (size_t)N * L) ALLOC(toks2, (size_t)N * L) ALLOC(len, (size_t)N) ALLOC(len2, (size_t)N)
    ALLOC(sst, (size_t)N) ALLOC(sst2, (size_t)N) ALLOC(idx, (size_t)N) ALLOC(done, (size_t)N) ALLOC(done2, (size_t)N)
    ALLOC(psiprev, (size_t)N) ALLOC(psiprev2, (size_t)N) ALLOC(rows, (size_t)N * V) ALLOC(logpsi, (size_t)V)
    ALLOC(logq, (size_t)V) ALLOC(inc, (size_t)V) ALLOC(lw, (size_t)N) ALLOC(w, (size_t)N) ALLOC(mass, (size_t)N * S)
    ALLOC(gpi, cells) ALLOC(gsig, cells) ALLOC(cnt, (size_t)N) ALLOC(anc, (size_t)N) ALLOC(lens, (size_t)N) ALLOC(ptr, (size_t)N)
#undef ALLOC
    for (it = 0; it < iters; it++) {
        double lz = 0, mx, sum, ess = 0;
        memset(gpi, 0, cells * sizeof *gpi);
        memset(gsig, 0, cells * sizeof *gsig);
        for (i = 0; i < N; i++) {
            memcpy(toks + (size_t)i * L, prompt, np * sizeof *toks);
            len[i] = (int)np, sst[i] = g->start, done[i] = 0, psiprev[i] = 0;
        }
        for (t = 0; t < T; t++) {
            int n = 0, r = T - t - 1, alldone = 1;
            plm_hmmguide_state hs;
            if (plm_interrupted()) {
                st = plm_fail(ctx, PLM_EINTR, "twist: interrupted");
                goto out;
            }
            for (i = 0; i < N; i++)
                if (!done[i]) idx[n] = i, ptr[n] = toks + (size_t)i * L, lens[n] = (size_t)len[i], n++;
            if (n == 0) break;
            if ((st = plm_lm_next_logprobs(lm, ctx, (size_t)n, ptr, lens, rows))) goto out;
            for (i = 0; i < N; i++) lw[i] = 0;   /* finished particles: no increment */
            memset(mass, 0, (size_t)N * S * sizeof *mass);
            for (int k = 0; k < n; k++) {
                double u, acc = 0, ci = -INFINITY;
                i = idx[k];
                hs.alpha = &alpha, hs.s = sst[i], hs.logw = 0, hs.t = t;
                plm_hmmguide_logpsi(g, &hs, logpsi, scratch);
                if ((st = plm_twist_step(ctx, V, PLM_TWIST_PROP_TWIST, rows + (size_t)k * V, logpsi, psiprev[i], logq, inc))) goto out;
                for (v = 0; v < V && ci == -INFINITY; v++) ci = inc[v];
                lw[i] = ci;
                if (ci == -INFINITY) {
                    done[i] = 1;
                    continue;
                }
                /* pi_t: the candidates' cells under q (final candidates carry phi, which has no parameters) */
                for (v = 0; v < V; v++) {
                    int s2 = g->next[(size_t)sst[i] * V + v];
                    if (logq[v] == -INFINITY || s2 < 0 || r == 0 || g->eos[v]) continue;
                    mass[(size_t)i * S + s2] += exp(logq[v]);
                }
                u = plm_rng_uniform(&rng);
                for (v = 0; v < V; v++) {
                    acc += exp(logq[v]);
                    if (u < acc) break;
                }
                if (v == V)
                    for (v = V - 1; v > 0 && logq[v] == -INFINITY; v--) {}
                toks[(size_t)i * L + len[i]++] = v;
                psiprev[i] = logpsi[v];
                sst[i] = g->next[(size_t)sst[i] * V + v];
                if (g->eos[v] || t + 1 == T) done[i] = 1;
            }
            mx = -INFINITY;
            for (i = 0; i < N; i++) mx = fmax(mx, lw[i]);
            if (mx == -INFINITY) {
                st = plm_fail(ctx, PLM_EDEAD, "twist: every particle has weight -inf at step %d", t + 1);
                goto out;
            }
            sum = 0;
            for (i = 0; i < N; i++) sum += (w[i] = exp(lw[i] - mx));
            for (i = 0; i < N; i++) w[i] /= sum;
            lz += mx + log(sum / N);
            for (i = 0; i < N; i++)
                for (int s = 0; s < S; s++) gpi[(size_t)r * S + s] += w[i] * mass[(size_t)i * S + s];
            for (i = 0; i < N; i++) alldone &= done[i];
            if (alldone || t + 1 == T) break;
            /* resample every step (multinomial) */
            if ((st = plm_resample_counts(ctx, PLM_RESAMPLE_MULTINOMIAL, w, (size_t)N, (size_t)N, &rng, cnt, NULL))) goto out;
            plm_resample_ancestors(cnt, (size_t)N, anc);
            for (i = 0; i < N; i++) {
                size_t a = anc[i];
                memcpy(toks2 + (size_t)i * L, toks + a * L, (size_t)len[a] * sizeof *toks);
                len2[i] = len[a], sst2[i] = sst[a], done2[i] = done[a], psiprev2[i] = psiprev[a];
            }
            memcpy(toks, toks2, (size_t)N * L * sizeof *toks);
            memcpy(len, len2, (size_t)N * sizeof *len);
            memcpy(sst, sst2, (size_t)N * sizeof *sst);
            memcpy(done, done2, (size_t)N);
            memcpy(psiprev, psiprev2, (size_t)N * sizeof *psiprev);
        }
        /* sigma: the final weighted particles' paths */
        for (i = 0; i < N; i++) {
            int s = g->start;
            ess += w[i] * w[i];
            for (int j = 0; j < len[i] - (int)np; j++) {
                plm_token tok = toks[(size_t)i * L + np + (size_t)j];
                s = g->next[(size_t)s * V + tok];
                if (s < 0 || g->eos[tok] || j + 1 >= T) break;
                gsig[(size_t)(T - (j + 1)) * S + s] += w[i];
            }
        }
        for (size_t c = (size_t)S; c < cells; c++) {   /* r >= 1 */
            double lb = log(g->B[c]) + lr * (gsig[c] - gpi[c]);
            g->B[c] = exp(fmin(fmax(lb, -30), 30));
        }
        if (logz) logz[it] = lz;
        if (progress) progress(ud, it + 1, iters, lz, 1 / ess);
    }
out:
    free(toks), free(toks2), free(len), free(len2), free(sst), free(sst2), free(idx), free(done), free(done2);
    free(psiprev), free(psiprev2), free(rows), free(logpsi), free(logq), free(inc), free(lw), free(w), free(mass);
    free(gpi), free(gsig), free(cnt), free(anc), free(lens), free(ptr);
    return st;
}
