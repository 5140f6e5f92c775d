/* expr_native.c -- native code for the varying part of compiled programs (see expr_native.h). The source is a
** straight-line function: one C statement per instruction of plm_prog.vins, registers as locals, so that the
** compiler's scheduling is the only thing gained over the point evaluator, never a change of arithmetic. */
#include "expr_native.h"

#include "expr_impl.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


static pthread_mutex_t native_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int suspended;   /* plm_native_suspend count */

int plm_native_enabled(void)
{
    const char *e = getenv("PLUME_NATIVE");
    return !(e && strcmp(e, "0") == 0) && suspended <= 0;
}

void plm_native_suspend(int delta)
{
    suspended += delta;
}

size_t plm_prog_native_regs_size(const plm_prog *p)
{
    return (size_t)(p->nuni > 0 ? p->nuni : 1) * (sizeof(double *) + sizeof(double));
}

double *const *plm_prog_native_regs(const plm_prog *p, const plm_prog_in *in, void *mem)
{
    plm_prog_ws w;
    double **R = mem, *v;
    int r, n = p->nuni > 0 ? p->nuni : 1;
    if (plm_prog_ws_init_block(NULL, &w, p, 1)) return NULL;
    plm_prog_uniforms(&w, in);
    v = (double *)(R + n);
    for (r = 0; r < p->nuni; r++) v[r] = w.u[r], R[r] = v + r;
    plm_prog_ws_free(&w);
    return R;
}

/* ---- source ---- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int failed;
} sbuf;

static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int k;
    if (b->failed) return;
    for (;;) {
        va_start(ap, fmt);
        k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)k < b->cap - b->n) break;
        {
            size_t c = 2 * b->cap + (size_t)k + 256;
            char *s = realloc(b->s, c);
            if (!s) {
                b->failed = 1;
                return;
            }
            b->s = s, b->cap = c;
        }
    }
    b->n += (size_t)k;
}

/* The libm function of a unary or binary op whose point evaluation (plm_op_eval) is that one call, or NULL. */
static const char *libm_name(int op)
{
    switch (op) {
    case PLM_OP_EXP: return "exp";
    case PLM_OP_LOG: return "log";
    case PLM_OP_LOG1P: return "log1p";
    case PLM_OP_EXPM1: return "expm1";
    case PLM_OP_SQRT: return "sqrt";
    case PLM_OP_SIN: return "sin";
    case PLM_OP_COS: return "cos";
    case PLM_OP_TAN: return "tan";
    case PLM_OP_ASIN: return "asin";
    case PLM_OP_ACOS: return "acos";
    case PLM_OP_ATAN: return "atan";
    case PLM_OP_SINH: return "sinh";
    case PLM_OP_COSH: return "cosh";
    case PLM_OP_TANH: return "tanh";
    case PLM_OP_ABS: return "fabs";
    case PLM_OP_LGAMMA: return "lgamma";
    case PLM_OP_ERF: return "erf";
    case PLM_OP_FLOOR: return "floor";
    case PLM_OP_POW: return "pow";
    case PLM_OP_MIN: return "fmin";
    case PLM_OP_MAX: return "fmax";
    case PLM_OP_ATAN2: return "atan2";
    default: return NULL;
    }
}

/* Register r as a C expression: uniforms and varying inputs are read once into locals (u<r>), or with xlocal the
** varying inputs are the caller's locals x<i> (state coordinate i); temporaries are locals (t<r>). */
static void reg(sbuf *b, const plm_prog *p, int r, int xlocal)
{
    if (xlocal && r >= p->nuni && r < p->nuni + p->nvin) put(b, "x%d", p->vin_idx[r - p->nuni]);
    else put(b, r < p->nuni + p->nvin ? "u%d" : "t%d", r);
}

int plm_prog_native_parts(const plm_prog *p, int xlocal, char **prologue, char **body)
{
    sbuf pro = {NULL, 0, 0, 0}, b = {NULL, 0, 0, 0};
    int nin = p->nuni + p->nvin, nreg = nin + p->ntmp, t, o, r, vec = xlocal == 2;
    unsigned char *used = calloc((size_t)nreg + 1, 1);
    *prologue = *body = NULL;
    if (!used) return -1;
    for (r = 0; r < p->nvin && xlocal; r++)
        if (p->vin_grp[r] != PLM_GRP_X) goto unsupported;
    for (t = 0; t < p->nvins; t++) {
        const plm_ins *in = &p->vins[t];
        int op = in->op, ar = plm_op_arity(op);
        if (op == PLM_OP_CONST) ar = 0;
        else if (ar < 1 || ar > 3 || plm_op_is_draw(op) || in->d < nin) goto unsupported;
        if (ar >= 1) used[in->a] = 1;
        if (ar >= 2) used[in->b] = 1;
        if (ar >= 3) used[in->c] = 1;
    }
    for (o = 0; o < p->nout; o++)
        if (p->outuni[o] || p->outreg[o] < nin) used[p->outreg[o]] = 1;
    for (r = 0; r < (xlocal ? p->nuni : nin); r++)
        if (used[r]) put(&pro, "    const double u%d = R[%d][0];\n", r, r);
    put(&pro, "    (void)ev;\n");
    for (r = nin; r < nreg; r++) put(&b, vec ? "    pv2 t%d;\n" : "    double t%d;\n", r);
    for (t = 0; t < p->nvins; t++) {
        const plm_ins *in = &p->vins[t];
        int op = in->op, ar = plm_op_arity(op);
        const char *f = libm_name(op);
        put(&b, "    ");
        reg(&b, p, in->d, xlocal);
        put(&b, " = ");
        if (op == PLM_OP_CONST) {
            /* read through a volatile so that the compiler folds nothing (its folding of libm calls rounds
            ** correctly, glibc's not always) */
            put(&b, vec ? "pv2s(" : "");
            if (isfinite(in->k)) put(&b, "*(volatile const double *)&(const double){%a}", in->k);
            else put(&b, "*(volatile const double *)&(const double){%s}", isnan(in->k) ? "__builtin_nan(\"\")" : in->k > 0 ? "__builtin_inf()" : "-__builtin_inf()");
            put(&b, vec ? ")" : "");
        } else if (op == PLM_OP_NEG || op == PLM_OP_INV) {
            put(&b, op == PLM_OP_NEG ? "-" : vec ? "pv2s(1) / " : "1 / ");
            reg(&b, p, in->a, xlocal);
        } else if (op >= PLM_OP_ADD && op <= PLM_OP_DIV) {
            reg(&b, p, in->a, xlocal);
            put(&b, op == PLM_OP_ADD ? " + " : op == PLM_OP_SUB ? " - " : op == PLM_OP_MUL ? " * " : " / ");
            reg(&b, p, in->b, xlocal);
        } else if (op == PLM_OP_FMA) {   /* two roundings, as the interpreter's a * b + c */
            reg(&b, p, in->a, xlocal);
            put(&b, " * ");
            reg(&b, p, in->b, xlocal);
            put(&b, " + ");
            reg(&b, p, in->c, xlocal);
        } else if (vec) {   /* the rest lane by lane (pv2 helpers: bffg_sde_native.c) */
            const char *cmp = op == PLM_OP_LT ? "<" : op == PLM_OP_LE ? "<=" : op == PLM_OP_EQ ? "==" : op == PLM_OP_NE ? "!=" : NULL;
            if (op >= PLM_OP_LT && op <= PLM_OP_NE) put(&b, "PV_CMP(%s, ", cmp);
            else if (op == PLM_OP_AND || op == PLM_OP_OR) put(&b, "PV_%s(", op == PLM_OP_AND ? "AND" : "OR");
            else if (op == PLM_OP_SELECT) put(&b, "PV_SEL(");
            else if (f) put(&b, "PV_F%d(%s, ", ar, f);
            else put(&b, "PV_EV%d(%d, ", ar, op);
            reg(&b, p, in->a, xlocal);
            if (ar >= 2) {
                put(&b, ", ");
                reg(&b, p, in->b, xlocal);
            }
            if (ar >= 3) {
                put(&b, ", ");
                reg(&b, p, in->c, xlocal);
            }
            put(&b, ")");
        } else if (op >= PLM_OP_LT && op <= PLM_OP_NE) {
            put(&b, "(double)(");
            reg(&b, p, in->a, xlocal);
            put(&b, op == PLM_OP_LT ? " < " : op == PLM_OP_LE ? " <= " : op == PLM_OP_EQ ? " == " : " != ");
            reg(&b, p, in->b, xlocal);
            put(&b, ")");
        } else if (op == PLM_OP_AND || op == PLM_OP_OR) {
            put(&b, "(double)(");
            reg(&b, p, in->a, xlocal);
            put(&b, op == PLM_OP_AND ? " != 0 && " : " != 0 || ");
            reg(&b, p, in->b, xlocal);
            put(&b, " != 0)");
        } else if (op == PLM_OP_SELECT) {
            reg(&b, p, in->a, xlocal);
            put(&b, " != 0 ? ");
            reg(&b, p, in->b, xlocal);
            put(&b, " : ");
            reg(&b, p, in->c, xlocal);
        } else if (f) {
            put(&b, "%s(", f);
            reg(&b, p, in->a, xlocal);
            if (ar == 2) {
                put(&b, ", ");
                reg(&b, p, in->b, xlocal);
            }
            put(&b, ")");
        } else {   /* the rest through plm_op_eval itself */
            put(&b, "ev(%d, ", op);
            reg(&b, p, in->a, xlocal);
            put(&b, ", ");
            if (ar == 2) reg(&b, p, in->b, xlocal);
            else put(&b, "0");
            put(&b, ", 0)");
        }
        put(&b, ";\n");
    }
    for (o = 0; o < p->nout; o++) {
        put(&b, xlocal ? "    b%d = " : "    out[%d][0] = ", o);
        reg(&b, p, p->outreg[o], xlocal);
        put(&b, ";\n");
    }
    free(used);
    if (pro.failed || b.failed) {
        free(pro.s);
        free(b.s);
        return -1;
    }
    *prologue = pro.s, *body = b.s;
    return 0;
unsupported:
    free(used);
    return -1;
}

char *plm_prog_native_source(const plm_prog *p)
{
    sbuf b = {NULL, 0, 0, 0};
    char *pro, *body;
    if (plm_prog_native_parts(p, 0, &pro, &body)) return NULL;
    put(&b, "/* generated by plume (runtime/compiler/expr_native.c) from a compiled program: %d instructions */\n"
            "#include <math.h>\n\nvoid plm_native_main(double *const *R, double *const *out, "
            "double (*ev)(int, double, double, double))\n{\n%s%s}\n", p->nvins, pro, body);
    free(pro);
    free(body);
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ---- compile and load ---- */

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* Is dir a folder of ours that nobody else may write to? Objects in it are loaded into this process, so a folder
** another user made first (say /tmp/plume-<uid>) must not be trusted. */
static int private_dir(const char *dir)
{
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == getuid() && (st.st_mode & 022) == 0 &&
           access(dir, W_OK | X_OK) == 0;
}

/* The cache folder (created if missing) into dir, or -1. */
static int cache_dir(char *dir, size_t n)
{
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[4096];
    int k;
    if (x && x[0] == '/') k = snprintf(base, sizeof base, "%s", x);
    else if (home && home[0] == '/') k = snprintf(base, sizeof base, "%s/.cache", home);
    else k = -1;
    if (k > 0 && (size_t)k < sizeof base) {
        mkdir(base, 0700);
        k = snprintf(dir, n, "%s/plume", base);
        if (k > 0 && (size_t)k < n && (mkdir(dir, 0700) == 0 || errno == EEXIST) && private_dir(dir)) return 0;
    }
    k = snprintf(dir, n, "/tmp/plume-%ld", (long)getuid());
    if (k > 0 && (size_t)k < n && (mkdir(dir, 0700) == 0 || errno == EEXIST) && private_dir(dir)) return 0;
    return -1;
}

/* A path or command word safe inside single quotes. */
static int quotable(const char *s)
{
    return strchr(s, '\'') == NULL;
}

/* Compiles src into the cache (if not there yet) and loads it; NULL on any failure. Under native_lock. */
static void *build(const char *src, const char *symbol)
{
    const char *cc = getenv("PLUME_CC");
    const char *flags = "-O2 -fPIC -shared -ffp-contract=off -fno-fast-math";
    char dir[4096], so[4200], tmpc[4300], tmpso[4300], *cmd;
    uint64_t h = 0xcbf29ce484222325ULL;
    void *lib;
    void *sym;
    FILE *f;
    int rc;
    size_t ncmd;
    if (!cc || !cc[0]) cc = "cc";
    h = fnv1a(fnv1a(fnv1a(h, cc), flags), src);
    if (cache_dir(dir, sizeof dir) || !quotable(dir) || !quotable(cc)) return NULL;
    snprintf(so, sizeof so, "%s/plm-%016llx.so", dir, (unsigned long long)h);
    if (access(so, R_OK) != 0) {
        /* private names for the source and the object, then an atomic rename: another process compiling the
        ** same program at once writes its own files, and a reader never sees a half-written object */
        snprintf(tmpc, sizeof tmpc, "%s/plm-%016llx.%ld.c", dir, (unsigned long long)h, (long)getpid());
        snprintf(tmpso, sizeof tmpso, "%s/plm-%016llx.%ld.so", dir, (unsigned long long)h, (long)getpid());
        if (!(f = fopen(tmpc, "w"))) return NULL;
        rc = fputs(src, f) < 0;
        rc |= fclose(f) != 0;
        if (rc) {
            remove(tmpc);
            return NULL;
        }
        ncmd = strlen(cc) + strlen(flags) + strlen(tmpc) + strlen(tmpso) + 64;
        if (!(cmd = malloc(ncmd))) {
            remove(tmpc);
            return NULL;
        }
        snprintf(cmd, ncmd, "'%s' %s -o '%s' '%s' >/dev/null 2>&1", cc, flags, tmpso, tmpc);
        rc = system(cmd);
        free(cmd);
        remove(tmpc);
        if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0 || rename(tmpso, so) != 0) {
            remove(tmpso);
            return NULL;
        }
    }
    if (!(lib = dlopen(so, RTLD_NOW | RTLD_LOCAL))) return NULL;
    if (!(sym = dlsym(lib, symbol))) {
        dlclose(lib);
        return NULL;
    }
    /* the library stays loaded for the life of the process: the program that holds its function may live as long */
    return sym;
}

/* Objects loaded by this process, by the hash of their source and symbol: kernels made by the hundred for one
** model find theirs here without a look at the disk. */
typedef struct loaded {
    uint64_t h;
    void *sym;
    struct loaded *next;
} loaded;
static loaded *loaded_list;

void *plm_native_symbol(const char *src, const char *symbol)
{
    uint64_t h = fnv1a(fnv1a(0xcbf29ce484222325ULL, symbol), src);
    const char *cc = getenv("PLUME_CC");
    loaded *e;
    void *sym = NULL;
    if (!src || !plm_native_enabled()) return NULL;
    h = fnv1a(h, cc ? cc : "");
    pthread_mutex_lock(&native_lock);
    for (e = loaded_list; e && e->h != h; e = e->next) {}
    if (e) sym = e->sym;
    else if ((sym = build(src, symbol)) && (e = malloc(sizeof *e))) {
        e->h = h, e->sym = sym, e->next = loaded_list;
        loaded_list = e;
    }
    pthread_mutex_unlock(&native_lock);
    return sym;
}

plm_prog_native_fn plm_prog_native(const plm_prog *p)
{
    plm_prog *q = (plm_prog *)p;   /* the cache fields only: the program itself never changes */
    plm_prog_native_fn fn = NULL;
    if (!p || !plm_native_enabled()) return NULL;
    pthread_mutex_lock(&native_lock);
    if (q->native_state == 0) {
        char *src = plm_prog_native_source(p);
        void *sym = src ? build(src, "plm_native_main") : NULL;
        if (sym) memcpy(&fn, &sym, sizeof fn);   /* ISO C has no object-to-function pointer conversion */
        free(src);
        q->native_fn = NULL;
        if (fn) memcpy(&q->native_fn, &fn, sizeof fn);
        q->native_state = fn ? 1 : -1;
    } else if (q->native_state == 1)
        memcpy(&fn, &q->native_fn, sizeof fn);
    pthread_mutex_unlock(&native_lock);
    return fn;
}
