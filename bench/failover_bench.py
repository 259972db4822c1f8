"""How long readers wait when a node that owns replicated objects dies (docs/cluster.md,
"Replicas"). Three csmd nodes on loopback (node 1 hosts the embedded coordinator); node
2 puts N numpy arrays with copies=2 (node 3 holds the replicas); a reader on node 1
that holds none of them starts reading them one by one, node 2's csmd is killed with
SIGKILL right before, and the reader times each get: the first waits for node 3 to
take the objects over (node 2 seen dead after --dead-after-ms, then one heartbeat); by
then node 1 is named the new replica of each (k = 2 again) and fetches them from node 3,
so the rest are mostly here already. Beside it, the same gets (other arrays of the same
size) while node 2 lives, each fetched from it.

  PYTHONPATH=build/release/python python3 bench/failover_bench.py BUILD_DIR [--dead-after-ms 1000]
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time


def start(csmd, args):
    p = subprocess.Popen([csmd] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        said.append(line)
        if "csmd ready" in line:
            return p, said
    p.kill()
    raise RuntimeError("csmd did not start: " + "".join(said))


def run(script, socket, *args):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script), socket] + list(map(str, args)),
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stdout + out.stderr)
    return out.stdout


PUT = """
    import csm, sys
    import numpy as np
    n, mib = int(sys.argv[2]), int(sys.argv[3])
    with csm.Client(sys.argv[1]) as c:
        for i in range(n):
            c.put("a%d" % i, np.full(mib << 17, i, dtype=np.int64), copies=2)
            c.put("b%d" % i, np.full(mib << 17, i, dtype=np.int64), copies=2)
"""
AWAIT = """
    import csm, sys, time
    n = int(sys.argv[2])
    with csm.Client(sys.argv[1]) as c:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            held = c.info()["replicas"]["held"]
            if held >= 2 * n:
                break
            time.sleep(0.05)
        assert held >= 2 * n, held
"""
# Gets b0..b(n-1) (fetched from their live owner: the baseline), says "ready", waits for
# a go file, then gets a0..a(n-1); prints each get's seconds.
READ = """
    import csm, os, sys, time
    n, go = int(sys.argv[2]), sys.argv[3]
    with csm.Client(sys.argv[1]) as c:
        for i in range(n):
            t = time.monotonic()
            b = c.get("b%d" % i, timeout=60)
            assert int(b[0]) == i and int(b[-1]) == i
            print("b %d %.6f" % (i, time.monotonic() - t), flush=True)
        print("ready", flush=True)
        while not os.path.exists(go):
            time.sleep(0.0005)
        t0 = time.monotonic()
        for i in range(n):
            t = time.monotonic()
            a = c.get("a%d" % i, timeout=60)
            assert int(a[0]) == i and int(a[-1]) == i
            print("a %d %.6f" % (i, time.monotonic() - t), flush=True)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    ap.add_argument("--dead-after-ms", type=int, default=1000)
    ap.add_argument("--objects", type=int, default=8)
    ap.add_argument("--mib", type=int, default=16)
    a = ap.parse_args()
    csmd = os.path.join(a.build_dir, "csmd")
    with tempfile.TemporaryDirectory(prefix="csm-failover-") as d:
        common = ["--cluster-secret", "bench", "--peer-address", "127.0.0.1:0",
                  "--dead-after-ms", str(a.dead_after_ms)]
        sock = [os.path.join(d, "%d.sock" % i) for i in (1, 2, 3)]
        one, said = start(csmd, ["--socket", sock[0], "--node-id", "1", "--coordinate", "127.0.0.1:0"] + common)
        port = next(l.split("csmd coordinator port ")[1].split()[0] for l in said if "coordinator port" in l)
        join = ["--join", "127.0.0.1:" + port]
        two, _ = start(csmd, ["--socket", sock[1], "--node-id", "2"] + join + common)
        three, _ = start(csmd, ["--socket", sock[2], "--node-id", "3"] + join + common)
        try:
            run(PUT, sock[1], a.objects, a.mib)
            run(AWAIT, sock[2], a.objects)
            go = os.path.join(d, "go")
            reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(READ), sock[0], str(a.objects), go],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            live = []  # the baseline: the same gets while the owner lives
            while True:
                line = reader.stdout.readline().strip()
                if line == "ready":
                    break
                if not line:
                    raise RuntimeError(reader.stderr.read())
                live.append(float(line.split()[2]))
            two.send_signal(signal.SIGKILL)
            two.wait()
            open(go, "w").close()
            out, err = reader.communicate(timeout=300)
            if reader.returncode != 0:
                raise RuntimeError(out + err)
            rows = [l.split() for l in out.strip().splitlines() if l.startswith("a ")]
            first = float(rows[0][2])
            rest = [float(r[2]) for r in rows[1:]]
            print("dead-after %d ms, %d arrays of %d MiB: the first get after the owner's kill -9 waited %.3f s "
                  "(the take-over); the other gets median %.1f ms (node 1, the reader's node, is named the new "
                  "replica of each object taken over, so it fetches them from node 3 meanwhile); "
                  "the same gets from the live owner before, median %.1f ms" %
                  (a.dead_after_ms, a.objects, a.mib, first, statistics.median(rest) * 1e3,
                   statistics.median(live) * 1e3))
        finally:
            for p in (two, three, one):
                if p.poll() is None:
                    p.terminate()
                    p.wait(timeout=20)


if __name__ == "__main__":
    main()
