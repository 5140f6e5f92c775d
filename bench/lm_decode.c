/* lm_decode.c -- batched decoding with KV forking vs re-evaluating every sequence's whole prefix at every step,
** on a random llama-architecture GGUF (default: n_embd 512, 8 layers, 8 heads, n_ff 1536: about 27.5M weights).
** 64 sequences share a 16-token prompt and generate 32 tokens each, three ways: (1) explicit KV sequences (the
** prompt evaluated once, then forked; one llama_decode of 64 tokens per step), (2) stateless batched calls
** (plm_lm_next_logprobs with every full context; the backend starts each from its cached longest prefix), and
** (3) the naive method: the same stateless calls on a backend without prefix reuse, so each step re-evaluates
** every sequence's whole prefix. All sample from the same rows with the same per-sequence streams, so they do the
** same work and produce (up to f32 rounding) the same tokens. Reports generated tokens/s of each, the ratios, and
** how much of (1)'s time is spent outside llama_decode.
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
    plm_llama_opts lo = {NULL, 4096, NSEQ + 1, 1, 0, 0};
    plm_lm *lm, *naive = NULL;
    char path[256];
    uint64_t nparams;
    static plm_token gen_fork[NSEQ][NPROMPT + NTOK], gen_naive[NSEQ][NPROMPT + NTOK], gen_reuse[NSEQ][NPROMPT + NTOK];
    plm_token prompt[NPROMPT];
    double *rows, t0, t_fork, t_naive = 0, t_reuse = 0, t_ext = 0;
    plm_llama_stats st_fork;
    plm_rng rng[NSEQ];
    int seqs[NSEQ], root, i, s, step, V, same = 0, same_reuse = 0, pass;
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
    lo.no_prefix_reuse = 1;
    if (plm_llama_new(&ctx, &lo, &naive)) goto fail;
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

    /* stateless calls with every full context: pass 0 on the prefix-reusing backend, pass 1 on the naive one,
    ** which evaluates each sequence's prompt + tokens so far from scratch at every step */
    for (pass = 0; pass < 2; pass++) {
        plm_lm *m = pass ? naive : lm;
        plm_token(*gen)[NPROMPT + NTOK] = pass ? gen_naive : gen_reuse;
        t0 = now();
        for (s = 0; s < NSEQ; s++) {
            plm_rng_init(&rng[s], 42, (uint64_t)s);
            memcpy(gen[s], prompt, sizeof prompt);
        }
        for (step = 0; step < NTOK; step++) {
            const plm_token *tp[NSEQ];
            size_t lens[NSEQ];
            for (s = 0; s < NSEQ; s++) {
                tp[s] = gen[s];
                lens[s] = (size_t)(NPROMPT + step);
            }
            if (plm_lm_next_logprobs(m, &ctx, NSEQ, tp, lens, rows)) goto fail;
            for (s = 0; s < NSEQ; s++) gen[s][NPROMPT + step] = sample(rows + (size_t)s * (size_t)V, V, &rng[s]);
        }
        if (pass) t_naive = now() - t0;
        else t_reuse = now() - t0;
    }
    for (s = 0; s < NSEQ; s++) {
        same += memcmp(gen_fork[s], gen_naive[s] + NPROMPT, NTOK * sizeof(plm_token)) == 0;
        same_reuse += memcmp(gen_fork[s], gen_reuse[s] + NPROMPT, NTOK * sizeof(plm_token)) == 0;
    }

    printf("  forked KV, batched decode: %8.1f tokens/s (%.3f s; %ld llama_decode calls, %.1f%% of the time outside "
           "llama_decode, %.1f%% outside plm_lm_seq_extend)\n",
           NSEQ * NTOK / t_fork, t_fork, st_fork.decode_calls, 100 * (t_fork - st_fork.decode_seconds) / t_fork,
           100 * (t_fork - t_ext) / t_fork);
    printf("  stateless, prefix reuse:   %8.1f tokens/s (%.3f s)\n", NSEQ * NTOK / t_reuse, t_reuse);
    printf("  re-evaluate whole prefix:  %8.1f tokens/s (%.3f s)\n", NSEQ * NTOK / t_naive, t_naive);
    printf("  speed-up over re-evaluation: forked %.1fx, prefix reuse %.1fx; identical tokens to forked: "
           "%d/%d (re-evaluation), %d/%d (prefix reuse)\n",
           t_naive / t_fork, t_naive / t_reuse, same, NSEQ, same_reuse, NSEQ);
    plm_lm_free(lm);
    plm_lm_free(naive);
    free(rows);
    remove(path);
    return 0;
fail:
    fprintf(stderr, "lm_decode: %s\n", ctx.msg);
    plm_lm_free(lm);
    plm_lm_free(naive);
    remove(path);
    return 1;
}
