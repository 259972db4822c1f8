"""The csm Python module against a real csmd: tables, numpy arrays, bytes and any
picklable object put by one Python process are read by another with no copy (their
buffers are the heap's), errors arrive as the exceptions the module documents, a value
keeps its object pinned exactly as long as Python holds it, and the module works from
threads, forked and spawned processes, and across a csmd restart. Run by ctest
(tests/CMakeLists.txt) with PYTHONPATH at the built module."""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

import pyarrow as pa

BINARY_DIR = os.environ["CSM_TEST_BINARY_DIR"]

# The same table, built the same way in every process: several type families, nulls,
# and more than one chunk.
MAKE_TABLE = textwrap.dedent("""
    import pyarrow as pa
    def make_table(rows=5000):
        ids = pa.array(range(rows), pa.int64())
        names = pa.array([None if i % 7 == 0 else "name-%d" % i for i in range(rows)])
        lists = pa.array([[j for j in range(i % 5)] for i in range(rows)], pa.list_(pa.int32()))
        points = pa.StructArray.from_arrays(
            [pa.array([i * 0.5 for i in range(rows)]), pa.array([i % 2 == 0 for i in range(rows)])],
            names=["x", "even"])
        colors = pa.array(["red", "green", "blue"] * (rows // 3) + ["red"] * (rows % 3)).dictionary_encode()
        t = pa.table({"id": ids, "name": names, "list": lists, "point": points, "color": colors})
        return pa.concat_tables([t.slice(0, rows // 2), t.slice(rows // 2)])
""")
exec(MAKE_TABLE)


def run_python(code, env, timeout=60):
    """Runs `code` in a new Python process (another client of the node)."""
    script = MAKE_TABLE + "\nimport csm, json\n" + textwrap.dedent(code)
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("child failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    return p.stdout


def _forked_worker(i):
    """A multiprocessing worker (fork start method) of a parent that used csm first."""
    import csm
    parent = csm.get_table("fork/parent", timeout=10)
    csm.put_table("fork/w%d" % i, pa.table({"w": pa.array([i] * 20000, pa.int64()),
                                             "r": pa.array(range(20000), pa.int64())}))
    return parent.num_rows


def _spawned_worker(i):
    """A multiprocessing worker started with the spawn method: a fresh interpreter."""
    import csm
    import numpy as np
    csm.put("spawn/%d" % i, np.full(1000, i))
    return int(csm.get("spawn/%d" % i).sum())


class PythonTablesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="csm-py-")
        socket = os.path.join(cls.dir.name, "node.sock")
        cls.csmd = subprocess.Popen([os.path.join(BINARY_DIR, "csmd"), "--socket", socket],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        ready = False
        while time.monotonic() < deadline:
            line = cls.csmd.stdout.readline()
            if not line:
                break
            if "csmd ready" in line:
                ready = True
                break
        if not ready:
            cls.csmd.kill()
            raise RuntimeError("csmd did not start")
        threading.Thread(target=cls.csmd.stdout.read, daemon=True).start()  # drain its log
        cls.env = dict(os.environ, CSM_SOCKET=socket)
        os.environ["CSM_SOCKET"] = socket
        import csm
        cls.csm = csm
        csm.connect()

    @classmethod
    def tearDownClass(cls):
        cls.csmd.terminate()
        cls.csmd.wait(timeout=20)
        cls.dir.cleanup()

    def pins(self):
        me = [c for c in self.csm.info()["clients"] if c["pid"] == os.getpid()]
        return me[0]["pins"]

    def test_a_table_put_by_one_process_is_read_by_another_without_a_copy(self):
        stats = json.loads(run_python("""
            print(json.dumps(csm.put_table("shared", make_table())))
        """, self.env))
        self.assertEqual(stats["buffers_in_place"], 0)
        self.assertGreater(stats["buffers_copied"], 0, "pyarrow's buffers are copied in once")
        self.assertGreater(stats["bytes_copied"], 5000 * 8)
        out = run_python("""
            t = csm.get_table("shared")
            assert t.equals(make_table()), "rows differ"
            w = csm.info()["window"]
            base, size = int(w["base"], 16), w["size"]
            def inside(array):
                for b in array.buffers():
                    if b is not None and b.size > 0:
                        assert base <= b.address < base + size, hex(b.address)
                if isinstance(array, pa.DictionaryArray):
                    inside(array.dictionary)
            for column in t.columns:
                for chunk in column.chunks:
                    inside(chunk)
            print("verified", t.num_rows)
        """, self.env)
        self.assertIn("verified 5000", out)

    def test_a_new_processs_first_get_imports_nothing_it_does_not_need(self):
        # pyarrow.table() asks whether its argument is a pandas DataFrame, which imports
        # pandas (~0.2 s where it is installed) on a process's first get. A finder that
        # records every attempt to import pandas (and refuses it) shows whether it happens.
        self.csm.put_table("first-get", make_table(100))
        out = run_python("""
            import sys
            class Recorder:
                asked = []
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] == "pandas":
                        Recorder.asked.append(name)
                        raise ImportError("not here")
                    return None
            sys.meta_path.insert(0, Recorder())
            csm.connect()
            t = csm.get_table("first-get")
            print("rows", t.num_rows, "pandas asked", Recorder.asked)
        """, self.env)
        self.assertIn("rows 100 pandas asked []", out)

    def test_errors_are_the_documented_exceptions(self):
        with self.assertRaises(KeyError) as missing:
            self.csm.get_table("no-such-table")
        self.assertIn("no object under key", str(missing.exception))
        with self.assertRaises(TypeError) as not_a_table:
            self.csm.put_table("not-a-table", [1, 2, 3])
        self.assertIn("__arrow_c_stream__", str(not_a_table.exception))
        self.csm.put_table("once", make_table(10))
        with self.assertRaises(self.csm.Error) as again:
            self.csm.put_table("once", make_table(10))
        self.assertIn("already committed", str(again.exception))
        with self.assertRaises(ValueError):
            self.csm.get_table("once", timeout=-1)
        with self.assertRaises(ValueError):
            self.csm.get_table("once", timeout=float("nan"))
        # Waiting "forever" is a wait, not an overflow: the table is there, so it returns.
        for forever in (float("inf"), 1e30):
            self.assertEqual(self.csm.get_table("once", timeout=forever).num_rows, 10)
        # Key rules (csm/key.h): '#' is reserved for table parts; no control characters.
        for bad in ("T#0", "a\x00b", "", "k" * 169):
            with self.assertRaises(ValueError, msg=repr(bad)):
                self.csm.put_table(bad, make_table(10))
        with self.assertRaises(ValueError):
            self.csm.get_table("")
        with self.assertRaises(self.csm.Error):
            self.csm.connect("/elsewhere/node.sock")  # one node per process

    def test_forked_pool_workers_each_put_their_own_table(self):
        # The parent used csm before the pool forked its workers (Python's default start
        # method on Linux): each worker must build in its own memory.
        import multiprocessing
        self.csm.put_table("fork/parent", make_table(300))
        with multiprocessing.get_context("fork").Pool(4) as pool:
            rows = pool.map(_forked_worker, range(8))
        self.assertEqual(rows, [300] * 8)
        for i in range(8):
            t = self.csm.get_table("fork/w%d" % i)
            self.assertEqual(t.column("w").to_pylist(), [i] * 20000, "worker %d" % i)
            self.assertEqual(t.column("r").to_pylist(), list(range(20000)))
        self.assertTrue(self.csm.get_table("fork/parent").equals(make_table(300)))
        self.csm.put_table("fork/after", make_table(50))  # the parent goes on building
        self.assertTrue(self.csm.get_table("fork/after").equals(make_table(50)))

    def test_get_waits_for_a_table_another_process_puts(self):
        child = subprocess.Popen([sys.executable, "-c", MAKE_TABLE + textwrap.dedent("""
            import csm, time
            time.sleep(0.3)
            csm.put_table("later", make_table(100))
        """)], env=self.env)
        t = self.csm.get_table("later", timeout=30)
        self.assertEqual(child.wait(timeout=30), 0)
        self.assertTrue(t.equals(make_table(100)))
        with self.assertRaises(TimeoutError):
            self.csm.get_table("never", timeout=0.1)

    def test_a_table_keeps_its_object_pinned_while_pyarrow_holds_it(self):
        self.csm.put_table("pinned", make_table(100))
        self.assertEqual(self.pins(), 0)
        t = self.csm.get_table("pinned")
        column = t.column("name")
        del t
        self.assertEqual(self.pins(), 1, "a column still refers to the heap")
        self.csm.delete("pinned")
        self.assertEqual(column.to_pylist(), make_table(100).column("name").to_pylist(),
                         "a deleted object's bytes stay while they are held")
        del column
        self.assertEqual(self.pins(), 0)
        with self.assertRaises(KeyError):
            self.csm.get_table("pinned")

    def window(self):
        w = self.csm.info()["window"]
        return int(w["base"], 16), w["size"]

    def inside_window(self, address):
        base, size = self.window()
        return base <= address < base + size

    def test_numpy_arrays_put_by_one_process_are_read_only_views_in_another(self):
        import numpy as np
        run_python("""
            import numpy as np
            csm.put("np/f64", np.arange(24, dtype=np.float64).reshape(2, 3, 4))
            csm.put("np/i8", np.arange(-50, 50, dtype=np.int8))
            csm.put("np/c128", np.array([1 + 2j, 3 - 4j]))
            csm.put("np/bool", np.array([[True, False], [False, True]]))
            csm.put("np/strided", np.arange(20, dtype=np.uint16)[::3])
            csm.put("np/fortran", np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)))
            csm.put("np/empty", np.zeros((0, 5), dtype=np.float32))
            csm.put("np/scalar", np.array(7.5))
        """, self.env)
        expected = {
            "np/f64": np.arange(24, dtype=np.float64).reshape(2, 3, 4),
            "np/i8": np.arange(-50, 50, dtype=np.int8),
            "np/c128": np.array([1 + 2j, 3 - 4j]),
            "np/bool": np.array([[True, False], [False, True]]),
            "np/strided": np.arange(20, dtype=np.uint16)[::3],
            "np/fortran": np.arange(6, dtype=np.int32).reshape(2, 3),
            "np/empty": np.zeros((0, 5), dtype=np.float32),
            "np/scalar": np.array(7.5),
        }
        for key, want in expected.items():
            got = self.csm.get(key)
            self.assertIsInstance(got, np.ndarray, key)
            self.assertEqual(got.dtype, want.dtype, key)
            self.assertEqual(got.shape, want.shape, key)
            self.assertTrue(np.array_equal(got, want), key)
            self.assertFalse(got.flags.writeable, key + ": a view of committed bytes is read-only")
            if got.size:
                self.assertTrue(self.inside_window(got.ctypes.data), key + ": no copy")
                self.assertEqual(got.ctypes.data % 64, 0, key + ": aligned for any dtype")
        with self.assertRaises(ValueError):
            self.csm.get("np/f64")[0, 0, 0] = 1.0

    def test_values_need_neither_pyarrow_nor_the_arrow_extension(self):
        # pyarrow is optional: a process that only puts and gets values never loads it.
        # The 24 MiB array is copied in and hashed on several threads (Builder::CopyIn).
        code = textwrap.dedent("""
            import sys, csm, numpy as np
            csm.put("plain/array", np.arange(3 << 20, dtype=np.int64))
            csm.put("plain/dict", {"a": 1})
            csm.put("plain/bytes", b"xyz")
            assert csm.get("plain/dict") == {"a": 1} and bytes(csm.get("plain/bytes")) == b"xyz"
            csm.ls(); csm.info()
            loaded = [m for m in ("pyarrow", "csm._csm_arrow") if m in sys.modules]
            assert not loaded, loaded
            """)
        p = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        import numpy as np
        self.assertTrue(np.array_equal(self.csm.get("plain/array"), np.arange(3 << 20, dtype=np.int64)))
        self.assertNotEqual(int(self.csm.stat("plain/array")["checksum"], 16), 0)

    def test_put_without_the_commit_checksum(self):
        import numpy as np
        self.csm.put("np/unsummed", np.arange(1000), checksum=False)
        self.assertTrue(np.array_equal(self.csm.get("np/unsummed"), np.arange(1000)))
        self.assertEqual(int(self.csm.stat("np/unsummed")["checksum"], 16), 0, "committed without a checksum")
        self.csm.put("np/summed", np.arange(1000))
        self.assertNotEqual(int(self.csm.stat("np/summed")["checksum"], 16), 0)

    def test_a_view_keeps_its_object_pinned(self):
        import numpy as np
        self.csm.put("np/pinned", np.arange(1000))
        view = self.csm.get("np/pinned")
        self.assertEqual(self.pins(), 1)
        self.csm.delete("np/pinned")
        self.assertEqual(int(view.sum()), sum(range(1000)), "a deleted object's bytes stay while viewed")
        del view
        self.assertEqual(self.pins(), 0)

    def test_bytes_and_any_picklable_object(self):
        import numpy as np
        run_python("""
            import numpy as np
            csm.put("b/bytes", b"csm bytes")
            csm.put("b/bytearray", bytearray(range(256)))
            csm.put("o/dict", {"n": 100, "names": ["a", "b"], "weights": np.ones(200000), "nested": {"t": (1, 2)}})
            csm.put("o/small", {i: str(i) for i in range(100)})
            csm.put("o/none", None)
        """, self.env)
        got = self.csm.get("b/bytes")
        self.assertIsInstance(got, memoryview)
        self.assertTrue(got.readonly)
        self.assertEqual(bytes(got), b"csm bytes")
        self.assertEqual(bytes(self.csm.get("b/bytearray")), bytes(range(256)))
        d = self.csm.get("o/dict")
        self.assertEqual((d["n"], d["names"], d["nested"]), (100, ["a", "b"], {"t": (1, 2)}))
        self.assertTrue(np.array_equal(d["weights"], np.ones(200000)))
        self.assertTrue(self.inside_window(d["weights"].ctypes.data),
                        "a large numpy member is an out-of-band buffer in the heap: no copy")
        self.assertEqual(self.csm.get("o/small"), {i: str(i) for i in range(100)})
        self.assertIsNone(self.csm.get("o/none"))

    def test_tables_and_dataframes_through_put_and_get(self):
        import pandas as pd
        frame = pd.DataFrame({"id": range(1000), "name": ["n%d" % i for i in range(1000)]})
        self.csm.put("df/frame", frame)
        self.assertTrue(self.csm.get("df/frame").equals(frame))
        self.csm.put("df/table", make_table(100))
        got = self.csm.get("df/table")
        self.assertIsInstance(got, pa.Table)
        self.assertTrue(got.equals(make_table(100)))
        self.csm.put("df/batch", make_table(50).to_batches()[0])
        self.assertEqual(self.csm.get("df/batch").num_rows, 25)

    def test_ls_stat_nodes_info_and_delete(self):
        import numpy as np
        run_python("""
            import numpy as np
            csm.put("meta/a", np.arange(10))
        """, self.env)
        listed = {o["key"]: o for o in self.csm.ls()}
        self.assertIn("meta/a", listed)
        self.assertEqual(listed["meta/a"]["type_name"], self.csm.stat("meta/a")["type_name"])
        stat = self.csm.stat("meta/a")
        self.assertGreater(stat["size"], 80)
        nodes = self.csm.nodes()
        self.assertEqual([m["node_id"] for m in nodes["members"]], [nodes["node_id"]])
        self.assertIn("used", self.csm.info())
        self.csm.delete("meta/a")
        self.assertNotIn("meta/a", {o["key"] for o in self.csm.ls()})
        with self.assertRaises(KeyError):
            self.csm.get("meta/a")
        with self.assertRaises(KeyError):
            self.csm.stat("meta/a")
        with self.assertRaises(TimeoutError):
            self.csm.get("meta/never", timeout=0.2)

    def test_client_is_a_context_manager_sharing_the_connection(self):
        import numpy as np
        with self.csm.Client() as c:
            self.assertEqual(c.socket, self.csm.connect())
            c.put("client/x", np.arange(5))
            self.assertTrue(np.array_equal(c.get("client/x"), np.arange(5)))
            self.assertIn("client/x", {o["key"] for o in c.ls()})
            self.assertEqual(c.stat("client/x")["key"], "client/x")
            self.assertIn("members", c.nodes())
            self.assertIn("used", c.info())
            kept = c.get("client/x")
        with self.assertRaises(ValueError):
            c.get("client/x")
        self.assertEqual(int(kept.sum()), 10, "values outlive the handle")
        c2 = self.csm.Client()
        c2.delete("client/x")
        c2.close()
        with self.assertRaises(ValueError):
            c2.ls()

    def test_threads_put_and_get_at_once(self):
        import numpy as np
        errors = []

        def work(t):
            try:
                for i in range(20):
                    key = "thread/%d/%d" % (t, i)
                    self.csm.put(key, np.full(1000 + i, t, dtype=np.int64))
                    got = self.csm.get(key)
                    assert got.shape == (1000 + i,) and int(got[0]) == t, key
                    self.csm.delete(key)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        self.assertEqual(errors, [])

    def test_spawned_processes_put_and_get(self):
        import multiprocessing
        import numpy as np
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            sums = pool.map(_spawned_worker, range(3))
        self.assertEqual(sums, [i * 1000 for i in range(3)])
        for i in range(3):
            self.assertTrue(np.array_equal(self.csm.get("spawn/%d" % i), np.full(1000, i)))

    def test_appended_parts_read_back_in_order(self):
        part = make_table(10)
        for i in range(3):
            stats = self.csm.append_table("parts", part)
            self.assertEqual(stats["part"], i)
        got = self.csm.get_table("parts")
        self.assertTrue(got.equals(pa.concat_tables([part] * 3)))
        other = pa.table({"x": [1]})
        with self.assertRaises(TypeError):
            self.csm.append_table("parts", other)


def start_csmd(args):
    """A csmd with `args`, once it says it is ready; `csmd.said` holds what it printed until then."""
    csmd = subprocess.Popen([os.path.join(BINARY_DIR, "csmd")] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    csmd.said = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = csmd.stdout.readline()
        if not line:
            break
        csmd.said.append(line)
        if "csmd ready" in line:
            threading.Thread(target=csmd.stdout.read, daemon=True).start()  # drain its log
            return csmd
    csmd.kill()
    raise RuntimeError("csmd did not start")


def start_pair(d, *more):
    """Node 1 (hosting the coordinator) and node 2 (joined to it), at d/1.sock and d/2.sock."""
    common = ["--cluster-secret", "py-test", "--peer-address", "127.0.0.1:0", *more]
    one = start_csmd(["--socket", os.path.join(d, "1.sock"), "--node-id", "1", "--coordinate", "127.0.0.1:0"] + common)
    port = next(l.split("csmd coordinator port ")[1].split()[0] for l in one.said if "csmd coordinator port " in l)
    two = start_csmd(["--socket", os.path.join(d, "2.sock"), "--node-id", "2", "--join", "127.0.0.1:" + port] + common)
    return one, two


def run_script(script, socket):
    """`script` run by a Python process of its own with `socket` as its argv[1]."""
    return subprocess.run([sys.executable, "-c", script, socket], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)


class PythonRestartTest(unittest.TestCase):
    """A Python process on a node that keeps its state (--state-dir) goes on across a
    kill -9 of csmd: the table it holds stays readable, its key answers again, and it
    puts new tables; its client attached again by itself (docs/operations.md)."""

    def test_a_python_process_outlives_a_killed_csmd(self):
        with tempfile.TemporaryDirectory(prefix="csm-py-") as d, \
                tempfile.TemporaryDirectory(prefix="csm-py-state-", dir="/dev/shm") as state:
            socket = os.path.join(d, "node.sock")
            args = ["--socket", socket, "--state-dir", state, "--reattach-grace-ms", "2000"]
            csmd = start_csmd(args)
            script = MAKE_TABLE + textwrap.dedent("""
                import csm, sys
                csm.connect()
                csm.put_table("kept", make_table())
                held = csm.get_table("kept")
                print("ready", flush=True)
                sys.stdin.readline()  # csmd was killed and started again meanwhile
                assert held.equals(make_table()), "the table held changed"
                again = csm.get_table("kept", timeout=10)
                assert again.equals(make_table()), "the key answers other rows"
                csm.put_table("after", make_table(100))
                assert csm.get_table("after").equals(make_table(100))
                print("verified", flush=True)
            """)
            child = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, CSM_SOCKET=socket),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
            try:
                self.assertEqual(child.stdout.readline().strip(), "ready")
                csmd.kill()
                csmd.wait(timeout=20)
                csmd = start_csmd(args)
                out, _ = child.communicate("go\n", timeout=60)
                self.assertIn("verified", out)
                self.assertEqual(child.returncode, 0, out)
            finally:
                if child.poll() is None:
                    child.kill()
                csmd.terminate()
                csmd.wait(timeout=20)


class PythonSpillTest(unittest.TestCase):
    """A node that spills (--spill-dir): numpy arrays three times its memory are put by
    one Python process, pushed out to disk, and read back whole by another; csm.stat and
    csm.info say what is on disk. (Each in a process of its own: one node per process.)"""

    PUT = textwrap.dedent("""
        import csm, sys
        import numpy as np
        with csm.Client(sys.argv[1]) as c:
            for i in range(12):  # 12 x 16 MiB in a node of 64 MiB
                c.put("arr%d" % i, np.full(2 << 20, i, dtype=np.int64))
            assert c.stat("arr0")["spilled"], c.stat("arr0")
            assert c.info()["spill"]["spills"] > 0
        print("put", flush=True)
    """)
    GET = textwrap.dedent("""
        import csm, sys
        with csm.Client(sys.argv[1]) as c:
            for i in range(12):
                a = c.get("arr%d" % i)
                assert a.shape == (2 << 20,) and int(a.min()) == i and int(a.max()) == i, i
                del a
            info = c.info()
            assert info["spill"]["restores"] > 0, info["spill"]
            assert info["used"] <= 64 << 20, info["used"]
        print("verified", flush=True)
    """)

    def test_arrays_three_times_the_nodes_memory_come_back_whole(self):
        with tempfile.TemporaryDirectory(prefix="csm-py-") as d:
            socket = os.path.join(d, "node.sock")
            csmd = start_csmd(["--socket", socket, "--capacity", "64M", "--spill-dir", os.path.join(d, "spill"),
                               "--spare-memory-ms", "0"])
            try:
                for script, said in ((self.PUT, "put"), (self.GET, "verified")):
                    out = subprocess.run([sys.executable, "-c", script, socket], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, timeout=120)
                    self.assertEqual(out.returncode, 0, out.stdout)
                    self.assertIn(said, out.stdout)
            finally:
                csmd.terminate()
                csmd.wait(timeout=20)

class PythonReplicaTest(unittest.TestCase):
    """put(..., copies=2) on a two-node cluster: the other node holds a replica and, once
    the owner's csmd is killed, takes the array over and serves it whole; an object put
    with the default (one copy) is gone with its owner. (Each in a process of its own: one
    node per process.)"""

    PUT = textwrap.dedent("""
        import csm, sys
        import numpy as np
        with csm.Client(sys.argv[1]) as c:
            c.put("kept", np.arange(1 << 20, dtype=np.int64), copies=2)
            c.put("alone", np.arange(1 << 20, dtype=np.int64))
            assert c.stat("kept")["copies"] == 2 and c.stat("alone")["copies"] == 1
        print("put", flush=True)
    """)
    AWAIT_REPLICA = textwrap.dedent("""
        import csm, sys, time
        with csm.Client(sys.argv[1]) as c:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if c.stat("kept")["replica_here"]:
                        print("replica", flush=True)
                        break
                except KeyError:
                    pass
                time.sleep(0.05)
            assert "alone" not in [o["key"] for o in c.ls() if o.get("here")], c.ls()
    """)
    GET = textwrap.dedent("""
        import csm, sys, time
        import numpy as np
        with csm.Client(sys.argv[1]) as c:
            a = c.get("kept", timeout=30)
            assert (a == np.arange(1 << 20, dtype=np.int64)).all()
            deadline = time.monotonic() + 30  # taken over a heartbeat or two after the owner is seen dead
            while not c.stat("kept")["taken_over"] and time.monotonic() < deadline:
                time.sleep(0.05)
            s = c.stat("kept")
            assert s["taken_over"] and s["owner_node"] == 1, s
            try:
                c.get("alone", timeout=3)
                raise AssertionError("an object with one copy outlived its owner")
            except (ConnectionError, TimeoutError) as e:
                assert "not alive" in str(e) or "could not" in str(e), e
        print("verified", flush=True)
    """)

    def run_on(self, script, socket, said):
        out = run_script(script, socket)
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertIn(said, out.stdout)

    def test_an_array_put_with_two_copies_outlives_its_owner(self):
        with tempfile.TemporaryDirectory(prefix="csm-py-") as d:
            one, two = start_pair(d, "--dead-after-ms", "1000")
            try:
                self.run_on(self.PUT, os.path.join(d, "2.sock"), "put")
                self.run_on(self.AWAIT_REPLICA, os.path.join(d, "1.sock"), "replica")
                two.kill()
                two.wait(timeout=20)
                self.run_on(self.GET, os.path.join(d, "1.sock"), "verified")
            finally:
                for csmd in (two, one):
                    if csmd.poll() is None:
                        csmd.terminate()
                        csmd.wait(timeout=20)


class PythonLazyTest(unittest.TestCase):
    """get(..., fetch="on-demand") of an array and get_table(..., fetch="on-demand") of a
    table another node holds: they return at once, the values read are right, and only
    the blocks read moved (docs/lazy.md). (Each side in a process of its own: one node
    per process.)"""

    PUT = textwrap.dedent("""
        import csm, sys
        import numpy as np
        import pyarrow as pa
        with csm.Client(sys.argv[1]) as c:
            c.put("big", np.arange(8 << 20, dtype=np.int64))  # 64 MiB
            n = 4 << 20
            c.put("wide", pa.table({"a": np.arange(n, dtype=np.int64), "b": np.zeros(n, dtype=np.int64),
                                    "c": np.ones(n, dtype=np.int64), "d": np.full(n, 7, dtype=np.int64)}))
        print("put", flush=True)
    """)
    GET = textwrap.dedent("""
        import csm, sys
        import numpy as np
        with csm.Client(sys.argv[1]) as c:
            lazy = c.info()["lazy"]
            if not lazy["enabled"]:
                print("lazy off", flush=True)
                sys.exit(0)
            try:
                c.get("big", timeout=30, fetch="sometimes")
                raise AssertionError("an unknown fetch mode was taken")
            except ValueError as e:
                assert "on-demand" in str(e), e
            a = c.get("big", timeout=30, fetch="on-demand")
            n = 8 << 20
            for i in (0, n // 2, n - 1):
                assert a[i] == i, (i, a[i])
            arrived = c.info()["lazy"]["arrived_bytes"]
            assert arrived < (4 << 20), c.info()["lazy"]  # three pages' blocks, not 64 MiB
            t = csm.get_table("wide", timeout=30, fetch="on-demand")
            n = 4 << 20
            assert t.column("a").to_numpy().sum() == n * (n - 1) // 2
            moved = c.info()["lazy"]["arrived_bytes"] - arrived
            assert (32 << 20) <= moved <= (128 << 20) * 3 // 10, moved  # column a (of four), and its edges
        print("verified", flush=True)
    """)

    def run_on(self, script, socket, said):
        out = run_script(script, socket)
        self.assertEqual(out.returncode, 0, out.stdout)
        if "lazy off" in out.stdout:
            self.skipTest("this kernel cannot serve lazy copies (userfaultfd on shared memory, Linux >= 6.6)")
        self.assertIn(said, out.stdout)

    def test_an_array_and_a_table_got_on_demand_move_only_what_is_read(self):
        with tempfile.TemporaryDirectory(prefix="csm-py-") as d:
            one, two = start_pair(d)
            try:
                self.run_on(self.PUT, os.path.join(d, "2.sock"), "put")
                self.run_on(self.GET, os.path.join(d, "1.sock"), "verified")
            finally:
                for csmd in (two, one):
                    csmd.terminate()
                    csmd.wait(timeout=20)


if __name__ == "__main__":
    unittest.main(verbosity=2)
