/* larray.h -- plume.array (lang/l_array.c): a contiguous vector of doubles, and reading vectors and matrices
** from Lua tables or arrays. Internal to lang/. */
#ifndef PLM_LARRAY_H
#define PLM_LARRAY_H

#include <lua.h>
#include <stddef.h>

/* plume.array: a contiguous vector of doubles (1-based from Lua), optionally shaped rows x cols. */
typedef struct plm_l_array {
    size_t n, rows, cols;    /* rows = n, cols = 1 when unshaped */
    double *data;            /* points at the userdata's own tail */
} plm_l_array;
#define PLM_L_ARRAY "plume.array"
plm_l_array *plm_l_newarray(lua_State *L, size_t n);
plm_l_array *plm_l_toarray(lua_State *L, int idx);   /* NULL when idx is not a plume.array */

/* A vector of doubles from a Lua array of numbers or a plume.array at idx. Pushes one value (the
** owner of the returned memory: a scratch userdata or the array itself) that keeps it alive while it
** stays on the stack. *n receives the length. Missing entries (nil holes) are an error unless
** allow_nan is set, in which case nil becomes NaN. */
double *plm_l_checkvec(lua_State *L, int idx, const char *fn, const char *arg, size_t *n, int allow_nan);

/* A row-major matrix from a table of equal-length rows (or a plume.array with a shape). Pushes its
** owner like plm_l_checkvec. Ragged rows name the row: "hmm: trans row 2 has 3 entries, expected 2". */
double *plm_l_checkmat(lua_State *L, int idx, const char *fn, const char *arg, size_t *rows, size_t *cols);

#endif
