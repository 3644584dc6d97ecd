/* Answer mode of the request-path decoder (core/json.c): a rerank answer's item list
 * (the top-level array under "results", "data" or "rankings") read straight into a table
 * { [index + 1] = score }, without a Lua table per item. Used by U.parser
 * (lua/rerank/provider_util.lua); whatever it cannot judge exactly it marks false, and the
 * full reader (U.read) decides with its own messages. */
#include "json_int.h"

#include <math.h>
#include <string.h>

static int member_is(const jdec *d, size_t kpos, size_t klen, const char *quoted)
{
    size_t n = strlen(quoted);
    return klen == n && memcmp(d->s + kpos, quoted, n) == 0;
}

/* The members U.read (lua/rerank/provider_util.lua) takes from an item: index, then the
 * score in its order of preference. A number is kept, null or a non-number is absent; a
 * string sets *bad (U.read would convert it: Lua decides). */
static const char *const item_keys[5] = { "\"index\"", "\"relevance_score\"", "\"score\"", "\"logit\"",
                                          "\"relevanceScore\"" };
static const size_t item_klen[5] = { 7, 17, 7, 7, 16 }; /* with the quotes */

static int score_item(jdec *d, double v[5], int has[5], int *bad)
{
    d->pos++; /* '{' */
    skip_ws(d);
    if (d->pos < d->len && d->s[d->pos] == '}') { d->pos++; return OK; }
    for (;;) {
        skip_ws(d);
        if (d->pos >= d->len || d->s[d->pos] != '"') return jd_expected(d, "object key string");
        /* a member named as written in item_keys (quotes included, so the whole name) is a
         * valid string as it stands; any other name is scanned, and matches none of them
         * (names are compared as written, escapes and all) */
        int k = -1;
        for (int j = 0; j < 5 && k < 0; j++)
            if (d->len - d->pos >= item_klen[j] && memcmp(d->s + d->pos, item_keys[j], item_klen[j]) == 0) k = j;
        if (k >= 0) d->pos += item_klen[k];
        else if (jd_string(d, 0, "object key string") != OK) return FAIL;
        skip_ws(d);
        if (d->pos >= d->len || d->s[d->pos] != ':') return jd_expected(d, "colon");
        d->pos++;
        skip_ws(d);
        unsigned char c = d->pos < d->len ? d->s[d->pos] : 0;
        if (k >= 0 && (c == '-' || is_digit(c))) {
            if (jd_number(d, &v[k]) != OK) return FAIL;
            has[k] = 1; /* a repeated member: the last one wins, as in the decoded table */
        } else {
            if (jd_value(d, NULL, 0) != OK) return FAIL;
            if (k >= 0) {
                has[k] = 0;
                if (lua_type(d->L, -1) == LUA_TSTRING) *bad = 1;
            }
            lua_pop(d->L, 1);
        }
        skip_ws(d);
        if (d->pos >= d->len) return jd_expected(d, "comma or object end");
        if (d->s[d->pos] == ',') { d->pos++; continue; }
        if (d->s[d->pos] == '}') { d->pos++; return OK; }
        return jd_expected(d, "comma or object end");
    }
}

/* The array at d->pos as a table { [index + 1] = score } over the answer's n documents, or
 * false when U.read must judge it (an index out of range or twice, a score that is not
 * finite, a string member, no usable item): its error messages stay the only ones. */
int jd_score_list(jdec *d)
{
    lua_State *L = d->L;
    long n = d->n_scores, nfound = 0;
    int bad = 0;
    /* which indexes were seen: bits for answers up to SEEN_MAX documents, else the table */
    enum { SEEN_MAX = 8192 };
    uint64_t seen[SEEN_MAX / 64];
    int bits = n <= SEEN_MAX;
    if (bits) memset(seen, 0, (size_t)(n + 63) / 64 * sizeof *seen);
    lua_createtable(L, (int)n, 0);
    d->pos++;
    for (int first = 1;; first = 0) {
        skip_ws(d);
        if (first && d->pos < d->len && d->s[d->pos] == ']') { d->pos++; break; }
        if (d->pos < d->len && d->s[d->pos] == '{') {
            double v[5] = { 0 };
            int has[5] = { 0 };
            if (++d->depth > MAX_DEPTH) return jd_found(d, "value", "too many nested data structures", d->pos);
            if (score_item(d, v, has, &bad) != OK) return FAIL;
            d->depth--;
            int s = has[1] ? 1 : has[2] ? 2 : has[3] ? 3 : has[4] ? 4 : 0;
            if (has[0] && s && !bad) {
                double idx = v[0];
                if (!isfinite(v[s]) || !(idx >= 0 && idx < (double)n) || idx != floor(idx)) {
                    bad = 1;
                } else {
                    int twice;
                    size_t at = (size_t)idx;
                    if (bits) {
                        twice = (int)(seen[at / 64] >> (at % 64) & 1);
                        seen[at / 64] |= 1ull << (at % 64);
                    } else {
                        lua_rawgeti(L, -1, (int)idx + 1);
                        twice = !lua_isnil(L, -1);
                        lua_pop(L, 1);
                    }
                    if (twice) {
                        bad = 1;
                    } else {
                        lua_pushnumber(L, v[s]);
                        lua_rawseti(L, -2, (int)idx + 1);
                        nfound++;
                    }
                }
            }
        } else { /* not an object: U.read skips it */
            if (jd_value(d, NULL, 0) != OK) return FAIL;
            lua_pop(L, 1);
        }
        skip_ws(d);
        if (d->pos >= d->len) return jd_expected(d, "comma or array end");
        if (d->s[d->pos] == ',') { d->pos++; continue; }
        if (d->s[d->pos] == ']') { d->pos++; break; }
        return jd_expected(d, "comma or array end");
    }
    if (bad || (nfound == 0 && n > 0)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 0);
    }
    return OK;
}

int jd_is_list_key(const jdec *d, size_t kpos, size_t klen)
{
    return member_is(d, kpos, klen, "\"results\"") || member_is(d, kpos, klen, "\"data\"") ||
           member_is(d, kpos, klen, "\"rankings\"");
}
