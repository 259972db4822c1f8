// The `csm` package's Arrow extension, csm._csm_arrow: Arrow tables and pandas DataFrames
// to and from pyarrow (docs/python.md). Loaded by the package only when a table is put or
// got (csm._tables), so `import csm` works without pyarrow; it uses the process's one
// connection, which csm._csm owns (both link the shared libcsm).
//
// Tables cross between pyarrow and csm's C++ through the Arrow C stream interface (the
// Arrow PyCapsule protocol, `__arrow_c_stream__`): no pyarrow C++ API is linked, so the
// module works whichever Arrow C++ build it was compiled against, and put_table takes any
// object that exports a stream (pyarrow Tables, RecordBatches, readers, polars …).
// A table from get_table keeps its objects pinned until pyarrow lets go of its buffers.
#include <arrow/c/abi.h>
#include <arrow/c/bridge.h>
#include <arrow/record_batch.h>
#include <arrow/table.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "csm/arrow.h"
#include "csm/client.h"
#include "module_common.h"

namespace {

using namespace csm_python;  // NOLINT: the helpers both extensions share

template <typename T>
T CheckArrow(arrow::Result<T> r) {
  if (!r.ok()) Raise(csm::InvalidArgument("Arrow: " + r.status().ToString()));
  return std::move(*r);
}

// The process's connection, csm._csm's.
csm::Client& Connected() {
  py::capsule c = py::module_::import("csm._csm").attr("_client")();
  return *static_cast<csm::Client*>(c.get_pointer());
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

py::dict Stats(const csm::PutStats& s) {
  py::dict d;
  d["descriptor_bytes"] = s.descriptor_bytes;
  d["buffers_in_place"] = s.buffers_in_place;
  d["buffers_copied"] = s.buffers_copied;
  d["bytes_copied"] = s.bytes_copied;
  return d;
}

}  // namespace

PYBIND11_MODULE(_csm_arrow, m) {
  m.doc() = "csm: Arrow tables and DataFrames in the global heap (used through the csm package)";
  g_error = py::module_::import("csm._csm").attr("Error").ptr();

  py::class_<TableStream>(m, "_TableStream")
      .def("__arrow_c_stream__", &TableStream::Export, py::arg("requested_schema") = py::none());

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
      [](const std::string& key, double timeout, const std::string& fetch) {
        csm::Client& client = Connected();
        const csm::GetOptions options{Millis(timeout), FetchMode(fetch)};
        return ToPyarrow(Check(WithoutGil([&] { return csm::GetTable(client, key, options); })));
      },
      py::arg("key"), py::arg("timeout") = 0.0, py::arg("fetch") = "node",
      "The table under `key` as a pyarrow.Table whose buffers are the heap's (no copy), "
      "waiting up to `timeout` seconds for it. KeyError if there is none, TypeError if the "
      "key holds something else, ConnectionError if its node is gone.");

  m.def(
      "put_value",
      [](const std::string& key, const py::object& value) {
        // A DataFrame goes in as its Arrow table (back as a DataFrame: get_value).
        py::object data = IsPandasFrame(value)
                              ? py::module_::import("pyarrow").attr("Table").attr("from_pandas")(value)
                              : value;
        std::shared_ptr<arrow::Table> table = ImportTable(data);
        csm::Client& client = Connected();
        Check(WithoutGil([&] { return csm::PutTable(client, key, *table); }).status());
      },
      py::arg("key"), py::arg("value"), "csm.put of a table or a DataFrame.");

  m.def(
      "get_value",
      [](const std::string& key, const std::string& fetch) {
        csm::Client& client = Connected();
        const csm::GetOptions options{{}, FetchMode(fetch)};
        py::object table = ToPyarrow(Check(WithoutGil([&] { return csm::GetTable(client, key, options); })));
        py::object metadata = table.attr("schema").attr("metadata");
        if (!metadata.is_none() && metadata.attr("__contains__")(py::bytes("pandas")).cast<bool>()) {
          return table.attr("to_pandas")();  // it was put as a DataFrame
        }
        return table;
      },
      py::arg("key"), py::arg("fetch") = "node", "csm.get of a table: a pyarrow.Table, or a DataFrame if one was put.");
}
