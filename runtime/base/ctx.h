/* ctx.h -- status codes, the error context every fallible runtime call writes its message to,
** the interrupt flag long loops poll, and the one-time runtime initialisation (Boehm GC).
** A plm_ctx is caller-owned (usually on the stack or inside a host object); it is not shared between threads. */
#ifndef PLM_CTX_H
#define PLM_CTX_H

#include <stddef.h>

typedef enum plm_status {
    PLM_OK = 0,
    PLM_EINVAL,   /* an invalid argument or parameter (negative scale, wrong length, ...) */
    PLM_EDOM,     /* a value outside the domain or support (symbol out of range, ...) */
    PLM_ENOMEM,   /* allocation failed */
    PLM_EIO,      /* a file could not be opened, read or written */
    PLM_EPARSE,   /* a file or text failed to parse; the message names the line */
    PLM_EINTR,    /* the run was interrupted (Ctrl-C) */
    PLM_ENOTSUP,  /* a valid request this build or backend cannot serve */
    PLM_EDEAD,    /* every particle or chain has weight -inf */
    PLM_ERUNTIME  /* any other failure; the message says what */
} plm_status;

#define PLM_MSG_MAX 512

typedef struct plm_ctx {
    plm_status status;       /* the status of the last failure (PLM_OK after plm_ctx_clear) */
    int body;                /* offset in msg of the text after the module's "name: " prefix (plm_failm) */
    char msg[PLM_MSG_MAX];   /* the last error message, "" when none */
} plm_ctx;

/* Initialise the runtime: Boehm GC, and GSL's error handler switched off (GSL's default aborts the process).
** Idempotent and thread-safe; plm_open and every _new call it. */
void plm_init(void);

/* Clear the message and the status. */
void plm_ctx_clear(plm_ctx *ctx);

/* Format the message into ctx (ctx may be NULL: the message is dropped) and return st, so that a
** failing path reads `return plm_fail(ctx, PLM_EINVAL, "normal: sigma must be > 0 (got %g)", s);`. */
plm_status plm_fail(plm_ctx *ctx, plm_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* plm_fail for a module that lets its callers name the operation: the message is "module: text" as with
** plm_fail, and plm_ctx_errbody gives the text alone, so a front end can say "hmm:loglik: text" instead. */
plm_status plm_failm(plm_ctx *ctx, plm_status st, const char *module, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* The text of the last failure without its module prefix (all of it when the failure had none). */
const char *plm_ctx_errbody(const plm_ctx *ctx);

/* The message of the last failure on ctx ("" when none; never NULL). */
const char *plm_ctx_errmsg(const plm_ctx *ctx);

/* A short name of a status ("invalid argument", ...). */
const char *plm_status_str(plm_status st);

/* Interrupts: long-running loops poll plm_interrupted() every few thousand steps and return PLM_EINTR;
** whoever catches it calls plm_interrupt_clear().
** Flags live in interrupt domains, so that two embedded states do not stop each other's runs: every thread
** polls the domain it currently runs in (thread-local; plm_parallel_for's workers take their caller's), and
** the process-wide default domain when it was given none. A host's SIGINT handler raises the domain of the
** state it runs (plm_intr_raise is async-signal-safe); plm_interrupt() raises the default domain.
** Domains are malloc'd by plm_intr_new and freed by plm_intr_free once no thread uses them. */
typedef struct plm_intr {
    volatile int flag;   /* sig_atomic_t is int on every platform plume builds on (ctx.c checks) */
} plm_intr;
plm_intr *plm_intr_new(void);
void plm_intr_free(plm_intr *d);
/* Make d the calling thread's domain (NULL: the default one); returns the previous one, to restore. */
plm_intr *plm_intr_use(plm_intr *d);
/* The calling thread's domain (the default one when none was set); never NULL. */
plm_intr *plm_intr_current(void);
static inline void plm_intr_raise(plm_intr *d) { d->flag = 1; }

void plm_interrupt(void);           /* raise the default domain */
int plm_interrupted(void);          /* is the calling thread's domain raised? */
void plm_interrupt_clear(void);     /* lower the calling thread's domain */

/* GC-owned memory. plm_gc_alloc memory is scanned for pointers; plm_gc_alloc_atomic is not (use it
** for arrays of numbers). Both are zero-filled and return NULL only when memory is exhausted. */
void *plm_gc_alloc(size_t n);
void *plm_gc_alloc_atomic(size_t n);
/* Returns a block of GC memory at once, for large blocks that a hot loop makes and drops (they would otherwise
** wait for a collection, whose cost grows with what is allocated). Nothing may point to p any more. */
void plm_gc_free(void *p);

/* Roots: an object that only a Lua userdata (or other memory Boehm does not scan) points to must be
** rooted for as long as that reference lives. plm_root returns a handle (> 0), plm_unroot releases it. */
long plm_root(void *obj);
void plm_unroot(long handle);

/* A host thread that plume did not start must be known to the garbage collector while it runs plume code
** (a collection stops every thread it knows and scans their stacks). plm_thread_enter registers the calling
** thread when it is not yet registered and returns 1 in that case; pass the result to plm_thread_leave when
** the thread is done with plume for now. The embedding API (plm_open, plm_dostring, ...) does this itself. */
int plm_thread_enter(void);
void plm_thread_leave(int entered);

/* Number of threads worth using by default (online cores, at least 1). */
int plm_default_threads(void);

#endif
