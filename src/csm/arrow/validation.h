// Arrow's full validation of tables in the heap, and this process's memory of what it
// has validated (docs/arrow.md, "levels"): used by the Arrow layer's put (the producer
// validates what it copies in) and get (a reader validates what nobody marked).
#pragma once

#include <arrow/api.h>

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "csm/client.h"

namespace csm::arrow_validation {

// Whether ValidateFull reads the buffers of an array of this (storage) type: those of
// variable-length and nested types; fixed-width values need no reading.
inline bool ReadByFullValidation(arrow::Type::type storage_id) {
  return !(arrow::is_primitive(storage_id) || arrow::is_decimal(storage_id) ||
           storage_id == arrow::Type::FIXED_SIZE_BINARY);
}
// Bytes of an array's buffers that ValidateFull reads, children included.
uint64_t ValidatedBytes(const arrow::ArrayData& data);

// Arrow's full validation (offsets, UTF-8, dictionary indices …) of `arrays`, whose
// variable-length and nested buffers hold `bytes`: on this thread, or spread over the
// cores when that is more than 16 MiB (fixed-width values need no reading, and a thread
// start would cost more than small ones). A large string or binary array is validated
// in slices of its rows, so one big column uses every core too: together the slices
// check every offset and every byte the offsets name. The first failure, by index of
// the array, if any.
struct Invalid {
  size_t index;
  arrow::Status status;
};
std::optional<Invalid> ValidateFully(const std::vector<const arrow::Array*>& arrays, uint64_t bytes);

// The objects this process has run Arrow's full validation on. An object is immutable
// once committed, so its chunks are validated at its first Get here and later Gets of it
// check only the descriptor's structure (that every buffer lies in the object). An
// object is named by its id on this node, header address and commit time (an id is
// never reused while csmd runs; the rest tells a restarted csmd's objects apart).
class ValidatedObjects {
 public:
  using Id = std::tuple<uint64_t, uint64_t, int64_t>;
  static Id Of(const ObjectInfo& info) { return {info.object_id, info.header, info.commit_time_ns}; }
  bool Contains(const Id& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_.count(id) != 0;
  }
  void Add(const Id& id) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ids_.insert(id).second) return;
    order_.push_back(id);
    if (order_.size() > kCapacity) {  // the oldest is validated again if it is read again
      ids_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  static constexpr size_t kCapacity = 65536;
  std::mutex mu_;
  std::set<Id> ids_;
  std::deque<Id> order_;
};
// The process's one ValidatedObjects (never destroyed: used until exit).
ValidatedObjects& Validated();

}  // namespace csm::arrow_validation
