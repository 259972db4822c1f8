// The `csm` Python package's core extension, csm._csm (python/csm/ re-exports it): Python
// data in the global heap (docs/python.md) — numpy arrays, bytes, and any picklable object;
// Arrow tables and DataFrames go to csm._csm_arrow (python/arrow_module.cc), loaded only
// when one is put or got, so pyarrow is optional.
//
//   import csm, numpy as np
//   csm.put("weights", np.ones((1000, 1000)))   # copied into the heap once
//   w = csm.get("weights")                      # any process, any node: a read-only view
//
// One connection per process, opened by the first call (or connect()) and kept until the
// process exits: values handed out refer to it. csm._csm_arrow uses the same one
// (_client(), a capsule); both link the shared libcsm, so the process has one client.
#include <pybind11/pybind11.h>

#include <array>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csm/client.h"
#include "csm/containers.h"
#include "module_common.h"

namespace py = pybind11;

// ---- what put() keeps in the heap for Python values ----------------------------------
// Their bytes sit in 64-byte lines, so every view handed to numpy is aligned for any dtype.
// The empty constructor leaves a line unwritten: resize() does not zero what the copy
// overwrites at once.
struct alignas(64) CsmPyLine {
  CsmPyLine() {}  // NOLINT(modernize-use-equals-default): = default would zero the bytes
  std::array<uint8_t, 64> bytes;
};
CSM_REGISTER_TYPE(CsmPyLine, 1, bytes)
// The bytes of a Python buffer (bytes, bytearray, memoryview, an out-of-band pickle
// buffer).
struct CsmPyBytes {
  uint64_t size;
  csm::vector<CsmPyLine> lines;
};
CSM_REGISTER_TYPE(CsmPyBytes, 1, size, lines)
// A numpy array of a plain dtype, C order: numpy's dtype.str ("<f8"), its shape, its bytes.
struct CsmPyArray {
  csm::string dtype;
  csm::vector<int64_t> shape;
  CsmPyBytes data;
};
CSM_REGISTER_TYPE(CsmPyArray, 1, dtype, shape, data)
// Any other picklable object: its pickle (protocol 5) and the out-of-band buffers it
// names (a numpy member's bytes, say), each in the heap, so they come back as views.
struct CsmPyPickled {
  CsmPyBytes pickle;
  csm::vector<CsmPyBytes> buffers;
};
CSM_REGISTER_TYPE(CsmPyPickled, 1, pickle, buffers)

namespace {

using namespace csm_python;  // NOLINT: the helpers both extensions share

std::mutex g_mu;
csm::Client* g_client = nullptr;  // never destroyed: handed-out tables refer to it

csm::Client& Connected(const std::string& socket = {}) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_client != nullptr) {
    if (!socket.empty() && socket != g_client->config().socket_path) {
      Raise(csm::FailedPrecondition("this process is already connected to " +
                                    g_client->config().socket_path +
                                    ": one node per process (its window sits at a fixed address)"));
    }
    return *g_client;
  }
  csm::Config config = Check(csm::LoadConfig());
  if (!socket.empty()) config.socket_path = socket;
  g_client = Check(csm::Client::Connect(config)).release();  // milliseconds: the GIL stays
  return *g_client;
}

py::object FromJson(const std::string& text) {
  return py::module_::import("json").attr("loads")(text);
}

// ---- put / get of Python values -------------------------------------------------------

// Read-only bytes of an object in the heap, for Python's buffer protocol; `pin` keeps the
// object pinned while any view (memoryview, numpy array, pickle buffer) uses them.
struct HeapView {
  std::shared_ptr<const void> pin;
  const uint8_t* data = nullptr;
  uint64_t size = 0;
};

template <typename T>
std::shared_ptr<const void> Pinned(csm::Ref<T> ref) {
  return std::make_shared<csm::Ref<T>>(std::move(ref));
}

py::object ViewOf(const std::shared_ptr<const void>& pin, const CsmPyBytes& b) {
  return py::memoryview(py::cast(HeapView{pin, reinterpret_cast<const uint8_t*>(b.lines.data()), b.size}));
}

// A Python buffer's bytes, held (with the GIL) while they are copied without it.
struct Source {
  py::buffer_info info;
  const uint8_t* data() const { return static_cast<const uint8_t*>(info.ptr); }
  uint64_t size() const { return static_cast<uint64_t>(info.size * info.itemsize); }
};

Source SourceOf(const py::object& o) {
  py::buffer b = py::reinterpret_borrow<py::buffer>(o);
  py::buffer_info info = b.request();  // C-contiguous bytes (callers made sure)
  return Source{std::move(info)};
}

// Fills `out` with `n` bytes from `src` (inside Populate): bulk bytes at Commit, copied
// and hashed in one pass on several threads (Builder::CopyIn).
csm::Status Fill(csm::Builder& b, CsmPyBytes& out, const uint8_t* src, uint64_t n) {
  constexpr uint64_t kCopyAtCommit = 64 << 10;
  out.size = n;
  // Every line is written below: the vector's storage may be unzeroed memory.
  b.ExpectOverwrite((n + 63) / 64 * sizeof(CsmPyLine));
  out.lines.resize((n + 63) / 64);
  b.ExpectOverwrite(0);
  auto* bytes = reinterpret_cast<uint8_t*>(out.lines.data());
  if (n % 64 != 0) std::memset(bytes + n, 0, 64 - n % 64);  // no stale bytes after the value
  if (n >= kCopyAtCommit) return b.CopyIn(bytes, src, n);
  if (n > 0) std::memcpy(bytes, src, n);
  return csm::Status::OK();
}

bool IsNumpyArray(const py::object& o) {
  py::object type = py::type::of(o);
  return py::str(type.attr("__module__")).cast<std::string>() == "numpy" &&
         py::str(type.attr("__name__")).cast<std::string>() == "ndarray";
}
bool IsBytesLike(const py::object& o) {
  return py::isinstance<py::bytes>(o) || py::isinstance(o, py::module_::import("builtins").attr("bytearray")) ||
         py::isinstance<py::memoryview>(o);
}

// How put() commits: `checksum` false: without the commit checksum (Builder::DeferChecksum:
// copies to other nodes are still verified); `copies`: on how many nodes (Builder::SetCopies,
// 0: the node's --replicas).
struct PutOptions {
  bool checksum = true;
  uint32_t copies = 0;
};

// Builds a T with fill(T&, Builder&) -> Status and commits it under `key`.
template <typename T, typename Fn>
csm::Status Commit(csm::Client& client, const std::string& key, const PutOptions& options, Fn&& fill) {
  CSM_ASSIGN_OR_RETURN(csm::Builder b, client.NewBuilder());
  CSM_ASSIGN_OR_RETURN(T * root, b.New<T>());
  csm::Status filled;
  CSM_RETURN_IF_ERROR(b.Populate([&] { filled = fill(*root, b); }));
  CSM_RETURN_IF_ERROR(filled);
  if (!options.checksum) b.DeferChecksum();
  b.SetCopies(options.copies);
  return b.Commit(key);
}

void PutArray(csm::Client& client, const std::string& key, const py::object& array, const PutOptions& options) {
  py::object contiguous = py::module_::import("numpy").attr("ascontiguousarray")(array);
  const std::string dtype = py::str(contiguous.attr("dtype").attr("str"));
  std::vector<int64_t> shape;
  // From the array itself: ascontiguousarray makes a 0-d array 1-d.
  for (const py::handle d : array.attr("shape")) shape.push_back(d.cast<int64_t>());
  Source src = SourceOf(contiguous.attr("reshape")(-1).attr("view")("u1"));
  Check(WithoutGil([&] {
    return Commit<CsmPyArray>(client, key, options, [&](CsmPyArray& a, csm::Builder& b) {
      a.dtype.assign(dtype);
      a.shape.assign(shape.begin(), shape.end());
      return Fill(b, a.data, src.data(), src.size());
    });
  }));
}

void PutBytes(csm::Client& client, const std::string& key, const py::object& data, const PutOptions& options) {
  Source src = SourceOf(py::module_::import("builtins").attr("memoryview")(data).attr("cast")("B"));
  Check(WithoutGil([&] {
    return Commit<CsmPyBytes>(client, key, options, [&](CsmPyBytes& out, csm::Builder& b) {
      return Fill(b, out, src.data(), src.size());
    });
  }));
}

void PutPickled(csm::Client& client, const std::string& key, const py::object& value, const PutOptions& options) {
  py::list buffers;
  py::object pickled = py::module_::import("pickle").attr("dumps")(value, py::arg("protocol") = 5,
                                                                   py::arg("buffer_callback") = buffers.attr("append"));
  Source main = SourceOf(pickled);
  std::vector<Source> parts;
  for (const py::handle b : buffers) parts.push_back(SourceOf(b.attr("raw")()));
  Check(WithoutGil([&] {
    return Commit<CsmPyPickled>(client, key, options, [&](CsmPyPickled& p, csm::Builder& b) {
      CSM_RETURN_IF_ERROR(Fill(b, p.pickle, main.data(), main.size()));
      p.buffers.resize(parts.size());
      for (size_t i = 0; i < parts.size(); ++i) {
        CSM_RETURN_IF_ERROR(Fill(b, p.buffers[i], parts[i].data(), parts[i].size()));
      }
      return csm::Status::OK();
    });
  }));
}

// csm._csm_arrow, through the package (csm._tables): ImportError saying to install
// pyarrow if it is not there.
py::object Tables() { return py::module_::import("csm").attr("_tables")(); }

// put(): a table (anything with __arrow_c_stream__, a pandas DataFrame), a numpy array
// of a plain dtype, bytes-like data, or any picklable object.
void Put(const std::string& key, const py::object& value, bool checksum, uint32_t copies) {
  const PutOptions options{checksum, copies};
  if (IsPandasFrame(value) || py::hasattr(value, "__arrow_c_stream__")) {
    if (copies != 0) {
      throw py::value_error("copies= is not taken for tables yet: start the node with --replicas to "
                            "replicate the tables committed there");
    }
    Tables().attr("put_value")(key, value);
    return;
  }
  csm::Client& client = Connected();
  if (IsNumpyArray(value) && value.attr("dtype").attr("hasobject").cast<bool>() == false &&
      value.attr("dtype").attr("fields").is_none()) {
    PutArray(client, key, value, options);
  } else if (IsBytesLike(value)) {
    PutBytes(client, key, value, options);
  } else {
    PutPickled(client, key, value, options);
  }
}

// The descriptor of `key`, brought to this node if another holds it (waiting up to
// `wait`; as `fetch` says).
csm::ObjectInfo Find(csm::Client& client, const std::string& key, std::chrono::milliseconds wait,
                     csm::Fetch fetch) {
  csm::Result<csm::ObjectInfo> info = client.Lookup(key);
  if (info.ok()) return *info;
  // Not here: a typed Get fetches it from its owner (or waits for its commit); a
  // TypeMismatch means it is here now, as another type.
  csm::Result<csm::Ref<CsmPyBytes>> probe =
      WithoutGil([&] { return client.Get<CsmPyBytes>(key, csm::GetOptions{wait, fetch}); });
  if (!probe.ok() && !probe.status().IsTypeMismatch()) Raise(probe.status());
  return probe.ok() ? probe->info() : Check(client.Lookup(key));
}

template <typename T>
csm::Ref<T> GetAs(csm::Client& client, const std::string& key, csm::Fetch fetch) {
  return Check(WithoutGil([&] { return client.Get<T>(key, csm::GetOptions{{}, fetch}); }));
}

py::object Get(const std::string& key, double timeout, const std::string& fetch_name) {
  csm::Client& client = Connected();
  const csm::Fetch fetch = FetchMode(fetch_name);
  const csm::ObjectInfo info = Find(client, key, Millis(timeout), fetch);
  if (info.type_id == csm::TypeId<CsmPyArray>()) {
    csm::Ref<CsmPyArray> ref = GetAs<CsmPyArray>(client, key, fetch);
    const CsmPyArray& a = *ref;
    py::object numpy = py::module_::import("numpy");
    py::object dtype = numpy.attr("dtype")(std::string(a.dtype.data(), a.dtype.size()));
    py::tuple shape(a.shape.size());
    for (size_t i = 0; i < a.shape.size(); ++i) shape[i] = a.shape[i];
    py::object view = ViewOf(Pinned(std::move(ref)), a.data);
    return numpy.attr("frombuffer")(view, py::arg("dtype") = dtype).attr("reshape")(shape);
  }
  if (info.type_id == csm::TypeId<CsmPyBytes>()) {
    csm::Ref<CsmPyBytes> ref = GetAs<CsmPyBytes>(client, key, fetch);
    const CsmPyBytes& b = *ref;
    return ViewOf(Pinned(std::move(ref)), b);
  }
  if (info.type_id == csm::TypeId<CsmPyPickled>()) {
    csm::Ref<CsmPyPickled> ref = GetAs<CsmPyPickled>(client, key, fetch);
    const CsmPyPickled& p = *ref;
    std::shared_ptr<const void> pin = Pinned(std::move(ref));
    py::list buffers;
    for (const CsmPyBytes& b : p.buffers) buffers.append(ViewOf(pin, b));
    return py::module_::import("pickle").attr("loads")(ViewOf(pin, p.pickle), py::arg("buffers") = buffers);
  }
  // Otherwise a table (TypeError if it is not one either).
  return Tables().attr("get_value")(key, fetch_name);
}

// csm.Client: the process's connection as an object (a context manager). A process has
// one connection (its window sits at a fixed address): every Client shares it, and
// closing one only stops that handle.
struct ClientHandle {
  std::string socket;
  bool closed = false;
  void CheckOpen() const {
    if (closed) Raise(csm::InvalidArgument("this csm.Client is closed: make another (csm.Client())"));
  }
};

// csm ls as a list of dicts, every page.
py::list ListAll() {
  csm::Client& client = Connected();
  py::list out;
  std::string after;
  for (;;) {
    nlohmann::json page = nlohmann::json::parse(Check(client.ListJson(after)));
    for (const auto& o : page.at("objects")) {
      out.append(FromJson(o.dump()));
      after = o.at("key").get<std::string>();
    }
    if (!page.value("more", false) || page.at("objects").empty()) return out;
  }
}

}  // namespace

PYBIND11_MODULE(_csm, m) {
  m.doc() = "csm: Python values in the global heap, shared across processes and nodes with no copy";
  static py::exception<std::runtime_error> error(m, "Error");
  g_error = error.ptr();

  m.def(
      "connect",
      [](const std::string& socket) {
        csm::Client& c = Connected(socket);
        return c.config().socket_path;
      },
      py::arg("socket") = std::string(),
      "Connects this process to its node (csmd at `socket`; default from CSM_SOCKET or the "
      "config file) and returns the socket path. Other calls connect on first use.");

  m.def(
      "_client", [] { return py::capsule(&Connected(), kClientCapsule); },
      "This process's connection, for csm._csm_arrow (not an API).");

  m.def(
      "delete",
      [](const std::string& key) {
        csm::Client& client = Connected();
        Check(client.Delete(key));
      },
      py::arg("key"), "Deletes the object under `key` (on the node that owns it).");

  m.def(
      "info", [] { return FromJson(Check(Connected().InfoJson())); },
      "The node's state as a dict (what `csm info` prints).");

  py::class_<HeapView>(m, "_HeapView", py::buffer_protocol()).def_buffer([](HeapView& v) {
    return py::buffer_info(const_cast<uint8_t*>(v.data), 1, py::format_descriptor<uint8_t>::format(), 1,
                           {static_cast<py::ssize_t>(v.size)}, {py::ssize_t{1}}, /*readonly=*/true);
  });

  py::class_<ClientHandle>(m, "Client", "This process's connection to its node; a context manager.")
      .def(py::init([](const std::string& socket) { return ClientHandle{Connected(socket).config().socket_path}; }),
           py::arg("socket") = std::string(),
           "Connects (or shares this process's connection) to csmd at `socket` (default from "
           "CSM_SOCKET or the config file).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](ClientHandle& c, const py::args&) { c.closed = true; })
      .def("close", [](ClientHandle& c) { c.closed = true; }, "Ends this handle (the values it gave stay usable).")
      .def_property_readonly("socket", [](const ClientHandle& c) { return c.socket; })
      .def("put", [](const ClientHandle& c, const std::string& key, const py::object& value, bool checksum,
                     uint32_t copies) {
             c.CheckOpen();
             Put(key, value, checksum, copies);
           }, py::arg("key"), py::arg("value"), py::arg("checksum") = true, py::arg("copies") = 0, "csm.put")
      .def("get", [](const ClientHandle& c, const std::string& key, double timeout, const std::string& fetch) {
             c.CheckOpen();
             return Get(key, timeout, fetch);
           }, py::arg("key"), py::arg("timeout") = 0.0, py::arg("fetch") = "node", "csm.get")
      .def("delete", [](const ClientHandle& c, const std::string& key) {
             c.CheckOpen();
             Check(Connected().Delete(key));
           }, py::arg("key"), "csm.delete")
      .def("ls", [](const ClientHandle& c) {
             c.CheckOpen();
             return ListAll();
           }, "csm.ls")
      .def("stat", [](const ClientHandle& c, const std::string& key) {
             c.CheckOpen();
             return FromJson(Check(Connected().StatJson(key)));
           }, py::arg("key"), "csm.stat")
      .def("info", [](const ClientHandle& c) {
             c.CheckOpen();
             return FromJson(Check(Connected().InfoJson()));
           }, "csm.info")
      .def("nodes", [](const ClientHandle& c) {
             c.CheckOpen();
             return FromJson(Check(Connected().NodesJson()));
           }, "csm.nodes");

  m.def("put", &Put, py::arg("key"), py::arg("value"), py::arg("checksum") = true, py::arg("copies") = 0,
        "Commits `value` under `key`: a pyarrow Table or RecordBatch (or anything with "
        "__arrow_c_stream__), a pandas DataFrame, a numpy array, bytes-like data, or any "
        "picklable object (pickle protocol 5: its large buffers, numpy members' say, are "
        "placed in the heap and come back as views). Tables need pyarrow. checksum=False "
        "skips the checksum commit takes of every byte (taken as the bytes are copied in; "
        "copies to other nodes are still verified against a digest the owner computes). "
        "copies=k keeps the object on k nodes of the cluster, this one's included (0: the node's "
        "--replicas): the others fetch it as it is published and take it over if this node dies.");
  m.def("get", &Get, py::arg("key"), py::arg("timeout") = 0.0, py::arg("fetch") = "node",
        "The value under `key`, waiting up to `timeout` seconds: numpy arrays as read-only "
        "views of the heap (no copy), bytes as read-only memoryviews, tables as pyarrow "
        "Tables (DataFrames as DataFrames), other objects unpickled with their buffers as "
        "views. KeyError if there is none. fetch says how an object another node holds comes "
        "here: 'node' (the node's --fetch), 'whole', or 'lazy' / 'on-demand': get returns at "
        "once and pages arrive as they are read (docs/lazy.md; a page that can never come "
        "raises SIGBUS).");
  m.def("ls", &ListAll, "Every object of the node (of the cluster, on a cluster's node) as dicts: what `csm ls` prints.");
  m.def(
      "stat", [](const std::string& key) { return FromJson(Check(Connected().StatJson(key))); }, py::arg("key"),
      "One object's descriptor, pins and producer as a dict (what `csm stat` prints).");
  m.def(
      "nodes", [] { return FromJson(Check(Connected().NodesJson())); },
      "The cluster's members as csmd sees them (what `csm nodes` prints).");
}
