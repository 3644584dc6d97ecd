/* The request deadline (server.timeout) on Lua CPU time. A request's Lua code runs inside
 * one lua_resume on the worker's thread; nothing else runs there until it yields, so the
 * loop's deadline timer (server.c) cannot fire while a script loops. Here, around each
 * resume, a per-thread POSIX timer is armed for the time the request has left. When it
 * fires, its signal handler installs a count hook (lua_sethook is safe to call from a signal
 * handler: luajit.c stops a script on SIGINT this way); the hook raises an error in the
 * coroutine at every VM instruction from then on, so a script's pcall cannot swallow it, and
 * luahost.c answers 504 while the worker goes on. Between deadlines there is no hook and no
 * signal: the cost is two timer_settime calls per resume.
 *
 * LuaJIT runs hooks in its interpreter only, not in compiled traces: the built-in code
 * bounds its loops by the request limits (server.max_documents, max_fuse_lists/items), and
 * operator scripts run with the compiler off (lua/rerank/config/paths.lua). */
#include "daemon.h"
#include "rerank.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define DEADLINE_SIG (SIGRTMIN + 3)

static _Thread_local rr_req *running;       /* the request whose coroutine runs now */
static _Thread_local lua_State *volatile running_co;
static _Thread_local timer_t timer;
static _Thread_local int timer_state;       /* 0 untried, 1 ready, -1 unavailable */
static _Thread_local volatile sig_atomic_t hooked;

static double left_s(const rr_req *r)
{
    return r->w->opt->timeout - (double)(rr_now_us() - r->t0_us) / 1e6;
}

static void deadline_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    rr_req *r = running;
    if (!r || (!r->cpu_expired && left_s(r) > 0)) { /* early or stray: not this request's */
        lua_sethook(L, NULL, 0, 0);
        hooked = 0;
        return;
    }
    r->cpu_expired = 1;
    luaL_error(L, "request exceeded its deadline of %.3gs while running Lua code", r->w->opt->timeout);
}

static void on_signal(int sig)
{
    (void)sig;
    lua_State *co = running_co;
    if (co) {
        hooked = 1;
        lua_sethook(co, deadline_hook, LUA_MASKCOUNT, 1);
    }
}

static pthread_once_t sig_once = PTHREAD_ONCE_INIT;
static int sig_ok;

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sig_ok = sigaction(DEADLINE_SIG, &sa, NULL) == 0;
}

static int timer_ready(void)
{
    if (timer_state) return timer_state > 0;
    timer_state = -1;
    pthread_once(&sig_once, install_handler);
    if (!sig_ok) return 0;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = DEADLINE_SIG;
    sev.sigev_notify_thread_id = gettid();
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) {
        rr_log(RR_LOG_WARN, "deadline timer unavailable: server.timeout is not enforced on Lua CPU time");
        return 0;
    }
    timer_state = 1;
    return 1;
}

static void arm(double seconds)
{
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (seconds > 0) {
        its.it_value.tv_sec = (time_t)seconds;
        its.it_value.tv_nsec = (long)((seconds - (double)its.it_value.tv_sec) * 1e9);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    }
    timer_settime(timer, 0, &its, NULL);
}

void rr_deadline_begin(rr_req *r, lua_State *co)
{
    running = r;
    running_co = co;
    double left = left_s(r);
    if (r->cpu_expired || left <= 0) { /* already late: stop at the first instruction */
        hooked = 1;
        lua_sethook(co, deadline_hook, LUA_MASKCOUNT, 1);
    } else if (timer_ready()) {
        arm(left);
    }
}

void rr_deadline_end(lua_State *co)
{
    if (timer_state > 0) arm(0);
    running_co = NULL;
    running = NULL;
    if (hooked) {
        lua_sethook(co, NULL, 0, 0);
        hooked = 0;
    }
}
