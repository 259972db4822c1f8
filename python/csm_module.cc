// The `csm` Python module: Arrow tables in the global heap, to and from pyarrow
// (docs/python.md).
//
//   import csm, pyarrow as pa
//   csm.put_table("trades", pa.table({"x": [1, 2, 3]}))   # copied into the heap once
//   t = csm.get_table("trades")                            # any process, any node: no copy
//
// Tables cross between pyarrow and csm's C++ through the Arrow C stream interface (the
// Arrow PyCapsule protocol, `__arrow_c_stream__`): no pyarrow C++ API is linked, so the
// module works whichever Arrow C++ build it was compiled against, and put_table takes any
// object that exports a stream (pyarrow Tables, RecordBatches, readers, polars …).
// A table from get_table keeps its objects pinned until pyarrow lets go of its buffers.
//
// One connection per process, opened by the first call (or connect()) and kept until
// the process exits: tables handed out refer to it.
#include <arrow/c/abi.h>
#include <arrow/c/bridge.h>
#include <arrow/record_batch.h>
#include <arrow/table.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "csm/arrow.h"
#include "csm/client.h"

namespace py = pybind11;

namespace {

// csm's errors as Python exceptions: csm.Error, and the builtin each code reads as.
PyObject* g_error = nullptr;

[[noreturn]] void Raise(const csm::Status& s) {
  PyObject* type = g_error;
  switch (s.code()) {
    case csm::StatusCode::kNotFound: type = PyExc_KeyError; break;
    case csm::StatusCode::kTypeMismatch: type = PyExc_TypeError; break;
    case csm::StatusCode::kInvalidArgument: type = PyExc_ValueError; break;
    case csm::StatusCode::kTimeout: type = PyExc_TimeoutError; break;
    case csm::StatusCode::kUnavailable: type = PyExc_ConnectionError; break;
    case csm::StatusCode::kCapacityExceeded: type = PyExc_MemoryError; break;
    default: break;
  }
  PyErr_SetString(type, s.ToString().c_str());
  throw py::error_already_set();
}

template <typename T>
T Check(csm::Result<T> r) {
  if (!r.ok()) Raise(r.status());
  return std::move(*r);
}
void Check(const csm::Status& s) {
  if (!s.ok()) Raise(s);
}
template <typename T>
T CheckArrow(arrow::Result<T> r) {
  if (!r.ok()) Raise(csm::InvalidArgument("Arrow: " + r.status().ToString()));
  return std::move(*r);
}

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

// A timeout in seconds: 0 does not wait, math.inf waits as long as it takes (csm caps
// a wait at ~146 years); negative or NaN is a ValueError.
std::chrono::milliseconds Millis(double seconds) {
  if (!(seconds >= 0)) Raise(csm::InvalidArgument("timeout must be >= 0 seconds (or math.inf), not " + std::to_string(seconds)));
  constexpr double kMaxMs = 4.0e12;  // beyond csm's cap; well inside int64
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(seconds * 1000.0, kMaxMs)));
}

// Reads every batch of an object that exports an Arrow C stream into one Table.
std::shared_ptr<arrow::Table> ImportTable(const py::object& data) {
  if (!py::hasattr(data, "__arrow_c_stream__")) {
    Raise(csm::TypeMismatch(std::string("put_table takes an Arrow table or anything with "
                                        "__arrow_c_stream__ (pyarrow Table, RecordBatch, "
                                        "RecordBatchReader), not ") +
                            std::string(py::str(py::type::of(data).attr("__name__")))));
  }
  py::capsule capsule = data.attr("__arrow_c_stream__")();
  auto* stream = static_cast<ArrowArrayStream*>(PyCapsule_GetPointer(capsule.ptr(), "arrow_array_stream"));
  if (stream == nullptr) throw py::error_already_set();
  // Importing moves the stream out (its release is set to null), so the capsule's own
  // destructor then has nothing to release.
  auto reader = CheckArrow(arrow::ImportRecordBatchReader(stream));
  return CheckArrow(reader->ToTable());
}

// A csm table on its way to pyarrow: exports itself once as an Arrow C stream.
struct TableStream {
  std::shared_ptr<arrow::Table> table;

  py::capsule Export(const py::object& requested_schema) {
    if (!requested_schema.is_none()) {
      Raise(csm::InvalidArgument("csm tables are exported with their own schema only"));
    }
    if (table == nullptr) Raise(csm::FailedPrecondition("this table was already exported"));
    auto* stream = new ArrowArrayStream{};
    auto reader = std::make_shared<arrow::TableBatchReader>(std::move(table));
    table = nullptr;
    arrow::Status s = arrow::ExportRecordBatchReader(reader, stream);
    if (!s.ok()) {
      delete stream;
      Raise(csm::Internal("exporting a table to Arrow's C stream: " + s.ToString()));
    }
    // The capsule owns the struct; releasing an unconsumed stream releases the table.
    return py::capsule(stream, "arrow_array_stream", [](PyObject* cap) {
      auto* owned = static_cast<ArrowArrayStream*>(PyCapsule_GetPointer(cap, "arrow_array_stream"));
      if (owned == nullptr) {
        PyErr_Clear();
        return;
      }
      if (owned->release != nullptr) owned->release(owned);
      delete owned;
    });
  }
};

py::object ToPyarrow(std::shared_ptr<arrow::Table> table) {
  // Through RecordBatchReader.from_stream, not pyarrow.table(): that one first asks
  // whether its argument is a pandas DataFrame, which imports pandas (~0.2 s) on the
  // first get of every process where pandas is installed.
  py::object reader = py::module_::import("pyarrow").attr("RecordBatchReader");
  return reader.attr("from_stream")(TableStream{std::move(table)}).attr("read_all")();
}

// Runs f() with the GIL released: csm's work waits on csmd, the network and other cores.
template <typename F>
auto WithoutGil(F&& f) {
  py::gil_scoped_release unlocked;
  return f();
}

py::dict Stats(const csm::PutStats& s) {
  py::dict d;
  d["descriptor_bytes"] = s.descriptor_bytes;
  d["buffers_in_place"] = s.buffers_in_place;
  d["buffers_copied"] = s.buffers_copied;
  d["bytes_copied"] = s.bytes_copied;
  return d;
}

py::object FromJson(const std::string& text) {
  return py::module_::import("json").attr("loads")(text);
}

}  // namespace

PYBIND11_MODULE(csm, m) {
  m.doc() = "csm: Arrow tables in the global heap, shared across processes and nodes with no copy";
  static py::exception<std::runtime_error> error(m, "Error");
  g_error = error.ptr();

  py::class_<TableStream>(m, "_TableStream")
      .def("__arrow_c_stream__", &TableStream::Export, py::arg("requested_schema") = py::none());

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
      "put_table",
      [](const std::string& key, const py::object& data) {
        std::shared_ptr<arrow::Table> table = ImportTable(data);
        csm::Client& client = Connected();
        return Stats(Check(WithoutGil([&] { return csm::PutTable(client, key, *table); })));
      },
      py::arg("key"), py::arg("table"),
      "Publishes a table under `key` (its buffers copied into the heap once). Returns "
      "{descriptor_bytes, buffers_in_place, buffers_copied, bytes_copied}.");

  m.def(
      "append_table",
      [](const std::string& key, const py::object& data) {
        std::shared_ptr<arrow::Table> table = ImportTable(data);
        csm::Client& client = Connected();
        csm::AppendStats s = Check(WithoutGil([&] { return csm::AppendTable(client, key, *table); }));
        py::dict d = Stats(s);
        d["part"] = s.part;
        d["part_key"] = s.part_key;
        return d;
      },
      py::arg("key"), py::arg("table"),
      "Appends a table as the next part of the table under `key` (docs/arrow.md).");

  m.def(
      "get_table",
      [](const std::string& key, double timeout) {
        csm::Client& client = Connected();
        const std::chrono::milliseconds wait = Millis(timeout);
        return ToPyarrow(Check(WithoutGil([&] { return csm::GetTable(client, key, wait); })));
      },
      py::arg("key"), py::arg("timeout") = 0.0,
      "The table under `key` as a pyarrow.Table whose buffers are the heap's (no copy), "
      "waiting up to `timeout` seconds for it. KeyError if there is none, TypeError if the "
      "key holds something else, ConnectionError if its node is gone.");

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
}
