"""Python values beside Ray's object store (and Vineyard for arrays), in one run: a numpy
array handed to another process, and small Python objects put and got (issue 17's
figures; docs/python.md, "Speed"). scripts/run-bench starts the csmd and sets
CSM_SOCKET and PYTHONPATH; PEERS=1 makes the virtualenv with Ray and Vineyard.

  array put      csm.put(key, a) vs ray.put(a) vs Vineyard's client.put(a): each copies
                 the array's bytes into its shared memory once; csm also takes the commit
                 checksum of every byte in the same pass (csm.put(..., checksum=False)
                 skips it). csm's put starts once csmd has zeroed the memory a delete
                 left (in idle time), as the peers' stores have theirs ready; "right
                 after a delete" is the put that does not wait: its memory is fresh
                 pages the kernel clears (~60 ms per GiB here)
  array get      another process obtains it: csm.get vs ray.get in a Ray actor vs
                 Vineyard's client.get; the first time in that process, the first get +
                 a pass over every element (a.sum()), and the median of repeated gets
  small object   a dict of 100 entries: put + get in one process, median of many

Each get process is started and connected before it is timed (connecting is once per
process). Prints medians (min-max) and ratios against csm; this VM is noisy.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from python_peers import Peers


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(seconds):
    if seconds < 1e-3:
        return "%.1f us" % (seconds * 1e6)
    if seconds < 1:
        return "%.2f ms" % (seconds * 1e3)
    return "%.3f s" % seconds


def timed_gets(get, repeat):
    """First get, the same + a pass over every element, the median of `repeat` more."""
    t0 = time.perf_counter()
    a = get()
    first = time.perf_counter() - t0
    total = float(a.sum())
    used = time.perf_counter() - t0
    del a
    repeats = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a = get()
        repeats.append(time.perf_counter() - t0)
        del a
    return first, used, statistics.median(repeats), total


def consume(args):
    """In a process of its own: waits for a line on stdin (connected and warm), then gets."""
    if args.kind == "csm":
        import csm
        csm.connect()

        def get():
            return csm.get(args.key)
    else:
        import vineyard
        socket, oid = args.key.split("|")
        client = vineyard.connect(socket)

        def get():
            return client.get(vineyard.ObjectID(oid))
    print("ready", flush=True)
    sys.stdin.readline()
    print(*timed_gets(get, args.repeat), flush=True)


def run_consumer(kind, key, repeat):
    p = subprocess.Popen([sys.executable, __file__, "--consume", "--kind", kind, "--key", key,
                          "--repeat", str(repeat)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        raise SystemExit("the %s consumer did not start" % kind)
    out, _ = p.communicate("go\n", timeout=600)
    first, used, repeated, total = out.split()
    return float(first), float(used), float(repeated), float(total)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024, help="size of the numpy array")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--small", type=int, default=2000, help="small objects put and got")
    ap.add_argument("--peers", action="store_true", help="Ray's object store and Vineyard beside csm")
    ap.add_argument("--consume", action="store_true")
    ap.add_argument("--kind")
    ap.add_argument("--key")
    args = ap.parse_args()
    if args.consume:
        return consume(args)

    import csm
    csm.connect()
    array = np.arange(args.mib * (1 << 20) // 8, dtype=np.float64)
    expected = float(array.sum())
    peers = Peers(array.nbytes, timed_gets, store_copies=3) if args.peers else None
    kinds = ["csm"] + (["ray", "vineyard"] if peers else [])
    put = {k: [] for k in kinds}
    put["csm, right after a delete"] = []
    put["csm, checksum=False"] = []
    gets = {k: {"first": [], "used": [], "repeat": []} for k in kinds}

    def record(kind, got):
        first, used, repeated, total = got
        if total != expected:
            raise SystemExit("%s read a different array (sum %r, expected %r)" % (kind, total, expected))
        gets[kind]["first"].append(first)
        gets[kind]["used"].append(used)
        gets[kind]["repeat"].append(repeated)

    def settle(zeroed):
        # A deleted object's memory goes spare once its last reader's pins are gone (the
        # consumer's exit reaches csmd a moment later): wait for it, as Ray frees at once.
        # With `zeroed`, also for csmd's idle-time zeroing of spare memory, which a builder
        # reuses only once zeroed (else it gets fresh pages, which the kernel clears).
        deadline = time.time() + 30
        while time.time() < deadline:
            info = csm.info()
            if not info["objects_awaiting_unpin"] and (
                    not zeroed or info["spare_memory_zeroed_bytes"] == info["spare_memory_bytes"]):
                break
            time.sleep(0.005)

    small = {i: "value-%d" % i for i in range(100)}
    small_times = {k: [] for k in (["csm"] + (["ray"] if peers else []))}
    try:
        for r in range(args.rounds):
            key = "python-values-bench/%d/%d" % (os.getpid(), r)
            settle(zeroed=True)
            t0 = time.perf_counter()
            csm.put(key, array)
            put["csm"].append(time.perf_counter() - t0)
            record("csm", run_consumer("csm", key, args.repeat))
            csm.delete(key)
            settle(zeroed=False)
            t0 = time.perf_counter()
            csm.put(key + "/next", array)
            put["csm, right after a delete"].append(time.perf_counter() - t0)
            csm.delete(key + "/next")
            settle(zeroed=True)
            t0 = time.perf_counter()
            csm.put(key + "/unsummed", array, checksum=False)
            put["csm, checksum=False"].append(time.perf_counter() - t0)
            csm.delete(key + "/unsummed")
            settle(zeroed=False)
            if peers:
                seconds, got = peers.ray_round(array, args.repeat)
                put["ray"].append(seconds)
                record("ray", got)
                seconds, got = peers.vineyard_round(array, args.repeat, run_consumer)
                put["vineyard"].append(seconds)
                record("vineyard", got)
        for i in range(args.small):
            key = "python-values-bench/small/%d/%d" % (os.getpid(), i)
            t0 = time.perf_counter()
            csm.put(key, small)
            got = csm.get(key)
            small_times["csm"].append(time.perf_counter() - t0)
            assert got == small
            csm.delete(key)
        if peers:
            small_times["ray"] = peers.ray_small(small, args.small)
    finally:
        if peers:
            peers.close()

    print("python values: a %d MiB numpy array (float64), %d rounds, medians (min-max)" % (args.mib, args.rounds))
    print("%-24s %28s %10s" % ("put", "time", "vs csm"))
    base = stats(put["csm"])[0]
    for kind, xs in put.items():
        m, lo, hi = stats(xs)
        print("%-24s %10s (%s - %s) %9.2fx" % (kind, fmt(m), fmt(lo), fmt(hi), m / base))
    print("%-24s %24s %22s %12s %10s %10s" % ("get, another process", "first", "first + sum", "repeated",
                                               "first vs", "repeated vs"))
    names = {"csm": "csm.get", "ray": "ray.get in an actor", "vineyard": "vineyard get"}
    first_base = stats(gets["csm"]["first"])[0]
    repeat_base = stats(gets["csm"]["repeat"])[0]
    for kind, g in gets.items():
        m, lo, hi = stats(g["first"])
        rep = stats(g["repeat"])[0]
        print("%-24s %10s (%s - %s) %12s %12s %9.2fx %9.2fx" % (names[kind], fmt(m), fmt(lo), fmt(hi),
                                                             fmt(stats(g["used"])[0]), fmt(rep),
                                                             m / first_base, rep / repeat_base))
    print("small object (a dict of 100 entries), put + get in one process, %d times, medians (min-max)"
          % args.small)
    base = stats(small_times["csm"])[0]
    for kind, xs in small_times.items():
        m, lo, hi = stats(xs)
        print("%-24s %10s (%s - %s) %9.2fx" % (kind, fmt(m), fmt(lo), fmt(hi), m / base))


if __name__ == "__main__":
    main()
