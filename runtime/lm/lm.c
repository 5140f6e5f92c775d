/* lm.c -- the generic half of the LM interface: checks every backend shares (token ranges, context length),
** detokenize and score built on the required entries, the sequence table that gives every backend KV-style
** sequences, the token-trie result cache, and the native callback backend. */
#include "lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "u64map.h"

plm_lm *plm_lm_alloc(const plm_lm_ops *ops, void *impl, int n_vocab)
{
    plm_lm *lm = calloc(1, sizeof *lm);
    if (!lm) return NULL;
    lm->ops = ops;
    lm->impl = impl;
    lm->n_vocab = n_vocab;
    lm->bos = -1;
    lm->tok_bytes = calloc((size_t)(n_vocab > 0 ? n_vocab : 1), sizeof *lm->tok_bytes);
    lm->tok_len = calloc((size_t)(n_vocab > 0 ? n_vocab : 1), sizeof *lm->tok_len);
    if (!lm->tok_bytes || !lm->tok_len) {
        free(lm->tok_bytes);
        free(lm->tok_len);
        free(lm);
        return NULL;
    }
    return lm;
}

plm_status plm_lm_set_token(plm_lm *lm, plm_ctx *ctx, int v, const char *bytes, size_t len)
{
    char *b = malloc(len + 1);
    if (!b) return plm_fail(ctx, PLM_ENOMEM, "lm: out of memory for the vocabulary");
    memcpy(b, bytes, len);
    b[len] = 0;
    free(lm->tok_bytes[v]);
    lm->tok_bytes[v] = b;
    lm->tok_len[v] = len;
    return PLM_OK;
}

void plm_lm_free(plm_lm *lm)
{
    int i;
    if (!lm) return;
    for (i = 0; i < lm->n_seqs; i++) {
        if (lm->seqs[i].live && lm->seqs[i].backend >= 0 && lm->ops->seq_free) lm->ops->seq_free(lm, lm->seqs[i].backend);
        free(lm->seqs[i].toks);
    }
    free(lm->seqs);
    if (lm->ops->destroy) lm->ops->destroy(lm);
    if (!lm->borrowed_vocab) {
        for (i = 0; i < lm->n_vocab; i++) free(lm->tok_bytes[i]);
        free(lm->tok_bytes);
        free(lm->tok_len);
        free(lm->eos);
    }
    free(lm);
}

int plm_lm_is_eos(const plm_lm *lm, plm_token tok)
{
    int i;
    for (i = 0; i < lm->n_eos; i++)
        if (lm->eos[i] == tok) return 1;
    return 0;
}

double plm_lm_lognormalise(double *x, size_t n)
{
    double m = -INFINITY, s = 0, ls;
    size_t i;
    for (i = 0; i < n; i++) {
        if (isnan(x[i])) x[i] = -INFINITY;
        if (x[i] > m) m = x[i];
    }
    if (m == -INFINITY) return -INFINITY;
    for (i = 0; i < n; i++) s += exp(x[i] - m);
    ls = m + log(s);
    for (i = 0; i < n; i++) x[i] -= ls;
    return ls;
}

static plm_status check_contexts(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks, const size_t *lens)
{
    size_t i, j, extra = lm->bos >= 0;
    for (i = 0; i < n; i++) {
        if (lm->max_ctx && lens[i] + extra > lm->max_ctx)
            return plm_fail(ctx, PLM_EINVAL, "%s: context %zu has %zu tokens, longer than the model's context of %zu",
                            plm_lm_name(lm), i + 1, lens[i] + extra, lm->max_ctx);
        for (j = 0; j < lens[i]; j++)
            if (toks[i][j] < 0 || toks[i][j] >= lm->n_vocab)
                return plm_fail(ctx, PLM_EDOM, "%s: token %d is out of range (the vocabulary has ids 0..%d)",
                                plm_lm_name(lm), (int)toks[i][j], lm->n_vocab - 1);
    }
    return PLM_OK;
}

/* A row with NaN, or with no finite entry, is no distribution (a model whose weights hold NaN or inf): an
** error, whichever backend made it, rather than log-probabilities that a sampler keeps drawing from. Costs
** one pass over the rows. */
static plm_status check_rows(plm_lm *lm, plm_ctx *ctx, size_t n, const double *rows)
{
    size_t i, v, V = (size_t)lm->n_vocab;
    for (i = 0; i < n; i++) {
        int finite = 0;
        for (v = 0; v < V; v++) {
            double x = rows[i * V + v];
            if (isnan(x))
                return plm_fail(ctx, PLM_EDOM, "%s: next-token row %zu holds NaN (token %zu): the model's weights or "
                                               "outputs are not numbers", plm_lm_name(lm), i + 1, v);
            finite |= x > -INFINITY;
        }
        if (!finite)
            return plm_fail(ctx, PLM_EDOM, "%s: next-token row %zu gives no token a finite log-probability",
                            plm_lm_name(lm), i + 1);
    }
    return PLM_OK;
}

plm_status plm_lm_next_logprobs(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks, const size_t *lens,
                                double *out)
{
    plm_status st = check_contexts(lm, ctx, n, toks, lens);
    if (st || n == 0) return st;
    if ((st = lm->ops->next_logprobs(lm, ctx, n, toks, lens, out))) return st;
    return check_rows(lm, ctx, n, out);
}

int plm_lm_hidden_dim(plm_lm *lm)
{
    plm_lm *in = plm_lm_cache_inner(lm);
    if (in) lm = in;
    return lm->ops->hidden_dim ? lm->ops->hidden_dim(lm) : 0;
}

plm_status plm_lm_hidden(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks, const size_t *lens,
                         double *out)
{
    plm_lm *in = plm_lm_cache_inner(lm);
    plm_status st;
    if (in) lm = in;   /* hidden states are not cached: the cache keeps next-token rows only */
    if (!lm->ops->hidden || lm->ops->hidden_dim(lm) <= 0)
        return plm_fail(ctx, PLM_ENOTSUP, "%s: this backend gives no hidden states (only llama.cpp models do)", plm_lm_name(lm));
    if ((st = check_contexts(lm, ctx, n, toks, lens)) || n == 0) return st;
    return lm->ops->hidden(lm, ctx, n, toks, lens, out);
}

plm_status plm_lm_tokenize(plm_lm *lm, plm_ctx *ctx, const char *text, size_t len, plm_token *out, size_t cap,
                           size_t *n_out)
{
    return lm->ops->tokenize(lm, ctx, text, len, out, cap, n_out);
}

plm_status plm_lm_detokenize(const plm_lm *lm, plm_ctx *ctx, const plm_token *toks, size_t n, char *out, size_t cap,
                             size_t *n_out)
{
    size_t i, k = 0, skip = 0;
    for (i = 0; i < n; i++) {
        const char *b;
        size_t bl, j;
        if (toks[i] < 0 || toks[i] >= lm->n_vocab)
            return plm_fail(ctx, PLM_EDOM, "%s: detokenize: token %d is out of range (ids 0..%d)", plm_lm_name(lm),
                            (int)toks[i], lm->n_vocab - 1);
        b = lm->tok_bytes[toks[i]];
        bl = lm->tok_len[toks[i]];
        for (j = 0; j < bl; j++) {
            /* the leading-space convention: the text's first byte is not a separator */
            if (lm->lead_space && k == 0 && skip == 0 && b[j] == ' ') {
                skip = 1;
                continue;
            }
            if (k < cap) out[k] = b[j];
            k++;
        }
    }
    *n_out = k;
    return PLM_OK;
}

plm_status plm_lm_score(plm_lm *lm, plm_ctx *ctx, const plm_token *prompt, size_t np, const plm_token *cont, size_t nc,
                        double *out)
{
    plm_token *all;
    const plm_token **ptrs;
    size_t *lens, j, V = (size_t)lm->n_vocab;
    double *rows;
    plm_status st;
    const plm_token *one[2] = {prompt, cont};
    size_t onel[2] = {np, nc};
    st = check_contexts(lm, ctx, 2, one, onel);
    if (st) return st;
    if (nc && lm->max_ctx && np + nc + (lm->bos >= 0) - 1 > lm->max_ctx)
        return plm_fail(ctx, PLM_EINVAL, "%s: prompt and continuation have %zu tokens, longer than the model's context of %zu",
                        plm_lm_name(lm), np + nc, lm->max_ctx);
    if (nc == 0) return PLM_OK;
    if (lm->ops->score) {
        size_t j;
        if ((st = lm->ops->score(lm, ctx, prompt, np, cont, nc, out))) return st;
        for (j = 0; j < nc; j++)
            if (isnan(out[j]))
                return plm_fail(ctx, PLM_EDOM, "%s: the log-probability of continuation token %zu is NaN: the model's "
                                               "weights or outputs are not numbers", plm_lm_name(lm), j + 1);
        return PLM_OK;
    }
    all = malloc((np + nc) * sizeof *all + 1);
    ptrs = malloc(nc * sizeof *ptrs);
    lens = malloc(nc * sizeof *lens);
    rows = malloc(nc * V * sizeof *rows);
    if (!all || !ptrs || !lens || !rows) {
        st = plm_fail(ctx, PLM_ENOMEM, "%s: out of memory scoring %zu tokens", plm_lm_name(lm), nc);
        goto done;
    }
    if (np) memcpy(all, prompt, np * sizeof *all);
    memcpy(all + np, cont, nc * sizeof *all);
    for (j = 0; j < nc; j++) {
        ptrs[j] = all;
        lens[j] = np + j;
    }
    st = lm->ops->next_logprobs(lm, ctx, nc, ptrs, lens, rows);
    if (!st) st = check_rows(lm, ctx, nc, rows);
    if (!st)
        for (j = 0; j < nc; j++) out[j] = rows[j * V + (size_t)cont[j]];
done:
    free(all);
    free(ptrs);
    free(lens);
    free(rows);
    return st;
}

/* ---- sequences ---- */

static plm_lm_seqrec *seqrec(const plm_lm *lm, int seq)
{
    if (seq < 0 || seq >= lm->n_seqs || !lm->seqs[seq].live) return NULL;
    return &lm->seqs[seq];
}

static plm_status seq_slot(plm_lm *lm, plm_ctx *ctx, int *seq)
{
    int i;
    for (i = 0; i < lm->n_seqs; i++)
        if (!lm->seqs[i].live) break;
    if (i == lm->n_seqs) {
        plm_lm_seqrec *s = realloc(lm->seqs, (size_t)(lm->n_seqs * 2 + 8) * sizeof *s);
        if (!s) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory for sequences", plm_lm_name(lm));
        memset(s + lm->n_seqs, 0, (size_t)(lm->n_seqs + 8) * sizeof *s);
        lm->seqs = s;
        lm->n_seqs = lm->n_seqs * 2 + 8;
    }
    lm->seqs[i].len = 0;
    lm->seqs[i].backend = -1;
    *seq = i;
    return PLM_OK;
}

static plm_status seq_reserve(plm_lm *lm, plm_ctx *ctx, plm_lm_seqrec *r, size_t len)
{
    if (len > r->cap) {
        size_t c = r->cap ? r->cap : 16;
        plm_token *t;
        while (c < len) c *= 2;
        t = realloc(r->toks, c * sizeof *t);
        if (!t) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory for a sequence of %zu tokens", plm_lm_name(lm), len);
        r->toks = t;
        r->cap = c;
    }
    return PLM_OK;
}

plm_status plm_lm_seq_new(plm_lm *lm, plm_ctx *ctx, int *seq)
{
    plm_status st = seq_slot(lm, ctx, seq);
    if (st) return st;
    if (lm->ops->seq_new) {
        st = lm->ops->seq_new(lm, ctx, &lm->seqs[*seq].backend);
        if (st) return st;
    }
    lm->seqs[*seq].live = 1;
    return PLM_OK;
}

plm_status plm_lm_seq_fork(plm_lm *lm, plm_ctx *ctx, int src, int *dst)
{
    plm_lm_seqrec *s = seqrec(lm, src), *d;
    plm_status st;
    if (!s) return plm_fail(ctx, PLM_EINVAL, "%s: fork: sequence %d is not live", plm_lm_name(lm), src);
    st = seq_slot(lm, ctx, dst);   /* may move lm->seqs: look s up again below */
    if (st) return st;
    s = &lm->seqs[src];
    d = &lm->seqs[*dst];
    st = seq_reserve(lm, ctx, d, s->len);
    if (st) return st;
    if (lm->ops->seq_fork) {
        st = lm->ops->seq_fork(lm, ctx, s->backend, &d->backend);
        if (st) return st;
    }
    if (s->len) memcpy(d->toks, s->toks, s->len * sizeof *d->toks);
    d->len = s->len;
    d->live = 1;
    return PLM_OK;
}

void plm_lm_seq_free(plm_lm *lm, int seq)
{
    plm_lm_seqrec *r = seqrec(lm, seq);
    if (!r) return;
    if (r->backend >= 0 && lm->ops->seq_free) lm->ops->seq_free(lm, r->backend);
    r->live = 0;
    r->len = 0;
    r->backend = -1;
}

const plm_token *plm_lm_seq_tokens(const plm_lm *lm, int seq, size_t *len)
{
    plm_lm_seqrec *r = seqrec(lm, seq);
    *len = r ? r->len : 0;
    return r ? r->toks : NULL;
}

plm_status plm_lm_seq_extend(plm_lm *lm, plm_ctx *ctx, size_t n, const int *seqs, const plm_token *const *toks,
                             const size_t *lens, double *out)
{
    size_t i;
    plm_status st;
    const plm_token **ptrs = NULL;
    size_t *plens = NULL;
    int *handles = NULL;
    if (n == 0) return PLM_OK;
    for (i = 0; i < n; i++) {
        plm_lm_seqrec *r = seqrec(lm, seqs[i]);
        const plm_token *one[1];
        size_t onel[1];
        if (!r) return plm_fail(ctx, PLM_EINVAL, "%s: extend: sequence %d is not live", plm_lm_name(lm), seqs[i]);
        one[0] = toks[i];
        onel[0] = lens[i];
        if ((st = check_contexts(lm, ctx, 1, one, onel))) return st;
        if (lm->max_ctx && r->len + lens[i] + (lm->bos >= 0) > lm->max_ctx)
            return plm_fail(ctx, PLM_EINVAL, "%s: sequence %d would have %zu tokens, longer than the model's context of %zu",
                            plm_lm_name(lm), seqs[i], r->len + lens[i] + (lm->bos >= 0), lm->max_ctx);
        if ((st = seq_reserve(lm, ctx, r, r->len + lens[i]))) return st;
    }
    ptrs = malloc(n * sizeof *ptrs);
    plens = malloc(n * sizeof *plens);
    handles = malloc(n * sizeof *handles);
    if (!ptrs || !plens || !handles) {
        st = plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", plm_lm_name(lm));
        goto done;
    }
    if (lm->ops->seq_extend) {
        for (i = 0; i < n; i++) handles[i] = lm->seqs[seqs[i]].backend;
        st = lm->ops->seq_extend(lm, ctx, n, handles, toks, lens, out);
        if (!st && out) st = check_rows(lm, ctx, n, out);
        if (st) goto done;
    }
    for (i = 0; i < n; i++) {
        plm_lm_seqrec *r = &lm->seqs[seqs[i]];
        if (lens[i]) memcpy(r->toks + r->len, toks[i], lens[i] * sizeof *r->toks);
        r->len += lens[i];
        ptrs[i] = r->toks;
        plens[i] = r->len;
    }
    st = PLM_OK;
    if (!lm->ops->seq_extend && out && !(st = lm->ops->next_logprobs(lm, ctx, n, ptrs, plens, out)))
        st = check_rows(lm, ctx, n, out);
done:
    free(ptrs);
    free(plens);
    free(handles);
    return st;
}

/* ---- the result cache ---- */

typedef struct cache_impl {
    plm_lm_ops ops;        /* a copy: the sequence entries exist only when inner has them */
    plm_lm *inner;
    plm_u64map trie;       /* (node << 32 | token) -> child node; node 0 is the empty context */
    int32_t *node_entry;   /* entry index of each node, -1 when none */
    size_t n_nodes, cap_nodes;
    plm_u64map states;     /* state_key -> entry index, for Markov backends */
    double *store;         /* n_entries rows of n_vocab log-probabilities */
    size_t n_entries, cap_entries, max_entries;
    size_t hits, misses;
} cache_impl;

static const char *cache_name(const plm_lm *lm);

const char *plm_lm_name(const plm_lm *lm)
{
    return lm->ops->destroy && strcmp(lm->ops->name, "cache") == 0 ? cache_name(lm) : lm->ops->name;
}

static const char *cache_name(const plm_lm *lm)
{
    return plm_lm_name(((cache_impl *)lm->impl)->inner);
}

static void cache_clear(cache_impl *c)
{
    plm_u64map_clear(&c->trie);
    plm_u64map_clear(&c->states);
    c->n_nodes = 1;
    c->node_entry[0] = -1;
    c->n_entries = 0;
}

static int32_t cache_node(cache_impl *c, const plm_token *t, size_t len, int create)
{
    int32_t node = 0;
    size_t j;
    for (j = 0; j < len; j++) {
        uint64_t key = ((uint64_t)(uint32_t)node << 32) | (uint32_t)t[j];
        int32_t child = plm_u64map_get(&c->trie, key);
        if (child < 0) {
            if (!create) return -1;
            if (c->n_nodes == c->cap_nodes) {
                size_t cap = c->cap_nodes * 2;
                int32_t *ne = cap < INT32_MAX ? realloc(c->node_entry, cap * sizeof *ne) : NULL;
                if (!ne) return -2;
                c->node_entry = ne;
                c->cap_nodes = cap;
            }
            child = (int32_t)c->n_nodes++;
            c->node_entry[child] = -1;
            if (plm_u64map_put(&c->trie, key, child)) return -2;
        }
        node = child;
    }
    return node;
}

static plm_status cache_next_logprobs(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks,
                                      const size_t *lens, double *out)
{
    cache_impl *c = lm->impl;
    plm_lm *in = c->inner;
    size_t V = (size_t)lm->n_vocab, i, first, nmiss = 0;
    size_t *entry = NULL;
    const plm_token **mptr = NULL;
    size_t *mlen = NULL;
    plm_status st = PLM_OK;
    if (n > c->max_entries) return in->ops->next_logprobs(in, ctx, n, toks, lens, out);
    if (c->n_entries + n > c->max_entries) cache_clear(c);
    if (c->n_entries + n > c->cap_entries) {
        size_t cap = c->cap_entries ? c->cap_entries : 64;
        double *s;
        while (cap < c->n_entries + n) cap *= 2;
        if (cap > c->max_entries) cap = c->max_entries;
        s = realloc(c->store, cap * V * sizeof *s);
        if (!s) return in->ops->next_logprobs(in, ctx, n, toks, lens, out);   /* no room: serve uncached */
        c->store = s;
        c->cap_entries = cap;
    }
    entry = malloc(n * sizeof *entry);
    mptr = malloc(n * sizeof *mptr);
    mlen = malloc(n * sizeof *mlen);
    if (!entry || !mptr || !mlen) {
        st = plm_fail(ctx, PLM_ENOMEM, "%s: out of memory in the LM cache", plm_lm_name(lm));
        goto done;
    }
    first = c->n_entries;
    for (i = 0; i < n; i++) {
        int32_t e;
        uint64_t skey = in->ops->state_key ? in->ops->state_key(in, toks[i], lens[i]) : 0;
        int32_t node = -1;
        if (skey)
            e = plm_u64map_get(&c->states, skey);
        else {
            node = cache_node(c, toks[i], lens[i], 1);
            if (node == -2) {
                cache_clear(c);
                st = plm_fail(ctx, PLM_ENOMEM, "%s: out of memory in the LM cache", plm_lm_name(lm));
                goto done;
            }
            e = c->node_entry[node];
        }
        if (e < 0) {   /* a miss: reserve the next row; a repeat of it later in this call will find it */
            e = (int32_t)c->n_entries++;
            if (skey ? plm_u64map_put(&c->states, skey, e) : (c->node_entry[node] = e, 0)) {
                cache_clear(c);
                st = plm_fail(ctx, PLM_ENOMEM, "%s: out of memory in the LM cache", plm_lm_name(lm));
                goto done;
            }
            mptr[nmiss] = toks[i];
            mlen[nmiss] = lens[i];
            nmiss++;
            c->misses++;
        } else if ((size_t)e < first)
            c->hits++;
        entry[i] = (size_t)e;
    }
    if (nmiss) {
        st = in->ops->next_logprobs(in, ctx, nmiss, mptr, mlen, c->store + first * V);
        if (st) {   /* the reserved rows hold nothing: forget them all */
            cache_clear(c);
            goto done;
        }
    }
    for (i = 0; i < n; i++) memcpy(out + i * V, c->store + entry[i] * V, V * sizeof *out);
done:
    free(entry);
    free(mptr);
    free(mlen);
    return st;
}

static plm_status cache_tokenize(plm_lm *lm, plm_ctx *ctx, const char *text, size_t len, plm_token *out, size_t cap,
                                 size_t *n_out)
{
    plm_lm *in = ((cache_impl *)lm->impl)->inner;
    return in->ops->tokenize(in, ctx, text, len, out, cap, n_out);
}

static plm_status cache_score(plm_lm *lm, plm_ctx *ctx, const plm_token *p, size_t np, const plm_token *cn, size_t nc,
                              double *out)
{
    plm_lm *in = ((cache_impl *)lm->impl)->inner;
    return in->ops->score(in, ctx, p, np, cn, nc, out);
}

static uint64_t cache_state_key(plm_lm *lm, const plm_token *toks, size_t len)
{
    plm_lm *in = ((cache_impl *)lm->impl)->inner;
    return in->ops->state_key(in, toks, len);
}

static plm_status cache_seq_new(plm_lm *lm, plm_ctx *ctx, int *seq)
{
    plm_lm *in = ((cache_impl *)lm->impl)->inner;
    return in->ops->seq_new(in, ctx, seq);
}

static plm_status cache_seq_fork(plm_lm *lm, plm_ctx *ctx, int src, int *dst)
{
    plm_lm *in = ((cache_impl *)lm->impl)->inner;
    return in->ops->seq_fork(in, ctx, src, dst);
}

static void cache_seq_free(plm_lm *lm, int seq)
{
    plm_lm *in = ((cache_impl *)lm->impl)->inner;
    in->ops->seq_free(in, seq);
}

static plm_status cache_seq_extend(plm_lm *lm, plm_ctx *ctx, size_t n, const int *seqs, const plm_token *const *toks,
                                   const size_t *lens, double *out)
{
    plm_lm *in = ((cache_impl *)lm->impl)->inner;
    return in->ops->seq_extend(in, ctx, n, seqs, toks, lens, out);
}

static void cache_destroy(plm_lm *lm)
{
    cache_impl *c = lm->impl;
    plm_lm_free(c->inner);
    plm_u64map_free(&c->trie);
    plm_u64map_free(&c->states);
    free(c->node_entry);
    free(c->store);
    free(c);
}

plm_lm *plm_lm_cache_new(plm_ctx *ctx, plm_lm *inner, size_t max_bytes)
{
    cache_impl *c = calloc(1, sizeof *c);
    plm_lm *lm = NULL;
    size_t V = (size_t)inner->n_vocab;
    if (!max_bytes) max_bytes = (size_t)256 << 20;
    if (c) c->node_entry = malloc(1024 * sizeof *c->node_entry);
    if (!c || !c->node_entry || plm_u64map_init(&c->trie, 1024) || plm_u64map_init(&c->states, 64) ||
        !(lm = calloc(1, sizeof *lm))) {
        if (c) {
            plm_u64map_free(&c->trie);
            plm_u64map_free(&c->states);
            free(c->node_entry);
        }
        free(c);
        plm_lm_free(inner);
        plm_fail(ctx, PLM_ENOMEM, "lm cache: out of memory");
        return NULL;
    }
    c->cap_nodes = 1024;
    c->inner = inner;
    c->max_entries = max_bytes / (V * sizeof(double));
    if (c->max_entries < 1) c->max_entries = 1;
    cache_clear(c);
    c->ops.name = "cache";
    c->ops.next_logprobs = cache_next_logprobs;
    c->ops.tokenize = cache_tokenize;
    c->ops.score = inner->ops->score ? cache_score : NULL;
    c->ops.state_key = inner->ops->state_key ? cache_state_key : NULL;
    if (inner->ops->seq_new) {
        c->ops.seq_new = cache_seq_new;
        c->ops.seq_fork = cache_seq_fork;
        c->ops.seq_free = cache_seq_free;
        c->ops.seq_extend = cache_seq_extend;
    }
    c->ops.destroy = cache_destroy;
    *lm = *inner;   /* the vocabulary and limits are the inner backend's */
    lm->ops = &c->ops;
    lm->impl = c;
    lm->seqs = NULL;
    lm->n_seqs = 0;
    lm->borrowed_vocab = 1;
    return lm;
}

plm_lm *plm_lm_cache_inner(const plm_lm *lm)
{
    return strcmp(lm->ops->name, "cache") == 0 ? ((const cache_impl *)lm->impl)->inner : NULL;
}

void plm_lm_cache_stats(const plm_lm *lm, size_t *hits, size_t *misses)
{
    const cache_impl *c = strcmp(lm->ops->name, "cache") == 0 ? lm->impl : NULL;
    if (hits) *hits = c ? c->hits : 0;
    if (misses) *misses = c ? c->misses : 0;
}

/* ---- the native callback backend ---- */

typedef struct native_impl {
    plm_lm_native_fns fns;
    void *user;
} native_impl;

static plm_status native_next_logprobs(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks,
                                       const size_t *lens, double *out)
{
    native_impl *nt = lm->impl;
    size_t i, V = (size_t)lm->n_vocab;
    int rc = nt->fns.next_logprobs(nt->user, n, toks, lens, out);
    if (rc) return plm_fail(ctx, PLM_ERUNTIME, "native lm: next_logprobs callback failed (returned %d)", rc);
    /* the callee may return unnormalised scores; a row with no finite entry is the callee's error */
    for (i = 0; i < n; i++)
        if (plm_lm_lognormalise(out + i * V, V) == -INFINITY)
            return plm_fail(ctx, PLM_ERUNTIME, "native lm: context %zu got no token with finite log-probability", i + 1);
    return PLM_OK;
}

/* Greedy longest match over the token bytes: right for byte-level vocabularies and a fair default otherwise. */
static plm_status native_tokenize(plm_lm *lm, plm_ctx *ctx, const char *text, size_t len, plm_token *out, size_t cap,
                                  size_t *n_out)
{
    size_t pos = 0, k = 0;
    while (pos < len) {
        int v, best = -1;
        size_t bestlen = 0;
        for (v = 0; v < lm->n_vocab; v++) {
            size_t tl = lm->tok_len[v];
            if (tl > bestlen && tl <= len - pos && memcmp(lm->tok_bytes[v], text + pos, tl) == 0) {
                best = v;
                bestlen = tl;
            }
        }
        if (best < 0)
            return plm_fail(ctx, PLM_EDOM, "native lm: no token matches the text at byte %zu", pos + 1);
        if (k < cap) out[k] = best;
        k++;
        pos += bestlen;
    }
    *n_out = k;
    return PLM_OK;
}

static void native_destroy(plm_lm *lm)
{
    native_impl *nt = lm->impl;
    if (nt->fns.destroy) nt->fns.destroy(nt->user);
    free(nt);
}

static const plm_lm_ops native_ops = {
    "native", native_next_logprobs, native_tokenize, NULL, NULL, NULL, NULL, NULL, NULL, native_destroy, NULL, NULL,
};

plm_lm *plm_lm_native_new(plm_ctx *ctx, const plm_lm_native_fns *fns, void *user, int n_vocab, plm_token bos,
                          const plm_token *eos, int n_eos)
{
    native_impl *nt;
    plm_lm *lm;
    int v;
    if (!fns || !fns->next_logprobs || !fns->token_bytes) {
        plm_fail(ctx, PLM_EINVAL, "native lm: next_logprobs and token_bytes callbacks are required");
        return NULL;
    }
    if (n_vocab < 1 || bos >= n_vocab || n_eos < 0) {
        plm_fail(ctx, PLM_EINVAL, "native lm: bad vocabulary (n_vocab %d, bos %d, %d eos ids)", n_vocab, (int)bos, n_eos);
        return NULL;
    }
    for (v = 0; v < n_eos; v++)
        if (eos[v] < 0 || eos[v] >= n_vocab) {
            plm_fail(ctx, PLM_EINVAL, "native lm: eos id %d is out of range 0..%d", (int)eos[v], n_vocab - 1);
            return NULL;
        }
    nt = calloc(1, sizeof *nt);
    lm = nt ? plm_lm_alloc(&native_ops, nt, n_vocab) : NULL;
    if (lm) lm->eos = malloc((size_t)(n_eos ? n_eos : 1) * sizeof *lm->eos);
    if (!lm || !lm->eos) {
        if (lm) plm_lm_free(lm);   /* destroy frees nt; the user's destroy is not called: we do not own user yet */
        else free(nt);
        plm_fail(ctx, PLM_ENOMEM, "native lm: out of memory");
        return NULL;
    }
    nt->fns = *fns;
    nt->user = user;
    lm->bos = bos;
    lm->n_eos = n_eos;
    if (n_eos) memcpy(lm->eos, eos, (size_t)n_eos * sizeof *eos);
    for (v = 0; v < n_vocab; v++) {
        size_t len = 0;
        const char *b = fns->token_bytes(user, v, &len);
        if (plm_lm_set_token(lm, ctx, v, b ? b : "", b ? len : 0)) {
            nt->fns.destroy = NULL;
            plm_lm_free(lm);
            return NULL;
        }
    }
    return lm;
}
