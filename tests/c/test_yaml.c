/* core/yaml.c + yaml_scalar.c: YAML text -> Lua values and "line:col" marks, on a bare
 * lua_State: core-schema scalars, tags, nulls, anchors/aliases, merge keys, ${VAR}
 * interpolation, and the refusals (duplicate keys, two documents, alias bombs, depth,
 * bad references) with their "name:line:col: message" positions. */
#include "ctest.h"
#include "rerank.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

static lua_State *L;

/* Parses text on a clean stack: 1 = value, 2 = marks; returns 1 when it parsed. */
static int load(const char *text)
{
    lua_settop(L, 0);
    int n = rr_yaml_push(L, text, strlen(text), "t.yaml");
    return n == 2 && lua_gettop(L) == 2 && !(lua_isnil(L, 1) && lua_isstring(L, 2));
}

/* The load fails with a message containing part. */
static int fails(const char *text, const char *part)
{
    lua_settop(L, 0);
    rr_yaml_push(L, text, strlen(text), "t.yaml");
    return lua_gettop(L) == 2 && lua_isnil(L, 1) && lua_isstring(L, 2) && strstr(lua_tostring(L, 2), part) != NULL;
}

/* value 1's field path ("a.b") pushed; dotted names only */
static int push_path(const char *path)
{
    lua_pushvalue(L, 1);
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok; tok = strtok(NULL, ".")) {
        if (!lua_istable(L, -1)) return 0;
        char *end;
        long i = strtol(tok, &end, 10);
        if (*end == 0) lua_rawgeti(L, -1, (int)i);
        else lua_getfield(L, -1, tok);
        lua_remove(L, -2);
    }
    return 1;
}

static int str_is(const char *path, const char *want)
{
    int top = lua_gettop(L);
    int ok = push_path(path) && lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), want) == 0;
    lua_settop(L, top);
    return ok;
}

static int num_is(const char *path, double want)
{
    int top = lua_gettop(L);
    int ok = push_path(path) && lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == want;
    lua_settop(L, top);
    return ok;
}

static int type_is(const char *path, int type)
{
    int top = lua_gettop(L);
    int ok = push_path(path) && lua_type(L, -1) == type;
    lua_settop(L, top);
    return ok;
}

static int mark_is(const char *path, const char *want)
{
    lua_getfield(L, 2, path);
    int ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), want) == 0;
    lua_pop(L, 1);
    return ok;
}

static void scalars(void)
{
    int ok = load("server:\n"
                  "  listen: 127.0.0.1:8080\n"
                  "  workers: 4\n"
                  "  hex: 0x1F\n"
                  "  oct: 0o17\n"
                  "  ratio: -1.5e2\n"
                  "  inf: .inf\n"
                  "  on: true\n"
                  "  off: False\n"
                  "  nothing: null\n"
                  "  tilde: ~\n"
                  "  empty:\n"
                  "  quoted: \"42\"\n"
                  "  single: 'true'\n"
                  "  word: yes\n"
                  "  block: |\n"
                  "    line\n"
                  "  tagged_str: !!str 12\n"
                  "  tagged_int: !!int \"7\"\n"
                  "list: [1, null, ~, two]\n");
    CHECK(ok && lua_istable(L, 1) && lua_istable(L, 2), "a mapping: value and marks");
    CHECK(str_is("server.listen", "127.0.0.1:8080"), "host:port stays a string");
    CHECK(num_is("server.workers", 4) && num_is("server.hex", 31) && num_is("server.oct", 15), "ints: decimal, 0x, 0o");
    CHECK(num_is("server.ratio", -150), "float with an exponent");
    CHECK(num_is("server.inf", HUGE_VAL), ".inf");
    CHECK(type_is("server.on", LUA_TBOOLEAN) && type_is("server.off", LUA_TBOOLEAN), "true, False: booleans");
    CHECK(type_is("server.nothing", LUA_TNIL) && type_is("server.tilde", LUA_TNIL) && type_is("server.empty", LUA_TNIL),
          "null, ~ and empty values: the key is absent");
    CHECK(str_is("server.quoted", "42") && str_is("server.single", "true"), "quoted scalars stay strings");
    CHECK(str_is("server.word", "yes"), "yes is a string (YAML 1.2 core schema)");
    CHECK(str_is("server.block", "line\n"), "block scalar");
    CHECK(str_is("server.tagged_str", "12") && num_is("server.tagged_int", 7), "!!str and !!int tags");
    CHECK(num_is("list.1", 1) && str_is("list.4", "two"), "flow sequence");
    CHECK(type_is("list.2", LUA_TLIGHTUSERDATA) && type_is("list.3", LUA_TLIGHTUSERDATA),
          "null in a sequence: lightuserdata NULL");
    CHECK(mark_is("", "1:1") && mark_is("server", "2:3") && mark_is("server.workers", "3:12"),
          "marks: line:col of each node (1-based)");
    CHECK(mark_is("server.workers!key", "3:3"), "marks: the key's own place (path!key)");
    CHECK(mark_is("list[3]", "20:20"), "marks: sequence items as path[i] (0-based)");

    CHECK(load("") && lua_islightuserdata(L, 1) && mark_is("", "1:1"), "an empty document: NULL");
    CHECK(load("# only a comment\n") && lua_islightuserdata(L, 1), "comments only: NULL");
    CHECK(load("just text") && lua_isstring(L, 1), "a scalar document");
    CHECK(fails("a: !!int nope\n", "t.yaml:1:4: invalid !!int value \"nope\""), "!!int on a non-integer");
    CHECK(fails("a: !custom x\n", "unsupported tag !custom"), "an unknown tag");
}

static void structure(void)
{
    int ok = load("base: &b\n"
                  "  timeout: 5\n"
                  "  retries: 2\n"
                  "extra: &e\n"
                  "  retries: 9\n"
                  "  hedge: 1\n"
                  "one:\n"
                  "  <<: *b\n"
                  "  timeout: 7\n"
                  "two:\n"
                  "  <<: [*b, *e]\n"
                  "copy: *b\n");
    CHECK(ok, "anchors, aliases and merge keys parse");
    CHECK(num_is("one.timeout", 7) && num_is("one.retries", 2), "merge: own keys win over merged ones");
    CHECK(num_is("two.retries", 2) && num_is("two.hedge", 1), "merge list: earlier mappings win");
    CHECK(num_is("copy.timeout", 5), "alias: a copy of the anchored value");
    lua_getfield(L, 1, "copy");
    lua_getfield(L, 1, "base");
    CHECK(!lua_rawequal(L, -1, -2), "alias: a deep copy, not the same table");

    CHECK(fails("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key \"a\""), "duplicate keys: refused at the second");
    CHECK(fails("a: 1\n---\nb: 2\n", "only one YAML document"), "two documents refused");
    CHECK(fails("a: *nope\n", "unknown alias"), "an unknown alias");
    CHECK(fails("a: [1\n", "t.yaml:"), "libyaml syntax errors carry name:line:col");
    CHECK(fails("a:\n  b: 1\n c: 2\n", "t.yaml:3:"), "bad indentation: the line of the problem");
    CHECK(fails("? [1, 2]\n: v\n", "only scalar mapping keys"), "a sequence as a key");
    CHECK(fails("<<: 5\n", "merge key (<<) must be a mapping"), "merge of a scalar");
    CHECK(fails("a: \"\xff\"\n", "t.yaml:1:5"), "invalid UTF-8: reader error at its place");

    /* nesting: 64 levels pass, 65 do not */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = 0;
    CHECK(load(deep), "64 nested sequences");
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = 0;
    CHECK(fails(deep, "nesting deeper than 64 levels"), "65 nested sequences refused");

    /* an alias bomb: each level doubles, 2^20 nodes from a few hundred bytes */
    char bomb[2048];
    size_t n = (size_t)snprintf(bomb, sizeof bomb, "a0: &a0 [x, x]\n");
    for (int i = 1; i <= 20; i++)
        n += (size_t)snprintf(bomb + n, sizeof bomb - n, "a%d: &a%d [*a%d, *a%d]\n", i, i, i - 1, i - 1);
    CHECK(fails(bomb, "expands to more than 100000 nodes"), "alias bomb refused by the node count");
}

static void interpolation(void)
{
    setenv("RR_T_HOST", "db.local", 1);
    setenv("RR_T_EMPTY", "", 1);
    setenv("RR_T_PORT", "6379", 1);
    unsetenv("RR_T_UNSET");
    int ok = load("host: ${RR_T_HOST}\n"
                  "url: redis://${RR_T_HOST}:${RR_T_PORT}/0\n"
                  "port: ${RR_T_PORT}\n"
                  "quoted_port: \"${RR_T_PORT}\"\n"
                  "dflt: ${RR_T_UNSET:-fallback}\n"
                  "empty_colon: ${RR_T_EMPTY:-used}\n"
                  "empty_plain: \"${RR_T_EMPTY-unused}\"\n"
                  "nested: ${RR_T_UNSET:-${RR_T_HOST}}\n"
                  "literal: $${RR_T_HOST} and $5\n"
                  "unset: ${RR_T_UNSET}\n"
                  "${RR_T_HOST}: key\n");
    lua_getfield(L, 1, "db.local");
    int key_ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "key") == 0;
    lua_pop(L, 1);
    CHECK(ok, "interpolation parses");
    CHECK(str_is("host", "db.local") && str_is("url", "redis://db.local:6379/0"), "${VAR} inside a scalar");
    CHECK(num_is("port", 6379) && str_is("quoted_port", "6379"), "plain scalars resolve after interpolation");
    CHECK(str_is("dflt", "fallback") && str_is("empty_colon", "used"), ":- uses the default when unset or empty");
    CHECK(str_is("empty_plain", ""), "- keeps a set but empty value");
    CHECK(str_is("nested", "db.local"), "a default can reference another variable");
    CHECK(str_is("literal", "${RR_T_HOST} and $5"), "$${ is a literal ${; a lone $ stays");
    CHECK(type_is("unset", LUA_TNIL), "an unset ${VAR} is empty: a null, the key absent");
    CHECK(key_ok, "keys are interpolated too");

    CHECK(fails("a: ${RR_T_UNSET:?set it please}\n", "t.yaml:1:4: RR_T_UNSET: set it please"),
          ":? with a message: the message, at the scalar");
    CHECK(fails("a: ${RR_T_EMPTY:?}\n", "RR_T_EMPTY: required environment variable is empty"), ":? on an empty value");
    CHECK(fails("a: ${RR_T_UNSET?}\n", "required environment variable is not set"), "? on an unset value");
    CHECK(fails("a: ${1X}\n", "expected a name after ${"), "a reference without a name");
    CHECK(fails("a: ${RR_T_HOST\n", "unterminated variable reference"), "a missing }");
    CHECK(fails("a: ${RR_T_HOST+x}\n", "invalid variable reference \"${RR_T_HOST+x}\""), "an unknown operator");
    CHECK(fails("a: ${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-x}}}}}}}}}}\n", "nested too deeply"),
          "defaults nested past 8 levels");
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    scalars();
    structure();
    interpolation();
    lua_close(L);
    return CT_DONE();
}
