/* lm_decode.c -- batched decoding with KV forking vs re-evaluating every sequence's whole prefix at every step,
** on a random llama-architecture GGUF (default: n_embd 512, 8 layers, 8 heads, n_ff 1536: about 27.5M weights).
** 64 sequences share a 16-token prompt (evaluated once, then forked) and generate 32 tokens each; both methods
** sample from the same rows with the same per-sequence streams, so they do the same work and produce (up to f32
** rounding) the same tokens. Reports generated tokens/s of each and their ratio, plus how the forked method's
** time splits between plm_lm_seq_extend (llama_decode + log-softmax) and plume's own per-token work.
** usage: lm_decode [threads] [n_embd n_layer n_head n_ff] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <math.h>

#include "plume.h"

#define NSEQ 64
#define NTOK 32
#define NPROMPT 16

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static plm_token sample(const double *row, int V, plm_rng *r)
{
    double u = plm_rng_uniform(r);
    int v;
    for (v = 0; v < V; v++) {
        u -= exp(row[v]);
        if (u < 0) return v;
    }
    return V - 1;
}

int main(int argc, char **argv)
{
    plm_ctx ctx;
    plm_gguf_tiny_opts o;
    plm_llama_opts lo = {NULL, 4096, NSEQ + 1, 1, 0};
    plm_lm *lm;
    char path[256];
    uint64_t nparams;
    static plm_token gen_fork[NSEQ][NPROMPT + NTOK], gen_naive[NSEQ][NPROMPT + NTOK];
    plm_token prompt[NPROMPT];
    double *rows, t0, t_fork, t_naive, t_ext = 0;
    plm_llama_stats st_fork;
    plm_rng rng[NSEQ];
    int seqs[NSEQ], root, i, s, step, V, same = 0;
    plm_gguf_tiny_defaults(&o);
    o.n_embd = 512;
    o.n_layer = 8;
    o.n_head = 8;
    o.n_ff = 1536;
    o.ctx = 512;
    if (argc > 1) lo.threads = atoi(argv[1]);
    if (getenv("SPLIT_KV")) {   /* per-sequence KV streams of 64 cells */
        lo.split_kv = 1;
        lo.ctx = 64 * (NSEQ + 1);
    }
    if (argc > 5) {
        o.n_embd = atoi(argv[2]);
        o.n_layer = atoi(argv[3]);
        o.n_head = atoi(argv[4]);
        o.n_ff = atoi(argv[5]);
    }
    if (!plm_llama_available(&ctx)) {
        printf("SKIP lm_decode: %s\n", ctx.msg);
        return 0;
    }
    snprintf(path, sizeof path, "/tmp/plume_bench_lm_%d.gguf", (int)getpid());
    if (plm_gguf_write_tiny(&ctx, path, &o, &nparams)) {
        fprintf(stderr, "%s\n", ctx.msg);
        return 1;
    }
    lo.model = path;
    if (plm_llama_new(&ctx, &lo, &lm)) {
        fprintf(stderr, "%s\n", ctx.msg);
        remove(path);
        return 1;
    }
    V = lm->n_vocab;
    rows = malloc((size_t)NSEQ * (size_t)V * sizeof *rows);
    for (i = 0; i < NPROMPT; i++) prompt[i] = "Once upon a time"[i];
    printf("lm_decode: %.1fM-parameter random GGUF (n_embd %d, %d layers, %d heads, n_ff %d), %d threads\n",
           (double)nparams / 1e6, o.n_embd, o.n_layer, o.n_head, o.n_ff, lo.threads);
    printf("  %d sequences x %d tokens after a %d-token prompt\n", NSEQ, NTOK, NPROMPT);

    /* forked: the prompt once, 63 forks, then one decode of 64 tokens per step */
    t0 = now();
    {
        const plm_token *tp = prompt;
        size_t np = NPROMPT;
        double t1 = now();
        if (plm_lm_seq_new(lm, &ctx, &root) || plm_lm_seq_extend(lm, &ctx, 1, &root, &tp, &np, rows)) goto fail;
        t_ext += now() - t1;
        for (s = 0; s < NSEQ; s++) {
            if (plm_lm_seq_fork(lm, &ctx, root, &seqs[s])) goto fail;
            if (s) memcpy(rows + (size_t)s * (size_t)V, rows, (size_t)V * sizeof *rows);
            plm_rng_init(&rng[s], 42, (uint64_t)s);
        }
        plm_lm_seq_free(lm, root);
    }
    for (step = 0; step < NTOK; step++) {
        const plm_token *tp[NSEQ];
        size_t lens[NSEQ];
        double t1;
        for (s = 0; s < NSEQ; s++) {
            gen_fork[s][step] = sample(rows + (size_t)s * (size_t)V, V, &rng[s]);
            tp[s] = &gen_fork[s][step];
            lens[s] = 1;
        }
        t1 = now();
        if (step + 1 < NTOK && plm_lm_seq_extend(lm, &ctx, NSEQ, seqs, tp, lens, rows)) goto fail;
        t_ext += now() - t1;
    }
    t_fork = now() - t0;
    plm_llama_get_stats(lm, &st_fork);
    for (s = 0; s < NSEQ; s++) plm_lm_seq_free(lm, seqs[s]);

    /* naive: every step evaluates each sequence's prompt + tokens so far from scratch */
    t0 = now();
    for (s = 0; s < NSEQ; s++) {
        plm_rng_init(&rng[s], 42, (uint64_t)s);
        memcpy(gen_naive[s], prompt, sizeof prompt);
    }
    for (step = 0; step < NTOK; step++) {
        const plm_token *tp[NSEQ];
        size_t lens[NSEQ];
        for (s = 0; s < NSEQ; s++) {
            tp[s] = gen_naive[s];
            lens[s] = (size_t)(NPROMPT + step);
        }
        if (plm_lm_next_logprobs(lm, &ctx, NSEQ, tp, lens, rows)) goto fail;
        for (s = 0; s < NSEQ; s++) gen_naive[s][NPROMPT + step] = sample(rows + (size_t)s * (size_t)V, V, &rng[s]);
    }
    t_naive = now() - t0;
    for (s = 0; s < NSEQ; s++) same += memcmp(gen_fork[s], gen_naive[s] + NPROMPT, NTOK * sizeof(plm_token)) == 0;

    printf("  forked KV, batched decode: %8.1f tokens/s (%.3f s; %ld llama_decode calls, %.1f%% of the time outside "
           "llama_decode, %.1f%% outside plm_lm_seq_extend)\n",
           NSEQ * NTOK / t_fork, t_fork, st_fork.decode_calls, 100 * (t_fork - st_fork.decode_seconds) / t_fork,
           100 * (t_fork - t_ext) / t_fork);
    printf("  re-evaluate whole prefix:  %8.1f tokens/s (%.3f s)\n", NSEQ * NTOK / t_naive, t_naive);
    printf("  speed-up: %.1fx; %d of %d sequences generated identical tokens both ways\n", t_naive / t_fork, same, NSEQ);
    plm_lm_free(lm);
    free(rows);
    remove(path);
    return 0;
fail:
    fprintf(stderr, "lm_decode: %s\n", ctx.msg);
    plm_lm_free(lm);
    remove(path);
    return 1;
}
