/* lm_gguf.h -- GGUF files: a validator that checks a file's structure before llama.cpp reads it (llama.cpp
** asserts, and so kills the process, on some corrupt files, and says only "failed to load model" on others),
** and a writer of tiny llama-architecture GGUF files with random f32 weights and a byte-level tokenizer (256
** byte tokens, then BOS 256 and EOS 257; BPE with no merges), so tests, examples and benchmarks run a real
** transformer through llama.cpp without downloading weights. */
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

/* The bytes of a tensor of the given ggml type and shape (ne[0..nd)), or 0 when the type is unknown or the
** row length is not a multiple of the type's block. */
typedef uint64_t (*plm_gguf_tensor_bytes)(uint32_t type, const uint64_t *ne, int nd);

/* Check the GGUF file at path: magic and version (2 or 3); counts bounded by the file size; every key-value
** pair and string inside the file with a known type, keys unique; tensor descriptors with 1..4 dimensions,
** names unique and shorter than 64 bytes, element counts that fit 63 bits, data aligned and inside the file;
** a vocabulary (tokenizer.ggml.tokens, an array of strings) whose tokens are unique, with token_type and
** scores arrays of the same length when present, and for byte-level BPE ("gpt2") vocabularies every normal
** token spelled in GPT-2's byte alphabet. tensor_bytes sizes tensors (NULL: f32, f16, bf16 and f64 only).
** Returns PLM_OK, PLM_EIO when the file cannot be read, or PLM_EPARSE with a message that starts with the
** path and says what is wrong: "m.gguf: tensor 'blk.0.attn_q.weight' data runs past the end of the file
** (offset 1024, size 16384, file 9000)". The file is mapped, not read: checking a 4 GB model reads only its
** header and vocabulary. */
plm_status plm_gguf_check(plm_ctx *ctx, const char *path, plm_gguf_tensor_bytes tensor_bytes);

#endif
