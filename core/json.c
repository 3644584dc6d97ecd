/* Request-path JSON: one validating pass over a request body (RFC 8259 and strict UTF-8)
 * that builds the Lua value and records where each document's text lies in the body
 * (json_splice.c copies those already-escaped, already-validated bytes into other bodies).
 *
 * Error messages follow lua-cjson's ("Expected comma or array end but found T_END at
 * character 41", 1-based) so the API's documented errors stay the same; the UTF-8 check
 * reports the first bad byte only when the text is otherwise valid JSON (what the API did
 * when it decoded first and checked UTF-8 second). Stricter than lua-cjson 2.1.0 where the
 * RFC is: unescaped control characters in strings, leading zeros, "1." and "-" are refused. */
#include "json_int.h"
#include "buf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif


static const char *token_name(const jdec *d, size_t at)
{
    if (at >= d->len) return "T_END";
    switch (d->s[at]) {
    case '{': return "T_OBJ_BEGIN";
    case '}': return "T_OBJ_END";
    case '[': return "T_ARR_BEGIN";
    case ']': return "T_ARR_END";
    case ',': return "T_COMMA";
    case ':': return "T_COLON";
    case '"': return "T_STRING";
    case 't': case 'f': return "T_BOOLEAN";
    case 'n': return "T_NULL";
    default:
        if (d->s[at] == '-' || is_digit(d->s[at])) return "T_NUMBER";
        return "invalid token";
    }
}

int jd_expected(jdec *d, const char *what)
{
    snprintf(d->err, sizeof d->err, "Expected %s but found %s at character %zu", what, token_name(d, d->pos),
             d->pos + 1);
    return FAIL;
}

int jd_found(jdec *d, const char *what, const char *thing, size_t at)
{
    snprintf(d->err, sizeof d->err, "Expected %s but found %s at character %zu", what, thing, at + 1);
    return FAIL;
}


/* The scratch of a decode: per-thread buffers reused across requests, so a request's decode
 * leaves no scratch for the collector (with a thousand documents its spans grew through
 * 30 KB of userdata). A decode that starts while another is under way on the thread (a
 * finalizer run by an allocation) uses userdata, as would every decode after a raise
 * from inside Lua's API (out of memory) left tls_busy set. */
static _Thread_local struct { char *p; size_t cap; } tls_scratch[2]; /* buf, spans */
static _Thread_local int tls_busy;

static void *grow(jdec *d, int idx, void *old, size_t bytes)
{
    if (d->tls) { /* realloc keeps what the buffer held */
        int which = idx == d->spans_idx;
        if (rr_buf_reserve(&tls_scratch[which].p, &tls_scratch[which].cap, bytes, 256, (size_t)-1) != 0) {
            tls_busy = 0; /* this decode owned the buffers: the raise ends it */
            luaL_error(d->L, "json: out of memory (%d bytes)", (int)bytes);
        }
        return tls_scratch[which].p;
    }
    /* the new block lives in a userdata replacing the old one at idx: a raise frees it */
    void *p = lua_newuserdata(d->L, bytes);
    if (old) memcpy(p, old, lua_objlen(d->L, idx));
    lua_replace(d->L, idx);
    return p;
}

static int reserve(jdec *d, size_t need)
{
    if (need <= d->cap) return OK;
    size_t cap = d->cap ? d->cap : 256;
    while (cap < need) cap *= 2;
    d->buf = grow(d, d->buf_idx, d->buf, cap);
    d->cap = cap;
    return OK;
}

const char rr_json_lazy_tag = 'L';

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the leading run of plain string bytes (no quote, backslash, control byte or
 * byte >= 0x80): 64 then 16 bytes per step with SSE2 (document text is mostly such runs). */
#ifdef __SSE2__
static inline __m128i stop16(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    /* signed compare: bytes >= 0x80 are negative, so they count as "< 0x20" too */
    return _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
}
#endif
static inline size_t plain_run(const unsigned char *p, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    for (; i + 64 <= n; i += 64) { /* one test per 64 bytes; the 16-byte steps find the byte */
        __m128i a = _mm_or_si128(stop16(p + i), stop16(p + i + 16));
        __m128i b = _mm_or_si128(stop16(p + i + 32), stop16(p + i + 48));
        if (_mm_movemask_epi8(_mm_or_si128(a, b))) break;
    }
    for (; i + 16 <= n; i += 16) {
        int m = _mm_movemask_epi8(stop16(p + i));
        if (m) return i + (size_t)__builtin_ctz((unsigned)m);
    }
#endif
    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') i++;
    return i;
}

/* The string opening at d->pos: validated, pushed (push != 0), d->pos after the quote. */
int jd_string(jdec *d, int push, const char *ctx)
{
    const unsigned char *s = d->s;
    size_t open = d->pos, i = open + 1, len = d->len;
    int escapes = 0, high = 0;
    for (;;) {
        i += plain_run(s + i, len - i);
        if (i >= len) return jd_found(d, ctx, "unexpected end of string", open);
        unsigned char c = s[i];
        if (c == '"') break;
        if (c == '\\') {
            escapes = 1;
            if (i + 1 >= len) return jd_found(d, ctx, "unexpected end of string", open);
            unsigned char e = s[i + 1];
            if (e == 'u') {
                unsigned cp;
                if (i + 6 > len || hex4(s + i + 2, &cp) != 0) return jd_found(d, ctx, "invalid unicode escape code", open);
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (i + 12 > len || s[i + 6] != '\\' || s[i + 7] != 'u' || hex4(s + i + 8, &lo) != 0 ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return jd_found(d, ctx, "invalid unicode escape code", open);
                    i += 12;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return jd_found(d, ctx, "invalid unicode escape code", open);
                } else {
                    i += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0) return jd_found(d, ctx, "invalid escape code", open);
            i += 2;
            continue;
        }
        if (c < 0x20) return jd_found(d, ctx, "unescaped control character in string", i);
        if (c >= 0x80) { /* validated below, in one pass over the whole string */
            high = 1;
            while (i < len && s[i] >= 0x80) i++;
            continue;
        }
        i++;
    }
    size_t close = i;
    if (high && d->utf8_bad == d->len) {
        size_t bad = rr_utf8_invalid_at(s + open + 1, close - open - 1);
        if (bad != close - open - 1) d->utf8_bad = open + 1 + bad;
    }
    d->pos = close + 1;
    if (!push) return OK;
    if (!escapes && push == 2) {
        lua_pushvalue(d->L, d->lazy_idx);
        return OK;
    }
    if (!escapes) {
        lua_pushlstring(d->L, (const char *)s + open + 1, close - open - 1);
        return OK;
    }
    reserve(d, close - open);
    char *o = d->buf;
    size_t w = 0;
    for (size_t k = open + 1; k < close;) {
        unsigned char c = s[k];
        if (c != '\\') { o[w++] = (char)c; k++; continue; }
        unsigned char e = s[k + 1];
        switch (e) {
        case 'b': o[w++] = '\b'; k += 2; break;
        case 'f': o[w++] = '\f'; k += 2; break;
        case 'n': o[w++] = '\n'; k += 2; break;
        case 'r': o[w++] = '\r'; k += 2; break;
        case 't': o[w++] = '\t'; k += 2; break;
        case 'u': {
            unsigned cp, lo;
            hex4(s + k + 2, &cp);
            k += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                hex4(s + k + 2, &lo);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                k += 6;
            }
            w += put_utf8(o + w, cp); /* never longer than the escape it replaces */
            break;
        }
        default: o[w++] = (char)e; k += 2; break;
        }
    }
    lua_pushlstring(d->L, o, w);
    return OK;
}

/* A JSON number at d->pos (RFC 8259 grammar), validated and converted in one pass.
 * Clinger's fast path: a mantissa of at most 15 digits (exact in a double) times or divided
 * by an exact power of ten (<= 1e22) is correctly rounded by one IEEE operation. That covers
 * integers and the scores upstreams send; anything else goes to strtod. */
int jd_number(jdec *d, double *out)
{
    static const double pow10[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
    const unsigned char *s = d->s;
    size_t start = d->pos, i = start, len = d->len;
    int neg = 0, digits = 0, exp10 = 0, fast = 1;
    uint64_t m = 0;
    if (i < len && s[i] == '-') { neg = 1; i++; }
    if (i >= len || !is_digit(s[i])) return jd_found(d, "value", "invalid number", start);
    if (s[i] == '0') i++;
    else for (; i < len && is_digit(s[i]); i++) {
        if (++digits > 15) fast = 0;
        else m = m * 10 + (uint64_t)(s[i] - '0');
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len || !is_digit(s[i])) return jd_found(d, "value", "invalid number", start);
        for (; i < len && is_digit(s[i]); i++) {
            exp10--;
            if (m == 0 && s[i] == '0') continue; /* leading zeros are not significant */
            if (++digits > 15) fast = 0;
            else m = m * 10 + (uint64_t)(s[i] - '0');
        }
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0, e = 0;
        if (i < len && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        if (i >= len || !is_digit(s[i])) return jd_found(d, "value", "invalid number", start);
        for (; i < len && is_digit(s[i]); i++) {
            if (e > 10000) fast = 0;
            else e = e * 10 + (s[i] - '0');
        }
        exp10 += eneg ? -e : e;
    }
    if (i < len && (is_digit(s[i]) || s[i] == '.' || s[i] == 'x' || s[i] == 'X'))
        return jd_found(d, "value", "invalid number", start); /* "01", "0x1" */
    double v = (double)m;
    if (fast && m == 0) v = 0;
    else if (fast && exp10 >= 0 && exp10 <= 22) v *= pow10[exp10];
    else if (fast && exp10 < 0 && exp10 >= -22) v /= pow10[-exp10];
    else fast = 0;
    if (fast && !isinf(v)) {
        v = neg ? -v : v;
    } else { /* Clinger's fast path does not apply: strtod rounds it */
        size_t n = i - start;
        char tmp[64], *p = tmp;
        if (n >= sizeof tmp) {
            reserve(d, n + 1);
            p = d->buf;
        }
        memcpy(p, s + start, n);
        p[n] = 0;
        v = strtod(p, NULL);
    }
    *out = v;
    d->pos = i;
    return OK;
}

static int parse_number(jdec *d)
{
    double v;
    if (jd_number(d, &v) != OK) return FAIL;
    lua_pushnumber(d->L, v);
    return OK;
}

static int literal(jdec *d, const char *word, size_t n)
{
    if (d->len - d->pos < n || memcmp(d->s + d->pos, word, n) != 0) return jd_found(d, "value", "invalid token", d->pos);
    d->pos += n;
    return OK;
}



static void add_span(jdec *d, size_t a, size_t b)
{
    if (d->nspans + 2 > d->spans_cap) {
        size_t cap = d->spans_cap ? d->spans_cap * 2 : 256;
        d->spans = grow(d, d->spans_idx, d->spans, cap * sizeof(size_t));
        d->spans_cap = cap;
    }
    d->spans[d->nspans++] = a;
    d->spans[d->nspans++] = b;
}

/* top: the body's object (its array members get spans); span: where to record this
 * object's "text" member when the object is an element of a spanned array */
static int parse_object(jdec *d, int top, size_t *span)
{
    lua_State *L = d->L;
    lua_createtable(L, 0, 4); /* room for the usual few members: no rehash on the first */
    d->pos++;
    skip_ws(d);
    if (d->pos < d->len && d->s[d->pos] == '}') {
        d->pos++;
        return OK;
    }
    for (;;) {
        skip_ws(d);
        if (d->pos >= d->len || d->s[d->pos] != '"') return jd_expected(d, "object key string");
        size_t kpos = d->pos;
        if (jd_string(d, 1, "object key string") != OK) return FAIL;
        size_t klen = d->pos - kpos;
        skip_ws(d);
        if (d->pos >= d->len || d->s[d->pos] != ':') return jd_expected(d, "colon");
        d->pos++;
        skip_ws(d);
        int spanned = 0;
        if (top) /* a repeated key: the last value wins, so the earlier spans are void */
            for (int k = 0; k < d->span_keys; k++)
                if (d->keys[k].klen == klen && memcmp(d->s + d->keys[k].kpos, d->s + kpos, klen) == 0)
                    d->keys[k].count = 0;
        if (top && d->want_spans && d->pos < d->len && d->s[d->pos] == '[' && d->span_keys < MAX_SPAN_KEYS) {
            spanned = 1;
            d->keys[d->span_keys].kpos = kpos;
            d->keys[d->span_keys].klen = klen;
            d->keys[d->span_keys].first = d->nspans;
            d->span_keys++;
        }
        if (top && d->n_scores >= 0 && jd_is_list_key(d, kpos, klen)) {
            int list = d->pos < d->len && d->s[d->pos] == '[';
            if (list && ++d->depth > MAX_DEPTH) return jd_found(d, "value", "too many nested data structures", d->pos);
            if ((list ? jd_score_list(d) : jd_value(d, NULL, 0)) != OK) return FAIL;
            d->depth -= list;
            /* the last of repeated keys wins: clear the key where the other kind went */
            lua_pushvalue(L, -2);
            lua_pushnil(L);
            lua_rawset(L, list ? -5 : d->lists_idx);
            lua_rawset(L, list ? d->lists_idx : -3);
        } else {
        int is_text = span && klen == 6 && memcmp(d->s + kpos, "\"text\"", 6) == 0;
        d->lazy_next = spanned && d->lazy_key && klen == d->lazy_klen + 2 &&
                       memcmp(d->s + kpos + 1, d->lazy_key, d->lazy_klen) == 0;
        if (jd_value(d, is_text ? span : NULL, spanned) != OK) return FAIL;
        if (spanned) d->keys[d->span_keys - 1].count = (d->nspans - d->keys[d->span_keys - 1].first) / 2;
        lua_rawset(L, -3);
        }
        skip_ws(d);
        if (d->pos >= d->len) return jd_expected(d, "comma or object end");
        if (d->s[d->pos] == ',') { d->pos++; continue; }
        if (d->s[d->pos] == '}') { d->pos++; return OK; }
        return jd_expected(d, "comma or object end");
    }
}

static int parse_array(jdec *d, int spanned)
{
    lua_State *L = d->L;
    int lazy = d->lazy_next;
    d->lazy_next = 0;
    lua_newtable(L);
    d->pos++;
    skip_ws(d);
    if (d->pos < d->len && d->s[d->pos] == ']') {
        d->pos++;
        if (d->mt_idx) {
            lua_pushvalue(L, d->mt_idx);
            lua_setmetatable(L, -2);
        }
        return OK;
    }
    for (int n = 1;; n++) {
        skip_ws(d);
        size_t span[2] = { 0, 0 };
        if (lazy && d->pos < d->len && d->s[d->pos] == '"') { /* a string document: maybe lazy */
            size_t at = d->pos;
            if (jd_string(d, 2, "value") != OK) return FAIL;
            span[0] = at + 1;
            span[1] = d->pos;
        } else if (jd_value(d, spanned ? span : NULL, 0) != OK) {
            return FAIL;
        }
        if (spanned) add_span(d, span[0], span[1]);
        lua_rawseti(L, -2, n);
        skip_ws(d);
        if (d->pos >= d->len) return jd_expected(d, "comma or array end");
        if (d->s[d->pos] == ',') { d->pos++; continue; }
        if (d->s[d->pos] == ']') { d->pos++; return OK; }
        return jd_expected(d, "comma or array end");
    }
}

/* span != NULL: record where this string (or an object's "text" member) lies;
 * spanned: this is an array whose elements get spans */
int jd_value(jdec *d, size_t *span, int spanned)
{
    if (d->pos >= d->len) return jd_expected(d, "value");
    unsigned char c = d->s[d->pos];
    switch (c) {
    case '"': {
        size_t at = d->pos;
        if (jd_string(d, 1, "value") != OK) return FAIL;
        if (span) { span[0] = at + 1; span[1] = d->pos; }
        return OK;
    }
    case '{':
    case '[': {
        if (++d->depth > MAX_DEPTH) {
            snprintf(d->err, sizeof d->err, "Found too many nested data structures (%d) at character %zu", d->depth,
                     d->pos + 1);
            return FAIL;
        }
        if (!lua_checkstack(d->L, 4)) {
            snprintf(d->err, sizeof d->err, "too deeply nested");
            return FAIL;
        }
        int rc = c == '{' ? parse_object(d, d->depth == 1, span) : parse_array(d, spanned);
        d->depth--;
        return rc;
    }
    case 't': if (literal(d, "true", 4) != OK) return FAIL; lua_pushboolean(d->L, 1); return OK;
    case 'f': if (literal(d, "false", 5) != OK) return FAIL; lua_pushboolean(d->L, 0); return OK;
    case 'n': if (literal(d, "null", 4) != OK) return FAIL; lua_pushlightuserdata(d->L, NULL); return OK;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(d);
        return jd_expected(d, "value");
    }
}

/* core.json_decode(s [, empty_array_mt [, want_spans = true [, n [, lazy_key]]]]) -> value, spans|nil [, utf8_bad] | nil, message
 * With n (a rerank answer over n documents): -> value, lists, where each top-level array
 * under "results", "data" or "rankings" is in lists (not in value) as { [index + 1] = score }
 * or false (see parse_score_list).
 * Empty arrays get empty_array_mt; null is lightuserdata NULL (cjson.null). spans, when the
 * value is an object with array members: { [key] = { s1, e1, s2, e2, ... } }, 1-based
 * inclusive byte ranges of each element's JSON string (quotes included) or of an object
 * element's "text" member; 0, 0 for other elements. utf8_bad: the 0-based offset of the
 * first invalid UTF-8 byte when the text is JSON but a string is not UTF-8 (the value is
 * still returned, so the caller can answer in the shape the client spoke).
 * lazy_key (with spans): the string elements without escapes of the top-level array under
 * that key come back as core.json_lazy (a light userdata), not as strings: their spans say
 * where their text lies, byte for byte (core.json_text makes the string when one is needed). */
static int decode(lua_State *L, const char *s, size_t len, int tls)
{
    jdec d;
    memset(&d, 0, sizeof d);
    d.L = L;
    d.tls = tls;
    d.s = (const unsigned char *)s;
    d.len = len;
    d.utf8_bad = len;
    if (lua_istable(L, 2)) d.mt_idx = 2;
    d.want_spans = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
    d.n_scores = -1;
    char lazy_key[64];
    if (lua_type(L, 5) == LUA_TSTRING && d.want_spans) { /* copied: the stack is cut below */
        const char *k = lua_tolstring(L, 5, &d.lazy_klen);
        if (d.lazy_klen < sizeof lazy_key) {
            memcpy(lazy_key, k, d.lazy_klen);
            d.lazy_key = lazy_key;
        }
    }
    if (lua_type(L, 4) == LUA_TNUMBER) { /* answer mode: no spans, score lists */
        lua_Number n = lua_tonumber(L, 4);
        d.n_scores = n > 0 ? (n < 1e7 ? (long)n : 10000000) : 0;
        d.want_spans = 0;
        d.lazy_key = NULL;
    }
    lua_settop(L, 2);
    lua_pushnil(L); /* 3: unescape scratch */
    lua_pushnil(L); /* 4: spans scratch */
    lua_newtable(L); /* 5: score lists (answer mode) */
    lua_pushlightuserdata(L, (void *)&rr_json_lazy_tag); /* 6: copied per lazy text (no intern lookup each) */
    d.buf_idx = 3;
    d.spans_idx = 4;
    d.lists_idx = 5;
    d.lazy_idx = 6;
    skip_ws(&d);
    int rc = jd_value(&d, NULL, 0);
    if (rc == OK) {
        skip_ws(&d);
        if (d.pos < d.len) rc = jd_expected(&d, "the end");
    }
    if (rc != OK) {
        lua_pushnil(L);
        lua_pushstring(L, d.err);
        return 2;
    }
    if (d.n_scores >= 0) {
        lua_pushvalue(L, d.lists_idx);
        return 2;
    }
    if (d.span_keys == 0) lua_pushnil(L);
    else lua_createtable(L, 0, d.span_keys);
    for (int k = 0; k < d.span_keys; k++) {
        if (d.keys[k].count == 0) continue;
        lua_pushlstring(L, s + d.keys[k].kpos + 1, d.keys[k].klen - 2); /* escaped keys: raw bytes, never a real field */
        size_t n = d.keys[k].count * 2;
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            lua_pushinteger(L, (lua_Integer)d.spans[d.keys[k].first + i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        lua_rawset(L, -3);
    }
    if (d.utf8_bad == len) return 2;
    lua_pushinteger(L, (lua_Integer)d.utf8_bad);
    return 3;
}

int rr_json_decode(lua_State *L)
{
    size_t len;
    /* a string, or the daemon's request body; a wrong argument raises here, before the
     * buffers are taken */
    const char *s = rr_check_bytes(L, 1, &len);
    int tls = !tls_busy;
    tls_busy = 1;
    int n = decode(L, s, len, tls);
    if (tls) {
        tls_busy = 0;
        for (int k = 0; k < 2; k++) rr_buf_trim(&tls_scratch[k].p, &tls_scratch[k].cap, RR_SCRATCH_KEEP);
    }
    return n;
}

/* core.json_text(src, js, je) -> the text of the JSON string whose quotes are at the 1-based
 * positions js and je of src (a span of json_decode); raises when that is not one string. */
int rr_json_text(lua_State *L)
{
    size_t len;
    const char *s = rr_check_bytes(L, 1, &len);
    lua_Integer js = luaL_checkinteger(L, 2), je = luaL_checkinteger(L, 3);
    if (js < 1 || je <= js || (size_t)je > len || s[js - 1] != '"' || s[je - 1] != '"')
        return luaL_error(L, "json_text: %d..%d is not a string of the body", (int)js, (int)je);
    const char *p = s + js, *q = s + je - 1;
    if (!memchr(p, '\\', (size_t)(q - p))) { /* the common case: the bytes are the text */
        lua_pushlstring(L, p, (size_t)(q - p));
        return 1;
    }
    jdec d;
    memset(&d, 0, sizeof d);
    d.L = L;
    d.s = (const unsigned char *)s + js - 1;
    d.len = (size_t)(je - js + 1);
    d.utf8_bad = d.len;
    lua_settop(L, 3);
    lua_pushnil(L); /* 4: unescape scratch */
    d.buf_idx = 4;
    if (jd_string(&d, 1, "value") != OK || d.pos != d.len) return luaL_error(L, "json_text: %s", d.err);
    return 1;
}
