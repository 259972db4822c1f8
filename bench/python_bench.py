"""Python: handing a pyarrow table to another process, csm vs Arrow IPC files in shared
memory, and with --peers vs Ray's object store and Vineyard, in one run (scripts/run-bench
starts the csmd; CSM_SOCKET and PYTHONPATH set; PEERS=1 scripts/run-bench makes a
virtualenv with Ray and Vineyard).

  publish  the producer makes the table available: csm.put_table (its buffers copied into
           the heap once) vs writing an Arrow IPC file to /dev/shm vs ray.put vs
           Vineyard's client.put (each copies the buffers into its shared memory)
  get      another process obtains it: csm.get_table vs opening the IPC file memory-mapped
           (zero-copy, the usual way) vs reading the IPC file into memory (a copy) vs
           ray.get in a Ray actor vs Vineyard's client.get; the first time in the process,
           then repeated; csm twice: a process right after the put and a later one
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

from python_peers import Peers


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


def timed_gets(get, repeat):
    """First get, the same + a pass over the int64 column, the median of `repeat` more."""
    t0 = time.perf_counter()
    t = get()
    first = time.perf_counter() - t0
    total = pc.sum(t.column("id")).as_py()
    used = time.perf_counter() - t0
    del t
    repeats = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        t = get()
        repeats.append(time.perf_counter() - t0)
        del t
    return first, used, statistics.median(repeats), total


def consume(args):
    """In a process of its own: first get, then `repeat` more, printing seconds per line."""
    if args.path_kind == "csm":
        import csm

        def get():
            return csm.get_table(args.key)
    elif args.path_kind == "vineyard":
        import vineyard
        socket, oid = args.key.split("|")
        client = vineyard.connect(socket)  # once per process: not part of a get

        def get():
            return client.get(vineyard.ObjectID(oid))
    elif args.path_kind == "ipc-mmap":
        def get():
            return pa.ipc.open_file(pa.memory_map(args.key)).read_all()
    else:
        def get():
            with pa.OSFile(args.key) as f:
                return pa.ipc.open_file(f).read_all()
    if args.path_kind == "csm":
        csm.connect()  # connecting is once per process: not part of a get
    print(*timed_gets(get, args.repeat))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--consume", action="store_true")
    ap.add_argument("--path-kind")
    ap.add_argument("--key")
    ap.add_argument("--peers", action="store_true", help="Ray's object store and Vineyard beside csm")
    args = ap.parse_args()
    if args.consume:
        return consume(args)

    import csm
    csm.connect()
    table = make_table(args.mib)
    nbytes = table.nbytes
    expected = pc.sum(table.column("id")).as_py()
    shm = "/dev/shm/csm-python-bench-%d.arrow" % os.getpid()
    peers = Peers(nbytes, timed_gets, store_copies=4) if args.peers else None
    publish = {"csm": [], "ipc file in /dev/shm": []}
    # csm twice: a process right after the put, and a later one (put_table validated the
    # table and the node knows: neither runs Arrow's full validation; docs/arrow.md).
    kinds = ("csm", "csm-later", "ipc-mmap", "ipc-read")
    if peers:
        publish.update({"ray.put": [], "vineyard put": []})
        kinds += ("ray", "vineyard")
    gets = {k: {"first": [], "used": [], "repeat": []} for k in kinds}

    def run_consumer(path_kind, where, repeat=args.repeat):
        out = subprocess.run([sys.executable, __file__, "--consume", "--path-kind", path_kind,
                              "--key", where, "--repeat", str(repeat)],
                             capture_output=True, text=True, check=True).stdout.split()
        return float(out[0]), float(out[1]), float(out[2]), int(out[3])

    def record(kind, got):
        first, used, repeat, total = got
        if total != expected:
            raise SystemExit("%s read a different table (sum %d, expected %d)" % (kind, total, expected))
        gets[kind]["first"].append(first)
        gets[kind]["used"].append(used)
        gets[kind]["repeat"].append(repeat)

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
                record(kind, run_consumer("csm" if kind == "csm-later" else kind, where))
            csm.delete(key)
            if peers:
                seconds, got = peers.ray_round(table, args.repeat)
                publish["ray.put"].append(seconds)
                record("ray", got)
                seconds, got = peers.vineyard_round(table, args.repeat, run_consumer)
                publish["vineyard put"].append(seconds)
                record("vineyard", got)
    finally:
        if os.path.exists(shm):
            os.unlink(shm)
        if peers:
            peers.close()

    print("python: a %d MiB pyarrow table (int64, double, utf8), %d rounds, medians (min-max)"
          % (nbytes >> 20, args.rounds))
    print("%-22s %28s %10s" % ("publish", "time", "vs csm"))
    base = stats(publish["csm"])[0]
    for name, xs in publish.items():
        m, lo, hi = stats(xs)
        print("%-22s %10s (%s - %s) %9.2fx" % (name, fmt(m), fmt(lo), fmt(hi), m / base))
    print("%-22s %24s %24s %12s %10s" % ("get, another process", "first", "used (first + sum)",
                                         "repeated", "vs csm"))
    names = {"csm": "csm, right after put", "csm-later": "csm, a later process",
             "ipc-mmap": "ipc file, memory-mapped", "ipc-read": "ipc file, read",
             "ray": "ray.get in an actor", "vineyard": "vineyard get"}
    base = stats(gets["csm"]["first"])[0]
    for kind, g in gets.items():
        m, lo, hi = stats(g["first"])
        print("%-22s %10s (%s - %s) %13s %12s %9.2fx" % (names[kind], fmt(m), fmt(lo), fmt(hi),
                                                     fmt(stats(g["used"])[0]), fmt(stats(g["repeat"])[0]),
                                                     m / base))


if __name__ == "__main__":
    main()
