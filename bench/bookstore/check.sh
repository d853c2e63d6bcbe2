#!/usr/bin/env bash
# bench/bookstore/check.sh: checks, cheaply and by hand, that the bookstore bench works: the
# database (setup.sh), the app (app.py) under gunicorn and under tine, and the wrk script.
#
#  1. builds tine (cargo build --release; SKIP_BUILD=1 or TINE=PATH to skip), makes the
#     virtualenv (tests/python/setup-venv, then bench/bookstore/requirements.txt; nothing to
#     do when both are in already);
#  2. starts a small database of its own (CHECK_AUTHORS authors, CHECK_BOOKS books, in
#     target/bookstore-pg-check on port CHECK_PG_PORT), seeded once;
#  3. serves app.py with gunicorn (gthread), then with tine, WORKERS x THREADS each, on
#     127.0.0.1:PORT; asks each the same requests (authors that exist and that don't, pages,
#     bad arguments), then runs wrk with wrk.lua for WRK_SECONDS against it;
#  4. compares status, Content-Type and body of every answer byte for byte between the two
#     servers, checks the answers against the database (each author's books and the sorted
#     union of their genres, the ids of each page, the statuses), and that wrk saw no error;
#  5. stops the servers and the database, each by its pid (also when it fails).
# Prints "bookstore check: N passed, N failed" and exits 1 when anything failed.
#
# Environment:
#   CHECK_AUTHORS=1000 CHECK_BOOKS=10000   the size of the check's database
#   CHECK_PG_PORT=15433    its port (the bench's cluster, target/bookstore-pg, keeps 15432)
#   PORT=18093             where each server listens in turn
#   WORKERS=2 THREADS=4    each server's processes and threads
#   WRK_SECONDS=2          the wrk run against each server (0: none)
#   VENV=target/bench-venv PYTHON=python3    the virtualenv, and the Python it is made with
#   SKIP_BUILD=1, TINE=PATH                  as for the other bench scripts
#   KEEP_TMP=1             keep the temp dir (configs, logs, answers)
# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh" || exit 1 # set -euo pipefail, HERE, ROOT
BENCH_SCRIPT=bench/bookstore/check.sh
BOOK=$HERE/bookstore

AUTHORS=${CHECK_AUTHORS:-1000}
BOOKS=${CHECK_BOOKS:-10000}
PORT=${PORT:-18093}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-4}
WRK_SECONDS=${WRK_SECONDS:-2}
VENV=${VENV:-$ROOT/target/bench-venv}
PYTHON=${PYTHON:-python3}
START_TIMEOUT=60 # seconds a server may take to answer (each worker imports Flask and SQLAlchemy)
STOP_TIMEOUT=10  # seconds between TERM and KILL
require_counts AUTHORS BOOKS PORT WORKERS THREADS
require_seconds WRK_SECONDS
require_tools curl python3 timeout cargo flock
need wrk wrk

# setup.sh's settings for the check's own cluster
export BOOKSTORE_AUTHORS=$AUTHORS BOOKSTORE_BOOKS=$BOOKS
export BOOKSTORE_PG_DIR=$ROOT/target/bookstore-pg-check BOOKSTORE_PG_PORT=${CHECK_PG_PORT:-15433}

SERVER_PID=""
PG_STARTED=""
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tine-bookstore-check.XXXXXX")

# stop_tree: the server by its pid (TERM, KILL after STOP_TIMEOUT), then each of its children
# still running 5 s later, by its own pid
stop_tree() {
    local children=() child deadline
    mapfile -t children < <(pgrep -P "$SERVER_PID" || true)
    stop_server
    deadline=$((SECONDS + 5))
    for child in "${children[@]}"; do
        while kill -0 "$child" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$child" 2>/dev/null; then
            log "child $child outlived the server by 5 s; sending KILL"
            kill -KILL "$child" 2>/dev/null || true
        fi
    done
}

cleanup() {
    local status=$?
    if [[ -n $SERVER_PID ]]; then stop_tree; fi
    if [[ -n $PG_STARTED ]]; then "$BOOK/setup.sh" stop || status=1; fi
    remove_tmp "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tine, the virtualenv, the database ------------------------------------------------------------

find_tine

log "virtualenv $VENV"
"$ROOT/tests/python/setup-venv" "$VENV" "$PYTHON" || die "tests/python/setup-venv $VENV failed"
# The stamp records this list's hash and setup-venv's own stamp, so the list is installed
# again whenever either changes (setup-venv then rebuilds the venv from scratch).
STAMP=$VENV/.tine-bench-bookstore
WANT="$(sha256sum <"$BOOK/requirements.txt" | cut -d' ' -f1) $(cat "$VENV/.tine-requirements")"
if [[ ! -f $STAMP || "$(cat "$STAMP")" != "$WANT" ]]; then
    log "installing bench/bookstore/requirements.txt into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$BOOK/requirements.txt" || die "pip install -r bench/bookstore/requirements.txt failed"
    echo "$WANT" >"$STAMP"
fi

PG_STARTED=1
eval "$("$BOOK/setup.sh" start)" || die "setup.sh start failed"
[[ -n ${BOOKSTORE_DSN:-} && ${BOOKSTORE_PG_PIDS:-} =~ ^[0-9]+$ ]] ||
    die "setup.sh start did not print BOOKSTORE_DSN and BOOKSTORE_PG_PIDS"
export BOOKSTORE_DSN BOOKSTORE_POOL_SIZE=$THREADS

# --- the requests ----------------------------------------------------------------------------------

# path | the status it must answer
REQUESTS=(
    "/author/1 200"
    "/author/$((AUTHORS / 2 + 1)) 200"
    "/author/$AUTHORS 200"
    "/author/$((AUTHORS + 1)) 404"
    "/author/0 404"
    "/author/abc 404"
    "/author 200"
    "/author?limit=20&offset=0 200"
    "/author?limit=100&offset=$((AUTHORS / 2)) 200"
    "/author?limit=7&offset=$((AUTHORS - 3)) 200"
    "/author?offset=$((AUTHORS + 5)) 200"
    "/author?limit=0 400"
    "/author?limit=101 400"
    "/author?limit=abc&offset=-1 400"
)

# ask DIR: each request, its answer in DIR/N: "STATUS CONTENT-TYPE", a newline, the body
ask() {
    local i path status
    mkdir -p "$1"
    for i in "${!REQUESTS[@]}"; do
        read -r path status <<<"${REQUESTS[i]}"
        curl -s --max-time 10 -o "$1/$i.body" -w '%{http_code} %{content_type}\n' \
            "http://127.0.0.1:$PORT$path" >"$1/$i" || echo "curl failed" >"$1/$i"
        cat "$1/$i.body" >>"$1/$i" 2>/dev/null || true
        rm -f "$1/$i.body"
    done
}

# smoke SERVER: a short wrk run with wrk.lua; its BENCH_RESULT line in TMP/SERVER.wrk
smoke() {
    ((WRK_SECONDS > 0)) || return 0
    log "wrk with wrk.lua against $1 for ${WRK_SECONDS}s"
    timeout -k 5 $((WRK_SECONDS + 30)) wrk -t2 -c8 -d"${WRK_SECONDS}s" --timeout 5s \
        -s "$BOOK/wrk.lua" "http://127.0.0.1:$PORT" -- "authors=$AUTHORS" list=30 \
        >"$TMP/$1.wrk.out" 2>&1 || true
    grep '^BENCH_RESULT' "$TMP/$1.wrk.out" >"$TMP/$1.wrk" || echo "BENCH_RESULT missing: $(tail -n 3 "$TMP/$1.wrk.out" | tr '\n' ' ')" >"$TMP/$1.wrk"
    log "   $(cat "$TMP/$1.wrk")"
}

start() { # start SERVER: launches it on PORT, waits until it answers; sets SERVER_PID
    local dir=$TMP/$1
    mkdir -p "$dir"
    port_busy && die "something already answers on 127.0.0.1:$PORT; set PORT to a free port"
    log "starting $1 ($WORKERS workers x $THREADS threads)"
    case $1 in
        gunicorn)
            (cd "$dir" && exec "$VENV/bin/gunicorn" --pythonpath "$BOOK" --worker-class gthread \
                --workers "$WORKERS" --threads "$THREADS" --bind "127.0.0.1:$PORT" \
                --graceful-timeout 5 --log-level warning app:app) >"$dir/server.log" 2>&1 &
            ;;
        tine)
            cat >"$dir/tine.toml" <<EOF
# generated by $BENCH_SCRIPT
[server]
bind = "127.0.0.1:$PORT"
workers = $WORKERS
threads = $THREADS
graceful_timeout = "5s"

[log]
level = "warn"
access_log = ""

[app]
handler = "python"
app = "app:app"
pythonpath = ["$BOOK"]
virtualenv = "$VENV"
EOF
            "$TINE" --check-config -c "$dir/tine.toml" >&2 || die "tine refused its config ($dir/tine.toml)"
            (cd "$dir" && exec "$TINE" -c "$dir/tine.toml") >"$dir/server.log" 2>&1 &
            ;;
    esac
    SERVER_PID=$!
    wait_answer "$EPOCHREALTIME" ||
        die "$1 did not answer within ${START_TIMEOUT} s: $(tail -n 5 "$dir/server.log" | tr '\n' ' ')"
}

for server in gunicorn tine; do
    start "$server"
    ask "$TMP/$server/answers"
    smoke "$server"
    stop_tree
done

# --- the verdict -----------------------------------------------------------------------------------

# What the database says of the authors asked for, as JSON: {id: {name, books, genres}}.
DETAIL_IDS="1, $((AUTHORS / 2 + 1)), $AUTHORS"
"$VENV/bin/python" - "$BOOKSTORE_DSN" "$DETAIL_IDS" >"$TMP/facts.json" <<'EOF' || die "reading the database failed"
import json, sys
import psycopg
with psycopg.connect(sys.argv[1]) as conn:
    row = conn.execute(f"""
        SELECT json_object_agg(a.id, json_build_object(
            'name', a.name,
            'books', (SELECT coalesce(json_agg(b.id ORDER BY b.id), '[]')
                      FROM book b WHERE b.author_id = a.id),
            'genres', (SELECT coalesce(json_agg(DISTINCT g.name ORDER BY g.name), '[]')
                       FROM book b JOIN book_genre bg ON bg.book_id = b.id
                       JOIN genre g ON g.id = bg.genre_id WHERE b.author_id = a.id)))
        FROM author a WHERE a.id IN ({sys.argv[2]})""").fetchone()
print(json.dumps(row[0]))
EOF

python3 - "$TMP" "$AUTHORS" "$WRK_SECONDS" "${REQUESTS[@]}" <<'EOF'
import json, os, re, sys

tmp, authors, wrk_seconds, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
facts = json.load(open(os.path.join(tmp, "facts.json")))
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}", file=sys.stderr)


def answer(server, i):
    with open(os.path.join(tmp, server, "answers", str(i)), "rb") as f:
        head, _, body = f.read().partition(b"\n")
    return head.decode(), body


def check_body(path, status, body):
    """What the answer must hold, from the database's facts."""
    data = json.loads(body)
    if status == 404:
        check(data.get("error") == "Not Found", f"{path}: a JSON 404 error, got {data}")
    elif status == 400:
        check(isinstance(data.get("errors"), dict) and data["errors"], f"{path}: the errors, got {data}")
    elif path.startswith("/author/"):
        want = facts[path.rsplit("/", 1)[1]]
        books = data["books"]
        union = sorted({genre for book in books for genre in book["genres"]})
        check(data["name"] == want["name"], f"{path}: name {data['name']!r}, the database has {want['name']!r}")
        check([b["id"] for b in books] == want["books"], f"{path}: its books, by id, are the database's")
        check(data["genres"] == want["genres"] == union, f"{path}: genres {data['genres']} = the database's {want['genres']} = the union of its books' {union}")
        check(all(b["genres"] == sorted(b["genres"]) and b["genres"] for b in books), f"{path}: each book has its genres, sorted")
    else:
        args = dict(re.findall(r"(\w+)=(\d+)", path))
        limit, offset = int(args.get("limit", 20)), int(args.get("offset", 0))
        want = list(range(offset + 1, min(offset + limit, authors) + 1))
        check([a["id"] for a in data] == want, f"{path}: ids {want[:3]}..., got {[a['id'] for a in data][:3]}...")


for i, request in enumerate(requests):
    path, status = request.rsplit(" ", 1)
    status = int(status)
    (g_head, g_body), (t_head, t_body) = answer("gunicorn", i), answer("tine", i)
    check(g_head == f"{status} application/json", f"{path}: gunicorn answered '{g_head}', not '{status} application/json'")
    check((g_head, g_body) == (t_head, t_body), f"{path}: tine's answer differs from gunicorn's:\n  gunicorn {g_head} {g_body[:300]!r}\n  tine     {t_head} {t_body[:300]!r}")
    try:
        check_body(path, status, g_body)
    except (ValueError, KeyError, TypeError) as error:
        check(False, f"{path}: {error!r} in {g_body[:300]!r}")

if wrk_seconds:
    for server in ("gunicorn", "tine"):
        line = open(os.path.join(tmp, f"{server}.wrk")).read()
        counts = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", line))
        errors = {k: counts.get(k) for k in ("connect", "read", "write", "timeout", "status")}
        check(counts.get("requests", 0) > 0 and not any(v != 0 for v in errors.values()),
              f"wrk with wrk.lua against {server}: {line.strip()}")

print(f"bookstore check: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
