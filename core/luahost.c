/* Lua hosting: one lua_State per worker, one coroutine per request, every entry
 * protected; a script error answers 500 for that request and the worker lives on. */
#include "daemon.h"
#include "http.h"
#include "rerank.h"
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

static char reqs_key; /* registry: weak table coroutine -> rr_req* */
static char reply_key; /* ctx.reply_early: yield(it, status, headers, body, log_fields) answers now */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

/* Protected call of the function below nargs args; on error copies the message to err. */
static int pcall_tb(lua_State *L, int nargs, int nres, char *err, size_t errlen)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (rc != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "unknown Lua error");
        lua_pop(L, 1);
    }
    return rc;
}

/* Lua's memory: LuaJIT's allocator for ordinary blocks (fast for the many small objects of
 * a request), malloc for large ones. LuaJIT's maps every block of 128 KB or more with mmap
 * and unmaps it when freed, so each large body or upstream answer cost fresh pages (page
 * faults) on every request; malloc's adaptive threshold keeps such blocks in the worker's
 * arena and reuses them. osize tells which allocator owns a block. */
#define LARGE_BLOCK (128u * 1024u)
/* a request body from this size on keeps the buffer it is in (no copy); a smaller one is
 * copied, which costs less than a new buffer for the connection */
#define TAKE_BODY_MIN (32u * 1024u)

typedef struct {
    lua_Alloc small;
    void *small_ud;
    lua_State *owner; /* the state whose LuaJIT allocator we borrow (closed last) */
} lua_mem;

static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lua_mem *m = ud;
    int was_large = ptr && osize >= LARGE_BLOCK, large = nsize >= LARGE_BLOCK;
    if (nsize == 0) {
        if (was_large) free(ptr);
        else m->small(m->small_ud, ptr, osize, 0);
        return NULL;
    }
    if (was_large == large || !ptr) {
        if (large) return realloc(ptr, nsize);
        return m->small(m->small_ud, ptr, ptr ? osize : 0, nsize);
    }
    /* moving between the two allocators */
    void *np = large ? malloc(nsize) : m->small(m->small_ud, NULL, 0, nsize);
    if (!np) return NULL;
    memcpy(np, ptr, osize < nsize ? osize : nsize);
    if (was_large) free(ptr);
    else m->small(m->small_ud, ptr, osize, 0);
    return np;
}

static void lua_free_state(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    lua_close(L);
    lua_mem *m = ud;
    lua_close(m->owner);
    free(m);
}

void rr_lua_free(lua_State *L) { lua_free_state(L); }

lua_State *rr_lua_new(const char *root, char *err, size_t errlen)
{
    lua_mem *m = calloc(1, sizeof *m);
    lua_State *L = NULL;
    if (m && (m->owner = luaL_newstate()) != NULL) {
        m->small = lua_getallocf(m->owner, &m->small_ud);
        L = lua_newstate(lua_alloc, m);
        if (!L) lua_close(m->owner);
    }
    if (!L) free(m);
    if (!L) {
        snprintf(err, errlen, "cannot create a Lua state");
        return NULL;
    }
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", root, root, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_rerank_core);
    lua_setfield(L, -2, "rerank.core");
    lua_pushcfunction(L, rr_fetch_open);
    lua_setfield(L, -2, "rerank.core.fetch");
    lua_pushcfunction(L, rr_redis_open);
    lua_setfield(L, -2, "rerank.core.redis");
    lua_pop(L, 2);
    /* weak-keyed map from request coroutines to their rr_req */
    lua_pushlightuserdata(L, &reqs_key);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return L;
}

/* Pushes require("rerank.daemon.server")[fn] */
static int push_server_fn(lua_State *L, const char *fn, char *err, size_t errlen)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "rerank.daemon.server");
    if (pcall_tb(L, 1, 1, err, errlen) != 0) return -1;
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "rerank.daemon.server.%s is missing", fn);
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static void push_overrides(lua_State *L, const rr_options *opt, int worker)
{
    lua_newtable(L);
    if (opt->port_override) { lua_pushinteger(L, opt->port); lua_setfield(L, -2, "port"); }
    if (opt->workers_override) { lua_pushinteger(L, opt->workers); lua_setfield(L, -2, "workers"); }
    lua_pushinteger(L, worker);
    lua_setfield(L, -2, "worker");
}

/* Calls server.<fn>(config_path, overrides) -> cfg_summary | nil, err */
static int call_load(lua_State *L, const char *fn, const rr_options *opt, int worker, char *err, size_t errlen)
{
    if (push_server_fn(L, fn, err, errlen) != 0) return -1;
    lua_pushstring(L, opt->config_path);
    push_overrides(L, opt, worker);
    if (pcall_tb(L, 2, 2, err, errlen) != 0) return -1;
    if (lua_isnil(L, -2)) {
        snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "invalid configuration");
        lua_pop(L, 2);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

static double field_num(lua_State *L, int idx, const char *k, double dflt)
{
    lua_getfield(L, idx, k);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

int rr_lua_check_config(const rr_options *opt, rr_options *out, char *err, size_t errlen)
{
    lua_State *L = rr_lua_new(opt->root, err, errlen);
    if (!L) return -1;
    int rc = call_load(L, "load_config", opt, -1, err, errlen);
    if (rc == 0 && out) {
        lua_getfield(L, -1, "server");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "host");
            snprintf(out->host, sizeof out->host, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "127.0.0.1");
            lua_pop(L, 1);
            out->port = (int)field_num(L, -1, "port", 8080);
            out->workers = (int)field_num(L, -1, "workers", 0);
            out->max_body = (size_t)field_num(L, -1, "max_body", 8 << 20);
            out->timeout = field_num(L, -1, "timeout", 30);
            out->keepalive = field_num(L, -1, "keepalive", 75);
            out->header_timeout = field_num(L, -1, "header_timeout", 10);
            out->body_min_rate = field_num(L, -1, "body_min_rate", 1024);
            out->drain = field_num(L, -1, "drain_timeout", 30);
        }
        lua_pop(L, 1);
        lua_getfield(L, -1, "log");
        if (lua_istable(L, -1)) {
            static const char *const levels[] = { "debug", "info", "warn", "error" };
            lua_getfield(L, -1, "access");
            snprintf(out->access_log, sizeof out->access_log, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "stderr");
            lua_getfield(L, -2, "error");
            snprintf(out->error_log, sizeof out->error_log, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "stderr");
            lua_getfield(L, -3, "level");
            out->log_level = RR_LOG_INFO;
            for (int i = 0; i < 4; i++)
                if (lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), levels[i]) == 0) out->log_level = i;
            lua_getfield(L, -4, "format");
            out->log_json = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "json") == 0;
            lua_pop(L, 4);
        }
        lua_pop(L, 1);
    }
    lua_free_state(L);
    return rc;
}

static void host_close(rr_luahost *h)
{
    if (h->L) lua_free_state(h->L);
    free(h);
}

/* Loads the configuration into a fresh host; on failure nothing changes. */
int rr_lua_init_worker(rr_worker *w, char *err, size_t errlen)
{
    rr_luahost *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->tick_ref = LUA_NOREF;
    h->idle_ref = LUA_NOREF;
    h->L = rr_lua_new(w->opt->root, err, errlen);
    if (!h->L) {
        free(h);
        return -1;
    }
    lua_State *L = h->L;
    rr_daemon_open(L, w);
    if (call_load(L, "init", w->opt, w->id, err, errlen) != 0 || (lua_pop(L, 1), 0) ||
        push_server_fn(L, "handle", err, errlen) != 0) {
        host_close(h);
        return -1;
    }
    h->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    char ignored[64];
    if (push_server_fn(L, "tick", ignored, sizeof ignored) == 0) h->tick_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (push_server_fn(L, "idle", ignored, sizeof ignored) == 0) h->idle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    rr_luahost *old = w->host;
    w->host = h;
    if (old) {
        old->retired = 1;
        if (old->refs == 0) host_close(old);
    }
    return 0;
}

void rr_lua_host_release(rr_luahost *h)
{
    if (--h->refs == 0 && h->retired) host_close(h);
}

/* Calls a rerank.daemon.server hook (tick, idle) protected; returns whether it returned true
 * (0 after an error, which is logged). */
static int call_hook(rr_worker *w, int ref, const char *name)
{
    rr_luahost *h = w->host;
    if (!h || ref == LUA_NOREF) return 0;
    char err[512];
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, ref);
    if (pcall_tb(h->L, 0, 1, err, sizeof err) != 0) {
        rr_log(RR_LOG_ERROR, "worker %d: %s: %s", w->id, name, err);
        return 0;
    }
    int yes = lua_toboolean(h->L, -1);
    lua_pop(h->L, 1);
    return yes;
}

void rr_lua_tick(rr_worker *w)
{
    if (w->host) call_hook(w, w->host->tick_ref, "tick");
}

int rr_lua_idle(rr_worker *w)
{
    return w->host ? call_hook(w, w->host->idle_ref, "idle") : 0;
}

rr_req *rr_lua_current_req(lua_State *co)
{
    lua_pushlightuserdata(co, &reqs_key);
    lua_rawget(co, LUA_REGISTRYINDEX);
    lua_pushthread(co);
    lua_rawget(co, -2);
    rr_req *r = lua_touserdata(co, -1);
    lua_pop(co, 2);
    return r;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v ? v : "");
    lua_setfield(L, -2, k);
}

/* A client's x-request-id is kept when it is 1-64 bytes of letters, digits and . _ : -;
 * anything else is replaced by one we mint, and the original is dropped (never logged or
 * echoed). Called at request entry (so replies the C core sends itself carry it) and again
 * here: the second call is a no-op. */
#define RR_ID_MAX 64

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '-';
}

void rr_req_assign_id(rr_req *r)
{
    char *id = r->id;
    if (id[0] || !r->conn) return;
    size_t cap = sizeof r->id, len = 0;
    const char *given = rr_hmsg_header(rr_conn_msg(r->conn), "x-request-id", &len);
    int ok = given && len > 0 && len <= RR_ID_MAX && len < cap;
    for (size_t i = 0; ok && i < len; i++)
        if (!id_char(given[i])) ok = 0;
    if (ok) {
        memcpy(id, given, len);
        id[len] = 0;
    } else {
        static _Thread_local unsigned long long seq;
        snprintf(id, cap, "%02x%06llx%08llx", (unsigned)r->w->id & 0xff,
                 (unsigned long long)(r->t0_us & 0xffffff), ++seq);
    }
}

/* The handler's access-log fields (a table at idx of co) encoded by rr_alog, in a fixed
 * order: strings, numbers and booleans; "us" is an object of numbers. Unknown keys are
 * ignored, so the line's shape is the one documented. Returns a malloc'd string or NULL. */
static const char *const LOG_KEYS[] = { "id", "method", "path", "route", "worker", "model", "docs", "us",
                                        "upstream_status", "cache", "degraded", "key" };
static const char *const US_KEYS[] = { "parse", "upstream", "sort", "serialize" };

static void alog_value(rr_alog *b, lua_State *co, const char *k)
{
    size_t n;
    switch (lua_type(co, -1)) {
    case LUA_TSTRING: { const char *v = lua_tolstring(co, -1, &n); rr_alog_str(b, k, v, n); break; }
    case LUA_TNUMBER: rr_alog_num(b, k, lua_tonumber(co, -1)); break;
    case LUA_TBOOLEAN: rr_alog_bool(b, k, lua_toboolean(co, -1)); break;
    default: break;
    }
}

static char *encode_log_fields(lua_State *co, int idx)
{
    if (!lua_istable(co, idx)) return NULL;
    static _Thread_local rr_alog scratch; /* one per worker thread: no 12 KB block per request */
    rr_alog *b = &scratch;
    rr_alog_init(b);
    for (size_t i = 0; i < sizeof LOG_KEYS / sizeof *LOG_KEYS; i++) {
        lua_getfield(co, idx, LOG_KEYS[i]);
        if (lua_istable(co, -1)) {
            rr_alog_open(b, LOG_KEYS[i]);
            for (size_t j = 0; j < sizeof US_KEYS / sizeof *US_KEYS; j++) {
                lua_getfield(co, -1, US_KEYS[j]);
                alog_value(b, co, US_KEYS[j]);
                lua_pop(co, 1);
            }
            rr_alog_close(b);
        } else {
            alog_value(b, co, LOG_KEYS[i]);
        }
        lua_pop(co, 1);
    }
    char *out = b->cut ? NULL : malloc(b->len + 1);
    if (out) {
        memcpy(out, b->p, b->len);
        out[b->len] = 0;
    }
    return out;
}

/* Builds the ctx table the Lua handler receives, on the coroutine's stack. */
static void push_ctx(lua_State *co, rr_req *r, const char *id)
{
    const rr_hmsg *m = rr_conn_msg(r->conn);
    const char *path, *query;
    size_t plen, qlen;
    rr_hmsg_target(m, &path, &plen, &query, &qlen);
    lua_createtable(co, 0, 10);
    set_str(co, "method", m->method);
    lua_pushlstring(co, path, plen);
    lua_setfield(co, -2, "path");
    lua_pushlstring(co, query, qlen);
    lua_setfield(co, -2, "query");
    set_str(co, "id", id);
    lua_pushinteger(co, r->w->id);
    lua_setfield(co, -2, "worker");
    lua_pushinteger(co, atomic_load(&rr_workers_up));
    lua_setfield(co, -2, "workers_up");
    lua_pushinteger(co, rr_workers_total);
    lua_setfield(co, -2, "workers");
    lua_pushnumber(co, (lua_Number)r->t0_us);
    lua_setfield(co, -2, "t0_us");
    lua_pushlightuserdata(co, &reply_key);
    lua_setfield(co, -2, "reply_early");
    lua_pushboolean(co, 1); /* a body may be a list of strings (reply_from joins them) */
    lua_setfield(co, -2, "reply_parts");
    lua_createtable(co, 0, m->nhdr);
    for (int i = 0; i < m->nhdr; i++) { /* a repeated name: the last one wins */
        const rr_hfield *h = &m->hdr[i];
        char key[128];
        if (h->kl >= sizeof key) continue;
        for (size_t j = 0; j < h->kl; j++) {
            char ch = m->head[h->k + j];
            key[j] = (char)((ch >= 'A' && ch <= 'Z') ? ch + 32 : ch);
        }
        lua_pushlstring(co, key, h->kl);
        lua_pushlstring(co, m->head + h->v, h->vl);
        lua_rawset(co, -3);
    }
    lua_setfield(co, -2, "headers");
    const char *body = rr_hmsg_body(m); /* in place in the connection's input: read it now */
    /* outside the Lua heap (body.c), freed when the request ends (rr_req_finish): the input
     * buffer the body's bytes are in (the connection's input, or the parser's), else a copy */
    r->body = NULL;
    if (body && m->body_len >= TAKE_BODY_MIN) {
        rr_body *b = rr_body_new(co, "", 0); /* first: raising here leaves the buffer where it is */
        char *base = rr_conn_take_body(r->conn);
        if (base) {
            rr_body_adopt(b, base, body, m->body_len);
            r->body = b;
        } else lua_pop(co, 1);
    }
    if (!r->body) r->body = rr_body_new(co, body ? body : "", m->body_len);
    lua_pushvalue(co, -1);
    r->body_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    lua_setfield(co, -2, "body");
    rr_conn_drop_body(r->conn); /* the request holds the copy: one body-sized buffer fewer while it runs */
}

void rr_lua_start_request(rr_req *r)
{
    rr_worker *w = r->w;
    r->host = w->host;
    r->host->refs++;
    lua_State *L = r->host->L;
    rr_req_assign_id(r);
    lua_State *co = lua_newthread(L);
    r->co = co;
    lua_pushlightuserdata(L, &reqs_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -2);
    lua_pushlightuserdata(L, r);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    r->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the thread, keeps it alive */
    lua_rawgeti(co, LUA_REGISTRYINDEX, r->host->handler_ref);
    push_ctx(co, r, r->id);
    rr_lua_resume(r, 1);
}

/* A body given as a list of strings, joined in a buffer reused by the worker's thread (the
 * reply copies what it cannot write at once); NULL when an element is not a string. No
 * response-sized Lua string: those differ in a few bytes and crowd LuaJIT's hash chains. */
#define PARTS_KEEP (1u << 20)
static _Thread_local char *parts_buf;
static _Thread_local size_t parts_cap;

static const char *join_parts(lua_State *co, int idx, size_t *len)
{
    size_t n = lua_objlen(co, idx), total = 0, l;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(co, idx, (int)i);
        if (lua_type(co, -1) != LUA_TSTRING) { lua_pop(co, 1); return NULL; }
        total += lua_objlen(co, -1);
        lua_pop(co, 1);
    }
    if (rr_buf_reserve(&parts_buf, &parts_cap, total + 1, 16 * 1024, (size_t)-1) != 0) return NULL;
    size_t w = 0;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(co, idx, (int)i);
        const char *p = lua_tolstring(co, -1, &l);
        memcpy(parts_buf + w, p, l);
        w += l;
        lua_pop(co, 1);
    }
    *len = w;
    return parts_buf;
}

/* Answers with the handler's values at co[base..base+3]: status, headers, body (a string or
 * a list of strings), log fields. */
static void reply_from(rr_req *r, lua_State *co, int base)
{
    int status = (int)lua_tointeger(co, base);
    size_t len = 0;
    const char *body = lua_istable(co, base + 2) ? join_parts(co, base + 2, &len) : lua_tolstring(co, base + 2, &len);
    if (status < 100 || status > 599 || !body) {
        rr_log(RR_LOG_ERROR, "request handler returned an invalid response (status %d)", status);
        rr_req_reply_error(r, 500, "internal_error", "internal error: invalid handler response");
        return;
    }
    if (!r->log_fields) r->log_fields = encode_log_fields(co, base + 3);
    rr_req_reply(r, status, co, base + 1, body, len); /* copies what it cannot write now */
    rr_buf_trim(&parts_buf, &parts_cap, PARTS_KEEP); /* one huge answer does not pin memory */
}

void rr_lua_resume(rr_req *r, int nargs)
{
    lua_State *co = r->co;
    rr_deadline_begin(r, co);
    int rc = lua_resume(co, nargs);
    rr_deadline_end(co);
    if (r->cpu_expired && rc != LUA_YIELD) { /* whatever the script made of the error */
        rr_req_deadline(r, " (Lua code stopped)");
        return;
    }
    if (rc == LUA_YIELD) {
        if (!r->pending && lua_gettop(co) == 5 && lua_touserdata(co, 1) == &reply_key) {
            /* answer now, keep running (work after the answer, e.g. shadow traffic) */
            reply_from(r, co, 2);
            lua_settop(co, 0);
            r->resume_nargs = 0;
            rr_req_schedule_after(r, 0);
            rr_req_parked(r);
            return;
        }
        if (!r->pending) { /* a bare yield: run again next loop turn */
            r->resume_nargs = 0;
            rr_req_schedule_after(r, 0);
        }
        rr_req_parked(r);
        return;
    }
    if (rc == 0) {
        if (r->conn) reply_from(r, co, 1); /* else answered early (reply_early) or the client left */
    } else {
        const char *msg = lua_tostring(co, -1);
        lua_State *L = r->host->L;
        r->w->lua_errors++;
        luaL_traceback(L, co, msg ? msg : "(non-string error)", 0);
        rr_log(RR_LOG_ERROR, "request %s: Lua error: %s", r->id, lua_tostring(L, -1));
        lua_pop(L, 1);
        /* the client gets no script paths or messages: they are in the error log */
        char m[256];
        snprintf(m, sizeof m, "internal error in a Lua script (request %s; traceback in the error log)", r->id);
        rr_req_reply_error(r, 500, "internal_error", m);
    }
    rr_req_finish(r);
}
