"""Ray's object store and Vineyard, started for one benchmark run (--peers), shared by
bench/python_bench.py (tables) and bench/python_values_bench.py (arrays, small objects)."""
import os
import shutil
import subprocess
import tempfile
import time


class Vineyard:
    """A vineyardd of its own (local metadata, a socket in a temporary directory) and a
    client of it; close() stops it."""

    def __init__(self, store_bytes):
        import vineyard
        self.module = vineyard
        self.dir = tempfile.mkdtemp(prefix="csm-peers-")
        self.socket = os.path.join(self.dir, "vineyard.sock")
        vineyardd = os.path.join(os.path.dirname(vineyard.__file__), "bdist", "vineyardd")
        self.daemon = subprocess.Popen([vineyardd, "--meta=local", "--socket=" + self.socket,
                                        "--size=%d" % store_bytes, "--rpc=false"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not os.path.exists(self.socket):
            if time.time() > deadline or self.daemon.poll() is not None:
                raise SystemExit("vineyardd did not start")
            time.sleep(0.05)
        self.client = vineyard.connect(self.socket)

    def close(self):
        self.daemon.terminate()
        self.daemon.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


class Peers:
    """Ray's object store and Vineyard, each started here for the run. `timed_gets(get,
    repeat)` is the caller's timing of gets, run in a Ray actor for Ray's gets."""

    def __init__(self, nbytes, timed_gets, store_copies):
        import ray
        self.ray = ray
        store = max(2 << 30, store_copies * nbytes)
        self.vineyard = Vineyard(store)
        self.client, self.socket = self.vineyard.client, self.vineyard.socket
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=store, log_to_driver=False)

        @ray.remote
        class Consumer:
            def ready(self):
                return True

            def gets(self, refs, repeat):  # refs in a list: Ray resolves no argument for us
                return timed_gets(lambda: ray.get(refs[0]), repeat)
        self.consumer_class = Consumer

    def close(self):
        self.ray.shutdown()
        self.vineyard.close()

    def ray_round(self, value, repeat):
        """ray.put of `value`, then the gets in a new actor (started and warm before timing)."""
        consumer = self.consumer_class.remote()
        self.ray.get(consumer.ready.remote())
        t0 = time.perf_counter()
        ref = self.ray.put(value)
        put = time.perf_counter() - t0
        got = self.ray.get(consumer.gets.remote([ref], repeat))
        self.ray.kill(consumer)
        del ref
        return put, got

    def vineyard_round(self, value, repeat, run_consumer):
        """Vineyard's put of `value`, then run_consumer("vineyard", "SOCKET|OID", repeat)."""
        t0 = time.perf_counter()
        oid = self.client.put(value)
        put = time.perf_counter() - t0
        got = run_consumer("vineyard", "%s|%r" % (self.socket, oid), repeat)
        self.client.delete(oid)
        return put, got

    def ray_small(self, obj, n):
        """ray.get(ray.put(obj)) in this process, n times: the seconds of each."""
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            got = self.ray.get(self.ray.put(obj))
            times.append(time.perf_counter() - t0)
            assert got == obj
        return times
