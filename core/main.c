/* rerankd: CLI, workers, signals (SIGTERM/SIGINT graceful drain). */
#include "daemon.h"
#include "http.h"
#include "rerank.h"

#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/thread.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rerankd [-c FILE] [-t] [-p PORT] [-w N] [--version] [--help]\n"
            "       rerankd check-provider FILE [FIXTURES_DIR]\n"
            "       rerankd eval -c FILE --data FILE [options]\n"
            "       rerankd calibrate -c FILE --data FILE --model NAME [options]\n"
            "  -c, --config FILE   configuration file (default ./config.yaml)\n"
            "  -t, --test          validate the configuration and exit (0 ok, 1 invalid)\n"
            "  -p, --port PORT     listen port (overrides server.listen; 0 = any free port)\n"
            "  -w, --workers N     worker threads (overrides server.workers; default = cores)\n"
            "  -v, --version       print the version and exit\n"
            "  -h, --help          this help\n"
            "  check-provider      run a provider's build/parse against fixture files (README: Writing a provider)\n"
            "  eval                rank a judged data set with each model and compare them (rerankd eval --help)\n"
            "  calibrate           fit a model's Platt calibration on a judged data set (rerankd calibrate --help)\n"
            "env: RERANKD_HOME = directory holding lua/ and providers/ (default: next to the binary)\n");
}

static int has_lua_tree(const char *dir)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/lua/rerank/daemon/server.lua", dir);
    return access(p, R_OK) == 0;
}

/* RERANKD_HOME, else the binary's directory (source tree), else BINDIR/../share/rerankd
 * (`make install PREFIX=...` whatever PREFIX the build saw), else the install datadir. */
static const char *find_root(char *buf, size_t cap)
{
    const char *env = getenv("RERANKD_HOME");
    if (env && env[0]) return env;
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n > 0) {
        buf[n] = 0;
        char *slash = strrchr(buf, '/');
        if (slash) *slash = 0;
        if (has_lua_tree(buf)) return buf;
        size_t len = strlen(buf);
        if (slash && len + sizeof "/../share/rerankd" <= cap) {
            memcpy(buf + len, "/../share/rerankd", sizeof "/../share/rerankd");
            if (has_lua_tree(buf)) return buf;
        }
    }
    return RERANKD_DATADIR;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static rr_worker *workers;
static int nworkers;

static rr_options *running_opt;

static void on_hup(evutil_socket_t sig, short ev, void *arg)
{
    (void)sig; (void)ev; (void)arg;
    char err[2048];
    rr_options fresh = *running_opt;
    /* validate in a scratch state first: a broken config never reaches the workers */
    if (rr_lua_check_config(running_opt, &fresh, err, sizeof err) != 0) {
        rr_log(RR_LOG_ERROR, "SIGHUP: reload refused, keeping the running configuration: %s", err);
        return;
    }
    if (fresh.port != running_opt->port && !running_opt->port_override)
        rr_log(RR_LOG_WARN, "SIGHUP: server.listen changes need a restart; keeping port %d", running_opt->port);
    rr_log(RR_LOG_INFO, "SIGHUP: reloading %s", running_opt->config_path);
    for (int i = 0; i < nworkers; i++) rr_worker_reload(&workers[i]);
}

static void on_usr1(evutil_socket_t sig, short ev, void *arg)
{
    (void)sig; (void)ev; (void)arg;
    if (rr_log_reopen() != 0) rr_log(RR_LOG_ERROR, "SIGUSR1: cannot reopen log files");
    else rr_log(RR_LOG_INFO, "SIGUSR1: log files reopened");
}

static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
    (void)ev;
    struct event_base *base = arg;
    rr_log(RR_LOG_INFO, "signal %d: draining and stopping", (int)sig);
    for (int i = 0; i < nworkers; i++) rr_worker_stop(&workers[i]);
    event_base_loopexit(base, NULL);
}

/* Every request allocates and frees body-sized blocks (request and upstream bodies, libcurl's
 * upload buffer per transfer). With malloc's default trimming, freed memory at the top of a
 * worker's arena went back to the kernel and came back as page faults on the next request,
 * and throughput fell by a third after a few seconds of load. Keep it: the arenas stay at
 * their high-water mark (bounded by the largest concurrent bodies), and blocks up to
 * MMAP_MAX come from the arenas instead of a fresh mmap each time. */
#define MMAP_MAX (32 << 20)

/* What is kept is given back after large requests: server.c's tick runs a full Lua
 * collection and malloc_trim once the worker is idle (or busy for 5 s), so a burst of large
 * bodies does not pin its high-water mark for good. */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, RR_TRIM_KEEP);
    mallopt(M_MMAP_THRESHOLD, MMAP_MAX);
}

int main(int argc, char **argv)
{
    /* subcommands in Lua (core/cli.c): lua/rerank/eval/cli.lua, lua/rerank/config/check_provider.lua */
    const char *tool = argc > 1 && strcmp(argv[1], "eval") == 0             ? "rerank.eval.cli"
                       : argc > 1 && strcmp(argv[1], "check-provider") == 0 ? "rerank.config.check_provider"
                       : argc > 1 && strcmp(argv[1], "calibrate") == 0      ? "rerank.eval.calibrate"
                                                                             : NULL;
    if (tool) {
        char rootbuf[PATH_MAX];
        const char *root = find_root(rootbuf, sizeof rootbuf);
        setenv("RERANKD_HOME", root, 1);
        return rr_cli_run(root, tool, argc - 2, argv + 2);
    }
    tune_malloc();
    rr_options opt = { 0 };
    opt.config_path = "config.yaml";
    int test_only = 0;
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' }, { "test", no_argument, NULL, 't' },
        { "port", required_argument, NULL, 'p' },   { "workers", required_argument, NULL, 'w' },
        { "version", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:tp:w:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': opt.config_path = optarg; break;
        case 't': test_only = 1; break;
        case 'p':
            if (parse_int(optarg, 0, 65535, &opt.port) != 0) {
                fprintf(stderr, "rerankd: -p: invalid port \"%s\" (0-65535)\n", optarg);
                return 2;
            }
            opt.port_override = 1;
            break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &opt.workers) != 0) {
                fprintf(stderr, "rerankd: -w: invalid worker count \"%s\" (1-1024)\n", optarg);
                return 2;
            }
            opt.workers_override = 1;
            break;
        case 'v': printf("rerankd %s\n", RERANKD_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rerankd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    char rootbuf[PATH_MAX];
    opt.root = find_root(rootbuf, sizeof rootbuf);
    setenv("RERANKD_HOME", opt.root, 1);

    char err[2048];
    rr_options cfg = opt;
    if (rr_lua_check_config(&opt, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "rerankd: %s\n", err);
        if (test_only) fprintf(stderr, "rerankd: configuration %s test failed\n", opt.config_path);
        return 1;
    }
    if (test_only) {
        printf("rerankd: configuration %s is ok\n", opt.config_path);
        return 0;
    }
    if (rr_log_open(cfg.error_log, cfg.access_log) != 0) {
        fprintf(stderr, "rerankd: cannot open log files (%s, %s)\n", cfg.error_log, cfg.access_log);
        return 1;
    }
    rr_log_set_level(cfg.log_level);
    rr_log_set_json(cfg.log_json);
    if (opt.port_override) cfg.port = opt.port;
    if (opt.workers_override) cfg.workers = opt.workers;
    if (cfg.workers <= 0) cfg.workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cfg.workers <= 0) cfg.workers = 1;

    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    curl_global_init(CURL_GLOBAL_DEFAULT);

    int port = cfg.port;
    int fd0 = rr_listen_socket(cfg.host, cfg.port, &port, err, sizeof err);
    if (fd0 < 0) {
        fprintf(stderr, "rerankd: %s\n", err);
        return 1;
    }
    cfg.port = port;
    nworkers = cfg.workers;
    rr_workers_total = nworkers;
    rr_bm25_set_workers(nworkers); /* bm25 threads "auto" counts the idle CPUs */
    running_opt = &cfg;
    if (rr_metrics_init(nworkers) != 0) return 1;
    workers = calloc((size_t)nworkers, sizeof *workers);
    if (!workers) return 1;
    for (int i = 0; i < nworkers; i++) {
        workers[i].id = i;
        workers[i].opt = &cfg;
        workers[i].listen_fd = i == 0 ? fd0 : rr_listen_socket(cfg.host, port, NULL, err, sizeof err);
        if (workers[i].listen_fd < 0 || rr_worker_start(&workers[i]) != 0) {
            if (workers[i].listen_fd < 0) fprintf(stderr, "rerankd: %s\n", err);
            for (int j = 0; j < i; j++) rr_worker_stop(&workers[j]);
            for (int j = 0; j < i; j++) pthread_join(workers[j].thread, NULL);
            return 1;
        }
    }
    rr_log(RR_LOG_INFO, "rerankd %s listening on %s:%d with %d worker%s (config %s)", RERANKD_VERSION, cfg.host,
           port, nworkers, nworkers == 1 ? "" : "s", opt.config_path);

    struct event_base *mainbase = event_base_new();
    struct event *sigterm = evsignal_new(mainbase, SIGTERM, on_signal, mainbase);
    struct event *sigint = evsignal_new(mainbase, SIGINT, on_signal, mainbase);
    struct event *sighup = evsignal_new(mainbase, SIGHUP, on_hup, NULL);
    struct event *sigusr1 = evsignal_new(mainbase, SIGUSR1, on_usr1, NULL);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    evsignal_add(sighup, NULL);
    evsignal_add(sigusr1, NULL);
    event_base_dispatch(mainbase);
    for (int i = 0; i < nworkers; i++) pthread_join(workers[i].thread, NULL);
    for (int i = 0; i < nworkers; i++) {
        rr_worker *w = &workers[i];
        if (w->stop_ev) event_free(w->stop_ev);
        rr_http_free(w); /* before fetch/redis: a request still in flight cancels its transfers */
        rr_fetch_free(w);
        rr_redis_free(w);
        if (w->tick_ev) event_free(w->tick_ev);
        if (w->reload_ev) event_free(w->reload_ev);
        if (w->idle_ev) event_free(w->idle_ev);
        if (w->host) {
            lua_close(w->host->L);
            free(w->host);
        }
        if (w->base) event_base_free(w->base);
    }
    free(workers);
    event_free(sigterm);
    event_free(sigint);
    event_free(sighup);
    event_free(sigusr1);
    event_base_free(mainbase);
    curl_global_cleanup();
    rr_log(RR_LOG_INFO, "rerankd stopped");
    return 0;
}
