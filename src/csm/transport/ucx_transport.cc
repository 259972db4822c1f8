// The ucx transport; see ucx_transport.h and docs/transport.md.
#include "csm/transport/ucx_transport.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <cstdlib>
#include <future>
#include <cstring>
#include <map>
#include <mutex>

#include "csm/base/log.h"
#include "csm/os/memory.h"
#include "csm/transport/fetch_protocol.h"

namespace csm::transport {
namespace {

constexpr uint32_t kMaxWorkerAddress = 64 << 10;
constexpr uint32_t kMaxRkey = 64 << 10;

// After an OK verdict the server sends {u32 worker_address_length} + the address, then
// per extent {u64 remote_addr, u32 rkey_length, u32 0} + the packed key. The client
// answers {i32 status} once its gets are over (the server unregisters then).
struct ExtentKeyHeader {
  uint64_t remote_addr;
  uint32_t rkey_length;
  uint32_t reserved;
};
static_assert(sizeof(ExtentKeyHeader) == 16);

Status FromUcs(ucs_status_t s, const std::string& what) {
  std::string m = what + ": " + ucs_status_string(s);
  switch (s) {
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_REJECTED:
      return Unavailable(m);
    case UCS_ERR_TIMED_OUT:
      return Timeout(m);
    case UCS_ERR_NO_MEMORY:
      return CapacityExceeded(m);
    default:
      return Internal(m);
  }
}

// The interface that holds IPv4 address `ip`, if any ("" for none or a wildcard).
std::string DeviceOf(const std::string& ip) {
  in_addr want{};
  if (inet_pton(AF_INET, ip.c_str(), &want) != 1 || want.s_addr == htonl(INADDR_ANY)) return "";
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string name;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr != nullptr && i->ifa_addr->sa_family == AF_INET &&
        reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == want.s_addr) {
      name = i->ifa_name;
      break;
    }
  }
  freeifaddrs(list);
  return name;
}


// Bytes per millisecond we assume at least, to bound a whole transfer (a stall bound
// alone cannot be had from UCX's request interface).
constexpr uint64_t kMinBytesPerMs = 32 << 10;  // 32 MB/s

int64_t TransferBudgetMs(uint64_t bytes, int timeout_ms) {
  return timeout_ms + static_cast<int64_t>(bytes / kMinBytesPerMs);
}

}  // namespace

// A UCP context with one worker, shared by any number of threads.
class UcxWorker {
 public:
  // `device`: restrict UCX to this network interface ("" = UCX's choice).
  static Result<std::unique_ptr<UcxWorker>> Create(const std::string& device) {
    ucp_config_t* config = nullptr;
    ucs_status_t s = ucp_config_read(nullptr, nullptr, &config);
    if (s != UCS_OK) return FromUcs(s, "reading UCX's configuration");
    if (std::getenv("UCX_TLS") == nullptr) s = ucp_config_modify(config, "TLS", "tcp");
    if (s == UCS_OK && !device.empty() && std::getenv("UCX_NET_DEVICES") == nullptr) {
      s = ucp_config_modify(config, "NET_DEVICES", device.c_str());
    }
    if (s != UCS_OK) {
      ucp_config_release(config);
      return FromUcs(s, "configuring UCX");
    }
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
    params.features = UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
    params.mt_workers_shared = 1;
    auto w = std::unique_ptr<UcxWorker>(new UcxWorker);
    s = ucp_init(&params, config, &w->context_);
    ucp_config_release(config);
    if (s != UCS_OK) {
      return FromUcs(s, "starting UCX (check UCX_TLS: it names the transports to use, e.g. tcp)");
    }
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_MULTI;
    s = ucp_worker_create(w->context_, &wp, &w->worker_);
    if (s != UCS_OK) return FromUcs(s, "creating a UCX worker");
    ucp_worker_attr_t attr{};
    attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
    s = ucp_worker_query(w->worker_, &attr);
    if (s != UCS_OK || attr.thread_mode != UCS_THREAD_MODE_MULTI) {
      return Internal("this UCX build has no multi-threaded workers (build UCX with --enable-mt)");
    }
    s = ucp_worker_get_efd(w->worker_, &w->efd_);
    if (s != UCS_OK) return FromUcs(s, "getting the UCX worker's event fd");
    return w;
  }

  ~UcxWorker() {
    if (worker_ != nullptr) ucp_worker_destroy(worker_);
    if (context_ != nullptr) ucp_cleanup(context_);
  }

  ucp_context_h context() const { return context_; }
  ucp_worker_h worker() const { return worker_; }

  Result<std::string> Address() const {
    ucp_address_t* a = nullptr;
    size_t len = 0;
    ucs_status_t s = ucp_worker_get_address(worker_, &a, &len);
    if (s != UCS_OK) return FromUcs(s, "getting the UCX worker's address");
    std::string out(reinterpret_cast<const char*>(a), len);
    ucp_worker_release_address(worker_, a);
    return out;
  }

  // Progresses until nothing is left to do, then sleeps until an event or wait_ms.
  void ProgressOrWait(int wait_ms) {
    if (ucp_worker_progress(worker_) != 0) return;
    if (ucp_worker_arm(worker_) == UCS_ERR_BUSY) return;
    pollfd p{efd_, POLLIN, 0};
    (void)::poll(&p, 1, wait_ms);
  }

  void Signal() { (void)ucp_worker_signal(worker_); }

  // Waits for `requests` (from *_nbx calls) to finish, up to deadline_ns; frees them.
  // On timeout the rest are cancelled (and still freed).
  Status Wait(std::vector<ucs_status_ptr_t>& requests, int64_t deadline_ns, const char* what) {
    Status result;
    while (!requests.empty()) {
      for (size_t i = 0; i < requests.size();) {
        ucs_status_t st = ucp_request_check_status(requests[i]);
        if (st == UCS_INPROGRESS) {
          ++i;
          continue;
        }
        if (st != UCS_OK && result.ok()) result = FromUcs(st, what);
        ucp_request_free(requests[i]);
        requests[i] = requests.back();
        requests.pop_back();
      }
      if (requests.empty()) break;
      if (os::MonotonicNanos() > deadline_ns) {
        for (auto r : requests) ucp_request_cancel(worker_, r);
        int64_t grace = os::MonotonicNanos() + 1'000'000'000;
        while (!requests.empty() && os::MonotonicNanos() < grace) {
          ProgressOrWait(1);
          for (size_t i = 0; i < requests.size();) {
            if (ucp_request_check_status(requests[i]) == UCS_INPROGRESS) {
              ++i;
            } else {
              ucp_request_free(requests[i]);
              requests[i] = requests.back();
              requests.pop_back();
            }
          }
        }
        for (auto r : requests) ucp_request_free(r);  // UCX completes them later on its own
        requests.clear();
        return Timeout(std::string(what) + " did not finish in time");
      }
      ProgressOrWait(1);
    }
    return result;
  }

 private:
  UcxWorker() = default;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int efd_ = -1;
};

// ---- fetching -----------------------------------------------------------------------

namespace {


void OnEndpointError(void* arg, ucp_ep_h, ucs_status_t status) {
  static_cast<std::atomic<int>*>(arg)->store(static_cast<int>(status));
}

}  // namespace

UcxTransport::UcxTransport(PeerOptions options, std::unique_ptr<UcxWorker> worker)
    : options_(std::move(options)),
      pool_(options_.secret, kUcxTransportMagic, options_.timeout_ms, options_.timeout_ms / 2),
      worker_(std::move(worker)) {}
struct UcxTransport::Endpoint {
  ucp_ep_h ep = nullptr;
  std::atomic<int> error{UCS_OK};  // set by UCX's error callback (a ucs_status_t)
};

UcxTransport::~UcxTransport() {
  std::lock_guard<std::mutex> lock(endpoints_mu_);
  endpoints_.clear();  // closes them while the worker is still there
}

// Endpoints are kept per peer worker: connecting (UCX's wire-up) costs milliseconds.
// The last holder closes one (forcibly: nothing is outstanding on it by then).
Result<std::shared_ptr<UcxTransport::Endpoint>> UcxTransport::EndpointTo(const std::string& worker_address) {
  std::lock_guard<std::mutex> lock(endpoints_mu_);
  auto it = endpoints_.find(worker_address);
  if (it != endpoints_.end() && it->second->error.load() == UCS_OK) return it->second;
  UcxWorker* worker = worker_.get();
  std::shared_ptr<Endpoint> e(new Endpoint, [worker](Endpoint* dead) {
    if (dead->ep != nullptr) {
      ucp_request_param_t close{};
      close.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      close.flags = UCP_EP_CLOSE_FLAG_FORCE;
      ucs_status_ptr_t closing = ucp_ep_close_nbx(dead->ep, &close);
      if (closing != nullptr && !UCS_PTR_IS_ERR(closing)) {
        std::vector<ucs_status_ptr_t> c{closing};
        (void)worker->Wait(c, os::MonotonicNanos() + 1'000'000'000, "closing an endpoint");
      }
    }
    delete dead;
  });
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                         UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep_params.address = reinterpret_cast<const ucp_address_t*>(worker_address.data());
  ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep_params.err_handler.cb = OnEndpointError;
  ep_params.err_handler.arg = &e->error;
  ucs_status_t s = ucp_ep_create(worker_->worker(), &ep_params, &e->ep);
  if (s != UCS_OK) {
    e->ep = nullptr;
    return FromUcs(s, "connecting to the peer's UCX worker");
  }
  if (endpoints_.size() >= kMaxEndpoints) endpoints_.clear();  // peers come and go: start over
  endpoints_[worker_address] = e;
  return e;
}

void UcxTransport::ForgetEndpoint(const std::string& worker_address, const std::shared_ptr<Endpoint>& e) {
  std::lock_guard<std::mutex> lock(endpoints_mu_);
  auto it = endpoints_.find(worker_address);
  if (it != endpoints_.end() && it->second == e) endpoints_.erase(it);
}

Result<std::unique_ptr<UcxTransport>> UcxTransport::Create(PeerOptions options) {
  CSM_ASSIGN_OR_RETURN(auto worker, UcxWorker::Create(""));
  return std::unique_ptr<UcxTransport>(new UcxTransport(std::move(options), std::move(worker)));
}

Status UcxTransport::Fetch(const std::string& address, uint64_t object_id,
                           const std::vector<object::ObjectExtent>& extents,
                           const ExtentSink& sink, uint64_t* peer_digest,
                           const ArrivalObserver* arrived) {
  auto context = [&](const Status& s) { return s.WithContext("fetching from peer " + address + " over ucx"); };
  auto conn = StartFetch(pool_, address, kUcxTransportMagic, object_id, extents,
                         peer_digest != nullptr ? kWantDigest : 0, options_.timeout_ms);
  if (!conn.ok()) return context(conn.status());
  Status s = FetchOver(conn->fd.get(), address, extents, sink, peer_digest, arrived);
  if (s.ok()) pool_.Release(address, std::move(conn->fd));  // the server heard we are done
  return s;
}

Result<std::vector<uint64_t>> UcxTransport::BlockDigests(const std::string& address, uint64_t object_id,
                                                         const std::vector<object::ObjectExtent>& extents) {
  // Asked on the control connection, as the tcp transport does.
  auto digests = FetchBlockDigests(pool_, address, kUcxTransportMagic, object_id, extents, options_.timeout_ms);
  if (!digests.ok()) return digests.status().WithContext("asking peer " + address + " for block digests");
  return digests;
}

// After an OK verdict: the keys, the gets, and our word that we are done.
Status UcxTransport::FetchOver(int fd, const std::string& address,
                               const std::vector<object::ObjectExtent>& extents,
                               const ExtentSink& sink, uint64_t* peer_digest,
                               const ArrivalObserver* arrived) {
  const int timeout = options_.timeout_ms;
  auto context = [&](const Status& s) { return s.WithContext("fetching from peer " + address + " over ucx"); };

  uint32_t address_length = 0;
  CSM_RETURN_IF_ERROR(context(os::ReadAll(fd, &address_length, 4, timeout, "the worker address")));
  if (address_length == 0 || address_length > kMaxWorkerAddress) {
    return context(Corruption("the peer sent a bad UCX worker address length"));
  }
  std::string worker_address(address_length, '\0');
  CSM_RETURN_IF_ERROR(context(os::ReadAll(fd, worker_address.data(), address_length, timeout,
                                          "the worker address")));
  struct Key {
    uint64_t remote_addr;
    std::string packed;
  };
  std::vector<Key> keys(extents.size());
  for (auto& k : keys) {
    ExtentKeyHeader h{};
    CSM_RETURN_IF_ERROR(context(os::ReadAll(fd, &h, sizeof(h), timeout, "a remote key")));
    if (h.rkey_length == 0 || h.rkey_length > kMaxRkey) {
      return context(Corruption("the peer sent a bad remote key length"));
    }
    k.remote_addr = h.remote_addr;
    k.packed.resize(h.rkey_length);
    CSM_RETURN_IF_ERROR(context(os::ReadAll(fd, k.packed.data(), h.rkey_length, timeout, "a remote key")));
  }

  auto endpoint = EndpointTo(worker_address);
  if (!endpoint.ok()) return context(endpoint.status());
  ucp_ep_h ep = (*endpoint)->ep;
  ucs_status_t s = UCS_OK;

  uint64_t total = 0;
  Status result;
  std::vector<ucp_rkey_h> rkeys;
  std::vector<ucs_status_ptr_t> requests;
  std::vector<char*> dests;
  for (size_t i = 0; i < extents.size() && result.ok(); ++i) {
    total += extents[i].length;
    auto dest = sink(extents[i].addr, extents[i].length);
    if (!dest.ok()) {
      result = dest.status();
      break;
    }
    dests.push_back(*dest);
    ucp_rkey_h rkey = nullptr;
    s = ucp_ep_rkey_unpack(ep, keys[i].packed.data(), &rkey);
    if (s != UCS_OK) {
      result = Corruption(std::string("the peer sent a remote key UCX cannot unpack: ") + ucs_status_string(s));
      break;
    }
    rkeys.push_back(rkey);
    ucp_request_param_t p{};
    ucs_status_ptr_t r = ucp_get_nbx(ep, *dest, extents[i].length, keys[i].remote_addr, rkey, &p);
    if (UCS_PTR_IS_ERR(r)) {
      result = FromUcs(UCS_PTR_STATUS(r), "reading an extent");
    } else if (r != nullptr) {
      requests.push_back(r);
    }
  }
  // Outstanding gets are waited for (or cancelled) even after an error: they write
  // into the sink's memory.
  Status waited = worker_->Wait(requests, os::MonotonicNanos() + TransferBudgetMs(total, timeout) * 1'000'000,
                                "reading the extents");
  if (result.ok()) result = waited;
  const int ep_error = (*endpoint)->error.load();
  if (result.ok() && ep_error != UCS_OK) {
    result = FromUcs(static_cast<ucs_status_t>(ep_error), "the connection to the peer");
  }
  for (auto k : rkeys) ucp_rkey_destroy(k);
  if (!result.ok()) ForgetEndpoint(worker_address, *endpoint);  // the next fetch connects afresh
  // The gets complete in any order: the bytes are shown once all have landed.
  if (result.ok() && arrived != nullptr) {
    for (size_t i = 0; i < extents.size(); ++i) (*arrived)(dests[i], extents[i].length);
  }
  int32_t done = static_cast<int32_t>(result.code());
  Status told = os::WriteAll(fd, &done, sizeof(done), timeout, "done");
  if (result.ok() && !told.ok()) result = told;  // the connection is not reusable then
  if (result.ok() && peer_digest != nullptr) {  // the server answers a clean "done" with it
    result = os::ReadAll(fd, peer_digest, sizeof(*peer_digest), timeout, "the digest");
  }
  return context(result);
}

// ---- serving ------------------------------------------------------------------------

UcxTransportServer::UcxTransportServer(PeerOptions options, ExtentSource source,
                                       std::unique_ptr<UcxWorker> worker)
    : options_(std::move(options)), source_(std::move(source)), worker_(std::move(worker)) {}

UcxTransportServer::~UcxTransportServer() {
  server_.reset();  // no control connection is served any more
  stop_ = true;
  worker_->Signal();
  if (progress_.joinable()) progress_.join();
}

Result<std::unique_ptr<UcxTransportServer>> UcxTransportServer::Start(
    const std::string& address, PeerOptions options, ExtentSource source, int max_connections) {
  if (options.secret.empty()) return InvalidArgument("the cluster secret must not be empty");
  CSM_ASSIGN_OR_RETURN(auto worker, UcxWorker::Create(DeviceOf(address.substr(0, address.rfind(':')))));
  std::unique_ptr<UcxTransportServer> s(
      new UcxTransportServer(std::move(options), std::move(source), std::move(worker)));
  s->progress_ = std::thread([raw = s.get()] { raw->ProgressLoop(); });
  auto server = os::TcpServer::Start(
      address, ServerOptions(s->options_, kUcxTransportMagic, "ucx transport", max_connections),
      [raw = s.get()](int fd) { raw->Serve(fd); });
  if (!server.ok()) return server.status();  // the destructor stops the progress thread
  s->server_ = std::move(*server);
  return s;
}

void UcxTransportServer::ProgressLoop() {
  while (!stop_.load(std::memory_order_relaxed)) worker_->ProgressOrWait(100);
}

namespace {

// One extent, mapped read-only from its arena and registered with UCX for remote reads.
class ExposedExtent {
 public:
  explicit ExposedExtent(ucp_context_h context) : context_(context) {}
  ~ExposedExtent() {
    if (rkey_ != nullptr) ucp_rkey_buffer_release(rkey_);
    if (memh_ != nullptr) ucp_mem_unmap(context_, memh_);
    if (map_ != MAP_FAILED) ::munmap(map_, map_length_);
  }
  ExposedExtent(const ExposedExtent&) = delete;
  ExposedExtent& operator=(const ExposedExtent&) = delete;

  Status Expose(const SourceRange& range, uint64_t length) {
    const uint64_t page = os::PageSize();
    const uint64_t start = range.offset & ~(page - 1);
    map_length_ = (range.offset + length - start + page - 1) & ~(page - 1);
    map_ = ::mmap(nullptr, map_length_, PROT_READ, MAP_SHARED, range.fd, static_cast<off_t>(start));
    if (map_ == MAP_FAILED) return ErrnoError("mapping an extent to serve it", errno);
    ucp_mem_map_params_t mp{};
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                    UCP_MEM_MAP_PARAM_FIELD_PROT;
    mp.address = map_;
    mp.length = map_length_;
    mp.prot = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_REMOTE_READ;
    ucs_status_t s = ucp_mem_map(context_, &mp, &memh_);
    if (s != UCS_OK) return FromUcs(s, "registering an extent with UCX");
    s = ucp_rkey_pack(context_, memh_, &rkey_, &rkey_length_);
    if (s != UCS_OK) return FromUcs(s, "packing a remote key");
    remote_addr_ = reinterpret_cast<uint64_t>(map_) + (range.offset - start);
    return Status::OK();
  }

  uint64_t remote_addr() const { return remote_addr_; }
  const void* rkey() const { return rkey_; }
  size_t rkey_length() const { return rkey_length_; }

 private:
  ucp_context_h context_;
  void* map_ = MAP_FAILED;
  size_t map_length_ = 0;
  ucp_mem_h memh_ = nullptr;
  void* rkey_ = nullptr;
  size_t rkey_length_ = 0;
  uint64_t remote_addr_ = 0;
};

}  // namespace

void UcxTransportServer::Serve(int fd) {
  const int timeout = options_.timeout_ms;
  for (;;) {  // fetches until the peer hangs up
    auto request = NextFetchRequest(fd, kUcxTransportMagic, timeout, "ucx transport");
    if (!request) return;
    auto ranges = CheckFetchRequest(*request, source_);
    if (request->want_block_digests) {
      if (!ServeBlockDigests(fd, *request, ranges, digests_, timeout).ok()) return;
      continue;
    }
    std::vector<std::unique_ptr<ExposedExtent>> exposed;
    Status verdict = ranges.status();
    for (size_t i = 0; verdict.ok() && i < ranges->size(); ++i) {
      exposed.push_back(std::make_unique<ExposedExtent>(worker_->context()));
      verdict = exposed.back()->Expose((*ranges)[i], request->extents[i].length);
    }
    auto worker_address = verdict.ok() ? worker_->Address() : Result<std::string>(verdict);
    if (!worker_address.ok()) verdict = worker_address.status();
    if (!SendVerdict(fd, verdict, timeout).ok()) return;
    if (!verdict.ok()) continue;
    // The keys, in one write.
    std::string keys;
    uint32_t length = static_cast<uint32_t>(worker_address->size());
    keys.append(reinterpret_cast<const char*>(&length), 4).append(*worker_address);
    for (const auto& e : exposed) {
      ExtentKeyHeader h{e->remote_addr(), static_cast<uint32_t>(e->rkey_length()), 0};
      keys.append(reinterpret_cast<const char*>(&h), sizeof(h))
          .append(static_cast<const char*>(e->rkey()), e->rkey_length());
    }
    if (!os::WriteAll(fd, keys.data(), keys.size(), timeout, "the keys").ok()) return;
    // The peer reads with one-sided gets now; the memory stays registered until it says
    // it is done, hangs up, or overruns its budget. A digest is computed meanwhile.
    std::future<Result<uint64_t>> digest;
    if (request->want_digest) digest = digests_.Start(*request, *ranges);
    int32_t done = 0;
    Status heard = os::ReadAll(fd, &done, sizeof(done),
                               static_cast<int>(std::min<int64_t>(TransferBudgetMs(request->total_bytes, timeout),
                                                                  INT32_MAX)),
                               "done");
    if (request->want_digest) {
      auto d = digest.get();
      if (!d.ok()) CSM_LOG_WARN("ucx transport: %s", d.status().ToString().c_str());
      if (heard.ok() && done == 0 && (!d.ok() || !os::WriteAll(fd, &*d, sizeof(uint64_t), timeout, "the digest").ok())) {
        return;
      }
    }
    if (!heard.ok()) return;
    if (done == 0) bytes_served_.fetch_add(request->total_bytes, std::memory_order_relaxed);  // the peer read them
  }
}

}  // namespace csm::transport
