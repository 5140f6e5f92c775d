/* test_interrupt.c -- interrupt domains: Ctrl-C for one embedded state stops that state's runs (Lua code and
** C loops, on every worker thread) and never another state's. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "plume.h"
#include "plume_lua.h"

/* the collector stops threads with signals, which cut a plain nanosleep short: sleep the remainder */
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) continue;
}

/* ---- the runtime: domains and plm_parallel_for ---- */

static int seen[4];

static void record_flag(void *arg, size_t begin, size_t end, int worker)
{
    (void)arg, (void)end, (void)worker;
    seen[begin] = plm_interrupted();
}

static void test_workers_poll_their_callers_domain(void)
{
    plm_intr *a = plm_intr_new(), *b = plm_intr_new(), *prev;
    int i;
    prev = plm_intr_use(a);
    plm_intr_raise(a);
    plm_parallel_for(2, 2, 1, record_flag, NULL);
    CHECK(seen[0] == 1 && seen[1] == 1);
    plm_intr_use(b);
    plm_parallel_for(2, 2, 1, record_flag, NULL);
    CHECK(seen[0] == 0 && seen[1] == 0);
    CHECK(!plm_interrupted());
    plm_intr_use(a);
    plm_interrupt_clear();
    CHECK(!plm_interrupted() && !a->flag);
    plm_intr_use(NULL);
    plm_interrupt();              /* the default domain */
    CHECK(plm_interrupted());
    plm_intr_use(b);
    CHECK(!plm_interrupted());
    plm_intr_use(NULL);
    plm_interrupt_clear();
    plm_intr_use(prev);
    for (i = 0; i < 2; i++) (void)seen[i];
    plm_intr_free(a);
    plm_intr_free(b);
}

/* ---- two plume states on two threads ---- */

typedef struct run {
    plm_State *P;
    const char *code;
    int rc;
    char msg[256];
    double secs;
} run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *run_main(void *arg)
{
    run *r = arg;
    double t0 = now();
    r->rc = plm_dostring(r->P, r->code);
    snprintf(r->msg, sizeof r->msg, "%s", plm_errmsg(r->P));
    r->secs = now() - t0;
    return NULL;
}

/* A long MH run in state 1 and, in state 2, MH runs repeated until state 1 has been interrupted (the host
** creates a marker file after that): state 1 ends with "interrupted" while state 2 finishes with its result. */
static void test_interrupting_one_state_leaves_the_other_running(void)
{
    static const char *longmh =
        "local m = plume.model(function(m) local x = m:sample('x', plume.dist.normal(0, 1)) end)\n"
        "plume.infer(m, nil, {samples = 100000000, chains = 1, quiet = true})";
    char marker[64], shortmh[1024];
    run r1 = {plm_open(), longmh, -1, "", 0}, r2 = {plm_open(), shortmh, -1, "", 0};
    pthread_t t1, t2;
    FILE *f;
    snprintf(marker, sizeof marker, "/tmp/plume_intr_%ld", (long)getpid());
    remove(marker);
    snprintf(shortmh, sizeof shortmh,
             "local m = plume.model(function(m) local x = m:sample('x', plume.dist.normal(0, 1)) end)\n"
             "local runs = 0\n"
             "repeat post = plume.infer(m, nil, {samples = 2000, chains = 1, quiet = true, seed = 1}); runs = runs + 1\n"
             "until io.open('%s')\n"
             "assert(runs >= 1 and #post:draws('x') == 2000)", marker);
    CHECK(r1.P && r2.P);
    if (!r1.P || !r2.P) return;
    pthread_create(&t1, NULL, run_main, &r1);
    pthread_create(&t2, NULL, run_main, &r2);
    sleep_ms(200);
    plm_interrupt_state(r1.P);
    pthread_join(t1, NULL);
    if ((f = fopen(marker, "w"))) fclose(f);
    pthread_join(t2, NULL);
    remove(marker);
    printf("  state 1 after %.2f s: %s\n", r1.secs, r1.msg);
    CHECK(r1.rc != 0 && strstr(r1.msg, "interrupted") != NULL);
    CHECK(r2.rc == 0);
    if (r2.rc) printf("  state 2: %s\n", r2.msg);
    /* state 1 is usable again, and its flag no longer set */
    CHECK(plm_dostring(r1.P, "x = 1 + 1") == 0);
    plm_close(r1.P);
    plm_close(r2.P);
}

/* Plain Lua code (no plume call) is stopped too, through a hook. */
static void test_interrupt_stops_a_pure_lua_loop(void)
{
    run r = {plm_open(), "while true do end", -1, "", 0};
    pthread_t t;
    if (!r.P) return;
    pthread_create(&t, NULL, run_main, &r);
    sleep_ms(100);
    plm_interrupt_state(r.P);
    pthread_join(t, NULL);
    CHECK(r.rc != 0 && strstr(r.msg, "interrupted") != NULL);
    plm_close(r.P);
}

int main(void)
{
    plm_init();
    RUN(test_workers_poll_their_callers_domain);
    RUN(test_interrupting_one_state_leaves_the_other_running);
    RUN(test_interrupt_stops_a_pure_lua_loop);
    return CHECK_DONE();
}
