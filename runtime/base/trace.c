/* trace.c -- traces with an open-addressing index over addresses (FNV-1a hashes, linear probing). */
#include "trace.h"

#include <gc.h>
#include <string.h>

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

plm_status plm_trace_new(plm_ctx *ctx, plm_trace **out)
{
    plm_trace *tr = plm_gc_alloc(sizeof *tr);
    if (!tr) return plm_fail(ctx, PLM_ENOMEM, "trace: out of memory");
    *out = tr;
    return PLM_OK;
}

void plm_trace_clear(plm_trace *tr)
{
    tr->n = 0;
    tr->nlatent = 0;
    tr->logprior = tr->loglik = 0;
    if (tr->slots) memset(tr->slots, 0, tr->tcap * sizeof *tr->slots);
}

plm_site *plm_trace_find(const plm_trace *tr, const char *addr)
{
    uint64_t h;
    size_t i, mask;
    if (!tr->tcap) return NULL;
    h = fnv1a(addr);
    mask = tr->tcap - 1;
    for (i = h & mask; tr->slots[i]; i = (i + 1) & mask) {
        plm_site *s = &tr->sites[tr->slots[i] - 1];
        if (s->hash == h && strcmp(s->addr, addr) == 0) return s;
    }
    return NULL;
}

static int rehash(plm_trace *tr, size_t tcap)
{
    size_t *slots = GC_MALLOC_ATOMIC(tcap * sizeof *slots), i, mask = tcap - 1;
    if (!slots) return -1;
    memset(slots, 0, tcap * sizeof *slots);
    for (i = 0; i < tr->n; i++) {
        size_t j = tr->sites[i].hash & mask;
        while (slots[j]) j = (j + 1) & mask;
        slots[j] = i + 1;
    }
    tr->slots = slots;
    tr->tcap = tcap;
    return 0;
}

/* Make room for one more site and return it (its buffers are whatever a cleared trace left there). */
static plm_site *next_slot(plm_ctx *ctx, plm_trace *tr, const char *addr)
{
    if (plm_trace_find(tr, addr)) return plm_fail(ctx, PLM_EINVAL, "address '%s' is used twice in one run", addr), NULL;
    if (tr->n == tr->cap) {
        size_t nc = tr->cap ? 2 * tr->cap : 16;
        plm_site *ns = GC_REALLOC(tr->sites, nc * sizeof *ns);
        if (!ns) return plm_fail(ctx, PLM_ENOMEM, "trace: out of memory"), NULL;
        memset(ns + tr->cap, 0, (nc - tr->cap) * sizeof *ns);
        tr->sites = ns;
        tr->cap = nc;
    }
    if (2 * (tr->n + 1) > tr->tcap && rehash(tr, tr->tcap ? 2 * tr->tcap : 32))
        return plm_fail(ctx, PLM_ENOMEM, "trace: out of memory"), NULL;
    return &tr->sites[tr->n];
}

/* Index site tr->n (filled in) and count it. */
static void commit_slot(plm_trace *tr, plm_site *s)
{
    size_t j, mask = tr->tcap - 1;
    for (j = s->hash & mask; tr->slots[j]; j = (j + 1) & mask)
        ;
    tr->slots[j] = tr->n + 1;
    tr->n++;
    if (s->kind == PLM_SITE_LATENT) {
        tr->logprior += s->logp;
        tr->nlatent++;
    } else if (s->kind == PLM_SITE_OBSERVED)
        tr->loglik += s->logp;
}

plm_status plm_trace_add_shared(plm_ctx *ctx, plm_trace *tr, const plm_site *src)
{
    plm_site *s = next_slot(ctx, tr, src->addr);
    if (!s) return ctx->status ? ctx->status : PLM_ENOMEM;
    *s = *src;
    s->borrowed = 1;
    commit_slot(tr, s);
    return PLM_OK;
}

plm_status plm_trace_add(plm_ctx *ctx, plm_trace *tr, const char *addr, plm_site_kind kind, const plm_dist *dist,
                         const double *value, int dim, double logp, plm_site **out)
{
    plm_site *s;
    size_t len = strlen(addr);
    if (!(s = next_slot(ctx, tr, addr))) return ctx->status ? ctx->status : PLM_ENOMEM;
    if (s->borrowed) {   /* another trace's buffers: never write into them */
        s->addr = NULL;
        s->value = NULL;
        s->borrowed = 0;
    }
    /* reuse the address and value buffers a cleared trace left behind when they are big enough */
    if (!s->addr || strlen(s->addr) < len) {
        char *a = GC_MALLOC_ATOMIC(len + 1);
        if (!a) return plm_fail(ctx, PLM_ENOMEM, "trace: out of memory");
        s->addr = a;
    }
    memcpy((char *)s->addr, addr, len + 1);
    if (!s->value || s->dim < dim) {
        if (!(s->value = GC_MALLOC_ATOMIC((size_t)(dim > 0 ? dim : 1) * sizeof(double))))
            return plm_fail(ctx, PLM_ENOMEM, "trace: out of memory");
    }
    memcpy(s->value, value, (size_t)dim * sizeof(double));
    s->hash = fnv1a(addr);
    s->kind = kind;
    s->dist = dist;
    s->dim = dim;
    s->logp = logp;
    commit_slot(tr, s);
    if (out) *out = s;
    return PLM_OK;
}
