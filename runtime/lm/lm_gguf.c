/* lm_gguf.c -- GGUF version 3, written by hand: header, key-value metadata, tensor descriptors, then the tensor
** data, each tensor aligned to 32 bytes from the start of the data section (the GGUF default alignment). */
#include "lm_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- Validation ---------------------------------------------------------------------------------------- */

enum { GG_U8 = 0, GG_I8 = 1, GG_U16 = 2, GG_I16 = 3, GG_U64 = 10, GG_I64 = 11, GG_F64 = 12, GG_NTYPES = 13 };

/* A cursor over the mapped file. Every read checks the bytes left, so nothing past the end is touched. */
typedef struct rd {
    const unsigned char *p;
    size_t size, pos;
    plm_ctx *ctx;
    const char *path;
} rd;

static plm_status bad(rd *r, const char *fmt, ...)
{
    char what[PLM_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return plm_fail(r->ctx, PLM_EPARSE, "%s: %s", r->path, what);
}

static int rd_bytes(rd *r, size_t n, const unsigned char **out)
{
    if (n > r->size - r->pos) return 0;
    *out = r->p + r->pos;
    r->pos += n;
    return 1;
}

static int rd_u32(rd *r, uint32_t *x)
{
    const unsigned char *b;
    if (!rd_bytes(r, 4, &b)) return 0;
    memcpy(x, b, 4);
    return 1;
}

static int rd_u64(rd *r, uint64_t *x)
{
    const unsigned char *b;
    if (!rd_bytes(r, 8, &b)) return 0;
    memcpy(x, b, 8);
    return 1;
}

/* A GGUF string: u64 length, then the bytes. */
static int rd_str(rd *r, const char **s, uint64_t *len)
{
    const unsigned char *b;
    if (!rd_u64(r, len) || *len > r->size - r->pos || !rd_bytes(r, (size_t)*len, &b)) return 0;
    *s = (const char *)b;
    return 1;
}

static size_t scalar_size(uint32_t t)
{
    static const unsigned char sz[GG_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GG_NTYPES ? sz[t] : 0;
}

/* "key" for messages: printable ASCII kept, the rest as '?', at most 60 bytes. */
static const char *shown(const char *s, uint64_t len, char *buf)
{
    size_t i, n = len < 60 ? (size_t)len : 60;
    for (i = 0; i < n; i++) buf[i] = s[i] >= 32 && s[i] < 127 ? s[i] : '?';
    if (len > 60) memcpy(buf + n, "...", 3), n += 3;
    buf[n] = 0;
    return buf;
}

/* A string (offset in the file, length) with its hash, for duplicate checks by sorting. */
typedef struct span {
    uint64_t hash;
    const unsigned char *s;   /* the bytes, in the mapped file */
    size_t off, len, index;
} span;

static uint64_t fnv1a(const unsigned char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    int c;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    c = memcmp(x->s, y->s, x->len);
    if (c) return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The first pair of equal strings, or 0. Sorting by (hash, bytes, index) puts equal strings side by side,
** the earlier one first. */
static int first_duplicate(const unsigned char *base, span *s, size_t n, size_t *i1, size_t *i2)
{
    size_t k;
    int found = 0;
    for (k = 0; k < n; k++) s[k].s = base + s[k].off;
    qsort(s, n, sizeof *s, span_cmp);
    for (k = 1; k < n; k++)
        if (s[k].hash == s[k - 1].hash && s[k].len == s[k - 1].len &&
            memcmp(base + s[k].off, base + s[k - 1].off, s[k].len) == 0) {
            if (!found || s[k - 1].index < *i1 || (s[k - 1].index == *i1 && s[k].index < *i2))
                *i1 = s[k - 1].index, *i2 = s[k].index;
            found = 1;
        }
    return found;
}

/* Is s (n bytes) well-formed UTF-8 made only of GPT-2's byte characters (the code points that stand for
** the 256 bytes: the printable ranges 33-126, 161-172, 174-255 for themselves, 256-323 for the others)? */
static int gpt2_text(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        if (s[i] < 0x80)
            cp = s[i++];
        else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
            if (cp < 0x80) return 0;
            i += 2;
        } else
            return 0;   /* the byte alphabet needs no code point above 323, so no 3- or 4-byte forms */
        if (!((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 323))) return 0;
    }
    return 1;
}

static uint64_t default_tensor_bytes(uint32_t type, const uint64_t *ne, int nd)
{
    uint64_t n = 1, es;
    int i;
    switch (type) {
    case 0: es = 4; break;    /* f32 */
    case 1: es = 2; break;    /* f16 */
    case 28: es = 8; break;   /* f64 */
    case 30: es = 2; break;   /* bf16 */
    default: return 0;
    }
    for (i = 0; i < nd; i++) n *= ne[i];   /* the caller bounded the product by 2^62 */
    return n * es;
}

/* The vocabulary arrays, remembered while the key-value pairs are read. */
typedef struct vocab {
    size_t tokens_at, n_tokens;   /* position of the first token string; tokens_at 0: no tokens array */
    size_t types_at, n_types;     /* the token_type array's first element (int32), 0: none */
    uint64_t n_scores;
    int has_scores, gpt2;
} vocab;

static plm_status check_kvs(rd *r, uint64_t n_kv, uint32_t *alignment, vocab *v)
{
    span *keys = n_kv ? malloc((size_t)n_kv * sizeof *keys) : NULL;
    uint64_t k;
    char b1[64], b2[64];
    plm_status st = PLM_OK;
    if (n_kv && !keys) return plm_fail(r->ctx, PLM_ENOMEM, "%s: out of memory", r->path);
    for (k = 0; k < n_kv && !st; k++) {
        const char *key;
        uint64_t klen, n = 1;
        uint32_t type = 0, et;
        size_t at;
        if (!rd_str(r, &key, &klen)) {
            st = bad(r, "key-value pair %llu of %llu: its key runs past the end of the file (offset %zu, file %zu)",
                     (unsigned long long)k + 1, (unsigned long long)n_kv, r->pos, r->size);
            break;
        }
        keys[k].off = (size_t)(key - (const char *)r->p), keys[k].len = (size_t)klen, keys[k].index = (size_t)k;
        keys[k].hash = fnv1a((const unsigned char *)key, (size_t)klen);
        if (!rd_u32(r, &type)) {
            st = bad(r, "key '%s': its type runs past the end of the file", shown(key, klen, b1));
            break;
        }
        if (type >= GG_NTYPES) {
            st = bad(r, "key '%s' has an unknown value type (%u)", shown(key, klen, b1), (unsigned)type);
            break;
        }
        et = type;
        if (type == GG_ARR) {
            if (!rd_u32(r, &et) || !rd_u64(r, &n)) {
                st = bad(r, "key '%s': its array header runs past the end of the file", shown(key, klen, b1));
                break;
            }
            if (et >= GG_NTYPES || et == GG_ARR) {
                st = bad(r, "key '%s' is an array of an unknown or nested type (%u)", shown(key, klen, b1), (unsigned)et);
                break;
            }
        }
        at = r->pos;
        if (et == GG_STR) {
            uint64_t i;
            /* each string takes at least its 8-byte length: a count beyond that cannot fit */
            if (n > (r->size - r->pos) / 8) {
                st = bad(r, "key '%s' claims %llu strings, more than the file can hold (%zu bytes left)",
                         shown(key, klen, b1), (unsigned long long)n, r->size - r->pos);
                break;
            }
            for (i = 0; i < n; i++) {
                const char *s;
                uint64_t len;
                if (!rd_str(r, &s, &len)) {
                    st = bad(r, "key '%s': string %llu runs past the end of the file (offset %zu, file %zu)",
                             shown(key, klen, b1), (unsigned long long)i + 1, r->pos, r->size);
                    break;
                }
            }
            if (st) break;
        } else {
            const unsigned char *b;
            size_t es = scalar_size(et);
            if (n > (r->size - r->pos) / es || !rd_bytes(r, (size_t)(n * es), &b)) {
                st = bad(r, "key '%s': its %llu values of %zu bytes run past the end of the file (offset %zu, file %zu)",
                         shown(key, klen, b1), (unsigned long long)n, es, at, r->size);
                break;
            }
            if (et == GG_BOOL) {
                uint64_t i;
                for (i = 0; i < n; i++)
                    if (b[i] > 1) {
                        st = bad(r, "key '%s': boolean %llu is %u, not 0 or 1", shown(key, klen, b1),
                                 (unsigned long long)i + 1, (unsigned)b[i]);
                        break;
                    }
                if (st) break;
            }
        }
#define KEY_IS(lit) (klen == sizeof(lit) - 1 && memcmp(key, lit, klen) == 0)
        if (KEY_IS("general.alignment")) {
            if (type != GG_U32) {
                st = bad(r, "general.alignment must be a u32 (type %u)", (unsigned)type);
                break;
            }
            memcpy(alignment, r->p + at, 4);
            if (*alignment == 0 || (*alignment & (*alignment - 1))) {
                st = bad(r, "general.alignment is %u, not a power of two", (unsigned)*alignment);
                break;
            }
        } else if (KEY_IS("tokenizer.ggml.tokens")) {
            if (type != GG_ARR || et != GG_STR) {
                st = bad(r, "tokenizer.ggml.tokens must be an array of strings");
                break;
            }
            v->tokens_at = at, v->n_tokens = (size_t)n;
        } else if (KEY_IS("tokenizer.ggml.token_type")) {
            if (type != GG_ARR || et != GG_I32) {
                st = bad(r, "tokenizer.ggml.token_type must be an array of int32");
                break;
            }
            v->types_at = at, v->n_types = (size_t)n;
        } else if (KEY_IS("tokenizer.ggml.scores")) {
            if (type != GG_ARR || et != GG_F32) {
                st = bad(r, "tokenizer.ggml.scores must be an array of float32");
                break;
            }
            v->has_scores = 1, v->n_scores = n;
        } else if (KEY_IS("tokenizer.ggml.model")) {
            uint64_t len;
            if (type != GG_STR) {
                st = bad(r, "tokenizer.ggml.model must be a string");
                break;
            }
            memcpy(&len, r->p + at, 8);
            v->gpt2 = len == 4 && memcmp(r->p + at + 8, "gpt2", 4) == 0;
        }
#undef KEY_IS
    }
    if (!st && n_kv > 1) {
        size_t i1 = 0, i2 = 0;
        if (first_duplicate(r->p, keys, (size_t)n_kv, &i1, &i2)) {
            const span *s = NULL;
            size_t j;
            for (j = 0; j < n_kv; j++)
                if (keys[j].index == i1) s = &keys[j];
            st = bad(r, "key '%s' appears twice (key-value pairs %zu and %zu)",
                     shown((const char *)r->p + s->off, s->len, b2), i1 + 1, i2 + 1);
        }
    }
    free(keys);
    return st;
}

static plm_status check_vocab(rd *r, const vocab *v)
{
    span *toks;
    size_t i, pos = v->tokens_at, i1 = 0, i2 = 0;
    char b1[64];
    plm_status st = PLM_OK;
    if (!v->tokens_at) return bad(r, "there is no vocabulary (no tokenizer.ggml.tokens array)");
    if (v->n_tokens == 0) return bad(r, "the vocabulary (tokenizer.ggml.tokens) is empty");
    if (v->types_at && v->n_types != v->n_tokens)
        return bad(r, "tokenizer.ggml.token_type has %zu entries, but there are %zu tokens", v->n_types, v->n_tokens);
    if (v->has_scores && v->n_scores != v->n_tokens)
        return bad(r, "tokenizer.ggml.scores has %llu entries, but there are %zu tokens", (unsigned long long)v->n_scores,
                   v->n_tokens);
    if (!(toks = malloc(v->n_tokens * sizeof *toks))) return plm_fail(r->ctx, PLM_ENOMEM, "%s: out of memory", r->path);
    for (i = 0; i < v->n_tokens; i++) {   /* the strings were bounds-checked when the pairs were read */
        uint64_t len;
        int32_t type = 1;
        memcpy(&len, r->p + pos, 8);
        toks[i].off = pos + 8, toks[i].len = (size_t)len, toks[i].index = i;
        toks[i].hash = fnv1a(r->p + pos + 8, (size_t)len);
        if (v->types_at) memcpy(&type, r->p + v->types_at + 4 * i, 4);
        /* llama.cpp decodes normal (1) and user-defined (4) tokens of a byte-level vocabulary through the
        ** byte alphabet; other characters there are no bytes of any text */
        if (v->gpt2 && (type == 1 || type == 4) && !gpt2_text(r->p + pos + 8, (size_t)len)) {
            st = bad(r, "token %zu ('%s') of a byte-level (gpt2) vocabulary is not spelled in the byte alphabet", i,
                     shown((const char *)r->p + pos + 8, len, b1));
            break;
        }
        pos += 8 + (size_t)len;
    }
    if (!st && first_duplicate(r->p, toks, v->n_tokens, &i1, &i2)) {
        size_t off = 0, len = 0, j;
        for (j = 0; j < v->n_tokens; j++)
            if (toks[j].index == i1) off = toks[j].off, len = toks[j].len;
        st = bad(r, "the vocabulary lists the token '%s' twice (ids %zu and %zu)", shown((const char *)r->p + off, len, b1),
                 i1, i2);
    }
    free(toks);
    return st;
}

plm_status plm_gguf_check(plm_ctx *ctx, const char *path, plm_gguf_tensor_bytes tensor_bytes)
{
    int fd;
    struct stat sb;
    void *map;
    rd r;
    uint32_t version = 0, alignment = GG_ALIGN;
    uint64_t n_tensors = 0, n_kv = 0, i;
    size_t data_at;
    vocab v;
    span *names = NULL;
    uint64_t *offs = NULL, *sizes = NULL;
    char b1[64];
    plm_status st = PLM_OK;
    if (!tensor_bytes) tensor_bytes = default_tensor_bytes;
    if ((fd = open(path, O_RDONLY)) < 0) return plm_fail(ctx, PLM_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return plm_fail(ctx, PLM_EIO, "%s: cannot read: %s", path, strerror(errno));
    }
    if (sb.st_size < 24) {
        close(fd);
        return plm_fail(ctx, PLM_EPARSE, "%s: %lld bytes is too short for a GGUF header (24 bytes)", path, (long long)sb.st_size);
    }
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return plm_fail(ctx, PLM_EIO, "%s: cannot map: %s", path, strerror(errno));
    r.p = map, r.size = (size_t)sb.st_size, r.pos = 0, r.ctx = ctx, r.path = path;
    memset(&v, 0, sizeof v);
    if (memcmp(r.p, "GGUF", 4) != 0) {
        st = bad(&r, "not a GGUF file (it does not start with 'GGUF')");
        goto done;
    }
    r.pos = 4;
    rd_u32(&r, &version);
    rd_u64(&r, &n_tensors);
    rd_u64(&r, &n_kv);
    if (version != 2 && version != 3) {
        st = bad(&r, "GGUF version %u is not supported (2 or 3)", (unsigned)version);
        goto done;
    }
    /* a pair takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor descriptor 8 + 4 + 8 + 4 + 8 */
    if (n_kv > (r.size - r.pos) / 13) {
        st = bad(&r, "the header claims %llu key-value pairs, more than the file's %zu bytes can hold",
                 (unsigned long long)n_kv, r.size);
        goto done;
    }
    if (n_tensors > (r.size - r.pos) / 32) {
        st = bad(&r, "the header claims %llu tensors, more than the file's %zu bytes can hold", (unsigned long long)n_tensors,
                 r.size);
        goto done;
    }
    if ((st = check_kvs(&r, n_kv, &alignment, &v))) goto done;
    names = malloc((size_t)(n_tensors + 1) * sizeof *names);
    offs = malloc((size_t)(n_tensors + 1) * sizeof *offs);
    sizes = malloc((size_t)(n_tensors + 1) * sizeof *sizes);
    if (!names || !offs || !sizes) {
        st = plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (i = 0; i < n_tensors; i++) {
        const char *name;
        uint64_t nlen, ne[4], total = 1;
        uint32_t nd = 0, type = 0, d;
        if (!rd_str(&r, &name, &nlen)) {
            st = bad(&r, "tensor %llu of %llu: its name runs past the end of the file (offset %zu, file %zu)",
                     (unsigned long long)i + 1, (unsigned long long)n_tensors, r.pos, r.size);
            goto done;
        }
        shown(name, nlen, b1);
        if (nlen == 0 || nlen >= 64) {
            st = bad(&r, "tensor %llu has a name of %llu bytes ('%s'); names have 1 to 63", (unsigned long long)i + 1,
                     (unsigned long long)nlen, b1);
            goto done;
        }
        names[i].off = (size_t)(name - (const char *)r.p), names[i].len = (size_t)nlen, names[i].index = (size_t)i;
        names[i].hash = fnv1a((const unsigned char *)name, (size_t)nlen);
        if (!rd_u32(&r, &nd)) {
            st = bad(&r, "tensor '%s': its descriptor runs past the end of the file", b1);
            goto done;
        }
        if (nd < 1 || nd > 4) {
            st = bad(&r, "tensor '%s' has %u dimensions (1 to 4)", b1, (unsigned)nd);
            goto done;
        }
        for (d = 0; d < nd; d++) {
            if (!rd_u64(&r, &ne[d])) {
                st = bad(&r, "tensor '%s': its shape runs past the end of the file", b1);
                goto done;
            }
            if (ne[d] == 0 || ne[d] > ((uint64_t)1 << 62) / total) {
                st = bad(&r, "tensor '%s' has dimension %u of %llu: the element count must be 1 to 2^62", b1,
                         (unsigned)d + 1, (unsigned long long)ne[d]);
                goto done;
            }
            total *= ne[d];
        }
        if (!rd_u32(&r, &type) || !rd_u64(&r, &offs[i])) {
            st = bad(&r, "tensor '%s': its descriptor runs past the end of the file", b1);
            goto done;
        }
        if (!(sizes[i] = tensor_bytes(type, ne, (int)nd))) {
            st = bad(&r, "tensor '%s' has an unknown type (%u) or a row of %llu elements that is not a whole number "
                         "of its blocks", b1, (unsigned)type, (unsigned long long)ne[0]);
            goto done;
        }
        if (offs[i] % alignment) {
            st = bad(&r, "tensor '%s' data at offset %llu is not aligned to %u bytes", b1, (unsigned long long)offs[i],
                     (unsigned)alignment);
            goto done;
        }
    }
    data_at = r.pos + (alignment - r.pos % alignment) % alignment;
    for (i = 0; i < n_tensors; i++) {
        size_t room = data_at <= r.size ? r.size - data_at : 0;
        if (offs[i] > room || sizes[i] > room - offs[i]) {
            size_t j;
            for (j = 0; j < n_tensors; j++)
                if (names[j].index == i) shown((const char *)r.p + names[j].off, names[j].len, b1);
            st = bad(&r, "tensor '%s' data runs past the end of the file (offset %llu, size %llu, file %zu, data "
                         "section at %zu)", b1, (unsigned long long)offs[i], (unsigned long long)sizes[i], r.size, data_at);
            goto done;
        }
    }
    if (n_tensors > 1) {
        size_t i1 = 0, i2 = 0, j;
        if (first_duplicate(r.p, names, (size_t)n_tensors, &i1, &i2)) {
            for (j = 0; j < n_tensors; j++)
                if (names[j].index == i1) shown((const char *)r.p + names[j].off, names[j].len, b1);
            st = bad(&r, "tensor name '%s' appears twice (tensors %zu and %zu)", b1, i1 + 1, i2 + 1);
            goto done;
        }
    }
    st = check_vocab(&r, &v);
done:
    free(names);
    free(offs);
    free(sizes);
    munmap(map, (size_t)sb.st_size);
    return st;
}
