/* core/bm25.c: tokenizer (splitting, lower-casing, offsets, invalid UTF-8) and
 * BM25 (hand-computed values, query dedup, edge cases, truncation) plus a
 * randomized comparison with a naive reference built from the token lists. */
#include "ctest.h"
#include "rerank.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- token collection ---- */

#define MAXTOK 64
typedef struct {
    size_t n;
    char tok[MAXTOK][64];
    size_t off[MAXTOK];
} toks;

static void collect(const char *t, size_t len, size_t off, void *ud)
{
    toks *c = ud;
    if (c->n < MAXTOK) {
        size_t l = len < 63 ? len : 63;
        memcpy(c->tok[c->n], t, l);
        c->tok[c->n][l] = 0;
        c->off[c->n] = off;
    }
    c->n++;
}

/* tokens of s joined by '|' equal want */
static int tokens_are(const char *s, size_t len, const char *want)
{
    toks c;
    memset(&c, 0, sizeof c);
    size_t n = rr_tokenize(s, len, collect, &c);
    char got[1024] = "";
    for (size_t i = 0; i < c.n && i < MAXTOK; i++) {
        if (i) strcat(got, "|");
        strcat(got, c.tok[i]);
    }
    int ok = n == c.n && strcmp(got, want) == 0 && rr_tokenize(s, len, NULL, NULL) == n;
    if (!ok) printf("# tokens of \"%.*s\": got \"%s\" want \"%s\"\n", (int)len, s, got, want);
    return ok;
}
#define TOKS(s, want, name) CHECK(tokens_are(s, strlen(s), want), name)

static const rr_bm25_params P = { .k1 = 1.2, .b = 0.75 };

static int bm25(const char *q, const char *const *docs, size_t n, const rr_bm25_params *p, double *out)
{
    size_t lens[64];
    for (size_t i = 0; i < n; i++) lens[i] = strlen(docs[i]);
    return rr_bm25(q, strlen(q), docs, lens, n, p, out);
}

/* ---- naive reference: token lists, linear search, the formula as written ---- */

typedef struct { size_t n, cap; char **t; } tlist;
static void tl_add(const char *t, size_t len, size_t off, void *ud)
{
    (void)off;
    tlist *l = ud;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->t = realloc(l->t, l->cap * sizeof *l->t);
    }
    l->t[l->n] = strndup(t, len);
    l->n++;
}
static void tl_free(tlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->t[i]);
    free(l->t);
}

static void ref_bm25(const char *q, const char *const *docs, size_t n, const rr_bm25_params *p, double *out)
{
    tlist ql = { 0 }, dl[64];
    rr_tokenize(q, strlen(q), tl_add, &ql);
    double total = 0;
    size_t from[64], to[64];
    for (size_t i = 0; i < n; i++) {
        memset(&dl[i], 0, sizeof dl[i]);
        rr_tokenize(docs[i], strlen(docs[i]), tl_add, &dl[i]);
        from[i] = 0;
        to[i] = dl[i].n;
        if (p->max_tokens && dl[i].n > p->max_tokens) {
            if (p->keep_end) from[i] = dl[i].n - p->max_tokens;
            else to[i] = p->max_tokens;
        }
        total += (double)(to[i] - from[i]);
        out[i] = 0;
    }
    double avgdl = total / (double)n;
    for (size_t a = 0; a < ql.n && avgdl > 0; a++) {
        int dup = 0;
        for (size_t b = 0; b < a; b++) dup |= strcmp(ql.t[a], ql.t[b]) == 0;
        if (dup) continue;
        double df = 0;
        for (size_t i = 0; i < n; i++) {
            for (size_t j = from[i]; j < to[i]; j++)
                if (strcmp(dl[i].t[j], ql.t[a]) == 0) { df++; break; }
        }
        double idf = log(1 + (n - df + 0.5) / (df + 0.5));
        for (size_t i = 0; i < n; i++) {
            double tf = 0, len = (double)(to[i] - from[i]);
            for (size_t j = from[i]; j < to[i]; j++) tf += strcmp(dl[i].t[j], ql.t[a]) == 0;
            out[i] += idf * tf * (p->k1 + 1) / (tf + p->k1 * (1 - p->b + p->b * len / avgdl));
        }
    }
    tl_free(&ql);
    for (size_t i = 0; i < n; i++) tl_free(&dl[i]);
}

int main(void)
{
    /* ---- tokenizer ---- */
    TOKS("Hello, World! foo_bar x1y2", "hello|world|foo|bar|x1y2", "ASCII split + lower");
    TOKS("", "", "empty text");
    TOKS(" \t\n.,;!?()[]{}<>\"'", "", "only separators");
    TOKS("ÉCOLE école", "école|école", "Latin-1 upper -> lower");
    TOKS("ПРИВЕТ мир Ёлка ЂАК", "привет|мир|ёлка|ђак", "Cyrillic А-Я and Ѐ-Џ");
    TOKS("ΑΘΗΝΑ Άρης ΏΡΑ", "αθηνα|άρης|ώρα", "Greek incl. tonos");
    TOKS("ŁÓDŹ ŒUVRE Ÿ İSTANBUL", "łódź|œuvre|ÿ|istanbul", "Latin Extended-A pairs, Ÿ, İ");
    TOKS("a×b c÷d straße ÀÞ", "a|b|c|d|straße|àþ", "× and ÷ split, ß kept, Þ lowered");
    TOKS("東京は日本の首都です。大阪", "東京は日本の首都です|大阪", "CJK run, 。 splits");
    TOKS("ｈｅｌｌｏ，ＷＯＲＬＤ", "ｈｅｌｌｏ|ｗｏｒｌｄ", "fullwidth letters lowered, fullwidth comma splits");
    TOKS("한국어 テスト עברית العربية हिन्दी ไทย", "한국어|テスト|עברית|العربية|हिन्दी|ไทย",
         "Hangul, Katakana, Hebrew, Arabic, Devanagari, Thai are word characters");
    TOKS("a\u00a0b\u2014c\u3000d\u201ce\u201d f\u00b7g", "a|b|c|d|e|f|g",
         "NBSP, em dash, ideographic space, quotes, middle dot split");
    TOKS("µm ªb 3º", "µm|ªb|3º", "ª µ º are letters");
    TOKS("e\u0301t\u00e9", "e\u0301t\u00e9", "combining marks stay inside the word");
    TOKS("hi😀there ok", "hi|there|ok", "emoji split");

    /* offsets are byte offsets of the token start in the original text */
    toks c;
    memset(&c, 0, sizeof c);
    rr_tokenize("  Hello, ÉCOLE x", 17, collect, &c);
    CHECK(c.n == 3 && c.off[0] == 2 && c.off[1] == 9 && c.off[2] == 16, "byte offsets");

    /* invalid UTF-8: separators, never read past len */
    CHECK(tokens_are("ab\xff" "cd", 5, "ab|cd"), "0xFF splits");
    CHECK(tokens_are("ab\xc3", 3, "ab"), "truncated sequence at the end");
    CHECK(tokens_are("ab\xc3(cd", 6, "ab|cd"), "bad continuation");
    CHECK(tokens_are("x\xc0\xafy", 4, "x|y"), "overlong encoding");
    CHECK(tokens_are("x\xed\xa0\x80y", 5, "x|y"), "surrogate");
    CHECK(tokens_are("x\xf4\x90\x80\x80y", 6, "x|y"), "above U+10FFFF");
    CHECK(tokens_are("\xe6\x9d\xb1\xe4", 4, "\xe6\x9d\xb1"), "CJK then truncated lead");
    CHECK(tokens_are("abcdef", 3, "abc"), "len is respected (no NUL needed)");

    /* a long token that needs lower-casing goes through the heap buffer */
    char longu[2001], longl[2001];
    for (int i = 0; i < 2000; i++) { longu[i] = (char)('A' + i % 26); longl[i] = (char)('a' + i % 26); }
    longu[2000] = longl[2000] = 0;
    tlist lt = { 0 };
    rr_tokenize(longu, 2000, tl_add, &lt);
    CHECK(lt.n == 1 && strcmp(lt.t[0], longl) == 0, "2000-byte token lowered");
    tl_free(&lt);

    /* long texts built from known pieces: expected tokens and offsets are known by
     * construction; covers the 64-byte block path, tokens crossing blocks and
     * running from ASCII into non-ASCII, and the count-only path */
    static const char *const words[] = { "alpha", "Beta", "GAMMA", "x", "Z9", "école", "ÉCOLE",
                                         "東京", "привет", "ПРИВЕТ", "İs", "straße", "a1B2",
                                         "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" };
    static const char *const lowered[] = { "alpha", "beta", "gamma", "x", "z9", "école", "école",
                                           "東京", "привет", "привет", "is", "straße", "a1b2",
                                           "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz0123456789" };
    static const char *const seps[] = { " ", ", ", ".", "\n", "—", "。", "\xff", "\t\t", "  -  ", "\xc3" };
    int built_ok = 1;
    for (int r = 0; r < 1500 && built_ok; r++) {
        static char text[4096], want[64][4096];
        size_t tl = 0, nw = 0, woff[64];
        int prev_word = 0;
        size_t target = ct_next() % 1500;
        while (tl < target && nw < 60) {
            if (ct_next() % 10 < 6) {
                size_t w = ct_next() % (sizeof words / sizeof *words);
                if (!prev_word) { woff[nw] = tl; want[nw][0] = 0; nw++; }
                strcat(want[nw - 1], lowered[w]);
                memcpy(text + tl, words[w], strlen(words[w]));
                tl += strlen(words[w]);
                prev_word = 1;
            } else {
                const char *sp = seps[ct_next() % (sizeof seps / sizeof *seps)];
                memcpy(text + tl, sp, strlen(sp));
                tl += strlen(sp);
                prev_word = 0;
            }
        }
        char *exact = malloc(tl ? tl : 1); /* exactly sized: ASan catches overreads */
        memcpy(exact, text, tl);
        tlist got = { 0 };
        memset(&c, 0, sizeof c);
        size_t n = rr_tokenize(exact, tl, tl_add, &got);
        rr_tokenize(exact, tl, collect, &c);
        int ok = n == nw && got.n == nw && rr_tokenize(exact, tl, NULL, NULL) == nw;
        for (size_t i = 0; ok && i < nw; i++) ok = strcmp(got.t[i], want[i]) == 0 && c.off[i] == woff[i];
        if (!ok) {
            printf("# built text %d: %zu tokens, want %zu\n", r, n, nw);
            for (size_t i = 0; i < nw && i < got.n; i++)
                if (strcmp(got.t[i], want[i]) || c.off[i] != woff[i])
                    printf("#  [%zu] got \"%s\"@%zu want \"%s\"@%zu\n", i, got.t[i], c.off[i], want[i], woff[i]);
        }
        built_ok &= ok;
        tl_free(&got);
        free(exact);
    }
    CHECK(built_ok, "long built texts: tokens, offsets and counts as constructed");

    /* fuzz: random bytes in exactly-sized buffers (ASan would catch overreads) */
    int fuzz_ok = 1;
    for (int r = 0; r < 2000; r++) {
        size_t len = ct_next() % 64;
        unsigned char *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) {
            uint64_t v = ct_next();
            buf[i] = (unsigned char)(v % 3 == 0 ? 0x80 | (v >> 8) % 0x80 : (v >> 8));
        }
        tlist l = { 0 };
        size_t n = rr_tokenize((const char *)buf, len, tl_add, &l);
        if (n != l.n || n != rr_tokenize((const char *)buf, len, NULL, NULL)) fuzz_ok = 0;
        for (size_t i = 0; i < l.n; i++) if (!l.t[i][0]) fuzz_ok = 0; /* never empty tokens */
        double sc[1];
        const char *d[1] = { (const char *)buf };
        if (rr_bm25((const char *)buf, len, d, &len, 1, &P, sc) != 0 || !(sc[0] >= 0)) fuzz_ok = 0;
        tl_free(&l);
        free(buf);
    }
    CHECK(fuzz_ok, "random bytes: consistent counts, no empty tokens, bm25 finite");

    /* ---- BM25: hand-computed ----
     * d0 "the cat sat" (dl 3), d1 "the dog sat on the mat" (dl 6), d2 "cat cat dog" (dl 3)
     * N = 3, avgdl = 12/3 = 4, k1 = 1.2, b = 0.75; query "cat dog".
     * df(cat) = df(dog) = 2 -> idf = ln(1 + (3 - 2 + 0.5)/(2 + 0.5)) = ln(1.6) = 0.4700036292457356
     * norm(dl=3) = 1.2*(0.25 + 0.75*3/4) = 0.975; norm(dl=6) = 1.2*(0.25 + 0.75*6/4) = 1.65
     * d0 = idf*1*2.2/(1 + 0.975)                        = 0.523548346501579
     * d1 = idf*1*2.2/(1 + 1.65)                         = 0.39019169220400696
     * d2 = idf*2*2.2/(2 + 0.975) + idf*1*2.2/(1+0.975)  = 1.2186797645456924 */
    const char *corpus[] = { "the cat sat", "the dog sat on the mat", "cat cat dog" };
    double s[8], s2[8];
    CHECK(bm25("cat dog", corpus, 3, &P, s) == 0, "bm25 returns 0");
    CHECK_NEAR(s[0], 0.523548346501579, 1e-12, "hand value d0");
    CHECK_NEAR(s[1], 0.39019169220400696, 1e-12, "hand value d1");
    CHECK_NEAR(s[2], 1.2186797645456924, 1e-12, "hand value d2");

    bm25("cat CAT dog Cat, dog!", corpus, 3, &P, s2);
    CHECK(s2[0] == s[0] && s2[1] == s[1] && s2[2] == s[2], "repeated/cased query terms count once");

    bm25("", corpus, 3, &P, s);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0, "empty query: all 0");
    bm25(" ,.; ", corpus, 3, &P, s);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0, "punctuation-only query: all 0");
    bm25("zebra", corpus, 3, &P, s);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0, "no match: all 0");

    const char *empties[] = { "", "", "" };
    bm25("cat", empties, 3, &P, s);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0, "all docs empty (avgdl 0): all 0");
    const char *mixed[] = { "", "cat", "..." };
    bm25("cat", mixed, 3, &P, s);
    /* N=3, df=1: idf = ln(1 + 2.5/1.5); avgdl = 1/3; norm = 1.2*(0.25 + 0.75*3) = 3.0 */
    CHECK(s[0] == 0 && s[2] == 0, "empty docs score 0");
    CHECK_NEAR(s[1], log(1 + 2.5 / 1.5) * 2.2 / (1 + 3.0), 1e-12, "empty docs count in avgdl");
    CHECK(bm25("cat", corpus, 0, &P, s) == 0, "n = 0 is fine");

    /* N = 1: idf = ln(1 + 0.5/1.5) = ln(4/3); dl = avgdl = 1 -> tf part = 2.2/2.2 */
    const char *single[] = { "Cat" };
    bm25("cat", single, 1, &P, s);
    CHECK_NEAR(s[0], log(4.0 / 3.0), 1e-12, "N=1");

    /* unicode lower-casing matches across case */
    const char *uni[] = { "une école", "привет мир", "hello" };
    bm25("ÉCOLE", uni, 3, &P, s);
    CHECK(s[0] > 0 && s[1] == 0 && s[2] == 0, "ÉCOLE matches école");
    bm25("ПРИВЕТ", uni, 3, &P, s);
    CHECK(s[1] > 0 && s[0] == 0 && s[2] == 0, "ПРИВЕТ matches привет");
    const char *cjk[] = { "東京 大阪", "京都", "東京" };
    bm25("東京", cjk, 3, &P, s);
    CHECK(s[0] > 0 && s[1] == 0 && s[2] > s[0], "CJK tokens match");

    /* k1 / b respected: b = 0 ignores length */
    rr_bm25_params nob = { .k1 = 2.0, .b = 0.0 };
    const char *lens[] = { "cat", "cat x y z w v u", "dog" };
    bm25("cat", lens, 3, &nob, s);
    CHECK(s[0] == s[1] && s[0] > 0, "b=0: length ignored");
    CHECK_NEAR(s[0], log(1 + 1.5 / 2.5), 1e-12, "b=0, tf=1: score = idf");

    /* truncation: dl and tf on the kept tokens only */
    rr_bm25_params head = { .k1 = 1.2, .b = 0.75, .max_tokens = 2 }, tail = { .k1 = 1.2, .b = 0.75, .max_tokens = 2, .keep_end = 1 };
    const char *tr[] = { "cat dog x y z", "x y z dog cat", "cat" };
    bm25("cat", tr, 3, &head, s);
    /* kept: "cat dog" | "x y" | "cat": df 2, avgdl 5/3 */
    double idf2 = log(1 + 1.5 / 2.5), avg = 5.0 / 3.0;
    CHECK_NEAR(s[0], idf2 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / avg)), 1e-12, "max_tokens head: d0");
    CHECK(s[1] == 0, "max_tokens head: cat cut from d1");
    CHECK_NEAR(s[2], idf2 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 1 / avg)), 1e-12, "max_tokens head: d2");
    bm25("cat", tr, 3, &tail, s);
    CHECK(s[0] == 0 && s[1] > 0 && s[2] > 0, "keep_end keeps the last tokens");

    /* doc_tokens: the documents' tokens as scored (for usage), also with nothing to score */
    size_t dt = 0;
    rr_bm25_params counted = { .k1 = 1.2, .b = 0.75, .max_tokens = 2, .doc_tokens = &dt };
    bm25("cat", tr, 3, &counted, s);
    CHECK(dt == 2 + 2 + 1, "doc_tokens counts the kept tokens");
    counted.max_tokens = 0;
    bm25("cat", tr, 3, &counted, s);
    CHECK(dt == 5 + 5 + 1, "doc_tokens without truncation");
    bm25("?!", tr, 3, &counted, s);
    CHECK(dt == 11 && s[0] == 0, "doc_tokens when the query has no tokens");
    rr_bm25_params big = { .k1 = 1.2, .b = 0.75, .max_tokens = 100, .keep_end = 1 };
    bm25("cat dog", corpus, 3, &big, s);
    bm25("cat dog", corpus, 3, &P, s2);
    CHECK(s[0] == s2[0] && s[1] == s2[1] && s[2] == s2[2], "max_tokens above dl changes nothing");

    /* equal documents with words in another order: bit-identical scores */
    const char *perm[] = { "alpha beta gamma delta", "delta gamma beta alpha", "zeta" };
    bm25("gamma alpha delta beta", perm, 3, &P, s);
    CHECK(s[0] == s[1] && s[0] > 0, "term order does not change the score bits");

    /* randomized comparison with the naive reference, with and without truncation */
    static const char *vocab[] = { "the", "The", "cat", "dog", "école", "ÉCOLE", "東京", "a", "ab",
                                   "abc", "Привет", "x1", "zz", "q", "m", "n", "CAT", "DoG", "İSTANBUL",
                                   "istanbul", "a1", "A1", "catdog", "ba", "ab1", "longwordlongword" };
    const size_t nv = sizeof vocab / sizeof *vocab;
    int agree = 1;
    for (int r = 0; r < 300; r++) {
        char qb[256] = "", db[40][2048];
        const char *docs[40];
        size_t n = 1 + ct_next() % 40;
        for (int w = (int)(ct_next() % 6); w >= 0; w--) {
            strcat(qb, vocab[ct_next() % nv]);
            strcat(qb, ct_next() % 2 ? " " : ", ");
        }
        for (size_t i = 0; i < n; i++) {
            db[i][0] = 0;
            for (int w = (int)(ct_next() % 100); w > 0; w--) {
                strcat(db[i], vocab[ct_next() % nv]);
                strcat(db[i], ct_next() % 3 ? " " : "; ");
            }
            docs[i] = db[i];
        }
        rr_bm25_params p = { .k1 = 0.5 + (double)(ct_next() % 20) / 10, .b = (double)(ct_next() % 11) / 10 };
        p.max_tokens = ct_next() % 3 ? 0 : ct_next() % 8;
        p.keep_end = (int)(ct_next() % 2);
        double got[40], want[40];
        if (bm25(qb, docs, n, &p, got) != 0) agree = 0;
        ref_bm25(qb, docs, n, &p, want);
        for (size_t i = 0; i < n; i++)
            if (fabs(got[i] - want[i]) > 1e-9) {
                if (agree) printf("# q=\"%s\" doc %zu \"%s\": got %.17g want %.17g\n", qb, i, docs[i], got[i], want[i]);
                agree = 0;
            }
    }
    CHECK(agree, "random corpora agree with the naive reference (300 cases)");

    /* mostly-ASCII documents (the 64-byte block path, where the exact-word mode screens tokens
     * by first byte): words and tokens that run across blocks, into a rare non-ASCII word or
     * a 70-byte word; queries with few and with more than RR_SCREEN_MAX first letters, terms
     * of several lengths on one first letter (the screen's lengths) and of 64+ bytes */
    static const char *avocab[] = { "the", "The", "cat", "Cat", "dog", "DOG", "a", "ab", "abc", "x1", "1x",
                                    "2026", "zz", "q", "m", "mm", "Mmm", "catdog", "ba", "ab1", "B", "bb",
                                    "longwordlongword", "y", "yy", "Yes", "k", "kk", "o", "oo", "p", "r",
                                    "s", "t", "u", "v", "w", "école",
                                    "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq" };
    const size_t nav = sizeof avocab / sizeof *avocab;
    agree = 1;
    for (int r = 0; r < 300; r++) {
        char qb[512] = "", db[20][4096];
        const char *docs[20];
        size_t n = 1 + ct_next() % 20;
        for (int w = (int)(ct_next() % (r % 2 ? 30 : 5)); w >= 0; w--) { /* every third: école, 70 q too */
            strcat(qb, avocab[ct_next() % (r % 3 ? nav - 2 : nav)]);
            strcat(qb, " ");
        }
        for (size_t i = 0; i < n; i++) {
            db[i][0] = 0;
            for (int w = (int)(ct_next() % 400); w > 0 && strlen(db[i]) < 3900; w--) {
                size_t k = ct_next() % 60 ? ct_next() % (nav - 2) : nav - 2 + ct_next() % 2; /* rare: école, 70 q */
                strcat(db[i], avocab[k]);
                strcat(db[i], ct_next() % 4 ? " " : ct_next() % 2 ? ", " : "-");
            }
            docs[i] = db[i];
        }
        rr_bm25_params p = { .k1 = 1.2, .b = 0.75 };
        double got[20], want[20];
        if (bm25(qb, docs, n, &p, got) != 0) agree = 0;
        ref_bm25(qb, docs, n, &p, want);
        for (size_t i = 0; i < n; i++)
            if (fabs(got[i] - want[i]) > 1e-9) {
                if (agree) printf("# q=\"%s\" doc %zu: got %.17g want %.17g\n", qb, i, got[i], want[i]);
                agree = 0;
            }
    }
    CHECK(agree, "mostly-ASCII corpora (the block path, screened by first byte) agree with the naive reference (300 cases)");

    return CT_DONE();
}
