/* test_constraint.c -- regular expressions and grammars over bytes (runtime/lm/constraint.h) against oracles:
** random regexes agree with POSIX regcomp/regexec on every string of up to 6 letters; the same random
** expressions written as grammars agree with the DFA on membership and on prefix viability (both exact);
** non-regular grammars (balanced parentheses, a^n b^n, palindromes) agree with hand-written recognisers; masks
** over an n-gram vocabulary equal a token-by-token check; bad patterns and grammars name the position. */
#include "check.h"
#include "constraint.h"
#include "lm_ngram.h"
#include "rng.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>

/* ---- random expressions, printed as an ERE and as a grammar ---- */

typedef struct buf {
    char s[4096];
    size_t n;
} buf;

static void put(buf *b, const char *s)
{
    size_t k = strlen(s);
    if (b->n + k < sizeof b->s) memcpy(b->s + b->n, s, k + 1), b->n += k;
}

static plm_rng R;

static int rnd(int n) { return (int)(plm_rng_uniform(&R) * n); }

/* one random expression into both buffers; depth bounds the size */
static void gen(buf *re, buf *g, int depth)
{
    int k = depth <= 0 ? rnd(3) : rnd(9);
    static const char *lit[] = {"a", "b", "c"};
    switch (k) {
    case 0: {
        const char *l = lit[rnd(3)];
        put(re, l);
        put(g, "\""), put(g, l), put(g, "\"");
        break;
    }
    case 1: put(re, "[ab]"), put(g, "[ab]"); break;
    case 2: put(re, "[^a]"), put(g, "[^a]"); break;
    case 3: /* concatenation */
        put(re, "("), put(g, "(");
        gen(re, g, depth - 1);
        put(g, " ");
        gen(re, g, depth - 1);
        put(re, ")"), put(g, ")");
        break;
    case 4: /* alternation */
        put(re, "("), put(g, "(");
        gen(re, g, depth - 1);
        put(re, "|"), put(g, " | ");
        gen(re, g, depth - 1);
        put(re, ")"), put(g, ")");
        break;
    case 5: case 6: case 7: { /* postfix */
        const char *op = k == 5 ? "*" : k == 6 ? "+" : "?";
        put(re, "("), put(g, "(");
        gen(re, g, depth - 1);
        put(re, ")"), put(g, ")");
        put(re, op), put(g, op);
        break;
    }
    default: { /* {m,n}, written out in the grammar */
        buf r2, g2;
        int m = rnd(2), n = m + rnd(2);
        char cnt[32];
        r2.n = g2.n = 0;
        r2.s[0] = g2.s[0] = 0;
        gen(&r2, &g2, depth - 1);
        put(re, "("), put(re, r2.s), put(re, ")");
        snprintf(cnt, sizeof cnt, "{%d,%d}", m, n);
        put(re, cnt);
        put(g, "(");
        for (int i = 0; i < m; i++) put(g, "("), put(g, g2.s), put(g, ") ");
        for (int i = m; i < n; i++) put(g, "("), put(g, g2.s), put(g, ")? ");
        put(g, "\"\")");
        break;
    }
    }
}

/* every string over {a, b, c} of length <= L, in order of length */
static int all_strings(int L, char out[][8])
{
    int n = 0;
    for (int len = 0; len <= L; len++) {
        int total = 1;
        for (int i = 0; i < len; i++) total *= 3;
        for (int x = 0; x < total; x++) {
            int y = x;
            for (int i = 0; i < len; i++) out[n][i] = (char)('a' + y % 3), y /= 3;
            out[n][len] = 0;
            n++;
        }
    }
    return n;
}

static char S[1093 + 2187][8];   /* lengths 0..7 */

static int status_of(plm_cons *c, const char *s)
{
    plm_ctx ctx;
    int st = -1;
    plm_ctx_clear(&ctx);
    if (plm_cons_check(&ctx, c, s, strlen(s), &st)) return -1;
    return st;
}

static void test_regex_matches_posix_regexec(void)
{
    int nstr = all_strings(7, S), bad = 0, viab_bad = 0, compiled = 0;
    plm_rng_init(&R, 7, 0);
    for (int trial = 0; trial < 150; trial++) {
        buf re = {{0}, 0}, g = {{0}, 0}, posix = {{0}, 0};
        regex_t rx;
        plm_cons *c;
        plm_ctx ctx;
        unsigned char match[sizeof S / sizeof S[0]];
        plm_ctx_clear(&ctx);
        gen(&re, &g, 3);
        put(&posix, "^("), put(&posix, re.s), put(&posix, ")$");
        if (regcomp(&rx, posix.s, REG_EXTENDED | REG_NOSUB)) continue;
        CHECK(plm_regex_compile(&ctx, re.s, re.n, &c) == PLM_OK);
        compiled++;
        if (!c) {
            printf("  %s: %s\n", re.s, plm_ctx_errmsg(&ctx));
            regfree(&rx);
            continue;
        }
        for (int i = 0; i < nstr; i++) {
            match[i] = regexec(&rx, S[i], 0, NULL, 0) == 0;
            if (strlen(S[i]) <= 6 && match[i] != (status_of(c, S[i]) == PLM_CONS_ACCEPT)) {
                if (bad++ < 5) printf("  /%s/ on '%s': posix %d, dfa status %d\n", re.s, S[i], match[i], status_of(c, S[i]));
            }
        }
        /* viability of prefixes up to 3 letters: a DFA-dead prefix has no matching extension; a prefix with a
        ** matching extension of up to 7 letters is alive */
        for (int i = 0; i < 40; i++) {
            int ext = 0, st = status_of(c, S[i]);
            size_t pl = strlen(S[i]);
            for (int j = 0; j < nstr && !ext; j++) ext = match[j] && strncmp(S[j], S[i], pl) == 0;
            if (ext != (st != PLM_CONS_DEAD) && viab_bad++ < 5)
                printf("  /%s/ prefix '%s': extension %d, dfa status %d\n", re.s, S[i], ext, st);
        }
        plm_cons_free(c);
        regfree(&rx);
    }
    CHECK(bad == 0);
    CHECK(viab_bad == 0);
    CHECK(compiled >= 140);   /* regcomp took (nearly) every pattern: the comparison ran */
}

static void test_grammar_agrees_with_regex_dfa(void)
{
    int nstr = all_strings(6, S), bad = 0;
    plm_rng_init(&R, 11, 0);
    for (int trial = 0; trial < 150; trial++) {
        buf re = {{0}, 0}, g = {{0}, 0}, text = {{0}, 0};
        plm_cons *cr = NULL, *cg = NULL;
        plm_ctx ctx;
        plm_ctx_clear(&ctx);
        gen(&re, &g, 3);
        put(&text, "# random\nroot ::= "), put(&text, g.s), put(&text, "\n");
        CHECK(plm_regex_compile(&ctx, re.s, re.n, &cr) == PLM_OK);
        CHECK(plm_grammar_compile(&ctx, text.s, text.n, &cg) == PLM_OK);
        if (!cr || !cg) {
            printf("  %s | %s: %s\n", re.s, g.s, plm_ctx_errmsg(&ctx));
            plm_cons_free(cr);
            plm_cons_free(cg);
            continue;
        }
        for (int i = 0; i < nstr; i++) {
            int a = status_of(cr, S[i]), b = status_of(cg, S[i]);
            if (a != b && bad++ < 5) printf("  /%s/ vs %s on '%s': dfa %d, earley %d\n", re.s, g.s, S[i], a, b);
        }
        plm_cons_free(cr);
        plm_cons_free(cg);
    }
    CHECK(bad == 0);
}

/* ---- non-regular languages with hand-written recognisers (membership, viability) ---- */

static void parens_oracle(const char *s, int *in, int *viable)
{
    int d = 0, ok = 1;
    for (; *s; s++) {
        d += *s == '(' ? 1 : *s == ')' ? -1 : 1000;
        if (d < 0 || d >= 1000) ok = 0;
    }
    *viable = ok;
    *in = ok && d == 0;
}

static void anbn_oracle(const char *s, int *in, int *viable)
{
    int a = 0, b = 0, ok = 1;
    for (; *s; s++) {
        if (*s == 'a' && b == 0) a++;
        else if (*s == 'b') b++;
        else ok = 0;
    }
    *viable = ok && b <= a;
    *in = *viable && a == b;
}

static void pal_oracle(const char *s, int *in, int *viable)
{
    size_t n = strlen(s);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= s[i] == 'a' || s[i] == 'b';
    *viable = ok;
    *in = ok;
    for (size_t i = 0; i < n / 2; i++) *in &= s[i] == s[n - 1 - i];
}

static void check_grammar_oracle(const char *text, const char *alpha, void (*oracle)(const char *, int *, int *))
{
    plm_cons *c;
    plm_ctx ctx;
    char s[16];
    int bad = 0;
    plm_ctx_clear(&ctx);
    CHECK(plm_grammar_compile(&ctx, text, strlen(text), &c) == PLM_OK);
    if (!c) {
        printf("  %s\n", plm_ctx_errmsg(&ctx));
        return;
    }
    /* every string of up to 8 letters over alpha */
    for (int len = 0; len <= 8; len++) {
        int k = (int)strlen(alpha), total = 1;
        for (int i = 0; i < len; i++) total *= k;
        for (int x = 0; x < total; x++) {
            int y = x, in, viable, st;
            for (int i = 0; i < len; i++) s[i] = alpha[y % k], y /= k;
            s[len] = 0;
            oracle(s, &in, &viable);
            st = status_of(c, s);
            if ((st == PLM_CONS_ACCEPT) != in || (st != PLM_CONS_DEAD) != viable)
                if (bad++ < 5) printf("  '%s': status %d, oracle in %d viable %d\n", s, st, in, viable);
        }
    }
    CHECK(bad == 0);
    plm_cons_free(c);
}

static void test_grammar_nonregular_languages(void)
{
    check_grammar_oracle("root ::= \"\" | \"(\" root \")\" root\n", "()x", parens_oracle);
    check_grammar_oracle("root ::= (\"a\" root \"b\")?   # a^n b^n\n", "abx", anbn_oracle);
    check_grammar_oracle("root ::= \"\" | [ab] | \"a\" root \"a\"\n      | \"b\" root \"b\"\n", "abc", pal_oracle);
    /* left recursion, nullable chains, a rule defined before use and after */
    check_grammar_oracle("root ::= s\ns ::= s s | \"(\" s \")\" | e\ne ::= \"\"\n", "()", parens_oracle);
}

/* ---- copies of states share the chart and stay valid after the original is released ---- */

static void test_grammar_state_copies(void)
{
    const char *text = "root ::= \"{\" [a-z]* \"}\"";
    plm_cons *c;
    plm_ctx ctx;
    plm_cstate s0, s1, s2, s3;
    plm_ctx_clear(&ctx);
    CHECK(plm_grammar_compile(&ctx, text, strlen(text), &c) == PLM_OK);
    s0 = plm_cons_start(c);
    CHECK(plm_cons_advance(&ctx, c, s0, "{ab", 3, &s1) == PLM_OK);
    s2 = plm_cons_copy(c, s1);
    plm_cons_release(c, s1);
    plm_cons_release(c, s0);
    CHECK(plm_cons_status(c, s2) == PLM_CONS_ALIVE);
    CHECK(plm_cons_advance(&ctx, c, s2, "c}", 2, &s3) == PLM_OK);
    CHECK(plm_cons_status(c, s3) == PLM_CONS_ACCEPT);
    plm_cons_release(c, s3);
    CHECK(plm_cons_advance(&ctx, c, s2, "1", 1, &s3) == PLM_OK);
    CHECK(s3 == PLM_CSTATE_DEAD);
    /* equal futures are one chart node (hash-consing): "{ab" and "{abzz" share their state, and so its mask */
    CHECK(plm_cons_advance(&ctx, c, s2, "zz", 2, &s3) == PLM_OK);
    CHECK(s3 == s2);
    plm_cons_release(c, s3);
    plm_cons_release(c, s2);
    plm_cons_free(c);
}

/* ---- masks over a word vocabulary equal a token-by-token check ---- */

static void test_mask_equals_token_by_token(void)
{
    const char *corpus = "the cat sat\nthe dog sat on the mat\na cat and a dog\nthe cathedral\n";
    const char *pats[] = {"( the| a)( cat| dog)*( sat)?", " the cat.*", "( [a-z]+){1,3}"};
    plm_lm *lm;
    plm_vtrie *t;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    CHECK(plm_ngram_train(&ctx, corpus, strlen(corpus), 2, &lm) == PLM_OK);
    CHECK(plm_vtrie_new(&ctx, lm, &t) == PLM_OK);
    for (int p = 0; p < 3; p++) {
        plm_cons *c;
        const char *prefixes[] = {"", " the", " the cat", " a dog dog", " x"};
        CHECK(plm_regex_compile(&ctx, pats[p], strlen(pats[p]), &c) == PLM_OK);
        for (int k = 0; k < 5; k++) {
            unsigned char allowed[64], again[64];
            size_t na;
            plm_cstate s0 = plm_cons_start(c), s;
            plm_cons_advance(&ctx, c, s0, prefixes[k], strlen(prefixes[k]), &s);
            CHECK(plm_cons_mask(&ctx, c, t, s, allowed, &na) == PLM_OK);
            CHECK(plm_cons_mask(&ctx, c, t, s, again, NULL) == PLM_OK);   /* from the cache */
            for (int v = 0; v < lm->n_vocab; v++) {
                plm_cstate s2;
                int want;
                plm_cons_advance(&ctx, c, s, lm->tok_bytes[v], lm->tok_len[v], &s2);
                want = plm_lm_is_eos(lm, v) ? plm_cons_status(c, s) == PLM_CONS_ACCEPT
                                            : lm->tok_len[v] > 0 && s2 != PLM_CSTATE_DEAD;
                CHECK(allowed[v] == want);
                CHECK(again[v] == want);
                plm_cons_release(c, s2);
            }
            plm_cons_release(c, s);
            plm_cons_release(c, s0);
        }
        plm_cons_free(c);
    }
    plm_vtrie_free(t);
    plm_lm_free(lm);
}

/* ---- errors name the position ---- */

static void expect_error(int grammar, const char *text, const char *msg)
{
    plm_cons *c = NULL;
    plm_ctx ctx;
    plm_status st;
    plm_ctx_clear(&ctx);
    st = grammar ? plm_grammar_compile(&ctx, text, strlen(text), &c) : plm_regex_compile(&ctx, text, strlen(text), &c);
    CHECK(st == PLM_EPARSE);
    CHECK(c == NULL);
    if (!strstr(plm_ctx_errmsg(&ctx), msg)) {
        printf("  '%s': got '%s', want '%s'\n", text, plm_ctx_errmsg(&ctx), msg);
        CHECK(0);
    }
    plm_cons_free(c);
}

static void test_errors_name_the_position(void)
{
    expect_error(0, "ab(c", "regex: position 3: unclosed '('");
    expect_error(0, "a[bc", "regex: position 2: unclosed '['");
    expect_error(0, "*a", "regex: position 1: nothing to repeat");
    expect_error(0, "ab)", "regex: position 3: unmatched ')'");
    expect_error(0, "a{3,1}", "regex: position 2: in {m,n}, n must be at least m");
    expect_error(0, "a\\q", "regex: position 2: unknown escape");
    expect_error(0, "[z-a]", "range out of order");
    {
        /* a pattern whose DFA needs 2^21 states is refused, not built */
        plm_cons *c = NULL;
        plm_ctx ctx;
        const char *big = "(a|b)*a(a|b){20}";
        plm_ctx_clear(&ctx);
        CHECK(plm_regex_compile(&ctx, big, strlen(big), &c) == PLM_EINVAL);
        CHECK(c == NULL && strstr(plm_ctx_errmsg(&ctx), "more than 20000 states"));
    }
    expect_error(1, "root ::= \"a\" b\n", "grammar: line 1, column 14: undefined rule 'b'");
    expect_error(1, "root ::= x\n\nx ::= \"a\" x\n", "grammar: line 3, column 1: rule 'x' derives no finite string");
    expect_error(1, "root ::= (\"a\"\nx ::= \"b\"\n", "grammar: line 2, column 1: a new rule starts inside a group");
    expect_error(1, "root ::= \"abc\n", "grammar: line 1, column 10: unclosed string literal");
    expect_error(1, "root ::= [abc\n", "grammar: line 1, column 10: unclosed '['");
    expect_error(1, "  \"a\"\n", "grammar: line 1, column 3: expected a rule");
    expect_error(1, "root ::= \"a\" ) \"b\"\n", "grammar: line 1, column 14: unmatched ')'");
    expect_error(1, "root ::= \"a\" @\n", "grammar: line 1, column 14: unexpected '@'");
}

int main(void)
{
    RUN(test_regex_matches_posix_regexec);
    RUN(test_grammar_agrees_with_regex_dfa);
    RUN(test_grammar_nonregular_languages);
    RUN(test_grammar_state_copies);
    RUN(test_mask_equals_token_by_token);
    RUN(test_errors_name_the_position);
    return CHECK_DONE();
}
