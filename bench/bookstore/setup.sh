#!/usr/bin/env bash
# bench/bookstore/setup.sh start|stop|status: the PostgreSQL database of the bookstore app
# (bench/bookstore/app.py), a cluster of its own, on 127.0.0.1 only.
#
#   start   installs Debian's postgresql package when no PostgreSQL server is installed
#           (apt-get update once, then apt-get install; as root only), creates the cluster in
#           BOOKSTORE_PG_DIR/data when there is none (initdb; as root, it runs as the `postgres`
#           user, since PostgreSQL refuses to run as root), starts it unless it runs already,
#           and seeds the database unless it holds the same data already (same sizes, same
#           seed version): BOOKSTORE_AUTHORS authors, BOOKSTORE_BOOKS books, each book by one
#           author in one to three of 36 genres (tables author, book, genre, book_genre).
#           Then prints on stdout exactly two lines, for `eval`:
#               export BOOKSTORE_DSN=postgresql://bookstore@127.0.0.1:PORT/bookstore
#               export BOOKSTORE_PG_PIDS="POSTMASTER_PID"
#           (the postmaster is the parent of every PostgreSQL process of the cluster).
#   stop    stops the cluster by its postmaster's pid (pg_ctl stop -m fast, bounded; KILL of
#           the postmaster if it is still there after BOOKSTORE_PG_STOP_TIMEOUT seconds).
#   status  when the cluster runs: the same two lines as start on stdout, exit 0; else exit 3.
# Everything else (progress, PostgreSQL's own messages) goes to stderr; the server's log is
# BOOKSTORE_PG_DIR/postgres.log. Seeding the full size takes well under a minute on one core.
#
# Environment:
#   BOOKSTORE_AUTHORS=100000       authors to seed (ids 1..N, no gaps)
#   BOOKSTORE_BOOKS=1000000        books to seed (their authors drawn at random: ~N/authors each)
#   BOOKSTORE_PG_DIR=target/bookstore-pg
#                                  the cluster's directory (a relative one is taken from the
#                                  repository's root); another one holds another cluster
#   BOOKSTORE_PG_PORT=15432        the TCP port on 127.0.0.1 (no unix socket is made)
#   BOOKSTORE_PG_BIN=DIR           the PostgreSQL programs (default: the newest
#                                  /usr/lib/postgresql/*/bin)
#   BOOKSTORE_PG_START_TIMEOUT=60  seconds the server may take to start
#   BOOKSTORE_PG_STOP_TIMEOUT=30   seconds it may take to stop
# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh" || exit 1 # set -euo pipefail, log, die
BENCH_SCRIPT=bench/bookstore/setup.sh

# The version of the seeding below: a database seeded by another version is seeded again.
SEED_VERSION=1
DB=bookstore
DB_USER=bookstore
SUPERUSER=postgres

AUTHORS=${BOOKSTORE_AUTHORS:-100000}
BOOKS=${BOOKSTORE_BOOKS:-1000000}
PG_DIR=${BOOKSTORE_PG_DIR:-target/bookstore-pg}
[[ $PG_DIR == /* ]] || PG_DIR=$ROOT/$PG_DIR
PG_PORT=${BOOKSTORE_PG_PORT:-15432}
START_TIMEOUT=${BOOKSTORE_PG_START_TIMEOUT:-60}
STOP_TIMEOUT=${BOOKSTORE_PG_STOP_TIMEOUT:-30}
DATA=$PG_DIR/data
require_counts AUTHORS BOOKS PG_PORT START_TIMEOUT STOP_TIMEOUT
((PG_PORT < 65536)) || die "BOOKSTORE_PG_PORT must be below 65536, got $PG_PORT"

usage() {
    echo "usage: $BENCH_SCRIPT start|stop|status" >&2
    exit 2
}

# --- PostgreSQL's programs, and who runs them ----------------------------------------------------

pg_bindir() { # the newest installed server's bin directory, or nothing
    local dir
    if [[ -n ${BOOKSTORE_PG_BIN:-} ]]; then
        echo "$BOOKSTORE_PG_BIN"
        return
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x $dir/initdb && -x $dir/postgres ]]; then
            echo "$dir"
            return
        fi
    done
}

# install_postgresql: Debian's postgresql package, without the `main` cluster its installation
# would otherwise create and start on port 5432 (a server nobody here stops)
install_postgresql() {
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed: run 'sudo apt-get install postgresql', or run this as root"
    export DEBIAN_FRONTEND=noninteractive
    log "installing Debian's postgresql package"
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q postgresql-common >&2 || die "apt-get install postgresql-common failed"
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false # $BENCH_SCRIPT: no default cluster" \
        >/etc/postgresql-common/createcluster.d/tine-bench-no-main.conf
    apt-get install -y -q postgresql >&2 || die "apt-get install postgresql failed"
}

BIN=$(pg_bindir)
if [[ -z $BIN && ${1:-} == start ]]; then
    install_postgresql
    BIN=$(pg_bindir)
fi

# as_pg COMMAND...: runs a PostgreSQL program as the cluster's owner, in PG_DIR: the `postgres`
# user when we are root (the server refuses to run as root), else ourselves; without the lock's
# file descriptor, which a server it starts would otherwise hold for as long as it runs
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd "$PG_DIR" && exec 9>&- && runuser -u postgres -- "$@")
    else
        (cd "$PG_DIR" && exec 9>&- && "$@")
    fi
}

# sql [PSQL OPTION...]: psql on the bookstore database as the superuser, stopping at the first
# error, quiet; reads SQL from stdin unless -c is given
sql() {
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$SUPERUSER" -d "$DB" "$@"
}

postmaster_pid() { # the running postmaster's pid, or nothing
    local pid
    [[ -f $DATA/postmaster.pid ]] || return 0
    pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
    return 0
}

print_exports() { # the two lines of the contract, on stdout
    echo "export BOOKSTORE_DSN=postgresql://$DB_USER@127.0.0.1:$PG_PORT/$DB"
    echo "export BOOKSTORE_PG_PIDS=\"$1\""
}

# --- the cluster ----------------------------------------------------------------------------------

# write_config: the settings of this cluster, rewritten at every start (included by
# postgresql.conf): loopback TCP only, enough connections for every server thread of the bench
# grid, the whole database in shared buffers, UTC, and no WAL for the tables seeding creates
write_config() {
    cat >"$DATA/bench.conf" <<EOF
# written by $BENCH_SCRIPT at every start; edits are lost
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 300
shared_buffers = 512MB
dynamic_shared_memory_type = mmap
timezone = 'UTC'
log_timezone = 'UTC'
wal_level = minimal
max_wal_senders = 0
max_wal_size = 4GB
synchronous_commit = off
maintenance_work_mem = 256MB
logging_collector = off
log_min_messages = warning
EOF
    [[ $(id -u) -ne 0 ]] || chown postgres: "$DATA/bench.conf"
}

init_cluster() {
    log "creating a PostgreSQL cluster in $DATA"
    if [[ $(id -u) -eq 0 ]]; then
        getent passwd postgres >/dev/null || die "there is no 'postgres' user to run PostgreSQL as"
        chown postgres: "$PG_DIR"
    fi
    as_pg test -w "$PG_DIR" ||
        die "the cluster's owner cannot write $PG_DIR: is a directory above it closed to others? Set BOOKSTORE_PG_DIR to one it can reach"
    as_pg "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --auth=trust --encoding=UTF8 --locale=C \
        --no-sync --no-instructions >"$PG_DIR/initdb.log" 2>&1 ||
        die "initdb failed: $(tail -n 5 "$PG_DIR/initdb.log" | tr '\n' ' ')"
    echo "include 'bench.conf'" >>"$DATA/postgresql.conf"
}

start_cluster() {
    local pid version
    if [[ ! -f $DATA/PG_VERSION ]]; then
        [[ ! -e $DATA ]] || die "$DATA exists but holds no cluster; remove it"
        init_cluster
    fi
    version=$("$BIN/postgres" --version | grep -o '[0-9]\+' | head -n 1)
    [[ $(cat "$DATA/PG_VERSION") == "$version" ]] ||
        die "$DATA holds a PostgreSQL $(cat "$DATA/PG_VERSION") cluster but $BIN is PostgreSQL $version: remove $PG_DIR"
    pid=$(postmaster_pid)
    if [[ -n $pid ]]; then
        log "PostgreSQL runs already (postmaster $pid)"
    else
        write_config
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: ${PG_DIR#"$ROOT"/}/postgres.log)"
        as_pg "$BIN/pg_ctl" start -D "$DATA" -l "$PG_DIR/postgres.log" -w -t "$START_TIMEOUT" >&2 ||
            die "PostgreSQL did not start: $(tail -n 5 "$PG_DIR/postgres.log" 2>/dev/null | tr '\n' ' ')"
    fi
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t "$START_TIMEOUT" ||
        die "PostgreSQL (postmaster $(postmaster_pid)) does not answer on 127.0.0.1:$PG_PORT; was it started with another BOOKSTORE_PG_PORT? Stop it first"
}

stop_cluster() {
    local pid deadline
    pid=$(postmaster_pid)
    if [[ -z $pid ]]; then
        log "PostgreSQL in $DATA is not running"
        return 0
    fi
    log "stopping PostgreSQL (postmaster $pid)"
    as_pg "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t "$STOP_TIMEOUT" >&2 || true
    deadline=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "the postmaster (pid $pid) is still running; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# --- the data -------------------------------------------------------------------------------------

seeded_as() { # what the database holds: "AUTHORS BOOKS SEED_VERSION", or nothing
    sql -tA -c "SELECT authors || ' ' || books || ' ' || seed_version FROM bench_meta" 2>/dev/null || true
}

create_database() {
    local exists
    exists=$("$BIN/psql" -X -tA -h 127.0.0.1 -p "$PG_PORT" -U "$SUPERUSER" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") || die "cannot connect to PostgreSQL"
    [[ $exists == 1 ]] && return 0
    log "creating the database $DB, owned by $DB_USER"
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$SUPERUSER" -d postgres >&2 <<EOF ||
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE $DB_USER LOGIN;
    END IF;
END \$\$;
CREATE DATABASE $DB OWNER $DB_USER;
EOF
        die "creating the database failed"
}

# seed: drops the tables and fills them anew, in one transaction (the tables are created in it,
# so with wal_level = minimal their rows skip the WAL), then vacuums and analyzes them. The
# random choices come from setseed, so the same sizes give the same rows.
seed() {
    local started=$SECONDS
    log "seeding $AUTHORS authors and $BOOKS books"
    sql -1 -f - -v authors="$AUTHORS" -v books="$BOOKS" -v seed_version="$SEED_VERSION" >&2 <<'EOF' ||
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_meta, book_genre, book, genre, author CASCADE;
SET ROLE bookstore;
SELECT setseed(0.16) \g /dev/null

CREATE TABLE genre (
    id integer PRIMARY KEY,
    name text NOT NULL UNIQUE
);
INSERT INTO genre (id, name)
SELECT i, name FROM unnest(ARRAY[
    'Literary Fiction', 'Existential Fiction', 'Beatnik Poetry', 'Science Fiction', 'Fantasy',
    'Historical Fiction', 'Crime', 'Mystery', 'Thriller', 'Romance', 'Horror', 'Gothic',
    'Westerns', 'Satire', 'Short Stories', 'Poetry', 'Drama', 'Graphic Novels', 'Young Adult',
    'Children''s', 'Biography', 'Memoir', 'Essays', 'Travel', 'Nature Writing', 'True Crime',
    'History', 'Philosophy', 'Politics', 'Economics', 'Popular Science', 'Religion', 'Art',
    'Music', 'Cookery', 'Self-Help'
]) WITH ORDINALITY AS g(name, i);

CREATE TABLE author (
    id integer NOT NULL,
    name text NOT NULL,
    country_code character(2) NOT NULL,
    email text NOT NULL,
    phone text NOT NULL,
    contact_address text NOT NULL,
    contract_started timestamp with time zone NOT NULL,
    contract_finished timestamp with time zone,
    contract_value integer NOT NULL
);
WITH words AS (
    SELECT
        ARRAY['James', 'Mary', 'Olga', 'Hiroshi', 'Amara', 'Lucas', 'Sofia', 'Chen', 'Fatima',
              'Mateo', 'Ingrid', 'Kwame', 'Priya', 'Liam', 'Elena', 'Tomasz', 'Aiko', 'Omar',
              'Grace', 'Pablo', 'Nadia', 'Erik', 'Leila', 'Samuel', 'Yuki', 'Carmen', 'Ahmed',
              'Clara', 'Dmitri', 'Zoe', 'Rafael', 'Anya', 'Felix', 'Mei', 'Jonas', 'Isabel',
              'Tariq', 'Hannah', 'Marco', 'Sade'] AS firsts,
        ARRAY['Smith', 'Okafor', 'Tanaka', 'Novak', 'Garcia', 'Müller', 'Rossi', 'Kowalski',
              'Haddad', 'Nguyen', 'Johansson', 'Silva', 'Ivanova', 'Dubois', 'Mensah', 'Kim',
              'Patel', 'O''Brien', 'Fischer', 'Moreau', 'Costa', 'Yilmaz', 'Lindqvist', 'Sato',
              'Andersen', 'Romero', 'Petrov', 'Walker', 'Nakamura', 'Ferreira', 'Baptiste',
              'Horvat', 'Chowdhury', 'Jensen', 'Abiodun', 'Moretti', 'Larsen', 'Castillo',
              'Wright', 'Virtanen', 'Hughes', 'Bianchi', 'Rahman', 'Kovacs', 'Eriksen'] AS lasts,
        ARRAY['GB', 'US', 'FR', 'DE', 'IT', 'ES', 'PT', 'NL', 'SE', 'NO', 'PL', 'JP', 'KR',
              'IN', 'NG', 'GH', 'KE', 'BR', 'AR', 'MX', 'CA', 'AU', 'IE', 'FI'] AS countries,
        ARRAY[44, 1, 33, 49, 39, 34, 351, 31, 46, 47, 48, 81, 82, 91, 234, 233, 254, 55, 54,
              52, 1, 61, 353, 358] AS dial_codes,
        ARRAY['High Street', 'Station Road', 'Rue de la Paix', 'Hauptstraße', 'Via Roma',
              'Calle Mayor', 'Main Street', 'Church Lane', 'Mill Road', 'Park Avenue',
              'Kings Road', 'Harbour View', 'Elm Grove', 'Market Square'] AS streets,
        ARRAY['London', 'New York', 'Paris', 'Berlin', 'Milan', 'Madrid', 'Lisbon', 'Utrecht',
              'Uppsala', 'Bergen', 'Kraków', 'Osaka', 'Busan', 'Pune', 'Lagos', 'Accra',
              'Nairobi', 'Recife', 'Rosario', 'Puebla', 'Halifax', 'Perth', 'Cork',
              'Tampere'] AS cities
), drawn AS (
    SELECT i,
           firsts[1 + floor(random() * array_length(firsts, 1))::int] AS first,
           lasts[1 + floor(random() * array_length(lasts, 1))::int] AS last,
           1 + floor(random() * array_length(countries, 1))::int AS place,
           streets[1 + floor(random() * array_length(streets, 1))::int] AS street,
           timestamptz '2000-01-01 00:00:00+00' + floor(random() * 8000) * interval '1 day' AS started,
           random() AS r
    FROM words, generate_series(1, :authors) AS i
)
INSERT INTO author
SELECT i,
       first || ' ' || last,
       countries[place],
       lower(translate(first || '.' || last, 'üöóßñ''', 'uoosn')) || i || '@example.org',
       '+' || dial_codes[place] || ' ' || (20 + i % 80) || ' ' || lpad(((i::bigint * 7919 + 4271) % 9973)::text, 4, '0') ||
           ' ' || lpad(((i::bigint * 104729 + 17) % 9967)::text, 4, '0'),
       (1 + i % 240) || ' ' || street || ', ' || cities[place],
       started,
       CASE WHEN r < 0.3 THEN NULL ELSE started + floor(365 + r * 3000) * interval '1 day' END,
       1000 * (1 + floor(r * 500)::int)
FROM drawn, words;

CREATE TABLE book (
    id integer NOT NULL,
    author_id integer NOT NULL,
    title text NOT NULL,
    isbn text NOT NULL,
    published date NOT NULL,
    pages integer NOT NULL
);
WITH words AS (
    SELECT
        ARRAY['Silent', 'Last', 'Golden', 'Broken', 'Hidden', 'Long', 'Burning', 'Quiet',
              'Forgotten', 'Crimson', 'Distant', 'Winter', 'Wandering', 'Iron', 'Glass',
              'Second', 'Lost', 'Bright', 'Hollow', 'Secret'] AS adjectives,
        ARRAY['River', 'House', 'Garden', 'Empire', 'Night', 'Harbour', 'Mountain', 'Letter',
              'Kingdom', 'Station', 'Orchard', 'Mirror', 'Island', 'Season', 'Road', 'Library',
              'Storm', 'Machine', 'Summer', 'Crown', 'Shore', 'Window', 'Forest',
              'Archive'] AS nouns,
        ARRAY['Memory', 'Time', 'Salt', 'Ashes', 'Light', 'the North', 'Strangers', 'Rain',
              'the Sea', 'Small Things', 'Dust', 'Exile'] AS abstracts
), drawn AS (
    SELECT i,
           1 + floor(random() * :authors)::int AS author_id,
           floor(random() * 4)::int AS pattern,
           adjectives[1 + floor(random() * array_length(adjectives, 1))::int] AS adjective,
           nouns[1 + floor(random() * array_length(nouns, 1))::int] AS noun,
           abstracts[1 + floor(random() * array_length(abstracts, 1))::int] AS abstract,
           random() AS r
    FROM words, generate_series(1, :books) AS i
)
INSERT INTO book
SELECT i,
       author_id,
       CASE pattern
           WHEN 0 THEN 'The ' || adjective || ' ' || noun
           WHEN 1 THEN 'A ' || noun || ' of ' || abstract
           WHEN 2 THEN adjective || ' ' || noun || 's'
           ELSE 'The ' || noun || ' and the ' || adjective || ' ' || abstract
       END,
       '978-' || (i % 10) || '-' || lpad((i::bigint * 104729 % 1000000)::text, 6, '0') || '-' ||
           lpad((i % 100)::text, 2, '0') || '-' || (i * 7 % 10),
       date '1950-01-01' + floor(r * 27000)::int,
       48 + floor(r * r * 900)::int
FROM drawn;

-- One to three distinct genres a book; some genres are far more popular than others.
CREATE TABLE book_genre (
    book_id integer NOT NULL,
    genre_id integer NOT NULL
);
WITH drawn AS (
    SELECT id, 1 + id % 3 AS n,
           floor(36 * random() * random())::int AS first,
           1 + floor(random() * 17)::int AS step
    FROM book
)
INSERT INTO book_genre
SELECT id, 1 + (first + k * step) % 36
FROM drawn, generate_series(0, 2) AS k
WHERE k < n;

ALTER TABLE author ADD PRIMARY KEY (id);
ALTER TABLE book ADD PRIMARY KEY (id);
ALTER TABLE book_genre ADD PRIMARY KEY (book_id, genre_id);
CREATE INDEX book_author_id ON book (author_id);
CREATE INDEX book_genre_genre_id ON book_genre (genre_id);
ALTER TABLE book ADD FOREIGN KEY (author_id) REFERENCES author (id);
ALTER TABLE book_genre ADD FOREIGN KEY (book_id) REFERENCES book (id);
ALTER TABLE book_genre ADD FOREIGN KEY (genre_id) REFERENCES genre (id);

CREATE TABLE bench_meta (authors integer NOT NULL, books integer NOT NULL, seed_version integer NOT NULL);
INSERT INTO bench_meta VALUES (:authors, :books, :seed_version);
EOF
        die "seeding failed"
    sql -c "VACUUM (ANALYZE) author, book, genre, book_genre" >&2 || die "VACUUM ANALYZE failed"
    log "seeded in $((SECONDS - started)) s"
}

# --- the commands ---------------------------------------------------------------------------------

case ${1:-} in
    start)
        (($# == 1)) || usage
        [[ -n $BIN ]] || die "no PostgreSQL server found in /usr/lib/postgresql/*/bin even after installing it"
        mkdir -p "$PG_DIR"
        # One start, stop or seeding at a time per cluster.
        exec 9>"$PG_DIR/.lock"
        flock -w 600 9 || die "another $BENCH_SCRIPT holds $PG_DIR/.lock"
        start_cluster
        create_database
        if [[ $(seeded_as) == "$AUTHORS $BOOKS $SEED_VERSION" ]]; then
            log "the database holds $AUTHORS authors and $BOOKS books already"
        else
            seed
        fi
        print_exports "$(postmaster_pid)"
        ;;
    stop)
        (($# == 1)) || usage
        [[ -d $PG_DIR ]] || exit 0
        [[ -n $BIN ]] || die "no PostgreSQL server found in /usr/lib/postgresql/*/bin"
        exec 9>"$PG_DIR/.lock"
        flock -w 600 9 || die "another $BENCH_SCRIPT holds $PG_DIR/.lock"
        stop_cluster
        ;;
    status)
        (($# == 1)) || usage
        pid=$(postmaster_pid)
        if [[ -z $pid ]]; then
            log "PostgreSQL in $DATA is not running"
            exit 3
        fi
        log "PostgreSQL runs (postmaster $pid); the database holds: $(seeded_as) (authors books seed-version)"
        print_exports "$pid"
        ;;
    *) usage ;;
esac
