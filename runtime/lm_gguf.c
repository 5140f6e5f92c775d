/* lm_gguf.c -- GGUF version 3, written by hand: header, key-value metadata, tensor descriptors, then the tensor
** data, each tensor aligned to 32 bytes from the start of the data section (the GGUF default alignment). */
#include "lm_gguf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

enum { GG_U32 = 4, GG_I32 = 5, GG_F32 = 6, GG_BOOL = 7, GG_STR = 8, GG_ARR = 9 };
#define GG_ALIGN 32
#define N_VOCAB 258

void plm_gguf_tiny_defaults(plm_gguf_tiny_opts *o)
{
    o->n_embd = 64;
    o->n_layer = 2;
    o->n_head = 4;
    o->n_ff = 0;
    o->ctx = 512;
    o->seed = 1;
}

static void w_u32(FILE *f, uint32_t x) { fwrite(&x, 4, 1, f); }
static void w_u64(FILE *f, uint64_t x) { fwrite(&x, 8, 1, f); }
static void w_str(FILE *f, const char *s, size_t n)
{
    w_u64(f, n);
    fwrite(s, 1, n, f);
}
static void kv_key(FILE *f, const char *k, uint32_t type)
{
    w_str(f, k, strlen(k));
    w_u32(f, type);
}
static void kv_u32(FILE *f, const char *k, uint32_t v)
{
    kv_key(f, k, GG_U32);
    w_u32(f, v);
}
static void kv_f32(FILE *f, const char *k, float v)
{
    kv_key(f, k, GG_F32);
    fwrite(&v, 4, 1, f);
}
static void kv_string(FILE *f, const char *k, const char *v)
{
    kv_key(f, k, GG_STR);
    w_str(f, v, strlen(v));
}

/* GPT-2's byte <-> unicode map: printable bytes stand for themselves, the others for code points 256.. in
** order. llama.cpp's BPE vocabularies spell byte tokens this way. Writes the UTF-8 of byte b's character. */
static size_t byte_token_text(int b, char *out)
{
    int cp, n = 0, i;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        cp = b;
    else {
        for (i = 0; i < b; i++)
            if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

typedef struct tensor {
    char name[64];
    int nd;
    uint64_t ne[2];
    double sd;   /* weights ~ normal(0, sd); sd 0 means all ones (norm weights) */
} tensor;

plm_status plm_gguf_write_tiny(plm_ctx *ctx, const char *path, const plm_gguf_tiny_opts *opts, uint64_t *n_params)
{
    plm_gguf_tiny_opts o;
    tensor *T;
    int nt = 0, i, L;
    uint64_t off = 0, total = 0;
    FILE *f;
    plm_rng rng;
    float *buf;
    long pos;
    if (opts) o = *opts;
    else plm_gguf_tiny_defaults(&o);
    /* each size against its limit before any arithmetic on it: 4 * n_embd overflowed an int at n_embd = 1e9 */
    if (o.n_embd < 2 || o.n_embd > 16384)
        return plm_fail(ctx, PLM_EINVAL, "write_tiny_gguf: n_embd must be in 2..16384 (got %d)", o.n_embd);
    if (o.n_layer < 1 || o.n_layer > 256)
        return plm_fail(ctx, PLM_EINVAL, "write_tiny_gguf: n_layer must be in 1..256 (got %d)", o.n_layer);
    if (o.n_head < 1 || o.n_head > o.n_embd)
        return plm_fail(ctx, PLM_EINVAL, "write_tiny_gguf: n_head must be in 1..n_embd (got %d, n_embd %d)", o.n_head,
                        o.n_embd);
    if (o.n_ff == 0) o.n_ff = 4 * o.n_embd;
    if (o.n_ff < 1 || o.n_ff > 65536)
        return plm_fail(ctx, PLM_EINVAL, "write_tiny_gguf: n_ff must be in 1..65536 (got %d)", o.n_ff);
    if (o.ctx < 1 || o.ctx > 1 << 24)
        return plm_fail(ctx, PLM_EINVAL, "write_tiny_gguf: ctx must be in 1..16777216 (got %d)", o.ctx);
    if (o.n_embd % o.n_head || (o.n_embd / o.n_head) % 2)
        return plm_fail(ctx, PLM_EINVAL, "write_tiny_gguf: n_embd (%d) must be n_head (%d) times an even head size",
                        o.n_embd, o.n_head);
    L = o.n_layer;
    T = calloc((size_t)(3 + 9 * L), sizeof *T);
    buf = malloc(65536 * sizeof *buf);
    if (!T || !buf) {
        free(T);
        free(buf);
        return plm_fail(ctx, PLM_ENOMEM, "write_tiny_gguf: out of memory");
    }
#define ADD(nm, d0, d1, s)                                                                                             \
    do {                                                                                                               \
        snprintf(T[nt].name, sizeof T[nt].name, "%s", nm);                                                            \
        T[nt].ne[0] = (uint64_t)(d0);                                                                                  \
        T[nt].ne[1] = (uint64_t)(d1);                                                                                  \
        T[nt].nd = (d1) > 0 ? 2 : 1;                                                                                   \
        if (!(d1)) T[nt].ne[1] = 1;                                                                                    \
        T[nt].sd = (s);                                                                                                \
        nt++;                                                                                                          \
    } while (0)
    /* scales: unit embeddings (RMS-normed anyway), 1/sqrt(fan_in) in the blocks so activations neither blow up
    ** nor vanish, and an output layer wide enough that next-token distributions are far from uniform */
    ADD("token_embd.weight", o.n_embd, N_VOCAB, 1.0);
    ADD("output_norm.weight", o.n_embd, 0, 0.0);
    ADD("output.weight", o.n_embd, N_VOCAB, 2.0 / sqrt(o.n_embd));
    for (i = 0; i < L; i++) {
        char nm[64];
        double se = 1.0 / sqrt(o.n_embd), sf = 1.0 / sqrt(o.n_ff);
#define BLK(suffix, d0, d1, s)                                                                                         \
    do {                                                                                                               \
        snprintf(nm, sizeof nm, "blk.%d.%s", i, suffix);                                                              \
        ADD(nm, d0, d1, s);                                                                                            \
    } while (0)
        BLK("attn_norm.weight", o.n_embd, 0, 0.0);
        BLK("attn_q.weight", o.n_embd, o.n_embd, se);
        BLK("attn_k.weight", o.n_embd, o.n_embd, se);
        BLK("attn_v.weight", o.n_embd, o.n_embd, se);
        BLK("attn_output.weight", o.n_embd, o.n_embd, se);
        BLK("ffn_norm.weight", o.n_embd, 0, 0.0);
        BLK("ffn_gate.weight", o.n_embd, o.n_ff, se);
        BLK("ffn_down.weight", o.n_ff, o.n_embd, sf);
        BLK("ffn_up.weight", o.n_embd, o.n_ff, se);
#undef BLK
    }
#undef ADD
    if (!(f = fopen(path, "wb"))) {
        free(T);
        free(buf);
        return plm_fail(ctx, PLM_EIO, "write_tiny_gguf: cannot write '%s': %s", path, strerror(errno));
    }
    fwrite("GGUF", 1, 4, f);
    w_u32(f, 3);
    w_u64(f, (uint64_t)nt);
    w_u64(f, 20);   /* the number of key-value pairs below */
    kv_string(f, "general.architecture", "llama");
    kv_string(f, "general.name", "plume-tiny-random");
    kv_u32(f, "general.file_type", 0);   /* all f32 */
    kv_u32(f, "llama.context_length", (uint32_t)o.ctx);
    kv_u32(f, "llama.embedding_length", (uint32_t)o.n_embd);
    kv_u32(f, "llama.block_count", (uint32_t)L);
    kv_u32(f, "llama.feed_forward_length", (uint32_t)o.n_ff);
    kv_u32(f, "llama.attention.head_count", (uint32_t)o.n_head);
    kv_u32(f, "llama.attention.head_count_kv", (uint32_t)o.n_head);
    kv_f32(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_f32(f, "llama.rope.freq_base", 10000.0f);
    kv_u32(f, "llama.vocab_size", N_VOCAB);
    kv_string(f, "tokenizer.ggml.model", "gpt2");
    kv_string(f, "tokenizer.ggml.pre", "default");
    kv_key(f, "tokenizer.ggml.tokens", GG_ARR);
    w_u32(f, GG_STR);
    w_u64(f, N_VOCAB);
    for (i = 0; i < 256; i++) {
        char s[4];
        w_str(f, s, byte_token_text(i, s));
    }
    w_str(f, "<s>", 3);
    w_str(f, "</s>", 4);
    kv_key(f, "tokenizer.ggml.token_type", GG_ARR);
    w_u32(f, GG_I32);
    w_u64(f, N_VOCAB);
    for (i = 0; i < N_VOCAB; i++) w_u32(f, i < 256 ? 1 : 3);   /* normal, then control */
    kv_key(f, "tokenizer.ggml.merges", GG_ARR);
    w_u32(f, GG_STR);
    w_u64(f, 0);
    kv_u32(f, "tokenizer.ggml.bos_token_id", 256);
    kv_u32(f, "tokenizer.ggml.eos_token_id", 257);
    kv_key(f, "tokenizer.ggml.add_bos_token", GG_BOOL);
    fputc(1, f);
    for (i = 0; i < nt; i++) {
        uint64_t bytes = T[i].ne[0] * T[i].ne[1] * 4;
        w_str(f, T[i].name, strlen(T[i].name));
        w_u32(f, (uint32_t)T[i].nd);
        w_u64(f, T[i].ne[0]);
        if (T[i].nd == 2) w_u64(f, T[i].ne[1]);
        w_u32(f, 0);   /* GGML_TYPE_F32 */
        w_u64(f, off);
        off += (bytes + GG_ALIGN - 1) / GG_ALIGN * GG_ALIGN;
        total += T[i].ne[0] * T[i].ne[1];
    }
    pos = ftell(f);
    while (pos % GG_ALIGN) {
        fputc(0, f);
        pos++;
    }
    plm_rng_init(&rng, o.seed, 0);
    for (i = 0; i < nt; i++) {
        uint64_t n = T[i].ne[0] * T[i].ne[1], done = 0, bytes = n * 4;
        while (done < n) {
            size_t k, m = n - done < 65536 ? (size_t)(n - done) : 65536;
            for (k = 0; k < m; k++) buf[k] = T[i].sd == 0 ? 1.0f : (float)(T[i].sd * plm_rng_normal(&rng));
            fwrite(buf, 4, m, f);
            done += m;
        }
        for (; bytes % GG_ALIGN; bytes++) fputc(0, f);
    }
    free(T);
    free(buf);
    if (ferror(f) | fclose(f)) return plm_fail(ctx, PLM_EIO, "write_tiny_gguf: error writing '%s'", path);
    if (n_params) *n_params = total;
    return PLM_OK;
}
