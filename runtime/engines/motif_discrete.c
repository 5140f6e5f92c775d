/* motif_discrete.c -- the discrete motifs of learned proposals: a 2x2 block of a binary grid network and two
** consecutive states of a Markov chain (see motif.c for the common model side). An occurrence compiles the terms
** that read its block and evaluates them at every value of the block. */
#include "motif_impl.h"

/* ---- discrete occurrences (grid, chain) ---- */

static int disc_sites(const plm_motif_occs *o, int i, int *sites)
{
    const disc_occ *q = &o->docc[i];
    memcpy(sites, q->site, (size_t)q->nb * sizeof *sites);
    return q->nb;
}

/* The cached features x (nin) of occurrence i, when its blanket at u is the one they were made from (bit for
** bit): 1, else 0. Its terms' tables are then those it read last (each term's inputs are part of the blanket, and
** only this occurrence's own proposals change its terms' slots): w->Tt points at them. */
static int disc_hit(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, double *x, int nin)
{
    const disc_occ *q = &o->docc[i];
    const double *c = w->cache + (size_t)i * w->cstride, *tc;
    int k;
    if (!w->cache || !w->cvalid[i]) return 0;
    for (k = 0; k < q->nx; k++)
        if (memcmp(&c[k], &u[q->xin[k]], sizeof *c) != 0) return 0;
    memcpy(x, c + q->nx, (size_t)nin * sizeof *x);
    tc = w->tc + q->tc_at;
    for (k = 0; k < q->nterm; k++) {
        const disc_term *e = &q->term[k];
        w->Tt[k] = tc + e->at + (size_t)w->tlast[q->t0 + k] * (size_t)(e->ncfg + e->nx);
    }
    return 1;
}

/* Keep occurrence i's blanket at u and features x for disc_hit. */
static void disc_store(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *x, int nin)
{
    const disc_occ *q = &o->docc[i];
    double *c = w->cache + (size_t)i * w->cstride;
    int k;
    if (!w->cache) return;
    for (k = 0; k < q->nx; k++) c[k] = u[q->xin[k]];
    memcpy(c + q->nx, x, (size_t)nin * sizeof *x);
    w->cvalid[i] = 1;
}

/* Occurrence i's part of the term cache. */
static double *disc_tc(const disc_occ *q, plm_motif_ws *w) { return w->tc + (w->tc_single ? 0 : q->tc_at); }

/* Term t of occurrence i at u: its table (its log density at every value of the block members it reads, index
** sum v_j stride[j]; NaN read as -inf) into *out, from the cache when a slot holds it for the same inputs. */
static plm_status term_table(plm_ctx *ctx, const disc_occ *q, plm_motif_ws *w, int t, const double *u, const double **out)
{
    const disc_term *e = &q->term[t];
    int ti = q->t0 + t, j, k, sl, slot = e->ncfg + e->nx;
    double *base = disc_tc(q, w) + e->at, *tab, *key;
    plm_prog_ws *pw = &w->pws[ti];
    plm_prog_in in[PLM_NGROUPS];
    plm_status st;
    for (sl = 0; sl < w->tvalid[ti]; sl++) {
        tab = base + (size_t)sl * slot, key = tab + e->ncfg;
        for (k = 0; k < e->nx; k++)
            if (memcmp(&key[k], &u[e->xin[k]], sizeof *key) != 0) break;
        if (k == e->nx) return w->tlast[ti] = (unsigned char)sl, *out = tab, PLM_OK;
    }
    sl = w->tc_single ? 0 : w->tnext[ti];
    tab = base + (size_t)sl * slot, key = tab + e->ncfg;
    *out = tab;
    if (!pw->p) {
        int blk = e->ncfg < PLM_EXPR_BLOCK ? e->ncfg : PLM_EXPR_BLOCK;
        if ((st = plm_prog_ws_init_block(ctx, pw, e->prog, blk < 2 ? 2 : blk))) return st;
    }
    for (j = 0; j < q->nb; j++)
        for (k = 0; k < e->ncfg; k++) w->z[j * e->ncfg + k] = e->stride[j] ? (k / e->stride[j]) % q->card[j] : 0;
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = u;
    in[PLM_GRP_X].ld = 1;
    in[PLM_GRP_Z].p = w->z;
    in[PLM_GRP_Z].ld = (size_t)e->ncfg;
    plm_prog_uniforms(pw, in);
    for (k = 0; k < e->ncfg; k += PLM_EXPR_BLOCK)
        plm_prog_block(pw, in, (size_t)k, (size_t)(e->ncfg - k < PLM_EXPR_BLOCK ? e->ncfg - k : PLM_EXPR_BLOCK), &tab, NULL);
    for (k = 0; k < e->ncfg; k++)
        if (isnan(tab[k])) tab[k] = -INFINITY;
    if (!w->tc_single) {
        for (k = 0; k < e->nx; k++) key[k] = u[e->xin[k]];
        if (w->tvalid[ti] < TERM_MEMO) w->tvalid[ti]++;
        w->tlast[ti] = (unsigned char)sl;
        w->tnext[ti] = (unsigned char)((sl + 1) % TERM_MEMO);
    }
    return PLM_OK;
}

/* Every term's table of occurrence i at u into w->Tt. */
static plm_status disc_eval(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u)
{
    const disc_occ *q = &o->docc[i];
    int t;
    plm_status st;
    for (t = 0; t < q->nterm; t++)
        if ((st = term_table(ctx, q, w, t, u, &w->Tt[t]))) return st;
    return PLM_OK;
}

/* Term t's value at the grid block value of position configuration c: v at position p is bit p of c (a, b, c, d:
** bits 0..3); the bits of absent positions must be 0. */
static inline double tval_grid(const disc_occ *q, const plm_motif_ws *w, int t, int c)
{
    const int *ps = q->term[t].pstride;
    return w->Tt[t][(c & 1) * ps[0] + (c >> 1 & 1) * ps[1] + (c >> 2 & 1) * ps[2] + (c >> 3 & 1) * ps[3]];
}

/* Term t's value at the chain's block value (s1, s2). */
static double tval_chain(const disc_occ *q, const plm_motif_ws *w, int t, int s1, int s2)
{
    return w->Tt[t][s1 * q->term[t].stride[0] + s2 * q->term[t].stride[1]];
}

static double disc_logp(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *v)
{
    const disc_occ *q = &o->docc[i];
    int val[4], j, t;
    double s = 0;
    (void)u;
    for (j = 0; j < q->nb; j++) {
        val[j] = (int)v[j];
        if (!(v[j] >= 0 && val[j] < q->card[j] && val[j] == v[j])) return -INFINITY;
    }
    for (t = 0; t < q->nterm; t++) {
        const disc_term *e = &q->term[t];
        int idx = 0;
        for (j = 0; j < q->nb; j++) idx += val[j] * e->stride[j];
        s += w->Tt[t][idx];
    }
    return isnan(s) ? -INFINITY : s;
}

static void disc_apply(const plm_motif_occs *o, plm_motif_ws *w, int i, double *u, const double *v)
{
    const disc_occ *q = &o->docc[i];
    int j;
    (void)w;
    for (j = 0; j < q->nb; j++) u[q->coord[j]] = v[j];
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* The occurrence array doubled (GC memory: it holds the occurrences' programs, which only it keeps alive). */
static disc_occ *grow_occ(disc_occ *occ, int *cap)
{
    disc_occ *q = plm_gc_alloc(2 * (size_t)*cap * sizeof *q);
    if (!q) return NULL;
    memcpy(q, occ, (size_t)*cap * sizeof *q);
    *cap *= 2;
    return q;
}

/* Make occurrence q (block sites set) with terms terms[0..nterm-1] (site indices) of roles role: a program per
** term, with the block members and the coordinates outside the block that it reads. */
static plm_status disc_make(plm_ctx *ctx, plm_gmodel *m, disc_occ *q, const int *terms, const int *role, int nterm)
{
    int j, t, k, n = 0, *all;
    plm_status st = PLM_OK;
    if (!(q->role = plm_gc_alloc_atomic((size_t)nterm * sizeof *q->role)) ||
        !(q->term = plm_gc_alloc((size_t)nterm * sizeof *q->term)))
        return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    memset(q->term, 0, (size_t)nterm * sizeof *q->term);
    q->ncfg = 1;
    for (j = 0; j < q->nb; j++) {
        q->coord[j] = m->sites[q->site[j]].first;
        q->card[j] = m->sites[q->site[j]].dist == PLM_DIST_BERNOULLI ? 2 : m->sites[q->site[j]].K;
        q->stride[j] = q->ncfg;
        q->ncfg *= q->card[j];
    }
    q->nterm = nterm;
    q->tc_size = 0;
    for (t = 0; t < nterm && !st; t++) {
        disc_term *e = &q->term[t];
        int out = m->sites[terms[t]].logp;
        q->role[t] = role[t];
        if ((st = motif_compile_small(ctx, m, 1, &out, q->nb, q->coord, &e->prog, &e->xin, &e->nx, &e->mask))) break;
        e->ncfg = 1;
        for (j = 0; j < q->nb; j++) {
            e->stride[j] = e->mask >> j & 1 ? e->ncfg : 0;
            if (e->mask >> j & 1) e->ncfg *= q->card[j];
        }
        e->at = q->tc_size;
        q->tc_size += TERM_MEMO * (e->ncfg + e->nx);
        n += e->nx;
    }
    if (st) return st;
    /* the blanket: every term's outside coordinates, sorted, once each */
    if (!(all = plm_gc_alloc_atomic(((size_t)n + 1) * sizeof *all))) return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    for (n = 0, t = 0; t < nterm; t++)
        for (k = 0; k < q->term[t].nx; k++) all[n++] = q->term[t].xin[k];
    qsort(all, (size_t)n, sizeof *all, cmp_int);
    for (q->nx = 0, k = 0; k < n; k++)
        if (q->nx == 0 || all[k] != all[q->nx - 1]) all[q->nx++] = all[k];
    q->xin = all;
    return PLM_OK;
}

/* The terms reading each latent site besides its own (sites with a term, in model order), as lists. */
typedef struct kids {
    int *start, *list;   /* site i's at list[start[i] .. start[i + 1]) */
} kids;

static plm_status kids_init(plm_ctx *ctx, const plm_gmodel *m, kids *k)
{
    int i, j, *fill;
    k->start = calloc((size_t)m->n + 2, sizeof *k->start);
    fill = calloc((size_t)m->n + 1, sizeof *fill);
    k->list = NULL;
    if (!k->start || !fill) goto oom;
    for (i = 0; i < m->n; i++)
        if (m->sites[i].logp >= 0)
            for (j = 0; j < m->sites[i].nparents; j++)
                if (m->sites[i].parents[j] != i) k->start[m->sites[i].parents[j] + 1]++;
    for (i = 0; i < m->n; i++) k->start[i + 1] += k->start[i];
    if (!(k->list = malloc(((size_t)k->start[m->n] + 1) * sizeof *k->list))) goto oom;
    for (i = 0; i < m->n; i++)   /* in model order, since i increases */
        if (m->sites[i].logp >= 0)
            for (j = 0; j < m->sites[i].nparents; j++) {
                int p = m->sites[i].parents[j];
                if (p != i) k->list[k->start[p] + fill[p]++] = i;
            }
    free(fill);
    return PLM_OK;
oom:
    free(k->start), free(fill);
    return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
}

static void kids_free(kids *k) { free(k->start), free(k->list); }

/* The terms reading the block sites blk[0..nb-1] besides their own: each must read exactly one of them (its
** role is `base` + its index in blk). In model order into terms; returns the count, or -1 when a term reads two. */
static int single_children(const plm_gmodel *m, const kids *kd, const int *blk, int nb, int *terms, int *role, int base)
{
    int n = 0, i, j, k, out = 0;
    for (j = 0; j < nb; j++)
        for (k = kd->start[blk[j]]; k < kd->start[blk[j] + 1]; k++) terms[n++] = kd->list[k];
    qsort(terms, (size_t)n, sizeof *terms, cmp_int);
    for (i = 0; i < n; i++) {
        int t = terms[i], hits = 0, which = -1, own = 0;
        if (i > 0 && t == terms[i - 1]) continue;
        for (j = 0; j < nb; j++) {
            if (t == blk[j]) own = 1;
            if (motif_has_parent(&m->sites[t], blk[j])) hits++, which = j;
        }
        if (own) continue;
        if (hits > 1) return -1;
        terms[out] = t, role[out] = base + which, out++;
    }
    return out;
}

static plm_status disc_begin(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, const double *u)
{
    (void)ctx, (void)o, (void)w, (void)u;
    return PLM_OK;
}

/* ---- the grid motif ----
** Positions (a, b; c, d): b and c read a, d reads b and c. A block is the latent nodes of such a window; an absent
** position is an observed node (or, for a, none: the window is then found from d reading b and c), and a latent
** node in no window is a block of its own at position a. Features (17): the logits of the positions' own terms
** given the blanket, in units of log odds: a; b given a = 0, 1; c given a = 0, 1; d given (b, c) = (0, 0), (1, 0),
** (0, 1), (1, 1); for each of a, b, c, d the log-likelihood ratio (1 vs 0) of its children outside the window;
** then one flag per position, 1 when it is absent. An absent position is written as a node fixed at 0 (nn.h's fixed
** members): the features conditional on it read at 0, an observed d's term log p(d_obs | b, c) as the logits of
** "d = 0", its other features 0. Each is clamped to [-30, 30]. Then (18 more) the heads' skip logits (grid_skip). */

#define GRID_NIN 35

static void grid_layout(const int *shape, int *nin, int *nmem, plm_nn_member *mem)
{
    int j;
    (void)shape;
    *nin = GRID_NIN;
    *nmem = 4;
    memset(mem, 0, 4 * sizeof *mem);   /* no skip logits */
    for (j = 0; j < 4; j++) {
        mem[j].kind = PLM_NN_DISCRETE, mem[j].card = 2, mem[j].ncat_at = -1;
        mem[j].fixed = 1, mem[j].fixed_at = 13 + j;
        mem[j].skip = 1, mem[j].base_at = -1, mem[j].pair_of = -1, mem[j].pair_at = -1;
    }
    /* skip logits (grid_skip): a's, b's given a, c's given a, d's given b and c */
    mem[0].base_at = 17;
    mem[1].pair_of = 0, mem[1].pair_at = 19;
    mem[2].pair_of = 0, mem[2].pair_at = 23;
    mem[3].pair_of = 1, mem[3].pair2 = 1, mem[3].pair2_of = 2, mem[3].pair_at = 27;
}

/* The skip logits x[17..34] from the features x[0..12]: per member its own term's log odds given the members it
** reads plus its children's log-likelihood ratio, as logits (0, L). For d, given b and c, that is its exact
** conditional; a, b and c miss what the members after them say (the network learns that part). */
static void grid_skip(double *x)
{
    int j;
    for (j = 17; j < GRID_NIN; j++) x[j] = 0;
    x[18] = clampf(x[0] + x[9]);
    x[20] = clampf(x[1] + x[10]), x[22] = clampf(x[2] + x[10]);
    x[24] = clampf(x[3] + x[11]), x[26] = clampf(x[4] + x[11]);
    for (j = 0; j < 4; j++) x[28 + 2 * j] = clampf(x[5 + j] + x[12]);
}

static double log_bern(int x, double p) { return x ? log(p) : log1p(-p); }

/* The prior over grid instantiations: each own-term logit N(0, 2^2) independently; the block drawn from them
** in order a, b, c, d; each block node has 0, 1 or 2 children outside the block (uniform), each a bernoulli
** whose logits given the node = 0 and 1 are N(0, 2^2), drawn given the node. Then which positions are absent
** (observed at their drawn values): none (probability 0.4), a (0.2), d (0.2), a and d (0.1), or b, c and d (0.1:
** a block of one), written as the model side writes them (grid_inputs). */
static void grid_draw(const int *shape, plm_rng *r, double *x, double *v)
{
    double L[9], U[4], pm = plm_rng_uniform(r);
    int j, a, b, c, d, val[4], absent;
    (void)shape;
    for (j = 0; j < 9; j++) L[j] = 2 * plm_rng_normal(r);
    a = plm_rng_uniform(r) < logistic(L[0]);
    b = plm_rng_uniform(r) < logistic(L[1 + a]);
    c = plm_rng_uniform(r) < logistic(L[3 + a]);
    d = plm_rng_uniform(r) < logistic(L[5 + b + 2 * c]);
    val[0] = a, val[1] = b, val[2] = c, val[3] = d;
    for (j = 0; j < 4; j++) {
        int nc = (int)plm_rng_uint(r, 3), k;
        U[j] = 0;
        for (k = 0; k < nc; k++) {
            double p0 = logistic(2 * plm_rng_normal(r)), p1 = logistic(2 * plm_rng_normal(r));
            int ch = plm_rng_uniform(r) < (val[j] ? p1 : p0);
            U[j] += log_bern(ch, p1) - log_bern(ch, p0);
        }
    }
    absent = pm < 0.4 ? 0 : pm < 0.6 ? 1 : pm < 0.8 ? 8 : pm < 0.9 ? 9 : 14;
    for (j = 0; j < 9; j++) x[j] = L[j];
    for (j = 0; j < 4; j++) x[9 + j] = U[j];
    if (absent == 14) {   /* a alone: b's and c's terms at their values are evidence on a, d's a constant */
        x[9] += log_bern(b, logistic(L[2])) - log_bern(b, logistic(L[1])) + log_bern(c, logistic(L[4])) -
                log_bern(c, logistic(L[3]));
        for (j = 1; j < 9; j++) x[j] = 0;
        x[10] = x[11] = x[12] = 0;
    }
    if (absent & 1) {     /* a observed: b's and c's logits given it, at the a = 0 slots */
        x[0] = x[9] = 0;
        x[1] = L[1 + a], x[2] = 0, x[3] = L[3 + a], x[4] = 0;
    }
    if (absent & 8) {     /* d observed: log p(d | b, c) is log p(d' = 0 | b, c) with the logits negated when d = 1 */
        for (j = 5; j < 9; j++) x[j] = d ? -L[j] : L[j];
        x[12] = 0;
    }
    for (j = 0; j < 13; j++) x[j] = clampf(x[j]);
    for (j = 0; j < 4; j++) {
        x[13 + j] = absent >> j & 1;
        v[j] = absent >> j & 1 ? 0 : val[j];
    }
    grid_skip(x);
}

/* The logit of "an absent node is 0" that gives it the log probability lp of the observed value it has: lp = log(1
** - logistic(L)), so L = log(expm1(-lp)) (an observed value of probability 1 is -30 after clamping). */
static double absent_logit(double lp)
{
    if (!(lp < 0)) return lp == lp ? -FEAT_CLAMP : 0;
    return log(expm1(-lp));
}

static plm_status grid_inputs(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, plm_rng *r,
                              double *x, double *v)
{
    const disc_occ *q = &o->docc[i];
    int t, j, have = 0;
    plm_status st;
    (void)r;
    v[0] = v[1] = v[2] = v[3] = 0;
    for (j = 0; j < q->nb; j++) v[q->pos[j]] = u[q->coord[j]], have |= 1 << q->pos[j];
    if (disc_hit(o, w, i, u, x, GRID_NIN)) return PLM_OK;
    if ((st = disc_eval(ctx, o, w, i, u))) return st;
    memset(x, 0, GRID_NIN * sizeof *x);
    /* position configuration index a + 2 b + 4 c + 8 d; absent positions at 0 */
#define T(c) tval_grid(q, w, t, c)
    for (t = 0; t < q->nterm; t++) {
        switch (q->role[t]) {
        case 0: x[0] += T(1) - T(0); break;
        case 1:
            x[1] += T(2) - T(0);
            if (have & 1) x[2] += T(3) - T(1);
            break;
        case 2:
            x[3] += T(4) - T(0);
            if (have & 1) x[4] += T(5) - T(1);
            break;
        case 3:
            if (have & 8) {
                x[5] += T(8) - T(0), x[6] += T(10) - T(2), x[7] += T(12) - T(4), x[8] += T(14) - T(6);
            } else {
                x[5] += absent_logit(T(0)), x[6] += absent_logit(T(2)), x[7] += absent_logit(T(4));
                x[8] += absent_logit(T(6));
            }
            break;
        default: j = q->role[t] - 4, x[9 + j] += T(1 << j) - T(0); break;
        }
    }
#undef T
    for (j = 0; j < 13; j++) x[j] = clampf(x[j]);
    for (j = 0; j < 4; j++) x[13 + j] = !(have >> j & 1);
    grid_skip(x);
    disc_store(o, w, i, u, x, GRID_NIN);
    return PLM_OK;
}

/* The block's members' values from the network's four positions (an absent position must be 0). */
static double grid_logp(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *v)
{
    const disc_occ *q = &o->docc[i];
    double vl[4];
    int j, have = 0;
    for (j = 0; j < q->nb; j++) vl[j] = v[q->pos[j]], have |= 1 << q->pos[j];
    for (j = 0; j < 4; j++)
        if (!(have >> j & 1) && v[j] != 0) return -INFINITY;
    return disc_logp(o, w, i, u, vl);
}

static void grid_apply(const plm_motif_occs *o, plm_motif_ws *w, int i, double *u, const double *v)
{
    const disc_occ *q = &o->docc[i];
    int j;
    (void)w;
    for (j = 0; j < q->nb; j++) u[q->coord[j]] = v[q->pos[j]];
}

/* The occurrences occ[0..n-1] of a discrete-block motif (grid, chain) as the model's set of them, with the most
** configurations and terms of any one (workspace sizes). */
static plm_status disc_occs(plm_ctx *ctx, const plm_motif_def *d, const occ_ops *ops, const int *shape, plm_gmodel *m,
                            disc_occ *occ, int n, plm_motif_occs **out)
{
    plm_motif_occs *o = motif_occs_new(d, ops, shape, m);
    int a, t;
    if (!o) return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    o->docc = occ;
    o->n = n;
    for (a = 0; a < n; a++) {
        disc_occ *q = &occ[a];
        if (q->ncfg > o->maxcfg) o->maxcfg = q->ncfg;
        if (q->nterm > o->maxterm) o->maxterm = q->nterm;
        if (q->tc_size > o->maxtc) o->maxtc = q->tc_size;
        for (t = 0; t < q->nterm; t++)
            if (q->term[t].ncfg > o->maxtcfg) o->maxtcfg = q->term[t].ncfg;
        q->t0 = o->ntermall;
        q->tc_at = o->tcall;
        o->ntermall += q->nterm;
        o->tcall += (size_t)q->tc_size;
    }
    *out = o;
    return PLM_OK;
}

/* A detector's working state (grid_detect, chain_detect): the model's children lists, a buffer of terms and roles
** for the occurrence being built, and the occurrences found. */
typedef struct finder {
    kids kd;
    int *terms, *role;
    disc_occ *occ;
    int n, cap;
} finder;

static plm_status finder_init(plm_ctx *ctx, plm_gmodel *m, finder *f)
{
    plm_status st;
    memset(f, 0, sizeof *f);
    if ((st = kids_init(ctx, m, &f->kd))) return st;
    f->cap = 16;
    f->occ = plm_gc_alloc((size_t)f->cap * sizeof *f->occ);
    f->terms = malloc(((size_t)f->kd.start[m->n] + 8) * sizeof *f->terms);
    f->role = malloc(((size_t)f->kd.start[m->n] + 8) * sizeof *f->role);
    if (!f->terms || !f->role || !f->occ) {
        kids_free(&f->kd);
        free(f->terms), free(f->role);
        return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    }
    return PLM_OK;
}

/* A new occurrence of the nb block sites blk, its terms f->terms[0..nterm-1] with roles f->role. */
static plm_status finder_add(plm_ctx *ctx, plm_gmodel *m, finder *f, const int *blk, int nb, int nterm)
{
    disc_occ *q;
    if (f->n == f->cap && !(f->occ = grow_occ(f->occ, &f->cap))) return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    q = &f->occ[f->n++];
    memset(q, 0, sizeof *q);
    q->nb = nb;
    memcpy(q->site, blk, (size_t)nb * sizeof *blk);
    return disc_make(ctx, m, q, f->terms, f->role, nterm);
}

/* The occurrences found as the model's set of them (st: the detection's status so far), and the state freed. */
static plm_status finder_done(plm_ctx *ctx, finder *f, plm_status st, const plm_motif_def *d, const occ_ops *ops,
                              const int *shape, plm_gmodel *m, plm_motif_occs **out)
{
    if (!st && f->n) st = disc_occs(ctx, d, ops, shape, m, f->occ, f->n, out);
    kids_free(&f->kd);
    free(f->terms), free(f->role);
    return st;
}

static const occ_ops grid_ops = {disc_sites, disc_begin, grid_inputs, grid_logp, grid_apply};

static int is_bern(const plm_gsite *s) { return motif_is_latent_kind(s, PLM_DIST_BERNOULLI); }

/* A bernoulli node with a term, latent or observed (an observed one may stand at position d of a window). */
static int is_bern_node(const plm_gsite *s)
{
    return (s->kind == PLM_GSITE_LATENT || s->kind == PLM_GSITE_OBSERVED) && s->dist == PLM_DIST_BERNOULLI && s->dim == 1 &&
           s->logp >= 0;
}

/* Read set of site s among the window's positions blk[0..3] (-1: none there): bit p when s's term reads blk[p] (its
** own site included). */
static int reads_of(const plm_gmodel *m, int s, const int *blk)
{
    int j, bits = 0;
    if (s < 0) return 0;
    for (j = 0; j < 4; j++)
        if (blk[j] >= 0 && (s == blk[j] || motif_has_parent(&m->sites[s], blk[j]))) bits |= 1 << j;
    return bits;
}

/* A new grid occurrence: positions blk[0..3] (-1 or an observed node where absent), its latent members the latent
** sites among them; own terms of the positions there, children of the members (terms reading one of them). */
static plm_status grid_add(plm_ctx *ctx, plm_gmodel *m, finder *f, const int *blk, char *covered)
{
    int lat[4], pos[4], pres[4], ppos[4], nl = 0, np = 0, nt, j;
    for (j = 0; j < 4; j++) {
        if (blk[j] < 0) continue;
        pres[np] = blk[j], ppos[np] = j, f->terms[np] = blk[j], f->role[np] = j, np++;
        if (m->sites[blk[j]].kind == PLM_GSITE_LATENT) lat[nl] = blk[j], pos[nl] = j, nl++;
    }
    if ((nt = single_children(m, &f->kd, pres, np, f->terms + np, f->role + np, 4)) < 0) return PLM_OK;
    for (j = np; j < np + nt; j++) f->role[j] = 4 + ppos[f->role[j] - 4];
    {
        plm_status st = finder_add(ctx, m, f, lat, nl, np + nt);
        if (st) return st;
    }
    {
        disc_occ *q = &f->occ[f->n - 1];
        int t;
        memcpy(q->pos, pos, sizeof pos);
        for (t = 0; t < q->nterm; t++) {
            memset(q->term[t].pstride, 0, sizeof q->term[t].pstride);
            for (j = 0; j < nl; j++) q->term[t].pstride[pos[j]] = q->term[t].stride[j];
        }
    }
    for (j = 0; j < nl; j++) covered[lat[j]] = 1;
    return PLM_OK;
}

/* Windows: every bernoulli node d, latent or observed, whose term reads exactly two latent bernoulli nodes b < c,
** with a the latent bernoulli node that both b and c read (absent when there is none), where each position's term
** reads exactly its own share of the window (a: a; b: a, b; c: a, c; d: b, c, d) and every other term reads at most
** one member. Then, when some window was found, each latent bernoulli node in none of them as a block of one. */
static plm_status grid_detect(plm_ctx *ctx, const plm_motif_def *d, const int *shape, plm_gmodel *m, plm_motif_occs **out)
{
    int dd, k;
    char *covered;
    plm_status st;
    finder f;
    *out = NULL;
    if (!(covered = calloc((size_t)m->n + 1, 1))) return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    if ((st = finder_init(ctx, m, &f))) return free(covered), st;
    for (dd = 0; dd < m->n && !st; dd++) {
        const plm_gsite *s = &m->sites[dd];
        int bc[2], n = 0, a = -1, na = 0, blk[4], b, c, ha;
        if (!is_bern_node(s)) continue;
        for (k = 0; k < s->nparents; k++)
            if (s->parents[k] != dd && is_bern(&m->sites[s->parents[k]])) {
                if (n < 2) bc[n] = s->parents[k];
                n++;
            }
        if (n != 2) continue;
        b = bc[0] < bc[1] ? bc[0] : bc[1], c = bc[0] < bc[1] ? bc[1] : bc[0];
        for (k = 0; k < m->sites[b].nparents; k++) {
            int pa = m->sites[b].parents[k];
            if (pa != b && pa != c && is_bern(&m->sites[pa]) && motif_has_parent(&m->sites[c], pa)) a = pa, na++;
        }
        if (na > 1) continue;
        blk[0] = a, blk[1] = b, blk[2] = c, blk[3] = dd;
        ha = a >= 0;
        if (reads_of(m, a, blk) != (ha ? 1 : 0) || reads_of(m, b, blk) != (2 | ha) || reads_of(m, c, blk) != (4 | ha) ||
            reads_of(m, dd, blk) != 14)
            continue;
        st = grid_add(ctx, m, &f, blk, covered);
    }
    for (k = 0; k < m->n && !st && f.n > 0; k++)
        if (is_bern(&m->sites[k]) && !covered[k]) {
            int blk[4] = {k, -1, -1, -1};
            st = grid_add(ctx, m, &f, blk, covered);
        }
    free(covered);
    return finder_done(ctx, &f, st, d, &grid_ops, shape, m, out);
}

/* ---- the chain motif ----
** Block (s1, s2): consecutive categorical states (S <= S_max) where s2's term reads s1. The block's log density is
** U1[s1] + M[s1, s2] + U2[s2]: U1 the terms outside the block that read s1 with s1's own (the transition from the
** state before it: no block member), M s2's own term (the transition from s1), U2 the other terms that read s2
** (its emissions, the transition to the state after it). Features: x[0] = S; U1 (S_max, padded) shifted so its
** largest valid entry is 0; N = M + U2 broadcast over the rows (S_max x S_max, row s1: the block's log density
** given s1 up to U1[s1]), shifted as a whole (so its rows keep their relative scale, which the marginal of s1 depends
** on); clamped to [-30, 0], padding -30. The network's heads take them as skip logits (nn.h): s1's logits are U1
** plus a per-state perceptron of row s1 of N (what it has to learn is the sum over s2, log sum_j exp N[s1, j]), s2's
** are row s1 of N plus its perceptron's part. */

static int chain_smax(const int *shape) { return shape[0]; }
static int chain_nin(int smax) { return 1 + smax + smax * smax; }

static void chain_layout(const int *shape, int *nin, int *nmem, plm_nn_member *mem)
{
    int smax = chain_smax(shape);
    *nin = chain_nin(smax);
    *nmem = 2;
    memset(mem, 0, 2 * sizeof *mem);
    mem[0].kind = PLM_NN_DISCRETE, mem[0].card = smax, mem[0].ncat_at = 0;
    mem[0].skip = 1, mem[0].base_at = 1, mem[0].pair_of = -1, mem[0].pair_at = -1;
    /* s1's perceptron per state c, reading row c of N: what s2 contributes to c's marginal */
    mem[0].rows = 1, mem[0].row_at = 1 + smax, mem[0].row_w = smax, mem[0].rshared_at = -1, mem[0].rshared_w = 0;
    mem[1].kind = PLM_NN_DISCRETE, mem[1].card = smax, mem[1].ncat_at = 0;
    mem[1].skip = 1, mem[1].base_at = -1, mem[1].pair_of = 0, mem[1].pair_at = 1 + smax;
}

/* Shift a[0..n-1] by -(its largest entry), clamp to [-30, 0] (NaN and -inf read as -30). */
static void shift_clamp(double *a, int n)
{
    double mx = -INFINITY;
    int j;
    for (j = 0; j < n; j++)
        if (a[j] > mx) mx = a[j];
    for (j = 0; j < n; j++) a[j] = isfinite(mx) ? clampf(a[j] - mx) : -FEAT_CLAMP;
}

/* Chain features from raw log tables: U1[S], M[S x S] (row-major, stride S), U2[S]. */
static void chain_features(int smax, int S, const double *U1, const double *M, const double *U2, double *x)
{
    double *a = x + 1, *N = x + 1 + smax, mx = -INFINITY;
    int s, j;
    x[0] = S;
    for (j = 0; j < smax; j++) a[j] = -FEAT_CLAMP;
    for (j = 0; j < smax * smax; j++) N[j] = -FEAT_CLAMP;
    memcpy(a, U1, (size_t)S * sizeof *a);
    shift_clamp(a, S);
    for (s = 0; s < S; s++)
        for (j = 0; j < S; j++)
            if (M[s * S + j] + U2[j] > mx) mx = M[s * S + j] + U2[j];
    for (s = 0; s < S; s++)
        for (j = 0; j < S; j++) N[s * smax + j] = isfinite(mx) ? clampf(M[s * S + j] + U2[j] - mx) : -FEAT_CLAMP;
}

#define CHAIN_VMAX 500   /* symbols of the chain prior's emissions, at most */

static double log_uniform(plm_rng *r, double lo, double hi) { return lo * exp(plm_rng_uniform(r) * log(hi / lo)); }

/* A probability row p[0..n-1] (n <= CHAIN_VMAX) of the chain prior: Dirichlet(alpha) on a support of all n entries
** or (probability `sparse`) of k of them, k log-uniform on 1..n, the others 0; then, with probability 1/2, mixed with
** the uniform row, weight eps log-uniform on [0.001, 0.3]. */
static void prior_row(plm_rng *r, double alpha, double sparse, int n, double *p)
{
    int idx[CHAIN_VMAX], j, k = n;
    double tot = 0;
    if (plm_rng_uniform(r) < sparse) k = (int)floor(log_uniform(r, 1, n + 1));
    if (k > n) k = n;
    for (j = 0; j < n; j++) p[j] = 0, idx[j] = j;
    for (j = 0; j < k; j++) {   /* the support: the first k of a partial Fisher-Yates shuffle */
        int i = j + (int)plm_rng_uint(r, (uint64_t)(n - j)), t = idx[i];
        idx[i] = idx[j], idx[j] = t;
        tot += p[t] = gsl_ran_gamma(&r->gsl, alpha, 1.0) + 1e-300;
    }
    for (j = 0; j < n; j++) p[j] /= tot;
    if (plm_rng_uniform(r) < 0.5) {
        double eps = log_uniform(r, 0.001, 0.3);
        for (j = 0; j < n; j++) p[j] = (1 - eps) * p[j] + eps / n;
    }
}

static int draw_cat(plm_rng *r, const double *p, int S)
{
    double u = plm_rng_uniform(r);
    int j;
    for (j = 0; j < S - 1; j++)
        if ((u -= p[j]) < 0) break;
    return j;
}

/* The prior over chain instantiations, wide enough to hold both dense and near-deterministic, sparse models: S
** uniform on 2..S_max; transition rows prior_row(alpha, 1/3) with alpha log-uniform on [0.01, 10] (one per
** instantiation); s1 drawn from the transition row of a uniformly drawn state before it (or, with probability 0.2,
** from an initial distribution prior_row(1, 0)); emissions over V symbols, V log-uniform on 2..500, rows prior_row(beta,
** 1/2) with beta log-uniform on [0.01, 10]; each of s1, s2 observed with probability 0.9; with probability 0.8 a
** state after s2. */
static void chain_draw(const int *shape, plm_rng *r, double *x, double *v)
{
    int smax = chain_smax(shape), S = 2 + (int)plm_rng_uint(r, (uint64_t)(smax - 1));
    int V = (int)floor(log_uniform(r, 2, CHAIN_VMAX + 1)), s, t, s1, s2, y1 = -1, y2 = -1, o1, o2;
    double P[CHAIN_SMAX * CHAIN_SMAX], M[CHAIN_SMAX * CHAIN_SMAX], U1[CHAIN_SMAX], U2[CHAIN_SMAX], init[CHAIN_SMAX];
    double R1[CHAIN_VMAX], R2[CHAIN_VMAX], row[CHAIN_VMAX];
    double alpha = log_uniform(r, 0.01, 10), beta = log_uniform(r, 0.01, 10);
    if (V > CHAIN_VMAX) V = CHAIN_VMAX;
    for (s = 0; s < S; s++) prior_row(r, alpha, 1.0 / 3, S, P + s * S);
    if (plm_rng_uniform(r) < 0.2) {
        prior_row(r, 1.0, 0, S, init);
    } else {
        int s0 = (int)plm_rng_uint(r, (uint64_t)S);
        memcpy(init, P + s0 * S, (size_t)S * sizeof *init);
    }
    for (s = 0; s < S * S; s++) M[s] = log(P[s]);
    s1 = draw_cat(r, init, S);
    s2 = draw_cat(r, P + s1 * S, S);
    /* emissions: the rows of s1 and s2 first (their symbols drawn from them), then each other state's row in turn,
    ** scored at the two symbols (the rows are independent: drawing them in this order is the same prior) */
    o1 = plm_rng_uniform(r) < 0.9, o2 = plm_rng_uniform(r) < 0.9;
    prior_row(r, beta, 0.5, V, R1);
    if (s2 != s1) prior_row(r, beta, 0.5, V, R2);
    else memcpy(R2, R1, (size_t)V * sizeof *R2);
    if (o1) y1 = draw_cat(r, R1, V);
    if (o2) y2 = draw_cat(r, R2, V);
    for (s = 0; s < S; s++) {
        const double *e = s == s1 ? R1 : s == s2 ? R2 : row;
        if (e == row) prior_row(r, beta, 0.5, V, row);
        U1[s] = log(init[s]) + (o1 ? log(e[y1]) : 0);
        U2[s] = o2 ? log(e[y2]) : 0;
    }
    if (plm_rng_uniform(r) < 0.8) {
        t = draw_cat(r, P + s2 * S, S);
        for (s = 0; s < S; s++) U2[s] += log(P[s * S + t]);
    }
    chain_features(smax, S, U1, M, U2, x);
    v[0] = s1, v[1] = s2;
}

static plm_status chain_inputs(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, plm_rng *r,
                               double *x, double *v)
{
    const disc_occ *q = &o->docc[i];
    int S = q->card[0], t, s, s2;
    double U1[CHAIN_SMAX], M[CHAIN_SMAX * CHAIN_SMAX], U2[CHAIN_SMAX];
    plm_status st;
    (void)r;
    v[0] = u[q->coord[0]], v[1] = u[q->coord[1]];
    if (disc_hit(o, w, i, u, x, chain_nin(chain_smax(o->shape)))) return PLM_OK;
    if ((st = disc_eval(ctx, o, w, i, u))) return st;
    memset(U1, 0, sizeof U1), memset(M, 0, sizeof M), memset(U2, 0, sizeof U2);
    /* config index s1 + S s2 */
    for (t = 0; t < q->nterm; t++) {
#define T(s1, s2) tval_chain(q, w, t, s1, s2)
        for (s = 0; s < S; s++) switch (q->role[t]) {
            case 0: case 4: U1[s] += T(s, 0); break;
            case 1: for (s2 = 0; s2 < S; s2++) M[s * S + s2] += T(s, s2); break;
            case 5: U2[s] += T(0, s); break;
            default: break;
            }
#undef T
    }
    chain_features(chain_smax(o->shape), S, U1, M, U2, x);
    disc_store(o, w, i, u, x, chain_nin(chain_smax(o->shape)));
    return PLM_OK;
}

static const occ_ops chain_ops = {disc_sites, disc_begin, chain_inputs, disc_logp, disc_apply};

static int is_cat(const plm_gsite *s) { return motif_is_latent_kind(s, PLM_DIST_CATEGORICAL); }

static plm_status chain_detect(plm_ctx *ctx, const plm_motif_def *d, const int *shape, plm_gmodel *m, plm_motif_occs **out)
{
    int smax = chain_smax(shape), s1, s2;
    plm_status st;
    finder f;
    *out = NULL;
    if ((st = finder_init(ctx, m, &f))) return st;
    for (s2 = 0; s2 < m->n && !st; s2++) {
        const plm_gsite *b = &m->sites[s2];
        int np = 0, j, nt, blk[2];
        if (!is_cat(b) || b->K < 2 || b->K > smax) continue;
        /* s1: the one categorical latent parent of s2 with as many states */
        for (s1 = -1, j = 0; j < b->nparents; j++) {
            const plm_gsite *a = &m->sites[b->parents[j]];
            if (b->parents[j] != s2 && is_cat(a)) np++, s1 = b->parents[j];
        }
        if (np != 1 || m->sites[s1].K != b->K || motif_has_parent(&m->sites[s1], s2)) continue;
        blk[0] = s1, blk[1] = s2;
        f.terms[0] = s1, f.role[0] = 0, f.terms[1] = s2, f.role[1] = 1;
        if ((nt = single_children(m, &f.kd, blk, 2, f.terms + 2, f.role + 2, 4)) < 0) continue;
        /* s2's own term is the only one reading both; check s1's reads neither twice */
        st = finder_add(ctx, m, &f, blk, 2, 2 + nt);
    }
    return finder_done(ctx, &f, st, d, &chain_ops, shape, m, out);
}

static const char *const chain_shape_names[] = {"S_max"};
static const int chain_def[] = {8}, chain_min[] = {2}, chain_max[] = {CHAIN_SMAX};

const plm_motif_def plm_motif_grid_def = {"grid", 0, NULL, NULL, NULL, NULL, "a 2x2 block of a binary grid network",
                                          grid_layout, grid_draw, grid_detect};
const plm_motif_def plm_motif_chain_def = {"chain", 1, chain_shape_names, chain_def, chain_min, chain_max,
                                           "two consecutive states of a Markov chain", chain_layout, chain_draw,
                                           chain_detect};
