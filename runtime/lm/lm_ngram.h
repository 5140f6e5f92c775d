/* lm_ngram.h -- word n-gram language models as plm_lm backends: standard ARPA backoff files (read and write)
** and modified Kneser-Ney estimation from text. Tokens are words; token v's bytes are " " + word (the
** leading-space convention, so byte-level constraints see the text as it is printed); <s> and </s> have no
** bytes. Log-probabilities are natural logs. Returned models are plm_lm objects freed with plm_lm_free. */
#ifndef PLM_LM_NGRAM_H
#define PLM_LM_NGRAM_H

#include "lm.h"

/* Read an ARPA file. Errors: PLM_EIO (cannot read), PLM_EPARSE with the file name and line. <s>, </s> are
** added with probability 0 when the file lacks them; words outside the vocabulary tokenize to <unk> when the
** file has it and are an error otherwise. Each next-token row is the backoff probability of every word,
** renormalised over the vocabulary (<s> excluded: it is never predicted). */
plm_status plm_ngram_load_arpa(plm_ctx *ctx, const char *path, plm_lm **out);

/* Estimate an interpolated modified Kneser-Ney model of the given order (1..9) from text: one sentence per
** line, words separated by white space. Discounts D1, D2, D3+ per order come from the count-of-counts; when
** the corpus is too small for them (a count-of-count is 0 or a discount falls outside (0, k]), the default
** 0.5, 1.0, 1.5 is used. The vocabulary is <s>, </s>, <unk> and the corpus words. */
plm_status plm_ngram_train(plm_ctx *ctx, const char *text, size_t len, int order, plm_lm **out);

/* Write lm (an ngram backend) as an ARPA file (log10 probabilities, 7 significant digits). */
plm_status plm_ngram_write_arpa(plm_ctx *ctx, const plm_lm *lm, const char *path);

/* The model's own backoff log-probability of word w after the history toks (n tokens, <s> implied before
** them), before the renormalisation next_logprobs applies. For tests and for checking a file by hand. */
plm_status plm_ngram_backoff_logprob(plm_ctx *ctx, const plm_lm *lm, const plm_token *toks, size_t n, plm_token w,
                                     double *out);

/* The order of an ngram backend (0 when lm is not one). */
int plm_ngram_order(const plm_lm *lm);
/* The id of a word (-1 when absent). */
plm_token plm_ngram_word_id(const plm_lm *lm, const char *word);

#endif
