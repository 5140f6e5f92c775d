/* results.c -- the results builder: traces to draws (with a per-position column cache, so recording a
** draw of an unchanged program costs one string comparison per site), CSV streaming, series and scalars. */
#include "results.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    char *name;
    double *v;
    size_t n, cap;
} series;

typedef struct scalar {
    char *name;
    double v;
    long long iv;
    int isint;
} scalar;

struct plm_results {
    plm_draws *D;
    long root;
    FILE *out;          /* streaming: draws are appended here as they are added */
    char *out_path;
    int out_cols;       /* columns in the header written; -1 before the first draw */
    int *col;           /* cached column of trace position i, or -1 */
    const char **name;  /* address the cache was made for */
    double *row;
    int cap, rowcap;
    series *ser;
    int nser, capser;
    scalar *sca;
    int nsca, capsca;
};

plm_status plm_results_new(plm_ctx *ctx, int nchains, int weighted, plm_results **out)
{
    plm_results *R;
    plm_status st;
    *out = NULL;
    if (!(R = calloc(1, sizeof *R))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    if ((st = plm_draws_new(ctx, nchains, &R->D))) {
        free(R);
        return st;
    }
    plm_draws_set_weighted(R->D, weighted);
    R->root = plm_root(R->D);
    R->out_cols = -1;
    *out = R;
    return PLM_OK;
}

void plm_results_free(plm_results *R)
{
    int i;
    if (!R) return;
    if (R->out) fclose(R->out);
    free(R->out_path);
    free(R->col);
    free(R->name);
    free(R->row);
    for (i = 0; i < R->nser; i++) free(R->ser[i].name), free(R->ser[i].v);
    for (i = 0; i < R->nsca; i++) free(R->sca[i].name);
    free(R->ser);
    free(R->sca);
    if (R->root) plm_unroot(R->root);
    free(R);
}

plm_draws *plm_results_draws(const plm_results *R)
{
    return R->D;
}

plm_status plm_results_stream(plm_ctx *ctx, plm_results *R, const char *path)
{
    if (!(R->out = fopen(path, "w"))) return plm_fail(ctx, PLM_EIO, "cannot open '%s' for writing", path);
    if (!(R->out_path = strdup(path))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    R->out_cols = -1;
    return PLM_OK;
}

plm_status plm_results_finish(plm_ctx *ctx, plm_results *R)
{
    FILE *f = R->out;
    if (!f) return PLM_OK;
    R->out = NULL;
    if (fclose(f) != 0) return plm_fail(ctx, PLM_EIO, "could not finish writing '%s'", R->out_path);
    return PLM_OK;
}

/* A site first seen now cannot join a header already written. The whole table (this draw included) is
** written to a new file that then replaces the old one by rename, so a reader always finds a complete CSV
** with one header; later draws are appended to it. Columns appear a bounded number of times (once per
** site), so the rewrites cost little next to the run. */
static plm_status rewrite_output(plm_ctx *ctx, plm_results *R)
{
    plm_ctx c2;
    size_t n = strlen(R->out_path);
    char *tmp = malloc(n + 8);
    FILE *f;
    int ok;
    plm_ctx_clear(&c2);
    if (!tmp) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    memcpy(tmp, R->out_path, n);
    memcpy(tmp + n, ".new", 5);
    f = fopen(tmp, "w");
    ok = f && plm_draws_write_csv(&c2, R->D, f) == PLM_OK;
    ok = (f && fclose(f) == 0) && ok;
    ok = ok && rename(tmp, R->out_path) == 0;
    free(tmp);
    fclose(R->out);
    R->out = ok ? fopen(R->out_path, "a") : NULL;
    if (!R->out) return plm_fail(ctx, PLM_EIO, "cannot rewrite '%s' with the columns of a new site", R->out_path);
    R->out_cols = plm_draws_ncols(R->D);
    return PLM_OK;
}

static int column_for(plm_results *R, const char *addr, int i, int dim)
{
    char name[512];
    if (dim == 1) return plm_draws_col(R->D, addr, 1);
    snprintf(name, sizeof name, "%s[%d]", addr, i + 1);
    return plm_draws_col(R->D, name, 1);
}

static int grow_row(plm_results *R, int need)
{
    int nc = 2 * need, k;
    double *row;
    if (need <= R->rowcap) return 1;
    if (!(row = realloc(R->row, (size_t)nc * sizeof *row))) return 0;
    for (k = R->rowcap; k < nc; k++) row[k] = plm_draws_absent();
    R->row = row;
    R->rowcap = nc;
    return 1;
}

plm_status plm_results_add_trace(plm_ctx *ctx, plm_results *R, const plm_trace *tr, int chain, double lw)
{
    size_t i;
    int j, k, nc;
    plm_status st;
    if ((int)tr->n > R->cap) {
        int ncap = (int)tr->n * 2;
        int *col = realloc(R->col, (size_t)ncap * sizeof *col);
        const char **nm;
        if (!col) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        R->col = col;
        if (!(nm = realloc(R->name, (size_t)ncap * sizeof *nm))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        R->name = nm;
        for (j = R->cap; j < ncap; j++) R->col[j] = -1, R->name[j] = NULL;
        R->cap = ncap;
    }
    for (i = 0; i < tr->n; i++) {
        const plm_site *s = &tr->sites[i];
        if (s->kind == PLM_SITE_OBSERVED) continue;
        for (j = 0; j < s->dim; j++) {
            int c;
            double v = s->value[j];
            /* cache the column of the first component of each trace position; same address, same columns */
            if (j == 0 && R->name[i] && strcmp(R->name[i], s->addr) == 0 && R->col[i] >= 0)
                c = R->col[i];
            else {
                if ((c = column_for(R, s->addr, j, s->dim)) < 0) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
                if (j == 0) {
                    R->col[i] = c;
                    R->name[i] = plm_draws_name(R->D, c);   /* stable GC string owned by D */
                }
            }
            if (s->dim > 1 && j > 0) c = R->col[i] + j;   /* vector columns are added consecutively */
            if (!grow_row(R, c + 1)) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
            if (s->dist && s->dist->kind == PLM_DIST_CATEGORICAL) v += s->dist->base;   /* labels as users see them */
            R->row[c] = v;
        }
    }
    nc = plm_draws_ncols(R->D);
    if (!grow_row(R, nc)) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    st = plm_draws_push_lp(ctx, R->D, chain, R->row, nc, lw, plm_trace_score(tr));
    for (k = 0; k < nc; k++) R->row[k] = plm_draws_absent();
    if (st) return st;
    if (R->out) {
        if (R->out_cols < 0) {
            plm_draws_csv_header(R->D, R->out);
            R->out_cols = nc;
        }
        if (nc != R->out_cols) return rewrite_output(ctx, R);
        plm_draws_csv_row(R->D, R->out, chain, plm_draws_len(R->D, chain) - 1);
        fflush(R->out);
    }
    return PLM_OK;
}

static series *find_series(const plm_results *R, const char *name)
{
    int i;
    for (i = 0; i < R->nser; i++)
        if (strcmp(R->ser[i].name, name) == 0) return &R->ser[i];
    return NULL;
}

plm_status plm_results_push(plm_ctx *ctx, plm_results *R, const char *name, double v)
{
    series *s = find_series(R, name);
    if (!s) {
        if (R->nser == R->capser) {
            int nc = R->capser ? 2 * R->capser : 8;
            series *ns = realloc(R->ser, (size_t)nc * sizeof *ns);
            if (!ns) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
            R->ser = ns;
            R->capser = nc;
        }
        s = &R->ser[R->nser];
        memset(s, 0, sizeof *s);
        if (!(s->name = strdup(name))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        R->nser++;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 64;
        double *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = v;
    return PLM_OK;
}

const double *plm_results_series(const plm_results *R, const char *name, size_t *n)
{
    const series *s = find_series(R, name);
    *n = s ? s->n : 0;
    return s ? s->v : NULL;
}

static plm_status set_scalar(plm_ctx *ctx, plm_results *R, const char *name, double v, long long iv, int isint)
{
    int i;
    scalar *s = NULL;
    for (i = 0; i < R->nsca && !s; i++)
        if (strcmp(R->sca[i].name, name) == 0) s = &R->sca[i];
    if (!s) {
        if (R->nsca == R->capsca) {
            int nc = R->capsca ? 2 * R->capsca : 16;
            scalar *ns = realloc(R->sca, (size_t)nc * sizeof *ns);
            if (!ns) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
            R->sca = ns;
            R->capsca = nc;
        }
        s = &R->sca[R->nsca];
        if (!(s->name = strdup(name))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        R->nsca++;
    }
    s->v = v;
    s->iv = iv;
    s->isint = isint;
    return PLM_OK;
}

plm_status plm_results_set(plm_ctx *ctx, plm_results *R, const char *name, double v)
{
    return set_scalar(ctx, R, name, v, 0, 0);
}

plm_status plm_results_set_int(plm_ctx *ctx, plm_results *R, const char *name, long long v)
{
    return set_scalar(ctx, R, name, (double)v, v, 1);
}

int plm_results_series_at(const plm_results *R, int i, const char **name, const double **v, size_t *n)
{
    if (i < 0 || i >= R->nser) return 0;
    *name = R->ser[i].name;
    *v = R->ser[i].v;
    *n = R->ser[i].n;
    return 1;
}

int plm_results_scalar_at(const plm_results *R, int i, const char **name, double *v, long long *iv, int *isint)
{
    if (i < 0 || i >= R->nsca) return 0;
    *name = R->sca[i].name;
    *v = R->sca[i].v;
    *iv = R->sca[i].iv;
    *isint = R->sca[i].isint;
    return 1;
}
