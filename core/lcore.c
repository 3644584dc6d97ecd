/* The rerank.core Lua module: a small, uniform Lua API over the C kernels.
 * Misuse raises (luaL_check*); expected failures return nil, err. */
#include "rerank.h"
#include "buf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

/* Scratch buffers owned by a userdata so a raise never leaks them. */
static void *scratch(lua_State *L, size_t bytes)
{
    return lua_newuserdata(L, bytes ? bytes : 1);
}

static size_t array_len(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    return lua_objlen(L, idx);
}

/* topk's work arrays: one buffer per thread (worker), reused, so a request's sort leaves
 * no garbage for the collector; one that grew past RR_SCRATCH_KEEP is freed after its use. */
static _Thread_local char *topk_buf;
static _Thread_local size_t topk_cap;

/* core.topk(scores, k) -> { 1-based indices }, score desc, ties by index asc, NaN last */
static int l_topk(lua_State *L)
{
    size_t n = array_len(L, 1);
    lua_Integer k = luaL_optinteger(L, 2, (lua_Integer)n);
    luaL_argcheck(L, k >= 0, 2, "k must be >= 0");
    if (n > UINT32_MAX) return luaL_argerror(L, 1, "too many scores");
    if (rr_buf_reserve(&topk_buf, &topk_cap, n * 16 + 16, 16384, (size_t)-1) != 0)
        return luaL_error(L, "topk: out of memory (%d scores)", (int)n);
    double *s = (double *)(void *)topk_buf; /* n doubles, then two arrays of n indices */
    uint32_t *out = (uint32_t *)(void *)(topk_buf + n * sizeof(double));
    uint32_t *tmp = out + n;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)i + 1);
        if (!lua_isnumber(L, -1)) return luaL_error(L, "scores[%d] is not a number", (int)i + 1);
        s[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    size_t m = rr_topk(s, n, (size_t)k, out, tmp);
    lua_createtable(L, (int)m, 0);
    for (size_t i = 0; i < m; i++) {
        lua_pushinteger(L, (lua_Integer)out[i] + 1);
        lua_rawseti(L, -2, (int)i + 1);
    }
    rr_buf_trim(&topk_buf, &topk_cap, RR_SCRATCH_KEEP);
    return 1;
}

static void push_token(const char *tok, size_t len, size_t offset, void *ud)
{
    (void)offset;
    lua_State *L = ud;
    lua_pushlstring(L, tok, len);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
}

/* core.tokenize(text) -> { lower-cased tokens } */
static int l_tokenize(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_newtable(L);
    rr_tokenize(s, len, push_token, L);
    return 1;
}

/* core.count_tokens(text) -> n */
static int l_count_tokens(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushinteger(L, (lua_Integer)rr_tokenize(s, len, NULL, NULL));
    return 1;
}

/* core.yaml_parse(text, name) -> value, marks | nil, "name:line:col: msg" */
static int l_yaml_parse(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "<string>");
    return rr_yaml_push(L, s, len, name);
}

/* Reads a whole regular file of at most max bytes and pushes it; on failure pushes nil and
 * "path: why" and returns -1. Opened non-blocking and checked with fstat before any read:
 * a FIFO, a device (/dev/zero), a directory or an oversized file is refused at once. */
static int push_regular_file(lua_State *L, const char *path, size_t max)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    const char *why = NULL;
    if (fd < 0) why = strerror(errno);
    else if (fstat(fd, &st) != 0) why = strerror(errno);
    else if (!S_ISREG(st.st_mode)) why = S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file";
    else if ((unsigned long long)st.st_size > max) why = "file too large";
    if (why) {
        if (fd >= 0) close(fd);
        lua_pushnil(L);
        if (strcmp(why, "file too large") == 0)
            lua_pushfstring(L, "%s: file too large (%d bytes; at most %d)", path, (int)st.st_size, (int)max);
        else
            lua_pushfstring(L, "%s: %s", path, why);
        return -1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char chunk[4096];
    size_t total = 0;
    ssize_t r;
    while ((r = read(fd, chunk, sizeof chunk)) > 0 && total <= max) {
        luaL_addlstring(&b, chunk, (size_t)r);
        total += (size_t)r;
    }
    int failed = r < 0 && errno != EAGAIN;
    close(fd);
    luaL_pushresult(&b);
    if (failed || total > max) { /* it grew while we read */
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, failed ? "read error" : "file too large");
        return -1;
    }
    return 0;
}

/* core.read_file(path [, max = RR_MAX_FILE]) -> text | nil, err (regular files only) */
static int l_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Number max = luaL_optnumber(L, 2, RR_MAX_FILE);
    if (!(max >= 0 && max <= RR_MAX_FILE)) max = RR_MAX_FILE;
    return push_regular_file(L, path, (size_t)max) == 0 ? 1 : 2;
}

/* core.file_kind(path) -> "file" | "directory" | "other" | nil, err (stat: never opens) */
static int l_file_kind(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : "other");
    return 1;
}

/* core.yaml_load(path) -> value, marks | nil, err */
static int l_yaml_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (push_regular_file(L, path, RR_MAX_CONFIG) != 0) return 2;
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    return rr_yaml_push(L, s, len, path);
}

/* core.listdir(path) -> { names } (sorted, no dot entries) | nil, err */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int l_listdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_newtable(L);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(d);
    /* sort for determinism: copy pointers to the interned strings */
    const char **names = scratch(L, (size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -2, i + 1);
        names[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* core.utf8_check(s) -> nil when valid, else the 0-based offset of the first bad byte */
static int l_utf8_check(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    size_t at = rr_utf8_invalid_at(s, len);
    if (at == len) lua_pushnil(L);
    else lua_pushinteger(L, (lua_Integer)at);
    return 1;
}

/* core.cwd() -> the process's working directory | nil, err */
static int l_cwd(lua_State *L)
{
    char buf[4096];
    if (!getcwd(buf, sizeof buf)) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushstring(L, buf);
    return 1;
}

/* core.now_us() -> monotonic microseconds */
static int l_now_us(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e6 + (lua_Number)(ts.tv_nsec / 1000));
    return 1;
}

/* core.time() -> wall clock seconds (float) */
static int l_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* core.random_hex(nbytes) -> hex string from the kernel CSPRNG */
static int l_random_hex(lua_State *L)
{
    lua_Integer n = luaL_optinteger(L, 1, 16);
    luaL_argcheck(L, n > 0 && n <= 64, 1, "nbytes must be 1..64");
    unsigned char buf[64];
    char hex[129];
    size_t want = (size_t)n & 63u ? (size_t)n & 63u : 64u; /* == n; spelled so the bound is visible */
    if (getrandom(buf, want, 0) != (ssize_t)want) {
        for (lua_Integer i = 0; i < n; i++) buf[i] = (unsigned char)rand();
    }
    for (lua_Integer i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", buf[i]);
    lua_pushlstring(L, hex, (size_t)n * 2);
    return 1;
}

/* core.log(level, msg) with level "debug"|"info"|"warn"|"error" */
static int l_log(lua_State *L)
{
    static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
    int level = luaL_checkoption(L, 1, "info", levels);
    const char *msg = luaL_checkstring(L, 2);
    rr_log(level, "%s", msg);
    return 0;
}

int luaopen_rerank_core(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "topk", l_topk },
        { "tokenize", l_tokenize },
        { "count_tokens", l_count_tokens },
        { "yaml_parse", l_yaml_parse },
        { "yaml_load", l_yaml_load },
        { "read_file", l_read_file },
        { "file_kind", l_file_kind },
        { "listdir", l_listdir },
        { "cwd", l_cwd },
        { "utf8_check", l_utf8_check },
        { "json_decode", rr_json_decode },
        { "json_concat", rr_json_concat },
        { "json_text", rr_json_text },
        { "bytes", rr_l_bytes },
        { "body", rr_l_body },
        { "body_release", rr_l_body_release },
        { "now_us", l_now_us },
        { "time", l_time },
        { "random_hex", l_random_hex },
        { "log", l_log },
        { NULL, NULL },
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushstring(L, RERANKD_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushlightuserdata(L, (void *)&rr_json_lazy_tag);
    lua_setfield(L, -2, "json_lazy");
    rr_lbm25_register(L);
#ifdef RERANK_LUA_MODULE
    rr_fetch_blocking_register(L); /* the daemon's workers must never block: they use rerank.core.fetch */
    lua_pushboolean(L, 0);
#else
    lua_pushboolean(L, 1);
#endif
    lua_setfield(L, -2, "daemon");
    return 1;
}
