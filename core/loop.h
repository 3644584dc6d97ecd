/* The worker's event base (loop.c): its priorities and the idle turn. */
#ifndef RERANKD_LOOP_H
#define RERANKD_LOOP_H
#include <event2/event.h>

#define RR_PRI_IDLE 2 /* the idle event's priority: the last of three (0 and 1: everything else) */

/* A base with RR_PRI_IDLE + 1 priorities that runs at most one callback of RR_PRI_IDLE per
 * loop turn; NULL when out of memory. */
struct event_base *rr_loop_new(void);
#endif
