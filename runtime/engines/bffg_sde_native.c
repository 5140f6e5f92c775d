/* bffg_sde_native.c -- the guided Euler path of a diffusion kernel (bffg_sde.c, sde_path_d) as C source: the drift's
** compiled program inline (plm_prog_native_parts), the dimensions as constants, the state and the auxiliary in
** registers, the same operations in the same order as the interpreter's loop so that results agree bit for bit;
** compiled and loaded through expr_native.h's cache. One path (plm_native_path), and two on the same grid side by
** side (plm_native_path2), which pCN's iterations use for the path proposal and the parameter proposal at once. */
#include "bffg_sde_native.h"
#include "expr_native.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One Euler step of path_source's loop, without the trace term of G (with_tr 0), with it (1), or with it when same_a
** is 0 (2); tr stays 0 without it, so the operations and their results are sde_path_d's either way. ret is returned
** when the state leaves the finite numbers. */
static size_t put_step(char *src, size_t n, size_t cap, int d, int m, int diag, const char *body, int with_tr, int ret, int inv)
{
    int i, j, l, nn = diag ? d : m;
#define PUT(...) (n += (size_t)snprintf(src + n, n < cap ? cap - n : 0, __VA_ARGS__))
    /* F(t_k) from a frozen cache as guide_F forms it (d = 2), else read */
    if (d == 2)
        PUT("        double Lf[2];\n        const double *Fk = Lf, *Hk = H + kk * 4;\n"
            "        if (L) {\n            const double *Lk = L + 8 * kk;\n"
            "            Lf[0] = Lk[0] * v[0] + Lk[1] * v[1] + Lk[2] * v[2] + Lk[3] * v[3];\n"
            "            Lf[1] = Lk[4] * v[0] + Lk[5] * v[1] + Lk[6] * v[2] + Lk[7] * v[3];\n"
            "        } else\n            Fk = F + kk * 2;\n");
    else
        PUT("        const double *Fk = F + kk * %d, *Hk = H + kk * %d;\n        (void)L, (void)v;\n", d, d * d);
    PUT("        double dt = t[kk + 1] - t[kk], sdt = t[N + 1 + kk], Gk = 0, tr = 0;\n        double");
    for (i = 0; i < d; i++) PUT("%s b%d, r%d, n%d", i ? "," : "", i, i, i);
    PUT(";\n        {\n%s        }\n", body);
    for (i = 0; i < d; i++) {   /* r = F - H x */
        PUT("        { double acc = Fk[%d];", i);
        for (j = 0; j < d; j++) PUT(" acc -= Hk[%d] * x%d;", i * d + j, j);
        PUT(" r%d = acc; }\n", i);
    }
    for (i = 0; i < d; i++) {   /* G = (b - b~)'r - tr[(a - a~)(H - r r')] / 2 */
        PUT("        { double bt = beta%d;", i);
        for (j = 0; j < d; j++) PUT(" bt += B%d_%d * x%d;", i, j, j);
        PUT(" Gk += (b%d - bt) * r%d;", i, i);
        if (with_tr) {   /* 2: only for a path with a != a~ (the side-by-side loop's paths may differ there) */
            PUT("\n          %s", with_tr == 2 ? "if (!same_a) {" : "");
            for (j = 0; j < d; j++) PUT(" tr += da%d_%d * (Hk[%d] - r%d * r%d);", i, j, j * d + i, j, i);
            if (with_tr == 2) PUT(" }");
        }
        PUT(" }\n");
    }
    PUT("        intG += (Gk - 0.5 * tr) * dt;\n");
    if (inv) {   /* the innovations of the step to the kept state: z = sig+ (x' - x - (b + a r) dt) / sqrt(dt) + N0 zold */
        PUT("        const double rs = 1 / sdt;\n");
        for (i = 0; i < d; i++) {
            PUT("        double e%d; { double drift = b%d;", i, i);
            for (j = 0; j < d; j++) PUT(" drift += a%d_%d * r%d;", i, j, j);
            PUT(" e%d = (X[(kk + 1) * %d + %d] - x%d - drift * dt) * rs; }\n", i, d, i, i);
        }
        for (l = 0; l < nn; l++) {
            PUT("        { double acc = 0;");
            for (i = 0; i < d; i++) PUT(" acc += S%d_%d * e%d;", l, i, i);
            for (j = 0; j < nn; j++) PUT(" acc += N0%d_%d * zold[kk * %d + %d];", l, j, nn, j);
            PUT(" if (!isfinite(zout[kk * %d + %d] = acc)) return %d; }\n", nn, l, ret);
        }
        for (i = 0; i < d; i++) PUT("        (void)n%d;\n", i);
        return n;
    }
    for (l = 0; l < nn; l++) PUT("        const double z%d = zin[kk * %d + %d] * sdt;\n", l, nn, l);
    for (i = 0; i < d; i++) {   /* x += (b + a r) dt + sig sqrt(dt) z */
        PUT("        { double drift = b%d, noise = 0;", i);
        for (j = 0; j < d; j++) PUT(" drift += a%d_%d * r%d;", i, j, j);
        if (diag) PUT(" noise = sig%d * z%d;", i, i);
        else
            for (l = 0; l < m; l++) PUT(" noise += sig%d * z%d;", i * m + l, l);
        PUT(" n%d = x%d + drift * dt + noise; }\n", i, i);
    }
    for (i = 0; i < d; i++) PUT("        if (!isfinite(x%d = n%d)) return %d;\n", i, i, ret);
#undef PUT
    return n;
}

/* The source of the native path for drift program p, d states, m noises, diag as sde_kernel's; NULL when the drift
** has instructions native code does not cover (malloc'd; the caller frees it). two: plm_native_path2 instead, which
** runs two paths on the same grid side by side (path_args, plm_bffg_sde_sample_z2); keep (with two 0):
** plm_native_path_keep, the single path with every state stored (the conjugate update, bffg_sde_conj.c). */
static char *path_source(const plm_prog *p, int d, int m, int diag, int two, int keep)
{
    char *pro, *body, *src = NULL;
    size_t cap, n = 0;
    int i, j, w, v2, nsig = diag ? d : d * m;
    if (plm_prog_native_parts(p, 1, &pro, &body)) return NULL;
    if (two) {   /* the drift's body in its two-lane form (the prologue's list of uniforms is the scalar one's) */
        char *pro2;
        free(body);
        if (plm_prog_native_parts(p, 2, &pro2, &body)) {
            free(pro);
            return NULL;
        }
        free(pro2);
    }
    cap = 3 * strlen(pro) + 4 * strlen(body) + 16384 + (size_t)800 * (size_t)(d * d * 6 + d * m * 2 + d * 8);
    if (!(src = malloc(cap))) goto done;
#define PUT(...) (n += (size_t)snprintf(src + n, n < cap ? cap - n : 0, __VA_ARGS__))
    PUT("/* generated by plume (runtime/engines/bffg_sde.c): a guided path%s, d = %d, m = %d, diag = %d */\n",
        two ? ", two side by side" : "", d, m, diag);
    PUT("#include <math.h>\n#include <stddef.h>\n");
    if (!two && keep == 2) {   /* the inverse: the innovations zout of the kept path X, nn x d sig+ S and nn x nn N0 */
        int nn = diag ? d : m;
        PUT("int plm_native_path_inv(double *const *R, double (*ev)(int, double, double, double), size_t N, const double *t,\n"
            "    const double *F, const double *L, const double *v, const double *H, const double *B, const double *beta, const double *a, const double *da,\n"
            "    int same_a, const double *S, const double *N0, const double *zold, const double *X, double *zout, double *intGp)\n{\n%s", pro);
        for (i = 0; i < d; i++) {
            PUT("    double x%d;\n    const double beta%d = beta[%d];\n", i, i, i);
            for (j = 0; j < d; j++)
                PUT("    const double B%d_%d = B[%d], a%d_%d = a[%d], da%d_%d = da[%d];\n", i, j, i * d + j, i, j, i * d + j, i, j,
                    i * d + j);
        }
        for (i = 0; i < nn; i++) {
            for (j = 0; j < d; j++) PUT("    const double S%d_%d = S[%d];\n", i, j, i * d + j);
            for (j = 0; j < nn; j++) PUT("    const double N0%d_%d = N0[%d];\n", i, j, i * nn + j);
        }
        PUT("    double intG = *intGp;\n");
        for (w = 0; w < 2; w++) {   /* without the trace term of G when a = a~, and with it */
            PUT("    %s {\n    for (size_t kk = 0; kk < N; kk++) {\n", w ? "else" : "if (same_a)");
            for (i = 0; i < d; i++) PUT("        x%d = X[kk * %d + %d];\n", i, d, i);
            n = put_step(src, n, cap, d, m, diag, body, w, 1, 1);
            PUT("    }\n    }\n");
        }
        PUT("    *intGp = intG;\n    return 0;\n}\n");
    } else if (!two) {
        PUT("int plm_native_path%s(double *const *R, double (*ev)(int, double, double, double), size_t N, const double *t,\n"
            "    const double *F, const double *L, const double *v, const double *H, const double *B, const double *beta, const double *a, const double *da,\n"
            "    int same_a, const double *sig, const double *zin, double *x, double *intGp%s)\n{\n%s", keep ? "_keep" : "",
            keep ? ", double *X" : "", pro);
        for (i = 0; i < d; i++) {
            PUT("    double x%d = x[%d];\n    const double beta%d = beta[%d];\n", i, i, i, i);
            for (j = 0; j < d; j++)
                PUT("    const double B%d_%d = B[%d], a%d_%d = a[%d], da%d_%d = da[%d];\n", i, j, i * d + j, i, j, i * d + j, i, j,
                    i * d + j);
        }
        for (i = 0; i < nsig; i++) PUT("    const double sig%d = sig[%d];\n", i, i);
        /* two copies of the loop: without the trace term of G when a = a~ (the common case of a constant diffusion equal
        ** to the auxiliary's), where its constants would only crowd the registers (a fifth faster), and with it */
        PUT("    double intG = *intGp;\n    if (same_a) {\n    for (size_t kk = 0; kk < N; kk++) {\n");
        n = put_step(src, n, cap, d, m, diag, body, 0, 1, 0);
        for (i = 0; i < d && keep; i++) PUT("        X[(kk + 1) * %d + %d] = x%d;\n", d, i, i);
        PUT("    }\n    } else {\n    for (size_t kk = 0; kk < N; kk++) {\n");
        n = put_step(src, n, cap, d, m, diag, body, 1, 1, 0);
        for (i = 0; i < d && keep; i++) PUT("        X[(kk + 1) * %d + %d] = x%d;\n", d, i, i);
        PUT("    }\n    }\n");
        for (i = 0; i < d; i++) PUT("    x[%d] = x%d;\n", i, i);
        PUT("    *intGp = intG;\n    return 0;\n}\n");
    } else {
        /* the two paths as the two lanes of two-double vectors (pv2): every operation of a step is done for both
        ** at once, each lane exactly as the single path's loop does it (the drift's body from plm_prog_native_parts
        ** in its vector form); what differs between the paths (their guides, the frozen caches, the innovations) is
        ** read per path and paired */
        const char *q = pro;
        int r, l, nn = diag ? d : m, dd = d * d;
        PUT("typedef struct path_args {\n    double *const *R;\n    const double *F, *L, *v, *H, *B, *beta, *a, *da, *sig, *zin;\n"
            "    double *x, *intG;\n    int same_a;\n} path_args;\n"
            "typedef double pv2 __attribute__((vector_size(16)));\n"
            "static inline pv2 pv2s(double a) { return (pv2){a, a}; }\n"
            "#define PV_CMP(op, a, b) ((pv2){(double)((a)[0] op (b)[0]), (double)((a)[1] op (b)[1])})\n"
            "#define PV_AND(a, b) ((pv2){(double)((a)[0] != 0 && (b)[0] != 0), (double)((a)[1] != 0 && (b)[1] != 0)})\n"
            "#define PV_OR(a, b) ((pv2){(double)((a)[0] != 0 || (b)[0] != 0), (double)((a)[1] != 0 || (b)[1] != 0)})\n"
            "#define PV_SEL(a, b, c) ((pv2){(a)[0] != 0 ? (b)[0] : (c)[0], (a)[1] != 0 ? (b)[1] : (c)[1]})\n"
            "#define PV_F1(f, a) ((pv2){f((a)[0]), f((a)[1])})\n"
            "#define PV_F2(f, a, b) ((pv2){f((a)[0], (b)[0]), f((a)[1], (b)[1])})\n"
            "#define PV_EV1(op, a) ((pv2){ev(op, (a)[0], 0, 0), ev(op, (a)[1], 0, 0)})\n"
            "#define PV_EV2(op, a, b) ((pv2){ev(op, (a)[0], (b)[0], 0), ev(op, (a)[1], (b)[1], 0)})\n"
            "#define PAIR(a, i) ((pv2){a##_0[i], a##_1[i]})\n"
            "int plm_native_path2(double (*ev)(int, double, double, double), size_t N, const double *t, const path_args *P0,\n"
            "    const path_args *P1)\n{\n    (void)ev;\n"
            "    double *const *R_0 = P0->R, *const *R_1 = P1->R;\n");
        while ((q = strstr(q, "const double u")) && sscanf(q, "const double u%d", &r) == 1) {
            PUT("    const pv2 u%d = {R_0[%d][0], R_1[%d][0]};\n", r, r, r);
            q++;
        }
        for (w = 0; w < 2; w++)
            PUT("    const double *F_%d = P%d->F, *L_%d = P%d->L, *v_%d = P%d->v, *H_%d = P%d->H, *zin_%d = P%d->zin;\n"
                "    const double *B_%d = P%d->B, *beta_%d = P%d->beta, *a_%d = P%d->a, *da_%d = P%d->da, *sig_%d = P%d->sig;\n"
                "    const int same_a_%d = P%d->same_a;\n", w, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w);
        PUT("    pv2 intG = {*P0->intG, *P1->intG};\n");
        for (i = 0; i < d; i++) {
            PUT("    pv2 x%d = {P0->x[%d], P1->x[%d]};\n    const pv2 beta%d = PAIR(beta, %d);\n", i, i, i, i, i);
            for (j = 0; j < d; j++)
                PUT("    const pv2 B%d_%d = PAIR(B, %d), a%d_%d = PAIR(a, %d), da%d_%d = PAIR(da, %d);\n", i, j, i * d + j, i, j,
                    i * d + j, i, j, i * d + j);
        }
        for (i = 0; i < nsig; i++) PUT("    const pv2 sig%d = PAIR(sig, %d);\n", i, i);
        for (v2 = 0; v2 < 2; v2++) {   /* the loop without the trace term when both paths have a = a~, else with it */
            PUT(v2 ? "    else\n" : "    if (same_a_0 && same_a_1)\n");
            PUT("    for (size_t kk = 0; kk < N; kk++) {\n");
            for (w = 0; w < 2; w++) {   /* F(t_k) per path: from its frozen cache as guide_F forms it (d = 2), else read */
                if (d == 2)
                    PUT("        double Lf_%d[2];\n        const double *Fk_%d = Lf_%d, *Hk_%d = H_%d + kk * 4;\n"
                        "        if (L_%d) {\n            const double *Lk = L_%d + 8 * kk, *v = v_%d;\n"
                        "            Lf_%d[0] = Lk[0] * v[0] + Lk[1] * v[1] + Lk[2] * v[2] + Lk[3] * v[3];\n"
                        "            Lf_%d[1] = Lk[4] * v[0] + Lk[5] * v[1] + Lk[6] * v[2] + Lk[7] * v[3];\n"
                        "        } else\n            Fk_%d = F_%d + kk * 2;\n", w, w, w, w, w, w, w, w, w, w, w, w);
                else
                    PUT("        const double *Fk_%d = F_%d + kk * %d, *Hk_%d = H_%d + kk * %d;\n        (void)L_%d, (void)v_%d;\n",
                        w, w, d, w, w, dd, w, w);
            }
            PUT("        const double dts = t[kk + 1] - t[kk], sdts = t[N + 1 + kk];\n"
                "        const pv2 dt = pv2s(dts), sdt = pv2s(sdts);\n        pv2 Gk = pv2s(0), tr = pv2s(0)");
            for (i = 0; i < d; i++) PUT(", b%d, r%d, n%d", i, i, i);
            PUT(";\n        {\n%s        }\n", body);
            for (i = 0; i < d; i++) {   /* r = F - H x */
                PUT("        { pv2 acc = PAIR(Fk, %d);", i);
                for (j = 0; j < d; j++) PUT(" acc -= PAIR(Hk, %d) * x%d;", i * d + j, j);
                PUT(" r%d = acc; }\n", i);
            }
            for (i = 0; i < d; i++) {   /* G = (b - b~)'r - tr[(a - a~)(H - r r')] / 2 */
                PUT("        { pv2 bt = beta%d;", i);
                for (j = 0; j < d; j++) PUT(" bt += B%d_%d * x%d;", i, j, j);
                PUT(" Gk += (b%d - bt) * r%d;", i, i);
                if (v2)   /* computed for both lanes; a lane whose path has a = a~ keeps 0 (below) */
                    for (j = 0; j < d; j++) PUT(" tr += da%d_%d * (PAIR(Hk, %d) - r%d * r%d);", i, j, j * d + i, j, i);
                PUT(" }\n");
            }
            if (v2) PUT("        tr = (pv2){same_a_0 ? 0 : tr[0], same_a_1 ? 0 : tr[1]};\n");
            PUT("        intG += (Gk - pv2s(0.5) * tr) * dt;\n");
            for (l = 0; l < nn; l++) PUT("        const pv2 z%d = (pv2){zin_0[kk * %d + %d], zin_1[kk * %d + %d]} * sdt;\n", l, nn, l, nn, l);
            for (i = 0; i < d; i++) {   /* x += (b + a r) dt + sig sqrt(dt) z */
                PUT("        { pv2 drift = b%d, noise = pv2s(0);", i);
                for (j = 0; j < d; j++) PUT(" drift += a%d_%d * r%d;", i, j, j);
                if (diag) PUT(" noise = sig%d * z%d;", i, i);
                else
                    for (l = 0; l < m; l++) PUT(" noise += sig%d * z%d;", i * m + l, l);
                PUT(" n%d = x%d + drift * dt + noise; }\n", i, i);
            }
            for (i = 0; i < d; i++)
                PUT("        if (!(isfinite(n%d[0]) && isfinite(n%d[1]))) return 1;\n        x%d = n%d;\n", i, i, i, i);
            PUT("    }\n");
        }
        for (i = 0; i < d; i++) PUT("    P0->x[%d] = x%d[0], P1->x[%d] = x%d[1];\n", i, i, i, i);
        PUT("    *P0->intG = intG[0], *P1->intG = intG[1];\n    return 0;\n}\n");
    }
#undef PUT
    if (n >= cap) {
        free(src);
        src = NULL;
    }
done:
    free(pro);
    free(body);
    return src;
}

plm_bffg_path_native *plm_bffg_path_native_make(const plm_sde *s, int d, int m, int diag)
{
    plm_bffg_path_native *pn;
    char *src;
    void *sym;
    if (d > 8 || m > 8 || !plm_native_enabled() || !(src = path_source(s->drift_prog, d, m, diag, 0, 0))) return NULL;
    sym = plm_native_symbol(src, "plm_native_path");
    free(src);
    if (!sym || !(pn = plm_gc_alloc(sizeof *pn))) return NULL;
    memcpy(&pn->fn, &sym, sizeof pn->fn);   /* ISO C has no object-to-function pointer conversion */
    pn->fn2 = NULL;
    pn->keep = NULL;
    pn->inv = NULL;
    pn->s = s, pn->d = d, pn->m = m, pn->diag = diag;
    if ((src = path_source(s->drift_prog, d, m, diag, 1, 0))) {
        if ((sym = plm_native_symbol(src, "plm_native_path2"))) memcpy(&pn->fn2, &sym, sizeof pn->fn2);
        free(src);
    }
    return pn;
}

plm_bffg_path_keep_fn plm_bffg_path_native_keep(plm_bffg_path_native *pn)
{
    char *src;
    void *sym;
    if (pn->keep || pn->keep_failed) return pn->keep;
    /* made on first use: only the conjugate update needs them */
    if ((src = path_source(pn->s->drift_prog, pn->d, pn->m, pn->diag, 0, 1))) {
        if ((sym = plm_native_symbol(src, "plm_native_path_keep"))) memcpy(&pn->keep, &sym, sizeof pn->keep);
        free(src);
    }
    if (pn->keep && (src = path_source(pn->s->drift_prog, pn->d, pn->m, pn->diag, 0, 2))) {
        if ((sym = plm_native_symbol(src, "plm_native_path_inv"))) memcpy(&pn->inv, &sym, sizeof pn->inv);
        free(src);
    }
    pn->keep_failed = !pn->keep;
    return pn->keep;
}
