/* test_lm.c -- the LM interface, the n-gram backend and the result cache: hand-computed ARPA backoff values,
** normalised rows, Kneser-Ney estimates that sum to one and round-trip through ARPA, sequences, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "plume.h"

#define LOG10E_INV 2.302585092994045684

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* A hand-written trigram file; ids follow the 1-gram order: <unk> 0, <s> 1, </s> 2, a 3, b 4. */
static const char *ARPA =
    "some comment before the data\n"
    "\\data\\\n"
    "ngram 1=5\n"
    "ngram 2=4\n"
    "ngram 3=2\n"
    "\n"
    "\\1-grams:\n"
    "-1.0\t<unk>\n"
    "-99\t<s>\t-0.5\n"
    "-0.7\t</s>\n"
    "-0.6\ta\t-0.3\n"
    "-0.8\tb\t-0.2\n"
    "\n"
    "\\2-grams:\n"
    "-0.4\t<s> a\t-0.1\n"
    "-0.5\ta b\t-0.15\n"
    "-0.3\tb </s>\n"
    "-0.6\ta a\n"
    "\n"
    "\\3-grams:\n"
    "-0.2\t<s> a b\n"
    "-0.25\ta b </s>\n"
    "\\end\\\n";

static plm_lm *load_hand(void)
{
    plm_ctx ctx;
    plm_lm *lm = NULL;
    write_file(tmp_path("hand.arpa"), ARPA);
    if (plm_ngram_load_arpa(&ctx, tmp_path("hand.arpa"), &lm)) printf("  load: %s\n", ctx.msg);
    return lm;
}

static double backoff(plm_lm *lm, const plm_token *h, size_t n, plm_token w)
{
    plm_ctx ctx;
    double lp = NAN;
    if (plm_ngram_backoff_logprob(&ctx, lm, h, n, w, &lp)) printf("  %s\n", ctx.msg);
    return lp;
}

static void test_arpa_backoff_equals_hand_computed(void)
{
    plm_lm *lm = load_hand();
    plm_token a = 3, b = 4, eos = 2, ab[2] = {3, 4}, aa[1] = {3};
    CHECK(lm != NULL);
    if (!lm) return;
    CHECK(lm->n_vocab == 5 && lm->bos == 1 && lm->eos[0] == 2 && plm_ngram_order(lm) == 3);
    CHECK(plm_ngram_word_id(lm, "a") == a && plm_ngram_word_id(lm, "b") == b);
    /* explicit entries */
    CHECK_NEAR(backoff(lm, NULL, 0, a), -0.4 * LOG10E_INV, 1e-12);          /* <s> a */
    CHECK_NEAR(backoff(lm, aa, 1, b), -0.2 * LOG10E_INV, 1e-12);            /* <s> a b */
    CHECK_NEAR(backoff(lm, ab, 2, eos), -0.25 * LOG10E_INV, 1e-12);         /* a b </s> */
    /* backoffs: bo(<s> a) + bo(a) + p(</s>) */
    CHECK_NEAR(backoff(lm, aa, 1, eos), (-0.1 - 0.3 - 0.7) * LOG10E_INV, 1e-12);
    /* P(a | a b) = bo(a b) + bo(b) + p(a) */
    CHECK_NEAR(backoff(lm, ab, 2, a), (-0.15 - 0.2 - 0.6) * LOG10E_INV, 1e-12);
    /* P(b | <s>) = bo(<s>) + p(b) */
    CHECK_NEAR(backoff(lm, NULL, 0, b), (-0.5 - 0.8) * LOG10E_INV, 1e-12);
    /* history "b a": no "b a" bigram, so the context is "a": P(a | b a) = p(a a) */
    {
        plm_token ba[2] = {4, 3};
        CHECK_NEAR(backoff(lm, ba, 2, a), -0.6 * LOG10E_INV, 1e-12);
    }
    plm_lm_free(lm);
}

/* next_logprobs divides the backoff probabilities by their sum over the vocabulary without <s>. */
static void test_arpa_rows_are_normalised_backoff(void)
{
    plm_lm *lm = load_hand();
    plm_ctx ctx;
    plm_token h[3] = {3, 4, 3};
    double row[5], raw[5], Z = 0, s = 0;
    int v, len;
    if (!lm) {
        CHECK(0);
        return;
    }
    for (len = 0; len <= 3; len++) {
        const plm_token *tp = h;
        size_t l = (size_t)len;
        CHECK(plm_lm_next_logprobs(lm, &ctx, 1, &tp, &l, row) == PLM_OK);
        Z = 0;
        s = 0;
        for (v = 0; v < 5; v++) {
            raw[v] = backoff(lm, h, l, v);
            if (v != 1) Z += exp(raw[v]);
            s += exp(row[v]);
        }
        CHECK_NEAR(s, 1.0, 1e-12);
        CHECK(row[1] == -INFINITY);   /* <s> is never predicted */
        for (v = 0; v < 5; v++)
            if (v != 1) CHECK_NEAR(row[v], raw[v] - log(Z), 1e-12);
    }
    plm_lm_free(lm);
}

static const char *CORPUS =
    "the cat sat on the mat\n"
    "the dog sat on the log\n"
    "a cat saw a dog\n"
    "the cat ate\n"
    "\n"
    "a dog ate the cat food\n"
    "the dog saw the cat on the mat\n";

/* Modified Kneser-Ney backoff rows sum to one before any renormalisation (the estimator's own claim). */
static void test_kneser_ney_sums_to_one(void)
{
    plm_ctx ctx;
    plm_lm *lm = NULL;
    int order;
    for (order = 1; order <= 4; order++) {
        plm_token ctxs[6][3] = {{0}, {0}, {0}, {0}, {0}, {0}};
        size_t lens[6] = {0, 1, 2, 3, 1, 2}, i, n_ok;
        CHECK(plm_ngram_train(&ctx, CORPUS, strlen(CORPUS), order, &lm) == PLM_OK);
        if (!lm) return;
        ctxs[1][0] = plm_ngram_word_id(lm, "the");
        ctxs[2][0] = plm_ngram_word_id(lm, "the");
        ctxs[2][1] = plm_ngram_word_id(lm, "cat");
        ctxs[3][0] = plm_ngram_word_id(lm, "a");
        ctxs[3][1] = plm_ngram_word_id(lm, "dog");
        ctxs[3][2] = plm_ngram_word_id(lm, "sat");
        ctxs[4][0] = plm_ngram_word_id(lm, "<unk>");
        ctxs[5][0] = plm_ngram_word_id(lm, "mat");   /* never followed by a word but </s> */
        ctxs[5][1] = plm_ngram_word_id(lm, "cat");
        n_ok = 0;
        for (i = 0; i < 6; i++) {
            double s = 0, lp;
            int v;
            for (v = 0; v < lm->n_vocab; v++) {
                if (v == lm->bos) continue;
                plm_ngram_backoff_logprob(&ctx, lm, ctxs[i], lens[i], v, &lp);
                s += exp(lp);
            }
            CHECK_NEAR(s, 1.0, 1e-12);
            n_ok += fabs(s - 1) < 1e-12;
        }
        CHECK(n_ok == 6);
        plm_lm_free(lm);
        lm = NULL;
    }
}

/* Negative control for the check above: a perturbed ARPA (one probability changed) no longer sums to one. */
static void test_perturbed_model_fails_sum_check(void)
{
    plm_lm *lm = load_hand();
    double s = 0, lp;
    int v;
    if (!lm) {
        CHECK(0);
        return;
    }
    for (v = 0; v < 5; v++)
        if (v != 1) {
            plm_ngram_backoff_logprob(NULL, lm, NULL, 0, v, &lp);
            s += exp(lp);
        }
    CHECK(fabs(s - 1) > 1e-3);   /* the hand file is not a normalised model: renormalising matters */
    plm_lm_free(lm);
}

/* The word of token k of an ngram model (its bytes without the leading space; <s>, </s> have no bytes). */
static const char *word_of(const plm_lm *lm, int k)
{
    return lm->tok_len[k] ? lm->tok_bytes[k] + 1 : (k == lm->bos ? "<s>" : "</s>");
}

/* A trained model written as ARPA and read back gives the same rows to the file's 7 digits. */
static void test_kneser_ney_arpa_round_trip(void)
{
    plm_ctx ctx;
    plm_lm *a = NULL, *b = NULL;
    plm_token h[2];
    const plm_token *hp = h;
    double ra[64], rb[64];
    size_t len;
    int v, k, ok = 1;
    CHECK(plm_ngram_train(&ctx, CORPUS, strlen(CORPUS), 3, &a) == PLM_OK);
    CHECK(plm_ngram_write_arpa(&ctx, a, tmp_path("kn.arpa")) == PLM_OK);
    CHECK(plm_ngram_load_arpa(&ctx, tmp_path("kn.arpa"), &b) == PLM_OK);
    if (!a || !b) {
        printf("  %s\n", ctx.msg);
        CHECK(0);
        plm_lm_free(a);
        plm_lm_free(b);
        return;
    }
    CHECK(a->n_vocab == b->n_vocab && a->n_vocab <= 64 && plm_ngram_order(b) == 3);
    for (k = 0; k < a->n_vocab && a->n_vocab <= 64; k++) {
        h[0] = plm_ngram_word_id(b, "the");
        h[1] = k;
        len = k == b->bos ? 1 : 2;
        CHECK(plm_lm_next_logprobs(b, &ctx, 1, &hp, &len, rb) == PLM_OK);
        /* ids may differ between the two models: compare word by word */
        h[0] = plm_ngram_word_id(a, "the");
        h[1] = plm_ngram_word_id(a, word_of(b, k));
        if (h[1] < 0) {
            ok = 0;
            continue;
        }
        CHECK(plm_lm_next_logprobs(a, &ctx, 1, &hp, &len, ra) == PLM_OK);
        for (v = 0; v < b->n_vocab; v++) {
            int va = plm_ngram_word_id(a, word_of(b, v));
            if (va < 0 || !(fabs(ra[va] - rb[v]) < 1e-5 || (ra[va] == -INFINITY && rb[v] == -INFINITY))) ok = 0;
        }
    }
    CHECK(ok);
    plm_lm_free(a);
    plm_lm_free(b);
}

static void test_ngram_tokenize_leading_space(void)
{
    plm_ctx ctx;
    plm_lm *lm = NULL;
    plm_token t[16];
    size_t n = 0, nb = 0;
    char buf[64];
    CHECK(plm_ngram_train(&ctx, CORPUS, strlen(CORPUS), 2, &lm) == PLM_OK);
    if (!lm) return;
    CHECK(plm_lm_tokenize(lm, &ctx, "  the cat\tzebra ", 16, t, 16, &n) == PLM_OK);
    CHECK(n == 3 && t[0] == plm_ngram_word_id(lm, "the") && t[2] == plm_ngram_word_id(lm, "<unk>"));
    CHECK(lm->tok_len[t[1]] == 4 && memcmp(lm->tok_bytes[t[1]], " cat", 4) == 0);
    CHECK(plm_lm_detokenize(lm, &ctx, t, 2, buf, sizeof buf, &nb) == PLM_OK);
    CHECK(nb == 7 && memcmp(buf, "the cat", 7) == 0);
    plm_lm_free(lm);
}

/* Sequences without KV support: extending gives the same rows as a fresh call on the full context, and a
** fork continues independently of its source. */
static void test_generic_sequences_match_fresh_contexts(void)
{
    plm_ctx ctx;
    plm_lm *lm = NULL;
    int s, f;
    plm_token the, cat, sat;
    double row[64], fresh[64];
    const plm_token *tp[1];
    size_t one = 1, two = 2, v;
    plm_token ctx2[2];
    CHECK(plm_ngram_train(&ctx, CORPUS, strlen(CORPUS), 3, &lm) == PLM_OK);
    if (!lm) return;
    the = plm_ngram_word_id(lm, "the");
    cat = plm_ngram_word_id(lm, "cat");
    sat = plm_ngram_word_id(lm, "sat");
    CHECK(plm_lm_seq_new(lm, &ctx, &s) == PLM_OK);
    tp[0] = &the;
    CHECK(plm_lm_seq_extend(lm, &ctx, 1, &s, tp, &one, row) == PLM_OK);
    CHECK(plm_lm_seq_fork(lm, &ctx, s, &f) == PLM_OK);
    {
        int both[2] = {s, f};
        const plm_token *tk[2] = {&cat, &sat};
        size_t ls[2] = {1, 1};
        double rows[128];
        CHECK(plm_lm_seq_extend(lm, &ctx, 2, both, tk, ls, rows) == PLM_OK);
        ctx2[0] = the;
        ctx2[1] = sat;
        tp[0] = ctx2;
        CHECK(plm_lm_next_logprobs(lm, &ctx, 1, tp, &two, fresh) == PLM_OK);
        for (v = 0; v < (size_t)lm->n_vocab; v++) CHECK(rows[lm->n_vocab + v] == fresh[v]);
        ctx2[1] = cat;
        CHECK(plm_lm_next_logprobs(lm, &ctx, 1, tp, &two, fresh) == PLM_OK);
        for (v = 0; v < (size_t)lm->n_vocab; v++) CHECK(rows[v] == fresh[v]);
    }
    {
        size_t len;
        const plm_token *t = plm_lm_seq_tokens(lm, f, &len);
        CHECK(len == 2 && t[0] == the && t[1] == sat);
    }
    plm_lm_seq_free(lm, f);
    CHECK(plm_lm_seq_fork(lm, &ctx, f, &f) == PLM_EINVAL);
    plm_lm_free(lm);
}

/* The cache returns the inner backend's rows, serves repeats (within one call and across calls) as hits,
** and with state_key shares entries between histories with the same Markov state. */
static void test_cache_returns_inner_rows(void)
{
    plm_ctx ctx;
    plm_lm *inner = NULL, *ref = NULL, *c;
    plm_token h1[3], h2[3];
    const plm_token *tp[3];
    size_t lens[3] = {3, 3, 3}, hits, misses, v;
    double rows[3 * 64], fresh[3 * 64];
    CHECK(plm_ngram_train(&ctx, CORPUS, strlen(CORPUS), 2, &inner) == PLM_OK);
    CHECK(plm_ngram_train(&ctx, CORPUS, strlen(CORPUS), 2, &ref) == PLM_OK);
    if (!inner || !ref) return;
    c = plm_lm_cache_new(&ctx, inner, 0);
    CHECK(c != NULL && strcmp(plm_lm_name(c), "ngram") == 0);
    if (!c) return;
    h1[0] = plm_ngram_word_id(ref, "the");
    h1[1] = plm_ngram_word_id(ref, "cat");
    h1[2] = plm_ngram_word_id(ref, "sat");
    memcpy(h2, h1, sizeof h2);
    h2[0] = plm_ngram_word_id(ref, "a");   /* a bigram model: same state as h1 */
    tp[0] = h1;
    tp[1] = h2;
    tp[2] = h1;
    CHECK(plm_lm_next_logprobs(c, &ctx, 3, tp, lens, rows) == PLM_OK);
    CHECK(plm_lm_next_logprobs(ref, &ctx, 3, tp, lens, fresh) == PLM_OK);
    for (v = 0; v < 3 * (size_t)ref->n_vocab; v++) CHECK(rows[v] == fresh[v]);
    plm_lm_cache_stats(c, &hits, &misses);
    CHECK(misses == 1);
    CHECK(plm_lm_next_logprobs(c, &ctx, 3, tp, lens, rows) == PLM_OK);
    plm_lm_cache_stats(c, &hits, &misses);
    CHECK(misses == 1 && hits == 3);
    plm_lm_free(c);
    plm_lm_free(ref);
}

/* A native backend over callbacks: unnormalised scores are normalised, the cache's trie keys prefixes. */
static int nat_next(void *user, size_t n, const plm_token *const *toks, const size_t *lens, double *out)
{
    size_t i;
    int v;
    (void)toks;
    (*(int *)user)++;
    for (i = 0; i < n; i++)
        for (v = 0; v < 4; v++) out[i * 4 + (size_t)v] = (double)((int)lens[i] * v % 3);
    return 0;
}

static const char *nat_bytes(void *user, int v, size_t *len)
{
    static const char *b[4] = {NULL, "x", "y", "xy"};
    (void)user;
    *len = b[v] ? strlen(b[v]) : 0;
    return b[v];
}

static void test_native_backend_normalises_and_caches(void)
{
    plm_ctx ctx;
    int calls = 0;
    plm_lm_native_fns fns = {nat_next, nat_bytes, NULL};
    plm_token eos = 0, t[8];
    plm_lm *lm = plm_lm_native_new(&ctx, &fns, &calls, 4, -1, &eos, 1), *c;
    size_t n = 0, len[2] = {2, 2}, hits, misses;
    const plm_token *tp[2];
    double rows[8], s = 0;
    int v;
    CHECK(lm != NULL);
    if (!lm) return;
    CHECK(plm_lm_tokenize(lm, &ctx, "xyx", 3, t, 8, &n) == PLM_OK && n == 2 && t[0] == 3 && t[1] == 1);
    CHECK(plm_lm_tokenize(lm, &ctx, "xz", 2, t, 8, &n) == PLM_EDOM);
    c = plm_lm_cache_new(&ctx, lm, 0);
    tp[0] = t;
    tp[1] = t;
    t[0] = 1;
    t[1] = 2;
    CHECK(plm_lm_next_logprobs(c, &ctx, 2, tp, len, rows) == PLM_OK);
    CHECK(plm_lm_next_logprobs(c, &ctx, 2, tp, len, rows) == PLM_OK);
    for (v = 0; v < 4; v++) s += exp(rows[v]);
    CHECK_NEAR(s, 1.0, 1e-12);
    CHECK_NEAR(rows[1] - rows[0], 2.0, 1e-12);   /* lens 2: scores 0, 2, 1, 0 */
    plm_lm_cache_stats(c, &hits, &misses);
    CHECK(calls == 1 && misses == 1 && hits == 2);   /* a repeat inside the first call is not a hit */
    t[0] = 7;
    CHECK(plm_lm_next_logprobs(c, &ctx, 1, tp, len, rows) == PLM_EDOM);
    plm_lm_free(c);
}

static void test_bad_arpa_files_name_the_line(void)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"\\data\\\nngram 1=2\n\n\\1-grams:\n-1 a\nminus b\n\\end\\\n", "line 6"},
        {"\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1 a\n-1 b\n\n\\2-grams:\n-1 a c\n\\end\\\n", "line 10"},
        {"\\data\\\nngram 1=3\n\n\\1-grams:\n-1 a\n-1 b\n\\end\\\n", "declares 3"},
        {"\\data\\\nngram 1=2\n\n\\1-grams:\n-1 a\n-1 b\n", "without \\end\\"},
        {"hello world\n", "no \\data\\"},
        {"\\data\\\nngram 1=1\n\n\\1-grams:\n-1 a b\n\\end\\\n", "line 5"},
        {"\\data\\\nngram 1=1\n\n\\1-grams:\n0.5 a\n\\end\\\n", "line 5"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        plm_ctx ctx;
        plm_lm *lm = NULL;
        plm_status st;
        write_file(tmp_path("bad.arpa"), cases[i].text);
        st = plm_ngram_load_arpa(&ctx, tmp_path("bad.arpa"), &lm);
        CHECK(st == PLM_EPARSE && lm == NULL);
        if (!strstr(ctx.msg, cases[i].want)) printf("  case %zu: message '%s' lacks '%s'\n", i, ctx.msg, cases[i].want);
        CHECK(strstr(ctx.msg, cases[i].want) != NULL);
        plm_lm_free(lm);
    }
    {
        plm_ctx ctx;
        plm_lm *lm = NULL;
        CHECK(plm_ngram_load_arpa(&ctx, tmp_path("missing.arpa"), &lm) == PLM_EIO && strstr(ctx.msg, "missing.arpa"));
        CHECK(plm_ngram_train(&ctx, " \n\n", 3, 3, &lm) == PLM_EINVAL);
        CHECK(plm_ngram_train(&ctx, "a b", 3, 0, &lm) == PLM_EINVAL);
    }
}

/* Write buf (n bytes) to the file name under the test directory; return the path. */
static const char *write_bytes(const char *name, const unsigned char *buf, size_t n)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, n, f) == n);
    if (f) fclose(f);
    return path;
}

/* plm_gguf_check on the tiny GGUF and on copies with one thing wrong: each message names the file and what
** is wrong. No llama.cpp needed: f32 tensors are sized by the built-in table. */
static void test_gguf_check_names_what_is_wrong(void)
{
    static const unsigned char dup_b[] = {1, 0, 0, 0, 0, 0, 0, 0, 'b', 1, 0, 0, 0, 0, 0, 0, 0, 'c'};
    plm_ctx ctx;
    plm_gguf_tiny_opts o;
    const char *good = tmp_path("check.gguf"), *p;
    unsigned char *buf, *cp;
    long size;
    size_t i, at = 0;
    uint64_t big = (uint64_t)1 << 60;
    uint32_t one = 1;
    FILE *f;
    plm_gguf_tiny_defaults(&o);
    o.n_embd = 8, o.n_head = 2, o.n_layer = 1, o.n_ff = 16;
    CHECK(plm_gguf_write_tiny(&ctx, good, &o, NULL) == PLM_OK);
    CHECK(plm_gguf_check(&ctx, good, NULL) == PLM_OK);
    f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    rewind(f);
    buf = malloc((size_t)size), cp = malloc((size_t)size);
    CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
#define EXPECT(path, want)                                                                                             \
    do {                                                                                                               \
        CHECK(plm_gguf_check(&ctx, path, NULL) == PLM_EPARSE);                                                        \
        if (!strstr(ctx.msg, want) || !strstr(ctx.msg, path)) printf("  '%s' lacks '%s'\n", ctx.msg, want);           \
        CHECK(strstr(ctx.msg, want) != NULL && strstr(ctx.msg, path) != NULL);                                       \
    } while (0)
    /* truncated inside the last tensor's data */
    p = write_bytes("trunc.gguf", buf, (size_t)size - 100);
    EXPECT(p, "tensor 'blk.0.ffn_up.weight' data runs past the end of the file (offset ");
    /* the token "b" spelled "a": listed twice */
    for (i = 0; i + sizeof dup_b <= (size_t)size && !at; i++)
        if (memcmp(buf + i, dup_b, sizeof dup_b) == 0) at = i + 8;
    CHECK(at > 0);
    memcpy(cp, buf, (size_t)size);
    cp[at] = 'a';
    p = write_bytes("dup.gguf", cp, (size_t)size);
    EXPECT(p, "the vocabulary lists the token 'a' twice (ids 97 and 98)");
    /* the token "b" spelled with a byte outside GPT-2's byte alphabet */
    cp[at] = 0x7f;
    p = write_bytes("alpha.gguf", cp, (size_t)size);
    EXPECT(p, "token 98 ('?') of a byte-level (gpt2) vocabulary is not spelled in the byte alphabet");
    /* header: version 1, and a key-value count no file could hold */
    memcpy(cp, buf, (size_t)size);
    memcpy(cp + 4, &one, 4);
    EXPECT(write_bytes("v1.gguf", cp, (size_t)size), "GGUF version 1 is not supported");
    memcpy(cp, buf, (size_t)size);
    memcpy(cp + 16, &big, 8);
    EXPECT(write_bytes("nkv.gguf", cp, (size_t)size), "the header claims 1152921504606846976 key-value pairs");
    memcpy(cp, buf, (size_t)size);
    memcpy(cp, "GGUG", 4);
    EXPECT(write_bytes("magic.gguf", cp, (size_t)size), "not a GGUF file");
    EXPECT(write_bytes("short.gguf", buf, 10), "10 bytes is too short for a GGUF header");
    CHECK(plm_gguf_check(&ctx, tmp_path("none.gguf"), NULL) == PLM_EIO);
#undef EXPECT
    free(buf);
    free(cp);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/plume_test_lm_%d", (int)getpid());
    mkdir(tmpdir, 0700);
    RUN(test_arpa_backoff_equals_hand_computed);
    RUN(test_arpa_rows_are_normalised_backoff);
    RUN(test_kneser_ney_sums_to_one);
    RUN(test_perturbed_model_fails_sum_check);
    RUN(test_kneser_ney_arpa_round_trip);
    RUN(test_ngram_tokenize_leading_space);
    RUN(test_generic_sequences_match_fresh_contexts);
    RUN(test_cache_returns_inner_rows);
    RUN(test_native_backend_normalises_and_caches);
    RUN(test_bad_arpa_files_name_the_line);
    RUN(test_gguf_check_names_what_is_wrong);
    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd)) {}
    }
    return CHECK_DONE();
}
