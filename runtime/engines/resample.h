/* resample.h -- resampling for particle methods, on plain arrays: offspring counts and ancestor indices from
** normalised weights (multinomial, residual, stratified, systematic, SSP), the unbiased without-replacement
** resampling of Fearnhead and Clifford (2003), effective sample sizes, and ancestor bookkeeping.
** Arrays are caller-owned. Every random draw comes from the plm_rng the caller passes, in a fixed order, so a
** result depends only on (weights, seed, stream), never on threads. */
#ifndef PLM_RESAMPLE_H
#define PLM_RESAMPLE_H

#include <stddef.h>

#include "ctx.h"
#include "rng.h"

typedef enum plm_resample_scheme {
    PLM_RESAMPLE_MULTINOMIAL,   /* m independent draws (sorted uniforms, O(n + m)) */
    PLM_RESAMPLE_RESIDUAL,      /* floor(m w_i) copies, the remainder multinomial on the residual weights */
    PLM_RESAMPLE_STRATIFIED,    /* one uniform in each stratum [j/m, (j+1)/m) */
    PLM_RESAMPLE_SYSTEMATIC,    /* one uniform shifted through all strata */
    PLM_RESAMPLE_SSP            /* Srinivasan sampling process (Gerber, Chopin and Whiteley 2019): counts are
                                ** floor(m w_i) or that plus one, negatively associated */
} plm_resample_scheme;

/* The scheme called `name` ("multinomial", "residual", "stratified", "systematic", "ssp"), or -1. */
int plm_resample_scheme_by_name(const char *name);
const char *plm_resample_scheme_name(plm_resample_scheme s);
/* The names above, comma-separated, for error messages. */
extern const char plm_resample_scheme_list[];

/* Normalise n log weights into w (sum 1) and return log(sum exp(logw)). -inf entries get weight 0. Returns
** -inf (w all 0) when every entry is -inf, NaN when an entry is NaN or +inf (w untouched). */
double plm_resample_normalise(const double *logw, size_t n, double *w);

/* Effective sample size 1 / sum w_i^2 of n log weights (Kish): in [1, n]; 0 when every weight is -inf. */
double plm_resample_ess(const double *logw, size_t n);

/* Conditional ESS (Zhou, Johansen and Aston 2016) of incremental log weights loginc given the normalised
** previous weights W: n (sum W_i v_i)^2 / sum W_i v_i^2, with v_i = exp(loginc_i); in [1, n] (0 when every
** term is 0). It measures the new step's degeneracy alone, whether or not the last step resampled. */
double plm_resample_cess(const double *W, const double *loginc, size_t n);

/* Offspring counts of n particles with normalised weights w (sum 1 within 1e-9, none negative or NaN) into m
** slots: counts[i] >= 0, sum counts = m, E[counts[i]] = m w[i]. scratch is n doubles (used by SSP; may be
** NULL for the other schemes). PLM_EINVAL names a bad weight, or m = 0. */
plm_status plm_resample_counts(plm_ctx *ctx, plm_resample_scheme s, const double *w, size_t n, size_t m,
                               plm_rng *r, size_t *counts, double *scratch);

/* Systematic resampling straight to ancestor indices: the anc[0..m) that plm_resample_counts(SYSTEMATIC)
** followed by plm_resample_ancestors gives for the same weights and stream (the same one uniform is drawn
** from r), in two passes without a branch that depends on the weights. The weights are not checked: the
** caller normalised them itself (finite, >= 0, summing to 1). marks is scratch of m + 1 counts. */
void plm_resample_systematic_ancestors(const double *w, size_t n, size_t m, plm_rng *r, size_t *anc,
                                       size_t *marks);

/* The same on threads: the particles split into fixed chunks of `chunk` (the cumulative weight at a chunk's
** start is the sum of the earlier chunks' totals csum[c], given by the caller, so the chunks run at once), and
** the result depends on `chunk`, never on nthreads. It differs from the function above only where a cumulative
** sum lands within rounding of a point j + u, and keeps its properties: counts are floor or ceil of m w_i,
** ancestors are nondecreasing, a zero weight gets no slot. Scratch: marks of m + n / chunk + 2 counts, start
** of n / chunk + 2 doubles. With src (dim components of n values each) the same pass copies the particles into
** their slots: dst[k m + j] = src[k n + anc[j]] (dst of dim m values, apart from src); src NULL copies none. */
void plm_resample_systematic_chunked(const double *w, size_t n, size_t m, size_t chunk, const double *csum,
                                     plm_rng *r, size_t *anc, size_t *marks, double *start, const double *src,
                                     double *dst, int dim, int nthreads);

/* The slots j in [0, m) whose point j + u lies below c (a cumulative weight scaled by m): the slot boundaries
** plm_resample_systematic_chunked puts at chunk starts. */
size_t plm_resample_slots_below(double c, double u, size_t m);

/* plm_resample_systematic_chunked for a contiguous run of nc of its chunks, without the ancestor array: for
** particle filters whose particles are spread over processes, each holding whole chunks. w holds the n
** weights of these chunks (global chunk boundaries: the first weight starts a chunk), start[0..nc] the scaled
** cumulative weights at their starts and at the end of the last one (as plm_resample_systematic_chunked
** computes them from every chunk's total), u the shared uniform. The slots these chunks fill are
** [plm_resample_slots_below(start[0]), plm_resample_slots_below(start[nc])), in order; they are written as
** runs: slots of run r go to particle src[r] (an index into w), cnt[r] of them (>= 1). Returns the number of
** runs, at most n + nc. The slots past the last chunk's total (rounding) are the caller's, as in the chunked
** function: they go to the last positive weight of all. Concatenating every part's runs gives the ancestors
** of plm_resample_systematic_chunked exactly. */
size_t plm_resample_systematic_runs(const double *w, size_t n, size_t chunk, size_t nc, const double *start, double u,
                                    size_t m, size_t *src, size_t *cnt);

/* Ancestor indices in nondecreasing order: anc[j] for j < m, from counts of n particles (sum m). */
void plm_resample_ancestors(const size_t *counts, size_t n, size_t *anc);

/* Ancestor indices for m slots arranged so that a particle with offspring keeps its own slot: anc[i] = i
** whenever i < m and counts[i] > 0; its other copies fill the slots of particles without offspring (and the
** slots past n). Particle methods use it to move as few particles as possible. */
void plm_resample_ancestors_in_place(const size_t *counts, size_t n, size_t m, size_t *anc);

/* Counts from ancestor indices: counts[i] = number of j < m with anc[j] == i. */
void plm_resample_counts_of(const size_t *anc, size_t m, size_t n, size_t *counts);

/* Fearnhead-Clifford resampling of n weighted particles into at most N without replacement: with c solving
** sum_i min(1, c w_i) = N, particles with c w_i >= 1 are kept with their weight, the rest are resampled
** systematically with probability c w_i each and given weight 1/c, so E[new weight of i] = w_i and no
** particle appears twice. w is normalised. Writes the kept indices (increasing among survivors, then the
** resampled ones) into idx and their new normalised weights into neww (both of room N), and their number into
** *m (< N only when fewer than N weights are positive; n <= N keeps everything). */
plm_status plm_resample_fc(plm_ctx *ctx, const double *w, size_t n, size_t N, plm_rng *r, size_t *idx, double *neww,
                           size_t *m);

#endif
