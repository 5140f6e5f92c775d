/* par.c -- plm_parallel_for on pthreads registered with Boehm GC. */
#define GC_THREADS
#include <gc.h>

#include "par.h"

#include <pthread.h>

typedef struct job {
    plm_par_fn fn;
    void *arg;
    size_t begin, end;
    int worker;
} job;

static void *run_job(void *p)
{
    job *j = p;
    j->fn(j->arg, j->begin, j->end, j->worker);
    return NULL;
}

#define MAX_THREADS 256

plm_status plm_parallel_for(int nthreads, size_t n, size_t grain, plm_par_fn fn, void *arg)
{
    job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS];
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
        started[t] = 0;
    }
    for (t = 1; t < nt; t++) {
        started[t] = GC_pthread_create(&tid[t], NULL, run_job, &jobs[t]) == 0;
    }
    run_job(&jobs[0]);
    for (t = 1; t < nt; t++) {
        if (started[t])
            GC_pthread_join(tid[t], NULL);
        else
            run_job(&jobs[t]);    /* could not start a thread: do its chunk here, same result */
    }
    return PLM_OK;
}
