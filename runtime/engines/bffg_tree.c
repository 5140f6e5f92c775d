/* bffg_tree.c -- rooted trees from Newick text, for BFFG models on trees (phylogenetic trait models, branching
** processes). The parser is iterative (an explicit stack of open clades), so a caterpillar tree of a million
** tips parses without deep recursion; nodes come out in preorder, which is the order a BFFG model needs. */
#include "bffg.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s;
    size_t pos;
    plm_ctx *ctx;
    plm_tree *t;
    int cap;
    char namebuf[64];
} parser;

/* line and column of position pos, 1-based */
static void where(const parser *p, size_t pos, int *line, int *col)
{
    size_t i;
    *line = 1, *col = 1;
    for (i = 0; i < pos && p->s[i]; i++) {
        if (p->s[i] == '\n')
            (*line)++, *col = 1;
        else
            (*col)++;
    }
}

static plm_status perr(parser *p, const char *what)
{
    int line, col;
    char c = p->s[p->pos];
    where(p, p->pos, &line, &col);
    if (c)
        return plm_fail(p->ctx, PLM_EPARSE, "newick: line %d, column %d: %s (got '%c')", line, col, what, c);
    return plm_fail(p->ctx, PLM_EPARSE, "newick: line %d, column %d: %s (got the end of the text)", line, col, what);
}

/* skip white space and [comments] */
static plm_status skip(parser *p)
{
    for (;;) {
        while (isspace((unsigned char)p->s[p->pos])) p->pos++;
        if (p->s[p->pos] != '[') return PLM_OK;
        while (p->s[p->pos] && p->s[p->pos] != ']') p->pos++;
        if (!p->s[p->pos]) return perr(p, "a [comment] is not closed");
        p->pos++;
    }
}

static int new_node(parser *p, int parent)
{
    plm_tree *t = p->t;
    if (t->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64, *par, *tip;
        double *len;
        char **nm;
        if (!(par = plm_gc_alloc_atomic((size_t)cap * sizeof *par)) || !(tip = plm_gc_alloc_atomic((size_t)cap * sizeof *tip)) ||
            !(len = plm_gc_alloc_atomic((size_t)cap * sizeof *len)) || !(nm = plm_gc_alloc((size_t)cap * sizeof *nm)))
            return -1;
        if (t->n) {
            memcpy(par, t->parent, (size_t)t->n * sizeof *par);
            memcpy(tip, t->tip, (size_t)t->n * sizeof *tip);
            memcpy(len, t->length, (size_t)t->n * sizeof *len);
            memcpy(nm, t->name, (size_t)t->n * sizeof *nm);
        }
        t->parent = par, t->tip = tip, t->length = len, t->name = nm, p->cap = cap;
    }
    t->parent[t->n] = parent;
    t->tip[t->n] = 1;
    t->length[t->n] = NAN;
    t->name[t->n] = NULL;
    if (parent >= 0) t->tip[parent] = 0;
    return t->n++;
}

/* An optional label at pos: 'quoted' (with '' for a quote) or a run of characters other than ()[]':;, and
** white space. Stores NULL when there is none. */
static plm_status label(parser *p, int node)
{
    const char *s = p->s;
    size_t start = p->pos, n = 0;
    char *out;
    plm_status st;
    if ((st = skip(p))) return st;
    start = p->pos;
    if (s[p->pos] == '\'') {
        size_t i;
        p->pos++;
        for (;;) {
            if (!s[p->pos]) {
                p->pos = start;
                return perr(p, "a quoted name is not closed");
            }
            if (s[p->pos] == '\'') {
                if (s[p->pos + 1] != '\'') break;
                p->pos++;
            }
            p->pos++, n++;
        }
        if (!(out = plm_gc_alloc_atomic(n + 1))) return plm_fail(p->ctx, PLM_ENOMEM, "newick: out of memory");
        for (i = start + 1, n = 0; i < p->pos; i++) {
            out[n++] = s[i];
            if (s[i] == '\'') i++;
        }
        out[n] = 0;
        p->pos++;
    } else {
        while (s[p->pos] && !strchr("()[]':;,", s[p->pos]) && !isspace((unsigned char)s[p->pos])) p->pos++;
        n = p->pos - start;
        if (n == 0) return PLM_OK;
        if (!(out = plm_gc_alloc_atomic(n + 1))) return plm_fail(p->ctx, PLM_ENOMEM, "newick: out of memory");
        memcpy(out, s + start, n);
        out[n] = 0;
    }
    p->t->name[node] = out;
    return PLM_OK;
}

static plm_status length(parser *p, int node)
{
    char *end;
    double v;
    plm_status st;
    if ((st = skip(p))) return st;
    if (p->s[p->pos] != ':') return PLM_OK;
    p->pos++;
    if ((st = skip(p))) return st;
    v = strtod(p->s + p->pos, &end);
    if (end == p->s + p->pos) return perr(p, "expected a branch length after ':'");
    if (!isfinite(v) || v < 0) return perr(p, "a branch length must be finite and >= 0");
    p->t->length[node] = v;
    p->pos = (size_t)(end - p->s);
    return PLM_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

plm_status plm_tree_newick(plm_ctx *ctx, const char *s, plm_tree **out)
{
    parser p;
    int *stack = NULL, top = 0, cap = 0, last = -1, i;
    plm_status st = PLM_OK;
    plm_init();
    memset(&p, 0, sizeof p);
    p.s = s, p.ctx = ctx;
    if (!s) return plm_fail(ctx, PLM_EINVAL, "newick: missing text");
    if (!(p.t = plm_gc_alloc(sizeof *p.t))) return plm_fail(ctx, PLM_ENOMEM, "newick: out of memory");
    /* expecting a node: '(' opens a clade, anything else is a leaf label; after a node: ':' length, ',' a
    ** sibling, ')' closes the clade (then its label), ';' or the end finishes the tree */
    for (;;) {
        int parent;
        if ((st = skip(&p))) return st;
        parent = top ? stack[top - 1] : -1;
        if (parent < 0 && p.t->n > 0) return perr(&p, "a tree has one root: expected ';'");
        if (s[p.pos] == '(') {
            int nd = new_node(&p, parent);
            if (nd < 0) return plm_fail(ctx, PLM_ENOMEM, "newick: out of memory");
            if (top == cap) {
                int *ns = malloc((size_t)(cap = cap ? 2 * cap : 64) * sizeof *ns);
                if (!ns) {
                    free(stack);
                    return plm_fail(ctx, PLM_ENOMEM, "newick: out of memory");
                }
                if (top) memcpy(ns, stack, (size_t)top * sizeof *ns);
                free(stack);
                stack = ns;
            }
            stack[top++] = nd;
            p.pos++;
            continue;
        }
        if ((last = new_node(&p, parent)) < 0) {
            st = plm_fail(ctx, PLM_ENOMEM, "newick: out of memory");
            break;
        }
        if ((st = label(&p, last))) break;
        /* after a node */
        for (;;) {
            if ((st = length(&p, last)) || (st = skip(&p))) break;
            if (s[p.pos] == ')') {
                if (!top) {
                    st = perr(&p, "a ')' closes no '('");
                    break;
                }
                p.pos++;
                last = stack[--top];
                if ((st = label(&p, last))) break;
                continue;
            }
            break;
        }
        if (st) break;
        if (s[p.pos] == ',') {
            if (!top) {
                st = perr(&p, "a ',' outside any '(...)'");
                break;
            }
            p.pos++;
            continue;
        }
        if (s[p.pos] == ';' || !s[p.pos]) {
            if (top) {
                st = perr(&p, "expected ',' or ')': a '(' is not closed");
                break;
            }
            if (s[p.pos]) p.pos++;
            if ((st = skip(&p))) break;
            if (s[p.pos]) st = perr(&p, "expected the end of the text after ';'");
            break;
        }
        st = perr(&p, top ? "expected ':', ',' or ')'" : "expected ':' or ';'");
        break;
    }
    free(stack);
    if (st) return st;
    /* names: defaults for unnamed nodes, and no duplicates (a sort of indices by name) */
    for (i = 0; i < p.t->n; i++) {
        if (!p.t->name[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "node%d", i);
            if (!(p.t->name[i] = plm_gc_alloc_atomic(strlen(buf) + 1))) return plm_fail(ctx, PLM_ENOMEM, "newick: out of memory");
            strcpy(p.t->name[i], buf);
        }
        p.t->ntips += p.t->tip[i];
    }
    {
        char **sorted = malloc((size_t)p.t->n * sizeof *sorted);
        int dup = -1;
        if (!sorted) return plm_fail(ctx, PLM_ENOMEM, "newick: out of memory");
        memcpy(sorted, p.t->name, (size_t)p.t->n * sizeof *sorted);
        qsort(sorted, (size_t)p.t->n, sizeof *sorted, cmp_names);
        for (i = 1; i < p.t->n && dup < 0; i++)
            if (strcmp(sorted[i - 1], sorted[i]) == 0) dup = i;
        if (dup >= 0) {
            st = plm_fail(ctx, PLM_EPARSE, "newick: the name '%s' is given to two nodes", sorted[dup]);
            free(sorted);
            return st;
        }
        free(sorted);
    }
    *out = p.t;
    return PLM_OK;
}
