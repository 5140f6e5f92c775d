/* test_lmchain.c -- the LM Markov chain on a native backend whose next-token table is written here: the
** two-state closed forms (stationary distribution, |lambda_2| = |1 - a - b|, mixing time), the sparse
** iterations against the dense solvers on a 3-token, context-2 chain, and the state limit. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "plume.h"

/* p(v | last token u) = table[u][v]; the empty context gets row 0. */
typedef struct table_lm {
    int V;
    double p[3][3];
} table_lm;

static int table_next(void *user, size_t n, const plm_token *const *toks, const size_t *lens, double *out)
{
    const table_lm *t = user;
    size_t i;
    int v;
    for (i = 0; i < n; i++) {
        int u = lens[i] ? toks[i][lens[i] - 1] : 0;
        for (v = 0; v < t->V; v++) out[i * t->V + v] = log(t->p[u][v]);
    }
    return 0;
}

static const char *table_bytes(void *user, int v, size_t *len)
{
    static const char *const names[] = {"a", "b", "c"};
    (void)user;
    *len = 1;
    return names[v];
}

static plm_lm *table_new(table_lm *t)
{
    plm_lm_native_fns fns = {table_next, table_bytes, NULL};
    plm_ctx ctx;
    return plm_lm_native_new(&ctx, &fns, t, t->V, -1, NULL, 0);
}

static plm_lmchain *chain_new(plm_lm *lm, int K, double T, size_t dense)
{
    plm_lmchain_opts o;
    plm_lmchain *c = NULL;
    plm_ctx ctx;
    memset(&o, 0, sizeof o);
    o.context = K, o.temperature = T, o.dense_limit = dense;
    if (plm_lmchain_new(&ctx, lm, &o, &c)) printf("  %s\n", ctx.msg);
    return c;
}

/* Two states, P = [[1-a, a], [b, 1-b]]: pi = (b, a) / (a + b), eigenvalues 1 and 1 - a - b, and the distance
** to pi after t steps from each state in closed form. */
static void test_two_states_closed_forms(void)
{
    const double a = 0.3, b = 0.1, eps = 1e-3;
    table_lm t = {2, {{1 - a, a, 0}, {b, 1 - b, 0}, {0}}};
    plm_lm *lm = table_new(&t);
    plm_lmchain *c = chain_new(lm, 1, 1, 0);
    double pi[3], gap, l2, dist;
    size_t tmix, worst = 0, i;
    plm_ctx ctx;
    const plm_token *s;
    size_t len;
    CHECK(c != NULL);
    if (!c) return;
    /* the start context (empty) grows into {a} or {b}: 3 states, the first transient */
    CHECK(plm_lmchain_n_states(c) == 3);
    CHECK(plm_lmchain_closed_classes(c) == 1 && plm_lmchain_period(c) == 1);
    CHECK(plm_lmchain_stationary(&ctx, c, pi) == PLM_OK);
    s = plm_lmchain_state(c, 1, &len);
    CHECK(len == 1);
    CHECK_NEAR(pi[0], 0, 0);
    CHECK_NEAR(pi[1], s[0] == 0 ? b / (a + b) : a / (a + b), 1e-15);
    CHECK(plm_lmchain_spectral_gap(&ctx, c, &gap, &l2) == PLM_OK);
    CHECK_NEAR(l2, fabs(1 - a - b), 1e-12);
    CHECK_NEAR(gap, a + b, 1e-12);
    /* From {a} the distance is a/(a+b) |1-a-b|^t, from {b} b/(a+b) |1-a-b|^t; the empty start (row 0 is row a)
    ** is at distance 1 at t = 0 and then as {a}. */
    for (i = 1; i <= 2; i++) {
        size_t want = 0;
        s = plm_lmchain_state(c, i, &len);
        for (dist = (s[0] == 0 ? a : b) / (a + b); dist > eps; dist *= fabs(1 - a - b)) want++;
        CHECK(plm_lmchain_mixing_time(&ctx, c, eps, (long)i, 100000, 1, &tmix) == PLM_OK);
        CHECK(tmix == want);
        if (s[0] == 0) worst = want;
    }
    CHECK(plm_lmchain_mixing_time(&ctx, c, eps, -1, 100000, 1, &tmix) == PLM_OK);
    CHECK(tmix == worst && worst > 0);
    plm_lmchain_free(c);
    plm_lm_free(lm);
}

/* Context 2 over 3 tokens: 1 + 3 + 9 states. The iterations (dense_limit 1) agree with LU and the full
** eigen-solve. */
static void test_iterations_agree_with_dense(void)
{
    table_lm t = {3, {{0.5, 0.3, 0.2}, {0.1, 0.6, 0.3}, {0.4, 0.1, 0.5}}};
    plm_lm *lm = table_new(&t);
    plm_lmchain *dense = chain_new(lm, 2, 0.8, 0), *sparse = chain_new(lm, 2, 0.8, 1);
    double p1[13], p2[13], g1, g2, l1, l2;
    size_t i, t1, t2;
    plm_ctx ctx;
    CHECK(dense && sparse);
    if (!dense || !sparse) return;
    CHECK(plm_lmchain_n_states(dense) == 13);
    CHECK(plm_lmchain_stationary(&ctx, dense, p1) == PLM_OK);
    CHECK(plm_lmchain_stationary(&ctx, sparse, p2) == PLM_OK);
    for (i = 0; i < 13; i++) CHECK_NEAR(p2[i], p1[i], 1e-12);
    CHECK(plm_lmchain_spectral_gap(&ctx, dense, &g1, &l1) == PLM_OK);
    CHECK(plm_lmchain_spectral_gap(&ctx, sparse, &g2, &l2) == PLM_OK);
    CHECK_NEAR(l2, l1, 1e-10);
    CHECK(plm_lmchain_mixing_time(&ctx, dense, 1e-4, -1, 100000, 1, &t1) == PLM_OK);
    CHECK(plm_lmchain_mixing_time(&ctx, sparse, 1e-4, -1, 100000, 2, &t2) == PLM_OK);
    CHECK(t1 == t2);
    /* the gap bounds the mixing time from below: t_mix(eps) >= (1/gap - 1) log(1 / (2 eps)) */
    CHECK(t1 >= (1 / g1 - 1) * log(1 / (2e-4)));
    plm_lmchain_free(dense);
    plm_lmchain_free(sparse);
    plm_lm_free(lm);
}

static void test_state_limit_names_the_limit(void)
{
    table_lm t = {3, {{0.5, 0.3, 0.2}, {0.1, 0.6, 0.3}, {0.4, 0.1, 0.5}}};
    plm_lm *lm = table_new(&t);
    plm_lmchain_opts o;
    plm_lmchain *c = NULL;
    plm_ctx ctx;
    memset(&o, 0, sizeof o);
    o.context = 4, o.temperature = 1, o.max_states = 20;
    CHECK(plm_lmchain_new(&ctx, lm, &o, &c) == PLM_EDOM && c == NULL);
    CHECK(strstr(ctx.msg, "more than 20 reachable states (the limit max_states = 20") != NULL);
    o.temperature = -1;
    CHECK(plm_lmchain_new(&ctx, lm, &o, &c) == PLM_EINVAL);
    plm_lm_free(lm);
}

int main(void)
{
    plm_init();
    RUN(test_two_states_closed_forms);
    RUN(test_iterations_agree_with_dense);
    RUN(test_state_limit_names_the_limit);
    return CHECK_DONE();
}
