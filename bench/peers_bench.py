"""csm beside what a Python user would otherwise pick, at several sizes, in one run, with
Markdown tables and plots (issue 17, part 3). scripts/run-peers starts the csmd, makes the
virtualenv with the peers and runs this; the results go to docs/peers/.

Systems, each used the way its documentation shows:
  csm        csm.put(key, value) / csm.get(key)
  ray        ray.put(value) in the driver / ray.get(ref) in an actor (Ray's object store)
  vineyard   client.put(value) / client.get(object_id) (a vineyardd of its own)
  ipc        an Arrow IPC file written to /dev/shm / opened memory-mapped (zero-copy)
  flight     do_put to an Arrow Flight server process / do_get from it (gRPC, loopback)
Values: numpy arrays (float64), pyarrow tables (int64, double, 16-byte utf8 per row) and
small Python objects (dicts of N str values; csm, Ray and Vineyard only: IPC and Flight
carry Arrow data, not Python objects).
Measures, each the median of many rounds after a warm-up round that is not counted:
  put                the producer makes the value available to other processes
  first get          another process (started, connected and warm before any timing)
                     obtains the value for the first time
  first get + touch  the same and one pass over it: the array's sum, the sum of the
                     table's int64 column, the dict's values' lengths (checked against
                     the producer's, so every system is seen to deliver the same value)
  repeated get       the median of --repeat more gets of the same value there
"""
import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

MEASURES = ("put", "first get", "first get + touch", "repeated get")
KINDS = ("array", "table", "small")


# ---- values ---------------------------------------------------------------------------

def make_value(kind, size):
    """A value of `size` bytes (arrays, tables) or `size` entries (small objects)."""
    if kind == "array":
        return np.arange(size // 8, dtype=np.float64)
    if kind == "table":  # in chunks of up to 4M rows: a utf8 array holds < 2 GiB
        rows, chunks = size // 32, []
        for start in range(0, rows, 4 << 20):
            ids = pa.array(np.arange(start, min(rows, start + (4 << 20)), dtype=np.int64))
            values = pc.multiply(ids.cast(pa.float64()), 0.5)
            names = pc.utf8_rpad(pc.binary_join_element_wise("k", pc.cast(ids, pa.string()), "-"), 16, " ")
            chunks.append(pa.table({"id": ids, "value": values, "name": names}))
        return pa.concat_tables(chunks)
    return {i: "value-%d" % i for i in range(size)}


def touch(kind, value):
    """One pass over the value; the same number for the same value on every system."""
    if kind == "array":
        return float(value.sum())
    if kind == "table":
        return pc.sum(value.column("id")).as_py()
    return sum(len(v) for v in value.values())


def as_table(kind, value):
    """The Arrow form IPC and Flight carry: a table as it is, an array as one column."""
    return value if kind == "table" else pa.table({"a": value})


def from_table(kind, table):
    """Back from the Arrow form: an array's column as numpy (zero-copy if one chunk)."""
    return table if kind == "table" else table.column(0).to_numpy()


def timed_gets(get, kind, repeat):
    """[first get, first get + touch, median of `repeat` more gets, the touch's result]."""
    t0 = time.perf_counter()
    value = get()
    first = time.perf_counter() - t0
    result = touch(kind, value)
    used = time.perf_counter() - t0
    del value
    repeats = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = get()
        repeats.append(time.perf_counter() - t0)
        del value
    gc.collect()
    return [first, used, statistics.median(repeats), result]


# ---- the consumer process (csm, vineyard, ipc, flight) --------------------------------

def consume(system, where):
    """Connects once, says "ready", then answers one JSON request per line on stdin."""
    if system == "csm":
        import csm
        csm.connect()

        def getter(handle, kind):
            return lambda: csm.get(handle)
    elif system == "vineyard":
        import vineyard
        client = vineyard.connect(where)

        def getter(handle, kind):
            oid = vineyard.ObjectID(handle)
            return lambda: client.get(oid)
    elif system == "ipc":
        def getter(handle, kind):
            return lambda: from_table(kind, pa.ipc.open_file(pa.memory_map(handle)).read_all())
    else:
        client = flight.connect(where)
        client.wait_for_available(timeout=30)

        def getter(handle, kind):
            ticket = flight.Ticket(handle.encode())
            return lambda: from_table(kind, client.do_get(ticket).read_all())
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        answer = timed_gets(getter(request["handle"], request["kind"]), request["kind"], request["repeat"])
        print(json.dumps(answer), flush=True)


class Consumer:
    """A long-lived consumer process of one system, asked for one value at a time."""

    def __init__(self, system, where=""):
        self.proc = subprocess.Popen([sys.executable, __file__, "--consume", system, "--where", where],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the %s consumer did not start" % system)

    def gets(self, handle, kind, repeat):
        self.proc.stdin.write(json.dumps({"handle": handle, "kind": kind, "repeat": repeat}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("a consumer died (its error is above)")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ---- a Flight server process ----------------------------------------------------------

class TableServer(flight.FlightServerBase):
    """Holds the tables clients put, by descriptor path; do_get streams one back."""

    def __init__(self):
        super().__init__("grpc://127.0.0.1:0")
        self.tables = {}
        self.lock = threading.Lock()

    def do_put(self, context, descriptor, reader, writer):
        table = reader.read_all()
        with self.lock:
            self.tables[descriptor.path[0].decode()] = table

    def do_get(self, context, ticket):
        with self.lock:
            table = self.tables[ticket.ticket.decode()]
        return flight.RecordBatchStream(table)

    def do_action(self, context, action):
        if action.type == "drop":
            with self.lock:
                self.tables.pop(action.body.to_pybytes().decode(), None)
        return []


def serve_flight():
    server = TableServer()
    print(server.port, flush=True)
    server.serve()


# ---- the systems, producer side -------------------------------------------------------

class Csm:
    name = "csm"

    def __init__(self, args):
        import csm
        self.csm = csm
        csm.connect()
        self.consumer = Consumer("csm")
        self.count = 0

    def supports(self, kind):
        return True

    def put(self, kind, value):
        self.count += 1
        key = "peers-bench/%d/%d" % (os.getpid(), self.count)
        self.csm.put(key, value)
        return key

    def gets(self, handle, kind, repeat):
        return self.consumer.gets(handle, kind, repeat)

    def drop(self, handle):
        self.csm.delete(handle)
        # The memory goes spare (for the next put) once the consumer's pins are gone, which
        # csmd hears a moment later: wait for that, as the other stores free at once.
        deadline = time.time() + 30
        while self.csm.info()["objects_awaiting_unpin"] and time.time() < deadline:
            time.sleep(0.002)

    def close(self):
        self.consumer.close()


class Ray:
    name = "ray"

    def __init__(self, args):
        import ray
        self.ray = ray
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=args.store_bytes,
                 log_to_driver=False)

        @ray.remote
        class Getter:
            def ready(self):
                return True

            def gets(self, refs, kind, repeat):  # in a list: Ray resolves no argument for us
                return timed_gets(lambda: ray.get(refs[0]), kind, repeat)
        self.actor = Getter.remote()
        ray.get(self.actor.ready.remote())
        self.refs = {}

    def supports(self, kind):
        return True

    def put(self, kind, value):
        ref = self.ray.put(value)
        self.refs[ref.hex()] = ref
        return ref.hex()

    def gets(self, handle, kind, repeat):
        return self.ray.get(self.actor.gets.remote([self.refs[handle]], kind, repeat))

    def drop(self, handle):
        del self.refs[handle]

    def close(self):
        self.ray.shutdown()


class VineyardStore:
    name = "vineyard"

    def __init__(self, args):
        from python_peers import Vineyard
        self.vineyard = Vineyard(args.store_bytes)
        self.consumer = Consumer("vineyard", self.vineyard.socket)

    def supports(self, kind):
        try:  # Vineyard has no builder for some Python values
            self.drop(self.put(kind, make_value(kind, 8 if kind == "small" else 1024)))
            return True
        except Exception as e:  # noqa: BLE001 (any refusal means "not supported")
            print("vineyard cannot put a %s: %s" % (kind, str(e).splitlines()[0]), file=sys.stderr)
            return False

    def put(self, kind, value):
        return repr(self.vineyard.client.put(value))

    def gets(self, handle, kind, repeat):
        return self.consumer.gets(handle, kind, repeat)

    def drop(self, handle):
        self.vineyard.client.delete(self.vineyard.module.ObjectID(handle))

    def close(self):
        self.consumer.close()
        self.vineyard.close()


class Ipc:
    name = "ipc"

    def __init__(self, args):
        self.consumer = Consumer("ipc")
        self.count = 0

    def supports(self, kind):
        return kind != "small"

    def put(self, kind, value):
        self.count += 1
        path = "/dev/shm/csm-peers-bench-%d-%d.arrow" % (os.getpid(), self.count)
        table = as_table(kind, value)
        with pa.OSFile(path, "wb") as f:
            with pa.ipc.new_file(f, table.schema) as w:
                w.write_table(table)
        return path

    def gets(self, handle, kind, repeat):
        return self.consumer.gets(handle, kind, repeat)

    def drop(self, handle):
        os.unlink(handle)

    def close(self):
        self.consumer.close()


class Flight:
    name = "flight"

    def __init__(self, args):
        self.server = subprocess.Popen([sys.executable, __file__, "--flight-server"], stdout=subprocess.PIPE,
                                       text=True)
        where = "grpc://127.0.0.1:%s" % self.server.stdout.readline().strip()
        self.client = flight.connect(where)
        self.client.wait_for_available(timeout=30)
        self.consumer = Consumer("flight", where)
        self.count = 0

    def supports(self, kind):
        return kind != "small"

    def put(self, kind, value):
        self.count += 1
        handle = "value-%d" % self.count
        table = as_table(kind, value)
        writer, _ = self.client.do_put(flight.FlightDescriptor.for_path(handle), table.schema)
        writer.write_table(table)
        writer.close()
        return handle

    def gets(self, handle, kind, repeat):
        return self.consumer.gets(handle, kind, repeat)

    def drop(self, handle):
        list(self.client.do_action(flight.Action("drop", handle.encode())))

    def close(self):
        self.consumer.close()
        self.client.close()
        self.server.terminate()
        self.server.wait(timeout=30)


SYSTEMS = {"csm": Csm, "ray": Ray, "vineyard": VineyardStore, "ipc": Ipc, "flight": Flight}


# ---- the run --------------------------------------------------------------------------

def run(args):
    systems = [SYSTEMS[name](args) for name in args.systems]
    sizes = {"array": args.array_mib, "table": args.table_mib, "small": args.small_entries}
    # results[kind][size][system][measure] = [seconds, ...]
    results = {kind: {} for kind in args.kinds}
    try:
        for kind in args.kinds:
            takers = [s for s in systems if s.supports(kind)]
            for size in sizes[kind]:
                nbytes = size << 20 if kind != "small" else size
                value = make_value(kind, nbytes)
                expected = touch(kind, value)
                big = kind != "small" and size >= 256
                rounds = args.rounds if big else args.small_rounds
                repeat = args.repeat if not big else max(3, args.repeat // 4)  # Flight copies each time
                cell = {s.name: {m: [] for m in MEASURES} for s in takers}
                for r in range(rounds + 1):  # round 0 warms up and is not counted
                    for s in takers:
                        t0 = time.perf_counter()
                        handle = s.put(kind, value)
                        put = time.perf_counter() - t0
                        first, used, repeated, result = s.gets(handle, kind, repeat)
                        s.drop(handle)
                        if result != expected:
                            raise SystemExit("%s gave a different %s (%r, expected %r)"
                                             % (s.name, kind, result, expected))
                        if r > 0:
                            for m, x in zip(MEASURES, (put, first, used, repeated)):
                                cell[s.name][m].append(x)
                results[kind][size] = cell
                print_cell(kind, size, cell, rounds)
                del value
    finally:
        for s in systems:
            s.close()
    return results


def fmt(seconds):
    if seconds < 1e-3:
        return "%.1f µs" % (seconds * 1e6)
    if seconds < 1:
        return "%.2f ms" % (seconds * 1e3)
    return "%.2f s" % seconds


def size_label(kind, size):
    if kind == "small":
        return "%d entries" % size
    return "%d GiB" % (size >> 10) if size >= 1024 and size % 1024 == 0 else "%d MiB" % size


def print_cell(kind, size, cell, rounds):
    print("%s of %s, %d rounds, medians (min-max), ratio = system / csm" % (kind, size_label(kind, size), rounds),
          flush=True)
    for m in MEASURES:
        base = statistics.median(cell["csm"][m]) if "csm" in cell else None
        parts = []
        for name, measures in cell.items():
            xs = measures[m]
            med = statistics.median(xs)
            ratio = " %.2fx" % (med / base) if base else ""
            parts.append("%s %s (%s-%s)%s" % (name, fmt(med), fmt(min(xs)), fmt(max(xs)), ratio))
        print("  %-18s %s" % (m, "; ".join(parts)), flush=True)


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__, "pyarrow": pa.__version__}
    for name in ("ray", "vineyard"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def write_markdown(path, results, args):
    lines = ["# csm beside its peers, from Python", "",
             "Written by `scripts/run-peers` (bench/peers_bench.py) on %s: %d cores, %d GiB; %s." % (
                 datetime.date.today().isoformat(), os.cpu_count(),
                 os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30,
                 ", ".join("%s %s" % kv for kv in versions().items())),
             "Each figure is the median of the rounds (a warm-up round before them is not counted); "
             "in brackets the system's median divided by csm's (above 1: csm is faster). "
             "How each system is used and what each measure is: the docstring of bench/peers_bench.py "
             "and docs/python.md.", ""]
    for kind, by_size in results.items():
        lines += ["## %s" % {"array": "numpy arrays (float64)", "table": "pyarrow tables (int64, double, utf8)",
                             "small": "small Python objects (dicts of str)"}[kind], "",
                  "![%s](%s.png)" % (kind, kind), ""]
        names = list(next(iter(by_size.values())).keys())
        for m in MEASURES:
            lines += ["**%s**" % m, "", "| size | " + " | ".join(names) + " |",
                      "|---|" + "---:|" * len(names)]
            for size, cell in by_size.items():
                base = statistics.median(cell["csm"][m])
                row = []
                for name in names:
                    med = statistics.median(cell[name][m])
                    row.append(fmt(med) if name == "csm" else "%s (%.2f×)" % (fmt(med), med / base))
                lines.append("| %s | %s |" % (size_label(kind, size), " | ".join(row)))
            lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_plots(directory, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for kind, by_size in results.items():
        fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
        sizes = list(by_size.keys())
        xs = [s if kind == "small" else s * (1 << 20) for s in sizes]
        for ax, m in zip(axes.flat, MEASURES):
            for name in next(iter(by_size.values())).keys():
                meds = [statistics.median(by_size[s][name][m]) for s in sizes]
                lows = [min(by_size[s][name][m]) for s in sizes]
                highs = [max(by_size[s][name][m]) for s in sizes]
                line, = ax.plot(xs, meds, marker="o", label=name, linewidth=2.5 if name == "csm" else 1.2)
                ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(m)
            ax.set_xlabel("entries" if kind == "small" else "bytes")
            ax.set_ylabel("seconds (median; band: min-max)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle({"array": "numpy arrays to another process", "table": "pyarrow tables to another process",
                      "small": "small Python objects to another process"}[kind])
        fig.savefig(os.path.join(directory, "%s.png" % kind), dpi=90)
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--array-mib", type=int, nargs="+", default=[1, 16, 256, 1024])
    ap.add_argument("--table-mib", type=int, nargs="+", default=[1, 16, 256, 1024])
    ap.add_argument("--small-entries", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of values of 256 MiB and more")
    ap.add_argument("--small-rounds", type=int, default=25, help="rounds of smaller values")
    ap.add_argument("--repeat", type=int, default=20, help="repeated gets per round (a quarter for large values)")
    ap.add_argument("--store-bytes", type=int, default=4 << 30, help="Ray's and Vineyard's store size")
    ap.add_argument("--out", help="a directory for results.md and the plots")
    ap.add_argument("--consume", help=argparse.SUPPRESS)
    ap.add_argument("--where", default="", help=argparse.SUPPRESS)
    ap.add_argument("--flight-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.consume:
        return consume(args.consume, args.where)
    if args.flight_server:
        return serve_flight()
    if "csm" not in args.systems:
        raise SystemExit("ratios are against csm: keep csm in --systems")
    results = run(args)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"versions": versions(), "results": results}, f)
        write_markdown(os.path.join(args.out, "results.md"), results, args)
        write_plots(args.out, results)
        print("wrote %s/results.md and its plots" % args.out)


if __name__ == "__main__":
    main()
