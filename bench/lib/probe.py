#!/usr/bin/env python3
"""Helpers for bench/run.sh, bench/memory.sh and bench/asgi.sh: /proc accounting, sd_notify readiness,
per-worker balance, a warm-up client, and the result tables. Standard library only.

Subcommands (each prints one line, or a table, to stdout):

  snap MASTER_PID             JSON snapshot: CPU ticks and context switches of the master and
                              each live child (all threads), plus the master's reaped children.
  delta BEFORE.json AFTER.json
                              "CPU_SECONDS CTX_SWITCHES WORKER_CPU_CSV" between two snapshots.
  mem MASTER_PID              "RSS_KIB PSS_KIB PROCESSES" of the master plus its children.
  pss MASTER_PID              "MASTER_PSS_KIB TOTAL_PSS_KIB WORKERS MIN_WORKER_PSS_KIB
                              MAX_WORKER_PSS_KIB" of the master and its children.
  workers MASTER_PID          "PID:START_TIME" of each live child of the master, a line each.
  ticks PID...                CPU seconds (user + system) used so far by each PID's process tree:
                              its live processes, and those reaped (their parents' cutime and
                              cstime); take it before and after a run and subtract.
  same PID:START_TIME...      the PIDs that are still the process started at START_TIME.
  notify SOCKET TIMEOUT_S     binds a unix datagram socket at SOCKET, waits for a datagram with
                              READY=1 and prints the wall-clock time it arrived (epoch seconds);
                              exits 1 on timeout.
  balance URL N CONC MASTER_PID
                              N GET requests, each on a new connection, CONC at a time; the body
                              is the answering worker's pid. Prints "REQUESTS WORKERS MIN MAX
                              ERRORS COUNTS" where MIN/MAX count every live child of the master,
                              including those that answered nothing.
  warm BASE_URL N CONC PATH...
                              N GET requests to BASE_URL+PATH, the paths in turn, each on a new
                              connection, CONC at a time. Prints "OK ERRORS STATUS:COUNT,..."
                              (an answer with status 400 or above is an error).
  backlog PORT DELAY_S SECONDS
                              after DELAY_S, samples every 0.25 s for SECONDS the accept queue of
                              the TCP listener(s) on PORT (connections the kernel completed but no
                              worker has accepted yet, from /proc/net/tcp and tcp6) and prints the
                              median sample; - when there is no such listener.
  idle HOST PORT N OPEN_TIMEOUT_S HOLD_TIMEOUT_S
                              opens N keep-alive connections, each sending one GET / and reading
                              its response, at most 256 under way at once, and holds them idle.
                              Prints "HELD held=H failed=F open_s=S errors=WHY:COUNT,..." once
                              they are open (or OPEN_TIMEOUT_S has passed), then waits for
                              SIGUSR1 (at most HOLD_TIMEOUT_S), checks which of the held ones the
                              server has closed (or sent anything on), prints "CHECK open=O
                              dropped=D waited=signal|timeout", closes them all and exits.
  render ROWS.tsv MEM.tsv BALANCE.tsv IDLE.tsv MARKDOWN_OUT
                              prints the result tables and writes them as Markdown.
  memory-render ROWS.tsv MARKDOWN_OUT [NOTE...]
                              bench/memory.sh's table, printed and written as Markdown, and
                              the memory by kind of mapping (breakdown.tsv beside ROWS.tsv,
                              bench/lib/smaps.py's lines) when there is any.
  asgi-render ROWS.tsv MARKDOWN_OUT [NOTE...]
                              bench/asgi.sh's tables (each server's numbers, then tine's ratio
                              to each peer), printed and written as Markdown.
  wsgi-render ROWS.tsv MARKDOWN_OUT [NOTE...]
                              bench/wsgi.sh's tables: asgi-render's, with each connection's
                              share of the responses and the database's CPU where measured,
                              then the memory of each server idle and after its runs (from
                              memory.tsv beside ROWS.tsv), and the memory by kind of mapping
                              (breakdown.tsv beside it, bench/lib/smaps.py's lines).
  grid-render GRID.tsv OUT_DIR [NOTE...]
                              bench/wsgi.sh's grid (tine over workers x threads): writes
                              OUT_DIR/wsgi-grid.tsv, .md and, when matplotlib imports, .png.
  ws-render ROWS.tsv MARKDOWN_OUT [NOTE...]
                              bench/websocket.sh's tables (echo runs, idle sockets, then tine's
                              ratio to each peer), printed and written as Markdown.
"""

import errno
import json
import os
import resource
import select
import selectors
import signal
import socket
import sys
import threading
import time
import http.client
from urllib.parse import urlsplit

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (which may hold spaces or parens)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()


def children(pid):
    """Live children of pid, found by scanning /proc (works without CONFIG_PROC_CHILDREN)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = stat_fields(name)
        except (OSError, ValueError):
            continue
        # fields[0] is the state, fields[1] the parent pid; a zombie holds no resources.
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(name))
    return sorted(found)


def ctx_switches(pid):
    """Voluntary plus involuntary context switches over every thread of pid."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def tree(pid):
    """pid and all its live descendants."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents.setdefault(int(stat_fields(name)[1]), []).append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [int(pid)]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def cmd_ticks(*pids):
    total = 0
    for root in pids:
        for pid in tree(root):
            try:
                # utime, stime, cutime, cstime: what it used, and what its reaped children did.
                total += sum(int(x) for x in stat_fields(pid)[11:15])
            except (OSError, ValueError):
                continue
    print(f"{total / CLK_TCK:.2f}")


def cmd_snap(master):
    fields = stat_fields(master)
    # utime, stime, cutime, cstime are fields 14..17 of stat, i.e. 11..14 after the name.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    procs = {str(master): {"ticks": utime + stime, "ctx": ctx_switches(master), "role": "master"}}
    for child in children(master):
        try:
            f = stat_fields(child)
        except OSError:
            continue
        procs[str(child)] = {
            "ticks": int(f[11]) + int(f[12]),
            "ctx": ctx_switches(child),
            "role": "worker",
        }
    print(json.dumps({"master": master, "reaped_ticks": cutime + cstime, "procs": procs}))


def cmd_delta(before_path, after_path):
    with open(before_path) as f:
        before = json.load(f)
    with open(after_path) as f:
        after = json.load(f)
    ticks = after["reaped_ticks"] - before["reaped_ticks"]
    ctx = 0
    workers = []
    for pid, now in after["procs"].items():
        then = before["procs"].get(pid, {"ticks": 0, "ctx": 0})
        ticks += now["ticks"] - then["ticks"]
        ctx += now["ctx"] - then["ctx"]
        if now["role"] == "worker":
            workers.append((now["ticks"] - then["ticks"]) / CLK_TCK)
    # A worker that exited during the run: its ticks before the run are in reaped_ticks now.
    for pid, then in before["procs"].items():
        if pid not in after["procs"]:
            ticks -= then["ticks"]
    csv = ",".join(f"{w:.2f}" for w in sorted(workers)) or "-"
    print(f"{ticks / CLK_TCK:.2f} {ctx} {csv}")


def rollup(pid):
    """(RSS_KIB, PSS_KIB) of pid from /proc/PID/smaps_rollup, or None when it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    except OSError:
        return None
    return rss, pss


def cmd_mem(master):
    rss = pss = count = 0
    for pid in [master] + children(master):
        got = rollup(pid)
        if got is None:
            continue
        rss += got[0]
        pss += got[1]
        count += 1
    print(f"{rss} {pss} {count}")


def cmd_pss(master):
    got = rollup(master)
    if got is None:
        sys.exit(f"probe.py pss: process {master} is gone")
    workers = [w[1] for w in map(rollup, children(master)) if w is not None]
    low, high = (min(workers), max(workers)) if workers else ("-", "-")
    print(f"{got[1]} {got[1] + sum(workers)} {len(workers)} {low} {high}")


def start_time(pid):
    """The start time of pid (clock ticks after boot), which tells it from a later process given
    the same pid; None when it is gone."""
    try:
        return stat_fields(pid)[19]
    except (OSError, ValueError, IndexError):
        return None


def cmd_workers(master):
    for pid in children(master):
        since = start_time(pid)
        if since is not None:
            print(f"{pid}:{since}")


def cmd_same(*entries):
    for entry in entries:
        pid, _, since = entry.partition(":")
        if start_time(pid) == since:
            print(pid)


def cmd_notify(path, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock.bind(path)
    deadline = time.monotonic() + float(timeout)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit(1)
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            sys.exit(1)
        arrived = time.time()
        if b"READY=1" in data.split(b"\n"):
            print(f"{arrived:.6f}")
            return


def fire(urls, n, conc, judge):
    """n GET requests to urls in turn, each on a new connection, conc at a time. judge(status,
    body) names what a good response counts under, or returns None for a bad one. Returns the
    counts by name and the number of bad responses and failed requests."""
    counts = {}
    errors = 0
    lock = threading.Lock()
    next_index = [0]

    def client():
        nonlocal errors
        while True:
            with lock:
                if next_index[0] >= n:
                    return
                parts = urlsplit(urls[next_index[0] % len(urls)])
                next_index[0] += 1
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            try:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
                conn.request("GET", target, headers={"Connection": "close"})
                response = conn.getresponse()
                key = judge(response.status, response.read())
                conn.close()
            except (OSError, http.client.HTTPException):
                key = None
            with lock:
                if key is not None:
                    counts[key] = counts.get(key, 0) + 1
                else:
                    errors += 1

    threads = [threading.Thread(target=client) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts, errors


def pid_body(status, body):
    """The answering worker's pid, from a /pid response's body."""
    try:
        text = body.decode().strip()
    except UnicodeDecodeError:
        return None
    return text if status == 200 and text.isdigit() else None


def cmd_balance(url, n, conc, master):
    counts, errors = fire([url], int(n), int(conc), pid_body)
    workers = [str(p) for p in children(master)] or list(counts)
    per_worker = [counts.get(w, 0) for w in workers]
    detail = ",".join(str(c) for c in sorted(per_worker, reverse=True))
    print(f"{sum(counts.values())} {len(workers)} {min(per_worker)} {max(per_worker)} {errors} {detail}")


def cmd_warm(base, n, conc, *paths):
    urls = [base + p for p in paths]
    counts, errors = fire(urls, int(n), int(conc), lambda status, body: status if status < 400 else None)
    detail = ",".join(f"{k}:{v}" for k, v in sorted(counts.items())) or "-"
    print(f"{sum(counts.values())} {errors} {detail}")


def accept_queue(port):
    """Connections waiting in the accept queue of the listener(s) on port, or None."""
    total = None
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # local_address is ADDR:PORT in hex; st 0A is LISTEN; for a listener the
                    # rx_queue half of tx_queue:rx_queue is its accept queue's length.
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        total = (total or 0) + int(fields[4].split(":")[1], 16)
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return total


def cmd_backlog(port, delay, seconds):
    port = int(port)
    time.sleep(float(delay))
    samples = []
    end = time.monotonic() + float(seconds)
    while True:
        queued = accept_queue(port)
        if queued is not None:
            samples.append(queued)
        if time.monotonic() >= end:
            break
        time.sleep(0.25)
    samples.sort()
    print(samples[len(samples) // 2] if samples else "-")


IDLE_UNDER_WAY = 256  # connections connecting or awaiting their response at once


def raise_nofile(wanted):
    """Raises RLIMIT_NOFILE to at least wanted (the hard limit too when allowed, as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, new_hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        sys.exit(f"probe.py idle: needs {wanted} open files, but the hard limit is {hard} "
                 "(raise it with ulimit -Hn as root)")


def source_addresses(host, n):
    """Local addresses to connect from: one is enough unless n would take more than half the
    ephemeral ports; then n is spread over 127.0.0.1, .2, ... (all of 127/8 is loopback)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        per_addr = max(1000, (high - low + 1) // 2)
    except (OSError, ValueError):
        per_addr = 14000
    if n <= per_addr or not host.startswith("127."):
        return None, per_addr
    return [f"127.0.0.{1 + k}" for k in range((n + per_addr - 1) // per_addr)], per_addr


class IdleConn:
    __slots__ = ("sock", "out", "buf")

    def __init__(self, sock, request):
        self.sock = sock
        self.out = request
        self.buf = b""


def response_done(buf):
    """None while buf holds less than one response; otherwise "" for a 200 with keep-alive, or
    why the connection cannot be held."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        return "bad-status-line"
    length = None
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip().lower()
        if key == "content-length":
            length = int(value) if value.isdigit() else -1
        elif key == "transfer-encoding":
            return "chunked"
        elif key == "connection" and "close" in value:
            return "connection-close"
    if length is None or length < 0:
        return "no-content-length"
    if len(buf) < end + 4 + length:
        return None
    if parts[1] != "200":
        return "status-" + parts[1]
    if len(buf) > end + 4 + length:
        return "extra-bytes"
    return ""


def cmd_idle(host, port, n, open_timeout, hold_timeout):
    port, n = int(port), int(n)
    # Blocked before "HELD" is printed, so a SIGUSR1 sent after reading it cannot be lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    raise_nofile(n + 64)
    addresses, per_addr = source_addresses(host, n)
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    held = []
    errors = {}
    started = 0
    start = time.monotonic()
    deadline = start + float(open_timeout)

    def fail(conn, why):
        errors[why] = errors.get(why, 0) + 1
        sel.unregister(conn.sock)
        conn.sock.close()

    while len(held) + sum(errors.values()) < n and time.monotonic() < deadline:
        while started < n and len(sel.get_map()) < IDLE_UNDER_WAY:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                if addresses:
                    # IP_BIND_ADDRESS_NO_PORT (24): let connect() pick the port, per 4-tuple.
                    sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
                    sock.bind((addresses[started // per_addr], 0))
                err = sock.connect_ex((host, port))
            except OSError as e:
                err = e.errno
            started += 1
            conn = IdleConn(sock, request)
            sel.register(sock, selectors.EVENT_WRITE, conn)
            if err not in (0, errno.EINPROGRESS):
                fail(conn, "connect:" + os.strerror(err).replace(" ", "-").lower())
        for key, _ in sel.select(timeout=0.2):
            conn = key.data
            sock = conn.sock
            try:
                if conn.out:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(conn, "connect:" + os.strerror(err).replace(" ", "-").lower())
                        continue
                    sent = sock.send(conn.out)
                    conn.out = conn.out[sent:]
                    if not conn.out:
                        sel.modify(sock, selectors.EVENT_READ, conn)
                    continue
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(conn, "io:" + os.strerror(e.errno or 0).replace(" ", "-").lower())
                continue
            if not data:
                fail(conn, "closed-before-response")
                continue
            conn.buf += data
            why = response_done(conn.buf)
            if why is None:
                continue
            if why:
                fail(conn, why)
                continue
            sel.unregister(sock)
            held.append(sock)
    for key in list(sel.get_map().values()):
        fail(key.data, "open-timeout")
    errors["not-started"] = n - started
    if not errors["not-started"]:
        del errors["not-started"]
    sel.close()
    detail = ",".join(f"{k}:{v}" for k, v in sorted(errors.items())) or "-"
    print(f"HELD held={len(held)} failed={sum(errors.values())} "
          f"open_s={time.monotonic() - start:.1f} errors={detail}", flush=True)

    waited = "signal" if signal.sigtimedwait({signal.SIGUSR1}, float(hold_timeout)) else "timeout"

    # A held connection the server closed is readable (EOF, or an error); one it wrote to (a
    # 408, say) is readable too. Either way it is no longer an idle keep-alive connection.
    poller = select.poll()
    for sock in held:
        poller.register(sock, select.POLLIN | select.POLLPRI)
    dropped = len(poller.poll(0))
    print(f"CHECK open={len(held) - dropped} dropped={dropped} waited={waited}", flush=True)
    for sock in held:
        sock.close()
    if waited == "timeout":
        sys.exit(1)


def read_tsv(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def markdown_table(header, rows, right):
    """An aligned Markdown table: readable in a terminal, and valid Markdown."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            cell = str(cell)
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)
    ) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def idle_table(idle_rows):
    """The idle keep-alive connections table from run.sh's idle.tsv rows."""
    def fmt_rps(x):
        return f"{float(x):,.0f}" if x != "-" else x

    table = []
    for r in idle_rows:
        (label, workers, n, held, failed, open_s, rss0, rss1, rss_per, pss0, pss1, pss_per,
         rps0, rps1, per0, per1, errors, other, dropped) = r
        try:
            ratio = f"{float(rps1) / float(rps0):.2f}"
        except (ValueError, ZeroDivisionError):
            ratio = "-"
        table.append([label, workers, f"{held} of {n}", failed, open_s, f"{rss0} → {rss1}", rss_per,
                      f"{pss0} → {pss1}", pss_per, fmt_rps(rps0), fmt_rps(rps1), ratio,
                      f"{per0} → {per1}", errors, other, dropped])
    header = ["server", "workers", "idle conns held", "failed to open", "open s",
              "RSS MiB before → held", "RSS B/conn", "PSS MiB before → held", "PSS B/conn",
              "hello-ka-64 req/s without", "req/s with", "with/without", "CPU µs/req without → with",
              "wrk errors without/with", "other CPU s without/with", "dropped by the end"]
    return markdown_table(header, table, right=set(range(1, 16)))


def cmd_render(rows_path, mem_path, balance_path, idle_path, md_out, *meta):
    rows = read_tsv(rows_path)
    # rows: scenario, server, role (tine|ref), ref_kind, rps, p50_ms, p99_ms, errors, cpu_s,
    # server CPU microseconds per request, context switches per request, CPU seconds used by
    # anything but the server and wrk during the run
    refs = {}
    for r in rows:
        if r[2] == "ref":
            refs[r[0]] = float(r[4])
    table = []
    for r in rows:
        scenario, server, role, ref_kind, rps, p50, p99, errors, queued, cpu, cpu_per_req, ctx, other = r
        rps_f = float(rps)
        if ref_kind.startswith("ceiling="):
            ref = float(ref_kind.split("=", 1)[1])
        else:
            ref = refs.get(scenario)
        if role == "ref":
            ratio = "1.00 (ref)"
        elif ref:
            ratio = f"{rps_f / ref:.2f}"
            if ref_kind.startswith("ceiling="):
                ratio += f" of {ref:g}/s"
        else:
            ratio = "-"
        table.append([scenario, server, f"{rps_f:,.0f}", p50, p99, errors, queued, cpu, cpu_per_req,
                      ctx, other, ratio])
    header = ["scenario", "server", "requests/s", "p50 ms", "p99 ms", "errors", "unaccepted",
              "server CPU s", "CPU µs/req", "ctx sw/req", "other CPU s", "ratio to ref"]
    main = markdown_table(header, table, right=set(range(2, 12))) if table else ""

    mem_rows = read_tsv(mem_path)
    mem_header = ["server", "processes (master + workers)", "RSS idle MiB", "PSS idle MiB", "RSS after MiB",
                  "PSS after MiB", "start to READY=1 ms", "start to first curl answer ms (10 ms polls)"]
    mem = markdown_table(mem_header, mem_rows, right={1, 2, 3, 4, 5, 6, 7}) if mem_rows else ""

    bal_rows = read_tsv(balance_path)
    bal_header = ["server", "requests (new conn each)", "workers", "min/worker", "max/worker",
                  "busiest/least", "errors", "per worker", "keep-alive run: CPU s per worker"]
    bal = markdown_table(bal_header, bal_rows, right={1, 2, 3, 4, 5, 6}) if bal_rows else ""

    idle_rows = read_tsv(idle_path)
    idle = idle_table(idle_rows) if idle_rows else ""

    write_markdown(md_out, "tine benchmark results", meta, [
        ("Throughput and latency", main),
        ("Memory and start-up", mem),
        ("Requests per worker", bal),
        ("Idle keep-alive connections", idle),
    ])


def write_markdown(md_out, title, meta, sections):
    """Prints the non-empty tables of sections ((heading, table) pairs) and writes them to md_out
    under title, with meta as a list of notes."""
    print("\n\n".join(f"## {heading}\n\n{table}" for heading, table in sections if table))
    with open(md_out, "w") as f:
        f.write(f"# {title}\n\n")
        for m in meta:
            f.write(f"- {m}\n")
        for heading, table in sections:
            if table:
                f.write(f"\n## {heading}\n\n{table}\n")


def mib(kib):
    return f"{int(kib) / 1024:.1f}" if kib not in ("", "-") else "-"


def breakdown_section(rows_path):
    """(heading, tables) of the memory by kind of mapping in breakdown.tsv beside rows_path
    (bench/lib/smaps.py tsv lines), ("", "") when there is none."""
    import smaps  # bench/lib/smaps.py, beside this file; it imports this module
    return smaps.section(os.path.join(os.path.dirname(rows_path), "breakdown.tsv"))


def cmd_memory_render(rows_path, md_out, *meta):
    """bench/memory.sh's table. rows: server, mode, workers x threads, what happened ("ok" or
    why not), warm-up answers "OK/ERRORS", workers' CPU s in the warm-up, then KiB: total PSS
    before the warm-up, and after it total PSS, the master's, the workers' least and most."""
    rows = read_tsv(rows_path)
    totals = {(r[0], r[1]): r[7] for r in rows}
    table = []
    for (server, mode, shape, status, answers, cpu, before, total, master, low, high) in rows:
        workers = int(shape.split("×")[0])
        per = f"{(int(total) - int(master)) / workers / 1024:.1f}" if total != "-" else "-"
        ref = totals.get(("gunicorn", mode), "-")
        if server == "gunicorn":
            ratio = "1.00 (ref)" if total != "-" else "-"
        elif total != "-" and ref != "-":
            ratio = f"{int(total) / int(ref):.2f}"
        else:
            ratio = "-"
        table.append([server, mode, shape, mib(total), mib(master), per,
                      f"{mib(low)}–{mib(high)}" if low != "-" else "-",
                      mib(before), ratio, answers, cpu, status])
    header = ["server", "mode", "workers×threads", "total PSS MiB", "master PSS MiB",
              "per-worker PSS MiB", "worker PSS min–max MiB", "total PSS before warm-up MiB",
              "ratio to gunicorn same mode", "warm-up ok/errors", "workers' CPU s in warm-up",
              "outcome"]
    write_markdown(md_out, "WSGI memory: tine and gunicorn on the Django test site", meta,
                   [("PSS after the warm-up", markdown_table(header, table, right=set(range(2, 10)))),
                    breakdown_section(rows_path)])


def num(x, spec):
    """x formatted with spec, or "-" for None."""
    return "-" if x is None else format(x, spec)


def peer_ratios(rows, keys):
    """tine's ratio to each peer: for each measured row of another server (tine-preload, tine
    itself, is not a peer) on a scenario tine also measured, [scenario, peer] and then tine's
    value ÷ the peer's for each of keys, "-" where either has none or the peer's is 0."""
    ok = {(r["scenario"], r["server"]): r for r in rows if r["outcome"] == "ok"}
    ratios = []
    for r in rows:
        tine = ok.get((r["scenario"], "tine"))
        if r["server"] in TINES or r["outcome"] != "ok" or tine is None:
            continue
        cells = [r["scenario"], r["server"]]
        for key in keys:
            a, b = tine.get(key), r.get(key)
            cells.append(f"{a / b:.2f}" if a is not None and b else "-")
        ratios.append(cells)
    return ratios


def other_cpu_note(measured, runs):
    """The meta line on the CPU other processes used during the measured rows (each with
    "other" and "seconds"): "other processes' CPU during the measured RUNS: ..."."""
    cpus = len(os.sched_getaffinity(0))
    other = sum(r["other"] for r in measured)
    seconds = sum(r["seconds"] for r in measured)
    return (f"other processes' CPU during the measured {runs}: {other:.1f} CPU-s over {seconds:.0f} s "
            f"({other / (seconds * cpus):.0%} of the machine's {cpus} CPUs)")


def asgi_row(fields):
    """One row of the rows.tsv of bench/asgi.sh and bench/wsgi.sh (bench/lib/asgi_servers.sh
    load_row) as a dict of numbers, or {"outcome": why} for a run that did not happen. Fields:
    scenario, server, outcome, the client's result (wrk's BENCH_RESULT key=value pairs, or
    wsload http's JSON with the same keys and per_connection), connections, seconds each request
    sleeps (- for none), server CPU s, context switches, CPU s per child process (CSV), master +
    children PSS KiB, processes, the machine's busy ticks over the run, ticks per second, the
    client's own CPU s, the machine's busy % in the second before the warm-up (- when not looked
    at), and a JSON object: slots (requests the server runs at once at most, null for no limit
    but the connections), db_cpu (the database's CPU s, null when not measured)."""
    row = {"scenario": fields[0], "server": fields[1], "outcome": fields[2]}
    if fields[2] != "ok":
        return row
    (result, conns, sleep_s, cpu, ctx, per_proc, pss, procs, busy, tck, client, before) = fields[3:15]
    extra = json.loads(fields[15]) if len(fields) > 15 else {}
    if result.startswith("{"):
        r = json.loads(result)
    else:
        r = {k: int(v) for k, v in (kv.split("=", 1) for kv in result.split())}
    n, cpu = r["requests"], float(cpu)
    at_once = min(int(conns), extra["slots"]) if extra.get("slots") else int(conns)
    db_cpu = extra.get("db_cpu")
    row.update(
        rps=n / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0,
        ceiling=at_once / float(sleep_s) if sleep_s != "-" else None,
        p50=r["p50_us"] / 1000, p99=r["p99_us"] / 1000,
        status_errors=r["status"],
        socket_errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
        cpu=cpu,
        us_per_req=cpu / n * 1e6 if n else None,
        per_cpu_s=n / cpu if cpu else None,
        ctx_per_req=int(ctx) / n if n else None,
        per_proc=per_proc,
        pss=int(pss) / 1024, procs=int(procs),
        per_connection=r.get("per_connection"),
        db_cpu=db_cpu,
        # CPU the rest of the machine used meanwhile: neither the server, the client nor the
        # database.
        other=max(0.0, int(busy) / int(tck) - cpu - float(client) - (db_cpu or 0.0)),
        busy_before=before,
        seconds=r["duration_us"] / 1e6,
    )
    return row


def spread_numbers(counts):
    """(MIN, MEDIAN, MAX, NONE) of the responses each connection got (NONE: how many got none),
    or four Nones when there are no counts."""
    if not counts:
        return None, None, None, None
    c = sorted(counts)
    return c[0], c[len(c) // 2], c[-1], c.count(0)


def spread(counts):
    """"MIN / MEDIAN / MAX (none: K)" of the responses each connection got, or "-"."""
    if not counts:
        return "-"
    return "{} / {} / {} (none: {})".format(*spread_numbers(counts))


def run_rows(rows_path):
    """The rows of asgi_row, grouped by scenario, then server, each in the order it first ran."""
    rows = [asgi_row(f) for f in read_tsv(rows_path)]
    order = {}
    for r in rows:
        order.setdefault(r["scenario"], len(order))
        order.setdefault(r["server"], len(order))
    rows.sort(key=lambda r: (order[r["scenario"]], order[r["server"]]))
    return rows


def runs_table(rows, extra=()):
    """Each server's numbers per scenario; extra: (header, function of a measured row) columns
    added before the last few."""
    table = []
    for r in rows:
        if r["outcome"] != "ok":
            table.append([r["scenario"], r["server"]] + ["-"] * (13 + len(extra)) + [r["outcome"]])
            continue
        ceiling = f"{r['rps'] / r['ceiling']:.0%} of {r['ceiling']:,.0f}" if r["ceiling"] else "-"
        table.append([r["scenario"], r["server"], num(r["rps"], ",.0f"), ceiling,
                      num(r["p50"], ".2f"), num(r["p99"], ".2f"),
                      f"{r['status_errors']} / {r['socket_errors']}", num(r["cpu"], ".2f"),
                      num(r["us_per_req"], ".1f"), num(r["per_cpu_s"], ",.0f"),
                      num(r["ctx_per_req"], ".2f"), f"{r['pss']:.1f} ({r['procs']})"]
                     + [f(r) for _, f in extra]
                     + [num(r["other"], ".1f"), r["busy_before"], r["per_proc"], "ok"])
    header = ["scenario", "server", "requests/s", "of the ceiling", "p50 ms", "p99 ms",
              "errors ≥400 / socket", "server CPU s", "CPU µs/req", "requests per CPU-s",
              "ctx sw/req", "PSS MiB (processes)"] + [h for h, _ in extra] + [
              "other CPU s", "busy % before", "CPU s per child", "outcome"]
    return markdown_table(header, table, right=set(range(2, 14 + len(extra))))


def ratios_table(rows):
    """tine's ratio to each peer on each scenario both ran."""
    ratios = peer_ratios(rows, ["rps", "per_cpu_s", "p99", "pss"])
    header = ["scenario", "peer", "requests/s: tine ÷ peer",
              "requests per CPU-s: tine ÷ peer", "p99: tine ÷ peer (lower is better)",
              "PSS: tine ÷ peer (lower is better)"]
    return markdown_table(header, ratios, right={2, 3, 4, 5}) if ratios else ""


def busy_notes(rows, meta):
    """meta, with notes on how busy the rest of the machine was during the measured rows."""
    measured = [r for r in rows if r["outcome"] == "ok"]
    if not measured:
        return list(meta)
    cpus = len(os.sched_getaffinity(0))
    worst = max(measured, key=lambda r: r["other"])
    meta = list(meta) + [
        f"{other_cpu_note(measured, 'runs')}; the most in one run "
        f"{worst['other']:.1f} s ({worst['scenario']}, {worst['server']})"]
    before = sorted(int(r["busy_before"]) for r in measured if r["busy_before"] != "-")
    if before:
        meta.append(f"the whole machine's CPU busy in the second before each scenario's warm-up "
                    f"(no server under load): {before[0]}–{before[-1]}% of its {cpus} CPUs, "
                    f"median {before[len(before) // 2]}%")
    return meta


def cmd_asgi_render(rows_path, md_out, *meta):
    """bench/asgi.sh's tables: each server's numbers per scenario, then tine's ratio to each
    peer, with a note of how busy the rest of the machine was."""
    rows = run_rows(rows_path)
    write_markdown(md_out, "ASGI: tine, uvicorn and granian", busy_notes(rows, meta), [
        ("Each server", runs_table(rows)),
        ("tine against each peer", ratios_table(rows)),
    ])


TINES = ("tine", "tine-preload")  # tine's own rows: tine, and tine with [app] preload = true


def memory_table(memory_path):
    """bench/wsgi.sh's memory table from run_scenarios' memory.tsv (application, server, PSS KiB
    1 s after the start and after the last run, processes), with tine's ratio to each peer on
    the same application (and tine-preload's, when it ran)."""
    rows = read_tsv(memory_path)
    variants = [t for t in TINES if any(r[1] == t for r in rows)] or ["tine"]
    refs = {(r[0], r[1]): r for r in rows if r[1] in TINES}
    table = []
    for app, server, idle, after, procs in rows:
        ratios = []
        for variant in variants:
            ref = refs.get((app, variant))
            ratios += [f"{int(ref[k]) / int(v):.2f}"
                       if server not in TINES and ref and v.isdigit() and ref[k].isdigit() and int(v) else "-"
                       for k, v in ((2, idle), (3, after))]
        table.append([app, server, procs, mib(idle), mib(after)] + ratios)
    header = ["application", "server", "processes", "PSS idle MiB", "PSS after its runs MiB"]
    for variant in variants:
        header += [f"idle: {variant} ÷ peer", f"after: {variant} ÷ peer"]
    return markdown_table(header, table, right=set(range(2, len(header)))) if table else ""


def cmd_wsgi_render(rows_path, md_out, *meta):
    """bench/wsgi.sh's tables: each server's numbers, tine's ratio to each peer, and memory (from
    run_scenarios' memory.tsv beside rows_path)."""
    memory_path = os.path.join(os.path.dirname(rows_path), "memory.tsv")
    rows = run_rows(rows_path)
    measured = [r for r in rows if r["outcome"] == "ok"]
    extra = []
    if any(r["per_connection"] for r in measured):
        extra.append(("responses per connection min / median / max",
                      lambda r: spread(r["per_connection"])))
    if any(r["db_cpu"] is not None for r in measured):
        extra.append(("PostgreSQL CPU s (server CPU ÷ it)",
                      lambda r: "-" if r["db_cpu"] is None else
                      f"{r['db_cpu']:.2f} ({r['cpu'] / r['db_cpu']:.1f})" if r["db_cpu"] else f"{r['db_cpu']:.2f}"))
    write_markdown(md_out, "WSGI: tine, granian, uWSGI and gunicorn", busy_notes(rows, meta), [
        ("Each server", runs_table(rows, extra)),
        ("tine against each peer", ratios_table(rows)),
        ("Memory: master + workers", memory_table(memory_path)),
        breakdown_section(rows_path),
    ])


GRID_COLUMNS = ["scenario", "workers", "threads", "requests_per_s", "of_ceiling", "p50_ms", "p99_ms",
                "errors", "server_cpu_s", "cpu_us_per_req", "requests_per_cpu_s", "pss_mib", "conn_min",
                "conn_median", "conn_max", "conn_none", "db_cpu_s"]


def grid_cells(grid_path):
    """bench/wsgi.sh's grid rows (workers, threads, then a rows.tsv row) as GRID_COLUMNS dicts
    (None where there is no value), and the rows that did not run as (workers, threads, row)."""
    cells, failed = [], []
    for fields in read_tsv(grid_path):
        workers, threads, r = int(fields[0]), int(fields[1]), asgi_row(fields[2:])
        if r["outcome"] != "ok":
            failed.append((workers, threads, r))
            continue
        cells.append(dict(zip(GRID_COLUMNS, [
            r["scenario"], workers, threads, r["rps"], r["rps"] / r["ceiling"] if r["ceiling"] else None,
            r["p50"], r["p99"], r["status_errors"] + r["socket_errors"], r["cpu"], r["us_per_req"],
            r["per_cpu_s"],
            r["pss"], *spread_numbers(r["per_connection"]), r["db_cpu"]])))
    return cells, failed


def cmd_grid_render(grid_path, out_dir, *meta):
    """Writes the grid as TSV, as Markdown (per scenario: workers down, threads across, each
    cell requests/s and p99) and, when matplotlib imports, as a PNG; prints the Markdown."""
    cells, failed = grid_cells(grid_path)
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, "wsgi-grid")
    with open(base + ".tsv", "w") as f:
        f.write("\t".join(GRID_COLUMNS) + "\n")
        for c in cells:
            f.write("\t".join("" if c[k] is None else f"{c[k]:.3f}" if isinstance(c[k], float) else str(c[k])
                              for k in GRID_COLUMNS) + "\n")
    scenarios = list(dict.fromkeys(c["scenario"] for c in cells))
    sections = []
    for scenario in scenarios:
        mine = {(c["workers"], c["threads"]): c for c in cells if c["scenario"] == scenario}
        workers = sorted({w for w, _ in mine})
        threads = sorted({t for _, t in mine})
        best = max(mine.values(), key=lambda c: c["requests_per_s"])
        table = []
        for w in workers:
            line = [f"{w}"]
            for t in threads:
                c = mine.get((w, t))
                if c is None:
                    line.append("-")
                    continue
                share = f", {c['of_ceiling']:.0%}" if c["of_ceiling"] is not None else ""
                db = (f" · CPU s server {c['server_cpu_s']:.1f} / PostgreSQL {c['db_cpu_s']:.1f}"
                      if c["db_cpu_s"] is not None else "")
                mark = " **best**" if c is best else ""
                line.append(f"{c['requests_per_s']:,.0f}{share} · p99 {c['p99_ms']:.0f} ms"
                            f" · {c['errors']} err{db}{mark}")
            table.append(line)
        header = ["workers \\ threads"] + [f"{t}" for t in threads]
        sections.append((f"{scenario}: requests/s (of the ceiling) · p99 · errors",
                         markdown_table(header, table, right=set(range(1, len(threads) + 1)))))
    if failed:
        sections.append(("Cells that did not run", markdown_table(
            ["scenario", "workers", "threads", "why"],
            [[r["scenario"], w, t, r["outcome"]] for w, t, r in failed], right={1, 2})))
    plot = grid_plot(cells, scenarios, base + ".png")
    write_markdown(base + ".md", "tine over workers × threads", list(meta) + [plot], sections)


def grid_plot(cells, scenarios, png):
    """Draws requests/s and p99 against threads, a line per worker count, a column per scenario;
    says what it wrote, or why it wrote nothing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"no plot: matplotlib does not import here ({e})"
    if not scenarios:
        return "no plot: no cell ran"
    fig, axes = plt.subplots(2, len(scenarios), figsize=(5 * len(scenarios), 7.5), squeeze=False)
    for col, scenario in enumerate(scenarios):
        mine = [c for c in cells if c["scenario"] == scenario]
        for w in sorted({c["workers"] for c in mine}):
            line = sorted((c for c in mine if c["workers"] == w), key=lambda c: c["threads"])
            x = [c["threads"] for c in line]
            for row, key in ((0, "requests_per_s"), (1, "p99_ms")):
                axes[row][col].plot(x, [c[key] for c in line], marker="o", label=f"{w} worker{'s' if w > 1 else ''}")
        for row, label in ((0, "requests/s"), (1, "p99 latency, ms")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({c["threads"] for c in mine}))
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.set_xlabel("threads per worker")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        axes[0][col].set_title(scenario)
        axes[0][col].legend(fontsize="small")
    fig.suptitle("tine, WSGI: workers × threads")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return f"plot: {os.path.basename(png)} (matplotlib {matplotlib.__version__})"


def ws_row(fields):
    """One row of bench/websocket.sh's rows.tsv as a dict, or {"outcome": why} for a run that did
    not happen. Fields: scenario, server, outcome ("ok" or why not), then for a run: its kind and
    wsload's JSON, and for "echo" the server's CPU s, CPU s per child process (CSV), master +
    children PSS KiB, processes, the machine's busy ticks over the run, ticks per second, the
    client's own CPU s, the machine's busy % in the second before the warm-up (- when not looked
    at); for "idle" wsload's OPEN line, the total PSS KiB before and while holding, processes."""
    row = {"scenario": fields[0], "server": fields[1], "outcome": fields[2]}
    if fields[2] != "ok":
        return row
    row["kind"] = fields[3]
    row.update(json.loads(fields[4]))
    if row["kind"] == "echo":
        cpu, per_proc, pss, procs, busy, tck, client, before = fields[5:]
        cpu, n = float(cpu), row["messages"]
        row.update(
            cpu=cpu, per_proc=per_proc, pss=int(pss) / 1024, procs=int(procs),
            us_per_msg=cpu / n * 1e6 if n else None, client_cpu=float(client),
            # CPU the rest of the machine used meanwhile: neither the server nor the client.
            other=max(0.0, int(busy) / int(tck) - cpu - float(client)),
            busy_before=before,
        )
    else:
        open_line, pss_before, pss_held, procs = fields[5:]
        opened = dict(kv.split("=", 1) for kv in open_line.split()[1:])
        held = row["handshakes"]
        row.update(
            open_s=opened.get("open_s", "-"), pss_before=int(pss_before), pss_held=int(pss_held),
            procs=int(procs),
            kib_per_socket=(int(pss_held) - int(pss_before)) / held if held else None,
        )
    return row


def cmd_ws_render(rows_path, md_out, *meta):
    """bench/websocket.sh's tables: the echo runs, the idle sockets, and tine's ratio to each
    peer, with a note of how busy the rest of the machine was."""
    rows = [ws_row(f) for f in read_tsv(rows_path)]

    echo, idle = [], []
    for r in rows:
        if r["outcome"] != "ok":
            is_idle = r["scenario"].startswith("idle")
            (idle if is_idle else echo).append(
                [r["scenario"], r["server"]] + ["-"] * (6 if is_idle else 10) + [r["outcome"]])
        elif r["kind"] == "echo":
            echo.append([r["scenario"], r["server"], num(r["messages_per_s"], ",.0f"),
                         str(r["p50_us"]), str(r["p99_us"]), f"{r['errors']} / {r['mismatches']}",
                         num(r["cpu"], ".2f"), num(r["us_per_msg"], ".1f"), num(r["client_cpu"], ".2f"),
                         f"{r['pss']:.1f} ({r['procs']})", num(r["other"], ".1f"), r["busy_before"],
                         "ok"])
        else:
            failed = f"{r['failed']}" + (f" {json.dumps(r['failures'])}" if r["failed"] else "")
            idle.append([r["scenario"], r["server"], f"{r['handshakes']} of {r['connections']}", failed,
                         r["open_s"], f"{r['pss_before'] / 1024:.1f} → {r['pss_held'] / 1024:.1f} ({r['procs']})",
                         num(r["kib_per_socket"], ".1f"),
                         f"{r['dropped_while_idle']}, {r['close_back']} of {r['close_sent']}", "ok"])
    echo_header = ["scenario", "server", "messages/s", "p50 µs", "p99 µs", "errors / mismatches",
                   "server CPU s", "server CPU µs/msg", "client CPU s", "PSS MiB (processes)",
                   "other CPU s", "busy % before", "outcome"]
    idle_header = ["scenario", "server", "held", "failed", "open s", "PSS MiB before → held (processes)",
                   "KiB per idle socket", "dropped while idle, closes answered", "outcome"]

    ratios = peer_ratios(rows, ["messages_per_s", "us_per_msg", "p99_us", "kib_per_socket"])
    ratio_header = ["scenario", "peer", "messages/s: tine ÷ peer",
                    "server CPU per message: tine ÷ peer (lower is better)",
                    "p99: tine ÷ peer (lower is better)",
                    "KiB per idle socket: tine ÷ peer (lower is better)"]

    measured = [r for r in rows if r["outcome"] == "ok" and r["kind"] == "echo"]
    if measured:
        meta = list(meta) + [other_cpu_note(measured, "echo runs")]
    write_markdown(md_out, "WebSockets: tine, uvicorn and granian", meta, [
        ("Echo", markdown_table(echo_header, echo, right=set(range(2, 12))) if echo else ""),
        ("Idle sockets", markdown_table(idle_header, idle, right={2, 3, 4, 5, 6}) if idle else ""),
        ("tine against each peer", markdown_table(ratio_header, ratios, right={2, 3, 4, 5}) if ratios else ""),
    ])


COMMANDS = {
    "snap": cmd_snap,
    "delta": cmd_delta,
    "mem": cmd_mem,
    "pss": cmd_pss,
    "workers": cmd_workers,
    "same": cmd_same,
    "notify": cmd_notify,
    "balance": cmd_balance,
    "warm": cmd_warm,
    "backlog": cmd_backlog,
    "idle": cmd_idle,
    "render": cmd_render,
    "memory-render": cmd_memory_render,
    "asgi-render": cmd_asgi_render,
    "wsgi-render": cmd_wsgi_render,
    "grid-render": cmd_grid_render,
    "ticks": cmd_ticks,
    "ws-render": cmd_ws_render,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
