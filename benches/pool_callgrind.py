#!/usr/bin/env python3
"""Instructions per task of the pool's `map` with chunksize 1, parent and
workers apart (BENCHMARKS.md, "W6 pools, profiled").

    cargo build --release --example pool_probe
    python3 benches/pool_callgrind.py [N1 N2 [TOP]]     # default 2000 6000 20

Runs `target/release/examples/pool_probe` under callgrind at two task
counts (2 workers, fork start, 8-byte tasks returning their argument) and
divides each process's difference by the difference of the counts, so
that start-up and teardown cancel out. The workers are summed (per task of
the map, whichever worker ran it). "Receiving and polling" sums the
functions a side spends waiting in (how many polls a wait takes depends on
timing, under valgrind too); "the rest" is the per-task work.
"""
import os
import re
import subprocess
import sys
import tempfile

# PROBE=path runs another build of the probe (a baseline).
PROBE = os.environ.get("PROBE", "target/release/examples/pool_probe")
POLL = ("recv_fast", "pool::wait::recv_into", "claim_wait", "recv_copy_slow",
        "drop_in_place<shmprim::error::Error>", "Timespec", "Instant>::elapsed",
        "clock_gettime", "EventCount", "futex", "sched_yield", "yield_now", "Spin::learn")


def functions(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", path],
                         capture_output=True, text=True, check=True).stdout
    total, per = 0, {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([ \d.]+%\)\s+(.*)", line)
        if not m:
            continue
        n, name = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in name:
            total = n
            continue
        name = re.sub(r"\s*\[[^\]]*\]$", "", name)
        name = re.sub(r"^[^:]*:", "", name)
        per[name] = per.get(name, 0) + n
    return total, per


def run(n, d):
    out = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                          "--dump-instr=no", "--collect-atstart=yes",
                          f"--callgrind-out-file={d}/cg.%p", os.path.abspath(PROBE), str(n)],
                         capture_output=True, text=True, check=True)
    parent = re.search(r"parent pid (\d+)", out.stdout).group(1)
    sides = {"parent": [], "workers": []}
    for f in os.listdir(d):
        sides["parent" if f == f"cg.{parent}" else "workers"].append(functions(os.path.join(d, f)))
    merged = {}
    for side, runs in sides.items():
        total, per = 0, {}
        for t, p in runs:
            total += t
            for k, v in p.items():
                per[k] = per.get(k, 0) + v
        merged[side] = (total, per)
    return merged


def main():
    n1, n2 = (int(a) for a in (sys.argv[1:3] if len(sys.argv) > 2 else (2000, 6000)))
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        ra, rb = run(n1, a), run(n2, b)
    dn = n2 - n1
    for side in ("parent", "workers"):
        (ta, pa), (tb, pb) = ra[side], rb[side]
        diff = {k: (pb.get(k, 0) - pa.get(k, 0)) / dn for k in set(pa) | set(pb)}
        poll = sum(v for k, v in diff.items() if any(p in k for p in POLL))
        total = (tb - ta) / dn
        print(f"== {side}: {total:.0f} instructions per task; receiving and polling "
              f"{poll:.0f}, the rest {total - poll:.0f}")
        for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{v:8.0f}  {k[:140]}")


if __name__ == "__main__":
    main()
