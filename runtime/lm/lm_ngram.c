/* lm_ngram.c -- n-gram backoff models: a trie of n-grams stored as a hash map (context node, word) -> node,
** the ARPA reader and writer, and modified Kneser-Ney estimation. */
#include "lm_ngram.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "u64map.h"

#define LN10 2.302585092994045684

typedef struct ng_node {
    int32_t parent, word, first_child, next_sibling;
    int32_t depth;   /* the n of this n-gram; 0 for the root */
    double lp, bo;   /* natural-log probability and backoff weight (bo 0 when the file gives none) */
} ng_node;

typedef struct ng_model {
    int order;
    char **words;          /* words[v], NUL-terminated */
    int n_words, cap_words;
    plm_u64map wordmap;    /* hash(word) (+ probe) -> id */
    ng_node *nodes;
    size_t n_nodes, cap_nodes;
    plm_u64map trie;
    plm_token bos, eos, unk;
} ng_model;

static uint64_t str_hash(const char *s, size_t len, uint64_t probe)
{
    uint64_t h = 1469598103934665603ULL ^ (probe * 0x9e3779b97f4a7c15ULL);
    size_t i;
    for (i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static plm_token word_find(const ng_model *m, const char *s, size_t len)
{
    uint64_t probe;
    for (probe = 0;; probe++) {
        int32_t id = plm_u64map_get(&m->wordmap, str_hash(s, len, probe));
        if (id < 0) return -1;
        if (strlen(m->words[id]) == len && memcmp(m->words[id], s, len) == 0) return id;
    }
}

/* The id of the word, added when absent; -1 when out of memory. *added tells which. */
static plm_token word_add(ng_model *m, const char *s, size_t len, int *added)
{
    uint64_t probe;
    plm_token id = word_find(m, s, len);
    *added = 0;
    if (id >= 0) return id;
    if (m->n_words == m->cap_words) {
        int cap = m->cap_words ? 2 * m->cap_words : 64;
        char **w = realloc(m->words, (size_t)cap * sizeof *w);
        if (!w) return -1;
        m->words = w;
        m->cap_words = cap;
    }
    if (!(m->words[m->n_words] = malloc(len + 1))) return -1;
    memcpy(m->words[m->n_words], s, len);
    m->words[m->n_words][len] = 0;
    for (probe = 0; plm_u64map_get(&m->wordmap, str_hash(s, len, probe)) >= 0; probe++) {}
    if (plm_u64map_put(&m->wordmap, str_hash(s, len, probe), m->n_words)) {
        free(m->words[m->n_words]);
        return -1;
    }
    *added = 1;
    return m->n_words++;
}

static uint64_t node_key(int32_t parent, plm_token w)
{
    return ((uint64_t)(uint32_t)parent << 32) | (uint32_t)w;
}

static int32_t node_child(const ng_model *m, int32_t parent, plm_token w)
{
    return plm_u64map_get(&m->trie, node_key(parent, w));
}

/* The child (parent, w), created (lp = -inf) when absent; -1 when out of memory. */
static int32_t node_add(ng_model *m, int32_t parent, plm_token w, int *added)
{
    int32_t id = node_child(m, parent, w);
    ng_node *nd;
    *added = 0;
    if (id >= 0) return id;
    if (m->n_nodes == m->cap_nodes) {
        size_t cap = m->cap_nodes * 2;
        ng_node *n = cap < INT32_MAX ? realloc(m->nodes, cap * sizeof *n) : NULL;
        if (!n) return -1;
        m->nodes = n;
        m->cap_nodes = cap;
    }
    id = (int32_t)m->n_nodes;
    if (plm_u64map_put(&m->trie, node_key(parent, w), id)) return -1;
    m->n_nodes++;
    nd = &m->nodes[id];
    nd->parent = parent;
    nd->word = w;
    nd->depth = m->nodes[parent].depth + 1;
    nd->lp = -INFINITY;
    nd->bo = 0;
    nd->first_child = -1;
    nd->next_sibling = m->nodes[parent].first_child;
    m->nodes[parent].first_child = id;
    *added = 1;
    return id;
}

static ng_model *model_new(void)
{
    ng_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->nodes = malloc(1024 * sizeof *m->nodes);
    if (!m->nodes || plm_u64map_init(&m->trie, 1024) || plm_u64map_init(&m->wordmap, 256)) {
        free(m->nodes);
        plm_u64map_free(&m->trie);
        free(m);
        return NULL;
    }
    m->cap_nodes = 1024;
    m->n_nodes = 1;
    memset(&m->nodes[0], 0, sizeof m->nodes[0]);
    m->nodes[0].parent = -1;
    m->nodes[0].word = -1;
    m->nodes[0].first_child = -1;
    m->nodes[0].next_sibling = -1;
    m->bos = m->eos = m->unk = -1;
    return m;
}

static void model_free(ng_model *m)
{
    int i;
    if (!m) return;
    for (i = 0; i < m->n_words; i++) free(m->words[i]);
    free(m->words);
    free(m->nodes);
    plm_u64map_free(&m->trie);
    plm_u64map_free(&m->wordmap);
    free(m);
}

/* The node of the longest suffix of (<s>, toks) that is an n-gram of the model, at most order-1 words long:
** with backoff, the next-token distribution depends on nothing else. Also gives the suffix nodes c_1..c_k
** in sfx (shortest first) and their count. */
static int32_t context_nodes(const ng_model *m, const plm_token *toks, size_t n, int32_t *sfx, int *nsfx)
{
    size_t L = n + 1, k, j, K = (size_t)(m->order - 1);
    int32_t last = 0;
    if (K > L) K = L;
    *nsfx = 0;
    for (k = 1; k <= K; k++) {
        int32_t node = 0;
        for (j = L - k; j < L && node >= 0; j++) {
            plm_token w = j == 0 ? m->bos : toks[j - 1];
            node = w < 0 ? -1 : node_child(m, node, w);
        }
        if (node < 0) break;
        sfx[(*nsfx)++] = node;
        last = node;
    }
    return last;
}

/* Backoff log-probabilities of every word after the history, unnormalised: row[v] for v < n_words. */
static void backoff_row(const ng_model *m, const plm_token *toks, size_t n, double *row)
{
    int32_t sfx[16];
    int nsfx, k, v;
    int32_t c;
    context_nodes(m, toks, n, sfx, &nsfx);
    for (v = 0; v < m->n_words; v++) row[v] = -INFINITY;
    for (c = m->nodes[0].first_child; c >= 0; c = m->nodes[c].next_sibling) row[m->nodes[c].word] = m->nodes[c].lp;
    /* P(w | c_k) = p(c_k w) when that n-gram is listed, else bo(c_k) P(w | c_{k-1}) */
    for (k = 0; k < nsfx; k++) {
        const ng_node *h = &m->nodes[sfx[k]];
        if (h->bo != 0)
            for (v = 0; v < m->n_words; v++) row[v] += h->bo;
        for (c = h->first_child; c >= 0; c = m->nodes[c].next_sibling) row[m->nodes[c].word] = m->nodes[c].lp;
    }
}

static plm_status ng_next_logprobs(plm_lm *lm, plm_ctx *ctx, size_t n, const plm_token *const *toks,
                                   const size_t *lens, double *out)
{
    const ng_model *m = lm->impl;
    size_t i, V = (size_t)lm->n_vocab;
    for (i = 0; i < n; i++) {
        double *row = out + i * V;
        backoff_row(m, toks[i], lens[i], row);
        if (m->bos >= 0) row[m->bos] = -INFINITY;
        if (plm_lm_lognormalise(row, V) == -INFINITY)
            return plm_fail(ctx, PLM_EDOM, "ngram: every word has probability 0 after context %zu", i + 1);
    }
    return PLM_OK;
}

static uint64_t ng_state_key(plm_lm *lm, const plm_token *toks, size_t len)
{
    int32_t sfx[16];
    int nsfx;
    return (uint64_t)context_nodes(lm->impl, toks, len, sfx, &nsfx) + 1;
}

static plm_status ng_tokenize(plm_lm *lm, plm_ctx *ctx, const char *text, size_t len, plm_token *out, size_t cap,
                              size_t *n_out)
{
    const ng_model *m = lm->impl;
    size_t i = 0, k = 0;
    while (i < len) {
        size_t s;
        plm_token id;
        while (i < len && isspace((unsigned char)text[i])) i++;
        if (i == len) break;
        s = i;
        while (i < len && !isspace((unsigned char)text[i])) i++;
        id = word_find(m, text + s, i - s);
        if (id < 0) id = m->unk;
        if (id < 0)
            return plm_fail(ctx, PLM_EDOM, "ngram: the word '%.*s' is not in the vocabulary, and the model has no <unk>",
                            (int)(i - s > 60 ? 60 : i - s), text + s);
        if (k < cap) out[k] = id;
        k++;
    }
    *n_out = k;
    return PLM_OK;
}

static void ng_destroy(plm_lm *lm)
{
    model_free(lm->impl);
}

static const plm_lm_ops ngram_ops = {
    "ngram", ng_next_logprobs, ng_tokenize, NULL, ng_state_key, NULL, NULL, NULL, NULL, ng_destroy, NULL, NULL,
};

/* Wrap a finished model as a plm_lm (the model is freed on failure). */
static plm_status model_to_lm(plm_ctx *ctx, ng_model *m, plm_lm **out)
{
    plm_lm *lm = plm_lm_alloc(&ngram_ops, m, m->n_words);
    int v;
    if (!lm || !(lm->eos = malloc(sizeof *lm->eos))) {
        if (lm) plm_lm_free(lm);
        else model_free(m);
        return plm_fail(ctx, PLM_ENOMEM, "ngram: out of memory");
    }
    lm->bos = m->bos;
    lm->eos[0] = m->eos;
    lm->n_eos = 1;
    lm->lead_space = 1;
    for (v = 0; v < m->n_words; v++) {
        char buf[256], *b = buf;
        size_t wl = strlen(m->words[v]);
        plm_status st;
        if (v == m->bos || v == m->eos) {
            st = plm_lm_set_token(lm, ctx, v, "", 0);
        } else {
            if (wl + 2 > sizeof buf && !(b = malloc(wl + 2))) st = plm_fail(ctx, PLM_ENOMEM, "ngram: out of memory");
            else {
                b[0] = ' ';
                memcpy(b + 1, m->words[v], wl);
                st = plm_lm_set_token(lm, ctx, v, b, wl + 1);
                if (b != buf) free(b);
            }
        }
        if (st) {
            plm_lm_free(lm);
            return st;
        }
    }
    *out = lm;
    return PLM_OK;
}

/* Make sure <s> and </s> exist (probability 0 when the source lacks them) and note the special ids. */
static plm_status add_specials(plm_ctx *ctx, ng_model *m)
{
    static const char *names[2] = {"<s>", "</s>"};
    int i, added;
    for (i = 0; i < 2; i++) {
        plm_token id = word_add(m, names[i], strlen(names[i]), &added);
        if (id < 0 || node_add(m, 0, id, &added) < 0) return plm_fail(ctx, PLM_ENOMEM, "ngram: out of memory");
        if (i == 0) m->bos = id;
        else m->eos = id;
    }
    m->unk = word_find(m, "<unk>", 5);
    return PLM_OK;
}

/* ---- ARPA reader ---- */

static plm_status arpa_fail(plm_ctx *ctx, const char *path, size_t line, const char *what)
{
    return plm_fail(ctx, PLM_EPARSE, "ngram: %s line %zu: %s", path, line, what);
}

plm_status plm_ngram_load_arpa(plm_ctx *ctx, const char *path, plm_lm **out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *line, *next;
    size_t len = 0, cap = 0, lineno = 0, got = 0;
    size_t declared[10] = {0};
    int section = -1;   /* -1 before \data\, 0 in \data\, n in \n-grams:, 99 after \end\ */
    int order = 0, i, saw_data = 0, saw_end = 0;
    ng_model *m = NULL;
    plm_status st = PLM_OK;
    char msg[300];
    *out = NULL;
    if (!f) return plm_fail(ctx, PLM_EIO, "ngram: cannot open '%s': %s", path, strerror(errno));
    for (;;) {   /* the whole file in memory, NUL-terminated */
        size_t r;
        if (len + 65536 + 1 > cap) {
            char *b;
            cap = (cap ? cap * 2 : 1 << 20);
            if (!(b = realloc(buf, cap))) {
                fclose(f);
                free(buf);
                return plm_fail(ctx, PLM_ENOMEM, "ngram: out of memory reading '%s'", path);
            }
            buf = b;
        }
        r = fread(buf + len, 1, 65536, f);
        len += r;
        if (r < 65536) break;
    }
    if (ferror(f)) {
        fclose(f);
        free(buf);
        return plm_fail(ctx, PLM_EIO, "ngram: cannot read '%s'", path);
    }
    fclose(f);
    buf[len] = 0;
    if (memchr(buf, 0, len)) {
        free(buf);
        return plm_fail(ctx, PLM_EPARSE, "ngram: '%s' is not an ARPA file (it contains NUL bytes)", path);
    }
    if (!(m = model_new())) {
        free(buf);
        return plm_fail(ctx, PLM_ENOMEM, "ngram: out of memory");
    }
    for (line = buf; line && *line; line = next) {
        char *e, *p;
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        e = line + strlen(line);
        while (e > line && isspace((unsigned char)e[-1])) *--e = 0;
        p = line;
        while (isspace((unsigned char)*p)) p++;
        if (!*p) continue;
        if (section == 99) continue;
        if (strcmp(p, "\\data\\") == 0) {
            if (saw_data) { st = arpa_fail(ctx, path, lineno, "a second \\data\\ section"); goto done; }
            saw_data = 1;
            section = 0;
            continue;
        }
        if (section == -1) continue;   /* text before \data\ is a comment */
        if (strcmp(p, "\\end\\") == 0) {
            if (section > 0 && got != declared[section]) {
                snprintf(msg, sizeof msg, "the header declares %zu %d-grams but the section has %zu", declared[section],
                         section, got);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            if (section != order) {
                snprintf(msg, sizeof msg, "\\end\\ after the %d-grams, but the header declares %d-grams", section, order);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            section = 99;
            saw_end = 1;
            continue;
        }
        if (p[0] == '\\') {
            int n;
            char tail[16];
            if (sscanf(p, "\\%d-grams%15s", &n, tail) != 2 || strcmp(tail, ":") != 0 || n < 1 || n > order) {
                snprintf(msg, sizeof msg, "expected a section header \\N-grams: with N in 1..%d, got '%.40s'", order, p);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            if (section > 0 && got != declared[section]) {
                snprintf(msg, sizeof msg, "the header declares %zu %d-grams but the section before has %zu",
                         declared[section], section, got);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            if (n != section + 1) {
                snprintf(msg, sizeof msg, "the %d-grams section comes after the %d-grams section", n, section);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            section = n;
            got = 0;
            continue;
        }
        if (section == 0) {
            int n;
            long long c;
            char extra;
            if (sscanf(p, "ngram %d = %lld %c", &n, &c, &extra) != 2 && sscanf(p, "ngram %d=%lld %c", &n, &c, &extra) != 2) {
                snprintf(msg, sizeof msg, "expected 'ngram N=count' in the \\data\\ section, got '%.40s'", p);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            if (n < 1 || n > 9 || c < 0 || n != order + 1) {
                snprintf(msg, sizeof msg, "bad n-gram count line '%.40s' (orders must be 1, 2, ... up to 9)", p);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            declared[n] = (size_t)c;
            order = n;
            continue;
        }
        {   /* an entry: log10 p, section words, optional log10 backoff */
            char *tok[12], *s = p, *endp;
            int nt = 0, added;
            double lp, bo = 0;
            int32_t node = 0;
            while (*s && nt < 12) {
                tok[nt++] = s;
                while (*s && !isspace((unsigned char)*s)) s++;
                while (isspace((unsigned char)*s)) *s++ = 0;
            }
            if (nt != section + 1 && nt != section + 2) {
                snprintf(msg, sizeof msg, "expected a log-probability, %d word%s and an optional backoff, got %d fields",
                         section, section > 1 ? "s" : "", nt);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            errno = 0;
            lp = strtod(tok[0], &endp);
            if (*endp || endp == tok[0] || isnan(lp) || lp > 0) {
                snprintf(msg, sizeof msg, "'%.30s' is not a log10 probability (a number <= 0)", tok[0]);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
            if (nt == section + 2) {
                bo = strtod(tok[nt - 1], &endp);
                if (*endp || endp == tok[nt - 1] || !isfinite(bo)) {
                    snprintf(msg, sizeof msg, "'%.30s' is not a log10 backoff weight", tok[nt - 1]);
                    st = arpa_fail(ctx, path, lineno, msg);
                    goto done;
                }
                if (section == order) {
                    st = arpa_fail(ctx, path, lineno, "an n-gram of the highest order cannot have a backoff weight");
                    goto done;
                }
            }
            for (i = 1; i <= section; i++) {
                plm_token w;
                if (section == 1) {
                    w = word_add(m, tok[i], strlen(tok[i]), &added);
                    if (w < 0) { st = plm_fail(ctx, PLM_ENOMEM, "ngram: out of memory"); goto done; }
                } else {
                    w = word_find(m, tok[i], strlen(tok[i]));
                    if (w < 0) {
                        snprintf(msg, sizeof msg, "the word '%.40s' has no 1-gram entry", tok[i]);
                        st = arpa_fail(ctx, path, lineno, msg);
                        goto done;
                    }
                }
                if (i < section) {
                    node = node_child(m, node, w);
                    if (node < 0) {
                        snprintf(msg, sizeof msg, "the context of this %d-gram has no %d-gram entry", section, i);
                        st = arpa_fail(ctx, path, lineno, msg);
                        goto done;
                    }
                } else {
                    node = node_add(m, node, w, &added);
                    if (node < 0) { st = plm_fail(ctx, PLM_ENOMEM, "ngram: out of memory"); goto done; }
                    if (!added) {
                        st = arpa_fail(ctx, path, lineno, "this n-gram is listed twice");
                        goto done;
                    }
                }
            }
            m->nodes[node].lp = lp <= -99 ? -INFINITY : lp * LN10;   /* -99 is the ARPA spelling of log 0 */
            m->nodes[node].bo = bo <= -99 ? -INFINITY : bo * LN10;   /* likewise for the backoff weight */
            got++;
            if (got > declared[section]) {
                snprintf(msg, sizeof msg, "more %d-grams than the %zu the header declares", section, declared[section]);
                st = arpa_fail(ctx, path, lineno, msg);
                goto done;
            }
        }
    }
    if (!saw_data) {
        st = plm_fail(ctx, PLM_EPARSE, "ngram: '%s' is not an ARPA file (no \\data\\ line)", path);
        goto done;
    }
    if (!saw_end) {
        st = arpa_fail(ctx, path, lineno, "the file ends without \\end\\ (truncated?)");
        goto done;
    }
    if (order == 0 || declared[1] == 0) {
        st = plm_fail(ctx, PLM_EPARSE, "ngram: '%s' declares no 1-grams", path);
        goto done;
    }
    m->order = order;
    if ((st = add_specials(ctx, m))) goto done;
    free(buf);
    return model_to_lm(ctx, m, out);
done:
    free(buf);
    model_free(m);
    return st;
}

/* ---- ARPA writer ---- */

static void write_ngram_words(FILE *f, const ng_model *m, int32_t node)
{
    if (m->nodes[node].parent > 0) {
        write_ngram_words(f, m, m->nodes[node].parent);
        fputc(' ', f);
    }
    fputs(m->words[m->nodes[node].word], f);
}

plm_status plm_ngram_write_arpa(plm_ctx *ctx, const plm_lm *lm, const char *path)
{
    const ng_model *m;
    FILE *f;
    size_t counts[10] = {0}, i;
    int n;
    if (plm_ngram_order(lm) == 0) return plm_fail(ctx, PLM_EINVAL, "ngram: write_arpa needs an ngram model");
    m = lm->impl;
    for (i = 1; i < m->n_nodes; i++) counts[m->nodes[i].depth]++;
    if (!(f = fopen(path, "w"))) return plm_fail(ctx, PLM_EIO, "ngram: cannot write '%s': %s", path, strerror(errno));
    fprintf(f, "\n\\data\\\n");
    for (n = 1; n <= m->order; n++) fprintf(f, "ngram %d=%zu\n", n, counts[n]);
    for (n = 1; n <= m->order; n++) {
        fprintf(f, "\n\\%d-grams:\n", n);
        for (i = 1; i < m->n_nodes; i++) {
            const ng_node *nd = &m->nodes[i];
            if (nd->depth != n) continue;
            if (nd->lp == -INFINITY) fprintf(f, "-99");
            else fprintf(f, "%.7g", nd->lp / LN10);
            fputc('\t', f);
            write_ngram_words(f, m, (int32_t)i);
            /* a context whose continuations take all the mass backs off with weight 0: written as -99, the
            ** ARPA spelling of log10 0 that the reader maps back to -inf (a literal -inf is no ARPA number) */
            if (n < m->order && (nd->bo != 0 || nd->first_child >= 0)) {
                if (nd->bo == -INFINITY) fprintf(f, "\t-99");
                else fprintf(f, "\t%.7g", nd->bo / LN10);
            }
            fputc('\n', f);
        }
    }
    fprintf(f, "\n\\end\\\n");
    if (fclose(f)) return plm_fail(ctx, PLM_EIO, "ngram: error writing '%s'", path);
    return PLM_OK;
}

/* ---- modified Kneser-Ney estimation ---- */

plm_status plm_ngram_train(plm_ctx *ctx, const char *text, size_t len, int order, plm_lm **out)
{
    ng_model *m;
    double *cnt = NULL, *adj = NULL, D[10][4], *gam = NULL;
    int32_t *suf = NULL, *first = NULL, *byd = NULL;
    size_t pos = 0, i, nsent = 0, nv;
    plm_token *sent = NULL;
    size_t sent_cap = 0, cnt_cap = 0;
    int added, n, k;
    plm_status st = PLM_OK;
    *out = NULL;
    if (order < 1 || order > 9) return plm_fail(ctx, PLM_EINVAL, "ngram.train: order must be 1..9 (got %d)", order);
    if (!(m = model_new())) return plm_fail(ctx, PLM_ENOMEM, "ngram.train: out of memory");
    m->order = order;
    m->bos = word_add(m, "<s>", 3, &added);
    m->eos = word_add(m, "</s>", 4, &added);
    m->unk = word_add(m, "<unk>", 5, &added);
    if (m->unk < 0 || node_add(m, 0, m->unk, &added) < 0) goto oom;
    /* raw counts of every n-gram up to the order, sentence by sentence (<s> w1 .. wk </s>) */
    if (!(cnt = calloc(m->cap_nodes, sizeof *cnt))) goto oom;
    cnt_cap = m->cap_nodes;
    while (pos < len) {
        size_t e = pos, ns = 0, p, s;
        while (e < len && text[e] != '\n') e++;
        for (p = pos;;) {   /* words of this line */
            while (p < e && isspace((unsigned char)text[p])) p++;
            if (p == e) break;
            s = p;
            while (p < e && !isspace((unsigned char)text[p])) p++;
            if (ns + 2 >= sent_cap) {
                plm_token *t = realloc(sent, (sent_cap = 2 * sent_cap + 64) * sizeof *t);
                if (!t) goto oom;
                sent = t;
            }
            if ((sent[++ns] = word_add(m, text + s, p - s, &added)) < 0) goto oom;
        }
        pos = e + 1;
        if (ns == 0) continue;
        nsent++;
        sent[0] = m->bos;
        sent[ns + 1] = m->eos;
        for (s = 0; s < ns + 2; s++) {
            int32_t node = 0;
            for (k = 0; k < order && s + (size_t)k < ns + 2; k++) {
                if ((node = node_add(m, node, sent[s + k], &added)) < 0) goto oom;
                if (m->cap_nodes > cnt_cap) {
                    double *c = realloc(cnt, m->cap_nodes * sizeof *c);
                    if (!c) goto oom;
                    cnt = c;
                    cnt_cap = m->cap_nodes;
                }
                if (added) cnt[node] = 0;
                cnt[node] += 1;
            }
        }
    }
    if (nsent == 0) {
        st = plm_fail(ctx, PLM_EINVAL, "ngram.train: the text has no words");
        goto fail;
    }
    /* nodes by depth, their suffix nodes (w2..wn) and first words */
    adj = calloc(m->n_nodes, sizeof *adj);
    gam = calloc(m->n_nodes, sizeof *gam);
    suf = calloc(m->n_nodes, sizeof *suf);
    first = calloc(m->n_nodes, sizeof *first);
    byd = malloc(m->n_nodes * sizeof *byd);
    if (!adj || !gam || !suf || !first || !byd) goto oom;
    {
        size_t w = 0;
        for (n = 1; n <= order; n++)
            for (i = 1; i < m->n_nodes; i++)
                if (m->nodes[i].depth == n) byd[w++] = (int32_t)i;
    }
    for (i = 1; i < m->n_nodes; i++) {
        int32_t nd = byd[i - 1];
        const ng_node *x = &m->nodes[nd];
        first[nd] = x->depth == 1 ? x->word : first[x->parent];
        suf[nd] = x->depth == 1 ? 0 : node_child(m, x->depth == 2 ? 0 : suf[x->parent], x->word);
    }
    /* adjusted counts: raw for the highest order and for n-grams that start with <s> (nothing can precede
    ** them); otherwise the number of distinct words seen before the n-gram (continuation counts) */
    for (i = 1; i < m->n_nodes; i++)
        if (m->nodes[i].depth == order || first[i] == m->bos) adj[i] = cnt[i];
    for (i = 1; i < m->n_nodes; i++)
        if (m->nodes[i].depth >= 2 && suf[i] > 0 && first[suf[i]] != m->bos && m->nodes[suf[i]].depth < order)
            adj[suf[i]] += 1;
    /* discounts from the count-of-counts of each order */
    for (n = 1; n <= order; n++) {
        double t[5] = {0, 0, 0, 0, 0}, Y;
        static const double dflt[4] = {0, 0.5, 1.0, 1.5};
        for (i = 1; i < m->n_nodes; i++)
            if (m->nodes[i].depth == n && (plm_token)m->nodes[i].word != m->bos && adj[i] >= 1 && adj[i] <= 4)
                t[(int)adj[i]] += 1;
        Y = t[1] > 0 ? t[1] / (t[1] + 2 * t[2]) : 0;
        for (k = 1; k <= 3; k++) {
            double d = (t[k] > 0 && t[k + 1] > 0) ? k - (k + 1) * Y * t[k + 1] / t[k] : NAN;
            D[n][k] = (d > 0 && d <= k) ? d : dflt[k];
        }
    }
    /* gamma(h) for every context h: the mass the discounts free, given to the lower order */
    for (i = 0; i < m->n_nodes; i++) {
        double S = 0, freed = 0;
        int32_t c;
        if (m->nodes[i].depth >= order) continue;
        for (c = m->nodes[i].first_child; c >= 0; c = m->nodes[c].next_sibling) {
            double a = adj[c];
            if (i == 0 && m->nodes[c].word == m->bos) continue;
            S += a;
            if (a >= 1) freed += D[m->nodes[i].depth + 1][a >= 3 ? 3 : (int)a];
        }
        gam[i] = S > 0 ? freed / S : 1.0;
        cnt[i] = S;   /* raw counts are no longer needed: keep each context's total adjusted count */
    }
    nv = (size_t)m->n_words - 1;   /* the words that can be predicted: all but <s> */
    for (i = 1; i < m->n_nodes; i++) {
        int32_t nd = byd[i - 1];
        ng_node *x = &m->nodes[nd];
        double a = adj[nd], S = cnt[x->parent], u, lower, p;
        if (x->depth == 1 && x->word == m->bos) {
            x->lp = -INFINITY;
        } else {
            u = a >= 1 ? (a - D[x->depth][a >= 3 ? 3 : (int)a]) / S : 0;
            lower = x->depth == 1 ? 1.0 / (double)nv : exp(m->nodes[suf[nd]].lp);
            p = u + gam[x->parent] * lower;
            x->lp = log(p);
        }
        x->bo = (x->depth < order && x->first_child >= 0) ? log(gam[nd]) : 0;
    }
    free(cnt);
    free(adj);
    free(gam);
    free(suf);
    free(first);
    free(byd);
    free(sent);
    if ((st = add_specials(ctx, m))) {
        model_free(m);
        return st;
    }
    return model_to_lm(ctx, m, out);
oom:
    st = plm_fail(ctx, PLM_ENOMEM, "ngram.train: out of memory");
fail:
    free(cnt);
    free(adj);
    free(gam);
    free(suf);
    free(first);
    free(byd);
    free(sent);
    model_free(m);
    return st;
}

/* ---- queries ---- */

int plm_ngram_order(const plm_lm *lm)
{
    return lm && lm->ops == &ngram_ops ? ((const ng_model *)lm->impl)->order : 0;
}

plm_token plm_ngram_word_id(const plm_lm *lm, const char *word)
{
    return plm_ngram_order(lm) ? word_find(lm->impl, word, strlen(word)) : -1;
}

plm_status plm_ngram_backoff_logprob(plm_ctx *ctx, const plm_lm *lm, const plm_token *toks, size_t n, plm_token w,
                                     double *out)
{
    const ng_model *m;
    int32_t sfx[16];
    int nsfx, k;
    double acc = 0;
    size_t j;
    if (!plm_ngram_order(lm)) return plm_fail(ctx, PLM_EINVAL, "ngram: not an ngram model");
    m = lm->impl;
    for (j = 0; j < n; j++)
        if (toks[j] < 0 || toks[j] >= m->n_words) return plm_fail(ctx, PLM_EDOM, "ngram: token %d out of range", toks[j]);
    if (w < 0 || w >= m->n_words) return plm_fail(ctx, PLM_EDOM, "ngram: token %d out of range", w);
    context_nodes(m, toks, n, sfx, &nsfx);
    /* from the longest context down: an explicit entry ends the search, otherwise pay that context's backoff */
    for (k = nsfx - 1; k >= 0; k--) {
        int32_t c = node_child(m, sfx[k], w);
        if (c >= 0) {
            *out = acc + m->nodes[c].lp;
            return PLM_OK;
        }
        acc += m->nodes[sfx[k]].bo;
    }
    {
        int32_t c = node_child(m, 0, w);
        *out = c >= 0 ? acc + m->nodes[c].lp : -INFINITY;
    }
    return PLM_OK;
}
