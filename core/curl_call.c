/* Shared libcurl plumbing (see curl_call.h). */
#include "curl_call.h"
#include "rerank.h"
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#define MAX_RESPONSE (64u << 20)

static int grow(rr_growbuf *g, const char *p, size_t n)
{
    if (g->len + n > MAX_RESPONSE) {
        g->overflow = 1;
        return -1;
    }
    if (rr_buf_reserve(&g->data, &g->cap, g->len + n + 1, 4096, (size_t)-1) != 0) return -1;
    memcpy(g->data + g->len, p, n);
    g->len += n;
    g->data[g->len] = 0;
    return 0;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    rr_transfer *t = ud;
    return grow(&t->resp, p, sz * nm) == 0 ? sz * nm : 0;
}

/* A pieced body's bytes into libcurl's upload buffer, from where the last call stopped; an
 * abort if a request body the pieces lie in was released meanwhile. */
static size_t on_read(char *buf, size_t sz, size_t nm, void *ud)
{
    rr_transfer *t = ud;
    if (!rr_body_live(t->up_body)) return CURL_READFUNC_ABORT;
    size_t room = sz * nm, w = 0;
    while (w < room && t->up_i < t->nup) {
        const rr_piece *pc = &t->up[t->up_i];
        size_t n = pc->len - t->up_off;
        if (n > room - w) n = room - w;
        memcpy(buf + w, pc->p + t->up_off, n);
        w += n;
        t->up_off += n;
        if (t->up_off == pc->len) {
            t->up_i++;
            t->up_off = 0;
        }
    }
    return w;
}

/* libcurl rewinds to send the body again (a reused connection that was gone, a retry) */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
    rr_transfer *t = ud;
    if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
    size_t at = (size_t)offset;
    t->up_i = 0;
    t->up_off = 0;
    while (t->up_i < t->nup && at >= t->up[t->up_i].len) at -= t->up[t->up_i++].len;
    if (t->up_i == t->nup && at > 0) return CURL_SEEKFUNC_FAIL;
    t->up_off = at;
    return CURL_SEEKFUNC_OK;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
    rr_transfer *t = ud;
    /* a new status line (redirect, 100-continue) starts a fresh header block */
    if (sz * nm > 5 && memcmp(p, "HTTP/", 5) == 0) t->resp_headers.len = 0;
    return grow(&t->resp_headers, p, sz * nm) == 0 ? sz * nm : 0;
}

void rr_curl_transfer_free(CURLM *multi, rr_transfer *t)
{
    if (t->easy) {
        if (multi && t->started && !t->done) curl_multi_remove_handle(multi, t->easy);
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
    }
    curl_slist_free_all(t->headers);
    t->headers = NULL;
    free(t->resp.data);
    free(t->resp_headers.data);
    t->resp.data = t->resp_headers.data = NULL;
}

static void push_headers(lua_State *L, const rr_growbuf *g)
{
    lua_newtable(L);
    if (!g->data) return;
    const char *p = g->data, *end = g->data + g->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && colon > p) {
            char key[128];
            size_t kl = (size_t)(colon - p);
            if (kl < sizeof key) {
                for (size_t i = 0; i < kl; i++) key[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
                const char *v = colon + 1, *ve = eol;
                while (v < ve && (*v == ' ' || *v == '\t')) v++;
                while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
                lua_pushlstring(L, key, kl);
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_rawset(L, -3);
            }
        }
        p = eol + 1;
    }
}

static const char *error_kind(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY: return "dns";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE: return "tls";
    case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE: return "io";
    case CURLE_WRITE_ERROR: return "too_large";
    default: return "http";
    }
}

/* pushes {status, headers, body} or nil, err (single) / {error=err} (in a batch) */
int rr_curl_push_result(lua_State *L, rr_transfer *t, int single)
{
    if (t->result != CURLE_OK) {
        const char *msg = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result);
        if (t->resp.overflow) msg = "response body exceeds 64 MiB";
        if (single) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s: %s", error_kind(t->result), msg);
            return 2;
        }
        lua_createtable(L, 0, 2);
        lua_pushfstring(L, "%s: %s", error_kind(t->result), msg);
        lua_setfield(L, -2, "error");
        lua_pushnumber(L, t->done_us);
        lua_setfield(L, -2, "done_us");
        return 1;
    }
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, t->done_us);
    lua_setfield(L, -2, "done_us");
    lua_pushinteger(L, t->status);
    lua_setfield(L, -2, "status");
    push_headers(L, &t->resp_headers);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, t->resp.data ? t->resp.data : "", t->resp.len);
    lua_setfield(L, -2, "body");
    return 1;
}



static const char *opt_str(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    const char *v = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) v = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1)) luaL_error(L, "http request: %s must be a string", k);
    lua_pop(L, 1); /* the string stays alive: it is referenced by the options table */
    return v;
}

/* Validates one options table; raises on misuse before anything is allocated. */
void rr_curl_read_opts(lua_State *L, int idx, rr_curl_opts *o)
{
    if (!lua_istable(L, idx)) luaL_error(L, "http request: options must be a table");
    memset(o, 0, sizeof *o);
    o->method = opt_str(L, idx, "method");
    o->url = opt_str(L, idx, "url");
    if (!o->url) luaL_error(L, "http request: url is required");
    o->sigv4 = opt_str(L, idx, "aws_sigv4");
    lua_getfield(L, idx, "body");
    rr_body *b = o->sigv4 ? NULL : rr_body_at(L, -1); /* signing needs the body in one block */
    if (b && (o->pieces = rr_body_pieces(b, &o->npieces, &o->body_len)) != NULL) {
        o->pieced = b;
        o->body = "";
    } else if (!lua_isnil(L, -1) && !(o->body = rr_bytes(L, -1, &o->body_len))) { /* a string or a body (body.c) */
        luaL_error(L, "http request: body must be a string or a body");
    }
    lua_pop(L, 1);
    o->userpwd = opt_str(L, idx, "userpwd");
    o->target = opt_str(L, idx, "request_target");
    lua_getfield(L, idx, "timeout");
    o->timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 30;
    lua_getfield(L, idx, "connect_timeout");
    o->connect_timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 10;
    lua_getfield(L, idx, "insecure");
    o->insecure = lua_toboolean(L, -1);
    lua_pop(L, 3);
    lua_getfield(L, idx, "headers");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1)) luaL_error(L, "http request: headers must be a table");
    lua_pop(L, 1);
}

/* Builds the curl handle for t; never raises (Lua values are only read). */
int rr_curl_setup(lua_State *L, int idx, rr_transfer *t, const rr_curl_opts *o, double deadline_left)
{
    t->easy = curl_easy_init();
    if (!t->easy) return -1;
    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)t);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    double timeout = o->timeout;
    if (deadline_left > 0 && deadline_left < timeout) timeout = deadline_left;
    long ms = (long)(timeout * 1000.0);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout * 1000.0));
    if (o->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (o->pieced) { /* read from its pieces (the body's owner keeps it alive, as a string below) */
        t->up_body = o->pieced;
        t->up = o->pieces;
        t->nup = o->npieces;
        t->up_i = t->up_off = 0;
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, t);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, t);
    } else if (o->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body);
    }
    if (o->body) { /* sent in place: every caller keeps the Lua string alive until the transfer is freed */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        /* above 64 KB libcurl copies the body through its upload buffer: one that holds it
         * all (up to libcurl's 2 MB) sends it in one write instead of one per 64 KB */
        if (o->body_len > 65536)
            curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)(o->body_len < (2u << 20) ? o->body_len : (2u << 20)));
    }
    if (o->method) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
    else if (!o->body) curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (o->sigv4) curl_easy_setopt(e, CURLOPT_AWS_SIGV4, o->sigv4);
    if (o->userpwd) curl_easy_setopt(e, CURLOPT_USERPWD, o->userpwd);
    if (o->target) curl_easy_setopt(e, CURLOPT_REQUEST_TARGET, o->target);
    t->headers = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    lua_getfield(L, idx, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)) {
                char line[8192];
                snprintf(line, sizeof line, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
                struct curl_slist *h = curl_slist_append(t->headers, line);
                if (h) t->headers = h;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    return 0;
}

rr_curl_opts *rr_curl_read_call(lua_State *L, int idx, int n, int single)
{
    rr_curl_opts *opts = lua_newuserdata(L, sizeof(rr_curl_opts) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        if (single) rr_curl_read_opts(L, idx, &opts[i]);
        else {
            lua_rawgeti(L, idx, i + 1);
            rr_curl_read_opts(L, lua_gettop(L), &opts[i]);
            lua_pop(L, 1);
        }
    }
    return opts;
}

int rr_curl_setup_call(lua_State *L, int idx, int n, int single, rr_transfer *t, const rr_curl_opts *opts,
                       double deadline_left, void *owner, int *set_up)
{
    for (int i = 0; i < n; i++) {
        t[i].owner = owner;
        int tidx = idx;
        if (!single) {
            lua_rawgeti(L, idx, i + 1);
            tidx = lua_gettop(L);
        }
        if (set_up) *set_up = i + 1;
        int rc = rr_curl_setup(L, tidx, &t[i], &opts[i], deadline_left);
        if (!single) lua_pop(L, 1);
        if (rc != 0) return -1;
    }
    return 0;
}

rr_transfer *rr_curl_next_done(CURLM *multi)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        rr_transfer *t = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        CURLcode res = m->data.result;
        curl_multi_remove_handle(multi, m->easy_handle);
        if (!t) continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t->done = 1;
        t->result = res;
        t->done_us = (double)ts.tv_sec * 1e6 + (double)(ts.tv_nsec / 1000);
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
        return t;
    }
    return NULL;
}
