/* The daemon's internal API: workers (server.c), Lua hosting (luahost.c),
 * upstream HTTP (fetch_loop.c), process lifecycle (main.c). */
#ifndef RERANKD_DAEMON_H
#define RERANKD_DAEMON_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <event2/event.h>
#include <lua.h>

typedef struct {
    const char *config_path;
    const char *root;          /* directory holding lua/ and providers/ */
    char host[256];
    int port;                  /* -p override or from config; resolved when 0 */
    int workers;
    int port_override, workers_override;
    size_t max_body;
    double timeout;            /* per-request deadline, seconds */
    double keepalive;          /* idle connection timeout, seconds */
    double header_timeout;     /* the whole header section must arrive within this, seconds */
    double body_min_rate;      /* bytes/s a body must average after its first second; 0 = off */
    double drain;              /* graceful shutdown limit, seconds */
    char access_log[1024], error_log[1024];
    int log_level;
    int log_json;              /* log.format: json */
} rr_options;

/* malloc keeps this much free memory at the top of an arena (main.c; server.c trims below it
 * after large requests) */
#define RR_TRIM_KEEP (64 << 20)

typedef struct rr_worker rr_worker;
typedef struct rr_req rr_req;
typedef struct rr_body rr_body; /* body.c */

/* One loaded configuration: a Lua state with rerank.daemon.server initialised. A reload makes a
 * new host; the old one is closed when its last in-flight request finishes. */
typedef struct {
    lua_State *L;
    int handler_ref;           /* rerank.daemon.server.handle */
    int tick_ref;              /* rerank.daemon.server.tick or LUA_NOREF */
    int idle_ref;              /* rerank.daemon.server.idle or LUA_NOREF */
    int refs;                  /* in-flight requests whose coroutine lives in L */
    int retired;
} rr_luahost;

struct rr_worker {
    int id;
    pthread_t thread;
    const rr_options *opt;
    int listen_fd;
    struct event_base *base;
    void *httpd;               /* http.c: listener event and connections */
    struct event *stop_ev, *reload_ev, *tick_ev, *idle_ev;
    rr_luahost *host;          /* the current configuration */
    size_t inflight;
    size_t unflushed;          /* connections with reply bytes not yet written out */
    /* outcomes Lua never sees (its coroutine died or was abandoned); monotonic */
    unsigned long long lua_errors, deadline_timeouts, client_aborts;
    int stopping;
    int mem_dirty;             /* a large request ran: give memory back when idle (server.c) */
    unsigned mem_wait;         /* ticks since mem_dirty was set */
    int lua_kb_base;           /* the Lua heap after the last full collection, KB */
    void *fetch;               /* fetch_loop.c per-worker state */
    void *redis;               /* redis.c connection pool */
};

/* One HTTP request driven by one Lua coroutine. */
struct rr_req {
    rr_worker *w;
    rr_luahost *host;
    struct rr_conn *conn;          /* NULL once answered or when the client left */
    lua_State *co;
    int co_ref;
    rr_body *body;                 /* ctx.body (body.c), kept alive by body_ref; released at the end */
    int body_ref;
    struct event *deadline_ev, *resume_ev;
    uint64_t t0_us;
    char id[80];                   /* x-request-id */
    char *log_fields;              /* access-log fields from Lua (malloc'd) or NULL */
    int resume_nargs;
    int (*push)(rr_req *, lua_State *co); /* pushes the resume values; returns their count */
    int aborted;
    int cpu_expired;               /* the deadline hook stopped its Lua code (504) */
    int big;                       /* a large body: give memory back after it (server.c) */
    void (*cancel)(rr_req *);      /* cleanup hook of the one pending operation */
    void *pending;
};

extern atomic_int rr_workers_up;
extern int rr_workers_total;

/* server.c */
int rr_listen_socket(const char *host, int port, int *bound_port, char *err, size_t errlen);
int rr_worker_start(rr_worker *w);
void rr_worker_stop(rr_worker *w);   /* thread-safe: begins a graceful drain */
void rr_worker_reload(rr_worker *w); /* thread-safe: re-reads config and scripts */
uint64_t rr_now_us(void);
void rr_req_reply(rr_req *r, int status, lua_State *from, int idx_headers, const char *body, size_t len);
void rr_req_reply_error(rr_req *r, int status, const char *type, const char *msg);
void rr_req_finish(rr_req *r);
void rr_req_deadline(rr_req *r, const char *how); /* 504 at the deadline, then finish */
/* the coroutine yielded on I/O: arm the deadline and client-abort detection */
void rr_req_parked(rr_req *r);
/* schedule a coroutine resume from the loop (never from inside a callback stack) */
void rr_req_schedule_resume(rr_req *r, int nargs);
/* resume after a delay through the timer heap (bare yields, sleeps); push/nargs as above */
void rr_req_schedule_after(rr_req *r, double seconds);

/* luahost.c */
lua_State *rr_lua_new(const char *root, char *err, size_t errlen);
void rr_lua_free(lua_State *L); /* closes a state made by rr_lua_new */
int rr_lua_init_worker(rr_worker *w, char *err, size_t errlen);
void rr_lua_host_release(rr_luahost *h); /* drops one ref; closes a retired host at zero */
void rr_lua_tick(rr_worker *w);          /* periodic rerank.daemon.server.tick() (metrics publish) */
int rr_lua_idle(rr_worker *w);           /* rerank.daemon.server.idle(): no request in flight now; 1: call again */
int rr_lua_check_config(const rr_options *opt, rr_options *out, char *err, size_t errlen);
void rr_lua_start_request(rr_req *r);
void rr_req_assign_id(rr_req *r);
void rr_lua_resume(rr_req *r, int nargs);
rr_req *rr_lua_current_req(lua_State *co);

/* deadline.c: server.timeout on Lua CPU time (around each coroutine resume) */
void rr_deadline_begin(rr_req *r, lua_State *co);
void rr_deadline_end(lua_State *co);

/* ldaemon.c: the daemon-only Lua module rerank.core.daemon (worker identity, metrics
 * snapshots shared across workers) */
int rr_metrics_init(int workers);
void rr_daemon_open(lua_State *L, rr_worker *w);

/* redis.c */
int rr_redis_open(lua_State *L);
void rr_redis_free(rr_worker *w);

/* fetch_loop.c */
int rr_fetch_init(rr_worker *w);
void rr_fetch_free(rr_worker *w);
int rr_fetch_open(lua_State *L);
#endif
