/* draws.h -- a growable table of posterior draws: chains x draws x named scalar columns, with an optional
** log weight per draw. Columns can appear part-way (a site first seen late): earlier draws hold NaN.
** A plm_draws is GC memory (its arrays are malloc'd and released by a finalizer, so large runs do not
** load the collector with scanning). */
#ifndef PLM_DRAWS_H
#define PLM_DRAWS_H

#include <stddef.h>
#include <stdio.h>

#include "ctx.h"
#include "diag.h"

typedef struct plm_draws plm_draws;

/* A site that did not occur in a draw holds PLM_DRAWS_ABSENT: a quiet NaN with a payload of its own (as R's NA
** is), so "absent" and a NaN value (0/0 recorded by m:deterministic) stay apart with no extra storage.
** Statistics treat both as missing (isnan is true for both); writers and readers keep them apart. Copying a
** double keeps its payload; arithmetic on it does not, so test with plm_draws_is_absent on stored values. */
double plm_draws_absent(void);
int plm_draws_is_absent(double v);

plm_status plm_draws_new(plm_ctx *ctx, int nchains, plm_draws **out);

/* The index of column `name`, adding it when absent (add = 1), or -1 (absent with add = 0, or no memory). */
int plm_draws_col(plm_draws *D, const char *name, int add);

/* Append one draw to `chain`: vals[i] for column i < nvals (columns beyond nvals are absent), log weight lw
** (0 for unweighted samplers). plm_draws_push_lp also records the draw's log density lp (NaN: unknown). */
plm_status plm_draws_push(plm_ctx *ctx, plm_draws *D, int chain, const double *vals, int nvals, double lw);
plm_status plm_draws_push_lp(plm_ctx *ctx, plm_draws *D, int chain, const double *vals, int nvals, double lw,
                             double lp);

int plm_draws_ncols(const plm_draws *D);
int plm_draws_nchains(const plm_draws *D);
size_t plm_draws_len(const plm_draws *D, int chain);       /* draws in one chain */
const char *plm_draws_name(const plm_draws *D, int col);
/* Pointer to the draws of column col in chain (plm_draws_len values); NULL when out of range. */
const double *plm_draws_chain(const plm_draws *D, int col, int chain);
const double *plm_draws_logw(const plm_draws *D, int chain);
/* The recorded log densities of chain's draws (NaN where unknown), or NULL when no draw of D has one. */
const double *plm_draws_lp(const plm_draws *D, int chain);
int plm_draws_weighted(const plm_draws *D);
void plm_draws_set_weighted(plm_draws *D, int weighted);

/* Summaries: weighted draws use plm_diag_summary_weighted over all chains; others plm_diag_summary. */
plm_status plm_draws_summary(plm_ctx *ctx, const plm_draws *D, int col, plm_summary *out);

/* CSV: header "chain,draw,<columns>[,log_weight]", then one row per draw in chain order, numbers as %.17g,
** NaN as "nan" and an absent site as an empty field. (CmdStan's layout and ArviZ's JSON: draws_io.h.) */
plm_status plm_draws_write_csv(plm_ctx *ctx, const plm_draws *D, FILE *f);
/* The pieces, for writing draws as they are produced: the header of the current columns, and draw i of chain. */
void plm_draws_csv_header(const plm_draws *D, FILE *f);
void plm_draws_csv_row(const plm_draws *D, FILE *f, int chain, size_t i);

#endif
