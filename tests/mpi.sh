# mpi.sh -- sourced by the MPI tests (tests/cli/mpi_*.sh): `mpi_run NP args...` runs plume under Open MPI's
# mpirun on this machine (oversubscribed: tests ask for more ranks than cores; as root, which Open MPI refuses
# unless told). `mpi_ready` prints the SKIP line and returns 1 when MPI cannot run here, naming why.
P=${PLUME:-${BUILD:-build}/plume}
mpi_ready() {
    if ! command -v mpirun >/dev/null 2>&1; then
        echo "SKIP $1: mpirun not found (scripts/deps.sh installs openmpi-bin)"; return 1
    fi
    if [ "$("$P" -e 'io.write(tostring(plume.mpi.compiled))')" != true ]; then
        echo "SKIP $1: this plume was built without MPI (make MPI=1 needs libopenmpi-dev)"; return 1
    fi
    return 0
}
mpi_run() {
    np=$1; shift
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
        timeout 120 mpirun --oversubscribe -np "$np" "$P" "$@"
}
