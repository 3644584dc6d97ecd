/* analyzer.c's internals for bm25.c: the per-worker word -> stem cache, read on the
 * document path without copying the stem. */
#ifndef RERANKD_ANALYZER_H
#define RERANKD_ANALYZER_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define RR_AC_WORD 18   /* longer words (or stems) are stemmed without the cache */
#define RR_ACACHE 16384  /* entries (64 bytes each): 1 MB per stemming analyzer */

typedef struct rr_analyzer rr_analyzer;

/* One cached word: its stem, whether it is a stopword, and for one scoring pass (epoch)
 * the query term its stem is (qid, -1 = none), so a repeated word costs one probe. */
typedef struct {
    uint64_t hash, shash;  /* of word, of stem */
    uint32_t epoch;
    int32_t qid;
    uint8_t wlen, slen, stop;
    char word[RR_AC_WORD];
    char stem[RR_AC_WORD];
} rr_acache_entry;

/* The entry of a lower-cased word (h = rr_hash_bytes of it), filled on a miss; NULL when
 * the analyzer does not stem or the word or its stem is too long for the cache. Valid
 * until the next call. */
rr_acache_entry *rr_analyzer_entry(rr_analyzer *a, const char *tok, size_t len, uint64_t h);
uint32_t rr_analyzer_next_epoch(rr_analyzer *a);
#define RR_MAX_TWINS 3
rr_analyzer *rr_analyzer_twin(rr_analyzer *a, size_t k);
/* The cache (RR_ACACHE entries, allocated here on first use; NULL when the analyzer does
 * not stem or is out of memory) and a word's slot in it: bm25.c looks up short ASCII
 * words itself, comparing them as two words (an entry's word is zero past wlen). */
rr_acache_entry *rr_analyzer_cache(rr_analyzer *a);
static inline size_t rr_acache_slot(uint64_t h) { return (size_t)(h ^ (h >> 29)) & (RR_ACACHE - 1); } /* a new scoring pass: cached qids go stale */
int rr_analyzer_is_stop(const rr_analyzer *a, const char *tok, size_t len, uint64_t h);
int rr_analyzer_stems(const rr_analyzer *a);
int rr_analyzer_prefix_stable(const rr_analyzer *a);
int rr_analyzer_has_stopwords(const rr_analyzer *a);

/* Stopwords of up to 16 ASCII letters and digits as two little-endian words (zero-padded),
 * in open addressing: a document's length leaves stopwords out at ~2 ns a token (bm25.c
 * rr_stop_packed). other: some stopword is longer or not ASCII alnum (checked the slow way). */
#define RR_KEY3_N 32768 /* rr_key3's range */
typedef struct { uint64_t a, b; } rr_stopkey;
typedef struct {
    uint64_t prefix[RR_KEY3_N / 64]; /* rr_key3 of every packed stopword */
    rr_stopkey *keys;  /* mask + 1 slots; { 0, 0 } = empty */
    uint32_t mask, probes; /* probes: the longest probe sequence any key needs */
    int other_ascii, other_nonascii;
} rr_stoptab;
const rr_stoptab *rr_analyzer_stoptab(const rr_analyzer *a); /* NULL without stopwords */

#define SETBIT(f, k) ((f)[(k) >> 6] |= 1ull << ((k) & 63))
#define HASBIT(f, k) (((f)[(k) >> 6] >> ((k) & 63)) & 1)

/* ASCII alnum (lower case or | 0x20) -> 1..36, anything else 0 */
static const uint8_t rr_alnum_idx[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9,
    ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['g'] = 17,
    ['h'] = 18, ['i'] = 19, ['j'] = 20, ['k'] = 21, ['l'] = 22, ['m'] = 23, ['n'] = 24, ['o'] = 25,
    ['p'] = 26, ['q'] = 27, ['r'] = 28, ['s'] = 29, ['t'] = 30, ['u'] = 31, ['v'] = 32, ['w'] = 33,
    ['x'] = 34, ['y'] = 35, ['z'] = 36,
};
/* (first, second, third) byte of an ASCII letter-or-digit word, 0 for none -> 0 ..
 * RR_KEY3_N - 1: the three bytes, case-folded (| 0x20), in one word, hashed by one multiply.
 * Different triples may share a key, which makes a prefilter built on it looser, never
 * wrong (a token that passes is checked exactly). */
static inline unsigned rr_key3_mix(uint32_t v) { return (unsigned)((v * 0x9E3779B1u) >> 17); }
static inline uint32_t rr_key3_fold(unsigned b) { return b ? (b | 0x20u) & 0xFFu : 0; } /* 0: no byte */
static inline unsigned rr_key3(unsigned b0, unsigned b1, unsigned b2)
{
    return rr_key3_mix(rr_key3_fold(b0) | rr_key3_fold(b1) << 8 | rr_key3_fold(b2) << 16);
}
/* the same of an ASCII alnum token as written */
static inline unsigned rr_key3_token(const unsigned char *s, size_t len)
{
    return rr_key3(s[0], len > 1 ? s[1] : 0, len > 2 ? s[2] : 0);
}
/* rr_key3_token where 4 bytes can be read at s (avail >= 4): one load, case-folded, the
 * bytes past the token (or the third) masked off (a document token's hot path) */
static inline unsigned rr_key3_token4(const unsigned char *s, size_t len, size_t avail)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (avail >= 4) {
        uint32_t w, n = len < 3 ? (uint32_t)len : 3u;
        memcpy(&w, s, 4); /* s[0] in the low byte */
        return rr_key3_mix((w | 0x20202020u) & ((1u << (8 * n)) - 1)); /* one bzhi on x86-64-v3 */
    }
#else
    (void)avail;
#endif
    return rr_key3_token(s, len);
}

static inline uint32_t rr_stop_slot(uint64_t a, uint64_t b, uint32_t mask)
{
    return (uint32_t)(((a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full)) >> 40) & mask;
}
/* Is the packed token (a, b) one of tab's keys? Branch-free over the probes. */
static inline int rr_stop_packed(const rr_stoptab *t, uint64_t a, uint64_t b)
{
    int hit = 0;
    for (uint32_t i = rr_stop_slot(a, b, t->mask), n = 0; n < t->probes; n++, i = (i + 1) & t->mask)
        hit |= (t->keys[i].a == a) & (t->keys[i].b == b);
    return hit;
}
#endif
