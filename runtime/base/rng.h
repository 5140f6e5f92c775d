/* rng.h -- random streams: every draw plume makes is determined by (seed, stream id).
** A plm_rng is xoshiro256++ whose state is derived from (seed, stream) by SplitMix64 hashing; it is also a
** gsl_rng (the `gsl` member), so every GSL sampler can draw from it. Particles, chains and blocks get
** streams by their index, never by thread, which makes results identical whatever the thread count.
** A plm_rng is caller-owned and must not be copied with memcpy or assignment (gsl.state points into it):
** use plm_rng_copy. */
#ifndef PLM_RNG_H
#define PLM_RNG_H

#include <stdint.h>
#include <gsl/gsl_rng.h>

typedef struct plm_rng {
    gsl_rng gsl;        /* pass &r->gsl to gsl_ran_* */
    uint64_t s[4];
} plm_rng;

/* Set r to the start of stream `stream` of `seed`. Distinct (seed, stream) pairs give independent-looking
** sequences; the same pair always gives the same sequence. */
void plm_rng_init(plm_rng *r, uint64_t seed, uint64_t stream);

/* Copy the state of src into dst (both initialised or not: dst is made valid). */
void plm_rng_copy(plm_rng *dst, const plm_rng *src);

/* Next 64 random bits of the raw state (GSL's callbacks use this form). */
static inline uint64_t plm_xoshiro_next(uint64_t *s)
{
    uint64_t x = s[0] + s[3];
    uint64_t result = ((x << 23) | (x >> 41)) + s[0];
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Next 64 random bits. */
static inline uint64_t plm_rng_next(plm_rng *r)
{
    return plm_xoshiro_next(r->s);
}

/* Uniform on (0, 1): never exactly 0 or 1, so log(u) and log1p(-u) are finite. */
static inline double plm_rng_uniform(plm_rng *r)
{
    return ((double)(plm_rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n >= 1, without modulo bias. */
uint64_t plm_rng_uint(plm_rng *r, uint64_t n);

/* Standard normal draw: the one normal sampler of plume (compiled programs, engines and the Markov modules
** draw through it; plume.dist's samplers use GSL's). A 128-layer ziggurat (Marsaglia and Tsang 2000) reading
** the stream directly: one 64-bit draw gives the layer (7 bits), the sign (1 bit) and a 53-bit uniform, and
** 98.8% of draws are accepted at once, so a draw costs a few nanoseconds. It is inline because compiled
** programs call it in their innermost loops; GSL's ziggurat, through two function pointers per draw, was
** their largest single cost. The tables and the rare paths (tail and wedges) are in rng.c. */
extern const double plm_rng_zig_x[129], plm_rng_zig_f[129];
double plm_rng_normal_rare(uint64_t *s, uint64_t b);

static inline double plm_rng_normal(plm_rng *r)
{
    uint64_t b = plm_xoshiro_next(r->s);
    int i = (int)(b & 127);
    /* the uniform through int64_t: a signed conversion is one instruction, an unsigned one a branch */
    double x = ((double)(int64_t)(b >> 11) + 0.5) * 0x1.0p-53 * plm_rng_zig_x[i];
    if (__builtin_expect(x < plm_rng_zig_x[i + 1], 1)) return (b & 128) ? -x : x;
    return plm_rng_normal_rare(r->s, b);
}

/* A fresh 64-bit seed from the clock and process id, for users who ask for no seed. */
uint64_t plm_rng_entropy_seed(void);

/* The GSL type behind plm_rng, named "plume-xoshiro256++". */
extern const gsl_rng_type *plm_rng_type;

#endif
