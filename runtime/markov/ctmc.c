/* ctmc.c -- continuous-time Markov chains: rate validation, exp(Q t) by uniformisation with scaling and
** squaring, Gillespie paths, and exact path and discretely-observed log-likelihoods. */
#include "ctmc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

plm_status plm_ctmc_new(plm_ctx *ctx, const double *Q, int K, plm_ctmc **out)
{
    plm_ctmc *c;
    int i, j;
    plm_init();
    *out = NULL;
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "ctmc: Q must have at least one state (got %d)", K);
    for (i = 0; i < K; i++) {
        double sum = 0, abs_sum = 0;
        for (j = 0; j < K; j++) {
            double q = Q[i * K + j];
            if (!isfinite(q)) return plm_fail(ctx, PLM_EINVAL, "ctmc: Q[%d][%d] is not finite (%g)", i + 1, j + 1, q);
            if (i != j && q < 0)
                return plm_fail(ctx, PLM_EINVAL, "ctmc: Q[%d][%d] is negative (%g); off-diagonal rates must be >= 0",
                                i + 1, j + 1, q);
            sum += q;
            abs_sum += fabs(q);
        }
        if (fabs(sum) > 1e-9 * (1 + abs_sum))
            return plm_fail(ctx, PLM_EINVAL, "ctmc: Q row %d sums to %g; each row of a rate matrix must sum to 0", i + 1,
                            sum);
    }
    if (!(c = plm_gc_alloc(sizeof *c)) || !(c->Q = plm_gc_alloc_atomic((size_t)K * K * sizeof *c->Q)) ||
        !(c->exit = plm_gc_alloc_atomic((size_t)K * sizeof *c->exit)))
        return plm_fail(ctx, PLM_ENOMEM, "ctmc: out of memory");
    c->K = K;
    c->lambda = 0;
    for (i = 0; i < K; i++) {
        /* The diagonal is rebuilt from the off-diagonal rates so rows sum to exactly 0: P(t) then keeps
        ** stochastic rows and the path likelihood uses the same exit rate as the sampler. */
        double out_rate = 0;
        for (j = 0; j < K; j++) {
            c->Q[i * K + j] = Q[i * K + j];
            if (j != i) out_rate += Q[i * K + j];
        }
        c->Q[i * K + i] = -out_rate;
        c->exit[i] = out_rate;
        if (out_rate > c->lambda) c->lambda = out_rate;
    }
    *out = c;
    return PLM_OK;
}

/* C = X Y for K x K matrices (C distinct from X and Y). */
static void matmul(const double *restrict X, const double *restrict Y, double *restrict C, int K)
{
    int i, j, k;
    for (i = 0; i < K; i++) {
        double *restrict ci = C + (size_t)i * K;
        for (j = 0; j < K; j++) ci[j] = 0;
        for (k = 0; k < K; k++) {
            double a = X[(size_t)i * K + k];
            const double *restrict yk = Y + (size_t)k * K;
            if (a == 0) continue;
            for (j = 0; j < K; j++) ci[j] += a * yk[j];
        }
    }
}

/* Divide each row of the K x K matrix P by its sum. P(t) is stochastic for every t; without this, the
** rounding of each squaring multiplies a row's mass by about 1 + K u, and after the ~1000 squarings that
** t = 1e300 needs the rows sum to 0 or to inf. */
static void renormalise_rows(double *P, int K)
{
    int i, j;
    for (i = 0; i < K; i++) {
        double *row = P + (size_t)i * K, sum = 0;
        for (j = 0; j < K; j++) sum += row[j];
        if (sum > 0 && sum != 1)
            for (j = 0; j < K; j++) row[j] /= sum;
    }
}

/* exp(Q t) into P using scratch of 3 K*K doubles.
** Uniformisation: with U = I + Q / lambda (a stochastic matrix), exp(Q tau) = sum_k Pois(k; lambda tau) U^k,
** a sum of non-negative terms. Scaling tau = t / 2^s keeps lambda tau <= 4, so few terms are needed, and the
** s squarings P(2 tau) = P(tau)^2 also multiply non-negative matrices: nothing cancels anywhere. The series is
** cut once the Poisson tail bound w_{N+1} / (1 - x / (N + 2)) is below 2^-s * 1e-17 (or after 60 terms);
** each squaring at most doubles the l1 row error, so for s <= 60 the truncation error of the result is at
** most 1e-17 per row. s is about log2(lambda t), at most about 2100 even when lambda t overflows a double,
** and every row is renormalised after each product, so rows stay stochastic at any t: once the chain has
** mixed, squaring a stochastic matrix that is (to rounding) its own square leaves it there, including the
** limits of reducible chains whose absorbing rows are exact unit vectors. */
static void expm_uniform(const plm_ctmc *c, double t, double *restrict P, double *restrict scratch)
{
    int K = c->K, s = 0, i, k, N;
    size_t KK = (size_t)K * K;
    double *U = scratch, *Uk = scratch + KK, *tmp = scratch + 2 * KK;
    double lambda = c->lambda, x = lambda * t, w, tol;
    if (x == 0) {
        memset(P, 0, KK * sizeof *P);
        for (i = 0; i < K; i++) P[i * K + i] = 1;
        return;
    }
    if (isfinite(x)) {
        while (x > 4) x *= 0.5, s++;
    } else {   /* lambda t overflows: lambda = ml 2^el, t = mt 2^et with ml mt in [1/4, 1), so s = el + et - 2 */
        int el, et;
        double m = frexp(lambda, &el) * frexp(t, &et);
        s = el + et - 2;
        x = ldexp(m, 2);
    }
    tol = ldexp(1e-17, -s);
    for (i = 0; i < K; i++)
        for (k = 0; k < K; k++) U[i * K + k] = (i == k) + c->Q[i * K + k] / lambda;
    for (i = 0; i < K; i++)   /* exact zeros off the diagonal stay zero, and 1 - q_ii / lambda >= 0 */
        if (U[i * K + i] < 0) U[i * K + i] = 0;
    w = exp(-x);
    memset(Uk, 0, KK * sizeof *Uk);
    for (i = 0; i < K; i++) Uk[i * K + i] = 1;
    for (i = 0; i < (int)KK; i++) P[i] = w * Uk[i];
    for (N = 1; N <= 60; N++) {
        w *= x / N;
        matmul(Uk, U, tmp, K);
        memcpy(Uk, tmp, KK * sizeof *Uk);
        for (i = 0; i < (int)KK; i++) P[i] += w * Uk[i];
        if (N + 2 > 2 * x && w * x / (N + 1) / (1 - x / (N + 2)) < tol) break;   /* ratio bound valid */
    }
    renormalise_rows(P, K);
    for (k = 0; k < s; k++) {
        matmul(P, P, tmp, K);
        memcpy(P, tmp, KK * sizeof *P);
        renormalise_rows(P, K);
    }
}

plm_status plm_ctmc_transition(plm_ctx *ctx, const plm_ctmc *c, double t, double *P)
{
    double *scratch;
    if (!(t >= 0) || !isfinite(t)) return plm_fail(ctx, PLM_EINVAL, "ctmc: transition time must be finite and >= 0 (got %g)", t);
    if (!(scratch = malloc(3 * (size_t)c->K * c->K * sizeof *scratch))) return plm_fail(ctx, PLM_ENOMEM, "ctmc: out of memory");
    expm_uniform(c, t, P, scratch);
    free(scratch);
    return PLM_OK;
}

plm_status plm_ctmc_sample_path(plm_ctx *ctx, const plm_ctmc *c, int x0, double t0, double t_end, plm_rng *r,
                                plm_ctmc_path *path)
{
    size_t n = 1, cap = 16;
    double t = t0, *times;
    int x = x0, K = c->K, *states;
    if (x0 < 0 || x0 >= K) return plm_fail(ctx, PLM_EINVAL, "ctmc: initial state %d is out of range 1..%d", x0 + 1, K);
    if (!isfinite(t0) || !isfinite(t_end) || !(t_end >= t0))
        return plm_fail(ctx, PLM_EINVAL, "ctmc: t_end must be finite and >= the start time (got %g, start %g)", t_end, t0);
    times = plm_gc_alloc_atomic(cap * sizeof *times);
    states = plm_gc_alloc_atomic(cap * sizeof *states);
    if (!times || !states) return plm_fail(ctx, PLM_ENOMEM, "ctmc: out of memory");
    times[0] = t0;
    states[0] = x0;
    for (;;) {
        double rate = c->exit[x], u;
        const double *q = c->Q + (size_t)x * K;
        int j, from;
        if (rate <= 0) break;   /* absorbing */
        t += -log(plm_rng_uniform(r)) / rate;
        if (t >= t_end) break;
        if ((n & 4095) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "ctmc: interrupted");
        if (n >= 100000000)
            return plm_fail(ctx, PLM_EINVAL, "ctmc: sample_path: more than 1e8 jumps before t_end = %g", t_end);
        u = plm_rng_uniform(r) * rate;
        from = x;
        for (j = 0; j < K; j++) {   /* the last positive rate takes any rounding leftover of u */
            if (j == from || q[j] <= 0) continue;
            x = j;
            if ((u -= q[j]) < 0) break;
        }
        if (n == cap) {
            double *nt = plm_gc_alloc_atomic(2 * cap * sizeof *nt);
            int *ns = plm_gc_alloc_atomic(2 * cap * sizeof *ns);
            if (!nt || !ns) return plm_fail(ctx, PLM_ENOMEM, "ctmc: out of memory");
            memcpy(nt, times, n * sizeof *nt);
            memcpy(ns, states, n * sizeof *ns);
            times = nt, states = ns, cap *= 2;
        }
        times[n] = t;
        states[n] = x;
        n++;
    }
    path->n = n;
    path->times = times;
    path->states = states;
    path->t_end = t_end;
    return PLM_OK;
}

plm_status plm_ctmc_loglik_path(plm_ctx *ctx, const plm_ctmc *c, const plm_ctmc_path *path, double *loglik)
{
    size_t i, n = path->n;
    double ll = 0;
    int K = c->K;
    if (n == 0) return plm_fail(ctx, PLM_EINVAL, "ctmc: the path is empty");
    for (i = 0; i < n; i++) {
        int s = path->states[i];
        if (s < 0 || s >= K)
            return plm_fail(ctx, PLM_EINVAL, "ctmc: path state %zu is %d, out of range 1..%d", i + 1, s + 1, K);
        if (!isfinite(path->times[i]))
            return plm_fail(ctx, PLM_EINVAL, "ctmc: path time %zu is not finite (%g)", i + 1, path->times[i]);
        if (i > 0 && path->times[i] < path->times[i - 1])
            return plm_fail(ctx, PLM_EINVAL, "ctmc: path times must not decrease (time %zu is %g, time %zu is %g)", i + 1,
                            path->times[i], i, path->times[i - 1]);
        if (i > 0 && s == path->states[i - 1])
            return plm_fail(ctx, PLM_EINVAL, "ctmc: path states %zu and %zu are both %d; every jump must change state", i,
                            i + 1, s + 1);
    }
    if (!isfinite(path->t_end) || path->t_end < path->times[n - 1])
        return plm_fail(ctx, PLM_EINVAL, "ctmc: path t_end (%g) must be finite and >= the last jump time (%g)",
                        path->t_end, path->times[n - 1]);
    for (i = 0; i + 1 < n; i++) {
        int a = path->states[i], b = path->states[i + 1];
        ll += log(c->Q[(size_t)a * K + b]) - c->exit[a] * (path->times[i + 1] - path->times[i]);
    }
    ll -= c->exit[path->states[n - 1]] * (path->t_end - path->times[n - 1]);
    *loglik = ll;
    return PLM_OK;
}

plm_status plm_ctmc_loglik_obs(plm_ctx *ctx, const plm_ctmc *c, size_t n, const double *times, const int *states,
                               double *loglik)
{
    size_t i, KK = (size_t)c->K * c->K;
    double ll = 0, *P, *scratch, last_dt = -1;
    int K = c->K;
    if (n == 0) return plm_fail(ctx, PLM_EINVAL, "ctmc: loglik_obs: no observations");
    for (i = 0; i < n; i++) {
        if (states[i] < 0 || states[i] >= K)
            return plm_fail(ctx, PLM_EINVAL, "ctmc: loglik_obs: state %zu is %d, out of range 1..%d", i + 1, states[i] + 1, K);
        if (!isfinite(times[i]))
            return plm_fail(ctx, PLM_EINVAL, "ctmc: loglik_obs: time %zu is not finite (%g)", i + 1, times[i]);
        if (i > 0 && times[i] < times[i - 1])
            return plm_fail(ctx, PLM_EINVAL, "ctmc: loglik_obs: times must not decrease (time %zu is %g, time %zu is %g)",
                            i + 1, times[i], i, times[i - 1]);
    }
    if (!(P = malloc(4 * KK * sizeof *P))) return plm_fail(ctx, PLM_ENOMEM, "ctmc: out of memory");
    scratch = P + KK;
    for (i = 0; i + 1 < n; i++) {
        double dt = times[i + 1] - times[i];
        if (dt != last_dt) expm_uniform(c, dt, P, scratch);   /* regular grids pay for one exponential */
        last_dt = dt;
        ll += log(P[(size_t)states[i] * K + states[i + 1]]);
    }
    free(P);
    *loglik = ll;
    return PLM_OK;
}
