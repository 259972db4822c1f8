// csmd's commits and deletes: an object's header and extents checked in the committing
// process's arenas, entered in the node's directory (and, in a cluster, published first),
// and taken off its key again; see daemon_impl.h and docs/heap_layout.md.
#include "csm/base/range.h"
#include "csm/node/daemon_impl.h"

namespace csm::node {

// Reads and checks the object whose header is at header_addr into o (header, extents,
// arenas): a header of this layout, extents inside arenas `c` may write (any of the
// node's own arenas if null), overlapping no committed object, holding the header, the
// root and the extent table, and adding up to the header's size.
Status Daemon::Impl::ReadObject(uint64_t header_addr, const Session* c, Object* o) {
  o->header_addr = header_addr;
  CSM_RETURN_IF_ERROR(ReadHeap(header_addr, &o->header, sizeof(ObjectHeader), c, &o->arena_ids));
  const ObjectHeader& h = o->header;
  if (h.magic != object::kObjectMagic || h.layout_version != object::kObjectLayoutVersion ||
      (h.flags & ~object::kKnownFlags) != 0 ||
      ((h.flags & object::kFlagChecksumDeferred) != 0 && h.checksum != 0)) {
    return Corruption("no valid object header at " + Hex(header_addr));
  }
  if (h.extent_count == 0 || h.extent_count > object::kMaxExtents) {
    return Corruption("object has " + std::to_string(h.extent_count) + " extents (1 to " +
                      std::to_string(object::kMaxExtents) + " allowed)");
  }
  o->extents.resize(h.extent_count);
  CSM_RETURN_IF_ERROR(ReadHeap(h.extents, o->extents.data(),
                               h.extent_count * sizeof(ObjectExtent), c, nullptr));
  uint64_t total = 0;
  bool root_inside = false, table_inside = false;
  for (size_t i = 0; i < o->extents.size(); ++i) {
    const ObjectExtent& e = o->extents[i];
    if (e.length == 0 || (i == 0 && e.addr != header_addr) ||
        (i == 0 && e.length < sizeof(ObjectHeader))) {
      return Corruption("extent " + std::to_string(i) + " is empty or misplaced");
    }
    CSM_RETURN_IF_ERROR(ReadHeap(e.addr, nullptr, e.length, c, &o->arena_ids));
    Arena* a = arenas_.At(e.addr);
    auto next = a->committed.lower_bound(e.addr);
    bool overlap = (next != a->committed.end() && next->first < e.addr + e.length) ||
                   (next != a->committed.begin() && std::prev(next)->second > e.addr);
    if (overlap) return Corruption("extent " + Hex(e.addr) + " overlaps a committed object");
    total += e.length;
    root_inside |= h.root >= e.addr && h.root < e.addr + e.length;
    table_inside |= h.extents >= e.addr &&
                    h.extents + h.extent_count * sizeof(ObjectExtent) <= e.addr + e.length;
  }
  if (total != h.data_size || !root_inside || !table_inside) {
    return Corruption("object sizes, root or extent table are inconsistent with its extents");
  }
  return Status::OK();
}

Result<Object> Daemon::Impl::PrepareCommit(Session& c, uint64_t header_addr, uint64_t type_id,
                                           std::string key, std::string type_name) {
  // '#' keys are allowed here: the Arrow layer commits table parts as "<table>#<n>";
  // clients refuse them from programs (csm/key.h).
  CSM_RETURN_IF_ERROR(ValidateKeyToRead(key));
  if (const Object* taken = objects_.Live(key)) {
    uint32_t owner = taken->owner_node;
    return AlreadyExists("key '" + key + "' is already committed" +
                         (owner != 0 ? " on node " + std::to_string(owner) : std::string()) +
                         ": objects are immutable; delete it first (csm rm) or choose another key");
  }
  if (committing_.count(key) != 0) {
    return AlreadyExists("key '" + key + "' is being committed by another process");
  }
  Object o;
  o.key = std::move(key);
  o.type_name = std::move(type_name);
  CSM_RETURN_IF_ERROR(ReadObject(header_addr, &c, &o));
  if (o.header.type_id != type_id) return Corruption("object header type id differs from the request");

  o.id = objects_.NewId();
  o.type_id = type_id;
  o.producer_pid = c.cred.pid;
  o.commit_time_ns = os::RealtimeNanos();
  return o;
}

cluster::ObjectRecord Daemon::Impl::RecordOf(const Object& o) const {
  std::vector<ObjectExtent> arenas;
  for (uint64_t id : o.arena_ids) arenas.push_back({arenas_.at(id).addr, arenas_.at(id).size});
  cluster::ObjectRecord r = node::RecordOf(o, node_id_, std::move(arenas));
  if (shm_ != nullptr) {  // peers of the fabric map the arenas from the node's memory
    r.memory = shm_->memory();
    bool lent = false;
    for (uint64_t id : o.arena_ids) {
      const Arena& a = arenas_.at(id);
      r.arena_offsets.push_back(a.fabric_offset);
      r.arena_paths.push_back(a.lent_by != 0 ? a.lender_path : "");  // in another node's memory
      lent |= a.lent_by != 0;
    }
    if (!lent) r.arena_paths.clear();
  }
  return r;
}

uint64_t Daemon::Impl::ArenaSeqMax(const Object& o) const {
  uint64_t newest = 0;
  for (uint64_t id : o.arena_ids) newest = std::max(newest, arenas_.at(id).seq);
  return newest;
}

Result<uint64_t> Daemon::Impl::FinishCommit(Object o) {
  CSM_RETURN_IF_ERROR(CheckObjectRoom());
  CSM_ASSIGN_OR_RETURN(o.slot, dir_->Insert(SlotOf(o, node_id_, ArenaSeqMax(o))));

  for (const ObjectExtent& e : o.extents) arenas_.At(e.addr)->committed[e.addr] = e.addr + e.length;
  for (uint64_t id : o.arena_ids) ++arenas_.at(id).objects;
  peers_.AddObject(o.id, o.extents);
  if (state_ != nullptr) {
    if (Status s = state_->RememberType(o.type_id, o.type_name); !s.ok()) {
      CSM_LOG_WARN("'%s' will have no type name after a restart: %s", o.key.c_str(), s.ToString().c_str());
    }
  }
  uint64_t id = o.id;
  o.last_used_ns = os::MonotonicNanos();
  WatchReplicated(o);
  objects_.Insert(std::move(o));
  AnnounceChange();
  return id;
}

Status Daemon::Impl::HandleCommit(Session& c, WireReader& in) {
  protocol::Commit m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  if (m.copies > cluster::kMaxCopies) {
    return ReplyCommit(c, InvalidArgument("a commit asked for " + std::to_string(m.copies) + " copies: at most " +
                                          std::to_string(cluster::kMaxCopies) + " (this node's included)"));
  }
  if (m.copies > 1 && shm_ != nullptr) return ReplyCommit(c, InvalidArgument(kNoFabricReplicas));
  auto o = PrepareCommit(c, m.header, m.type_id, std::move(m.key), std::move(m.type_name));
  if (!o.ok()) return ReplyCommit(c, o.status());
  o->copies = m.copies != 0 ? m.copies : options_.cluster.copies;
  if (cluster_ == nullptr) return ReplyCommit(c, FinishCommit(std::move(*o)));
  // On a non-coherent fabric the object's lines are written back before its record can
  // reach a peer (docs/fabric.md); on the directory thread, through descriptors of its
  // own (the arenas may go if the committing process dies meanwhile).
  struct WriteBackRange {
    std::shared_ptr<os::UniqueFd> fd;
    SharedMemory::Place place;
    ObjectExtent extent;
    std::shared_ptr<os::SharedView> mapped;  // what place.mapped points into (lent memory)
    std::shared_ptr<os::UniqueFd> device;    // place.device_fd's
  };
  std::vector<WriteBackRange> write_back;
  if (shm_ != nullptr && shm_->coherence() != SharedMemory::Coherence::kCoherent) {
    for (const ObjectExtent& e : o->extents) {
      const Arena* a = arenas_.At(e.addr);
      auto fd = std::make_shared<os::UniqueFd>(::fcntl(a->fd.get(), F_DUPFD_CLOEXEC, 0));
      if (!fd->valid()) return ReplyCommit(c, ErrnoError("dup of an arena's descriptor", errno));
      SharedMemory::Place place = PlaceOf(*a);
      place.fd = fd->get();
      write_back.push_back({std::move(fd), place, e, a->view, a->lent_device});
    }
  }
  // Keys are unique cluster-wide: publish first, so a key taken elsewhere is refused
  // before anything changes here. The key is held meanwhile (committing_).
  auto object = std::make_shared<Object>(std::move(*o));
  committing_.insert(object->key);
  // Served to peers from the moment its record can reach them: a node that hears of it
  // may fetch it before the directory's answer is back here (copying ahead).
  peers_.AddObject(object->id, object->extents);
  // The replicas the directory names: written on its thread, read on the loop after.
  auto replicas = std::make_shared<std::vector<uint32_t>>();
  AwaitDirectory(c, [this, record = RecordOf(*object), write_back = std::move(write_back), replicas] {
                   for (const WriteBackRange& w : write_back) {
                     CSM_RETURN_IF_ERROR(shm_->WriteBack(w.place, w.extent.addr, w.extent.length)
                                             .WithContext("writing the object back to shared memory"));
                   }
                   return cluster_->Publish(record, replicas.get());
                 },
                 [this, object, replicas](Session* waiting, const Status& published) {
                   object->replicas = *replicas;
                   const std::string object_key = object->key;
                   const uint64_t object_id = object->id;
                   committing_.erase(object_key);
                   Result<uint64_t> id = published;
                   if (published.ok()) {
                     // Its process died waiting: the commit was never acknowledged, and
                     // its arenas are gone with it.
                     id = waiting != nullptr ? FinishCommit(std::move(*object))
                                             : Unavailable("the committing process is gone");
                     if (!id.ok()) UnpublishLater(object_key);
                   }
                   if (!id.ok()) peers_.RemoveObject(object_id);
                   if (waiting != nullptr && !ReplyCommit(*waiting, id).ok()) {
                     sessions_.Drop(waiting->id);
                   }
                 });
  return Status::OK();
}

Status Daemon::Impl::ReplyCommit(Session& c, const Result<uint64_t>& id) {
  WireWriter out = protocol::Encode(protocol::CommitReply{id.status(), id.ok() ? *id : 0});
  if (!id.ok() && id.status().IsCorruption()) {
    CSM_LOG_WARN("refused commit from pid %d: %s", c.cred.pid, id.status().ToString().c_str());
  }
  return Sessions::Reply(c, out);
}

Status Daemon::Impl::CheckObjectRoom() const {
  if (objects_.live() < config_.max_objects) return Status::OK();
  return CapacityExceeded("the node holds max_objects (" + std::to_string(config_.max_objects) +
                          ") objects, copies from other nodes included: delete some (csm rm) or "
                          "start the node with a larger --max-objects");
}

Status Daemon::Impl::HandleDelete(Session& c, WireReader& in) {
  protocol::Delete m;
  CSM_RETURN_IF_ERROR(protocol::Decode(in, &m));
  const std::string& key = m.key;
  if (Status valid = ValidateKeyToRead(key); !valid.ok()) {
    return Sessions::SendStatus(c, MessageType::kStatusReply, valid);
  }
  Object* found = objects_.Live(key);
  if (found == nullptr) {
    return Sessions::SendStatus(c, MessageType::kStatusReply,
                      NotFound("no object under key '" + key + "' (csm ls lists them)"));
  }
  Object& o = *found;
  if (o.is_copy()) {
    return Sessions::SendStatus(c, MessageType::kStatusReply,
                      FailedPrecondition("'" + key + "' is a copy of an object owned by node " +
                                         std::to_string(o.owner_node) +
                                         ": delete it on that node"));
  }
  if (cluster_ == nullptr) {
    DeleteLocally(key);
    return Sessions::SendStatus(c, MessageType::kStatusReply, Status::OK());
  }
  if (!deleting_.insert(key).second) {
    return Sessions::SendStatus(c, MessageType::kStatusReply,
                      NotFound("'" + key + "' is being deleted by another process"));
  }
  AwaitDirectory(c, [this, key] { return cluster_->Unpublish(key, node_id_); },
                 [this, key](Session* waiting, const Status& unpublished) {
                   deleting_.erase(key);
                   // Gone from the directory (or never there): then gone here too, even
                   // if the asking process died meanwhile.
                   const bool gone = unpublished.ok() || unpublished.IsNotFound();
                   if (gone) DeleteLocally(key);
                   const Status answer = gone ? Status::OK() : unpublished;
                   if (waiting != nullptr &&
                       !Sessions::SendStatus(*waiting, MessageType::kStatusReply, answer).ok()) {
                     sessions_.Drop(waiting->id);
                   }
                 });
  return Status::OK();
}

Object* Daemon::Impl::Unlist(const std::string& key) {
  Object* o = objects_.Unlist(key);
  if (o != nullptr) dir_->MarkDeleted(o->slot);
  if (o != nullptr && o->lazy) {
    // Its fetch stops; what readers did not see yet faults with SIGBUS for them.
    o->lazy = false;
    lazy_->Cancel(o->id);
    auto it = lazy_waiters_.find(o->id);
    if (it != lazy_waiters_.end()) {
      std::vector<Waiter> waiters = std::move(it->second);
      lazy_waiters_.erase(it);
      Answer(waiters, NotFound("'" + key + "' was dropped here before it arrived"));
    }
  }
  return o;
}

void Daemon::Impl::DeleteLocally(const std::string& key) {
  Object* o = Unlist(key);
  if (o == nullptr) return;
  peers_.RemoveObject(o->published_id());  // peers that ask from now on are told it is gone
  // The tombstone's closing seq store and the pin loads in Sweep are seq_cst, as are
  // the client's pin store and its re-read of the slot: either the client sees the
  // tombstone, or we see its pin.
  Sweep();
}

}  // namespace csm::node
