/* core/loop.c: the worker's event base runs one idle callback per loop turn, so a socket that
 * becomes readable while idle work is pending is served after at most one more slice. */
#include "ctest.h"
#include "loop.h"

#include <unistd.h>

typedef struct {
    struct event *idle;
    int wfd;
    int slices, left;     /* idle callbacks run, still to run */
    int slices_at_read;   /* idle callbacks that had run when the read callback ran (-1: never) */
} state;

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    state *s = arg;
    s->slices++;
    if (s->slices == 1 && write(s->wfd, "x", 1) != 1) return; /* bytes arrive during the idle work */
    if (--s->left > 0) event_active(s->idle, 0, 0);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    state *s = arg;
    char c;
    if (read(fd, &c, 1) == 1 && s->slices_at_read < 0) s->slices_at_read = s->slices;
}

int main(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "a pipe");
    struct event_base *base = rr_loop_new();
    CHECK(base != NULL, "rr_loop_new makes a base");
    CHECK(event_base_get_npriorities(base) == RR_PRI_IDLE + 1, "with RR_PRI_IDLE + 1 priorities");
    state s = { NULL, p[1], 0, 100, -1 };
    s.idle = event_new(base, -1, 0, on_idle, &s);
    event_priority_set(s.idle, RR_PRI_IDLE);
    struct event *rd = event_new(base, p[0], EV_READ | EV_PERSIST, on_read, &s);
    event_add(rd, NULL);
    event_active(s.idle, 0, 0);
    for (int turns = 0; s.left > 0 && turns < 1000; turns++) /* never blocks: a broken base fails, not hangs */
        event_base_loop(base, EVLOOP_NONBLOCK);
    CHECK(s.slices == 100, "every idle slice ran");
    CHECK(s.slices_at_read >= 1 && s.slices_at_read <= 2,
          "bytes that arrived during the idle work were read after at most one more slice");
    event_free(rd);
    event_free(s.idle);
    event_base_free(base);
    close(p[0]);
    close(p[1]);
    return CT_DONE();
}
