// See validation.h.
#include "csm/arrow/validation.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>

namespace csm::arrow_validation {

uint64_t ValidatedBytes(const arrow::ArrayData& data) {
  uint64_t n = 0;
  if (ReadByFullValidation(data.type->storage_id())) {
    for (const auto& b : data.buffers) n += b == nullptr ? 0 : static_cast<uint64_t>(b->size());
  }
  for (const auto& child : data.child_data) n += ValidatedBytes(*child);
  if (data.dictionary != nullptr) n += ValidatedBytes(*data.dictionary);
  return n;
}

std::optional<Invalid> ValidateFully(const std::vector<const arrow::Array*>& arrays, uint64_t bytes) {
  const size_t cores = std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), 8);
  const bool spread = bytes >= (uint64_t{16} << 20) && cores > 1;
  struct Piece {
    size_t array;                          // index into `arrays`
    std::shared_ptr<arrow::Array> slice;   // null: the whole array
  };
  std::vector<Piece> pieces;
  for (size_t i = 0; i < arrays.size(); ++i) {
    const arrow::Array& a = *arrays[i];
    const bool flat_binary = arrow::is_base_binary_like(a.type()->storage_id());
    if (!spread || !flat_binary || ValidatedBytes(*a.data()) < (uint64_t{8} << 20) || a.length() < 2) {
      pieces.push_back({i, nullptr});
      continue;
    }
    const int64_t n = static_cast<int64_t>(2 * cores), rows = a.length();
    for (int64_t k = 0; k < n; ++k) {
      const int64_t from = rows * k / n, to = rows * (k + 1) / n;
      if (to > from) pieces.push_back({i, a.Slice(from, to - from)});
    }
  }
  const size_t threads = spread ? std::min(pieces.size(), cores) : 1;
  std::vector<arrow::Status> results(pieces.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < pieces.size();) {
      results[i] = pieces[i].slice ? pieces[i].slice->ValidateFull() : arrays[pieces[i].array]->ValidateFull();
    }
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (auto& t : helpers) t.join();
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (!results[i].ok()) return Invalid{pieces[i].array, results[i]};
  }
  return std::nullopt;
}

ValidatedObjects& Validated() {
  static ValidatedObjects* v = new ValidatedObjects();  // never destroyed: used until exit
  return *v;
}

}  // namespace csm::arrow_validation
