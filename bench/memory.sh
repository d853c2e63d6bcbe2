#!/usr/bin/env bash
# bench/memory.sh: the memory of the Django test site (tests/python/apps/djsite) served by tine
# and by gunicorn, each with the application imported in every worker (lazy) and imported once
# in the master before the workers are forked (preload). Prints one table, and where each one's
# memory goes by kind of mapping.
#
# Builds tine (cargo build --release), makes the virtualenv with Django and gunicorn
# (tests/python/setup-venv, from PyPI; nothing to do when it is up to date), then for each of
# tine lazy, tine preload, gunicorn, gunicorn --preload, with the same workers and threads:
# starts the server on 127.0.0.1:$PORT in its own temp dir, waits until it answers and all its
# workers are up, sums the PSS (/proc/PID/smaps_rollup) of the master and its workers, warms it
# with a fixed number of requests over a few Django routes (each on a new connection, so every
# worker gets its share), sums the PSS again, breaks it down by kind of mapping
# (bench/lib/smaps.py: the master's and a mean worker's PSS in the binary, libpython, the heap,
# glibc's arenas, thread stacks, ...; a worker's private dirty pages against those it still
# shares), and stops it by its pid (TERM, then KILL after 10 s; a worker left behind is killed by
# its own pid). The table is also written as Markdown to
# bench/results/memory-latest.md.
#
# Usage: bench/memory.sh         (see "Benchmarks" in README.md)
# Environment:
#   WORKERS=5, THREADS=4  every server's worker processes and threads per worker
#   REQUESTS=2000         warm-up requests, spread over ROUTES in turn
#   CONCURRENCY=          warm-up requests under way at once (default WORKERS x THREADS)
#   CONFIGS="tine|lazy tine|preload gunicorn|lazy gunicorn|preload"
#                         the configurations to measure (server|mode), in this order
#   SETTLE=2              seconds to wait after the workers are up, and after the warm-up,
#                         before measuring
#   PORT=18081            the port every server listens on, one at a time
#   VENV=target/bench-venv
#                         the virtualenv (made or refreshed with tests/python/setup-venv)
#   PYTHON=python3        the interpreter setup-venv makes it with: the same minor version as
#                         the one tine was built against
#   SKIP_BUILD=1          use the existing target/release/tine
#   TINE=PATH             measure this tine binary instead (implies SKIP_BUILD)
#   RESULTS=FILE          where the Markdown goes (default bench/results/memory-latest.md)
#   KEEP_TMP=1            keep the temp dir (configs, server logs)
# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" || exit 1 # set -euo pipefail, HERE, ROOT, PROBE

WORKERS=${WORKERS:-5}
THREADS=${THREADS:-4}
REQUESTS=${REQUESTS:-2000}
CONCURRENCY=${CONCURRENCY:-}
SETTLE=${SETTLE:-2}
PORT=${PORT:-18081}
VENV=${VENV:-$ROOT/target/bench-venv}
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-$HERE/results/memory-latest.md}
START_TIMEOUT=30 # seconds a server may take to answer and to have all its workers up
STOP_TIMEOUT=10  # seconds between TERM and KILL
WARM_TIMEOUT=300 # seconds the warm-up may take
APPS=$ROOT/tests/python/apps
APP=djsite.wsgi:application
# Django routes that answer a GET without a body or a query the client must supply; /redirect
# answers 302.
ROUTES=(/ /target /redirect /cookie/read "/stream?n=20" /file)
# server|mode: the configurations, in the order they run
read -ra CONFIGS <<<"${CONFIGS:-tine|lazy tine|preload gunicorn|lazy gunicorn|preload}"
for config in "${CONFIGS[@]}"; do
    [[ $config =~ ^(tine|gunicorn)\|(lazy|preload)$ ]] || die "CONFIGS: '$config' is not SERVER|MODE (tine or gunicorn, lazy or preload)"
done

require_tools python3 curl cargo timeout
require_counts WORKERS THREADS REQUESTS
[[ -n $CONCURRENCY ]] || CONCURRENCY=$((WORKERS * THREADS))
require_counts CONCURRENCY
require_seconds SETTLE

find_tine
log "virtualenv $VENV"
"$ROOT/tests/python/setup-venv" "$VENV" "$PYTHON" || die "tests/python/setup-venv $VENV failed"
GUNICORN=$VENV/bin/gunicorn
[[ -x $GUNICORN ]] || die "no gunicorn in $VENV"
# gunicorn 25 and later open a control socket in ~/.gunicorn unless told not to; tine opens
# none unless [server] control_socket is set.
GUNICORN_EXTRA=()
"$GUNICORN" --help 2>/dev/null | grep -q -- '--no-control-socket' && GUNICORN_EXTRA+=(--no-control-socket)

# --- state and cleanup -------------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tine-memory.XXXXXX")
SERVER_PID=""
WORKER_PIDS=() # "PID:STARTTIME" of the running server's workers, to stop any it leaves behind

cleanup() {
    local status=$?
    [[ -n $SERVER_PID ]] && stop_all
    remove_tmp "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note_workers() { # remember the running server's workers by pid and start time
    mapfile -t WORKER_PIDS < <("${PROBE[@]}" workers "$SERVER_PID")
}

stop_all() { # the server by its pid, then any of its workers still running, each by its own pid
    local pid
    note_workers
    stop_server
    # Only the same processes (pid and start time): a pid may have been given to another by now.
    ((${#WORKER_PIDS[@]} > 0)) && for pid in $("${PROBE[@]}" same "${WORKER_PIDS[@]}"); do
        log "worker $pid outlived its master; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    done
    WORKER_PIDS=()
}

# --- one configuration -------------------------------------------------------------------------

start() { # start SERVER MODE DIR: launches it in DIR; sets SERVER_PID
    local server=$1 mode=$2 dir=$3 preload=false
    [[ $mode == preload ]] && preload=true
    if [[ $server == tine ]]; then
        cat >"$dir/tine.toml" <<EOF
# generated by bench/memory.sh
[server]
bind = ["127.0.0.1:$PORT"]
workers = $WORKERS
threads = $THREADS
graceful_timeout = "5s"

[app]
handler = "wsgi"
app = "$APP"
pythonpath = ["$APPS"]
virtualenv = "$VENV"
preload = $preload
EOF
        "$TINE" --check-config -c "$dir/tine.toml" >"$dir/check.log" 2>&1 ||
            return 2
        (cd "$dir" && exec "$TINE" -c "$dir/tine.toml") >"$dir/server.log" 2>&1 &
    else
        local args=(-k gthread -w "$WORKERS" --threads "$THREADS" --chdir "$APPS" -b "127.0.0.1:$PORT"
            --graceful-timeout 5 --worker-tmp-dir "$dir" "${GUNICORN_EXTRA[@]}")
        [[ $mode == preload ]] && args+=(--preload)
        printf '%q ' "$GUNICORN" "${args[@]}" "$APP" >"$dir/command"
        (cd "$dir" && exec "$GUNICORN" "${args[@]}" "$APP") >"$dir/server.log" 2>&1 &
    fi
    SERVER_PID=$!
}

wait_workers() { # until the server has WORKERS children, bounded by START_TIMEOUT
    local deadline=$((SECONDS + START_TIMEOUT)) n
    while ((SECONDS < deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        n=$("${PROBE[@]}" workers "$SERVER_PID" | wc -l)
        ((n == WORKERS)) && return 0
        sleep 0.1
    done
    return 1
}

log_tail() { # the last lines of a server's log, on one line
    tail -n 5 "$1" 2>/dev/null | tr '\n' ' ' | tr -s ' ' | sed 's/ *$//; s/\t/ /g'
}

# failed_row SERVER MODE SHAPE WHY: logs WHY, stops the server if it runs, and writes the row
failed_row() {
    log "   $4"
    [[ -n $SERVER_PID ]] && stop_all
    printf '%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\n' "$1" "$2" "$3" "$4" >>"$TMP/rows.tsv"
}

# measure SERVER MODE: one row of rows.tsv (see probe.py memory-render)
measure() {
    local server=$1 mode=$2 dir="$TMP/$1-$2" shape="${WORKERS}×${THREADS}"
    local before status=ok answers=- cpu=- result ok errors detail master total n low high rc=0
    mkdir -p "$dir"
    log "$server $mode ($shape)"
    port_busy && die "127.0.0.1:$PORT is taken before starting $server $mode; set PORT to a free port"
    start "$server" "$mode" "$dir" || rc=$?
    if ((rc == 2)); then
        failed_row "$server" "$mode" "$shape" "tine --check-config refused its config: $(log_tail "$dir/check.log")"
        return
    fi
    if ! wait_answer "$EPOCHREALTIME"; then
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            failed_row "$server" "$mode" "$shape" "did not answer within ${START_TIMEOUT} s: $(log_tail "$dir/server.log")"
        else
            wait "$SERVER_PID" && rc=0 || rc=$?
            SERVER_PID=""
            failed_row "$server" "$mode" "$shape" "exited with status $rc before answering: $(log_tail "$dir/server.log")"
        fi
        return
    fi
    if ! wait_workers; then
        failed_row "$server" "$mode" "$shape" "had $("${PROBE[@]}" workers "$SERVER_PID" | wc -l) of $WORKERS workers after ${START_TIMEOUT} s: $(log_tail "$dir/server.log")"
        return
    fi
    sleep "$SETTLE"
    if ! result=$("${PROBE[@]}" pss "$SERVER_PID" 2>/dev/null) ||
        ! "${PROBE[@]}" snap "$SERVER_PID" >"$dir/before.json" 2>/dev/null; then
        failed_row "$server" "$mode" "$shape" "the master exited before the warm-up: $(log_tail "$dir/server.log")"
        return
    fi
    read -r _ before _ _ _ <<<"$result"
    log "   warm-up: $REQUESTS requests over ${ROUTES[*]}, $CONCURRENCY at a time"
    if result=$(timeout -k 5 "$WARM_TIMEOUT" "${PROBE[@]}" warm "http://127.0.0.1:$PORT" \
        "$REQUESTS" "$CONCURRENCY" "${ROUTES[@]}"); then
        read -r ok errors detail <<<"$result"
        answers="$ok/$errors"
        log "   answered $ok ($detail), errors $errors"
        ((errors == 0)) || status="$errors warm-up requests failed"
    else
        answers="warm-up failed"
        status="the warm-up client failed or timed out"
    fi
    if "${PROBE[@]}" snap "$SERVER_PID" >"$dir/after.json" 2>/dev/null; then
        read -r _ _ cpu < <("${PROBE[@]}" delta "$dir/before.json" "$dir/after.json")
    fi
    sleep "$SETTLE"
    if ! result=$("${PROBE[@]}" pss "$SERVER_PID" 2>/dev/null); then
        failed_row "$server" "$mode" "$shape" "the master exited during the warm-up ($answers answered): $(log_tail "$dir/server.log")"
        return
    fi
    read -r master total n low high <<<"$result"
    ((n == WORKERS)) || status="$n of $WORKERS workers when measured ($status)"
    log "   PSS: total $((total / 1024)) MiB, master $((master / 1024)) MiB, $n workers"
    python3 "$HERE/lib/smaps.py" tsv "$server $mode" "$SERVER_PID" >>"$TMP/breakdown.tsv" 2>/dev/null ||
        log "   no breakdown by kind of mapping: the master exited"
    stop_all
    printf '%s\t' "$server" "$mode" "$shape" "$status" "$answers" "$cpu" "$before" "$total" "$master" "$low" >>"$TMP/rows.tsv"
    printf '%s\n' "$high" >>"$TMP/rows.tsv"
}

: >"$TMP/rows.tsv"
: >"$TMP/breakdown.tsv"
for config in "${CONFIGS[@]}"; do
    measure "${config%%|*}" "${config#*|}"
done

# --- the table ---------------------------------------------------------------------------------

meta=(
    "$(machine_note)"
    "$(tine_note), $(first_line "$GUNICORN" --version), Django $("$VENV/bin/python" -c 'import django; print(django.get_version())'), $(first_line "$VENV/bin/python" --version)"
    "tine: [server] workers = $WORKERS, threads = $THREADS; [app] handler = \"wsgi\", app = \"$APP\", pythonpath = [tests/python/apps], virtualenv, preload = false | true"
    "gunicorn: -k gthread -w $WORKERS --threads $THREADS --chdir tests/python/apps ${GUNICORN_EXTRA[*]} [--preload] $APP"
    "after all workers are up and ${SETTLE} s: PSS before the warm-up; then $REQUESTS GET requests, each on a new connection, $CONCURRENCY at a time, over ${ROUTES[*]} in turn; after ${SETTLE} s more: PSS from /proc/PID/smaps_rollup of the master and each worker"
    "per-worker PSS = (total − master) / workers; ratio = tine's total PSS / gunicorn's in the same mode"
    "by kind of mapping: bench/lib/smaps.py on /proc/PID/smaps right after the PSS above; a worker's figures are the mean of the workers'"
)
write_results memory-render "${meta[@]}"
