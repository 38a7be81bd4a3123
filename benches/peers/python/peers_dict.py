"""W8 for the peers suite: shared dicts in Python, ops/s.

    peers_dict.py manager MODE N PROCS VSIZE   Manager().dict()
    peers_dict.py ultradict MODE N PROCS VSIZE UltraDict (exit 3 if absent)

MODE is get, set or mix (90 % get). 8-byte keys, VSIZE-byte values, 1000
keys. Prints the aggregate operations per second of PROCS processes.
"""
import multiprocessing as mp
import sys
import time

KEYS = [i.to_bytes(8, "little") for i in range(1000)]


def work(d, mode, n, vsize, ready, go, out):
    v = b"v" * vsize
    ready.release()
    go.wait()
    t = time.perf_counter()
    for i in range(n):
        k = KEYS[i % len(KEYS)]
        if mode == "get" or (mode == "mix" and i % 10):
            d[k]
        else:
            d[k] = v
    out.put(time.perf_counter() - t)


def run(d, mode, n, procs, vsize):
    v = b"v" * vsize
    for k in KEYS:
        d[k] = v
    ready, go, out = mp.Semaphore(0), mp.Event(), mp.Queue()
    ps = [mp.Process(target=work, args=(d, mode, n, vsize, ready, go, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.acquire()
    go.set()
    secs = max(out.get() for _ in ps)
    for p in ps:
        p.join()
    print(procs * n / secs)


if __name__ == "__main__":
    system, mode = sys.argv[1], sys.argv[2]
    n, procs, vsize = (int(a) for a in sys.argv[3:6])
    if system == "manager":
        with mp.Manager() as m:
            run(m.dict(), mode, n, procs, vsize)
    else:
        try:
            from UltraDict import UltraDict
        except ImportError:
            sys.exit(3)
        d = UltraDict(shared_lock=True, buffer_size=1 << 20, full_dump_size=1 << 24)
        try:
            run(d, mode, n, procs, vsize)
        finally:
            d.unlink()
