#!/usr/bin/env bash
# Open MPI's launch agent for the two-host test (--mca plm_rsh_agent): stands in for ssh.
# mpirun's rsh launcher calls it as `AGENT [OPTIONS] HOST COMMAND...`, COMMAND being shell
# text that starts the remote orted. HOST is looked up in SMP_NETNS_HOSTS, a space-separated
# list of HOST=NAMESPACE, and COMMAND runs in that network namespace, in a UTS namespace of its
# own whose host name is the namespace's name (so Open MPI's per-host names, such as its
# shared-memory files, differ as they would on two machines), with a clean environment as
# ssh would give it: PATH, HOME, and a TMPDIR of that "host" (SMP_NETNS_TMP/NAMESPACE).
set -euo pipefail
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
if [[ $# -lt 2 ]]; then
  echo "netns_agent.sh: expected [OPTIONS] HOST COMMAND..., got: $*" >&2
  exit 255
fi
host=$1
shift
ns=
for entry in ${SMP_NETNS_HOSTS:-}; do
  if [[ ${entry%%=*} == "$host" ]]; then ns=${entry#*=}; fi
done
if [[ -z $ns ]]; then
  echo "netns_agent.sh: host '$host' is not in SMP_NETNS_HOSTS ('${SMP_NETNS_HOSTS:-}')" >&2
  exit 255
fi
tmp=${SMP_NETNS_TMP:?SMP_NETNS_TMP is not set}/$ns
mkdir -p "$tmp"
# shellcheck disable=SC2016  # expanded by the inner shell
exec ip netns exec "$ns" unshare --uts env -i PATH="$PATH" HOME="${HOME:-/}" TMPDIR="$tmp" \
  sh -c 'echo "$0" > /proc/sys/kernel/hostname && exec sh -c "$*"' "$ns" "$@"
