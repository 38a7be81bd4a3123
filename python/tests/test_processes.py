"""Objects shared with child processes under every start method, through
multiprocessing's own Process and Pool; children killed at bad moments."""
import multiprocessing
import os
import queue
import signal
import time

import pytest

import shmprim
from shmprim.shared_memory import SharedMemory

METHODS = [m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]


def child_uses_everything(q, jq, conn, v, arr, lock, ev, sem, cond, bar, shm_name):
    q.put(("from child", os.getpid()))
    conn.send(conn.recv() + 1)
    with v.get_lock():
        v.value += 1
    arr[1:3] = [10, 20]
    with lock:
        pass
    sem.release()
    with cond:
        cond.notify()
    item = jq.get()
    jq.put(item * 2)
    jq.task_done()
    m = SharedMemory(shm_name)
    m.buf[0] = 99
    m.close()
    bar.wait()
    ev.set()


@pytest.mark.parametrize("method", METHODS)
def test_objects_reach_child(method):
    ctx = multiprocessing.get_context(method)
    q, jq = shmprim.Queue(), shmprim.JoinableQueue()
    parent, child = shmprim.Pipe()
    v = shmprim.Value("i", 41)
    arr = shmprim.Array("i", 4)
    lock, ev, sem = shmprim.Lock(), shmprim.Event(), shmprim.Semaphore(0)
    cond, bar = shmprim.Condition(), shmprim.Barrier(2, timeout=30)
    m = SharedMemory(create=True, size=8)
    try:
        jq.put(21)
        p = ctx.Process(
            target=child_uses_everything,
            args=(q, jq, child, v, arr, lock, ev, sem, cond, bar, m.name),
        )
        p.start()
        child.close()
        parent.send(1)
        assert parent.recv() == 2
        assert q.get(timeout=30)[0] == "from child"
        assert sem.acquire(timeout=30)
        assert bar.wait() in (0, 1)
        assert ev.wait(30)
        assert jq.get(timeout=30) == 42
        jq.task_done()
        jq.join()
        p.join(30)
        assert p.exitcode == 0
        assert v.value == 42
        assert arr[:] == [0, 10, 20, 0]
        assert m.buf[0] == 99
        with pytest.raises(EOFError):
            parent.recv()
    finally:
        m.close()
        m.unlink()


def square_into(args):
    total, x = args
    with total.get_lock():
        total.value += x
    return x * x


@pytest.mark.parametrize("method", METHODS)
def test_pool_map_with_value(method):
    total = shmprim.Value("q", 0)
    with multiprocessing.get_context(method).Pool(2) as pool:
        out = pool.map(square_into, [(total, x) for x in range(30)])
    assert out == [x * x for x in range(30)]
    assert total.value == sum(range(30))


def put_big(q, k):
    for i in range(5):
        q.put((k, i, bytes([k]) * 100_000))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_large_messages_between_processes(method):
    q = shmprim.Queue(4)
    ctx = multiprocessing.get_context(method)
    ps = [ctx.Process(target=put_big, args=(q, k)) for k in range(3)]
    for p in ps:
        p.start()
    got = sorted((k, i) for k, i, b in (q.get(timeout=30) for _ in range(15)) if b == bytes([k]) * 100_000)
    for p in ps:
        p.join(30)
    assert got == sorted((k, i) for k in range(3) for i in range(5))


def use_end(conn, out):
    try:
        conn.send(1)
        out.put("sent")
    except OSError as e:
        out.put(str(e))


def test_end_used_by_parent_is_refused_in_spawn_child():
    if "spawn" not in METHODS:
        pytest.skip("no spawn")
    a, b = shmprim.Pipe()
    a.send(0)  # the parent uses end a: it is the parent's now
    out = shmprim.Queue()
    p = multiprocessing.get_context("spawn").Process(target=use_end, args=(a, out))
    p.start()
    msg = out.get(timeout=30)
    p.join(30)
    assert "already used by another process" in msg


# ---- children killed -------------------------------------------------------

FORK = multiprocessing.get_context("fork")


def hold_then_hang(lock, ready):
    lock.acquire()
    ready.set()
    time.sleep(60)


def kill(p):
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert p.exitcode == -signal.SIGKILL


def test_child_killed_holding_lock():
    lock, ready = shmprim.Lock(), shmprim.Event()
    p = FORK.Process(target=hold_then_hang, args=(lock, ready))
    p.start()
    assert ready.wait(30)
    assert not lock.acquire(timeout=0.05)
    kill(p)
    t = time.monotonic()
    with pytest.raises(shmprim.OwnerDiedError):
        lock.acquire(timeout=10)
    assert time.monotonic() - t < 5
    # The lock was handed over: this thread holds it.
    assert not lock.acquire(False)
    lock.release()
    with lock:
        pass


def test_child_killed_holding_value_lock():
    v, ready = shmprim.Value("i", 7), shmprim.Event()
    p = FORK.Process(target=hold_then_hang, args=(v.get_lock(), ready))
    p.start()
    assert ready.wait(30)
    kill(p)
    with pytest.raises(shmprim.OwnerDiedError):
        v.value
    assert v.value == 7  # marked consistent and released: the retry works
    with v.get_lock():
        v.value += 1
    assert v.value == 8


def test_child_killed_holding_condition():
    cond, ready = shmprim.Condition(), shmprim.Event()
    p = FORK.Process(target=hold_then_hang, args=(cond, ready))
    p.start()
    assert ready.wait(30)
    kill(p)
    with pytest.raises(shmprim.OwnerDiedError):
        cond.acquire(timeout=10)
    # Held by this thread now: it can wait and notify, then release.
    assert cond.wait(0.01) is False
    cond.notify_all()
    cond.release()
    with cond:
        pass


def block_in(f, ready):
    ready.set()
    f()


def test_child_killed_blocked_in_get():
    q, ready = shmprim.Queue(), shmprim.Event()
    p = FORK.Process(target=block_in, args=(q.get, ready))
    p.start()
    assert ready.wait(30)
    time.sleep(0.1)
    kill(p)
    q.put("after")
    assert q.get(timeout=5) == "after"
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_child_killed_blocked_in_recv():
    parent, child = shmprim.Pipe()
    ready = shmprim.Event()
    p = FORK.Process(target=block_in, args=(child.recv, ready))
    p.start()
    child.close()
    assert ready.wait(30)
    time.sleep(0.1)
    kill(p)
    with pytest.raises(EOFError):
        parent.recv()


def test_child_killed_waiting_on_semaphore():
    sem, ready = shmprim.Semaphore(0), shmprim.Event()
    p = FORK.Process(target=block_in, args=(sem.acquire, ready))
    p.start()
    assert ready.wait(30)
    time.sleep(0.1)
    kill(p)
    sem.release()
    assert sem.acquire(timeout=5)
