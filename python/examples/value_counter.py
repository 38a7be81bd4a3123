"""Four processes increment a shared counter under its lock."""
from multiprocessing import Process
from multiprocessing import Value  # shmprim: from shmprim import Value


def work(counter, n):
    for _ in range(n):
        with counter.get_lock():
            counter.value += 1


if __name__ == "__main__":
    counter = Value("i", 0)
    procs = [Process(target=work, args=(counter, 2500)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print("counter =", counter.value)
