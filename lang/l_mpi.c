/* l_mpi.c -- plume.mpi: the ranks of an MPI job as scripts see them (runtime/base/comm.h). Without mpirun, or in
** a build without MPI, rank 0 of 1. */
#include "lutil.h"

void plm_l_open_mpi(lua_State *L)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, plm_comm_rank());
    lua_setfield(L, -2, "rank");
    lua_pushinteger(L, plm_comm_size());
    lua_setfield(L, -2, "size");
    lua_pushboolean(L, plm_comm_rank() == 0);
    lua_setfield(L, -2, "is_root");
    lua_pushboolean(L, plm_comm_compiled());
    lua_setfield(L, -2, "compiled");
    lua_setfield(L, -2, "mpi");
}
