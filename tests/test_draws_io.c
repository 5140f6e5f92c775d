/* test_draws_io.c -- draws in CmdStan's CSV and ArviZ's JSON: the sampler columns of an MCMC kernel land where
** CmdStan and ArviZ put them, and every layout reads back to the same table, NaN and absent kept apart. */
#include "check.h"
#include "plume.h"

#include <stdlib.h>
#include <unistd.h>

static const char *const mcmc_cols[] = {"theta[1]", "theta[2]", "lp__", "accept_stat__", "stepsize__", "treedepth__",
                                        "n_leapfrog__", "divergent__", "energy__"};

/* draws laid out as plm_mcmc_run makes them: coordinates, then lp__, accept_stat__ and NUTS's extras */
static plm_draws *mcmc_like(plm_ctx *ctx)
{
    plm_draws *D;
    int c, i, j;
    if (plm_draws_new(ctx, 2, &D)) return NULL;
    for (j = 0; j < 9; j++) plm_draws_col(D, mcmc_cols[j], 1);
    for (c = 0; c < 2; c++)
        for (i = 0; i < 5; i++) {
            double row[9];
            for (j = 0; j < 9; j++) row[j] = 100 * c + 10 * i + j + 0.25;
            if (c == 1 && i == 2) row[1] = NAN;                  /* a NaN value */
            if (c == 0 && i == 3) row[0] = plm_draws_absent();   /* an absent one */
            plm_draws_push(ctx, D, c, row, 9, 0);
        }
    return D;
}

static void read_line(FILE *f, int skip_comments, char *buf, size_t n)
{
    do {
        if (!fgets(buf, (int)n, f)) buf[0] = 0;
    } while (skip_comments && buf[0] == '#');
}

static void check_same(const plm_draws *A, const plm_draws *B)
{
    int c, j;
    size_t i;
    CHECK(plm_draws_ncols(B) == plm_draws_ncols(A));
    CHECK(plm_draws_nchains(B) == plm_draws_nchains(A));
    for (j = 0; j < plm_draws_ncols(A) && j < plm_draws_ncols(B); j++) {
        CHECK(strcmp(plm_draws_name(A, j), plm_draws_name(B, j)) == 0);
        for (c = 0; c < plm_draws_nchains(A); c++) {
            CHECK(plm_draws_len(B, c) == plm_draws_len(A, c));
            for (i = 0; i < plm_draws_len(A, c) && i < plm_draws_len(B, c); i++) {
                double a = plm_draws_chain(A, j, c)[i], b = plm_draws_chain(B, j, c)[i];
                CHECK(plm_draws_is_absent(a) == plm_draws_is_absent(b));
                CHECK(isnan(a) == isnan(b));
                CHECK(isnan(a) || a == b);
            }
        }
    }
}

static void test_sampler_columns_follow_cmdstans_order(void)
{
    plm_ctx ctx;
    plm_draws *D, *B;
    plm_draws_meta m;
    char buf[512], p1[64], p2[64];
    const char *paths[2] = {p1, p2};
    FILE *f;
    int c;
    plm_ctx_clear(&ctx);
    plm_draws_meta_clear(&m);
    snprintf(m.method, sizeof m.method, "nuts");
    m.samples = 5, m.warmup = 5, m.thin = 1, m.seed = 3, m.has_seed = 1;
    CHECK((D = mcmc_like(&ctx)) != NULL);
    if (!D) return;
    snprintf(p1, sizeof p1, "/tmp/plm_draws_io_%d_1.csv", (int)getpid());
    snprintf(p2, sizeof p2, "/tmp/plm_draws_io_%d_2.csv", (int)getpid());
    for (c = 0; c < 2; c++) {
        CHECK((f = fopen(paths[c], "w")) != NULL);
        CHECK(plm_draws_write_cmdstan(&ctx, D, c, &m, f) == PLM_OK);
        fclose(f);
    }
    f = fopen(p1, "r");
    CHECK(f != NULL);
    if (!f) return;
    read_line(f, 1, buf, sizeof buf);
    CHECK(strcmp(buf, "lp__,accept_stat__,stepsize__,treedepth__,n_leapfrog__,divergent__,energy__,theta.1,theta.2\n") == 0);
    read_line(f, 1, buf, sizeof buf);   /* lp__ first: column 2 of the row (j = 2) */
    CHECK(strncmp(buf, "2.25,3.25,4.25,5.25,6.25,7.25,8.25,0.25,1.25\n", 46) == 0);
    fclose(f);
    /* CmdStan's header names the NUTS sampler */
    f = fopen(p1, "r");
    {
        int hmc = 0, nuts = 0;
        while (fgets(buf, sizeof buf, f))
            hmc |= strcmp(buf, "#     algorithm = hmc (Default)\n") == 0, nuts |= strcmp(buf, "#         engine = nuts (Default)\n") == 0;
        CHECK(hmc && nuts);
    }
    fclose(f);
    CHECK(plm_draws_read_cmdstan(&ctx, paths, 2, &B, &m) == PLM_OK);
    CHECK(strcmp(m.method, "nuts") == 0 && m.seed == 3 && m.samples == 5);
    /* back in CmdStan's column order, lp__ a column (the files have accept_stat__): same values by name */
    if (B) {
        int j;
        CHECK(plm_draws_ncols(B) == 9);
        CHECK(strcmp(plm_draws_name(B, 0), "lp__") == 0 && strcmp(plm_draws_name(B, 7), "theta[1]") == 0);
        for (j = 0; j < 9; j++) {
            int k = plm_draws_col(B, mcmc_cols[j], 0);
            CHECK(k >= 0);
            if (k >= 0) CHECK(plm_draws_chain(B, k, 1)[4] == plm_draws_chain(D, j, 1)[4]);
        }
        CHECK(plm_draws_is_absent(plm_draws_chain(B, 7, 0)[3]));
        CHECK(isnan(plm_draws_chain(B, 8, 1)[2]) && !plm_draws_is_absent(plm_draws_chain(B, 8, 1)[2]));
    }
    remove(p1);
    remove(p2);
}

static void test_json_puts_sampler_columns_in_sample_stats_and_reads_back(void)
{
    plm_ctx ctx;
    plm_draws *D, *B = NULL;
    plm_draws_meta m;
    char path[64], *text;
    FILE *f;
    long n;
    plm_ctx_clear(&ctx);
    plm_draws_meta_clear(&m);
    CHECK((D = mcmc_like(&ctx)) != NULL);
    if (!D) return;
    snprintf(path, sizeof path, "/tmp/plm_draws_io_%d.json", (int)getpid());
    f = fopen(path, "w");
    CHECK(plm_draws_write_json(&ctx, D, &m, f) == PLM_OK);
    fclose(f);
    f = fopen(path, "r");
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    text = calloc((size_t)n + 1, 1);
    CHECK(fread(text, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    CHECK(strstr(text, "\"theta\": [[[0.25,1.25],") != NULL);   /* theta[1..2]: chain x draw x 2 */
    CHECK(strstr(text, "\"sample_stats\": {\n  \"lp\": [[2.25,") != NULL);
    CHECK(strstr(text, "\"acceptance_rate\"") && strstr(text, "\"step_size\"") && strstr(text, "\"tree_depth\"")
          && strstr(text, "\"n_steps\"") && strstr(text, "\"diverging\"") && strstr(text, "\"energy\""));
    CHECK(strstr(text, "\"plume_absent\":{\"theta[1]\":[[3],[]]}") != NULL);
    free(text);
    CHECK(plm_draws_read_json(&ctx, path, &B, &m) == PLM_OK);
    if (B) check_same(D, B);
    remove(path);
}

static void test_plume_csv_reads_back_with_nan_and_absent_apart(void)
{
    plm_ctx ctx;
    plm_draws *D, *B = NULL;
    char path[64];
    FILE *f;
    plm_ctx_clear(&ctx);
    CHECK((D = mcmc_like(&ctx)) != NULL);
    if (!D) return;
    snprintf(path, sizeof path, "/tmp/plm_draws_io_%d.csv", (int)getpid());
    f = fopen(path, "w");
    CHECK(plm_draws_write_csv(&ctx, D, f) == PLM_OK);
    fclose(f);
    CHECK(plm_draws_read_csv(&ctx, path, &B) == PLM_OK);
    if (B) check_same(D, B);
    remove(path);
}

static void test_absent_is_a_nan_apart_from_arithmetic_nan(void)
{
    double z = 0, nan1 = z / z, nan2 = NAN, a = plm_draws_absent();
    CHECK(isnan(a));
    CHECK(plm_draws_is_absent(a));
    CHECK(!plm_draws_is_absent(nan1) && !plm_draws_is_absent(nan2) && !plm_draws_is_absent(-nan2));
}

int main(void)
{
    RUN(test_sampler_columns_follow_cmdstans_order);
    RUN(test_json_puts_sampler_columns_in_sample_stats_and_reads_back);
    RUN(test_plume_csv_reads_back_with_nan_and_absent_apart);
    RUN(test_absent_is_a_nan_apart_from_arithmetic_nan);
    return CHECK_DONE();
}
