/* constraint.h -- languages over bytes that constrain what a language model may write: regular expressions
** (compiled to a DFA) and context-free grammars (an Earley prefix recogniser), behind one interface. A state is
** the constraint's knowledge of the bytes written so far; it is advanced byte by byte (so word-level n-gram
** tokens and byte-level BPE tokens are checked alike), copied cheaply (one per particle), and turned into a
** mask over a model's vocabulary: which tokens keep the text a prefix of some sentence of the language.
**
** Ownership: plm_cons objects are malloc-owned (plm_cons_free). States are handles owned by whoever holds
** them: plm_cons_copy adds a holder, plm_cons_release removes one; state 0 (PLM_CSTATE_DEAD) is the dead
** state and needs no release. A plm_cons and its states are used by one thread at a time. */
#ifndef PLM_CONSTRAINT_H
#define PLM_CONSTRAINT_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "lm.h"
#include "rng.h"

typedef struct plm_cons plm_cons;
typedef intptr_t plm_cstate;   /* a handle: a DFA state number, or a reference-counted Earley chart */
#define PLM_CSTATE_DEAD ((plm_cstate)0)

/* Status of a state: dead (no extension is a sentence), alive (a proper prefix of a sentence, not itself one),
** accept (a sentence; it may also extend to longer ones). */
enum { PLM_CONS_DEAD = 0, PLM_CONS_ALIVE = 1, PLM_CONS_ACCEPT = 2 };

/* Compile a regular expression (the whole text must match: implicit anchors at both ends). Syntax: literals,
** `.` (any byte but newline), `[...]` / `[^...]` classes with ranges, `\d \w \s \D \W \S`, escapes `\n \t \r
** \f \v \xHH` and `\` before any punctuation, groups `( )` and `(?: )`, `|`, and `* + ? {m} {m,} {m,n}`
** (m, n <= 1000). Errors: PLM_EPARSE, "regex: position P: what" (P counts bytes from 1); PLM_EINVAL when the
** DFA would exceed 20000 states. */
plm_status plm_regex_compile(plm_ctx *ctx, const char *pattern, size_t len, plm_cons **out);

/* Compile a context-free grammar in a GBNF-like syntax: rules `name ::= alternatives` (a rule continues on the
** next lines until the next `name ::=`), alternatives separated by `|`, elements "string literals" (escapes
** \n \t \r \\ \" \xHH), [character classes] (ranges, `^` negation), `.` (any byte), rule names, ( groups ),
** and the postfix operators `*`, `+`, `?`; `#` starts a comment. The start rule is `root` when there is
** one, else the first rule. Errors: PLM_EPARSE, "grammar: line L, column C: what" -- also for a reference to
** an undefined rule and a rule that derives no finite string. */
plm_status plm_grammar_compile(plm_ctx *ctx, const char *text, size_t len, plm_cons **out);
/* The text of a generic JSON grammar in that syntax (RFC 8259; white space around tokens), start rule root. */
const char *plm_grammar_json_source(void);

void plm_cons_free(plm_cons *c);
/* "regex" or "grammar". */
const char *plm_cons_kind(const plm_cons *c);

/* The state before any byte (a new reference). */
plm_cstate plm_cons_start(plm_cons *c);
/* Another reference to s (to give a copy of a particle its own). */
plm_cstate plm_cons_copy(plm_cons *c, plm_cstate s);
/* Drop a reference (DEAD: nothing to do). */
void plm_cons_release(plm_cons *c, plm_cstate s);
/* PLM_CONS_DEAD, _ALIVE or _ACCEPT. */
int plm_cons_status(const plm_cons *c, plm_cstate s);
/* The state after n more bytes (a new reference; s keeps its own). *out is DEAD as soon as the bytes leave
** the language's prefixes. Errors: PLM_ENOMEM only. */
plm_status plm_cons_advance(plm_ctx *ctx, plm_cons *c, plm_cstate s, const char *bytes, size_t n, plm_cstate *out);
/* Status of a whole byte string from the start. */
plm_status plm_cons_check(plm_ctx *ctx, plm_cons *c, const char *bytes, size_t n, int *status);

/* A vocabulary as a trie of token bytes, built once per model, so that a mask costs one automaton step per
** trie edge whose prefix stays viable (dead branches are cut at their first byte). */
typedef struct plm_vtrie plm_vtrie;
plm_status plm_vtrie_new(plm_ctx *ctx, const plm_lm *lm, plm_vtrie **out);
void plm_vtrie_free(plm_vtrie *t);

/* allowed[v] = 1 when token v may come next after state s: a token with bytes when s followed by them is not
** dead; an EOS token when s accepts; any other token without bytes (BOS) never. *n_allowed (may be NULL)
** receives the count. Masks are cached per state (per DFA state; per Earley chart), so asking again is a copy. */
plm_status plm_cons_mask(plm_ctx *ctx, plm_cons *c, const plm_vtrie *t, plm_cstate s, unsigned char *allowed,
                         size_t *n_allowed);

/* Locally masked decoding (fast, but distorts the distribution): from prompt, draw each token from the model's
** row restricted to the mask and renormalised; after max_tokens tokens only EOS is allowed. out receives up
** to max_tokens tokens (EOS not included), *n_out their number, *logp the model's (unmasked) log-probability of
** the tokens and the EOS, *logq the sampler's. *n_out is 0 and *logp -inf when a state allows nothing. */
plm_status plm_cons_sample_masked(plm_ctx *ctx, plm_lm *lm, plm_cons *c, const plm_vtrie *t, const plm_token *prompt,
                                  size_t np, size_t max_tokens, plm_rng *rng, plm_token *out, size_t *n_out,
                                  double *logp, double *logq);

/* ASAp grammar-aligned sampling (Park et al. 2024): a trie of the prefixes sampled so far, each with an
** estimate of its expected future grammaticality EFG(w) = P(a continuation of w ends in the language);
** unvisited children count 1 when the mask allows them and 0 otherwise; after each sample the estimates on
** its path are recomputed exactly from their children. Token v is drawn after w with probability
** p(v | w) EFG(wv) / EFG(w), so the samples' distribution converges to p(s | s in L) as the trie fills in.
** Texts end with EOS within max_tokens tokens (the target is p(s | s in L, |s| <= max_tokens)). */
typedef struct plm_asap plm_asap;
plm_status plm_asap_new(plm_ctx *ctx, plm_lm *lm, plm_cons *c, const plm_vtrie *t, const plm_token *prompt,
                        size_t np, size_t max_tokens, plm_asap **out);
void plm_asap_free(plm_asap *a);
/* One sample: tokens into out (cap max_tokens), *n_out, the model's log-probability *logp (EOS included) and
** the sampling probability *logq. PLM_EDEAD when EFG(root) is 0: the language has no text the model can write. */
plm_status plm_asap_sample(plm_ctx *ctx, plm_asap *a, plm_rng *rng, plm_token *out, size_t *n_out, double *logp,
                           double *logq);
/* The current EFG(root): an upper bound on P(s in L) that decreases to it as samples accumulate. */
double plm_asap_mass(const plm_asap *a);
/* Trie nodes held so far. */
size_t plm_asap_nodes(const plm_asap *a);

#endif
