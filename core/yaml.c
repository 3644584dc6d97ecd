/* YAML text -> Lua values, with a path -> "line:col" marks table for error messages.
 *
 * Built on libyaml's event parser. Mappings become tables with string keys,
 * sequences 1-based arrays. A YAML null is left out of a mapping (the key is
 * absent) and is the light userdata NULL (== cjson.null) in a sequence or as
 * the whole document. Scalars are interpolated first (${VAR}, ${VAR:-default},
 * ${VAR-default}, ${VAR:?message}, ${VAR?message}, $${ for a literal ${), then
 * plain scalars resolve per the YAML 1.2 core schema: null/Null/NULL/~/empty,
 * true/True/TRUE/false/False/FALSE, ints (decimal, 0x hex, 0o octal), floats
 * (with .inf/.nan) -> number; everything else, and every quoted or block
 * scalar, stays a string. Mapping keys are always strings. Anchors and aliases
 * are supported (an alias is a deep copy), and so are merge keys (<<).
 * Only one document per stream; duplicate keys are errors.
 *
 * Resources: the libyaml parser and its current event live in a userdata with
 * __gc and are released explicitly right after the protected parse, so a Lua
 * error raised anywhere in between (bad input, out of memory) leaks nothing. */
#include "rerank.h"
#include "yaml_scalar.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <yaml.h>

#define MAX_DEPTH 64        /* nesting of mappings/sequences */
#define MAX_INTERP_DEPTH 8  /* ${A:-${B:-...}} nesting */
/* Every node the document expands to counts: parsed ones, each value an alias copies and
 * each key a merge (<<) copies. An alias or merge-key bomb of a few KB would otherwise
 * build millions of nodes (seconds of CPU and gigabytes) before any check ran. */
#define MAX_NODES 100000

#define YAML_MT "rerank.yaml.parser"

typedef struct {
    yaml_parser_t parser;
    yaml_event_t event;
    int have_parser, have_event;
} yaml_state;

typedef struct {
    yaml_state *st;
    const char *name, *text;
    size_t len;
    size_t nodes;
} ctx_t;

/* stack slots inside the protected parse */
enum { S_CTX = 1, S_MARKS, S_ANCHORS };

static void state_release(yaml_state *st)
{
    if (st->have_event) {
        yaml_event_delete(&st->event);
        st->have_event = 0;
    }
    if (st->have_parser) {
        yaml_parser_delete(&st->parser);
        st->have_parser = 0;
    }
}

static int state_gc(lua_State *L)
{
    yaml_state *st = luaL_checkudata(L, 1, YAML_MT);
    state_release(st);
    return 0;
}

/* ---- errors ---- */

static int raise_at(lua_State *L, const ctx_t *c, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    lua_pushfstring(L, "%s:%d:%d: ", c->name, (int)m.line + 1, (int)m.column + 1);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

/* Reader errors carry a byte offset, not a mark: count lines ourselves. */
static yaml_mark_t mark_of_offset(const ctx_t *c, size_t off)
{
    yaml_mark_t m = { 0, 0, 0 };
    if (off > c->len) off = c->len;
    for (size_t i = 0; i < off; i++) {
        if (c->text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else if (((unsigned char)c->text[i] & 0xC0) != 0x80) {
            m.column++;
        }
    }
    m.index = off;
    return m;
}

static int raise_parser_error(lua_State *L, const ctx_t *c)
{
    const yaml_parser_t *p = &c->st->parser;
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_MEMORY_ERROR) return luaL_error(L, "%s: out of memory while parsing YAML", c->name);
    if (p->error == YAML_READER_ERROR) {
        if (p->problem_value != -1)
            return raise_at(L, c, mark_of_offset(c, p->problem_offset), "%s (#%d)", problem, p->problem_value);
        return raise_at(L, c, mark_of_offset(c, p->problem_offset), "%s", problem);
    }
    if (p->context)
        return raise_at(L, c, p->problem_mark, "%s (%s at line %d, column %d)", problem, p->context,
                        (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    return raise_at(L, c, p->problem_mark, "%s", problem);
}

/* ---- events ---- */

static yaml_event_t *next_event(lua_State *L, ctx_t *c)
{
    yaml_state *st = c->st;
    if (st->have_event) {
        yaml_event_delete(&st->event);
        st->have_event = 0;
    }
    if (!yaml_parser_parse(&st->parser, &st->event)) raise_parser_error(L, c);
    st->have_event = 1;
    return &st->event;
}

static void set_mark(lua_State *L, int path_idx, yaml_mark_t m)
{
    lua_pushvalue(L, path_idx);
    lua_pushfstring(L, "%d:%d", (int)m.line + 1, (int)m.column + 1);
    lua_rawset(L, S_MARKS);
}

/* ---- interpolation ---- */

static int is_name_start(int ch) { return ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z'); }
static int is_name_char(int ch) { return is_name_start(ch) || (ch >= '0' && ch <= '9'); }

static void push_excerpt(lua_State *L, const char *s, size_t n)
{
    lua_pushlstring(L, s, n > 40 ? 40 : n);
}

/* Pushes s[0..n) with ${...} references expanded. */
static void interpolate(lua_State *L, ctx_t *c, const char *s, size_t n, yaml_mark_t m, int depth)
{
    if (!memchr(s, '$', n)) {
        lua_pushlstring(L, s, n);
        return;
    }
    if (depth > MAX_INTERP_DEPTH) raise_at(L, c, m, "${...} nested too deeply");
    luaL_checkstack(L, 8, "interpolation");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0;
    while (i < n) {
        if (s[i] == '$' && i + 2 < n && s[i + 1] == '$' && s[i + 2] == '{') { /* $${ -> literal ${ */
            luaL_addlstring(&b, "${", 2);
            i += 3;
            continue;
        }
        if (!(s[i] == '$' && i + 1 < n && s[i + 1] == '{')) {
            luaL_addchar(&b, s[i]);
            i++;
            continue;
        }
        size_t start = i, j = i + 2;
        if (j >= n || !is_name_start((unsigned char)s[j])) {
            push_excerpt(L, s + start, n - start);
            raise_at(L, c, m, "invalid variable reference \"%s\": expected a name after ${ (write $${ for a literal ${)",
                     lua_tostring(L, -1));
        }
        size_t name_b = j;
        while (j < n && is_name_char((unsigned char)s[j])) j++;
        size_t name_e = j;
        char op = 0;
        int colon = 0;
        if (j < n && s[j] == ':' && j + 1 < n && (s[j + 1] == '-' || s[j + 1] == '?')) {
            colon = 1;
            op = s[j + 1];
            j += 2;
        } else if (j < n && (s[j] == '-' || s[j] == '?')) {
            op = s[j];
            j++;
        } else if (j < n && s[j] != '}') {
            size_t e = j;
            while (e < n && s[e] != '}') e++;
            push_excerpt(L, s + start, (e < n ? e + 1 : n) - start);
            raise_at(L, c, m, "invalid variable reference \"%s\" (use ${NAME}, ${NAME:-default} or ${NAME:?message})",
                     lua_tostring(L, -1));
        }
        /* the word runs to the matching brace; braces inside it nest */
        size_t word_b = j;
        int level = 1;
        while (j < n) {
            if (s[j] == '{') level++;
            else if (s[j] == '}' && --level == 0) break;
            j++;
        }
        if (j >= n) {
            push_excerpt(L, s + start, n - start);
            raise_at(L, c, m, "unterminated variable reference \"%s\" (missing })", lua_tostring(L, -1));
        }
        size_t word_e = j;
        i = j + 1;

        lua_pushlstring(L, s + name_b, name_e - name_b);
        const char *var = lua_tostring(L, -1);
        const char *val = getenv(var);
        int missing = !val || (colon && !val[0]);
        if (op == 0 || !missing) {
            lua_pop(L, 1);
            if (val) luaL_addstring(&b, val);
        } else if (op == '-') {
            lua_pop(L, 1);
            interpolate(L, c, s + word_b, word_e - word_b, m, depth + 1);
            luaL_addvalue(&b);
        } else { /* '?': required */
            if (word_e > word_b) {
                lua_pushlstring(L, s + word_b, word_e - word_b);
                raise_at(L, c, m, "%s: %s", var, lua_tostring(L, -1));
            }
            raise_at(L, c, m, "%s: required environment variable is %s", var, val ? "empty" : "not set");
        }
    }
    luaL_pushresult(&b);
}

#define TAG_PREFIX "tag:yaml.org,2002:"

/* Pushes the value of the current scalar event. */
static void push_scalar(lua_State *L, ctx_t *c, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    interpolate(L, c, v, ev->data.scalar.length, ev->start_mark, 0);
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag && strcmp(tag, "!") != 0) {
        static const char *const names[] = { "str", "null", "bool", "int", "float", NULL };
        static const int kinds[] = { 0, R_NULL, R_BOOL, R_INT, R_INT | R_FLOAT };
        size_t plen = sizeof TAG_PREFIX - 1;
        if (strncmp(tag, TAG_PREFIX, plen) == 0) {
            for (int i = 0; names[i]; i++) {
                if (strcmp(tag + plen, names[i]) != 0) continue;
                if (kinds[i] && !rr_yaml_resolve(L, kinds[i]))
                    raise_at(L, c, ev->start_mark, "invalid !!%s value \"%s\"", names[i], lua_tostring(L, -1));
                return;
            }
        }
        raise_at(L, c, ev->start_mark, "unsupported tag %s", tag);
    }
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag) rr_yaml_resolve(L, R_ANY);
}

/* ---- nodes ---- */

static void count_node(lua_State *L, ctx_t *c, yaml_mark_t m)
{
    if (++c->nodes > MAX_NODES)
        raise_at(L, c, m, "the document expands to more than %d nodes (aliases or merge keys?)", MAX_NODES);
}

static void copy_value(lua_State *L, ctx_t *c, int idx, int depth, yaml_mark_t m)
{
    count_node(L, c, m);
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return;
    }
    if (depth >= MAX_DEPTH) raise_at(L, c, m, "nesting deeper than %d levels", MAX_DEPTH);
    luaL_checkstack(L, 6, "alias");
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        copy_value(L, c, lua_gettop(L) - 1, depth + 1, m);
        lua_rawset(L, -5);
        lua_pop(L, 1);
    }
}

static void parse_node(lua_State *L, ctx_t *c, int path_idx, int depth);

static void child_path_key(lua_State *L, int path_idx, int key_idx)
{
    if (lua_objlen(L, path_idx) == 0) lua_pushvalue(L, key_idx);
    else lua_pushfstring(L, "%s.%s", lua_tostring(L, path_idx), lua_tostring(L, key_idx));
}

/* Copies keys of the mapping at src into dst where `seen` lacks them. */
static void merge_into(lua_State *L, ctx_t *c, int dst, int seen, int src, int path_idx, yaml_mark_t m)
{
    lua_pushnil(L);
    while (lua_next(L, src)) {
        count_node(L, c, m);
        lua_pushvalue(L, -2);
        lua_rawget(L, seen);
        int present = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!present) {
            int k = lua_gettop(L) - 1;
            lua_pushvalue(L, k);
            lua_pushboolean(L, 1);
            lua_rawset(L, seen);
            lua_pushvalue(L, k);
            lua_pushvalue(L, k + 1);
            lua_rawset(L, dst);
            child_path_key(L, path_idx, k);
            lua_pushvalue(L, -1);
            lua_rawget(L, S_MARKS);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                set_mark(L, lua_gettop(L), m);
            } else {
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

static void parse_mapping(lua_State *L, ctx_t *c, int path_idx, int depth)
{
    lua_newtable(L); /* t */
    int t = lua_gettop(L);
    lua_newtable(L); /* seen keys (null values are absent from t) */
    int seen = t + 1;
    lua_pushnil(L); /* merge sources, created at the first << */
    int merges = t + 2;
    yaml_mark_t merge_mark = { 0, 0, 0 };
    for (;;) {
        yaml_event_t *ev = next_event(L, c);
        if (ev->type == YAML_MAPPING_END_EVENT) break;
        yaml_mark_t km = ev->start_mark;
        if (ev->type != YAML_SCALAR_EVENT) raise_at(L, c, km, "only scalar mapping keys are supported");
        int is_merge = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.length == 2 &&
                       memcmp(ev->data.scalar.value, "<<", 2) == 0;
        interpolate(L, c, (const char *)ev->data.scalar.value, ev->data.scalar.length, km, 0);
        int k = lua_gettop(L);
        lua_pushvalue(L, k);
        lua_rawget(L, seen);
        if (!lua_isnil(L, -1)) raise_at(L, c, km, "duplicate key \"%s\"", lua_tostring(L, k));
        lua_pop(L, 1);
        lua_pushvalue(L, k);
        lua_pushboolean(L, 1);
        lua_rawset(L, seen);
        child_path_key(L, path_idx, k); /* k + 1 */
        /* the key's own place ("path!key"): unknown-key errors point at the key */
        lua_pushfstring(L, "%s!key", lua_tostring(L, k + 1));
        set_mark(L, lua_gettop(L), km);
        lua_pop(L, 1);
        next_event(L, c);
        yaml_mark_t vm = c->st->event.start_mark;
        parse_node(L, c, k + 1, depth + 1); /* k + 2 */
        int v = k + 2;
        if (is_merge) {
            /* a mapping, or a list of mappings (earlier ones win) */
            int ok = lua_istable(L, v);
            size_t n = ok ? lua_objlen(L, v) : 0;
            for (size_t i = 1; ok && i <= n; i++) {
                lua_rawgeti(L, v, (int)i);
                ok = lua_istable(L, -1) && lua_objlen(L, -1) == 0;
                lua_pop(L, 1);
            }
            if (!ok) raise_at(L, c, vm, "the value of a merge key (<<) must be a mapping or a list of mappings");
            if (lua_isnil(L, merges)) {
                lua_newtable(L);
                lua_replace(L, merges);
                merge_mark = vm;
            }
            if (n == 0) {
                lua_pushvalue(L, v);
                lua_rawseti(L, merges, (int)lua_objlen(L, merges) + 1);
            }
            for (size_t i = 1; i <= n; i++) {
                lua_rawgeti(L, v, (int)i);
                lua_rawseti(L, merges, (int)lua_objlen(L, merges) + 1);
            }
        } else if (!(lua_islightuserdata(L, v) && lua_touserdata(L, v) == NULL)) {
            lua_pushvalue(L, k);
            lua_pushvalue(L, v);
            lua_rawset(L, t);
        } /* else null: the key is left out */
        lua_settop(L, k - 1);
    }
    if (!lua_isnil(L, merges)) {
        size_t n = lua_objlen(L, merges);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, merges, (int)i);
            merge_into(L, c, t, seen, lua_gettop(L), path_idx, merge_mark);
            lua_pop(L, 1);
        }
    }
    lua_settop(L, t);
}

static void parse_sequence(lua_State *L, ctx_t *c, int path_idx, int depth)
{
    lua_newtable(L);
    int t = lua_gettop(L);
    for (int i = 0;; i++) {
        yaml_event_t *ev = next_event(L, c);
        if (ev->type == YAML_SEQUENCE_END_EVENT) break;
        lua_pushfstring(L, "%s[%d]", lua_tostring(L, path_idx), i);
        parse_node(L, c, lua_gettop(L), depth + 1);
        lua_rawseti(L, t, i + 1);
        lua_pop(L, 1);
    }
}

/* The current event starts a node; pushes its value. path_idx holds its path. */
static void parse_node(lua_State *L, ctx_t *c, int path_idx, int depth)
{
    luaL_checkstack(L, 12, "YAML nesting");
    yaml_event_t *ev = &c->st->event;
    yaml_mark_t m = ev->start_mark;
    count_node(L, c, m);
    set_mark(L, path_idx, m);
    const yaml_char_t *anchor = NULL;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        lua_pushstring(L, (const char *)ev->data.alias.anchor);
        lua_rawget(L, S_ANCHORS);
        if (lua_isnil(L, -1))
            raise_at(L, c, m, "unknown alias *%s", (const char *)ev->data.alias.anchor);
        copy_value(L, c, lua_gettop(L), depth, m);
        lua_remove(L, -2);
        return;
    case YAML_SCALAR_EVENT: anchor = ev->data.scalar.anchor; break;
    case YAML_SEQUENCE_START_EVENT: anchor = ev->data.sequence_start.anchor; break;
    case YAML_MAPPING_START_EVENT: anchor = ev->data.mapping_start.anchor; break;
    default: raise_at(L, c, m, "unexpected YAML event"); /* not reached: libyaml orders events */
    }
    if (ev->type != YAML_SCALAR_EVENT && depth >= MAX_DEPTH)
        raise_at(L, c, m, "nesting deeper than %d levels", MAX_DEPTH);
    if (anchor) lua_pushstring(L, (const char *)anchor);
    else lua_pushnil(L);
    if (ev->type == YAML_SCALAR_EVENT) push_scalar(L, c, ev);
    else if (ev->type == YAML_SEQUENCE_START_EVENT) parse_sequence(L, c, path_idx, depth);
    else parse_mapping(L, c, path_idx, depth);
    if (!lua_isnil(L, -2)) {
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, S_ANCHORS);
    }
    lua_remove(L, -2);
}

/* Protected: (ctx) -> value, marks */
static int parse_main(lua_State *L)
{
    ctx_t *c = lua_touserdata(L, S_CTX);
    lua_newtable(L); /* S_MARKS */
    lua_newtable(L); /* S_ANCHORS */
    yaml_event_t *ev = next_event(L, c);
    if (ev->type != YAML_STREAM_START_EVENT) raise_at(L, c, ev->start_mark, "expected a YAML stream");
    ev = next_event(L, c);
    if (ev->type == YAML_STREAM_END_EVENT) { /* empty or comments only */
        yaml_mark_t start = { 0, 0, 0 };
        lua_pushliteral(L, "");
        set_mark(L, lua_gettop(L), start);
        lua_pop(L, 1);
        lua_pushlightuserdata(L, NULL);
        lua_pushvalue(L, S_MARKS);
        return 2;
    }
    if (ev->type != YAML_DOCUMENT_START_EVENT) raise_at(L, c, ev->start_mark, "expected a YAML document");
    next_event(L, c);
    lua_pushliteral(L, "");
    parse_node(L, c, lua_gettop(L), 0);
    int value = lua_gettop(L);
    ev = next_event(L, c);
    if (ev->type != YAML_DOCUMENT_END_EVENT) raise_at(L, c, ev->start_mark, "expected the end of the document");
    ev = next_event(L, c);
    if (ev->type != YAML_STREAM_END_EVENT)
        raise_at(L, c, ev->start_mark, "only one YAML document is supported (found another \"---\")");
    lua_pushvalue(L, value);
    lua_pushvalue(L, S_MARKS);
    return 2;
}

int rr_yaml_push(lua_State *L, const char *text, size_t len, const char *name)
{
    luaL_checkstack(L, 8, "yaml");
    yaml_state *st = lua_newuserdata(L, sizeof *st);
    memset(st, 0, sizeof *st);
    if (luaL_newmetatable(L, YAML_MT)) {
        lua_pushcfunction(L, state_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    int ud = lua_gettop(L);
    if (!yaml_parser_initialize(&st->parser)) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: out of memory", name);
        return 2;
    }
    st->have_parser = 1;
    yaml_parser_set_input_string(&st->parser, (const unsigned char *)text, len);

    ctx_t c = { st, name, text, len, 0 };
    lua_pushcfunction(L, parse_main);
    lua_pushlightuserdata(L, &c);
    int rc = lua_pcall(L, 1, 2, 0);
    state_release(st);
    lua_remove(L, ud);
    if (rc != 0) {
        if (!lua_isstring(L, -1)) {
            lua_pop(L, 1);
            lua_pushfstring(L, "%s: YAML error", name);
        }
        lua_pushnil(L);
        lua_insert(L, -2);
    }
    return 2;
}
