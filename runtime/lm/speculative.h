/* speculative.h -- speculative sampling (Leviathan, Kalman, Matias 2023; Chen et al. 2023) as an exact sampler:
** a cheap draft model proposes k tokens one by one, the target model scores all k + 1 prefixes in ONE batched
** call, and each draft token d is kept with probability min(1, p(d) / q(d)); at the first rejection a token is
** drawn from the residual (p - q)+ normalised, and when all k are kept one more from the target's last row. The
** output has exactly the target's distribution, whatever the draft. */
#ifndef PLM_SPECULATIVE_H
#define PLM_SPECULATIVE_H

#include <stddef.h>

#include "ctx.h"
#include "lm.h"
#include "rng.h"

typedef enum plm_spec_rule {
    PLM_SPEC_EXACT,          /* the accept / resample rule above */
    PLM_SPEC_ACCEPT_ALL      /* keep every draft token: the draft's distribution (a wrong rule, for negative controls) */
} plm_spec_rule;

typedef struct plm_spec_stats {
    long rounds;           /* verification rounds (= target calls) */
    long draft_calls;      /* draft model calls (one context each) */
    long proposed;         /* draft tokens proposed */
    long accepted;         /* draft tokens kept */
    long tokens;           /* tokens generated */
} plm_spec_stats;

/* One verification over V tokens: logq (k x V) the draft's rows that draft[0..k-1] were drawn from, logp
** ((k + 1) x V, or k x V when draft[k-1] ends the text, flagged by last_eos) the target's rows after each
** prefix. Writes the kept draft tokens and the one drawn after them into out (at most k + 1; none after an
** accepted EOS), their number into *n_out and the number of kept draft tokens into *n_acc. */
plm_status plm_spec_verify(plm_ctx *ctx, int V, int k, const double *logq, const plm_token *draft, const double *logp,
                           int last_eos, plm_rng *rng, plm_spec_rule rule, plm_token *out, int *n_out, int *n_acc);

/* Generate after prompt (np tokens) until EOS (kept in out) or max_tokens tokens: out (max_tokens, caller-owned)
** and *n_out. target and draft must have the same vocabulary size. k in 1..256. stats accumulate (zero them
** first). Polls Ctrl-C every round. */
plm_status plm_speculative(plm_ctx *ctx, plm_lm *target, plm_lm *draft, const plm_token *prompt, size_t np, int k,
                           size_t max_tokens, plm_rng *rng, plm_spec_rule rule, plm_token *out, size_t *n_out,
                           plm_spec_stats *stats);

#endif
