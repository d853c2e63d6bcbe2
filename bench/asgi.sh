#!/usr/bin/env bash
# bench/asgi.sh: tine's ASGI side by side with uvicorn and granian, on a raw ASGI hello and on a
# FastAPI application, and prints one table.
#
# Builds tine (cargo build --release), makes the virtualenv (tests/python/setup-venv, then
# bench/requirements-asgi.txt: FastAPI, uvicorn with httptools and uvloop, granian, all pinned;
# nothing to do when it is up to date), installs wrk from Debian's packages when it is missing,
# then for each application in bench/apps/ and each server in turn: starts the server on
# 127.0.0.1:$PORT with WORKERS worker processes in its own temp dir, waits until it is ready,
# checks that each scenario's path answers 200, runs the scenarios against it with wrk, takes
# the PSS of its master and workers after each run, and stops it by its pid (TERM, then KILL
# after 10 s; a worker left behind is killed by its own pid). Also writes the table as Markdown
# to bench/results/asgi-latest.md.
#
# Servers, each with WORKERS worker processes and its access log off:
#   tine     [app] handler = "python", loop = "auto" (uvloop), virtualenv = VENV; ready when it
#            sends READY=1 to the NOTIFY_SOCKET this script listens on
#   uvicorn  --workers WORKERS --loop uvloop --http httptools --no-access-log --log-level warning
#   granian  --interface asgi --workers WORKERS --loop uvloop --no-ws --no-access-log
#            --log-level warning (runtime threads: its default, 1 per worker)
#
# Usage: bench/asgi.sh           (see "Benchmarks" in README.md)
# Environment:
#   DURATION=10        seconds per scenario (wrk -d)
#   WARMUP=2           seconds of unmeasured load before each measured run (0: none)
#   WORKERS=2          worker processes of every server (2: one per CPU of the 2-CPU dev machine)
#   WRK_THREADS=2      wrk -t
#   PORT=18082         the port every server listens on, one at a time
#   SERVERS="tine uvicorn granian"
#                      the servers to run, in this order
#   ONLY=REGEX         run only the scenarios whose name matches (e.g. ONLY=fastapi)
#   QUIET_WAIT=10      before each scenario, wait up to this many seconds for the machine to be
#                      idle (under 10% CPU busy for a second); 0: don't wait
#   QUIET_TOTAL=45     at most this many seconds of such waiting in the whole run
#   VENV=target/bench-venv
#                      the virtualenv (the one bench/memory.sh uses, with granian added)
#   PYTHON=python3     the interpreter the virtualenv is made with: the same minor version as
#                      the one tine was built against
#   SKIP_BUILD=1       use the existing target/release/tine
#   TINE=PATH          benchmark this tine binary instead (implies SKIP_BUILD)
#   RESULTS=FILE       where the Markdown goes (default bench/results/asgi-latest.md)
#   KEEP_TMP=1         keep the temp dir (configs, server logs, wrk output)
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PROBE=(python3 "$HERE/lib/probe.py")
# shellcheck source=bench/lib/common.sh
source "$HERE/lib/common.sh"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
WORKERS=${WORKERS:-2}
WRK_THREADS=${WRK_THREADS:-2}
PORT=${PORT:-18082}
SERVERS=${SERVERS:-tine uvicorn granian}
ONLY=${ONLY:-}
QUIET_WAIT=${QUIET_WAIT:-10}
QUIET_TOTAL=${QUIET_TOTAL:-45}
VENV=${VENV:-$ROOT/target/bench-venv}
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-$HERE/results/asgi-latest.md}
REQUIREMENTS=$HERE/requirements-asgi.txt
APPS=$HERE/apps
START_TIMEOUT=30 # seconds a server may take to be ready (Python imports FastAPI in each worker)
STOP_TIMEOUT=10  # seconds between TERM and KILL
WRK_TIMEOUT=5    # wrk --timeout: a response slower than this counts as a socket error

# The scenarios: one a line.
#   name | application (module:callable in bench/apps) | path | connections |
#   seconds each request waits in the application (- for none; otherwise the ceiling is
#   connections / seconds requests per second)
SCENARIOS=(
    "asgi-hello-64     | asgi_hello:app    | /      | 64  | -"
    "fastapi-hello-64  | fastapi_hello:app | /      | 64  | -"
    "fastapi-sleep-100 | fastapi_hello:app | /sleep | 100 | 0.05"
)

for tool in python3 curl cargo timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
need wrk wrk
for var in DURATION WORKERS WRK_THREADS PORT; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive whole number, got '${!var}'"
done
for var in WARMUP QUIET_WAIT QUIET_TOTAL; do
    [[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a whole number of seconds, got '${!var}'"
done
for server in $SERVERS; do
    [[ $server =~ ^(tine|uvicorn|granian)$ ]] || die "SERVERS: unknown server '$server' (tine, uvicorn, granian)"
done
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

NAMES=() MODULES=() PATHS=() CONNS=() SLEEPS=()
for line in "${SCENARIOS[@]}"; do
    IFS='|' read -r name module path conns sleep_s <<<"${line// /}"
    [[ -n $ONLY && ! $name =~ $ONLY ]] && continue
    NAMES+=("$name") MODULES+=("$module") PATHS+=("$path") CONNS+=("$conns") SLEEPS+=("$sleep_s")
done
((${#NAMES[@]} > 0)) || die "no scenario matches ONLY='$ONLY'"

find_tine

# --- the virtualenv ----------------------------------------------------------------------------

# setup-venv installs the tests' list (and does nothing when the venv already has it); this file
# goes on top. Its stamp records this file's hash and setup-venv's own stamp, so it is redone
# whenever either list or the Python changes (setup-venv then rebuilds the venv from scratch).
log "virtualenv $VENV"
"$ROOT/tests/python/setup-venv" "$VENV" "$PYTHON" || die "tests/python/setup-venv $VENV failed"
stamp=$VENV/.tine-bench-asgi
want="$(sha256sum <"$REQUIREMENTS" | cut -d' ' -f1) $(cat "$VENV/.tine-requirements")"
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
    log "installing ${REQUIREMENTS#"$ROOT"/} into $VENV"
    (cd "$HERE" && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$REQUIREMENTS") || die "pip install -r ${REQUIREMENTS#"$ROOT"/} failed"
    "$VENV/bin/python" -c 'import fastapi, granian, httptools, uvicorn, uvloop' ||
        die "$VENV lacks a package bench/asgi.sh needs"
    echo "$want" >"$stamp"
fi
versions() { # "fastapi X, uvicorn X, ..." of the packages the bench uses
    "$VENV/bin/python" -c 'import sys
from importlib.metadata import version
print(", ".join(f"{p} {version(p)}" for p in sys.argv[1:]))' fastapi starlette uvicorn httptools uvloop granian
}

# --- state and cleanup -------------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tine-asgi-bench.XXXXXX")
SERVER_PID=""
NOTIFY_PID=""

cleanup() {
    local status=$?
    [[ -n $NOTIFY_PID ]] && kill "$NOTIFY_PID" 2>/dev/null
    [[ -n $SERVER_PID ]] && stop_server_tree
    remove_tmp "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the servers -------------------------------------------------------------------------------

UVICORN_ARGS=(--workers "$WORKERS" --loop uvloop --http httptools --no-access-log --log-level warning)
GRANIAN_ARGS=(--interface asgi --workers "$WORKERS" --loop uvloop --no-ws --no-access-log --log-level warning)

write_tine_config() { # write_tine_config FILE APP
    cat >"$1" <<EOF
# generated by bench/asgi.sh
[server]
bind = "127.0.0.1:$PORT"
workers = $WORKERS
graceful_timeout = "5s"

[log]
level = "warn"
access_log = ""

[app]
handler = "python"
app = "$2"
pythonpath = ["$APPS"]
virtualenv = "$VENV"
loop = "auto"
EOF
}

log_tail() { # the last lines of a server's log, on one line
    local text
    text=$(tail -n 5 "$1" 2>/dev/null | tr '\n\t' '  ' | tr -s ' ' | sed 's/ *$//')
    printf '%s' "${text:-(nothing in its log)}"
}

# start SERVER APP DIR: launches the server in DIR and waits until it is ready: tine's READY=1,
# the others' first answer; then until it has WORKERS children. Sets SERVER_PID; on failure
# returns 1 and leaves why in DIR/why.
start() {
    local server=$1 app=$2 dir=$3 deadline=$((SECONDS + START_TIMEOUT)) n
    mkdir -p "$dir"
    case $server in
        tine)
            write_tine_config "$dir/tine.toml" "$app"
            if ! "$TINE" --check-config -c "$dir/tine.toml" >"$dir/check.log" 2>&1; then
                echo "tine --check-config refused its config: $(log_tail "$dir/check.log")" >"$dir/why"
                return 1
            fi
            "${PROBE[@]}" notify "$dir/notify.sock" "$START_TIMEOUT" >"$dir/ready-at" &
            NOTIFY_PID=$!
            while [[ ! -S $dir/notify.sock ]] && kill -0 "$NOTIFY_PID" 2>/dev/null; do sleep 0.01; done
            [[ -S $dir/notify.sock ]] || die "the READY=1 listener did not bind $dir/notify.sock"
            (cd "$dir" && NOTIFY_SOCKET=$dir/notify.sock exec "$TINE" -c "$dir/tine.toml") >"$dir/server.log" 2>&1 &
            SERVER_PID=$!
            while kill -0 "$NOTIFY_PID" 2>/dev/null && kill -0 "$SERVER_PID" 2>/dev/null; do sleep 0.05; done
            # The listener has exited (READY=1, or its timeout) or tine has (then stop listening).
            kill -0 "$SERVER_PID" 2>/dev/null || kill "$NOTIFY_PID" 2>/dev/null || true
            if ! wait "$NOTIFY_PID"; then
                NOTIFY_PID=""
                not_ready "$dir" "no READY=1 within ${START_TIMEOUT} s"
                return 1
            fi
            NOTIFY_PID=""
            ;;
        uvicorn)
            printf '%q ' uvicorn --app-dir "$APPS" --host 127.0.0.1 --port "$PORT" "${UVICORN_ARGS[@]}" "$app" >"$dir/command"
            (cd "$dir" && exec "$VENV/bin/uvicorn" --app-dir "$APPS" --host 127.0.0.1 --port "$PORT" \
                "${UVICORN_ARGS[@]}" "$app") >"$dir/server.log" 2>&1 &
            SERVER_PID=$!
            ;;
        granian)
            printf '%q ' granian --working-dir "$APPS" --host 127.0.0.1 --port "$PORT" "${GRANIAN_ARGS[@]}" "$app" >"$dir/command"
            (cd "$dir" && exec "$VENV/bin/granian" --working-dir "$APPS" --host 127.0.0.1 --port "$PORT" \
                "${GRANIAN_ARGS[@]}" "$app") >"$dir/server.log" 2>&1 &
            SERVER_PID=$!
            ;;
    esac
    if ! wait_answer "$EPOCHREALTIME"; then
        not_ready "$dir" "did not answer within ${START_TIMEOUT} s"
        return 1
    fi
    while n=$("${PROBE[@]}" workers "$SERVER_PID" | wc -l) && ((n < WORKERS)); do
        if ((SECONDS >= deadline)); then
            not_ready "$dir" "had $n of $WORKERS workers after ${START_TIMEOUT} s"
            return 1
        fi
        sleep 0.1
    done
}

# not_ready DIR WHAT: leaves in DIR/why why the server is not ready: WHAT while it runs, else
# its exit status (it is reaped); each with the end of its log
not_ready() {
    local rc=0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "$2: $(log_tail "$1/server.log")" >"$1/why"
    else
        wait "$SERVER_PID" || rc=$?
        SERVER_PID=""
        echo "exited with status $rc before it was ready: $(log_tail "$1/server.log")" >"$1/why"
    fi
}

# stop_server_tree: the server by its pid, then any child still running 5 s after it (uvicorn's
# multiprocessing resource tracker takes a moment to notice), each by its own pid
stop_server_tree() {
    local pid children=() left=() deadline
    mapfile -t children < <("${PROBE[@]}" workers "$SERVER_PID")
    stop_server
    ((${#children[@]} > 0)) || return 0
    deadline=$((SECONDS + 5))
    # Only the same processes (pid and start time): a pid may have been given to another by now.
    while mapfile -t left < <("${PROBE[@]}" same "${children[@]}") && ((${#left[@]} > 0)); do
        if ((SECONDS >= deadline)); then
            log "children ${left[*]} outlived the server by 5 s; sending KILL"
            kill -KILL "${left[@]}" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
}

# --- one wrk run -------------------------------------------------------------------------------

# check_path URL: "" when URL answers 200, else what it answered
check_path() {
    local code
    code=$(curl -s -o "$TMP/check-body" -w '%{http_code}' --max-time 5 "$1") || true
    [[ $code == 200 ]] && return 0
    printf 'GET %s answered %s: %s' "${1#http://127.0.0.1:"$PORT"}" "${code:-nothing}" \
        "$(head -c 200 "$TMP/check-body" 2>/dev/null | tr '\n\t' '  ')"
}

# scenario_row I SERVER DIR: one wrk run of scenario I against the running server, and one row
# of rows.tsv (see probe.py asgi-render)
scenario_row() {
    local i=$1 server=$2 dir=$3 name=${NAMES[$1]} conns=${CONNS[$1]}
    local url="http://127.0.0.1:$PORT${PATHS[$1]}" out="$dir/wrk-${NAMES[$1]}.txt" why
    why=$(check_path "$url")
    if [[ -n $why ]]; then
        log "   $why"
        failed_row "$name" "$server" "$why"
        return
    fi
    wait_quiet
    log "$name: $server, $conns connections, ${DURATION}s"
    if ((WARMUP > 0)); then
        timeout -k 5 $((WARMUP + 30)) wrk -t"$WRK_THREADS" -c"$conns" -d"${WARMUP}s" \
            --timeout "${WRK_TIMEOUT}s" "$url" >/dev/null 2>&1 || true
    fi
    "${PROBE[@]}" snap "$SERVER_PID" >"$dir/before.json"
    local busy_before busy_after TIMEFORMAT='%U %S' # bash's `time`: the CPU wrk (the client) used
    busy_before=$(busy_ticks)
    {
        time timeout -k 5 $((DURATION + 30)) wrk -t"$WRK_THREADS" -c"$conns" -d"${DURATION}s" \
            --timeout "${WRK_TIMEOUT}s" -s "$HERE/lib/report.lua" "$url" >"$out" 2>&1 || true
    } 2>"$dir/wrk-time"
    busy_after=$(busy_ticks)
    if ! "${PROBE[@]}" snap "$SERVER_PID" >"$dir/after.json" 2>/dev/null; then
        failed_row "$name" "$server" "the server exited during the run: $(log_tail "$dir/server.log")"
        return
    fi
    local line cpu ctx per_proc pss
    if ! line=$(grep '^BENCH_RESULT' "$out"); then
        log "wrk gave no result for $name on $server:"
        cat "$out" >&2
        failed_row "$name" "$server" "wrk gave no result: $(log_tail "$out")"
        return
    fi
    read -r cpu ctx per_proc < <("${PROBE[@]}" delta "$dir/before.json" "$dir/after.json")
    sleep 0.5
    read -r _ pss _ _ _ < <("${PROBE[@]}" pss "$SERVER_PID")
    local procs=$((1 + $("${PROBE[@]}" workers "$SERVER_PID" | wc -l)))
    # rows.tsv: scenario, server, outcome, then the BENCH_RESULT line's fields, connections, the
    # sleep, server CPU s, context switches, per-process CPU s, total PSS KiB, processes, the
    # machine's busy ticks over the run, ticks per second, wrk's own CPU s, the machine's busy %
    # in the second before the warm-up
    printf '%s\t' "$name" "$server" ok "${line#BENCH_RESULT }" "$conns" "${SLEEPS[$i]}" "$cpu" "$ctx" \
        "$per_proc" "$pss" "$procs" "$((busy_after - busy_before))" "$CLK_TCK" \
        "$(awk '{ print $1 + $2 }' "$dir/wrk-time")" >>"$TMP/rows.tsv"
    printf '%s\n' "$BUSY_BEFORE" >>"$TMP/rows.tsv"
    grep -E '^(Requests/sec|  Socket errors|  Non-2xx)' "$out" | sed 's/^/   /' >&2 || true
}

failed_row() { # failed_row SCENARIO SERVER WHY
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TMP/rows.tsv"
}

# --- the runs ----------------------------------------------------------------------------------

: >"$TMP/rows.tsv"
port_busy && die "something already answers on 127.0.0.1:$PORT; set PORT to a free port"
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$SECONDS

# Each application in the order of its first scenario, every server on it before the next.
apps=()
for module in "${MODULES[@]}"; do
    [[ " ${apps[*]} " == *" $module "* ]] || apps+=("$module")
done
for app in "${apps[@]}"; do
    for server in $SERVERS; do
        dir="$TMP/$server-${app%%:*}"
        log "starting $server ($app, $WORKERS workers)"
        port_busy && die "127.0.0.1:$PORT is still taken before starting $server"
        if ! start "$server" "$app" "$dir"; then
            log "   $(cat "$dir/why")"
            [[ -n $SERVER_PID ]] && stop_server_tree
            for i in "${!NAMES[@]}"; do
                if [[ ${MODULES[i]} == "$app" ]]; then failed_row "${NAMES[i]}" "$server" "$(cat "$dir/why")"; fi
            done
            continue
        fi
        sleep 1
        for i in "${!NAMES[@]}"; do
            if [[ ${MODULES[i]} == "$app" ]]; then scenario_row "$i" "$server" "$dir"; fi
        done
        stop_server_tree
    done
done

# --- the table ---------------------------------------------------------------------------------

mkdir -p "$(dirname "$RESULTS")"
tine_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
meta=(
    "$(machine_note); load average at the start $load_at_start; $((SECONDS - started)) s in all"
    "$(first_line "$TINE" --version) (git $tine_commit), $(first_line "$VENV/bin/python" --version), $(versions), $(first_line wrk -v | awk '{print "wrk " $2}')"
    "every server with WORKERS=$WORKERS worker processes ($NCPU CPUs here), on 127.0.0.1:$PORT, access log off, the applications in bench/apps/"
    "tine: [server] workers = $WORKERS; [app] handler = \"python\", app, pythonpath = [bench/apps], virtualenv = $(basename "$VENV"), loop = \"auto\" (uvloop); [log] level = \"warn\", access_log = \"\""
    "uvicorn --app-dir bench/apps ${UVICORN_ARGS[*]} APP"
    "granian --working-dir bench/apps ${GRANIAN_ARGS[*]} APP (runtime threads: the default)"
    "wrk -t$WRK_THREADS -d${DURATION}s --timeout ${WRK_TIMEOUT}s, keep-alive, after ${WARMUP}s of unmeasured load; the load generator and the servers share the machine"
)
echo
"${PROBE[@]}" asgi-render "$TMP/rows.tsv" "$RESULTS" "${meta[@]}"
echo
echo "written to ${RESULTS#"$ROOT"/}"
