"""Each object's behaviour as multiprocessing documents it, in one process
(and its threads)."""
import ctypes
import os
import pickle
import queue
import signal
import threading
import time

import pytest

import shmprim
from shmprim.shared_memory import SharedMemory


# ---- Queue -----------------------------------------------------------------


def test_queue_fifo_and_objects():
    q = shmprim.Queue()
    items = [b"raw", "text", 42, (1, 2.5, None), {"k": [1, 2]}, b"", bytearray(b"ba")]
    for x in items:
        q.put(x)
    assert q.qsize() == len(items)
    assert not q.empty()
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_queue_large_messages_spill():
    q = shmprim.Queue()
    big = os.urandom(1 << 20)
    q.put(big)
    q.put(list(range(10000)))
    assert q.get() == big
    assert q.get() == list(range(10000))


def test_queue_empty_full_timeouts():
    q = shmprim.Queue(2)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    t = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    assert time.monotonic() - t >= 0.09
    q.put(1)
    q.put(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    assert q.get() == 1


def test_queue_close_is_local():
    q = shmprim.Queue()
    other = pickle.loads(pickle.dumps(q))
    q.close()
    q.join_thread()
    with pytest.raises(ValueError):
        q.put(1)
    other.put(1)
    assert other.get() == 1


def test_queue_threads_and_gil_released():
    q = shmprim.Queue()
    got = []

    def consumer():
        for _ in range(1000):
            got.append(q.get())

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(1000):
        q.put(i)
    t.join(10)
    assert got == list(range(1000))


def test_joinable_queue():
    q = shmprim.JoinableQueue()
    for i in range(3):
        q.put(i)
    done = threading.Event()

    def worker():
        for _ in range(3):
            q.get()
            q.task_done()
        done.set()

    threading.Thread(target=worker).start()
    q.join()
    assert done.wait(5)
    with pytest.raises(ValueError):
        q.task_done()
    assert isinstance(pickle.loads(pickle.dumps(q)), shmprim.JoinableQueue)


def test_simple_queue():
    q = shmprim.SimpleQueue()
    assert q.empty()
    q.put(("a", 1))
    assert not q.empty()
    assert q.get() == ("a", 1)
    q.close()


# ---- Pipe ------------------------------------------------------------------


def test_pipe_duplex_objects_and_bytes():
    a, b = shmprim.Pipe()
    a.send({"x": 1})
    assert b.recv() == {"x": 1}
    b.send_bytes(b"hello world", 6, 5)
    assert a.recv_bytes() == b"world"
    a.send_bytes(memoryview(b"abcdef")[1:4])
    assert b.recv_bytes() == b"bcd"
    assert not a.poll()
    b.send(None)
    assert a.poll(0.5)
    assert a.recv() is None
    with pytest.raises(ValueError):
        a.send_bytes(b"abc", 2, 5)


def test_pipe_large_message_fragments():
    a, b = shmprim.Pipe()
    big = os.urandom(3 << 20)
    t = threading.Thread(target=a.send_bytes, args=(big,))
    t.start()
    assert b.recv_bytes() == big
    t.join()


def test_pipe_recv_bytes_into_buffers():
    a, b = shmprim.Pipe()
    a.send_bytes(b"xyz")
    buf = bytearray(8)
    assert b.recv_bytes_into(buf, 2) == 3
    assert buf == bytearray(b"\0\0xyz\0\0\0")
    arr = (ctypes.c_double * 2)()
    a.send_bytes(bytes(ctypes.c_double(1.5)) + bytes(ctypes.c_double(-2.0)))
    assert b.recv_bytes_into(arr) == 2  # items of 8 bytes, as multiprocessing counts
    assert list(arr) == [1.5, -2.0]
    a.send_bytes(b"0123456789")
    with pytest.raises(shmprim_buffer_too_short()) as e:
        b.recv_bytes_into(bytearray(4))
    assert e.value.args[0] == b"0123456789"
    with pytest.raises(ValueError):
        b.recv_bytes_into(bytearray(4), 5)


def shmprim_buffer_too_short():
    import multiprocessing

    return multiprocessing.BufferTooShort


def test_pipe_recv_bytes_into_numpy():
    np = pytest.importorskip("numpy")
    a, b = shmprim.Pipe()
    x = np.arange(1000, dtype=np.float64)
    a.send_bytes(x)
    y = np.zeros(1000)
    assert b.recv_bytes_into(y) == 1000
    assert (x == y).all()


def test_pipe_simplex_and_maxlength():
    r, w = shmprim.Pipe(duplex=False)
    assert r.readable and not r.writable and w.writable and not w.readable
    with pytest.raises(OSError):
        r.send(1)
    w.send_bytes(b"x" * 100)
    with pytest.raises(OSError):
        r.recv_bytes(10)
    assert r.closed


def test_pipe_close_and_eof():
    a, b = shmprim.Pipe()
    a.send(1)
    a.close()
    assert a.closed
    with pytest.raises(OSError):
        a.send(2)
    assert b.recv() == 1
    assert b.poll(0.1)  # end of stream is readable
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(BrokenPipeError):
        b.send(3)
    with b:
        pass
    assert b.closed


# ---- Value / Array ---------------------------------------------------------


@pytest.mark.parametrize(
    "code,init,new",
    [("b", -5, 7), ("B", 200, 3), ("h", -300, 9), ("H", 60000, 1), ("i", -70000, 8),
     ("I", 4000000000, 2), ("l", -(2**40), 3), ("L", 2**63, 4), ("q", -(2**62), 5),
     ("Q", 2**64 - 1, 6), ("f", 1.5, -0.25), ("d", 3.25, 1e300)],
)
def test_value_typecodes(code, init, new):
    v = shmprim.Value(code, init)
    assert v.value == init
    v.value = new
    assert v.value == new
    assert pickle.loads(pickle.dumps(v)).value == new


def test_value_defaults_ctypes_and_wrap():
    assert shmprim.Value("i").value == 0
    assert shmprim.Value(ctypes.c_double, 2.5).value == 2.5
    v = shmprim.Value("b", 0)
    v.value = 300  # wraps, as ctypes does
    assert v.value == 44
    with pytest.raises(TypeError):
        v.value = 1.5
    with pytest.raises(TypeError):
        shmprim.Value("z")


def test_value_locks():
    v = shmprim.Value("i", 0)
    lock = v.get_lock()
    assert isinstance(lock, shmprim.RLock)
    with v.get_lock():
        v.value += 1
    assert v.value == 1
    raw = shmprim.Value("i", 0, lock=False)
    with pytest.raises(AttributeError):
        raw.get_lock()
    raw.value = 3
    assert raw.value == 3
    own = shmprim.Lock()
    w = shmprim.Value("d", 1.0, lock=own)
    assert w.get_lock() is own


def test_value_threads_count():
    v = shmprim.Value("q", 0)

    def work():
        for _ in range(2000):
            with v.get_lock():
                v.value += 1

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert v.value == 8000


def test_array():
    a = shmprim.Array("i", 10)
    assert len(a) == 10 and a[:] == [0] * 10
    a[3] = 7
    a[-1] = 9
    assert a[3] == 7 and a[9] == 9
    a[0:3] = [1, 2, 3]
    assert a[:4] == [1, 2, 3, 7]
    assert a[::3] == [1, 7, 0, 9]
    with pytest.raises(IndexError):
        a[10]
    with pytest.raises(ValueError):
        a[0:2] = [1]
    assert list(a) == a[:]
    b = shmprim.Array("d", [0.5, 1.5])
    assert b[:] == [0.5, 1.5]
    c = pickle.loads(pickle.dumps(b))
    c[0] = 4.0
    assert b[0] == 4.0 and len(c) == 2
    with b.get_lock():
        b[1] += 1
    assert b[1] == 2.5
    assert shmprim.Array("B", 3, lock=False)[:] == [0, 0, 0]
    view = b.get_obj()
    assert view.format == "d" and view.tolist() == [4.0, 2.5]
    view[0] = 8.0
    assert b[0] == 8.0


def test_array_numpy_view():
    np = pytest.importorskip("numpy")
    a = shmprim.Array("i", [1, 2, 3])
    x = np.frombuffer(a.get_obj(), dtype=np.int32)
    x[1] = 20
    assert a[:] == [1, 20, 3]


# ---- locks, semaphores, events, conditions, barriers -----------------------


def test_lock():
    lock = shmprim.Lock()
    assert lock.acquire()
    assert not lock.acquire(False)
    assert not lock.acquire(timeout=0.01)
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
    with lock:
        held = []
        t = threading.Thread(target=lambda: held.append(lock.acquire(timeout=0.05)))
        t.start()
        t.join()
        assert held == [False]
    assert lock.acquire(False)
    lock.release()


def test_rlock():
    r = shmprim.RLock()
    with r:
        with r:
            pass
    assert r.acquire()
    errs = []

    def other():
        try:
            r.release()
        except AssertionError as e:
            errs.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errs) == 1
    r.release()
    with pytest.raises(AssertionError):
        r.release()


def test_semaphores():
    s = shmprim.Semaphore(2)
    assert s.acquire() and s.acquire()
    assert not s.acquire(False)
    assert not s.acquire(timeout=0.02)
    assert s.get_value() == 0
    s.release()
    s.release()
    s.release()  # unbounded
    assert s.get_value() == 3
    with s:
        assert s.get_value() == 2
    b = shmprim.BoundedSemaphore(1)
    with b:
        pass
    with pytest.raises(ValueError):
        b.release()
    with pytest.raises(ValueError):
        shmprim.Semaphore(-1)


def test_event():
    e = shmprim.Event()
    assert not e.is_set()
    assert e.wait(0.02) is False
    threading.Timer(0.05, e.set).start()
    assert e.wait(5) is True
    assert e.is_set()
    e.clear()
    assert not e.is_set()
    assert pickle.loads(pickle.dumps(e)).is_set() is False


def test_condition():
    c = shmprim.Condition()
    with pytest.raises(AssertionError):
        c.wait(0.01)
    with pytest.raises(AssertionError):
        c.notify()
    with c:
        assert c.wait(0.02) is False
    state = []

    def waiter():
        with c:
            state.append(c.wait_for(lambda: len(state) > 0 or None, 5))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    with c:
        state.append("go")
        c.notify_all()
    t.join(5)
    assert state == ["go", True]
    with c:
        assert c.wait_for(lambda: False, 0.02) is False
    c2 = shmprim.Condition(shmprim.Lock())
    with c2:
        c2.notify(2)


def test_barrier():
    b = shmprim.Barrier(3, timeout=5)
    assert b.parties == 3 and b.n_waiting == 0 and not b.broken
    hits = []
    ts = [threading.Thread(target=lambda: hits.append(b.wait())) for _ in range(2)]
    for t in ts:
        t.start()
    hits.append(b.wait())
    for t in ts:
        t.join()
    assert sorted(hits) == [0, 1, 2]
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(0.05)
    assert b.broken
    b.reset()
    assert not b.broken
    b.abort()
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()
    runs = []
    single = shmprim.Barrier(1, action=lambda: runs.append(1))
    assert single.wait() == 0 and runs == [1]


# ---- SharedMemory ----------------------------------------------------------


def test_shared_memory():
    m = SharedMemory(create=True, size=64)
    try:
        assert m.size == 64 and len(m.buf) == 64
        m.buf[:5] = b"hello"
        other = SharedMemory(m.name)
        assert bytes(other.buf[:5]) == b"hello"
        again = pickle.loads(pickle.dumps(m))
        assert bytes(again.buf[:5]) == b"hello"
        other.close()
        again.close()
        with pytest.raises(FileExistsError):
            SharedMemory(m.name, create=True, size=8)
    finally:
        m.close()
        m.unlink()
    with pytest.raises(FileNotFoundError):
        SharedMemory(m.name)


# ---- waiting: the GIL is released, Ctrl-C interrupts ----------------------


def test_wait_releases_gil():
    q = shmprim.Queue()
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    stop.set()
    t.join()
    assert len(ticks) > 20


@pytest.mark.parametrize("what", ["queue", "pipe", "lock", "event", "semaphore"])
def test_ctrl_c_interrupts_wait(what):
    q = shmprim.Queue()
    a, b = shmprim.Pipe()
    lock = shmprim.Lock()
    ev = shmprim.Event()
    sem = shmprim.Semaphore(0)
    took, done = threading.Event(), threading.Event()

    def hold():
        with lock:
            took.set()
            done.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    took.wait()
    blockers = {
        "queue": lambda: q.get(timeout=20),
        "pipe": lambda: a.poll(20),
        "lock": lambda: lock.acquire(timeout=20),
        "event": lambda: ev.wait(20),
        "semaphore": lambda: sem.acquire(timeout=20),
    }
    # A shell running us in the background may have SIGINT ignored.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        t = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            blockers[what]()
        assert time.monotonic() - t < 5
    finally:
        timer.join()
        signal.signal(signal.SIGINT, old)
    done.set()
    holder.join()
