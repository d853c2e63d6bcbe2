#!/usr/bin/env bash
# serve.sh tine|uvicorn [REPORT_DIR]
#
# Serves bench/apps/ws_echo.py, the WebSocket bench's echo (messages up to 16 MiB), with tine
# or with uvicorn (its `websockets` implementation, the reference) on 127.0.0.1 at a free port, waits until it accepts (at most
# 30 s), runs run.sh against it, stops the server by its pid, and exits with run.sh's status.
# The report goes to REPORT_DIR (default target/autobahn-report/SERVER), the server's log beside
# it (SERVER.log). run.sh's environment variables (AUTOBAHN_CASES, ...) apply.
#
# tine is $TINE, else target/release/tine (build it first: cargo build --release), with one
# worker. uvicorn runs from target/test-venv when that venv has uvicorn and websockets, else
# from target/autobahn-uvicorn-venv, made by setup-env from requirements-uvicorn.txt; set
# AUTOBAHN_UVICORN_PYTHON to use another interpreter.
set -euo pipefail

server=${1:-}
if [[ $# -lt 1 || $# -gt 2 || ( $server != tine && $server != uvicorn ) ]]; then
    echo "usage: $0 tine|uvicorn [REPORT_DIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
apps=$root/bench/apps # ws_echo.py, the testee
report_dir=${2:-$root/target/autobahn-report/$server}

python=${AUTOBAHN_UVICORN_PYTHON:-}
if [[ $server == tine ]]; then
    python=python3
elif [[ -z $python ]]; then
    python=$root/target/test-venv/bin/python
    if ! [[ -x $python ]] || ! "$python" -c 'import uvicorn, websockets' 2>/dev/null; then
        "$here/setup-env" "$root/target/autobahn-uvicorn-venv" python3 \
            "$here/requirements-uvicorn.txt"
        python=$root/target/autobahn-uvicorn-venv/bin/python
    fi
fi
if [[ $server == uvicorn ]]; then
    "$python" -c 'import uvicorn, websockets as ws
print("serve: uvicorn %s, websockets %s" % (uvicorn.__version__, ws.__version__))' >&2
fi

# bench/lib/common.sh: wait_answer (polls with curl, bounded by START_TIMEOUT) and stop_pid.
# shellcheck source=bench/lib/common.sh
source "$root/bench/lib/common.sh"
START_TIMEOUT=30

# A port nothing listens on now; the server binds it a moment later.
PORT=$("$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
mkdir -p "$report_dir"
log=$report_dir/$server.log

if [[ $server == tine ]]; then
    tine=${TINE:-$root/target/release/tine}
    config=$report_dir/tine.toml
    cat >"$config" <<EOF
[server]
bind = ["127.0.0.1:$PORT"]
workers = 1

[app]
handler = "python"
app = "ws_echo:app"
pythonpath = ["$apps"]

[websocket]
max_message = "16MiB"
EOF
    "$tine" -c "$config" >"$log" 2>&1 &
else
    # websockets 17.4 fails a message of more than 4096 fragments with 1009 "too many
    # fragments", a guard against floods of tiny frames; Autobahn's 9.3.1 and 9.4.1 send 4 MiB
    # in fragments of 64 bytes, so the cap is raised out of their way for this run.
    WEBSOCKETS_MAX_FRAGMENTS=1048576 "$python" -m uvicorn --app-dir "$apps" ws_echo:app \
        --host 127.0.0.1 --port "$PORT" --ws websockets --ws-max-size 16777216 --lifespan on \
        --log-level warning >"$log" 2>&1 &
fi
SERVER_PID=$!
trap 'stop_pid "$SERVER_PID" TERM 10 "$server"' EXIT

# ws_echo.py answers a plain GET with 426, which is enough to know the server is up.
if ! wait_answer "$EPOCHREALTIME"; then
    echo "serve: $server (pid $SERVER_PID) did not answer on 127.0.0.1:$PORT" \
        "within $START_TIMEOUT s; its log:" >&2
    cat "$log" >&2
    exit 1
fi
echo "serve: $server (pid $SERVER_PID) serving ws_echo:app on 127.0.0.1:$PORT" >&2

status=0
"$here/run.sh" "ws://127.0.0.1:$PORT/" "$report_dir" || status=$?
exit "$status"
