/* speculative.c -- speculative sampling (see speculative.h). */
#include "speculative.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* a token from a row of log-probabilities (normalised or not) */
static plm_token draw_row(const double *lp, int V, plm_rng *rng)
{
    double m = -INFINITY, s = 0, u, acc = 0;
    int v, last = -1;
    for (v = 0; v < V; v++)
        if (lp[v] > m) m = lp[v];
    for (v = 0; v < V; v++) s += exp(lp[v] - m);
    u = plm_rng_uniform(rng) * s;
    for (v = 0; v < V; v++) {
        double w = exp(lp[v] - m);
        if (w > 0) last = v;
        acc += w;
        if (u < acc) return v;
    }
    return last;   /* rounding left u just above the sum */
}

plm_status plm_spec_verify(plm_ctx *ctx, int V, int k, const double *logq, const plm_token *draft, const double *logp,
                           int last_eos, plm_rng *rng, plm_spec_rule rule, plm_token *out, int *n_out, int *n_acc)
{
    int j, v;
    *n_out = *n_acc = 0;
    for (j = 0; j < k; j++) {
        const double *q = logq + (size_t)j * V, *p = logp + (size_t)j * V;
        plm_token d = draft[j];
        if (d < 0 || d >= V) return plm_fail(ctx, PLM_EINVAL, "speculative: draft token %d out of range", (int)d);
        if (rule == PLM_SPEC_ACCEPT_ALL || log(plm_rng_uniform(rng)) < p[d] - q[d]) {
            out[(*n_out)++] = d;
            (*n_acc)++;
            continue;
        }
        /* rejected: draw from the residual max(0, p - q), which has mass exactly where p exceeds q */
        {
            double *res = malloc((size_t)V * sizeof *res), any = -INFINITY;
            if (!res) return plm_fail(ctx, PLM_ENOMEM, "speculative: out of memory");
            for (v = 0; v < V; v++) {
                double diff = exp(p[v]) - exp(q[v]);
                res[v] = diff > 0 ? log(diff) : -INFINITY;
                if (res[v] > any) any = res[v];
            }
            /* p == q up to rounding (then the rejection had probability ~0): p itself is the residual's limit */
            out[(*n_out)++] = any == -INFINITY ? draw_row(p, V, rng) : draw_row(res, V, rng);
            free(res);
            return PLM_OK;
        }
    }
    if (!last_eos) out[(*n_out)++] = draw_row(logp + (size_t)k * V, V, rng);
    return PLM_OK;
}

plm_status plm_speculative(plm_ctx *ctx, plm_lm *target, plm_lm *draft, const plm_token *prompt, size_t np, int k,
                           size_t max_tokens, plm_rng *rng, plm_spec_rule rule, plm_token *out, size_t *n_out,
                           plm_spec_stats *stats)
{
    int V = target->n_vocab;
    size_t gen = 0, cap = np + max_tokens + (size_t)k + 2;
    plm_token *buf = NULL, *acc = NULL;
    double *q = NULL, *p = NULL;
    const plm_token **ctxs = NULL;
    size_t *lens = NULL;
    plm_status st = PLM_OK;
    int done = 0;
    *n_out = 0;
    if (draft->n_vocab != V)
        return plm_fail(ctx, PLM_EINVAL, "speculative: the draft has %d tokens, the target %d (they must share a vocabulary)",
                        draft->n_vocab, V);
    if (k < 1 || k > 256) return plm_fail(ctx, PLM_EINVAL, "speculative: k must be in 1..256 (got %d)", k);
    buf = malloc(cap * sizeof *buf);
    acc = malloc(((size_t)k + 1) * sizeof *acc);
    q = malloc((size_t)k * V * sizeof *q);
    p = malloc(((size_t)k + 1) * V * sizeof *p);
    ctxs = malloc(((size_t)k + 1) * sizeof *ctxs);
    lens = malloc(((size_t)k + 1) * sizeof *lens);
    if (!buf || !acc || !q || !p || !ctxs || !lens) {
        st = plm_fail(ctx, PLM_ENOMEM, "speculative: out of memory");
        goto out;
    }
    if (np) memcpy(buf, prompt, np * sizeof *buf);
    while (!done && gen < max_tokens) {
        size_t cur = np + gen;
        int kk = k, j, n_acc, n_new, last_eos = 0;
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "speculative: interrupted");
            goto out;
        }
        if ((size_t)kk > max_tokens - gen - 1) kk = (int)(max_tokens - gen - 1);
        /* the draft proposes kk tokens one at a time (stopping at EOS) */
        for (j = 0; j < kk; j++) {
            const plm_token *c = buf;
            size_t len = cur + (size_t)j;
            if ((st = plm_lm_next_logprobs(draft, ctx, 1, &c, &len, q + (size_t)j * V))) goto out;
            stats->draft_calls++;
            buf[cur + (size_t)j] = draw_row(q + (size_t)j * V, V, rng);
            if (plm_lm_is_eos(target, buf[cur + (size_t)j])) {
                kk = j + 1;
                last_eos = 1;
                break;
            }
        }
        /* the target scores every prefix in one call */
        for (j = 0; j <= kk - last_eos; j++) {
            ctxs[j] = buf;
            lens[j] = cur + (size_t)j;
        }
        if ((st = plm_lm_next_logprobs(target, ctx, (size_t)(kk + 1 - last_eos), ctxs, lens, p))) goto out;
        stats->rounds++;
        stats->proposed += kk;
        if ((st = plm_spec_verify(ctx, V, kk, q, buf + cur, p, last_eos, rng, rule, acc, &n_new, &n_acc))) goto out;
        stats->accepted += n_acc;
        for (j = 0; j < n_new && gen < max_tokens; j++) {
            buf[np + gen] = acc[j];
            out[gen++] = acc[j];
            stats->tokens++;
            if (plm_lm_is_eos(target, acc[j])) {
                done = 1;
                break;
            }
        }
    }
    *n_out = gen;
out:
    free(buf);
    free(acc);
    free(q);
    free(p);
    free(ctxs);
    free(lens);
    return st;
}
