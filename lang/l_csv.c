/* l_csv.c -- plume.read_csv: a CSV file into named columns, numeric ones as plume.arrays.
** libcsv (RFC 4180 quoting, strict mode) splits the fields; this file only stores them, types the columns and
** names the line of a malformed record. The whole file is split in C before any column reaches Lua, so a
** million-row file costs no Lua table per row. */
#include "lutil.h"
#include "larray.h"

#include <csv.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CSV_NONE ((size_t)-1)   /* an empty unquoted field: no text stored */
#define READER_META "plume.csv.reader"

enum { ERR_NONE, ERR_RAGGED, ERR_NOMEM };

/* Everything the parse gathers lives in malloc'd buffers owned by a userdata whose __gc frees them, so an
** error raised from Lua at any point (bad option, out of memory) leaks nothing. */
typedef struct csv_reader {
    struct csv_parser p;
    int p_live;
    char *text;                 /* every stored field, NUL-terminated, one after another */
    size_t text_len, text_cap;
    size_t *cell;               /* per field, row-major: its offset in text, or CSV_NONE */
    size_t ncell, cell_cap;
    size_t ncols;               /* fields per record, fixed by the first record */
    size_t field;               /* fields seen so far in the current record */
    size_t nrec;
    long line;                  /* physical line being parsed (1-based) */
    long rec_line;              /* line on which the current record's first field ended */
    long rec_start;             /* line after the one on which the last record ended */
    int err;
    long err_line;
    size_t err_fields;
} csv_reader;

static void reader_free(csv_reader *r)
{
    if (r->p_live) csv_free(&r->p);
    r->p_live = 0;
    free(r->text);
    free(r->cell);
    r->text = NULL;
    r->cell = NULL;
}

static int reader_gc(lua_State *L)
{
    reader_free(luaL_checkudata(L, 1, READER_META));
    return 0;
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    size_t n = *cap ? *cap : 256;
    void *b;
    if (need <= *cap) return 1;
    while (n < need) n *= 2;
    if (!(b = realloc(*buf, n * elem))) return 0;
    *buf = b;
    *cap = n;
    return 1;
}

/* libcsv callback: one field of s (len bytes; NULL for an empty unquoted field, with CSV_EMPTY_IS_NULL). */
static void on_field(void *s, size_t len, void *data)
{
    csv_reader *r = data;
    size_t off = CSV_NONE;
    if (r->err) return;
    if (r->field == 0) r->rec_line = r->line;
    if (s) {
        if (!grow((void **)&r->text, &r->text_cap, r->text_len + len + 1, 1)) {
            r->err = ERR_NOMEM;
            return;
        }
        off = r->text_len;
        memcpy(r->text + off, s, len);
        r->text[off + len] = '\0';
        r->text_len += len + 1;
    }
    if (!grow((void **)&r->cell, &r->cell_cap, r->ncell + 1, sizeof *r->cell)) {
        r->err = ERR_NOMEM;
        return;
    }
    r->cell[r->ncell++] = off;
    r->field++;
}

/* libcsv callback: the end of a record. Every record must have as many fields as the first. */
static void on_record(int c, void *data)
{
    csv_reader *r = data;
    (void)c;
    if (r->err) return;
    if (r->nrec == 0)
        r->ncols = r->field;
    else if (r->field != r->ncols) {
        r->err = ERR_RAGGED;
        r->err_line = r->rec_line;
        r->err_fields = r->field;
        return;
    }
    r->nrec++;
    r->field = 0;
    r->rec_start = r->line + 1;
}

static int is_na(const char *s)
{
    return s[0] == '\0' || strcmp(s, "NA") == 0 || strcmp(s, "N/A") == 0 || strcmp(s, "NaN") == 0 ||
           strcmp(s, "nan") == 0 || strcmp(s, "null") == 0;
}

/* The number a field spells (surrounding blanks allowed), or 0 when it is not one. NA markers give NaN. */
static int field_number(const char *s, double *x)
{
    char *end;
    if (!s || is_na(s)) {
        *x = NAN;
        return 1;
    }
    while (isspace((unsigned char)*s)) s++;
    if (!*s) {
        *x = NAN;
        return 1;
    }
    errno = 0;
    *x = strtod(s, &end);
    if (end == s) return 0;
    while (isspace((unsigned char)*end)) end++;
    return *end == '\0';
}

static const char *cell_text(const csv_reader *r, size_t row, size_t col)
{
    size_t off = r->cell[row * r->ncols + col];
    return off == CSV_NONE ? NULL : r->text + off;
}

/* Split the file at path into r, one physical line per csv_parse call so that a failure knows its line. */
static void parse_file(lua_State *L, csv_reader *r, const char *path, unsigned char sep)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *line;
    size_t cap = 0, len = 0, got;
    if (!f) luaL_error(L, "read_csv: cannot open '%s': %s", path, strerror(errno));
    /* read the whole file (the userdata owns buf through r->text until parsing starts) */
    do {
        if (!grow((void **)&buf, &cap, len + 65536, 1)) {
            free(buf);
            fclose(f);
            luaL_error(L, "read_csv: out of memory reading '%s'", path);
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    if (ferror(f)) {
        free(buf);
        fclose(f);
        luaL_error(L, "read_csv: cannot read '%s'", path);
    }
    fclose(f);
    if (csv_init(&r->p, CSV_STRICT | CSV_STRICT_FINI | CSV_EMPTY_IS_NULL) != 0) {
        free(buf);
        luaL_error(L, "read_csv: out of memory");
    }
    r->p_live = 1;
    csv_set_delim(&r->p, sep);
    line = buf;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) line += 3;   /* a UTF-8 byte-order mark */
    r->line = r->rec_start = 1;
    while (line < buf + len && !r->err) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        size_t n = nl ? (size_t)(nl - line) + 1 : (size_t)(buf + len - line), done;
        done = csv_parse(&r->p, line, n, on_field, on_record, r);
        if (done < n && !r->err) {
            int e = csv_error(&r->p);
            long at = r->line;
            size_t fld = r->field + 1;
            free(buf);
            if (e == CSV_EPARSE)
                luaL_error(L, "read_csv: %s:%d: malformed field at column %d (character %d of the line): "
                              "a quote inside an unquoted field, or text after a closing quote",
                           path, (int)at, (int)fld, (int)done + 1);
            luaL_error(L, "read_csv: %s:%d: %s", path, (int)at, csv_strerror(e));
        }
        line += n;
        if (nl) r->line++;
    }
    free(buf);
    if (!r->err && csv_fini(&r->p, on_field, on_record, r) != 0)
        luaL_error(L, "read_csv: %s:%d: a quoted field in the record that starts on this line is never closed "
                      "(column %d)", path, (int)r->rec_start, (int)r->field + 1);
    if (r->err == ERR_NOMEM) luaL_error(L, "read_csv: out of memory reading '%s'", path);
    if (r->err == ERR_RAGGED)
        luaL_error(L, "read_csv: %s:%d: the record has %d fields, but the first has %d", path, (int)r->err_line,
                   (int)r->err_fields, (int)r->ncols);
}

/* The 0-based column selected by the option entry at the top of the stack, named by header (a table at
** hdr, or 0 when the file has none). */
static size_t pick_column(lua_State *L, const csv_reader *r, int hdr, int i)
{
    size_t j;
    if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1)) {
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1 || (size_t)k > r->ncols)
            luaL_error(L, "read_csv: columns[%d] is %d, but the file has %d columns", i, (int)k, (int)r->ncols);
        return (size_t)(k - 1);
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "read_csv: columns[%d] must be a column name or number (got %s)", i, luaL_typename(L, -1));
    if (hdr)
        for (j = 0; j < r->ncols; j++) {
            const char *h = cell_text(r, 0, j);
            if (strcmp(h ? h : "", lua_tostring(L, -1)) == 0) return j;
        }
    if (!hdr) luaL_error(L, "read_csv: no column named '%s' (the file has no header)", lua_tostring(L, -1));
    {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (j = 0; j < r->ncols; j++) {
            const char *h = cell_text(r, 0, j);
            if (j) luaL_addstring(&b, ", ");
            luaL_addstring(&b, h ? h : "");
        }
        luaL_pushresult(&b);
        luaL_error(L, "read_csv: no column named '%s' (columns: %s)", lua_tostring(L, -2), lua_tostring(L, -1));
    }
    return 0;
}

/* plume.read_csv(path [, {columns =, header = true, sep = ","}]) -> columns, names */
static int l_read_csv(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int opts = lua_istable(L, 2) ? 2 : 0, header, res, names, hdr;
    static const char *const option_names[] = {"columns", "header", "sep", NULL};
    const char *sep;
    csv_reader *r;
    size_t first, nrows, nsel, s, *sel;
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    if (opts) plm_l_checkopts(L, opts, "read_csv", option_names);
    header = plm_l_optbool(L, opts, "read_csv", "header", 1);
    sep = plm_l_optstr(L, opts, "read_csv", "sep", ",");
    if (strlen(sep) != 1) luaL_error(L, "read_csv: option 'sep' must be one character (got '%s')", sep);
    r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    if (luaL_newmetatable(L, READER_META)) {
        lua_pushcfunction(L, reader_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    parse_file(L, r, path, (unsigned char)sep[0]);
    if (r->nrec == 0 && header) luaL_error(L, "read_csv: %s: the file is empty (no header line)", path);
    hdr = header;
    first = header ? 1 : 0;
    nrows = r->nrec - first;
    /* which columns, in which order */
    if (opts && lua_getfield(L, opts, "columns") != LUA_TNIL) {
        size_t i;
        if (!lua_istable(L, -1)) luaL_error(L, "read_csv: option 'columns' must be a list of names or numbers");
        nsel = (size_t)luaL_len(L, -1);
        sel = plm_l_scratch(L, (nsel ? nsel : 1) * sizeof *sel);
        lua_insert(L, -2);
        for (i = 0; i < nsel; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            sel[i] = pick_column(L, r, hdr, (int)i + 1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    } else {
        if (opts) lua_pop(L, 1);
        nsel = r->ncols;
        sel = plm_l_scratch(L, (nsel ? nsel : 1) * sizeof *sel);
        for (s = 0; s < nsel; s++) sel[s] = s;
    }
    lua_createtable(L, 0, (int)nsel);
    res = lua_gettop(L);
    lua_createtable(L, (int)nsel, 0);
    names = lua_gettop(L);
    for (s = 0; s < nsel; s++) {
        size_t j = sel[s], i;
        const char *h = header ? cell_text(r, 0, j) : NULL;
        int numeric = 1;
        /* the key: the header's name, or the column's number when there is no header or the name is empty */
        if (h && *h) {
            lua_pushstring(L, h);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, res) != LUA_TNIL)
                luaL_error(L, "read_csv: %s: two columns are named '%s'", path, h);
            lua_pop(L, 1);
        } else
            lua_pushinteger(L, (lua_Integer)j + 1);
        for (i = 0; i < nrows && numeric; i++) {
            double x;
            numeric = field_number(cell_text(r, first + i, j), &x);
        }
        if (numeric) {
            plm_l_array *a = plm_l_newarray(L, nrows);
            for (i = 0; i < nrows; i++) field_number(cell_text(r, first + i, j), &a->data[i]);
        } else {
            lua_createtable(L, (int)nrows, 0);
            for (i = 0; i < nrows; i++) {
                const char *t = cell_text(r, first + i, j);
                lua_pushstring(L, t ? t : "");
                lua_rawseti(L, -2, (lua_Integer)i + 1);
            }
        }
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, res);
        lua_pop(L, 1);
        lua_rawseti(L, names, (lua_Integer)s + 1);
    }
    reader_free(r);   /* the text now, rather than at the next collection */
    return 2;
}

void plm_l_open_csv(lua_State *L)
{
    lua_pushcfunction(L, l_read_csv);
    lua_setfield(L, -2, "read_csv");
}
