#!/usr/bin/env python3
"""bench/soak.py: a bounded soak test of tine: mixed traffic, attacks and operator signals.

Starts tine (a release build) on 127.0.0.1 in its own temp dir with its own config and a small
WSGI application written there, then for --duration seconds (default 1200) runs at once:

  well-behaved clients   keep-alive GETs, GETs on a new connection each, POST uploads of 4 KiB
                         to 2 MiB (the application answers the body's length and CRC-32), and
                         slow readers of a large response (they read steadily at --slow-rate,
                         far above any minimum data rate). Every request is checked: status 200
                         and the exact body (length and CRC-32).
  attackers              stalled uploads (a POST head with a large Content-Length and one body
                         byte), trickling uploads (the same, one more byte every
                         --trickle-every seconds), silent connections (connect, send nothing),
                         idle keep-alive sockets (one GET answered, then nothing); each is
                         re-opened when the server closes it.
  an operator            kill -9 of a random worker every ~30-60 s, SIGHUP every ~2 min,
                         SIGTTIN then SIGTTOU (twice), and one SIGUSR2 (binary upgrade) at the
                         middle of the run, following the pid file to the new master. Shorter
                         runs scale the intervals down so every action happens (see schedule()).

Every --report-every seconds (default 30) it prints a line: elapsed time, requests attempted,
answered, failed, retried, lost to kill -9, and the resident (RSS) and proportional (PSS, from
/proc/PID/smaps_rollup) memory of the workers together and of the master. At the end it prints
a Markdown summary (also written to --markdown, default bench/results/soak-latest.md) to paste
into bench/RESULTS.md.

How requests are counted:
  attempted   every request a well-behaved client starts (a retry is not a new attempt).
  answered    status 200 and the right body, first time or on the retry.
  retried     a request that failed on a reused keep-alive connection before any response byte
              was sent once more on a new connection, as browsers and HTTP client libraries do
              (the server may close an idle keep-alive connection at any time, RFC 9112
              9.3.1). Counted apart; it ends answered or failed.
  lost        failed because the worker serving it was killed with -9 while it was in flight:
              the worker is known from the X-Pid header of this or an earlier answer on the
              connection; when it is not known (no response byte on a new connection), a failure
              within --kill-window seconds (default 1) after any kill -9 counts as lost. Any
              pre-fork server loses these; they are reported, not hidden.
  failed      every other failure, by class: connection refused, reset before any response
              byte, reset mid-response, timeout (--request-timeout of silence), wrong status,
              wrong body.

Exit status: 0 when failed == 0, 1 when well-behaved requests failed, 2 when the soak itself
could not run (tine did not build or start, say). Loopback only; bounded: every phase has a
time limit, and tine (the master from the pid file, TERM then KILL after a bound, then any
worker or master it started that is still alive, by pid) and every thread stop at the end, on
Ctrl-C (SIGINT) or SIGTERM, and on the script's own errors.

Usage:
  bench/soak.py [--tine target/release/tine] [--duration 1200] [options]   (see --help)
  bench/soak.py --duration 120       a two-minute check
  bench/soak.py --duration 120 --stalled 0 --trickle 0 --silent 0 --idle 0
                                     the same without attackers: what they cost in latency
Without --tine it uses target/release/tine, building it (cargo build --release) when missing.
Python 3.11 standard library only.
"""

import argparse
import collections
import datetime
import errno
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
MIB = 1 << 20

# The application tine serves: every answer names the worker that made it in X-Pid.
APP = r'''
import os
import zlib

BLOCK = bytes(range(256)) * 256  # 64 KiB


def _answer(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "application/octet-stream"),
                            ("Content-Length", str(len(body))), ("X-Pid", str(os.getpid()))])
    return [body]


def _big(n):
    while n > 0:
        chunk = BLOCK[:n]
        n -= len(chunk)
        yield chunk


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        return _answer(start_response, b"hello from tine soak\n")
    if path == "/big":
        n = min(int(environ["QUERY_STRING"].partition("=")[2] or 0), 64 << 20)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n)), ("X-Pid", str(os.getpid()))])
        return _big(n)
    if path == "/upload" and environ["REQUEST_METHOD"] == "POST":
        stream, size, crc = environ["wsgi.input"], 0, 0
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            size += len(chunk)
            crc = zlib.crc32(chunk, crc)
        return _answer(start_response, f"{size} {crc}\n".encode())
    return _answer(start_response, b"not found\n", "404 Not Found")
'''

HELLO_BODY = b"hello from tine soak\n"
BLOCK = bytes(range(256)) * 256

# Failure classes, in the order the report lists them.
REFUSED = "connection refused"
BEFORE = "reset before any response byte"
MID = "reset mid-response"
TIMEOUT = "timeout"
STATUS = "wrong status"
BODY = "wrong body"
CLASSES = (REFUSED, BEFORE, MID, TIMEOUT, STATUS, BODY)

CLIENT_KINDS = ("keep-alive GET", "new-connection GET", "upload", "slow reader")
ATTACK_KINDS = ("stalled upload", "trickling upload", "silent", "idle keep-alive")


class HarnessError(Exception):
    """The soak itself cannot go on (tine would not build or start, say)."""


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


# --- processes and /proc ------------------------------------------------------------------------


def start_time(pid):
    """The process's start time (clock ticks since boot), or None when there is no such
    process or it is a zombie: with the pid, it names one process for good."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def memory_kib(pid):
    """(RSS, PSS) in KiB from /proc/PID/smaps_rollup, or None when it is gone."""
    got = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    got[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return None
    return (got["Rss"], got["Pss"]) if len(got) == 2 else None


class Tine:
    """The tine under test: its temp dir, config, masters (following the pid file) and every
    process of it the soak has seen, so all can be stopped by pid."""

    def __init__(self, binary, tmp, args):
        self.binary = binary
        self.tmp = tmp
        self.args = args
        self.pidfile = os.path.join(tmp, "tine.pid")
        self.control = os.path.join(tmp, "control.sock")
        self.config = os.path.join(tmp, "tine.toml")
        self.error_log = os.path.join(tmp, "error.log")
        self.out = os.path.join(tmp, "tine.out")  # its stdout and stderr
        self.port = None
        self.proc = None  # the first master, our child
        self.seen = {}  # pid -> start time, of every master and worker seen
        self.lock = threading.Lock()
        with open(os.path.join(tmp, "soakapp.py"), "w") as f:
            f.write(APP)

    def write_config(self):
        a = self.args
        with open(self.config, "w") as f:
            f.write(
                f"""[server]
bind = ["{HOST}:{self.port}"]
workers = {a.workers}
threads = {a.threads}
pidfile = "{self.pidfile}"
control_socket = "{self.control}"
boot_timeout = "60s"
graceful_timeout = "{a.graceful_timeout}s"

[log]
error_log = "{self.error_log}"

[app]
handler = "wsgi"
app = "soakapp:app"
pythonpath = ["{self.tmp}"]
"""
            )

    def start(self):
        """Starts the master on a free port (retrying on EADDRINUSE) and waits until it answers
        and all its workers are up."""
        for attempt in range(5):
            with socket.socket() as s:
                s.bind((HOST, 0))
                self.port = s.getsockname()[1]
            self.write_config()
            out = open(self.out, "ab")
            self.proc = subprocess.Popen(
                [self.binary, "-c", self.config], cwd=self.tmp, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT)
            out.close()
            self.remember(self.proc.pid)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self.answers() and self.workers_up():
                    log(f"tine (pid {self.proc.pid}) is up on {HOST}:{self.port}")
                    return
                time.sleep(0.2)
            text = self.log_text() + self.out_text()
            if self.proc.poll() is not None and "in use" in text and attempt < 4:
                log(f"port {self.port} was taken; another")
                for name in (self.error_log, self.out):
                    if os.path.exists(name):
                        os.replace(name, f"{name}.{attempt}")
                continue
            why = ("did not come up within 60 s" if self.proc.poll() is None
                   else f"exited with code {self.proc.returncode} before it was up")
            raise HarnessError(f"tine {why}; its output:\n{text[-3000:]}")
        raise HarnessError("no free port after 5 tries")

    def answers(self):
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def workers_up(self):
        status = self.status()
        return bool(status) and sum(
            w["state"] == "ready" for w in status["workers"]) >= status["workers_desired"]

    def log_text(self, name=None):
        try:
            with open(name or self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def out_text(self):
        return self.log_text(self.out)

    def remember(self, pid):
        st = start_time(pid)
        if st is not None:
            with self.lock:
                self.seen.setdefault(pid, st)

    def master(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        self.remember(pid)
        return pid

    def status(self):
        """The master's `status json` answer through the control socket, or None."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(3)
                s.connect(self.control)
                s.sendall(b"status json\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            return json.loads(data)
        except (OSError, ValueError):
            return None

    def workers(self):
        """The current master's workers: from its status, checked against /proc (a worker is the
        master's child); from /proc alone when the status cannot be had."""
        master = self.master()
        if master is None:
            return []
        status = self.status()
        if status and status.get("master_pid") == master:
            pids = [w["pid"] for w in status["workers"] if parent_of(w["pid"]) == master]
        else:
            # During an upgrade the new master is a child too; it has children of its own.
            pids = [p for p in children_of(master) if not children_of(p)]
        for pid in pids:
            self.remember(pid)
        return pids

    def alive(self, pid):
        st = start_time(pid)
        return st is not None and self.seen.get(pid) == st

    def signal(self, pid, sig):
        if self.alive(pid):
            os.kill(pid, sig)
            return True
        return False

    def reap(self):
        if self.proc is not None:
            self.proc.poll()

    def stop(self):
        """TERM to every master still alive, KILL after the bound, then KILL to anything of
        tine's still alive (by pid and start time, so never another process)."""
        self.reap()
        masters = {p for p in (self.master(), self.proc and self.proc.pid) if p}
        with self.lock:
            seen = dict(self.seen)
        for pid in masters:
            self.signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.args.graceful_timeout + 10
        while time.monotonic() < deadline and any(self.alive(p) for p in masters):
            self.reap()
            time.sleep(0.2)
        for pid in masters:
            if self.signal(pid, signal.SIGKILL):
                log(f"master {pid} did not stop within the bound; killed")
        time.sleep(0.5)
        for pid in seen:
            if self.signal(pid, signal.SIGKILL):
                log(f"process {pid} of tine was still alive; killed")
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


# --- the record ---------------------------------------------------------------------------------


class Record:
    """Everything counted, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.count = {k: collections.Counter() for k in CLIENT_KINDS}
        self.latency = {k: [] for k in CLIENT_KINDS}  # seconds each answered request took
        self.classes = collections.Counter()  # (kind, class, detail) -> n
        self.lost_classes = collections.Counter()
        self.retry_causes = collections.Counter()  # (kind, detail) -> n
        self.examples = []  # the first failures, for the report
        self.kills = []  # (monotonic time, pid)
        self.actions = []  # (elapsed s, action, detail)
        self.memory = []  # sample tuples, see sample_memory
        self.attack = {k: collections.Counter() for k in ATTACK_KINDS}
        self.attack_lifetimes = {k: [] for k in ATTACK_KINDS}
        self.attack_held = {k: 0 for k in ATTACK_KINDS}

    def elapsed(self):
        return time.monotonic() - self.t0

    def add(self, kind, what):
        with self.lock:
            self.count[kind][what] += 1

    def retried(self, kind, failure):
        with self.lock:
            self.count[kind]["retried"] += 1
            self.retry_causes[(kind, failure.detail)] += 1

    def answered(self, kind, seconds):
        with self.lock:
            self.count[kind]["answered"] += 1
            self.latency[kind].append(seconds)

    def fail(self, kind, failure, lost):
        with self.lock:
            self.count[kind]["lost" if lost else "failed"] += 1
            (self.lost_classes if lost else self.classes)[(kind, failure.cls, failure.detail)] += 1
            if not lost and len(self.examples) < 20:
                self.examples.append(
                    (round(self.elapsed(), 1), kind, failure.cls, failure.detail, failure.pid))

    def killed(self, pid):
        with self.lock:
            self.kills.append((time.monotonic(), pid))

    def action(self, what, detail=""):
        with self.lock:
            self.actions.append((round(self.elapsed(), 1), what, detail))
        log(f"t={self.elapsed():.0f}s {what} {detail}")

    def lost_to_kill(self, failure, window):
        """True when the failure follows a kill -9 of the worker that served it (see the module
        docstring)."""
        with self.lock:
            kills = list(self.kills)
        for when, pid in kills:
            if failure.pid is not None:
                if pid == failure.pid and failure.start - 0.5 <= when <= failure.end + 0.5:
                    return True
            elif failure.cls in (BEFORE, MID) and failure.start - 0.5 <= when <= failure.end \
                    and failure.end - when <= window:
                return True
        return False

    def totals(self):
        with self.lock:
            total = collections.Counter()
            for c in self.count.values():
                total.update(c)
            return total


# --- a small HTTP/1.1 client that says exactly how a request failed ------------------------------


class Failure(Exception):
    def __init__(self, cls, detail, pid=None):
        super().__init__(f"{cls}: {detail}")
        self.cls, self.detail, self.pid = cls, detail, pid
        self.start = self.end = None
        self.reused = False  # on a connection that had carried an earlier request


class Conn:
    def __init__(self, port, timeout):
        try:
            self.sock = socket.create_connection((HOST, port), timeout=timeout)
        except ConnectionRefusedError:
            raise Failure(REFUSED, "connect") from None
        except socket.timeout:
            raise Failure(TIMEOUT, "connect") from None
        except OSError as e:
            raise Failure(BEFORE, f"connect: {errno.errorcode.get(e.errno, e)}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.answered = 0  # responses read on this connection
        self.pid = None  # the worker holding it, once an answer said so

    def close(self):
        self.sock.close()

    def _recv(self, got_bytes, n=65536):
        try:
            data = self.sock.recv(n)
        except socket.timeout:
            raise Failure(TIMEOUT, "no byte for the request timeout", self.pid) from None
        except OSError as e:
            raise Failure(MID if got_bytes else BEFORE,
                          errno.errorcode.get(e.errno, str(e)), self.pid) from None
        if not data:
            raise Failure(MID if got_bytes else BEFORE, "EOF", self.pid)
        return data

    def request(self, method, path, body=b"", close=False, rate=None):
        """Sends one request; returns (status, headers, body length, body CRC-32) and sets
        self.keep (the connection may carry another request). rate: read the body at most this
        many bytes a second."""
        head = f"{method} {path} HTTP/1.1\r\nHost: soak\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        try:
            self.sock.sendall(head.encode() + b"\r\n" + body)
        except socket.timeout:
            raise Failure(TIMEOUT, "sending the request", self.pid) from None
        except OSError as e:
            # The server may have answered (and closed) before taking the whole request: read
            # what it said, if anything.
            sent_error = errno.errorcode.get(e.errno, str(e))
            try:
                self.sock.settimeout(1)
                self.buf += self.sock.recv(65536)
            except OSError:
                pass
            if not self.buf.startswith(b"HTTP/"):
                raise Failure(BEFORE, f"sending: {sent_error}", self.pid) from None
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv(bool(self.buf))
            if len(self.buf) > 65536:
                raise Failure(STATUS, "response head over 64 KiB", self.pid)
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "x-pid" in headers:
            self.pid = int(headers["x-pid"])
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 200:
            raise Failure(STATUS, str(status), self.pid)
        if "content-length" not in headers:
            raise Failure(BODY, "no Content-Length", self.pid)
        left = int(headers["content-length"])
        size, crc = 0, 0
        started = time.monotonic()
        while left > 0:
            if self.buf:
                chunk, self.buf = self.buf[:left], self.buf[left:]
            else:
                chunk = self._recv(True, min(left, 16384 if rate else 65536))
            size += len(chunk)
            left -= len(chunk)
            crc = zlib.crc32(chunk, crc)
            if rate:
                ahead = size / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        self.answered += 1
        self.keep = not close and headers.get("connection", "").lower() != "close"
        return status, headers, size, crc


# --- well-behaved clients -----------------------------------------------------------------------


def crc_of(data):
    return zlib.crc32(data)


class Client(threading.Thread):
    """One well-behaved client: a loop of requests of one kind until told to stop."""

    def __init__(self, kind, port, record, args, stop, seed):
        super().__init__(name=f"client {kind}", daemon=True)
        self.kind, self.port, self.record, self.args, self.stop = kind, port, record, args, stop
        self.rng = random.Random(seed)
        self.conn = None

    def next_request(self):
        """(method, path, body, close, rate, expected (length, crc))."""
        a = self.args
        if self.kind == "keep-alive GET":
            return "GET", "/", b"", False, None, (len(HELLO_BODY), crc_of(HELLO_BODY))
        if self.kind == "new-connection GET":
            return "GET", "/", b"", True, None, (len(HELLO_BODY), crc_of(HELLO_BODY))
        if self.kind == "upload":
            # Sizes spread evenly on a log scale from 4 KiB to the largest upload.
            size = int(4096 * (a.upload_max / 4096) ** self.rng.random())
            body = UPLOAD[:size]
            answer = f"{size} {zlib.crc32(body)}\n".encode()
            return "POST", "/upload", body, False, None, (len(answer), crc_of(answer))
        return "GET", f"/big?n={a.slow_size}", b"", False, a.slow_rate, BIG_EXPECTED

    def exchange(self, req, fresh):
        method, path, body, close, rate, expected = req
        if fresh or self.conn is None:
            self.drop()
            self.conn = Conn(self.port, self.args.request_timeout)
        reused = self.conn.answered > 0
        try:
            _, _, size, crc = self.conn.request(method, path, body, close, rate)
        except Failure as f:
            f.reused = reused
            self.drop()
            raise
        if (size, crc) != expected:
            pid = self.conn.pid
            self.drop()
            raise Failure(BODY, f"{size} bytes crc {crc:08x}, expected {expected[0]} bytes", pid)
        if not self.conn.keep:
            self.drop()

    def drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self):
        try:
            while not self.stop.is_set():
                self.one(self.next_request())
                pause = self.rng.uniform(0, self.args.think)
                if self.kind != "new-connection GET" and self.rng.random() < 0.02:
                    pause += self.rng.uniform(1, 3)  # an idle spell on the keep-alive connection
                self.stop.wait(pause)
        finally:
            self.drop()

    def one(self, req):
        self.record.add(self.kind, "attempted")
        start = time.monotonic()
        try:
            try:
                self.exchange(req, fresh=False)
            except Failure as f:
                if f.cls != BEFORE or not f.reused:
                    raise
                self.record.retried(self.kind, f)
                self.exchange(req, fresh=True)
        except Failure as f:
            f.start, f.end = start, time.monotonic()
            self.record.fail(self.kind, f, self.record.lost_to_kill(f, self.args.kill_window))
            return
        self.record.answered(self.kind, time.monotonic() - start)


# --- attackers ----------------------------------------------------------------------------------


class Attacker(threading.Thread):
    """Holds --N sockets of one attack kind open, re-opening each one the server closes."""

    def __init__(self, kind, count, port, record, args, stop):
        super().__init__(name=f"attack {kind}", daemon=True)
        self.kind, self.count, self.port, self.record, self.args, self.stop = \
            kind, count, port, record, args, stop
        self.sel = selectors.DefaultSelector()
        self.socks = {}  # socket -> [opened (monotonic), next trickle byte due]

    def opening_bytes(self):
        if self.kind in ("stalled upload", "trickling upload"):
            return (b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 1000000\r\n\r\n"
                    b"x")
        if self.kind == "idle keep-alive":
            return b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"
        return b""

    def open_one(self):
        try:
            s = socket.create_connection((HOST, self.port), timeout=2)
            if data := self.opening_bytes():
                s.sendall(data)
            s.setblocking(False)
        except OSError:
            self.record.attack[self.kind]["failed to open"] += 1
            return False
        now = time.monotonic()
        self.socks[s] = [now, now + random.uniform(0, self.args.trickle_every)]
        self.sel.register(s, selectors.EVENT_READ)
        self.record.attack[self.kind]["opened"] += 1
        return True

    def close_one(self, s, by_server):
        opened, _ = self.socks.pop(s)
        self.sel.unregister(s)
        s.close()
        if by_server:
            self.record.attack[self.kind]["closed by server"] += 1
            self.record.attack_lifetimes[self.kind].append(time.monotonic() - opened)

    def run(self):
        try:
            while not self.stop.is_set():
                # Re-open what the server closed, for at most a second at a time.
                until = time.monotonic() + 1
                while len(self.socks) < self.count and time.monotonic() < until:
                    if not self.open_one() or self.stop.is_set():
                        break
                self.record.attack_held[self.kind] = len(self.socks)
                for key, _ in self.sel.select(timeout=0.5):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)  # an answer (408, say) is read and dropped
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self.close_one(s, by_server=True)
                if self.kind == "trickling upload":
                    now = time.monotonic()
                    for s, times in list(self.socks.items()):
                        if times[1] <= now:
                            times[1] = now + self.args.trickle_every
                            try:
                                s.send(b"x")
                            except OSError:
                                self.close_one(s, by_server=True)
        finally:
            for s in list(self.socks):
                self.close_one(s, by_server=False)
            self.sel.close()


# --- the operator -------------------------------------------------------------------------------


def schedule(duration, rng):
    """The operator's actions as (seconds from the start, action), sorted. A full run (1200 s)
    kills a worker every 30-60 s and sends HUP every ~2 min; a shorter one scales both down so
    that each action still happens. USR2 once at the middle; TTIN then TTOU twice. Nothing in
    the last 5% of the run, so the final readings are of a settled server."""
    end = duration * 0.95
    usr2 = duration * 0.5
    events = [(usr2, "USR2")]
    for at, what in ((0.2, "TTIN"), (0.3, "TTOU"), (0.65, "TTIN"), (0.8, "TTOU")):
        events.append((duration * at, what))
    hup_every = min(120.0, duration / 4)
    t = hup_every * 0.6
    while t < end:
        events.append((t, "HUP"))
        t += rng.uniform(0.85, 1.15) * hup_every
    most = min(60.0, duration / 5)
    t = rng.uniform(most / 2, most)
    while t < end:
        events.append((t, "KILL"))
        t += rng.uniform(most / 2, most)
    # Keep the rest 10 s away from the upgrade, whose handover a signal would only wait for.
    events = [(t, w) for t, w in events if w == "USR2" or abs(t - usr2) > 10]
    return sorted(events)


class Operator(threading.Thread):
    def __init__(self, tine, record, args, stop, rng):
        super().__init__(name="operator", daemon=True)
        self.tine, self.record, self.args, self.stop, self.rng = tine, record, args, stop, rng
        self.error = None
        self.upgrade = None  # (old master, when USR2 was sent) until the old master has exited

    def run(self):
        try:
            for at, what in schedule(self.args.duration, self.rng):
                while (left := at - self.record.elapsed()) > 0:
                    if self.stop.wait(min(1.0, left)):
                        return
                    self.watch_upgrade()
                getattr(self, what.lower())()
            while not self.stop.wait(1.0):
                self.watch_upgrade()
        except Exception as e:  # noqa: BLE001 - reported by the main thread, which stops
            self.error = e

    def watch_upgrade(self):
        """Records when the master an upgrade replaced has exited (once its workers drained)."""
        self.tine.reap()
        if self.upgrade and not self.tine.alive(self.upgrade[0]):
            old, began = self.upgrade
            self.upgrade = None
            self.record.action("USR2: old master exited",
                               f"master {old}, {time.monotonic() - began:.1f} s after USR2")

    def master(self):
        master = self.tine.master()
        if master is None or not self.tine.alive(master):
            raise HarnessError(f"no live master in {self.tine.pidfile}")
        return master

    def kill(self):
        workers = self.tine.workers()
        if not workers:
            self.record.action("kill -9", "no worker to kill")
            return
        pid = self.rng.choice(workers)
        self.record.killed(pid)
        if self.tine.signal(pid, signal.SIGKILL):
            self.record.action("kill -9", f"worker {pid} (of {len(workers)})")

    def send(self, sig, name):
        master = self.master()
        self.tine.signal(master, sig)
        self.record.action(name, f"master {master}")

    def hup(self):
        self.send(signal.SIGHUP, "HUP")

    def ttin(self):
        self.send(signal.SIGTTIN, "TTIN")

    def ttou(self):
        self.send(signal.SIGTTOU, "TTOU")

    def usr2(self):
        """SIGUSR2, then follows the pid file to the new master (bounded)."""
        old = self.master()
        began = time.monotonic()
        self.tine.signal(old, signal.SIGUSR2)
        self.record.action("USR2", f"master {old}")
        self.upgrade = (old, began)
        deadline = began + 90
        while time.monotonic() < deadline:
            pid = self.tine.master()
            if pid is not None and pid != old and self.tine.alive(pid):
                self.record.action("USR2: new master in the pid file",
                                   f"master {pid}, {time.monotonic() - began:.1f} s after USR2")
                return
            if self.stop.wait(0.2):
                return
            self.watch_upgrade()
        raise HarnessError(f"upgrade: no new master took over from {old} within 90 s "
                           f"(pid file: {self.tine.master()})")


# --- reporting ----------------------------------------------------------------------------------


def sample_memory(tine, record):
    master = tine.master()
    workers = tine.workers()
    mems = [m for m in (memory_kib(p) for p in workers) if m]
    master_mem = memory_kib(master) if master else None
    sample = (
        round(record.elapsed()), len(mems), sum(m[0] for m in mems), sum(m[1] for m in mems),
        max((m[1] for m in mems), default=0), master_mem[0] if master_mem else 0,
        master_mem[1] if master_mem else 0)
    with record.lock:
        record.memory.append(sample)
    return sample


def progress_line(record, sample):
    t = record.totals()
    held = sum(record.attack_held.values())
    _, n, rss, pss, _, mrss, mpss = sample
    return (f"t={sample[0]:>5}s attempted={t['attempted']} answered={t['answered']} "
            f"failed={t['failed']} retried={t['retried']} lost-to-kill={t['lost']} "
            f"workers={n} rss={rss / 1024:.1f}MiB pss={pss / 1024:.1f}MiB "
            f"master rss={mrss / 1024:.1f}MiB pss={mpss / 1024:.1f}MiB attack-conns={held}")


def table(header, rows, right=()):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def percentiles(seconds):
    """p50, p99 and the largest of an answered request's time, in ms (the slow readers' include
    their deliberate reading time)."""
    if not seconds:
        return ["-", "-", "-"]
    ordered = sorted(seconds)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return [f"{at(0.5) * 1000:.1f}", f"{at(0.99) * 1000:.1f}", f"{ordered[-1] * 1000:.1f}"]


def git_describe():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def log_summary(text):
    """Counts of the error log's WARN and ERROR lines, by message with the numbers taken out."""
    found = collections.Counter()
    for line in text.splitlines():
        m = re.match(r"\S+ (WARN|ERROR) +(.*)", line)
        if m:
            found[(m.group(1), re.sub(r"\d+", "N", m.group(2))[:160])] += 1
    return found


def summary(record, tine, args, started_at, wall):
    mib = lambda kib: f"{kib / 1024:.1f}"  # noqa: E731
    out = [
        f"## Soak: {args.duration} s of mixed traffic, attacks and operator signals",
        "",
        f"- {started_at:%Y-%m-%d %H:%M} UTC, {wall:.0f} s wall; {os.cpu_count()} CPUs, load "
        f"average {record.load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
        f"tine {tine.binary} (checkout at git {git_describe()}); `bench/soak.py "
        f"{' '.join(sys.argv[1:])}`",
        f"- tine: {args.workers} workers x {args.threads} threads, WSGI (a stdlib app that "
        f"names its worker), graceful_timeout {args.graceful_timeout}s, other settings default",
        f"- clients: {args.keepalive} keep-alive GET, {args.newconn} new-connection GET, "
        f"{args.uploads} upload (4 KiB-{args.upload_max // 1024} KiB), {args.slow} slow reader "
        f"({args.slow_size // 1024} KiB at {args.slow_rate // 1024} KiB/s); "
        f"think time up to {args.think * 1000:.0f} ms, a 1-3 s idle spell 2% of the time",
        f"- attackers held at once: {args.stalled} stalled uploads, {args.trickle} trickling "
        f"uploads (a byte every {args.trickle_every:g} s), {args.silent} silent, "
        f"{args.idle} idle keep-alive",
        "",
        "### Requests",
        "",
    ]
    rows, total = [], collections.Counter()
    for kind in CLIENT_KINDS:
        c = record.count[kind]
        total.update(c)
        rows.append([kind] + [c[k] for k in ("attempted", "answered", "failed", "retried", "lost")]
                    + percentiles(record.latency[kind]))
    rows.append(["**total**"] + [f"**{total[k]}**" for k in
                                 ("attempted", "answered", "failed", "retried", "lost")]
                + ["", "", ""])
    out.append(table(["client", "attempted", "answered", "failed", "retried on a new connection",
                      "lost to kill -9", "p50 ms", "p99 ms", "max ms"], rows,
                     right=range(1, 9)))
    for title, counter in (("Failures", record.classes), ("Lost to kill -9", record.lost_classes)):
        if counter:
            out += ["", f"### {title} by class", ""]
            out.append(table(["client", "class", "detail", "count"],
                             [[k, c, d, n] for (k, c, d), n in sorted(
                                 counter.items(), key=lambda item: (
                                     CLIENT_KINDS.index(item[0][0]), CLASSES.index(item[0][1]),
                                     item[0][2]))],
                             right=(3,)))
    if record.retry_causes:
        out += ["", "### Retries on a new connection, by what ended the reused one", ""]
        out.append(table(["client", "before any response byte", "count"],
                         [[k, d, n] for (k, d), n in sorted(
                             record.retry_causes.items(),
                             key=lambda item: (CLIENT_KINDS.index(item[0][0]), item[0][1]))],
                         right=(2,)))
    if record.examples:
        out += ["", "The first failures:", ""]
        out += [f"- t={t} s, {kind}: {cls} ({detail}), worker {pid or 'unknown'}"
                for t, kind, cls, detail, pid in record.examples]
    out += ["", "### Operator actions", ""]
    out.append(table(["t (s)", "action", "detail"], record.actions, right=(0,)))
    out += ["", "### Memory over time (/proc/PID/smaps_rollup)", ""]
    rows = [[t, n, mib(rss), mib(pss), mib(big), mib(mrss), mib(mpss)]
            for t, n, rss, pss, big, mrss, mpss in record.memory]
    out.append(table(["t (s)", "workers (draining ones too)", "workers RSS MiB", "workers PSS MiB",
                      "largest worker PSS MiB", "master RSS MiB", "master PSS MiB"], rows,
                     right=range(7)))
    out += ["", "### Attackers", ""]
    rows = []
    for kind in ATTACK_KINDS:
        c, lives = record.attack[kind], sorted(record.attack_lifetimes[kind])
        median = f"{lives[len(lives) // 2]:.1f}" if lives else "-"
        rows.append([kind, c["opened"], c["closed by server"], median, c["failed to open"]])
    out.append(table(["attack", "connections opened", "closed by the server",
                      "median life when closed (s)", "failed to open"], rows, right=range(1, 5)))
    found = log_summary(tine.log_text())
    if found:
        out += ["", "### tine's error log: WARN and ERROR lines (numbers as N)", ""]
        out.append(table(["level", "message", "count"],
                         [[lvl, msg.replace("|", "\\|"), n]
                          for (lvl, msg), n in found.most_common(15)], right=(2,)))
    verdict = "PASS" if total["failed"] == 0 else "FAIL"
    out += ["", f"**{verdict}**: {total['failed']} failed requests from well-behaved clients "
                f"({total['lost']} lost to kill -9, {total['retried']} retried) of "
                f"{total['attempted']} attempted.", ""]
    return "\n".join(out)


# --- main ---------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tine", help="the tine binary (default target/release/tine, built when "
                                  "missing)")
    p.add_argument("--duration", type=int, default=1200, help="seconds of traffic (default 1200)")
    p.add_argument("--report-every", type=float, default=30, help="seconds between progress "
                                                                  "lines (default 30)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--graceful-timeout", type=int, default=30)
    p.add_argument("--keepalive", type=int, default=4, help="keep-alive GET clients")
    p.add_argument("--newconn", type=int, default=2, help="new-connection GET clients")
    p.add_argument("--uploads", type=int, default=2, help="upload clients")
    p.add_argument("--slow", type=int, default=2, help="slow readers")
    p.add_argument("--upload-max", type=int, default=2 * MIB, help="largest upload, bytes")
    p.add_argument("--slow-size", type=int, default=4 * MIB, help="slow readers' response size")
    p.add_argument("--slow-rate", type=int, default=512 * 1024, help="slow readers' bytes/s")
    p.add_argument("--think", type=float, default=0.02, help="most seconds between a client's "
                                                             "requests")
    p.add_argument("--request-timeout", type=float, default=30,
                   help="seconds of silence after which a request has timed out")
    p.add_argument("--kill-window", type=float, default=1.0)
    p.add_argument("--stalled", type=int, default=24)
    p.add_argument("--trickle", type=int, default=24)
    p.add_argument("--trickle-every", type=float, default=10)
    p.add_argument("--silent", type=int, default=24)
    p.add_argument("--idle", type=int, default=200)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--markdown", default=os.path.join(ROOT, "bench", "results", "soak-latest.md"))
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (config, logs)")
    args = p.parse_args()
    if args.duration < 20:
        p.error("--duration must be at least 20 s")
    return args


def find_tine(args):
    if args.tine:
        if not os.access(args.tine, os.X_OK):
            raise HarnessError(f"{args.tine} is not an executable")
        return os.path.abspath(args.tine)
    binary = os.path.join(ROOT, "target", "release", "tine")
    if not os.access(binary, os.X_OK):
        log("target/release/tine is missing: cargo build --release")
        try:
            subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True, timeout=1800)
        except (OSError, subprocess.SubprocessError) as e:
            raise HarnessError(f"cargo build --release failed: {e}") from None
    return binary


UPLOAD = b""
BIG_EXPECTED = None


def main():
    global UPLOAD, BIG_EXPECTED
    args = parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    UPLOAD = random.Random(seed).randbytes(args.upload_max)
    big = (BLOCK * (args.slow_size // len(BLOCK) + 1))[:args.slow_size]
    BIG_EXPECTED = (len(big), zlib.crc32(big))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attackers hold many sockets

    # SIGTERM stops the soak the way Ctrl-C does: through the finally below.
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    stop_clients, stop_attack, stop_operator = (threading.Event() for _ in range(3))
    threads = []
    tmp = tempfile.mkdtemp(prefix="tine-soak-")
    tine = None
    record = Record()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    failed = None
    try:
        tine = Tine(find_tine(args), tmp, args)
        log(f"seed {seed}; temp dir {tmp}")
        tine.start()
        record.t0 = time.monotonic()  # the clock starts with the traffic
        record.load = os.getloadavg()
        operator = Operator(tine, record, args, stop_operator, rng)
        for kind, n in zip(CLIENT_KINDS, (args.keepalive, args.newconn, args.uploads, args.slow)):
            threads += [Client(kind, tine.port, record, args, stop_clients, rng.random())
                        for _ in range(n)]
        for kind, n in zip(ATTACK_KINDS, (args.stalled, args.trickle, args.silent, args.idle)):
            if n:
                threads.append(Attacker(kind, n, tine.port, record, args, stop_attack))
        for t in threads:
            t.start()
        operator.start()
        next_report = args.report_every
        while record.elapsed() < args.duration:
            time.sleep(min(1.0, max(0.0, args.duration - record.elapsed())))
            if operator.error:
                raise HarnessError(f"operator: {operator.error}")
            master = tine.master()
            tine.reap()
            if master is None or not tine.alive(master):
                time.sleep(2)  # an upgrade may be swapping the pid file
                master = tine.master()
                if master is None or not tine.alive(master):
                    raise HarnessError("tine's master is gone; its log:\n"
                                       + tine.log_text()[-3000:])
            if record.elapsed() >= next_report:
                print(progress_line(record, sample_memory(tine, record)), flush=True)
                next_report += args.report_every
        stop_operator.set()
        operator.join(timeout=100)
        if operator.upgrade:
            record.action("USR2: old master still draining at the end", f"master "
                          f"{operator.upgrade[0]}, {time.monotonic() - operator.upgrade[1]:.1f} s "
                          "after USR2")
        stop_clients.set()
        # Clients finish the request they are making: a retry, each within the timeout.
        deadline = time.monotonic() + args.request_timeout * 2 + args.slow_size / args.slow_rate
        for t in threads:
            if isinstance(t, Client):
                t.join(timeout=max(1.0, deadline - time.monotonic()))
        print(progress_line(record, sample_memory(tine, record)), flush=True)
        wall = record.elapsed()
        stop_attack.set()
        for t in threads:
            t.join(timeout=5)
        text = summary(record, tine, args, started_at, wall)
        print("\n" + text)
        if args.markdown:
            os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
            with open(args.markdown, "w") as f:
                f.write(text)
            log(f"summary written to {args.markdown}")
        failed = record.totals()["failed"]
    except HarnessError as e:
        log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        log("interrupted; stopping")
        return 2
    finally:
        # A second Ctrl-C must not cut the stopping short: it is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for ev in (stop_operator, stop_clients, stop_attack):
            ev.set()
        if tine is not None:
            tine.stop()
        for t in threads:
            t.join(timeout=5)
        if args.keep_tmp or (failed != 0 and tine is not None and tine.proc is not None):
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
