/* Growable byte buffers: the one growth rule shared by the HTTP layer, libcurl plumbing and
 * the reused per-thread buffers (json_splice.c, luahost.c), and their one trim rule. */
#ifndef RERANKD_BUF_H
#define RERANKD_BUF_H
#include <stdlib.h>

/* Makes room for need bytes in *data (capacity *cap): doubles from first (or the current
 * capacity), but never past limit when need fits under it. 0, or -1 when out of memory
 * (the buffer is unchanged). */
static inline int rr_buf_reserve(char **data, size_t *cap, size_t need, size_t first, size_t limit)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : first;
    while (c < need) c *= 2;
    if (c > limit && need <= limit) c = limit;
    char *p = realloc(*data, c);
    if (!p) return -1;
    *data = p;
    *cap = c;
    return 0;
}

/* After a use of a buffer reused across requests: one that a large use grew past keep is
 * freed, so one huge request does not pin its memory. RR_SCRATCH_KEEP: the keep of the
 * per-thread scratch buffers (the decoder's, the splicer's, topk's). */
#define RR_SCRATCH_KEEP (4u << 20)
static inline void rr_buf_trim(char **data, size_t *cap, size_t keep)
{
    if (*cap <= keep) return;
    free(*data);
    *data = NULL;
    *cap = 0;
}
#endif
