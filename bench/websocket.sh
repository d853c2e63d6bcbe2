#!/usr/bin/env bash
# bench/websocket.sh: tine's WebSockets side by side with uvicorn and granian, on the same raw
# ASGI echo application (bench/apps/ws_echo.py) and on a FastAPI websocket echo route
# (bench/apps/fastapi_ws_echo.py), and prints the tables.
#
# Builds tine (cargo build --release), the load client bench/wsload (a standalone std-only Rust
# program, built into target/wsload), makes the virtualenv as bench/asgi.sh does
# (tests/python/setup-venv, whose list pins websockets for uvicorn, then
# bench/requirements-asgi.txt), then for each application and each server in turn: starts the
# server on 127.0.0.1:$PORT with WORKERS worker processes in its own temp dir, waits until it is
# ready, and runs
#   echo-64x64B     (ws_echo) 64 connections, each sending a 64-byte binary message and
#                   waiting for its echo, for DURATION s after WARMUP s of the same unmeasured
#   echo-16x64KiB   (ws_echo) 16 connections, 64 KiB messages, the same way
#   idle-N          (ws_echo) IDLE connections opened (handshake each) and held idle: the PSS
#                   of the server's master and workers before (after the echo runs, at rest) and
#                   while it holds them; KiB per idle socket = ΔPSS / sockets held
#   fastapi-echo-64x64B
#                   (fastapi_ws_echo) as echo-64x64B
# and stops it by its pid (TERM, then KILL after 10 s; a worker left behind is killed by its own
# pid). The echo runs measure the server's CPU (its master and workers, from /proc) and the
# client's (so a reader can see the client was not the bottleneck). Writes the tables as Markdown
# to bench/results/websocket-latest.md.
#
# Servers, each with WORKERS worker processes and its access log off:
#   tine     [app] handler = "python", app = APP, loop = "auto" (uvloop),
#            [server] workers = WORKERS, max_connections = LIMIT (an accepted WebSocket is a
#            connection; it holds no place of [app] max_concurrency);
#            ready when it sends READY=1 to the NOTIFY_SOCKET this script listens on; its
#            WebSocket limits are its defaults (no [websocket] section)
#   uvicorn  --ws websockets --workers WORKERS --loop uvloop --http httptools --no-access-log
#            --log-level warning
#   granian  --interface asgi --workers WORKERS --loop uvloop --ws --backpressure LIMIT
#            --no-access-log --log-level warning
# where LIMIT = max(IDLE, 1024), so that any one worker may hold every idle socket: tine's
# max_connections (1000 by default) and granian's --backpressure (backlog / workers = 512 by
# default) are per worker and would otherwise refuse or stall some; uvicorn has no such limit
# unless given one.
#
# Open files: the client and each server process may hold all IDLE sockets at once, so this
# script raises its own limit (`ulimit -n`, inherited by all it starts) to IDLE + 1024, the hard
# limit too when it is root; it stops when it cannot.
#
# Usage: bench/websocket.sh
# Environment:
#   DURATION=10        seconds of each measured echo run
#   WARMUP=2           seconds of unmeasured echo before each (0: none)
#   IDLE=2000          idle sockets to hold
#   IDLE_HOLD=6        seconds the client holds them once all are open (the PSS is read after 2)
#   WORKERS=2          worker processes of every server (2: one per CPU of the 2-CPU dev machine)
#   PORT=18083         the port every server listens on, one at a time
#   SERVERS="tine uvicorn granian"
#                      the servers to run, in this order
#   ONLY=REGEX         run only the scenarios whose name matches (e.g. ONLY=echo)
#   QUIET_WAIT=10      before each scenario, wait up to this many seconds for the machine to be
#                      idle (under 10% CPU busy for a second); 0: don't wait
#   QUIET_TOTAL=45     at most this many seconds of such waiting in the whole run
#   VENV=target/bench-venv
#                      the virtualenv (bench/asgi.sh's)
#   PYTHON=python3     the interpreter the virtualenv is made with: the same minor version as
#                      the one tine was built against
#   SKIP_BUILD=1       use the existing target/release/tine
#   TINE=PATH          benchmark this tine binary instead (implies SKIP_BUILD)
#   RESULTS=FILE       where the Markdown goes (default bench/results/websocket-latest.md)
#   KEEP_TMP=1         keep the temp dir (configs, server logs, the client's output)
# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" || exit 1 # set -euo pipefail, HERE, ROOT, PROBE
# shellcheck source=bench/lib/asgi_servers.sh
source "$HERE/lib/asgi_servers.sh"

PORT=${PORT:-18083}
asgi_settings # DURATION, WARMUP, WORKERS, SERVERS, ONLY, QUIET_*, VENV, PYTHON, APPS
IDLE=${IDLE:-2000}
IDLE_HOLD=${IDLE_HOLD:-6}
RESULTS=${RESULTS:-$HERE/results/websocket-latest.md}
START_TIMEOUT=30  # seconds a server may take to be ready
STOP_TIMEOUT=10   # seconds between TERM and KILL
CLIENT_TIMEOUT=10 # wsload --timeout: the longest wait for a handshake, an echo, a close answer
IDLE_SETTLE=2     # seconds between "all open" and reading the PSS

# The scenarios: one a line. name | application (module:callable in bench/apps) | kind (echo or
# idle) | connections | message bytes (echo)
SCENARIOS=(
    "echo-64x64B         | ws_echo:app         | echo | 64    | 64"
    "echo-16x64KiB       | ws_echo:app         | echo | 16    | 65536"
    "idle-$IDLE          | ws_echo:app         | idle | $IDLE | -"
    "fastapi-echo-64x64B | fastapi_ws_echo:app | echo | 64    | 64"
)

require_counts IDLE IDLE_HOLD
((IDLE_HOLD > IDLE_SETTLE + 1)) || die "IDLE_HOLD must be above $((IDLE_SETTLE + 1)) s (the PSS is read ${IDLE_SETTLE} s in)"
NAMES=() MODULES=() KINDS=() CONNS=() SIZES=()
read_scenarios NAMES MODULES KINDS CONNS SIZES

# Every socket of the idle run may end up in one process; 1024 more for all the rest.
want_files=$((IDLE + 1024))
if (($(ulimit -n) < want_files)); then
    if (($(ulimit -Hn) < want_files)) && [[ $(id -u) -eq 0 ]]; then ulimit -Hn "$want_files"; fi
    ulimit -n "$want_files" 2>/dev/null || die "needs $want_files open files (IDLE + 1024), but the hard limit is $(ulimit -Hn): raise it, or lower IDLE"
fi

if [[ " $SERVERS " == *" tine "* ]]; then find_tine; fi

build_wsload # WSLOAD

# --- the virtualenv (bench/asgi.sh's, the same stamp) -----------------------------------------

asgi_venv fastapi granian httptools uvicorn uvloop websockets

# --- state and cleanup -------------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tine-ws-bench.XXXXXX")
CLIENT_PID=""

cleanup() {
    local status=$?
    [[ -n $CLIENT_PID ]] && kill "$CLIENT_PID" 2>/dev/null
    stop_started
    remove_tmp "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

UVICORN_ARGS=(--ws websockets --workers "$WORKERS" --loop uvloop --http httptools --no-access-log --log-level warning)
MAX_CONNECTIONS=$((IDLE > 1024 ? IDLE : 1024)) # LIMIT above; tine's config takes it from here
GRANIAN_ARGS=(--interface asgi --workers "$WORKERS" --loop uvloop --ws --backpressure "$MAX_CONNECTIONS"
    --no-access-log --log-level warning)

# --- the runs ----------------------------------------------------------------------------------

URL="ws://127.0.0.1:$PORT/"

json_field() { # json_field FILE KEY: a number from the client's JSON line in FILE
    python3 -c 'import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("{")][-1]
print(json.loads(line)[sys.argv[2]])' "$1" "$2"
}

# echo_row I SERVER DIR: the warm-up, then one measured echo run of scenario I against the
# running server, and one row of rows.tsv (see probe.py ws-render)
echo_row() {
    local i=$1 server=$2 dir=$3 name=${NAMES[$1]} conns=${CONNS[$1]} size=${SIZES[$1]}
    local out="$dir/$name.json" args=(echo --url "$URL" --connections "${CONNS[$1]}" --size "${SIZES[$1]}" --timeout "$CLIENT_TIMEOUT")
    local bound=$((DURATION + 3 * CLIENT_TIMEOUT + 10))
    wait_quiet
    log "$name: $server, $conns connections, $size-byte messages, ${DURATION}s"
    if ((WARMUP > 0)); then
        timeout -k 5 "$bound" "$WSLOAD" "${args[@]}" --duration "$WARMUP" >"$dir/$name-warmup.json" 2>&1 || true
    fi
    "${PROBE[@]}" snap "$SERVER_PID" >"$dir/before.json"
    local busy_before busy_after TIMEFORMAT='%U %S' # bash's `time`: the CPU the client used
    busy_before=$(busy_ticks)
    { time timeout -k 5 "$bound" "$WSLOAD" "${args[@]}" --duration "$DURATION" >"$out" 2>"$dir/$name.err" || true; } 2>"$dir/client-time"
    busy_after=$(busy_ticks)
    if ! "${PROBE[@]}" snap "$SERVER_PID" >"$dir/after.json" 2>/dev/null; then
        failed_row "$name" "$server" "the server exited during the run: $(log_tail "$dir/server.log")"
        return
    fi
    if ! grep -q '^{' "$out"; then
        failed_row "$name" "$server" "the client gave no result: $(log_tail "$dir/$name.err")"
        return
    fi
    if (($(json_field "$out" handshake_failures) == conns)); then
        failed_row "$name" "$server" "no WebSocket handshake succeeded: $(json_field "$out" error_kinds)"
        return
    fi
    local cpu _ctx per_proc pss
    read -r cpu _ctx per_proc < <("${PROBE[@]}" delta "$dir/before.json" "$dir/after.json")
    read -r _ pss _ _ _ < <("${PROBE[@]}" pss "$SERVER_PID")
    local procs=$((1 + $("${PROBE[@]}" workers "$SERVER_PID" | wc -l)))
    # rows.tsv, echo: scenario, server, "ok", "echo", the client's JSON, server CPU s, CPU s per
    # child process, total PSS KiB, processes, the machine's busy ticks over the run, ticks per
    # second, the client's own CPU s, the machine's busy % in the second before the warm-up
    printf '%s\t' "$name" "$server" ok echo "$(grep '^{' "$out" | tail -n 1)" "$cpu" "$per_proc" "$pss" \
        "$procs" "$((busy_after - busy_before))" "$CLK_TCK" "$(awk '{ print $1 + $2 }' "$dir/client-time")" >>"$TMP/rows.tsv"
    printf '%s\n' "$BUSY_BEFORE" >>"$TMP/rows.tsv"
    log "   $(json_field "$out" messages_per_s) messages/s, p50 $(json_field "$out" p50_us) µs, p99 $(json_field "$out" p99_us) µs, errors $(json_field "$out" errors), mismatches $(json_field "$out" mismatches); server CPU ${cpu} s"
}

# idle_row I SERVER DIR: the server's PSS at rest, then IDLE sockets opened and held, its PSS
# while it holds them, and one row of rows.tsv
idle_row() {
    local i=$1 server=$2 dir=$3 name=${NAMES[$1]} n=${CONNS[$1]}
    local out="$dir/$name.out" open_bound=$((2 * CLIENT_TIMEOUT + n / 100 + 10)) deadline
    local bound=$((open_bound + IDLE_HOLD + 2 * CLIENT_TIMEOUT + 10))
    wait_quiet
    log "$name: $server, $n idle WebSockets held ${IDLE_HOLD}s"
    sleep 1
    local pss_before pss_held procs
    read -r _ pss_before _ _ _ < <("${PROBE[@]}" pss "$SERVER_PID")
    : >"$out"
    timeout -k 5 "$bound" "$WSLOAD" idle --url "$URL" --connections "$n" --hold "$IDLE_HOLD" \
        --timeout "$CLIENT_TIMEOUT" >"$out" 2>"$dir/$name.err" &
    CLIENT_PID=$!
    deadline=$((SECONDS + open_bound))
    while ! grep -q '^OPEN ' "$out" && kill -0 "$CLIENT_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if ! grep -q '^OPEN ' "$out"; then
        kill "$CLIENT_PID" 2>/dev/null || true
        wait "$CLIENT_PID" || true
        CLIENT_PID=""
        failed_row "$name" "$server" "the client did not open its sockets within ${open_bound}s: $(log_tail "$dir/$name.err")"
        return
    fi
    sleep "$IDLE_SETTLE"
    read -r _ pss_held _ _ _ < <("${PROBE[@]}" pss "$SERVER_PID")
    procs=$((1 + $("${PROBE[@]}" workers "$SERVER_PID" | wc -l)))
    wait "$CLIENT_PID" || true
    CLIENT_PID=""
    if ! grep -q '^{' "$out"; then
        failed_row "$name" "$server" "the client gave no result: $(log_tail "$dir/$name.err")"
        return
    fi
    if (($(json_field "$out" handshakes) == 0)); then
        failed_row "$name" "$server" "no WebSocket handshake succeeded: $(json_field "$out" failures)"
        return
    fi
    # rows.tsv, idle: scenario, server, "ok", "idle", the client's JSON, the OPEN line, total PSS
    # KiB before and while holding, processes
    printf '%s\t' "$name" "$server" ok idle "$(grep '^{' "$out" | tail -n 1)" "$(grep '^OPEN ' "$out")" \
        "$pss_before" "$pss_held" >>"$TMP/rows.tsv"
    printf '%s\n' "$procs" >>"$TMP/rows.tsv"
    log "   $(grep '^OPEN ' "$out"); PSS ${pss_before} → ${pss_held} KiB; $(json_field "$out" close_back) closes answered"
}

scenario_row() { "${KINDS[$1]}_row" "$@"; } # scenario_row I SERVER DIR
run_scenarios scenario_row

# --- the tables --------------------------------------------------------------------------------

meta=(
    "$(run_note)"
    "$(tine_note), $(first_line "$VENV/bin/python" --version), $(asgi_versions uvicorn websockets httptools uvloop granian), wsload (bench/wsload, std only, a thread per connection)"
    "every server with WORKERS=$WORKERS worker processes ($NCPU CPUs here), on 127.0.0.1:$PORT, access log off, APP: ws_echo:app (bench/apps/ws_echo.py, a raw ASGI echo), for fastapi-* fastapi_ws_echo:app (a FastAPI websocket route)"
    "tine: [server] workers = $WORKERS, max_connections = $MAX_CONNECTIONS; [app] handler = \"python\", app = APP, pythonpath = [bench/apps], virtualenv = $(basename "$VENV"), loop = \"auto\" (uvloop); [log] level = \"warn\", access_log = \"\"; no [websocket] section (its defaults)"
    "uvicorn --app-dir bench/apps ${UVICORN_ARGS[*]} APP"
    "granian --working-dir bench/apps ${GRANIAN_ARGS[*]} APP"
    "echo: each connection sends a binary message, waits for its echo and checks it, for ${DURATION}s after ${WARMUP}s of the same unmeasured; the client and the servers share the machine"
    "idle: $IDLE sockets opened (at most 128 handshakes under way at once) and held; the PSS of master + workers ${IDLE_SETTLE}s after the last opened, against the PSS just before (after the echo runs, at rest); no permessage-deflate offered"
)
write_results ws-render "${meta[@]}"
