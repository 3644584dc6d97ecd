/* Growable byte buffers: the one growth rule shared by the HTTP layer and libcurl plumbing. */
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
#endif
