#!/usr/bin/env bash
# bench/attacks.sh: the rate of new connections tine serves with and without slow uploads held
# against it, and the ratio of the two (issue 13: at least 80%).
#
# Builds tine (cargo build --release), installs wrk from Debian's packages when it is missing,
# starts tine on 127.0.0.1:$PORT in a temp dir (the demo application, WORKERS x THREADS, the
# default min_body_rate and body_rate_grace), and runs wrk with `Connection: close` (one new
# connection per request) twice: alone, then while an attacker holds STALLED uploads that sent a
# `Content-Length: 100000` head and one body byte, and TRICKLING uploads that send one more byte
# every TRICKLE seconds. The attacker opens a new upload in place of every one tine closes, so
# the attack lasts the whole run, and counts the 408s. Stops everything by pid.
#
# Usage: bench/attacks.sh
# Environment:
#   DURATION=10          seconds of each wrk run
#   CONNS=16             wrk connections (each request on a new one)
#   WRK_THREADS=2        wrk -t
#   WORKERS=5, THREADS=4 tine's [server] workers and threads
#   STALLED=50           uploads that send one body byte and nothing more
#   TRICKLING=50         uploads that send a body byte every TRICKLE seconds
#   TRICKLE=20           seconds between the trickling uploads' bytes
#   PORT=18082           the port tine listens on
#   SKIP_BUILD=1         use the existing target/release/tine
#   TINE=PATH            measure this tine binary instead (implies SKIP_BUILD)
#   KEEP_TMP=1           keep the temp dir (config, server log, wrk output)
# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" || exit 1 # set -euo pipefail, HERE, ROOT, PROBE

DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
WRK_THREADS=${WRK_THREADS:-2}
WORKERS=${WORKERS:-5}
THREADS=${THREADS:-4}
STALLED=${STALLED:-50}
TRICKLING=${TRICKLING:-50}
TRICKLE=${TRICKLE:-20}
PORT=${PORT:-18082}
START_TIMEOUT=10
STOP_TIMEOUT=10

need wrk wrk
need curl curl
find_tine
port_busy && die "something already answers on 127.0.0.1:$PORT (set PORT)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tine-attacks.XXXXXX")
SERVER_PID=""
ATTACKER_PID=""
cleanup() {
    local status=$?
    [[ -n $ATTACKER_PID ]] && stop_pid "$ATTACKER_PID" TERM 5 "the attacker"
    [[ -n $SERVER_PID ]] && stop_server
    remove_tmp "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$TMP/tine.toml" <<EOF
[server]
bind = "127.0.0.1:$PORT"
workers = $WORKERS
threads = $THREADS

[app]
handler = "demo"
EOF
start=$EPOCHREALTIME
"$TINE" -c "$TMP/tine.toml" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
wait_answer "$start" || die "tine did not answer within ${START_TIMEOUT}s; see $TMP/server.log"

# The attacker: holds the uploads, replacing each one tine closes, until TERM or its own limit.
cat >"$TMP/attacker.py" <<'EOF'
import signal, socket, sys, time

port, stalled, trickling, trickle, limit = (int(a) for a in sys.argv[1:6])
HEAD = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nx"
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)

def upload():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(HEAD)
    s.setblocking(False)
    return s

def closed(s):
    """Whether tine answered (True, status) or closed the upload; (False, None) if it holds it."""
    try:
        data = s.recv(64)
    except BlockingIOError:
        return False, None
    except OSError:
        return True, None
    return True, (data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.1 ") else None)

slots = [(upload(), False) for _ in range(stalled)] + [(upload(), True) for _ in range(trickling)]
print("ready", flush=True)
answers, opened, next_trickle, end = {}, len(slots), time.monotonic() + trickle, time.monotonic() + limit
while not stop and time.monotonic() < end:
    now = time.monotonic()
    send = now >= next_trickle
    if send:
        next_trickle = now + trickle
    for i, (s, trickles) in enumerate(slots):
        gone, status = closed(s)
        if gone:
            answers[status] = answers.get(status, 0) + 1
            s.close()
            slots[i] = (upload(), trickles)
            opened += 1
        elif send and trickles:
            try:
                s.send(b"x")
            except OSError:
                pass
    time.sleep(0.1)
print("uploads opened %d; answers by status: %s" % (opened, answers or "none"), flush=True)
EOF

rate() { # rate OUT: one wrk run of new connections; prints its requests per second
    timeout -k 5 $((DURATION + 30)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s \
        -H 'Connection: close' "http://127.0.0.1:$PORT/" >"$1" 2>&1 || true
    awk '/^Requests\/sec:/ { print $2 }' "$1"
}

log "warm-up"
timeout -k 5 40 wrk -t"$WRK_THREADS" -c"$CONNS" -d2s -H 'Connection: close' \
    "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true
log "new connections without an attack (${DURATION}s)"
baseline=$(rate "$TMP/wrk-baseline.txt")
[[ -n $baseline ]] || die "wrk gave no result; see $TMP/wrk-baseline.txt"

log "holding $STALLED stalled and $TRICKLING trickling uploads"
python3 -u "$TMP/attacker.py" "$PORT" "$STALLED" "$TRICKLING" "$TRICKLE" $((DURATION + 60)) \
    >"$TMP/attacker.log" 2>&1 &
ATTACKER_PID=$!
for _ in $(seq 100); do
    grep -q ready "$TMP/attacker.log" 2>/dev/null && break
    kill -0 "$ATTACKER_PID" 2>/dev/null || die "the attacker failed: $(cat "$TMP/attacker.log")"
    sleep 0.1
done
grep -q ready "$TMP/attacker.log" || die "the attacker did not open its uploads within 10 s"
log "new connections under the attack (${DURATION}s)"
attacked=$(rate "$TMP/wrk-attacked.txt")
stop_pid "$ATTACKER_PID" TERM 5 "the attacker"
ATTACKER_PID=""
[[ -n $attacked ]] || die "wrk gave no result under attack; see $TMP/wrk-attacked.txt"

printf '%s, %s workers x %s threads, wrk -c%s Connection: close, %ss each; %s\n' \
    "$(first_line "$TINE" --version)" "$WORKERS" "$THREADS" "$CONNS" "$DURATION" "$(machine_note)"
printf 'attack: %s stalled uploads (head + 1 byte) and %s trickling 1 byte every %ss\n' \
    "$STALLED" "$TRICKLING" "$TRICKLE"
printf 'attacker: %s\n' "$(tail -n 1 "$TMP/attacker.log")"
printf 'new connections/s without attack: %s\n' "$baseline"
printf 'new connections/s under attack:   %s\n' "$attacked"
awk -v a="$attacked" -v b="$baseline" 'BEGIN { printf "ratio: %.0f%%\n", 100 * a / b }'
