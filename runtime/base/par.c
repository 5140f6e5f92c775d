/* par.c -- plm_parallel_for on a persistent pool of pthreads registered with Boehm GC.
** Starting a GC-registered thread costs close to a millisecond on a loaded machine, which is more than one
** SMC step of 10,000 particles: workers are therefore started once and then woken per call. Workers and the
** caller spin briefly (about 0.1 ms) before sleeping, because a futex wake-up costs tens of microseconds and
** engines call this once per time step. A call made while the pool is busy (another host thread, or a nested
** call from a worker) starts threads as before, so the pool never deadlocks and the split by index, hence the
** result, is the same either way. */
#define GC_THREADS
#include <gc.h>

#include "par.h"

#include <pthread.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif
#define SPINS 4000

typedef struct job {
    plm_par_fn fn;
    void *arg;
    size_t begin, end;
    int worker;
    plm_intr *domain;    /* the caller's interrupt domain: a worker polls the flag its caller polls */
} job;

static void *run_job(void *p)
{
    job *j = p;
    plm_intr *prev = plm_intr_use(j->domain);
    j->fn(j->arg, j->begin, j->end, j->worker);
    plm_intr_use(prev);
    return NULL;
}

#define MAX_THREADS 256

/* ---- the pool ---- */

typedef struct slot {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job j;
    atomic_int has_job;
} slot;

static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;   /* held by the call using the pool */
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static atomic_int pending;
static int nworkers;                  /* pool threads started (slots 1..nworkers) */
static slot slots[MAX_THREADS];

static void *pool_main(void *p)
{
    slot *s = p;
    for (;;) {
        job j;
        int spins = 0;
        while (!atomic_load_explicit(&s->has_job, memory_order_acquire) && spins++ < SPINS) CPU_RELAX();
        pthread_mutex_lock(&s->mu);
        while (!atomic_load_explicit(&s->has_job, memory_order_acquire)) pthread_cond_wait(&s->cv, &s->mu);
        j = s->j;
        atomic_store_explicit(&s->has_job, 0, memory_order_relaxed);
        pthread_mutex_unlock(&s->mu);
        run_job(&j);
        /* the last worker wakes the caller; taking done_mu orders the signal after the caller's wait */
        if (atomic_fetch_sub_explicit(&pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&done_mu);
            pthread_cond_signal(&done_cv);
            pthread_mutex_unlock(&done_mu);
        }
    }
    return NULL;
}

/* make sure workers 1..nt-1 exist; returns how many exist (may be fewer if a start failed) */
static int pool_grow(int nt)
{
    while (nworkers < nt - 1) {
        slot *s = &slots[nworkers + 1];
        pthread_t tid;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        atomic_init(&s->has_job, 0);
        if (GC_pthread_create(&tid, NULL, pool_main, s) != 0) break;
        GC_pthread_detach(tid);
        nworkers++;
    }
    return nworkers + 1;
}

static void spawn_run(job *jobs, int nt)
{
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS], t;
    for (t = 1; t < nt; t++) started[t] = GC_pthread_create(&tid[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (t = 1; t < nt; t++) {
        if (started[t])
            GC_pthread_join(tid[t], NULL);
        else
            run_job(&jobs[t]);    /* could not start a thread: do its chunk here, same result */
    }
}

plm_status plm_parallel_for(int nthreads, size_t n, size_t grain, plm_par_fn fn, void *arg)
{
    job jobs[MAX_THREADS];
    size_t chunk;
    int t, nt;
    if (n == 0) return PLM_OK;
    if (nthreads <= 0) nthreads = plm_default_threads();
    if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
    if (grain < 1) grain = 1;
    nt = (int)((n + grain - 1) / grain);
    if (nt > nthreads) nt = nthreads;
    if (nt <= 1) {
        fn(arg, 0, n, 0);
        return PLM_OK;
    }
    plm_init();
    chunk = (n + (size_t)nt - 1) / (size_t)nt;
    for (t = 0; t < nt; t++) {
        jobs[t].fn = fn;
        jobs[t].arg = arg;
        jobs[t].begin = (size_t)t * chunk < n ? (size_t)t * chunk : n;
        jobs[t].end = (size_t)(t + 1) * chunk < n ? (size_t)(t + 1) * chunk : n;
        jobs[t].worker = t;
        jobs[t].domain = plm_intr_current();
    }
    if (pthread_mutex_trylock(&pool_busy) != 0) {
        spawn_run(jobs, nt);
        return PLM_OK;
    }
    if (pool_grow(nt) < nt) {
        pthread_mutex_unlock(&pool_busy);
        spawn_run(jobs, nt);
        return PLM_OK;
    }
    atomic_store_explicit(&pending, nt - 1, memory_order_relaxed);
    for (t = 1; t < nt; t++) {
        slot *s = &slots[t];
        pthread_mutex_lock(&s->mu);
        s->j = jobs[t];
        atomic_store_explicit(&s->has_job, 1, memory_order_release);
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    run_job(&jobs[0]);
    {
        int spins = 0;
        while (atomic_load_explicit(&pending, memory_order_acquire) > 0 && spins++ < SPINS) CPU_RELAX();
    }
    pthread_mutex_lock(&done_mu);
    while (atomic_load_explicit(&pending, memory_order_acquire) > 0) pthread_cond_wait(&done_cv, &done_mu);
    pthread_mutex_unlock(&done_mu);
    pthread_mutex_unlock(&pool_busy);
    return PLM_OK;
}
