/* The request-path JSON decoder's state and scanner functions (core/json.c), shared with
 * its answer mode (core/json_answer.c). Internal to those two files. */
#ifndef RR_JSON_INT_H
#define RR_JSON_INT_H

#include "rerank.h"

#include <stddef.h>

#define MAX_DEPTH 64
#define MAX_SPAN_KEYS 4

typedef struct {
    lua_State *L;
    const unsigned char *s;
    size_t len, pos;
    int depth;
    int mt_idx;               /* stack index of the empty-array metatable (0: none) */
    size_t utf8_bad;          /* first invalid UTF-8 byte inside a string, or len */
    char err[200];
    char *buf;                /* unescape scratch: grows, owned by a userdata at buf_idx, */
    size_t cap;               /* or with tls by this thread's reused buffer (json.c grow) */
    int buf_idx, tls;
    /* document spans: for each top-level key whose value is an array, the [start, end]
     * (1-based, inclusive, quotes included) of each element's string, or of its "text"
     * member when the element is an object; 0 0 when neither */
    int span_keys, want_spans;
    struct { size_t kpos, klen, first, count; } keys[MAX_SPAN_KEYS];
    size_t *spans;            /* pairs; scratch owned like buf, by a userdata at spans_idx */
    size_t nspans, spans_cap;
    int spans_idx;
    /* answer mode (n_scores >= 0): top-level arrays under "results", "data" or "rankings"
     * become score tables in the table at lists_idx instead of values of the object */
    long n_scores;
    int lists_idx;
    int lazy_idx;             /* stack index of core.json_lazy */
    /* lazy texts: the top-level key (lazy_key, lazy_klen bytes between its quotes) whose
     * array's string elements without escapes are pushed as RR_JSON_LAZY (their span tells
     * where the text lies), not as Lua strings; lazy_next: the array about to be parsed is it */
    const char *lazy_key;
    size_t lazy_klen;
    int lazy_next;
} jdec;

enum { OK = 0, FAIL = -1 };

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline void skip_ws(jdec *d)
{
    while (d->pos < d->len) {
        unsigned char c = d->s[d->pos];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return;
        d->pos++;
    }
}

int jd_expected(jdec *d, const char *what);
int jd_found(jdec *d, const char *what, const char *thing, size_t at);
/* the string opening at d->pos: validated, pushed when push != 0 */
int jd_string(jdec *d, int push, const char *ctx);
/* the number at d->pos, not pushed */
int jd_number(jdec *d, double *out);
/* one value pushed; span/spanned: document spans (core/json.c) */
int jd_value(jdec *d, size_t *span, int spanned);

/* answer mode (core/json_answer.c) */
int jd_is_list_key(const jdec *d, size_t kpos, size_t klen);
int jd_score_list(jdec *d);

#endif
