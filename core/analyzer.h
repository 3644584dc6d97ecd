/* analyzer.c's internals for bm25.c: the per-worker word -> stem cache, read on the
 * document path without copying the stem. */
#ifndef RR_ANALYZER_H
#define RR_ANALYZER_H
#include <stdint.h>
#include <stddef.h>

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
uint32_t rr_analyzer_next_epoch(rr_analyzer *a); /* a new scoring pass: cached qids go stale */
int rr_analyzer_is_stop(const rr_analyzer *a, const char *tok, size_t len, uint64_t h);
int rr_analyzer_stems(const rr_analyzer *a);
int rr_analyzer_prefix_stable(const rr_analyzer *a);
int rr_analyzer_has_stopwords(const rr_analyzer *a);
#endif
