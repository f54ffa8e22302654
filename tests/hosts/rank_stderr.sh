#!/usr/bin/env bash
# Runs PROGRAM ARGS... with its stderr copied to $RANK_STDERR_DIR/rank.<rank>.err on the host
# it runs on. When the network is cut, what a remote rank prints never reaches mpirun (its
# output travels over the cut link); the copy shows what each rank said.
#   rank_stderr.sh PROGRAM ARGS...
set -euo pipefail
rank=${OMPI_COMM_WORLD_RANK:?not started by mpirun}
exec "$@" 2> >(tee "${RANK_STDERR_DIR:?RANK_STDERR_DIR is not set}/rank.$rank.err" >&2)
