/* lm_llama.c -- the llama.cpp backend: the library and its functions come from dlopen/dlsym; the types come
** from llama.h (installed by scripts/deps.sh into build/llama/include and seen by this file only). Without
** that header the backend compiles to a stub that reports how to get it. */
#include "lm_llama.h"
#include "lm_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<llama.h>)
#define PLM_HAVE_LLAMA_H 1
#endif
#endif

#ifndef PLM_HAVE_LLAMA_H

plm_status plm_llama_new(plm_ctx *ctx, const plm_llama_opts *opts, plm_lm **out)
{
    (void)opts;
    *out = NULL;
    return plm_fail(ctx, PLM_ENOTSUP,
                    "llama: llama.cpp not available (plume was built without llama.h; run scripts/deps.sh and rebuild)");
}

int plm_llama_available(plm_ctx *ctx)
{
    plm_fail(ctx, PLM_ENOTSUP, "llama: llama.cpp not available (plume was built without llama.h)");
    return 0;
}

int plm_llama_get_stats(const plm_lm *lm, plm_llama_stats *out)
{
    (void)lm;
    memset(out, 0, sizeof *out);
    return 0;
}

#else

#include <dlfcn.h>
#include <llama.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "ggml-backend.h"

#ifndef PLM_LLAMA_DIR
#define PLM_LLAMA_DIR "build/llama/lib"
#endif

/* Every llama.cpp function plume calls, typed from the header, resolved by dlsym. */
#define LLAMA_FNS(X)                                                                                                   \
    X(llama_version) X(llama_backend_init) X(llama_log_set) X(ggml_backend_load_all_from_path)                         \
    X(llama_model_default_params) X(llama_context_default_params) X(llama_model_load_from_file) X(llama_model_free)   \
    X(llama_init_from_model) X(llama_free) X(llama_model_get_vocab) X(llama_vocab_n_tokens) X(llama_vocab_bos)        \
    X(llama_vocab_is_eog) X(llama_vocab_get_add_bos) X(llama_token_to_piece) X(llama_tokenize) X(llama_n_ctx) X(llama_n_ctx_seq)          \
    X(llama_model_n_ctx_train) X(llama_batch_init) X(llama_batch_free) X(llama_decode) X(llama_get_logits_ith)         \
    X(llama_get_memory) X(llama_memory_seq_rm) X(llama_memory_seq_cp) X(ggml_type_size) X(ggml_blck_size)  \
    X(llama_set_embeddings) X(llama_get_embeddings_ith) X(llama_model_n_embd)

static struct {
#define DECL(f) __typeof__(f) *f;
    LLAMA_FNS(DECL)
#undef DECL
} F;

static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;
static int lib_state;   /* 0 untried, 1 loaded, -1 failed (lib_err says why) */
static char lib_err[PLM_MSG_MAX];
static char last_log[256];    /* llama.cpp's last error line, to explain a failed decode */
static char first_log[256];   /* its first error line since a load began: the cause, where the last line of a
                              ** failed load only says "failed to load model" */

/* llama.cpp calls the log callback from whichever thread logs (its workers, or two states' decodes at once):
** the two lines are written and read under this lock */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void quiet_log(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR && text) {
        size_t n;
        pthread_mutex_lock(&log_mu);
        snprintf(last_log, sizeof last_log, "%s", text);
        n = strlen(last_log);
        while (n && (last_log[n - 1] == '\n' || last_log[n - 1] == ' ')) last_log[--n] = 0;
        if (!first_log[0]) memcpy(first_log, last_log, sizeof first_log);
        pthread_mutex_unlock(&log_mu);
    }
}

/* A copy of the last (or first) logged error line, prefixed by ": ", or "" when there is none. */
static const char *logged(char *buf, size_t size, int first)
{
    pthread_mutex_lock(&log_mu);
    {
        const char *src = first ? first_log : last_log;
        snprintf(buf, size, "%s%s", *src ? ": " : "", src);
    }
    pthread_mutex_unlock(&log_mu);
    return buf;
}

static void clear_logs(void)
{
    pthread_mutex_lock(&log_mu);
    last_log[0] = first_log[0] = 0;
    pthread_mutex_unlock(&log_mu);
}

static int load_lib(void)
{
    const char *env = getenv("PLUME_LLAMA_LIB");
    char path[1024], dir[1024], *slash;
    void *h = NULL;
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    } else {
        snprintf(path, sizeof path, "%s/libllama.so", PLM_LLAMA_DIR);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(path, sizeof path, "libllama.so");
            h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        }
    }
    if (!h) {
        const char *e = dlerror();
        snprintf(lib_err, sizeof lib_err,
                 "llama: llama.cpp not available: cannot load %.200s (%.150s); run scripts/deps.sh or set PLUME_LLAMA_LIB", path,
                 e ? e : "?");
        return -1;
    }
#define LOAD(f)                                                                                                        \
    if (!(*(void **)&F.f = dlsym(h, #f))) {                                                                            \
        snprintf(lib_err, sizeof lib_err, "llama: %.200s has no %s: not a llama.cpp %s library", path, #f,                 \
                 PLM_LLAMA_WANT_VERSION);                                                                              \
        dlclose(h);                                                                                                    \
        return -1;                                                                                                     \
    }
    /* the version first: struct layouts (model and context parameters, batches) change between releases */
    LOAD(llama_version)
    {
        const char *v = F.llama_version();
        size_t wl = strlen(PLM_LLAMA_WANT_VERSION);
        if (!v || strncmp(v, PLM_LLAMA_WANT_VERSION, wl) != 0 || (v[wl] != 0 && v[wl] != '-')) {
            snprintf(lib_err, sizeof lib_err,
                     "llama: %.200s is llama.cpp version '%.40s', but plume was built for %s; point PLUME_LLAMA_LIB at a "
                     "matching libllama (scripts/deps.sh installs one)",
                     path, v ? v : "?", PLM_LLAMA_WANT_VERSION);
            dlclose(h);
            return -1;
        }
    }
    LLAMA_FNS(LOAD)
#undef LOAD
    /* the CPU backends are separate libraries next to libllama; without this no backend is found */
    {
        Dl_info info;
        if (dladdr((void *)F.llama_version, &info) && info.dli_fname) snprintf(dir, sizeof dir, "%s", info.dli_fname);
        else snprintf(dir, sizeof dir, "%s", path);
        slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    F.llama_log_set(quiet_log, NULL);
    F.ggml_backend_load_all_from_path(dir);
    F.llama_backend_init();
    return 1;
}

int plm_llama_available(plm_ctx *ctx)
{
    pthread_mutex_lock(&lib_lock);
    if (lib_state == 0) lib_state = load_lib();
    pthread_mutex_unlock(&lib_lock);
    if (lib_state < 0) plm_fail(ctx, PLM_ENOTSUP, "%s", lib_err);
    return lib_state > 0;
}

/* A llama.cpp sequence id. Pinned slots belong to plm_lm_seq_* callers. The others serve stateless calls and
** keep the context they last evaluated (toks, BOS excluded) so that a later context sharing a prefix with it
** starts from a copy of those KV cells instead of from scratch. */
typedef struct slot {
    int pinned;
    int n_past;          /* positions held in the KV cache */
    llama_token last;    /* the token at position n_past - 1 */
    int cached;          /* unpinned: toks[0..len) are in the KV cache */
    plm_token *toks;
    size_t len, cap;
    long stamp;          /* last use, for eviction */
} slot;

typedef struct llm {
    struct llama_model *model;
    struct llama_context *lctx;
    const struct llama_vocab *vocab;
    struct llama_batch batch;
    int n_batch, n_slots, add_bos;
    int byte_level;   /* tokens 0..255 are the single bytes 0..255 (the tiny GGUF's vocabulary) */
    int reuse;        /* stateless calls start from the cached slot with the longest common prefix */
    long clock;
    slot *slots;
    float *tmp;
    char *path;       /* the model file, for messages */
    plm_llama_stats stats;
} llm;

/* One sequence's work in a decode: append toks (n) to slot, and write log-probability rows into out for the
** tokens at index want_from.. n-1 (the distribution after each). */
typedef struct job {
    int slot;
    const llama_token *toks;
    size_t n, want_from;
    double *out;
} job;

/* Bytes of a tensor by ggml's own type table, for plm_gguf_check; 0 for types this ggml does not know
** (including the removed ones, whose block size is 0) and rows that are not whole blocks. */
static uint64_t ggml_tensor_bytes(uint32_t type, const uint64_t *ne, int nd)
{
    uint64_t ts, bs, row, rows = 1;
    int d;
    if (type >= GGML_TYPE_COUNT) return 0;
    ts = F.ggml_type_size((enum ggml_type)type);
    bs = (uint64_t)F.ggml_blck_size((enum ggml_type)type);
    if (ts == 0 || bs == 0 || ne[0] % bs) return 0;
    row = ne[0] / bs * ts;   /* ne[0] <= 2^62 and ts / bs <= 34 / 32 or 8 / 1: no wrap before the checks below */
    if (ne[0] / bs > UINT64_MAX / ts) return 0;
    for (d = 1; d < nd; d++) rows *= ne[d];   /* the product of all ne is <= 2^62 */
    return rows > UINT64_MAX / row ? 0 : rows * row;
}

static plm_status run_jobs(plm_lm *lm, plm_ctx *ctx, job *jobs, size_t nj)
{
    llm *L = lm->impl;
    size_t V = (size_t)lm->n_vocab, j = 0, t = 0, bad_tok = 0;
    int bad_row = 0;
    double bad_logit = 0;
    llama_memory_t mem = F.llama_get_memory(L->lctx);
    /* fill batches of at most n_batch tokens, job by job; decode each full batch */
    while (j < nj) {
        int nb = 0, rc, k;
        size_t j0 = j, t0 = t;
        while (j < nj && nb < L->n_batch) {
            job *jb = &jobs[j];
            slot *s = &L->slots[jb->slot];
            while (t < jb->n && nb < L->n_batch) {
                L->batch.token[nb] = jb->toks[t];
                L->batch.pos[nb] = s->n_past + (llama_pos)t;
                L->batch.n_seq_id[nb] = 1;
                L->batch.seq_id[nb][0] = jb->slot;
                L->batch.logits[nb] = t >= jb->want_from && jb->out;
                nb++;
                t++;
            }
            if (t == jb->n) {
                j++;
                t = 0;
            }
        }
        L->batch.n_tokens = nb;
        if (nb == 0) break;
        {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            rc = F.llama_decode(L->lctx, L->batch);
            clock_gettime(CLOCK_MONOTONIC, &b);
            L->stats.decode_calls++;
            L->stats.decode_tokens += nb;
            L->stats.decode_seconds += (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        }
        if (rc != 0) {
            /* undo this decode's partial work so every sequence stays as it was before the call */
            for (k = (int)j0; k < (int)nj; k++) {
                slot *s = &L->slots[jobs[k].slot];
                F.llama_memory_seq_rm(mem, jobs[k].slot, s->n_past, -1);
            }
            if (rc == 1)
                return plm_fail(ctx, PLM_ERUNTIME,
                                "llama: the KV cache is full (ctx = %u cells shared by all sequences); raise ctx=",
                                F.llama_n_ctx(L->lctx));
        {
            char why[270];
            return plm_fail(ctx, PLM_ERUNTIME, "llama: llama_decode failed (%d)%s", rc, logged(why, sizeof why, 0));
        }
        }
        /* read the rows of this batch: llama_get_logits_ith takes the batch position */
        {
            size_t jj = j0, tt = t0;
            for (k = 0; k < nb; k++) {
                job *jb;
                while (jobs[jj].n == 0) jj++;   /* empty jobs hold no batch position */
                jb = &jobs[jj];
                if (L->batch.logits[k]) {
                    const float *lg = F.llama_get_logits_ith(L->lctx, k);
                    double *row = jb->out + (tt - jb->want_from) * V;
                    size_t v;
                    if (!lg) return plm_fail(ctx, PLM_ERUNTIME, "llama: no logits for batch position %d", k);
                    /* NaN or inf weights make NaN or inf logits, which normalising would turn into a row of
                    ** -inf or NaN: no distribution. Stop here rather than hand it to a sampler that keeps
                    ** going. Logits of a sound model are always finite. */
                    for (v = 0; v < V && !bad_row; v++)
                        if (!isfinite(lg[v])) bad_row = 1, bad_tok = (size_t)v, bad_logit = lg[v];
                    for (v = 0; v < V; v++) row[v] = lg[v];
                    plm_lm_lognormalise(row, V);
                }
                if (++tt == jb->n) {
                    jj++;
                    tt = 0;
                }
            }
        }
        for (k = (int)j0; k < (int)j; k++) {   /* jobs completed by this batch */
            slot *s = &L->slots[jobs[k].slot];
            if (jobs[k].n == 0) continue;
            s->n_past += (int)jobs[k].n;
            s->last = jobs[k].toks[jobs[k].n - 1];
        }
        if (j < nj && t > 0) {   /* a job split across batches: account its finished part */
            slot *s = &L->slots[jobs[j].slot];
            s->n_past += (int)t;
            s->last = jobs[j].toks[t - 1];
            jobs[j].toks += t;
            jobs[j].n -= t;
            if (jobs[j].out) {
                if (t > jobs[j].want_from) jobs[j].out += (t - jobs[j].want_from) * V;
                jobs[j].want_from = jobs[j].want_from > t ? jobs[j].want_from - t : 0;
            }
            t = 0;
        }
        if (bad_row)   /* after the bookkeeping, so the slots still describe the KV cache */
            return plm_fail(ctx, PLM_EDOM,
                            "llama: %s: the model's next-token logits are not numbers (token %zu has logit %s): the "
                            "weights hold NaN or inf",
                            L->path, bad_tok, isnan(bad_logit) ? "NaN" : bad_logit > 0 ? "inf" : "-inf");
    }
    return PLM_OK;
}

static plm_status slot_get(plm_lm *lm, plm_ctx *ctx, int *id)
{
    llm *L = lm->impl;
    int i;
    int best = -1;
    for (i = 0; i < L->n_slots; i++)   /* an empty slot, else the least recently used cached one */
        if (!L->slots[i].pinned && (best < 0 || (L->slots[best].cached && (!L->slots[i].cached ||
                                                                           L->slots[i].stamp < L->slots[best].stamp))))
            best = i;
    if (best < 0) return plm_fail(ctx, PLM_EINVAL, "llama: all %d sequences are in use (raise seqs=)", L->n_slots);
    L->slots[best].pinned = 1;
    L->slots[best].cached = 0;
    L->slots[best].n_past = 0;
    F.llama_memory_seq_rm(F.llama_get_memory(L->lctx), best, -1, -1);
    *id = best;
    return PLM_OK;
}

static void ll_seq_free(plm_lm *lm, int seq)
{
    llm *L = lm->impl;
    if (seq < 0 || seq >= L->n_slots) return;
    F.llama_memory_seq_rm(F.llama_get_memory(L->lctx), seq, -1, -1);
    L->slots[seq].pinned = 0;
    L->slots[seq].cached = 0;
    L->slots[seq].n_past = 0;
}

static plm_status ll_seq_new(plm_lm *lm, plm_ctx *ctx, int *seq)
{
    return slot_get(lm, ctx, seq);
}

static plm_status ll_seq_fork(plm_lm *lm, plm_ctx *ctx, int src, int *dst)
{
    llm *L = lm->impl;
    plm_status st = slot_get(lm, ctx, dst);
    if (st) return st;
    if (L->slots[src].n_past > 0) F.llama_memory_seq_cp(F.llama_get_memory(L->lctx), src, *dst, -1, -1);
    L->slots[*dst].n_past = L->slots[src].n_past;
    L->slots[*dst].last = L->slots[src].last;
    return PLM_OK;
}

/* Extend: a fresh sequence gets BOS first; extending by nothing re-evaluates the last token (its logits are
** not kept between calls), which costs one token. */
static plm_status ll_seq_extend(plm_lm *lm, plm_ctx *ctx, size_t n, const int *seqs, const plm_token *const *toks,
                                const size_t *lens, double *out)
{
    llm *L = lm->impl;
    size_t i, total = 0, V = (size_t)lm->n_vocab;
    job *jobs = malloc(n * sizeof *jobs);
    llama_token *buf;
    plm_status st;
    for (i = 0; i < n; i++) total += lens[i] + 1;
    buf = malloc(total * sizeof *buf);
    if (!jobs || !buf) {
        free(jobs);
        free(buf);
        return plm_fail(ctx, PLM_ENOMEM, "llama: out of memory");
    }
    total = 0;
    for (i = 0; i < n; i++) {
        slot *s = &L->slots[seqs[i]];
        llama_token *b = buf + total;
        size_t k = 0;
        if (s->n_past == 0 && L->add_bos) b[k++] = lm->bos;
        else if (lens[i] == 0 && out) {
            if (s->n_past == 0) {
                free(jobs);
                free(buf);
                return plm_fail(ctx, PLM_EINVAL, "llama: an empty sequence has no next-token distribution (no BOS)");
            }
            F.llama_memory_seq_rm(F.llama_get_memory(L->lctx), seqs[i], s->n_past - 1, -1);
            s->n_past--;
            b[k++] = s->last;
        }
        if (lens[i]) memcpy(b + k, toks[i], lens[i] * sizeof *b);
        k += lens[i];
        jobs[i].slot = seqs[i];
        jobs[i].toks = b;
        jobs[i].n = k;
        jobs[i].want_from = k ? k - 1 : 0;
        jobs[i].out = out ? out + i * V : NULL;
        total += k;
    }
    st = run_jobs(lm, ctx, jobs, n);
    free(jobs);
    free(buf);
    return st;
}

/* Forget every cached context (their KV cells go back to the pool). */
static void drop_cached(llm *L)
{
    int i;
    for (i = 0; i < L->n_slots; i++)
        if (!L->slots[i].pinned && L->slots[i].cached) {
            F.llama_memory_seq_rm(F.llama_get_memory(L->lctx), i, -1, -1);
            L->slots[i].cached = 0;
            L->slots[i].n_past = 0;
        }
}

static size_t common_prefix(const plm_token *a, size_t na, const plm_token *b, size_t nb)
{
    size_t k = 0, n = na < nb ? na : nb;
    while (k < n && a[k] == b[k]) k++;
    return k;
}

/* One round of stateless contexts, at most one per unpinned slot: each starts from the cached context with the
** longest common prefix -- in place when that slot is free this round (its tail is cut), else from a copy of its
** cells into a free slot -- and only the rest of the context is decoded, all in one batch. Returns how many
** contexts it served in *done (the others wait for the next round). */
static plm_status stateless_round(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks,
                                  const size_t *lens, double *out, size_t *done)
{
    llm *L = lm->impl;
    llama_memory_t mem = F.llama_get_memory(L->lctx);
    size_t V = (size_t)lm->n_vocab, i, k, nb = L->add_bos ? 1 : 0, total = 0;
    int S = L->n_slots, s;
    int *src = malloc(n * sizeof *src), *dst = malloc(n * sizeof *dst);
    size_t *lcp = malloc(n * sizeof *lcp);
    char *claimed = calloc((size_t)S, 1), *needed = calloc((size_t)S, 1);
    job *jobs = malloc(n * sizeof *jobs);
    llama_token *buf = NULL;
    plm_status st = PLM_OK;
    *done = 0;
    if (!src || !dst || !lcp || !claimed || !needed || !jobs) {
        st = plm_fail(ctx, PLM_ENOMEM, "llama: out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {   /* the best source of each context */
        src[i] = -1;
        lcp[i] = 0;
        if (lens[i] == 0 && !nb) {
            st = plm_fail(ctx, PLM_EINVAL, "llama: an empty context has no next-token distribution (the model has no BOS)");
            goto out;
        }
        for (s = 0; s < S && L->reuse; s++) {
            slot *sl = &L->slots[s];
            size_t c;
            if (sl->pinned || !sl->cached) continue;
            c = common_prefix(toks[i], lens[i], sl->toks, sl->len);
            if (c == lens[i]) c = lens[i] ? lens[i] - 1 : 0;   /* the last token is decoded again for its row */
            if (c > lcp[i] || (c == lcp[i] && c > 0 && src[i] >= 0 && L->slots[src[i]].stamp < sl->stamp)) {
                src[i] = s;
                lcp[i] = c;
            }
        }
        if (lcp[i] == 0) src[i] = -1;
        else needed[src[i]] = 1;
    }
    for (i = 0; i < n; i++) {   /* destinations: the source itself when it is still free, else a slot no one needs */
        int best = -1;
        if (src[i] >= 0 && !claimed[src[i]]) best = src[i];
        else
            for (s = 0; s < S; s++) {
                slot *sl = &L->slots[s];
                if (sl->pinned || claimed[s] || needed[s]) continue;
                if (best < 0 || (L->slots[best].cached && (!sl->cached || sl->stamp < L->slots[best].stamp))) best = s;
            }
        if (best < 0) break;
        claimed[best] = 1;
        dst[i] = best;
        total += lens[i] - lcp[i] + 1;
    }
    n = i;
    if (n == 0) {
        st = plm_fail(ctx, PLM_EINVAL, "llama: all %d sequences are in use (raise seqs=)", S);
        goto out;
    }
    if (!(buf = malloc(total * sizeof *buf))) {
        st = plm_fail(ctx, PLM_ENOMEM, "llama: out of memory");
        goto out;
    }
    /* copies first, while every source still holds its cells; then cut the in-place tails */
    for (i = 0; i < n; i++)
        if (dst[i] != src[i]) {
            F.llama_memory_seq_rm(mem, dst[i], -1, -1);
            if (lcp[i]) F.llama_memory_seq_cp(mem, src[i], dst[i], 0, (llama_pos)(lcp[i] + nb));
        }
    for (i = 0; i < n; i++) {
        if (dst[i] == src[i]) F.llama_memory_seq_rm(mem, dst[i], (llama_pos)(lcp[i] + nb), -1);
        L->slots[dst[i]].cached = 0;   /* until the decode succeeds */
    }
    total = 0;
    for (i = 0; i < n; i++) {
        slot *sl = &L->slots[dst[i]];
        llama_token *b = buf + total;
        k = 0;
        if (lcp[i] == 0) {
            sl->n_past = 0;
            if (nb) b[k++] = lm->bos;
        } else
            sl->n_past = (int)(lcp[i] + nb);
        if (lens[i] > lcp[i]) memcpy(b + k, toks[i] + lcp[i], (lens[i] - lcp[i]) * sizeof *b);
        k += lens[i] - lcp[i];
        jobs[i].slot = dst[i];
        jobs[i].toks = b;
        jobs[i].n = k;
        jobs[i].want_from = k - 1;
        jobs[i].out = out + i * V;
        total += k;
    }
    st = run_jobs(lm, ctx, jobs, n);
    for (i = 0; i < n && !st; i++) {   /* remember what each slot now holds */
        slot *sl = &L->slots[dst[i]];
        if (lens[i] > sl->cap) {
            plm_token *t = realloc(sl->toks, lens[i] * sizeof *t);
            if (!t) {
                F.llama_memory_seq_rm(mem, dst[i], -1, -1);
                continue;
            }
            sl->toks = t;
            sl->cap = lens[i];
        }
        if (lens[i]) memcpy(sl->toks, toks[i], lens[i] * sizeof *sl->toks);
        sl->len = lens[i];
        sl->cached = L->reuse;
        sl->stamp = ++L->clock;
        if (!L->reuse) F.llama_memory_seq_rm(mem, dst[i], -1, -1);
    }
    if (st)
        for (i = 0; i < n; i++) F.llama_memory_seq_rm(mem, dst[i], -1, -1);
    else
        *done = n;
out:
    free(src);
    free(dst);
    free(lcp);
    free(claimed);
    free(needed);
    free(jobs);
    free(buf);
    return st;
}

static plm_status ll_next_logprobs(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks,
                                   const size_t *lens, double *out)
{
    llm *L = lm->impl;
    size_t done = 0, V = (size_t)lm->n_vocab;
    int retried = 0;
    while (done < n) {
        size_t k = 0;
        plm_status st = stateless_round(lm, ctx, n - done, toks + done, lens + done, out + done * V, &k);
        if (st == PLM_ERUNTIME && !retried && L->reuse) {   /* a full KV cache: give back the cached contexts */
            drop_cached(L);
            retried = 1;
            continue;
        }
        if (st) return st;
        done += k;
        retried = 0;
    }
    return PLM_OK;
}

static plm_status ll_score(plm_lm *lm, plm_ctx *ctx, const plm_token *prompt, size_t np, const plm_token *cont,
                           size_t nc, double *out)
{
    llm *L = lm->impl;
    size_t V = (size_t)lm->n_vocab, nb = L->add_bos ? 1 : 0, j;
    llama_token *b = malloc((nb + np + nc) * sizeof *b);
    double *rows = malloc(nc * V * sizeof *rows);
    job jb;
    int id;
    plm_status st;
    if (!b || !rows) {
        free(b);
        free(rows);
        return plm_fail(ctx, PLM_ENOMEM, "llama: out of memory scoring %zu tokens", nc);
    }
    if (nb + np == 0) {
        free(b);
        free(rows);
        return plm_fail(ctx, PLM_EINVAL, "llama: the first token has no distribution (empty prompt, no BOS)");
    }
    if (nb) b[0] = lm->bos;
    if (np) memcpy(b + nb, prompt, np * sizeof *b);
    if (nc) memcpy(b + nb + np, cont, nc * sizeof *b);
    if ((st = slot_get(lm, ctx, &id))) {
        free(b);
        free(rows);
        return st;
    }
    /* one pass: rows for the positions before each continuation token (the last token's row is not needed) */
    jb.slot = id;
    jb.toks = b;
    jb.n = nb + np + nc - 1;
    jb.want_from = nb + np - 1;
    jb.out = rows;
    st = run_jobs(lm, ctx, &jb, 1);
    ll_seq_free(lm, id);
    if (!st)
        for (j = 0; j < nc; j++) out[j] = rows[j * V + (size_t)cont[j]];
    free(b);
    free(rows);
    return st;
}

static plm_status ll_tokenize(plm_lm *lm, plm_ctx *ctx, const char *text, size_t len, plm_token *out, size_t cap,
                              size_t *n_out)
{
    llm *L = lm->impl;
    int32_t n, room = (int32_t)len + 8;
    llama_token *tmp;
    size_t i;
    /* byte vocabularies tokenize exactly, invalid UTF-8 included (llama.cpp would substitute U+FFFD) */
    if (L->byte_level) {
        for (i = 0; i < len && i < cap; i++) out[i] = (unsigned char)text[i];
        *n_out = len;
        return PLM_OK;
    }
    if (len > INT32_MAX / 8) return plm_fail(ctx, PLM_EINVAL, "llama: text too long to tokenize");
    for (;;) {   /* a negative count asks for more room */
        tmp = malloc((size_t)room * sizeof *tmp);
        if (!tmp) return plm_fail(ctx, PLM_ENOMEM, "llama: out of memory");
        n = F.llama_tokenize(L->vocab, text, (int32_t)len, tmp, room, false, false);
        if (n >= 0) break;
        free(tmp);
        if (-n <= room) return plm_fail(ctx, PLM_ERUNTIME, "llama: tokenize failed (%d)", (int)n);
        room = -n;
    }
    if (out && cap) memcpy(out, tmp, (size_t)(n < (int32_t)cap ? n : (int32_t)cap) * sizeof *out);
    *n_out = (size_t)n;
    free(tmp);
    return PLM_OK;
}

static void ll_destroy(plm_lm *lm)
{
    llm *L = lm->impl;
    if (!L) return;
    if (L->batch.token) F.llama_batch_free(L->batch);
    if (L->lctx) F.llama_free(L->lctx);
    if (L->model) F.llama_model_free(L->model);
    if (L->slots)
        for (int i = 0; i < L->n_slots; i++) free(L->slots[i].toks);
    free(L->slots);
    free(L->tmp);
    free(L->path);
    free(L);
}

static int ll_hidden_dim(plm_lm *lm)
{
    return F.llama_model_n_embd(((llm *)lm->impl)->model);
}

/* The last hidden state (llama.cpp's embeddings output, after the final norm) after each context: each context is
** decoded in a slot of its own with embeddings switched on for the call, the last position being the only output. */
static plm_status ll_hidden(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks, const size_t *lens,
                            double *out)
{
    llm *L = lm->impl;
    size_t E = (size_t)F.llama_model_n_embd(L->model), nb = L->add_bos ? 1 : 0, i, k;
    plm_status st = PLM_OK;
    F.llama_set_embeddings(L->lctx, true);
    for (i = 0; i < n && !st; i++) {
        size_t total = nb + lens[i], done = 0;
        int id, rc = 0;
        const float *e = NULL;
        if (total == 0) {
            st = plm_fail(ctx, PLM_EINVAL, "llama: an empty context has no hidden state (the model has no BOS)");
            break;
        }
        if ((st = slot_get(lm, ctx, &id))) break;
        while (done < total && rc == 0) {   /* batches of at most n_batch tokens; the last position is the output */
            int nbt = 0;
            for (; done < total && nbt < L->n_batch; done++, nbt++) {
                L->batch.token[nbt] = done < nb ? lm->bos : toks[i][done - nb];
                L->batch.pos[nbt] = (llama_pos)done;
                L->batch.n_seq_id[nbt] = 1;
                L->batch.seq_id[nbt][0] = id;
                L->batch.logits[nbt] = done + 1 == total;
            }
            L->batch.n_tokens = nbt;
            rc = F.llama_decode(L->lctx, L->batch);
            if (rc == 0 && done == total) e = F.llama_get_embeddings_ith(L->lctx, nbt - 1);
        }
        if (rc != 0) {
            char why[270];
            st = plm_fail(ctx, PLM_ERUNTIME, "llama: llama_decode failed (%d) computing a hidden state%s", rc, logged(why, sizeof why, 0));
        } else if (!e)
            st = plm_fail(ctx, PLM_ENOTSUP, "llama: %s gives no per-token hidden states (its pooling is not 'none')", L->path);
        else
            for (k = 0; k < E; k++) out[i * E + k] = e[k];
        ll_seq_free(lm, id);
    }
    F.llama_set_embeddings(L->lctx, false);
    return st;
}

static const plm_lm_ops llama_ops = {
    "llama", ll_next_logprobs, ll_tokenize, ll_score, NULL, ll_seq_new, ll_seq_fork, ll_seq_free, ll_seq_extend,
    ll_destroy, ll_hidden_dim, ll_hidden,
};

int plm_llama_get_stats(const plm_lm *lm, plm_llama_stats *out)
{
    const plm_lm *in = plm_lm_cache_inner(lm);
    if (in) lm = in;
    memset(out, 0, sizeof *out);
    if (lm->ops != &llama_ops) return 0;
    *out = ((const llm *)lm->impl)->stats;
    return 1;
}

plm_status plm_llama_new(plm_ctx *ctx, const plm_llama_opts *opts, plm_lm **out)
{
    struct llama_model_params mp;
    struct llama_context_params cp;
    llm *L;
    plm_lm *lm;
    FILE *f;
    char magic[4] = {0};
    int n_ctx = opts->ctx > 0 ? opts->ctx : 4096, seqs = opts->seqs > 0 ? opts->seqs : 64, V, v, n_eos = 0;
    int threads = opts->threads > 0 ? opts->threads : plm_default_threads();
    *out = NULL;
    if (!opts->model) return plm_fail(ctx, PLM_EINVAL, "llama: the model option (a GGUF file) is required");
    if (seqs > 4096) return plm_fail(ctx, PLM_EINVAL, "llama: seqs must be 1..4096 (got %d)", seqs);
    if (!(f = fopen(opts->model, "rb"))) return plm_fail(ctx, PLM_EIO, "llama: cannot open model '%s'", opts->model);
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "GGUF", 4) != 0) {
        fclose(f);
        return plm_fail(ctx, PLM_EPARSE, "llama: '%s' is not a GGUF file", opts->model);
    }
    fclose(f);
    if (!plm_llama_available(ctx)) return PLM_ENOTSUP;
    /* llama.cpp asserts (so the process dies) on some corrupt files, e.g. a vocabulary with a token listed
    ** twice, and says only "failed to load model" on others: check the structure first and say what is wrong */
    if (plm_gguf_check(ctx, opts->model, ggml_tensor_bytes)) {
        char why[PLM_MSG_MAX];
        snprintf(why, sizeof why, "%s", plm_ctx_errmsg(ctx));
        return plm_fail(ctx, ctx->status, "llama: %s", why);
    }
    if (!(L = calloc(1, sizeof *L)) || !(L->path = strdup(opts->model))) {
        free(L);
        return plm_fail(ctx, PLM_ENOMEM, "llama: out of memory");
    }
    clear_logs();
    mp = F.llama_model_default_params();
    mp.n_gpu_layers = 0;
    L->model = F.llama_model_load_from_file(opts->model, mp);
    if (!L->model) {
        free(L->path);
        free(L);
        char why[270];
        return plm_fail(ctx, PLM_EPARSE, "llama: cannot load '%s'%s", opts->model, logged(why, sizeof why, 1));
    }
    L->vocab = F.llama_model_get_vocab(L->model);
    V = F.llama_vocab_n_tokens(L->vocab);
    cp = F.llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)(n_ctx < 2048 ? n_ctx : 2048);
    cp.n_ubatch = cp.n_batch < 512 ? cp.n_batch : 512;
    cp.n_seq_max = (uint32_t)seqs;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    /* unified: sequences share cells, and a fork is a copy of cell ownership, not of data */
    cp.kv_unified = !opts->split_kv;
    cp.no_perf = true;
    L->lctx = F.llama_init_from_model(L->model, cp);
    if (!L->lctx) {
        F.llama_model_free(L->model);
        free(L->path);
        free(L);
        char why[270];
        return plm_fail(ctx, PLM_ERUNTIME, "llama: cannot create a context of %d cells for %d sequences%s", n_ctx, seqs,
                        logged(why, sizeof why, 0));
    }
    L->n_batch = (int)cp.n_batch;
    L->n_slots = seqs;
    L->slots = calloc((size_t)seqs, sizeof *L->slots);
    L->batch = F.llama_batch_init(L->n_batch, 0, 1);
    L->add_bos = F.llama_vocab_get_add_bos(L->vocab) && F.llama_vocab_bos(L->vocab) >= 0;
    L->reuse = !opts->no_prefix_reuse;
    lm = plm_lm_alloc(&llama_ops, L, V);
    if (!L->slots || !L->batch.token || !lm || !(lm->eos = malloc((size_t)V * sizeof *lm->eos))) {
        if (lm) {
            plm_lm_free(lm);   /* releases L too */
        } else {
            plm_lm tmp;
            tmp.impl = L;
            ll_destroy(&tmp);
        }
        return plm_fail(ctx, PLM_ENOMEM, "llama: out of memory");
    }
    lm->bos = L->add_bos ? F.llama_vocab_bos(L->vocab) : -1;
    {
        /* llama.cpp rounds the cells per sequence up to a multiple of 256 */
        uint32_t train = (uint32_t)F.llama_model_n_ctx_train(L->model), have = F.llama_n_ctx_seq(L->lctx);
        lm->max_ctx = train > 0 && train < have ? train : have;
    }
    for (v = 0; v < V; v++) {
        char buf[256];
        int32_t k = F.llama_token_to_piece(L->vocab, v, buf, sizeof buf, 0, false);
        if (k < 0 || k > (int32_t)sizeof buf) k = 0;   /* pieces longer than 256 bytes do not occur in practice */
        if (F.llama_vocab_is_eog(L->vocab, v)) lm->eos[n_eos++] = v, k = 0;
        if (plm_lm_set_token(lm, ctx, v, buf, (size_t)k)) {
            plm_lm_free(lm);
            return PLM_ENOMEM;
        }
    }
    lm->n_eos = n_eos;
    L->byte_level = V >= 256;
    for (v = 0; v < 256 && L->byte_level; v++)
        L->byte_level = lm->tok_len[v] == 1 && (unsigned char)lm->tok_bytes[v][0] == v;
    *out = lm;
    return PLM_OK;
}

#endif
