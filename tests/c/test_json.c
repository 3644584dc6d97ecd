/* core/json.c: the request-path JSON scanner behind core.json_decode, called on a bare
 * lua_State: values, strict RFC 8259 rejections, lua-cjson style error positions, strict
 * UTF-8 (reported as an offset, the value still returned), document spans, the empty-array
 * metatable, escapes and numbers. */
#include "ctest.h"
#include "rerank.h"

#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

static lua_State *L;

/* core.json_decode(s, mt?, want_spans?) on a clean stack: returns how many values it pushed. */
static int decode3(const char *s, size_t len, int with_mt, int want_spans)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, rr_json_decode);
    lua_pushlstring(L, s, len);
    if (with_mt) lua_newtable(L);
    else lua_pushnil(L);
    lua_pushboolean(L, want_spans);
    if (lua_pcall(L, 3, LUA_MULTRET, 0) != 0) return -1;
    return lua_gettop(L);
}

static int decode(const char *s) { return decode3(s, strlen(s), 0, 1); }

/* nil + a message containing `part` */
static int rejects(const char *s, const char *part)
{
    int n = decode(s);
    return n == 2 && lua_isnil(L, 1) && lua_isstring(L, 2) && strstr(lua_tostring(L, 2), part) != NULL;
}

static int error_is(const char *s, const char *want)
{
    int n = decode(s);
    return n == 2 && lua_isnil(L, 1) && strcmp(lua_tostring(L, 2), want) == 0;
}

/* number field k of the table at idx */
static double num_at(int idx, int k)
{
    lua_rawgeti(L, idx, k);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static void values(void)
{
    int n = decode(" {\"a\": [1, -2.5e1, \"x\", true, false, null], \"b\": {\"c\": {}}} ");
    CHECK(n == 2 && lua_istable(L, 1) && lua_isnil(L, 2) == 0, "object with an array member: value and spans");
    lua_getfield(L, 1, "a");
    CHECK(lua_objlen(L, -1) == 6 && num_at(-1, 1) == 1 && num_at(-1, 2) == -25, "array of numbers");
    lua_rawgeti(L, -1, 3);
    CHECK(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "x") == 0, "string element");
    lua_pop(L, 1);
    lua_rawgeti(L, -1, 4);
    lua_rawgeti(L, -2, 5);
    CHECK(lua_isboolean(L, -2) && lua_toboolean(L, -2) && lua_isboolean(L, -1) && !lua_toboolean(L, -1), "true, false");
    lua_pop(L, 2);
    lua_rawgeti(L, -1, 6);
    CHECK(lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL, "null is lightuserdata NULL (cjson.null)");
    lua_settop(L, 2);

    n = decode("\"a\\n\\t\\\"\\\\\\/\\u00e9\\u20ac\\ud83d\\ude00\"");
    CHECK(n == 2 && lua_isstring(L, 1) && strcmp(lua_tostring(L, 1), "a\n\t\"\\/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") == 0,
          "escapes: control, quote, solidus, BMP, surrogate pair");
    CHECK(lua_isnil(L, 2), "a scalar document: no spans");

    n = decode("[0, -0, 0.1, 1E2, 1e-2, 123456789012345678, 2.5e+3, 1e400]");
    CHECK(n == 2 && num_at(1, 1) == 0 && num_at(1, 3) == 0.1 && num_at(1, 4) == 100 && num_at(1, 5) == 0.01,
          "numbers: zero, fractions, exponents");
    CHECK(num_at(1, 6) == 123456789012345678.0 && num_at(1, 7) == 2500, "numbers past the fast path (strtod)");
    CHECK(isinf(num_at(1, 8)), "1e400: infinity, as strtod reads it");

    static const char nul_str[] = "\"a\\u0000b\"";
    n = decode3(nul_str, sizeof nul_str - 1, 0, 1);
    size_t len = 0;
    const char *s = n == 2 ? lua_tolstring(L, 1, &len) : NULL;
    CHECK(s && len == 3 && s[1] == 0, "\\u0000 decodes to an embedded NUL");

    n = decode3("{\"a\": [], \"b\": [1]}", 19, 1, 1);
    lua_getfield(L, 1, "a");
    int has_mt = lua_getmetatable(L, -1);
    lua_settop(L, 2);
    lua_getfield(L, 1, "b");
    int b_mt = lua_getmetatable(L, -1);
    CHECK(n == 2 && has_mt && !b_mt, "empty arrays get the metatable; others do not");

    n = decode("{\"k\": 1, \"k\": 2}");
    lua_getfield(L, 1, "k");
    CHECK(n == 2 && lua_tonumber(L, -1) == 2, "a repeated key: the last value wins");
}

static void rejections(void)
{
    CHECK(rejects("", "Expected value but found T_END at character 1"), "empty text");
    CHECK(rejects("   ", "Expected value"), "whitespace only");
    CHECK(rejects("[1,]", "Expected value but found T_ARR_END at character 4"), "trailing comma in an array");
    CHECK(rejects("{\"a\":1,}", "Expected object key string but found T_OBJ_END at character 8"),
          "trailing comma in an object");
    CHECK(rejects("01", "invalid number"), "leading zero");
    CHECK(rejects("-01", "invalid number"), "negative leading zero");
    CHECK(rejects("1.", "invalid number"), "\"1.\"");
    CHECK(rejects("-", "invalid number"), "\"-\"");
    CHECK(rejects(".5", "Expected value but found invalid token"), "\".5\"");
    CHECK(rejects("+1", "Expected value but found invalid token"), "\"+1\"");
    CHECK(rejects("1e", "invalid number"), "\"1e\"");
    CHECK(rejects("0x10", "invalid number"), "hex number");
    CHECK(rejects("NaN", "invalid token"), "NaN");
    CHECK(rejects("Infinity", "invalid token"), "Infinity");
    CHECK(rejects("[tru]", "invalid token"), "truncated literal");
    CHECK(rejects("nul", "invalid token"), "\"nul\" at the end");
    CHECK(rejects("'a'", "invalid token"), "single quotes");
    CHECK(rejects("{a:1}", "Expected object key string"), "unquoted key");
    CHECK(rejects("{\"a\" 1}", "Expected colon but found T_NUMBER at character 6"), "missing colon");
    CHECK(rejects("[1 2]", "Expected comma or array end but found T_NUMBER at character 4"), "missing comma");
    CHECK(rejects("{} x", "Expected the end but found invalid token at character 4"), "trailing garbage");
    CHECK(rejects("[1] [2]", "Expected the end"), "two documents");
    CHECK(rejects("/* c */ 1", "Expected value"), "comments");
    CHECK(rejects("\"a\tb\"", "unescaped control character in string at character 3"),
          "a raw TAB inside a string (position of the byte)");
    CHECK(rejects("\"a\\x\"", "invalid escape code at character 1"), "unknown escape (position of the string)");
    CHECK(rejects("\"\\u12\"", "invalid unicode escape code"), "short \\u escape");
    CHECK(rejects("\"\\ud800\"", "invalid unicode escape code"), "lone high surrogate");
    CHECK(rejects("\"\\ud800\\u0041\"", "invalid unicode escape code"), "high surrogate + non-low");
    CHECK(rejects("\"\\udc00\"", "invalid unicode escape code"), "lone low surrogate");
    CHECK(rejects("\"abc", "unexpected end of string at character 1"), "unterminated string");
    CHECK(rejects("\"abc\\", "unexpected end of string"), "string ending in a backslash");
    CHECK(error_is("[1,2", "Expected comma or array end but found T_END at character 5"),
          "error text: lua-cjson's words, 1-based position");
    CHECK(error_is("{\"a\":[1,{\"b\":tru}]}", "Expected value but found invalid token at character 14"),
          "error position inside nested values");
    static const char nul[] = "[1,\0]";
    int n = decode3(nul, sizeof nul - 1, 0, 1);
    CHECK(n == 2 && lua_isnil(L, 1) && strstr(lua_tostring(L, 2), "at character 4"), "a NUL byte between values");

    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = 0;
    CHECK(rejects(deep, "Found too many nested data structures (65) at character 65"), "65 nested arrays refused");
    memset(deep, '[', 64); /* 64 deep */
    memset(deep + 64, ']', 64);
    deep[128] = 0;
    n = decode(deep);
    CHECK(n == 2 && lua_istable(L, 1), "64 nested arrays accepted");
}

/* text is JSON but a string holds bad UTF-8: value, spans, offset of the first bad byte */
static int utf8_bad_at(const char *s, long want)
{
    int n = decode(s);
    return n == 3 && lua_istable(L, 1) && lua_tointeger(L, 3) == want;
}

static void utf8(void)
{
    int n = decode("[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"]");
    CHECK(n == 2 && lua_istable(L, 1), "valid 2-, 3- and 4-byte sequences, U+10FFFF: no offset");
    CHECK(utf8_bad_at("[\"ab\xc3\x28\"]", 4), "bad continuation byte: its lead's offset");
    CHECK(utf8_bad_at("[\"\xc0\xaf\"]", 2), "overlong 2-byte encoding");
    CHECK(utf8_bad_at("[\"\xe0\x80\xaf\"]", 2), "overlong 3-byte encoding");
    CHECK(utf8_bad_at("[\"\xed\xa0\x80\"]", 2), "UTF-8 encoded surrogate");
    CHECK(utf8_bad_at("[\"\xf4\x90\x80\x80\"]", 2), "above U+10FFFF");
    CHECK(utf8_bad_at("[\"x\xe2\x82\"]", 3), "truncated sequence before the quote");
    CHECK(utf8_bad_at("[\"\xff\"]", 2), "0xFF byte");
    CHECK(utf8_bad_at("[\"ok\", \"\x80\", \"\xff\"]", 8), "the first bad byte of several");
    CHECK(utf8_bad_at("{\"k\xff\": 1}", 3), "bad UTF-8 in a key");
    CHECK(rejects("[\"\xff\", tru]", "invalid token"), "bad UTF-8 in invalid JSON: the JSON error wins");
}

static void spans(void)
{
    const char *body = "{\"query\": \"q\", \"documents\": [\"ab\", {\"id\": 1, \"text\": \"c\\nd\"}, 3, {\"x\": \"y\"}],"
                       " \"other\": [\"z\"]}";
    int n = decode(body);
    CHECK(n == 2 && lua_istable(L, 2), "top-level arrays get spans");
    lua_getfield(L, 2, "documents");
    int t = lua_gettop(L);
    const char *ab = strstr(body, "\"ab\""), *cd = strstr(body, "\"c\\nd\"");
    CHECK(lua_objlen(L, t) == 8, "two numbers per element");
    CHECK(num_at(t, 1) == ab - body + 1 && num_at(t, 2) == ab - body + 4, "a string element: its quotes, 1-based inclusive");
    CHECK(num_at(t, 3) == cd - body + 1 && num_at(t, 4) == cd - body + 6, "an object element: its \"text\" member (escaped)");
    CHECK(num_at(t, 5) == 0 && num_at(t, 6) == 0 && num_at(t, 7) == 0 && num_at(t, 8) == 0,
          "a number, an object without text: 0 0");
    lua_getfield(L, 2, "other");
    CHECK(lua_objlen(L, -1) == 2, "every top-level array member has spans");
    lua_getfield(L, 2, "query");
    CHECK(lua_isnil(L, -1), "a string member has none");

    n = decode3(body, strlen(body), 0, 0);
    CHECK(n == 2 && lua_istable(L, 1) && lua_isnil(L, 2), "want_spans false: no spans");

    n = decode("{\"documents\": [\"a\"], \"documents\": 5}");
    lua_getfield(L, 2, "documents");
    CHECK(n == 2 && lua_isnil(L, -1), "a repeated key voids the earlier spans");

    n = decode("{\"a\": {\"documents\": [\"x\"]}}");
    CHECK(n == 2 && lua_isnil(L, 2), "nested arrays: no spans");
}

/* answer mode: core.json_decode(s, nil, false, n) -> value, lists (core/json_answer.c) */
static int answer(const char *s, int n)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, rr_json_decode);
    lua_pushstring(L, s);
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    lua_pushinteger(L, n);
    if (lua_pcall(L, 4, LUA_MULTRET, 0) != 0) return -1;
    return lua_gettop(L);
}

static void answers(void)
{
    int n = answer("{\"id\":\"x\",\"results\":[{\"index\":2,\"relevance_score\":0.5},{\"index\":0,\"score\":0.25}],"
                   "\"meta\":{\"billed_units\":{\"search_units\":1}}}", 3);
    CHECK(n == 2 && lua_istable(L, 1) && lua_istable(L, 2), "answer mode: value and lists");
    lua_getfield(L, 1, "results");
    CHECK(lua_isnil(L, -1), "the item list is not in the value");
    lua_getfield(L, 1, "meta");
    CHECK(lua_istable(L, -1), "the other members are");
    lua_getfield(L, 2, "results");
    CHECK(lua_istable(L, -1) && num_at(-1, 3) == 0.5 && num_at(-1, 1) == 0.25, "scores at index + 1");
    lua_rawgeti(L, -1, 2);
    CHECK(lua_isnil(L, -1), "a document without an item has no score");
    lua_settop(L, 2);

    static const char *const judged[] = {
        "{\"results\":[{\"index\":3,\"score\":1}]}",                      /* index out of range */
        "{\"results\":[{\"index\":0,\"score\":1},{\"index\":0,\"score\":2}]}", /* twice */
        "{\"results\":[{\"index\":0,\"score\":1e400}]}",                  /* not finite */
        "{\"results\":[{\"index\":\"0\",\"score\":1}]}",                 /* a string */
        "{\"results\":[{\"index\":0.5,\"score\":1}]}",                    /* not an integer */
        "{\"results\":[]}",                                                /* nothing usable */
    };
    for (size_t i = 0; i < sizeof judged / sizeof judged[0]; i++) {
        n = answer(judged[i], 3);
        lua_getfield(L, 2, "results");
        CHECK(n == 2 && lua_isboolean(L, -1) && !lua_toboolean(L, -1), "left to the full reader (false)");
    }
    n = answer("{\"data\":[{\"index\":0,\"relevance_score\":null,\"logit\":-1}],\"data\":{\"a\":1}}", 1);
    lua_getfield(L, 2, "data");
    lua_getfield(L, 1, "data");
    CHECK(n == 2 && lua_isnil(L, -2) && lua_istable(L, -1), "a repeated key: the last (an object) wins");
    n = answer("{\"results\":[{\"index\":0,\"score\":1}", 1);
    CHECK(n == 2 && lua_isnil(L, 1), "invalid JSON: nil, message");
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    values();
    rejections();
    utf8();
    spans();
    answers();
    lua_close(L);
    return CT_DONE();
}
