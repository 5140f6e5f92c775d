/* par.h -- a parallel for over index ranges. Work is split by index, never by thread timing, so code that
** derives its random streams from indices gives identical results for any thread count. */
#ifndef PLM_PAR_H
#define PLM_PAR_H

#include <stddef.h>

#include "ctx.h"

/* Called once per chunk [begin, end) on worker `worker` (0..nthreads-1). Must not allocate GC memory
** unless the thread is registered (plm_parallel_for registers its workers, so GC allocation is allowed). */
typedef void (*plm_par_fn)(void *arg, size_t begin, size_t end, int worker);

/* Run fn over [0, n) split into at most nthreads contiguous chunks of at least `grain` indices; the
** calling thread runs the first chunk. nthreads <= 0 means plm_default_threads(). Returns PLM_OK, or
** PLM_OK always: a thread that cannot be started has its chunk run on the calling thread. */
plm_status plm_parallel_for(int nthreads, size_t n, size_t grain, plm_par_fn fn, void *arg);

#endif
