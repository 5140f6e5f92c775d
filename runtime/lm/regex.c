/* regex.c -- regular expressions over bytes compiled to a trimmed DFA: recursive-descent parse into a Thompson
** NFA (every fragment has one entry and one exit state), subset construction over byte classes (bytes that
** no character class tells apart share a column), then every state that cannot reach an accepting state is
** merged into the dead state 0, so "alive" below means "a prefix of some match". */
#include "cons_impl.h"

#include <stdlib.h>
#include <string.h>

#define MAX_NFA 200000
#define MAX_DFA 20000
#define MAX_REPEAT 1000

typedef struct nstate {
    int cls;      /* byte class on the edge to next, -1 for none */
    int next;
    int eps[2];   /* epsilon edges */
    int neps;
} nstate;

typedef struct frag {
    int s, a;   /* entry, exit (the exit has no edges yet) */
} frag;

typedef struct rparse {
    plm_ctx *ctx;
    const unsigned char *p;
    size_t len, pos;
    nstate *st;
    int n, cap;
    uint8_t (*cls)[32];
    int ncls, clscap;
    int depth;
    plm_status err;
} rparse;

static int perr(rparse *R, size_t at, const char *what)
{
    if (!R->err) R->err = plm_failm(R->ctx, PLM_EPARSE, "regex", "position %zu: %s", at + 1, what);
    return -1;
}

static int newstate(rparse *R)
{
    if (R->err) return -1;
    if (R->n == R->cap) {
        int nc = R->cap ? R->cap * 2 : 64;
        nstate *ns;
        if (nc > MAX_NFA) return perr(R, R->pos, "the expression is too large (over 200000 automaton states)");
        if (!(ns = realloc(R->st, (size_t)nc * sizeof *ns))) {
            R->err = plm_fail(R->ctx, PLM_ENOMEM, "regex: out of memory");
            return -1;
        }
        R->st = ns;
        R->cap = nc;
    }
    R->st[R->n].cls = -1;
    R->st[R->n].neps = 0;
    return R->n++;
}

static void eps(rparse *R, int from, int to)
{
    if (R->err || from < 0) return;
    R->st[from].eps[R->st[from].neps++] = to;
}

static int newclass(rparse *R, const uint8_t bits[32])
{
    if (R->err) return -1;
    if (R->ncls == R->clscap) {
        int nc = R->clscap ? R->clscap * 2 : 16;
        uint8_t(*c)[32] = realloc(R->cls, (size_t)nc * sizeof *c);
        if (!c) {
            R->err = plm_fail(R->ctx, PLM_ENOMEM, "regex: out of memory");
            return -1;
        }
        R->cls = c;
        R->clscap = nc;
    }
    memcpy(R->cls[R->ncls], bits, 32);
    return R->ncls++;
}

static frag fr_class(rparse *R, const uint8_t bits[32])
{
    frag f;
    int c = newclass(R, bits);
    f.s = newstate(R);
    f.a = newstate(R);
    if (!R->err) {
        R->st[f.s].cls = c;
        R->st[f.s].next = f.a;
    }
    return f;
}

static frag fr_empty(rparse *R)
{
    frag f;
    f.s = newstate(R);
    f.a = newstate(R);
    eps(R, f.s, f.a);
    return f;
}

static frag fr_cat(rparse *R, frag f, frag g)
{
    frag r = {f.s, g.a};
    eps(R, f.a, g.s);
    return r;
}

static frag fr_alt(rparse *R, frag f, frag g)
{
    frag r;
    r.s = newstate(R);
    r.a = newstate(R);
    eps(R, r.s, f.s);
    eps(R, r.s, g.s);
    eps(R, f.a, r.a);
    eps(R, g.a, r.a);
    return r;
}

/* kind: '*', '+', '?' */
static frag fr_rep(rparse *R, frag f, int kind)
{
    frag r;
    r.s = newstate(R);
    r.a = newstate(R);
    eps(R, r.s, f.s);
    if (kind != '+') eps(R, r.s, r.a);
    if (kind != '?') eps(R, f.a, f.s);
    eps(R, f.a, r.a);
    return r;
}

static void setbit(uint8_t b[32], int c) { b[c >> 3] |= (uint8_t)(1u << (c & 7)); }

static void setrange(uint8_t b[32], int lo, int hi)
{
    for (int c = lo; c <= hi; c++) setbit(b, c);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The escape after a backslash at R->pos (which points past the backslash): a single byte (returned), or a
** shorthand class added to bits (returns -2). -1 on error. */
static int escape(rparse *R, uint8_t bits[32])
{
    size_t at = R->pos - 1;
    int c, neg = 0, i;
    uint8_t b[32];
    if (R->pos >= R->len) return perr(R, at, "a backslash ends the pattern");
    c = R->p[R->pos++];
    memset(b, 0, sizeof b);
    switch (c) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'x': {
        int h, l;
        if (R->pos + 2 > R->len || (h = hexval(R->p[R->pos])) < 0 || (l = hexval(R->p[R->pos + 1])) < 0)
            return perr(R, at, "\\x needs two hexadecimal digits");
        R->pos += 2;
        return h * 16 + l;
    }
    case 'D': neg = 1; /* fall through */
    case 'd': setrange(b, '0', '9'); break;
    case 'W': neg = 1; /* fall through */
    case 'w': setrange(b, '0', '9'), setrange(b, 'a', 'z'), setrange(b, 'A', 'Z'), setbit(b, '_'); break;
    case 'S': neg = 1; /* fall through */
    case 's': setbit(b, ' '), setrange(b, '\t', '\r'); break;
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            return perr(R, at, "unknown escape (use \\ only before punctuation, or \\n \\t \\r \\f \\v \\xHH \\d \\w \\s)");
        return c;
    }
    for (i = 0; i < 32; i++) bits[i] |= neg ? (uint8_t)~b[i] : b[i];
    return -2;
}

static frag alt(rparse *R);

static frag charclass(rparse *R)
{
    size_t open = R->pos - 1;
    uint8_t b[32];
    int neg = 0, first = 1, i;
    memset(b, 0, sizeof b);
    if (R->pos < R->len && R->p[R->pos] == '^') neg = 1, R->pos++;
    for (;;) {
        int lo, hi;
        if (R->pos >= R->len) {
            perr(R, open, "unclosed '['");
            return fr_empty(R);
        }
        lo = R->p[R->pos++];
        if (lo == ']' && !first) break;
        first = 0;
        if (lo == '\\' && (lo = escape(R, b)) < 0) {
            if (lo == -1) return fr_empty(R);
            continue;
        }
        if (R->pos + 1 < R->len && R->p[R->pos] == '-' && R->p[R->pos + 1] != ']') {
            size_t at = R->pos + 1;
            R->pos++;
            hi = R->p[R->pos++];
            if (hi == '\\' && (hi = escape(R, b)) < 0) {
                if (hi == -2) perr(R, at, "a class shorthand cannot end a range");
                return fr_empty(R);
            }
            if (hi < lo) {
                perr(R, at, "range out of order");
                return fr_empty(R);
            }
            setrange(b, lo, hi);
        } else
            setbit(b, lo);
    }
    if (neg)
        for (i = 0; i < 32; i++) b[i] = (uint8_t)~b[i];
    return fr_class(R, b);
}

static frag atom(rparse *R)
{
    uint8_t b[32];
    size_t at = R->pos;
    int c;
    memset(b, 0, sizeof b);
    if (++R->depth > 500) {
        perr(R, at, "groups nested more than 500 deep");
        return fr_empty(R);
    }
    c = R->p[R->pos++];
    switch (c) {
    case '(': {
        frag f;
        if (R->pos + 1 < R->len && R->p[R->pos] == '?' && R->p[R->pos + 1] == ':') R->pos += 2;
        f = alt(R);
        if (R->pos >= R->len || R->p[R->pos] != ')') perr(R, at, "unclosed '('");
        R->pos++;
        R->depth--;
        return f;
    }
    case '[': R->depth--; return charclass(R);
    case '.': setrange(b, 0, 255), b['\n' >> 3] &= (uint8_t)~(1u << ('\n' & 7)); break;
    case '\\': {
        int e = escape(R, b);
        if (e == -1) return fr_empty(R);
        if (e >= 0) setbit(b, e);
        break;
    }
    case '*': case '+': case '?': case '{': perr(R, at, "nothing to repeat"); return fr_empty(R);
    case '^':
    case '$':
        if ((c == '^' && at == 0) || (c == '$' && at + 1 == R->len)) {
            R->depth--;
            return fr_empty(R);
        }
        perr(R, at, "'^' and '$' may only open and close the pattern (the whole text must match anyway)");
        return fr_empty(R);
    default: setbit(b, c);
    }
    R->depth--;
    return fr_class(R, b);
}

static int number(rparse *R, int *v)
{
    size_t s = R->pos;
    long x = 0;
    while (R->pos < R->len && R->p[R->pos] >= '0' && R->p[R->pos] <= '9' && x <= MAX_REPEAT)
        x = x * 10 + (R->p[R->pos++] - '0');
    *v = (int)x;
    return R->pos > s;
}

/* An atom and its postfix operators up to `stop` (the end of the unit when a {m,n} re-parses a copy). */
static frag piece(rparse *R, size_t stop)
{
    size_t start = R->pos;
    frag f = atom(R);
    while (!R->err && R->pos < stop && R->pos < R->len) {
        int c = R->p[R->pos];
        size_t unit_end = R->pos, at = R->pos;
        int m, n, k;
        if (c == '*' || c == '+' || c == '?') {
            R->pos++;
            f = fr_rep(R, f, c);
            continue;
        }
        if (c != '{') break;
        R->pos++;
        if (!number(R, &m)) {
            perr(R, at, "expected a number after '{'");
            break;
        }
        n = m;
        if (R->pos < R->len && R->p[R->pos] == ',') {
            R->pos++;
            if (!number(R, &n)) n = -1;
        }
        if (R->pos >= R->len || R->p[R->pos] != '}') {
            perr(R, at, "expected '}' to close the repetition");
            break;
        }
        R->pos++;
        if (m > MAX_REPEAT || n > MAX_REPEAT) {
            perr(R, at, "repetition counts must be at most 1000");
            break;
        }
        if (n >= 0 && n < m) {
            perr(R, at, "in {m,n}, n must be at least m");
            break;
        }
        {
            /* m copies, then n - m optional ones (or a starred one when n is open); the first is f itself */
            size_t resume = R->pos;
            int total = n < 0 ? m + 1 : n;
            frag r;
            if (total == 0) {
                f = fr_empty(R);
                continue;
            }
            r = m == 0 ? fr_rep(R, f, n < 0 ? '*' : '?') : f;
            for (k = 1; k < total && !R->err; k++) {
                frag g;
                R->pos = start;
                g = piece(R, unit_end);
                if (k >= m) g = fr_rep(R, g, n < 0 ? '*' : '?');
                r = fr_cat(R, r, g);
            }
            R->pos = resume;
            f = r;
        }
    }
    return f;
}

static frag concat(rparse *R)
{
    frag f = fr_empty(R);
    while (!R->err && R->pos < R->len && R->p[R->pos] != '|' && R->p[R->pos] != ')')
        f = fr_cat(R, f, piece(R, (size_t)-1));
    return f;
}

static frag alt(rparse *R)
{
    frag f = concat(R);
    while (!R->err && R->pos < R->len && R->p[R->pos] == '|') {
        R->pos++;
        f = fr_alt(R, f, concat(R));
    }
    return f;
}

/* ---- the DFA ---- */

typedef struct regex {
    int n;              /* states 1..n; 0 is dead */
    int32_t *trans;     /* (n + 1) x 256 */
    unsigned char *acc; /* n + 1 */
    int start;
    plm_cmask **masks;  /* n + 1 */
} regex;

typedef struct sets {
    int *pool;
    size_t used, cap;
    size_t *off;
    int *len;
    int n, cap_s;
    int *hash;   /* open addressing: DFA index + 1, 0 empty */
    size_t hcap;
} sets;

static uint64_t hash_set(const int *s, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint64_t)(unsigned)s[i]) * 1099511628211ull;
    return h;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* closure of the k states in buf (in place; buf has room for every NFA state); returns the new count, sorted */
static int closure(const nstate *st, int *buf, int k, unsigned *mark, unsigned gen)
{
    int top = k, i;
    for (i = 0; i < k; i++) mark[buf[i]] = gen;
    for (i = 0; i < top; i++) {
        const nstate *q = &st[buf[i]];
        for (int e = 0; e < q->neps; e++)
            if (mark[q->eps[e]] != gen) mark[q->eps[e]] = gen, buf[top++] = q->eps[e];
    }
    qsort(buf, (size_t)top, sizeof *buf, cmp_int);
    return top;
}

/* the DFA index of set s (k states), adding it when new; -1 when out of memory or over the limit */
static int intern(sets *S, const int *s, int k, int *added)
{
    size_t h;
    *added = 0;
    if ((size_t)S->n * 2 >= S->hcap) {
        size_t nc = S->hcap ? S->hcap * 2 : 1024;
        int *nh = calloc(nc, sizeof *nh);
        if (!nh) return -1;
        for (int j = 0; j < S->n; j++) {
            h = hash_set(S->pool + S->off[j], S->len[j]) & (nc - 1);
            while (nh[h]) h = (h + 1) & (nc - 1);
            nh[h] = j + 1;
        }
        free(S->hash);
        S->hash = nh;
        S->hcap = nc;
    }
    for (h = hash_set(s, k) & (S->hcap - 1);; h = (h + 1) & (S->hcap - 1)) {
        int j = S->hash[h] - 1;
        if (j < 0) break;
        if (S->len[j] == k && memcmp(S->pool + S->off[j], s, (size_t)k * sizeof *s) == 0) return j;
    }
    if (S->n >= MAX_DFA) return -2;
    if (S->n == S->cap_s) {
        int nc = S->cap_s ? S->cap_s * 2 : 64;
        size_t *no = realloc(S->off, (size_t)nc * sizeof *no);
        int *nl;
        if (!no) return -1;
        S->off = no;
        if (!(nl = realloc(S->len, (size_t)nc * sizeof *nl))) return -1;
        S->len = nl;
        S->cap_s = nc;
    }
    if (S->used + (size_t)k > S->cap) {
        size_t nc = (S->used + (size_t)k) * 2 + 256;
        int *np = realloc(S->pool, nc * sizeof *np);
        if (!np) return -1;
        S->pool = np;
        S->cap = nc;
    }
    memcpy(S->pool + S->used, s, (size_t)k * sizeof *s);
    S->off[S->n] = S->used;
    S->len[S->n] = k;
    S->used += (size_t)k;
    S->hash[h] = S->n + 1;
    *added = 1;
    return S->n++;
}

static const plm_cons_ops regex_ops;

/* Subset construction, then trimming. dfa[] (raw, -1 dead) grows with the sets. */
static plm_status build_dfa(plm_ctx *ctx, rparse *R, frag f, regex *out)
{
    int N = R->n, G = 1, i, b, q;
    int group[256], rep[256];
    int *buf = malloc((size_t)(unsigned)(N + 1) * sizeof *buf);
    unsigned *mark = calloc((size_t)(unsigned)N + 1, sizeof *mark), gen = 0;
    int32_t *raw = NULL;
    size_t rawcap = 0;
    sets S;
    plm_status st = PLM_OK;
    int *live = NULL, *num = NULL;
    memset(&S, 0, sizeof S);
    if (!buf || !mark) goto nomem;
    /* byte groups: refine one partition by every class */
    memset(group, 0, sizeof group);
    for (i = 0; i < R->ncls; i++) {
        int map[512], ng = 0;
        for (b = 0; b < 512; b++) map[b] = -1;
        for (b = 0; b < 256; b++) {
            int in = (R->cls[i][b >> 3] >> (b & 7)) & 1, key = group[b] * 2 + in;
            if (map[key] < 0) map[key] = ng++;
            group[b] = map[key];
        }
        G = ng;
    }
    for (b = 255; b >= 0; b--) rep[group[b]] = b;
    /* subset construction; the worklist is the set list itself */
    buf[0] = f.s;
    {
        int k = closure(R->st, buf, 1, mark, ++gen), added;
        if (intern(&S, buf, k, &added) < 0) goto nomem;
    }
    for (int d = 0; d < S.n; d++) {
        if ((size_t)(d + 1) * (size_t)G > rawcap) {
            size_t nc = ((size_t)(d + 1) * 2 + 16) * (size_t)G;
            int32_t *nr = realloc(raw, nc * sizeof *nr);
            if (!nr) goto nomem;
            raw = nr;
            rawcap = nc;
        }
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "regex: interrupted");
            goto done;
        }
        for (int g = 0; g < G; g++) {
            int k = 0, j, added;
            const int *set = S.pool + S.off[d];
            b = rep[g];
            ++gen;
            for (i = 0; i < S.len[d]; i++) {
                const nstate *s = &R->st[set[i]];
                if (s->cls >= 0 && ((R->cls[s->cls][b >> 3] >> (b & 7)) & 1) && mark[s->next] != gen)
                    mark[s->next] = gen, buf[k++] = s->next;
            }
            if (!k) {
                raw[(size_t)d * G + g] = -1;
                continue;
            }
            k = closure(R->st, buf, k, mark, ++gen);
            j = intern(&S, buf, k, &added);
            if (j == -2) {
                st = plm_fail(ctx, PLM_EINVAL, "regex: the automaton would need more than %d states", MAX_DFA);
                goto done;
            }
            if (j < 0) goto nomem;
            raw[(size_t)d * G + g] = j;
        }
    }
    /* trimming: live = can reach an accepting set (fixpoint; each pass is linear, and passes are few) */
    live = calloc((size_t)(unsigned)S.n, sizeof *live);
    num = calloc((size_t)(unsigned)S.n, sizeof *num);
    if (!live || !num) goto nomem;
    for (i = 0; i < S.n; i++) {
        const int *set = S.pool + S.off[i];
        for (q = 0; q < S.len[i]; q++)
            if (set[q] == f.a) live[i] = 1;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (i = S.n - 1; i >= 0; i--) {
            if (live[i]) continue;
            for (int g = 0; g < G; g++) {
                int t = raw[(size_t)i * G + g];
                if (t >= 0 && live[t]) {
                    live[i] = 1;
                    changed = 1;
                    break;
                }
            }
        }
    }
    out->n = 0;
    for (i = 0; i < S.n; i++) num[i] = live[i] ? ++out->n : 0;
    out->trans = calloc((size_t)(unsigned)(out->n + 1) * 256, sizeof *out->trans);
    out->acc = calloc((size_t)(unsigned)out->n + 1, 1);
    out->masks = calloc((size_t)(unsigned)out->n + 1, sizeof *out->masks);
    if (!out->trans || !out->acc || !out->masks) goto nomem;
    for (i = 0; i < S.n; i++) {
        const int *set = S.pool + S.off[i];
        if (!num[i]) continue;
        for (b = 0; b < 256; b++) {
            int t = raw[(size_t)i * G + group[b]];
            out->trans[(size_t)num[i] * 256 + b] = t >= 0 ? num[t] : 0;
        }
        for (q = 0; q < S.len[i]; q++)
            if (set[q] == f.a) out->acc[num[i]] = 1;
    }
    out->start = num[0];
    goto done;
nomem:
    st = plm_fail(ctx, PLM_ENOMEM, "regex: out of memory");
done:
    free(buf);
    free(mark);
    free(raw);
    free(S.pool);
    free(S.off);
    free(S.len);
    free(S.hash);
    free(live);
    free(num);
    return st;
}

static plm_cstate re_start(plm_cons *c) { return ((regex *)c->impl)->start; }
static void re_noop(plm_cons *c, plm_cstate s) { (void)c, (void)s; }
static int re_status(const plm_cons *c, plm_cstate s) { return ((regex *)c->impl)->acc[s] ? PLM_CONS_ACCEPT : PLM_CONS_ALIVE; }
static plm_status re_step(plm_ctx *ctx, plm_cons *c, plm_cstate s, unsigned char b, plm_cstate *out)
{
    (void)ctx;
    *out = ((regex *)c->impl)->trans[(size_t)s * 256 + b];
    return PLM_OK;
}
static plm_cmask **re_mask_slot(plm_cons *c, plm_cstate s) { return &((regex *)c->impl)->masks[s]; }
static void re_destroy(plm_cons *c)
{
    regex *r = c->impl;
    if (!r) return;
    for (int i = 0; r->masks && i <= r->n; i++) free(r->masks[i]);
    free(r->masks);
    free(r->trans);
    free(r->acc);
    free(r);
}

static const plm_cons_ops regex_ops = {"regex", re_start, re_noop, re_noop, re_status, re_step, re_mask_slot, re_destroy};

plm_status plm_regex_compile(plm_ctx *ctx, const char *pattern, size_t len, plm_cons **out)
{
    rparse R;
    frag f;
    regex *re = NULL;
    plm_cons *c = NULL;
    plm_status st;
    *out = NULL;
    memset(&R, 0, sizeof R);
    R.ctx = ctx;
    R.p = (const unsigned char *)pattern;
    R.len = len;
    f = alt(&R);
    if (!R.err && R.pos < R.len) perr(&R, R.pos, "unmatched ')'");
    if ((st = R.err)) goto done;
    if (!(re = calloc(1, sizeof *re)) || !(c = calloc(1, sizeof *c))) {
        st = plm_fail(ctx, PLM_ENOMEM, "regex: out of memory");
        goto done;
    }
    c->ops = &regex_ops;
    c->impl = re;
    if ((st = build_dfa(ctx, &R, f, re))) goto done;
    *out = c;
    c = NULL;
    re = NULL;
done:
    if (c) c->impl = re, re_destroy(c), re = NULL;
    if (re) {
        plm_cons tmp = {&regex_ops, re};
        re_destroy(&tmp);
    }
    free(c);
    free(R.st);
    free(R.cls);
    return st;
}
