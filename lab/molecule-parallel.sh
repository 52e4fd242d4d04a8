#!/usr/bin/env bash
# Runs `molecule test -s <scenario>` for every scenario given, JOBS at a time (the scenarios use their
# own containers and networks, and most of their time is spent waiting on boots, services and polls, so
# they overlap well even on 2 cores). Each writes .cache/molecule-logs/<scenario>.log; its time goes to
# TIMINGS as "molecule <scenario>: N s". When a scenario fails, the end of its log is printed and the
# script exits 1 after the others have finished.
#
# Usage: JOBS=3 TIMINGS=.cache/timings.txt lab/molecule-parallel.sh scenario...   (molecule on PATH)
set -uo pipefail
jobs_max=${JOBS:-3}
timings=${TIMINGS:-/dev/null}
logs=${MOLECULE_LOGS:-.cache/molecule-logs}
mkdir -p "$logs"

run_one() {
  local scenario=$1 start rc
  start=$(date +%s)
  molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1
  rc=$?
  echo "molecule $scenario: $(( $(date +%s) - start )) s" | tee -a "$timings"
  if [ "$rc" -ne 0 ]; then
    { echo "==> molecule $scenario FAILED (exit $rc); last lines of $logs/$scenario.log:"; tail -n 150 "$logs/$scenario.log"; } >&2
  fi
  return "$rc"
}

failed=()
declare -A pids=()
for scenario in "$@"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  echo "==> molecule test -s $scenario (log: $logs/$scenario.log)"
  run_one "$scenario" &
  pids[$scenario]=$!
done
for scenario in "${!pids[@]}"; do
  wait "${pids[$scenario]}" || failed+=("$scenario")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "==> molecule failed: ${failed[*]}" >&2
  exit 1
fi
