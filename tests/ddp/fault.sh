#!/usr/bin/env bash
# Starts a job, sends SIGNAL to one rank once it trains, and checks that the whole job ends
# within LIMIT seconds with output matching REGEX.
#   fault.sh SIGNAL RANK LIMIT REGEX COMMAND...   (COMMAND gets a scratch directory appended)
# With FLIGHT=<smp-flight> and FLIGHT_REGEX=<regex> the ranks' flight records are read with
# smp-flight too, and its report must match.
set -uo pipefail
sig=$1 rank=$2 limit=$3 regex=$4
shift 4
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# In the scratch directory, where the ranks write their flight records.
(cd "$dir" && exec "$@" "$dir") >"$dir/out" 2>&1 &
job=$!
for _ in $(seq 300); do [[ -s $dir/pid.$rank ]] && break; sleep 0.1; done
if [[ ! -s $dir/pid.$rank ]]; then
  cat "$dir/out"; echo "fault.sh: rank $rank never wrote its PID"; kill -KILL $job; exit 1
fi
victim=$(cat "$dir/pid.$rank")
sleep 1
ms() { echo $(( $(date +%s%N) / 1000000 )); }
start=$(ms)
kill -"$sig" "$victim"
ended=0
while (( $(ms) - start < limit * 1000 )); do
  if ! kill -0 $job 2>/dev/null; then ended=1; break; fi
  sleep 0.2
done
took=$(( ($(ms) - start) / 100 ))
took="$((took / 10)).$((took % 10))"
cat "$dir/out"
if (( ! ended )); then
  echo "fault.sh: the job still runs ${limit} s after SIG$sig to rank $rank"
  pkill -KILL -P $job; kill -KILL $job; kill -KILL "$victim" 2>/dev/null; exit 1
fi
wait $job
rc=$?
echo "fault.sh: the job ended ${took} s after SIG$sig to rank $rank, exit status $rc"
(( rc != 0 )) || { echo "fault.sh: expected a non-zero exit status"; exit 1; }
grep -Eq "$regex" "$dir/out" || { echo "fault.sh: output does not match '$regex'"; exit 1; }
if [[ -n ${FLIGHT:-} ]]; then
  report=$("$FLIGHT" "$dir" 2>&1)
  echo "$report"
  grep -Eq "$FLIGHT_REGEX" <<<"$report" || { echo "fault.sh: smp-flight's report does not match"; exit 1; }
fi
echo "fault.sh: ok"
