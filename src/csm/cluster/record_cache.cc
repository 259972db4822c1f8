// See record_cache.h.
#include "csm/cluster/record_cache.h"

#include <algorithm>

namespace csm::cluster {

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
  Insert(std::move(record), ++changes_);
}

void RecordCache::Insert(ObjectRecord record, uint64_t changed) {
  auto it = records_.find(record.key);
  if (it != records_.end()) order_.erase(it->second.seq);
  const uint64_t seq = next_seq_++;
  order_[seq] = record.key;
  std::string key = record.key;
  records_[key] = Entry{std::move(record), seq, changed};
  while (records_.size() > capacity_) {
    auto oldest = order_.begin();
    auto dropped = records_.find(oldest->second);
    forgotten_ = std::max(forgotten_, dropped->second.changed);  // its count goes with it
    records_.erase(dropped);
    order_.erase(oldest);
  }
}

void RecordCache::Erase(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t change = ++changes_;
  if (auto it = records_.find(key); it != records_.end()) {
    order_.erase(it->second.seq);
    records_.erase(it);
  }
  if (auto old = erased_.find(key); old != erased_.end()) erased_order_.erase(old->second);
  erased_[key] = change;
  erased_order_[change] = key;
  while (erased_.size() > std::max<size_t>(capacity_, 1)) {
    auto oldest = erased_order_.begin();
    forgotten_ = std::max(forgotten_, oldest->first);
    erased_.erase(oldest->second);
    erased_order_.erase(oldest);
  }
}

void RecordCache::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  records_.clear();
  order_.clear();
  erased_.clear();
  erased_order_.clear();
  forgotten_ = ++changes_;  // whatever the stream missed is unknown
}

uint64_t RecordCache::Mark() const {
  std::lock_guard<std::mutex> lock(mu_);
  return changes_;
}

bool RecordCache::ChangedSince(const std::string& key, uint64_t mark) const {
  if (forgotten_ > mark) return true;
  if (auto it = records_.find(key); it != records_.end() && it->second.changed > mark) return true;
  auto erased = erased_.find(key);
  return erased != erased_.end() && erased->second > mark;
}

void RecordCache::KeepAnswer(ObjectRecord record, uint64_t mark) {
  if (capacity_ == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (ChangedSince(record.key, mark)) return;  // the stream knows better
  Insert(std::move(record), 0);
}

RecordCacheStats RecordCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return RecordCacheStats{records_.size(), hits_, misses_};
}

}  // namespace csm::cluster
