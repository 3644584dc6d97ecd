/* Plain YAML scalars to values (YAML 1.2 core schema): null, booleans, integers (decimal,
 * 0o octal, 0x hex), floats, .inf and .nan; everything else stays a string. */
#include "yaml_scalar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

static int all_digits(const char *s, size_t n, int base)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        int ok = base == 16 ? ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'))
               : base == 8 ? (ch >= '0' && ch <= '7')
                           : (ch >= '0' && ch <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static double digits_value(const char *s, size_t n, int base)
{
    double v = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        int d = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
        v = v * base + d;
    }
    return v;
}

/* [-+]? ( \.[0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static int is_float(const char *s, size_t n)
{
    size_t i = 0, d1 = 0, d2 = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, d1++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, d2++;
    }
    if (d1 == 0 && d2 == 0) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t de = 0;
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, de++;
        if (de == 0) return 0;
    }
    return i == n;
}

static int eq_any(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(s, *words, n) == 0) return 1;
    return 0;
}

static const char *const NULLS[] = { "~", "null", "Null", "NULL", NULL };
static const char *const TRUES[] = { "true", "True", "TRUE", NULL };
static const char *const FALSES[] = { "false", "False", "FALSE", NULL };
static const char *const INFS[] = { ".inf", ".Inf", ".INF", NULL };
static const char *const NANS[] = { ".nan", ".NaN", ".NAN", NULL };

int rr_yaml_resolve(lua_State *L, int allow)
{
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if ((allow & R_NULL) && (n == 0 || eq_any(s, n, NULLS))) {
        lua_pop(L, 1);
        lua_pushlightuserdata(L, NULL);
        return 1;
    }
    if (n == 0) return 0;
    if (allow & R_BOOL) {
        if (eq_any(s, n, TRUES) || eq_any(s, n, FALSES)) {
            int t = eq_any(s, n, TRUES);
            lua_pop(L, 1);
            lua_pushboolean(L, t);
            return 1;
        }
    }
    if (allow & R_INT) {
        double v;
        int ok = 0;
        if (n > 2 && s[0] == '0' && s[1] == 'x' && all_digits(s + 2, n - 2, 16)) {
            v = digits_value(s + 2, n - 2, 16);
            ok = 1;
        } else if (n > 2 && s[0] == '0' && s[1] == 'o' && all_digits(s + 2, n - 2, 8)) {
            v = digits_value(s + 2, n - 2, 8);
            ok = 1;
        } else {
            size_t sign = (s[0] == '-' || s[0] == '+');
            if (all_digits(s + sign, n - sign, 10)) {
                v = digits_value(s + sign, n - sign, 10);
                if (s[0] == '-') v = -v;
                ok = 1;
            }
        }
        if (ok) {
            lua_pop(L, 1);
            lua_pushnumber(L, v);
            return 1;
        }
    }
    if (allow & R_FLOAT) {
        size_t sign = (s[0] == '-' || s[0] == '+');
        if (eq_any(s + sign, n - sign, INFS)) {
            int neg = s[0] == '-';
            lua_pop(L, 1);
            lua_pushnumber(L, neg ? -HUGE_VAL : HUGE_VAL);
            return 1;
        }
        if (eq_any(s, n, NANS)) {
            lua_pop(L, 1);
            lua_pushnumber(L, (lua_Number)NAN);
            return 1;
        }
        if (is_float(s, n)) {
            double v = strtod(s, NULL); /* s is NUL-terminated (a Lua string) */
            lua_pop(L, 1);
            lua_pushnumber(L, v);
            return 1;
        }
    }
    return 0;
}
