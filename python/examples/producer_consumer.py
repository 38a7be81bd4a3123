"""A producer process puts work items on a Queue; a consumer sums them."""
from multiprocessing import Process
from multiprocessing import Queue  # shmprim: from shmprim import Queue


def producer(q, n):
    for i in range(n):
        q.put(("item", i, i * i))
    q.put(None)


def consumer(q, out):
    total = count = 0
    while True:
        item = q.get()
        if item is None:
            break
        _, i, sq = item
        total += sq
        count += 1
    out.put((count, total))


if __name__ == "__main__":
    q, out = Queue(), Queue()
    procs = [Process(target=producer, args=(q, 2000)), Process(target=consumer, args=(q, out))]
    for p in procs:
        p.start()
    print("consumed %d items, sum of squares %d" % out.get())
    for p in procs:
        p.join()
