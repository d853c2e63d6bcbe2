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
# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" || exit 1 # set -euo pipefail, HERE, ROOT, PROBE
# shellcheck source=bench/lib/asgi_servers.sh
source "$HERE/lib/asgi_servers.sh"

PORT=${PORT:-18082}
asgi_settings # DURATION, WARMUP, WORKERS, SERVERS, ONLY, QUIET_*, VENV, PYTHON, APPS
WRK_THREADS=${WRK_THREADS:-2}
RESULTS=${RESULTS:-$HERE/results/asgi-latest.md}
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

need wrk wrk
require_counts WRK_THREADS
NAMES=() MODULES=() PATHS=() CONNS=() SLEEPS=()
read_scenarios NAMES MODULES PATHS CONNS SLEEPS

find_tine

# --- the virtualenv ----------------------------------------------------------------------------

asgi_venv fastapi granian httptools uvicorn uvloop

# --- state and cleanup -------------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tine-asgi-bench.XXXXXX")

cleanup() {
    local status=$?
    stop_started
    remove_tmp "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the servers -------------------------------------------------------------------------------

UVICORN_ARGS=(--workers "$WORKERS" --loop uvloop --http httptools --no-access-log --log-level warning)
GRANIAN_ARGS=(--interface asgi --workers "$WORKERS" --loop uvloop --no-ws --no-access-log --log-level warning)

# --- the runs ----------------------------------------------------------------------------------

run_scenarios load_row

# --- the table ---------------------------------------------------------------------------------

meta=(
    "$(run_note)"
    "$(tine_note), $(first_line "$VENV/bin/python" --version), $(asgi_versions fastapi starlette uvicorn httptools uvloop granian), $(first_line wrk -v | awk '{print "wrk " $2}')"
    "every server with WORKERS=$WORKERS worker processes ($NCPU CPUs here), on 127.0.0.1:$PORT, access log off, the applications in bench/apps/"
    "tine: [server] workers = $WORKERS; [app] handler = \"python\", app, pythonpath = [bench/apps], virtualenv = $(basename "$VENV"), loop = \"auto\" (uvloop); [log] level = \"warn\", access_log = \"\""
    "uvicorn --app-dir bench/apps ${UVICORN_ARGS[*]} APP"
    "granian --working-dir bench/apps ${GRANIAN_ARGS[*]} APP (runtime threads: the default)"
    "wrk -t$WRK_THREADS -d${DURATION}s --timeout ${WRK_TIMEOUT}s, keep-alive, after ${WARMUP}s of unmeasured load; the load generator and the servers share the machine"
)
write_results asgi-render "${meta[@]}"
