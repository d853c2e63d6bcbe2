# shellcheck shell=bash
# bench/lib/common.sh: what the bench scripts (run.sh, memory.sh, attacks.sh, asgi.sh,
# websocket.sh) share. Sourced first, not run:
#   # shellcheck source=bench/lib/common.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" || exit 1
# It turns on `set -euo pipefail` and LC_ALL=C, and sets HERE (bench/), ROOT (the repository)
# and PROBE (the bench/lib/probe.py command, an array).
#
# The sourcing script sets, before it calls them, SERVER_PID (the server being measured, ""
# when none), PORT, START_TIMEOUT and STOP_TIMEOUT (seconds), and TMP (its temp dir); for
# wait_quiet, QUIET_WAIT and QUIET_TOTAL (seconds), CLK_TCK (getconf CLK_TCK) and NCPU (nproc);
# for write_results, RESULTS; for tine_note, TINE when tine ran.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PROBE=(python3 "$HERE/lib/probe.py")
BENCH_SCRIPT="bench/${0##*/}"

log() { printf '== %s\n' "$*" >&2; }
die() {
    printf '%s: %s\n' "$BENCH_SCRIPT" "$*" >&2
    exit 1
}

need() { # need COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (for $1)"
    if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null ||
            die "apt-get install $2 failed (try apt-get update first)"
    else
        die "$1 is missing: run 'sudo apt-get install $2', or run this script as root"
    fi
    command -v "$1" >/dev/null 2>&1 || die "$1 is still missing after installing $2"
}

find_tine() { # sets TINE: $TINE as given, or target/release/tine, built unless SKIP_BUILD is set
    if [[ -n ${TINE:-} ]]; then
        [[ -x $TINE ]] || die "TINE=$TINE is not an executable"
        return
    fi
    TINE=${CARGO_TARGET_DIR:-$ROOT/target}/release/tine
    if [[ -z ${SKIP_BUILD:-} ]]; then
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
    [[ -x $TINE ]] || die "no tine binary at $TINE"
}

require_tools() { # require_tools COMMAND...: dies unless each COMMAND is on the PATH
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
    done
}

require_counts() { # require_counts VAR...: dies unless each VAR holds a positive whole number
    local var
    for var in "$@"; do
        [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive whole number, got '${!var}'"
    done
}

require_seconds() { # require_seconds VAR...: dies unless each VAR holds a whole number (0 too)
    local var
    for var in "$@"; do
        [[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a whole number of seconds, got '${!var}'"
    done
}

first_line() { "$@" 2>&1 | head -n 1 || true; }

machine_note() { # the date, the CPUs and the kernel, for a results file's head
    local cpu_model
    cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
    printf '%s, %s CPUs (%s), %s' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" \
        "${cpu_model:-unknown model}" "$(uname -sr)"
}

tine_note() { # "tine X.Y.Z (git COMMIT)" of TINE and this checkout, for a results file's head
    local version commit
    version=$(if [[ -n ${TINE:-} ]]; then first_line "$TINE" --version; else echo "tine not run"; fi)
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
    printf '%s (git %s)' "$version" "$commit"
}

# write_results RENDER META...: `probe.py RENDER TMP/rows.tsv RESULTS META...` prints the
# table(s) and writes them as Markdown to RESULTS (its directory made if need be)
write_results() {
    mkdir -p "$(dirname "$RESULTS")"
    echo
    "${PROBE[@]}" "$1" "$TMP/rows.tsv" "$RESULTS" "${@:2}"
    echo
    echo "written to ${RESULTS#"$ROOT"/}"
}

ANSWER_MS="-"

ms_since() { # ms_since EPOCH_SECONDS [NOW]
    awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.0f", (b - a) * 1000 }'
}

port_busy() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/"; }

wait_answer() { # wait_answer START_EPOCH: polls with curl until the server answers, bounded
    local start=$1 deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/"; then
            ANSWER_MS=$(ms_since "$start")
            return 0
        fi
        sleep 0.01
    done
    return 1
}

stop_pid() { # stop_pid PID SIGNAL TIMEOUT_S WHAT: sends SIGNAL, and KILL after TIMEOUT_S
    local pid=$1 deadline=$((SECONDS + $3))
    kill -"$2" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$4 (pid $pid) still running ${3}s after $2; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_server() { # TERM by pid, KILL after STOP_TIMEOUT
    local pid=$SERVER_PID
    SERVER_PID=""
    stop_pid "$pid" TERM "$STOP_TIMEOUT" "the server"
}

remove_tmp() { # remove_tmp STATUS: the end of an EXIT trap; TMP is kept when KEEP_TMP is set
    if [[ -n ${KEEP_TMP:-} ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$1"
}

busy_ticks() { # CPU ticks the whole machine spent in user and system mode so far
    local _cpu user nice system _rest
    read -r _cpu user nice system _rest </proc/stat
    printf '%s\n' $((user + nice + system))
}

# wait_quiet: other work on the machine (a build, say) skews every number: waits until it is idle
# (under 10% of its CPUs busy for a second), at most QUIET_WAIT seconds, and QUIET_TOTAL in all
# the calls of a run. Sets BUSY_BEFORE to the % of all CPUs busy in the last second it looked
# at (- when it did not look).
BUSY_BEFORE=-
wait_quiet() {
    QUIET_LEFT=${QUIET_LEFT:-$QUIET_TOTAL}
    local wait=$((QUIET_WAIT < QUIET_LEFT ? QUIET_WAIT : QUIET_LEFT))
    BUSY_BEFORE=-
    ((wait > 0)) || return 0
    local start=$SECONDS before busy
    while :; do
        before=$(busy_ticks)
        sleep 1
        busy=$(($(busy_ticks) - before))
        BUSY_BEFORE=$((busy * 100 / (CLK_TCK * NCPU)))
        ((busy * 10 <= CLK_TCK * NCPU)) && break
        if ((SECONDS - start >= wait)); then
            log "the machine is still busy ($((busy * 100 / CLK_TCK))% of a CPU) after ${wait}s; measuring anyway (see 'other CPU s')"
            break
        fi
    done
    QUIET_LEFT=$((QUIET_LEFT - (SECONDS - start)))
    ((QUIET_LEFT > 0)) || QUIET_LEFT=0
}
