/* results.h -- what an engine hands back, built the same way by every engine: draws made from traces (one
** column per scalar of each latent or deterministic site, in order of first appearance), log weights, named
** per-step series (ESS and log-normaliser history, per-chain acceptance rates) and named scalars (logz,
** steps, resamples). Draws can be streamed to a CSV file as they are added. A plm_results is malloc'd
** (plm_results_free); its draws table is GC memory, rooted until the results are freed. */
#ifndef PLM_RESULTS_H
#define PLM_RESULTS_H

#include <stddef.h>

#include "ctx.h"
#include "draws.h"
#include "trace.h"

typedef struct plm_results plm_results;

/* New results with nchains chains; weighted marks importance-weighted draws. */
plm_status plm_results_new(plm_ctx *ctx, int nchains, int weighted, plm_results **out);
void plm_results_free(plm_results *R);
plm_draws *plm_results_draws(const plm_results *R);

/* Write every draw added from now on to a CSV file at path (the layout of plm_draws_write_csv). When a site
** appears after the header was written, the table so far is written to path.new, which replaces path by
** rename: a reader always finds one complete CSV. PLM_EIO when the file cannot be opened or rewritten. */
plm_status plm_results_stream(plm_ctx *ctx, plm_results *R, const char *path);
/* Close the stream (PLM_EIO when the last writes failed); a no-op without one. */
plm_status plm_results_finish(plm_ctx *ctx, plm_results *R);

/* Append the latent and deterministic values of tr as one draw of chain with log weight lw (categorical
** values shifted to the labels users see, dist->base), and the trace's log density (logprior + loglik) as the
** draw's lp. Sites absent from this draw hold the absent value (plm_draws_is_absent). */
plm_status plm_results_add_trace(plm_ctx *ctx, plm_results *R, const plm_trace *tr, int chain, double lw);

/* Named series: push one value (the series is created on first use); read one back (NULL when absent). */
plm_status plm_results_push(plm_ctx *ctx, plm_results *R, const char *name, double v);
const double *plm_results_series(const plm_results *R, const char *name, size_t *n);
/* Named scalars (integer ones keep their integer type for the binding). Setting one again replaces it. */
plm_status plm_results_set(plm_ctx *ctx, plm_results *R, const char *name, double v);
plm_status plm_results_set_int(plm_ctx *ctx, plm_results *R, const char *name, long long v);

/* Iterate over series and scalars in the order they were created (i from 0 while it returns 1). */
int plm_results_series_at(const plm_results *R, int i, const char **name, const double **v, size_t *n);
int plm_results_scalar_at(const plm_results *R, int i, const char **name, double *v, long long *iv, int *isint);

#endif
