/* l_precord.c -- particles of plume.smc as bytes, for populations spread over the ranks of an MPI job: a
** particle moves between ranks as its record (the choices it made, lparticles.h pop_rec), which the receiving
** rank replays; at the end every rank receives every particle's record, log weight and return value.
**
** The format is private to one build (every rank runs the same binary) and compact: unsigned integers are
** LEB128 varints, so a token id costs one or two bytes, not eight; a site is a flags byte, its address as the
** length of the prefix it shares with the previous site's plus the rest ("tok12" after "tok11": 3 bytes), its
** dimension unless 1, and its values. Log densities are not sent: the receiving rank rescores every choice, and
** the record's log prior and log likelihood check the sums. Observations are not recorded either: the replay
** makes them again. A token site costs about 5 bytes. */
#include "lparticles.h"

#include <math.h>
#include <string.h>

void plm_l_buf_put(lua_State *L, plm_l_buf *B, const void *x, size_t n)
{
    if (B->n + n > B->cap) {
        size_t nc = (B->n + n) * 2 + 256;
        unsigned char *nb = plm_gc_alloc_atomic(nc);
        if (!nb) luaL_error(L, "plume.smc: out of memory (a particle record of %d bytes)", (int)nc);
        if (B->n) memcpy(nb, B->b, B->n);
        B->b = nb;
        B->cap = nc;
    }
    memcpy(B->b + B->n, x, n);
    B->n += n;
}

static void put_uv(lua_State *L, plm_l_buf *B, uint64_t v)
{
    unsigned char c[10];
    int k = 0;
    do {
        c[k] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) c[k] |= 0x80;
        k++;
    } while (v);
    plm_l_buf_put(L, B, c, (size_t)k);
}

static void put_byte(lua_State *L, plm_l_buf *B, int c)
{
    unsigned char b = (unsigned char)c;
    plm_l_buf_put(L, B, &b, 1);
}

static void put_double(lua_State *L, plm_l_buf *B, double x)
{
    plm_l_buf_put(L, B, &x, sizeof x);
}

/* A reader over b[0..n): every read checks the bounds, so a truncated record is an error, not a wild read. */
typedef struct rd {
    lua_State *L;
    const unsigned char *b;
    size_t n, at;
} rd;

static void rd_need(rd *R, size_t k)
{
    if (R->n - R->at < k) luaL_error(R->L, "plume.smc: a particle record from another rank is truncated (at byte %d of %d)",
                                     (int)R->at, (int)R->n);
}

static uint64_t get_uv(rd *R)
{
    uint64_t v = 0;
    int sh = 0;
    for (;;) {
        unsigned char c;
        rd_need(R, 1);
        c = R->b[R->at++];
        if (sh > 63) luaL_error(R->L, "plume.smc: a particle record from another rank is malformed (varint)");
        v |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80)) return v;
        sh += 7;
    }
}

static int get_byte(rd *R)
{
    rd_need(R, 1);
    return R->b[R->at++];
}

static double get_double(rd *R)
{
    double x;
    rd_need(R, sizeof x);
    memcpy(&x, R->b + R->at, sizeof x);
    R->at += sizeof x;
    return x;
}

/* site flags */
enum { S_LATENT = 1, S_DETERMINISTIC = 2, S_INTS = 4, S_CATEGORICAL = 8, S_DIM1 = 16 };

/* Values that are all whole numbers in [0, 2^53) travel as varints (token ids, counts, labels). */
static int all_small_ints(const double *v, int dim)
{
    for (int k = 0; k < dim; k++)
        if (!(v[k] >= 0 && v[k] < 9007199254740992.0 && v[k] == floor(v[k]))) return 0;
    return 1;
}

void plm_l_rec_write(lua_State *L, plm_l_buf *B, const particle *p, long gidx)
{
    const plm_trace *tr = p->ex.tr;
    const char *prev = NULL;
    size_t i, ns = 0;
    put_uv(L, B, (uint64_t)gidx);
    put_uv(L, B, (uint64_t)p->ex.checkpoints);
    put_byte(L, B, p->state == P_DONE || p->keeps_done);
    plm_l_buf_put(L, B, p->rng.s, sizeof p->rng.s);
    put_double(L, B, tr->logprior);
    put_double(L, B, tr->loglik);
    for (i = 0; i < tr->n; i++) ns += tr->sites[i].kind != PLM_SITE_OBSERVED;
    put_uv(L, B, ns);
    for (i = 0; i < tr->n; i++) {
        const plm_site *s = &tr->sites[i];
        int ints, cat, k;
        size_t alen, pre = 0;
        if (s->kind == PLM_SITE_OBSERVED) continue;
        ints = all_small_ints(s->value, s->dim);
        cat = s->dist && s->dist->kind == PLM_DIST_CATEGORICAL;
        put_byte(L, B, (s->kind == PLM_SITE_LATENT ? S_LATENT : S_DETERMINISTIC) | (ints ? S_INTS : 0) |
                           (cat ? S_CATEGORICAL : 0) | (s->dim == 1 ? S_DIM1 : 0));
        if (cat) put_uv(L, B, (uint64_t)(s->dist->base < 0 ? 0 : s->dist->base));
        alen = strlen(s->addr);
        if (prev)
            while (pre < alen && prev[pre] == s->addr[pre]) pre++;
        put_uv(L, B, pre);
        put_uv(L, B, alen - pre);
        plm_l_buf_put(L, B, s->addr + pre, alen - pre);
        prev = s->addr;
        if (s->dim != 1) put_uv(L, B, (uint64_t)s->dim);
        for (k = 0; k < s->dim; k++) {
            if (ints) put_uv(L, B, (uint64_t)s->value[k]);
            else put_double(L, B, s->value[k]);
        }
    }
}

size_t plm_l_rec_read(lua_State *L, const unsigned char *b, size_t n, pop_rec *r, int for_results)
{
    rd R = {L, b, n, 0};
    plm_ctx ctx;
    uint64_t ns, i;
    char abuf[256], *addr = abuf;
    size_t asize = sizeof abuf;
    double vbuf[64];
    plm_ctx_clear(&ctx);
    memset(r, 0, sizeof *r);
    if (plm_trace_new(&ctx, &r->tr)) plm_l_fail(L, &ctx);
    r->gidx = (long)get_uv(&R);
    r->checkpoints = (int)get_uv(&R);
    r->done = get_byte(&R);
    rd_need(&R, sizeof r->rng);
    memcpy(r->rng, b + R.at, sizeof r->rng);
    R.at += sizeof r->rng;
    r->logprior = get_double(&R);
    r->loglik = get_double(&R);
    ns = get_uv(&R);
    for (i = 0; i < ns; i++) {
        int fl = get_byte(&R), k, dim;
        uint64_t base = 0, pre, rest;
        double *v = vbuf, lp = fl & S_LATENT ? NAN : 0;   /* NaN: not sent (the replay rescores, checks the sums) */
        const char *prev = i ? r->tr->sites[r->tr->n - 1].addr : "";
        if (fl & S_CATEGORICAL) base = get_uv(&R);
        pre = get_uv(&R);
        rest = get_uv(&R);
        rd_need(&R, rest);
        if (pre > strlen(prev)) luaL_error(L, "plume.smc: a particle record from another rank is malformed (address)");
        if (pre + rest >= asize) {
            asize = (size_t)(pre + rest) * 2 + 1;
            if (!(addr = plm_gc_alloc_atomic(asize))) luaL_error(L, "plume.smc: out of memory");
        }
        memmove(addr, prev, pre);
        memcpy(addr + pre, b + R.at, rest);
        addr[pre + rest] = 0;
        R.at += rest;
        dim = fl & S_DIM1 ? 1 : (int)get_uv(&R);
        if (dim < 1 || (uint64_t)dim > R.n) luaL_error(L, "plume.smc: a particle record from another rank is malformed (dim %d)", dim);
        if (dim > 64 && !(v = plm_gc_alloc_atomic((size_t)dim * sizeof *v))) luaL_error(L, "plume.smc: out of memory");
        for (k = 0; k < dim; k++) v[k] = fl & S_INTS ? (double)get_uv(&R) : get_double(&R);
        /* results show categorical values as their labels (runtime/results.c adds the base); the record holds
        ** the raw value, and a trace read for results has no distribution to shift it */
        if (for_results && (fl & S_CATEGORICAL))
            for (k = 0; k < dim; k++) v[k] += (double)base;
        if (plm_trace_add(&ctx, r->tr, addr, fl & S_LATENT ? PLM_SITE_LATENT : PLM_SITE_DETERMINISTIC, NULL, v, dim, lp,
                          NULL))
            plm_l_fail(L, &ctx);
    }
    /* the totals as the sender had them (factors are in loglik, and no observation was recorded) */
    r->tr->logprior = r->logprior;
    r->tr->loglik = r->loglik;
    return R.at;
}

/* ---- Lua values (a finished particle's return value) ---- */

enum { V_NIL, V_FALSE, V_TRUE, V_INT, V_NUM, V_STR, V_TABLE };

static void val_write(lua_State *L, plm_l_buf *B, int idx, const char *what, int depth)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: put_byte(L, B, V_NIL); return;
    case LUA_TBOOLEAN: put_byte(L, B, lua_toboolean(L, idx) ? V_TRUE : V_FALSE); return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            lua_Integer v = lua_tointeger(L, idx);
            put_byte(L, B, V_INT);
            plm_l_buf_put(L, B, &v, sizeof v);
        } else {
            put_byte(L, B, V_NUM);
            put_double(L, B, lua_tonumber(L, idx));
        }
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        put_byte(L, B, V_STR);
        put_uv(L, B, len);
        plm_l_buf_put(L, B, s, len);
        return;
    }
    case LUA_TTABLE: {
        uint64_t np = 0;
        if (depth > 32) luaL_error(L, "plume.smc: %s nests tables more than 32 deep (or is cyclic): it cannot be sent to other ranks", what);
        luaL_checkstack(L, 4, what);
        lua_pushnil(L);
        while (lua_next(L, idx)) np++, lua_pop(L, 1);
        put_byte(L, B, V_TABLE);
        put_uv(L, B, np);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            val_write(L, B, -2, what, depth + 1);
            val_write(L, B, -1, what, depth + 1);
            lua_pop(L, 1);
        }
        return;
    }
    default:
        luaL_error(L, "plume.smc: %s is a %s: across ranks, a program's return value must be nil, a boolean, a number, "
                      "a string or a table of these (it is sent to every rank)", what, luaL_typename(L, idx));
    }
}

void plm_l_val_write(lua_State *L, plm_l_buf *B, int idx, const char *what)
{
    val_write(L, B, idx, what, 0);
}

static void val_read(rd *R, int depth)
{
    lua_State *L = R->L;
    int t = get_byte(R);
    luaL_checkstack(L, 3, "plume.smc");
    switch (t) {
    case V_NIL: lua_pushnil(L); return;
    case V_FALSE: lua_pushboolean(L, 0); return;
    case V_TRUE: lua_pushboolean(L, 1); return;
    case V_INT: {
        lua_Integer v;
        rd_need(R, sizeof v);
        memcpy(&v, R->b + R->at, sizeof v);
        R->at += sizeof v;
        lua_pushinteger(L, v);
        return;
    }
    case V_NUM: lua_pushnumber(L, get_double(R)); return;
    case V_STR: {
        uint64_t len = get_uv(R);
        rd_need(R, len);
        lua_pushlstring(L, (const char *)R->b + R->at, len);
        R->at += len;
        return;
    }
    case V_TABLE: {
        uint64_t np = get_uv(R), k;
        if (depth > 32 || np > R->n) luaL_error(L, "plume.smc: a return value from another rank is malformed");
        lua_createtable(L, 0, 0);
        for (k = 0; k < np; k++) {
            val_read(R, depth + 1);
            val_read(R, depth + 1);
            lua_rawset(L, -3);
        }
        return;
    }
    default: luaL_error(L, "plume.smc: a return value from another rank is malformed (tag %d)", t);
    }
}

size_t plm_l_val_read(lua_State *L, const unsigned char *b, size_t n)
{
    rd R = {L, b, n, 0};
    val_read(&R, 0);
    return R.at;
}
