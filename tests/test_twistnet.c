/* test_twistnet.c -- the network twist (runtime/lm/twistnet.h): its gradient equals central finite differences of
** log psi for every parameter, candidates that end the text carry phi exactly, and its file reads back bit for bit
** and refuses a corrupted copy. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "plume.h"

enum { V = 7, EOS = 0, KW = 4, T = 5 };

static plm_twistnet *make_net(void)
{
    plm_ctx ctx;
    plm_tdfa *d;
    plm_twistnet *n = NULL;
    plm_token kw = KW, eos = EOS;
    plm_rng r;
    plm_ctx_clear(&ctx);
    if (plm_tdfa_keywords(&ctx, V, &kw, 1, &d)) return NULL;
    plm_twistnet_new(&ctx, d, &eos, 1, T, 6, PLM_TN_STATE | PLM_TN_LEFT | PLM_TN_TOKEN | PLM_TN_BAG, 5, 3, 0, 11, &n);
    plm_tdfa_free(d);
    /* a trained-looking net: every parameter non-zero, so that no gradient block is trivially 0 */
    plm_rng_init(&r, 5, 0);
    if (n)
        for (size_t j = 0; j < n->P; j++) n->theta[j] = 0.7 * plm_rng_normal(&r);
    return n;
}

static double weighted(const plm_twistnet *n, const double *f, int s, int t, const plm_token *vs, const double *c, int m,
                       double *row, double *work)
{
    double sum = 0;
    plm_twistnet_logpsi(n, f, s, t, row, work);
    for (int k = 0; k < m; k++)
        if (isfinite(row[vs[k]])) sum += c[k] * row[vs[k]];
    return sum;
}

static void test_gradient_equals_finite_differences(void)
{
    plm_twistnet *n = make_net();
    plm_ctx ctx;
    plm_token gen[3] = {2, 5, 2}, vs[V];
    double c[V], f[5], row[V], *grad, *work;
    int t, s = 0, m = 0;
    CHECK(n != NULL);
    if (!n) return;
    plm_ctx_clear(&ctx);
    grad = calloc(n->P, sizeof *grad);
    work = malloc(plm_twistnet_work(n) * sizeof *work);
    for (int v = 0; v < V; v++) vs[m] = v, c[m++] = 0.1 * (v + 1) * (v % 2 ? 1 : -1);
    for (t = 0; t < 3; t++) {   /* the prefix gen[0..t) */
        double err = 0;
        memset(grad, 0, n->P * sizeof *grad);
        CHECK(plm_twistnet_features(n, &ctx, NULL, gen, (size_t)t, gen, (size_t)t, f) == PLM_OK);
        plm_twistnet_grad(n, f, s, t, vs, c, m, grad, work);
        for (size_t j = 0; j < n->P; j++) {
            double keep = n->theta[j], h = 1e-6, up, down;
            n->theta[j] = keep + h;
            up = weighted(n, f, s, t, vs, c, m, row, work);
            n->theta[j] = keep - h;
            down = weighted(n, f, s, t, vs, c, m, row, work);
            n->theta[j] = keep;
            err = fmax(err, fabs((up - down) / (2 * h) - grad[j]));
        }
        CHECK_NEAR(err, 0, 1e-7);
        s = n->next[(size_t)s * V + gen[t]];
    }
    free(grad);
    free(work);
    plm_twistnet_free(n);
}

static void test_final_candidates_carry_phi(void)
{
    plm_twistnet *n = make_net();
    plm_ctx ctx;
    double f[5], row[V], *work;
    plm_token gen[4] = {1, 4, 2, 3};
    if (!n) {
        CHECK(0);
        return;
    }
    plm_ctx_clear(&ctx);
    work = malloc(plm_twistnet_work(n) * sizeof *work);
    /* before the keyword: EOS cannot satisfy the constraint */
    plm_twistnet_features(n, &ctx, NULL, gen, 1, gen, 1, f);
    plm_twistnet_logpsi(n, f, 0, 1, row, work);
    CHECK(row[EOS] == -INFINITY);
    CHECK(isfinite(row[1]) && isfinite(row[KW]));
    /* the T-th token (t = T - 1): phi for every candidate -- 0 after the keyword, -inf before it */
    plm_twistnet_features(n, &ctx, NULL, gen, 4, gen, 4, f);
    plm_twistnet_logpsi(n, f, 1, T - 1, row, work);
    for (int v = 0; v < V; v++) CHECK(row[v] == 0);
    plm_twistnet_logpsi(n, f, 0, T - 1, row, work);
    for (int v = 0; v < V; v++) CHECK(row[v] == (v == KW ? 0 : -INFINITY));
    /* past the horizon, or from a rejecting state: nothing */
    plm_twistnet_logpsi(n, f, 0, T, row, work);
    for (int v = 0; v < V; v++) CHECK(row[v] == -INFINITY);
    free(work);
    plm_twistnet_free(n);
}

static void test_file_reads_back_bit_for_bit_and_refuses_a_flipped_byte(void)
{
    plm_twistnet *n = make_net(), *back = NULL;
    plm_ctx ctx;
    char path[] = "/tmp/plume_twistnet_XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    long size;
    char *text;
    if (!n || fd < 0) {
        CHECK(0);
        return;
    }
    close(fd);
    plm_ctx_clear(&ctx);
    CHECK(plm_twistnet_save(&ctx, n, path) == PLM_OK);
    CHECK(plm_twistnet_load(&ctx, path, &back) == PLM_OK);
    CHECK(back && back->P == n->P && memcmp(back->theta, n->theta, n->P * sizeof *n->theta) == 0);
    CHECK(back && memcmp(back->next, n->next, (size_t)n->S * V * sizeof *n->next) == 0);
    plm_twistnet_free(back);
    back = NULL;
    f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    rewind(f);
    text = malloc((size_t)size);
    CHECK(fread(text, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    for (long i = size / 2; i < size; i++)   /* a digit in the weights, changed */
        if (text[i] >= '1' && text[i] <= '8') {
            text[i]++;
            break;
        }
    f = fopen(path, "wb");
    fwrite(text, 1, (size_t)size, f);
    fclose(f);
    CHECK(plm_twistnet_load(&ctx, path, &back) == PLM_EPARSE && back == NULL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "fails its checksum") != NULL);
    remove(path);
    free(text);
    plm_twistnet_free(n);
}

int main(void)
{
    RUN(test_gradient_equals_finite_differences);
    RUN(test_final_candidates_carry_phi);
    RUN(test_file_reads_back_bit_for_bit_and_refuses_a_flipped_byte);
    return CHECK_DONE();
}
