/* l_json.c -- plume.json.decode / encode and plume.read_json, on cJSON.
** cJSON parses and prints; this file converts between its trees and Lua values. A tree is held by a userdata
** whose __gc deletes it, so a Lua error in the middle of a conversion (out of memory, a value that cannot be
** encoded) leaks nothing. JSON null is plume.json.null (a light userdata) wherever it appears. */
#include "lutil.h"
#include "larray.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TREE_META "plume.json.tree"
#define MAX_DEPTH 1000

static int tree_gc(lua_State *L)
{
    cJSON **t = luaL_checkudata(L, 1, TREE_META);
    if (*t) cJSON_Delete(*t);
    *t = NULL;
    return 0;
}

/* A userdata that owns a cJSON tree (set *slot later); pushed on the stack. */
static cJSON **push_tree(lua_State *L)
{
    cJSON **t = lua_newuserdatauv(L, sizeof *t, 0);
    *t = NULL;
    if (luaL_newmetatable(L, TREE_META)) {
        lua_pushcfunction(L, tree_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return t;
}

/* ---- decode ---- */

static void push_value(lua_State *L, const cJSON *v, int arrays, int depth);

/* An array of numbers and nulls only (and at least one number), for the arrays = true option. */
static int numeric_array(const cJSON *a)
{
    const cJSON *e;
    int any = 0;
    cJSON_ArrayForEach(e, a) {
        if (cJSON_IsNumber(e)) any = 1;
        else if (!cJSON_IsNull(e)) return 0;
    }
    return any;
}

static void push_value(lua_State *L, const cJSON *v, int arrays, int depth)
{
    const cJSON *e;
    luaL_checkstack(L, 4, "json: nested too deep");
    if (cJSON_IsNull(v)) lua_pushlightuserdata(L, NULL);
    else if (cJSON_IsFalse(v)) lua_pushboolean(L, 0);
    else if (cJSON_IsTrue(v)) lua_pushboolean(L, 1);
    else if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        /* integral values that a double holds exactly become Lua integers (counts, indices) */
        if (x == floor(x) && fabs(x) <= 9007199254740992.0) lua_pushinteger(L, (lua_Integer)x);
        else lua_pushnumber(L, x);
    } else if (cJSON_IsString(v)) lua_pushstring(L, v->valuestring);
    else if (cJSON_IsArray(v)) {
        int n = cJSON_GetArraySize(v), i = 0;
        if (arrays && numeric_array(v)) {
            plm_l_array *a = plm_l_newarray(L, (size_t)n);
            cJSON_ArrayForEach(e, v) a->data[i++] = cJSON_IsNumber(e) ? e->valuedouble : NAN;
            return;
        }
        lua_createtable(L, n, 0);
        cJSON_ArrayForEach(e, v) {
            push_value(L, e, arrays, depth + 1);
            lua_rawseti(L, -2, ++i);
        }
    } else if (cJSON_IsObject(v)) {
        lua_createtable(L, 0, cJSON_GetArraySize(v));
        cJSON_ArrayForEach(e, v) {
            push_value(L, e, arrays, depth + 1);
            lua_setfield(L, -2, e->string);
        }
    } else
        luaL_error(L, "json: unexpected value in the parsed tree");
}

/* Parse s (len bytes) and push its value; `where` names the source in errors ("json.decode" or a path). */
static void decode(lua_State *L, const char *s, size_t len, const char *where, int arrays)
{
    const char *end = NULL;
    cJSON **t = push_tree(L);
    *t = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (*t) {
        /* cJSON stops after the first value: anything but blanks after it is an error too */
        const char *p = end;
        while (p < s + len && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (p < s + len) {
            cJSON_Delete(*t);
            *t = NULL;
            end = p;
        }
    }
    if (!*t) {
        size_t off = end && end >= s && end <= s + len ? (size_t)(end - s) : len, i;
        int line = 1, col = 1;
        char near[24];
        size_t k;
        for (i = 0; i < off; i++) {
            if (s[i] == '\n') line++, col = 1;
            else col++;
        }
        for (k = 0; k + 1 < sizeof near && off + k < len && s[off + k] != '\n'; k++) near[k] = s[off + k];
        near[k] = '\0';
        for (i = off; i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'); i++) {}
        if (i >= len)
            luaL_error(L, "%s: invalid JSON at line %d, column %d (byte %d): unexpected end of input", where,
                       line, col, (int)off + 1);
        luaL_error(L, "%s: invalid JSON at line %d, column %d (byte %d), near '%s'", where, line, col,
                   (int)off + 1, near);
    }
    push_value(L, *t, arrays, 0);
    cJSON_Delete(*t);
    *t = NULL;
    lua_remove(L, -2);
}

static int opt_arrays(lua_State *L, int idx, const char *fn)
{
    static const char *const names[] = {"arrays", NULL};
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    plm_l_checkopts(L, idx, fn, names);
    return plm_l_optbool(L, idx, fn, "arrays", 0);
}

/* plume.json.decode(str [, {arrays = false}]) -> value */
static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int arrays = opt_arrays(L, 2, "json.decode");
    decode(L, s, len, "json.decode", arrays);
    return 1;
}

/* plume.read_json(path [, {arrays = false}]) -> value */
static int l_read_json(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int arrays = opt_arrays(L, 2, "read_json");
    luaL_Buffer b;
    FILE *f = fopen(path, "rb");
    size_t got;
    if (!f) return luaL_error(L, "read_json: cannot open '%s': %s", path, strerror(errno));
    luaL_buffinit(L, &b);
    do {
        char *p = luaL_prepbuffer(&b);
        got = fread(p, 1, LUAL_BUFFERSIZE, f);
        luaL_addsize(&b, got);
    } while (got > 0);
    if (ferror(f)) {
        fclose(f);
        return luaL_error(L, "read_json: cannot read '%s'", path);
    }
    fclose(f);
    luaL_pushresult(&b);
    {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        lua_pushfstring(L, "read_json: %s", path);
        decode(L, s, len, lua_tostring(L, -1), arrays);
    }
    return 1;
}

/* ---- encode ---- */

/* The key under which a failing value sits, for the error message. */
static const char *key_name(lua_State *L, int key)
{
    if (!key) return "the top level";
    if (lua_type(L, key) == LUA_TSTRING) return lua_pushfstring(L, "key '%s'", lua_tostring(L, key));
    return lua_pushfstring(L, "index %s", luaL_tolstring(L, key, NULL));
}

static cJSON *attach(lua_State *L, cJSON *parent, const char *name, cJSON *item)
{
    if (!item) luaL_error(L, "json.encode: out of memory");
    if (name) {
        if (!cJSON_AddItemToObject(parent, name, item)) {
            cJSON_Delete(item);
            luaL_error(L, "json.encode: out of memory");
        }
    } else if (!cJSON_AddItemToArray(parent, item)) {
        cJSON_Delete(item);
        luaL_error(L, "json.encode: out of memory");
    }
    return item;
}

/* A finite double in the fewest digits that read back exactly (cJSON's own printing compares with a
** tolerance and can drop the last bit: 0.1 + 0.2 would come back as 0.3). NaN and infinities are null:
** JSON has no spelling for them. */
static cJSON *number_item(double x)
{
    char buf[32];
    int digits;
    if (!isfinite(x)) return cJSON_CreateNull();
    for (digits = 15; digits < 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) break;
    }
    if (digits == 17) snprintf(buf, sizeof buf, "%.17g", x);
    return cJSON_CreateRaw(buf);
}

/* Table at idx as a JSON array when its keys are exactly 1..n (n >= 0); returns n, or -1 when not. */
static lua_Integer sequence_length(lua_State *L, int idx)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
            lua_pop(L, 1);
            return -1;
        }
        count++;
    }
    return count == n ? n : -1;
}

/* Encode the Lua value at idx as a child of parent (under name for objects); key is the stack index of the
** Lua key it came from (0 at top level), for errors. The new item is attached before recursing, so the root
** (owned by a userdata) reaches everything built so far. */
static cJSON *encode_value(lua_State *L, int idx, cJSON *parent, const char *name, int key, int depth)
{
    plm_l_array *a;
    idx = lua_absindex(L, idx);
    if (depth > MAX_DEPTH)
        luaL_error(L, "json.encode: tables nested deeper than %d (a table that contains itself?)", MAX_DEPTH);
    luaL_checkstack(L, 8, "json.encode: nested too deep");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return attach(L, parent, name, cJSON_CreateNull());
    case LUA_TBOOLEAN:
        return attach(L, parent, name, cJSON_CreateBool(lua_toboolean(L, idx)));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            char buf[32];   /* printed as written: a 64-bit integer keeps every digit */
            snprintf(buf, sizeof buf, LUA_INTEGER_FMT, lua_tointeger(L, idx));
            return attach(L, parent, name, cJSON_CreateRaw(buf));
        }
        return attach(L, parent, name, number_item(lua_tonumber(L, idx)));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (strlen(s) != len) luaL_error(L, "json.encode: the string at %s contains a zero byte", key_name(L, key));
        return attach(L, parent, name, cJSON_CreateString(s));
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) return attach(L, parent, name, cJSON_CreateNull());
        break;
    case LUA_TUSERDATA:
        if ((a = plm_l_toarray(L, idx))) {
            cJSON *arr = attach(L, parent, name, cJSON_CreateArray());
            size_t i, j;
            if (a->cols > 1)   /* a shaped array: a list of rows */
                for (i = 0; i < a->rows; i++) {
                    cJSON *row = attach(L, arr, NULL, cJSON_CreateArray());
                    for (j = 0; j < a->cols; j++) attach(L, row, NULL, number_item(a->data[i * a->cols + j]));
                }
            else
                for (i = 0; i < a->n; i++) attach(L, arr, NULL, number_item(a->data[i]));
            return arr;
        }
        break;
    case LUA_TTABLE: {
        lua_Integer n = sequence_length(L, idx), i;
        cJSON *item;
        if (n >= 0) {
            item = attach(L, parent, name, cJSON_CreateArray());
            for (i = 1; i <= n; i++) {
                lua_pushinteger(L, i);
                lua_rawgeti(L, idx, i);
                encode_value(L, -1, item, NULL, lua_gettop(L) - 1, depth + 1);
                lua_pop(L, 2);
            }
            return item;
        }
        item = attach(L, parent, name, cJSON_CreateObject());
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            const char *k;
            int kt = lua_type(L, -2);
            if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
                luaL_error(L, "json.encode: a table key is a %s; only strings and numbers can be object keys",
                           luaL_typename(L, -2));
            lua_pushvalue(L, -2);           /* a copy to turn into a string: lua_next needs the key untouched */
            k = lua_tostring(L, -1);
            lua_insert(L, -2);              /* key, keystring, value */
            encode_value(L, -1, item, k, lua_gettop(L) - 2, depth + 1);
            lua_pop(L, 2);
        }
        return item;
    }
    default:
        break;
    }
    luaL_error(L, "json.encode: cannot encode a %s (at %s)", luaL_typename(L, idx), key_name(L, key));
    return NULL;
}

/* plume.json.encode(value [, {indent = false}]) -> string */
static int l_json_encode(lua_State *L)
{
    static const char *const names[] = {"indent", NULL};
    int indent = 0;
    cJSON **t;
    char *out;
    luaL_checkany(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        plm_l_checkopts(L, 2, "json.encode", names);
        indent = plm_l_optbool(L, 2, "json.encode", "indent", 0);
    }
    lua_settop(L, 1);
    t = push_tree(L);
    /* the value is built as the only element of a holder array that the userdata owns from the start */
    if (!(*t = cJSON_CreateArray())) return luaL_error(L, "json.encode: out of memory");
    encode_value(L, 1, *t, NULL, 0, 0);
    out = indent ? cJSON_Print((*t)->child) : cJSON_PrintUnformatted((*t)->child);
    if (!out) return luaL_error(L, "json.encode: out of memory");
    lua_pushstring(L, out);
    cJSON_free(out);
    return 1;
}

void plm_l_open_json(lua_State *L)
{
    static const luaL_Reg fns[] = {{"decode", l_json_decode}, {"encode", l_json_encode}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "json");
    lua_pushcfunction(L, l_read_json);
    lua_setfield(L, -2, "read_json");
}
