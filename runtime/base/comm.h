/* comm.h -- the ranks of a multi-process job, for engines that spread chains or particles over processes.
** Built with PLM_MPI (make MPI=1, or by default when pkg-config finds Open MPI) and started by mpirun, the
** ranks are MPI_COMM_WORLD's. Otherwise -- a build without MPI, or a plain `plume script.lua` -- there is one
** rank and every collective below copies its input to its output, so engines call them unconditionally and
** a one-rank run is exactly the run plume made before MPI existed (MPI is not even initialised).
**
** Threads: MPI is initialised with MPI_THREAD_FUNNELED, so only the thread that called plm_comm_init (the
** main thread) may call the collectives; worker threads of plm_parallel_for compute, the caller communicates.
** Every collective must be called by every rank in the same order, as with MPI itself.
**
** Sizes are in bytes or elements of the named type; one call moves at most INT_MAX bytes per rank pair
** (PLM_ENOTSUP beyond, naming the size): large transfers are made in pieces by the caller. */
#ifndef PLM_COMM_H
#define PLM_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

/* Join the job when the process was started by an MPI launcher (Open MPI, PMI or PMIx environment), else
** stay a single rank. Idempotent; not thread-safe (call it from main before any other thread calls comm). */
plm_status plm_comm_init(plm_ctx *ctx);
/* Leave the job (MPI_Finalize) if plm_comm_init joined one. Collective: every rank must call it. */
void plm_comm_finalize(void);
/* End every rank of the job at once with exit status code (MPI_Abort), for an error on one rank that the others
** cannot know of; a single-rank process just exits. Never returns. */
void plm_comm_abort(int code);

int plm_comm_rank(void);        /* this process's rank, 0 when single */
int plm_comm_size(void);        /* the number of ranks, 1 when single */
int plm_comm_compiled(void);    /* 1 when this build has MPI */

typedef enum plm_comm_op { PLM_COMM_SUM, PLM_COMM_MAX, PLM_COMM_MIN } plm_comm_op;

/* buf (n doubles) := op over the ranks of their buf, on every rank. */
plm_status plm_comm_allreduce(plm_ctx *ctx, double *buf, size_t n, plm_comm_op op);
/* The same for n unsigned 64-bit integers. */
plm_status plm_comm_allreduce_u64(plm_ctx *ctx, uint64_t *buf, size_t n, plm_comm_op op);
/* Exclusive prefix sum over ranks: *out := sum of x over ranks < this one (0 on rank 0). */
plm_status plm_comm_exscan_u64(plm_ctx *ctx, uint64_t x, uint64_t *out);
plm_status plm_comm_exscan(plm_ctx *ctx, double x, double *out);
/* bytes of buf from rank root to every rank. */
plm_status plm_comm_bcast(plm_ctx *ctx, void *buf, size_t bytes, int root);
/* Every rank sends bytes from send; recv (size * bytes) receives them in rank order, on every rank. */
plm_status plm_comm_allgather(plm_ctx *ctx, const void *send, size_t bytes, void *recv);
/* Rank r sends counts[r] bytes (counts: size entries, the same on every rank); on root, recv receives them in
** rank order (the sum of counts bytes); other ranks pass recv NULL. */
plm_status plm_comm_gatherv(plm_ctx *ctx, const void *send, const size_t *counts, void *recv, int root);
/* Personalised exchange: this rank sends scounts[r] bytes starting at send + sdispl[r] to rank r and receives
** rcounts[r] bytes from rank r at recv + rdispl[r] (size entries each; the part for itself is copied). */
plm_status plm_comm_alltoallv(plm_ctx *ctx, const void *send, const size_t *scounts, const size_t *sdispl,
                              void *recv, const size_t *rcounts, const size_t *rdispl);
/* Wait for every rank. */
plm_status plm_comm_barrier(plm_ctx *ctx);

/* Bytes this rank has handed to MPI for other ranks since the start (counted per call as the payload each
** collective sends to the others; an estimate of traffic for benchmarks, not a measurement of the wire). */
uint64_t plm_comm_bytes_sent(void);

#endif
