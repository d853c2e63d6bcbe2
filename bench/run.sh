#!/usr/bin/env bash
# bench/run.sh: benchmarks tine against nginx on this machine and prints one table.
#
# Builds tine (cargo build --release), installs wrk and nginx-light from Debian's packages when
# they are missing, then starts each server on 127.0.0.1 in turn, each in its own temp dir with
# its own generated config, runs the scenario matrix below against it with wrk, stops it by its
# pid, and prints the results. Also writes them as Markdown to bench/results/latest.md.
#
# Usage: bench/run.sh            (see "Benchmarks" in README.md)
# Environment:
#   DURATION=10        seconds per scenario (wrk -d)
#   WARMUP=2           seconds of unmeasured load before each measured run (0: none)
#   QUIET_WAIT=10      before each scenario, wait up to this many seconds for the machine to be
#                      idle (under 10% CPU busy for a second); 0: don't wait
#   QUIET_TOTAL=45     at most this many seconds of such waiting in the whole run
#   WRK_THREADS=2      wrk -t
#   PORT=18080         the port every server listens on, one at a time
#   ONLY=REGEX         run only the scenarios whose name matches (e.g. ONLY='^hello')
#   BALANCE_REQUESTS=2000, BALANCE_CONCURRENCY=16
#                      the per-worker balance probe after hello-ka-64 (/pid, new connection each)
#   IDLE_CONNS=10000   the idle-ka step: this many idle keep-alive connections held open while
#                      hello-ka-64 runs again (0: skip the step; ONLY selects it as 'idle-ka')
#   IDLE_DURATION=5    seconds of each of the idle-ka step's two hello-ka-64 runs (at most DURATION)
#   IDLE_MAX_CONNECTIONS=5000
#                      tine's [server] max_connections (per worker) in the idle-ka step
#   SKIP_BUILD=1       use the existing target/release/tine
#   TINE=PATH          benchmark this tine binary instead (implies SKIP_BUILD)
#   RESULTS=FILE       where the Markdown goes (default bench/results/latest.md)
#   KEEP_TMP=1         keep the temp dir (configs, server logs, wrk output)
# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" || exit 1 # set -euo pipefail, HERE, ROOT, PROBE

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
QUIET_WAIT=${QUIET_WAIT:-10}
QUIET_TOTAL=${QUIET_TOTAL:-45}
WRK_THREADS=${WRK_THREADS:-2}
PORT=${PORT:-18080}
ONLY=${ONLY:-}
BALANCE_AFTER=hello-ka-64
BALANCE_REQUESTS=${BALANCE_REQUESTS:-2000}
BALANCE_CONCURRENCY=${BALANCE_CONCURRENCY:-16}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_MAX_CONNECTIONS=${IDLE_MAX_CONNECTIONS:-5000}
IDLE_DURATION=${IDLE_DURATION:-}
IDLE_NAME=idle-ka
IDLE_OPEN_TIMEOUT=60 # seconds the idle connections may take to open
RESULTS=${RESULTS:-$HERE/results/latest.md}
START_TIMEOUT=10 # seconds a server may take to answer its first request
STOP_TIMEOUT=10  # seconds between TERM and KILL

# The matrix: one scenario a line.
#   name | path | connections | keepalive or close (a new connection per request) |
#   tine settings (- for the defaults; otherwise SECTION.KEY=VALUE ..., @DOCROOT@ is the dir
#   holding 1k.bin and 1m.bin) | reference: nginx, ceiling=REQUESTS_PER_S, or tine:SETTINGS
# A scenario whose tine config does not pass `tine --check-config` (e.g. a handler that does not
# exist yet) is skipped, with the reason.
SCENARIOS=(
    "hello-ka-64    | /             | 64  | keepalive | -                                     | nginx"
    "hello-ka-256   | /             | 256 | keepalive | -                                     | nginx"
    "hello-close-64 | /             | 64  | close     | -                                     | nginx"
    "sleep-50ms     | /sleep?ms=50  | 100 | keepalive | server.workers=5 server.threads=4     | ceiling=400"
    "cpu-200k       | /cpu?n=200000 | 8   | keepalive | server.workers=auto                   | tine:server.workers=1"
    "static-1k      | /1k.bin       | 64  | keepalive | app.handler=static app.root=@DOCROOT@ | nginx"
    "static-1m      | /1m.bin       | 16  | keepalive | app.handler=static app.root=@DOCROOT@ | nginx"
)

# --- tools -------------------------------------------------------------------------------------

for tool in python3 curl cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
need wrk wrk
need nginx nginx-light
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds, got '$DURATION'"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds, got '$WARMUP'"
[[ $QUIET_WAIT =~ ^[0-9]+$ ]] || die "QUIET_WAIT must be a whole number of seconds, got '$QUIET_WAIT'"
[[ $QUIET_TOTAL =~ ^[0-9]+$ ]] || die "QUIET_TOTAL must be a whole number of seconds, got '$QUIET_TOTAL'"
[[ $IDLE_CONNS =~ ^[0-9]+$ ]] || die "IDLE_CONNS must be a whole number, got '$IDLE_CONNS'"
[[ -n $IDLE_DURATION ]] || IDLE_DURATION=$((DURATION < 5 ? DURATION : 5))
[[ $IDLE_DURATION =~ ^[1-9][0-9]*$ ]] || die "IDLE_DURATION must be a whole number of seconds, got '$IDLE_DURATION'"
((IDLE_DURATION + QUIET_WAIT + 10 < 75)) ||
    log "IDLE_DURATION + QUIET_WAIT come near the servers' 75 s keep-alive timeout: idle-ka will see drops"
[[ $IDLE_MAX_CONNECTIONS =~ ^[1-9][0-9]*$ ]] ||
    die "IDLE_MAX_CONNECTIONS must be a positive whole number, got '$IDLE_MAX_CONNECTIONS'"
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

find_tine

# --- state and cleanup -------------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tine-bench.XXXXXX")
# nginx's workers run as nobody and must reach the document root.
chmod 755 "$TMP"
SERVER_PID=""
NOTIFY_PID=""
HOLDER_PID="" # the idle connections' holder (probe.py idle)
IDLE_NOTES=() # what went wrong in the idle-ka step, for the results' head

cleanup() {
    local status=$?
    [[ -n $NOTIFY_PID ]] && kill "$NOTIFY_PID" 2>/dev/null
    [[ -n $HOLDER_PID ]] && kill "$HOLDER_PID" 2>/dev/null
    [[ -n $SERVER_PID ]] && stop_server
    remove_tmp "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/docroot"
head -c 1024 /dev/urandom >"$TMP/docroot/1k.bin"
head -c $((1024 * 1024)) /dev/urandom >"$TMP/docroot/1m.bin"
chmod 644 "$TMP/docroot/"*.bin

trim() {
    local s=$1
    s=${s#"${s%%[![:space:]]*}"}
    s=${s%"${s##*[![:space:]]}"}
    printf '%s' "$s"
}

# --- configs -----------------------------------------------------------------------------------

toml_value() { # a bare number, or a quoted string
    if [[ $1 =~ ^[0-9]+$ ]]; then printf '%s' "$1"; else printf '"%s"' "$1"; fi
}

write_tine_config() { # write_tine_config FILE SETTINGS
    local file=$1 settings=$2 item key value server="" app="" has_handler=""
    if [[ $settings != "-" ]]; then
        for item in $settings; do
            item=${item//@DOCROOT@/$TMP/docroot}
            key=${item%%=*}
            value=$(toml_value "${item#*=}")
            case $key in
                server.*) server+="${key#server.} = $value"$'\n' ;;
                app.*)
                    app+="${key#app.} = $value"$'\n'
                    [[ $key == app.handler ]] && has_handler=1
                    ;;
                *) die "unknown setting '$item' in the scenario table (use server.KEY or app.KEY)" ;;
            esac
        done
    fi
    [[ -n $has_handler ]] || app="handler = \"demo\""$'\n'"$app"
    cat >"$file" <<EOF
# generated by bench/run.sh
[server]
bind = "127.0.0.1:$PORT"
graceful_timeout = "5s"
${server}
[log]
level = "info"

[app]
${app}
EOF
}

write_nginx_config() { # write_nginx_config DIR [WORKER_CONNECTIONS]
    local dir=$1 connections=${2:-4096} rlimit=""
    # Only when more than the usual limits allow: a larger connection table costs memory.
    ((connections > 4096)) && rlimit="worker_rlimit_nofile $((connections + 1024));"
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/run.sh
daemon off;
master_process on;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
$rlimit

events {
    worker_connections $connections;
}

http {
    access_log off;
    default_type text/plain;
    # tine has no per-connection request limit; nginx's default (1000) would add reconnects.
    keepalive_requests 1000000;
    # nginx's default, written out: the same as tine's keepalive (75 s).
    keepalive_timeout 75s;
    client_body_temp_path $dir/tmp/body;

    server {
        listen 127.0.0.1:$PORT;
        root $TMP/docroot;
        location = / {
            return 200 "Hello, World!";
        }
        location = /pid {
            return 200 "\$pid\n";
        }
    }
}
EOF
}

# --- servers -----------------------------------------------------------------------------------

READY_MS="-"

start_tine() { # start_tine DIR SETTINGS
    local dir=$1 settings=$2 sock start ready_at
    mkdir -p "$dir"
    write_tine_config "$dir/tine.toml" "$settings"
    sock=$dir/notify.sock
    "${PROBE[@]}" notify "$sock" "$START_TIMEOUT" >"$dir/ready-at" &
    NOTIFY_PID=$!
    for _ in $(seq 500); do
        [[ -S $sock ]] && break
        sleep 0.01
    done
    [[ -S $sock ]] || die "the READY=1 listener did not bind $sock"
    start=$EPOCHREALTIME
    NOTIFY_SOCKET=$sock "$TINE" -c "$dir/tine.toml" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    if wait "$NOTIFY_PID"; then
        read -r ready_at <"$dir/ready-at"
        READY_MS=$(ms_since "$start" "$ready_at")
    else
        READY_MS="-"
        log "tine sent no READY=1 within ${START_TIMEOUT}s"
    fi
    NOTIFY_PID=""
    wait_answer "$start"
}

start_nginx() { # start_nginx DIR [WORKER_CONNECTIONS]
    local dir=$1 start
    mkdir -p "$dir"
    write_nginx_config "$dir" "${2:-}"
    start=$EPOCHREALTIME
    nginx -p "$dir/" -e "$dir/logs/error.log" -c "$dir/nginx.conf" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    READY_MS="-"
    wait_answer "$start"
}

# --- one wrk run -------------------------------------------------------------------------------

declare -A WORKER_CPU # instance label -> per-worker CPU seconds in the balance scenario

# busy_ticks and wait_quiet are in lib/common.sh.

# measure_wrk NAME LABEL CONNS URL WARMUP_S DURATION_S OUT [WRK_ARGS...]: one wrk run of
# DURATION_S seconds against SERVER_PID, after WARMUP_S seconds of unmeasured load. Sets M[rps p50
# p99 errors queued cpu per ctx other workers] (milliseconds for p50/p99, the median length of the
# listener's accept queue over the run, server CPU seconds, µs per request, context switches per
# request, CPU seconds used by anything else, per-worker CPU seconds); returns 1 when wrk gave no
# result (its output is in OUT).
declare -A M=()
measure_wrk() {
    local name=$1 label=$2 conns=$3 url=$4 warmup=$5 duration=$6 out=$7
    shift 7
    M=()
    wait_quiet
    log "$name: $label, $conns connections, ${duration}s"
    if ((warmup > 0)); then
        timeout -k 5 $((warmup + 30)) wrk -t"$WRK_THREADS" -c"$conns" -d"${warmup}s" \
            --timeout 5s "$@" "$url" >/dev/null 2>&1 || true
    fi
    "${PROBE[@]}" snap "$SERVER_PID" >"$TMP/before.json"
    local busy_before busy_after client_cpu queued
    # wrk counts no error for a connection that is never accepted: sample the accept queue over
    # the middle of the run (from 1 s in to 1 s before the end).
    "${PROBE[@]}" backlog "$PORT" 1 $((duration > 2 ? duration - 2 : 0)) >"$TMP/backlog" &
    local sampler=$!
    busy_before=$(busy_ticks)
    local TIMEFORMAT='%U %S' # bash's `time`: the CPU wrk (the client) used
    {
        time timeout -k 5 $((duration + 30)) wrk -t"$WRK_THREADS" -c"$conns" -d"${duration}s" \
            --timeout 5s -s "$HERE/lib/report.lua" "$@" "$url" >"$out" 2>&1 || true
    } 2>"$TMP/wrk-time"
    busy_after=$(busy_ticks)
    "${PROBE[@]}" snap "$SERVER_PID" >"$TMP/after.json"
    wait "$sampler" || true
    queued=$(cat "$TMP/backlog")
    client_cpu=$(awk '{ print $1 + $2 }' "$TMP/wrk-time")
    local line
    if ! line=$(grep '^BENCH_RESULT' "$out"); then
        log "wrk gave no result for $name on $label:"
        cat "$out" >&2
        return 1
    fi
    local -A r=()
    local kv
    for kv in ${line#BENCH_RESULT }; do r[${kv%%=*}]=${kv#*=}; done
    local cpu ctx workers
    read -r cpu ctx workers < <("${PROBE[@]}" delta "$TMP/before.json" "$TMP/after.json")
    local errors=$((r[connect] + r[read] + r[write] + r[timeout] + r[status]))
    local rps p50 p99 per cs other
    read -r rps p50 p99 per cs other < <(awk -v n="${r[requests]}" -v us="${r[duration_us]}" \
        -v p50="${r[p50_us]}" -v p99="${r[p99_us]}" -v cpu="$cpu" -v ctx="$ctx" \
        -v busy="$((busy_after - busy_before))" -v tck="$CLK_TCK" -v client="$client_cpu" \
        'BEGIN {
            rps = us > 0 ? n / (us / 1e6) : 0
            cs = n > 0 ? sprintf("%.2f", ctx / n) : "-"
            per = n > 0 ? sprintf("%.1f", cpu / n * 1e6) : "-"
            # CPU the rest of the machine used meanwhile: neither the server nor wrk.
            other = busy / tck - cpu - client
            if (other < 0) other = 0
            printf "%.1f %.2f %.2f %s %s %.1f\n", rps, p50 / 1000, p99 / 1000, per, cs, other
        }')
    M=([rps]=$rps [p50]=$p50 [p99]=$p99 [errors]=$errors [queued]=${queued:--} [cpu]=$cpu
        [per]=$per [ctx]=$cs [other]=$other [workers]=$workers)
    grep -E '^(Requests/sec|  Socket errors|  Non-2xx)' "$out" | sed 's/^/   /' >&2 || true
}

run_wrk() { # run_wrk INDEX LABEL ROLE_RANK ROLE REF_KIND: one scenario of the matrix, one row
    local i=$1 label=$2 rank=$3 role=$4 ref_kind=$5
    local name=${NAMES[i]} url="http://127.0.0.1:$PORT${PATHS[i]}"
    local -a extra=()
    [[ ${MODES[i]} == close ]] && extra=(-H "Connection: close")
    if ! measure_wrk "$name" "$label" "${CONNS[i]}" "$url" "$WARMUP" "$DURATION" "$TMP/wrk-$i-$rank.txt" "${extra[@]}"; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t0\t-\t-\twrk failed\t-\t-\t-\t-\t-\n' \
            "$i" "$rank" "$name" "$label" "$role" "$ref_kind" >>"$TMP/rows.tsv"
        return
    fi
    [[ $name == "$BALANCE_AFTER" ]] && WORKER_CPU[$label]=${M[workers]}
    printf '%s\t' "$i" "$rank" "$name" "$label" "$role" "$ref_kind" "${M[rps]}" "${M[p50]}" \
        "${M[p99]}" "${M[errors]}" "${M[queued]}" "${M[cpu]}" "${M[per]}" "${M[ctx]}" >>"$TMP/rows.tsv"
    printf '%s\n' "${M[other]}" >>"$TMP/rows.tsv"
}

balance() { # balance LABEL: /pid over new connections, after the balance scenario
    local label=$1 result
    log "$label: $BALANCE_REQUESTS requests to /pid, a new connection each, $BALANCE_CONCURRENCY at a time"
    if ! result=$(timeout 120 "${PROBE[@]}" balance "http://127.0.0.1:$PORT/pid" \
        "$BALANCE_REQUESTS" "$BALANCE_CONCURRENCY" "$SERVER_PID"); then
        log "the balance probe failed"
        return
    fi
    local n workers min max errors detail ratio
    read -r n workers min max errors detail <<<"$result"
    ratio=$(awk -v a="$max" -v b="$min" 'BEGIN { print (b > 0) ? sprintf("%.2f", a / b) : "inf (a worker got none)" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$n" "$workers" "$min" "$max" "$ratio" \
        "$errors" "$detail" "${WORKER_CPU[$label]:--}" >>"$TMP/balance.tsv"
}

mem_mib() { # mem_mib MASTER_PID -> "RSS_MIB PSS_MIB PROCESSES"
    "${PROBE[@]}" mem "$1" | awk '{ printf "%.1f %.1f %d\n", $1 / 1024, $2 / 1024, $3 }'
}

# --- idle keep-alive connections -----------------------------------------------------------------

stop_holder() { # SIGUSR1: the holder checks which connections are still open, reports, closes all
    local pid=$HOLDER_PID
    HOLDER_PID=""
    stop_pid "$pid" USR1 30 "the idle connections' holder"
}

field() { # field KEY LINE: the value of KEY=VALUE in LINE, or -
    local kv
    for kv in $2; do
        [[ $kv == "$1"=* ]] && {
            printf '%s' "${kv#*=}"
            return
        }
    done
    printf -- -
}

# idle_step tine|nginx: hello-ka-64 without, then with IDLE_CONNS idle keep-alive connections
# held open (each has had one request answered), the server's memory before and while they are
# held, and how many the server closed by the end. One row of idle.tsv.
idle_step() {
    local kind=$1 dir="$TMP/idle-$1" url="http://127.0.0.1:$PORT/" label procs
    local nginx_connections=$((IDLE_CONNS + 1024 > 20000 ? IDLE_CONNS + 1024 : 20000))
    if [[ $kind == tine ]]; then
        label="tine max_connections=$IDLE_MAX_CONNECTIONS"
    else
        label="nginx worker_connections=$nginx_connections"
    fi
    log "starting $label ($IDLE_NAME)"
    port_busy && die "127.0.0.1:$PORT is still taken before starting $label"
    if [[ $kind == tine ]]; then
        start_tine "$dir" "server.max_connections=$IDLE_MAX_CONNECTIONS" ||
            die "tine did not answer within ${START_TIMEOUT}s; its log: $(cat "$dir/server.log")"
    else
        start_nginx "$dir" "$nginx_connections" ||
            die "nginx did not answer within ${START_TIMEOUT}s; its log: $(cat "$dir/server.log" "$dir/logs/error.log" 2>/dev/null)"
    fi
    sleep 0.5
    local -A base=() with=()
    measure_wrk "$IDLE_NAME" "$label, without idle connections" 64 "$url" "$WARMUP" "$IDLE_DURATION" \
        "$TMP/wrk-idle-$kind-0.txt" && base=([rps]=${M[rps]} [per]=${M[per]} [errors]=${M[errors]} [other]=${M[other]})
    sleep 0.5
    local rss0 pss0
    read -r rss0 pss0 procs < <("${PROBE[@]}" mem "$SERVER_PID")
    if [[ $kind == tine ]] && (((procs - 1) * IDLE_MAX_CONNECTIONS < IDLE_CONNS + 64)); then
        log "$((procs - 1)) workers x max_connections $IDLE_MAX_CONNECTIONS is less than $IDLE_CONNS idle" \
            "connections plus wrk's 64: raise IDLE_MAX_CONNECTIONS"
    fi
    log "$IDLE_NAME: $label, opening $IDLE_CONNS idle keep-alive connections"
    # The holder waits for SIGUSR1 at most this long after they are open: the loaded run, the
    # wait for a quiet machine before it, and some slack.
    "${PROBE[@]}" idle 127.0.0.1 "$PORT" "$IDLE_CONNS" "$IDLE_OPEN_TIMEOUT" \
        $((IDLE_DURATION + QUIET_WAIT + 60)) >"$dir/idle.out" 2>"$dir/idle.err" &
    HOLDER_PID=$!
    local deadline=$((SECONDS + IDLE_OPEN_TIMEOUT + 15)) held_line="" check_line=""
    while ((SECONDS < deadline)); do
        held_line=$(grep -m1 '^HELD' "$dir/idle.out" 2>/dev/null || true)
        [[ -n $held_line ]] && break
        kill -0 "$HOLDER_PID" 2>/dev/null || break
        sleep 0.05
    done
    local held rss1=- pss1=-
    held=$(field held "$held_line")
    if [[ $held == - ]]; then
        IDLE_NOTES+=("$label: the idle connections' holder reported nothing: $(tr '\n' ' ' <"$dir/idle.err" | sed 's/ *$//')")
        log "${IDLE_NOTES[-1]}"
        stop_holder
    else
        log "   $held_line"
        sleep 0.5
        read -r rss1 pss1 _ < <("${PROBE[@]}" mem "$SERVER_PID")
        measure_wrk "$IDLE_NAME" "$label, with $held idle connections" 64 "$url" 0 "$IDLE_DURATION" \
            "$TMP/wrk-idle-$kind-1.txt" && with=([rps]=${M[rps]} [per]=${M[per]} [errors]=${M[errors]} [other]=${M[other]})
        stop_holder
        check_line=$(grep -m1 '^CHECK' "$dir/idle.out" || true)
        log "   ${check_line:-the holder did not report its check: $(cat "$dir/idle.err")}"
    fi
    stop_server
    local failed failed_detail
    failed=$(field failed "$held_line")
    failed_detail=$(field errors "$held_line")
    [[ $failed_detail != - ]] && failed="$failed ($failed_detail)"
    [[ $held == - ]] && failed="holder failed"
    # Memory in KiB from probe.py; per connection in bytes.
    awk -v OFS='\t' -v label="$label" -v workers="$((procs - 1))" -v n="$IDLE_CONNS" -v held="$held" \
        -v failed="$failed" -v open_s="$(field open_s "$held_line")" -v rss0="$rss0" -v rss1="$rss1" \
        -v pss0="$pss0" -v pss1="$pss1" -v rps0="${base[rps]:--}" -v rps1="${with[rps]:--}" \
        -v per0="${base[per]:--}" -v per1="${with[per]:--}" -v err0="${base[errors]:--}" \
        -v err1="${with[errors]:--}" -v other0="${base[other]:--}" -v other1="${with[other]:--}" \
        -v dropped="$(field dropped "$check_line")" \
        'function mib(kib) { return kib == "-" ? "-" : sprintf("%.1f", kib / 1024) }
        function per_conn(a, b) { return held + 0 > 0 && b != "-" ? sprintf("%.0f", (b - a) * 1024 / held) : "-" }
        BEGIN {
            print label, workers, n, held, failed, open_s, mib(rss0), mib(rss1), per_conn(rss0, rss1),
                mib(pss0), mib(pss1), per_conn(pss0, pss1), rps0, rps1, per0, per1, err0 "/" err1,
                other0 "/" other1, dropped
        }' >>"$TMP/idle.tsv"
}

# --- the matrix --------------------------------------------------------------------------------

NAMES=() PATHS=() CONNS=() MODES=() TSETS=() REFS=()
for line in "${SCENARIOS[@]}"; do
    IFS='|' read -r name path conns mode tset ref <<<"$line"
    name=$(trim "$name")
    [[ -n $ONLY && ! $name =~ $ONLY ]] && continue
    NAMES+=("$name")
    PATHS+=("$(trim "$path")")
    CONNS+=("$(trim "$conns")")
    MODES+=("$(trim "$mode")")
    TSETS+=("$(trim "$tset")")
    REFS+=("$(trim "$ref")")
done
RUN_IDLE=""
if ((IDLE_CONNS > 0)) && [[ -z $ONLY || $IDLE_NAME =~ $ONLY ]]; then RUN_IDLE=1; fi
((${#NAMES[@]} > 0)) || [[ -n $RUN_IDLE ]] || die "no scenario matches ONLY='$ONLY'"

# Server instances ("tine|SETTINGS" or "nginx|-"), each started once: tine's first, then the
# references.
INSTANCES=()
add_instance() {
    local key
    for key in "${INSTANCES[@]}"; do [[ $key == "$1" ]] && return 0; done
    INSTANCES+=("$1")
}
ref_instance() { # the instance a scenario's reference runs on, or nothing for a ceiling
    case ${REFS[$1]} in
        nginx) printf 'nginx|-' ;;
        tine:*) printf 'tine|%s' "${REFS[$1]#tine:}" ;;
    esac
}
for i in "${!NAMES[@]}"; do add_instance "tine|${TSETS[i]}"; done
for i in "${!NAMES[@]}"; do
    key=$(ref_instance "$i")
    [[ -n $key ]] && add_instance "$key"
done

instance_label() {
    local kind=${1%%|*} settings=${1#*|} item out
    [[ $kind == nginx ]] && {
        printf 'nginx'
        return
    }
    out=tine
    if [[ $settings != "-" ]]; then
        for item in $settings; do
            [[ $item == *@DOCROOT@* ]] && continue
            item=${item#server.}
            out+=" ${item#app.}"
        done
    fi
    printf '%s' "$out"
}

# Skip scenarios whose tine config tine does not accept (yet).
declare -A SKIP_REASON
n=0
for key in "${INSTANCES[@]}"; do
    [[ $key == tine\|* ]] || continue
    n=$((n + 1))
    mkdir -p "$TMP/check-$n"
    write_tine_config "$TMP/check-$n/tine.toml" "${key#tine|}"
    if ! out=$("$TINE" --check-config -c "$TMP/check-$n/tine.toml" 2>&1); then
        SKIP_REASON[$key]=$(printf '%s' "$out" | grep -v 'problems in the config' | sed "s|$TMP/check-$n/||" |
            tr '\n' ';' | sed 's/;$//; s/;/; /g' | tr -s ' ')
    fi
done
SKIPPED=()
for i in "${!NAMES[@]}"; do
    for key in "tine|${TSETS[i]}" "$(ref_instance "$i")"; do
        if [[ -n $key && -n ${SKIP_REASON[$key]:-} ]]; then
            SKIPPED[i]="tine --check-config refuses its config: ${SKIP_REASON[$key]}"
            log "skipping ${NAMES[i]}: ${SKIPPED[i]}"
            break
        fi
    done
done

: >"$TMP/rows.tsv"
: >"$TMP/mem.tsv"
: >"$TMP/balance.tsv"
: >"$TMP/idle.tsv"
port_busy && die "something already answers on 127.0.0.1:$PORT; set PORT to a free port"

n=0
for key in "${INSTANCES[@]}"; do
    n=$((n + 1))
    uses=()
    for i in "${!NAMES[@]}"; do
        [[ -n ${SKIPPED[i]:-} ]] && continue
        if [[ "tine|${TSETS[i]}" == "$key" || $(ref_instance "$i") == "$key" ]]; then
            uses+=("$i")
        fi
    done
    ((${#uses[@]} > 0)) || continue
    label=$(instance_label "$key")
    dir="$TMP/server-$n"
    log "starting $label"
    port_busy && die "127.0.0.1:$PORT is still taken before starting $label"
    if [[ $key == nginx\|* ]]; then
        start_nginx "$dir" || die "nginx did not answer within ${START_TIMEOUT}s; its log: $(cat "$dir/server.log" "$dir/logs/error.log" 2>/dev/null)"
    else
        start_tine "$dir" "${key#tine|}" || die "tine did not answer within ${START_TIMEOUT}s; its log: $(cat "$dir/server.log")"
    fi
    sleep 0.5
    read -r rss_idle pss_idle procs < <(mem_mib "$SERVER_PID")
    for i in "${uses[@]}"; do
        if [[ "tine|${TSETS[i]}" == "$key" ]]; then
            run_wrk "$i" "$label" 0 tine "${REFS[i]}"
        else
            run_wrk "$i" "$label" 1 ref "${REFS[i]}"
        fi
        [[ ${NAMES[i]} == "$BALANCE_AFTER" ]] && balance "$label"
    done
    sleep 0.5
    read -r rss_after pss_after _ < <(mem_mib "$SERVER_PID")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$procs" "$rss_idle" "$pss_idle" \
        "$rss_after" "$pss_after" "$READY_MS" "$ANSWER_MS" >>"$TMP/mem.tsv"
    stop_server
done

if [[ -n $RUN_IDLE ]]; then
    mkdir -p "$TMP/check-idle"
    write_tine_config "$TMP/check-idle/tine.toml" "server.max_connections=$IDLE_MAX_CONNECTIONS"
    if out=$("$TINE" --check-config -c "$TMP/check-idle/tine.toml" 2>&1); then
        idle_step tine
    else
        IDLE_SKIPPED="tine --check-config refuses max_connections = $IDLE_MAX_CONNECTIONS: $(printf '%s' "$out" | tr '\n' ' ')"
        log "skipping $IDLE_NAME for tine: $IDLE_SKIPPED"
    fi
    idle_step nginx
fi

# --- the table ---------------------------------------------------------------------------------

sort -t $'\t' -k1,1n -k2,2n "$TMP/rows.tsv" | cut -f3- >"$TMP/rows-sorted.tsv"
mkdir -p "$(dirname "$RESULTS")"
tine_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
meta=(
    "$(machine_note)"
    "$(first_line "$TINE" --version) (git $tine_commit), $(first_line nginx -v | sed 's/^nginx version: //'), $(first_line wrk -v | awk '{print "wrk " $2}')"
    "wrk -t$WRK_THREADS -d${DURATION}s per scenario after ${WARMUP}s of warm-up; load generator and servers share the machine"
)
if [[ -n $RUN_IDLE ]]; then
    meta+=("$IDLE_NAME: $IDLE_CONNS idle keep-alive connections (one GET / answered on each) held open during a ${IDLE_DURATION}s hello-ka-64 run, compared with one just before them (after ${WARMUP}s of warm-up); tine with [server] max_connections = $IDLE_MAX_CONNECTIONS (per worker: the default, 1000, times few workers is too few), nginx with worker_connections and worker_rlimit_nofile raised; keep-alive timeout 75 s for both")
fi
for i in "${!NAMES[@]}"; do
    [[ -n ${SKIPPED[i]:-} ]] && meta+=("skipped ${NAMES[i]}: ${SKIPPED[i]}")
done
[[ -n ${IDLE_SKIPPED:-} ]] && meta+=("skipped $IDLE_NAME for tine: $IDLE_SKIPPED")
meta+=("${IDLE_NOTES[@]}")
echo
"${PROBE[@]}" render "$TMP/rows-sorted.tsv" "$TMP/mem.tsv" "$TMP/balance.tsv" "$TMP/idle.tsv" "$RESULTS" "${meta[@]}"
echo
for i in "${!NAMES[@]}"; do
    [[ -n ${SKIPPED[i]:-} ]] && echo "skipped ${NAMES[i]}: ${SKIPPED[i]}"
done
[[ -n ${IDLE_SKIPPED:-} ]] && echo "skipped $IDLE_NAME for tine: $IDLE_SKIPPED"
echo "written to ${RESULTS#"$ROOT"/}"
