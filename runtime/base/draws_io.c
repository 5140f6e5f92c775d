/* draws_io.c -- CmdStan's CSV, ArviZ's JSON and plume's CSV, written and read back. CSV fields are split by
** libcsv and JSON is built and parsed by cJSON; this file only maps columns to their places in each layout. */
#include "draws_io.h"

#include <cjson/cJSON.h>
#include <csv.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef PLUME_VERSION
#define PLUME_VERSION "unknown"
#endif

void plm_draws_meta_clear(plm_draws_meta *m)
{
    memset(m, 0, sizeof *m);
    m->samples = m->warmup = m->thin = -1;
}

/* ---- column roles ---- */

/* Stan's sampler columns in the order CmdStan writes them, with ArviZ's names for them. */
static const char *const stan_stats[][2] = {
    {"lp__", "lp"}, {"accept_stat__", "acceptance_rate"}, {"stepsize__", "step_size"},
    {"treedepth__", "tree_depth"}, {"n_leapfrog__", "n_steps"}, {"divergent__", "diverging"},
    {"energy__", "energy"}};
#define NSTATS ((int)(sizeof stan_stats / sizeof stan_stats[0]))

static int find_col(const plm_draws *D, const char *name)
{
    int j;
    for (j = 0; j < plm_draws_ncols(D); j++)
        if (strcmp(plm_draws_name(D, j), name) == 0) return j;
    return -1;
}

static int is_stat(const char *name)
{
    size_t n = strlen(name);
    return n > 2 && name[n - 1] == '_' && name[n - 2] == '_';
}

static int is_loglik(const char *name)
{
    return strcmp(name, "log_lik") == 0 || strncmp(name, "log_lik[", 8) == 0;
}

/* "x[1]" -> "x.1", "x[1][2]" -> "x.1.2": CmdStan's names for array entries. */
static void stan_name(const char *name, char *buf, size_t n)
{
    size_t k = 0;
    for (; *name && k + 1 < n; name++) {
        if (*name == '[') buf[k++] = '.';
        else if (*name != ']') buf[k++] = *name;
    }
    buf[k] = 0;
}

/* The inverse: "x.1.2" -> "x[1][2]" when every part after the first dot is digits, else the name as it is. */
static void plume_name(const char *name, char *buf, size_t n)
{
    const char *dot = strchr(name, '.'), *p;
    size_t k;
    int ok = dot && dot > name;
    for (p = dot; ok && *p; p++)
        if (*p == '.') ok = isdigit((unsigned char)p[1]);
        else ok = isdigit((unsigned char)*p);
    if (!ok) {
        snprintf(buf, n, "%s", name);
        return;
    }
    k = (size_t)(dot - name) < n - 1 ? (size_t)(dot - name) : n - 1;
    memcpy(buf, name, k);
    for (p = dot; *p && k + 2 < n; p++) {
        if (*p == '.') {
            if (p != dot) buf[k++] = ']';
            buf[k++] = '[';
        } else
            buf[k++] = *p;
    }
    if (k + 1 < n) buf[k++] = ']';
    buf[k] = 0;
}

/* ---- CmdStan CSV ---- */

static void put_stan_num(FILE *f, double v)
{
    if (isnan(v)) fputs("nan", f);   /* absent too: see the header's contract */
    else if (isinf(v)) fputs(v > 0 ? "inf" : "-inf", f);
    else fprintf(f, "%.17g", v);
}

plm_status plm_draws_write_cmdstan(plm_ctx *ctx, const plm_draws *D, int chain, const plm_draws_meta *m, FILE *f)
{
    int ncols = plm_draws_ncols(D), *order, n = 0, j, k, lpcol = find_col(D, "lp__");
    const double *lp = plm_draws_lp(D, chain), *lw = plm_draws_logw(D, chain);
    size_t i, len = plm_draws_len(D, chain);
    long thin = m->thin > 0 ? m->thin : 1, warmup = m->warmup > 0 ? m->warmup : 0;
    char name[512];
    if (chain < 0 || chain >= plm_draws_nchains(D))
        return plm_fail(ctx, PLM_EINVAL, "write_csv: chain %d out of range", chain + 1);
    if (!(order = malloc((size_t)(ncols + 1) * sizeof *order))) return plm_fail(ctx, PLM_ENOMEM, "write_csv: out of memory");
    for (k = 1; k < NSTATS; k++)
        if ((j = find_col(D, stan_stats[k][0])) >= 0) order[n++] = j;
    for (j = 0; j < ncols; j++) {
        const char *nm = plm_draws_name(D, j);
        int known = 0;
        for (k = 0; k < NSTATS; k++) known |= strcmp(nm, stan_stats[k][0]) == 0;
        if (is_stat(nm) && !known) order[n++] = j;
    }
    int nstat = n;
    for (j = 0; j < ncols; j++)
        if (!is_stat(plm_draws_name(D, j))) order[n++] = j;

    fprintf(f, "# model = %s\n", m->model[0] ? m->model : "plume");
    fputs("# method = sample (Default)\n#   sample\n", f);
    fprintf(f, "#     num_samples = %ld\n", m->samples > 0 ? m->samples : (long)len * thin);
    fprintf(f, "#     num_warmup = %ld\n#     save_warmup = 0\n#     thin = %ld\n", warmup, thin);
    fprintf(f, "#     adapt\n#       engaged = %d\n", warmup > 0);
    if (strcmp(m->method, "nuts") == 0)
        fputs("#     algorithm = hmc (Default)\n#       hmc\n#         engine = nuts (Default)\n", f);
    else
        fprintf(f, "#     algorithm = %s\n", m->method[0] ? m->method : "unknown");
    fprintf(f, "#     num_chains = %d\n# id = %d\n", plm_draws_nchains(D), chain + 1);
    if (m->has_seed) fprintf(f, "# random\n#   seed = %lld\n", m->seed);
    fprintf(f, "# plume_version = %s\n# plume_method = %s\n", PLUME_VERSION, m->method[0] ? m->method : "unknown");

    fputs("lp__", f);
    for (k = 0; k < n; k++) {
        if (k == nstat && plm_draws_weighted(D)) fputs(",log_weight__", f);
        stan_name(plm_draws_name(D, order[k]), name, sizeof name);
        fprintf(f, ",%s", name);
    }
    if (n == nstat && plm_draws_weighted(D)) fputs(",log_weight__", f);
    fputc('\n', f);
    for (i = 0; i < len; i++) {
        put_stan_num(f, lpcol >= 0 ? plm_draws_chain(D, lpcol, chain)[i] : lp ? lp[i] : 0);
        for (k = 0; k < n; k++) {
            if (k == nstat && plm_draws_weighted(D)) fputc(',', f), put_stan_num(f, lw[i]);
            fputc(',', f);
            put_stan_num(f, plm_draws_chain(D, order[k], chain)[i]);
        }
        if (n == nstat && plm_draws_weighted(D)) fputc(',', f), put_stan_num(f, lw[i]);
        fputc('\n', f);
    }
    /* after the draws, where CmdStan puts its timing: which nan fields were absent sites */
    for (k = 0; k < n; k++) {
        const double *v = plm_draws_chain(D, order[k], chain);
        int any = 0;
        for (i = 0; i < len; i++)
            if (plm_draws_is_absent(v[i])) {
                if (!any) {
                    stan_name(plm_draws_name(D, order[k]), name, sizeof name);
                    fprintf(f, "# absent: %s", name);
                    any = 1;
                }
                fprintf(f, " %zu", i + 1);
            }
        if (any) fputc('\n', f);
    }
    free(order);
    if (ferror(f)) return plm_fail(ctx, PLM_EIO, "write_csv: write failed");
    return PLM_OK;
}

/* ---- ArviZ JSON ---- */

/* One variable of a group: `n` consecutive columns from `col` (n = 1 and vec = 0 for a scalar), or the log
** weights (col = -2) or recorded log densities (col = -3). */
typedef struct jvar {
    char name[256];
    int col, n, vec;
} jvar;

static cJSON *json_num(double v)
{
    if (isnan(v)) return cJSON_CreateNull();
    if (isinf(v)) return cJSON_CreateRaw(v > 0 ? "1e999" : "-1e999");   /* read back as infinities */
    {
        /* cJSON prints numbers with %.15g whenever that reads back within an epsilon, not exactly; draws must
        ** round-trip bit for bit, so they are printed here with %.17g */
        char buf[32];
        snprintf(buf, sizeof buf, "%.17g", v);
        return cJSON_CreateRaw(buf);
    }
}

/* Print item unformatted to f and delete it. 0 when out of memory. */
static int put_json(FILE *f, cJSON *item)
{
    char *s = item ? cJSON_PrintUnformatted(item) : NULL;
    cJSON_Delete(item);
    if (!s) return 0;
    fputs(s, f);
    cJSON_free(s);
    return 1;
}

static double jvar_at(const plm_draws *D, const jvar *v, int chain, size_t i, int k)
{
    if (i >= plm_draws_len(D, chain)) return NAN;   /* padding of a shorter chain */
    if (v->col == -2) return plm_draws_logw(D, chain)[i];
    if (v->col == -3) return plm_draws_lp(D, chain)[i];
    return plm_draws_chain(D, v->col + k, chain)[i];
}

/* Split "base[k]" into base and k; 0 when name has no trailing integer index. */
static int split_index(const char *name, char *base, size_t n, long *k)
{
    size_t len = strlen(name);
    const char *open = strrchr(name, '[');
    char *end;
    if (!open || open == name || name[len - 1] != ']' || !isdigit((unsigned char)open[1])) return 0;
    *k = strtol(open + 1, &end, 10);
    if (end != name + len - 1 || (size_t)(open - name) >= n) return 0;
    memcpy(base, name, (size_t)(open - name));
    base[open - name] = 0;
    return 1;
}

/* The variables of one group: columns for which keep(name) holds, vectors x[1..n] of consecutive columns
** grouped into one variable x when no column is named x. */
static int group_vars(const plm_draws *D, int (*keep)(const char *), jvar *vars)
{
    int ncols = plm_draws_ncols(D), j = 0, nv = 0;
    while (j < ncols) {
        const char *nm = plm_draws_name(D, j);
        char base[256], b2[256];
        long k, k2;
        int n = 1;
        if (!keep(nm)) {
            j++;
            continue;
        }
        if (split_index(nm, base, sizeof base, &k) && k == 1 && find_col(D, base) < 0) {
            while (j + n < ncols && split_index(plm_draws_name(D, j + n), b2, sizeof b2, &k2) && k2 == n + 1
                   && strcmp(b2, base) == 0)
                n++;
            snprintf(vars[nv].name, sizeof vars[nv].name, "%s", base);
            vars[nv].vec = 1;
        } else {
            snprintf(vars[nv].name, sizeof vars[nv].name, "%s", nm);
            vars[nv].vec = 0;
        }
        vars[nv].col = j;
        vars[nv].n = n;
        nv++;
        j += n;
    }
    return nv;
}

static int keep_posterior(const char *nm) { return !is_stat(nm) && !is_loglik(nm); }
static int keep_loglik(const char *nm) { return is_loglik(nm); }

static const char *arviz_stat(const char *nm, char *buf, size_t n)
{
    int k;
    for (k = 0; k < NSTATS; k++)
        if (strcmp(nm, stan_stats[k][0]) == 0) return stan_stats[k][1];
    snprintf(buf, n, "%.*s", (int)(strlen(nm) - 2), nm);   /* "foo__" -> "foo" */
    return buf;
}

static int write_group(FILE *f, const plm_draws *D, const char *group, const jvar *vars, int nv, size_t maxlen)
{
    int v, c, k, nch = plm_draws_nchains(D);
    size_t i;
    cJSON *key;
    if (!put_json(f, cJSON_CreateString(group))) return 0;
    fputs(": {", f);
    for (v = 0; v < nv; v++) {
        if (v) fputs(",", f);
        fputs("\n  ", f);
        if (!(key = cJSON_CreateString(vars[v].name)) || !put_json(f, key)) return 0;
        fputs(": [", f);
        for (c = 0; c < nch; c++) {
            cJSON *a = cJSON_CreateArray();
            if (!a) return 0;
            for (i = 0; i < maxlen; i++) {
                cJSON *e;
                if (!vars[v].vec) e = json_num(jvar_at(D, &vars[v], c, i, 0));
                else {
                    e = cJSON_CreateArray();
                    for (k = 0; e && k < vars[v].n; k++) cJSON_AddItemToArray(e, json_num(jvar_at(D, &vars[v], c, i, k)));
                }
                if (!e || !cJSON_AddItemToArray(a, e)) {
                    cJSON_Delete(a);
                    return 0;
                }
            }
            if (c) fputc(',', f);
            if (!put_json(f, a)) return 0;
        }
        fputc(']', f);
    }
    fputs("}", f);
    return 1;
}

static cJSON *json_attrs(const plm_draws *D, const plm_draws_meta *m, size_t maxlen)
{
    cJSON *a = cJSON_CreateObject(), *cols, *absent, *lens = NULL;
    int j, c, nch = plm_draws_nchains(D), uneven = 0;
    size_t i;
    if (!a) return NULL;
    cJSON_AddStringToObject(a, "inference_library", "plume");
    cJSON_AddStringToObject(a, "inference_library_version", PLUME_VERSION);
    if (m->method[0]) cJSON_AddStringToObject(a, "method", m->method);
    if (m->has_seed) {
        /* a seed beyond 2^53 would lose digits as a JSON number (a double): it is written as a string */
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", m->seed);
        if (m->seed > (1LL << 53) || m->seed < -(1LL << 53)) cJSON_AddStringToObject(a, "seed", buf);
        else cJSON_AddItemToObject(a, "seed", cJSON_CreateRaw(buf));
    }
    if (m->samples >= 0) cJSON_AddNumberToObject(a, "samples", (double)m->samples);
    if (m->warmup >= 0) cJSON_AddNumberToObject(a, "warmup", (double)m->warmup);
    if (m->thin >= 0) cJSON_AddNumberToObject(a, "thin", (double)m->thin);
    cJSON_AddBoolToObject(a, "weighted", plm_draws_weighted(D));
    /* what ArviZ's layout loses: plume's column order and names, absent sites, uneven chains */
    cols = cJSON_AddArrayToObject(a, "plume_columns");
    for (j = 0; cols && j < plm_draws_ncols(D); j++) cJSON_AddItemToArray(cols, cJSON_CreateString(plm_draws_name(D, j)));
    absent = cJSON_AddObjectToObject(a, "plume_absent");
    for (j = 0; absent && j < plm_draws_ncols(D); j++) {
        cJSON *per = NULL;
        for (c = 0; c < nch; c++) {
            const double *v = plm_draws_chain(D, j, c);
            for (i = 0; i < plm_draws_len(D, c); i++)
                if (plm_draws_is_absent(v[i])) {
                    if (!per) {
                        int c2;
                        per = cJSON_AddArrayToObject(absent, plm_draws_name(D, j));
                        for (c2 = 0; per && c2 < nch; c2++) cJSON_AddItemToArray(per, cJSON_CreateArray());
                    }
                    if (per) cJSON_AddItemToArray(cJSON_GetArrayItem(per, c), cJSON_CreateNumber((double)i));
                }
        }
    }
    for (c = 0; c < nch; c++) uneven |= plm_draws_len(D, c) != maxlen;
    if (uneven && (lens = cJSON_AddArrayToObject(a, "plume_draws_per_chain")))
        for (c = 0; c < nch; c++) cJSON_AddItemToArray(lens, cJSON_CreateNumber((double)plm_draws_len(D, c)));
    return a;
}

plm_status plm_draws_write_json(plm_ctx *ctx, const plm_draws *D, const plm_draws_meta *m, FILE *f)
{
    int ncols = plm_draws_ncols(D), nv, ns = 0, j, c, ok;
    size_t maxlen = 0;
    jvar *vars = malloc((size_t)(ncols + 2) * sizeof *vars);
    char buf[256];
    if (!vars) return plm_fail(ctx, PLM_ENOMEM, "write_json: out of memory");
    for (c = 0; c < plm_draws_nchains(D); c++)
        if (plm_draws_len(D, c) > maxlen) maxlen = plm_draws_len(D, c);
    fputc('{', f);
    nv = group_vars(D, keep_posterior, vars);
    ok = write_group(f, D, "posterior", vars, nv, maxlen);
    /* sample_stats: lp (a column lp__ or the recorded log densities), sampler columns, log weights */
    if (find_col(D, "lp__") < 0 && plm_draws_lp(D, 0)) {
        snprintf(vars[ns].name, sizeof vars[ns].name, "lp");
        vars[ns].col = -3, vars[ns].n = 1, vars[ns].vec = 0, ns++;
    }
    for (j = 0; j < ncols; j++)
        if (is_stat(plm_draws_name(D, j))) {
            snprintf(vars[ns].name, sizeof vars[ns].name, "%s", arviz_stat(plm_draws_name(D, j), buf, sizeof buf));
            vars[ns].col = j, vars[ns].n = 1, vars[ns].vec = 0, ns++;
        }
    if (plm_draws_weighted(D)) {
        snprintf(vars[ns].name, sizeof vars[ns].name, "log_weight");
        vars[ns].col = -2, vars[ns].n = 1, vars[ns].vec = 0, ns++;
    }
    if (ok && ns) fputs(",\n", f), ok = write_group(f, D, "sample_stats", vars, ns, maxlen);
    if (ok && (nv = group_vars(D, keep_loglik, vars)) > 0) fputs(",\n", f), ok = write_group(f, D, "log_likelihood", vars, nv, maxlen);
    if (ok) fputs(",\n\"attrs\": ", f), ok = put_json(f, json_attrs(D, m, maxlen));
    fputs("}\n", f);
    free(vars);
    if (!ok) return plm_fail(ctx, PLM_ENOMEM, "write_json: out of memory");
    if (ferror(f)) return plm_fail(ctx, PLM_EIO, "write_json: write failed");
    return PLM_OK;
}

/* ---- reading CSV (plume's and CmdStan's) ---- */

/* A CSV file as a header and rows of numbers; lines starting with '#' go to a callback. */
typedef struct table {
    plm_ctx *ctx;
    const char *path;
    char **names;
    int ncols, capnames, field, header_done;
    double *v;               /* rows x ncols */
    size_t nrows, cap;
    long line;
    plm_status st;
} table;

static void table_free(table *t)
{
    int j;
    for (j = 0; j < t->ncols; j++) free(t->names[j]);
    free(t->names);
    free(t->v);
}

/* "" -> absent; numbers, nan, inf, -inf (strtod's forms) -> their value; anything else an error. */
static int parse_field(const char *s, size_t n, double *x)
{
    char buf[64], *end;
    if (n == 0) {
        *x = plm_draws_absent();
        return 1;
    }
    if (n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    errno = 0;
    *x = strtod(buf, &end);
    if (isnan(*x)) *x = NAN;   /* whatever NaN the text gave, never the absent payload */
    return end != buf && *end == 0;
}

static plm_status table_oom(table *t) { return t->st = plm_fail(t->ctx, PLM_ENOMEM, "out of memory"); }

static void on_field(void *s, size_t n, void *data)
{
    table *t = data;
    const char *txt = s ? s : "";
    if (!s) n = 0;
    if (t->st) return;
    if (!t->header_done) {
        if (t->ncols == t->capnames) {
            int nc = t->capnames ? 2 * t->capnames : 16;
            char **nn = realloc(t->names, (size_t)nc * sizeof *nn);
            if (!nn) return (void)table_oom(t);
            t->names = nn;
            t->capnames = nc;
        }
        if (!(t->names[t->ncols] = strndup(txt, n))) return (void)table_oom(t);
        t->ncols++;
        return;
    }
    if (t->field >= t->ncols) {
        t->st = plm_fail(t->ctx, PLM_EPARSE, "%s:%ld: more fields than the %d columns of the header", t->path,
                         t->line, t->ncols);
        return;
    }
    if ((t->nrows + 1) * (size_t)t->ncols > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 1024 + (size_t)t->ncols;
        double *nv = realloc(t->v, nc * sizeof *nv);
        if (!nv) return (void)table_oom(t);
        t->v = nv;
        t->cap = nc;
    }
    if (!parse_field(txt, n, &t->v[t->nrows * (size_t)t->ncols + (size_t)t->field]))
        t->st = plm_fail(t->ctx, PLM_EPARSE, "%s:%ld: column '%s' is not a number ('%.*s')", t->path, t->line,
                         t->names[t->field], (int)(n > 40 ? 40 : n), txt);
    t->field++;
}

static void on_row(int c, void *data)
{
    table *t = data;
    (void)c;
    if (t->st) return;
    if (!t->header_done) {
        t->header_done = 1;
        return;
    }
    if (t->field != t->ncols) {
        t->st = plm_fail(t->ctx, PLM_EPARSE, "%s:%ld: %d fields, but the header has %d columns", t->path, t->line,
                         t->field, t->ncols);
        return;
    }
    t->nrows++;
    t->field = 0;
}

/* Parse the CSV file at path into t; comment lines ("#...") are passed to comment(line, ud). */
static plm_status read_table(plm_ctx *ctx, const char *path, table *t, void (*comment)(const char *, void *), void *ud)
{
    FILE *f = fopen(path, "r");
    struct csv_parser p;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    memset(t, 0, sizeof *t);
    t->ctx = ctx;
    t->path = path;
    if (!f) return plm_fail(ctx, PLM_EIO, "cannot open '%s': %s", path, strerror(errno));
    if (csv_init(&p, CSV_STRICT | CSV_EMPTY_IS_NULL) != 0) {
        fclose(f);
        return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    }
    while (!t->st && (n = getline(&line, &cap, f)) >= 0) {
        t->line++;
        if (line[0] == '#') {
            if (comment) comment(line, ud);
            continue;
        }
        if (n == 0 || line[0] == '\n' || (line[0] == '\r' && line[1] == '\n')) continue;
        if (csv_parse(&p, line, (size_t)n, on_field, on_row, t) != (size_t)n && !t->st)
            t->st = plm_fail(ctx, PLM_EPARSE, "%s:%ld: %s", path, t->line, csv_strerror(csv_error(&p)));
    }
    if (!t->st) csv_fini(&p, on_field, on_row, t);
    csv_free(&p);
    free(line);
    fclose(f);
    if (!t->st && t->ncols == 0) t->st = plm_fail(ctx, PLM_EPARSE, "%s: no header line", path);
    return t->st;
}

/* Add columns names[0..n) to a new draws table of nchains chains; a name given twice is an error. */
static plm_status new_draws(plm_ctx *ctx, const char *path, int nchains, char *const *names, int n, plm_draws **out)
{
    plm_status st;
    int j;
    if ((st = plm_draws_new(ctx, nchains, out))) return st;
    for (j = 0; j < n; j++) {
        if (plm_draws_col(*out, names[j], 0) >= 0) return plm_fail(ctx, PLM_EPARSE, "%s: column '%s' appears twice", path, names[j]);
        if (plm_draws_col(*out, names[j], 1) != j) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    }
    return PLM_OK;
}

plm_status plm_draws_read_csv(plm_ctx *ctx, const char *path, plm_draws **out)
{
    table t;
    plm_status st;
    int weighted, nchains = 0, nv;
    size_t i;
    if ((st = read_table(ctx, path, &t, NULL, NULL))) goto done;
    if (t.ncols < 2 || strcmp(t.names[0], "chain") != 0 || strcmp(t.names[1], "draw") != 0) {
        st = plm_fail(ctx, PLM_EPARSE, "%s:1: not a plume CSV (its header must start with chain,draw)", path);
        goto done;
    }
    weighted = strcmp(t.names[t.ncols - 1], "log_weight") == 0;
    nv = t.ncols - 2 - weighted;
    for (i = 0; i < t.nrows; i++) {
        double c = t.v[i * (size_t)t.ncols];
        if (!(c >= 1 && c <= 1e6 && c == floor(c))) {
            st = plm_fail(ctx, PLM_EPARSE, "%s: draw %zu: chain must be an integer >= 1 (got %g)", path, i + 1, c);
            goto done;
        }
        if ((int)c > nchains) nchains = (int)c;
    }
    if ((st = new_draws(ctx, path, nchains ? nchains : 1, t.names + 2, nv, out))) goto done;
    plm_draws_set_weighted(*out, weighted);
    for (i = 0; i < t.nrows && !st; i++) {
        const double *row = t.v + i * (size_t)t.ncols;
        st = plm_draws_push(ctx, *out, (int)row[0] - 1, row + 2, nv, weighted ? row[t.ncols - 1] : 0);
    }
done:
    table_free(&t);
    return st;
}

/* ---- CmdStan CSV ---- */

typedef struct stan_comments {
    plm_draws_meta *m;       /* NULL: settings already read from the first file */
    char engine[32];
    char **absent;           /* the "# absent: ..." lines */
    int nabsent, capabsent;
    int oom;
} stan_comments;

static void copy_str(char *dst, size_t n, const char *src)
{
    size_t k = strlen(src);
    if (k >= n) k = n - 1;
    memcpy(dst, src, k);
    dst[k] = 0;
}

static void on_stan_comment(const char *line, void *ud)
{
    stan_comments *sc = ud;
    char key[64], val[160];
    const char *p = line + 1, *eq;
    size_t k;
    if (strncmp(line, "# absent:", 9) == 0) {
        if (sc->nabsent == sc->capabsent) {
            int nc = sc->capabsent ? 2 * sc->capabsent : 8;
            char **na = realloc(sc->absent, (size_t)nc * sizeof *na);
            if (!na) return (void)(sc->oom = 1);
            sc->absent = na;
            sc->capabsent = nc;
        }
        if (!(sc->absent[sc->nabsent] = strdup(line + 9))) return (void)(sc->oom = 1);
        sc->nabsent++;
        return;
    }
    if (!sc->m || !(eq = strchr(p, '='))) return;
    while (*p == ' ') p++;
    k = (size_t)(eq - p);
    while (k && p[k - 1] == ' ') k--;
    if (k == 0 || k >= sizeof key) return;
    memcpy(key, p, k);
    key[k] = 0;
    for (p = eq + 1; *p == ' '; p++);
    snprintf(val, sizeof val, "%s", p);
    val[strcspn(val, "\r\n")] = 0;
    if ((p = strstr(val, " (Default)"))) val[p - val] = 0;
    if (strcmp(key, "model") == 0) copy_str(sc->m->model, sizeof sc->m->model, val);
    else if (strcmp(key, "num_samples") == 0) sc->m->samples = atol(val);
    else if (strcmp(key, "num_warmup") == 0) sc->m->warmup = atol(val);
    else if (strcmp(key, "thin") == 0) sc->m->thin = atol(val);
    else if (strcmp(key, "seed") == 0) sc->m->seed = atoll(val), sc->m->has_seed = 1;
    else if (strcmp(key, "plume_method") == 0) copy_str(sc->m->method, sizeof sc->m->method, val);
    else if (strcmp(key, "engine") == 0) copy_str(sc->engine, sizeof sc->engine, val);
    else if (strcmp(key, "algorithm") == 0 && !sc->m->method[0] && strcmp(val, "hmc") != 0)
        copy_str(sc->m->method, sizeof sc->m->method, val);
}

/* Mark the fields that "# absent: name d1 d2 ..." lists (1-based draws) as absent. */
static plm_status apply_absent(plm_ctx *ctx, const char *path, table *t, const char *spec)
{
    char name[512], *end;
    const char *p = spec;
    int j, col = -1;
    size_t k;
    while (*p == ' ') p++;
    k = strcspn(p, " \r\n");
    if (k == 0 || k >= sizeof name) return plm_fail(ctx, PLM_EPARSE, "%s: malformed '# absent:' line", path);
    memcpy(name, p, k);
    name[k] = 0;
    for (j = 0; j < t->ncols; j++)
        if (strcmp(t->names[j], name) == 0) col = j;
    if (col < 0) return plm_fail(ctx, PLM_EPARSE, "%s: '# absent:' names '%s', which is not a column", path, name);
    for (p += k;;) {
        long d = strtol(p, &end, 10);
        if (end == p) break;
        if (d < 1 || (size_t)d > t->nrows) return plm_fail(ctx, PLM_EPARSE, "%s: '# absent: %s' lists draw %ld of %zu", path, name, d, t->nrows);
        t->v[(size_t)(d - 1) * (size_t)t->ncols + (size_t)col] = plm_draws_absent();
        p = end;
    }
    return PLM_OK;
}

plm_status plm_draws_read_cmdstan(plm_ctx *ctx, const char *const *paths, int npaths, plm_draws **out,
                                  plm_draws_meta *m)
{
    table *t = calloc((size_t)(npaths > 0 ? npaths : 1), sizeof *t);
    char **names = NULL, buf[512];
    int i, j, nv = 0, lpcol = -1, lwcol = -1, lp_is_col = 0, *map = NULL;
    plm_status st = PLM_OK;
    plm_draws_meta_clear(m);
    if (!t) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    if (npaths < 1) {
        free(t);
        return plm_fail(ctx, PLM_EINVAL, "read_posterior: no files to read");
    }
    for (i = 0; i < npaths && !st; i++) {
        stan_comments sc;
        int a;
        memset(&sc, 0, sizeof sc);
        sc.m = i == 0 ? m : NULL;
        st = read_table(ctx, paths[i], &t[i], on_stan_comment, &sc);
        if (!st && sc.oom) st = plm_fail(ctx, PLM_ENOMEM, "out of memory");
        if (i == 0 && !m->method[0] && strcmp(sc.engine, "nuts") == 0) snprintf(m->method, sizeof m->method, "nuts");
        for (a = 0; a < sc.nabsent; a++) {
            if (!st) st = apply_absent(ctx, paths[i], &t[i], sc.absent[a]);
            free(sc.absent[a]);
        }
        free(sc.absent);
        if (!st && i > 0) {
            int same = t[i].ncols == t[0].ncols;
            for (j = 0; same && j < t[0].ncols; j++) same = strcmp(t[i].names[j], t[0].names[j]) == 0;
            if (!same) st = plm_fail(ctx, PLM_EPARSE, "%s: its columns differ from those of %s", paths[i], paths[0]);
        }
    }
    if (st) goto done;
    for (j = 0; j < t[0].ncols; j++) {
        if (strcmp(t[0].names[j], "lp__") == 0) lpcol = j;
        if (strcmp(t[0].names[j], "log_weight__") == 0) lwcol = j;
        if (strcmp(t[0].names[j], "accept_stat__") == 0) lp_is_col = 1;
    }
    if (!(names = calloc((size_t)t[0].ncols, sizeof *names)) || !(map = malloc((size_t)t[0].ncols * sizeof *map))) {
        st = plm_fail(ctx, PLM_ENOMEM, "out of memory");
        goto done;
    }
    for (j = 0; j < t[0].ncols; j++) {
        if (j == lwcol || (j == lpcol && !lp_is_col)) continue;
        plume_name(t[0].names[j], buf, sizeof buf);
        if (!(names[nv] = strdup(buf))) {
            st = plm_fail(ctx, PLM_ENOMEM, "out of memory");
            goto done;
        }
        map[nv++] = j;
    }
    if ((st = new_draws(ctx, paths[0], npaths, names, nv, out))) goto done;
    plm_draws_set_weighted(*out, lwcol >= 0);
    {
        double *row = malloc((size_t)(nv + 1) * sizeof *row);
        size_t r;
        if (!row) st = plm_fail(ctx, PLM_ENOMEM, "out of memory");
        for (i = 0; i < npaths && !st; i++)
            for (r = 0; r < t[i].nrows && !st; r++) {
                const double *v = t[i].v + r * (size_t)t[i].ncols;
                for (j = 0; j < nv; j++) row[j] = v[map[j]];
                st = plm_draws_push_lp(ctx, *out, i, row, nv, lwcol >= 0 ? v[lwcol] : 0,
                                       lpcol >= 0 && !lp_is_col ? v[lpcol] : NAN);
            }
        free(row);
    }
done:
    for (i = 0; i < npaths; i++) table_free(&t[i]);
    free(t);
    for (j = 0; names && j < nv; j++) free(names[j]);
    free(names);
    free(map);
    return st;
}

/* ---- ArviZ JSON ---- */

typedef struct incol {
    char *name;
    double *v;               /* nchains x maxdraws, NaN-padded */
    int role;                /* 0 column, 1 log density, 2 log weight */
} incol;

typedef struct jreader {
    plm_ctx *ctx;
    const char *path;
    int nchains;
    size_t ndraws;
    incol *cols;
    int ncols, cap;
} jreader;

static double json_value(const cJSON *e)
{
    if (cJSON_IsNumber(e)) return e->valuedouble;
    return NAN;   /* null: NaN (absent ones are listed in attrs.plume_absent) */
}

static plm_status jr_add(jreader *r, const char *name, int role, incol **out)
{
    if (r->ncols == r->cap) {
        int nc = r->cap ? 2 * r->cap : 16;
        incol *n = realloc(r->cols, (size_t)nc * sizeof *n);
        if (!n) return plm_fail(r->ctx, PLM_ENOMEM, "out of memory");
        r->cols = n;
        r->cap = nc;
    }
    *out = &r->cols[r->ncols];
    (*out)->role = role;
    (*out)->name = strdup(name);
    (*out)->v = malloc((size_t)r->nchains * r->ndraws * sizeof(double) + 1);
    r->ncols++;
    if (!(*out)->name || !(*out)->v) return plm_fail(r->ctx, PLM_ENOMEM, "out of memory");
    for (size_t k = 0; k < (size_t)r->nchains * r->ndraws; k++) (*out)->v[k] = NAN;
    return PLM_OK;
}

/* A variable: chains x draws (x n). Adds one column per entry of its extra dimension. */
static plm_status jr_var(jreader *r, const char *group, const cJSON *var, const char *name, int role)
{
    const cJSON *ch, *d, *e;
    int c = 0, n = -1, k;
    size_t i;
    incol *col = NULL;
    plm_status st;
    if (!cJSON_IsArray(var)) return plm_fail(r->ctx, PLM_EPARSE, "%s: %s.%s is not an array of chains", r->path, group, name);
    if (cJSON_GetArraySize(var) != r->nchains)
        return plm_fail(r->ctx, PLM_EPARSE, "%s: %s.%s has %d chains, others %d", r->path, group, name, cJSON_GetArraySize(var), r->nchains);
    d = cJSON_GetArrayItem(cJSON_GetArrayItem(var, 0), 0);
    if (cJSON_IsArray(d)) n = cJSON_GetArraySize(d);
    for (k = 0; k < (n < 0 ? 1 : n); k++) {
        char cname[512];
        if (n < 0) snprintf(cname, sizeof cname, "%s", name);
        else snprintf(cname, sizeof cname, "%s[%d]", name, k + 1);
        if ((st = jr_add(r, cname, role, &col))) return st;
        c = 0;
        cJSON_ArrayForEach(ch, var) {
            if (!cJSON_IsArray(ch)) return plm_fail(r->ctx, PLM_EPARSE, "%s: %s.%s: chain %d is not an array", r->path, group, name, c + 1);
            i = 0;
            cJSON_ArrayForEach(d, ch) {
                if (i >= r->ndraws) return plm_fail(r->ctx, PLM_EPARSE, "%s: %s.%s: chain %d is longer than the others", r->path, group, name, c + 1);
                if (n < 0) {
                    if (cJSON_IsArray(d)) return plm_fail(r->ctx, PLM_EPARSE, "%s: %s.%s: draws mix numbers and arrays", r->path, group, name);
                    e = d;
                } else {
                    if (!cJSON_IsArray(d) || cJSON_GetArraySize(d) != n)
                        return plm_fail(r->ctx, PLM_EPARSE, "%s: %s.%s: draws must be arrays of %d numbers", r->path, group, name, n);
                    e = cJSON_GetArrayItem(d, k);
                    if (cJSON_IsArray(e)) return plm_fail(r->ctx, PLM_EPARSE, "%s: %s.%s has more than one dimension beyond chain and draw", r->path, group, name);
                }
                if (!cJSON_IsNumber(e) && !cJSON_IsNull(e))
                    return plm_fail(r->ctx, PLM_EPARSE, "%s: %s.%s: chain %d draw %zu is not a number", r->path, group, name, c + 1, i);
                col->v[(size_t)c * r->ndraws + i++] = json_value(e);
            }
            c++;
        }
    }
    return PLM_OK;
}

/* ArviZ's name of a sampler statistic back to Stan's ("acceptance_rate" -> "accept_stat__"). */
static void stan_stat(const char *name, char *buf, size_t n)
{
    int k;
    for (k = 0; k < NSTATS; k++)
        if (strcmp(name, stan_stats[k][1]) == 0) {
            snprintf(buf, n, "%s", stan_stats[k][0]);
            return;
        }
    snprintf(buf, n, "%s__", name);
}

static char *slurp(plm_ctx *ctx, const char *path, plm_status *st)
{
    FILE *f = fopen(path, "rb");
    char *s = NULL;
    size_t n = 0, cap = 0, got;
    if (!f) {
        *st = plm_fail(ctx, PLM_EIO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    do {
        if (n + 65536 + 1 > cap) {
            char *ns = realloc(s, cap = 2 * cap + 65536 + 1);
            if (!ns) {
                free(s);
                fclose(f);
                *st = plm_fail(ctx, PLM_ENOMEM, "out of memory");
                return NULL;
            }
            s = ns;
        }
        got = fread(s + n, 1, 65536, f);
        n += got;
    } while (got > 0);
    fclose(f);
    s[n] = 0;
    return s;
}

plm_status plm_draws_read_json(plm_ctx *ctx, const char *path, plm_draws **out, plm_draws_meta *m)
{
    static const char *const groups[] = {"posterior", "sample_stats", "log_likelihood"};
    plm_status st = PLM_OK;
    char *text = slurp(ctx, path, &st), buf[512];
    cJSON *root = NULL, *attrs, *var, *a, *order, *absent, *lens;
    jreader r;
    int gi, j, c, lp_is_col, weighted = 0, *pos = NULL, npos = 0;
    double *row = NULL;
    plm_draws_meta_clear(m);
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.path = path;
    if (!text) return st;
    if (!(root = cJSON_Parse(text))) {
        const char *at = cJSON_GetErrorPtr(), *p;
        long line = 1;
        for (p = text; at && p < at && *p; p++) line += *p == '\n';
        st = plm_fail(ctx, PLM_EPARSE, "%s:%ld: not valid JSON", path, line);
        goto done;
    }
    if (!cJSON_IsObject(cJSON_GetObjectItem(root, "posterior"))) {
        st = plm_fail(ctx, PLM_EPARSE, "%s: no \"posterior\" group: not an InferenceData JSON", path);
        goto done;
    }
    attrs = cJSON_GetObjectItem(root, "attrs");
    if ((a = cJSON_GetObjectItem(attrs, "method")) && cJSON_IsString(a)) snprintf(m->method, sizeof m->method, "%s", a->valuestring);
    if ((a = cJSON_GetObjectItem(attrs, "seed")) && cJSON_IsNumber(a)) m->seed = (long long)a->valuedouble, m->has_seed = 1;
    if (a && cJSON_IsString(a)) m->seed = strtoll(a->valuestring, NULL, 10), m->has_seed = 1;
    if ((a = cJSON_GetObjectItem(attrs, "samples")) && cJSON_IsNumber(a)) m->samples = (long)a->valuedouble;
    if ((a = cJSON_GetObjectItem(attrs, "warmup")) && cJSON_IsNumber(a)) m->warmup = (long)a->valuedouble;
    if ((a = cJSON_GetObjectItem(attrs, "thin")) && cJSON_IsNumber(a)) m->thin = (long)a->valuedouble;
    order = cJSON_GetObjectItem(attrs, "plume_columns");
    absent = cJSON_GetObjectItem(attrs, "plume_absent");
    lens = cJSON_GetObjectItem(attrs, "plume_draws_per_chain");
    /* chains and draws from the first variable found */
    for (gi = 0; gi < 3 && !r.nchains; gi++)
        cJSON_ArrayForEach(var, cJSON_GetObjectItem(root, groups[gi])) {
            const cJSON *ch;
            if (!cJSON_IsArray(var) || !(r.nchains = cJSON_GetArraySize(var))) continue;
            cJSON_ArrayForEach(ch, var) if ((size_t)cJSON_GetArraySize(ch) > r.ndraws) r.ndraws = (size_t)cJSON_GetArraySize(ch);
            break;
        }
    if (r.nchains == 0) {
        st = plm_fail(ctx, PLM_EPARSE, "%s: no variables with chains", path);
        goto done;
    }
    lp_is_col = order ? 0 : cJSON_HasObjectItem(cJSON_GetObjectItem(root, "sample_stats"), "acceptance_rate");
    cJSON_ArrayForEach(a, order) if (cJSON_IsString(a) && strcmp(a->valuestring, "lp__") == 0) lp_is_col = 1;
    for (gi = 0; gi < 3 && !st; gi++)
        cJSON_ArrayForEach(var, cJSON_GetObjectItem(root, groups[gi])) {
            if (gi != 1) st = jr_var(&r, groups[gi], var, var->string, 0);
            else if (strcmp(var->string, "log_weight") == 0) st = jr_var(&r, groups[gi], var, "log_weight", 2), weighted = 1;
            else if (strcmp(var->string, "lp") == 0 && !lp_is_col) st = jr_var(&r, groups[gi], var, "lp__", 1);
            else stan_stat(var->string, buf, sizeof buf), st = jr_var(&r, groups[gi], var, buf, 0);
            if (st) goto done;
        }
    /* absent entries */
    cJSON_ArrayForEach(a, absent) {
        const cJSON *ch, *d;
        for (j = 0; j < r.ncols && strcmp(r.cols[j].name, a->string) != 0; j++);
        if (j == r.ncols) {
            st = plm_fail(ctx, PLM_EPARSE, "%s: attrs.plume_absent names '%s', which is not a variable", path, a->string);
            goto done;
        }
        c = 0;
        cJSON_ArrayForEach(ch, a) {
            cJSON_ArrayForEach(d, ch) {
                double i = cJSON_IsNumber(d) ? d->valuedouble : -1;
                if (c >= r.nchains || !(i >= 0 && i < (double)r.ndraws)) {
                    st = plm_fail(ctx, PLM_EPARSE, "%s: attrs.plume_absent['%s'] lists a draw out of range", path, a->string);
                    goto done;
                }
                r.cols[j].v[(size_t)c * r.ndraws + (size_t)i] = plm_draws_absent();
            }
            c++;
        }
    }
    /* column order: plume's when recorded, else as read */
    if (!(pos = malloc((size_t)(r.ncols + 1) * sizeof *pos)) || !(row = malloc((size_t)(r.ncols + 1) * sizeof *row))) {
        st = plm_fail(ctx, PLM_ENOMEM, "out of memory");
        goto done;
    }
    cJSON_ArrayForEach(a, order)
        for (j = 0; cJSON_IsString(a) && j < r.ncols; j++)
            if (r.cols[j].role == 0 && strcmp(r.cols[j].name, a->valuestring) == 0) pos[npos++] = j, r.cols[j].role = -1;
    for (j = 0; j < r.ncols; j++)
        if (r.cols[j].role == 0) pos[npos++] = j;
    if ((st = plm_draws_new(ctx, r.nchains, out))) goto done;
    plm_draws_set_weighted(*out, weighted);
    for (j = 0; j < npos; j++) {
        if (plm_draws_col(*out, r.cols[pos[j]].name, 0) >= 0) {
            st = plm_fail(ctx, PLM_EPARSE, "%s: variable '%s' appears twice", path, r.cols[pos[j]].name);
            goto done;
        }
        if (plm_draws_col(*out, r.cols[pos[j]].name, 1) != j) {
            st = plm_fail(ctx, PLM_ENOMEM, "out of memory");
            goto done;
        }
    }
    for (c = 0; c < r.nchains && !st; c++) {
        size_t i, len = r.ndraws;
        const cJSON *l = cJSON_GetArrayItem(lens, c);
        if (l && cJSON_IsNumber(l) && l->valuedouble >= 0 && l->valuedouble < (double)len) len = (size_t)l->valuedouble;
        for (i = 0; i < len && !st; i++) {
            double lw = 0, lp = NAN;
            for (j = 0; j < npos; j++) row[j] = r.cols[pos[j]].v[(size_t)c * r.ndraws + i];
            for (j = 0; j < r.ncols; j++) {
                if (r.cols[j].role == 1) lp = r.cols[j].v[(size_t)c * r.ndraws + i];
                if (r.cols[j].role == 2) lw = r.cols[j].v[(size_t)c * r.ndraws + i];
            }
            st = plm_draws_push_lp(ctx, *out, c, row, npos, lw, lp);
        }
    }
done:
    for (j = 0; j < r.ncols; j++) free(r.cols[j].name), free(r.cols[j].v);
    free(r.cols);
    free(pos);
    free(row);
    cJSON_Delete(root);
    free(text);
    return st;
}
