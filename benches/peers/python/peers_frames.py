"""W7-frames, Python's side: Pool.map over 1920x1080 RGB frames with numpy.

    python3 peers_frames.py FILE N     frames/s and the checksum, one line

FILE holds N frames back to back (written by the peers suite from
examples/support/frames.rs's generator: the very same frames). The
filter is the numpy twin of that file's `filter` (grayscale, 3x3 box
blur, 256-bin histogram, one checksum per frame); the suite checks that
the checksums agree. A 2-worker `multiprocessing.Pool` maps it with
chunksize 1, each frame pickled into its task (what Python users do);
the pool's start is not timed.
"""

import multiprocessing as mp
import sys
import time

import numpy as np

W, H = 1920, 1080
FRAME = W * H * 3
MASK = (1 << 64) - 1


def filt(rgb):
    px = rgb.reshape(H, W, 3).astype(np.uint32)
    gray = (77 * px[:, :, 0] + 150 * px[:, :, 1] + 29 * px[:, :, 2]) >> 8
    rows = gray[:, :-2] + gray[:, 1:-1] + gray[:, 2:]
    s = rows[:-2] + rows[1:-1] + rows[2:]
    b = s // 9
    hist = np.bincount(b.ravel(), minlength=256)
    h = int(b.sum(dtype=np.uint64))
    for i, n in enumerate(hist.tolist()):
        h = (h * 31 + (n ^ i)) & MASK
    return h


def combine(sums):
    h = 0
    for x in sums:
        h = ((h * 1_000_003) & MASK) ^ x
    return h


def main(path, n):
    data = np.fromfile(path, dtype=np.uint8, count=n * FRAME)
    frames = [data[i * FRAME:(i + 1) * FRAME].copy() for i in range(n)]
    with mp.Pool(2) as p:
        p.map(filt, frames[:2], chunksize=1)  # warm-up: both workers running
        t = time.perf_counter_ns()
        sums = p.map(filt, frames, chunksize=1)
        dt = time.perf_counter_ns() - t
    print(f"{n * 1e9 / dt} {combine(sums)}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
