/* l_mpi.c -- plume.mpi: the ranks of an MPI job as scripts see them (runtime/base/comm.h). Without mpirun, or in
** a build without MPI, rank 0 of 1 and nothing below changes plume's behaviour.
**
** Under mpirun every rank runs the same script; rank 0 speaks for the job. On the other ranks:
**  - standard output is silenced (file descriptor 1 goes to /dev/null, so Lua's print and io.write and C's
**    printf alike), and progress lines are off, unless PLUME_MPI_PRINT=all or plume.mpi.print_all(true);
**  - files are left to rank 0: io.open and io.output in a writing mode ("w", "a", "+") give /dev/null,
**    os.remove and os.rename succeed without effect, and plume's own writers (write_csv, write_json, the
**    `output` option, plots) write nothing (plm_l_mpi_writes). Names that os.tmpname gave this process are
**    its own and exempt: a script that writes a temporary file and reads it back does so on every rank.
**    plume.mpi.write_all(true) lets every rank write (a script that names one file per rank, e.g. logs).
** Errors are main.c's: "plume: rank r: message" and the whole job ends (plm_comm_abort). */
#include "lutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TMPNAMES "plume.mpi.tmpnames"   /* registry: set of this process's os.tmpname names */

/* Standard output of a non-root rank: the descriptor saved when it was silenced (-1: never silenced) and
** whether it is silenced now. One process, one stdout: shared by every Lua state of the process. */
static int saved_stdout = -1, silenced;

static void silence(int on)
{
    if (on == silenced) return;
    fflush(stdout);
    if (on) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0) return;
        if (saved_stdout < 0) saved_stdout = dup(STDOUT_FILENO);
        if (saved_stdout >= 0) dup2(null, STDOUT_FILENO);
        close(null);
        silenced = saved_stdout >= 0;
    } else {
        dup2(saved_stdout, STDOUT_FILENO);
        silenced = 0;
    }
}

int plm_l_mpi_chatty(void)
{
    return !silenced;
}

static int write_all;   /* plume.mpi.write_all(true): every rank writes files */

int plm_l_mpi_writes(lua_State *L, const char *path)
{
    int own;
    if (plm_comm_rank() == 0 || write_all) return 1;
    if (lua_getfield(L, LUA_REGISTRYINDEX, TMPNAMES) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    own = lua_getfield(L, -1, path) != LUA_TNIL;
    lua_pop(L, 2);
    return own;
}

/* plume.mpi.print_all(on) -> whether it was on: other ranks' standard output and progress lines shown too */
static int l_print_all(lua_State *L)
{
    int was = !silenced;
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    if (plm_comm_rank() != 0) silence(!lua_toboolean(L, 1));
    lua_pushboolean(L, was);
    return 1;
}

/* plume.mpi.write_all(on) -> whether it was on: every rank writes the files it opens (per-rank file names are
** the script's business), not rank 0 alone */
static int l_write_all(lua_State *L)
{
    int was = write_all;
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    write_all = lua_toboolean(L, 1);
    lua_pushboolean(L, was);
    return 1;
}

/* plume.mpi.barrier(): wait for every rank (e.g. before reading a file that rank 0 wrote) */
static int l_barrier(lua_State *L)
{
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_comm_barrier(&ctx)) return plm_l_fail(L, &ctx);
    return 0;
}

/* plume.mpi.bytes_sent() -> the bytes this rank has handed to MPI for other ranks (plm_comm_bytes_sent) */
static int l_bytes_sent(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)plm_comm_bytes_sent());
    return 1;
}

/* ---- the file system, left to rank 0 (installed on other ranks only) ---- */

static int writing_mode(const char *mode)
{
    return strpbrk(mode, "wa+") != NULL;
}

/* io.open(path, mode): the original (upvalue 1) on /dev/null when this rank may not write path */
static int nonroot_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1), *mode = luaL_optstring(L, 2, "r");
    lua_settop(L, 2);
    if (writing_mode(mode) && !plm_l_mpi_writes(L, path)) {
        lua_pushliteral(L, "/dev/null");
        lua_replace(L, 1);
        lua_pushliteral(L, "w");
        lua_replace(L, 2);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, LUA_MULTRET);
    return lua_gettop(L);
}

/* io.output(file): a file name opens it for writing */
static int nonroot_output(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING && !plm_l_mpi_writes(L, lua_tostring(L, 1))) {
        lua_pushliteral(L, "/dev/null");
        lua_replace(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* os.remove(path) / os.rename(from, to): no effect (success) unless path / from is this process's own */
static int nonroot_fsop(lua_State *L)
{
    if (!plm_l_mpi_writes(L, luaL_checkstring(L, 1))) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* os.tmpname(): the original's name, remembered as this process's own */
static int nonroot_tmpname(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 0, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, TMPNAMES);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_settable(L, -3);
    lua_pop(L, 1);
    return 1;
}

/* os.exit(code [, close]) under mpirun: a failure ends every rank (plm_comm_abort: the others may be waiting for
** this one); success leaves the job as the end of a script does (MPI_Finalize, which waits for the other ranks to
** finish too) */
static int mpi_exit(lua_State *L)
{
    int code = lua_isboolean(L, 1) ? (lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE)
                                   : (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
    if (code != EXIT_SUCCESS) plm_comm_abort(code);
    fflush(NULL);
    plm_comm_finalize();
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

/* Replace lib.name (lib from package.loaded) by f with the original as its upvalue. */
static void wrap(lua_State *L, const char *lib, const char *name, lua_CFunction f)
{
    int top = lua_gettop(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, lib) == LUA_TTABLE && lua_getfield(L, -1, name) == LUA_TFUNCTION) {
        lua_pushcclosure(L, f, 1);
        lua_setfield(L, -2, name);
    }
    lua_settop(L, top);
}

void plm_l_open_mpi(lua_State *L)
{
    static const luaL_Reg fns[] = {{"print_all", l_print_all}, {"barrier", l_barrier},
                                   {"bytes_sent", l_bytes_sent}, {"write_all", l_write_all},
                                   {NULL, NULL}};
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, plm_comm_rank());
    lua_setfield(L, -2, "rank");
    lua_pushinteger(L, plm_comm_size());
    lua_setfield(L, -2, "size");
    lua_pushboolean(L, plm_comm_rank() == 0);
    lua_setfield(L, -2, "is_root");
    lua_pushboolean(L, plm_comm_compiled());
    lua_setfield(L, -2, "compiled");
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, -2, "mpi");
    if (plm_comm_size() > 1) {
        /* One default stream for the whole job: without plume.seed it starts from rank 0's entropy on every
        ** rank, so that calls without a seed draw the same seeds everywhere (chains spread over ranks must
        ** come from one seed). The first state of the process is opened by every rank at the same point (the
        ** command's, or an embedder's after plm_comm_init), which makes the broadcast safe; later states of
        ** the process (chains' copies) keep their own streams. */
        static int seeded;
        if (!seeded) {
            uint64_t seed = plm_rng_entropy_seed();
            plm_ctx ctx;
            plm_ctx_clear(&ctx);
            seeded = 1;
            if (plm_comm_bcast(&ctx, &seed, sizeof seed, 0) == PLM_OK) {
                plm_rng *r = lua_newuserdatauv(L, sizeof *r, 0);
                plm_rng_init(r, seed, 0);
                lua_setfield(L, LUA_REGISTRYINDEX, "plume.rng");
            }
        }
        wrap(L, "os", "exit", mpi_exit);
    }
    if (plm_comm_rank() != 0) {
        static int started;   /* the process's stdout is silenced once, by the first state opened */
        const char *print = getenv("PLUME_MPI_PRINT");
        if (!started) {
            started = 1;
            if (!print || strcmp(print, "all") != 0) silence(1);
        }
        lua_newtable(L);
        lua_setfield(L, LUA_REGISTRYINDEX, TMPNAMES);
        wrap(L, "io", "open", nonroot_open);
        wrap(L, "io", "output", nonroot_output);
        wrap(L, "os", "remove", nonroot_fsop);
        wrap(L, "os", "rename", nonroot_fsop);
        wrap(L, "os", "tmpname", nonroot_tmpname);
    }
}
