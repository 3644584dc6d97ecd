/* YAML scalar resolution (yaml_scalar.c), used by the loader (yaml.c). */
#ifndef RERANKD_YAML_SCALAR_H
#define RERANKD_YAML_SCALAR_H
#include <lua.h>

enum { R_NULL = 1, R_BOOL = 2, R_INT = 4, R_FLOAT = 8, R_ANY = 15 };

/* Replaces the string on top of the stack with its resolved value when it matches one of
 * the kinds in allow; returns 1 if it did. */
int rr_yaml_resolve(lua_State *L, int allow);
#endif
