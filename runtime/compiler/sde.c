/* sde.c -- SDE kernels: the whole integration step (drift, diffusion, noise, update) is one compiled program,
** run for all steps on one block of paths at a time so the block's state stays in L1. */
#include "sde.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"

#define K(v) plm_graph_const(g, (v))
#define ADD(a, b) plm_graph_op(g, PLM_OP_ADD, (a), (b), -1)
#define SUB(a, b) plm_graph_op(g, PLM_OP_SUB, (a), (b), -1)
#define MUL(a, b) plm_graph_op(g, PLM_OP_MUL, (a), (b), -1)

static int *copy_ints(const int *v, int n)
{
    int *r = plm_gc_alloc_atomic((size_t)(n + 1) * sizeof *r);
    if (r && n) memcpy(r, v, (size_t)n * sizeof *r);
    return r;
}

plm_status plm_sde_new(plm_ctx *ctx, const plm_sde_spec *spec, plm_sde **out)
{
    plm_sde *s = plm_gc_alloc(sizeof *s);
    plm_graph *g = spec->g;
    int d = spec->dim, m = spec->m, i, j, *xin, *step, diag;
    int dt = plm_graph_input(g, PLM_GRP_T, 1), sdt = plm_graph_input(g, PLM_GRP_T, 2);
    plm_status st;
    if (!s) return plm_fail(ctx, PLM_ENOMEM, "sde: out of memory");
    if (d < 1 || d > 64 || m < 1 || m > 64 || (spec->diagonal && m != d))
        return plm_fail(ctx, PLM_EINVAL, "sde: dimensions must be in 1..64 (dim %d, noise %d)", d, m);
    s->g = g;
    s->dim = d;
    s->m = m;
    s->np = spec->np;
    s->params = plm_gc_alloc_atomic((size_t)(spec->np + 1) * sizeof(double));
    s->drift = copy_ints(spec->drift, d);
    s->diff = copy_ints(spec->diff, spec->diagonal ? d : d * m);
    s->jac = plm_gc_alloc_atomic((size_t)(d * d + 1) * sizeof(int));
    xin = malloc((size_t)(d + 1) * sizeof *xin);
    step = malloc((size_t)(d + 1) * sizeof *step);
    if (!s->params || !s->drift || !s->diff || !s->jac || !xin || !step) {
        free(xin);
        free(step);
        return plm_fail(ctx, PLM_ENOMEM, "sde: out of memory");
    }
    for (i = 0; i < spec->np; i++) s->params[i] = NAN;
    for (i = 0; i < d; i++) xin[i] = plm_graph_input(g, PLM_GRP_X, i);
    /* a full matrix with constant-zero off-diagonal entries is diagonal noise */
    diag = spec->diagonal;
    if (!diag && m == d) {
        diag = 1;
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++) {
                double v;
                if (i != j && !(plm_graph_is_const(g, s->diff[i * d + j], &v) && v == 0)) diag = 0;
            }
    }
    s->diagonal = diag;
    for (i = 0; i < d; i++)
        if ((st = plm_graph_grad(ctx, g, s->drift[i], d, xin, s->jac + i * d))) goto fail;
    if ((st = plm_prog_compile(ctx, g, d, s->drift, 1u << PLM_GRP_X, &s->drift_prog)) ||
        (st = plm_prog_compile(ctx, g, spec->diagonal ? d : d * m, s->diff, 1u << PLM_GRP_X, &s->diff_prog)) ||
        (st = plm_prog_compile(ctx, g, d * d, s->jac, 1u << PLM_GRP_X, &s->jac_prog)))
        goto fail;
    /* Euler-Maruyama: x' = x + f dt + G sqrt(dt) z */
    {
        int z[64];
        for (j = 0; j < m; j++) z[j] = MUL(sdt, plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL));
        for (i = 0; i < d; i++) {
            int v = ADD(xin[i], MUL(s->drift[i], dt));
            if (spec->diagonal)
                v = ADD(v, MUL(s->diff[i], z[i]));
            else
                for (j = 0; j < m; j++) v = ADD(v, MUL(s->diff[i * m + j], z[j]));
            step[i] = v;
        }
        if ((st = plm_prog_compile(ctx, g, d, step, 1u << PLM_GRP_X, &s->euler))) goto fail;
    }
    /* Milstein, diagonal noise: x_i' = Euler + 1/2 g_i dg_i/dx_i (dW_i^2 - dt) */
    if (diag) {
        for (i = 0; i < d; i++) {
            int gi = spec->diagonal ? s->diff[i] : s->diff[i * d + i], dg, dw, v;
            if ((st = plm_graph_grad(ctx, g, gi, 1, &xin[i], &dg))) goto fail;
            dw = MUL(sdt, plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL));
            v = ADD(ADD(xin[i], MUL(s->drift[i], dt)), MUL(gi, dw));
            v = ADD(v, MUL(MUL(K(0.5), MUL(gi, dg)), SUB(MUL(dw, dw), dt)));
            step[i] = v;
        }
        if ((st = plm_prog_compile(ctx, g, d, step, 1u << PLM_GRP_X, &s->milstein))) goto fail;
    }
    free(xin);
    free(step);
    *out = s;
    return PLM_OK;
fail:
    free(xin);
    free(step);
    return st;
}

static plm_status eval_at(plm_ctx *ctx, const plm_sde *s, const plm_prog *p, int nout, double t, size_t n,
                          const double *x, size_t ld, double *res)
{
    plm_prog_in in[PLM_NGROUPS] = {{0}};
    double T[3] = {t, 0, 0}, **out = malloc((size_t)nout * sizeof *out);
    plm_status st;
    int k;
    if (!out) return plm_fail(ctx, PLM_ENOMEM, "sde: out of memory");
    for (k = 0; k < nout; k++) out[k] = res + (size_t)k * ld;
    in[PLM_GRP_P].p = s->params;
    in[PLM_GRP_T].p = T;
    in[PLM_GRP_X].p = x;
    in[PLM_GRP_X].ld = ld;
    st = plm_prog_eval(ctx, p, n, in, out, NULL, 1);
    free(out);
    return st;
}

plm_status plm_sde_drift(plm_ctx *ctx, const plm_sde *s, double t, size_t n, const double *x, size_t ld, double *f)
{
    return eval_at(ctx, s, s->drift_prog, s->dim, t, n, x, ld, f);
}

plm_status plm_sde_diffusion(plm_ctx *ctx, const plm_sde *s, double t, size_t n, const double *x, size_t ld,
                             double *G)
{
    return eval_at(ctx, s, s->diff_prog, plm_prog_nout(s->diff_prog), t, n, x, ld, G);
}

plm_status plm_sde_jacobian(plm_ctx *ctx, const plm_sde *s, double t, size_t n, const double *x, size_t ld,
                            double *J)
{
    return eval_at(ctx, s, s->jac_prog, s->dim * s->dim, t, n, x, ld, J);
}

size_t plm_sde_nsaves(size_t ngrid, size_t every)
{
    if (ngrid == 0) return 0;
    if (every < 1) every = 1;
    return (ngrid - 1) / every + 1 + ((ngrid - 1) % every != 0);
}

typedef struct sim_job {
    const plm_sde *s;
    const plm_prog *step;
    const double *t, *x0;
    size_t ngrid, n, every;
    int x0_per_path;
    double *x, *out;
    plm_rng *rng;
    /* Per block of paths, so that no two threads write one word and the reported failure is the same for
    ** any thread count: what stopped the block (0 none, 1 memory, 2 a non-finite state, 3 interrupted),
    ** and for 2 the first grid index and the path. */
    unsigned char *failed;
    size_t *bad_step, *bad_path;
} sim_job;

static void sim_blocks(void *arg, size_t b0, size_t b1, int worker)
{
    sim_job *J = arg;
    const plm_sde *s = J->s;
    size_t n = J->n, b, k, j, sv;
    int d = s->dim, c;
    plm_prog_ws w;
    plm_prog_in in[PLM_NGROUPS];
    double T[3], *outp[64];
    (void)worker;
    if (plm_prog_ws_init(NULL, &w, J->step)) {
        for (b = b0; b < b1; b++) J->failed[b] = 1;
        return;
    }
    memset(in, 0, sizeof in);
    in[PLM_GRP_P].p = s->params;
    in[PLM_GRP_T].p = T;
    in[PLM_GRP_X].p = J->x;
    in[PLM_GRP_X].ld = n;
    for (c = 0; c < d; c++) outp[c] = J->x + (size_t)c * n;
    for (b = b0; b < b1; b++) {
        size_t first = b * PLM_EXPR_BLOCK, m = n - first < PLM_EXPR_BLOCK ? n - first : PLM_EXPR_BLOCK;
        for (c = 0; c < d; c++)
            for (j = 0; j < m; j++)
                J->x[(size_t)c * n + first + j] = J->x0_per_path ? J->x0[(size_t)c * n + first + j] : J->x0[c];
        sv = 0;
        for (k = 0; k < J->ngrid; k++) {
            if (k > 0) {
                double dt = J->t[k] - J->t[k - 1];
                T[0] = J->t[k - 1];
                T[1] = dt;
                T[2] = sqrt(dt);
                plm_prog_uniforms(&w, in);
                plm_prog_block(&w, in, first, m, outp, J->rng);
            }
            /* every step, not only saved ones: the message names the step where a path first left the
            ** finite numbers, and once one has there is nothing left to simulate in this block */
            for (c = 0; c < d && !J->failed[b]; c++) {
                const double *src = J->x + (size_t)c * n + first;
                for (j = 0; j < m; j++)
                    if (!isfinite(src[j])) {
                        J->failed[b] = 2;
                        J->bad_step[b] = k;
                        J->bad_path[b] = first + j;
                        break;
                    }
            }
            if (J->failed[b]) break;
            if (k % J->every == 0 || k == J->ngrid - 1) {
                for (c = 0; c < d; c++)
                    memcpy(J->out + (sv * (size_t)d + (size_t)c) * n + first, J->x + (size_t)c * n + first,
                           m * sizeof *J->out);
                sv++;
            }
            if ((k & 1023) == 1023 && plm_interrupted()) {
                J->failed[b] = 3;
                break;
            }
        }
    }
    plm_prog_ws_free(&w);
}

plm_status plm_sde_simulate(plm_ctx *ctx, const plm_sde *s, plm_sde_method method, const double *t, size_t ngrid,
                            size_t n, const double *x0, int x0_per_path, size_t every, unsigned long long seed,
                            double *out, int nthreads)
{
    sim_job J;
    size_t i, nblocks, bad = (size_t)-1;
    plm_prog_in in[PLM_NGROUPS] = {{0}};
    double T[3] = {0, 0, 0};
    plm_status st;
    if (ngrid < 1) return plm_failm(ctx, PLM_EINVAL, "sde", "the time grid is empty");
    for (i = 1; i < ngrid; i++)
        if (!(t[i] > t[i - 1]))
            return plm_failm(ctx, PLM_EINVAL, "sde", "times must increase (t[%zu] = %g after %g)", i + 1, t[i],
                            t[i - 1]);
    if (method == PLM_SDE_MILSTEIN && !s->milstein)
        return plm_failm(ctx, PLM_EINVAL, "sde", "Milstein needs diagonal noise (a vector diffusion, or a "
                                         "matrix with zero off-diagonal entries)");
    memset(&J, 0, sizeof J);
    J.s = s;
    J.step = method == PLM_SDE_MILSTEIN ? s->milstein : s->euler;
    in[PLM_GRP_P].p = s->params;
    in[PLM_GRP_T].p = T;
    in[PLM_GRP_X].p = T;
    if ((st = plm_prog_check(ctx, J.step, in, 1))) return st;
    J.t = t;
    J.x0 = x0;
    J.x0_per_path = x0_per_path;
    J.ngrid = ngrid;
    J.n = n;
    J.every = every < 1 ? 1 : every;
    J.out = out;
    nblocks = (n + PLM_EXPR_BLOCK - 1) / PLM_EXPR_BLOCK;
    J.x = malloc(((size_t)s->dim * n + 1) * sizeof *J.x);
    J.rng = malloc((n + 1) * sizeof *J.rng);
    J.failed = calloc(nblocks + 1, 1);
    J.bad_step = malloc((nblocks + 1) * sizeof *J.bad_step);
    J.bad_path = malloc((nblocks + 1) * sizeof *J.bad_path);
    if (!J.x || !J.rng || !J.failed || !J.bad_step || !J.bad_path) {
        st = plm_failm(ctx, PLM_ENOMEM, "sde", "out of memory");
        goto done;
    }
    for (i = 0; i < n; i++) plm_rng_init(&J.rng[i], seed, i);
    plm_parallel_for(nthreads, nblocks, 1, sim_blocks, &J);
    /* the earliest step at which any path failed (ties: the lowest path), whatever the thread count */
    for (i = 0; i < nblocks; i++) {
        if (J.failed[i] == 1 && !st) st = plm_failm(ctx, PLM_ENOMEM, "sde", "out of memory");
        if (J.failed[i] == 3 && !st) st = plm_failm(ctx, PLM_EINTR, "sde", "interrupted");
        if (J.failed[i] == 2 && (bad == (size_t)-1 || J.bad_step[i] < J.bad_step[bad])) bad = i;
    }
    if (!st && bad != (size_t)-1) {
        size_t k = J.bad_step[bad];
        if (k == 0)
            st = plm_failm(ctx, PLM_EDOM, "sde", "the start x0 of path %zu is not finite", J.bad_path[bad] + 1);
        else
            st = plm_failm(ctx, PLM_EDOM, "sde",
                      "path %zu left the finite numbers at t = %.10g (step %zu of %zu, from t = %.10g; "
                      "reduce dt or check the parameters)",
                      J.bad_path[bad] + 1, t[k], k, ngrid - 1, t[k - 1]);
    }
done:
    free(J.x);
    free(J.rng);
    free(J.failed);
    free(J.bad_step);
    free(J.bad_path);
    return st;
}
