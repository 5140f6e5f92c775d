/* rng.c -- xoshiro256++ streams keyed by (seed, stream), exposed to GSL as a gsl_rng_type. */
#include "rng.h"

#include <gsl/gsl_randist.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* GSL calls these through the type table; state points at plm_rng.s. */
static void gsl_set(void *state, unsigned long seed)
{
    uint64_t *s = state, x = seed;
    int i;
    for (i = 0; i < 4; i++) s[i] = splitmix64(&x);
}

static unsigned long gsl_get(void *state)
{
    return (unsigned long)(plm_xoshiro_next(state) >> 32);
}

static double gsl_get_double(void *state)
{
    return ((double)(plm_xoshiro_next(state) >> 11) + 0.5) * 0x1.0p-53;
}

static const gsl_rng_type xoshiro_type = {
    "plume-xoshiro256++", 0xffffffffUL, 0, sizeof(uint64_t[4]), gsl_set, gsl_get, gsl_get_double
};
const gsl_rng_type *plm_rng_type = &xoshiro_type;

void plm_rng_init(plm_rng *r, uint64_t seed, uint64_t stream)
{
    /* Hash seed and stream separately before mixing so that (seed, stream) and (seed+1, stream-1)
    ** and other nearby pairs land far apart; then expand to the 256-bit state. */
    uint64_t a = seed, b = stream ^ 0x5851f42d4c957f2dULL, x;
    int i;
    x = splitmix64(&a) ^ (splitmix64(&b) * 0xd1342543de82ef95ULL);
    for (i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;   /* the all-zero state is a fixed point */
    r->gsl.type = &xoshiro_type;
    r->gsl.state = r->s;
}

void plm_rng_copy(plm_rng *dst, const plm_rng *src)
{
    memcpy(dst->s, src->s, sizeof dst->s);
    dst->gsl.type = &xoshiro_type;
    dst->gsl.state = dst->s;
}

uint64_t plm_rng_uint(plm_rng *r, uint64_t n)
{
    /* Lemire's nearly-divisionless method. */
    unsigned __int128 m = (unsigned __int128)plm_rng_next(r) * n;
    uint64_t l = (uint64_t)m;
    if (l < n) {
        uint64_t t = -n % n;
        while (l < t) {
            m = (unsigned __int128)plm_rng_next(r) * n;
            l = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double plm_rng_normal(plm_rng *r)
{
    return gsl_ran_gaussian_ziggurat(&r->gsl, 1.0);
}

uint64_t plm_rng_entropy_seed(void)
{
    struct timespec ts;
    uint64_t x;
    clock_gettime(CLOCK_REALTIME, &ts);
    x = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    return splitmix64(&x);
}
