/* constraint.c -- the common side of constraints (constraint.h): states, vocabulary tries and masks, locally
** masked decoding, and ASAp grammar-aligned sampling. The automata themselves are in regex.c and cfg.c. */
#include "cons_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void plm_cons_free(plm_cons *c)
{
    if (!c) return;
    c->ops->destroy(c);
    free(c);
}

const char *plm_cons_kind(const plm_cons *c) { return c->ops->kind; }

plm_cstate plm_cons_start(plm_cons *c) { return c->ops->start(c); }

plm_cstate plm_cons_copy(plm_cons *c, plm_cstate s)
{
    if (s != PLM_CSTATE_DEAD) c->ops->retain(c, s);
    return s;
}

void plm_cons_release(plm_cons *c, plm_cstate s)
{
    if (s != PLM_CSTATE_DEAD) c->ops->release(c, s);
}

int plm_cons_status(const plm_cons *c, plm_cstate s) { return s == PLM_CSTATE_DEAD ? PLM_CONS_DEAD : c->ops->status(c, s); }

plm_status plm_cons_advance(plm_ctx *ctx, plm_cons *c, plm_cstate s, const char *bytes, size_t n, plm_cstate *out)
{
    plm_cstate cur = plm_cons_copy(c, s);
    for (size_t i = 0; i < n && cur != PLM_CSTATE_DEAD; i++) {
        plm_cstate nx;
        plm_status st = c->ops->step(ctx, c, cur, (unsigned char)bytes[i], &nx);
        plm_cons_release(c, cur);
        if (st) {
            *out = PLM_CSTATE_DEAD;
            return st;
        }
        cur = nx;
    }
    *out = cur;
    return PLM_OK;
}

plm_status plm_cons_check(plm_ctx *ctx, plm_cons *c, const char *bytes, size_t n, int *status)
{
    plm_cstate s0 = plm_cons_start(c), s;
    plm_status st = plm_cons_advance(ctx, c, s0, bytes, n, &s);
    plm_cons_release(c, s0);
    if (st) return st;
    *status = plm_cons_status(c, s);
    plm_cons_release(c, s);
    return PLM_OK;
}

/* ---- vocabulary tries ---- */

typedef struct vnode {
    int child, sibling;   /* first child, next sibling (-1: none) */
    int tok;              /* first token whose bytes end here (-1: none); more through tok_next */
    unsigned char byte;
} vnode;

struct plm_vtrie {
    uint64_t id;   /* tags cached masks: never reused, unlike an address */
    int n_vocab;
    vnode *nodes;
    int n, cap;
    int *tok_next;
    unsigned char *is_eos;
};

static uint64_t vtrie_ids;

void plm_vtrie_free(plm_vtrie *t)
{
    if (!t) return;
    free(t->nodes);
    free(t->tok_next);
    free(t->is_eos);
    free(t);
}

static int vnode_new(plm_vtrie *t, unsigned char b)
{
    if (t->n == t->cap) {
        int nc = t->cap * 2 + 256;
        vnode *nn = realloc(t->nodes, (size_t)nc * sizeof *nn);
        if (!nn) return -1;
        t->nodes = nn;
        t->cap = nc;
    }
    t->nodes[t->n].child = t->nodes[t->n].sibling = t->nodes[t->n].tok = -1;
    t->nodes[t->n].byte = b;
    return t->n++;
}

plm_status plm_vtrie_new(plm_ctx *ctx, const plm_lm *lm, plm_vtrie **out)
{
    plm_vtrie *t = calloc(1, sizeof *t);
    int V = lm->n_vocab;
    *out = NULL;
    if (!t || !(t->tok_next = malloc((size_t)(unsigned)V * sizeof *t->tok_next)) || !(t->is_eos = calloc((size_t)(unsigned)V, 1)) ||
        vnode_new(t, 0) < 0)
        goto oom;
    t->id = __atomic_add_fetch(&vtrie_ids, 1, __ATOMIC_RELAXED);
    t->n_vocab = V;
    for (int v = 0; v < V; v++) {
        int node = 0;
        const unsigned char *b = (const unsigned char *)lm->tok_bytes[v];
        t->tok_next[v] = -1;
        t->is_eos[v] = (unsigned char)plm_lm_is_eos(lm, v);
        if (lm->tok_len[v] == 0) continue;
        for (size_t i = 0; i < lm->tok_len[v]; i++) {
            int ch;
            for (ch = t->nodes[node].child; ch >= 0 && t->nodes[ch].byte != b[i]; ch = t->nodes[ch].sibling) {}
            if (ch < 0) {
                if ((ch = vnode_new(t, b[i])) < 0) goto oom;
                t->nodes[ch].sibling = t->nodes[node].child;
                t->nodes[node].child = ch;
            }
            node = ch;
        }
        t->tok_next[v] = t->nodes[node].tok;
        t->nodes[node].tok = v;
    }
    *out = t;
    return PLM_OK;
oom:
    plm_vtrie_free(t);
    return plm_fail(ctx, PLM_ENOMEM, "constraint: out of memory building the vocabulary trie");
}

/* Mark every token under trie node `node`, whose bytes so far took the automaton to s (alive). */
static plm_status mask_dfs(plm_ctx *ctx, plm_cons *c, const plm_vtrie *t, int node, plm_cstate s, unsigned char *allowed,
                           size_t *count)
{
    for (int ch = t->nodes[node].child; ch >= 0; ch = t->nodes[ch].sibling) {
        plm_cstate s2;
        plm_status st = c->ops->step(ctx, c, s, t->nodes[ch].byte, &s2);
        if (st) return st;
        if (s2 == PLM_CSTATE_DEAD) continue;
        for (int v = t->nodes[ch].tok; v >= 0; v = t->tok_next[v]) allowed[v] = 1, ++*count;
        st = mask_dfs(ctx, c, t, ch, s2, allowed, count);
        plm_cons_release(c, s2);
        if (st) return st;
    }
    return PLM_OK;
}

plm_status plm_cons_mask(plm_ctx *ctx, plm_cons *c, const plm_vtrie *t, plm_cstate s, unsigned char *allowed,
                         size_t *n_allowed)
{
    size_t V = (size_t)t->n_vocab, count = 0;
    plm_cmask **slot, *m;
    plm_status st;
    memset(allowed, 0, V);
    if (n_allowed) *n_allowed = 0;
    if (s == PLM_CSTATE_DEAD) return PLM_OK;
    slot = c->ops->mask_slot(c, s);
    if (*slot && (*slot)->vocab_id == t->id) {
        memcpy(allowed, (*slot)->allowed, V);
        if (n_allowed) *n_allowed = (*slot)->n_allowed;
        return PLM_OK;
    }
    if ((st = mask_dfs(ctx, c, t, 0, s, allowed, &count))) return st;
    if (c->ops->status(c, s) == PLM_CONS_ACCEPT)
        for (size_t v = 0; v < V; v++)
            if (t->is_eos[v]) allowed[v] = 1, count++;
    if ((m = malloc(sizeof *m + V))) {   /* no cache when out of memory: the mask itself is right */
        m->vocab_id = t->id;
        m->n_allowed = count;
        memcpy(m->allowed, allowed, V);
        free(*slot);
        *slot = m;
    }
    if (n_allowed) *n_allowed = count;
    return PLM_OK;
}

/* The mask at depth `depth` of a text capped at max_tokens tokens: past the cap only EOS (when s accepts). */
static plm_status mask_at(plm_ctx *ctx, plm_cons *c, const plm_vtrie *t, plm_cstate s, size_t depth, size_t max_tokens,
                          unsigned char *allowed)
{
    if (depth < max_tokens) return plm_cons_mask(ctx, c, t, s, allowed, NULL);
    memset(allowed, 0, (size_t)t->n_vocab);
    if (plm_cons_status(c, s) == PLM_CONS_ACCEPT)
        for (int v = 0; v < t->n_vocab; v++) allowed[v] = t->is_eos[v];
    return PLM_OK;
}

/* Draw from row restricted to allowed: returns the token (-1 when nothing allowed has mass) and log of the mass. */
static int draw_masked(const double *row, const unsigned char *allowed, const double *efg, int V, plm_rng *rng,
                       double *logmass)
{
    double z = 0, u;
    int v, last = -1;
    for (v = 0; v < V; v++)
        if (allowed[v] && row[v] > -INFINITY) z += exp(row[v]) * (efg ? efg[v] : 1.0);
    *logmass = log(z);
    if (!(z > 0)) return -1;
    u = plm_rng_uniform(rng) * z;
    for (v = 0; v < V; v++)
        if (allowed[v] && row[v] > -INFINITY) {
            double w = exp(row[v]) * (efg ? efg[v] : 1.0);
            if (w > 0) last = v;
            if ((u -= w) < 0 && w > 0) return v;
        }
    return last;   /* rounding left u >= 0 */
}

plm_status plm_cons_sample_masked(plm_ctx *ctx, plm_lm *lm, plm_cons *c, const plm_vtrie *t, const plm_token *prompt,
                                  size_t np, size_t max_tokens, plm_rng *rng, plm_token *out, size_t *n_out,
                                  double *logp, double *logq)
{
    int V = lm->n_vocab, seq = -1;
    double *row = malloc((size_t)(unsigned)V * sizeof *row);
    unsigned char *allowed = malloc((size_t)(unsigned)V);
    plm_cstate s = plm_cons_start(c);
    plm_status st;
    size_t n = 0;
    *n_out = 0;
    *logp = *logq = 0;
    if (!row || !allowed) {
        st = plm_fail(ctx, PLM_ENOMEM, "constraint: out of memory");
        goto done;
    }
    if ((st = plm_lm_seq_new(lm, ctx, &seq)) || (st = plm_lm_seq_extend(lm, ctx, 1, &seq, &prompt, &np, row))) goto done;
    for (;;) {
        double lz;
        int v;
        plm_cstate s2;
        const plm_token *tp;
        size_t one = 1;
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "constraint: interrupted");
            goto done;
        }
        if ((st = mask_at(ctx, c, t, s, n, max_tokens, allowed))) goto done;
        if ((v = draw_masked(row, allowed, NULL, V, rng, &lz)) < 0) {
            *logp = *logq = -INFINITY;
            n = 0;
            break;
        }
        *logp += row[v];
        *logq += row[v] - lz;
        if (t->is_eos[v]) break;
        out[n++] = v;
        if ((st = plm_cons_advance(ctx, c, s, lm->tok_bytes[v], lm->tok_len[v], &s2))) goto done;
        plm_cons_release(c, s);
        s = s2;
        tp = &out[n - 1];
        if ((st = plm_lm_seq_extend(lm, ctx, 1, &seq, &tp, &one, row))) goto done;
    }
    *n_out = n;
done:
    if (seq >= 0) plm_lm_seq_free(lm, seq);
    plm_cons_release(c, s);
    free(row);
    free(allowed);
    return st;
}

/* ---- ASAp ---- */

typedef struct akid {
    plm_token tok;
    double p;    /* p(tok | prefix) */
    int node;
} akid;

typedef struct anode {
    plm_cstate st;   /* the constraint after the prefix */
    double efg;      /* estimate of P(a continuation ends in the language) */
    double rest;     /* sum of p(v) over allowed v that have no node yet (their EFG counts as 1) */
    double peos;     /* p(EOS | prefix) when EOS is allowed there, else 0 */
    int visited;     /* rest is known */
    akid *kids;
    int nkids, capkids;
} anode;

struct plm_asap {
    plm_lm *lm;
    plm_cons *c;
    const plm_vtrie *t;
    plm_token *prefix;   /* prompt, then the current path */
    size_t np, max_tokens;
    anode *nodes;
    size_t n, cap;
    double *row, *efg;
    unsigned char *allowed;
    int *path;
};

static int anode_new(plm_asap *a, plm_cstate s)
{
    if (a->n == a->cap) {
        size_t nc = a->cap * 2 + 64;
        anode *nn = realloc(a->nodes, nc * sizeof *nn);
        if (!nn) return -1;
        a->nodes = nn;
        a->cap = nc;
    }
    memset(&a->nodes[a->n], 0, sizeof a->nodes[a->n]);
    a->nodes[a->n].st = s;
    a->nodes[a->n].efg = 1;
    return (int)a->n++;
}

void plm_asap_free(plm_asap *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        plm_cons_release(a->c, a->nodes[i].st);
        free(a->nodes[i].kids);
    }
    free(a->nodes);
    free(a->prefix);
    free(a->row);
    free(a->efg);
    free(a->allowed);
    free(a->path);
    free(a);
}

plm_status plm_asap_new(plm_ctx *ctx, plm_lm *lm, plm_cons *c, const plm_vtrie *t, const plm_token *prompt,
                        size_t np, size_t max_tokens, plm_asap **out)
{
    plm_asap *a = calloc(1, sizeof *a);
    size_t V = (size_t)lm->n_vocab;
    *out = NULL;
    if (!a) return plm_fail(ctx, PLM_ENOMEM, "asap: out of memory");
    a->lm = lm;
    a->c = c;
    a->t = t;
    a->np = np;
    a->max_tokens = max_tokens;
    if (!(a->prefix = malloc((np + max_tokens + 1) * sizeof *a->prefix)) || !(a->row = malloc(V * sizeof *a->row)) ||
        !(a->efg = malloc(V * sizeof *a->efg)) || !(a->allowed = malloc(V)) ||
        !(a->path = malloc((max_tokens + 1) * sizeof *a->path)) || anode_new(a, plm_cons_start(c)) < 0) {
        plm_asap_free(a);
        return plm_fail(ctx, PLM_ENOMEM, "asap: out of memory");
    }
    memcpy(a->prefix, prompt, np * sizeof *prompt);
    *out = a;
    return PLM_OK;
}

double plm_asap_mass(const plm_asap *a) { return a->nodes[0].efg; }
size_t plm_asap_nodes(const plm_asap *a) { return a->n; }

static int kid_of(const anode *x, plm_token v)
{
    for (int k = 0; k < x->nkids; k++)
        if (x->kids[k].tok == v) return k;
    return -1;
}

/* EFG of the nodes on the path from depth d up to the root, deepest first: p(EOS | w) when w accepts, plus the
** mass of allowed tokens not yet tried (counted as 1), plus p(v) EFG(wv) over the tried ones */
static void asap_update(plm_asap *a, size_t d)
{
    for (size_t i = d + 1; i-- > 0;) {
        anode *x = &a->nodes[a->path[i]];
        double e = x->peos + (x->rest > 0 ? x->rest : 0);
        for (int k = 0; k < x->nkids; k++) e += x->kids[k].p * a->nodes[x->kids[k].node].efg;
        x->efg = e < 1 ? e : 1;
    }
}

plm_status plm_asap_sample(plm_ctx *ctx, plm_asap *a, plm_rng *rng, plm_token *out, size_t *n_out, double *logp,
                           double *logq)
{
    int V = a->lm->n_vocab, node = 0;
    size_t d = 0;
    plm_status st;
    *n_out = 0;
    *logp = *logq = 0;
    for (;;) {
        const plm_token *pp = a->prefix;
        size_t plen = a->np + d;
        anode *x;
        double lz;
        int v, k;
        if (!(a->nodes[0].efg > 0))
            return plm_fail(ctx, PLM_EDEAD,
                            "asap: no text of at most %zu tokens that the model can write is in the language", a->max_tokens);
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "asap: interrupted");
        a->path[d] = node;
        if ((st = plm_lm_next_logprobs(a->lm, ctx, 1, &pp, &plen, a->row))) return st;
        x = &a->nodes[node];
        if ((st = mask_at(ctx, a->c, a->t, x->st, d, a->max_tokens, a->allowed))) return st;
        for (v = 0; v < V; v++) a->efg[v] = a->allowed[v];
        if (!x->visited) {
            x->rest = x->peos = 0;
            for (v = 0; v < V; v++)
                if (a->allowed[v]) *(a->t->is_eos[v] ? &x->peos : &x->rest) += exp(a->row[v]);
            x->visited = 1;
        }
        for (k = 0; k < x->nkids; k++) a->efg[x->kids[k].tok] = a->nodes[x->kids[k].node].efg;
        if ((v = draw_masked(a->row, a->allowed, a->efg, V, rng, &lz)) < 0) {
            /* a dead end (the prefix is viable, but not within max_tokens): its estimate is now 0; start again */
            asap_update(a, d);
            node = 0;
            d = 0;
            *logp = *logq = 0;
            continue;
        }
        *logp += a->row[v];
        *logq += a->row[v] + log(a->efg[v]) - lz;
        if (a->t->is_eos[v]) break;
        out[d] = v;
        a->prefix[a->np + d] = v;
        if ((k = kid_of(x, v)) < 0) {
            plm_cstate s2;
            int nn;
            if ((st = plm_cons_advance(ctx, a->c, x->st, a->lm->tok_bytes[v], a->lm->tok_len[v], &s2))) return st;
            if ((nn = anode_new(a, s2)) < 0) {
                plm_cons_release(a->c, s2);
                return plm_fail(ctx, PLM_ENOMEM, "asap: out of memory");
            }
            x = &a->nodes[node];   /* anode_new may move the nodes */
            if (x->nkids == x->capkids) {
                int nc = x->capkids * 2 + 4;
                akid *nk = realloc(x->kids, (size_t)nc * sizeof *nk);
                if (!nk) return plm_fail(ctx, PLM_ENOMEM, "asap: out of memory");
                x->kids = nk;
                x->capkids = nc;
            }
            k = x->nkids++;
            x->kids[k].tok = v;
            x->kids[k].p = exp(a->row[v]);
            x->kids[k].node = nn;
            x->rest -= x->kids[k].p;
        }
        node = x->kids[k].node;
        d++;
    }
    *n_out = d;
    asap_update(a, d);
    return PLM_OK;
}
