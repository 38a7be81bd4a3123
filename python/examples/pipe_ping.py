"""Ping-pong over a Pipe between two processes."""
from multiprocessing import Process
from multiprocessing import Pipe  # shmprim: from shmprim import Pipe


def pong(conn):
    while True:
        msg = conn.recv()
        if msg == "stop":
            break
        conn.send(("pong", msg[1] + 1))
    conn.close()


if __name__ == "__main__":
    parent, child = Pipe()
    p = Process(target=pong, args=(child,))
    p.start()
    child.close()  # the child's end is the child's
    n = 0
    for _ in range(1000):
        parent.send(("ping", n))
        _, n = parent.recv()
    parent.send("stop")
    p.join()
    print("after 1000 round trips n =", n)
    try:
        parent.recv()
    except EOFError:
        print("EOFError once the child has gone")
