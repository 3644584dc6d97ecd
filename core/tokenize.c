/* rr_tokenize and the strict UTF-8 check (the tokenizer itself is in tok.h). */
#include "rerank.h"
#include "tok.h"

size_t rr_utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i + 8 <= len) { /* ASCII runs 8 bytes at a time (most request text) */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (n == 0) return i;
        i += n;
    }
    return len;
}

typedef struct { rr_token_fn emit; void *ud; lbuf b; } tok_ctx;

static inline __attribute__((always_inline)) void
user_token(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud)
{
    (void)ascii;
    tok_ctx *t = ud;
    size_t len = to - from;
    const char *tok = lower ? lower_token(s + from, len, &t->b, &len) : (const char *)s + from;
    t->emit(tok, len, from, t->ud);
}

size_t rr_tokenize(const char *text, size_t len, rr_token_fn emit, void *ud)
{
    if (!emit) return scan(text, len, 0, (size_t)-1, NULL, NULL);
    tok_ctx t = { emit, ud, { { 0 }, NULL, 0 } };
    size_t n = scan(text, len, 0, (size_t)-1, user_token, &t);
    free(t.b.heap);
    return n;
}

