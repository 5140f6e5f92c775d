/* expr.c -- expression graphs (hash-consed, constant-folded), symbolic derivatives, symbolic distributions,
** and the compiler/evaluator of block instruction sequences. See expr.h for the contracts. */
#include "expr.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>

#include "par.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- standard normal draws: a 128-layer ziggurat (Marsaglia and Tsang) reading xoshiro256++ directly.
** One 64-bit draw gives the layer (7 bits), the sign (1 bit) and a 53-bit uniform, and 98.8% of draws are
** accepted at once, so a draw costs a few nanoseconds: GSL's version goes through two function pointers per
** draw and was the largest single cost of a compiled transition. ---- */

#define ZIG_R 3.442619855899
#define ZIG_V 9.91256303526217e-3

static double zig_x[129], zig_f[129];
static void vec_init(void);
static pthread_once_t zig_once = PTHREAD_ONCE_INIT;

static void zig_init(void)
{
    int i;
    vec_init();
    zig_x[0] = ZIG_V / exp(-0.5 * ZIG_R * ZIG_R);
    zig_x[1] = ZIG_R;
    for (i = 2; i < 128; i++) zig_x[i] = sqrt(-2 * log(ZIG_V / zig_x[i - 1] + exp(-0.5 * zig_x[i - 1] * zig_x[i - 1])));
    zig_x[128] = 0;
    for (i = 0; i <= 128; i++) zig_f[i] = exp(-0.5 * zig_x[i] * zig_x[i]);
}

static inline double u53(uint64_t b)
{
    /* through int64_t: a signed conversion is one instruction, an unsigned one a branch */
    return ((double)(int64_t)(b >> 11) + 0.5) * 0x1.0p-53;
}

/* the rare paths (1.2% of draws): the tail beyond r and the wedges, with a fresh draw on rejection */
static double __attribute__((noinline)) zig_slow(uint64_t *s, uint64_t b)
{
    for (;;) {
        int i = (int)(b & 127);
        double sign = (b & 128) ? -1.0 : 1.0, x = u53(b) * zig_x[i];
        if (x < zig_x[i + 1]) return sign * x;
        if (i == 0) {
            double a, c;
            do {
                a = -log(u53(plm_xoshiro_next(s))) / ZIG_R;
                c = -log(u53(plm_xoshiro_next(s)));
            } while (c + c < a * a);
            return sign * (ZIG_R + a);
        }
        if (zig_f[i] + u53(plm_xoshiro_next(s)) * (zig_f[i + 1] - zig_f[i]) < exp(-0.5 * x * x)) return sign * x;
        b = plm_xoshiro_next(s);
    }
}

static inline double zig_normal(uint64_t *s)
{
    uint64_t b = plm_xoshiro_next(s);
    int i = (int)(b & 127);
    double x = u53(b) * zig_x[i];
    if (__builtin_expect(x < zig_x[i + 1], 1)) return (b & 128) ? -x : x;
    return zig_slow(s, b);
}

static _Atomic int zig_ready;

double plm_expr_normal(plm_rng *r)
{
    if (!atomic_load_explicit(&zig_ready, memory_order_acquire)) {
        pthread_once(&zig_once, zig_init);
        atomic_store_explicit(&zig_ready, 1, memory_order_release);
    }
    return zig_normal(r->s);
}

#define LOG_SQRT_2PI 0.91893853320467274178
#define LOG_PI 1.14472988584940017414
#define INV_SQRT_2PI 0.39894228040143267794

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

static const char *op_names[PLM_OP_NOPS] = {
    "const", "input", "neg", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "asin", "acos",
    "atan", "sinh", "cosh", "tanh", "logistic", "softplus", "abs", "lgamma", "digamma", "trigamma", "erf",
    "phi", "floor", "sign", "inv", "add", "sub", "mul", "div", "pow", "min", "max", "atan2", "lt", "le", "eq",
    "ne", "and", "or", "select", "fma", "native", "native_d", "stdnormal", "uniform", "sample", "sample_cat",
    "logpdf"};

const char *plm_op_name(plm_op op)
{
    return op >= 0 && op < PLM_OP_NOPS ? op_names[op] : "?";
}

static int op_arity(int op)
{
    if (op <= PLM_OP_INPUT) return 0;
    if (op <= PLM_OP_INV) return 1;
    if (op <= PLM_OP_OR) return 2;
    if (op <= PLM_OP_FMA) return 3;
    return -1;
}

static int is_draw(int op)
{
    return op == PLM_OP_STDNORMAL || op == PLM_OP_UNIFORM || op == PLM_OP_SAMPLE || op == PLM_OP_SAMPLE_CAT;
}

/* ---- graph construction ---- */

plm_graph *plm_graph_new(void)
{
    plm_graph *g = plm_gc_alloc(sizeof *g);
    pthread_once(&zig_once, zig_init);   /* every program comes from a graph: the tables are ready before use */
    if (!g) return NULL;
    g->cap = 64;
    g->nodes = plm_gc_alloc_atomic((size_t)g->cap * sizeof *g->nodes);
    g->cappool = 128;
    g->pool = plm_gc_alloc_atomic((size_t)g->cappool * sizeof *g->pool);
    g->caphash = 128;
    g->hash = plm_gc_alloc_atomic((size_t)g->caphash * sizeof *g->hash);
    if (!g->nodes || !g->pool || !g->hash) return NULL;
    return g;
}

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static uint64_t node_hash(const plm_graph *g, const plm_node *nd)
{
    uint64_t h = (uint64_t)nd->op * 31 + (uint64_t)nd->n, bits;
    int i;
    memcpy(&bits, &nd->v, sizeof bits);
    h = mix(h, bits);
    h = mix(h, (uint64_t)(unsigned)nd->grp << 32 | (unsigned)nd->idx);
    h = mix(h, (uint64_t)(uintptr_t)nd->fn);
    h = mix(h, nd->uniq);
    for (i = 0; i < nd->n; i++) h = mix(h, (uint64_t)g->pool[nd->arg + i]);
    return h;
}

static int node_equal(const plm_graph *g, const plm_node *x, const int *xargs, const plm_node *y)
{
    if (x->op != y->op || x->n != y->n || x->grp != y->grp || x->idx != y->idx || x->fn != y->fn ||
        x->uniq != y->uniq || memcmp(&x->v, &y->v, sizeof x->v) != 0)
        return 0;
    return x->n == 0 || memcmp(xargs, g->pool + y->arg, (size_t)x->n * sizeof *xargs) == 0;
}

static int rehash(plm_graph *g, int cap)
{
    int *h = plm_gc_alloc_atomic((size_t)cap * sizeof *h), i;
    if (!h) return -1;
    for (i = 0; i < g->n; i++) {
        uint64_t k = node_hash(g, &g->nodes[i]) & (uint64_t)(cap - 1);
        while (h[k]) k = (k + 1) & (uint64_t)(cap - 1);
        h[k] = i + 1;
    }
    g->hash = h;
    g->caphash = cap;
    return 0;
}

/* Find or append node nd with arguments args: the single door through which nodes enter a graph. */
static int intern(plm_graph *g, plm_node nd, const int *args)
{
    uint64_t k;
    int i, id;
    for (i = 0; i < nd.n; i++)
        if (args[i] < 0) return -1;
    /* hash with the arguments in a temporary pool slot: append them first, drop them if found */
    if (g->npool + nd.n > g->cappool) {
        int cap = 2 * (g->npool + nd.n);
        int *p = plm_gc_alloc_atomic((size_t)cap * sizeof *p);
        if (!p) return -1;
        memcpy(p, g->pool, (size_t)g->npool * sizeof *p);
        g->pool = p;
        g->cappool = cap;
    }
    if (nd.n) memcpy(g->pool + g->npool, args, (size_t)nd.n * sizeof *args);
    nd.arg = g->npool;
    k = node_hash(g, &nd) & (uint64_t)(g->caphash - 1);
    while (g->hash[k]) {
        id = g->hash[k] - 1;
        if (node_equal(g, &nd, args, &g->nodes[id])) return id;
        k = (k + 1) & (uint64_t)(g->caphash - 1);
    }
    if (g->n == g->cap) {
        int cap = 2 * g->cap;
        plm_node *p = plm_gc_alloc_atomic((size_t)cap * sizeof *p);
        if (!p) return -1;
        memcpy(p, g->nodes, (size_t)g->n * sizeof *p);
        g->nodes = p;
        g->cap = cap;
    }
    id = g->n++;
    g->nodes[id] = nd;
    g->npool += nd.n;
    g->hash[k] = id + 1;
    if (2 * g->n > g->caphash && rehash(g, 2 * g->caphash)) return -1;
    return id;
}

int plm_graph_const(plm_graph *g, double v)
{
    plm_node nd = {0};
    nd.op = PLM_OP_CONST;
    if (v == 0) v = 0.0;   /* -0 and 0 are one constant */
    nd.v = v;
    return intern(g, nd, NULL);
}

int plm_graph_input(plm_graph *g, int group, int index)
{
    plm_node nd = {0};
    nd.op = PLM_OP_INPUT;
    nd.grp = group;
    nd.idx = index;
    return intern(g, nd, NULL);
}

int plm_graph_is_const(const plm_graph *g, int id, double *v)
{
    if (id < 0 || id >= g->n || g->nodes[id].op != PLM_OP_CONST) {
        if (v) *v = NAN;
        return 0;
    }
    if (v) *v = g->nodes[id].v;
    return 1;
}

static int isk(const plm_graph *g, int id, double k)
{
    double v;
    return plm_graph_is_const(g, id, &v) && v == k;
}

static int commutative(int op)
{
    return op == PLM_OP_ADD || op == PLM_OP_MUL || op == PLM_OP_MIN || op == PLM_OP_MAX || op == PLM_OP_EQ ||
           op == PLM_OP_NE || op == PLM_OP_AND || op == PLM_OP_OR;
}

int plm_graph_op(plm_graph *g, plm_op op, int a, int b, int c)
{
    int ar = op_arity(op), args[3], i, allk = 1;
    double v[3] = {0, 0, 0};
    plm_node nd = {0};
    if (ar < 1) return -1;
    args[0] = a, args[1] = b, args[2] = c;
    for (i = 0; i < ar; i++) {
        if (args[i] < 0 || args[i] >= g->n) return -1;
        if (!plm_graph_is_const(g, args[i], &v[i])) allk = 0;
    }
    if (allk) return plm_graph_const(g, plm_op_eval(op, v[0], v[1], v[2]));
    /* identities that keep every finite result exact */
    switch (op) {
    case PLM_OP_NEG:
        if (g->nodes[a].op == PLM_OP_NEG) return g->pool[g->nodes[a].arg];
        break;
    case PLM_OP_LOG:
        if (g->nodes[a].op == PLM_OP_EXP) return g->pool[g->nodes[a].arg];
        break;
    case PLM_OP_ADD:
        if (isk(g, a, 0)) return b;
        if (isk(g, b, 0)) return a;
        if (g->nodes[b].op == PLM_OP_NEG) return plm_graph_op(g, PLM_OP_SUB, a, g->pool[g->nodes[b].arg], -1);
        if (g->nodes[a].op == PLM_OP_NEG) return plm_graph_op(g, PLM_OP_SUB, b, g->pool[g->nodes[a].arg], -1);
        break;
    case PLM_OP_SUB:
        if (isk(g, b, 0)) return a;
        if (isk(g, a, 0)) return plm_graph_op(g, PLM_OP_NEG, b, -1, -1);
        if (g->nodes[b].op == PLM_OP_NEG) return plm_graph_op(g, PLM_OP_ADD, a, g->pool[g->nodes[b].arg], -1);
        break;
    case PLM_OP_MUL:
        if (isk(g, a, 1)) return b;
        if (isk(g, b, 1)) return a;
        if (isk(g, a, 0) || isk(g, b, 0)) return plm_graph_const(g, 0);
        if (isk(g, a, -1)) return plm_graph_op(g, PLM_OP_NEG, b, -1, -1);
        if (isk(g, b, -1)) return plm_graph_op(g, PLM_OP_NEG, a, -1, -1);
        break;
    case PLM_OP_DIV:
        if (isk(g, b, 1)) return a;
        if (isk(g, a, 1)) return plm_graph_op(g, PLM_OP_INV, b, -1, -1);
        /* x / k -> x * (1/k) when 1/k is exact (powers of two): same result, a cheaper instruction */
        if (plm_graph_is_const(g, b, &v[1]) && v[1] != 0) {
            int e;
            double m = frexp(v[1], &e);
            if (fabs(m) == 0.5) return plm_graph_op(g, PLM_OP_MUL, a, plm_graph_const(g, 1 / v[1]), -1);
        }
        break;
    case PLM_OP_POW:
        if (plm_graph_is_const(g, b, &v[1])) {
            if (v[1] == 1) return a;
            if (v[1] == 0) return plm_graph_const(g, 1);
            if (v[1] == 2) return plm_graph_op(g, PLM_OP_MUL, a, a, -1);
            if (v[1] == 3) return plm_graph_op(g, PLM_OP_MUL, plm_graph_op(g, PLM_OP_MUL, a, a, -1), a, -1);
            if (v[1] == -1) return plm_graph_op(g, PLM_OP_INV, a, -1, -1);
        }
        break;
    case PLM_OP_SELECT:
        if (plm_graph_is_const(g, a, &v[0])) return v[0] != 0 ? b : c;
        if (b == c) return b;
        break;
    default:
        break;
    }
    if (commutative(op) && args[0] > args[1]) {
        int t = args[0];
        args[0] = args[1];
        args[1] = t;
    }
    nd.op = op;
    nd.n = ar;
    return intern(g, nd, args);
}

static double call_native(const plm_native *f, const double *x)
{
    switch (f->nargs) {
    case 0: return ((double (*)(void))f->fn)();
    case 1: return ((double (*)(double))f->fn)(x[0]);
    case 2: return ((double (*)(double, double))f->fn)(x[0], x[1]);
    case 3: return ((double (*)(double, double, double))f->fn)(x[0], x[1], x[2]);
    case 4: return ((double (*)(double, double, double, double))f->fn)(x[0], x[1], x[2], x[3]);
    case 5: return ((double (*)(double, double, double, double, double))f->fn)(x[0], x[1], x[2], x[3], x[4]);
    default:
        return ((double (*)(double, double, double, double, double, double))f->fn)(x[0], x[1], x[2], x[3], x[4],
                                                                                    x[5]);
    }
}

static double call_native_d(const plm_native *f, const double *x, int k)
{
    double d[PLM_NATIVE_MAXARGS] = {0};
    switch (f->nargs) {
    case 1: ((void (*)(double, double *))f->grad)(x[0], d); break;
    case 2: ((void (*)(double, double, double *))f->grad)(x[0], x[1], d); break;
    case 3: ((void (*)(double, double, double, double *))f->grad)(x[0], x[1], x[2], d); break;
    case 4: ((void (*)(double, double, double, double, double *))f->grad)(x[0], x[1], x[2], x[3], d); break;
    case 5:
        ((void (*)(double, double, double, double, double, double *))f->grad)(x[0], x[1], x[2], x[3], x[4], d);
        break;
    default:
        ((void (*)(double, double, double, double, double, double, double *))f->grad)(x[0], x[1], x[2], x[3], x[4],
                                                                                       x[5], d);
    }
    return d[k];
}

static int native_node(plm_graph *g, int op, const plm_native *fn, int k, const int *args)
{
    plm_node nd = {0};
    double x[PLM_NATIVE_MAXARGS];
    int i, allk = 1;
    if (!fn || fn->nargs < 0 || fn->nargs > PLM_NATIVE_MAXARGS || !fn->fn) return -1;
    if (op == PLM_OP_NATIVE_D && !fn->grad) return -1;
    for (i = 0; i < fn->nargs; i++) {
        if (args[i] < 0 || args[i] >= g->n) return -1;
        if (!plm_graph_is_const(g, args[i], &x[i])) allk = 0;
    }
    if (allk) return plm_graph_const(g, op == PLM_OP_NATIVE ? call_native(fn, x) : call_native_d(fn, x, k));
    nd.op = op;
    nd.n = fn->nargs;
    nd.fn = fn;
    nd.idx = k;
    return intern(g, nd, args);
}

int plm_graph_native(plm_graph *g, const plm_native *fn, const int *args)
{
    return native_node(g, PLM_OP_NATIVE, fn, 0, args);
}

int plm_graph_draw(plm_graph *g, plm_op op, int kind, int np, const int *params)
{
    plm_node nd = {0};
    if (!is_draw(op) || np < 0) return -1;
    nd.op = op;
    nd.idx = kind;
    nd.n = (op == PLM_OP_STDNORMAL || op == PLM_OP_UNIFORM) ? 0 : np;
    nd.uniq = ++g->ndraws;
    return intern(g, nd, params);
}

static int generic_logpdf(plm_graph *g, int kind, int np, const int *p, int x)
{
    plm_node nd = {0};
    int args[4], i;
    if (np > 3) return -1;
    for (i = 0; i < np; i++) args[i] = p[i];
    args[np] = x;
    nd.op = PLM_OP_LOGPDF;
    nd.idx = kind;
    nd.n = np + 1;
    return intern(g, nd, args);
}

/* ---- derivatives ---- */

#define K(v) plm_graph_const(g, (v))
#define OP1(o, a) plm_graph_op(g, (o), (a), -1, -1)
#define OP2(o, a, b) plm_graph_op(g, (o), (a), (b), -1)
#define ADD(a, b) OP2(PLM_OP_ADD, a, b)
#define SUB(a, b) OP2(PLM_OP_SUB, a, b)
#define MUL(a, b) OP2(PLM_OP_MUL, a, b)
#define DIV(a, b) OP2(PLM_OP_DIV, a, b)
#define SEL(c, a, b) plm_graph_op(g, PLM_OP_SELECT, (c), (a), (b))

static void acc(plm_graph *g, int *adj, int node, int contrib)
{
    if (isk(g, contrib, 0)) return;
    adj[node] = adj[node] == -2 ? contrib : ADD(adj[node], contrib);
}

plm_status plm_graph_grad(plm_ctx *ctx, plm_graph *g, int out, int nwrt, const int *wrt, int *res)
{
    int n0 = g->n, i, j;
    unsigned char *dep, *anc;
    int *adj;
    if (out < 0 || out >= n0) return plm_fail(ctx, PLM_EINVAL, "gradient: invalid output node %d", out);
    dep = calloc((size_t)n0, 2);
    adj = malloc((size_t)n0 * sizeof *adj);
    if (!dep || !adj) {
        free(dep);
        free(adj);
        return plm_fail(ctx, PLM_ENOMEM, "gradient: out of memory");
    }
    anc = dep + n0;
    for (j = 0; j < nwrt; j++)
        if (wrt[j] >= 0 && wrt[j] < n0) dep[wrt[j]] = 1;
    /* dep: depends on some wrt node; anc: an ancestor of out. Only nodes with both carry adjoints. */
    for (i = 0; i < n0; i++) {
        const plm_node *nd = &g->nodes[i];
        if (dep[i] || is_draw(nd->op)) continue;
        for (j = 0; j < nd->n; j++)
            if (dep[g->pool[nd->arg + j]]) dep[i] = 1;
    }
    anc[out] = 1;
    for (i = out; i >= 0; i--) {
        const plm_node *nd = &g->nodes[i];
        if (!anc[i]) continue;
        for (j = 0; j < nd->n; j++) anc[g->pool[nd->arg + j]] = 1;
    }
    for (i = 0; i < n0; i++) adj[i] = -2;   /* -2: zero */
    adj[out] = K(1);
    for (i = out; i >= 0; i--) {
        plm_node nd = g->nodes[i];   /* a copy: the node array moves as nodes are appended */
        int a, b, c, G = adj[i], self = i, isw = 0;
        if (G == -2 || !anc[i] || !dep[i]) continue;
        if (G < 0) goto oom;
        for (j = 0; j < nwrt; j++)
            if (wrt[j] == i) isw = 1;
        if (isw) continue;   /* a wrt node is a leaf of the derivative */
        a = nd.n > 0 ? g->pool[nd.arg] : -1;
        b = nd.n > 1 ? g->pool[nd.arg + 1] : -1;
        c = nd.n > 2 ? g->pool[nd.arg + 2] : -1;
        switch (nd.op) {
        case PLM_OP_NEG: acc(g, adj, a, OP1(PLM_OP_NEG, G)); break;
        case PLM_OP_EXP: acc(g, adj, a, MUL(G, self)); break;
        case PLM_OP_LOG: acc(g, adj, a, DIV(G, a)); break;
        case PLM_OP_LOG1P: acc(g, adj, a, DIV(G, ADD(a, K(1)))); break;
        case PLM_OP_EXPM1: acc(g, adj, a, MUL(G, ADD(self, K(1)))); break;
        case PLM_OP_SQRT: acc(g, adj, a, DIV(MUL(G, K(0.5)), self)); break;
        case PLM_OP_SIN: acc(g, adj, a, MUL(G, OP1(PLM_OP_COS, a))); break;
        case PLM_OP_COS: acc(g, adj, a, OP1(PLM_OP_NEG, MUL(G, OP1(PLM_OP_SIN, a)))); break;
        case PLM_OP_TAN: acc(g, adj, a, MUL(G, ADD(K(1), MUL(self, self)))); break;
        case PLM_OP_ASIN: acc(g, adj, a, DIV(G, OP1(PLM_OP_SQRT, SUB(K(1), MUL(a, a))))); break;
        case PLM_OP_ACOS: acc(g, adj, a, OP1(PLM_OP_NEG, DIV(G, OP1(PLM_OP_SQRT, SUB(K(1), MUL(a, a)))))); break;
        case PLM_OP_ATAN: acc(g, adj, a, DIV(G, ADD(K(1), MUL(a, a)))); break;
        case PLM_OP_SINH: acc(g, adj, a, MUL(G, OP1(PLM_OP_COSH, a))); break;
        case PLM_OP_COSH: acc(g, adj, a, MUL(G, OP1(PLM_OP_SINH, a))); break;
        case PLM_OP_TANH: acc(g, adj, a, MUL(G, SUB(K(1), MUL(self, self)))); break;
        case PLM_OP_LOGISTIC: acc(g, adj, a, MUL(G, MUL(self, SUB(K(1), self)))); break;
        case PLM_OP_SOFTPLUS: acc(g, adj, a, MUL(G, OP1(PLM_OP_LOGISTIC, a))); break;
        case PLM_OP_ABS: acc(g, adj, a, MUL(G, OP1(PLM_OP_SIGN, a))); break;
        case PLM_OP_LGAMMA: acc(g, adj, a, MUL(G, OP1(PLM_OP_DIGAMMA, a))); break;
        case PLM_OP_DIGAMMA: acc(g, adj, a, MUL(G, OP1(PLM_OP_TRIGAMMA, a))); break;
        case PLM_OP_ERF:
            acc(g, adj, a, MUL(G, MUL(K(M_2_SQRTPI), OP1(PLM_OP_EXP, OP1(PLM_OP_NEG, MUL(a, a))))));
            break;
        case PLM_OP_PHI:
            acc(g, adj, a, MUL(G, MUL(K(INV_SQRT_2PI), OP1(PLM_OP_EXP, MUL(K(-0.5), MUL(a, a))))));
            break;
        case PLM_OP_FLOOR: case PLM_OP_SIGN: case PLM_OP_LT: case PLM_OP_LE: case PLM_OP_EQ: case PLM_OP_NE:
        case PLM_OP_AND: case PLM_OP_OR:
            break;
        case PLM_OP_INV: acc(g, adj, a, OP1(PLM_OP_NEG, MUL(G, MUL(self, self)))); break;
        case PLM_OP_ADD: acc(g, adj, a, G); acc(g, adj, b, G); break;
        case PLM_OP_SUB: acc(g, adj, a, G); acc(g, adj, b, OP1(PLM_OP_NEG, G)); break;
        case PLM_OP_MUL: acc(g, adj, a, MUL(G, b)); acc(g, adj, b, MUL(G, a)); break;
        case PLM_OP_DIV: acc(g, adj, a, DIV(G, b)); acc(g, adj, b, OP1(PLM_OP_NEG, DIV(MUL(G, self), b))); break;
        case PLM_OP_POW:
            if (dep[a]) acc(g, adj, a, MUL(G, MUL(b, OP2(PLM_OP_POW, a, SUB(b, K(1))))));
            if (dep[b]) acc(g, adj, b, MUL(G, MUL(self, OP1(PLM_OP_LOG, a))));
            break;
        case PLM_OP_MIN:
            acc(g, adj, a, SEL(OP2(PLM_OP_LE, a, b), G, K(0)));
            acc(g, adj, b, SEL(OP2(PLM_OP_LE, a, b), K(0), G));
            break;
        case PLM_OP_MAX:
            acc(g, adj, a, SEL(OP2(PLM_OP_LE, b, a), G, K(0)));
            acc(g, adj, b, SEL(OP2(PLM_OP_LE, b, a), K(0), G));
            break;
        case PLM_OP_ATAN2: {
            int r2 = ADD(MUL(a, a), MUL(b, b));
            acc(g, adj, a, DIV(MUL(G, b), r2));
            acc(g, adj, b, OP1(PLM_OP_NEG, DIV(MUL(G, a), r2)));
            break;
        }
        case PLM_OP_SELECT: acc(g, adj, b, SEL(a, G, K(0))); acc(g, adj, c, SEL(a, K(0), G)); break;
        case PLM_OP_FMA: acc(g, adj, a, MUL(G, b)); acc(g, adj, b, MUL(G, a)); acc(g, adj, c, G); break;
        case PLM_OP_NATIVE: {
            int args[PLM_NATIVE_MAXARGS];
            if (!nd.fn->grad) {
                free(dep);
                free(adj);
                return plm_fail(ctx, PLM_ENOTSUP, "gradient: native function '%s' has no grad function",
                                nd.fn->name ? nd.fn->name : "?");
            }
            memcpy(args, g->pool + nd.arg, (size_t)nd.n * sizeof *args);
            for (j = 0; j < nd.n; j++)
                if (dep[args[j]]) acc(g, adj, args[j], MUL(G, native_node(g, PLM_OP_NATIVE_D, nd.fn, j, args)));
            break;
        }
        default:
            free(dep);
            free(adj);
            return plm_fail(ctx, PLM_ENOTSUP, "gradient: no derivative for %s", plm_op_name((plm_op)nd.op));
        }
    }
    for (j = 0; j < nwrt; j++) {
        int w = wrt[j];
        res[j] = (w >= 0 && w < n0 && adj[w] != -2) ? adj[w] : K(0);
        if (res[j] < 0) goto oom;
    }
    free(dep);
    free(adj);
    return PLM_OK;
oom:
    free(dep);
    free(adj);
    return plm_fail(ctx, PLM_ENOMEM, "gradient: out of memory");
}

/* ---- symbolic distributions ---- */

int plm_symdist_dim(const plm_symdist *d)
{
    return d->kind == PLM_DIST_MVNORMAL ? d->K : 1;
}

static plm_status symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, int *out);
static plm_status symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, const int *xv, int *out);

/* Lower Cholesky factor of the K*K symbolic matrix S as nodes (folds to constants for numeric S). */
static int sym_cholesky(plm_graph *g, int K, const int *S, int *L)
{
    int i, j, k;
    for (i = 0; i < K; i++)
        for (j = 0; j <= i; j++) {
            int s = S[i * K + j];
            for (k = 0; k < j; k++) s = SUB(s, MUL(L[i * K + k], L[j * K + k]));
            L[i * K + j] = i == j ? OP1(PLM_OP_SQRT, s) : DIV(s, L[j * K + j]);
            if (L[i * K + j] < 0) return -1;
        }
    return 0;
}

/* Parameters outside their domain must give NaN, never a plausible-looking draw (normal with sigma < 0 would
** otherwise sample happily) nor a sampler call that cannot end (GSL's gamma loops forever on NaN): q gets the
** parameters wrapped in select(valid, p, NaN). Constant valid parameters fold away; uniform ones are checked
** once per call by the uniform pre-pass. */
static int known_positive(const plm_graph *g, int id)
{
    int op = g->nodes[id].op;
    return op == PLM_OP_EXP || op == PLM_OP_SOFTPLUS || op == PLM_OP_LOGISTIC;
}

static int guard(plm_graph *g, int cond, int v)
{
    return SEL(cond, v, K(NAN));
}

static void guard_params(plm_graph *g, const plm_symdist *d, int *q)
{
    int i;
    const int *p = d->p;
    for (i = 0; i < d->np; i++) q[i] = p[i];
    switch (d->kind) {
    case PLM_DIST_NORMAL: case PLM_DIST_LOGNORMAL: case PLM_DIST_CAUCHY: case PLM_DIST_LAPLACE:
    case PLM_DIST_LOGISTIC:
        if (!known_positive(g, p[1])) q[1] = guard(g, OP2(PLM_OP_LT, K(0), p[1]), p[1]);
        break;
    case PLM_DIST_STUDENT_T:
        q[0] = guard(g, OP2(PLM_OP_LT, K(0), p[0]), p[0]);
        if (!known_positive(g, p[2])) q[2] = guard(g, OP2(PLM_OP_LT, K(0), p[2]), p[2]);
        break;
    case PLM_DIST_EXPONENTIAL: case PLM_DIST_POISSON:
        if (!known_positive(g, p[0])) q[0] = guard(g, OP2(PLM_OP_LE, K(0), p[0]), p[0]);
        break;
    case PLM_DIST_GAMMA: case PLM_DIST_INV_GAMMA: case PLM_DIST_BETA: case PLM_DIST_WEIBULL:
    case PLM_DIST_NEG_BINOMIAL:
        for (i = 0; i < 2; i++)
            if (!known_positive(g, p[i])) q[i] = guard(g, OP2(PLM_OP_LT, K(0), p[i]), p[i]);
        break;
    case PLM_DIST_BERNOULLI: case PLM_DIST_GEOMETRIC:
        q[0] = guard(g, OP2(PLM_OP_AND, OP2(PLM_OP_LE, K(0), p[0]), OP2(PLM_OP_LE, p[0], K(1))), p[0]);
        break;
    case PLM_DIST_BINOMIAL:   /* GSL takes n as an unsigned int */
        q[0] = guard(g, OP2(PLM_OP_AND, OP2(PLM_OP_AND, OP2(PLM_OP_LE, K(0), p[0]), OP2(PLM_OP_LE, p[0], K(4294967295.0))),
                            OP2(PLM_OP_EQ, p[0], OP1(PLM_OP_FLOOR, p[0]))),
                     p[0]);
        q[1] = guard(g, OP2(PLM_OP_AND, OP2(PLM_OP_LE, K(0), p[1]), OP2(PLM_OP_LE, p[1], K(1))), p[1]);
        break;
    case PLM_DIST_UNIFORM:
        q[1] = guard(g, OP2(PLM_OP_LT, p[0], p[1]), p[1]);
        break;
    case PLM_DIST_CATEGORICAL:
        for (i = 0; i < d->np; i++) q[i] = guard(g, OP2(PLM_OP_LE, K(0), p[i]), p[i]);
        break;
    default:
        break;
    }
}

plm_status plm_symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_symdist *d0, int *out)
{
    int qbuf[16], *q = d0->np <= 16 ? qbuf : malloc((size_t)d0->np * sizeof *q);
    plm_symdist dd = *d0, *d = &dd;
    plm_status st;
    if (!q) return plm_fail(ctx, PLM_ENOMEM, "sample: out of memory");
    guard_params(g, d0, q);
    dd.p = q;
    st = symdist_sample(ctx, g, d, out);
    if (q != qbuf) free(q);
    return st;
}

static plm_status symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, int *out)
{
    const int *p = d->p;
    int kind = d->kind;
    switch (kind) {
    case PLM_DIST_NORMAL:
        out[0] = ADD(p[0], MUL(p[1], plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL)));
        break;
    case PLM_DIST_LOGNORMAL:
        out[0] = OP1(PLM_OP_EXP, ADD(p[0], MUL(p[1], plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL))));
        break;
    case PLM_DIST_UNIFORM:
        out[0] = ADD(p[0], MUL(SUB(p[1], p[0]), plm_graph_draw(g, PLM_OP_UNIFORM, 0, 0, NULL)));
        break;
    case PLM_DIST_EXPONENTIAL:
        out[0] = DIV(OP1(PLM_OP_NEG, OP1(PLM_OP_LOG, plm_graph_draw(g, PLM_OP_UNIFORM, 0, 0, NULL))), p[0]);
        break;
    case PLM_DIST_CATEGORICAL:
        out[0] = plm_graph_draw(g, PLM_OP_SAMPLE_CAT, kind, d->K, p);
        break;
    case PLM_DIST_MVNORMAL: {
        int K = d->K, i, j, *L = malloc((size_t)K * K * sizeof *L), z[64];
        if (K > 64) {
            free(L);
            return plm_fail(ctx, PLM_ENOTSUP, "mvnormal: symbolic dimension %d exceeds 64", K);
        }
        if (!L || sym_cholesky(g, K, p + K, L)) {
            free(L);
            return plm_fail(ctx, PLM_ENOMEM, "mvnormal: out of memory");
        }
        for (i = 0; i < K; i++) z[i] = plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL);
        for (i = 0; i < K; i++) {
            int s = p[i];
            for (j = 0; j <= i; j++) s = ADD(s, MUL(L[i * K + j], z[j]));
            out[i] = s;
        }
        free(L);
        break;
    }
    case PLM_DIST_DIRICHLET: case PLM_DIST_MULTINOMIAL:
        return plm_fail(ctx, PLM_ENOTSUP, "%s: symbolic parameters are not supported",
                        plm_dist_info_of(d->kind)->name);
    default:
        out[0] = plm_graph_draw(g, PLM_OP_SAMPLE, kind, d->np, p);
    }
    for (int i = 0; i < plm_symdist_dim(d); i++)
        if (out[i] < 0) return plm_fail(ctx, PLM_ENOMEM, "sample: out of memory");
    return PLM_OK;
}

plm_status plm_symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_symdist *d0, const int *xv, int *out)
{
    int qbuf[16], *q = d0->np <= 16 ? qbuf : malloc((size_t)d0->np * sizeof *q);
    plm_symdist dd = *d0;
    plm_status st;
    if (!q) return plm_fail(ctx, PLM_ENOMEM, "logpdf: out of memory");
    guard_params(g, d0, q);
    dd.p = q;
    st = symdist_logpdf(ctx, g, &dd, xv, out);
    if (q != qbuf) free(q);
    return st;
}

static plm_status symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, const int *xv, int *out)
{
    const int *p = d->p;
    int x = xv[0], r = -1, ninf = K(-INFINITY);
    switch (d->kind) {
    case PLM_DIST_NORMAL: {
        int z = DIV(SUB(x, p[0]), p[1]);
        r = SUB(SUB(MUL(K(-0.5), MUL(z, z)), OP1(PLM_OP_LOG, p[1])), K(LOG_SQRT_2PI));
        break;
    }
    case PLM_DIST_LOGNORMAL: {
        int lx = OP1(PLM_OP_LOG, x), z = DIV(SUB(lx, p[0]), p[1]);
        r = SUB(SUB(SUB(MUL(K(-0.5), MUL(z, z)), OP1(PLM_OP_LOG, p[1])), K(LOG_SQRT_2PI)), lx);
        r = SEL(OP2(PLM_OP_LT, K(0), x), r, ninf);
        break;
    }
    case PLM_DIST_STUDENT_T: {
        int nu = p[0], z = DIV(SUB(x, p[1]), p[2]), h = MUL(K(0.5), ADD(nu, K(1)));
        r = SUB(OP1(PLM_OP_LGAMMA, h), OP1(PLM_OP_LGAMMA, MUL(K(0.5), nu)));
        r = SUB(r, MUL(K(0.5), ADD(OP1(PLM_OP_LOG, nu), K(LOG_PI))));
        r = SUB(r, OP1(PLM_OP_LOG, p[2]));
        r = SUB(r, MUL(h, OP1(PLM_OP_LOG1P, DIV(MUL(z, z), nu))));
        break;
    }
    case PLM_DIST_CAUCHY: {
        int z = DIV(SUB(x, p[0]), p[1]);
        r = SUB(SUB(K(-LOG_PI), OP1(PLM_OP_LOG, p[1])), OP1(PLM_OP_LOG1P, MUL(z, z)));
        break;
    }
    case PLM_DIST_LAPLACE:
        r = SUB(SUB(K(-M_LN2), OP1(PLM_OP_LOG, p[1])), DIV(OP1(PLM_OP_ABS, SUB(x, p[0])), p[1]));
        break;
    case PLM_DIST_LOGISTIC: {
        int z = DIV(OP1(PLM_OP_ABS, SUB(x, p[0])), p[1]);
        r = SUB(SUB(OP1(PLM_OP_NEG, z), OP1(PLM_OP_LOG, p[1])),
                MUL(K(2), OP1(PLM_OP_LOG1P, OP1(PLM_OP_EXP, OP1(PLM_OP_NEG, z)))));
        break;
    }
    case PLM_DIST_EXPONENTIAL:
        r = SEL(OP2(PLM_OP_LE, K(0), x), SUB(OP1(PLM_OP_LOG, p[0]), MUL(p[0], x)), ninf);
        break;
    case PLM_DIST_GAMMA:
        r = SUB(MUL(p[0], OP1(PLM_OP_LOG, p[1])), OP1(PLM_OP_LGAMMA, p[0]));
        r = SUB(ADD(r, MUL(SUB(p[0], K(1)), OP1(PLM_OP_LOG, x))), MUL(p[1], x));
        r = SEL(OP2(PLM_OP_LT, K(0), x), r, ninf);
        break;
    case PLM_DIST_INV_GAMMA:
        r = SUB(MUL(p[0], OP1(PLM_OP_LOG, p[1])), OP1(PLM_OP_LGAMMA, p[0]));
        r = SUB(SUB(r, MUL(ADD(p[0], K(1)), OP1(PLM_OP_LOG, x))), DIV(p[1], x));
        r = SEL(OP2(PLM_OP_LT, K(0), x), r, ninf);
        break;
    case PLM_DIST_BETA: {
        int lb = SUB(ADD(OP1(PLM_OP_LGAMMA, p[0]), OP1(PLM_OP_LGAMMA, p[1])), OP1(PLM_OP_LGAMMA, ADD(p[0], p[1])));
        r = ADD(MUL(SUB(p[0], K(1)), OP1(PLM_OP_LOG, x)), MUL(SUB(p[1], K(1)), OP1(PLM_OP_LOG1P, OP1(PLM_OP_NEG, x))));
        r = SEL(OP2(PLM_OP_AND, OP2(PLM_OP_LT, K(0), x), OP2(PLM_OP_LT, x, K(1))), SUB(r, lb), ninf);
        break;
    }
    case PLM_DIST_UNIFORM:
        r = SEL(OP2(PLM_OP_AND, OP2(PLM_OP_LE, p[0], x), OP2(PLM_OP_LE, x, p[1])),
                OP1(PLM_OP_NEG, OP1(PLM_OP_LOG, SUB(p[1], p[0]))), ninf);
        break;
    case PLM_DIST_POISSON:
        r = SUB(SUB(MUL(x, OP1(PLM_OP_LOG, p[0])), p[0]), OP1(PLM_OP_LGAMMA, ADD(x, K(1))));
        r = SEL(OP2(PLM_OP_LE, K(0), x), r, ninf);
        break;
    case PLM_DIST_BERNOULLI:
        r = SEL(OP2(PLM_OP_EQ, x, K(1)), OP1(PLM_OP_LOG, p[0]),
                SEL(OP2(PLM_OP_EQ, x, K(0)), OP1(PLM_OP_LOG1P, OP1(PLM_OP_NEG, p[0])), ninf));
        break;
    case PLM_DIST_BINOMIAL: {
        int n = p[0], q = p[1], nx = SUB(n, x);
        r = SUB(SUB(OP1(PLM_OP_LGAMMA, ADD(n, K(1))), OP1(PLM_OP_LGAMMA, ADD(x, K(1)))),
                OP1(PLM_OP_LGAMMA, ADD(nx, K(1))));
        r = ADD(ADD(r, MUL(x, OP1(PLM_OP_LOG, q))), MUL(nx, OP1(PLM_OP_LOG1P, OP1(PLM_OP_NEG, q))));
        r = SEL(OP2(PLM_OP_AND, OP2(PLM_OP_LE, K(0), x), OP2(PLM_OP_LE, x, n)), r, ninf);
        break;
    }
    case PLM_DIST_CATEGORICAL: {
        int k;
        r = K(0);
        for (k = d->K - 1; k >= 0; k--) r = SEL(OP2(PLM_OP_EQ, x, K(k)), p[k], r);
        r = OP1(PLM_OP_LOG, r);
        break;
    }
    case PLM_DIST_MVNORMAL: {
        int Kd = d->K, i, j, *L = malloc((size_t)Kd * Kd * sizeof *L), w[64], q = K(0), ld = K(0);
        if (Kd > 64) {
            free(L);
            return plm_fail(ctx, PLM_ENOTSUP, "mvnormal: symbolic dimension %d exceeds 64", Kd);
        }
        if (!L || sym_cholesky(g, Kd, p + Kd, L)) {
            free(L);
            return plm_fail(ctx, PLM_ENOMEM, "mvnormal: out of memory");
        }
        for (i = 0; i < Kd; i++) {   /* forward solve L w = x - mu */
            int s = SUB(xv[i], p[i]);
            for (j = 0; j < i; j++) s = SUB(s, MUL(L[i * Kd + j], w[j]));
            w[i] = DIV(s, L[i * Kd + i]);
            q = ADD(q, MUL(w[i], w[i]));
            ld = ADD(ld, OP1(PLM_OP_LOG, L[i * Kd + i]));
        }
        r = SUB(SUB(MUL(K(-0.5), q), ld), K(Kd * LOG_SQRT_2PI));
        free(L);
        break;
    }
    case PLM_DIST_DIRICHLET: case PLM_DIST_MULTINOMIAL:
        return plm_fail(ctx, PLM_ENOTSUP, "%s: symbolic parameters are not supported",
                        plm_dist_info_of(d->kind)->name);
    default:
        r = generic_logpdf(g, d->kind, d->np, p, x);
    }
    if (r < 0) return plm_fail(ctx, PLM_ENOMEM, "logpdf: out of memory");
    *out = r;
    return PLM_OK;
}

/* ---- compilation ---- */

static int grow_ins(plm_ins **v, int *cap, int n)
{
    if (n < *cap) return 0;
    {
        int c = *cap ? 2 * *cap : 32;
        plm_ins *p = plm_gc_alloc_atomic((size_t)c * sizeof *p);
        if (!p) return -1;
        if (*v) memcpy(p, *v, (size_t)n * sizeof *p);
        *v = p;
        *cap = c;
    }
    return 0;
}

plm_status plm_prog_compile(plm_ctx *ctx, const plm_graph *g, int nout, const int *outs, unsigned varying,
                            plm_prog **out)
{
    int n = g->n, i, j, o;
    unsigned char *live = NULL, *vary = NULL, *fused = NULL;
    int *uses = NULL, *reg = NULL, *insnode = NULL, *lastuse = NULL, *freelist = NULL, *fma_c = NULL, *recip = NULL;
    int capu = 0, capv = 0, npool = 0, nfree = 0, ntmp = 0;
    plm_prog *p = plm_gc_alloc(sizeof *p);
    plm_status st = PLM_OK;
    if (!p) return plm_fail(ctx, PLM_ENOMEM, "compile: out of memory");
    for (o = 0; o < nout; o++)
        if (outs[o] < 0 || outs[o] >= n) return plm_fail(ctx, PLM_EINVAL, "compile: output %d is not a node", o);
    p->g = g;
    p->varying = varying;
    p->nout = nout;
    p->outreg = plm_gc_alloc_atomic((size_t)(nout + 1) * sizeof(int));
    p->outuni = plm_gc_alloc_atomic((size_t)(nout + 1) * sizeof(int));
    p->regpool = plm_gc_alloc_atomic((size_t)(g->npool + 1) * sizeof(int));
    live = calloc((size_t)n + 1, 3);
    uses = calloc((size_t)n + 1, sizeof(int) * 5);
    if (!p->outreg || !p->outuni || !p->regpool || !live || !uses) {
        st = plm_fail(ctx, PLM_ENOMEM, "compile: out of memory");
        goto done;
    }
    vary = live + n;
    fused = live + 2 * n;
    reg = uses + n;
    lastuse = uses + 2 * n;
    fma_c = uses + 3 * n;
    freelist = uses + 4 * n;
    for (o = 0; o < nout; o++) live[outs[o]] = 1;
    for (i = n - 1; i >= 0; i--) {
        const plm_node *nd = &g->nodes[i];
        if (!live[i]) continue;
        p->nlive++;
        for (j = 0; j < nd->n; j++) {
            live[g->pool[nd->arg + j]] = 1;
            uses[g->pool[nd->arg + j]]++;
        }
    }
    for (o = 0; o < nout; o++) uses[outs[o]] += 1000000;   /* outputs are never fused away */
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        if (nd->op == PLM_OP_INPUT)
            vary[i] = (varying >> nd->grp) & 1;
        else if (is_draw(nd->op))
            vary[i] = 1;
        else
            for (j = 0; j < nd->n; j++) vary[i] |= vary[g->pool[nd->arg + j]];
    }
    /* fuse a varying product used once into the sum that consumes it: a*b + c in one pass */
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        fma_c[i] = -1;
        if (!live[i] || !vary[i] || nd->op != PLM_OP_ADD) continue;
        for (j = 0; j < 2; j++) {
            int m = g->pool[nd->arg + j];
            if (g->nodes[m].op == PLM_OP_MUL && vary[m] && uses[m] == 1 && !fused[m]) {
                fused[m] = 1;
                fma_c[i] = m;
                break;
            }
        }
    }
    /* x / u with u uniform becomes x * (1/u): the reciprocal is one uniform instruction per call, and a
    ** multiply is several times cheaper than a divide in the block loop */
    recip = malloc((size_t)(n + 1) * sizeof *recip);
    if (!recip) goto oom;
    for (i = 0; i < n; i++) recip[i] = -1;
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        if (live[i] && vary[i] && !fused[i] && nd->op == PLM_OP_DIV && !vary[g->pool[nd->arg + 1]])
            recip[g->pool[nd->arg + 1]] = -2;
    }
    /* uniform pre-pass: one slot per uniform live node, in topological order */
    p->nuni = 0;
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        plm_ins in = {0};
        if (!live[i] || vary[i]) continue;
        reg[i] = p->nuni++;
        in.op = nd->op;
        in.d = reg[i];
        in.k = nd->v;
        in.kind = nd->idx;
        in.c = nd->grp;
        in.fn = nd->fn;
        if (nd->op == PLM_OP_INPUT) {
            in.a = nd->idx;
        } else if (nd->op == PLM_OP_NATIVE || nd->op == PLM_OP_NATIVE_D || nd->op == PLM_OP_LOGPDF) {
            in.n = nd->n;
            in.argoff = npool;
            for (j = 0; j < nd->n; j++) p->regpool[npool++] = reg[g->pool[nd->arg + j]] * 2 + 1;
        } else if (nd->op != PLM_OP_CONST) {
            in.a = nd->n > 0 ? reg[g->pool[nd->arg]] : 0;
            in.b = nd->n > 1 ? reg[g->pool[nd->arg + 1]] : 0;
            in.c = nd->n > 2 ? reg[g->pool[nd->arg + 2]] : 0;
        }
        if (grow_ins(&p->uins, &capu, p->nuins)) goto oom;
        p->uins[p->nuins++] = in;
        if (recip[i] == -2) {
            plm_ins r = {0};
            r.op = PLM_OP_INV;
            r.a = reg[i];
            r.d = recip[i] = p->nuni++;
            if (grow_ins(&p->uins, &capu, p->nuins)) goto oom;
            p->uins[p->nuins++] = r;
        }
    }
    /* varying inputs read the caller's arrays in place */
    p->nvin = 0;
    for (i = 0; i < n; i++)
        if (live[i] && vary[i] && g->nodes[i].op == PLM_OP_INPUT) p->nvin++;
    p->vin_grp = plm_gc_alloc_atomic((size_t)(p->nvin + 1) * sizeof(int));
    p->vin_idx = plm_gc_alloc_atomic((size_t)(p->nvin + 1) * sizeof(int));
    insnode = malloc((size_t)(n + 1) * sizeof *insnode);
    if (!p->vin_grp || !p->vin_idx || !insnode) goto oom;
    p->nvin = 0;
    for (i = 0; i < n; i++)
        if (live[i] && vary[i] && g->nodes[i].op == PLM_OP_INPUT) {
            p->vin_grp[p->nvin] = g->nodes[i].grp;
            p->vin_idx[p->nvin] = g->nodes[i].idx;
            reg[i] = p->nuni + p->nvin++;
        }
    /* varying instructions in topological order, arguments as node ids for now */
    for (i = 0; i < n; i++) {
        const plm_node *nd = &g->nodes[i];
        plm_ins in = {0};
        if (!live[i] || !vary[i] || nd->op == PLM_OP_INPUT || fused[i]) continue;
        in.op = nd->op;
        in.kind = nd->idx;
        in.fn = nd->fn;
        in.a = in.b = in.c = -1;
        if (fma_c[i] >= 0) {
            const plm_node *m = &g->nodes[fma_c[i]];
            in.op = PLM_OP_FMA;
            in.a = g->pool[m->arg];
            in.b = g->pool[m->arg + 1];
            in.c = g->pool[nd->arg] == fma_c[i] ? g->pool[nd->arg + 1] : g->pool[nd->arg];
            if (!vary[in.a]) {   /* the evaluator wants the varying factor first */
                int t = in.a;
                in.a = in.b;
                in.b = t;
            }
        } else if (op_arity(nd->op) >= 1) {
            in.a = g->pool[nd->arg];
            if (nd->n > 1) in.b = g->pool[nd->arg + 1];
            if (nd->n > 2) in.c = g->pool[nd->arg + 2];
            if (nd->n == 2 && commutative(nd->op) && !vary[in.a]) {
                int t = in.a;
                in.a = in.b;
                in.b = t;
            }
            if (nd->op == PLM_OP_DIV && !vary[in.b]) {
                in.op = PLM_OP_MUL;
                in.b = -2 - recip[in.b];   /* a uniform slot, not a node: decoded below */
            }
        } else {
            in.n = nd->n;
            in.argoff = -1 - nd->arg;   /* node ids in the graph pool until registers are known */
        }
        if (grow_ins(&p->vins, &capv, p->nvins)) goto oom;
        insnode[p->nvins] = i;
        p->vins[p->nvins++] = in;
    }
    /* last use of each varying temporary; outputs live to the end */
    for (i = 0; i < n; i++) lastuse[i] = -1;
    for (i = 0; i < p->nvins; i++) {
        plm_ins *in = &p->vins[i];
        if (in->a >= 0) lastuse[in->a] = i;
        if (in->b >= 0) lastuse[in->b] = i;
        if (in->c >= 0) lastuse[in->c] = i;
        if (in->argoff < 0)
            for (j = 0; j < in->n; j++) lastuse[g->pool[-1 - in->argoff + j]] = i;
    }
    for (o = 0; o < nout; o++) lastuse[outs[o]] = p->nvins;
    /* linear-scan allocation: the destination is taken before the arguments are released, so an
    ** instruction never writes a block it reads (restrict holds and the loops vectorise) */
    for (i = 0; i < p->nvins; i++) {
        plm_ins *in = &p->vins[i];
        int nd = insnode[i], r, args[3] = {in->a, in->b, in->c};
        r = nfree ? freelist[--nfree] : p->nuni + p->nvin + ntmp++;
        reg[nd] = r;
        in->d = r;
        in->mode = 0;
        for (j = 0; j < 3; j++)
            if ((args[j] >= 0 && !vary[args[j]]) || args[j] <= -2) in->mode |= 1 << j;
        in->a = in->a >= 0 ? reg[in->a] : 0;
        in->b = in->b >= 0 ? reg[in->b] : in->b <= -2 ? -2 - in->b : 0;
        in->c = in->c >= 0 ? reg[in->c] : 0;
        if (in->argoff < 0) {
            int off = -1 - in->argoff;
            in->argoff = npool;
            for (j = 0; j < in->n; j++) {
                int a = g->pool[off + j];
                p->regpool[npool++] = reg[a] * 2 + !vary[a];
            }
        }
        /* release temporaries whose last use is here */
        for (j = 0; j < 3; j++) {
            int a = args[j];
            if (a >= 0 && vary[a] && lastuse[a] == i && g->nodes[a].op != PLM_OP_INPUT) {
                lastuse[a] = -2;
                freelist[nfree++] = reg[a];
            }
        }
        if (in->n && g->nodes[nd].n) {
            const plm_node *gn = &g->nodes[nd];
            for (j = 0; j < gn->n; j++) {
                int a = g->pool[gn->arg + j];
                if (vary[a] && lastuse[a] == i && g->nodes[a].op != PLM_OP_INPUT) {
                    lastuse[a] = -2;
                    freelist[nfree++] = reg[a];
                }
            }
        }
        if (is_draw(g->nodes[nd].op)) p->ndraws++;
    }
    p->ntmp = ntmp;
    for (o = 0; o < nout; o++) {
        p->outreg[o] = reg[outs[o]];
        p->outuni[o] = !vary[outs[o]];
    }
    *out = p;
    goto done;
oom:
    st = plm_fail(ctx, PLM_ENOMEM, "compile: out of memory");
done:
    free(live);
    free(uses);
    free(insnode);
    free(recip);
    return st;
}

/* ---- evaluation ---- */

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
        const double *restrict A = R[in->a];
        const double *restrict Bv = R[in->b];
        const double *restrict C = R[in->c];
        switch (in->op) {
        case PLM_OP_CONST: D[0] = in->k; break;
        case PLM_OP_INPUT: D[0] = inb[in->c].p[in->a]; break;   /* uniform pre-pass only */
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
        case PLM_OP_STDNORMAL:
            for (j = 0; j < m; j++) D[j] = zig_normal(rng[first + j].s);
            break;
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
                case PLM_OP_NATIVE: D[j] = call_native(in->fn, x); break;
                case PLM_OP_NATIVE_D: D[j] = call_native_d(in->fn, x, in->kind); break;
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

plm_status plm_prog_ws_init(plm_ctx *ctx, plm_prog_ws *w, const plm_prog *p)
{
    int nreg = p->nuni + p->nvin + p->ntmp, r;
    w->p = p;
    w->u = malloc(((size_t)p->nuni + (size_t)p->ntmp * PLM_EXPR_BLOCK + 1) * sizeof *w->u);
    w->R = calloc((size_t)nreg + 1, sizeof *w->R);
    if (!w->u || !w->R) {
        free(w->u);
        free(w->R);
        w->u = NULL;
        w->R = NULL;
        return plm_fail(ctx, PLM_ENOMEM, "eval: out of memory");
    }
    for (r = 0; r < p->nuni; r++) w->R[r] = w->u + r;
    for (r = 0; r < p->ntmp; r++) w->R[p->nuni + p->nvin + r] = w->u + p->nuni + (size_t)r * PLM_EXPR_BLOCK;
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

void plm_prog_block(plm_prog_ws *w, const plm_prog_in *in, size_t first, size_t m, double *const *out, plm_rng *rng)
{
    const plm_prog *p = w->p;
    double **R = w->R;
    int r, o;
    for (r = 0; r < p->nvin; r++) {
        const plm_prog_in *pi = &in[p->vin_grp[r]];
        R[p->nuni + r] = (double *)pi->p + (size_t)p->vin_idx[r] * pi->ld + first;
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
