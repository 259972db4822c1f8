// See record_cache.h.
#include "csm/directory/record_cache.h"

namespace csm::directory {

std::optional<ObjectRecord> RecordCache::Find(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = records_.find(key);
  if (it == records_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  ObjectRecord r = it->second.record;
  r.cached = true;
  return r;
}

void RecordCache::Put(ObjectRecord record) {
  if (capacity_ == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = records_.find(record.key);
  if (it != records_.end()) order_.erase(it->second.seq);
  const uint64_t seq = next_seq_++;
  order_[seq] = record.key;
  std::string key = record.key;
  records_[key] = Entry{std::move(record), seq};
  while (records_.size() > capacity_) {
    auto oldest = order_.begin();
    records_.erase(oldest->second);
    order_.erase(oldest);
  }
}

void RecordCache::Erase(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = records_.find(key);
  if (it == records_.end()) return;
  order_.erase(it->second.seq);
  records_.erase(it);
}

void RecordCache::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  records_.clear();
  order_.clear();
}

RecordCacheStats RecordCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return RecordCacheStats{records_.size(), hits_, misses_};
}

}  // namespace csm::directory
