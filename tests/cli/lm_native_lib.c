/* lm_native_lib.c -- a native LM for tests/cli/lm_native.sh: four tokens (EOS, "a", "b", "ab"); the next-token
** scores depend on the context length, so the test can check them by hand. Built as a shared library and
** loaded with plume.lm.native{ lib =, symbol = "toy_lm_init", arg = "..." }. */
#include <stdlib.h>
#include <string.h>

#include "lm.h"

static int toy_next(void *user, size_t n, const plm_token *const *toks, const size_t *lens, double *out)
{
    size_t i;
    int v;
    (void)toks;
    (void)user;
    for (i = 0; i < n; i++)
        for (v = 0; v < 4; v++) out[i * 4 + (size_t)v] = (double)(((int)lens[i] + v) % 4);   /* unnormalised */
    return 0;
}

static const char *toy_bytes(void *user, int v, size_t *len)
{
    static const char *b[4] = {NULL, "a", "b", "ab"};
    (void)user;
    *len = b[v] ? strlen(b[v]) : 0;
    return b[v];
}

static const plm_token toy_eos[1] = {0};

int toy_lm_init(const char *arg, plm_lm_native_spec *spec)
{
    if (strcmp(arg, "fail") == 0) return 7;
    spec->fns.next_logprobs = toy_next;
    spec->fns.token_bytes = toy_bytes;
    spec->fns.destroy = NULL;
    spec->user = NULL;
    spec->n_vocab = 4;
    spec->bos = -1;
    spec->eos = toy_eos;
    spec->n_eos = 1;
    return 0;
}
