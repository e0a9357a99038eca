#!/usr/bin/env bash
# Container entry point: per-instance setup, then DOCKER_CORES workers.
#
# ECS stops a task with SIGTERM to this script (PID 1 in the container); it
# is forwarded to every child, each worker releases its job at once, and the
# script exits when they have all gone. Configuration: the env contract in
# documentation/worker.md.
set -u

HERE="$(cd "$(dirname "$0")" && pwd)"
# Tool images differ in which Python they ship; WORKER_PYTHON overrides.
PYTHON="${WORKER_PYTHON:-$(command -v python3 || command -v python)}"
CORES="${DOCKER_CORES:-1}"
SPACING="${SECONDS_TO_START:-0}"

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [run-worker] $*"; }

stopping=0
workers=()
monitor=""

on_signal() {
    stopping=1
    log "signal received: stopping ${#workers[@]} worker(s)"
    for pid in "${workers[@]}" $monitor; do
        kill -TERM "$pid" 2>/dev/null
    done
}
trap on_signal TERM INT

# Tag the instance, create its idle alarm (skipped off EC2; never fatal).
# Its last line is the instance id, which the workers put in their busy
# records (local runs set INSTANCE_ID to an emulated machine instead).
setup_out="$("$PYTHON" "$HERE/instance-setup.py")" || log "instance setup failed; continuing"
[ -n "$setup_out" ] && echo "$setup_out"
iid="$(printf '%s\n' "$setup_out" | tail -n 1)"
case "$iid" in i-*) : "${INSTANCE_ID:=$iid}" ;; esac
export INSTANCE_ID="${INSTANCE_ID:-}"

"$PYTHON" "$HERE/instance-monitor.py" &
monitor=$!

for ((i = 1; i <= CORES; i++)); do
    [ "$stopping" = 1 ] && break
    "$PYTHON" "$HERE/generic-worker.py" &
    workers+=($!)
    log "started worker $i/$CORES (pid $!)"
    if [ "$i" -lt "$CORES" ] && [ "$SPACING" != 0 ]; then
        # The one deliberate delay: spread the workers' start-up load.
        # In the background + wait, so a signal interrupts it at once.
        sleep "$SPACING" &
        wait $! 2>/dev/null
    fi
done

status=0
for pid in "${workers[@]}"; do
    # `wait` returns early (>128) when a trapped signal arrives; keep waiting
    # until the child has really gone, then collect its exit status.
    while kill -0 "$pid" 2>/dev/null; do
        wait "$pid"
    done
    wait "$pid"
    rc=$?
    [ "$rc" -ne 0 ] && status=$rc
done
[ "$stopping" = 1 ] && status=0

kill -TERM "$monitor" 2>/dev/null
wait "$monitor" 2>/dev/null
log "all workers stopped (status $status)"
exit "$status"
