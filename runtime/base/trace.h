/* trace.h -- execution traces of model programs: the random choices (latent sites), observations and
** recorded deterministic values of one run, addressed by name, with their log densities. Traces are GC
** memory; a trace can be cleared and refilled without reallocating. */
#ifndef PLM_TRACE_H
#define PLM_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "dist.h"

typedef enum plm_site_kind {
    PLM_SITE_LATENT,          /* a random choice (sample) */
    PLM_SITE_OBSERVED,        /* an observation: contributes to the likelihood */
    PLM_SITE_DETERMINISTIC    /* a recorded value, no density */
} plm_site_kind;

typedef struct plm_site {
    const char *addr;
    uint64_t hash;
    plm_site_kind kind;
    const plm_dist *dist;     /* NULL for deterministic sites */
    int dim;                  /* doubles in value */
    double *value;
    double logp;              /* log density of value under dist (0 for deterministic) */
    int borrowed;             /* addr and value belong to another trace (plm_trace_add_shared) */
} plm_site;

typedef struct plm_trace {
    plm_site *sites;          /* in execution order */
    size_t n, cap;
    size_t *slots;            /* open-addressing table of site index + 1 (0 = empty), size tcap (power of 2) */
    size_t tcap;
    double logprior;          /* sum of logp over latent sites */
    double loglik;            /* sum over observed sites plus factors */
    size_t nlatent;
} plm_trace;

plm_status plm_trace_new(plm_ctx *ctx, plm_trace **out);
void plm_trace_clear(plm_trace *tr);

/* The site at addr, or NULL. */
plm_site *plm_trace_find(const plm_trace *tr, const char *addr);

/* Append a site (value copied). PLM_EINVAL when addr is already in the trace: each address names one
** choice per run. For LATENT and OBSERVED sites logp is added to logprior / loglik. */
plm_status plm_trace_add(plm_ctx *ctx, plm_trace *tr, const char *addr, plm_site_kind kind, const plm_dist *dist,
                         const double *value, int dim, double logp, plm_site **out);

/* Append a copy of site src of another trace that shares src's address and value buffers (and dist) instead
** of copying them: a particle replaying its parent's choices costs one site record per choice. src's trace
** must not be cleared and refilled while this trace uses the site; a cleared trace never writes into borrowed
** buffers. Same errors as plm_trace_add. */
plm_status plm_trace_add_shared(plm_ctx *ctx, plm_trace *tr, const plm_site *src);

/* logprior + loglik */
static inline double plm_trace_score(const plm_trace *tr) { return tr->logprior + tr->loglik; }

#endif
