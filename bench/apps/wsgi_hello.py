"""The plain WSGI (PEP 3333) application bench/wsgi.sh serves, one route per scenario:

  GET /          `Hello, World!` (text/plain, with its Content-Length): wsgi-hello
  GET /sleep     `time.sleep(0.05)`, then `slept 50 ms`: wsgi-sleep, an I/O-bound request
                 (the GIL is released while it sleeps), whose ceiling is threads / 0.05 s
  GET /cpu?n=N   a pure-Python loop of N turns, then its result: wsgi-cpu, a CPU-bound request
                 (the GIL is held throughout); bench/wsgi.sh calibrates N to about 1 ms

Anything else is a 404. Serve it as `wsgi_hello:app` with this directory on the Python path.

`python wsgi_hello.py calibrate MS` prints the N whose loop takes about MS milliseconds here
(the fastest of 15 timings, so that other work on the machine skews it less).
"""

import sys
import time
from urllib.parse import parse_qs

SLEEP_S = 0.05
HELLO = b"Hello, World!"
SLEPT = f"slept {round(SLEEP_S * 1000)} ms".encode()
NOT_FOUND = b"Not Found"


def text(body):
    return [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]


HELLO_HEADERS = text(HELLO)
SLEPT_HEADERS = text(SLEPT)


def spin(n):
    """Pure-Python work: n turns of a loop the interpreter cannot skip."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/":
        start_response("200 OK", HELLO_HEADERS)
        return [HELLO]
    if path == "/sleep":
        time.sleep(SLEEP_S)
        start_response("200 OK", SLEPT_HEADERS)
        return [SLEPT]
    if path == "/cpu":
        try:
            n = int(parse_qs(environ.get("QUERY_STRING", "")).get("n", ["0"])[0])
        except ValueError:
            n = -1
        if n >= 0:
            body = str(spin(n)).encode()
            start_response("200 OK", text(body))
            return [body]
    start_response("404 Not Found", text(NOT_FOUND))
    return [NOT_FOUND]


def calibrate(ms):
    """The loop count whose spin() takes about ms milliseconds on this machine."""
    probe = 20000
    while True:
        best = min(timed(probe) for _ in range(15))
        if best >= 0.005:
            break
        probe *= 4
    return max(1, round(probe * (ms / 1000) / best))


def timed(n):
    start = time.perf_counter()
    spin(n)
    return time.perf_counter() - start


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "calibrate":
        sys.exit("usage: wsgi_hello.py calibrate MILLISECONDS")
    print(calibrate(float(sys.argv[2])))
