#!/usr/bin/env python3
"""How a worker's event loop should hand messages to the asyncio loop of an ASGI application:
tine's way (an inbox under a lock, an eventfd written only when the inbox was empty, the
asyncio loop watching it with ``add_reader`` and draining the whole inbox per wake-up) against
``loop.call_soon_threadsafe`` once per message, the usual way.

Both producers here are Python threads (tine's is a Rust thread that never takes the GIL), so
the numbers compare what the asyncio side pays per message, and the wake-ups it takes, not
tine's absolute cost. Standard library only; uvloop is used too when it imports.

Usage: python3 bench/asgi_wakeup.py [MESSAGES] [BURST]
  MESSAGES  messages per run (default 200000)
  BURST     messages the producer sends before it waits for them all to be handled
            (default: 1 and 32, both)
Prints one line per loop, mode and burst: messages per second, µs per message, and
wake-ups (eventfd reads or callbacks run) per message.
"""

import asyncio
import os
import sys
import threading
import time


def produce_and_run(loop, messages, burst, send, batch_done):
    """Runs ``loop`` while a thread sends ``messages`` with ``send``, ``burst`` at a time,
    waiting for ``batch_done`` after each burst; returns the seconds it took."""

    def produce():
        for start in range(0, messages, burst):
            batch_done.clear()
            for i in range(start, min(start + burst, messages)):
                send(i)
            batch_done.wait()
        loop.call_soon_threadsafe(loop.stop)

    producer = threading.Thread(target=produce)
    started = time.perf_counter()
    producer.start()
    loop.run_forever()
    took = time.perf_counter() - started
    producer.join()
    return took


def run_inbox(loop, messages, burst):
    """tine's way: inbox + eventfd + add_reader, drained in batches."""
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    inbox = []
    lock = threading.Lock()
    handled = 0
    wakeups = 0
    batch_done = threading.Event()

    def drain():
        nonlocal handled, wakeups, inbox
        wakeups += 1
        try:
            os.eventfd_read(efd)
        except BlockingIOError:
            pass
        with lock:
            taken, inbox = inbox, []
        for _ in taken:
            handled += 1
            if handled % burst == 0:
                batch_done.set()

    def send(message):
        with lock:
            was_empty = not inbox
            inbox.append(message)
        if was_empty:
            os.eventfd_write(efd, 1)

    loop.add_reader(efd, drain)
    took = produce_and_run(loop, messages, burst, send, batch_done)
    loop.remove_reader(efd)
    os.close(efd)
    return took, wakeups


def run_threadsafe(loop, messages, burst):
    """``call_soon_threadsafe`` per message."""
    handled = 0
    batch_done = threading.Event()

    def handle(_message):
        nonlocal handled
        handled += 1
        if handled % burst == 0:
            batch_done.set()

    def send(message):
        loop.call_soon_threadsafe(handle, message)

    took = produce_and_run(loop, messages, burst, send, batch_done)
    return took, messages


def loops():
    yield "asyncio", asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        return
    yield f"uvloop {uvloop.__version__}", uvloop.new_event_loop


def main():
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    bursts = [int(sys.argv[2])] if len(sys.argv) > 2 else [1, 32]
    print(f"python {sys.version.split()[0]}, {messages} messages a run")
    print(f"{'loop':<16} {'mode':<22} {'burst':>5} {'msgs/s':>10} {'µs/msg':>8} {'wakeups/msg':>12}")
    for name, new_loop in loops():
        for burst in bursts:
            for mode, run in (("inbox+eventfd", run_inbox), ("call_soon_threadsafe", run_threadsafe)):
                loop = new_loop()
                try:
                    took, wakeups = run(loop, messages, burst)
                finally:
                    loop.close()
                print(
                    f"{name:<16} {mode:<22} {burst:>5} {messages / took:>10.0f} "
                    f"{took / messages * 1e6:>8.2f} {wakeups / messages:>12.3f}"
                )


if __name__ == "__main__":
    main()
