/* rerank.core.redis: a small non-blocking Redis client for the daemon's workers (RESP2
 * over a bufferevent on the worker's loop). A call writes its commands, yields the request
 * coroutine, and is resumed from a loop callback once every reply has arrived. Idle
 * connections are pooled per worker and address; one with replies outstanding is never
 * reused (a cancelled call closes its connection). Numeric addresses and "localhost". */
#include "daemon.h"
#include "rerank.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <lauxlib.h>

#define MAX_IDLE 16
#define MAX_DEPTH 16

typedef struct rconn rconn;
struct rconn {
    rr_worker *w;
    struct bufferevent *bev;
    char key[160];
    rconn *next;          /* idle list */
    rr_req *r;            /* the request waiting on this connection */
    int expected;         /* replies the call waits for */
    int skip;             /* leading AUTH/SELECT replies */
    int pipeline;         /* reply shape: array of replies */
    int authed;
    char *reply;          /* raw RESP of every reply, once complete */
    size_t reply_len;
    char err[256];
};

typedef struct {
    rconn *idle;
    int nidle;
} redis_state;

static redis_state *state_of(rr_worker *w)
{
    if (!w->redis) w->redis = calloc(1, sizeof(redis_state));
    return w->redis;
}

static void conn_free(rconn *c)
{
    if (c->bev) bufferevent_free(c->bev);
    free(c->reply);
    free(c);
}

void rr_redis_free(rr_worker *w)
{
    redis_state *s = w->redis;
    if (!s) return;
    while (s->idle) {
        rconn *c = s->idle;
        s->idle = c->next;
        conn_free(c);
    }
    free(s);
    w->redis = NULL;
}

/* Length of one complete RESP value at p, 0 if incomplete, -1 on a protocol error. */
static long resp_scan(const char *p, size_t len, int depth)
{
    if (len < 1) return 0;
    if (depth > MAX_DEPTH) return -1;
    const char *eol = memchr(p, '\n', len);
    if (!eol) return 0;
    size_t line = (size_t)(eol - p) + 1;
    long n;
    switch (p[0]) {
    case '+': case '-': case ':': return (long)line;
    case '$':
        n = strtol(p + 1, NULL, 10);
        if (n < 0) return (long)line;
        return len >= line + (size_t)n + 2 ? (long)(line + (size_t)n + 2) : 0;
    case '*': {
        n = strtol(p + 1, NULL, 10);
        size_t off = line;
        for (long i = 0; i < n; i++) {
            long k = resp_scan(p + off, len - off, depth + 1);
            if (k <= 0) return k;
            off += (size_t)k;
        }
        return (long)off;
    }
    default: return -1;
    }
}

/* Pushes the RESP value at p (known complete); returns its length. Error replies push
 * {err = msg} when as_table, else the message string with *is_err set. */
static size_t resp_push(lua_State *L, const char *p, int *is_err)
{
    const char *eol = strchr(p, '\n');
    size_t line = (size_t)(eol - p) + 1;
    size_t body = line >= 3 ? line - 3 : 0; /* without type byte and \r\n */
    long n;
    switch (p[0]) {
    case '+': lua_pushlstring(L, p + 1, body); return line;
    case '-':
        if (is_err) *is_err = 1;
        lua_pushlstring(L, p + 1, body);
        return line;
    case ':': lua_pushnumber(L, (lua_Number)strtoll(p + 1, NULL, 10)); return line;
    case '$':
        n = strtol(p + 1, NULL, 10);
        if (n < 0) { lua_pushboolean(L, 0); return line; }
        lua_pushlstring(L, p + line, (size_t)n);
        return line + (size_t)n + 2;
    default: { /* '*' */
        n = strtol(p + 1, NULL, 10);
        if (n < 0) { lua_pushboolean(L, 0); return line; }
        lua_createtable(L, (int)n, 0);
        size_t off = line;
        for (long i = 0; i < n; i++) {
            int e = 0;
            off += resp_push(L, p + off, &e);
            if (e) { /* nested error: {err = msg} */
                lua_createtable(L, 0, 1);
                lua_insert(L, -2);
                lua_setfield(L, -2, "err");
            }
            lua_rawseti(L, -2, (int)i + 1);
        }
        return off;
    }
    }
}

static void release(rconn *c, int reusable)
{
    c->r = NULL;
    free(c->reply);
    c->reply = NULL;
    redis_state *s = state_of(c->w);
    if (reusable && s && s->nidle < MAX_IDLE) {
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        c->next = s->idle;
        s->idle = c;
        s->nidle++;
    } else {
        conn_free(c);
    }
}

static int push_reply(rr_req *r, lua_State *co)
{
    rconn *c = r->pending;
    r->pending = NULL;
    r->cancel = NULL;
    if (!c->reply) {
        lua_pushnil(co);
        lua_pushstring(co, c->err[0] ? c->err : "redis: connection failed");
        release(c, 0);
        return 2;
    }
    const char *p = c->reply;
    for (int i = 0; i < c->skip; i++) { /* AUTH / SELECT */
        int e = 0;
        p += resp_push(co, p, &e);
        if (e) {
            lua_pushnil(co);
            lua_pushfstring(co, "auth: %s", lua_tostring(co, -2));
            lua_remove(co, -3);
            release(c, 0);
            return 2;
        }
        lua_pop(co, 1);
    }
    c->authed = 1;
    int nres;
    if (c->pipeline) {
        int n = c->expected - c->skip;
        lua_createtable(co, n, 0);
        for (int i = 0; i < n; i++) {
            int e = 0;
            p += resp_push(co, p, &e);
            if (e) {
                lua_createtable(co, 0, 1);
                lua_insert(co, -2);
                lua_setfield(co, -2, "err");
            }
            lua_rawseti(co, -2, i + 1);
        }
        nres = 1;
    } else {
        int e = 0;
        resp_push(co, p, &e);
        if (e) {
            lua_pushnil(co);
            lua_insert(co, -2);
            nres = 2;
        } else {
            nres = 1;
        }
    }
    release(c, 1);
    return nres;
}

static void finish(rconn *c)
{
    rr_req *r = c->r;
    if (!r) return;
    r->push = push_reply;
    rr_req_schedule_resume(r, 0);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    rconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, -1);
    size_t off = 0;
    for (int i = 0; i < c->expected; i++) {
        long k = resp_scan(p + off, len - off, 0);
        if (k == 0) return; /* wait for more */
        if (k < 0) {
            snprintf(c->err, sizeof c->err, "redis: protocol error");
            bufferevent_disable(bev, EV_READ | EV_WRITE);
            finish(c);
            return;
        }
        off += (size_t)k;
    }
    c->reply = malloc(off + 1);
    if (!c->reply) snprintf(c->err, sizeof c->err, "redis: out of memory");
    else {
        memcpy(c->reply, p, off);
        c->reply[off] = 0;
        c->reply_len = off;
    }
    evbuffer_drain(in, off);
    finish(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    rconn *c = arg;
    if (what & BEV_EVENT_CONNECTED) return;
    if (what & BEV_EVENT_TIMEOUT) snprintf(c->err, sizeof c->err, "timeout: redis did not answer in time");
    else if (what & BEV_EVENT_EOF) snprintf(c->err, sizeof c->err, "io: redis closed the connection");
    else snprintf(c->err, sizeof c->err, "connect: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (c->r) finish(c);
}

static void cancel(rr_req *r)
{
    rconn *c = r->pending;
    r->pending = NULL;
    r->cancel = NULL;
    if (c) release(c, 0); /* replies may still arrive: never reuse */
}

typedef struct {
    const char *host, *password, *username;
    int port, db;
    double timeout;
} redis_opts;

static void read_opts(lua_State *L, redis_opts *o)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "host");
    o->host = luaL_optstring(L, -1, "127.0.0.1");
    lua_getfield(L, 1, "port");
    o->port = (int)luaL_optinteger(L, -1, 6379);
    lua_getfield(L, 1, "password");
    o->password = luaL_optstring(L, -1, NULL);
    lua_getfield(L, 1, "db");
    o->db = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, 1, "timeout");
    o->timeout = luaL_optnumber(L, -1, 1.0);
    lua_getfield(L, 1, "username");
    o->username = luaL_optstring(L, -1, NULL);
    lua_pop(L, 6); /* strings stay referenced by the options table */
    if (strcmp(o->host, "localhost") == 0) o->host = "127.0.0.1";
}

/* Pushes the RESP encoding of the command array at idx (strings/numbers only). */
static void encode_cmd(lua_State *L, int idx)
{
    int n = (int)lua_objlen(L, idx);
    if (n == 0) luaL_error(L, "redis: empty command");
    luaL_checkstack(L, 40, "redis: command");
    lua_pushfstring(L, "*%d\r\n", n);
    int parts = 1;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER) luaL_error(L, "redis: command argument %d must be a string or number", i);
        size_t len;
        lua_tolstring(L, -1, &len);
        lua_pushfstring(L, "$%d\r\n", (int)len);
        lua_insert(L, -2);
        lua_pushliteral(L, "\r\n");
        parts += 3;
        if (parts > 30) {
            lua_concat(L, parts);
            parts = 1;
        }
    }
    lua_concat(L, parts);
}

static rconn *get_conn(lua_State *L, rr_req *r, const redis_opts *o)
{
    char key[160]; /* connections are authenticated: the user is part of the pool key */
    snprintf(key, sizeof key, "%s@%s:%d/%d", o->username ? o->username : "", o->host, o->port, o->db);
    redis_state *s = state_of(r->w);
    if (!s) luaL_error(L, "redis: out of memory");
    for (rconn **pp = &s->idle; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            rconn *c = *pp;
            *pp = c->next;
            s->nidle--;
            c->next = NULL;
            c->err[0] = 0;
            return c;
        }
    }
    rconn *c = calloc(1, sizeof *c);
    if (!c) luaL_error(L, "redis: out of memory");
    c->w = r->w;
    snprintf(c->key, sizeof c->key, "%s", key);
    c->bev = bufferevent_socket_new(r->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    char addr[128];
    snprintf(addr, sizeof addr, strchr(o->host, ':') ? "[%s]:%d" : "%s:%d", o->host, o->port);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (!c->bev || evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sl) != 0 ||
        bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, sl) != 0) {
        conn_free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    return c;
}

static int start(lua_State *L, int pipeline)
{
    rr_req *r = rr_lua_current_req(L);
    if (!r) return luaL_error(L, "redis: must be called from a request coroutine");
    if (r->pending) return luaL_error(L, "redis: another operation is already pending");
    redis_opts o;
    read_opts(L, &o);
    int top = lua_gettop(L);
    int ncmds = 0;
    /* encode into a Lua string first: errors raise before any connection exists */
    if (pipeline) {
        luaL_checktype(L, 2, LUA_TTABLE);
        int n = (int)lua_objlen(L, 2);
        if (n == 0) return luaL_error(L, "redis.pipeline: no commands");
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, 2, i);
            if (!lua_istable(L, -1)) return luaL_error(L, "redis.pipeline: command %d must be a table", i);
            encode_cmd(L, lua_gettop(L));
            lua_remove(L, -2);
            if (i > 1) lua_concat(L, 2);
            ncmds++;
        }
    } else {
        lua_createtable(L, top - 1, 0);
        for (int i = 2; i <= top; i++) {
            lua_pushvalue(L, i);
            lua_rawseti(L, -2, i - 1);
        }
        encode_cmd(L, lua_gettop(L));
        ncmds = 1;
    }
    size_t len;
    const char *wire = lua_tolstring(L, -1, &len);
    rconn *c = get_conn(L, r, &o);
    if (!c) {
        lua_pushnil(L);
        lua_pushfstring(L, "connect: cannot connect to redis at %s:%d", o.host, o.port);
        return 2;
    }
    c->skip = 0;
    if (!c->authed) {
        char pre[512];
        if (o.password && o.username) { /* Redis 6 ACL user */
            snprintf(pre, sizeof pre, "*3\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(o.username),
                     o.username, strlen(o.password), o.password);
            bufferevent_write(c->bev, pre, strlen(pre));
            c->skip++;
        } else if (o.password) {
            snprintf(pre, sizeof pre, "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n", strlen(o.password), o.password);
            bufferevent_write(c->bev, pre, strlen(pre));
            c->skip++;
        }
        if (o.db) {
            char db[16];
            snprintf(db, sizeof db, "%d", o.db);
            snprintf(pre, sizeof pre, "*2\r\n$6\r\nSELECT\r\n$%zu\r\n%s\r\n", strlen(db), db);
            bufferevent_write(c->bev, pre, strlen(pre));
            c->skip++;
        }
        if (!c->skip) c->authed = 1;
    }
    c->expected = c->skip + ncmds;
    c->pipeline = pipeline;
    c->r = r;
    bufferevent_write(c->bev, wire, len);
    struct timeval tv = { (time_t)o.timeout, (suseconds_t)((o.timeout - (double)(time_t)o.timeout) * 1e6) };
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    r->pending = c;
    r->cancel = cancel;
    return lua_yield(L, 0);
}

/* redis.call(opts, cmd, args...) -> reply | nil, err */
static int l_call(lua_State *L) { return start(L, 0); }

/* redis.pipeline(opts, { {cmd, args...}, ... }) -> { replies } | nil, err */
static int l_pipeline(lua_State *L) { return start(L, 1); }

int rr_redis_open(lua_State *L)
{
    static const luaL_Reg fns[] = { { "call", l_call }, { "pipeline", l_pipeline }, { NULL, NULL } };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
