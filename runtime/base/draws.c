/* draws.c -- the draws table. Storage is column x chain vectors of doubles in GC-atomic memory (never
** scanned, collected with the table), so adding a column late costs only that column. */
#include "draws.h"

#include <gc.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The payload is arbitrary; the sign bit is clear, unlike the NaN that x86 arithmetic makes (0/0). */
#define ABSENT_BITS UINT64_C(0x7ff8000000000a5e)

double plm_draws_absent(void)
{
    uint64_t b = ABSENT_BITS;
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

int plm_draws_is_absent(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b == ABSENT_BITS;
}

typedef struct column {
    char *name;
    double **chain;      /* chain[c]: values, same length as the chain's draw count (NaN-padded) */
} column;

struct plm_draws {
    int nchains, ncols, capcols, weighted, has_lp;
    size_t *len, *cap;   /* per chain */
    column *cols;
    double **logw;       /* per chain */
    double **lp;         /* per chain: log density of each draw's run, NaN when unknown */
};

plm_status plm_draws_new(plm_ctx *ctx, int nchains, plm_draws **out)
{
    plm_draws *D;
    if (nchains < 1) return plm_fail(ctx, PLM_EINVAL, "draws: nchains must be >= 1 (got %d)", nchains);
    if (!(D = plm_gc_alloc(sizeof *D)) || !(D->len = plm_gc_alloc_atomic((size_t)nchains * sizeof(size_t)))
        || !(D->cap = plm_gc_alloc_atomic((size_t)nchains * sizeof(size_t)))
        || !(D->logw = plm_gc_alloc((size_t)nchains * sizeof(double *)))
        || !(D->lp = plm_gc_alloc((size_t)nchains * sizeof(double *))))
        return plm_fail(ctx, PLM_ENOMEM, "draws: out of memory");
    D->nchains = nchains;
    *out = D;
    return PLM_OK;
}

static double *grow(double *p, size_t oldn, size_t newn, double fill)
{
    double *q = GC_REALLOC(p, newn * sizeof *q);
    size_t i;
    if (!q) return NULL;
    for (i = oldn; i < newn; i++) q[i] = fill;
    return q;
}

int plm_draws_col(plm_draws *D, const char *name, int add)
{
    int i, c;
    column *col;
    for (i = 0; i < D->ncols; i++)
        if (strcmp(D->cols[i].name, name) == 0) return i;
    if (!add) return -1;
    if (D->ncols == D->capcols) {
        int nc = D->capcols ? 2 * D->capcols : 16;
        column *n = GC_REALLOC(D->cols, (size_t)nc * sizeof *n);
        if (!n) return -1;
        D->cols = n;
        D->capcols = nc;
    }
    col = &D->cols[D->ncols];
    if (!(col->name = plm_gc_alloc_atomic(strlen(name) + 1)) || !(col->chain = plm_gc_alloc((size_t)D->nchains * sizeof(double *))))
        return -1;
    strcpy(col->name, name);
    for (c = 0; c < D->nchains; c++) {
        col->chain[c] = NULL;
        if (D->cap[c]) {
            col->chain[c] = GC_MALLOC_ATOMIC(D->cap[c] * sizeof(double));
            if (!col->chain[c]) return -1;
            for (size_t k = 0; k < D->len[c]; k++) col->chain[c][k] = plm_draws_absent();
        }
    }
    return D->ncols++;
}

plm_status plm_draws_push(plm_ctx *ctx, plm_draws *D, int chain, const double *vals, int nvals, double lw)
{
    return plm_draws_push_lp(ctx, D, chain, vals, nvals, lw, NAN);
}

plm_status plm_draws_push_lp(plm_ctx *ctx, plm_draws *D, int chain, const double *vals, int nvals, double lw,
                             double lp)
{
    size_t n;
    int i;
    double absent = plm_draws_absent();
    if (chain < 0 || chain >= D->nchains)
        return plm_fail(ctx, PLM_EINVAL, "draws: chain %d out of range 0..%d", chain, D->nchains - 1);
    n = D->len[chain];
    if (n == D->cap[chain]) {
        size_t nc = n ? 2 * n : 256;
        for (i = 0; i < D->ncols; i++) {
            double *p = grow(D->cols[i].chain[chain], n, nc, absent);
            if (!p) return plm_fail(ctx, PLM_ENOMEM, "draws: out of memory");
            D->cols[i].chain[chain] = p;
        }
        if (!(D->logw[chain] = grow(D->logw[chain], n, nc, 0)) || !(D->lp[chain] = grow(D->lp[chain], n, nc, NAN)))
            return plm_fail(ctx, PLM_ENOMEM, "draws: out of memory");
        D->cap[chain] = nc;
    }
    for (i = 0; i < D->ncols; i++) D->cols[i].chain[chain][n] = i < nvals ? vals[i] : absent;
    D->logw[chain][n] = lw;
    D->lp[chain][n] = lp;
    if (!isnan(lp)) D->has_lp = 1;
    D->len[chain] = n + 1;
    return PLM_OK;
}

int plm_draws_ncols(const plm_draws *D) { return D->ncols; }
int plm_draws_nchains(const plm_draws *D) { return D->nchains; }
size_t plm_draws_len(const plm_draws *D, int chain) { return chain >= 0 && chain < D->nchains ? D->len[chain] : 0; }
const char *plm_draws_name(const plm_draws *D, int col) { return col >= 0 && col < D->ncols ? D->cols[col].name : NULL; }
int plm_draws_weighted(const plm_draws *D) { return D->weighted; }
void plm_draws_set_weighted(plm_draws *D, int weighted) { D->weighted = weighted; }

const double *plm_draws_chain(const plm_draws *D, int col, int chain)
{
    if (col < 0 || col >= D->ncols || chain < 0 || chain >= D->nchains) return NULL;
    return D->cols[col].chain[chain];
}

const double *plm_draws_logw(const plm_draws *D, int chain)
{
    return chain >= 0 && chain < D->nchains ? D->logw[chain] : NULL;
}

const double *plm_draws_lp(const plm_draws *D, int chain)
{
    return D->has_lp && chain >= 0 && chain < D->nchains ? D->lp[chain] : NULL;
}

plm_status plm_draws_summary(plm_ctx *ctx, const plm_draws *D, int col, plm_summary *out)
{
    size_t n = 0, total = 0, k = 0, i;
    double *x, *w = NULL;
    int c;
    plm_status st;
    if (col < 0 || col >= D->ncols) return plm_fail(ctx, PLM_EINVAL, "draws: no column %d", col);
    for (c = 0; c < D->nchains; c++) {
        if (D->len[c] > n) n = D->len[c];
        total += D->len[c];
    }
    if (total == 0) return plm_fail(ctx, PLM_EINVAL, "summary: no draws to summarise");
    if (D->weighted) {
        if (!(x = malloc(total * sizeof *x)) || !(w = malloc(total * sizeof *w))) {
            free(x);
            return plm_fail(ctx, PLM_ENOMEM, "summary: out of memory");
        }
        for (c = 0; c < D->nchains; c++)
            for (i = 0; i < D->len[c]; i++, k++) {
                x[k] = D->cols[col].chain[c][i];
                w[k] = D->logw[c][i];
            }
        st = plm_diag_summary_weighted(ctx, x, w, total, out);
        free(x);
        free(w);
        return st;
    }
    /* chains as equal-length blocks; a shorter chain is NaN-padded (summary drops NaN) */
    if (!(x = malloc((size_t)D->nchains * n * sizeof *x))) return plm_fail(ctx, PLM_ENOMEM, "summary: out of memory");
    for (c = 0; c < D->nchains; c++)
        for (i = 0; i < n; i++) x[(size_t)c * n + i] = i < D->len[c] ? D->cols[col].chain[c][i] : NAN;
    st = plm_diag_summary(ctx, x, D->nchains, n, out);
    free(x);
    return st;
}

/* An absent site is an empty field; NaN is "nan" (what %g gives for any NaN, whatever its sign). */
static void put_num(FILE *f, double v)
{
    if (plm_draws_is_absent(v)) return;
    if (isnan(v)) fputs("nan", f);
    else fprintf(f, "%.17g", v);
}

void plm_draws_csv_header(const plm_draws *D, FILE *f)
{
    int j;
    fputs("chain,draw", f);
    for (j = 0; j < D->ncols; j++) fprintf(f, ",%s", D->cols[j].name);
    if (D->weighted) fputs(",log_weight", f);
    fputc('\n', f);
}

void plm_draws_csv_row(const plm_draws *D, FILE *f, int chain, size_t i)
{
    int j;
    fprintf(f, "%d,%zu", chain + 1, i + 1);
    for (j = 0; j < D->ncols; j++) {
        fputc(',', f);
        put_num(f, D->cols[j].chain[chain][i]);
    }
    if (D->weighted) {
        fputc(',', f);
        put_num(f, D->logw[chain][i]);
    }
    fputc('\n', f);
}

plm_status plm_draws_write_csv(plm_ctx *ctx, const plm_draws *D, FILE *f)
{
    int c;
    size_t i;
    plm_draws_csv_header(D, f);
    for (c = 0; c < D->nchains; c++)
        for (i = 0; i < D->len[c]; i++) plm_draws_csv_row(D, f, c, i);
    if (ferror(f)) return plm_fail(ctx, PLM_EIO, "write_csv: write failed");
    return PLM_OK;
}
