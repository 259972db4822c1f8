// csmd on a shared-memory fabric: lending this node's memory to processes of other
// nodes, borrowing theirs for this node's processes, and taking loans back from the
// dead; see daemon_impl.h and docs/fabric.md ("Building in another node's memory").
#include <future>

#include "csm/base/range.h"
#include "csm/node/daemon_impl.h"

namespace csm::node {

Result<LoanGrant> Daemon::Impl::Lend(const BorrowRequest& r) {
  const auto timeout = std::chrono::milliseconds(options_.cluster.timeout_ms);
  constexpr uint64_t kAlign = alloc::AddressAllocator::kArenaAlignment;
  const uint64_t size = (r.size + kAlign - 1) / kAlign * kAlign;
  // Made on the loop, which owns the addresses and the memory. A node short of segments
  // leases more here first (this is a loan server thread, free to wait for the directory).
  for (int attempt = 0; attempt < 2; ++attempt) {
    struct Outcome {
      Result<LoanGrant> grant = Unavailable("not made");
      bool needs_segments = false;
    };
    auto promise = std::make_shared<std::promise<Outcome>>();
    std::future<Outcome> future = promise->get_future();
    Post([this, r, size, promise] {
      Outcome out;
      Status room = loans_.CheckRoom(size);
      if (!room.ok()) {
        out.grant = room;
      } else if (!addresses_.Fits(size)) {
        out.needs_segments = true;
      } else {
        Result<uint64_t> addr = addresses_.Allocate(size);
        Result<uint64_t> offset = addr.ok() ? shm_->Allocate(size) : Result<uint64_t>(addr.status());
        if (addr.ok() && !offset.ok()) addresses_.Free(*addr, size);
        if (offset.ok()) {
          loans_.Add({*addr, size, *offset, r.borrower, r.incarnation});
          CSM_LOG_INFO("lent %s at %s to node %u", FormatSize(size).c_str(), Hex(*addr).c_str(), r.borrower);
          out.grant = LoanGrant{*addr, size, *offset};
          ArmLoanCheck();
        } else {
          out.grant = offset.status();
        }
      }
      promise->set_value(std::move(out));
    });
    if (future.wait_for(timeout) != std::future_status::ready) {
      return Timeout("node " + std::to_string(node_id_) + " did not make the loan in time");
    }
    Outcome out = future.get();
    if (!out.needs_segments) return out.grant;
    if (attempt == 1) break;
    Result<alloc::AddressAllocator::Run> run = LeaseFromCluster(addresses_.SegmentsFor(size));
    if (!run.ok()) return run.status().WithContext("leasing segments to lend");
    Post([this, run = *run] { addresses_.AddRun(run); });
  }
  return Unavailable("node " + std::to_string(node_id_) + " has no room to lend " + FormatSize(size));
}

Status Daemon::Impl::TakeBackLoan(uint32_t borrower, uint64_t addr) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> future = promise->get_future();
  Post([this, borrower, addr, promise] {
    Result<Loan> loan = loans_.Take(addr, borrower);
    if (loan.ok()) {
      addresses_.Free(loan->addr, loan->size);
      shm_->Free(loan->offset, loan->size);
      CSM_LOG_INFO("node %u gave back %s at %s", borrower, FormatSize(loan->size).c_str(), Hex(addr).c_str());
    }
    promise->set_value(loan.status());
  });
  if (future.wait_for(std::chrono::milliseconds(options_.cluster.timeout_ms)) != std::future_status::ready) {
    return Timeout("node " + std::to_string(node_id_) + " did not take the loan back in time");
  }
  return future.get();
}

Status Daemon::Impl::BorrowArena(Session& c, uint64_t size, bool dedicated, uint32_t lender_id) {
  auto fail = [&](Status s) { return Sessions::SendStatus(c, MessageType::kArenaReply, s); };
  if (cluster_ == nullptr || shm_ == nullptr) {
    return fail(FailedPrecondition("building in node " + std::to_string(lender_id) +
                                   "'s memory (CSM_HOME_NODE) needs both nodes on one shared-memory fabric: "
                                   "start this node with --shared-memory and in the lender's cluster"));
  }
  // The lender's word, on the directory thread (members, then the loan itself).
  struct Borrowed {
    Result<LoanGrant> grant = Unavailable("not asked");
    cluster::NodeInfo lender;
  };
  auto borrowed = std::make_shared<Borrowed>();
  AwaitDirectory(
      c,
      [this, borrowed, lender_id, size, fabric = shm_->memory()] {
        // The lender as last listed; the member list is asked again if it is not known
        // yet, or a loan from what it said fails (the lender restarted, or moved).
        for (int attempt = 0; attempt < 2; ++attempt) {
          auto known = lenders_.find(lender_id);
          if (attempt == 1 || known == lenders_.end()) {
            CSM_ASSIGN_OR_RETURN(std::vector<cluster::NodeInfo> members, cluster_->Members());
            lenders_.clear();
            for (const auto& n : members) {
              if (n.alive) lenders_[n.node_id] = n;
            }
            known = lenders_.find(lender_id);
          }
          if (known == lenders_.end()) {
            borrowed->grant = Unavailable("node " + std::to_string(lender_id) + " (CSM_HOME_NODE) is not alive");
            return borrowed->grant.status();
          }
          const cluster::NodeInfo& n = known->second;
          if (!n.memory.Shares(fabric) || n.memory.lend_address.empty()) {
            borrowed->grant = FailedPrecondition("node " + std::to_string(lender_id) +
                                                 " lends no memory to this node: both need --shared-memory on one "
                                                 "fabric domain with the same --coherence, and the lender a "
                                                 "--peer-address (csm nodes shows each pair's fabric)");
            return borrowed->grant.status();
          }
          borrowed->lender = n;
          borrowed->grant = loan_client_->Borrow(n.memory.lend_address, {node_id_, memory_incarnation_, size});
          if (borrowed->grant.ok() || borrowed->grant.status().IsCapacityExceeded()) break;
        }
        return borrowed->grant.status();
      },
      [this, borrowed, size, dedicated](Session* waiting, const Status&) {
        Result<LoanGrant>& grant = borrowed->grant;
        const cluster::NodeInfo lender = borrowed->lender;
        auto give_back = [this, lender, addr = grant.ok() ? grant->addr : 0] {
          boost::asio::post(DirectoryThread(), [this, lender, addr] {
            (void)loan_client_->GiveBack(lender.memory.lend_address, node_id_, addr);
          });
        };
        if (grant.ok() && waiting == nullptr) give_back();  // its process went away
        if (waiting == nullptr) return;
        auto refuse = [&](Status s) {
          if (!Sessions::SendStatus(*waiting, MessageType::kArenaReply, s).ok()) sessions_.Drop(waiting->id);
        };
        if (!grant.ok()) return refuse(grant.status().WithContext("borrowing node " + std::to_string(lender.node_id) +
                                                                  "'s memory"));
        // The lender's answer is input: its range must be in the window, aligned, of the
        // size asked for, and clear of everything this node holds.
        constexpr uint64_t kAlign = alloc::AddressAllocator::kArenaAlignment;
        const auto& w = config_.window;
        bool ours = false;
        for (const auto& l : Leases()) {
          ours |= grant->addr < w.base + (l.first + l.count) * w.segment_size &&
                  grant->addr + grant->size > w.base + l.first * w.segment_size;
        }
        if (grant->addr % kAlign || grant->offset % kAlign || grant->size < size ||
            !RangeWithin(grant->addr, grant->size, w.base, w.size) || ours ||
            arenas_.FirstOverlapping(grant->addr, grant->size) != nullptr) {
          give_back();
          return refuse(Corruption("node " + std::to_string(lender.node_id) + " lent a range this node cannot use"));
        }
        // Direct: the lender's memory itself, read-write. The stale-cache model: a
        // private memfd (this node's cache) written back to the lender's memory.
        Result<os::UniqueFd> device = shm_->OpenLent(lender.memory.path);
        const bool direct = shm_->direct();
        Result<os::UniqueFd> fd = !device.ok() ? Result<os::UniqueFd>(device.status())
                                  : direct     ? os::UniqueFd(::fcntl(device->get(), F_DUPFD_CLOEXEC, 0))
                                               : os::CreateMemfd("csm-borrowed-" + Hex(grant->addr), grant->size);
        if (fd.ok() && !fd->valid()) fd = ErrnoError("dup of the lent memory's descriptor", errno);
        Result<std::shared_ptr<os::SharedView>> view =
            fd.ok() && direct ? os::SharedView::Map(fd->get(), grant->size, grant->offset)
                              : Result<std::shared_ptr<os::SharedView>>(std::shared_ptr<os::SharedView>());
        if (!fd.ok() || !view.ok()) {
          give_back();
          return refuse((fd.ok() ? view.status() : fd.status()).WithContext("mapping the memory node " +
                                                                           std::to_string(lender.node_id) + " lent"));
        }
        Arena& a = arenas_.Add(grant->addr, grant->size, std::move(*fd));
        a.view = std::move(*view);
        a.fd_offset = direct ? grant->offset : 0;
        a.fabric_offset = grant->offset;
        a.owner = waiting->id;
        a.dedicated = dedicated;
        a.lent_by = lender.node_id;
        a.lender_address = lender.memory.lend_address;
        a.lender_path = lender.memory.path;
        a.lender_incarnation = lender.incarnation;
        a.lent_device = std::make_shared<os::UniqueFd>(std::move(*device));
        dir_->header().arena_seq.store(a.seq);
        waiting->arenas.insert(a.id);
        waiting->mapped.insert(a.id);
        peers_.AddArena(a.addr, a.size, a.fd.get(), a.fd_offset);  // nodes off the fabric fetch from here
        ArmLoanCheck();
        WireWriter out = protocol::Encode(protocol::ArenaReply{Status::OK(), a.id, a.seq, a.addr, a.size, a.fd_offset, 0});
        if (!Sessions::Reply(*waiting, out, {a.fd.get()}).ok()) sessions_.Drop(waiting->id);
      });
  return Status::OK();
}

void Daemon::Impl::ArmLoanCheck() {
  if (loan_check_armed_ || cluster_ == nullptr) return;
  loan_check_armed_ = true;
  loan_timer_.expires_after(std::chrono::milliseconds(2 * options_.cluster.heartbeat_ms));
  loan_timer_.async_wait([this](const boost::system::error_code& ec) {
    loan_check_armed_ = false;
    if (ec) return;
    boost::asio::post(DirectoryThread(), [this] {
      Result<std::vector<cluster::NodeInfo>> members = cluster_->Members();
      Post([this, members = std::move(members)] {
        if (members.ok()) CheckLoans(*members);
        bool borrowing = false;
        arenas_.ForEachAfter(0, [&](const Arena& a) { return !(borrowing = a.lent_by != 0); });
        if (loans_.count() != 0 || borrowing) ArmLoanCheck();
      });
    });
  });
}

void Daemon::Impl::CheckLoans(const std::vector<cluster::NodeInfo>& members) {
  auto alive_incarnation = [&](uint32_t id) -> uint64_t {
    for (const auto& n : members) {
      if (n.node_id == id && n.alive) return n.incarnation;
    }
    return 0;
  };
  // Lender: what a dead (or restarted) borrower held comes back.
  for (uint32_t borrower : loans_.Borrowers()) {
    for (const Loan& loan : loans_.TakeStale(borrower, alive_incarnation(borrower))) {
      CSM_LOG_INFO("taking back %s lent at %s to node %u, which is gone", FormatSize(loan.size).c_str(),
                   Hex(loan.addr).c_str(), borrower);
      addresses_.Free(loan.addr, loan.size);
      shm_->Free(loan.offset, loan.size);
    }
  }
  // Borrower: objects built in the memory of a lender that died went with it.
  std::set<uint64_t> lost_arenas;
  arenas_.ForEachAfter(0, [&](const Arena& a) {
    if (a.lent_by != 0 && alive_incarnation(a.lent_by) != a.lender_incarnation) lost_arenas.insert(a.id);
    return true;
  });
  if (lost_arenas.empty()) return;
  std::vector<std::string> lost;
  objects_.ForEachLive([&](const Object& o) {
    if (o.is_copy()) return;
    for (uint64_t id : o.arena_ids) {
      if (lost_arenas.count(id)) return lost.push_back(o.key);
    }
  });
  for (const std::string& key : lost) {
    CSM_LOG_WARN("dropping '%s': it was built in the memory of a node that is gone", key.c_str());
    Unlist(key);
    UnpublishLater(key);
  }
  Sweep();
}

}  // namespace csm::node
