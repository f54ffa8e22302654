#!/usr/bin/env bash
# Two "hosts" on one machine: two network namespaces joined by a veth pair (192.0.2.1 and
# 192.0.2.2, a documentation range; the namespaces have no other link, so no traffic leaves
# them), each with its own host name. smprun --hosts 192.0.2.1:2,192.0.2.2:2 starts mnist at
# pp 2 x dp 2 from inside the first namespace; Open MPI reaches the second through
# netns_agent.sh (its launch agent in place of ssh) and carries the ranks' messages between the
# hosts over TCP on the veth (btl tcp; ranks on the same host may use shared memory, vader).
#
#   two_hosts.sh MODE SMPRUN MNIST COMPARE_SAFETENSORS GOLDEN_DIR ONE_PROCESS OUT_DIR REL \
#                DELAY_LINE
#
# MODE match: 20 SGD steps with the data-parallel replicas on different hosts (placement
#   cluster: every gradient allreduce crosses the link) and then with the pipeline stages on
#   different hosts (spread: every microbatch's activations and gradients cross it); each must
#   end where one process ends (ONE_PROCESS, tests/examples' mnist_sgd20_run) within REL, and
#   the gradients must have crossed the veth (its byte counters).
# MODE delay: the same, with 50 ms added to the link in each direction (100 ms round trip,
#   checked before the run). This kernel has no sch_netem (`tc qdisc add ... netem` answers
#   "Specified qdisc kind is unknown"), so instead of a veth pair with netem the link is two
#   TUN devices joined by DELAY_LINE (tests/hosts/delay_line.cpp), which holds each packet for
#   50 ms in user space.
# MODE cut: mnist trains with comm_timeout 15; after 10 steps every packet between the hosts
#   is dropped (a blackhole route to the peer on each side: silence, no reset, as a dead switch
#   or pulled cable looks to TCP). Every rank must print an error naming the ranks on the other
#   host within comm_timeout + 5 s (each rank's stderr is copied on its own host: the far
#   host's output cannot reach mpirun) and end within comm_timeout + 20 s, every rank must
#   leave its flight record, smp-flight ($FLIGHT) must tell the split network from a stalled
#   rank, and the whole job must end, non-zero, within comm_timeout + 45 s
#   (see docs/reliability.md and docs/launcher.md for the launcher's part).
#
# The namespaces, their processes and the scratch directory are removed on every exit. Needs
# root (CAP_NET_ADMIN and CAP_SYS_ADMIN for ip netns); as another user it skips with exit 77,
# saying so. As root, any failure to set up the namespaces fails the test.
set -euo pipefail
if [[ $# -ne 9 ]]; then
  echo "usage: two_hosts.sh match|delay|cut SMPRUN MNIST COMPARE_SAFETENSORS GOLDEN_DIR ONE_PROCESS OUT_DIR REL DELAY_LINE" >&2
  exit 2
fi
mode=$1 smprun=$2 mnist=$3 compare=$4 golden=$5 one=$6 out_dir=$7 rel=$8 delay_line=$9
case $mode in match|delay|cut) ;; *) echo "two_hosts.sh: unknown mode '$mode'" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)

if [[ $(id -u) -ne 0 ]]; then
  echo "two_hosts.sh: SKIPPED: creating network namespaces needs root (CAP_NET_ADMIN); this runs as uid $(id -u)"
  exit 77
fi

ns_a=smp-$$-a ns_b=smp-$$-b  # unique per run: tests may run in parallel
ip_a=192.0.2.1 ip_b=192.0.2.2
dir=$(mktemp -d "${TMPDIR:-/tmp}/two_hosts.XXXXXX")
ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { local t=$(($1 / 100)); echo "$((t / 10)).$((t % 10))"; }  # ms -> "12.3"
took() { if [[ -n $1 ]]; then echo "$(secs "$1") s"; else echo "more than 120 s"; fi; }

line=''  # the delay line's PID (it runs outside the namespaces)
cleanup() {
  local rc=$?
  set +e
  [[ -n $line ]] && { kill -KILL "$line"; wait "$line"; } 2>/dev/null
  for ns in "$ns_a" "$ns_b"; do
    # shellcheck disable=SC2046
    kill -KILL $(ip netns pids "$ns" 2>/dev/null) 2>/dev/null
  done
  for ns in "$ns_a" "$ns_b"; do
    ip netns del "$ns" 2>/dev/null
    rm -f /dev/shm/*"$ns"* 2>/dev/null
  done
  rm -rf "$dir"
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# The two hosts and the link between them.
ip netns add "$ns_a"
ip netns add "$ns_b"
if [[ $mode == delay ]]; then
  dev=tun0
  "$delay_line" "$ns_a" "$ns_b" 50 >"$dir/line" 2>&1 &
  line=$!
  for _ in $(seq 100); do [[ -s $dir/line ]] && break; sleep 0.05; done
  if [[ $(cat "$dir/line") != ready ]]; then
    cat "$dir/line"
    echo "two_hosts.sh: the delay line did not start"
    exit 1
  fi
  link="a link of 50 ms each way (delay_line)"
else
  dev=veth0
  ip link add veth0 netns "$ns_a" type veth peer name veth0 netns "$ns_b"
  link="a veth pair"
fi
ip -n "$ns_a" addr add "$ip_a/24" dev $dev
ip -n "$ns_b" addr add "$ip_b/24" dev $dev
for ns in "$ns_a" "$ns_b"; do
  ip -n "$ns" link set lo up
  ip -n "$ns" link set $dev up
done
mkdir -p "$dir/tmp/$ns_a" "$dir/tmp/$ns_b"
echo "two_hosts.sh: $ns_a ($ip_a) and $ns_b ($ip_b) joined by $link"

export SMP_NETNS_HOSTS="$ip_b=$ns_b" SMP_NETNS_TMP="$dir/tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# The sanitizer runs' options (tools/run sanitize, tsan) reach the far host's ranks as any
# environment would on real hosts: forwarded by mpirun.
forward=""
for v in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
  if [[ -n ${!v:-} ]]; then forward+=" -x $v"; fi
done

# distribution PLACEMENT EXTRA_PARAMETERS EXTRA_MPI_OPTIONS: a distribution file for 2 ranks a
# host, pp 2 x dp 2. Only the MCA parameters below reach the remote host (the agent starts it
# with a clean environment, as ssh would).
distribution() {
  local f=$dir/$1.json
  cat >"$f" <<EOF
{"smdistributed": {"modelparallel": {"enabled": true, "parameters": {
   "partitions": 2, "microbatches": 4, "pipeline": "interleaved", "ddp": true,
   "placement_strategy": "$1"$2}}},
 "mpi": {"enabled": true, "processes_per_host": 2,
   "custom_mpi_options": "--mca plm_rsh_agent $here/netns_agent.sh --mca btl tcp,vader,self --mca btl_tcp_if_include 192.0.2.0/24 --mca oob_tcp_if_include 192.0.2.0/24$forward $3"}}
EOF
  echo "$f"
}

# on_host_a COMMAND...: runs COMMAND in the first namespace under its own host name, in the
# scratch directory (where the ranks of both hosts find it: the hosts share the file system).
on_host_a() {
  # shellcheck disable=SC2016  # expanded by the inner shell
  (cd "$dir" && exec ip netns exec "$ns_a" unshare --uts env TMPDIR="$dir/tmp/$ns_a" \
     sh -c 'echo "$0" > /proc/sys/kernel/hostname && exec "$@"' "$ns_a" "$@")
}

link_bytes() {  # NS: bytes sent and received on its end of the link
  # shellcheck disable=SC2016  # expanded by the inner shell
  ip netns exec "$1" sh -c 'echo $(($(cat /sys/class/net/$0/statistics/tx_bytes) + $(cat /sys/class/net/$0/statistics/rx_bytes)))' $dev
}

mnist_args=(--init "$golden/mnist_init.safetensors" --optimizer sgd --lr 0.01 --momentum 0.9
            --no-shuffle --batch-size 32 --dropout off --skip-test)

if [[ $mode == delay ]]; then
  # The round trip: a connection to a closed port of the other host is refused one round trip
  # after it is asked for.
  start=$(ms)
  ip netns exec "$ns_a" bash -c "exec 3<>/dev/tcp/$ip_b/9" 2>/dev/null && true
  rtt=$(($(ms) - start))
  echo "two_hosts.sh: round trip $rtt ms"
  if ((rtt < 100)); then
    echo "two_hosts.sh: the round trip is under 100 ms: the link is not delayed"
    exit 1
  fi
fi

if [[ $mode == match || $mode == delay ]]; then
  # What must cross the link, at least (half of it is asked for, so that only a run that kept
  # its traffic off the link fails). mnist's parameters: stage 0 18,816, stage 1 1,181,066.
  # At placement cluster each of the 20 steps allreduces every gradient between the hosts,
  # 4 bytes a parameter each way: 2 x 20 x 4 x 1,199,882 = 192 MB. At spread only
  # activations and their gradients cross: each replica's 4 microbatches of 8 x 9216 floats
  # each way a step, 2 replicas x 2 x 20 x 4 x 8 x 9216 x 4 bytes = 94 MB.
  for case in "cluster 96000000" "spread 47000000"; do
    read -r placement min_bytes <<<"$case"
    cfg=$(distribution "$placement" "" "--display-map")
    out=$out_dir/mnist_two_hosts_$placement.safetensors
    rm -f "$out"
    before=$(link_bytes "$ns_a")
    start=$(ms)
    if ! on_host_a timeout 150 "$smprun" --distribution "$cfg" --hosts "$ip_a:2,$ip_b:2" -- \
           "$mnist" "${mnist_args[@]}" --steps 20 --save "$out" >"$dir/out" 2>&1; then
      cat "$dir/out"
      echo "two_hosts.sh: the $placement run failed"
      exit 1
    fi
    took=$(($(ms) - start))
    bytes=$(($(link_bytes "$ns_a") - before))
    cat "$dir/out"
    # Open MPI's map: two nodes (mpirun's own, and 192.0.2.2 through the agent), 2 ranks each.
    if [[ $(grep -c "Num procs: 2" "$dir/out") -lt 2 ]] || ! grep -q "Data for node: $ip_b" "$dir/out"; then
      echo "two_hosts.sh: Open MPI did not map 2 ranks to each of the two hosts"
      exit 1
    fi
    echo "two_hosts.sh: placement $placement: $(secs $took) s, $bytes bytes over $dev (at least $min_bytes expected)"
    if ((bytes < min_bytes)); then
      echo "two_hosts.sh: too little traffic crossed $dev: did the ranks talk over it?"
      exit 1
    fi
    "$compare" "$out" "$one" --rel "$rel" --base "$golden/mnist_init.safetensors"
  done
  echo "two_hosts.sh: ok"
  exit 0
fi

# MODE cut.
timeout_s=15
# Linux retransmits unacknowledged TCP data for ~15 minutes before it gives up on a silent peer
# (net.ipv4.tcp_retries2 = 15). mpirun learns that a remote daemon is gone only then, so after
# the ranks have stopped it would wait that long for the other host to confirm. Each host here
# gives up after 6 retries (~25 s), longer than comm_timeout, so libsmp's timeout still comes
# first. docs/launcher.md says how to do the same on real hosts.
for ns in "$ns_a" "$ns_b"; do ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_retries2=6; done
cfg=$(distribution cluster ", \"comm_timeout\": $timeout_s" "-x RANK_STDERR_DIR")
mkdir -p "$dir/ranks"
export RANK_STDERR_DIR=$dir/ranks
on_host_a timeout 300 "$smprun" --distribution "$cfg" --hosts "$ip_a:2,$ip_b:2" -- \
  "$here/rank_stderr.sh" "$mnist" "${mnist_args[@]}" --steps 5000 --log-interval 5 \
  >"$dir/out" 2>&1 &
job=$!
for _ in $(seq 1200); do
  grep -q "^epoch 1 10/" "$dir/out" && break
  kill -0 $job 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "^epoch 1 10/" "$dir/out"; then
  cat "$dir/out"
  echo "two_hosts.sh: the job did not reach step 10"
  exit 1
fi
ip -n "$ns_a" route add blackhole "$ip_b/32"
ip -n "$ns_b" route add blackhole "$ip_a/32"
start=$(ms)
echo "two_hosts.sh: link cut after step 10"

ranks_left() {  # the mnist processes still running on either host
  local n=0 p
  for ns in "$ns_a" "$ns_b"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do
      [[ $(cat "/proc/$p/comm" 2>/dev/null) == mnist ]] && n=$((n + 1))
    done
  done
  echo $n
}
# rank_error R: whether rank R's stderr holds an error that names the other host's ranks,
# which stopped answering (as the rank that timed out, or as one told of its failure).
rank_error() {
  local other="2, 3"
  (($1 >= 2)) && other="0, 1"
  local re="timed out after $timeout_s s \(rank [0-3] waited for ranks \[[0-3], [0-3]\] to join.*; ranks \[$other\] did not answer"
  grep -Eq "^(smp: rank $1 failed|mnist: rank $1 stopping): .*$re" "$dir/ranks/rank.$1.err" 2>/dev/null
}
ranks_done='' job_done='' error_at=('' '' '' '')
while (($(ms) - start < 120000)); do
  for r in 0 1 2 3; do
    [[ -z ${error_at[r]} ]] && rank_error $r && error_at[r]=$(($(ms) - start))
  done
  [[ -z $ranks_done && $(ranks_left) -eq 0 ]] && ranks_done=$(($(ms) - start))
  if ! kill -0 $job 2>/dev/null; then job_done=$(($(ms) - start)); break; fi
  sleep 0.2
done
[[ -z $ranks_done && $(ranks_left) -eq 0 ]] && ranks_done=$(($(ms) - start))
rc=0
if [[ -n $job_done ]]; then wait $job || rc=$?; fi
cat "$dir/out"
for r in 0 1 2 3; do
  echo "--- rank $r's stderr, as written on its host:"
  cat "$dir/ranks/rank.$r.err" 2>/dev/null || echo "(none)"
done
for r in 0 1 2 3; do
  [[ -z ${error_at[r]} ]] && rank_error $r && error_at[r]=$(($(ms) - start))
  echo "two_hosts.sh: rank $r's error after $(took "${error_at[r]}")"
done
echo "two_hosts.sh: after the cut the ranks ended after $(took "$ranks_done"), mpirun after $(took "$job_done") (exit status $rc)"

fail=0
# Every rank's error names the ranks of the other host and comes once its wait times out.
for r in 0 1 2 3; do
  if [[ -z ${error_at[r]} ]]; then
    echo "two_hosts.sh: rank $r did not stop with an error naming the other host's ranks"
    fail=1
  elif ((error_at[r] > (timeout_s + 5) * 1000)); then
    echo "two_hosts.sh: rank $r's error came later than comm_timeout + 5 s"
    fail=1
  fi
done
# A rank told of another's failure waits up to 10 s for that rank to abort the job before it
# ends itself (smp::handle_exception); the far host's ranks cannot be aborted by mpirun.
if [[ -z $ranks_done ]] || ((ranks_done > (timeout_s + 20) * 1000)); then
  echo "two_hosts.sh: the ranks did not all end within comm_timeout + 20 s"
  fail=1
fi
if [[ -z $job_done ]] || ((job_done > (timeout_s + 45) * 1000)); then
  echo "two_hosts.sh: mpirun did not end within comm_timeout + 45 s"
  fail=1
fi
if [[ -n $job_done ]] && ((rc == 0)); then
  echo "two_hosts.sh: mpirun ended with exit status 0"
  fail=1
fi
# Every rank left its flight record (the ranks of both hosts run in the scratch directory).
for r in 0 1 2 3; do
  if [[ ! -s $dir/smp_flight.$r.json ]]; then
    echo "two_hosts.sh: rank $r wrote no flight record"
    fail=1
  fi
done
# smp-flight over the records: a split network, not a rank that is behind.
report=$("${FLIGHT:?FLIGHT must name smp-flight in mode cut}" "$dir" 2>&1) || true
echo "$report"
if ! grep -q "ranks \[0, 1\] and \[2, 3\] each stopped hearing from the other side" <<<"$report"; then
  echo "two_hosts.sh: smp-flight does not find the network between the hosts failed"
  fail=1
fi
# What the user sees at mpirun: the errors of the ranks on its own host (the other host's
# output would have to cross the cut link).
if ! grep -Eq "^smp: rank [01] failed: .*ranks \[2, 3\] did not answer" "$dir/out"; then
  echo "two_hosts.sh: mpirun's output does not show the error of a rank on its host"
  fail=1
fi
((fail == 0)) || exit 1
echo "two_hosts.sh: ok"
