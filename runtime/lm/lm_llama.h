/* lm_llama.h -- llama.cpp in process as a plm_lm backend. libllama is opened with dlopen at run time (plume has
** no link-time dependency on it): PLUME_LLAMA_LIB names the library file, else the copy scripts/deps.sh puts in
** build/llama/lib, else the system's libllama.so. Each plume sequence is a llama.cpp KV sequence in one unified
** KV cache: forks copy cells (nothing is re-evaluated) and one llama_decode serves every sequence extended
** together. */
#ifndef PLM_LM_LLAMA_H
#define PLM_LM_LLAMA_H

#include "lm.h"

/* The llama.cpp release plume's llama.h came from; a library reporting another llama_version() is refused. */
#define PLM_LLAMA_WANT_VERSION "0.4.0"

typedef struct plm_llama_opts {
    const char *model;   /* path of a GGUF file (required) */
    int ctx;             /* KV cells shared by all sequences (default 4096, at most the model's training context
                            per sequence) */
    int seqs;            /* sequences that may be live at once (default 64) */
    int threads;         /* CPU threads for llama_decode (0: plm_default_threads()) */
    int split_kv;        /* 0 (default): one KV cache shared by all sequences -- a fork shares the prefix's cells,
                            but every token attends over all cells in use; 1: each sequence has its own ctx/seqs
                            cells -- a fork copies the KV buffer, attention sees only the sequence's own cells
                            (faster for many particles with short texts) */
    int no_prefix_reuse; /* 1: stateless calls (plm_lm_next_logprobs) evaluate every context from scratch; by
                            default each starts from the cached context with the longest common prefix */
} plm_llama_opts;

/* Load the library (once) and the model. Errors: PLM_ENOTSUP when libllama cannot be loaded or is another
** version (the message says which file and what to do), PLM_EIO for a missing model file, PLM_EPARSE when
** llama.cpp rejects it. The plm_lm is freed with plm_lm_free. */
plm_status plm_llama_new(plm_ctx *ctx, const plm_llama_opts *opts, plm_lm **out);

/* Work done inside llama_decode so far: calls, tokens and wall-clock seconds -- so that a scheduler can report
** its own per-token overhead apart from the model's. Returns 0 (and zeros) when lm is not a llama backend (or a
** cache in front of one). */
typedef struct plm_llama_stats {
    long decode_calls, decode_tokens;
    double decode_seconds;
} plm_llama_stats;
int plm_llama_get_stats(const plm_lm *lm, plm_llama_stats *out);

/* 1 when libllama can be loaded and has the right version; otherwise 0 and the reason in ctx (may be NULL). */
int plm_llama_available(plm_ctx *ctx);

#endif
