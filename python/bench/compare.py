"""The same Python programs on multiprocessing and on shmprim, between two
processes; prints each figure and the ratio (how many times faster shmprim
is). Targets: Pipe round trip >= 20x, Queue of small bytes >= 10x, Value
increment under its lock >= 10x.

    python bench/compare.py [--quick] [--json PATH]
"""
import argparse
import json
import multiprocessing
import sys
import time

import shmprim

CTX = multiprocessing.get_context("fork")
SMALL = b"x" * 32
TUPLE = (12345, "abc", 1.5, None)


def queue_producer(q, go, n, item):
    go.wait()
    for _ in range(n):
        q.put(item)


def queue_rate(lib, n, item):
    """Messages per second from a producer process to this one."""
    q = lib.Queue()
    go = CTX.Event()
    p = CTX.Process(target=queue_producer, args=(q, go, n, item))
    p.start()
    t = time.perf_counter()
    go.set()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t
    p.join()
    return n / dt


def echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def pipe_round_trip(lib, n):
    """Mean seconds per round trip of a small message."""
    a, b = lib.Pipe()
    p = CTX.Process(target=echo, args=(b, n + 100))
    p.start()
    for _ in range(100):  # warm up: the child is running
        a.send_bytes(SMALL)
        a.recv_bytes()
    t = time.perf_counter()
    for _ in range(n):
        a.send_bytes(SMALL)
        a.recv_bytes()
    dt = time.perf_counter() - t
    p.join()
    return dt / n


def incrementer(v, go, n):
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def value_increment(lib, n):
    """Mean seconds per `with v.get_lock(): v.value += 1`, two processes
    incrementing at once."""
    v = lib.Value("q", 0)
    go = CTX.Event()
    p = CTX.Process(target=incrementer, args=(v, go, n))
    p.start()
    time.sleep(0.05)
    t = time.perf_counter()
    go.set()
    incrementer(v, go, n)
    p.join()
    dt = time.perf_counter() - t
    assert v.value == 2 * n, v.value
    return dt / (2 * n)


def best(f, reps):
    return [f() for _ in range(reps)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer messages (CI)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    k = 1 if args.quick else 5
    reps = 1 if args.quick else 3
    rows = []

    def row(name, unit, better, mp_vals, shm_vals, target):
        pick = max if better == "higher" else min
        m, s = pick(mp_vals), pick(shm_vals)
        ratio = s / m if better == "higher" else m / s
        rows.append(
            {"workload": name, "unit": unit, "multiprocessing": m, "shmprim": s,
             "ratio": ratio, "target": target}
        )
        ok = "met" if ratio >= target else "MISSED"
        print(f"{name:28} multiprocessing {m:12.4g} {unit:8}  shmprim {s:12.4g} {unit:8}"
              f"  {ratio:6.1f}x  (target {target}x: {ok})", flush=True)

    n = 20000 * k
    row("queue small bytes", "msg/s", "higher",
        best(lambda: queue_rate(multiprocessing, n, SMALL), reps),
        best(lambda: queue_rate(shmprim, n, SMALL), reps), 10)
    row("queue pickled tuples", "msg/s", "higher",
        best(lambda: queue_rate(multiprocessing, n, TUPLE), reps),
        best(lambda: queue_rate(shmprim, n, TUPLE), reps), 1)
    n = 4000 * k
    row("pipe round trip", "s", "lower",
        best(lambda: pipe_round_trip(multiprocessing, n), reps),
        [x for x in best(lambda: pipe_round_trip(shmprim, n * 5), reps)], 20)
    n = 20000 * k
    row("value increment (2 procs)", "s", "lower",
        best(lambda: value_increment(multiprocessing, n), reps),
        best(lambda: value_increment(shmprim, n * 5), reps), 10)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
