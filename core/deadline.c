/* The request deadline (server.timeout) on Lua CPU time. A request's Lua code runs inside
 * one lua_resume on the worker's thread; nothing else runs there until it yields, so the
 * loop's deadline timer (server.c) cannot fire while a script loops. Here, around each
 * resume, a per-thread POSIX timer is armed for the time the request has left. When it
 * fires, its signal handler installs a count hook (lua_sethook is safe to call from a signal
 * handler: luajit.c stops a script on SIGINT this way); the hook raises an error in the
 * coroutine at every VM instruction from then on, so a script's pcall cannot swallow it, and
 * luahost.c answers 504 while the worker goes on. Between deadlines there is no hook and no
 * signal.
 *
 * The timer is not disarmed after a resume: requests share server.timeout, so a later
 * request's deadline is later, and the timer armed for an earlier one fires first. A fire
 * before the running request's deadline (stray: armed for another request, or while no Lua
 * ran) is harmless: the hook sees time left, removes itself and re-arms for what the running
 * request has left. So a resume calls timer_settime only when the armed expiry is later than
 * its own deadline or has passed: about once per server.timeout, instead of twice a resume.
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
static _Thread_local volatile sig_atomic_t fired;  /* the armed expiry has passed */
static _Thread_local int64_t armed_us;              /* its expiry (rr_now_us clock), 0: none */

static int64_t deadline_us(const rr_req *r) /* on the rr_now_us clock */
{
    return (int64_t)r->t0_us + (int64_t)(r->w->opt->timeout * 1e6);
}

static double left_s(const rr_req *r)
{
    return (double)(deadline_us(r) - (int64_t)rr_now_us()) / 1e6;
}

static void arm_until(int64_t at_us);

static void deadline_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    rr_req *r = running;
    if (!r || (!r->cpu_expired && left_s(r) > 0)) { /* early or stray: not this request's */
        lua_sethook(L, NULL, 0, 0);
        hooked = 0;
        if (r && fired) arm_until(deadline_us(r)); /* the fire was another's: wait for ours */
        return;
    }
    r->cpu_expired = 1;
    luaL_error(L, "request exceeded its deadline of %.3gs while running Lua code", r->w->opt->timeout);
}

static void on_signal(int sig)
{
    (void)sig;
    fired = 1;
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

static void arm_until(int64_t at_us)
{
    int64_t us = at_us - (int64_t)rr_now_us();
    if (us < 1) us = 1; /* already due: fire at once */
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(us / 1000000);
    its.it_value.tv_nsec = (long)(us % 1000000) * 1000;
    fired = 0;
    armed_us = at_us;
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
        int64_t at = deadline_us(r);
        if (fired || !armed_us || armed_us > at) arm_until(at); /* else it fires first anyway */
    }
}

void rr_deadline_end(lua_State *co)
{
    running_co = NULL;
    running = NULL;
    if (hooked) {
        lua_sethook(co, NULL, 0, 0);
        hooked = 0;
    }
}
