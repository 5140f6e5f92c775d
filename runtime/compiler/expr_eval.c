/* expr_eval.c -- the evaluator of compiled programs: the scalar kernels shared with constant folding, vector
** exp and log, and the block interpreter (one switch per instruction per block of particles, plain loops
** inside). Normal draws come from plm_vnormal (vmath.h): plm_rng_normal, four streams at once. */
#include "expr_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "par.h"
#include "vmath.h"

static void vec_init(void);
static pthread_once_t vec_once = PTHREAD_ONCE_INIT;

void plm_expr_init(void)
{
    pthread_once(&vec_once, vec_init);
}

/* ---- vector exp and log: glibc's libmvec (2 or 4 lanes, within 1 ulp) where it exists. exp is the largest
** cost of most compiled models (volatility, rates, softplus), and the vector form is about 4x faster. ---- */
#if defined(__x86_64__) && defined(__GLIBC__) && !defined(PLM_NO_MVEC)
#include <immintrin.h>
__m128d _ZGVbN2v_exp(__m128d);
__m128d _ZGVbN2v_log(__m128d);
__m256d _ZGVdN4v_exp(__m256d);
__m256d _ZGVdN4v_log(__m256d);
static int have_avx2;

__attribute__((target("avx2"))) static void vexp4(const double *restrict a, double *restrict d, size_t m)
{
    size_t j;
    for (j = 0; j + 4 <= m; j += 4) _mm256_storeu_pd(d + j, _ZGVdN4v_exp(_mm256_loadu_pd(a + j)));
    for (; j < m; j++) d[j] = exp(a[j]);
}

__attribute__((target("avx2"))) static void vlog4(const double *restrict a, double *restrict d, size_t m)
{
    size_t j;
    for (j = 0; j + 4 <= m; j += 4) _mm256_storeu_pd(d + j, _ZGVdN4v_log(_mm256_loadu_pd(a + j)));
    for (; j < m; j++) d[j] = log(a[j]);
}

static void vexp(const double *restrict a, double *restrict d, size_t m)
{
    size_t j;
    if (have_avx2) {
        vexp4(a, d, m);
        return;
    }
    for (j = 0; j + 2 <= m; j += 2) _mm_storeu_pd(d + j, _ZGVbN2v_exp(_mm_loadu_pd(a + j)));
    for (; j < m; j++) d[j] = exp(a[j]);
}

static void vlog(const double *restrict a, double *restrict d, size_t m)
{
    size_t j;
    if (have_avx2) {
        vlog4(a, d, m);
        return;
    }
    for (j = 0; j + 2 <= m; j += 2) _mm_storeu_pd(d + j, _ZGVbN2v_log(_mm_loadu_pd(a + j)));
    for (; j < m; j++) d[j] = log(a[j]);
}

static void vec_init(void)
{
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2");
}
#else
static void vexp(const double *restrict a, double *restrict d, size_t m)
{
    size_t j;
    for (j = 0; j < m; j++) d[j] = exp(a[j]);
}

static void vlog(const double *restrict a, double *restrict d, size_t m)
{
    size_t j;
    for (j = 0; j < m; j++) d[j] = log(a[j]);
}

static void vec_init(void) {}
#endif

/* ---- scalar kernels shared by constant folding and the evaluator (so both round alike) ---- */

static inline double f_logistic(double x)
{
    if (x >= 0) return 1 / (1 + exp(-x));
    double e = exp(x);
    return e / (1 + e);
}
static inline double f_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
/* digamma and trigamma by recurrence up to x >= 10, then their asymptotic series (truncation below 1e-16
** relative there), with reflection for negative x. Written out rather than taken from GSL because GSL's
** versions call the aborting error handler on underflow and at the poles; these return NaN at the poles. */
static double f_digamma(double x)
{
    double r = 0, x2;
    if (isnan(x) || (x <= 0 && x == floor(x))) return NAN;
    if (x == INFINITY) return INFINITY;
    if (x < 0) return f_digamma(1 - x) - M_PI / tan(M_PI * x);
    while (x < 10) {
        r -= 1 / x;
        x += 1;
    }
    x2 = 1 / (x * x);
    return r + log(x) - 0.5 / x -
           x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 * (1.0 / 252 - x2 * (1.0 / 240 - x2 * (1.0 / 132 - x2 * (691.0 / 32760 - x2 / 12))))));
}

static double f_trigamma(double x)
{
    double r = 0, z, z2;
    if (isnan(x) || (x <= 0 && x == floor(x))) return NAN;
    if (x == INFINITY) return 0;
    if (x < 0) {
        double s = sin(M_PI * x);
        return M_PI * M_PI / (s * s) - f_trigamma(1 - x);
    }
    while (x < 10) {
        r += 1 / (x * x);
        x += 1;
    }
    z = 1 / x;
    z2 = z * z;
    return r + z + 0.5 * z2 +
           z * z2 * (1.0 / 6 - z2 * (1.0 / 30 - z2 * (1.0 / 42 - z2 * (1.0 / 30 - z2 * (5.0 / 66 - z2 * (691.0 / 2730 - z2 * 7.0 / 6))))));
}

static inline double f_phi(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }
static inline double f_sign(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : x == 0 ? 0.0 : x; }

double plm_op_eval(plm_op op, double a, double b, double c)
{
    switch (op) {
    case PLM_OP_NEG: return -a;
    case PLM_OP_EXP: return exp(a);
    case PLM_OP_LOG: return log(a);
    case PLM_OP_LOG1P: return log1p(a);
    case PLM_OP_EXPM1: return expm1(a);
    case PLM_OP_SQRT: return sqrt(a);
    case PLM_OP_SIN: return sin(a);
    case PLM_OP_COS: return cos(a);
    case PLM_OP_TAN: return tan(a);
    case PLM_OP_ASIN: return asin(a);
    case PLM_OP_ACOS: return acos(a);
    case PLM_OP_ATAN: return atan(a);
    case PLM_OP_SINH: return sinh(a);
    case PLM_OP_COSH: return cosh(a);
    case PLM_OP_TANH: return tanh(a);
    case PLM_OP_LOGISTIC: return f_logistic(a);
    case PLM_OP_SOFTPLUS: return f_softplus(a);
    case PLM_OP_ABS: return fabs(a);
    case PLM_OP_LGAMMA: return lgamma(a);
    case PLM_OP_DIGAMMA: return f_digamma(a);
    case PLM_OP_TRIGAMMA: return f_trigamma(a);
    case PLM_OP_ERF: return erf(a);
    case PLM_OP_PHI: return f_phi(a);
    case PLM_OP_FLOOR: return floor(a);
    case PLM_OP_SIGN: return f_sign(a);
    case PLM_OP_INV: return 1 / a;
    case PLM_OP_ADD: return a + b;
    case PLM_OP_SUB: return a - b;
    case PLM_OP_MUL: return a * b;
    case PLM_OP_DIV: return a / b;
    case PLM_OP_POW: return pow(a, b);
    case PLM_OP_MIN: return fmin(a, b);
    case PLM_OP_MAX: return fmax(a, b);
    case PLM_OP_ATAN2: return atan2(a, b);
    case PLM_OP_LT: return a < b;
    case PLM_OP_LE: return a <= b;
    case PLM_OP_EQ: return a == b;
    case PLM_OP_NE: return a != b;
    case PLM_OP_AND: return a != 0 && b != 0;
    case PLM_OP_OR: return a != 0 || b != 0;
    case PLM_OP_SELECT: return a != 0 ? b : c;
    case PLM_OP_FMA: return a * b + c;
    default: return NAN;
    }
}

/* One instruction over m particles. R[r] points at register r's block (uniform registers: one double).
** `first` is the index of the block's first particle, for its random stream. */
#define UN(E)                                                              \
    do {                                                                   \
        for (j = 0; j < m; j++) D[j] = E(A[j]);                            \
    } while (0)
#define BIN(E)                                                             \
    do {                                                                   \
        if (in->mode == 0)                                                 \
            for (j = 0; j < m; j++) D[j] = E(A[j], Bv[j]);                 \
        else if (in->mode == 1) {                                          \
            const double x_ = A[0];                                        \
            for (j = 0; j < m; j++) D[j] = E(x_, Bv[j]);                   \
        } else {                                                           \
            const double y_ = Bv[0];                                       \
            for (j = 0; j < m; j++) D[j] = E(A[j], y_);                    \
        }                                                                  \
    } while (0)
#define E_ADD(x, y) ((x) + (y))
#define E_SUB(x, y) ((x) - (y))
#define E_MUL(x, y) ((x) * (y))
#define E_DIV(x, y) ((x) / (y))
#define E_LT(x, y) ((double)((x) < (y)))
#define E_LE(x, y) ((double)((x) <= (y)))
#define E_EQ(x, y) ((double)((x) == (y)))
#define E_NE(x, y) ((double)((x) != (y)))
#define E_AND(x, y) ((double)((x) != 0 && (y) != 0))
#define E_OR(x, y) ((double)((x) != 0 || (y) != 0))
#define E_NEG(x) (-(x))
#define E_INV(x) (1 / (x))

/* O3 here: the block loops must vectorise whatever the build level (GCC -O2 uses a very cheap cost model) */
__attribute__((optimize("O3"))) static void run(const plm_prog *p, const plm_ins *ins, int nins, double *const *R, size_t m, size_t first,
                plm_rng *rng, const plm_prog_in *inb)
{
    int t;
    size_t j;
    for (t = 0; t < nins; t++) {
        const plm_ins *in = &ins[t];
        double *restrict D = R[in->d];
        const double *restrict A, *restrict Bv, *restrict C;
        /* an input's a and c are an index and a group, not registers: handled before they are read as such */
        if (in->op == PLM_OP_INPUT) {   /* uniform pre-pass only */
            D[0] = inb[in->c].p[in->a];
            continue;
        }
        A = R[in->a], Bv = R[in->b], C = R[in->c];
        switch (in->op) {
        case PLM_OP_CONST: D[0] = in->k; break;
        case PLM_OP_NEG: UN(E_NEG); break;
        case PLM_OP_EXP: vexp(A, D, m); break;
        case PLM_OP_LOG: vlog(A, D, m); break;
        case PLM_OP_LOG1P: UN(log1p); break;
        case PLM_OP_EXPM1: UN(expm1); break;
        case PLM_OP_SQRT: UN(sqrt); break;
        case PLM_OP_SIN: UN(sin); break;
        case PLM_OP_COS: UN(cos); break;
        case PLM_OP_TAN: UN(tan); break;
        case PLM_OP_ASIN: UN(asin); break;
        case PLM_OP_ACOS: UN(acos); break;
        case PLM_OP_ATAN: UN(atan); break;
        case PLM_OP_SINH: UN(sinh); break;
        case PLM_OP_COSH: UN(cosh); break;
        case PLM_OP_TANH: UN(tanh); break;
        case PLM_OP_LOGISTIC: UN(f_logistic); break;
        case PLM_OP_SOFTPLUS: UN(f_softplus); break;
        case PLM_OP_ABS: UN(fabs); break;
        case PLM_OP_LGAMMA: UN(lgamma); break;
        case PLM_OP_DIGAMMA: UN(f_digamma); break;
        case PLM_OP_TRIGAMMA: UN(f_trigamma); break;
        case PLM_OP_ERF: UN(erf); break;
        case PLM_OP_PHI: UN(f_phi); break;
        case PLM_OP_FLOOR: UN(floor); break;
        case PLM_OP_SIGN: UN(f_sign); break;
        case PLM_OP_INV: UN(E_INV); break;
        case PLM_OP_ADD: BIN(E_ADD); break;
        case PLM_OP_SUB: BIN(E_SUB); break;
        case PLM_OP_MUL: BIN(E_MUL); break;
        case PLM_OP_DIV: BIN(E_DIV); break;
        case PLM_OP_POW: BIN(pow); break;
        case PLM_OP_MIN: BIN(fmin); break;
        case PLM_OP_MAX: BIN(fmax); break;
        case PLM_OP_ATAN2: BIN(atan2); break;
        case PLM_OP_LT: BIN(E_LT); break;
        case PLM_OP_LE: BIN(E_LE); break;
        case PLM_OP_EQ: BIN(E_EQ); break;
        case PLM_OP_NE: BIN(E_NE); break;
        case PLM_OP_AND: BIN(E_AND); break;
        case PLM_OP_OR: BIN(E_OR); break;
        case PLM_OP_FMA:
            /* the compiler puts the varying factor in a: modes 0 (vvv), 2 (vuv), 4 (vvu), 6 (vuu) */
            switch (in->mode) {
            case 0: for (j = 0; j < m; j++) D[j] = A[j] * Bv[j] + C[j]; break;
            case 2: {
                const double b = Bv[0];
                for (j = 0; j < m; j++) D[j] = A[j] * b + C[j];
                break;
            }
            case 4: {
                const double c = C[0];
                for (j = 0; j < m; j++) D[j] = A[j] * Bv[j] + c;
                break;
            }
            default: {
                const double b = Bv[0], c = C[0];
                for (j = 0; j < m; j++) D[j] = A[j] * b + c;
            }
            }
            break;
        case PLM_OP_SELECT: {
            size_t sa = !(in->mode & 1), sb = !(in->mode & 2), sc = !(in->mode & 4);
            for (j = 0; j < m; j++) D[j] = A[j * sa] != 0 ? Bv[j * sb] : C[j * sc];
            break;
        }
        case PLM_OP_STDNORMAL: plm_vnormal(rng + first, D, m); break;
        case PLM_OP_UNIFORM:
            for (j = 0; j < m; j++) D[j] = plm_rng_uniform(&rng[first + j]);
            break;
        default: {
            /* n-ary: gather arguments per particle (natives, generic samplers and densities) */
            const int *ar = p->regpool + in->argoff;
            double x[PLM_NATIVE_MAXARGS > 4 ? PLM_NATIVE_MAXARGS : 4];
            int k, nk = in->n;
            for (j = 0; j < m; j++) {
                if (in->op == PLM_OP_SAMPLE_CAT) {
                    double u = plm_rng_uniform(&rng[first + j]), cum = 0, res = nk - 1;
                    for (k = 0; k < nk; k++)
                        if (isnan(R[ar[k] >> 1][(ar[k] & 1) ? 0 : j])) res = NAN;
                    if (isnan(res)) {
                        D[j] = NAN;
                        continue;
                    }
                    for (k = 0; k < nk - 1; k++) {
                        cum += R[ar[k] >> 1][(ar[k] & 1) ? 0 : j];
                        if (u < cum) {
                            res = k;
                            break;
                        }
                    }
                    D[j] = res;
                    continue;
                }
                for (k = 0; k < nk && k < (int)(sizeof x / sizeof *x); k++) x[k] = R[ar[k] >> 1][(ar[k] & 1) ? 0 : j];
                switch (in->op) {
                case PLM_OP_NATIVE: D[j] = plm_native_call(in->fn, x); break;
                case PLM_OP_NATIVE_D: D[j] = plm_native_call_d(in->fn, x, in->kind); break;
                case PLM_OP_SAMPLE: {
                    /* a NaN parameter (from the guards) must not reach GSL: its gamma sampler never ends on NaN */
                    int bad = 0;
                    for (k = 0; k < nk; k++) bad |= isnan(x[k]);
                    D[j] = bad ? NAN : plm_dist_sample1((plm_dist_kind)in->kind, x, &rng[first + j]);
                    break;
                }
                case PLM_OP_LOGPDF: D[j] = plm_dist_logpdf1((plm_dist_kind)in->kind, x, x[nk - 1]); break;
                default: D[j] = NAN;
                }
            }
        }
        }
    }
}

/* run() for a block of one particle: the same operations on the same values (bit for bit), without the loops.
** Guided diffusion paths evaluate their drift at one point per Euler step, where the loop set-up of the
** vectorised block code costs more than the arithmetic. Draws and n-ary instructions go through run(). */
static void run1(const plm_prog *p, const plm_ins *ins, int nins, double *const *R, size_t first, plm_rng *rng,
                 const plm_prog_in *inb)
{
    for (int t = 0; t < nins; t++) {
        const plm_ins *in = &ins[t];
        int op = in->op;
        double *D = R[in->d];
        if (op == PLM_OP_NEG) D[0] = -R[in->a][0];
        else if (op >= PLM_OP_EXP && op <= PLM_OP_INV) D[0] = plm_op_eval((plm_op)op, R[in->a][0], 0, 0);
        else if (op >= PLM_OP_ADD && op <= PLM_OP_OR) {
            double a = R[in->a][0], b = R[in->b][0];
            switch (op) {
            case PLM_OP_ADD: D[0] = a + b; break;
            case PLM_OP_SUB: D[0] = a - b; break;
            case PLM_OP_MUL: D[0] = a * b; break;
            case PLM_OP_DIV: D[0] = a / b; break;
            default: D[0] = plm_op_eval((plm_op)op, a, b, 0);
            }
        } else if (op == PLM_OP_FMA) D[0] = R[in->a][0] * R[in->b][0] + R[in->c][0];
        else if (op == PLM_OP_SELECT) D[0] = R[in->a][0] != 0 ? R[in->b][0] : R[in->c][0];
        else if (op == PLM_OP_CONST) D[0] = in->k;
        else run(p, in, 1, R, 1, first, rng, inb);
    }
}

/* A decoded instruction of plm_prog_point: its handler with its operands' addresses (ins for what run()
** evaluates). The varying part of a drift is a few arithmetic instructions run once per Euler step, so dispatch is
** most of its cost: with GCC or Clang each handler jumps straight to the next one's (threaded code: one
** indirect jump per instruction, predicted per site), elsewhere (or built with -DPLM_NO_THREADED) a switch. Instructions that write an output
** write it in place, so that most programs need no copies at the end. */
typedef struct pt_ins {
    int h;               /* handler: PT_* */
    const void *go;      /* its label, for threaded dispatch */
    int op;
    double *d;
    const double *a, *b, *c;
    const plm_ins *ins;
} pt_ins;
enum { PT_END, PT_COPY, PT_CONST, PT_NEG, PT_ADD, PT_SUB, PT_MUL, PT_DIV, PT_FMA, PT_SELECT, PT_UNARY, PT_BINARY, PT_RUN,
       PT_NHANDLERS };

#if defined(__GNUC__) && !defined(PLM_NO_THREADED)
#define PT_THREADED 1
#else
#define PT_THREADED 0
#endif

/* Runs the code of pt; with pt NULL, gives the handlers' labels (threaded dispatch) through *labels. */
static void point_exec(plm_prog_point *pt, const void *const **labels)
{
#if PT_THREADED
    static const void *const tab[PT_NHANDLERS] = {&&L_END, &&L_COPY,   &&L_CONST, &&L_NEG,   &&L_ADD,    &&L_SUB, &&L_MUL,
                                                  &&L_DIV, &&L_FMA,    &&L_SELECT, &&L_UNARY, &&L_BINARY, &&L_RUN};
#define PT_HANDLER(name) L_##name:
#define PT_NEXT() goto *(++q)->go
    const pt_ins *q;
    if (!pt) {
        *labels = tab;
        return;
    }
    q = pt->code;
    goto *q->go;
#else
#define PT_HANDLER(name) case PT_##name:
#define PT_NEXT() q++; continue
    const pt_ins *q;
    if (!pt) {
        *labels = NULL;
        return;
    }
    q = pt->code;
    for (;;) switch (q->h) {
#endif
    PT_HANDLER(END) return;
    PT_HANDLER(COPY) *q->d = *q->a; PT_NEXT();
    PT_HANDLER(CONST) *q->d = q->ins->k; PT_NEXT();
    PT_HANDLER(NEG) *q->d = -*q->a; PT_NEXT();
    PT_HANDLER(ADD) *q->d = *q->a + *q->b; PT_NEXT();
    PT_HANDLER(SUB) *q->d = *q->a - *q->b; PT_NEXT();
    PT_HANDLER(MUL) *q->d = *q->a * *q->b; PT_NEXT();
    PT_HANDLER(DIV) *q->d = *q->a / *q->b; PT_NEXT();
    PT_HANDLER(FMA) *q->d = *q->a * *q->b + *q->c; PT_NEXT();
    PT_HANDLER(SELECT) *q->d = *q->a != 0 ? *q->b : *q->c; PT_NEXT();
    PT_HANDLER(UNARY) *q->d = plm_op_eval((plm_op)q->op, *q->a, 0, 0); PT_NEXT();
    PT_HANDLER(BINARY) *q->d = plm_op_eval((plm_op)q->op, *q->a, *q->b, 0); PT_NEXT();
    PT_HANDLER(RUN) run(pt->w.p, q->ins, 1, pt->w.R, 1, 0, pt->rng, pt->in); PT_NEXT();
#if !PT_THREADED
    }
#endif
#undef PT_HANDLER
#undef PT_NEXT
}

/* Does an instruction of p after t read register r? */
static int read_after(const plm_prog *p, int t, int r)
{
    for (t++; t < p->nvins; t++) {
        const plm_ins *in = &p->vins[t];
        int op = in->op, k;
        if (op >= PLM_OP_NEG && op <= PLM_OP_INV) {
            if (in->a == r) return 1;
        } else if (op >= PLM_OP_ADD && op <= PLM_OP_OR) {
            if (in->a == r || in->b == r) return 1;
        } else if (op == PLM_OP_SELECT || op == PLM_OP_FMA) {
            if (in->a == r || in->b == r || in->c == r) return 1;
        } else if (op != PLM_OP_CONST)
            for (k = 0; k < in->n; k++)
                if (p->regpool[in->argoff + k] >> 1 == r) return 1;
    }
    return 0;
}

plm_status plm_prog_point_init(plm_ctx *ctx, plm_prog_point *pt, const plm_prog *p, const plm_prog_in *in,
                               double *const *out, plm_rng *rng)
{
    pt_ins *q, *code;
    const void *const *labels;
    int r, t, o, nc = 0;
    plm_status st;
    pt->code = NULL;
    if ((st = plm_prog_ws_init_block(ctx, &pt->w, p, 1))) return st;
    if (!(code = q = malloc(((size_t)p->nvins + (size_t)p->nout + 1) * sizeof *q))) {
        plm_prog_ws_free(&pt->w);
        return plm_fail(ctx, PLM_ENOMEM, "eval: out of memory");
    }
    pt->code = q, pt->in = in, pt->rng = rng;
    for (r = 0; r < p->nvin; r++) {
        const plm_prog_in *pi = &in[p->vin_grp[r]];
        pt->w.R[p->nuni + r] = (double *)pi->p + (size_t)p->vin_idx[r] * pi->ld;
    }
    plm_prog_uniforms(&pt->w, in);
    for (t = 0; t < p->nvins; t++) {
        const plm_ins *in1 = &p->vins[t];
        double *const *R = pt->w.R;
        int op = in1->op;
        q->op = op, q->ins = in1, q->d = R[in1->d], q->a = q->b = q->c = NULL;
        if (op == PLM_OP_NEG) q->h = PT_NEG, q->a = R[in1->a];
        else if (op >= PLM_OP_EXP && op <= PLM_OP_INV) q->h = PT_UNARY, q->a = R[in1->a];
        else if (op >= PLM_OP_ADD && op <= PLM_OP_OR) {
            q->h = op == PLM_OP_ADD ? PT_ADD : op == PLM_OP_SUB ? PT_SUB : op == PLM_OP_MUL ? PT_MUL : op == PLM_OP_DIV ? PT_DIV : PT_BINARY;
            q->a = R[in1->a], q->b = R[in1->b];
        } else if (op == PLM_OP_SELECT || op == PLM_OP_FMA)
            q->h = op == PLM_OP_FMA ? PT_FMA : PT_SELECT, q->a = R[in1->a], q->b = R[in1->b], q->c = R[in1->c];
        else if (op == PLM_OP_CONST) q->h = PT_CONST;
        else q->h = PT_RUN;   /* n-ary instructions and draws: through run() */
        q++;
    }
    /* an output whose register is last written by an arithmetic instruction and read by none after it is written
    ** in place (one output per register, and not over an input the program reads); the others are copied */
    for (o = 0; o < p->nout; o++) {
        int reg = p->outreg[o], last = -1, shared = 0, k;
        const double *from = p->outuni[o] ? pt->w.u + reg : pt->w.R[reg];
        for (k = 0; k < p->nout; k++)
            if (k != o && (out[k] == out[o] || (p->outreg[k] == reg && p->outuni[k] == p->outuni[o]))) shared = 1;
        for (k = 0; k < p->nvin; k++) shared |= pt->w.R[p->nuni + k] == out[o];
        for (t = 0; t < p->nvins && !p->outuni[o]; t++)
            if (p->vins[t].d == reg) last = t;
        if (!shared && last >= 0 && code[last].h != PT_RUN && !read_after(p, last, reg)) code[last].d = out[o];
        else {
            q->h = PT_COPY, q->op = 0, q->d = out[o], q->a = from, q->ins = NULL, q->b = q->c = NULL;
            q++, nc++;
        }
    }
    q->h = PT_END, q->op = 0, q->d = NULL, q->a = q->b = q->c = NULL, q->ins = NULL;
    pt->n = p->nvins + nc;
    point_exec(NULL, &labels);
    for (t = 0; t <= pt->n; t++) code[t].go = labels ? labels[code[t].h] : NULL;
    return PLM_OK;
}

void plm_prog_point_run(plm_prog_point *pt)
{
    point_exec(pt, NULL);
}

void plm_prog_point_free(plm_prog_point *pt)
{
    plm_prog_ws_free(&pt->w);
    free(pt->code);
    pt->code = NULL;
}

plm_status plm_prog_ws_init(plm_ctx *ctx, plm_prog_ws *w, const plm_prog *p)
{
    return plm_prog_ws_init_block(ctx, w, p, PLM_EXPR_BLOCK);
}

plm_status plm_prog_ws_init_block(plm_ctx *ctx, plm_prog_ws *w, const plm_prog *p, int block)
{
    int nreg = p->nuni + p->nvin + p->ntmp, r;
    if (block < 1 || block > PLM_EXPR_BLOCK) block = PLM_EXPR_BLOCK;
    w->p = p;
    w->u = malloc(((size_t)p->nuni + (size_t)p->ntmp * (size_t)block + 1) * sizeof *w->u);
    w->R = calloc((size_t)nreg + 1, sizeof *w->R);
    if (!w->u || !w->R) {
        free(w->u);
        free(w->R);
        w->u = NULL;
        w->R = NULL;
        return plm_fail(ctx, PLM_ENOMEM, "eval: out of memory");
    }
    for (r = 0; r < p->nuni; r++) w->R[r] = w->u + r;
    for (r = 0; r < p->ntmp; r++) w->R[p->nuni + p->nvin + r] = w->u + p->nuni + (size_t)r * (size_t)block;
    return PLM_OK;
}

void plm_prog_ws_free(plm_prog_ws *w)
{
    free(w->u);
    free(w->R);
    w->u = NULL;
    w->R = NULL;
}

void plm_prog_uniforms(plm_prog_ws *w, const plm_prog_in *in)
{
    run(w->p, w->p->uins, w->p->nuins, w->R, 1, 0, NULL, in);
}

void plm_prog_run_block(plm_prog_ws *w, const plm_prog_in *in, size_t first, size_t m)
{
    const plm_prog *p = w->p;
    double **R = w->R;
    int r;
    for (r = 0; r < p->nvin; r++) {
        const plm_prog_in *pi = &in[p->vin_grp[r]];
        R[p->nuni + r] = (double *)pi->p + (size_t)p->vin_idx[r] * pi->ld + first;
    }
    run(p, p->vins, p->nvins, R, m, first, NULL, in);
}

void plm_prog_block(plm_prog_ws *w, const plm_prog_in *in, size_t first, size_t m, double *const *out, plm_rng *rng)
{
    const plm_prog *p = w->p;
    double **R = w->R;
    int r, o;
    for (r = 0; r < p->nvin; r++) {
        const plm_prog_in *pi = &in[p->vin_grp[r]];
        R[p->nuni + r] = (double *)pi->p + (size_t)p->vin_idx[r] * pi->ld + first;
    }
    if (m == 1) {
        run1(p, p->vins, p->nvins, R, first, rng, in);
        for (o = 0; o < p->nout; o++) out[o][first] = p->outuni[o] ? w->u[p->outreg[o]] : R[p->outreg[o]][0];
        return;
    }
    run(p, p->vins, p->nvins, R, m, first, rng, in);
    for (o = 0; o < p->nout; o++) {
        double *dst = out[o] + first;
        if (p->outuni[o]) {
            double v = w->u[p->outreg[o]];
            size_t j;
            for (j = 0; j < m; j++) dst[j] = v;
        } else
            memmove(dst, R[p->outreg[o]], m * sizeof *dst);   /* in-place updates are allowed */
    }
}

typedef struct eval_job {
    const plm_prog *p;
    size_t n;
    const plm_prog_in *in;
    double *const *out;
    plm_rng *rng;
    const double *u;
    int failed;
} eval_job;

static void eval_blocks(void *arg, size_t b0, size_t b1, int worker)
{
    eval_job *J = arg;
    plm_prog_ws w;
    size_t b;
    (void)worker;
    if (plm_prog_ws_init(NULL, &w, J->p)) {
        J->failed = 1;
        return;
    }
    memcpy(w.u, J->u, (size_t)J->p->nuni * sizeof *w.u);
    for (b = b0; b < b1; b++) {
        size_t first = b * PLM_EXPR_BLOCK, m = J->n - first < PLM_EXPR_BLOCK ? J->n - first : PLM_EXPR_BLOCK;
        plm_prog_block(&w, J->in, first, m, J->out, J->rng);
    }
    plm_prog_ws_free(&w);
}

static plm_status check_inputs(plm_ctx *ctx, const plm_prog *p, const plm_prog_in *in, size_t n, plm_rng *rng)
{
    int i, g;
    for (g = 0; g < PLM_NGROUPS; g++) {
        int used = 0;
        for (i = 0; i < p->nvin; i++) used |= p->vin_grp[i] == g;
        for (i = 0; i < p->nuins; i++) used |= p->uins[i].op == PLM_OP_INPUT && p->uins[i].c == g;
        if (used && !in[g].p) return plm_fail(ctx, PLM_EINVAL, "eval: input group %d is used but not bound", g);
    }
    if (p->ndraws && !rng && n)
        return plm_fail(ctx, PLM_EINVAL, "eval: the program draws random numbers but no streams were given");
    return PLM_OK;
}

int plm_prog_uses(const plm_prog *p, int grp, int idx)
{
    int i;
    for (i = 0; i < p->nvin; i++)
        if (p->vin_grp[i] == grp && p->vin_idx[i] == idx) return 1;
    for (i = 0; i < p->nuins; i++)
        if (p->uins[i].op == PLM_OP_INPUT && p->uins[i].c == grp && p->uins[i].a == idx) return 1;
    return 0;
}

plm_status plm_prog_check(plm_ctx *ctx, const plm_prog *p, const plm_prog_in *in, int with_rng)
{
    return check_inputs(ctx, p, in, 1, with_rng ? (plm_rng *)1 : NULL);
}

plm_status plm_prog_eval(plm_ctx *ctx, const plm_prog *p, size_t n, const plm_prog_in *in, double *const *out,
                         plm_rng *rng, int nthreads)
{
    plm_prog_ws w;
    eval_job J;
    plm_status st;
    size_t nblocks = (n + PLM_EXPR_BLOCK - 1) / PLM_EXPR_BLOCK;
    if ((st = check_inputs(ctx, p, in, n, rng))) return st;
    if ((st = plm_prog_ws_init(ctx, &w, p))) return st;
    plm_prog_uniforms(&w, in);
    if (nthreads == 1 || nblocks <= 1) {
        size_t b;
        for (b = 0; b < nblocks; b++) {
            size_t first = b * PLM_EXPR_BLOCK, m = n - first < PLM_EXPR_BLOCK ? n - first : PLM_EXPR_BLOCK;
            plm_prog_block(&w, in, first, m, out, rng);
        }
        plm_prog_ws_free(&w);
        return PLM_OK;
    }
    J.p = p;
    J.n = n;
    J.in = in;
    J.out = out;
    J.rng = rng;
    J.u = w.u;
    J.failed = 0;
    plm_parallel_for(nthreads, nblocks, 1, eval_blocks, &J);
    plm_prog_ws_free(&w);
    if (J.failed) return plm_fail(ctx, PLM_ENOMEM, "eval: out of memory");
    return PLM_OK;
}
