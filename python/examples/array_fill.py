"""Children fill their stripes of a shared Array; the parent reads it back."""
from multiprocessing import Process
from multiprocessing import Array, Lock  # shmprim: from shmprim import Array, Lock


def fill(arr, lock, k, parts):
    for i in range(1 + k, len(arr), parts):
        arr[i] = i * 0.5
    with lock:
        arr[0] += 1


if __name__ == "__main__":
    arr = Array("d", 40)
    lock = Lock()
    procs = [Process(target=fill, args=(arr, lock, k, 4)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print("sum =", sum(arr[:]), "first =", arr[0], "last =", arr[-1], "len =", len(arr))
    print(arr[1:5], arr[::10])
