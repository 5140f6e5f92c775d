/* twistnet.h -- a learned twist for twisted SMC (twist.h): a small neural network on features of the prefix,
** trained by contrastive twist learning (CTL, Zhao, Brekelmans, Makhzani, Grosse, ICML 2024, section 4.1).
**
**   log psi_{t+1}(x_1:t, v) = w2 . tanh(b1 + Wp f(x_1:t) + Et[v] + As[s(x_1:t v)] + wr r / T) + b2
**
** for a candidate v that does not end the text, where f(x_1:t) is a feature vector of the prefix (a hashed bag of
** its last tokens, and the LM's last hidden state after it when the backend gives one), Et a learned embedding
** of the candidate token, As one of the automaton state after it (one-hot times a matrix), r the tokens left after
** it. Candidates that end the text (EOS or the T-th token) get phi exactly: 0 when the automaton accepts, -inf
** otherwise; tokens the automaton rejects get -inf. The prefix part Wp f is computed once per prefix and only
** the candidate's embeddings differ per token, so a whole row costs O(D H + V H).
** Objects are malloc-owned with a _free twin; the parameters are one vector theta (layout in twistnet.c). */
#ifndef PLM_TWISTNET_H
#define PLM_TWISTNET_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "lm.h"
#include "twist.h"

/* Feature flags (bits of plm_twistnet.features). */
enum {
    PLM_TN_STATE = 1,    /* the automaton state after the candidate (learned embedding of the one-hot) */
    PLM_TN_LEFT = 2,     /* tokens left after the candidate, scaled to [0, 1] */
    PLM_TN_TOKEN = 4,    /* the candidate token (learned embedding) */
    PLM_TN_BAG = 8,      /* hashed bag of the prefix's last `window` generated tokens */
    PLM_TN_HIDDEN = 16   /* the LM's last hidden state after the prefix (plm_lm_hidden) */
};

typedef struct plm_twistnet {
    int V, S, T, H;           /* tokens, automaton states, horizon, hidden units */
    int features;             /* PLM_TN_* bits */
    int B, window;            /* bag buckets, and how many last tokens go in the bag (PLM_TN_BAG) */
    int E;                    /* the LM's hidden size (PLM_TN_HIDDEN), else 0 */
    int D;                    /* prefix features: B (when BAG) + E */
    int start;
    int32_t *next;            /* the automaton (copied): S * V */
    unsigned char *accept;    /* S */
    unsigned char *eos;       /* V */
    size_t P;                 /* number of parameters */
    double *theta;            /* P */
    /* views into theta (NULL for a feature that is off) */
    double *Wp, *Et, *As, *wr, *b1, *w2, *b2;   /* H x D, V x H, S x H, H, H, H, 1 */
} plm_twistnet;

/* A network for automaton dfa over texts of at most T tokens ending at the eos ids: H hidden units, features
** (PLM_TN_* bits), B bag buckets over the last window tokens, E hidden-state inputs (0 unless PLM_TN_HIDDEN).
** The first layer starts from N(0, 1 / fan-in) draws of seed; the output layer starts at 0, so that an untrained
** net is psi = 1 (the plain twist-proposal SMC). */
plm_status plm_twistnet_new(plm_ctx *ctx, const plm_tdfa *dfa, const plm_token *eos, int n_eos, int T, int H,
                            int features, int B, int window, int E, uint64_t seed, plm_twistnet **out);
void plm_twistnet_free(plm_twistnet *n);

/* Scratch doubles the functions below need: (V + 5) * H + 2 * V. */
size_t plm_twistnet_work(const plm_twistnet *n);

/* The prefix features f (D doubles) of a context: the bag from the t generated tokens gen (the last window of
** them), then the hidden state (E doubles) taken from lm after the whole context full (nfull tokens, prompt and
** gen) when PLM_TN_HIDDEN is on. */
plm_status plm_twistnet_features(const plm_twistnet *n, plm_ctx *ctx, plm_lm *lm, const plm_token *full, size_t nfull,
                                 const plm_token *gen, size_t t, double *f);

/* out[v] = log psi_{t+1}(prefix, v) for every token v, the prefix having features f, automaton state s (-1:
** rejected) and t generated tokens (all -inf when s < 0 or t >= T). work: plm_twistnet_work doubles. */
void plm_twistnet_logpsi(const plm_twistnet *n, const double *f, int s, int t, double *out, double *work);

/* grad (P) += sum_k c[k] d log psi_{t+1}(prefix, vs[k]) / d theta over m candidates (final and rejected ones have
** no parameters and add nothing). */
void plm_twistnet_grad(const plm_twistnet *n, const double *f, int s, int t, const plm_token *vs, const double *c,
                       int m, double *grad, double *work);

/* Contrastive twist learning of n with Adam (step size lr): each iteration runs twisted SMC with N particles
** after prompt (twist-induced proposal, multinomial resampling every step) and moves theta along
** sum_t (E_sigma[grad log psi_t] - E_pi_t[grad log psi_t]) -- the sigma expectation from the final weighted
** particles' paths, the pi_t one from the particles at step t - 1 extended over the whole vocabulary by q_t.
** logz[it] (iters, or NULL) receives each iteration's log Z estimate. Every eval_every iterations (0: never)
** n_heldout sweeps with fixed held-out seeds (no update) estimate log Z; their mean goes to heldout[k] (iters /
** eval_every entries, or NULL) and to the progress callback (NaN between evaluations). Polls Ctrl-C. */
typedef void (*plm_twistnet_progress)(void *ud, int it, int iters, double logz, double ess, double gnorm,
                                      double heldout);
plm_status plm_twistnet_ctl(plm_ctx *ctx, plm_lm *lm, plm_twistnet *n, const plm_token *prompt, size_t np, int N,
                            int iters, double lr, uint64_t seed, int eval_every, int n_heldout, double *logz,
                            double *heldout, plm_twistnet_progress progress, void *ud);

/* Write n to path as a versioned text file ("plume-twistnet 1", the sizes, the automaton, theta as %.17g so that
** a load gives the same psi bit for bit, then "checksum" and an FNV-1a hash of everything before it). load
** refuses, with PLM_EPARSE naming the file, another version, a bad checksum (a corrupted file) or a value out of
** range. */
plm_status plm_twistnet_save(plm_ctx *ctx, const plm_twistnet *n, const char *path);
plm_status plm_twistnet_load(plm_ctx *ctx, const char *path, plm_twistnet **out);

#endif
