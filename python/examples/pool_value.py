"""Pool.map whose workers add to a shared Value (given through initargs)."""
from multiprocessing import Pool
from multiprocessing import Value  # shmprim: from shmprim import Value

total = None


def init(shared):
    global total
    total = shared


def task(x):
    with total.get_lock():
        total.value += x
    return x * x


if __name__ == "__main__":
    shared = Value("q", 0)
    with Pool(2, initializer=init, initargs=(shared,)) as pool:
        print("squares:", pool.map(task, range(20)))
    print("total:", shared.value)
