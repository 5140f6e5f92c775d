/* lm_gguf.h -- a writer of tiny llama-architecture GGUF files with random f32 weights and a byte-level
** tokenizer (256 byte tokens, then BOS 256 and EOS 257; BPE with no merges), so tests, examples and benchmarks
** run a real transformer through llama.cpp without downloading weights. */
#ifndef PLM_LM_GGUF_H
#define PLM_LM_GGUF_H

#include <stdint.h>

#include "ctx.h"

typedef struct plm_gguf_tiny_opts {
    int n_embd;       /* model width (default 64); a multiple of n_head, with an even head size */
    int n_layer;      /* transformer blocks (default 2) */
    int n_head;       /* attention heads (default 4) */
    int n_ff;         /* feed-forward width (default 4 * n_embd) */
    int ctx;          /* training context length written to the file (default 512) */
    uint64_t seed;    /* weights are a function of the seed (default 1) */
} plm_gguf_tiny_opts;

/* Fill *o with the defaults above. */
void plm_gguf_tiny_defaults(plm_gguf_tiny_opts *o);

/* Write the model to path. Errors: PLM_EINVAL for inconsistent sizes, PLM_EIO when the file cannot be written.
** *n_params (may be NULL) receives the number of weights. */
plm_status plm_gguf_write_tiny(plm_ctx *ctx, const char *path, const plm_gguf_tiny_opts *o, uint64_t *n_params);

#endif
