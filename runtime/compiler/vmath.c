/* vmath.c -- vector exp and normal draws (see vmath.h).
**
** Why not SLEEF: glibc's libmvec is already linked (through libm) and gives the same 4-lane AVX2 exp within
** 1 ulp, and the normal draws need the exact arithmetic of plm_rng_normal to stay bit-identical, which no
** library offers. So there is no new dependency. */
#include "vmath.h"

#include <math.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GLIBC__) && !defined(PLM_NO_MVEC)
#include <immintrin.h>

__m256d _ZGVdN4v_exp(__m256d);
__m128d _ZGVbN2v_exp(__m128d);

static int avx2(void)
{
    static int have = -1;   /* a benign race: every thread computes the same value */
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx2") != 0;
    }
    return have;
}

__attribute__((target("avx2"))) static void vexp4(const double *a, double *d, size_t m)
{
    size_t j;
    for (j = 0; j + 4 <= m; j += 4) _mm256_storeu_pd(d + j, _ZGVdN4v_exp(_mm256_loadu_pd(a + j)));
    for (; j < m; j++) d[j] = exp(a[j]);
}

void plm_vexp(const double *a, double *d, size_t m)
{
    size_t j;
    if (avx2()) {
        vexp4(a, d, m);
        return;
    }
    for (j = 0; j + 2 <= m; j += 2) _mm_storeu_pd(d + j, _ZGVbN2v_exp(_mm_loadu_pd(a + j)));
    for (; j < m; j++) d[j] = exp(a[j]);
}

/* The 4x4 transpose of 64-bit lanes: four streams' states (one per row) to one state word per register, and
** back (the transpose is its own inverse). */
#define TRANSPOSE4(r0, r1, r2, r3)                                   \
    do {                                                             \
        __m256i t0_ = _mm256_unpacklo_epi64(r0, r1);                 \
        __m256i t1_ = _mm256_unpackhi_epi64(r0, r1);                 \
        __m256i t2_ = _mm256_unpacklo_epi64(r2, r3);                 \
        __m256i t3_ = _mm256_unpackhi_epi64(r2, r3);                 \
        r0 = _mm256_permute2x128_si256(t0_, t2_, 0x20);              \
        r1 = _mm256_permute2x128_si256(t1_, t3_, 0x20);              \
        r2 = _mm256_permute2x128_si256(t0_, t2_, 0x31);              \
        r3 = _mm256_permute2x128_si256(t1_, t3_, 0x31);              \
    } while (0)

#define ROTL(x, k) _mm256_or_si256(_mm256_slli_epi64(x, k), _mm256_srli_epi64(x, 64 - (k)))

/* One xoshiro256++ step in four lanes: s0..s3 hold word 0..3 of four streams' states; returns their outputs. */
__attribute__((target("avx2"))) static inline __m256i xoshiro4(__m256i *s0, __m256i *s1, __m256i *s2, __m256i *s3)
{
    __m256i b = _mm256_add_epi64(ROTL(_mm256_add_epi64(*s0, *s3), 23), *s0), t = _mm256_slli_epi64(*s1, 17);
    *s2 = _mm256_xor_si256(*s2, *s0);
    *s3 = _mm256_xor_si256(*s3, *s1);
    *s1 = _mm256_xor_si256(*s1, *s2);
    *s0 = _mm256_xor_si256(*s0, *s3);
    *s2 = _mm256_xor_si256(*s2, t);
    *s3 = ROTL(*s3, 45);
    return b;
}

/* The ziggurat's fast path for four 64-bit draws b, as plm_rng_normal takes it: the signed values, and in *ok a bit
** per lane it accepted. (double)(b >> 11) is formed exactly from its two halves (AVX2 has no 64-bit integer
** conversion), so every lane rounds as the scalar code does; the layer edges come by four scalar loads (AVX2's
** gather is slower on some CPUs, microcoded). */
__attribute__((target("avx2"))) static inline __m256d zig4(__m256i b, int *ok)
{
    const __m256i lo32 = _mm256_set1_epi64x(0xffffffffLL), m127 = _mm256_set1_epi64x(127);
    const __m256i e52 = _mm256_set1_epi64x(0x4330000000000000LL), e84 = _mm256_set1_epi64x(0x4530000000000000LL);
    const __m256d p52 = _mm256_set1_pd(0x1p52), p84 = _mm256_set1_pd(0x1p84), half = _mm256_set1_pd(0.5);
    const __m256d scale = _mm256_set1_pd(0x1.0p-53);
    __m256i v = _mm256_srli_epi64(b, 11), im = _mm256_and_si256(b, m127);
    uint64_t ii[4] = {(uint64_t)_mm256_extract_epi64(im, 0), (uint64_t)_mm256_extract_epi64(im, 1),
                      (uint64_t)_mm256_extract_epi64(im, 2), (uint64_t)_mm256_extract_epi64(im, 3)};
    __m256d u = _mm256_add_pd(_mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(v, 32), e84)), p84),
                              _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(v, lo32), e52)), p52));
    __m256d x = _mm256_mul_pd(_mm256_mul_pd(_mm256_add_pd(u, half), scale),
                              _mm256_set_pd(plm_rng_zig_x[ii[3]], plm_rng_zig_x[ii[2]], plm_rng_zig_x[ii[1]], plm_rng_zig_x[ii[0]]));
    __m256d edge = _mm256_set_pd(plm_rng_zig_x[ii[3] + 1], plm_rng_zig_x[ii[2] + 1], plm_rng_zig_x[ii[1] + 1],
                                 plm_rng_zig_x[ii[0] + 1]);
    __m256d sign = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_srli_epi64(b, 7), 63));
    *ok = _mm256_movemask_pd(_mm256_cmp_pd(x, edge, _CMP_LT_OQ));
    return _mm256_xor_pd(x, sign);
}

/* Four streams at a time, one draw from each: a lane the fast path rejects (1.2%) finishes on the scalar rare path,
** from the state the scalar draw would have at that point. */
__attribute__((target("avx2"))) static void vnormal4(plm_rng *r, double *d, size_t m)
{
    size_t j;
    for (j = 0; j + 4 <= m; j += 4) {
        plm_rng *q = r + j;
        __m256i s0 = _mm256_loadu_si256((const __m256i *)q[0].s), s1 = _mm256_loadu_si256((const __m256i *)q[1].s);
        __m256i s2 = _mm256_loadu_si256((const __m256i *)q[2].s), s3 = _mm256_loadu_si256((const __m256i *)q[3].s);
        __m256i b;
        int ok, k;
        TRANSPOSE4(s0, s1, s2, s3);
        b = xoshiro4(&s0, &s1, &s2, &s3);
        TRANSPOSE4(s0, s1, s2, s3);
        _mm256_storeu_si256((__m256i *)q[0].s, s0);
        _mm256_storeu_si256((__m256i *)q[1].s, s1);
        _mm256_storeu_si256((__m256i *)q[2].s, s2);
        _mm256_storeu_si256((__m256i *)q[3].s, s3);
        _mm256_storeu_pd(d + j, zig4(b, &ok));
        if (__builtin_expect(ok != 15, 0)) {
            uint64_t bb[4];
            _mm256_storeu_si256((__m256i *)bb, b);
            for (k = 0; k < 4; k++)
                if (!(ok >> k & 1)) d[j + (size_t)k] = plm_rng_normal_rare(q[k].s, bb[k]);
        }
    }
    for (; j < m; j++) d[j] = plm_rng_normal(&r[j]);
}

/* plm_vnormal_fill's four streams with their states in registers throughout: the states stored back only for a
** rare-path draw (which reads more of its stream) and at the end. */
__attribute__((target("avx2"))) static void vfill4(plm_rng *r, double *d, size_t n)
{
    __m256i s0 = _mm256_loadu_si256((const __m256i *)r[0].s), s1 = _mm256_loadu_si256((const __m256i *)r[1].s);
    __m256i s2 = _mm256_loadu_si256((const __m256i *)r[2].s), s3 = _mm256_loadu_si256((const __m256i *)r[3].s);
    size_t j;
    TRANSPOSE4(s0, s1, s2, s3);
    for (j = 0; j + 4 <= n; j += 4) {
        __m256i b = xoshiro4(&s0, &s1, &s2, &s3);
        int ok, k;
        _mm256_storeu_pd(d + j, zig4(b, &ok));
        if (__builtin_expect(ok != 15, 0)) {
            uint64_t bb[4];
            _mm256_storeu_si256((__m256i *)bb, b);
            TRANSPOSE4(s0, s1, s2, s3);
            _mm256_storeu_si256((__m256i *)r[0].s, s0);
            _mm256_storeu_si256((__m256i *)r[1].s, s1);
            _mm256_storeu_si256((__m256i *)r[2].s, s2);
            _mm256_storeu_si256((__m256i *)r[3].s, s3);
            for (k = 0; k < 4; k++)
                if (!(ok >> k & 1)) d[j + (size_t)k] = plm_rng_normal_rare(r[k].s, bb[k]);
            s0 = _mm256_loadu_si256((const __m256i *)r[0].s), s1 = _mm256_loadu_si256((const __m256i *)r[1].s);
            s2 = _mm256_loadu_si256((const __m256i *)r[2].s), s3 = _mm256_loadu_si256((const __m256i *)r[3].s);
            TRANSPOSE4(s0, s1, s2, s3);
        }
    }
    TRANSPOSE4(s0, s1, s2, s3);
    _mm256_storeu_si256((__m256i *)r[0].s, s0);
    _mm256_storeu_si256((__m256i *)r[1].s, s1);
    _mm256_storeu_si256((__m256i *)r[2].s, s2);
    _mm256_storeu_si256((__m256i *)r[3].s, s3);
    for (; j < n; j++) d[j] = plm_rng_normal(&r[j & 3]);
}

void plm_vnormal_fill(plm_rng r[4], double *d, size_t n)
{
    size_t j;
    if (avx2()) {
        vfill4(r, d, n);
        return;
    }
    for (j = 0; j < n; j++) d[j] = plm_rng_normal(&r[j & 3]);
}

void plm_vnormal(plm_rng *r, double *d, size_t m)
{
    size_t j;
    if (avx2()) {
        vnormal4(r, d, m);
        return;
    }
    for (j = 0; j < m; j++) d[j] = plm_rng_normal(&r[j]);
}

#else
void plm_vexp(const double *a, double *d, size_t m)
{
    size_t j;
    for (j = 0; j < m; j++) d[j] = exp(a[j]);
}

void plm_vnormal(plm_rng *r, double *d, size_t m)
{
    size_t j;
    for (j = 0; j < m; j++) d[j] = plm_rng_normal(&r[j]);
}

void plm_vnormal_fill(plm_rng r[4], double *d, size_t n)
{
    size_t j;
    for (j = 0; j < n; j++) d[j] = plm_rng_normal(&r[j & 3]);
}
#endif
