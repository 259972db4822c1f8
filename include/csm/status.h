// Status and Result<T>: how every csm call that can fail reports it.
//
// csm does not throw (the one exception is csm::allocator, which must throw
// std::bad_alloc because standard containers know no other way to fail; see
// allocator.h). A Status carries a code a program can act on and a message that says
// what happened and what to do about it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace csm {

enum class StatusCode : int32_t {
  kOk = 0,
  kNotFound = 1,          // no object under that key
  kAlreadyExists = 2,     // a key is committed once
  kTypeMismatch = 3,      // Get<T> of an object of another type
  kCapacityExceeded = 4,  // node memory, directory slots or pin slots are full
  kUnavailable = 5,       // the daemon (or a peer) cannot be reached
  kCorruption = 6,        // bytes from another process or node failed validation
  kInvalidArgument = 7,   // the caller passed something unusable
  kTimeout = 8,           // a deadline passed
  kIOError = 9,           // an operating-system call failed
  kFailedPrecondition = 10,  // the call is not valid in the current state
  kPermissionDenied = 11,
  kInternal = 12,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message);

  static Status OK() { return Status(); }
  bool ok() const { return state_ == nullptr; }
  StatusCode code() const { return state_ ? state_->code : StatusCode::kOk; }
  const std::string& message() const;
  // "NotFound: no object under key 'x'".
  std::string ToString() const;

  // Adds context in front of the message: "while committing 'k': ...".
  Status WithContext(std::string_view context) const;

  bool IsNotFound() const { return code() == StatusCode::kNotFound; }
  bool IsAlreadyExists() const { return code() == StatusCode::kAlreadyExists; }
  bool IsTypeMismatch() const { return code() == StatusCode::kTypeMismatch; }
  bool IsCapacityExceeded() const { return code() == StatusCode::kCapacityExceeded; }
  bool IsUnavailable() const { return code() == StatusCode::kUnavailable; }
  bool IsTimeout() const { return code() == StatusCode::kTimeout; }
  bool IsCorruption() const { return code() == StatusCode::kCorruption; }

 private:
  struct State {
    StatusCode code;
    std::string message;
  };
  // Null for OK, so an OK status costs one pointer and no allocation.
  std::shared_ptr<const State> state_;
};

Status NotFound(std::string message);
Status AlreadyExists(std::string message);
Status TypeMismatch(std::string message);
Status CapacityExceeded(std::string message);
Status Unavailable(std::string message);
Status Corruption(std::string message);
Status InvalidArgument(std::string message);
Status Timeout(std::string message);
Status IOError(std::string message);
Status FailedPrecondition(std::string message);
Status PermissionDenied(std::string message);
Status Internal(std::string message);
// IOError from errno: "<what>: <strerror(err)>".
Status ErrnoError(std::string_view what, int err);

// Result<T> holds either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& operator*() & { return std::get<T>(v_); }
  const T& operator*() const& { return std::get<T>(v_); }
  T&& operator*() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  // The value; calling these on an error is a bug (std::bad_variant_access).
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  // The value, or the program ends printing the error: for tools and tests that have no
  // better way to handle one.
  T& ValueOrDie() & {
    DieIfError();
    return std::get<T>(v_);
  }
  T&& ValueOrDie() && {
    DieIfError();
    return std::get<T>(std::move(v_));
  }
  T ValueOr(T fallback) const& { return ok() ? std::get<T>(v_) : std::move(fallback); }

 private:
  void DieIfError() const {
    if (ok()) return;
    std::fprintf(stderr, "csm: ValueOrDie on an error: %s\n", status().ToString().c_str());
    std::abort();
  }
  std::variant<Status, T> v_;
};

}  // namespace csm

#define CSM_CONCAT_IMPL(a, b) a##b
#define CSM_CONCAT(a, b) CSM_CONCAT_IMPL(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define CSM_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::csm::Status _csm_status = (expr);           \
    if (!_csm_status.ok()) return _csm_status;    \
  } while (0)

#define CSM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                              \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(*tmp)

// `CSM_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result or returns its error.
#define CSM_ASSIGN_OR_RETURN(lhs, rexpr) \
  CSM_ASSIGN_OR_RETURN_IMPL(CSM_CONCAT(_csm_result_, __LINE__), lhs, rexpr)
