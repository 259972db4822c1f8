"""Spilling beside its floor and beside Ray, in one run (issue 18's figures;
docs/operations.md, "Spilling"). scripts/run-spill-bench builds csmd and the module and
runs this in the virtualenv with Ray (.venv-peers).

  restore vs cat   a 1 GiB numpy array spilled by csmd (a node of 1.5 GiB, the array
                   pushed out by a second one, which is then deleted); then `cat` of its
                   spill file to /dev/null (the pace of the file, as csmd reads it: from
                   the page cache it was just written to) and csm.get of it (the restore:
                   file back into the same memory, checked, then the get). Ratio: cat's
                   time / the restore's (>= 0.8 wanted)
  restore vs Ray   the same with Ray's object store (object_store_memory 1.5 GiB,
                   object_spilling_directory in the same directory): ray.get of the
                   spilled array, in the process that put it
  working set      24 arrays of 32 MiB read in a random order (a.sum(): every byte),
                   through a node of 256 MiB (3x over) vs one of 1 GiB (all in memory):
                   arrays per second, and the ratio

Each figure is the median (min-max) of --rounds rounds; this VM is noisy.
"""
import argparse
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

GiB = 1 << 30
MiB = 1 << 20


def stats(xs):
    return "%.3f s (%.3f-%.3f)" % (statistics.median(xs), min(xs), max(xs))


class Node:
    """A csmd of its own with a spill directory, and a client of it."""

    def __init__(self, csmd, capacity, spill_dir):
        import csm
        self.dir = tempfile.mkdtemp(prefix="csm-spill-bench-")
        self.socket = os.path.join(self.dir, "node.sock")
        self.spill_dir = spill_dir
        self.proc = subprocess.Popen([csmd, "--socket", self.socket, "--capacity", capacity,
                                      "--spill-dir", spill_dir, "--spare-memory-ms", "0"],
                                     stdout=subprocess.PIPE, stderr=None if os.environ.get("CSM_LOG_LEVEL") else subprocess.DEVNULL, text=True)
        deadline = time.time() + 30
        for line in self.proc.stdout:
            if "csmd ready" in line:
                break
            if time.time() > deadline:
                raise SystemExit("csmd did not start")
        self.client = csm.Client(self.socket)

    def spill(self):
        return self.client.info()["spill"]

    def spill_file(self, key):
        oid = self.client.stat(key)["object_id"]
        files = glob.glob(os.path.join(self.spill_dir, "%d-*.spill" % oid))
        return files[0] if files else None

    def close(self):
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(cond, what, timeout=120):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.01)


def cat(path):
    t0 = time.perf_counter()
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def csm_restore(args, base):
    spill_dir = os.path.join(base, "csm-spill")
    node = Node(args.csmd, "1536M", spill_dir)
    a = np.arange(GiB // 8, dtype=np.float64)
    b = np.ones(GiB // 8, dtype=np.float64)
    cats, restores = [], []
    try:
        for r in range(args.rounds + 1):
            node.client.put("a", a)
            node.client.put("b", b)  # pushes "a" out to the spill directory first
            wait_for(lambda: node.client.stat("a")["spilled"], "a to be spilled")
            node.client.delete("b")
            wait_for(lambda: node.client.info()["used"] < GiB // 2, "b's memory to go back")
            path = node.spill_file("a")
            c = cat(path)
            t0 = time.perf_counter()
            got = node.client.get("a")
            t = time.perf_counter() - t0
            assert got[12345] == 12345.0 and got[-1] == a[-1]
            del got
            node.client.delete("a")
            if r > 0:  # the first round warms the page cache and the allocator up
                cats.append(c)
                restores.append(t)
        info = node.spill()
    finally:
        node.close()
    return cats, restores, info


def ray_restore(args, base):
    import ray
    spill_dir = os.path.join(base, "ray-spill")
    os.makedirs(spill_dir)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=1536 * MiB,
             object_spilling_directory=spill_dir)

    def spill_files():
        return {f: os.path.getsize(f) for f in glob.glob(os.path.join(spill_dir, "**", "*"), recursive=True)
                if os.path.isfile(f)}

    a = np.arange(GiB // 8, dtype=np.float64)
    b = np.ones(GiB // 8, dtype=np.float64)
    restores = []
    try:
        for r in range(args.rounds + 1):
            before = spill_files()
            ra = ray.put(a)
            rb = ray.put(b)  # the store is full: Ray spills "a" to make room
            wait_for(lambda: any(f not in before and n >= GiB for f, n in spill_files().items()), "Ray to spill a")
            del rb
            t0 = time.perf_counter()
            got = ray.get(ra)
            t = time.perf_counter() - t0
            assert got[12345] == 12345.0 and got[-1] == a[-1]
            del got, ra
            if r > 0:
                restores.append(t)
    finally:
        ray.shutdown()
    return restores


def working_set(args, base, capacity):
    spill_dir = os.path.join(base, "ws-" + capacity)
    node = Node(args.csmd, capacity, spill_dir)
    n, size = 24, 32 * MiB
    try:
        for i in range(n):
            node.client.put("w%d" % i, np.full(size // 8, i, dtype=np.float64))
        rng = random.Random(7)
        order = [rng.randrange(n) for _ in range(args.reads)]
        t0 = time.perf_counter()
        for i in order:
            v = node.client.get("w%d" % i)
            assert v.sum() == i * (size // 8)
            del v
        t = time.perf_counter() - t0
        info = node.client.info()
        info = dict(node.spill(), used_at_end=info["used"], capacity=info["capacity"])
    finally:
        node.close()
    return args.reads / t, info


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--csmd", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reads", type=int, default=200)
    p.add_argument("--dir", default="/var/tmp", help="where the spill directories go (a disk)")
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--working-set", help=argparse.SUPPRESS)  # the child's part
    args = p.parse_args()
    if args.working_set:
        print(json.dumps(working_set(args, args.dir, args.working_set)))
        return
    base = tempfile.mkdtemp(prefix="csm-spill-bench-", dir=args.dir)
    try:
        cats, restores, info = csm_restore(args, base)
        print("1 GiB restore: csm %s, cat of its spill file %s; cat/csm %.2f" %
              (stats(restores), stats(cats), statistics.median(cats) / statistics.median(restores)))
        print("  csmd spill counters:", json.dumps(info))
        if not args.no_ray:
            ray_restores = ray_restore(args, base)
            print("1 GiB restore: Ray %s; Ray/csm %.2f" %
                  (stats(ray_restores), statistics.median(ray_restores) / statistics.median(restores)))
        # One node per process (its window sits at a fixed address): each in a child.
        def run_working_set(capacity):
            out = subprocess.run([sys.executable, __file__, "--csmd", args.csmd, "--reads", str(args.reads),
                                  "--dir", base, "--working-set", capacity],
                                 stdout=subprocess.PIPE, text=True, check=True).stdout
            return json.loads(out.strip().splitlines()[-1])
        over, info = run_working_set("256M")
        within, _ = run_working_set("1G")
        print("working set 768 MiB, random reads of 32 MiB: 3x capacity %.1f/s, within capacity %.1f/s; %.2f" %
              (over, within, over / within))
        print("  3x capacity spill counters:", json.dumps(info))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
