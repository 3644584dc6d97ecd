/* rerank.core.daemon: what a worker's Lua needs to know about the process it runs in.
 * Metrics: each worker publishes a serialised snapshot of its own counters into its slot
 * (tick, about once a second, and before answering /metrics); any worker can read all
 * slots to answer /metrics for the whole process. One mutex per slot, held for a copy. */
#include "daemon.h"
#include "rerank.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

typedef struct {
    pthread_mutex_t lock;
    char *data;
    size_t len;
} metrics_slot;

static metrics_slot *slots;
static int nslots;
static char worker_key;

int rr_metrics_init(int workers)
{
    slots = calloc((size_t)workers, sizeof *slots);
    if (!slots) return -1;
    nslots = workers;
    for (int i = 0; i < workers; i++) pthread_mutex_init(&slots[i].lock, NULL);
    return 0;
}

static rr_worker *self_worker(lua_State *L) { return rr_registry_get(L, &worker_key); }

/* daemon.metrics_publish(snapshot_string) */
static int l_metrics_publish(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    rr_worker *w = self_worker(L);
    if (!w || w->id < 0 || w->id >= nslots) return 0;
    char *copy = malloc(len + 1);
    if (!copy) return luaL_error(L, "metrics_publish: out of memory");
    memcpy(copy, s, len);
    copy[len] = 0;
    metrics_slot *m = &slots[w->id];
    pthread_mutex_lock(&m->lock);
    char *old = m->data;
    m->data = copy;
    m->len = len;
    pthread_mutex_unlock(&m->lock);
    free(old);
    return 0;
}

/* daemon.metrics_collect() -> { snapshot strings of every worker that published } */
static int l_metrics_collect(lua_State *L)
{
    lua_createtable(L, nslots, 0);
    int n = 0;
    for (int i = 0; i < nslots; i++) {
        metrics_slot *m = &slots[i];
        luaL_Buffer b;
        luaL_buffinit(L, &b); /* may allocate: never under the lock */
        pthread_mutex_lock(&m->lock);
        size_t len = m->len;
        char *copy = len ? malloc(len) : NULL;
        if (copy) memcpy(copy, m->data, len);
        pthread_mutex_unlock(&m->lock);
        if (!copy) continue;
        luaL_addlstring(&b, copy, len);
        free(copy);
        luaL_pushresult(&b);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

static int l_worker_id(lua_State *L)
{
    rr_worker *w = self_worker(L);
    lua_pushinteger(L, w ? w->id : -1);
    return 1;
}

static int l_workers(lua_State *L)
{
    lua_pushinteger(L, rr_workers_total);
    lua_pushinteger(L, atomic_load(&rr_workers_up));
    return 2;
}

/* daemon.in_flight() -> requests this worker is handling now */
static int l_in_flight(lua_State *L)
{
    rr_worker *w = self_worker(L);
    lua_pushinteger(L, w ? (lua_Integer)w->inflight : 0);
    return 1;
}

/* daemon.counters() -> { lua_errors, deadline_timeouts, client_aborts } of this worker */
static int l_counters(lua_State *L)
{
    rr_worker *w = self_worker(L);
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, w ? (lua_Number)w->lua_errors : 0);
    lua_setfield(L, -2, "lua_errors");
    lua_pushnumber(L, w ? (lua_Number)w->deadline_timeouts : 0);
    lua_setfield(L, -2, "deadline_timeouts");
    lua_pushnumber(L, w ? (lua_Number)w->client_aborts : 0);
    lua_setfield(L, -2, "client_aborts");
    return 1;
}

static int open_module(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "metrics_publish", l_metrics_publish }, { "metrics_collect", l_metrics_collect },
        { "worker_id", l_worker_id },             { "workers", l_workers },
        { "in_flight", l_in_flight },             { "counters", l_counters },
        { NULL, NULL },
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}

void rr_daemon_open(lua_State *L, rr_worker *w)
{
    lua_pushlightuserdata(L, &worker_key);
    lua_pushlightuserdata(L, w);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open_module);
    lua_setfield(L, -2, "rerank.core.daemon");
    lua_pop(L, 2);
}
