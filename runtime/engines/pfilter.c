/* pfilter.c -- particle filters over ssm kernels (see pfilter.h).
**
** One step t >= 2 of every method is: first-stage log weights a_i = log W_i + log eta_i (eta = 1 except for
** the auxiliary filter), resampling by a when its ESS is low, the move (the fused ssm step), and the update.
** Writing b_i for the log weight a particle carries into the update -- A - log N - log eta_{anc(i)} after
** resampling (A = log sum exp a), log W_i without -- the estimate of p(y_t | y_1:t-1) is sum_i exp(b_i + g_i)
** with g_i the incremental weight, and the new log W_i = b_i + g_i minus its log-sum-exp. Bootstrap and guided
** filters are the case eta = 1 (A = 0). */
#include "pfilter.h"

#include "comm.h"
#include "par.h"
#include "vmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void plm_pf_opts_default(plm_pf_opts *o)
{
    memset(o, 0, sizeof *o);
    o->method = PLM_PF_BOOTSTRAP;
    o->N = 1000;
    o->scheme = PLM_RESAMPLE_SYSTEMATIC;
    o->ess_threshold = 0.5;
    o->seed = 1;
    o->nthreads = 1;
}


void plm_pf_result_free(plm_pf_result *r)
{
    free(r->logz_inc);
    free(r->ess);
    free(r->resampled);
    free(r->means);
    free(r->vars);
    free(r->moments);
    free(r->xs);
    free(r->logw);
    free(r->anc);
    memset(r, 0, sizeof *r);
}

double plm_pf_bytes(const plm_ssm *m, long T, const plm_pf_opts *o, int nmom)
{
    double N = (double)o->N, d = m->dim;
    double b = N * (8 * (2 * d + 4 + nmom) + 16 + sizeof(plm_rng)) + (o->hook ? N * 8 * (d + 1) : 0);
    if (o->history) b += (double)T * N * (8 * (d + 1) + 4);
    return b + (double)T * (8 * (2 * d + 2 + nmom) + 1);
}

/* Evaluate a caller's program over the particles at time t: X varying, Y uniform (may be NULL). */
static plm_status eval_at(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, size_t n, const double *x,
                          const double *y, double *const *out, int nthreads)
{
    plm_prog_in in[PLM_NGROUPS];
    double tcb[64], *tc = m->ncov < 63 ? tcb : malloc(((size_t)m->ncov + 1) * sizeof *tc);
    plm_status st;
    if (!tc) return plm_fail(ctx, PLM_ENOMEM, "pfilter: out of memory");
    st = plm_ssm_bind(ctx, m, p, t, tc, in);
    if (!st) {
        in[PLM_GRP_X].p = x;
        in[PLM_GRP_X].ld = n;
        in[PLM_GRP_Y].p = y;
        st = plm_prog_eval(ctx, p, n, in, out, NULL, nthreads);
    }
    if (tc != tcb) free(tc);
    return st;
}

/* "y = 0.3" or "y = (0.3, 1, ...)" for messages */
static void describe_y(char *buf, size_t n, const double *y, int ydim)
{
    if (ydim == 1)
        snprintf(buf, n, "y = %g", y[0]);
    else if (ydim == 2)
        snprintf(buf, n, "y = (%g, %g)", y[0], y[1]);
    else
        snprintf(buf, n, "y = (%g, %g, %g%s)", y[0], y[1], y[2], ydim > 3 ? ", ..." : "");
}

/* lw: the N particles held here, the first of them global particle off (ranks: pfilter.h) */
static plm_status bad_weights(plm_ctx *ctx, const double *lw, size_t N, size_t off, long t, const double *y, int ydim,
                              double lz, const char *what)
{
    char yb[128];
    size_t i;
    describe_y(yb, sizeof yb, y, ydim);
    if (isnan(lz) || lz == INFINITY) {
        for (i = 0; i < N && !isnan(lw[i]) && lw[i] != INFINITY; i++) continue;
        if (i == N)   /* none here: another rank holds it, and names it */
            return plm_fail(ctx, PLM_EDOM, "pfilter: the %s of a particle held by another rank is not finite at t = "
                            "%ld (%s): a parameter outside its domain, or a density that is not finite", what, t, yb);
        return plm_fail(ctx, PLM_EDOM, "pfilter: the %s of particle %zu is %g at t = %ld (%s): a parameter outside "
                        "its domain, or a density that is not finite", what, off + i + 1, lw[i], t, yb);
    }
    return plm_fail(ctx, PLM_EDOM, "pfilter: every particle has %s zero at t = %ld (%s): no particle can explain "
                    "the observation (more particles, a guided proposal, or check the model and the data)",
                    strcmp(what, "log weight") ? what : "weight", t, yb);
}

/* Sums over the particles in four interleaved partial sums, added in a fixed order at the end: one chain of
** additions would cost an addition's latency per particle, and would not vectorise. */
static double sum4(const double *a, size_t n)
{
    double s[4] = {0, 0, 0, 0};
    size_t i, k;
    for (i = 0; i + 4 <= n; i += 4)
        for (k = 0; k < 4; k++) s[k] += a[i + k];
    for (; i < n; i++) s[i & 3] += a[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* sum a_i b_i */
static double dot4(const double *a, const double *b, size_t n)
{
    double s[4] = {0, 0, 0, 0};
    size_t i, k;
    for (i = 0; i + 4 <= n; i += 4)
        for (k = 0; k < 4; k++) s[k] += a[i + k] * b[i + k];
    for (; i < n; i++) s[i & 3] += a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* sum w_i (x_i - m)^2 */
static double wvar4(const double *w, const double *x, double m, size_t n)
{
    double s[4] = {0, 0, 0, 0};
    size_t i, k;
    for (i = 0; i + 4 <= n; i += 4)
        for (k = 0; k < 4; k++) s[k] += w[i + k] * (x[i + k] - m) * (x[i + k] - m);
    for (; i < n; i++) s[i & 3] += w[i] * (x[i] - m) * (x[i] - m);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* The largest of n log weights; *bad = 1 when one is NaN or +inf. */
static double max4(const double *a, size_t n, int *bad)
{
    double mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int b = 0;
    size_t i, k;
    for (i = 0; i + 4 <= n; i += 4)
        for (k = 0; k < 4; k++) {
            b |= !(a[i + k] < INFINITY);
            mx[k] = a[i + k] > mx[k] ? a[i + k] : mx[k];
        }
    for (; i < n; i++) {
        b |= !(a[i] < INFINITY);
        mx[i & 3] = a[i] > mx[i & 3] ? a[i] : mx[i & 3];
    }
    *bad = b;
    return fmax(fmax(mx[0], mx[1]), fmax(mx[2], mx[3]));
}

/* The update runs over fixed chunks of particles, on the threads asked for: each chunk's maximum, sums and
** moments are formed in the chunk, then combined in chunk order on the calling thread. The chunks, not the
** threads, fix the order of every addition, so results are identical for any thread count. */
#define PF_CHUNK 512

typedef struct upd_job {
    size_t N;
    int dim, missing;
    double *lw, *W;
    const double *inc, *x, *shift;   /* shift: one value per state component, for the variances */
    double *cmax, *csum, *cs2, *cw;   /* per chunk: max, sum exp, sum W^2, sum W (for resampling) */
    double *cmom;   /* per chunk: dim means, then dim second moments about shift */
    int *cbad;
    double M, sum, lz;
} upd_job;

/* First pass of a chunk: log weights, their maximum m_c, and sum exp(lw - m_c) (W holds the terms). */
static void upd_exp(void *arg, size_t c0, size_t c1, int worker)
{
    upd_job *J = arg;
    size_t c, i;
    (void)worker;
    for (c = c0; c < c1; c++) {
        size_t i0 = c * PF_CHUNK, n = J->N - i0 < PF_CHUNK ? J->N - i0 : PF_CHUNK;
        double *lw = J->lw + i0, *W = J->W + i0, mx;
        if (!J->missing)
            for (i = 0; i < n; i++) lw[i] += J->inc[i0 + i];
        mx = max4(lw, n, &J->cbad[c]);
        J->cmax[c] = mx;
        if (mx == -INFINITY || J->cbad[c]) {   /* no weight here (or an error the caller reports) */
            for (i = 0; i < n; i++) W[i] = 0;
            J->csum[c] = 0;
            continue;
        }
        for (i = 0; i < n; i++) W[i] = lw[i] - mx;
        plm_vexp(W, W, n);
        J->csum[c] = sum4(W, n);
    }
}

/* Second pass: normalise (W scaled by exp(m_c - M) / sum), sum W^2, and the weighted moments. */
static void upd_norm(void *arg, size_t c0, size_t c1, int worker)
{
    upd_job *J = arg;
    size_t c, i;
    int k, d = J->dim;
    (void)worker;
    for (c = c0; c < c1; c++) {
        size_t i0 = c * PF_CHUNK, n = J->N - i0 < PF_CHUNK ? J->N - i0 : PF_CHUNK;
        double *lw = J->lw + i0, *W = J->W + i0, f = exp(J->cmax[c] - J->M) / J->sum;
        for (i = 0; i < n; i++) {
            W[i] *= f;
            lw[i] -= J->lz;
        }
        J->cs2[c] = dot4(W, W, n);
        J->cw[c] = sum4(W, n);
        for (k = 0; k < d; k++) {
            const double *xk = J->x + (size_t)k * J->N + i0;
            J->cmom[c * (size_t)(2 * d) + (size_t)k] = dot4(W, xk, n);
            J->cmom[c * (size_t)(2 * d) + (size_t)(d + k)] = wvar4(W, xk, J->shift[k], n);
        }
    }
}

typedef struct pf_buf {
    double *x, *xo, *xm, *inc, *lw, *W, *leta, *mom, *xh, *lwh;
    size_t *cnt, *anc;
    double *chunk;   /* the update's per-chunk values */
    int *cbad;
    plm_rng *rng;
    double **momout;
} pf_buf;

static void free_buf(pf_buf *b)
{
    free(b->x);
    free(b->xo);
    free(b->xm);
    free(b->xh);
    free(b->lwh);
    free(b->inc);
    free(b->lw);
    free(b->W);
    free(b->leta);
    free(b->mom);
    free(b->cnt);
    free(b->anc);
    free(b->rng);
    free(b->momout);
    free(b->chunk);
    free(b->cbad);
}

static plm_status check_opts(plm_ctx *ctx, const plm_ssm *m, long T, const plm_pf_opts *o)
{
    if (o->N < 1 || o->N > ((size_t)1 << 31))
        return plm_fail(ctx, PLM_EINVAL, "pfilter: particles must be in 1..2^31 (got %zu)", o->N);
    if (T < 1) return plm_fail(ctx, PLM_EINVAL, "pfilter: no observations (T = %ld)", T);
    if (!(o->ess_threshold >= 0))
        return plm_fail(ctx, PLM_EINVAL, "pfilter: ess_threshold must be >= 0 (got %g)", o->ess_threshold);
    if ((unsigned)o->scheme > PLM_RESAMPLE_SSP)
        return plm_fail(ctx, PLM_EINVAL, "pfilter: unknown resampling scheme %d", (int)o->scheme);
    if (o->method == PLM_PF_GUIDED && !m->guided && !o->optimal)
        return plm_fail(ctx, PLM_EINVAL, "pfilter: method \"guided\" needs a model with a proposal, or the "
                        "optimal proposal's derivation");
    if (o->method == PLM_PF_AUXILIARY && !o->gauss && (!o->lookahead || plm_prog_nout(o->lookahead) != 1))
        return plm_fail(ctx, PLM_EINVAL, "pfilter: method \"auxiliary\" needs a look-ahead program of one output, "
                        "or a Gaussian transition");
    if ((unsigned)o->method > PLM_PF_AUXILIARY)
        return plm_fail(ctx, PLM_EINVAL, "pfilter: unknown method %d", (int)o->method);
    return PLM_OK;
}

/* The first chunk of rank r's block when nc chunks are spread over K ranks (rank 0 gets the first). */
static size_t part_lo(size_t nc, int r, int K)
{
    return (nc * (size_t)r + (size_t)K - 1) / (size_t)K;
}

/* How the particles are spread: this rank holds the n particles of chunks [c0, c0 + nc) of the global
** chunking, the first of them global particle off. One rank (or a filter run whole): all of them. */
typedef struct pf_part {
    int rank, K;          /* K = 1: not spread */
    size_t N, nchunks;    /* global */
    size_t c0, nc, n, off;
    double *g;            /* the gathers' buffer: nchunks * gw + K + 1 doubles */
    size_t *counts;       /* 4 K counts */
} pf_part;

static size_t part_first(const pf_part *P, int r)
{
    size_t a = part_lo(P->nchunks, r, P->K) * PF_CHUNK;
    return a < P->N ? a : P->N;
}

/* Where this rank writes its w doubles per chunk (chunk c0 + c at slot + c w) for gather(). */
static double *gather_slot(const pf_part *P, size_t w)
{
    return P->g + (size_t)P->rank + P->c0 * w + 1;
}

/* Every rank's chunk records (w doubles each, written at gather_slot) into g in global chunk order, chunk c
** at g + c w, on every rank. Each rank's status travels in front of its records, so a failure on any rank
** stops all of them at the same step; the lowest failing rank's status is returned (with a message naming
** the rank on the ranks that did not fail). */
static plm_status gather(plm_ctx *ctx, pf_part *P, size_t w, plm_status mine)
{
    plm_status st = PLM_OK;
    int r, bad = 0;
    P->g[(size_t)P->rank + P->c0 * w] = (double)mine;
    for (r = 0; r < P->K; r++)
        P->counts[r] = (part_lo(P->nchunks, r + 1, P->K) - part_lo(P->nchunks, r, P->K)) * w * sizeof(double) +
                       sizeof(double);
    if (P->K > 1 && plm_comm_allgatherv(ctx, NULL, P->counts, P->g)) return ctx->status;
    /* rank r's part sits at r + lo_r w: its status, then its records, which move down by r + 1 */
    for (r = 0; r < P->K; r++) {
        size_t lo = part_lo(P->nchunks, r, P->K), hi = part_lo(P->nchunks, r + 1, P->K);
        double s = P->g[(size_t)r + lo * w];
        if (s != 0 && !st) st = (plm_status)s, bad = r;
        memmove(P->g + lo * w, P->g + (size_t)r + lo * w + 1, (hi - lo) * w * sizeof *P->g);
    }
    if (st && !mine) plm_fail(ctx, st, "pfilter: rank %d failed (its message says why)", bad);
    return st;
}

/* Resampling over ranks (see pfilter.h): the runs of this rank's chunks, the slots past the total for the
** last positive weight of all, then every run's particle copied into xo where its slots are local or sent to
** the rank that holds them. cw: every chunk's total normalised weight. */
static plm_status dist_resample(plm_ctx *ctx, pf_part *P, const double *W, const double *cw, const double *x, double *xo,
                                int dim, plm_rng *rr, size_t *src, size_t *cnt, double *start)
{
    const size_t N = P->N, n = P->n, rec = (size_t)dim + 2;
    const int K = P->K;
    double u = plm_rng_uniform(rr), dm = (double)N, *sbuf = NULL, *rbuf = NULL;
    size_t c, nr, r, j, tail, lastpos, *sc = P->counts, *sd = sc + K, *rc = sd + K, *rd = rc + K, ns = 0, nrv = 0;
    plm_status st = PLM_OK;
    int q, k, pass, has_tail = 0;
    start[0] = 0;
    for (c = 0; c < P->nchunks; c++) start[c + 1] = start[c] + cw[c] * dm;
    nr = plm_resample_systematic_runs(W, n, PF_CHUNK, P->nc, start + P->c0, u, N, src, cnt);
    tail = plm_resample_slots_below(start[P->nchunks], u, N);
    if (tail < N) {   /* rounding left slots past the total: the last positive weight of all takes them */
        uint64_t lp;
        for (j = n; j > 0 && !(W[j - 1] > 0); j--) continue;
        lp = j > 0 ? P->off + j : 0;
        if ((st = plm_comm_allreduce_u64(ctx, &lp, 1, PLM_COMM_MAX))) return st;
        lastpos = lp ? (size_t)lp - 1 : 0;
        if (lastpos >= P->off && lastpos < P->off + n) {   /* ours: one more run, placed by hand below */
            src[nr] = lastpos - P->off;
            cnt[nr++] = N - tail;
            has_tail = 1;
        }
    }
    /* Two walks over the runs in slot order, split at the ranks' blocks (ranks hold slots in order, so q only
    ** moves forward): the first copies the slots that stay here and counts the entries for each other rank,
    ** the second writes those entries (the slot on the receiving rank, how many, the particle). */
    for (pass = 0; pass < 2; pass++) {
        size_t slot = plm_resample_slots_below(start[P->c0], u, N), e = 0;
        for (q = 0; q < K; q++) sc[q] = pass ? sc[q] : 0;
        for (q = 0, r = 0; r < nr; r++) {
            size_t s0 = has_tail && r == nr - 1 ? tail : slot, m = cnt[r], a = src[r];
            slot += m;
            while (m > 0) {
                size_t take;
                while (part_first(P, q + 1) <= s0) q++;
                take = part_first(P, q + 1) - s0 < m ? part_first(P, q + 1) - s0 : m;
                if (q == P->rank) {
                    if (!pass)
                        for (k = 0; k < dim; k++)
                            for (j = 0; j < take; j++) xo[(size_t)k * n + s0 - P->off + j] = x[(size_t)k * n + a];
                } else if (!pass)
                    sc[q]++;
                else {
                    double *E = sbuf + e++ * rec;
                    E[0] = (double)(s0 - part_first(P, q));
                    E[1] = (double)take;
                    for (k = 0; k < dim; k++) E[2 + k] = x[(size_t)k * n + a];
                }
                s0 += take, m -= take;
            }
        }
        if (pass) break;
        /* how many entries come from each rank, then room for them */
        {
            size_t *in = malloc(2 * (size_t)K * sizeof *in), *bytes = in + K;
            if (!in) return plm_fail(ctx, PLM_ENOMEM, "pfilter: out of memory");
            for (q = 0; q < K; q++) bytes[q] = sizeof(size_t), sd[q] = rd[q] = (size_t)q * sizeof(size_t);
            st = plm_comm_alltoallv(ctx, sc, bytes, sd, in, bytes, rd);
            for (q = 0; q < K; q++) rc[q] = in[q], nrv += in[q], ns += sc[q];
            free(in);
            if (st) return st;
        }
        sbuf = malloc((ns * rec + 1) * sizeof *sbuf);
        rbuf = malloc((nrv * rec + 1) * sizeof *rbuf);
        if (!sbuf || !rbuf) {
            free(sbuf), free(rbuf);
            return plm_fail(ctx, PLM_ENOMEM, "pfilter: out of memory for %zu particles to move", ns > nrv ? ns : nrv);
        }
    }
    {
        size_t so = 0, ro = 0;
        for (q = 0; q < K; q++) {
            sd[q] = so, sc[q] *= rec * sizeof *sbuf, so += sc[q];
            rd[q] = ro, rc[q] *= rec * sizeof *rbuf, ro += rc[q];
        }
    }
    st = plm_comm_alltoallv(ctx, sbuf, sc, sd, rbuf, rc, rd);
    for (r = 0; r < nrv && !st; r++) {
        const double *E = rbuf + r * rec;
        size_t s0 = (size_t)E[0], m = (size_t)E[1];
        for (k = 0; k < dim; k++)
            for (j = 0; j < m; j++) xo[(size_t)k * n + s0 + j] = E[2 + k];
    }
    free(sbuf);
    free(rbuf);
    return st;
}

plm_status plm_pf_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_pf_opts *o,
                      plm_pf_result *res)
{
    const size_t N = o->N, dim = (size_t)m->dim;
    const int ydim = m->ydim, nmom = o->moments ? plm_prog_nout(o->moments) : 0;
    const double logN = log((double)N);
    pf_buf B;
    pf_part P;
    plm_rng rr;
    plm_status st;
    size_t i, k, n, nchunks, gw;
    long t;
    int j, nthreads;
    upd_job U;
    memset(res, 0, sizeof *res);
    memset(&B, 0, sizeof B);
    memset(&P, 0, sizeof P);
    if ((st = check_opts(ctx, m, T, o))) return st;
    nchunks = (N + PF_CHUNK - 1) / PF_CHUNK;
    P.N = N;
    P.nchunks = nchunks;
    P.K = 1;
    if (o->distribute && plm_comm_size() > 1 && !o->history && !o->hook && o->method != PLM_PF_AUXILIARY &&
        o->scheme == PLM_RESAMPLE_SYSTEMATIC) {
        P.K = plm_comm_size();
        P.rank = plm_comm_rank();
    }
    P.c0 = part_lo(nchunks, P.rank, P.K);
    P.nc = part_lo(nchunks, P.rank + 1, P.K) - P.c0;
    P.off = part_first(&P, P.rank);
    P.n = n = part_first(&P, P.rank + 1) - P.off;
    /* per chunk: max, sum, bad and the first particle (first gather); sum W^2, sum W and 2 dim moments (second);
    ** nmom moments (third) */
    gw = 3 + dim;
    if (gw < 2 + 2 * dim) gw = 2 + 2 * dim;
    if (gw < (size_t)nmom) gw = (size_t)nmom;
    B.x = malloc((dim * n + 1) * sizeof *B.x);
    B.xo = malloc((dim * n + 1) * sizeof *B.xo);
    B.inc = malloc((n + 1) * sizeof *B.inc);
    B.lw = malloc((n + 1) * sizeof *B.lw);
    B.W = malloc((n + 1) * sizeof *B.W);
    B.cnt = malloc((n + n / PF_CHUNK + 2) * sizeof *B.cnt);
    B.anc = malloc((n + n / PF_CHUNK + 2) * sizeof *B.anc);
    B.rng = malloc((n + 1) * sizeof *B.rng);
    B.chunk = malloc((nchunks * (4 + 2 * dim) + nchunks + 2) * sizeof *B.chunk);
    B.cbad = malloc(nchunks * sizeof *B.cbad);
    P.g = malloc((nchunks * gw + (size_t)P.K + 1) * sizeof *P.g);
    P.counts = malloc(4 * (size_t)P.K * sizeof *P.counts);
    if (o->method == PLM_PF_AUXILIARY) B.leta = malloc(N * sizeof *B.leta);
    if (o->method == PLM_PF_GUIDED && o->optimal) B.xm = malloc((dim * n + 1) * sizeof *B.xm);
    if (o->hook) {
        B.xh = malloc(dim * N * sizeof *B.xh);
        B.lwh = malloc(N * sizeof *B.lwh);
    }
    if (nmom) {
        B.mom = malloc(((size_t)nmom * n + 1) * sizeof *B.mom);
        B.momout = malloc((size_t)nmom * sizeof *B.momout);
    }
    res->T = T;
    res->N = N;
    res->dim = (int)dim;
    res->nmom = nmom;
    res->logz_inc = malloc((size_t)T * sizeof *res->logz_inc);
    res->ess = malloc((size_t)T * sizeof *res->ess);
    res->resampled = calloc((size_t)T, 1);
    res->means = malloc((size_t)T * dim * sizeof *res->means);
    res->vars = malloc((size_t)T * dim * sizeof *res->vars);
    if (nmom) res->moments = malloc((size_t)T * (size_t)nmom * sizeof *res->moments);
    if (o->history) {
        res->xs = malloc((size_t)T * dim * N * sizeof *res->xs);
        res->logw = malloc((size_t)T * N * sizeof *res->logw);
        res->anc = malloc((size_t)T * N * sizeof *res->anc);
    }
    if (!B.x || !B.xo || !B.inc || !B.chunk || !B.cbad || !B.lw || !B.W || !B.cnt || !B.anc || !B.rng || !P.g ||
        !P.counts || (o->method == PLM_PF_AUXILIARY && !B.leta) || (o->method == PLM_PF_GUIDED && o->optimal && !B.xm) ||
        (nmom && (!B.mom || !B.momout)) || (o->hook && (!B.xh || !B.lwh)) || !res->logz_inc ||
        !res->ess || !res->resampled || !res->means || !res->vars || (nmom && !res->moments) ||
        (o->history && (!res->xs || !res->logw || !res->anc))) {
        st = plm_fail(ctx, PLM_ENOMEM, "pfilter: out of memory (%.0f MB for %zu particles%s)",
                      plm_pf_bytes(m, T, o, nmom) / 1e6, N, o->history ? " with history" : "");
        goto done;   /* PLM_ENOMEM on one rank of several ends the job (it cannot tell the others) */
    }
    for (j = 0; j < nmom; j++) B.momout[j] = B.mom + (size_t)j * n;
    /* threads only pay for several thousand particles (waking the pool costs more below); results do not
    ** depend on the count */
    nthreads = n >= 8 * PLM_EXPR_BLOCK ? o->nthreads : 1;
    for (i = 0; i < n; i++) plm_rng_init(&B.rng[i], o->seed, (uint64_t)(P.off + i) + 1);
    plm_rng_init(&rr, o->seed, 0);
    res->logz = 0;

    for (t = 1; t <= T; t++) {
        const double *y = ys + (size_t)(t - 1) * (size_t)ydim;
        int missing = 0, resample = 0;
        double lz, s2;
        plm_status mst = PLM_OK;   /* this rank's failure before the first gather (all ranks learn of it there) */
        for (j = 0; j < ydim; j++) missing |= isnan(y[j]);
        if (plm_interrupted()) {
            mst = plm_fail(ctx, PLM_EINTR, "pfilter: interrupted at t = %ld", t);
        } else if (t == 1) {
            if (n) mst = missing ? plm_ssm_init_sample(ctx, m, n, B.x, n, B.rng, nthreads)
                                 : plm_ssm_step(ctx, m, 1, n, NULL, y, B.x, n, B.inc, B.rng, nthreads);
            for (i = 0; i < n; i++) B.lw[i] = -logN;
            for (i = 0; i < n; i++) B.anc[i] = i;
        } else {
            double A = 0, ess1;
            if (o->hook) {   /* the particles of t - 1 as the hook will see them */
                memcpy(B.xh, B.x, dim * N * sizeof *B.x);
                memcpy(B.lwh, B.lw, N * sizeof *B.lw);
            }
            /* first stage: W holds the normalised weights of t - 1; the auxiliary filter tilts them by eta
            ** (never spread over ranks: n = N) */
            if (o->method == PLM_PF_AUXILIARY && !missing) {
                double *out = B.leta;
                if (o->lookahead)
                    st = eval_at(ctx, m, o->lookahead, t, N, B.x, y, &out, nthreads);
                else if (!(st = plm_ssm_gauss_mean(ctx, o->gauss, t, N, B.x, B.xo, nthreads)))
                    st = plm_ssm_obs_logpdf(ctx, m, t, N, B.xo, N, y, B.leta, nthreads);
                if (st) goto done;
                for (i = 0; i < N; i++) B.inc[i] = B.lw[i] + B.leta[i];
                A = plm_resample_normalise(B.inc, N, B.W);
                if (!isfinite(A)) {
                    st = bad_weights(ctx, B.inc, N, 0, t, y, ydim, A, "look-ahead weight");
                    goto done;
                }
            } else if (B.leta)
                for (i = 0; i < N; i++) B.leta[i] = 0;
            /* W is the update's, whose ESS is known, unless the auxiliary filter tilted it */
            ess1 = o->method == PLM_PF_AUXILIARY && !missing ? 1 / dot4(B.W, B.W, N) : res->ess[t - 2];
            resample = o->ess_threshold >= 1 || ess1 < o->ess_threshold * (double)N;
            if (resample) {
                /* inc is free here: SSP's scratch */
                double *cw = B.chunk + 3 * nchunks;
                if (P.K > 1) {   /* over ranks: cw holds every chunk's total since the update */
                    if ((st = dist_resample(ctx, &P, B.W, cw, B.x, B.xo, (int)dim, &rr, B.anc, B.cnt,
                                            B.chunk + nchunks * (4 + 2 * dim))))
                        goto done;
                } else if (o->scheme == PLM_RESAMPLE_SYSTEMATIC) {   /* the common case: no checks, on threads */
                    size_t c;
                    if (o->method == PLM_PF_AUXILIARY && !missing)   /* W was tilted since the update */
                        for (c = 0; c < nchunks; c++)
                            cw[c] = sum4(B.W + c * PF_CHUNK, N - c * PF_CHUNK < PF_CHUNK ? N - c * PF_CHUNK : PF_CHUNK);
                    plm_resample_systematic_chunked(B.W, N, N, PF_CHUNK, cw, &rr, B.anc, B.cnt,
                                                    B.chunk + nchunks * (4 + 2 * dim), B.x, B.xo, (int)dim, nthreads);
                } else {
                    if ((st = plm_resample_counts(ctx, o->scheme, B.W, N, N, &rr, B.cnt, B.inc))) goto done;
                    plm_resample_ancestors(B.cnt, N, B.anc);
                    for (k = 0; k < dim; k++) {
                        const double *src = B.x + k * N;
                        double *dst = B.xo + k * N;
                        for (i = 0; i < N; i++) dst[i] = src[B.anc[i]];
                    }
                }
                {
                    double *sw = B.x;
                    B.x = B.xo;
                    B.xo = sw;
                }
                if (B.leta)
                    for (i = 0; i < N; i++) B.lw[i] = A - logN - B.leta[B.anc[i]];
                else
                    for (i = 0; i < n; i++) B.lw[i] = -logN;
            } else
                for (i = 0; i < n; i++) B.anc[i] = i;
            res->resampled[t - 1] = (unsigned char)resample;
            /* the move, in place */
            if (n == 0)
                mst = PLM_OK;
            else if (missing)
                mst = plm_ssm_trans_sample(ctx, m, t, n, B.x, B.x, n, B.rng, nthreads);
            else if (o->method == PLM_PF_GUIDED && o->optimal) {
                /* xo is free after resampling: the new particles go there, the old ones stay for the weight */
                double *sw = B.xo;
                mst = plm_ssm_optimal_step(ctx, o->optimal, t, n, B.x, y, B.xo, B.xm, B.inc, B.rng, nthreads);
                B.xo = B.x;
                B.x = sw;
            } else if (o->method == PLM_PF_GUIDED)
                mst = plm_ssm_step_guided(ctx, m, t, n, B.x, y, B.x, n, B.inc, B.rng, nthreads);
            else
                mst = plm_ssm_step(ctx, m, t, n, B.x, y, B.x, n, B.inc, B.rng, nthreads);
        }
        /* the update, in two parallel passes over this rank's chunks (see upd_exp): log weights and the
        ** exponentials, then normalisation and the moments; each pass's per-chunk values are gathered from
        ** every rank and combined in chunk order. The variances are second moments about the first particle
        ** (a value inside the cloud, so the subtraction loses nothing to cancellation) */
        {
            double shift[64], *cmom, *gs;
            size_t c, c0 = P.c0;
            int bad = 0;
            U.N = n;
            U.dim = (int)dim;
            U.missing = missing;
            U.lw = B.lw;
            U.W = B.W;
            U.inc = B.inc;
            U.x = B.x;
            U.shift = shift;
            U.cmax = B.chunk + c0;
            U.csum = B.chunk + nchunks + c0;
            U.cs2 = B.chunk + 2 * nchunks + c0;
            U.cw = B.chunk + 3 * nchunks + c0;
            U.cmom = B.chunk + 4 * nchunks + c0 * 2 * dim;
            cmom = B.chunk + 4 * nchunks;
            U.cbad = B.cbad + c0;
            if (!mst) plm_parallel_for(nthreads, P.nc, 1, upd_exp, &U);
            gs = gather_slot(&P, 3 + dim);
            for (c = 0; c < P.nc && !mst; c++) {
                gs[c * (3 + dim)] = U.cmax[c];
                gs[c * (3 + dim) + 1] = U.csum[c];
                gs[c * (3 + dim) + 2] = U.cbad[c];
                for (k = 0; k < dim; k++) gs[c * (3 + dim) + 3 + k] = B.x[k * n + c * PF_CHUNK];
            }
            if ((st = gather(ctx, &P, 3 + dim, mst))) goto done;
            for (c = 0; c < nchunks; c++) {
                B.chunk[c] = P.g[c * (3 + dim)];
                B.chunk[nchunks + c] = P.g[c * (3 + dim) + 1];
                B.cbad[c] = (int)P.g[c * (3 + dim) + 2];
            }
            for (k = 0; k < dim; k++) shift[k] = P.g[3 + k];   /* particle 0's */
            U.M = -INFINITY;
            for (c = 0; c < nchunks; c++) {
                bad |= B.cbad[c];
                U.M = fmax(U.M, B.chunk[c]);
            }
            if (bad || U.M == -INFINITY) {
                st = bad_weights(ctx, B.lw, n, P.off, t, y, ydim, bad ? NAN : -INFINITY, "log weight");
                goto done;
            }
            U.sum = 0;
            for (c = 0; c < nchunks; c++) U.sum += B.chunk[nchunks + c] * exp(B.chunk[c] - U.M);
            lz = U.lz = U.M + log(U.sum);
            plm_parallel_for(nthreads, P.nc, 1, upd_norm, &U);
            gs = gather_slot(&P, 2 + 2 * dim);
            for (c = 0; c < P.nc; c++) {
                gs[c * (2 + 2 * dim)] = U.cs2[c];
                gs[c * (2 + 2 * dim) + 1] = U.cw[c];
                for (k = 0; k < 2 * dim; k++) gs[c * (2 + 2 * dim) + 2 + k] = U.cmom[c * 2 * dim + k];
            }
            if ((st = gather(ctx, &P, 2 + 2 * dim, PLM_OK))) goto done;
            for (c = 0; c < nchunks; c++) {
                B.chunk[2 * nchunks + c] = P.g[c * (2 + 2 * dim)];
                B.chunk[3 * nchunks + c] = P.g[c * (2 + 2 * dim) + 1];
                for (k = 0; k < 2 * dim; k++) cmom[c * 2 * dim + k] = P.g[c * (2 + 2 * dim) + 2 + k];
            }
            s2 = 0;
            for (c = 0; c < nchunks; c++) s2 += B.chunk[2 * nchunks + c];
            for (k = 0; k < dim; k++) {
                double mean = 0, m2 = 0;
                for (c = 0; c < nchunks; c++) {
                    mean += cmom[c * 2 * dim + k];
                    m2 += cmom[c * 2 * dim + dim + k];
                }
                res->means[(size_t)(t - 1) * dim + k] = mean;
                res->vars[(size_t)(t - 1) * dim + k] = fmax(0, m2 - (mean - shift[k]) * (mean - shift[k]));
            }
        }
        if (missing) lz = 0;   /* exactly: the weights were normalised and stay so */
        res->logz_inc[t - 1] = lz;
        res->logz += lz;
        res->ess[t - 1] = 1 / s2;
        if (nmom) {   /* per chunk, then in chunk order over the ranks */
            double *gs = gather_slot(&P, (size_t)nmom);
            size_t c;
            mst = n ? eval_at(ctx, m, o->moments, t, n, B.x, NULL, B.momout, nthreads) : PLM_OK;
            for (c = 0; c < P.nc && !mst; c++) {
                size_t i0 = c * PF_CHUNK, nn = n - i0 < PF_CHUNK ? n - i0 : PF_CHUNK;
                for (j = 0; j < nmom; j++) gs[c * (size_t)nmom + (size_t)j] = dot4(B.W + i0, B.momout[j] + i0, nn);
            }
            if ((st = gather(ctx, &P, (size_t)nmom, mst))) goto done;
            for (j = 0; j < nmom; j++) {
                double s = 0;
                for (c = 0; c < nchunks; c++) s += P.g[c * (size_t)nmom + (size_t)j];
                res->moments[(size_t)(t - 1) * (size_t)nmom + (size_t)j] = s;
            }
        }
        if (o->hook && (st = o->hook(ctx, o->hook_ud, t, N, t > 1 ? B.xh : NULL, t > 1 ? B.lwh : NULL, B.x, B.lw,
                                    B.anc)))
            goto done;
        if (o->history) {
            memcpy(res->xs + (size_t)(t - 1) * dim * N, B.x, dim * N * sizeof *B.x);
            memcpy(res->logw + (size_t)(t - 1) * N, B.lw, N * sizeof *B.lw);
            for (i = 0; i < N; i++) res->anc[(size_t)(t - 1) * N + i] = (uint32_t)B.anc[i];
        }
    }
    st = PLM_OK;
done:
    free_buf(&B);
    free(P.g);
    free(P.counts);
    if (st) plm_pf_result_free(res);
    return st;
}

static int spd_solve(double *H, double *g, int d);
static plm_status gauss_eval(plm_ctx *ctx, const plm_ssm_gauss *G, const plm_prog *p, long t, size_t n,
                             const double *xprev, double *out, int nthreads);

plm_status plm_ssm_gauss_init(plm_ctx *ctx, const plm_ssm *m, plm_ssm_gauss *G)
{
    int d = m->dim, k, z[64], g[64], *H = malloc((size_t)d * (size_t)d * sizeof *H);
    unsigned xbit = 1u << PLM_GRP_X;
    plm_status st = PLM_OK;
    memset(G, 0, sizeof *G);
    G->m = m;
    if (d < 1 || d > 64) {
        free(H);
        return plm_fail(ctx, PLM_EINVAL, "ssm: dim must be in 1..64 (got %d)", d);
    }
    if (!H) {
        st = plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
        goto done;
    }
    for (k = 0; k < d; k++) z[k] = plm_graph_input(m->g, PLM_GRP_Z, k);
    if ((st = plm_graph_grad(ctx, m->g, m->trans_lp, d, z, g))) goto done;
    for (k = 0; k < d && !st; k++) st = plm_graph_grad(ctx, m->g, g[k], d, z, H + k * d);
    /* Z is uniform in both programs: bound to x_t = 0 */
    if (st || (st = plm_prog_compile(ctx, m->g, d, g, xbit, &G->grad)) ||
        (st = plm_prog_compile(ctx, m->g, d * d, H, xbit, &G->hess)))
        goto done;
    G->const_cov = 1;
    for (k = 0; k < d; k++) {
        if (plm_prog_uses(G->hess, PLM_GRP_Z, k)) {
            st = plm_fail(ctx, PLM_ENOTSUP, "ssm: the transition is not Gaussian in the new state (its log density "
                          "is not quadratic in component %d)", k + 1);
            goto done;
        }
        if (plm_prog_uses(G->hess, PLM_GRP_X, k)) G->const_cov = 0;
    }
    {   /* a discrete state has a zero Hessian: Gaussian means a negative definite one, checked at t = 2 */
        double h[64 * 64], g0[64] = {0};
        if (gauss_eval(ctx, G, G->hess, 2, 1, NULL, h, 1) || spd_solve(h, g0, d))
            st = plm_fail(ctx, PLM_ENOTSUP, "ssm: the transition is not Gaussian in the new state (its log density "
                          "is not concave quadratic)");
    }
done:
    free(H);
    return st;
}

/* Solve (-H) v = g in place for a d x d symmetric positive definite -H (Cholesky; H is overwritten). */
static int spd_solve(double *H, double *g, int d)
{
    int i, j, k;
    for (i = 0; i < d * d; i++) H[i] = -H[i];
    for (j = 0; j < d; j++) {
        double s = H[j * d + j];
        for (k = 0; k < j; k++) s -= H[j * d + k] * H[j * d + k];
        if (!(s > 0)) return -1;
        H[j * d + j] = sqrt(s);
        for (i = j + 1; i < d; i++) {
            double v = H[i * d + j];
            for (k = 0; k < j; k++) v -= H[i * d + k] * H[j * d + k];
            H[i * d + j] = v / H[j * d + j];
        }
    }
    for (i = 0; i < d; i++) {
        for (k = 0; k < i; k++) g[i] -= H[i * d + k] * g[k];
        g[i] /= H[i * d + i];
    }
    for (i = d - 1; i >= 0; i--) {
        for (k = i + 1; k < d; k++) g[i] -= H[k * d + i] * g[k];
        g[i] /= H[i * d + i];
    }
    return 0;
}

static plm_status gauss_eval(plm_ctx *ctx, const plm_ssm_gauss *G, const plm_prog *p, long t, size_t n,
                             const double *xprev, double *out, int nthreads)
{
    const plm_ssm *m = G->m;
    int nout = plm_prog_nout(p), k;
    double zero[64] = {0}, tcb[64], *tc = m->ncov < 63 ? tcb : malloc(((size_t)m->ncov + 1) * sizeof *tc);
    double **o = malloc((size_t)nout * sizeof *o);
    plm_prog_in in[PLM_NGROUPS];
    plm_status st;
    if (!tc || !o) {
        if (tc != tcb) free(tc);
        free(o);
        return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    }
    for (k = 0; k < nout; k++) o[k] = out + (size_t)k * n;
    st = plm_ssm_bind(ctx, m, p, t, tc, in);
    if (!st) {
        in[PLM_GRP_X].p = xprev ? xprev : zero;
        in[PLM_GRP_X].ld = n;
        in[PLM_GRP_Z].p = zero;
        st = plm_prog_eval(ctx, p, n, in, o, NULL, nthreads);
    }
    if (tc != tcb) free(tc);
    free(o);
    return st;
}

plm_status plm_ssm_gauss_mean(plm_ctx *ctx, const plm_ssm_gauss *G, long t, size_t n, const double *xprev, double *mean,
                              int nthreads)
{
    int d = G->m->dim, k, l;
    double *H = malloc((size_t)d * (size_t)d * n * sizeof *H), h[64 * 64], g[64];
    plm_status st;
    size_t i;
    if (!H) return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    if ((st = gauss_eval(ctx, G, G->grad, t, n, xprev, mean, nthreads)) ||
        (st = gauss_eval(ctx, G, G->hess, t, n, xprev, H, nthreads))) {
        free(H);
        return st;
    }
    for (i = 0; i < n; i++) {
        if (d == 1) {   /* the common case without the solver: mean = -g / H */
            mean[i] = -mean[i] / H[i];
            if (!(H[i] < 0)) goto bad;
            continue;
        }
        for (k = 0; k < d; k++) {
            g[k] = mean[(size_t)k * n + i];
            for (l = 0; l < d; l++) h[k * d + l] = H[(size_t)(k * d + l) * n + i];
        }
        if (spd_solve(h, g, d)) goto bad;
        for (k = 0; k < d; k++) mean[(size_t)k * n + i] = g[k];
    }
    free(H);
    return PLM_OK;
bad:
    free(H);
    return plm_fail(ctx, PLM_EDOM, "ssm: the transition covariance at t = %ld is not positive definite (particle %zu)",
                    t, i + 1);
}

plm_status plm_ssm_gauss_log_bound(plm_ctx *ctx, const plm_ssm_gauss *G, long t, double *lb)
{
    int d = G->m->dim, k;
    double h[64 * 64], g[64] = {0}, ld = 0;
    plm_status st;
    if (!G->const_cov)
        return plm_fail(ctx, PLM_ENOTSUP, "ssm: the transition covariance depends on the previous state, so plume "
                        "cannot bound the transition density (give a bound)");
    if ((st = gauss_eval(ctx, G, G->hess, t, 1, NULL, h, 1))) return st;
    if (spd_solve(h, g, d))
        return plm_fail(ctx, PLM_EDOM, "ssm: the transition covariance at t = %ld is not positive definite", t);
    for (k = 0; k < d; k++) ld += log(h[k * d + k]);   /* h holds the Cholesky factor of the precision */
    *lb = ld - 0.5 * d * log(2 * M_PI);
    return PLM_OK;
}

plm_status plm_ssm_optimal_init(plm_ctx *ctx, const plm_ssm *m, plm_ssm_optimal *O)
{
    int d = m->dim, k, x[64], g[64], *H;
    plm_status st;
    memset(O, 0, sizeof *O);
    if ((st = plm_ssm_gauss_init(ctx, m, &O->tr))) return st;
    if (!(H = malloc((size_t)d * (size_t)d * sizeof *H))) return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    for (k = 0; k < d; k++) x[k] = plm_graph_input(m->g, PLM_GRP_X, k);
    st = plm_graph_grad(ctx, m->g, m->obs_lp, d, x, g);
    for (k = 0; k < d && !st; k++) st = plm_graph_grad(ctx, m->g, g[k], d, x, H + k * d);
    /* X is uniform in both programs, bound to x_t = 0 */
    if (!st && !(st = plm_prog_compile(ctx, m->g, d, g, 0, &O->ograd)))
        st = plm_prog_compile(ctx, m->g, d * d, H, 0, &O->ohess);
    free(H);
    if (st) {
        if (st != PLM_ENOMEM)
            st = plm_fail(ctx, PLM_ENOTSUP, "ssm: the observation log density has no derivative in the state (%s)",
                          ctx->msg);
        return st;
    }
    for (k = 0; k < d; k++)
        if (plm_prog_uses(O->ohess, PLM_GRP_X, k))
            return plm_fail(ctx, PLM_ENOTSUP, "ssm: the observation log density is not quadratic in the state "
                            "(its second derivative reads component %d)", k + 1);
    return PLM_OK;
}

/* The observation programs at x = 0 with y bound: one value per output. */
static plm_status obs_eval(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, const double *y, double *out)
{
    int nout = plm_prog_nout(p), k;
    double zero[64] = {0}, tcb[64], *tc = m->ncov < 63 ? tcb : malloc(((size_t)m->ncov + 1) * sizeof *tc);
    double *o[64 * 64];
    plm_prog_in in[PLM_NGROUPS];
    plm_status st;
    if (!tc) return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    for (k = 0; k < nout; k++) o[k] = out + k;
    st = plm_ssm_bind(ctx, m, p, t, tc, in);
    if (!st) {
        in[PLM_GRP_X].p = zero;
        in[PLM_GRP_Y].p = y;
        st = plm_prog_eval(ctx, p, 1, in, o, NULL, 1);
    }
    if (tc != tcb) free(tc);
    return st;
}

/* Solve L^T v = z in place for the lower factor L that spd_solve leaves in H (row-major d x d). */
static void chol_tsolve(const double *L, double *z, int d)
{
    int i, k;
    for (i = d - 1; i >= 0; i--) {
        for (k = i + 1; k < d; k++) z[i] -= L[k * d + i] * z[k];
        z[i] /= L[i * d + i];
    }
}

plm_status plm_ssm_optimal_step(plm_ctx *ctx, const plm_ssm_optimal *O, long t, size_t n, const double *xprev,
                                const double *y, double *xnew, double *mode, double *logw, plm_rng *rng,
                                int nthreads)
{
    const plm_ssm *m = O->tr.m;
    const int d = m->dim, cc = O->tr.const_cov;
    double gob[64], hob[64 * 64], h[64 * 64], g[64], *htr = NULL, *lo = NULL, ldet = 0;
    plm_status st;
    size_t i;
    int k, l;
    if ((st = obs_eval(ctx, m, O->ograd, t, y, gob)) || (st = obs_eval(ctx, m, O->ohess, t, y, hob))) return st;
    /* the transition's gradient at x_t = 0 per particle (into mode), its Hessian once or per particle */
    htr = malloc((cc ? 1 : n) * (size_t)(d * d) * sizeof *htr);
    lo = malloc(2 * n * sizeof *lo);   /* the Gaussian integral's log, then log p(y | mode) */
    if (!htr || !lo) {
        st = plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
        goto done;
    }
    if ((st = gauss_eval(ctx, &O->tr, O->tr.grad, t, n, xprev, mode, nthreads)) ||
        (st = gauss_eval(ctx, &O->tr, O->tr.hess, t, cc ? 1 : n, cc ? NULL : xprev, htr, nthreads)))
        goto done;
    if (cc) {   /* one precision for every particle: factor it once */
        for (k = 0; k < d * d; k++) h[k] = htr[k] + hob[k];
        for (k = 0; k < d; k++) g[k] = 0;
        if (spd_solve(h, g, d)) {
            i = 0;
            goto bad;
        }
        for (k = 0; k < d; k++) ldet += log(h[k * d + k]);
    }
    for (i = 0; i < n; i++) {
        double z[64];
        if (!cc) {
            for (k = 0; k < d * d; k++) h[k] = htr[(size_t)k * n + i] + hob[k];
            for (k = 0; k < d; k++) g[k] = mode[(size_t)k * n + i] + gob[k];
            if (spd_solve(h, g, d)) goto bad;
            for (ldet = 0, k = 0; k < d; k++) ldet += log(h[k * d + k]);
        } else {   /* the mode from the shared factor: forward then back substitution */
            for (k = 0; k < d; k++) {
                g[k] = mode[(size_t)k * n + i] + gob[k];
                for (l = 0; l < k; l++) g[k] -= h[k * d + l] * g[l];
                g[k] /= h[k * d + k];
            }
            chol_tsolve(h, g, d);
        }
        for (k = 0; k < d; k++) z[k] = plm_rng_normal(&rng[i]);
        chol_tsolve(h, z, d);
        for (k = 0; k < d; k++) {
            mode[(size_t)k * n + i] = g[k];
            xnew[(size_t)k * n + i] = g[k] + z[k];
        }
        lo[i] = 0.5 * d * log(2 * M_PI) - ldet;
    }
    /* the weight: the two densities at the mode and the Gaussian integral around it */
    if ((st = plm_ssm_trans_logpdf(ctx, m, t, n, xprev, mode, n, logw, nthreads)) ||
        (st = plm_ssm_obs_logpdf(ctx, m, t, n, mode, n, y, lo + n, nthreads)))
        goto done;
    for (i = 0; i < n; i++) logw[i] += lo[n + i] + lo[i];
    st = PLM_OK;
    goto done;
bad:
    st = plm_fail(ctx, PLM_EDOM, "ssm: the precision of the optimal proposal at t = %ld is not positive definite "
                  "(particle %zu)", t, i + 1);
done:
    free(htr);
    free(lo);
    return st;
}
