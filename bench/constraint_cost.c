/* constraint_cost.c -- what checking a constraint costs next to decoding, on random llama-architecture GGUFs
** with byte-level vocabularies (258 tokens): locally masked decoding of JSON (the generic JSON grammar, an Earley
** recogniser, and a JSON-schema-like regex, a DFA) for S texts of up to T tokens, one sequence at a time. The
** constraint's share is the run's time outside llama_decode (masks, automaton steps, sampling; an upper bound
** on the grammar's cost) over the time inside it. Models: the default 27.5M-weight GGUF of lm_decode and the
** 64-wide tiny one of the tests (the worst case: decoding is cheapest there).
** usage: constraint_cost [threads] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plume.h"

#define S 8
#define T 48

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char json_regex[] = "\\{\"name\":\"[a-z ]{0,12}\",\"age\":(0|[1-9][0-9]{0,2}),\"ok\":(true|false)\\}";

static int run(plm_lm *lm, plm_cons *c, const char *what, const char *model, int threads)
{
    plm_ctx ctx;
    plm_vtrie *vt;
    plm_rng rng;
    plm_token out[T];
    plm_llama_stats a, b;
    size_t ntok = 0;
    int failed = 0;
    double t0, wall, dec;
    plm_ctx_clear(&ctx);
    if (plm_vtrie_new(&ctx, lm, &vt)) return fprintf(stderr, "%s\n", ctx.msg), 1;
    plm_rng_init(&rng, 1, 0);
    plm_llama_get_stats(lm, &a);
    t0 = now();
    for (int s = 0; s < S; s++) {
        size_t n;
        double lp, lq;
        plm_token bos_free = 0;
        if (plm_cons_sample_masked(&ctx, lm, c, vt, &bos_free, 0, T, &rng, out, &n, &lp, &lq))
            return fprintf(stderr, "%s\n", ctx.msg), 1;
        ntok += n + 1;
        failed += lp == -1.0 / 0.0;
    }
    wall = now() - t0;
    plm_llama_get_stats(lm, &b);
    dec = b.decode_seconds - a.decode_seconds;
    printf("| %-8s | %-22s | %7zu | %9.3f | %9.3f | %8.1f%% |\n", model, what, ntok, 1e3 * dec / (double)ntok,
           1e3 * (wall - dec) / (double)ntok, 100 * (wall - dec) / dec);
    (void)threads;
    (void)failed;
    plm_vtrie_free(vt);
    return 0;
}

int main(int argc, char **argv)
{
    plm_ctx ctx;
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    plm_cons *g, *r;
    plm_ctx_clear(&ctx);
    if (!plm_llama_available(&ctx)) {
        printf("SKIP constraint_cost: %s\n", ctx.msg);
        return 0;
    }
    if (plm_grammar_compile(&ctx, plm_grammar_json_source(), strlen(plm_grammar_json_source()), &g) ||
        plm_regex_compile(&ctx, json_regex, strlen(json_regex), &r))
        return fprintf(stderr, "%s\n", ctx.msg), 1;
    printf("%d texts of up to %d tokens each, one sequence at a time, %d thread(s)\n", S, T, threads);
    printf("| model    | constraint             | tokens  | decode ms/tok | other ms/tok | other / decode |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int m = 0; m < 2; m++) {
        plm_gguf_tiny_opts o;
        plm_llama_opts lo = {NULL, 1024, 4, threads, 0, 0};
        plm_lm *lm;
        uint64_t np;
        char path[256];
        plm_gguf_tiny_defaults(&o);
        if (m == 0) o.n_embd = 512, o.n_layer = 8, o.n_head = 8, o.n_ff = 1536;
        else o.n_embd = 64, o.n_layer = 2, o.n_head = 4;
        o.ctx = 512;
        snprintf(path, sizeof path, "/tmp/plume_bench_cons_%d.gguf", (int)getpid());
        if (plm_gguf_write_tiny(&ctx, path, &o, &np)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        lo.model = path;
        if (plm_llama_new(&ctx, &lo, &lm)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        if (run(lm, g, "JSON grammar (Earley)", m ? "64-wide" : "27.5M", threads) ||
            run(lm, r, "schema regex (DFA)", m ? "64-wide" : "27.5M", threads))
            return 1;
        plm_lm_free(lm);
        unlink(path);
    }
    plm_cons_free(g);
    plm_cons_free(r);
    return 0;
}
