// An object's descriptor in its several forms; see object.h.
#include "csm/node/object.h"

#include <algorithm>
#include <cstring>

#include "csm/base/hash.h"

namespace csm::node {

directory::SlotData SlotOf(const Object& o, uint32_t self, uint64_t arena_seq_max) {
  directory::SlotData d{};
  d.object_id = o.id;
  d.key_hash = Hash64(o.key);
  d.type_id = o.type_id;
  d.header = o.header_addr;
  d.root = o.header.root;
  d.data_size = o.header.data_size;
  d.checksum = o.header.checksum;
  d.arena_seq_max = arena_seq_max;
  d.commit_time_ns = o.commit_time_ns;
  d.owner_node = o.owner(self);
  d.state = static_cast<uint8_t>(directory::SlotState::kLive);
  if ((o.header.flags & object::kFlagArrowValidated) != 0) d.flags |= directory::kSlotArrowValidated;
  d.key_length = static_cast<uint16_t>(std::min<size_t>(o.key.size(), directory::kMaxKeyLength));
  std::memcpy(d.key, o.key.data(), d.key_length);
  return d;
}

cluster::ObjectRecord RecordOf(const Object& o, uint32_t self, std::vector<object::ObjectExtent> arenas) {
  cluster::ObjectRecord r;
  r.key = o.key;
  r.owner_node = o.owner(self);
  r.object_id = o.published_id();
  r.type_id = o.type_id;
  r.type_name = o.type_name;
  r.header = o.header_addr;
  r.root = o.header.root;
  r.size = o.header.data_size;
  r.checksum = o.header.checksum;
  r.checksum_deferred = (o.header.flags & object::kFlagChecksumDeferred) != 0;
  r.arrow_validated = (o.header.flags & object::kFlagArrowValidated) != 0;
  r.extents = o.extents;
  r.arenas = std::move(arenas);
  r.commit_time_ns = o.commit_time_ns;
  r.copies = o.copies;
  r.replicas = o.replicas;
  if (o.taken_over) r.origin_node = o.owner_node;  // its addresses are still that node's
  return r;
}

Object CopyOf(const cluster::ObjectRecord& r, uint64_t id, std::vector<uint64_t> arena_ids) {
  Object o;
  o.id = id;
  o.key = r.key;
  o.type_id = r.type_id;
  o.type_name = r.type_name;
  o.header.magic = object::kObjectMagic;
  o.header.layout_version = object::kObjectLayoutVersion;
  o.header.type_id = r.type_id;
  o.header.data_size = r.size;
  o.header.root = r.root;
  o.header.checksum = r.checksum;
  o.header.flags = static_cast<uint16_t>((r.checksum_deferred ? object::kFlagChecksumDeferred : 0) |
                                         (r.arrow_validated ? object::kFlagArrowValidated : 0));
  o.header_addr = r.header;
  o.extents = r.extents;
  o.arena_ids = std::move(arena_ids);
  o.producer_pid = 0;
  o.commit_time_ns = r.commit_time_ns;
  o.owner_node = r.origin();  // whose addresses its replica arenas take
  o.remote_id = r.object_id;
  o.copies = r.copies;
  o.replicas = r.replicas;
  return o;
}

}  // namespace csm::node
