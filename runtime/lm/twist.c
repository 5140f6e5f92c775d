/* twist.c -- the twisted SMC step, token automata, and the HMM x automaton guide (see twist.h). */
#include "twist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double logsumexp(const double *x, int n)
{
    double m = -INFINITY, s = 0;
    int i;
    for (i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    if (m == -INFINITY) return -INFINITY;
    for (i = 0; i < n; i++) s += exp(x[i] - m);
    return m + log(s);
}

plm_status plm_twist_step(plm_ctx *ctx, int V, plm_twist_proposal kind, const double *logp0, const double *logpsi,
                          double logpsi_prev, double *logq, double *inc)
{
    int v;
    double lz;
    for (v = 0; v < V; v++)
        if (isnan(logp0[v]) || isnan(logpsi[v]))
            return plm_fail(ctx, PLM_EINVAL, "twist: %s of token %d is NaN", isnan(logp0[v]) ? "log p0" : "log psi", v);
    if (isnan(logpsi_prev)) return plm_fail(ctx, PLM_EINVAL, "twist: the previous log psi is NaN");
    /* the un-normalised target of this step, p0 psi_t, in inc for now */
    for (v = 0; v < V; v++) inc[v] = logp0[v] == -INFINITY ? -INFINITY : logp0[v] + logpsi[v];
    lz = logsumexp(inc, V);
    if (lz == -INFINITY || logpsi_prev == -INFINITY) {
        /* no continuation can reach the target: propose from p0 and die */
        if (kind != PLM_TWIST_PROP_USER) memcpy(logq, logp0, (size_t)V * sizeof *logq);
        for (v = 0; v < V; v++) inc[v] = -INFINITY;
        return PLM_OK;
    }
    switch (kind) {
    case PLM_TWIST_PROP_P0:
        memcpy(logq, logp0, (size_t)V * sizeof *logq);
        for (v = 0; v < V; v++) inc[v] = logp0[v] == -INFINITY ? -INFINITY : logpsi[v] - logpsi_prev;
        break;
    case PLM_TWIST_PROP_TWIST:
        /* q = p0 psi / sum: the weight p0 psi / (psi_prev q) = sum / psi_prev does not depend on v, so the
        ** weights of one step are equal whenever psi_{t-1} is the exact expectation of psi_t under p0 */
        for (v = 0; v < V; v++) {
            logq[v] = inc[v] - lz;
            inc[v] = inc[v] == -INFINITY ? -INFINITY : lz - logpsi_prev;
        }
        break;
    case PLM_TWIST_PROP_USER: {
        double lq = logsumexp(logq, V);
        if (lq == -INFINITY || isnan(lq)) return plm_fail(ctx, PLM_EINVAL, "twist: the proposal gives no token a positive probability");
        for (v = 0; v < V; v++) {
            logq[v] -= lq;
            if (inc[v] == -INFINITY) continue;
            if (logq[v] == -INFINITY)
                return plm_fail(ctx, PLM_EINVAL, "twist: the proposal gives token %d probability 0, but p0 psi_t is positive "
                                                 "there (a proposal must cover the target)", v);
            inc[v] = inc[v] - logpsi_prev - logq[v];
        }
        break;
    }
    }
    return PLM_OK;
}

/* ---- token automata ---- */

plm_status plm_tdfa_new(plm_ctx *ctx, int S, int V, plm_tdfa **out)
{
    plm_tdfa *d;
    *out = NULL;
    if (S < 1 || V < 1 || (size_t)S * (size_t)V > ((size_t)1 << 31))
        return plm_fail(ctx, PLM_EINVAL, "tdfa: %d states x %d tokens is out of range", S, V);
    d = calloc(1, sizeof *d);
    if (!d) return plm_fail(ctx, PLM_ENOMEM, "tdfa: out of memory");
    d->S = S, d->V = V, d->start = 0;
    d->next = malloc((size_t)S * V * sizeof *d->next);
    d->accept = calloc((size_t)S, 1);
    if (!d->next || !d->accept) {
        plm_tdfa_free(d);
        return plm_fail(ctx, PLM_ENOMEM, "tdfa: out of memory");
    }
    for (size_t i = 0; i < (size_t)S * V; i++) d->next[i] = -1;
    *out = d;
    return PLM_OK;
}

void plm_tdfa_free(plm_tdfa *d)
{
    if (!d) return;
    free(d->next);
    free(d->accept);
    free(d);
}

plm_status plm_tdfa_keywords(plm_ctx *ctx, int V, const plm_token *kw, int nk, plm_tdfa **out)
{
    plm_tdfa *d;
    int S, s, v, k;
    plm_status st;
    *out = NULL;
    if (nk < 1 || nk > 16) return plm_fail(ctx, PLM_EINVAL, "tdfa: between 1 and 16 keywords (got %d)", nk);
    for (k = 0; k < nk; k++)
        if (kw[k] < 0 || kw[k] >= V) return plm_fail(ctx, PLM_EINVAL, "tdfa: keyword %d is token %d, outside 0..%d", k + 1, (int)kw[k], V - 1);
    S = 1 << nk;
    if ((st = plm_tdfa_new(ctx, S, V, &d))) return st;
    for (s = 0; s < S; s++) {
        for (v = 0; v < V; v++) d->next[(size_t)s * V + v] = s;
        for (k = 0; k < nk; k++) d->next[(size_t)s * V + kw[k]] |= 1 << k;   /* a token may be several keywords */
    }
    d->accept[S - 1] = 1;
    *out = d;
    return PLM_OK;
}

int plm_tdfa_run(const plm_tdfa *d, const plm_token *toks, size_t n)
{
    int s = d->start;
    for (size_t i = 0; i < n && s >= 0; i++) s = d->next[(size_t)s * d->V + toks[i]];
    return s;
}

/* ---- HMM x automaton ---- */

void plm_hmmguide_free(plm_hmmguide *g)
{
    if (!g) return;
    free(g->init);
    free(g->trans);
    free(g->emitT);
    free(g->logw);
    free(g->eos);
    free(g->next);
    free(g->accept);
    free(g->B);
    free(g);
}

static plm_status check_rows(plm_ctx *ctx, const char *what, const double *p, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) {
            double x = p[(size_t)r * cols + c];
            if (!(x >= 0)) return plm_fail(ctx, PLM_EINVAL, "hmm guide: %s row %d entry %d is %g, not a probability", what, r + 1, c + 1, x);
            s += x;
        }
        if (fabs(s - 1) > 1e-6) return plm_fail(ctx, PLM_EINVAL, "hmm guide: %s row %d sums to %g, not 1", what, r + 1, s);
    }
    return PLM_OK;
}

plm_status plm_hmmguide_new(plm_ctx *ctx, int K, int V, const double *init, const double *trans, const double *emit,
                            const plm_tdfa *dfa, const double *logw, const plm_token *eos, int n_eos, int T, double eps,
                            plm_hmmguide **out)
{
    plm_hmmguide *g;
    plm_status st;
    int S, r, z, s, v;
    double *tmp;
    *out = NULL;
    if (K < 1 || V < 1) return plm_fail(ctx, PLM_EINVAL, "hmm guide: K and V must be >= 1 (got %d, %d)", K, V);
    if (dfa->V != V) return plm_fail(ctx, PLM_EINVAL, "hmm guide: the automaton reads %d tokens, the HMM emits %d", dfa->V, V);
    if (T < 1 || T > 100000) return plm_fail(ctx, PLM_EINVAL, "hmm guide: max_tokens must be in 1..100000 (got %d)", T);
    if (!(eps >= 0 && eps < 1)) return plm_fail(ctx, PLM_EINVAL, "hmm guide: smoothing must be in [0, 1) (got %g)", eps);
    if ((st = check_rows(ctx, "init", init, 1, K)) || (st = check_rows(ctx, "trans", trans, K, K)) ||
        (st = check_rows(ctx, "emit", emit, K, V)))
        return st;
    if (logw)
        for (v = 0; v < V; v++)
            if (isnan(logw[v]) || logw[v] > 0)
                return plm_fail(ctx, PLM_EINVAL, "hmm guide: the log weight of token %d is %g (weights must be in [0, 1])", v, logw[v]);
    S = dfa->S;
    if ((size_t)(T + 1) * K * S > ((size_t)1 << 28)) return plm_fail(ctx, PLM_EINVAL, "hmm guide: the table of %d x %d x %d is too large", T + 1, K, S);
    g = calloc(1, sizeof *g);
    if (!g) return plm_fail(ctx, PLM_ENOMEM, "hmm guide: out of memory");
    g->K = K, g->V = V, g->S = S, g->T = T, g->start = dfa->start;
    g->init = malloc((size_t)K * sizeof *g->init);
    g->trans = malloc((size_t)K * K * sizeof *g->trans);
    g->emitT = malloc((size_t)V * K * sizeof *g->emitT);
    g->eos = calloc((size_t)V, 1);
    g->next = malloc((size_t)S * V * sizeof *g->next);
    g->accept = malloc((size_t)S);
    g->B = malloc((size_t)(T + 1) * K * S * sizeof *g->B);
    tmp = malloc((size_t)K * S * sizeof *tmp);
    if (logw) g->logw = malloc((size_t)V * sizeof *g->logw);
    if (!g->init || !g->trans || !g->emitT || !g->eos || !g->next || !g->accept || !g->B || !tmp || (logw && !g->logw)) {
        free(tmp);
        plm_hmmguide_free(g);
        return plm_fail(ctx, PLM_ENOMEM, "hmm guide: out of memory");
    }
    memcpy(g->init, init, (size_t)K * sizeof *init);
    memcpy(g->trans, trans, (size_t)K * K * sizeof *trans);
    for (z = 0; z < K; z++)
        for (v = 0; v < V; v++) g->emitT[(size_t)v * K + z] = (1 - eps) * emit[(size_t)z * V + v] + eps / V;
    if (logw) memcpy(g->logw, logw, (size_t)V * sizeof *logw);
    for (int i = 0; i < n_eos; i++)
        if (eos[i] >= 0 && eos[i] < V) g->eos[eos[i]] = 1;
    memcpy(g->next, dfa->next, (size_t)S * V * sizeof *g->next);
    memcpy(g->accept, dfa->accept, (size_t)S);
    /* B[0][z][s] = accept[s]. One more token from hidden state z: the next hidden state z', its token v (EOS
    ** ends the text: the automaton must accept after it), then r - 1 more:
    **   B[r][z][s] = sum_z' A[z][z'] C[r][z'][s],  C[r][z'][s] = sum_v E[z'][v] w(v) B'(r - 1, z', next(s, v)) */
    for (z = 0; z < K; z++)
        for (s = 0; s < S; s++) g->B[(size_t)z * S + s] = g->accept[s];
    for (r = 1; r <= T; r++) {
        const double *Bp = g->B + (size_t)(r - 1) * K * S;
        double *Br = g->B + (size_t)r * K * S;
        if (plm_interrupted()) {
            free(tmp);
            plm_hmmguide_free(g);
            return plm_fail(ctx, PLM_EINTR, "hmm guide: interrupted");
        }
        memset(tmp, 0, (size_t)K * S * sizeof *tmp);
        for (s = 0; s < S; s++)
            for (v = 0; v < V; v++) {
                int s2 = g->next[(size_t)s * V + v];
                double w = logw ? exp(logw[v]) : 1;
                const double *ev = g->emitT + (size_t)v * K;
                if (s2 < 0 || w == 0) continue;
                if (g->eos[v]) {
                    if (!g->accept[s2]) continue;
                    for (z = 0; z < K; z++) tmp[(size_t)z * S + s] += ev[z] * w;
                } else {
                    for (z = 0; z < K; z++) tmp[(size_t)z * S + s] += ev[z] * w * Bp[(size_t)z * S + s2];
                }
            }
        for (z = 0; z < K; z++)
            for (s = 0; s < S; s++) {
                double acc = 0;
                for (int z2 = 0; z2 < K; z2++) acc += g->trans[(size_t)z * K + z2] * tmp[(size_t)z2 * S + s];
                Br[(size_t)z * S + s] = acc;
            }
    }
    free(tmp);
    *out = g;
    return PLM_OK;
}

void plm_hmmguide_start(const plm_hmmguide *g, plm_hmmguide_state *st)
{
    st->s = g->start;
    st->logw = 0;
    st->t = 0;
    for (int z = 0; z < g->K; z++) st->alpha[z] = g->init[z];
}

/* the predictive distribution of the next hidden state: init at t = 0, else alpha A */
static void predict(const plm_hmmguide *g, const plm_hmmguide_state *st, double *pred)
{
    int K = g->K;
    if (st->t == 0) {
        memcpy(pred, g->init, (size_t)K * sizeof *pred);
        return;
    }
    for (int z2 = 0; z2 < K; z2++) pred[z2] = 0;
    for (int z = 0; z < K; z++) {
        double a = st->alpha[z];
        const double *row = g->trans + (size_t)z * K;
        if (a == 0) continue;
        for (int z2 = 0; z2 < K; z2++) pred[z2] += a * row[z2];
    }
}

void plm_hmmguide_logpsi(const plm_hmmguide *g, const plm_hmmguide_state *st, double *out, double *scratch)
{
    int K = g->K, V = g->V, S = g->S, v, z;
    int r = g->T - (st->t + 1);   /* tokens left after the candidate */
    double *pred = scratch;
    const double *Br;
    if (st->s < 0 || r < 0 || st->logw == -INFINITY) {
        for (v = 0; v < V; v++) out[v] = -INFINITY;
        return;
    }
    predict(g, st, pred);
    Br = g->B + (size_t)r * K * S;
    for (v = 0; v < V; v++) {
        int s2 = g->next[(size_t)st->s * V + v];
        double lw = st->logw + (g->logw ? g->logw[v] : 0);
        if (s2 < 0) {
            out[v] = -INFINITY;
            continue;
        }
        if (g->eos[v] || r == 0) {   /* the text ends here: phi */
            out[v] = g->accept[s2] ? lw : -INFINITY;
            continue;
        }
        {
            const double *ev = g->emitT + (size_t)v * K;
            double num = 0, den = 0;
            for (z = 0; z < K; z++) {
                double pe = pred[z] * ev[z];
                den += pe;
                num += pe * Br[(size_t)z * S + s2];
            }
            out[v] = num > 0 && den > 0 ? lw + log(num / den) : -INFINITY;
        }
    }
}

void plm_hmmguide_advance(const plm_hmmguide *g, plm_hmmguide_state *st, plm_token v, double *scratch)
{
    int K = g->K, z;
    double *pred = scratch, sum = 0;
    const double *ev = g->emitT + (size_t)v * K;
    predict(g, st, pred);
    for (z = 0; z < K; z++) sum += pred[z] * ev[z];
    for (z = 0; z < K; z++) st->alpha[z] = sum > 0 ? pred[z] * ev[z] / sum : 1.0 / K;
    if (st->s >= 0) st->s = g->next[(size_t)st->s * g->V + v];
    if (g->logw) st->logw += g->logw[v];
    st->t++;
}
