/* A BM25 pass shared out between threads: a request whose documents hold a lot of text is
 * scanned by the calling worker and up to RR_BM25_MAX_THREADS - 1 helper threads, each over
 * a contiguous run of documents with its own per-document state and its own twin of the
 * analyzer (libstemmer objects and the word cache are written while scanning). The term
 * table and prefilters are only read. The parts are joined in document order: the postings,
 * lengths and document frequencies are exactly those of one thread, so are the scores. */
#include "bm25_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

/* "auto": the CPUs that no worker's request and no other scan is using. Workers count
 * themselves busy while they have a request in flight (server.c), scans their helper threads. */
static atomic_int cpus, busy;

void rr_bm25_set_workers(int workers)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN); /* once: it reads /sys */
    atomic_store(&cpus, workers > 0 && n > 0 ? (int)(n < 1024 ? n : 1024) : 0);
}

void rr_bm25_busy(int delta)
{
    atomic_fetch_add(&busy, delta);
}

size_t rr_bm25_auto_threads(void)
{
    int n = atomic_load(&cpus), b = atomic_load(&busy);
    if (n <= 0) return 1; /* not the daemon: no worker count known */
    int spare = n - (b > 1 ? b : 1); /* the caller is one of the busy */
    return spare <= 0 ? 1 : spare + 1 > RR_BM25_MAX_THREADS ? RR_BM25_MAX_THREADS : (size_t)spare + 1;
}

typedef struct part part;
typedef struct {
    int remaining;         /* parts not done (under pool.mu) */
    pthread_cond_t done;
} batch;

enum { QUEUED, TAKEN }; /* a part left QUEUED is its caller's to take back */
struct part {
    bm25_ctx c;            /* the caller's, with this part's document state and analyzer */
    const char *const *docs;
    const size_t *lens;
    size_t nf, a, b;
    const rr_bm25_params *p;
    scan_sink s;           /* post_end counted from this part's first posting */
    int rc;
    int state;             /* under pool.mu */
    part *prev, *next;     /* in the pool's queue while QUEUED */
    batch *batch;
};

/* The helper threads: one pool for the process, started on first use and kept (a thread
 * costs 60-120 us to start and join on a VM, a wake-up a few). Parts wait in a FIFO queue;
 * a caller whose parts are still queued when its own run is done takes them back, so a
 * pass never waits on helpers busy with another worker's pass, nor on a pool that could
 * not start a thread. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t work;
    part *head, *tail;
    int threads, idle;
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0 };

static void unlink_part(part *q)
{
    if (q->prev) q->prev->next = q->next;
    else pool.head = q->next;
    if (q->next) q->next->prev = q->prev;
    else pool.tail = q->prev;
    q->prev = q->next = NULL;
}

static void run_part(part *q)
{
    q->rc = rr_bm25_scan_range(&q->c, q->docs, q->lens, q->nf, q->p, q->a, q->b, &q->s);
    pthread_mutex_lock(&pool.mu);
    if (--q->batch->remaining == 0) pthread_cond_signal(&q->batch->done);
    pthread_mutex_unlock(&pool.mu);
}

static void *helper(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (!pool.head) {
            pool.idle++;
            pthread_cond_wait(&pool.work, &pool.mu);
            pool.idle--;
        }
        part *q = pool.head;
        unlink_part(q);
        q->state = TAKEN;
        pthread_mutex_unlock(&pool.mu);
        run_part(q);
        pthread_mutex_lock(&pool.mu);
    }
    return NULL;
}

/* Queues the parts, starting helper threads (up to RR_BM25_MAX_THREADS - 1 in all) while
 * fewer are idle than parts wait. Under pool.mu. */
static void submit(part *parts, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        part *q = &parts[k];
        q->state = QUEUED;
        q->next = NULL;
        q->prev = pool.tail;
        if (pool.tail) pool.tail->next = q;
        else pool.head = q;
        pool.tail = q;
    }
    for (size_t k = (size_t)pool.idle; k < n && pool.threads < RR_BM25_MAX_THREADS - 1; k++) {
        pthread_attr_t attr;
        pthread_t t;
        if (pthread_attr_init(&attr) != 0) break;
        pthread_attr_setstacksize(&attr, 256 * 1024); /* no deep recursion here */
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int ok = pthread_create(&t, &attr, helper, NULL) == 0;
        pthread_attr_destroy(&attr);
        if (!ok) break; /* the caller runs what no helper takes */
        pool.threads++;
    }
    pthread_cond_broadcast(&pool.work);
}

/* Part k's copy of c: its own tf (zeroed), touched, candidates and lower-casing buffer, and
 * twin k of the analyzer with its cache for this pass. 0, or -1 when out of memory. */
static int part_init(part *q, const bm25_ctx *c, size_t k)
{
    q->c = *c;
    q->c.b.heap = NULL;
    q->c.b.cap = 0;
    q->c.ncand = 0;
    q->c.tf = calloc(c->nterms ? c->nterms : 1, sizeof *q->c.tf);
    q->c.touched = malloc((c->nterms ? c->nterms : 1) * sizeof *q->c.touched);
    q->s.df = calloc(c->nterms ? c->nterms : 1, sizeof *q->s.df);
    if (!q->c.tf || !q->c.touched || !q->s.df) return -1;
    if (c->an) {
        rr_analyzer *t = rr_analyzer_twin(c->an, k);
        if (!t) return -1;
        q->c.an = t;
        if (c->stem) {
            q->c.epoch = rr_analyzer_next_epoch(t);
            q->c.cache = rr_analyzer_cache(t);
        }
    }
    return 0;
}

static void part_free(part *q)
{
    free(q->c.tf);
    free(q->c.touched);
    free(q->c.b.heap);
    free(q->s.post);
    free(q->s.df);
}

int rr_bm25_scan_parallel(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t n, size_t nf,
                          const rr_bm25_params *p, scan_sink *s)
{
    size_t threads = p->threads > RR_BM25_MAX_THREADS ? RR_BM25_MAX_THREADS : p->threads;
    size_t per = p->par_bytes ? p->par_bytes : RR_BM25_PAR_BYTES, bytes = 0;
    if (threads > 1)
        for (size_t i = 0; i < n * nf; i++) bytes += docs[i] ? lens[i] : 0;
    if (threads > bytes / per) threads = bytes / per;
    if (threads > n) threads = n;
    if (threads <= 1) return rr_bm25_scan_range(c, docs, lens, nf, p, 0, n, s);

    part parts[RR_BM25_MAX_THREADS - 1];
    memset(parts, 0, sizeof parts);
    size_t nparts = threads - 1, ends[RR_BM25_MAX_THREADS], i = 0, seen = 0;
    /* contiguous runs of about equal text; the caller's is the first */
    for (size_t k = 0; k < threads; k++) {
        size_t goal = bytes / threads * (k + 1);
        while (i < n && (k == threads - 1 || seen < goal)) {
            for (size_t f = 0; f < nf; f++) seen += docs[i * nf + f] ? lens[i * nf + f] : 0;
            i++;
        }
        ends[k] = i;
    }
    for (size_t k = 0; k < nparts; k++) {
        part *q = &parts[k];
        if (part_init(q, c, k) != 0) { /* out of memory: the caller scans alone */
            for (size_t j = 0; j <= k; j++) part_free(&parts[j]);
            return rr_bm25_scan_range(c, docs, lens, nf, p, 0, n, s);
        }
        q->docs = docs;
        q->lens = lens;
        q->nf = nf;
        q->p = p;
        q->a = ends[k];
        q->b = ends[k + 1];
        q->s.post_end = s->post_end;
        q->s.dls = s->dls;
    }
    rr_bm25_busy((int)nparts);
    batch bt = { (int)nparts, PTHREAD_COND_INITIALIZER };
    for (size_t k = 0; k < nparts; k++) parts[k].batch = &bt;
    pthread_mutex_lock(&pool.mu);
    submit(parts, nparts);
    pthread_mutex_unlock(&pool.mu);
    int rc = rr_bm25_scan_range(c, docs, lens, nf, p, 0, ends[0], s);
    for (size_t k = nparts; k-- > 0;) { /* take back what no helper has started, last first */
        pthread_mutex_lock(&pool.mu);
        int mine = parts[k].state == QUEUED;
        if (mine) {
            unlink_part(&parts[k]);
            parts[k].state = TAKEN;
        }
        pthread_mutex_unlock(&pool.mu);
        if (mine) run_part(&parts[k]);
    }
    pthread_mutex_lock(&pool.mu);
    while (bt.remaining > 0) pthread_cond_wait(&bt.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_cond_destroy(&bt.done);
    for (size_t k = 0; k < nparts; k++)
        if (parts[k].rc != 0) rc = -1;
    rr_bm25_busy(-(int)nparts);
    /* join in document order: each part's postings after the previous ones */
    for (size_t k = 0; rc == 0 && k < nparts; k++) {
        part *q = &parts[k];
        size_t base = s->npost;
        if (rr_bm25_grow((void **)&s->post, &s->cap, s->npost + q->s.npost, sizeof *s->post)) {
            rc = -1;
            break;
        }
        if (q->s.npost) memcpy(s->post + base, q->s.post, q->s.npost * sizeof *s->post);
        s->npost += q->s.npost;
        for (size_t d = q->a; d < q->b; d++) s->post_end[d] += base;
        for (uint32_t t = 0; t < c->nterms; t++) s->df[t] += q->s.df[t]; /* whole counts: exact in any order */
        s->tokens += q->s.tokens;
    }
    for (size_t k = 0; k < nparts; k++) part_free(&parts[k]);
    return rc;
}
