/* The tokenizer's internals, shared by tokenize.c (rr_tokenize, UTF-8 checks) and bm25.c
 * (which inlines scan() with its own per-token hooks).
 * Tokens: maximal runs of word characters (ASCII alnum, and non-ASCII letters,
 * digits and marks), split on ASCII punctuation/space/control, common Unicode
 * punctuation/symbol blocks and invalid UTF-8 bytes. Tokens are lower-cased for
 * ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and fullwidth Latin. */
#ifndef RERANKD_TOK_H
#define RERANKD_TOK_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A hot scanner compiled twice, picked once at load time (an ifunc): for x86-64-v3 CPUs
 * (AVX2, BMI1/2, POPCNT: one instruction for each ctz, clear-lowest-bit, popcount and
 * variable shift of the token loop) and for the baseline. gcc only: clang's target_clones
 * needs a newer release than Debian's; other builds keep the one baseline function (so
 * `make test` runs the v3 clone on such a CPU and `make sanitize`, built by clang, the
 * baseline, against the same naive reference in tests/c/test_bm25.c). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__) && __GNUC__ >= 12
#define RR_SCAN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define RR_SCAN_CLONES
#endif

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
static inline int is_word_cp(uint32_t cp)
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

static inline uint32_t lower_cp(uint32_t cp)
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
static inline const char *lower_token(const unsigned char *t, size_t len, lbuf *b, size_t *olen)
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
 * them, whether they are all ASCII (RR_ASCII4: and 4 bytes can be read at s + from, the
 * bit-mask path's tokens). Inlined into each scan() instance. */
#define RR_ASCII4 2
typedef void (*tok_fn)(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud);

/* Bits set in x: the instruction where the build targets it, else a few shifts and one
 * multiply (cheaper than libgcc's __popcountdi2 call, once per 64-byte block). */
static inline unsigned rr_popcount64(uint64_t x)
{
#ifdef __POPCNT__
    return (unsigned)__builtin_popcountll(x);
#else
    x -= (x >> 1) & 0x5555555555555555ull;
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (unsigned)((x * 0x0101010101010101ull) >> 56);
#endif
}

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

/* Screening (bm25's exact words): the lower-cased first bytes that some term starts with. In
 * pure-ASCII blocks a token whose first byte is none of them is only counted, never handed
 * to the hook. */
#define RR_SCREEN_MAX 12
typedef struct { int n; __m128i b[RR_SCREEN_MAX]; } rr_screen;
static inline __attribute__((always_inline)) uint64_t screen64_n(const unsigned char *p, const rr_screen *sc, int n)
{
    uint64_t r = 0;
    for (int j = 0; j < 4; j++) {
        __m128i v = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * j)), _mm_set1_epi8(0x20));
        __m128i hit = _mm_cmpeq_epi8(v, sc->b[0]);
        for (int k = 1; k < n; k++) hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, sc->b[k]));
        r |= (uint64_t)(unsigned)_mm_movemask_epi8(hit) << (16 * j);
    }
    return r;
}
/* one unrolled instance per count of first bytes (a loop over them cost as much as the compares) */
static inline uint64_t screen64(const unsigned char *p, const rr_screen *sc)
{
    switch (sc->n) {
    case 1: return screen64_n(p, sc, 1);
    case 2: return screen64_n(p, sc, 2);
    case 3: return screen64_n(p, sc, 3);
    case 4: return screen64_n(p, sc, 4);
    case 5: return screen64_n(p, sc, 5);
    case 6: return screen64_n(p, sc, 6);
    case 7: return screen64_n(p, sc, 7);
    case 8: return screen64_n(p, sc, 8);
    default: return screen64_n(p, sc, sc->n);
    }
}
#else
typedef struct { int n; } rr_screen;
#endif

/* Counts a token; hands tokens skip+1 .. skip+limit to the hook, then stops. */
#define TOKEN(from, to, lower, ascii)                                  \
    do {                                                               \
        count++;                                                       \
        if (skip == 0 && limit == (size_t)-1) { /* folds for a whole text */ \
            if (fn) fn(s, (from), (to), (lower), (ascii), ud);         \
        } else if (count > skip) {                                     \
            if (fn) fn(s, (from), (to), (lower), (ascii), ud);         \
            if (count - skip >= limit) return count;                   \
        }                                                              \
    } while (0)

/* Returns the number of tokens seen (all of them when limit is not reached).
 * Pure-ASCII 64-byte blocks take the bit-mask path (token bounds from the word
 * mask's edges: one step per token, not per byte); the byte loop below is the
 * definition and handles non-ASCII, block tails and tokens crossing into them. */
/* screen (a whole text only: no skip, no limit): pure-ASCII blocks hand the hook only the
 * tokens that pass it; every token is still counted. */
static inline __attribute__((always_inline)) size_t
scan_screened(const char *text, size_t len, size_t skip, size_t limit, tok_fn fn, void *ud, const rr_screen *screen)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, count = 0;
#ifdef __SSE2__
    size_t slow_until = 0;
    if (skip != 0 || limit != (size_t)-1 || (screen && screen->n == 0)) screen = NULL;
#else
    (void)screen;
#endif
    for (;;) {
#ifdef __SSE2__
        size_t tstart = 0; /* token carried over from the previous block */
        int in_tok = 0, tlower = 0, tpass = 1;
        while (i >= slow_until && i + 64 <= len) {
            int a4 = i + 64 + 3 <= len ? RR_ASCII4 : 1; /* a token of the block has 4 bytes */
            masks64 m = classify64(s + i);
            if (m.high) { slow_until = i + 64; break; }
            uint64_t prev = (m.word << 1) | (uint64_t)in_tok;
            uint64_t starts = m.word & ~prev, ends = ~m.word & prev;
            if (screen) {
                count += rr_popcount64(starts);
                if (in_tok) {
                    if (!ends) { tlower |= m.upper != 0; i += 64; continue; }
                    unsigned e = (unsigned)__builtin_ctzll(ends);
                    tlower |= (m.upper & ((1ull << e) - 1)) != 0;
                    in_tok = 0;
                    if (tpass) fn(s, tstart, i + e, tlower, 1, ud);
                }
                uint64_t pass = starts & screen64(s + i, screen);
                for (uint64_t c = pass; c;) {
                    unsigned st = (unsigned)__builtin_ctzll(c);
                    c &= c - 1;
                    uint64_t after = ends & (~0ull << st);
                    if (!after) break; /* runs into the next block: below */
                    unsigned e = (unsigned)__builtin_ctzll(after);
                    fn(s, i + st, i + e, ((m.upper >> st) & ((1ull << (e - st)) - 1)) != 0, 1, ud);
                }
                if ((m.word >> 63) && starts) { /* the block's last token runs on: it started here */
                    unsigned st = 63 - (unsigned)__builtin_clzll(starts);
                    in_tok = 1;
                    tstart = i + st;
                    tlower = (m.upper >> st) != 0;
                    tpass = (int)((pass >> st) & 1);
                }
                i += 64;
                continue;
            }
            if (!fn && limit == (size_t)-1) { /* count only */
                count += rr_popcount64(starts);
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
                TOKEN(tstart, i + e, tlower, a4);
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
                TOKEN(i + st, i + e, ((m.upper >> st) & ((1ull << (e - st)) - 1)) != 0, a4);
            }
            i += 64;
        }
        if (in_tok) { /* finish it the slow way (it may continue with non-ASCII) */
            i = tstart;
            if (screen || (!fn && limit == (size_t)-1)) count--; /* counted by popcount already */
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

static inline __attribute__((always_inline)) size_t
scan(const char *text, size_t len, size_t skip, size_t limit, tok_fn fn, void *ud)
{
    return scan_screened(text, len, skip, limit, fn, ud, NULL);
}

/* Hash of a token (tables and caches only; never part of a score or an order): eight
 * bytes per multiply, so a short token costs one or two dependent multiplies instead of
 * one per byte. */
static inline uint64_t rr_hash_bytes(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    return h ^ (h >> 29);
}

/* rr_hash_bytes of a token of n <= 16 bytes given as two little-endian words, zero past n */
static inline uint64_t rr_hash_packed(uint64_t x, uint64_t y, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n, w = x;
    if (n >= 8) {
        h = (h ^ x) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        w = y;
        if (n == 16) {
            h = (h ^ y) * 0xBF58476D1CE4E5B9ull;
            h ^= h >> 31;
            w = 0;
        }
    }
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    return h ^ (h >> 29);
}

#endif
