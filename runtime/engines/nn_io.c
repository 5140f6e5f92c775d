/* nn_io.c -- the proposal network file (nn.h, plm_nn_save and plm_nn_load): a versioned, checksummed binary
** layout of the network's shape, its metadata and its weights. Kept apart from nn.c, which evaluates and trains. */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC[8] = {'P', 'L', 'M', 'P', 'R', 'O', 'P', 0};

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const void *x, size_t n)
{
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        unsigned char *q;
        while (cap < b->n + n) cap *= 2;
        if (!(q = realloc(b->p, cap))) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}

/* Integers and doubles are stored little-endian whatever the host. */
static void put_u64(buf *b, uint64_t v)
{
    unsigned char c[8];
    int i;
    for (i = 0; i < 8; i++) c[i] = (unsigned char)(v >> (8 * i));
    put(b, c, 8);
}
static void put_i64(buf *b, int64_t v) { put_u64(b, (uint64_t)v); }
static void put_f64(buf *b, double x)
{
    uint64_t v;
    memcpy(&v, &x, 8);
    put_u64(b, v);
}

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

plm_status plm_nn_save(plm_ctx *ctx, const char *path, const plm_nn_meta *meta, const plm_nn *nn)
{
    buf b = {0};
    FILE *f;
    int i, ok;
    size_t k;
    put(&b, MAGIC, 8);
    put_u64(&b, PLM_NN_FILE_VERSION);
    put(&b, meta->motif, sizeof meta->motif);
    put_i64(&b, meta->nshape);
    for (i = 0; i < PLM_NN_MAXSHAPE; i++) put_i64(&b, i < meta->nshape ? meta->shape[i] : 0);
    put_u64(&b, meta->seed);
    put_i64(&b, meta->samples);
    put_i64(&b, meta->epochs);
    put_f64(&b, meta->heldout);
    put_i64(&b, nn->nin);
    put_i64(&b, nn->nmem);
    put_i64(&b, nn->nhidden);
    put_i64(&b, nn->act);
    for (i = 0; i < PLM_NN_MAXHIDDEN; i++) put_i64(&b, i < nn->nhidden ? nn->hidden[i] : 0);
    for (i = 0; i < nn->nmem; i++) {
        put_i64(&b, nn->mem[i].kind);
        put_i64(&b, nn->mem[i].card);
        put_i64(&b, nn->mem[i].ncat_at);
        put_i64(&b, nn->mem[i].skip);
        put_i64(&b, nn->mem[i].base_at);
        put_i64(&b, nn->mem[i].pair_at);
        put_i64(&b, nn->mem[i].pair_of);
        put_i64(&b, nn->mem[i].rows);
        put_i64(&b, nn->mem[i].row_at);
        put_i64(&b, nn->mem[i].row_w);
        put_i64(&b, nn->mem[i].rshared_at);
        put_i64(&b, nn->mem[i].rshared_w);
        put_i64(&b, nn->mem[i].fixed);
        put_i64(&b, nn->mem[i].fixed_at);
        put_i64(&b, nn->mem[i].pair2);
        put_i64(&b, nn->mem[i].pair2_of);
    }
    put_u64(&b, nn->nparam);
    for (k = 0; k < nn->nparam; k++) put_f64(&b, nn->theta[k]);
    if (!b.oom) put_u64(&b, fnv1a64(b.p, b.n));
    if (b.oom) {
        free(b.p);
        return plm_fail(ctx, PLM_ENOMEM, "proposal file '%s': out of memory", path);
    }
    if (!(f = fopen(path, "wb"))) {
        free(b.p);
        return plm_fail(ctx, PLM_EIO, "proposal file '%s': cannot open it for writing", path);
    }
    ok = fwrite(b.p, 1, b.n, f) == b.n;
    ok = fclose(f) == 0 && ok;
    free(b.p);
    return ok ? PLM_OK : plm_fail(ctx, PLM_EIO, "proposal file '%s': error writing it", path);
}

typedef struct rd {
    const unsigned char *p;
    size_t n, at;
    int short_;
} rd;

static uint64_t get_u64(rd *r)
{
    uint64_t v = 0;
    int i;
    if (r->at + 8 > r->n) {
        r->short_ = 1;
        r->at = r->n;
        return 0;
    }
    for (i = 0; i < 8; i++) v |= (uint64_t)r->p[r->at + i] << (8 * i);
    r->at += 8;
    return v;
}
static int64_t get_i64(rd *r) { return (int64_t)get_u64(r); }
static double get_f64(rd *r)
{
    uint64_t v = get_u64(r);
    double x;
    memcpy(&x, &v, 8);
    return x;
}

plm_status plm_nn_load(plm_ctx *ctx, const char *path, plm_nn_meta *meta, plm_nn *nn)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    size_t n = 0, cap = 0, k;
    rd r;
    int i, nin, nmem, nhid, act, hidden[PLM_NN_MAXHIDDEN];
    uint64_t version, nparam, sum;
    plm_nn_member mem[PLM_NN_MAXMEM];
    plm_status st;
    memset(nn, 0, sizeof *nn);
    memset(meta, 0, sizeof *meta);
    if (!f) return plm_fail(ctx, PLM_EIO, "proposal file '%s': cannot open it", path);
    for (;;) {
        size_t got;
        if (n == cap) {
            unsigned char *q = realloc(data, cap = cap ? 2 * cap : 65536);
            if (!q) {
                free(data);
                fclose(f);
                return plm_fail(ctx, PLM_ENOMEM, "proposal file '%s': out of memory", path);
            }
            data = q;
        }
        got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
#define BAD(...) do { st = plm_fail(ctx, PLM_EINVAL, __VA_ARGS__); goto out; } while (0)
    if (n < 8 || memcmp(data, MAGIC, 8) != 0) BAD("proposal file '%s': not a plume proposal file (bad magic)", path);
    r.p = data, r.n = n, r.at = 8, r.short_ = 0;
    version = get_u64(&r);
    if (r.short_) BAD("proposal file '%s': truncated (%zu bytes) in its header", path, n);
    if (version != PLM_NN_FILE_VERSION)
        BAD("proposal file '%s': format version %llu, but this plume reads version %d", path, (unsigned long long)version,
            PLM_NN_FILE_VERSION);
    if (r.at + sizeof meta->motif > n) BAD("proposal file '%s': truncated (%zu bytes) in its header", path, n);
    memcpy(meta->motif, data + r.at, sizeof meta->motif);
    r.at += sizeof meta->motif;
    meta->nshape = (int)get_i64(&r);
    for (i = 0; i < PLM_NN_MAXSHAPE; i++) meta->shape[i] = (int)get_i64(&r);
    meta->seed = get_u64(&r);
    meta->samples = (long)get_i64(&r);
    meta->epochs = (long)get_i64(&r);
    meta->heldout = get_f64(&r);
    nin = (int)get_i64(&r), nmem = (int)get_i64(&r), nhid = (int)get_i64(&r), act = (int)get_i64(&r);
    for (i = 0; i < PLM_NN_MAXHIDDEN; i++) hidden[i] = (int)get_i64(&r);
    if (r.short_) BAD("proposal file '%s': truncated (%zu bytes) in its header", path, n);
    /* the checksum covers everything before it: check it before trusting any size read from the file */
    if (n < 8 + 8 || n - 8 < r.at) BAD("proposal file '%s': truncated (%zu bytes)", path, n);
    if (nmem < 1 || nmem > PLM_NN_MAXMEM || nhid < 0 || nhid > PLM_NN_MAXHIDDEN || meta->nshape < 0 ||
        meta->nshape > PLM_NN_MAXSHAPE || memchr(meta->motif, 0, sizeof meta->motif) == NULL) {
        rd t = {data, n, n - 8, 0};
        if (get_u64(&t) != fnv1a64(data, n - 8)) BAD("proposal file '%s': checksum mismatch (the file is corrupted or truncated)", path);
        BAD("proposal file '%s': impossible sizes in its header", path);
    }
    for (i = 0; i < nmem; i++) {
        mem[i].kind = (int)get_i64(&r);
        mem[i].card = (int)get_i64(&r);
        mem[i].ncat_at = (int)get_i64(&r);
        mem[i].skip = (int)get_i64(&r);
        mem[i].base_at = (int)get_i64(&r);
        mem[i].pair_at = (int)get_i64(&r);
        mem[i].pair_of = (int)get_i64(&r);
        mem[i].rows = (int)get_i64(&r);
        mem[i].row_at = (int)get_i64(&r);
        mem[i].row_w = (int)get_i64(&r);
        mem[i].rshared_at = (int)get_i64(&r);
        mem[i].rshared_w = (int)get_i64(&r);
        mem[i].fixed = (int)get_i64(&r);
        mem[i].fixed_at = (int)get_i64(&r);
        mem[i].pair2 = (int)get_i64(&r);
        mem[i].pair2_of = (int)get_i64(&r);
    }
    nparam = get_u64(&r);
    if (r.short_) BAD("proposal file '%s': truncated (%zu bytes) in its header", path, n);
    if (nparam > (n - r.at) / 8 || r.at + 8 * nparam + 8 > n) {
        BAD("proposal file '%s': truncated (%zu bytes; its header announces %llu weights)", path, n, (unsigned long long)nparam);
    }
    if (r.at + 8 * nparam + 8 < n) BAD("proposal file '%s': %zu bytes after the checksum (the file is corrupted)", path,
                                       n - (size_t)(r.at + 8 * nparam + 8));
    {
        rd t = {data, n, n - 8, 0};
        sum = get_u64(&t);
        if (sum != fnv1a64(data, n - 8)) BAD("proposal file '%s': checksum mismatch (the file is corrupted)", path);
    }
    if ((st = plm_nn_init(ctx, nn, nin, nmem, mem, nhid, hidden, act))) {
        st = plm_fail(ctx, PLM_EINVAL, "proposal file '%s': impossible network (%s)", path, plm_ctx_errmsg(ctx));
        goto out;
    }
    if (nn->nparam != nparam) {
        plm_nn_free(nn);
        BAD("proposal file '%s': %llu weights, but its network has %zu", path, (unsigned long long)nparam, nn->nparam);
    }
    for (k = 0; k < nparam; k++) {
        nn->theta[k] = get_f64(&r);
        if (!isfinite(nn->theta[k])) {
            plm_nn_free(nn);
            BAD("proposal file '%s': weight %zu is not finite", path, k + 1);
        }
    }
    st = PLM_OK;
out:
#undef BAD
    free(data);
    return st;
}
