#!/usr/bin/env bash
# bench/wsgi.sh: tine's WSGI side by side with granian, uWSGI and gunicorn, all with the same
# workers × threads, on a plain WSGI application and on Flask; tine's ASGI with uvicorn and
# granian on an I/O-bound ASGI application; and, when bench/bookstore/ is there, the bookstore
# API on PostgreSQL. Prints one table, tine's ratio to each peer, and the servers' memory (with,
# on wsgi_hello, where it goes by kind of mapping).
#
# Builds tine (cargo build --release) and the load client bench/wsload (target/wsload), makes the
# virtualenv as bench/asgi.sh does (tests/python/setup-venv, then bench/requirements-asgi.txt
# and bench/requirements-wsgi.txt: granian, uWSGI, matplotlib, all pinned; nothing to do when
# they are up to date), installs wrk from Debian's packages when it is missing, calibrates the
# wsgi-cpu loop to about CPU_MS ms (once, printed), then for each application in bench/apps/ and
# each server that speaks its interface in turn: starts the server on 127.0.0.1:$PORT in its own
# temp dir, waits until it is ready, takes the PSS of its master and workers, checks that each
# scenario's path answers 200, runs the scenarios against it, takes the PSS again (on wsgi_hello
# also its breakdown by kind of mapping, bench/lib/smaps.py: the master's and a mean worker's PSS
# in the binary, libpython, the heap, glibc's arenas, thread stacks, ...), and stops it by its pid
# (TERM, then KILL after 10 s; a worker left behind is killed by its own pid). Writes the tables
# as Markdown to bench/results/wsgi-latest.md.
#
# Scenarios (the applications are in bench/apps/):
#   wsgi-hello-64    wsgi_hello:app GET /, `Hello, World!`; wrk, 64 connections
#   wsgi-sleep-100   wsgi_hello:app GET /sleep, time.sleep(0.05); bench/wsload http, 100
#                    connections: the share of the ceiling WORKERS × THREADS / 0.05 s, and how
#                    many responses each connection got (min / median / max, and how many got none)
#   wsgi-cpu-8       wsgi_hello:app GET /cpu?n=N, a pure-Python loop of about CPU_MS ms; wrk, 8
#   flask-hello-64   flask_hello:app GET /, jsonify({"message": "hello"}); wrk, 64
#   asgi-sleep-100   asgi_sleep:app, await asyncio.sleep(0.05); wsload http, 100 connections:
#                    the ceiling is connections / 0.05 s (tine, uvicorn and granian only)
#   bookstore-64     bench/bookstore/app.py (Flask, SQLAlchemy, marshmallow on PostgreSQL), wrk
#                    with bench/bookstore/wrk.lua, 64 connections; only when
#                    bench/bookstore/setup.sh exists: it starts (and seeds) PostgreSQL and prints
#                    BOOKSTORE_DSN and BOOKSTORE_PG_PIDS; the row has PostgreSQL's CPU over the
#                    run (the postmaster's whole process tree) beside the server's; `setup.sh
#                    stop` at the end. bench/bookstore/requirements.txt goes into the virtualenv.
#
# Servers, each with WORKERS worker processes of THREADS threads and its access log off:
#   tine      [server] workers, threads; [app] handler = "python", loop = "auto";
#             [log] access_log = ""; ready when it sends READY=1 to the NOTIFY_SOCKET this
#             script listens on
#   tine-preload  the same with [app] preload = true: the application imported once in the
#             master before it forks, as uWSGI does by default (WSGI applications only; its
#             throughput is in the first table, its memory beside tine's in the memory table)
#   granian   WSGI: --interface wsgi --workers W --blocking-threads T --no-access-log
#             --log-level warning; ASGI: --interface asgi --workers W --loop uvloop --no-ws ...
#   uWSGI     --http11-socket --master --processes W --threads T --die-on-term --disable-logging
#             (its default otherwise: the application imported once in the master)
#   gunicorn  -k gthread --workers W --threads T (access log off by default)
#   uvicorn   ASGI only: --workers W --loop uvloop --http httptools --no-access-log
#
# Grid mode (GRID=1, or `bench/wsgi.sh grid`): tine alone over GRID_WORKERS × GRID_THREADS on
# wsgi-sleep-100, wsgi-cpu-8 and bookstore-64, writing bench/grid/wsgi-grid.tsv, .md and .png
# (the plot with the virtualenv's matplotlib).
#
# Memory alone (issue 16's target 7: tine's PSS against uWSGI's, lazy and preloaded), in about a
# minute: ONLY=wsgi-hello SERVERS="tine tine-preload uwsgi" DURATION=2 bench/wsgi.sh (its
# throughput then is not a result).
#
# Usage: bench/wsgi.sh [grid]     (see "Benchmarks" in README.md)
# Environment:
#   DURATION=10        seconds per scenario
#   WARMUP=2           seconds of unmeasured load before each measured run (0: none)
#   WORKERS=5          worker processes of every server
#   THREADS=4          threads per worker of every WSGI server
#   WRK_THREADS=2      wrk -t
#   PORT=18084         the port every server listens on, one at a time
#   SERVERS="tine tine-preload granian uwsgi gunicorn uvicorn"
#                      the servers to run, in this order (each only on the applications whose
#                      interface it speaks)
#   ONLY=REGEX         run only the scenarios whose name matches (e.g. ONLY=sleep)
#   CPU_MS=1           the wsgi-cpu loop's length to calibrate, in ms
#   CPU_LOOPS=N        the wsgi-cpu loop's turns, instead of calibrating
#   BOOKSTORE=0        skip the bookstore scenario even when bench/bookstore/ is there
#   BOOKSTORE_CONNS=64 the bookstore scenario's connections
#   GRID=1             grid mode (above)
#   GRID_WORKERS="1 2 3 5", GRID_THREADS="1 2 4 8"
#                      the grid's workers and threads
#   GRID_DIR=bench/grid
#                      where the grid's files go
#   QUIET_WAIT=10      before each scenario, wait up to this many seconds for the machine to be
#                      idle (under 10% CPU busy for a second); 0: don't wait
#   QUIET_TOTAL=45     at most this many seconds of such waiting in the whole run
#   VENV=target/bench-venv
#                      the virtualenv (bench/asgi.sh's, with uWSGI and matplotlib added)
#   PYTHON=python3     the interpreter the virtualenv is made with: the same minor version as
#                      the one tine was built against
#   SKIP_BUILD=1       use the existing target/release/tine
#   TINE=PATH          benchmark this tine binary instead (implies SKIP_BUILD)
#   RESULTS=FILE       where the Markdown goes (default bench/results/wsgi-latest.md)
#   KEEP_TMP=1         keep the temp dir (configs, server logs, the clients' output)
# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" || exit 1 # set -euo pipefail, HERE, ROOT, PROBE
# shellcheck source=bench/lib/asgi_servers.sh
source "$HERE/lib/asgi_servers.sh"

case ${1:-} in
    "") GRID=${GRID:-} ;;
    grid) GRID=1 ;;
    *) die "usage: bench/wsgi.sh [grid]" ;;
esac
PORT=${PORT:-18084}
WORKERS=${WORKERS:-5}
THREADS=${THREADS:-4}
KNOWN_SERVERS="tine tine-preload granian uwsgi gunicorn uvicorn"
asgi_settings # DURATION, WARMUP, WORKERS, SERVERS, ONLY, QUIET_*, VENV, PYTHON, APPS
WRK_THREADS=${WRK_THREADS:-2}
CPU_MS=${CPU_MS:-1}
CPU_LOOPS=${CPU_LOOPS:-}
BOOKSTORE=${BOOKSTORE:-1}
BOOKSTORE_CONNS=${BOOKSTORE_CONNS:-64}
GRID_WORKERS=${GRID_WORKERS:-1 2 3 5}
GRID_THREADS=${GRID_THREADS:-1 2 4 8}
GRID_DIR=${GRID_DIR:-$HERE/grid}
RESULTS=${RESULTS:-$HERE/results/wsgi-latest.md}
START_TIMEOUT=30          # seconds a server may take to be ready
STOP_TIMEOUT=10           # seconds between TERM and KILL
WRK_TIMEOUT=5             # the clients' --timeout: a response slower than this is an error
BOOKSTORE_START_TIMEOUT=900 # seconds bench/bookstore/setup.sh start may take (it may seed)
BOOKSTORE_SETUP=$HERE/bookstore/setup.sh
BOOKSTORE_APP=app:app     # bench/bookstore/app.py
ASGI_APPS=" asgi_sleep:app "
BREAKDOWN_APP=wsgi_hello:app # run_scenarios writes its memory by kind of mapping

need wrk wrk
require_counts THREADS WRK_THREADS BOOKSTORE_CONNS
[[ $CPU_MS =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "CPU_MS must be a number of milliseconds, got '$CPU_MS'"
[[ -z $CPU_LOOPS ]] || require_counts CPU_LOOPS
for n in $GRID_WORKERS $GRID_THREADS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "GRID_WORKERS and GRID_THREADS must list positive whole numbers, got '$n'"
done
if [[ -n $GRID ]]; then SERVERS=tine; fi

if [[ " $SERVERS " == *" tine "* || " $SERVERS " == *" tine-preload "* ]]; then find_tine; fi
build_wsload

# --- the virtualenv ----------------------------------------------------------------------------

bench_venv requirements-asgi.txt requirements-wsgi.txt
venv_imports flask granian gunicorn httptools uvicorn uvloop
[[ -x $VENV/bin/uwsgi ]] || die "no uwsgi in $VENV"

# --- state and cleanup -------------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tine-wsgi-bench.XXXXXX")
BOOKSTORE_RUNNING=""

cleanup() {
    local status=$?
    stop_started
    if [[ -n $BOOKSTORE_RUNNING ]]; then
        log "bench/bookstore/setup.sh stop"
        timeout -k 5 120 "$BOOKSTORE_SETUP" stop >&2 || log "bench/bookstore/setup.sh stop failed"
    fi
    remove_tmp "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the scenarios -----------------------------------------------------------------------------

if [[ -z $CPU_LOOPS ]]; then
    CPU_LOOPS=$("$VENV/bin/python" "$APPS/wsgi_hello.py" calibrate "$CPU_MS") || die "calibrating the wsgi-cpu loop failed"
    log "wsgi-cpu: $CPU_LOOPS loop turns take about $CPU_MS ms here (calibrated; CPU_LOOPS=$CPU_LOOPS fixes it)"
fi

# selected NAME: whether scenario NAME is one this run takes (ONLY; in grid mode only the grid's)
selected() {
    [[ -z $GRID || $1 =~ ^(wsgi-sleep|wsgi-cpu|bookstore) ]] && [[ -z $ONLY || $1 =~ $ONLY ]]
}

# bookstore_start: starts PostgreSQL with bench/bookstore/setup.sh and takes BOOKSTORE_DSN and
# BOOKSTORE_PG_PIDS from what it prints; returns 1 (saying why) when it cannot
bookstore_start() {
    local out line name value
    if [[ -f $HERE/bookstore/requirements.txt ]]; then bench_venv bookstore/requirements.txt; fi
    log "bench/bookstore/setup.sh start (it may install and seed PostgreSQL: at most ${BOOKSTORE_START_TIMEOUT} s)"
    BOOKSTORE_RUNNING=1
    if ! out=$(timeout -k 10 "$BOOKSTORE_START_TIMEOUT" "$BOOKSTORE_SETUP" start); then
        log "bookstore: skipped: bench/bookstore/setup.sh start failed"
        return 1
    fi
    while IFS= read -r line; do
        [[ $line =~ ^export\ (BOOKSTORE_[A-Z_]+)=(.*)$ ]] || continue
        name=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
        value=${value#\"} value=${value%\"}
        declare -gx "$name=$value"
    done <<<"$out"
    if [[ -z ${BOOKSTORE_DSN:-} || ! ${BOOKSTORE_PG_PIDS:-} =~ ^[0-9\ ]+$ ]]; then
        log "bookstore: skipped: bench/bookstore/setup.sh start printed no BOOKSTORE_DSN or BOOKSTORE_PG_PIDS"
        return 1
    fi
    # wrk takes one script: the bookstore's requests, then report.lua's done() (which wins).
    cat "$HERE/bookstore/wrk.lua" "$HERE/lib/report.lua" >"$TMP/bookstore.lua"
}

# The scenarios: one a line.
#   name | application (module:callable) | path | connections |
#   seconds each request waits in the application (- for none) | load client (see load_client)
SCENARIOS=(
    "wsgi-hello-64  | wsgi_hello:app  | /                | 64  | -    | wrk"
    "wsgi-sleep-100 | wsgi_hello:app  | /sleep           | 100 | 0.05 | wsload"
    "wsgi-cpu-8     | wsgi_hello:app  | /cpu?n=$CPU_LOOPS | 8   | -    | wrk"
    "flask-hello-64 | flask_hello:app | /                | 64  | -    | wrk"
    "asgi-sleep-100 | asgi_sleep:app  | /                | 100 | 0.05 | wsload"
)
BOOKSTORE_NOTE="bookstore: skipped: BOOKSTORE=0"
if [[ $BOOKSTORE == 0 ]] || ! selected "bookstore-$BOOKSTORE_CONNS"; then
    :
elif [[ ! -e $BOOKSTORE_SETUP ]]; then
    BOOKSTORE_NOTE="bookstore: skipped: bench/bookstore/setup.sh does not exist"
    log "$BOOKSTORE_NOTE"
elif bookstore_start; then
    BOOKSTORE_NOTE="bookstore: bench/bookstore/app.py on PostgreSQL (bench/bookstore/setup.sh), wrk with bench/bookstore/wrk.lua, $BOOKSTORE_CONNS connections; PostgreSQL CPU s: its postmaster's process tree ($BOOKSTORE_PG_PIDS) over the run"
    SCENARIOS+=("bookstore-$BOOKSTORE_CONNS | $BOOKSTORE_APP | /author?limit=20&offset=0 | $BOOKSTORE_CONNS | - | wrk:$TMP/bookstore.lua")
else
    BOOKSTORE_NOTE="bookstore: skipped: bench/bookstore/setup.sh start did not work (see the log above)"
fi
selected_scenarios=()
for line in "${SCENARIOS[@]}"; do
    if selected "$(cut -d'|' -f1 <<<"${line// /}")"; then selected_scenarios+=("$line"); fi
done
((${#selected_scenarios[@]} > 0)) || die "no scenario matches ONLY='$ONLY'${GRID:+ in grid mode}"
SCENARIOS=("${selected_scenarios[@]}")
NAMES=() MODULES=() PATHS=() CONNS=() SLEEPS=() CLIENTS=()
read_scenarios NAMES MODULES PATHS CONNS SLEEPS CLIENTS

# --- the servers -------------------------------------------------------------------------------

UVICORN_ARGS=(--workers "$WORKERS" --loop uvloop --http httptools --no-access-log --log-level warning)
GUNICORN_ARGS=(-k gthread --workers "$WORKERS" --threads "$THREADS" --graceful-timeout 5 --log-level warning
    --no-control-socket)
UWSGI_ARGS=(--master --processes "$WORKERS" --threads "$THREADS" --die-on-term --disable-logging --home "$VENV"
    --need-app)
GRANIAN_WSGI=(--interface wsgi --workers "$WORKERS" --blocking-threads "$THREADS" --no-access-log --log-level warning)
GRANIAN_ASGI=(--interface asgi --workers "$WORKERS" --loop uvloop --no-ws --no-access-log --log-level warning)

# prepare_server SERVER APP (see run_scenarios): SERVER's options for APP's interface, the
# directory APP is in, SLOTS (requests run at once at most: workers × threads for WSGI) and
# TREE_PIDS (PostgreSQL's, for the bookstore); 1 when SERVER does not speak APP's interface
prepare_server() {
    local server=$1 app=$2 interface=wsgi
    [[ $ASGI_APPS == *" $app "* ]] && interface=asgi
    case $interface-$server in
        wsgi-uvicorn | asgi-uwsgi | asgi-gunicorn | asgi-tine-preload) return 1 ;;
        wsgi-granian) GRANIAN_ARGS=("${GRANIAN_WSGI[@]}") ;;
        asgi-granian) GRANIAN_ARGS=("${GRANIAN_ASGI[@]}") ;;
    esac
    SLOTS=- APPS=$HERE/apps TREE_PIDS=""
    [[ $interface == wsgi ]] && SLOTS=$((WORKERS * THREADS))
    if [[ $app == "$BOOKSTORE_APP" ]]; then APPS=$HERE/bookstore TREE_PIDS=$BOOKSTORE_PG_PIDS; fi
    return 0
}

# --- the runs ----------------------------------------------------------------------------------

versions="$(tine_note), $(first_line "$VENV/bin/python" --version), $(asgi_versions granian uWSGI gunicorn flask uvicorn), $(first_line wrk -v | awk '{print "wrk " $2}'), wsload (bench/wsload http, a thread per connection)"
scenario_notes=(
    "scenarios: wsgi-hello (bench/apps/wsgi_hello.py GET /), wsgi-sleep (GET /sleep, time.sleep(0.05); ceiling WORKERS × THREADS / 0.05 s), wsgi-cpu (GET /cpu?n=$CPU_LOOPS, a pure-Python loop of about $CPU_MS ms, calibrated here), flask-hello (bench/apps/flask_hello.py, jsonify), asgi-sleep (bench/apps/asgi_sleep.py, await asyncio.sleep(0.05); ceiling connections / 0.05 s)"
    "$BOOKSTORE_NOTE"
    "wrk -t$WRK_THREADS, or bench/wsload http (keep-alive GETs back to back on each connection, responses counted per connection) for the *-sleep scenarios; ${DURATION}s after ${WARMUP}s of unmeasured load; --timeout ${WRK_TIMEOUT}s; the load generator and the servers share the machine"
)

if [[ -n $GRID ]]; then
    : >"$TMP/grid.tsv"
    for WORKERS in $GRID_WORKERS; do
        for THREADS in $GRID_THREADS; do
            RUN_TAG="-${WORKERS}x$THREADS"
            run_scenarios load_row
            sed "s/^/$WORKERS\t$THREADS\t/" "$TMP/rows.tsv" >>"$TMP/grid.tsv"
            : >"$TMP/rows.tsv"
        done
    done
    meta=(
        "$(run_note)"
        "$versions"
        "tine alone on 127.0.0.1:$PORT: [server] workers = $GRID_WORKERS × threads = $GRID_THREADS (each pair a run of its own); [app] handler = \"python\", virtualenv = $(basename "$VENV"); [log] access_log = \"\""
        "${scenario_notes[@]}"
    )
    echo
    "$VENV/bin/python" "$HERE/lib/probe.py" grid-render "$TMP/grid.tsv" "$GRID_DIR" "${meta[@]}"
    echo
    echo "written to ${GRID_DIR#"$ROOT"/}/wsgi-grid.{tsv,md,png}"
    exit 0
fi

run_scenarios load_row

# --- the tables --------------------------------------------------------------------------------

meta=(
    "$(run_note)"
    "$versions"
    "every server with WORKERS=$WORKERS worker processes × THREADS=$THREADS threads ($NCPU CPUs here), on 127.0.0.1:$PORT, access log off"
    "tine: [server] workers = $WORKERS, threads = $THREADS; [app] handler = \"python\", app, pythonpath = [bench/apps], virtualenv = $(basename "$VENV"), loop = \"auto\"; [log] level = \"warn\", access_log = \"\"; tine-preload: the same and [app] preload = true (WSGI only)"
    "granian --working-dir bench/apps ${GRANIAN_WSGI[*]} APP; for ASGI ${GRANIAN_ASGI[*]}"
    "uwsgi --chdir bench/apps --http11-socket 127.0.0.1:$PORT ${UWSGI_ARGS[*]/#$VENV/$(basename "$VENV")} --module APP (the application imported once in the master, uWSGI's default)"
    "gunicorn --chdir bench/apps ${GUNICORN_ARGS[*]} APP"
    "uvicorn --app-dir bench/apps ${UVICORN_ARGS[*]} APP"
    "${scenario_notes[@]}"
    "memory: PSS (/proc/PID/smaps_rollup) of master + workers 1 s after the server was ready, and after the last run on that application; by kind of mapping (bench/lib/smaps.py, /proc/PID/smaps) after the last run on wsgi_hello"
)
write_results wsgi-render "${meta[@]}"
