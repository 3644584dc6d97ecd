/* BM25 tokenizer and Okapi BM25 scoring over one request's documents.
 * Tokens: maximal runs of word characters (ASCII alnum, and non-ASCII letters,
 * digits and marks), split on ASCII punctuation/space/control, common Unicode
 * punctuation/symbol blocks and invalid UTF-8 bytes. Tokens are lower-cased for
 * ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and fullwidth Latin. */
#include "rerank.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ---- */

/* Strict decode (no overlongs, surrogates or > U+10FFFF); 0 = invalid byte. */
static inline size_t utf8_decode(const unsigned char *s, size_t rem, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0xC2) return 0; /* ASCII is handled by callers; 80-C1 never lead */
    if (c < 0xE0) {
        if (rem < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0) {
        if (rem < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F)) return 0;
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    if (c < 0xF5) {
        if (rem < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F)) return 0;
        *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        return 4;
    }
    return 0;
}

size_t rr_utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i + 8 <= len) { /* ASCII runs 8 bytes at a time (most request text) */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (n == 0) return i;
        i += n;
    }
    return len;
}

static inline size_t utf8_encode(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    size_t n = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    static const unsigned char lead[5] = { 0, 0, 0xC0, 0xE0, 0xF0 };
    for (size_t i = n - 1; i > 0; i--, cp >>= 6) o[i] = (unsigned char)(0x80 | (cp & 0x3F));
    o[0] = (unsigned char)(lead[n] | cp);
    return n;
}

/* ---- character classes ---- */

/* Non-ASCII word characters: everything except the punctuation, symbol, space,
 * control, private-use and emoji ranges we can recognise with a few compares. */
static int is_word_cp(uint32_t cp)
{
    if (cp < 0x100) {
        if (cp < 0xC0) return cp == 0xAA || cp == 0xB5 || cp == 0xBA; /* ª µ º */
        return cp != 0xD7 && cp != 0xF7;                               /* × ÷ */
    }
    if (cp < 0x2000) { /* scattered script punctuation: Greek, Armenian, Hebrew, Arabic, Indic, Thai */
        static const uint16_t punct[] = { 0x37E, 0x387, 0x55A, 0x55B, 0x55C, 0x55D, 0x55E, 0x55F,
            0x589, 0x5BE, 0x5C0, 0x5C3, 0x5C6, 0x5F3, 0x5F4, 0x60C, 0x60D, 0x61B, 0x61F, 0x66A,
            0x66B, 0x66C, 0x66D, 0x6D4, 0x964, 0x965, 0x970, 0xE4F, 0xE5A, 0xE5B, 0x1680 };
        for (size_t i = 0; i < sizeof punct / sizeof *punct; i++)
            if (cp == punct[i]) return 0;
        return 1;
    }
    if (cp < 0x2100) return 0;   /* general punctuation, super/subscripts, currency */
    if (cp < 0x2190) return 1;   /* letterlike symbols, number forms (ℕ, Ⅻ) */
    if (cp < 0x2C00) return 0;   /* arrows, math, technical, boxes, shapes, dingbats */
    if (cp < 0x2E00) return 1;   /* Glagolitic, Coptic, Georgian, Tifinagh, ... */
    if (cp < 0x2E80) return 0;   /* supplemental punctuation */
    if (cp < 0x3000) return cp < 0x2FF0; /* radicals yes, ideographic description no */
    if (cp < 0x3040)             /* CJK symbols and punctuation: a few are letters */
        return (cp >= 0x3005 && cp <= 0x3007) || (cp >= 0x3021 && cp <= 0x3029) ||
               (cp >= 0x3031 && cp <= 0x3035) || (cp >= 0x3038 && cp <= 0x303C);
    if (cp < 0xD800) return cp != 0x30A0 && cp != 0x30FB && !(cp >= 0x4DC0 && cp <= 0x4DFF);
    if (cp < 0xF900) return 0;   /* private use */
    if (cp < 0xFE00) return cp != 0xFD3E && cp != 0xFD3F;
    if (cp < 0xFE10) return 1;   /* variation selectors stay inside words */
    if (cp < 0xFE20) return 0;   /* vertical forms */
    if (cp < 0xFE30) return 1;   /* combining half marks */
    if (cp < 0xFE70) return 0;   /* CJK compatibility / small form punctuation */
    if (cp < 0xFF00) return cp != 0xFEFF;
    if (cp < 0xFFF0)             /* fullwidth digits/letters, halfwidth kana/hangul */
        return (cp >= 0xFF10 && cp <= 0xFF19) || (cp >= 0xFF21 && cp <= 0xFF3A) ||
               (cp >= 0xFF41 && cp <= 0xFF5A) || (cp >= 0xFF66 && cp <= 0xFFDC);
    if (cp < 0x10000) return 0;  /* specials */
    if (cp >= 0x1F000 && cp < 0x1FB00) return 0; /* emoji, cards, enclosed symbols */
    return cp < 0xE0000;         /* tags and supplementary private use are not */
}

static uint32_t lower_cp(uint32_t cp)
{
    if (cp < 0x100) return (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) ? cp + 0x20 : cp;
    if (cp < 0x180) { /* Latin Extended-A: upper/lower pairs */
        if (cp == 0x130) return 'i';
        if (cp == 0x178) return 0xFF;
        if ((cp <= 0x137 || (cp >= 0x14A && cp <= 0x177)) && !(cp & 1)) return cp + 1;
        if (((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) && (cp & 1))
            return cp + 1;
        return cp;
    }
    if (cp >= 0x386 && cp <= 0x3A9) { /* Greek */
        if (cp >= 0x391) return cp == 0x3A2 ? cp : cp + 0x20;
        if (cp == 0x386) return 0x3AC;
        if (cp >= 0x388 && cp <= 0x38A) return cp + 0x25;
        if (cp == 0x38C) return 0x3CC;
        if (cp == 0x38E || cp == 0x38F) return cp + 0x3F;
        return cp;
    }
    if (cp >= 0x400 && cp <= 0x42F) return cp < 0x410 ? cp + 0x50 : cp + 0x20; /* Cyrillic */
    if (cp >= 0xFF21 && cp <= 0xFF3A) return cp + 0x20; /* fullwidth A-Z */
    return cp;
}

/* ASCII class: 0 separator, 1 word, 2 upper-case word, 3 non-ASCII (decode). */
enum { C_SEP, C_WORD, C_UPPER, C_HIGH };
static const unsigned char cls[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0), R16(0),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,           /* 0-9 */
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,           /* @A-O */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,           /* P-Z */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* `a-o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,           /* p-z */
    R16(3), R16(3), R16(3), R16(3), R16(3), R16(3), R16(3), R16(3),
#undef R16
};

/* ---- tokenizer core ---- */

typedef struct {
    unsigned char stack[256];
    unsigned char *heap;
    size_t cap;
} lbuf;

/* Lower-cased copy of a token in b (lower-casing never grows a token); on
 * malloc failure the token as written. */
static const char *lower_token(const unsigned char *t, size_t len, lbuf *b, size_t *olen)
{
    unsigned char *o = b->stack;
    *olen = len;
    if (len > sizeof b->stack) {
        if (len > b->cap) {
            unsigned char *nh = realloc(b->heap, len);
            if (!nh) return (const char *)t;
            b->heap = nh;
            b->cap = len;
        }
        o = b->heap;
    }
    size_t i = 0, w = 0;
    while (i < len) {
        unsigned c = t[i];
        if (c < 0x80) {
            o[w++] = (unsigned char)(cls[c] == C_UPPER ? c | 0x20 : c);
            i++;
        } else {
            uint32_t cp = 0;
            size_t n = utf8_decode(t + i, len - i, &cp); /* valid: the scanner checked */
            w += utf8_encode(lower_cp(cp), o + w);
            i += n;
        }
    }
    *olen = w;
    return (const char *)o;
}

/* Internal per-token hook: raw bytes s[from..to), whether lower-casing changes
 * them, whether they are all ASCII. Inlined into each scan() instance. */
typedef void (*tok_fn)(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud);

#ifdef __SSE2__
#include <emmintrin.h>
/* Bit masks over 64 bytes: ASCII alnum, ASCII upper-case, bytes >= 0x80. */
typedef struct { uint64_t word, upper, high; } masks64;
static inline __m128i in_range(__m128i v, char lo, char hi)
{
    /* signed compares: bytes >= 0x80 are negative, so never inside a range */
    return _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8((char)(lo - 1))),
                         _mm_cmplt_epi8(v, _mm_set1_epi8((char)(hi + 1))));
}
static inline masks64 classify64(const unsigned char *p)
{
    masks64 m = { 0, 0, 0 };
    for (int j = 0; j < 4; j++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * j));
        __m128i alpha = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z');
        __m128i w = _mm_or_si128(alpha, in_range(v, '0', '9'));
        m.word |= (uint64_t)(unsigned)_mm_movemask_epi8(w) << (16 * j);
        m.upper |= (uint64_t)(unsigned)_mm_movemask_epi8(in_range(v, 'A', 'Z')) << (16 * j);
        m.high |= (uint64_t)(unsigned)_mm_movemask_epi8(v) << (16 * j);
    }
    return m;
}
#endif

/* Counts a token; hands tokens skip+1 .. skip+limit to the hook, then stops. */
#define TOKEN(from, to, lower, ascii)                                  \
    do {                                                               \
        count++;                                                       \
        if (count > skip) {                                            \
            if (fn) fn(s, (from), (to), (lower), (ascii), ud);         \
            if (count - skip >= limit) return count;                   \
        }                                                              \
    } while (0)

/* Returns the number of tokens seen (all of them when limit is not reached).
 * Pure-ASCII 64-byte blocks take the bit-mask path (token bounds from the word
 * mask's edges: one step per token, not per byte); the byte loop below is the
 * definition and handles non-ASCII, block tails and tokens crossing into them. */
static inline __attribute__((always_inline)) size_t
scan(const char *text, size_t len, size_t skip, size_t limit, tok_fn fn, void *ud)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, count = 0;
#ifdef __SSE2__
    size_t slow_until = 0;
#endif
    for (;;) {
#ifdef __SSE2__
        size_t tstart = 0; /* token carried over from the previous block */
        int in_tok = 0, tlower = 0;
        while (i >= slow_until && i + 64 <= len) {
            masks64 m = classify64(s + i);
            if (m.high) { slow_until = i + 64; break; }
            uint64_t prev = (m.word << 1) | (uint64_t)in_tok;
            uint64_t starts = m.word & ~prev, ends = ~m.word & prev;
            if (!fn && limit == (size_t)-1) { /* count only */
                count += (size_t)__builtin_popcountll(starts);
                if (m.word >> 63) {
                    if (starts) tstart = i + 63 - (size_t)__builtin_clzll(starts);
                    in_tok = 1;
                } else {
                    in_tok = 0;
                }
                i += 64;
                continue;
            }
            if (in_tok) {
                if (!ends) { tlower |= m.upper != 0; i += 64; continue; }
                unsigned e = (unsigned)__builtin_ctzll(ends);
                ends &= ends - 1;
                tlower |= (m.upper & ((1ull << e) - 1)) != 0;
                in_tok = 0;
                TOKEN(tstart, i + e, tlower, 1);
            }
            while (starts) {
                unsigned st = (unsigned)__builtin_ctzll(starts);
                starts &= starts - 1;
                if (!ends) { /* runs into the next block */
                    in_tok = 1;
                    tstart = i + st;
                    tlower = (m.upper >> st) != 0;
                    break;
                }
                unsigned e = (unsigned)__builtin_ctzll(ends);
                ends &= ends - 1;
                TOKEN(i + st, i + e, ((m.upper >> st) & ((1ull << (e - st)) - 1)) != 0, 1);
            }
            i += 64;
        }
        if (in_tok) { /* finish it the slow way (it may continue with non-ASCII) */
            i = tstart;
            if (!fn && limit == (size_t)-1) count--; /* counted by popcount already */
        }
#endif
        /* one token the slow way: skip separators, then the maximal word run */
        unsigned k;
        while (i < len && cls[s[i]] == C_SEP) i++;
        if (i >= len) break;
        if (cls[s[i]] == C_HIGH) {
            uint32_t cp = 0;
            size_t n = utf8_decode(s + i, len - i, &cp);
            if (n == 0) { i++; continue; }
            if (!is_word_cp(cp)) { i += n; continue; }
        }
        size_t start = i;
        int lower = 0, ascii = 1;
        for (;;) {
            while (i < len && (k = cls[s[i]]) != C_SEP && k != C_HIGH) {
                lower |= k == C_UPPER;
                i++;
            }
            if (i >= len || k != C_HIGH) break;
            uint32_t cp = 0;
            size_t n = utf8_decode(s + i, len - i, &cp);
            if (n == 0 || !is_word_cp(cp)) break;
            lower |= lower_cp(cp) != cp;
            ascii = 0;
            i += n;
        }
        TOKEN(start, i, lower, ascii);
    }
    return count;
}

typedef struct { rr_token_fn emit; void *ud; lbuf b; } tok_ctx;

static inline __attribute__((always_inline)) void
user_token(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud)
{
    (void)ascii;
    tok_ctx *t = ud;
    size_t len = to - from;
    const char *tok = lower ? lower_token(s + from, len, &t->b, &len) : (const char *)s + from;
    t->emit(tok, len, from, t->ud);
}

size_t rr_tokenize(const char *text, size_t len, rr_token_fn emit, void *ud)
{
    if (!emit) return scan(text, len, 0, (size_t)-1, NULL, NULL);
    tok_ctx t = { emit, ud, { { 0 }, NULL, 0 } };
    size_t n = scan(text, len, 0, (size_t)-1, user_token, &t);
    free(t.b.heap);
    return n;
}

/* ---- BM25 ---- */

typedef struct {
    uint64_t hash;
    const char *str; /* lower-cased term, owned by the query arena */
    uint32_t len;
} term;

typedef struct {
    /* distinct query terms: open addressing, slots hold term id + 1 (0 = empty) */
    term *terms;
    uint32_t nterms, mask;
    uint32_t *slots;
    char *arena;
    size_t arena_used;
    /* Prefilter over ASCII terms keyed by (first byte, last byte, length): most
     * document tokens are rejected by one rarely-taken branch, before lower-casing
     * or hashing. Non-ASCII tokens skip it. */
    uint64_t filter[16];
    lbuf b;
    /* current document */
    uint32_t *tf;      /* per term, reset after each doc */
    uint32_t *touched; /* term ids with tf > 0 in the current doc */
    uint32_t ntouched;
    size_t dl;
} bm25_ctx;

static inline unsigned filter_slot(unsigned first, unsigned last, size_t len)
{
    return ((first << 16 ^ last << 8 ^ (unsigned)len) * 0x9E3779B1u) >> 22; /* 0..1023 */
}

static inline uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: tokens are short */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

static inline int32_t find_term(const bm25_ctx *c, const char *tok, size_t len, uint64_t h)
{
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        uint32_t s = c->slots[i];
        if (!s) return -1;
        const term *t = &c->terms[s - 1];
        if (t->hash == h && t->len == len && memcmp(t->str, tok, len) == 0) return (int32_t)(s - 1);
    }
}

static void query_token(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud)
{
    bm25_ctx *c = ud;
    size_t len = to - from;
    const char *tok = lower ? lower_token(s + from, len, &c->b, &len) : (const char *)s + from;
    uint64_t h = hash_bytes(tok, len);
    if (find_term(c, tok, len, h) >= 0) return; /* repeated query terms count once */
    char *dst = c->arena + c->arena_used;       /* arena holds qlen bytes: enough */
    memcpy(dst, tok, len);
    c->arena_used += len;
    term *t = &c->terms[c->nterms];
    t->hash = h;
    t->str = dst;
    t->len = (uint32_t)len;
    uint32_t i = (uint32_t)h & c->mask;
    while (c->slots[i]) i = (i + 1) & c->mask;
    c->slots[i] = ++c->nterms;
    (void)ascii; /* of the raw token; the filter needs the lower-cased one */
    int all_ascii = 1;
    for (size_t j = 0; j < len; j++) all_ascii &= (unsigned char)tok[j] < 0x80;
    if (all_ascii) { /* İ lowers to ASCII: matching doc tokens are non-ASCII, no filter */
        unsigned f = filter_slot((unsigned char)tok[0], (unsigned char)tok[len - 1], len);
        c->filter[f >> 6] |= 1ull << (f & 63);
    }
}

static inline __attribute__((always_inline)) void
doc_token(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud)
{
    bm25_ctx *c = ud;
    size_t len = to - from;
    c->dl++;
    if (ascii) { /* ASCII alnum | 0x20 is its lower case */
        unsigned f = filter_slot(s[from] | 0x20u, s[to - 1] | 0x20u, len);
        if (!((c->filter[f >> 6] >> (f & 63)) & 1)) return;
    }
    const char *tok = lower ? lower_token(s + from, len, &c->b, &len) : (const char *)s + from;
    int32_t id = find_term(c, tok, len, hash_bytes(tok, len));
    if (id < 0) return;
    if (c->tf[id]++ == 0) c->touched[c->ntouched++] = (uint32_t)id;
}

typedef struct { uint32_t term, tf; } posting;

/* Tokens of one document, truncated per the params; fills c->dl, c->tf, c->touched. */
static void scan_doc(bm25_ctx *c, const char *d, size_t len, const rr_bm25_params *p)
{
    c->dl = 0;
    c->ntouched = 0;
    size_t skip = 0, limit = (size_t)-1;
    if (p->max_tokens > 0) {
        limit = p->max_tokens;
        if (p->keep_end) {
            size_t total = scan(d, len, 0, (size_t)-1, NULL, NULL);
            if (total > limit) skip = total - limit;
        }
    }
    scan(d, len, skip, limit, doc_token, c);
}

static void sort_u32(uint32_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint32_t v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
        a[j] = v;
    }
}

int rr_bm25(const char *query, size_t qlen, const char *const *docs, const size_t *lens,
            size_t n, const rr_bm25_params *p, double *scores_out)
{
    for (size_t i = 0; i < n; i++) scores_out[i] = 0.0;
    if (p->doc_tokens) *p->doc_tokens = 0;
    if (n == 0) return 0;
    size_t nq = rr_tokenize(query, qlen, NULL, NULL);
    if (nq == 0) { /* nothing to score; the token count is still wanted for usage */
        for (size_t i = 0; p->doc_tokens && i < n; i++) {
            size_t t = rr_tokenize(docs[i], lens[i], NULL, NULL);
            *p->doc_tokens += p->max_tokens > 0 && t > p->max_tokens ? p->max_tokens : t;
        }
        return 0;
    }
    if (nq > UINT32_MAX / 4) return -1;

    /* one zeroed block, 8-byte members first: terms, dls, post_end, idf | df, tf,
     * touched, slots | query arena (lower-cased terms never outgrow the query) */
    size_t cap = 8;
    while (cap < 2 * nq) cap <<= 1;
    size_t bytes = nq * (sizeof(term) + sizeof(double) + 3 * sizeof(uint32_t)) +
                   2 * n * sizeof(size_t) + cap * sizeof(uint32_t) + qlen;
    char *block = calloc(1, bytes);
    if (!block) return -1;
    bm25_ctx c;
    memset(&c, 0, sizeof c);
    c.mask = (uint32_t)(cap - 1);
    c.terms = (term *)(void *)block;
    size_t *dls = (size_t *)(void *)(c.terms + nq), *post_end = dls + n;
    double *idf = (double *)(void *)(post_end + n);
    uint32_t *df = (uint32_t *)(void *)(idf + nq);
    c.tf = df + nq;
    c.touched = c.tf + nq;
    c.slots = c.touched + nq;
    c.arena = (char *)(c.slots + cap);
    posting *post = NULL;
    size_t npost = 0, post_cap = 0;
    int rc = -1;
    scan(query, qlen, 0, (size_t)-1, query_token, &c);

    /* one pass per document: dl, and tf of query terms only, kept as postings */
    double total_dl = 0;
    for (size_t i = 0; i < n; i++) {
        scan_doc(&c, docs[i], lens[i], p);
        dls[i] = c.dl;
        total_dl += (double)c.dl;
        if (npost + c.ntouched > post_cap) {
            size_t nc = post_cap ? post_cap * 2 : 256;
            while (nc < npost + c.ntouched) nc *= 2;
            posting *np = realloc(post, nc * sizeof *np);
            if (!np) goto done;
            post = np;
            post_cap = nc;
        }
        /* canonical term order so equal documents get bit-identical scores */
        if (c.ntouched <= 32) {
            sort_u32(c.touched, c.ntouched);
        } else {
            uint32_t m = 0;
            for (uint32_t t = 0; t < c.nterms; t++)
                if (c.tf[t]) c.touched[m++] = t;
        }
        for (uint32_t j = 0; j < c.ntouched; j++) {
            uint32_t t = c.touched[j];
            post[npost].term = t;
            post[npost].tf = c.tf[t];
            npost++;
            df[t]++;
            c.tf[t] = 0;
        }
        post_end[i] = npost;
    }

    rc = 0;
    if (p->doc_tokens) *p->doc_tokens = (size_t)total_dl;
    double avgdl = total_dl / (double)n;
    if (avgdl <= 0) goto done; /* every document empty: all scores stay 0 */
    double N = (double)n, k1 = p->k1, bb = p->b;
    for (uint32_t t = 0; t < c.nterms; t++)
        idf[t] = log(1.0 + (N - df[t] + 0.5) / (df[t] + 0.5));
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        double norm = k1 * (1.0 - bb + bb * (double)dls[i] / avgdl);
        double sc = 0;
        for (; j < post_end[i]; j++) {
            double tf = (double)post[j].tf;
            sc += idf[post[j].term] * tf * (k1 + 1.0) / (tf + norm);
        }
        scores_out[i] = sc;
    }

done:
    free(c.b.heap);
    free(post);
    free(block);
    return rc;
}
