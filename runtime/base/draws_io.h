/* draws_io.h -- draws in the layouts other tools read, and read back: CmdStan's CSV (one file per chain, for
** ArviZ's from_cmdstan and CmdStanPy's from_csv), ArviZ InferenceData's JSON (for ArviZ's from_json) and
** plume's own CSV (plm_draws_write_csv). Readers return a new draws table (GC memory) and, where the file
** records them, the run's settings. In every layout a NaN value and a site absent from a draw stay apart. */
#ifndef PLM_DRAWS_IO_H
#define PLM_DRAWS_IO_H

#include <stdio.h>

#include "ctx.h"
#include "draws.h"

/* The run's settings written into headers and read back from them. */
typedef struct plm_draws_meta {
    char method[32];         /* plume's method ("mh", "nuts", "is", ...); "" when unknown */
    char model[128];         /* model name for CmdStan's `model =` line; "" writes "plume" */
    long long seed;
    int has_seed;
    long samples, warmup, thin;   /* -1 when unknown */
} plm_draws_meta;

void plm_draws_meta_clear(plm_draws_meta *m);

/* CmdStan's CSV for one chain: a comment header with the settings (method, seed, samples, warmup, thin,
** chains, plume's version), the column line -- lp__ (a column named lp__, else the draws' recorded log
** density, else 0 as CmdStan's fixed_param writes), the sampler columns D has (accept_stat__, stepsize__,
** treedepth__, n_leapfrog__, divergent__, energy__, then other names ending in "__"), log_weight__ for
** weighted draws, then the other columns with x[1] written x.1 --, one row per draw, numbers as %.17g, NaN
** and infinities as CmdStan writes them (nan, inf, -inf). An absent site is written nan (ArviZ's reader
** needs a number in every field) and listed in a trailing comment line "# absent: <column> <draw> ...". */
plm_status plm_draws_write_cmdstan(plm_ctx *ctx, const plm_draws *D, int chain, const plm_draws_meta *m, FILE *f);

/* ArviZ InferenceData's JSON (the dict of InferenceData.to_dict): groups "posterior", "sample_stats" (lp and
** the sampler columns under ArviZ's names: acceptance_rate, step_size, tree_depth, n_steps, diverging,
** energy; log_weight for weighted draws) and "log_likelihood" (columns named log_lik or log_lik[i]), each
** variable a chain x draw array (x draw x n for a vector x[1..n]), and "attrs" with the settings. NaN and
** absent values are null; absent ones are also listed in attrs.plume_absent (column -> per-chain 0-based
** draw indices); infinities are 1e999 / -1e999, which JSON parsers read as infinities. Written a variable
** and chain at a time, so memory stays small whatever the number of draws. */
plm_status plm_draws_write_json(plm_ctx *ctx, const plm_draws *D, const plm_draws_meta *m, FILE *f);

/* Read plume's CSV (header "chain,draw,...[,log_weight]"). PLM_EIO when path cannot be opened, PLM_EPARSE
** with "path:line: ..." when it is malformed. */
plm_status plm_draws_read_csv(plm_ctx *ctx, const char *path, plm_draws **out);

/* Read CmdStan CSV files, file i as chain i, with the settings of the first file's header into m. x.1 becomes
** x[1]; lp__ becomes a column when the files have accept_stat__ (an MCMC kernel's draws), else the draws'
** recorded log density; log_weight__ becomes the log weights. */
plm_status plm_draws_read_cmdstan(plm_ctx *ctx, const char *const *paths, int npaths, plm_draws **out,
                                  plm_draws_meta *m);

/* Read the JSON of plm_draws_write_json (or any InferenceData JSON whose variables have at most one dimension
** beyond chain and draw). */
plm_status plm_draws_read_json(plm_ctx *ctx, const char *path, plm_draws **out, plm_draws_meta *m);

#endif
