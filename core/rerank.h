/* rerankd internal C API: the kernels shared by the daemon and rerank/core.so.
 * One responsibility per file; the Lua glue for all of them lives in lcore.c. */
#ifndef RERANKD_RERANK_H
#define RERANKD_RERANK_H
#include <stddef.h>
#include <stdint.h>
#include <lua.h>

/* registry[key] (key: the address of a file's static, as a light userdata) -> the userdata
 * (full or light) stored there, NULL when unset */
static inline void *rr_registry_get(lua_State *L, void *key)
{
    lua_pushlightuserdata(L, key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    void *p = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return p;
}

/* ---- topk.c ----
 * Order indices 0..n-1 by score descending, ties by index ascending, NaN last
 * (NaNs among themselves by index). Writes min(k, n) indices to out.
 * scratch must hold n uint32_t (no allocation inside the kernel). */
size_t rr_topk(const double *scores, size_t n, size_t k, uint32_t *out, uint32_t *scratch);

/* ---- analyzer.c ----
 * What a lower-cased token becomes before BM25 matches it: nothing (a stopword), itself
 * (language "none") or its Snowball stem. Not thread-safe: one per worker / Lua state. */
typedef struct rr_analyzer rr_analyzer;
/* language: a name from rr_analyzer_languages(), or NULL / "none" for exact words;
 * stop: nstop lower-cased stopwords. NULL with errno ENOENT (unknown language) or ENOMEM. */
rr_analyzer *rr_analyzer_new(const char *language, const char *const *stop, const size_t *lens, size_t nstop);
void rr_analyzer_free(rr_analyzer *a);
const char **rr_analyzer_languages(void); /* libstemmer's algorithms, NULL-terminated */
/* The term of a lower-cased token: 0 for a stopword, else 1 with *out / *olen (valid
 * until the next call on a). */
int rr_analyze(rr_analyzer *a, const char *tok, size_t len, const char **out, size_t *olen);

/* ---- tokenize.c, bm25.c ---- */
/* Matched query terms per document (return_score "all"): document i's are
 * term[doc_end[i-1] .. doc_end[i]) (doc_end[-1] = 0), with their (field-weighted) tf;
 * str[t] / len[t] is term t. Filled by rr_bm25 when params.matches is set; release with
 * rr_bm25_matches_free. */
typedef struct {
    size_t *doc_end;
    uint32_t *term;
    double *tf;
    char **str;
    uint32_t *len;
    size_t nterms;
    char *arena; /* holds the strings */
} rr_bm25_matches;
void rr_bm25_matches_free(rr_bm25_matches *m);

typedef struct {
    double k1, b;
    size_t max_tokens;   /* 0 = no truncation; else score only this many tokens per doc */
    int keep_end;        /* with max_tokens: 1 = keep the last tokens (truncate "start") */
    size_t *doc_tokens;  /* out, optional: the documents' tokens as scored (after truncation) */
    rr_analyzer *analyzer;   /* NULL = exact words, no stopwords */
    /* BM25F: docs[i * nfields + f] is field f of document i (0 = text, the one truncated);
     * tf and length of field f count weights[f] each. nfields 0 = 1 field of weight 1. */
    size_t nfields;
    const double *weights;
    /* pseudo-relevance feedback (fb_docs 0 = off): the fb_terms best terms of the first
     * pass's fb_docs top documents join the query, weighted fb_weight * (their score /
     * the best one's) */
    size_t fb_docs, fb_terms;
    double fb_weight;
    rr_bm25_matches *matches; /* out, optional (zeroed by the caller) */
    /* threads a pass may use (0 or 1: the caller's alone): the documents are shared out when
     * their text is at least par_bytes (0: RR_BM25_PAR_BYTES) per thread; same scores */
    size_t threads, par_bytes;
} rr_bm25_params;
#define RR_BM25_PAR_BYTES (128 * 1024)
#define RR_BM25_MAX_THREADS 4
/* bm25_par.c: threads "auto" is the CPUs that no busy worker (one with a request in flight,
 * rr_bm25_busy from server.c) and no other scan's helper uses, counting the caller, 1 to
 * RR_BM25_MAX_THREADS; 1 where rr_bm25_set_workers was not called (a library caller) */
void rr_bm25_set_workers(int workers);
void rr_bm25_busy(int delta);
size_t rr_bm25_auto_threads(void);

/* Tokenizer: UTF-8 aware, lower-cases ASCII and common Unicode letters (Latin-1,
 * Latin Extended-A, Greek, Cyrillic), splits on anything not a letter or digit.
 * Calls emit(tok, len, start_byte_offset, ud) per token; tok is lower-cased and
 * only valid during the call. Returns the token count. */
typedef void (*rr_token_fn)(const char *tok, size_t len, size_t offset, void *ud);
size_t rr_tokenize(const char *text, size_t len, rr_token_fn emit, void *ud);

/* Offset of the first byte that breaks UTF-8 (the tokenizer's strict rules: no overlongs,
 * surrogates or > U+10FFFF, no truncated sequence), or len when all of it is valid. */
size_t rr_utf8_invalid_at(const unsigned char *s, size_t len);

/* Okapi BM25 (BM25F with several fields) of query against docs[0..n) (idf over these docs):
 * idf = ln(1 + (N - n_t + 0.5)/(n_t + 0.5)); repeated query terms count once.
 * Returns 0 on success, -1 on allocation failure. */
int rr_bm25(const char *query, size_t qlen, const char *const *docs, const size_t *lens,
            size_t n, const rr_bm25_params *p, double *scores_out);

/* ---- yaml.c ----
 * Parse YAML text into Lua values pushed on L: on success pushes (value, marks)
 * and returns 2; on error pushes (nil, "name:line:col: message") and returns 2.
 * marks maps a path ("server.listen", "models[0].provider", "" for the root)
 * to "line:col" (1-based) of that node. ${VAR} / ${VAR:-default} / ${VAR:?msg}
 * are interpolated in scalars; plain scalars resolve to bool/null/int/float. */
int rr_yaml_push(lua_State *L, const char *text, size_t len, const char *name);
/* Files the configuration names are read whole, regular files only, up to these sizes
 * (core.yaml_load, core.read_file): a config, and a Lua script (provider, template, fusion). */
#define RR_MAX_CONFIG (1 << 20)
#define RR_MAX_FILE (4 << 20)

/* ---- body.c ---- request bodies outside the Lua heap (the daemon's ctx.body, spliced
 * upstream bodies)
 * rr_body_new:     pushes a body userdata holding a copy of p[0..len)
 * rr_body_alloc:   pushes a body of len bytes for the caller to write, returns them
 * rr_body_release: frees its bytes now (its request ended); later reads raise
 * rr_bytes:        the bytes of a Lua string or body at idx; NULL for anything else
 * rr_check_bytes:  the same, raising for anything else (a released body says so)
 * rr_l_bytes:      core.bytes(v [, i [, j]]), string.sub over a string or body
 * rr_l_body, rr_l_body_release: core.body(s) -> body, core.body_release(body) */
typedef struct rr_body rr_body;
typedef struct { const char *p; size_t len; } rr_piece;
rr_body *rr_body_new(lua_State *L, const char *p, size_t len);
/* rr_body_pieced: pushes a body made of pieces (copied: pointers), which lie in Lua values
 * that the table at anchor keeps alive and in the request bodies srcs (a pieced body stops
 * reading once one of them is released). rr_bytes joins them on first use; a sender may read
 * them in place instead (rr_body_pieces: NULL for other bodies, or when no longer readable) */
rr_body *rr_body_pieced(lua_State *L, const rr_piece *pieces, size_t n, rr_body *const *srcs, size_t nsrcs, int anchor);
const rr_piece *rr_body_pieces(const rr_body *b, size_t *n, size_t *len);
int rr_body_live(const rr_body *b);
rr_body *rr_body_at(lua_State *L, int idx); /* the body at idx, or NULL */
char *rr_body_alloc(lua_State *L, size_t len);
void rr_body_release(rr_body *b);
/* b's bytes become p[0..len), inside base (malloc'd; b frees it); what b held is freed */
void rr_body_adopt(rr_body *b, char *base, const char *p, size_t len);
const char *rr_bytes(lua_State *L, int idx, size_t *len);
const char *rr_check_bytes(lua_State *L, int idx, size_t *len);
int rr_l_bytes(lua_State *L);
int rr_l_body(lua_State *L);
int rr_l_body_release(lua_State *L);

/* ---- json.c, json_splice.c ---- the request-path JSON (Lua C functions, registered by lcore.c)
 * rr_json_decode: core.json_decode(s [, empty_array_mt]) -> value, spans [, utf8_bad] | nil, msg
 * rr_json_concat: core.json_concat(parts) -> parts joined | nil; a part is a string or a
 *                 splice { list, docs } (see json_splice.c)
 * rr_json_text:   core.json_text(src, js, je) -> the text of the JSON string at src[js..je]
 * rr_json_lazy_tag: its address is core.json_lazy, what rr_json_decode gives for a lazy text
 * rr_doc_keys:    pushes the field names rr_doc_text reads (5 values); -> their first index
 * rr_doc_text:    a request document's text (the table at idx): its `text` string, else the
 *                 bytes of its lazy span in the request body read in place (no escapes), else
 *                 the text its __index makes; NULL when it has none */
int rr_json_decode(lua_State *L);
int rr_json_concat(lua_State *L);
int rr_json_text(lua_State *L);
extern const char rr_json_lazy_tag;
int rr_doc_keys(lua_State *L);
const char *rr_doc_text(lua_State *L, int idx, int keys, size_t *len);

/* ---- lcore.c ---- */
int luaopen_rerank_core(lua_State *L);

/* ---- lbm25.c ---- adds core.bm25, core.analyzer, core.terms, core.stem_languages */
void rr_lbm25_register(lua_State *L);

/* ---- fetch_blocking.c ---- adds core.http_request / http_request_all (blocking; module build only) */
void rr_fetch_blocking_register(lua_State *L);

/* ---- cli.c ---- rerankd subcommands: require(module).main({args...}) -> exit status */
int rr_cli_run(const char *root, const char *module, int argc, char **argv);

/* ---- log.c ---- */
enum { RR_LOG_DEBUG, RR_LOG_INFO, RR_LOG_WARN, RR_LOG_ERROR };
void rr_log_set_level(int level);
void rr_log_set_json(int on); /* log.format: json */
void rr_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* error_file/access_file: "stderr", "off" (access only) or a path; -1 if a file can't open */
int rr_log_open(const char *error_file, const char *access_file);
int rr_log_reopen(void);
/* A worker thread batches its access-log lines between rr_log_batch_begin and _end (which
 * flushes); rr_log_flush writes what is pending (idle, tick). Other threads write each line. */
void rr_log_batch_begin(void);
void rr_log_flush(void);
void rr_log_batch_end(void);
/* One access-log line, built field by field: the only JSON encoder of the access log (C and
 * Lua fields alike), so no value can forge a field. rr_alog_write prepends "ts". */
typedef struct {
    char p[12288];
    size_t len;
    int cut, depth;
    char first[4];
} rr_alog;
void rr_alog_init(rr_alog *b);
void rr_alog_str(rr_alog *b, const char *key, const char *s, size_t n);
void rr_alog_num(rr_alog *b, const char *key, double v);
void rr_alog_bool(rr_alog *b, const char *key, int v);
void rr_alog_fields(rr_alog *b, const char *fields, size_t n); /* another rr_alog's content */
void rr_alog_open(rr_alog *b, const char *key); /* "key":{ ... */
void rr_alog_close(rr_alog *b);                 /* ... } */
void rr_alog_write(rr_alog *b);
#endif
