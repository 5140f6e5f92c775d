/* bffg_conj.c -- the conjugate update of diffusion parameters that enter the drift linearly, a block move of pCN MCMC
** (bffg_mcmc.c; the Gibbs step of BridgeSDEInference.jl, made exact for the discretised target).
**
** pCN's state is (theta, Z): the parameters and the innovations of the guided draw, whose target is
** pi(theta, Z) = p(theta) N(Z; 0, I) exp(logw(theta, Z)). A random-walk move of theta keeps Z, so the path moves with
** theta. This move keeps the path instead: it maps Z to the draw X = x(theta, Z) (every diffusion's path on its grid
** and every latent node's value), proposes theta' given X, and maps X back to the innovations Z' = x^-1(theta', X)
** under the guides at theta'. In the coordinates (theta, X) the target is
**   p(theta) prod_{diffusion edges e} N(Z_e) exp(logw_e) prod_{other latent nodes} p(x_i | x_parent) prod_obs p(y | x)
** up to the Jacobian of Z_e -> X_e, which depends on the diffusion coefficient alone (so the block must not enter it):
** the guided Euler density of a path times its weight, and for every other latent node the guided density times its
** weight, which is the kernel's own density and does not depend on theta. So the acceptance ratio needs only the
** diffusion edges' sum l(theta) = sum_e (-|Z_e|^2 / 2 + logw_e), at theta and at theta'.
**
** The proposal is the Gaussian conditional of the block given the path under the Euler likelihood (bffg_sde_conj.c),
** times the block's prior where it is normal: the conjugate update. It differs from the discretised target's
** conditional only by the guiding's discretisation, so it is accepted nearly always, and the ratio makes it exact. */
#include "bffg_dag.h"

#include <math.h>
#include <string.h>

struct plm_bffg_conj {
    const plm_bffg_model *m;
    const plm_sde *sde;
    int nb, idx[4];
    const char *names[4];
    const plm_prog *prog;   /* the block's drift and derivatives (plm_bffg_sde_conj_prog) */
    long *poff;      /* per node: where its diffusion path starts in X, or -1 (not a latent diffusion edge) */
    double *X;       /* the kept paths */
    double *row;     /* the kept draw */
    double *work;
};

static size_t conj_node_nz(const plm_bffg_model *m, const plm_bffg_filter *f, int i)
{
    return f->values[i] ? 0 : m->nodes[i].k->nz;
}

plm_status plm_bffg_conj_new(plm_ctx *ctx, const plm_bffg_model *m, const plm_bffg_filter *f, const plm_sde *sde, int nb,
                             const int *idx, const char *const *names, const plm_prog *prog, plm_bffg_conj **out)
{
    const char *fn = "bffg mcmc: conjugate update";
    plm_bffg_conj *C;
    size_t total = 0, work = plm_bffg_filter_work(f);
    int i, owned = 0;
    if (nb < 1 || nb > 4) return plm_fail(ctx, PLM_EINVAL, "%s: a block of 1 to 4 parameters (got %d)", fn, nb);
    if (!sde) return plm_fail(ctx, PLM_EINVAL, "%s: for the parameters of a plume.sde only", fn);
    if (!(C = plm_gc_alloc(sizeof *C)) || !(C->poff = plm_gc_alloc_atomic((size_t)(m->n ? m->n : 1) * sizeof *C->poff)))
        return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    C->m = m, C->sde = sde, C->nb = nb, C->prog = prog;
    memcpy(C->idx, idx, (size_t)nb * sizeof *idx);
    for (i = 0; i < nb; i++) C->names[i] = names ? names[i] : NULL;
    for (i = 0; i < m->n; i++) {
        const node *nd = &m->nodes[i];
        int d, nzs;
        size_t N;
        C->poff[i] = -1;
        if (f->values[i]) continue;
        if (nd->group >= 0 || nd->np > 1)
            return plm_fail(ctx, PLM_EINVAL, "%s: node '%s' has several parents (or is drawn with such a node); the update "
                                             "needs a tree of kernels", fn, nd->name);
        if ((N = plm_bffg_sde_grid(nd->k, &d, &nzs))) {
            if (d > 8 || nzs > 8)
                return plm_fail(ctx, PLM_EINVAL, "%s: node '%s': at most 8 states and noises (got %d, %d)", fn, nd->name, d, nzs);
            if (nd->parent < 0) return plm_fail(ctx, PLM_EINVAL, "%s: diffusion node '%s' has no parent", fn, nd->name);
            C->poff[i] = (long)total;
            total += (N + 1) * (size_t)d;
            owned |= plm_bffg_kernel_sde_of(nd->k) == sde;
        } else if (nd->k->nz > 0 && !nd->k->ops->unsample_z)
            return plm_fail(ctx, PLM_EINVAL, "%s: node '%s' (a %s kernel) cannot be mapped back to its innovations; give the "
                                             "parameters a random-walk block", fn, nd->name, nd->k->ops->name);
        if (!nd->k->discrete_out) work = work > (size_t)nd->k->dout * (nd->k->dout + 2) + nd->k->work
                                             ? work : (size_t)nd->k->dout * (nd->k->dout + 2) + nd->k->work;
    }
    if (!owned) return plm_fail(ctx, PLM_EINVAL, "%s: no latent node is a diffusion of the sde", fn);
    if (!(C->X = plm_gc_alloc_atomic((total ? total : 1) * sizeof *C->X)) ||
        !(C->row = plm_gc_alloc_atomic((m->width + 1) * sizeof *C->row)) ||
        !(C->work = plm_gc_alloc_atomic((work + 8) * sizeof *C->work)))
        return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    *out = C;
    return PLM_OK;
}

static double half_sq(const double *z, size_t n)
{
    double s = 0;
    for (size_t l = 0; l < n; l++) s += z[l] * z[l];
    return 0.5 * s;
}

plm_status plm_bffg_conj_keep(plm_ctx *ctx, plm_bffg_conj *C, const plm_bffg_filter *f, const double *z, double *P,
                              double *mv, double *ell)
{
    const plm_bffg_model *m = f->m;
    double l = 0;
    int t, nb = C->nb;
    plm_status st;
    memset(P, 0, (size_t)nb * nb * sizeof *P);
    memset(mv, 0, (size_t)nb * sizeof *mv);
    for (t = 0; t < m->n; t++) {
        int i = m->order[t];
        const node *nd = &m->nodes[i];
        size_t nz = conj_node_nz(m, f, i);
        const double *x = nd->parent >= 0 ? C->row + m->nodes[nd->parent].offset : NULL;
        if (f->values[i]) continue;
        if (C->poff[i] >= 0) {
            double *X = C->X + C->poff[i], lw;
            int d;
            size_t N = plm_bffg_sde_grid(nd->k, &d, NULL);
            memcpy(X, x, (size_t)d * sizeof *X);
            if (plm_bffg_kernel_sde_of(nd->k) != C->sde) lw = plm_bffg_sde_walk(nd->k, f->guide[i], X, z, NULL, 0);
            else if ((st = plm_bffg_sde_keep(ctx, nd->k, f->guide[i], X, z, nb, C->idx, C->names, C->prog, P, mv, &lw)))
                return st;
            memcpy(C->row + nd->offset, X + N * (size_t)d, (size_t)d * sizeof *X);
            l += lw - half_sq(z, nz);
        } else
            nd->k->ops->sample_z(nd->k, f->guide[i], x, z, C->row + nd->offset, C->work);
        z += nz;
    }
    *ell = l;
    return PLM_OK;
}

double plm_bffg_conj_innov(plm_bffg_conj *C, const plm_bffg_filter *f, const plm_bffg_filter *f2, const double *z,
                           double *z2)
{
    const plm_bffg_model *m = f2->m;
    double l = 0;
    int t;
    for (t = 0; t < m->n; t++) {
        int i = m->order[t];
        const node *nd = &m->nodes[i];
        size_t nz = conj_node_nz(m, f2, i);
        const double *x = nd->parent >= 0 ? C->row + m->nodes[nd->parent].offset : NULL;
        if (f2->values[i]) continue;
        if (C->poff[i] >= 0)
            l += plm_bffg_sde_walk(nd->k, f2->guide[i], C->X + C->poff[i], z, z2, 1) - half_sq(z2, nz);
        else if (nz > 0)
            nd->k->ops->unsample_z(nd->k, f->guide[i], f2->guide[i], x, C->row + nd->offset, z, z2, C->work);
        for (size_t j = 0; j < nz; j++)
            if (isnan(z2[j])) return NAN;
        z += nz, z2 += nz;
    }
    return l;
}

int plm_bffg_conj_same(const plm_bffg_conj *C, const double *row)
{
    const plm_bffg_model *m = C->m;
    for (int i = 0; i < m->n; i++) {
        const node *nd = &m->nodes[i];
        if (nd->value) continue;
        for (int j = 0; j < (nd->k->discrete_out ? 1 : nd->k->dout); j++) {
            double a = row[nd->offset + j], b = C->row[nd->offset + j];
            if (nd->k->discrete_out ? a != b : !(fabs(a - b) <= 1e-6 * (1 + fabs(b)))) return 0;
        }
    }
    return 1;
}
