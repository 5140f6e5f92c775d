/* cfg.c -- context-free grammars over bytes (a GBNF-like syntax, constraint.h) and an Earley prefix recogniser.
**
** The grammar is flattened into plain rules: a string literal becomes a sequence of one-byte terminals, a group
** a fresh nonterminal, X* the left-recursive R ::= | R X (left recursion keeps Earley sets small), X+ the rule
** R ::= X | R X, X? the rule R ::= | X. Every rule must derive some finite string, so that a nonempty Earley set
** means the bytes so far are a prefix of a sentence: that is the whole viability test.
**
** A state is an Earley set ("chart node") that points at the set before it; items point at the set where they
** started, which is always an ancestor. Nodes are immutable once built and reference-counted, so copying a
** state (a particle's fork) is a counter increment and the charts of all particles share their common
** prefixes. Nullable nonterminals are handled as Aycock and Horspool do: predicting one also moves past it. */
#include "cons_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cnode cnode;

typedef struct citem {
    int rule, dot;
    cnode *origin;
} citem;

struct cnode {
    int refs;
    int accept;
    cnode *parent;
    citem *items;
    int n, cap;
    uint8_t first[32];   /* bytes some item can scan next: a byte outside is dead without building a set */
    plm_cmask *mask;
    /* hash-consing: a set's future depends only on its incomplete items (rule, dot, origin, with the set itself
    ** as origin written NULL) and on whether it accepts; sets equal in that are one node, so that, inside a
    ** JSON string for instance, every position is the same node and its mask is computed once */
    struct grammar *g;
    uint64_t key;
    citem *kitems;
    int nk, interned;
    cnode *hnext;
};

typedef struct grammar {
    int nnt;
    char **names;
    int *def_line, *def_col;   /* where each nonterminal was defined (0: not defined) or first used */
    int *use_line, *use_col;
    int nrules;
    int *lhs, *roff, *rlen;
    int *rhs;                  /* symbols: >= 0 nonterminal, < 0 terminal -(class + 1) */
    size_t nrhs, caprhs;
    int caprules, capnt;
    int *nt_rule0, *nt_nrules, *nt_rules;   /* the rules of each nonterminal */
    uint8_t (*cls)[32];
    int ncls, capcls;
    unsigned char *nullable;
    int start_rule;
    cnode *root;
    /* the item set under construction: dedup by (rule, dot, origin), stamped so it needs no clearing */
    int *hidx;
    unsigned *hstamp, gen;
    size_t hcap;
    cnode **tab;               /* interned nodes, chained by hnext */
    size_t ntab, count;
} grammar;

/* A generic JSON grammar (RFC 8259, byte level: strings hold any byte but '"', '\\' and control bytes, or an
** escape). Nesting depth is not limited. */
static const char plm_grammar_json_text[] =
    "root   ::= ws value ws\n"
    "value  ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
    "object ::= \"{\" ws ( member ( ws \",\" ws member )* ws )? \"}\"\n"
    "member ::= string ws \":\" ws value\n"
    "array  ::= \"[\" ws ( value ( ws \",\" ws value )* ws )? \"]\"\n"
    "string ::= \"\\\"\" char* \"\\\"\"\n"
    "char   ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" hex hex hex hex )\n"
    "hex    ::= [0-9a-fA-F]\n"
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?\n"
    "ws     ::= [ \\t\\n\\r]*\n";

const char *plm_grammar_json_source(void) { return plm_grammar_json_text; }

/* ---- parsing ---- */

typedef struct gparse {
    plm_ctx *ctx;
    grammar *g;
    const char *p;
    size_t len, pos;
    int line;
    size_t line_start;
    int fresh;
    int depth;
    plm_status err;
    int *seq;     /* symbols of the sequences being built (a stack shared by nested groups) */
    size_t nseq, capseq;
} gparse;

static int col(const gparse *P, size_t at) { return (int)(at - P->line_start) + 1; }

static plm_status gerr_at(gparse *P, int line, int c, const char *fmt, const char *arg)
{
    if (!P->err) {
        char what[256];
        snprintf(what, sizeof what, fmt, arg);
        P->err = plm_failm(P->ctx, PLM_EPARSE, "grammar", "line %d, column %d: %s", line, c, what);
    }
    return P->err;
}

static plm_status gerr(gparse *P, const char *fmt, const char *arg) { return gerr_at(P, P->line, col(P, P->pos), fmt, arg); }

static plm_status nomem(gparse *P)
{
    if (!P->err) P->err = plm_fail(P->ctx, PLM_ENOMEM, "grammar: out of memory");
    return P->err;
}

static int grow(void **p, int *cap, int need, size_t size)
{
    if (need <= *cap) return 0;
    int nc = need * 2 + 16;
    void *np = realloc(*p, (size_t)nc * size);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

/* the nonterminal named s (len n), created when new */
static int nt_id(gparse *P, const char *s, size_t n)
{
    grammar *g = P->g;
    int i, c;
    for (i = 0; i < g->nnt; i++)
        if (strlen(g->names[i]) == n && memcmp(g->names[i], s, n) == 0) return i;
    c = g->capnt;
    if (grow((void **)&g->names, &c, g->nnt + 1, sizeof *g->names) ||
        (c = g->capnt, grow((void **)&g->def_line, &c, g->nnt + 1, sizeof(int))) ||
        (c = g->capnt, grow((void **)&g->def_col, &c, g->nnt + 1, sizeof(int))) ||
        (c = g->capnt, grow((void **)&g->use_line, &c, g->nnt + 1, sizeof(int))) ||
        (c = g->capnt, grow((void **)&g->use_col, &c, g->nnt + 1, sizeof(int))))
        return nomem(P), -1;
    g->capnt = c;
    if (!(g->names[g->nnt] = malloc(n + 1))) return nomem(P), -1;
    memcpy(g->names[g->nnt], s, n);
    g->names[g->nnt][n] = 0;
    g->def_line[g->nnt] = g->def_col[g->nnt] = 0;
    g->use_line[g->nnt] = P->line;
    g->use_col[g->nnt] = col(P, P->pos);
    return g->nnt++;
}

static int fresh_nt(gparse *P, const char *base)
{
    char name[96];
    int id;
    snprintf(name, sizeof name, "%.60s_%d", base, ++P->fresh);
    id = nt_id(P, name, strlen(name));
    if (id >= 0) P->g->def_line[id] = P->line, P->g->def_col[id] = col(P, P->pos);
    return id;
}

static void add_rule(gparse *P, int lhs, const int *syms, size_t n)
{
    grammar *g = P->g;
    int c = g->caprules;
    if (P->err) return;
    if (grow((void **)&g->lhs, &c, g->nrules + 1, sizeof(int)) ||
        (c = g->caprules, grow((void **)&g->roff, &c, g->nrules + 1, sizeof(int))) ||
        (c = g->caprules, grow((void **)&g->rlen, &c, g->nrules + 1, sizeof(int)))) {
        nomem(P);
        return;
    }
    g->caprules = c;
    if (g->nrhs + n > g->caprhs) {
        size_t nc = (g->nrhs + n) * 2 + 64;
        int *nr = realloc(g->rhs, nc * sizeof *nr);
        if (!nr) {
            nomem(P);
            return;
        }
        g->rhs = nr;
        g->caprhs = nc;
    }
    if (n) memcpy(g->rhs + g->nrhs, syms, n * sizeof *syms);   /* syms may be NULL for an empty rule */
    g->lhs[g->nrules] = lhs;
    g->roff[g->nrules] = (int)g->nrhs;
    g->rlen[g->nrules] = (int)n;
    g->nrhs += n;
    g->nrules++;
}

static int class_id(gparse *P, const uint8_t bits[32])
{
    grammar *g = P->g;
    for (int i = 0; i < g->ncls; i++)
        if (memcmp(g->cls[i], bits, 32) == 0) return i;
    if (grow((void **)&g->cls, &g->capcls, g->ncls + 1, sizeof *g->cls)) return nomem(P), 0;
    memcpy(g->cls[g->ncls], bits, 32);
    return g->ncls++;
}

static void push_sym(gparse *P, int s)
{
    if (P->nseq == P->capseq) {
        size_t nc = P->capseq * 2 + 64;
        int *ns = realloc(P->seq, nc * sizeof *ns);
        if (!ns) {
            nomem(P);
            return;
        }
        P->seq = ns;
        P->capseq = nc;
    }
    P->seq[P->nseq++] = s;
}

static void push_byte(gparse *P, int b)
{
    uint8_t bits[32];
    memset(bits, 0, sizeof bits);
    bits[b >> 3] = (uint8_t)(1u << (b & 7));
    push_sym(P, -(class_id(P, bits) + 1));
}

/* skip blanks and comments; newlines too when nl */
static void skip(gparse *P, int nl)
{
    while (P->pos < P->len) {
        char c = P->p[P->pos];
        if (c == '#') {
            while (P->pos < P->len && P->p[P->pos] != '\n') P->pos++;
        } else if (c == '\n') {
            if (!nl) return;
            P->pos++;
            P->line++;
            P->line_start = P->pos;
        } else if (c == ' ' || c == '\t' || c == '\r')
            P->pos++;
        else
            return;
    }
}

static int is_name_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && ((c >= '0' && c <= '9') || c == '-'));
}

/* a rule definition starts here: NAME blanks "::=" */
static int at_rule_start(const gparse *P)
{
    size_t i = P->pos;
    if (i >= P->len || !is_name_char(P->p[i], 1)) return 0;
    while (i < P->len && is_name_char(P->p[i], 0)) i++;
    while (i < P->len && (P->p[i] == ' ' || P->p[i] == '\t')) i++;
    return i + 3 <= P->len && memcmp(P->p + i, "::=", 3) == 0;
}

static int ghex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* one possibly escaped byte inside a literal or class; -1 on error */
static int lit_byte(gparse *P)
{
    int c = (unsigned char)P->p[P->pos++], h, l;
    if (c == '\n') return gerr(P, "a line break inside a %s (write \\n)", "literal or class"), -1;
    if (c != '\\') return c;
    if (P->pos >= P->len) return gerr(P, "%s", "a backslash ends the grammar"), -1;
    c = (unsigned char)P->p[P->pos++];
    switch (c) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'x':
        if (P->pos + 2 > P->len || (h = ghex(P->p[P->pos])) < 0 || (l = ghex(P->p[P->pos + 1])) < 0)
            return gerr(P, "%s", "\\x needs two hexadecimal digits"), -1;
        P->pos += 2;
        return h * 16 + l;
    case '\\': case '"': case ']': case '[': case '-': case '^': case '\'': return c;
    default: P->pos -= 2; return gerr(P, "unknown escape '\\%c'", (char[]){(char)c, 0}), -1;
    }
}

static void parse_alts(gparse *P, int lhs, int top);

static void parse_class(gparse *P)
{
    int line = P->line, c0 = col(P, P->pos);
    uint8_t bits[32];
    int neg = 0;
    memset(bits, 0, sizeof bits);
    P->pos++;
    if (P->pos < P->len && P->p[P->pos] == '^') neg = 1, P->pos++;
    for (;;) {
        int lo, hi;
        if (P->pos >= P->len || P->p[P->pos] == '\n') {
            gerr_at(P, line, c0, "%s", "unclosed '['");
            return;
        }
        if (P->p[P->pos] == ']') {
            P->pos++;
            break;
        }
        if ((lo = lit_byte(P)) < 0) return;
        hi = lo;
        if (P->pos + 1 < P->len && P->p[P->pos] == '-' && P->p[P->pos + 1] != ']') {
            P->pos++;
            if ((hi = lit_byte(P)) < 0) return;
            if (hi < lo) {
                gerr(P, "%s", "range out of order");
                return;
            }
        }
        for (int b = lo; b <= hi; b++) bits[b >> 3] |= (uint8_t)(1u << (b & 7));
    }
    if (neg)
        for (int i = 0; i < 32; i++) bits[i] = (uint8_t)~bits[i];
    push_sym(P, -(class_id(P, bits) + 1));
}

/* one element with its postfix operators, appended to P->seq */
static void parse_element(gparse *P, int lhs)
{
    size_t start = P->nseq;
    char c = P->p[P->pos];
    if (c == '"') {
        int line = P->line, c0 = col(P, P->pos);
        P->pos++;
        for (;;) {
            int b;
            if (P->pos >= P->len || P->p[P->pos] == '\n') {
                gerr_at(P, line, c0, "%s", "unclosed string literal (write a line break inside one as \\n)");
                return;
            }
            if (P->p[P->pos] == '"') {
                P->pos++;
                break;
            }
            if ((b = lit_byte(P)) < 0) return;
            push_byte(P, b);
        }
    } else if (c == '[') {
        parse_class(P);
    } else if (c == '.') {
        uint8_t bits[32];
        memset(bits, 0xff, sizeof bits);
        P->pos++;
        push_sym(P, -(class_id(P, bits) + 1));
    } else if (c == '(') {
        int line = P->line, c0 = col(P, P->pos), g;
        if (++P->depth > 200) {
            gerr(P, "%s", "groups nested more than 200 deep");
            return;
        }
        P->pos++;
        g = fresh_nt(P, P->g->names[lhs]);
        if (g < 0) return;
        parse_alts(P, g, 0);
        if (P->err) return;
        if (P->pos >= P->len || P->p[P->pos] != ')') {
            gerr_at(P, line, c0, "%s", "unclosed '('");
            return;
        }
        P->pos++;
        P->depth--;
        push_sym(P, g);
    } else if (is_name_char(c, 1)) {
        size_t s = P->pos, e = s;
        int id;
        while (e < P->len && is_name_char(P->p[e], 0)) e++;
        id = nt_id(P, P->p + s, e - s);   /* with P->pos at s, so that a new name records where it is used */
        P->pos = e;
        if (id < 0) return;
        push_sym(P, id);
    } else {
        gerr(P, "unexpected '%s'", (char[]){c, 0});
        return;
    }
    /* postfix operators wrap everything this element pushed */
    while (!P->err && P->pos < P->len && (P->p[P->pos] == '*' || P->p[P->pos] == '+' || P->p[P->pos] == '?')) {
        char op = P->p[P->pos++];
        int R = fresh_nt(P, P->g->names[lhs]);
        size_t n = P->nseq - start;
        int *x, *rx;
        if (R < 0) return;
        if (!(x = malloc((n + 1) * sizeof *x))) {
            nomem(P);
            return;
        }
        rx = x;
        memcpy(x + 1, P->seq + start, n * sizeof *x);
        x[0] = R;
        if (op == '?') {
            add_rule(P, R, NULL, 0);
            add_rule(P, R, x + 1, n);
        } else {
            add_rule(P, R, op == '*' ? NULL : x + 1, op == '*' ? 0 : n);   /* R ::= ""  or  R ::= X */
            add_rule(P, R, rx, n + 1);                                       /* R ::= R X */
        }
        free(x);
        P->nseq = start;
        push_sym(P, R);
    }
}

static void parse_alts(gparse *P, int lhs, int top)
{
    for (;;) {
        size_t start = P->nseq;
        for (;;) {
            skip(P, 1);
            if (P->err || P->pos >= P->len) break;
            if (P->p[P->pos] == '|' || P->p[P->pos] == ')') break;
            if (top && at_rule_start(P)) break;
            if (!top && at_rule_start(P)) {
                gerr(P, "%s", "a new rule starts inside a group (missing ')'?)");
                return;
            }
            parse_element(P, lhs);
        }
        if (P->err) return;
        add_rule(P, lhs, P->seq + start, P->nseq - start);
        P->nseq = start;
        if (P->pos < P->len && P->p[P->pos] == '|') {
            P->pos++;
            continue;
        }
        if (top && P->pos < P->len && P->p[P->pos] == ')') {
            gerr(P, "%s", "unmatched ')'");
            return;
        }
        return;
    }
}

/* ---- finishing: rule index, productivity, nullability ---- */

static plm_status finish(gparse *P, int root)
{
    grammar *g = P->g;
    int i, r, changed, *cnt;
    unsigned char *prod;
    int start = g->nnt;
    {
        int sym = root;
        if (nt_id(P, "$start", 6) != start) return nomem(P);
        g->def_line[start] = 1;
        add_rule(P, start, &sym, 1);
        if (P->err) return P->err;
        g->start_rule = g->nrules - 1;
    }
    for (i = 0; i < g->nnt; i++)
        if (!g->def_line[i])
            return gerr_at(P, g->use_line[i], g->use_col[i], "undefined rule '%s'", g->names[i]);
    /* productive nonterminals: fixpoint */
    if (!(prod = calloc((size_t)(unsigned)g->nnt, 1))) return nomem(P);
    do {
        changed = 0;
        for (r = 0; r < g->nrules; r++) {
            int ok = 1;
            if (prod[g->lhs[r]]) continue;
            for (i = 0; i < g->rlen[r] && ok; i++) {
                int s = g->rhs[g->roff[r] + i];
                ok = s < 0 || prod[s];
            }
            if (ok) prod[g->lhs[r]] = 1, changed = 1;
        }
    } while (changed);
    for (i = 0; i < g->nnt; i++)
        if (!prod[i]) {
            /* report the named rule at the bottom of the trouble: one whose rules use no other unproductive
            ** named rule (its own groups and repetitions, named after it with a _N suffix, do not count) */
            int j = i;
            for (int k = 0; k < g->nnt; k++) {
                int basic = 1;
                if (prod[k] || strchr(g->names[k], '_')) continue;
                for (r = 0; r < g->nrules && basic; r++) {
                    size_t nl = strlen(g->names[k]);
                    if (g->lhs[r] != k && !(strncmp(g->names[g->lhs[r]], g->names[k], nl) == 0 &&
                                            g->names[g->lhs[r]][nl] == '_'))
                        continue;
                    for (int q = 0; q < g->rlen[r] && basic; q++) {
                        int s = g->rhs[g->roff[r] + q];
                        basic = s < 0 || prod[s] || s == k || strchr(g->names[s], '_');
                    }
                }
                if (basic) {
                    j = k;
                    break;
                }
            }
            free(prod);
            return gerr_at(P, g->def_line[j], g->def_col[j], "rule '%s' derives no finite string", g->names[j]);
        }
    free(prod);
    /* nullable */
    if (!(g->nullable = calloc((size_t)(unsigned)g->nnt, 1))) return nomem(P);
    do {
        changed = 0;
        for (r = 0; r < g->nrules; r++) {
            int ok = 1;
            if (g->nullable[g->lhs[r]]) continue;
            for (i = 0; i < g->rlen[r] && ok; i++) {
                int s = g->rhs[g->roff[r] + i];
                ok = s >= 0 && g->nullable[s];
            }
            if (ok) g->nullable[g->lhs[r]] = 1, changed = 1;
        }
    } while (changed);
    /* rules by left-hand side */
    g->nt_rule0 = calloc((size_t)(unsigned)g->nnt, sizeof(int));
    g->nt_nrules = calloc((size_t)(unsigned)g->nnt, sizeof(int));
    g->nt_rules = malloc((size_t)(unsigned)(g->nrules + 1) * sizeof(int));
    cnt = calloc((size_t)(unsigned)g->nnt, sizeof(int));
    if (!g->nt_rule0 || !g->nt_nrules || !g->nt_rules || !cnt) {
        free(cnt);
        return nomem(P);
    }
    for (r = 0; r < g->nrules; r++) g->nt_nrules[g->lhs[r]]++;
    for (i = 1; i < g->nnt; i++) g->nt_rule0[i] = g->nt_rule0[i - 1] + g->nt_nrules[i - 1];
    for (r = 0; r < g->nrules; r++) g->nt_rules[g->nt_rule0[g->lhs[r]] + cnt[g->lhs[r]]++] = r;
    free(cnt);
    return PLM_OK;
}

/* ---- Earley sets ---- */

static int next_sym(const grammar *g, int rule, int dot, int *sym)
{
    if (dot >= g->rlen[rule]) return 0;
    *sym = g->rhs[g->roff[rule] + dot];
    return 1;
}

static uint64_t item_hash(int rule, int dot, const cnode *o)
{
    uint64_t h = (uint64_t)(uintptr_t)o * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)(unsigned)rule << 20) ^ (uint64_t)(unsigned)dot;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 29);
}

static int hash_reserve(grammar *g, const cnode *x, int need)
{
    if ((size_t)need * 2 <= g->hcap) return 0;
    size_t nc = g->hcap ? g->hcap : 256;
    while ((size_t)need * 2 > nc) nc *= 2;
    int *ni = malloc(nc * sizeof *ni);
    unsigned *ns = calloc(nc, sizeof *ns);
    if (!ni || !ns) {
        free(ni);
        free(ns);
        return -1;
    }
    free(g->hidx);
    free(g->hstamp);
    g->hidx = ni;
    g->hstamp = ns;
    g->hcap = nc;
    g->gen = 1;
    /* re-insert the items of the set under construction */
    for (int i = 0; i < x->n; i++) {
        size_t h = item_hash(x->items[i].rule, x->items[i].dot, x->items[i].origin) & (nc - 1);
        while (ns[h] == g->gen) h = (h + 1) & (nc - 1);
        ns[h] = g->gen;
        ni[h] = i;
    }
    return 0;
}

static int add_item(grammar *g, cnode *x, int rule, int dot, cnode *origin)
{
    size_t h;
    int sym;
    if (hash_reserve(g, x, x->n + 1)) return -1;
    for (h = item_hash(rule, dot, origin) & (g->hcap - 1); g->hstamp[h] == g->gen; h = (h + 1) & (g->hcap - 1)) {
        const citem *it = &x->items[g->hidx[h]];
        if (it->rule == rule && it->dot == dot && it->origin == origin) return 0;
    }
    if (x->n == x->cap) {
        int nc = x->cap ? x->cap * 2 : 16;
        citem *ni = realloc(x->items, (size_t)nc * sizeof *ni);
        if (!ni) return -1;
        x->items = ni;
        x->cap = nc;
    }
    x->items[x->n].rule = rule;
    x->items[x->n].dot = dot;
    x->items[x->n].origin = origin;
    g->hstamp[h] = g->gen;
    g->hidx[h] = x->n++;
    if (next_sym(g, rule, dot, &sym) && sym < 0)
        for (int i = 0; i < 32; i++) x->first[i] |= g->cls[-sym - 1][i];
    return 0;
}

/* Predict and complete until nothing changes; the items list is its own worklist. */
static int closure(grammar *g, cnode *x)
{
    for (int i = 0; i < x->n; i++) {
        citem it = x->items[i];
        int sym;
        if (!next_sym(g, it.rule, it.dot, &sym)) {
            int A = g->lhs[it.rule];
            cnode *o = it.origin;
            for (int j = 0; j < o->n; j++) {   /* o may be x itself: its n grows as we go, which is right */
                citem w = o->items[j];
                int s2;
                if (next_sym(g, w.rule, w.dot, &s2) && s2 == A && add_item(g, x, w.rule, w.dot + 1, w.origin)) return -1;
            }
            if (g->lhs[it.rule] == g->lhs[g->start_rule] && o == g->root) x->accept = 1;
        } else if (sym >= 0) {
            for (int k = 0; k < g->nt_nrules[sym]; k++)
                if (add_item(g, x, g->nt_rules[g->nt_rule0[sym] + k], 0, x)) return -1;
            if (g->nullable[sym] && add_item(g, x, it.rule, it.dot + 1, it.origin)) return -1;
        }
    }
    return 0;
}

static cnode *node_new(grammar *g, cnode *parent)
{
    cnode *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->refs = 1;
    x->g = g;
    x->parent = parent;
    if (parent) parent->refs++;
    g->gen++;
    if (g->gen == 0) {   /* stamps wrapped: clear them */
        memset(g->hstamp, 0, g->hcap * sizeof *g->hstamp);
        g->gen = 1;
    }
    return x;
}

static void node_release(cnode *x)
{
    while (x && --x->refs == 0) {
        cnode *p = x->parent;
        if (x->interned) {
            grammar *g = x->g;
            cnode **q = &g->tab[x->key & (g->ntab - 1)];
            while (*q != x) q = &(*q)->hnext;
            *q = x->hnext;
            g->count--;
        }
        free(x->kitems);
        free(x->items);
        free(x->mask);
        free(x);
        x = p;
    }
}

static int cmp_citem(const void *a, const void *b)
{
    const citem *x = a, *y = b;
    if (x->rule != y->rule) return x->rule < y->rule ? -1 : 1;
    if (x->dot != y->dot) return x->dot < y->dot ? -1 : 1;
    return x->origin == y->origin ? 0 : (uintptr_t)x->origin < (uintptr_t)y->origin ? -1 : 1;
}

/* The interned node equal to y (y is released and the other returned, with a reference), or y itself, now
** interned. NULL when out of memory (y is then released). */
static cnode *intern_node(grammar *g, cnode *y)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)y->accept;
    int k = 0, sym;
    cnode *x;
    if (!(y->kitems = malloc((size_t)(y->n ? y->n : 1) * sizeof *y->kitems))) goto oom;
    for (int i = 0; i < y->n; i++)
        if (next_sym(g, y->items[i].rule, y->items[i].dot, &sym)) {
            y->kitems[k] = y->items[i];
            if (y->kitems[k].origin == y) y->kitems[k].origin = NULL;
            k++;
        }
    y->nk = k;
    qsort(y->kitems, (size_t)k, sizeof *y->kitems, cmp_citem);
    for (int i = 0; i < k; i++) h = (h ^ item_hash(y->kitems[i].rule, y->kitems[i].dot, y->kitems[i].origin)) * 1099511628211ull;
    y->key = h;
    if (g->ntab)
        for (x = g->tab[h & (g->ntab - 1)]; x; x = x->hnext)
            if (x->key == h && x->nk == k && x->accept == y->accept &&
                memcmp(x->kitems, y->kitems, (size_t)k * sizeof *y->kitems) == 0) {
                x->refs++;
                node_release(y);
                return x;
            }
    if (g->count + 1 > g->ntab) {   /* grow the table (load factor <= 1) */
        size_t nn = g->ntab ? g->ntab * 2 : 256;
        cnode **nt = calloc(nn, sizeof *nt);
        if (!nt) goto oom;
        for (size_t b = 0; b < g->ntab; b++)
            for (x = g->tab[b]; x;) {
                cnode *nx = x->hnext;
                x->hnext = nt[x->key & (nn - 1)];
                nt[x->key & (nn - 1)] = x;
                x = nx;
            }
        free(g->tab);
        g->tab = nt;
        g->ntab = nn;
    }
    y->hnext = g->tab[h & (g->ntab - 1)];
    g->tab[h & (g->ntab - 1)] = y;
    y->interned = 1;
    g->count++;
    return y;
oom:
    node_release(y);
    return NULL;
}

static plm_cstate cfg_start(plm_cons *c)
{
    grammar *g = c->impl;
    g->root->refs++;
    return (plm_cstate)g->root;
}

static void cfg_retain(plm_cons *c, plm_cstate s)
{
    (void)c;
    ((cnode *)s)->refs++;
}

static void cfg_release(plm_cons *c, plm_cstate s)
{
    (void)c;
    node_release((cnode *)s);
}

static int cfg_status(const plm_cons *c, plm_cstate s)
{
    (void)c;
    return ((const cnode *)s)->accept ? PLM_CONS_ACCEPT : PLM_CONS_ALIVE;
}

static plm_status cfg_step(plm_ctx *ctx, plm_cons *c, plm_cstate s, unsigned char b, plm_cstate *out)
{
    grammar *g = c->impl;
    cnode *x = (cnode *)s, *y;
    uint8_t bit = (uint8_t)(1u << (b & 7));
    *out = PLM_CSTATE_DEAD;
    if (!(x->first[b >> 3] & bit)) return PLM_OK;
    if (!(y = node_new(g, x))) return plm_fail(ctx, PLM_ENOMEM, "grammar: out of memory");
    for (int i = 0; i < x->n; i++) {
        citem it = x->items[i];
        int sym;
        if (next_sym(g, it.rule, it.dot, &sym) && sym < 0 && (g->cls[-sym - 1][b >> 3] & bit) &&
            add_item(g, y, it.rule, it.dot + 1, it.origin))
            goto oom;
    }
    if (closure(g, y)) goto oom;
    if (y->n == 0) {   /* cannot happen: first[] said some item scans b */
        node_release(y);
        return PLM_OK;
    }
    if (!(y = intern_node(g, y))) return plm_fail(ctx, PLM_ENOMEM, "grammar: out of memory");
    *out = (plm_cstate)y;
    return PLM_OK;
oom:
    node_release(y);
    return plm_fail(ctx, PLM_ENOMEM, "grammar: out of memory");
}

static plm_cmask **cfg_mask_slot(plm_cons *c, plm_cstate s)
{
    (void)c;
    return &((cnode *)s)->mask;
}

static void grammar_free(grammar *g)
{
    if (!g) return;
    node_release(g->root);
    for (int i = 0; i < g->nnt; i++) free(g->names[i]);
    free(g->names);
    free(g->def_line);
    free(g->def_col);
    free(g->use_line);
    free(g->use_col);
    free(g->lhs);
    free(g->roff);
    free(g->rlen);
    free(g->rhs);
    free(g->nt_rule0);
    free(g->nt_nrules);
    free(g->nt_rules);
    free(g->cls);
    free(g->nullable);
    free(g->hidx);
    free(g->hstamp);
    free(g->tab);
    free(g);
}

static void cfg_destroy(plm_cons *c) { grammar_free(c->impl); }

static const plm_cons_ops cfg_ops = {"grammar", cfg_start, cfg_retain, cfg_release, cfg_status, cfg_step, cfg_mask_slot,
                                     cfg_destroy};

plm_status plm_grammar_compile(plm_ctx *ctx, const char *text, size_t len, plm_cons **out)
{
    gparse P;
    grammar *g = calloc(1, sizeof *g);
    plm_cons *c = NULL;
    int root = -1, first = -1;
    *out = NULL;
    memset(&P, 0, sizeof P);
    P.ctx = ctx;
    P.g = g;
    P.p = text;
    P.len = len;
    P.line = 1;
    if (!g) return plm_fail(ctx, PLM_ENOMEM, "grammar: out of memory");
    for (;;) {
        size_t s;
        int id, line, c0;
        skip(&P, 1);
        if (P.err || P.pos >= P.len) break;
        if (!at_rule_start(&P)) {
            gerr(&P, "%s", "expected a rule: name ::= ...");
            break;
        }
        s = P.pos;
        line = P.line;
        c0 = col(&P, s);
        while (is_name_char(P.p[P.pos], 0)) P.pos++;
        id = nt_id(&P, P.p + s, P.pos - s);
        if (id < 0) break;
        if (!g->def_line[id]) g->def_line[id] = line, g->def_col[id] = c0;
        if (first < 0) first = id;
        if (P.pos - s == 4 && memcmp(P.p + s, "root", 4) == 0) root = id;
        skip(&P, 0);
        P.pos += 3;   /* "::=" */
        parse_alts(&P, id, 1);
    }
    if (!P.err && first < 0) gerr(&P, "%s", "the grammar has no rules");
    if (!P.err) finish(&P, root >= 0 ? root : first);
    free(P.seq);
    if (P.err) {
        grammar_free(g);
        return P.err;
    }
    if (!(c = calloc(1, sizeof *c))) {
        grammar_free(g);
        return plm_fail(ctx, PLM_ENOMEM, "grammar: out of memory");
    }
    c->ops = &cfg_ops;
    c->impl = g;
    /* the start set: the augmented start rule, closed */
    if (!(g->root = node_new(g, NULL)) || add_item(g, g->root, g->start_rule, 0, g->root) || closure(g, g->root)) {
        plm_cons_free(c);
        return plm_fail(ctx, PLM_ENOMEM, "grammar: out of memory");
    }
    *out = c;
    return PLM_OK;
}
