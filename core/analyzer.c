/* Term analysis after the tokenizer: stopwords and Snowball stemming (libstemmer), with a
 * bounded word -> stem cache. One analyzer per language and stop list per Lua state (so
 * per worker): libstemmer objects are not thread-safe, and nothing here locks. */
#include "rerank.h"
#include "analyzer.h"
#include "tok.h"

#include <errno.h>
#include <stdio.h>
#include <libstemmer.h>

typedef struct { uint64_t hash; uint32_t off, len; } stopword;

struct rr_analyzer {
    struct sb_stemmer *st; /* NULL: exact words */
    int prefix_stable;
    stopword *stop;        /* open addressing; len 0 = empty slot */
    uint32_t stop_mask;
    char *stop_arena;
    rr_stoptab packed;     /* the same words as 16-byte keys (analyzer.h) */
    rr_acache_entry *cache; /* RR_ACACHE entries, allocated on first use */
    uint32_t epoch;
    char language[32];     /* the stemmer's, for twins */
    int twin;              /* a twin: the stop tables are its original's */
    rr_analyzer *twins[RR_MAX_TWINS]; /* created on first use (rr_analyzer_twin) */
};

const char **rr_analyzer_languages(void)
{
    return sb_stemmer_list();
}

/* Is name one of libstemmer's canonical algorithm names? (it also takes ISO codes: we
 * accept only what rr_analyzer_languages lists, so config errors name real choices) */
static int known_language(const char *name)
{
    for (const char **l = sb_stemmer_list(); *l; l++)
        if (strcmp(*l, name) == 0) return 1;
    return 0;
}

static int alnum_lower(const char *w, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)w[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) return 0;
    }
    return 1;
}

static int pack_stopwords(rr_analyzer *a, const char *const *stop, const size_t *lens, size_t nstop)
{
    size_t cap = 64;
    while (cap < 4 * nstop) cap <<= 1;
    rr_stoptab *t = &a->packed;
    t->keys = calloc(cap, sizeof *t->keys);
    if (!t->keys) return -1;
    t->mask = (uint32_t)(cap - 1);
    t->probes = 1;
    for (size_t i = 0; i < nstop; i++) {
        size_t len = lens[i];
        if (len == 0) continue;
        if (len > 16 || !alnum_lower(stop[i], len)) {
            for (size_t j = 0; j < len; j++) t->other_nonascii |= (unsigned char)stop[i][j] >= 0x80;
            t->other_ascii |= len > 16;
            continue;
        }
        unsigned char buf[16] = { 0 };
        memcpy(buf, stop[i], len);
        uint64_t ka, kb;
        memcpy(&ka, buf, 8);
        memcpy(&kb, buf + 8, 8);
        if (rr_stop_packed(t, ka, kb)) continue; /* listed twice */
        uint32_t s = rr_stop_slot(ka, kb, t->mask), n = 1;
        for (; t->keys[s].a || t->keys[s].b; s = (s + 1) & t->mask) n++;
        t->keys[s] = (rr_stopkey){ ka, kb };
        if (n > t->probes) t->probes = n;
        SETBIT(t->prefix, rr_key3_token((const unsigned char *)stop[i], len));
    }
    return 0;
}

const rr_stoptab *rr_analyzer_stoptab(const rr_analyzer *a)
{
    return a && a->stop ? &a->packed : NULL;
}

rr_analyzer *rr_analyzer_new(const char *language, const char *const *stop, const size_t *lens, size_t nstop)
{
    int exact = !language || strcmp(language, "none") == 0;
    if (!exact && !known_language(language)) {
        errno = ENOENT;
        return NULL;
    }
    rr_analyzer *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->epoch = 1;
    if (!exact) {
        snprintf(a->language, sizeof a->language, "%s", language);
        a->st = sb_stemmer_new(language, NULL);
        if (!a->st) goto oom;
        /* these two strip prefixes too (Indonesian me-/di-, Irish initial mutations):
         * a word's first bytes need not be its stem's */
        a->prefix_stable = strcmp(language, "indonesian") != 0 && strcmp(language, "irish") != 0;
    }
    if (nstop > 0) {
        size_t cap = 8, bytes = 0;
        while (cap < 2 * nstop) cap <<= 1;
        for (size_t i = 0; i < nstop; i++) bytes += lens[i];
        a->stop = calloc(cap, sizeof *a->stop);
        a->stop_arena = malloc(bytes ? bytes : 1);
        if (!a->stop || !a->stop_arena) goto oom;
        a->stop_mask = (uint32_t)(cap - 1);
        size_t used = 0;
        for (size_t i = 0; i < nstop; i++) {
            if (lens[i] == 0 || lens[i] > UINT32_MAX) continue;
            if (rr_analyzer_is_stop(a, stop[i], lens[i], rr_hash_bytes(stop[i], lens[i]))) continue;
            uint64_t h = rr_hash_bytes(stop[i], lens[i]);
            uint32_t s = (uint32_t)h & a->stop_mask;
            while (a->stop[s].len) s = (s + 1) & a->stop_mask;
            memcpy(a->stop_arena + used, stop[i], lens[i]);
            a->stop[s] = (stopword){ h, (uint32_t)used, (uint32_t)lens[i] };
            used += lens[i];
        }
        if (pack_stopwords(a, stop, lens, nstop) != 0) goto oom;
    }
    return a;
oom:
    rr_analyzer_free(a);
    errno = ENOMEM;
    return NULL;
}

/* Twin k of a (k < RR_MAX_TWINS) for another thread: the same language and stopwords, its
 * own stemmer and word cache (libstemmer objects and the cache's entries are written while
 * scanning). Owned by a; NULL when out of memory. */
rr_analyzer *rr_analyzer_twin(rr_analyzer *a, size_t k)
{
    if (!a || a->twin || k >= RR_MAX_TWINS) return NULL;
    if (a->twins[k]) return a->twins[k];
    rr_analyzer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    *t = *a;
    t->twin = 1;
    t->cache = NULL;
    t->epoch = 1;
    memset(t->twins, 0, sizeof t->twins);
    if (a->st && !(t->st = sb_stemmer_new(a->language, NULL))) {
        free(t);
        return NULL;
    }
    return a->twins[k] = t;
}

void rr_analyzer_free(rr_analyzer *a)
{
    if (!a) return;
    for (size_t k = 0; k < RR_MAX_TWINS; k++) rr_analyzer_free(a->twins[k]);
    sb_stemmer_delete(a->st);
    free(a->cache);
    if (a->twin) { /* the stop tables are the original's */
        free(a);
        return;
    }
    free(a->stop);
    free(a->stop_arena);
    free(a->packed.keys);
    free(a);
}

int rr_analyzer_stems(const rr_analyzer *a) { return a && a->st; }
int rr_analyzer_prefix_stable(const rr_analyzer *a) { return a && a->prefix_stable; }
int rr_analyzer_has_stopwords(const rr_analyzer *a) { return a && a->stop; }

int rr_analyzer_is_stop(const rr_analyzer *a, const char *tok, size_t len, uint64_t h)
{
    if (!a->stop) return 0;
    for (uint32_t s = (uint32_t)h & a->stop_mask;; s = (s + 1) & a->stop_mask) {
        const stopword *w = &a->stop[s];
        if (!w->len) return 0;
        if (w->hash == h && w->len == len && memcmp(a->stop_arena + w->off, tok, len) == 0) return 1;
    }
}

uint32_t rr_analyzer_next_epoch(rr_analyzer *a)
{
    if (++a->epoch == 0) { /* wrapped: no entry may look current */
        if (a->cache)
            for (size_t i = 0; i < RR_ACACHE; i++) a->cache[i].epoch = 0;
        a->epoch = 1;
    }
    return a->epoch;
}

/* Snowball's stem of a lower-cased word (valid until the next call); the word itself when
 * the stemmer is out of memory. */
static const char *stem_word(rr_analyzer *a, const char *tok, size_t len, size_t *olen)
{
    if (len > INT32_MAX) { *olen = len; return tok; }
    const sb_symbol *r = sb_stemmer_stem(a->st, (const sb_symbol *)tok, (int)len);
    if (!r) { *olen = len; return tok; }
    *olen = (size_t)sb_stemmer_length(a->st);
    return (const char *)r;
}

rr_acache_entry *rr_analyzer_cache(rr_analyzer *a)
{
    if (a->st && !a->cache) a->cache = calloc(RR_ACACHE, sizeof *a->cache);
    return a->st ? a->cache : NULL;
}

rr_acache_entry *rr_analyzer_entry(rr_analyzer *a, const char *tok, size_t len, uint64_t h)
{
    if (!a->st || len > RR_AC_WORD || !rr_analyzer_cache(a)) return NULL;
    rr_acache_entry *e = &a->cache[rr_acache_slot(h)];
    if (e->wlen == len && e->hash == h && memcmp(e->word, tok, len) == 0) return e;
    /* a miss: this word replaces whatever was in its slot (direct-mapped, bounded) */
    size_t slen;
    int stop = rr_analyzer_is_stop(a, tok, len, h);
    const char *st = stop ? tok : stem_word(a, tok, len, &slen);
    if (stop) slen = len;
    if (slen > RR_AC_WORD || slen == 0) {
        e->wlen = 0; /* cannot hold it: leave the slot empty */
        return NULL;
    }
    e->hash = h;
    e->wlen = (uint8_t)len;
    memset(e->word, 0, sizeof e->word);
    memcpy(e->word, tok, len);
    e->slen = (uint8_t)slen;
    memcpy(e->stem, st, slen);
    e->shash = rr_hash_bytes(st, slen);
    e->stop = (uint8_t)stop;
    e->epoch = 0;
    e->qid = -1;
    return e;
}

int rr_analyze(rr_analyzer *a, const char *tok, size_t len, const char **out, size_t *olen)
{
    uint64_t h = rr_hash_bytes(tok, len);
    if (!a->st) {
        if (rr_analyzer_is_stop(a, tok, len, h)) return 0;
        *out = tok;
        *olen = len;
        return 1;
    }
    rr_acache_entry *e = rr_analyzer_entry(a, tok, len, h);
    if (e) {
        if (e->stop) return 0;
        *out = e->stem;
        *olen = e->slen;
        return 1;
    }
    if (rr_analyzer_is_stop(a, tok, len, h)) return 0;
    *out = stem_word(a, tok, len, olen);
    return 1;
}
