/* ctx.c -- error context, interrupt flag, GC set-up and the root table for Lua-held objects. */
#define GC_THREADS
#include <gc.h>

#include "ctx.h"

#include <gsl/gsl_errno.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_once_fn(void)
{
    GC_INIT();
    GC_allow_register_threads();
    /* GSL's default error handler calls abort(); plume checks its inputs itself and must never abort on
    ** user input, so GSL functions report through return values (or NaN) instead */
    gsl_set_error_handler_off();
}

void plm_init(void)
{
    pthread_once(&init_once, init_once_fn);
}

void plm_ctx_clear(plm_ctx *ctx)
{
    if (ctx) ctx->status = PLM_OK, ctx->body = 0, ctx->msg[0] = '\0';
}

plm_status plm_fail(plm_ctx *ctx, plm_status st, const char *fmt, ...)
{
    if (ctx) {
        va_list ap;
        ctx->status = st;
        ctx->body = 0;
        va_start(ap, fmt);
        vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

plm_status plm_failm(plm_ctx *ctx, plm_status st, const char *module, const char *fmt, ...)
{
    if (ctx) {
        va_list ap;
        int n = snprintf(ctx->msg, sizeof ctx->msg, "%s: ", module);
        if (n < 0 || (size_t)n >= sizeof ctx->msg) n = 0;
        ctx->status = st;
        ctx->body = n;
        va_start(ap, fmt);
        vsnprintf(ctx->msg + n, sizeof ctx->msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return st;
}

const char *plm_ctx_errbody(const plm_ctx *ctx)
{
    return ctx ? ctx->msg + ctx->body : "";
}

const char *plm_ctx_errmsg(const plm_ctx *ctx)
{
    return ctx ? ctx->msg : "";
}

const char *plm_status_str(plm_status st)
{
    switch (st) {
    case PLM_OK: return "ok";
    case PLM_EINVAL: return "invalid argument";
    case PLM_EDOM: return "value out of domain";
    case PLM_ENOMEM: return "out of memory";
    case PLM_EIO: return "input/output error";
    case PLM_EPARSE: return "parse error";
    case PLM_EINTR: return "interrupted";
    case PLM_ENOTSUP: return "not supported";
    case PLM_EDEAD: return "all weights are -inf";
    case PLM_ERUNTIME: return "runtime error";
    }
    return "unknown status";
}

_Static_assert(sizeof(sig_atomic_t) == sizeof(int), "plm_intr.flag must be written whole by a signal handler");

static plm_intr default_domain;
static _Thread_local plm_intr *current_domain;

int plm_thread_enter(void)
{
    struct GC_stack_base sb;
    plm_init();
    if (GC_thread_is_registered()) return 0;
    if (GC_get_stack_base(&sb) != GC_SUCCESS) return 0;
    return GC_register_my_thread(&sb) == GC_SUCCESS;
}

void plm_thread_leave(int entered)
{
    if (entered) GC_unregister_my_thread();
}

plm_intr *plm_intr_new(void) { return calloc(1, sizeof(plm_intr)); }
void plm_intr_free(plm_intr *d) { free(d); }

plm_intr *plm_intr_use(plm_intr *d)
{
    plm_intr *prev = current_domain;
    current_domain = d;
    return prev;
}

plm_intr *plm_intr_current(void) { return current_domain ? current_domain : &default_domain; }

void plm_interrupt(void) { default_domain.flag = 1; }
int plm_interrupted(void) { return plm_intr_current()->flag != 0; }
void plm_interrupt_clear(void) { plm_intr_current()->flag = 0; }

void *plm_gc_alloc(size_t n)
{
    plm_init();
    return GC_MALLOC(n ? n : 1);
}

void *plm_gc_alloc_atomic(size_t n)
{
    void *p;
    plm_init();
    p = GC_MALLOC_ATOMIC(n ? n : 1);
    if (p) memset(p, 0, n);
    return p;
}

void plm_gc_free(void *p)
{
    GC_FREE(p);
}

/* The root table lives in uncollectable memory, so Boehm scans it and keeps whatever it points to.
** Free slots are chained through the table itself (encoded as odd integers, which are never pointers
** to GC objects) so rooting and unrooting are O(1). */
static pthread_mutex_t root_lock = PTHREAD_MUTEX_INITIALIZER;
static void **roots;
static long nroots, free_head = -1;

long plm_root(void *obj)
{
    long h;
    plm_init();
    pthread_mutex_lock(&root_lock);
    if (free_head < 0) {
        long n = nroots ? 2 * nroots : 256, i;
        void **nr = GC_MALLOC_UNCOLLECTABLE((size_t)n * sizeof *nr);
        if (!nr) { pthread_mutex_unlock(&root_lock); return 0; }
        if (roots) { memcpy(nr, roots, (size_t)nroots * sizeof *nr); GC_FREE(roots); }
        for (i = nroots; i < n; i++)
            nr[i] = (void *)(uintptr_t)((((uintptr_t)(i + 1 < n ? i + 2 : 0)) << 1) | 1);
        free_head = nroots;
        roots = nr;
        nroots = n;
    }
    h = free_head;
    free_head = (long)((uintptr_t)roots[h] >> 1) - 1;
    roots[h] = obj;
    pthread_mutex_unlock(&root_lock);
    return h + 1;
}

void plm_unroot(long handle)
{
    long h = handle - 1;
    if (h < 0) return;
    pthread_mutex_lock(&root_lock);
    if (h < nroots) {
        roots[h] = (void *)(uintptr_t)(((uintptr_t)(free_head + 1) << 1) | 1);
        free_head = h;
    }
    pthread_mutex_unlock(&root_lock);
}

int plm_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN), online = n;
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    cpu_set_t set;
    /* the cores this process may run on (mpirun binds ranks to cores, taskset and cgroups restrict them) */
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) n = CPU_COUNT(&set);
    /* an unbound rank of Open MPI's mpirun shares the node's cores with the other ranks there */
    if (n == online && local && atol(local) > 1) n /= atol(local);
    return n > 0 ? (int)n : 1;
}
