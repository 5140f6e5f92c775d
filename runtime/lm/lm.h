/* lm.h -- the language-model backend interface: a vocabulary of byte strings, and full normalised next-token
** log-probabilities for many contexts in one call; optional KV sequences (fork/extend/free) so that a scheduler
** evaluates a shared prompt once and serves every live particle's next token with one batched call.
** Token ids are 0-based. A context is the token list after the backend's start of text: it never contains BOS
** (the backend prepends its start state itself). plm_lm objects are malloc-owned: plm_lm_free releases them.
** An plm_lm is used by one thread at a time (the scheduler's); backends may use threads inside a call. */
#ifndef PLM_LM_H
#define PLM_LM_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

typedef int32_t plm_token;
typedef struct plm_lm plm_lm;

/* What a backend implements. next_logprobs and tokenize are required; every other entry may be NULL.
** Callers use the plm_lm_* functions below, never these pointers directly. */
typedef struct plm_lm_ops {
    const char *name;   /* "ngram", "llama", "native", "cache" */
    /* out[i * n_vocab + v] = log p(v | contexts[i]) for i < n: normalised over the whole vocabulary. */
    plm_status (*next_logprobs)(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks, const size_t *lens,
                                double *out);
    /* Tokenize len bytes: up to cap ids into out, the full count into *n_out (so a short cap can be retried). */
    plm_status (*tokenize)(plm_lm *lm, plm_ctx *ctx, const char *text, size_t len, plm_token *out, size_t cap,
                           size_t *n_out);
    /* out[j] = log p(cont[j] | prompt, cont[0..j-1]) for j < nc, in one pass. */
    plm_status (*score)(plm_lm *lm, plm_ctx *ctx, const plm_token *prompt, size_t np, const plm_token *cont, size_t nc,
                        double *out);
    /* Markov backends: a key such that equal keys mean equal next-token distributions (0: no key). */
    uint64_t (*state_key)(plm_lm *lm, const plm_token *toks, size_t len);
    /* KV sequences (all or none): seq_new gives an empty sequence (start of text), seq_fork a copy of src,
    ** seq_extend appends toks[i] to seqs[i] for i < n and, when out is not NULL, writes each sequence's
    ** next-token log-probabilities (n x n_vocab) -- one batched evaluation for all of them. */
    plm_status (*seq_new)(plm_lm *lm, plm_ctx *ctx, int *seq);
    plm_status (*seq_fork)(plm_lm *lm, plm_ctx *ctx, int src, int *dst);
    void (*seq_free)(plm_lm *lm, int seq);
    plm_status (*seq_extend)(plm_lm *lm, plm_ctx *ctx, size_t n, const int *seqs, const plm_token *const *toks,
                             const size_t *lens, double *out);
    void (*destroy)(plm_lm *lm);   /* release impl (not the plm_lm itself, nor the token table) */
    /* The model's last hidden state after each context (for learned twists): hidden_dim() numbers per context,
    ** out[i * dim + k]. Optional (both or neither). */
    int (*hidden_dim)(plm_lm *lm);
    plm_status (*hidden)(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks, const size_t *lens,
                         double *out);
} plm_lm_ops;

/* A token sequence's bookkeeping in the generic layer (lm.c keeps the tokens of every live sequence). */
typedef struct plm_lm_seqrec {
    plm_token *toks;
    size_t len, cap;
    int backend;   /* the backend's sequence handle, -1 when the backend has no KV sequences */
    int live;
} plm_lm_seqrec;

struct plm_lm {
    const plm_lm_ops *ops;
    void *impl;
    int n_vocab;
    plm_token bos;           /* -1 when the backend has none */
    plm_token *eos;          /* the end-of-text ids (malloc'd) */
    int n_eos;
    char **tok_bytes;        /* tok_bytes[v]: the bytes of token v (malloc'd, may contain NULs) */
    size_t *tok_len;         /* their lengths; control tokens (BOS, EOS) have length 0 */
    size_t max_ctx;          /* longest context the backend accepts, BOS included (0: unbounded) */
    int lead_space;          /* token bytes start with a space that detokenize drops at the start of text */
    int borrowed_vocab;      /* tok_bytes/eos belong to another plm_lm (a cache's inner backend) */
    plm_lm_seqrec *seqs;     /* generic sequence table (see plm_lm_seq_*) */
    int n_seqs;
};

/* Allocate a plm_lm with n_vocab empty token entries, for backends to fill. NULL when out of memory. */
plm_lm *plm_lm_alloc(const plm_lm_ops *ops, void *impl, int n_vocab);
/* Set the bytes of token v (copied). Returns PLM_ENOMEM or PLM_OK. */
plm_status plm_lm_set_token(plm_lm *lm, plm_ctx *ctx, int v, const char *bytes, size_t len);
/* Release lm, its backend and its sequences. NULL is allowed. */
void plm_lm_free(plm_lm *lm);

/* 1 when tok is one of the backend's EOS ids. */
int plm_lm_is_eos(const plm_lm *lm, plm_token tok);
/* The backend's name ("ngram", ...); a cache reports its inner backend's name. */
const char *plm_lm_name(const plm_lm *lm);

/* Batched next-token log-probabilities: out (caller-owned, n * n_vocab doubles) row i is the distribution after
** contexts toks[i] (lens[i] tokens). Errors: a token id out of range, a context longer than the model's. */
plm_status plm_lm_next_logprobs(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks, const size_t *lens,
                                double *out);

/* The size of the model's last hidden state, 0 when the backend gives none (a cache asks its inner backend). */
int plm_lm_hidden_dim(plm_lm *lm);
/* out (n * plm_lm_hidden_dim, caller-owned) row i: the last hidden state after contexts toks[i] (lens[i] tokens).
** PLM_ENOTSUP when the backend gives none. */
plm_status plm_lm_hidden(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks, const size_t *lens,
                         double *out);

/* Tokenize: as the ops entry (out may be NULL with cap 0 to ask for the count). */
plm_status plm_lm_tokenize(plm_lm *lm, plm_ctx *ctx, const char *text, size_t len, plm_token *out, size_t cap,
                           size_t *n_out);
/* Detokenize: the concatenated token bytes into out (up to cap bytes), the full length into *n_out. Backends
** with a leading-space convention (ngram) drop the first byte when it is that space. */
plm_status plm_lm_detokenize(const plm_lm *lm, plm_ctx *ctx, const plm_token *toks, size_t n, char *out, size_t cap,
                             size_t *n_out);

/* Per-token log-probabilities of cont after prompt: out[j] for j < nc (caller-owned). Uses the backend's score
** when it has one, otherwise one batched next_logprobs call over the nc prefixes. */
plm_status plm_lm_score(plm_lm *lm, plm_ctx *ctx, const plm_token *prompt, size_t np, const plm_token *cont, size_t nc,
                        double *out);

/* Sequences, for schedulers: every backend has them. With KV support they map onto the backend's sequences
** (a fork copies the KV cache, nothing is re-evaluated); otherwise lm.c keeps the tokens and serves extend
** with one batched next_logprobs call. Handles are small non-negative ints, valid until plm_lm_seq_free. */
plm_status plm_lm_seq_new(plm_lm *lm, plm_ctx *ctx, int *seq);
plm_status plm_lm_seq_fork(plm_lm *lm, plm_ctx *ctx, int src, int *dst);
void plm_lm_seq_free(plm_lm *lm, int seq);
/* Append toks[i] (lens[i] >= 0 tokens) to seqs[i] for all i < n (distinct handles), then, when out is not NULL,
** write each sequence's next-token log-probabilities into out (n x n_vocab, caller-owned). */
plm_status plm_lm_seq_extend(plm_lm *lm, plm_ctx *ctx, size_t n, const int *seqs, const plm_token *const *toks,
                             const size_t *lens, double *out);
/* The tokens of a live sequence (owned by lm, valid until the next call on that sequence) and its length. */
const plm_token *plm_lm_seq_tokens(const plm_lm *lm, int seq, size_t *len);

/* A result cache in front of inner (which it then owns): next-token distributions keyed by token prefix in a
** trie (or by state_key for Markov backends), shared by every caller of the returned lm. Misses of one call are
** sent to inner as one batched call. max_bytes bounds the stored distributions (0: 256 MiB); when full the
** cache is emptied between calls. Sequences pass through to inner (its KV cache is the cache there).
** Returns NULL (message in ctx) when out of memory; inner is then freed. */
plm_lm *plm_lm_cache_new(plm_ctx *ctx, plm_lm *inner, size_t max_bytes);
/* The backend behind a cache (NULL when lm is not a cache). */
plm_lm *plm_lm_cache_inner(const plm_lm *lm);
/* Hits and misses so far (NULL pointers allowed); 0 when lm is not a cache. */
void plm_lm_cache_stats(const plm_lm *lm, size_t *hits, size_t *misses);

/* Native backends: a host program supplies the two required functions; plume owns nothing of user. */
typedef struct plm_lm_native_fns {
    /* out[i*n_vocab + v]: log-probabilities (normalised by the callee, or unnormalised: plume normalises). */
    int (*next_logprobs)(void *user, size_t n, const plm_token *const *toks, const size_t *lens, double *out);
    /* Bytes of token v; *len receives the length. NULL for control tokens. */
    const char *(*token_bytes)(void *user, int v, size_t *len);
    void (*destroy)(void *user);   /* may be NULL */
} plm_lm_native_fns;
/* A backend over host callbacks: n_vocab tokens, bos (-1: none), eos ids. Tokenize is greedy longest-match over
** the token bytes. A callback returning non-zero fails the call with PLM_ERUNTIME. NULL on error (ctx). */
plm_lm *plm_lm_native_new(plm_ctx *ctx, const plm_lm_native_fns *fns, void *user, int n_vocab, plm_token bos,
                          const plm_token *eos, int n_eos);

/* What a shared library's init function fills for plume.lm.native{ lib =, symbol = }: plume calls
** `int symbol(const char *arg, plm_lm_native_spec *spec)` (through libffi) and then plm_lm_native_new with it.
** eos must stay valid during the call; the library stays loaded for the life of the process. */
typedef struct plm_lm_native_spec {
    plm_lm_native_fns fns;
    void *user;
    int n_vocab;
    plm_token bos;
    const plm_token *eos;
    int n_eos;
} plm_lm_native_spec;

/* Normalise a row of n log-weights in place so that its logsumexp is 0; returns the log of the old sum
** (-inf when every entry is -inf, and then the row is left as it was). NaN entries become -inf. */
double plm_lm_lognormalise(double *x, size_t n);

#endif
