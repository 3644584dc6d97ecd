/* Shared libcurl plumbing for the daemon's non-blocking fetch (fetch_loop.c) and the Lua
 * module's own transport (fetch_blocking.c): request options from Lua, easy-handle setup,
 * response buffering, and results pushed back to Lua. */
#ifndef RERANKD_CURL_CALL_H
#define RERANKD_CURL_CALL_H
#include <stddef.h>
#include <curl/curl.h>
#include <lua.h>

#include "rerank.h"

typedef struct {
    char *data;
    size_t len, cap;
    int overflow;
} rr_growbuf;

typedef struct {
    void *owner;                /* the batch this transfer belongs to */
    CURL *easy;
    struct curl_slist *headers;
    rr_growbuf resp, resp_headers;
    char errbuf[CURL_ERROR_SIZE];
    CURLcode result;
    long status;
    int started, done;
    double done_us;             /* CLOCK_MONOTONIC µs when it finished (core.now_us's clock) */
    /* a pieced body sent from its pieces (on_read): where the upload stands */
    const struct rr_body *up_body;
    const rr_piece *up;
    size_t nup, up_i, up_off;
} rr_transfer;

typedef struct {
    const char *method, *url, *body, *sigv4, *userpwd, *target;
    size_t body_len;
    const struct rr_body *pieced; /* body is a pieced body read in place (pieces, npieces) */
    const rr_piece *pieces;
    size_t npieces;
    double timeout, connect_timeout;
    int insecure;
} rr_curl_opts;

/* Reads and checks one options table {method, url, headers, body, timeout, connect_timeout,
 * aws_sigv4, userpwd, insecure}; raises on misuse, allocates nothing. */
void rr_curl_read_opts(lua_State *L, int idx, rr_curl_opts *o);
/* Creates t->easy for the options table at idx; never raises. 0 ok, -1 out of memory. */
/* The body is sent in place (no copy): the caller keeps the options' body string alive until
 * rr_curl_transfer_free (the daemon holds a registry reference; the blocking module keeps
 * the options on its stack for the whole call). */
int rr_curl_setup(lua_State *L, int idx, rr_transfer *t, const rr_curl_opts *o, double deadline_left);
/* The options of one call (request: the table at idx; request_all: its elements 1..n), each
 * checked by rr_curl_read_opts, in an array held by a userdata left on the stack. */
rr_curl_opts *rr_curl_read_call(lua_State *L, int idx, int n, int single);
/* rr_curl_setup for each of those transfers t[0..n) with one deadline, t[i].owner = owner;
 * *set_up (when given) counts the transfers that may hold something to free. 0, or -1 when a
 * setup failed (out of memory). */
int rr_curl_setup_call(lua_State *L, int idx, int n, int single, rr_transfer *t, const rr_curl_opts *opts,
                       double deadline_left, void *owner, int *set_up);
/* Pushes {status, headers, body, done_us}, or nil, "kind: message" (single) / {error, done_us}
 * (batch); done_us (when it finished, core.now_us's clock) lets a caller that ran several
 * transfers together time each one (rerankd eval --concurrency). */
int rr_curl_push_result(lua_State *L, rr_transfer *t, int single);
/* The next finished transfer of multi (removed from it, result and status recorded), or NULL
 * when none is left to report. */
rr_transfer *rr_curl_next_done(CURLM *multi);
/* Frees everything t owns; removes it from multi first when it is still running there. */
void rr_curl_transfer_free(CURLM *multi, rr_transfer *t);
#endif
