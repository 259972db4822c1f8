// What both extensions of the csm package share (python/csm_module.cc, csm._csm, and
// python/arrow_module.cc, csm._csm_arrow): csm's errors as Python exceptions, timeouts,
// running without the GIL, and the process's one connection, which csm._csm owns.
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "csm/client.h"

namespace csm_python {

namespace py = pybind11;

// csm.Error, set by each extension as it loads (csm._csm defines it).
inline PyObject* g_error = nullptr;

// csm's errors: csm.Error, or the builtin each code reads as.
[[noreturn]] inline void Raise(const csm::Status& s) {
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
inline void Check(const csm::Status& s) {
  if (!s.ok()) Raise(s);
}

// A timeout in seconds: 0 does not wait, math.inf waits as long as it takes (csm caps
// a wait at ~146 years); negative or NaN is a ValueError.
inline std::chrono::milliseconds Millis(double seconds) {
  if (!(seconds >= 0)) {
    Raise(csm::InvalidArgument("timeout must be >= 0 seconds (or math.inf), not " + std::to_string(seconds)));
  }
  constexpr double kMaxMs = 4.0e12;  // beyond csm's cap; well inside int64
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(seconds * 1000.0, kMaxMs)));
}

// How a Get brings an object another node holds (docs/lazy.md): "node" (the node's
// --fetch), "whole", "lazy" or "on-demand"; anything else is a ValueError.
inline csm::Fetch FetchMode(const std::string& name) {
  if (name == "node") return csm::Fetch::kNodeDefault;
  if (name == "whole") return csm::Fetch::kWhole;
  if (name == "lazy") return csm::Fetch::kLazy;
  if (name == "on-demand") return csm::Fetch::kOnDemand;
  Raise(csm::InvalidArgument("fetch must be 'node', 'whole', 'lazy' or 'on-demand', not '" + name + "'"));
  return csm::Fetch::kNodeDefault;
}

// Runs f() with the GIL released: csm's work waits on csmd, the network and other cores.
template <typename F>
auto WithoutGil(F&& f) {
  py::gil_scoped_release unlocked;
  return f();
}

inline bool IsPandasFrame(const py::object& o) {
  py::object type = py::type::of(o);
  return py::str(type.attr("__module__")).cast<std::string>().rfind("pandas", 0) == 0 &&
         py::str(type.attr("__name__")).cast<std::string>() == "DataFrame";
}

// The capsule name of the process's connection, as csm._csm hands it to csm._csm_arrow.
inline constexpr const char* kClientCapsule = "csm.Client";

}  // namespace csm_python
