#!/usr/bin/env python3
"""Where a pre-fork server's memory goes: the PSS of its master and of its workers (the master's
children) by kind of mapping, from /proc/PID/smaps. Standard library only; run by bench/wsgi.sh
and bench/memory.sh after their runs, and by hand on any running server:

  python3 bench/lib/smaps.py show MASTER_PID      a table (MiB) of the master and the mean worker
  python3 bench/lib/smaps.py tsv LABEL MASTER_PID lines "LABEL KIND WHO FIELD KIB" (tab-separated;
                                                  WHO is master or worker, a worker's figure the
                                                  mean over the workers) for render
  python3 bench/lib/smaps.py render BREAKDOWN.tsv the tables of such lines, one column pair a LABEL
  python3 bench/lib/smaps.py check                checks the kinds given to a made-up layout (each
                                                  kind's rule, and the near misses), exits 1 on a
                                                  wrong one

Kinds of mapping (a mapping's kind is decided by its path, its permissions and its neighbours,
so the anonymous kinds are a reading of the layout, not something the kernel labels):

  server binary        the process's own executable (tine, uwsgi, or python for the others)
  libpython            libpython*.so
  python extensions    other shared objects under a Python install or virtualenv
                       (lib-dynload, site-packages)
  other libraries      every other shared object (libc, libssl, ...)
  other files          every other file mapping (locale archive, ...)
  [heap]               the brk heap: glibc's main malloc arena (and Python's small objects
                       before obmalloc takes an arena of its own, and every malloc from the
                       main thread)
  malloc arenas        glibc's per-thread arenas: an anonymous read-write mapping at a 64 MiB
                       boundary followed by its reserved, inaccessible rest
  thread stacks        an anonymous read-write mapping right above an inaccessible guard page
  main stack           [stack]
  other anonymous      every other anonymous mapping: Python's obmalloc arenas (1 MiB each on
                       Python 3.10+, merged by the kernel when adjacent), large malloc blocks
                       (128 KiB and over, mmapped on their own), the kernel's [vdso] and the like

Fields: Pss; Private_Dirty (pages this process wrote: after a fork, the pages it copied from
the master and those it allocated); Shared (Shared_Clean + Shared_Dirty, pages still shared
with another process, as the master's pages left untouched after a fork).
"""

import os
import sys

from probe import children, markdown_table, read_tsv

KINDS = ["server binary", "libpython", "python extensions", "other libraries", "other files", "[heap]",
         "malloc arenas", "thread stacks", "main stack", "other anonymous"]
FIELDS = ["Pss", "Private_Dirty", "Shared"]
ARENA_ALIGN = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: every non-main arena starts at a multiple
GUARD_MAX = 1 << 20     # the largest guard page a thread stack is given (glibc: a page by default)


def read_smaps(pid):
    """The mappings of pid as dicts: start, end, perms, path, and the KiB fields of FIELDS' parts.
    Raises OSError when the process is gone."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if "-" in head[0] and ":" not in head[0]:
                lo, hi = head[0].split("-")
                cur = {"start": int(lo, 16), "end": int(hi, 16), "perms": head[1],
                       "path": head[5].strip() if len(head) > 5 else "",
                       "Pss": 0, "Private_Dirty": 0, "Shared": 0}
                maps.append(cur)
            elif head[0] in ("Pss:", "Private_Dirty:"):
                cur[head[0][:-1]] += int(head[1])
            elif head[0] in ("Shared_Clean:", "Shared_Dirty:"):
                cur["Shared"] += int(head[1])
    return maps


def is_python_path(path):
    return "/lib-dynload/" in path or "/site-packages/" in path or "/dist-packages/" in path


def kind_of(maps, i, exe):
    """The kind (one of KINDS) of maps[i], in a process whose executable is exe."""
    m = maps[i]
    path = m["path"]
    if path == exe:
        return "server binary"
    if path.startswith("/"):
        name = os.path.basename(path)
        if name.startswith("libpython"):
            return "libpython"
        if ".so" in name:
            return "python extensions" if is_python_path(path) else "other libraries"
        return "other files"
    if path == "[heap]":
        return "[heap]"
    if path == "[stack]":
        return "main stack"
    if path == "" and m["perms"].startswith("rw"):
        below = maps[i - 1] if i > 0 else None
        above = maps[i + 1] if i + 1 < len(maps) else None
        if (m["start"] % ARENA_ALIGN == 0 and above and above["path"] == "" and above["start"] == m["end"]
                and above["perms"].startswith("---")):
            return "malloc arenas"
        if (below and below["path"] == "" and below["end"] == m["start"] and below["perms"].startswith("---")
                and below["end"] - below["start"] <= GUARD_MAX):
            return "thread stacks"
    return "other anonymous"


def breakdown(pid):
    """{kind: {field: KiB}} of pid; raises OSError when it is gone."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        exe = None
    maps = read_smaps(pid)
    out = {k: dict.fromkeys(FIELDS, 0) for k in KINDS}
    for i, m in enumerate(maps):
        kind = kind_of(maps, i, exe)
        for field in FIELDS:
            out[kind][field] += m[field]
    return out


def server(master):
    """(master's breakdown, the workers' mean breakdown, how many workers) of a running server."""
    own = breakdown(master)
    workers = []
    for child in children(master):
        try:
            workers.append(breakdown(child))
        except OSError:
            pass
    mean = {k: {f: sum(w[k][f] for w in workers) / len(workers) if workers else 0 for f in FIELDS}
            for k in KINDS}
    return own, mean, len(workers)


def cmd_tsv(label, master):
    own, mean, n = server(int(master))
    for who, table in (("master", own), ("worker", mean)):
        for kind in KINDS:
            for field in FIELDS:
                print(f"{label}\t{kind}\t{who}\t{field}\t{table[kind][field]:.0f}")
    print(f"{label}\tworkers\tmaster\tcount\t{n}")


def mib(kib):
    return f"{kib / 1024:.1f}"


def tables(rows):
    """Two Markdown tables of tsv lines (label, kind, who, field, KiB), a row a kind and a column a
    label: the master's PSS and a mean worker's ("master / worker"), then a mean worker's private
    dirty and shared pages ("private dirty / shared")."""
    labels, data = [], {}
    for label, kind, who, field, kib in rows:
        if label not in labels:
            labels.append(label)
        data[label, kind, who, field] = float(kib)

    def get(label, kind, who, field):
        if kind == "total":
            return sum(data.get((label, k, who, field), 0) for k in KINDS)
        return data.get((label, kind, who, field), 0)

    def table(first, pairs):
        header = [first] + [f"{label} ({int(data.get((label, 'workers', 'master', 'count'), 0))} workers)"
                            for label in labels]
        body = [[kind] + [" / ".join(mib(get(label, kind, who, field)) for who, field in pairs) for label in labels]
                for kind in KINDS + ["total"]]
        return markdown_table(header, body, right=set(range(1, len(header))))

    return (table("PSS MiB: master / a worker", [("master", "Pss"), ("worker", "Pss")]) + "\n\n"
            + table("a worker's MiB: private dirty / shared", [("worker", "Private_Dirty"), ("worker", "Shared")]))


def section(path):
    """("Memory by kind of mapping (MiB)", the table) of a breakdown tsv, ("", "") when it is empty."""
    rows = read_tsv(path)
    return ("Memory by kind of mapping (MiB; bench/lib/smaps.py)", tables(rows)) if rows else ("", "")


def cmd_show(master):
    own, mean, n = server(int(master))
    rows = []
    for who, table in (("master", own), ("worker", mean)):
        rows += [(master, kind, who, field, table[kind][field]) for kind in KINDS for field in FIELDS]
    rows.append((master, "workers", "master", "count", n))
    print(tables(rows))


def cmd_render(path):
    print(section(path)[1])


def cmd_check():
    mib1 = 1 << 20
    exe = "/usr/bin/tine"

    def m(start, size, perms, path="", want=None):
        return {"start": start, "end": start + size, "perms": perms, "path": path, "want": want}

    layout = [
        m(0x5500_0000_0000, 0x1000, "r--p", exe, "server binary"),
        m(0x5500_0001_0000, 0x21000, "rw-p", "[heap]", "[heap]"),
        # A glibc arena: at a 64 MiB boundary, its reserved rest right above it.
        m(0x7f00_0000_0000, 0x21000, "rw-p", want="malloc arenas"),
        m(0x7f00_0002_1000, ARENA_ALIGN - 0x21000, "---p", want="other anonymous"),
        # The same off the boundary is not one.
        m(0x7f00_1000_1000, 0x21000, "rw-p", want="other anonymous"),
        m(0x7f00_1002_2000, 0x1000, "---p", want="other anonymous"),
        # A thread's stack right above its guard page, then one with a gap below it.
        m(0x7f00_2000_0000, 0x1000, "---p", want="other anonymous"),
        m(0x7f00_2000_1000, 2 * mib1, "rw-p", want="thread stacks"),
        m(0x7f00_3000_0000, 0x1000, "---p", want="other anonymous"),
        m(0x7f00_3000_2000, 2 * mib1, "rw-p", want="other anonymous"),
        m(0x7f00_4000_0000, mib1, "rw-p", want="other anonymous"),
        m(0x7f00_5000_0000, 0x1000, "r-xp", "/usr/lib/libpython3.11.so.1.0", "libpython"),
        m(0x7f00_5001_0000, 0x1000, "r-xp", "/venv/lib/python3.11/site-packages/x.cpython-311.so",
          "python extensions"),
        m(0x7f00_5002_0000, 0x1000, "r-xp", "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311.so",
          "python extensions"),
        m(0x7f00_5003_0000, 0x1000, "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", "other libraries"),
        m(0x7f00_5004_0000, 0x1000, "r--p", "/usr/lib/locale/C.utf8/LC_CTYPE", "other files"),
        m(0x7f00_5005_0000, 0x1000, "r-xp", "[vdso]", "other anonymous"),
        m(0x7ffc_0000_0000, 0x21000, "rw-p", "[stack]", "main stack"),
    ]
    wrong = [(hex(x["start"]), x["perms"], x["path"], kind_of(layout, i, exe), x["want"])
             for i, x in enumerate(layout) if kind_of(layout, i, exe) != x["want"]]
    for start, perms, path, got, want in wrong:
        print(f"{start} {perms} {path or '(anonymous)'}: {got}, should be {want}")
    if wrong:
        sys.exit(1)
    print(f"smaps.py check: the {len(layout)} mappings got their kinds")


if __name__ == "__main__":
    commands = {"show": cmd_show, "tsv": cmd_tsv, "render": cmd_render, "check": cmd_check}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
