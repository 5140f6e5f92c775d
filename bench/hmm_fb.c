/* hmm_fb.c -- benchmark: plume's HMM forward-backward, forward (loglik) and Viterbi against plain
** hand-written scaled forward-backward and Viterbi written below (ref: the textbook loops; ref2: the same
** with contiguous inner loops and a transposed emission matrix), on the same random categorical model and
** sampled data. Prints one line per (K, M, T) with times, plume/ref ratios (below 1: plume is faster), and
** checks that the answers agree.
**   build/bench/hmm_fb                 the default grid: K = 16, 64, 256 and T scaling at K = 16
**   build/bench/hmm_fb --write F K M T write the model and data to F for bench/hmm_pomegranate.py
** Times are the best of several repetitions (wall clock, one thread). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plume.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---- the hand-written reference: textbook scaled forward-backward, B is K x M ---- */

static double ref_forward_backward(int K, int M, const double *init, const double *A, const double *B, size_t T,
                                   const int *y, double *alpha, double *post, double *c)
{
    double *beta = malloc(K * sizeof *beta), *nb = malloc(K * sizeof *nb), ll = 0;
    size_t t;
    int i, j;
    /* forward */
    for (t = 0; t < T; t++) {
        double s = 0;
        for (j = 0; j < K; j++) {
            double p = 0;
            if (t == 0)
                p = init[j];
            else
                for (i = 0; i < K; i++) p += alpha[(t - 1) * K + i] * A[i * K + j];
            alpha[t * K + j] = p * B[j * M + y[t]];
            s += alpha[t * K + j];
        }
        for (j = 0; j < K; j++) alpha[t * K + j] /= s;
        c[t] = s;
        ll += log(s);
    }
    /* backward, scaled by the same c_t; posterior = alpha * beta */
    for (j = 0; j < K; j++) beta[j] = 1;
    for (j = 0; j < K; j++) post[(T - 1) * K + j] = alpha[(T - 1) * K + j];
    for (t = T - 1; t-- > 0;) {
        for (i = 0; i < K; i++) {
            double s = 0;
            for (j = 0; j < K; j++) s += A[i * K + j] * B[j * M + y[t + 1]] * beta[j];
            nb[i] = s / c[t + 1];
        }
        for (i = 0; i < K; i++) {
            beta[i] = nb[i];
            post[t * K + i] = alpha[t * K + i] * beta[i];
        }
    }
    free(beta), free(nb);
    return ll;
}

/* The same algorithm written with care: contiguous inner loops (forward as row sweeps of A, backward as
** row dot products), the emission matrix transposed so that a symbol's column is one row. */
static double ref2_forward_backward(int K, int M, const double *init, const double *A, const double *BT, size_t T,
                                    const int *y, double *alpha, double *c)
{
    double *beta = malloc(K * sizeof *beta), *v = malloc(K * sizeof *v), ll = 0;
    size_t t;
    int i, j;
    (void)M;
    for (t = 0; t < T; t++) {
        double *restrict a = alpha + t * K, s = 0;
        const double *restrict e = BT + (size_t)y[t] * K;
        if (t == 0)
            for (j = 0; j < K; j++) a[j] = init[j];
        else {
            const double *restrict prev = alpha + (t - 1) * K;
            for (j = 0; j < K; j++) a[j] = 0;
            for (i = 0; i < K; i++)
                for (j = 0; j < K; j++) a[j] += prev[i] * A[i * K + j];
        }
        for (j = 0; j < K; j++) s += (a[j] *= e[j]);
        for (j = 0; j < K; j++) a[j] /= s;
        c[t] = s;
        ll += log(s);
    }
    for (j = 0; j < K; j++) beta[j] = 1;
    for (t = T - 1; t-- > 0;) {
        const double *restrict e = BT + (size_t)y[t + 1] * K;
        double *restrict a = alpha + t * K;
        for (j = 0; j < K; j++) v[j] = e[j] * beta[j] / c[t + 1];
        for (i = 0; i < K; i++) {
            double s = 0;
            for (j = 0; j < K; j++) s += A[i * K + j] * v[j];
            beta[i] = s;
            a[i] *= s;   /* posterior, in place */
        }
    }
    free(beta), free(v);
    return ll;
}

static double ref_viterbi(int K, int M, const double *init, const double *logA, const double *logB, size_t T,
                          const int *y, int *bp, int *path)
{
    double *d = malloc(K * sizeof *d), *nd = malloc(K * sizeof *nd), best;
    size_t t;
    int i, j, s;
    for (j = 0; j < K; j++) d[j] = log(init[j]) + logB[j * M + y[0]];
    for (t = 1; t < T; t++) {
        for (j = 0; j < K; j++) {
            double m = -INFINITY;
            int a = 0;
            for (i = 0; i < K; i++) {
                double v = d[i] + logA[i * K + j];
                if (v > m) m = v, a = i;
            }
            nd[j] = m + logB[j * M + y[t]];
            bp[t * K + j] = a;
        }
        memcpy(d, nd, K * sizeof *d);
    }
    s = 0;
    for (j = 1; j < K; j++)
        if (d[j] > d[s]) s = j;
    best = d[s];
    for (t = T; t-- > 0;) {
        path[t] = s;
        if (t > 0) s = bp[t * K + s];
    }
    free(d), free(nd);
    return best;
}

/* ---- model and data ---- */

static void random_rows(plm_rng *r, double *p, int rows, int cols, double diag)
{
    int i, j;
    for (i = 0; i < rows; i++) {
        double s = 0;
        for (j = 0; j < cols; j++) s += (p[i * cols + j] = -log(plm_rng_uniform(r)) + (i == j ? diag : 0));
        for (j = 0; j < cols; j++) p[i * cols + j] /= s;
    }
}

typedef struct setup {
    int K, M;
    size_t T;
    double *init, *A, *B, *y;
    int *yi, *states;
    plm_hmm *h;
} setup;

static void make_setup(setup *s, int K, int M, size_t T, unsigned long long seed)
{
    plm_rng r;
    plm_ctx ctx;
    size_t t;
    s->K = K, s->M = M, s->T = T;
    s->init = malloc(K * sizeof(double));
    s->A = malloc((size_t)K * K * sizeof(double));
    s->B = malloc((size_t)K * M * sizeof(double));
    s->y = malloc(T * sizeof(double));
    s->yi = malloc(T * sizeof(int));
    s->states = malloc(T * sizeof(int));
    plm_rng_init(&r, seed, 0);
    random_rows(&r, s->init, 1, K, 0);
    random_rows(&r, s->A, K, K, (double)K);   /* sticky: about half the mass on staying */
    random_rows(&r, s->B, K, M, 0);
    if (plm_hmm_new_categorical(&ctx, K, M, s->init, s->A, s->B, &s->h) || plm_hmm_sample(&ctx, s->h, T, &r, s->states, s->y)) {
        fprintf(stderr, "hmm_fb: %s\n", plm_ctx_errmsg(&ctx));
        exit(1);
    }
    for (t = 0; t < T; t++) s->yi[t] = (int)s->y[t];
}

static void free_setup(setup *s)
{
    free(s->init), free(s->A), free(s->B), free(s->y), free(s->yi), free(s->states);
}

static int write_data(const char *path, int K, int M, size_t T)
{
    setup s;
    FILE *f = fopen(path, "w");
    size_t t;
    int i, j;
    if (!f) return perror(path), 1;
    make_setup(&s, K, M, T, 42);
    fprintf(f, "%d %d %zu\n", K, M, T);
    for (i = 0; i < K; i++) fprintf(f, "%.17g%c", s.init[i], i == K - 1 ? '\n' : ' ');
    for (i = 0; i < K; i++)
        for (j = 0; j < K; j++) fprintf(f, "%.17g%c", s.A[i * K + j], j == K - 1 ? '\n' : ' ');
    for (i = 0; i < K; i++)
        for (j = 0; j < M; j++) fprintf(f, "%.17g%c", s.B[i * M + j], j == M - 1 ? '\n' : ' ');
    for (t = 0; t < T; t++) fprintf(f, "%d%c", s.yi[t], t == T - 1 ? '\n' : ' ');
    /* plume's answers, for the Python side to check against */
    {
        plm_ctx ctx;
        double ll;
        plm_hmm_loglik(&ctx, s.h, T, s.y, &ll);
        fprintf(f, "%.17g\n", ll);
    }
    fclose(f);
    free_setup(&s);
    return 0;
}

/* Time plume and the reference on one setup; reps repetitions, best time kept. */
static void run(int K, int M, size_t T, int reps)
{
    setup s;
    double *alpha, *post, *post2, *c, *logA, *logB, t0, best;
    double t_ref2_fb = 1e30, *BT, ll_ref2 = 0;
    double t_ref_fb = 1e30, t_plm_fb = 1e30, t_ref_vit = 1e30, t_plm_vit = 1e30, t_plm_fwd = 1e30;
    double ll_ref = 0, ll_plm = 0, ll_fwd = 0, lp_ref = 0, lp_plm = 0, maxdiff = 0;
    int *bp, *path, *path2, rep, i;
    size_t t, pathdiff = 0;
    plm_ctx ctx;
    make_setup(&s, K, M, T, 42);   /* the same model and data as --write */
    alpha = malloc(T * K * sizeof *alpha);
    post = malloc(T * K * sizeof *post);
    post2 = malloc(T * K * sizeof *post2);
    c = malloc(T * sizeof *c);
    bp = malloc(T * K * sizeof *bp);
    path = malloc(T * sizeof *path);
    path2 = malloc(T * sizeof *path2);
    logA = malloc((size_t)K * K * sizeof *logA);
    logB = malloc((size_t)K * M * sizeof *logB);
    for (i = 0; i < K * K; i++) logA[i] = log(s.A[i]);
    for (i = 0; i < K * M; i++) logB[i] = log(s.B[i]);
    BT = malloc((size_t)K * M * sizeof *BT);
    for (i = 0; i < K * M; i++) BT[(i % M) * K + i / M] = s.B[i];
    for (rep = 0; rep < reps; rep++) {
        t0 = now();
        ll_ref = ref_forward_backward(K, M, s.init, s.A, s.B, T, s.yi, alpha, post, c);
        if ((best = now() - t0) < t_ref_fb) t_ref_fb = best;
        t0 = now();
        ll_ref2 = ref2_forward_backward(K, M, s.init, s.A, BT, T, s.yi, alpha, c);
        if ((best = now() - t0) < t_ref2_fb) t_ref2_fb = best;
        t0 = now();
        if (plm_hmm_posterior(&ctx, s.h, T, s.y, post2, &ll_plm)) fprintf(stderr, "%s\n", plm_ctx_errmsg(&ctx)), exit(1);
        if ((best = now() - t0) < t_plm_fb) t_plm_fb = best;
        t0 = now();
        if (plm_hmm_loglik(&ctx, s.h, T, s.y, &ll_fwd)) fprintf(stderr, "%s\n", plm_ctx_errmsg(&ctx)), exit(1);
        if ((best = now() - t0) < t_plm_fwd) t_plm_fwd = best;
        t0 = now();
        lp_ref = ref_viterbi(K, M, s.init, logA, logB, T, s.yi, bp, path);
        if ((best = now() - t0) < t_ref_vit) t_ref_vit = best;
        t0 = now();
        if (plm_hmm_viterbi(&ctx, s.h, T, s.y, path2, &lp_plm)) fprintf(stderr, "%s\n", plm_ctx_errmsg(&ctx)), exit(1);
        if ((best = now() - t0) < t_plm_vit) t_plm_vit = best;
    }
    for (t = 0; t < T * K; t++) {
        double d = fabs(post[t] - post2[t]);
        if (d > maxdiff) maxdiff = d;
    }
    for (t = 0; t < T; t++) pathdiff += path[t] != path2[t];
    for (t = 0; t < T * K; t++) {   /* alpha now holds ref2's posterior */
        double d = fabs(alpha[t] - post2[t]);
        if (d > maxdiff) maxdiff = d;
    }
    printf("K=%-4d M=%-3d T=%-8zu fb: plume %8.4f s  ref %8.4f s (%5.2fx)  ref2 %8.4f s (%5.2fx) | viterbi: plume %8.4f s  "
           "ref %8.4f s (%5.2fx) | loglik (forward only) %8.4f s | check: dll %.1e, dpost %.1e, dlogp %.1e, path diffs %zu\n",
           K, M, T, t_plm_fb, t_ref_fb, t_plm_fb / t_ref_fb, t_ref2_fb, t_plm_fb / t_ref2_fb, t_plm_vit, t_ref_vit,
           t_plm_vit / t_ref_vit, t_plm_fwd, fmax(fabs(ll_ref - ll_plm), fabs(ll_ref2 - ll_plm)), maxdiff,
           fabs(lp_ref - lp_plm), pathdiff);
    fflush(stdout);
    (void)ll_fwd;
    free(BT), free(alpha), free(post), free(post2), free(c), free(bp), free(path), free(path2), free(logA), free(logB);
    free_setup(&s);
}

int main(int argc, char **argv)
{
    plm_init();
    if (argc == 6 && strcmp(argv[1], "--write") == 0)
        return write_data(argv[2], atoi(argv[3]), atoi(argv[4]), (size_t)atoll(argv[5]));
    if (argc == 5 && strcmp(argv[1], "--one") == 0) {
        run(atoi(argv[2]), atoi(argv[3]), (size_t)atoll(argv[4]), 5);
        return 0;
    }
    printf("# HMM kernels, categorical emissions: plume vs a plain hand-written C loop (best of reps, 1 thread)\n");
    run(16, 32, 200000, 7);
    run(64, 32, 200000, 3);
    run(256, 32, 20000, 3);
    printf("# T scaling at K=16, M=32\n");
    run(16, 32, 50000, 7);
    run(16, 32, 800000, 3);
    printf("# K scaling at T=20000, M=32\n");
    run(8, 32, 20000, 7);
    run(32, 32, 20000, 7);
    run(128, 32, 20000, 3);
    return 0;
}
