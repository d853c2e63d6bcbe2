#!/usr/bin/env bash
# serve-uvicorn.sh [REPORT_DIR]
#
# The proof that run.sh works: serves echo.py with uvicorn (its `websockets` implementation,
# messages up to 16 MiB) on 127.0.0.1 at a free port, waits until it accepts (at most 30 s),
# runs run.sh against it, stops uvicorn by its pid, and exits with run.sh's status.
# The report goes to REPORT_DIR (default target/autobahn-report/uvicorn), uvicorn's log beside
# it (uvicorn.log). run.sh's environment variables (AUTOBAHN_CASES, ...) apply.
#
# uvicorn runs from target/test-venv when that venv has uvicorn and websockets, else from
# target/autobahn-uvicorn-venv, made by setup-env from requirements-uvicorn.txt; set
# AUTOBAHN_UVICORN_PYTHON to use another interpreter.
set -euo pipefail

if [[ $# -gt 1 || ${1:-} == -h || ${1:-} == --help ]]; then
    echo "usage: $0 [REPORT_DIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
report_dir=${1:-$root/target/autobahn-report/uvicorn}

python=${AUTOBAHN_UVICORN_PYTHON:-}
if [[ -z $python ]]; then
    python=$root/target/test-venv/bin/python
    if ! [[ -x $python ]] || ! "$python" -c 'import uvicorn, websockets' 2>/dev/null; then
        "$here/setup-env" "$root/target/autobahn-uvicorn-venv" python3 \
            "$here/requirements-uvicorn.txt"
        python=$root/target/autobahn-uvicorn-venv/bin/python
    fi
fi
"$python" -c 'import uvicorn, websockets as ws
print("serve-uvicorn: uvicorn %s, websockets %s" % (uvicorn.__version__, ws.__version__))' >&2

# A port nothing listens on now; uvicorn binds it a moment later.
# bench/lib/common.sh: wait_answer (polls with curl, bounded by START_TIMEOUT) and stop_pid.
# shellcheck source=bench/lib/common.sh
source "$root/bench/lib/common.sh"
START_TIMEOUT=30

# A port nothing listens on now; uvicorn binds it a moment later.
PORT=$("$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
mkdir -p "$report_dir"
log=$report_dir/uvicorn.log

# websockets 17.4 fails a message of more than 4096 fragments with 1009 "too many fragments",
# a guard against floods of tiny frames; Autobahn's 9.3.1 and 9.4.1 send 4 MiB in fragments of
# 64 bytes, so the cap is raised out of their way for this run.
WEBSOCKETS_MAX_FRAGMENTS=1048576 "$python" -m uvicorn --app-dir "$here" echo:app \
    --host 127.0.0.1 --port "$PORT" --ws websockets --ws-max-size 16777216 --lifespan on \
    --log-level warning >"$log" 2>&1 &
SERVER_PID=$!
trap 'stop_pid "$SERVER_PID" TERM 10 uvicorn' EXIT

# echo.py answers a plain GET with 426, which is enough to know uvicorn is up.
if ! wait_answer "$EPOCHREALTIME"; then
    echo "serve-uvicorn: uvicorn (pid $SERVER_PID) did not answer on 127.0.0.1:$PORT" \
        "within $START_TIMEOUT s; its log:" >&2
    cat "$log" >&2
    exit 1
fi
echo "serve-uvicorn: uvicorn (pid $SERVER_PID) serving echo:app on 127.0.0.1:$PORT" >&2

status=0
"$here/run.sh" "ws://127.0.0.1:$PORT/" "$report_dir" || status=$?
exit "$status"
