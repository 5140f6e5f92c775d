/* test_lm_llama.c -- the llama.cpp backend on a tiny random GGUF (n_embd 64, 2 layers): normalised rows,
** forked KV sequences equal fresh evaluations, one-pass scores equal step-by-step rows, byte tokens round
** trip, bad models and over-long contexts fail cleanly. Prints SKIP when libllama cannot be loaded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "plume.h"

static char dir[256], model[300];
static plm_lm *lm;

static size_t tok(const char *s, plm_token *t, size_t cap)
{
    plm_ctx ctx;
    size_t n = 0;
    if (plm_lm_tokenize(lm, &ctx, s, strlen(s), t, cap, &n)) printf("  %s\n", ctx.msg);
    return n;
}

static double max_abs_diff(const double *a, const double *b, size_t n)
{
    double m = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (fabs(a[i] - b[i]) > m) m = fabs(a[i] - b[i]);
    return m;
}

static void test_logprobs_sum_to_one(void)
{
    plm_ctx ctx;
    plm_token t[3][32];
    const plm_token *tp[3] = {t[0], t[1], t[2]};
    size_t lens[3], i, V = (size_t)lm->n_vocab;
    double *rows = malloc(3 * V * sizeof *rows);
    lens[0] = tok("Once upon a time", t[0], 32);
    lens[1] = 0;
    lens[2] = tok("\xc3\xa9t\xc3\xa9", t[2], 32);
    CHECK(plm_lm_next_logprobs(lm, &ctx, 3, tp, lens, rows) == PLM_OK);
    for (i = 0; i < 3; i++) {
        double m = -INFINITY, s = 0;
        size_t v;
        for (v = 0; v < V; v++) m = fmax(m, rows[i * V + v]);
        for (v = 0; v < V; v++) s += exp(rows[i * V + v] - m);
        CHECK_NEAR(m + log(s), 0.0, 1e-6);
    }
    /* random weights still give a far-from-uniform row: the test would notice a constant output */
    CHECK(max_abs_diff(rows, rows + V, V) > 1e-3);
    free(rows);
}

/* A sequence forked after a shared prompt and extended gives the distribution of a fresh evaluation of the
** whole text, to f32 rounding; so does the stateless call. */
static void test_fork_equals_fresh_evaluation(void)
{
    plm_ctx ctx;
    plm_token p[32], a[8], b[8], full[40];
    size_t np = tok("The cat", p, 32), na = tok(" sat", a, 8), nb = tok(" ran", b, 8), V = (size_t)lm->n_vocab, nf;
    int s, f, g, two[2];
    const plm_token *tp[2];
    size_t lens[2];
    double *r = malloc(4 * V * sizeof *r), worst = 0;
    CHECK(plm_lm_seq_new(lm, &ctx, &s) == PLM_OK);
    tp[0] = p;
    CHECK(plm_lm_seq_extend(lm, &ctx, 1, &s, tp, &np, NULL) == PLM_OK);
    CHECK(plm_lm_seq_fork(lm, &ctx, s, &f) == PLM_OK);
    two[0] = s;
    two[1] = f;
    tp[0] = a;
    tp[1] = b;
    lens[0] = na;
    lens[1] = nb;
    CHECK(plm_lm_seq_extend(lm, &ctx, 2, two, tp, lens, r) == PLM_OK);   /* one decode for both */
    /* fresh: "The cat ran" evaluated from scratch in a new sequence */
    memcpy(full, p, np * sizeof *p);
    memcpy(full + np, b, nb * sizeof *b);
    nf = np + nb;
    CHECK(plm_lm_seq_new(lm, &ctx, &g) == PLM_OK);
    tp[0] = full;
    CHECK(plm_lm_seq_extend(lm, &ctx, 1, &g, tp, &nf, r + 2 * V) == PLM_OK);
    worst = max_abs_diff(r + V, r + 2 * V, V);
    CHECK(worst < 1e-4);
    /* and the stateless path */
    CHECK(plm_lm_next_logprobs(lm, &ctx, 1, tp, &nf, r + 3 * V) == PLM_OK);
    CHECK(max_abs_diff(r + V, r + 3 * V, V) < 1e-4);
    /* negative control: the other branch differs from the fresh "ran" row by far more than rounding */
    CHECK(max_abs_diff(r, r + 2 * V, V) > 1e-2);
    /* extending by nothing gives the current row again */
    lens[0] = 0;
    CHECK(plm_lm_seq_extend(lm, &ctx, 1, &f, tp, lens, r + 3 * V) == PLM_OK);
    CHECK(max_abs_diff(r + V, r + 3 * V, V) < 1e-4);
    plm_lm_seq_free(lm, s);
    plm_lm_seq_free(lm, f);
    plm_lm_seq_free(lm, g);
    free(r);
}

static void test_score_matches_stepwise_rows(void)
{
    plm_ctx ctx;
    plm_token p[16], c[16], ctxt[32];
    size_t np = tok("ab", p, 16), nc = tok("cde", c, 16), j, V = (size_t)lm->n_vocab;
    double sc[16], *row = malloc(V * sizeof *row);
    CHECK(plm_lm_score(lm, &ctx, p, np, c, nc, sc) == PLM_OK);
    memcpy(ctxt, p, np * sizeof *p);
    for (j = 0; j < nc; j++) {
        const plm_token *tp = ctxt;
        size_t len = np + j;
        memcpy(ctxt + np, c, j * sizeof *c);
        CHECK(plm_lm_next_logprobs(lm, &ctx, 1, &tp, &len, row) == PLM_OK);
        CHECK_NEAR(sc[j], row[c[j]], 1e-4);
    }
    free(row);
}

static void test_byte_tokens_round_trip(void)
{
    plm_ctx ctx;
    const char *s = "h\xc3\xa9llo\n\t!";
    plm_token t[32];
    char back[64];
    size_t n = tok(s, t, 32), nb = 0, i;
    CHECK(n == strlen(s));
    for (i = 0; i < n; i++) CHECK(t[i] == (unsigned char)s[i]);   /* byte tokens are the bytes' values */
    CHECK(plm_lm_detokenize(lm, &ctx, t, n, back, sizeof back, &nb) == PLM_OK);
    CHECK(nb == strlen(s) && memcmp(back, s, nb) == 0);
    CHECK(lm->bos == 256 && lm->n_eos == 1 && lm->eos[0] == 257 && lm->tok_len[256] == 0);
}

static void test_context_longer_than_model_fails(void)
{
    plm_ctx ctx;
    size_t len = lm->max_ctx, i;
    plm_token *t = malloc(len * sizeof *t);
    const plm_token *tp = t;
    double *row = malloc((size_t)lm->n_vocab * sizeof *row);
    for (i = 0; i < len; i++) t[i] = 'a';
    CHECK(plm_lm_next_logprobs(lm, &ctx, 1, &tp, &len, row) == PLM_EINVAL);   /* BOS makes it one too many */
    CHECK(strstr(ctx.msg, "longer than the model's context") != NULL);
    len--;
    CHECK(plm_lm_next_logprobs(lm, &ctx, 1, &tp, &len, row) == PLM_OK);
    free(t);
    free(row);
}

static void test_bad_models_fail_cleanly(void)
{
    plm_ctx ctx;
    plm_lm *bad = NULL;
    char path[400];
    plm_llama_opts o = {NULL, 64, 2, 1, 0, 0};
    FILE *f;
    long size;
    char *buf;
    o.model = "/nonexistent/model.gguf";
    CHECK(plm_llama_new(&ctx, &o, &bad) == PLM_EIO && bad == NULL);
    snprintf(path, sizeof path, "%s/notgguf.gguf", dir);
    f = fopen(path, "w");
    fputs("this is not a model", f);
    fclose(f);
    o.model = path;
    CHECK(plm_llama_new(&ctx, &o, &bad) == PLM_EPARSE && bad == NULL);
    /* a truncated model: the header promises tensor data the file does not have */
    f = fopen(model, "rb");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) CHECK(0);
    fclose(f);
    snprintf(path, sizeof path, "%s/truncated.gguf", dir);
    f = fopen(path, "wb");
    fwrite(buf, 1, (size_t)size / 2, f);
    fclose(f);
    CHECK(plm_llama_new(&ctx, &o, &bad) == PLM_EPARSE && bad == NULL);
    CHECK(strstr(ctx.msg, "truncated.gguf") != NULL);
    free(buf);
}

static void test_sequences_run_out_cleanly(void)
{
    plm_ctx ctx;
    int ids[9], i, k = 0;
    for (i = 0; i < 9; i++)
        if (plm_lm_seq_new(lm, &ctx, &ids[k]) == PLM_OK) k++;
    CHECK(k == 8 && strstr(ctx.msg, "raise seqs=") != NULL);
    for (i = 0; i < k; i++) plm_lm_seq_free(lm, ids[i]);
    CHECK(plm_lm_seq_new(lm, &ctx, &ids[0]) == PLM_OK);
    plm_lm_seq_free(lm, ids[0]);
}

/* More tokens than KV cells: the call fails with a message, the sequences stay usable. */
static void test_full_kv_cache_fails_cleanly(void)
{
    plm_ctx ctx;
    plm_lm *small = NULL;
    plm_llama_opts o = {model, 256, 8, 1, 0, 0};   /* 256 cells (llama.cpp's minimum) for 8 x 41 tokens */
    int ids[8], i;
    plm_token t[40];
    const plm_token *tp[8];
    size_t lens[8];
    double *rows;
    CHECK(plm_llama_new(&ctx, &o, &small) == PLM_OK);
    if (!small) return;
    rows = malloc(8 * (size_t)small->n_vocab * sizeof *rows);
    for (i = 0; i < 40; i++) t[i] = 'x';
    for (i = 0; i < 8; i++) {
        CHECK(plm_lm_seq_new(small, &ctx, &ids[i]) == PLM_OK);
        tp[i] = t;
        lens[i] = 40;
    }
    CHECK(plm_lm_seq_extend(small, &ctx, 8, ids, tp, lens, rows) == PLM_ERUNTIME);
    CHECK(strstr(ctx.msg, "raise ctx=") != NULL);
    for (i = 1; i < 8; i++) plm_lm_seq_free(small, ids[i]);
    CHECK(plm_lm_seq_extend(small, &ctx, 1, ids, tp, lens, rows) == PLM_OK);
    plm_lm_free(small);
    free(rows);
}

/* split_kv: per-sequence KV streams; a fork copies the buffer and still equals a fresh evaluation. */
static void test_split_kv_fork_equals_fresh(void)
{
    plm_ctx ctx;
    plm_lm *sp = NULL;
    plm_llama_opts o = {model, 4 * 64, 4, 1, 1, 0};
    plm_token t[8] = {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'};
    const plm_token *tp = t, *tail = t + 5;
    size_t n5 = 5, n3 = 3, n8 = 8, V;
    int s, f, g;
    double *r;
    CHECK(plm_llama_new(&ctx, &o, &sp) == PLM_OK);
    if (!sp) return;
    CHECK(sp->max_ctx > 0 && sp->max_ctx <= 128);
    V = (size_t)sp->n_vocab;
    r = malloc(2 * V * sizeof *r);
    CHECK(plm_lm_seq_new(sp, &ctx, &s) == PLM_OK);
    CHECK(plm_lm_seq_extend(sp, &ctx, 1, &s, &tp, &n5, NULL) == PLM_OK);
    CHECK(plm_lm_seq_fork(sp, &ctx, s, &f) == PLM_OK);
    plm_lm_seq_free(sp, s);
    CHECK(plm_lm_seq_extend(sp, &ctx, 1, &f, &tail, &n3, r) == PLM_OK);
    CHECK(plm_lm_seq_new(sp, &ctx, &g) == PLM_OK);
    CHECK(plm_lm_seq_extend(sp, &ctx, 1, &g, &tp, &n8, r + V) == PLM_OK);
    CHECK(max_abs_diff(r, r + V, V) < 1e-4);
    plm_lm_free(sp);
    free(r);
}

/* Stateless calls start from the cached context with the longest common prefix: the rows equal a backend that
** evaluates everything from scratch, and only the new tokens are decoded (the SMC pattern: extend, resample). */
static void test_stateless_prefix_reuse_matches_fresh(void)
{
    plm_ctx ctx;
    plm_lm *fresh = NULL;
    plm_llama_opts o = {model, 256, 8, 1, 0, 1};
    plm_token a[12], ax[13], ay[13];
    const plm_token *step1[1] = {a}, *step2[2] = {ax, ay}, *step3[3] = {ay, ax, a};
    size_t la = 12, l2[2] = {13, 13}, l3[3] = {13, 13, 12}, V = (size_t)lm->n_vocab, i;
    double *r = malloc(3 * V * sizeof *r), *f = malloc(3 * V * sizeof *f);
    plm_llama_stats s0, s1;
    CHECK(plm_llama_new(&ctx, &o, &fresh) == PLM_OK);
    if (!fresh) return;
    for (i = 0; i < 12; i++) a[i] = ax[i] = ay[i] = (plm_token)("zqzqzq prefix"[i]);
    ax[12] = 'x';
    ay[12] = 'y';
    CHECK(plm_lm_next_logprobs(lm, &ctx, 1, step1, &la, r) == PLM_OK);
    CHECK(plm_lm_next_logprobs(fresh, &ctx, 1, step1, &la, f) == PLM_OK);
    CHECK(max_abs_diff(r, f, V) < 1e-4);
    plm_llama_get_stats(lm, &s0);
    CHECK(plm_lm_next_logprobs(lm, &ctx, 2, step2, l2, r) == PLM_OK);   /* extend in place + fork */
    plm_llama_get_stats(lm, &s1);
    CHECK(s1.decode_tokens - s0.decode_tokens == 2 && s1.decode_calls - s0.decode_calls == 1);
    CHECK(plm_lm_next_logprobs(fresh, &ctx, 2, step2, l2, f) == PLM_OK);
    CHECK(max_abs_diff(r, f, 2 * V) < 1e-4);
    CHECK(max_abs_diff(r, r + V, V) > 1e-3);   /* the two branches differ */
    s0 = s1;
    CHECK(plm_lm_next_logprobs(lm, &ctx, 3, step3, l3, r) == PLM_OK);   /* repeats and a shorter prefix */
    plm_llama_get_stats(lm, &s1);
    CHECK(s1.decode_tokens - s0.decode_tokens == 3);
    CHECK(plm_lm_next_logprobs(fresh, &ctx, 3, step3, l3, f) == PLM_OK);
    CHECK(max_abs_diff(r, f, 3 * V) < 1e-4);
    plm_lm_free(fresh);
    free(r);
    free(f);
}

/* Child side of the fuzz test: load path and read one row. Exit 0 when that worked, 1 when it failed with a
** specific message, 2 when the message only says that loading failed (printed for the parent's report). */
static int load_and_read(const char *path)
{
    plm_ctx ctx;
    plm_llama_opts lo = {NULL, 32, 1, 1, 0, 0};
    plm_lm *m;
    plm_token t[2] = {65, 66};
    const plm_token *tp = t;
    size_t len = 2;
    double *row;
    char generic[400];
    lo.model = path;
    if (plm_llama_new(&ctx, &lo, &m) == PLM_OK) {
        plm_status st;
        if (!(row = malloc((size_t)m->n_vocab * sizeof *row))) return 1;
        st = plm_lm_next_logprobs(m, &ctx, 1, &tp, &len, row);
        free(row);
        plm_lm_free(m);
        if (st == PLM_OK) return 0;
    }
    if (getenv("PLUME_FUZZ_VERBOSE")) printf("  %s\n", ctx.msg);
    snprintf(generic, sizeof generic, "llama: cannot load '%s'", path);
    if (strcmp(ctx.msg, generic) == 0 || strstr(ctx.msg, "failed to load model")) {
        printf("  generic message: %s\n", ctx.msg);
        return 2;
    }
    return 1;
}

/* 300 corrupt copies of a tiny GGUF (n_embd 8, one layer), from fixed seeds: 150 single-byte changes in the
** header, metadata and tensor descriptors (the first 4 KB, where the vocabulary is), 75 anywhere in the file,
** 75 truncations. Each is loaded in a child process, which must never die by a signal (llama.cpp asserts on
** some corrupt vocabularies), and every failure must say what is wrong rather than "failed to load model".
** The children start before the parent creates any llama context, so no ggml thread exists at fork. */
static void test_corrupt_files_never_crash(void)
{
    plm_ctx ctx;
    plm_gguf_tiny_opts o;
    plm_rng r;
    char good[320], bad[320];
    unsigned char *buf;
    long size;
    FILE *f;
    int k, signalled = 0, generic = 0, failed = 0, loaded = 0;
    plm_gguf_tiny_defaults(&o);
    o.n_embd = 8, o.n_layer = 1, o.n_head = 2, o.n_ff = 16, o.ctx = 32;
    snprintf(good, sizeof good, "%s/fuzz_base.gguf", dir);
    snprintf(bad, sizeof bad, "%s/fuzz.gguf", dir);
    CHECK(plm_gguf_write_tiny(&ctx, good, &o, NULL) == PLM_OK);
    CHECK((f = fopen(good, "rb")) != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    rewind(f);
    buf = malloc((size_t)size);
    CHECK(buf && fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    CHECK(size > 8192);
    CHECK(plm_gguf_check(&ctx, good, NULL) == PLM_OK);   /* the intact file passes */
    plm_rng_init(&r, 8, 0);
    fflush(stdout);
    for (k = 0; k < 300; k++) {
        long len = size, at;
        unsigned char old = 0;
        pid_t pid;
        int status;
        if (k < 225) {   /* one byte changed to another value */
            at = k < 150 ? (long)(plm_rng_uniform(&r) * 4096) : (long)(plm_rng_uniform(&r) * (double)size);
            old = buf[at];
            buf[at] ^= (unsigned char)(1 + (int)(plm_rng_uniform(&r) * 255));
        } else {
            at = -1;
            len = (long)(plm_rng_uniform(&r) * (double)size);
        }
        f = fopen(bad, "wb");
        CHECK(f && fwrite(buf, 1, (size_t)len, f) == (size_t)len);
        if (f) fclose(f);
        if (at >= 0) buf[at] = old;
        fflush(stdout);   /* or the child would print the parent's buffered lines again */
        if ((pid = fork()) == 0) {
            int rc = load_and_read(bad);
            fflush(stdout);
            _exit(rc);
        }
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        if (WIFSIGNALED(status)) {
            signalled++;
            printf("  case %d (%s at %ld) died by signal %d\n", k, at >= 0 ? "byte" : "truncated", at >= 0 ? at : len,
                   WTERMSIG(status));
        } else if (WEXITSTATUS(status) == 2) {
            generic++;
            printf("  case %d (%s at %ld)\n", k, at >= 0 ? "byte" : "truncated", at >= 0 ? at : len);
        } else if (WEXITSTATUS(status) == 1)
            failed++;
        else
            loaded++;
    }
    free(buf);
    CHECK(signalled == 0);
    CHECK(generic == 0);
    CHECK(failed >= 75);   /* every truncation at least fails, and says why */
    printf("  fuzz: %d loaded, %d failed with a specific message\n", loaded, failed);
}

int main(int argc, char **argv)
{
    plm_ctx ctx;
    plm_gguf_tiny_opts o;
    plm_llama_opts lo = {NULL, 256, 8, 1, 0, 0};
    char cmd[300];
    if (!plm_llama_available(&ctx)) {
        printf("SKIP test_lm_llama: %s\n", ctx.msg);
        return 0;
    }
    snprintf(dir, sizeof dir, "/tmp/plume_test_llama_%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(model, sizeof model, "%s/tiny.gguf", dir);
    plm_gguf_tiny_defaults(&o);
    o.ctx = 128;
    RUN(test_corrupt_files_never_crash);
    if (argc > 1 && strcmp(argv[1], "--fuzz-only") == 0) return CHECK_DONE();
    if (plm_gguf_write_tiny(&ctx, model, &o, NULL) || (lo.model = model, plm_llama_new(&ctx, &lo, &lm))) {
        printf("FAIL setup: %s\n", ctx.msg);
        return 1;
    }
    RUN(test_logprobs_sum_to_one);
    RUN(test_fork_equals_fresh_evaluation);
    RUN(test_score_matches_stepwise_rows);
    RUN(test_byte_tokens_round_trip);
    RUN(test_context_longer_than_model_fails);
    RUN(test_bad_models_fail_cleanly);
    RUN(test_sequences_run_out_cleanly);
    RUN(test_full_kv_cache_fails_cleanly);
    RUN(test_split_kv_fork_equals_fresh);
    RUN(test_stateless_prefix_reuse_matches_fresh);
    plm_lm_free(lm);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
    return CHECK_DONE();
}
