"""Python: handing a pyarrow table to another process, csm vs Arrow IPC files in shared
memory, in one run (scripts/run-bench starts the csmd; CSM_SOCKET and PYTHONPATH set).

  publish  the producer makes the table available: csm.put_table (its buffers copied into
           the heap once) vs writing an Arrow IPC file to /dev/shm
  get      another process obtains it: csm.get_table vs opening the IPC file memory-mapped
           (zero-copy, the usual way) vs reading the IPC file into memory (a copy); the
           first time in the process, then repeated; csm twice: the node's first reader
           (it runs Arrow's full validation and the node records it) and a later process
  used     get + one pass over the int64 column (pyarrow.compute.sum)

Prints medians (min-max) of each and ratios against csm; this VM is noisy.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc


def make_table(mib):
    rows = mib * (1 << 20) // 32  # int64 + double + 16 B of utf8 per row
    ids = pa.array(range(rows), pa.int64())
    values = pc.multiply(ids.cast(pa.float64()), 0.5)
    names = pc.binary_join_element_wise(pa.array(["k"] * rows), pc.cast(ids, pa.string()), "-")
    names = pc.utf8_rpad(names, 16, " ")
    return pa.table({"id": ids, "value": values, "name": names})


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(seconds):
    if seconds < 1e-3:
        return "%.1f us" % (seconds * 1e6)
    if seconds < 1:
        return "%.2f ms" % (seconds * 1e3)
    return "%.3f s" % seconds


def consume(args):
    """In a process of its own: first get, then `repeat` more, printing seconds per line."""
    import csm
    if args.path_kind == "csm":
        def get():
            return csm.get_table(args.key)
    elif args.path_kind == "ipc-mmap":
        def get():
            return pa.ipc.open_file(pa.memory_map(args.key)).read_all()
    else:
        def get():
            with pa.OSFile(args.key) as f:
                return pa.ipc.open_file(f).read_all()
    if args.path_kind == "csm":
        csm.connect()  # connecting is once per process: not part of a get
    firsts = []
    t0 = time.perf_counter()
    t = get()
    firsts.append(time.perf_counter() - t0)
    total = pc.sum(t.column("id")).as_py()
    used = time.perf_counter() - t0
    del t
    repeats = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        t = get()
        repeats.append(time.perf_counter() - t0)
        del t
    print(firsts[0], used, statistics.median(repeats), total)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--consume", action="store_true")
    ap.add_argument("--path-kind")
    ap.add_argument("--key")
    args = ap.parse_args()
    if args.consume:
        return consume(args)

    import csm
    csm.connect()
    table = make_table(args.mib)
    nbytes = table.nbytes
    expected = pc.sum(table.column("id")).as_py()
    shm = "/dev/shm/csm-python-bench-%d.arrow" % os.getpid()
    publish = {"csm": [], "ipc file in /dev/shm": []}
    # csm twice: the node's first reader validates the table fully (Arrow's ValidateFull)
    # and the node records it; a later process checks only the structure (docs/arrow.md).
    kinds = ("csm", "csm-later", "ipc-mmap", "ipc-read")
    gets = {k: {"first": [], "used": [], "repeat": []} for k in kinds}
    try:
        for r in range(args.rounds):
            key = "python-bench/%d/%d" % (os.getpid(), r)
            t0 = time.perf_counter()
            csm.put_table(key, table)
            publish["csm"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with pa.OSFile(shm, "wb") as f:
                with pa.ipc.new_file(f, table.schema) as w:
                    w.write_table(table)
            publish["ipc file in /dev/shm"].append(time.perf_counter() - t0)
            for kind, where in (("csm", key), ("csm-later", key), ("ipc-mmap", shm), ("ipc-read", shm)):
                path_kind = "csm" if kind == "csm-later" else kind
                out = subprocess.run([sys.executable, __file__, "--consume", "--path-kind", path_kind,
                                      "--key", where, "--repeat", str(args.repeat)],
                                     capture_output=True, text=True, check=True).stdout.split()
                first, used, repeat, total = float(out[0]), float(out[1]), float(out[2]), int(out[3])
                if total != expected:
                    raise SystemExit("%s read a different table (sum %d, expected %d)" % (kind, total, expected))
                gets[kind]["first"].append(first)
                gets[kind]["used"].append(used)
                gets[kind]["repeat"].append(repeat)
            csm.delete(key)
    finally:
        if os.path.exists(shm):
            os.unlink(shm)

    print("python: a %d MiB pyarrow table (int64, double, utf8), %d rounds, medians (min-max)"
          % (nbytes >> 20, args.rounds))
    print("%-22s %28s %10s" % ("publish", "time", "vs csm"))
    base = stats(publish["csm"])[0]
    for name, xs in publish.items():
        m, lo, hi = stats(xs)
        print("%-22s %10s (%s - %s) %9.2fx" % (name, fmt(m), fmt(lo), fmt(hi), m / base))
    print("%-22s %24s %24s %12s %10s" % ("get, another process", "first", "used (first + sum)",
                                         "repeated", "vs csm"))
    names = {"csm": "csm, node's 1st reader", "csm-later": "csm, a later process",
             "ipc-mmap": "ipc file, memory-mapped", "ipc-read": "ipc file, read"}
    base = stats(gets["csm"]["first"])[0]
    for kind, g in gets.items():
        m, lo, hi = stats(g["first"])
        print("%-22s %10s (%s - %s) %13s %12s %9.2fx" % (names[kind], fmt(m), fmt(lo), fmt(hi),
                                                     fmt(stats(g["used"])[0]), fmt(stats(g["repeat"])[0]),
                                                     m / base))


if __name__ == "__main__":
    main()
