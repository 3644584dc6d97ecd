/* The worker's event base. Three priorities: every event gets the middle one (libevent's
 * default for a new event), the idle event (server.c: the collector's work between requests,
 * in slices) the last. And one idle callback per loop turn: libevent drains each priority's
 * queue, running an event that activates itself again and again within one turn, so without
 * the limit the idle slices would run back to back and a request whose bytes arrived
 * meanwhile would wait unread until the last one. With it, the loop polls again after each
 * slice, and a connection that became readable is served first. */
#include "loop.h"

struct event_base *rr_loop_new(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg) return NULL;
    struct event_base *base = NULL;
    if (event_config_set_max_dispatch_interval(cfg, NULL, 1, RR_PRI_IDLE) == 0)
        base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (base && event_base_priority_init(base, RR_PRI_IDLE + 1) != 0) {
        event_base_free(base);
        base = NULL;
    }
    return base;
}
