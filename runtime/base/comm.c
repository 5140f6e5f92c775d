/* comm.c -- ranks and collectives over MPI_COMM_WORLD, or one rank without MPI (see comm.h). */
#include "comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PLM_MPI
#include <mpi.h>
#endif

static int joined;            /* plm_comm_init called MPI_Init */
static int rank_, size_ = 1;
static uint64_t sent;         /* see plm_comm_bytes_sent */

int plm_comm_rank(void) { return rank_; }
int plm_comm_size(void) { return size_; }
uint64_t plm_comm_bytes_sent(void) { return sent; }

int plm_comm_compiled(void)
{
#ifdef PLM_MPI
    return 1;
#else
    return 0;
#endif
}

/* Started by a launcher? Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMI and PMIx launchers (srun, hydra)
** set PMI_SIZE or PMIX_RANK. Without one, MPI_Init would make a singleton job, which costs a start-up and
** changes nothing, so plain runs stay single. */
static int launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

plm_status plm_comm_init(plm_ctx *ctx)
{
    if (joined || !launched()) return PLM_OK;
#ifdef PLM_MPI
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return plm_fail(ctx, PLM_ERUNTIME, "mpi: MPI_Init failed");
    joined = 1;
    /* Errors come back as codes (turned into messages below) instead of aborting the job inside MPI. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    return PLM_OK;
#else
    (void)ctx;
    return PLM_OK;
#endif
}

void plm_comm_finalize(void)
{
#ifdef PLM_MPI
    if (joined) {
        int done = 0;
        MPI_Finalized(&done);
        if (!done) MPI_Finalize();
    }
#endif
    joined = 0;
    rank_ = 0;
    size_ = 1;
}

void plm_comm_abort(int code)
{
    fflush(NULL);   /* what this rank printed so far is kept */
#ifdef PLM_MPI
    if (joined && size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

#ifdef PLM_MPI
static plm_status mpierr(plm_ctx *ctx, const char *what, int rc)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) strcpy(s, "unknown error");
    return plm_fail(ctx, PLM_ERUNTIME, "mpi: %s on rank %d: %s", what, rank_, s);
}

static plm_status toobig(plm_ctx *ctx, const char *what, size_t bytes)
{
    return plm_fail(ctx, PLM_ENOTSUP, "mpi: %s of %zu bytes exceeds one transfer's limit (%d bytes)", what, bytes,
                    INT_MAX);
}

static MPI_Op mpiop(plm_comm_op op)
{
    return op == PLM_COMM_SUM ? MPI_SUM : op == PLM_COMM_MAX ? MPI_MAX : MPI_MIN;
}
#endif

/* Several ranks: MPI is in use. */
static int multi(void) { return joined && size_ > 1; }

/* The element types of the typed collectives: the MPI datatype is chosen inside, so that the public functions
** compile without mpi.h. */
typedef enum elt { ELT_DOUBLE, ELT_U64 } elt;

/* buf (n elements of type t, 8 bytes each) := op over the ranks, in place. */
static plm_status allreduce(plm_ctx *ctx, void *buf, size_t n, elt t, plm_comm_op op)
{
    if (!multi() || n == 0) return PLM_OK;
#ifdef PLM_MPI
    if (n > INT_MAX / 8) return toobig(ctx, "allreduce", n * 8);
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, t == ELT_DOUBLE ? MPI_DOUBLE : MPI_UINT64_T, mpiop(op),
                           MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpierr(ctx, "allreduce", rc);
    sent += (uint64_t)n * 8 * (uint64_t)(size_ - 1);
#else
    (void)ctx, (void)buf, (void)t, (void)op;
#endif
    return PLM_OK;
}

/* *out (8 bytes, type t, zeroed by the caller) := the sum of x over the ranks before this one. */
static plm_status exscan(plm_ctx *ctx, const void *x, void *out, elt t)
{
    if (!multi()) return PLM_OK;
#ifdef PLM_MPI
    unsigned char r[8] = {0};
    int rc = MPI_Exscan(x, r, 1, t == ELT_DOUBLE ? MPI_DOUBLE : MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpierr(ctx, "exscan", rc);
    if (rank_ != 0) memcpy(out, r, 8);   /* MPI leaves rank 0's result undefined; it keeps its zero */
    sent += 8;
#else
    (void)ctx, (void)x, (void)out, (void)t;
#endif
    return PLM_OK;
}

plm_status plm_comm_allreduce(plm_ctx *ctx, double *buf, size_t n, plm_comm_op op)
{
    return allreduce(ctx, buf, n, ELT_DOUBLE, op);
}

plm_status plm_comm_allreduce_u64(plm_ctx *ctx, uint64_t *buf, size_t n, plm_comm_op op)
{
    return allreduce(ctx, buf, n, ELT_U64, op);
}

plm_status plm_comm_exscan_u64(plm_ctx *ctx, uint64_t x, uint64_t *out)
{
    *out = 0;
    return exscan(ctx, &x, out, ELT_U64);
}

plm_status plm_comm_exscan(plm_ctx *ctx, double x, double *out)
{
    *out = 0;
    return exscan(ctx, &x, out, ELT_DOUBLE);
}

plm_status plm_comm_bcast(plm_ctx *ctx, void *buf, size_t bytes, int root)
{
    if (!multi() || bytes == 0) return PLM_OK;
#ifdef PLM_MPI
    if (bytes > INT_MAX) return toobig(ctx, "bcast", bytes);
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpierr(ctx, "bcast", rc);
    if (rank_ == root) sent += (uint64_t)bytes * (uint64_t)(size_ - 1);
#else
    (void)ctx, (void)buf, (void)root;
#endif
    return PLM_OK;
}

plm_status plm_comm_allgather(plm_ctx *ctx, const void *send, size_t bytes, void *recv)
{
    if (!multi()) {
        if (bytes) memmove(recv, send, bytes);
        return PLM_OK;
    }
#ifdef PLM_MPI
    if (bytes > INT_MAX / (size_t)size_) return toobig(ctx, "allgather", bytes * (size_t)size_);
    int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpierr(ctx, "allgather", rc);
    sent += (uint64_t)bytes * (uint64_t)(size_ - 1);
#else
    (void)ctx;
#endif
    return PLM_OK;
}

#ifdef PLM_MPI
/* counts/displacements as MPI's ints, or PLM_ENOTSUP. */
static plm_status ints(plm_ctx *ctx, const char *what, const size_t *c, const size_t *d, int *ci, int *di)
{
    size_t off = 0;
    for (int r = 0; r < size_; r++) {
        size_t disp = d ? d[r] : off;
        if (c[r] > INT_MAX || disp > INT_MAX) return toobig(ctx, what, c[r] > INT_MAX ? c[r] : disp);
        ci[r] = (int)c[r];
        di[r] = (int)disp;
        off += c[r];
    }
    return PLM_OK;
}
#endif

plm_status plm_comm_gatherv(plm_ctx *ctx, const void *send, const size_t *counts, void *recv, int root)
{
    if (!multi()) {
        if (counts[0]) memmove(recv, send, counts[0]);
        return PLM_OK;
    }
#ifdef PLM_MPI
    int *ci = malloc(2 * (size_t)size_ * sizeof *ci);
    if (!ci) return plm_fail(ctx, PLM_ENOMEM, "mpi: out of memory");
    plm_status st = ints(ctx, "gatherv", counts, NULL, ci, ci + size_);
    if (st == PLM_OK) {
        int rc = MPI_Gatherv(send, ci[rank_], MPI_BYTE, recv, ci, ci + size_, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) st = mpierr(ctx, "gatherv", rc);
        else if (rank_ != root) sent += counts[rank_];
    }
    free(ci);
    return st;
#else
    (void)ctx, (void)root;
    return PLM_OK;
#endif
}

plm_status plm_comm_allgatherv(plm_ctx *ctx, const void *send, const size_t *counts, void *recv)
{
    size_t mine = 0;
    int r;
    for (r = 0; r < rank_; r++) mine += counts[r];
    if (!multi()) {
        if (send && counts[0]) memmove(recv, send, counts[0]);
        return PLM_OK;
    }
#ifdef PLM_MPI
    size_t total = 0;
    for (r = 0; r < size_; r++) total += counts[r];
    if (total <= INT_MAX) {
        int *ci = malloc(2 * (size_t)size_ * sizeof *ci);
        plm_status st;
        if (!ci) return plm_fail(ctx, PLM_ENOMEM, "mpi: out of memory");
        st = ints(ctx, "allgatherv", counts, NULL, ci, ci + size_);
        if (st == PLM_OK) {
            int rc = MPI_Allgatherv(send ? send : MPI_IN_PLACE, ci[rank_], MPI_BYTE, recv, ci, ci + size_, MPI_BYTE,
                                    MPI_COMM_WORLD);
            if (rc != MPI_SUCCESS) st = mpierr(ctx, "allgatherv", rc);
        }
        free(ci);
        if (st) return st;
    } else {
        /* beyond int counts: each rank's part is broadcast from it, in pieces of at most 1 GiB, which needs no
        ** displacement to fit an int */
        size_t off = 0, piece = (size_t)1 << 30;
        if (send && counts[rank_]) memmove((char *)recv + mine, send, counts[rank_]);
        for (r = 0; r < size_; r++) {
            size_t done;
            for (done = 0; done < counts[r]; done += piece) {
                size_t n = counts[r] - done < piece ? counts[r] - done : piece;
                int rc = MPI_Bcast((char *)recv + off + done, (int)n, MPI_BYTE, r, MPI_COMM_WORLD);
                if (rc != MPI_SUCCESS) return mpierr(ctx, "allgatherv", rc);
            }
            off += counts[r];
        }
    }
    sent += (uint64_t)counts[rank_] * (uint64_t)(size_ - 1);
    return PLM_OK;
#else
    (void)ctx, (void)mine;
    return PLM_OK;
#endif
}

plm_status plm_comm_alltoallv(plm_ctx *ctx, const void *send, const size_t *scounts, const size_t *sdispl,
                              void *recv, const size_t *rcounts, const size_t *rdispl)
{
    if (!multi()) {
        if (scounts[0]) memmove((char *)recv + rdispl[0], (const char *)send + sdispl[0], scounts[0]);
        return PLM_OK;
    }
#ifdef PLM_MPI
    int *ci = malloc(4 * (size_t)size_ * sizeof *ci);
    if (!ci) return plm_fail(ctx, PLM_ENOMEM, "mpi: out of memory");
    int *sc = ci, *sd = ci + size_, *rc_ = ci + 2 * size_, *rd = ci + 3 * size_;
    plm_status st = ints(ctx, "alltoallv", scounts, sdispl, sc, sd);
    if (st == PLM_OK) st = ints(ctx, "alltoallv", rcounts, rdispl, rc_, rd);
    if (st == PLM_OK) {
        int rc = MPI_Alltoallv(send, sc, sd, MPI_BYTE, recv, rc_, rd, MPI_BYTE, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) st = mpierr(ctx, "alltoallv", rc);
        else
            for (int r = 0; r < size_; r++)
                if (r != rank_) sent += scounts[r];
    }
    free(ci);
    return st;
#else
    (void)ctx, (void)rcounts;
    return PLM_OK;
#endif
}

plm_status plm_comm_barrier(plm_ctx *ctx)
{
    if (!multi()) return PLM_OK;
#ifdef PLM_MPI
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpierr(ctx, "barrier", rc);
#else
    (void)ctx;
#endif
    return PLM_OK;
}
