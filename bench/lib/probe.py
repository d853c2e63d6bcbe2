#!/usr/bin/env python3
"""Helpers for bench/run.sh: /proc accounting, sd_notify readiness, per-worker balance, and the
result tables. Standard library only.

Subcommands (each prints one line, or a table, to stdout):

  snap MASTER_PID             JSON snapshot: CPU ticks and context switches of the master and
                              each live child (all threads), plus the master's reaped children.
  delta BEFORE.json AFTER.json
                              "CPU_SECONDS CTX_SWITCHES WORKER_CPU_CSV" between two snapshots.
  mem MASTER_PID              "RSS_KIB PSS_KIB PROCESSES" of the master plus its children.
  notify SOCKET TIMEOUT_S     binds a unix datagram socket at SOCKET, waits for a datagram with
                              READY=1 and prints the wall-clock time it arrived (epoch seconds);
                              exits 1 on timeout.
  balance URL N CONC MASTER_PID
                              N GET requests, each on a new connection, CONC at a time; the body
                              is the answering worker's pid. Prints "REQUESTS WORKERS MIN MAX
                              ERRORS COUNTS" where MIN/MAX count every live child of the master,
                              including those that answered nothing.
  render ROWS.tsv MEM.tsv BALANCE.tsv MARKDOWN_OUT
                              prints the result tables and writes them as Markdown.
"""

import json
import os
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


def cmd_mem(master):
    rss = pss = count = 0
    for pid in [master] + children(master):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            count += 1
        except OSError:
            continue
    print(f"{rss} {pss} {count}")


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


def cmd_balance(url, n, conc, master):
    parts = urlsplit(url)
    n, conc = int(n), int(conc)
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
                next_index[0] += 1
            try:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
                conn.request("GET", parts.path or "/", headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read().decode().strip()
                conn.close()
                ok = response.status == 200 and body.isdigit()
            except (OSError, http.client.HTTPException, UnicodeDecodeError):
                ok = False
            with lock:
                if ok:
                    counts[body] = counts.get(body, 0) + 1
                else:
                    errors += 1

    threads = [threading.Thread(target=client) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    workers = [str(p) for p in children(master)] or list(counts)
    per_worker = [counts.get(w, 0) for w in workers]
    detail = ",".join(str(c) for c in sorted(per_worker, reverse=True))
    print(f"{sum(counts.values())} {len(workers)} {min(per_worker)} {max(per_worker)} {errors} {detail}")


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


def cmd_render(rows_path, mem_path, balance_path, md_out, *meta):
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
        scenario, server, role, ref_kind, rps, p50, p99, errors, cpu, cpu_per_req, ctx, other = r
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
        table.append([scenario, server, f"{rps_f:,.0f}", p50, p99, errors, cpu, cpu_per_req, ctx,
                      other, ratio])
    header = ["scenario", "server", "requests/s", "p50 ms", "p99 ms", "errors",
              "server CPU s", "CPU µs/req", "ctx sw/req", "other CPU s", "ratio to ref"]
    main = markdown_table(header, table, right={2, 3, 4, 5, 6, 7, 8, 9, 10})

    mem_rows = read_tsv(mem_path)
    mem_header = ["server", "processes (master + workers)", "RSS idle MiB", "PSS idle MiB", "RSS after MiB",
                  "PSS after MiB", "start to READY=1 ms", "start to first curl answer ms (10 ms polls)"]
    mem = markdown_table(mem_header, mem_rows, right={1, 2, 3, 4, 5, 6, 7}) if mem_rows else ""

    bal_rows = read_tsv(balance_path)
    bal_header = ["server", "requests (new conn each)", "workers", "min/worker", "max/worker",
                  "busiest/least", "errors", "per worker", "keep-alive run: CPU s per worker"]
    bal = markdown_table(bal_header, bal_rows, right={1, 2, 3, 4, 5, 6}) if bal_rows else ""

    parts = [main]
    if mem:
        parts.append(mem)
    if bal:
        parts.append(bal)
    text = "\n\n".join(parts)
    print(text)
    with open(md_out, "w") as f:
        f.write("# tine benchmark results\n\n")
        for m in meta:
            f.write(f"- {m}\n")
        f.write("\n## Throughput and latency\n\n" + main + "\n")
        if mem:
            f.write("\n## Memory and start-up\n\n" + mem + "\n")
        if bal:
            f.write("\n## Requests per worker\n\n" + bal + "\n")


COMMANDS = {
    "snap": cmd_snap,
    "delta": cmd_delta,
    "mem": cmd_mem,
    "notify": cmd_notify,
    "balance": cmd_balance,
    "render": cmd_render,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
