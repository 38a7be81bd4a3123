"""Python multiprocessing peers for shmprim's comparative suite.

Run by `cargo bench --bench peers` (never on its own, though it can be):

    python3 peers_mp.py w1 N          8-byte Pipe ping-pong: N round-trip times in ns
    python3 peers_mp.py stream N SIZE  Pipe streaming of N messages of SIZE bytes: ns/message
    python3 peers_mp.py w4 N PROCS     Value('Q') += 1 under its lock by PROCS processes: ns/op
    python3 peers_mp.py w5 N           Queue, 2 producers x N messages of 64 bytes, 2 consumers: messages/s
    python3 peers_mp.py start M N      Process start+join with start method M (0 fork, 1 spawn, 2 forkserver): ns each
    python3 peers_mp.py pool K T N     a 2-worker pool (K 0 Pool, 1 ProcessPoolExecutor), task T
                                       (0 apply: median ns; 1 map chunksize 1, 2 map default: tasks/s)

Each mode prints its figures on one line. Processes are forked (the Linux
default start method); timing starts once every worker is running.
"""

import multiprocessing as mp
import sys
import time


def echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def w1(n):
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b, n))
    p.start()
    out = []
    msg = b"\0" * 8
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        a.send_bytes(msg)
        a.recv_bytes()
        out.append(clock() - t)
    p.join()
    print(" ".join(map(str, out)))


def producer(conn, n, size):
    msg = b"x" * size
    for _ in range(n):
        conn.send_bytes(msg)


def stream(n, size):
    a, b = mp.Pipe(duplex=False)
    p = mp.Process(target=producer, args=(b, n, size))
    buf = bytearray(size)
    t = time.perf_counter_ns()
    p.start()
    for _ in range(n):
        a.recv_bytes_into(buf)
    dt = time.perf_counter_ns() - t
    p.join()
    print(dt / n)


def incr(v, n, ready, go):
    ready.release()
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def w4(n, procs):
    v = mp.Value("Q", 0)
    ready, go = mp.Semaphore(0), mp.Event()
    ps = [mp.Process(target=incr, args=(v, n, ready, go)) for _ in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.acquire()
    t = time.perf_counter_ns()
    go.set()
    for p in ps:
        p.join()
    dt = time.perf_counter_ns() - t
    assert v.value == n * procs, "lost increments"
    print(dt / (n * procs))


def put(q, n, ready, go):
    ready.release()
    go.wait()
    m = b"x" * 64
    for _ in range(n):
        q.put(m)
    q.put(None)


def get(q, got, ready, go):
    ready.release()
    go.wait()
    k = 0
    while q.get() is not None:
        k += 1
    with got.get_lock():
        got.value += k


def w5(n):
    q, got = mp.Queue(1024), mp.Value("Q", 0)
    ready, go = mp.Semaphore(0), mp.Event()
    ps = [mp.Process(target=put, args=(q, n, ready, go)) for _ in range(2)]
    ps += [mp.Process(target=get, args=(q, got, ready, go)) for _ in range(2)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.acquire()
    t = time.perf_counter_ns()
    go.set()
    for p in ps:
        p.join()
    dt = time.perf_counter_ns() - t
    assert got.value == 2 * n, "lost messages"
    print(2 * n * 1e9 / dt)


def noop():
    pass


def start(method, n):
    ctx = mp.get_context(["fork", "spawn", "forkserver"][method])
    p = ctx.Process(target=noop)  # warm-up (starts the forkserver)
    p.start()
    p.join()
    t = time.perf_counter_ns()
    for _ in range(n):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    print((time.perf_counter_ns() - t) / n)


def ident(x):
    return x


def pool(kind, task, n):
    from concurrent.futures import ProcessPoolExecutor

    p = mp.Pool(2) if kind == 0 else ProcessPoolExecutor(2)
    apply = p.apply if kind == 0 else (lambda f, a: p.submit(f, *a).result())
    for i in range(4):  # warm-up: both workers running
        apply(ident, (i,))
    clock = time.perf_counter_ns
    if task == 0:
        out = []
        for i in range(n):
            t = clock()
            apply(ident, (i,))
            out.append(clock() - t)
        out.sort()
        print(out[len(out) // 2])
    else:
        chunk = {} if task == 2 else {"chunksize": 1}
        t = clock()
        r = list(p.map(ident, range(n), **chunk))
        dt = clock() - t
        assert r == list(range(n)), "wrong results"
        print(n * 1e9 / dt)
    if kind == 0:
        p.close()
        p.join()
    else:
        p.shutdown()


if __name__ == "__main__":
    mode, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    {"w1": w1, "stream": stream, "w4": w4, "w5": w5, "start": start, "pool": pool}[mode](*args)
