// The etcd cluster directory; see etcd_directory.h and docs/cluster.md.
#include "csm/cluster/etcd_directory.h"

#include <httplib.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "csm/base/log.h"
#include "csm/cluster/records_json.h"
#include "csm/cluster/replicas.h"
#include "csm/os/tcp_channel.h"

namespace csm::cluster {
namespace {

using nlohmann::json;

std::string Base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Unbase64(const std::string& in) {
  if (in.size() % 4 != 0) return Corruption("etcd returned malformed base64");
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return Corruption("etcd returned malformed base64");
  size_t pad = in.empty() ? 0 : (in.back() == '=') + (in.size() > 1 && in[in.size() - 2] == '=');
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

// The first key after every key that starts with `prefix`: etcd's range_end for it.
std::string PrefixEnd(std::string prefix) {
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

// etcd's JSON omits zero fields and writes 64-bit numbers as strings.
int64_t Num(const json& j, const char* field) {
  if (!j.contains(field)) return 0;
  const json& v = j[field];
  if (v.is_string()) return std::strtoll(v.get<std::string>().c_str(), nullptr, 10);
  return v.is_number() ? v.get<int64_t>() : 0;
}

json Put(const std::string& key, const std::string& value, int64_t lease = 0) {
  json p = {{"key", Base64(key)}, {"value", Base64(value)}};
  if (lease != 0) p["lease"] = std::to_string(lease);
  return {{"requestPut", p}};
}
json Get(const std::string& key) { return {{"requestRange", {{"key", Base64(key)}}}}; }
json GetPrefix(const std::string& prefix) {
  return {{"requestRange", {{"key", Base64(prefix)}, {"range_end", Base64(PrefixEnd(prefix))}}}};
}
json Delete(const std::string& key) { return {{"requestDeleteRange", {{"key", Base64(key)}}}}; }
json Created(const std::string& key, int64_t revision) {  // create_revision == revision
  return {{"key", Base64(key)}, {"target", "CREATE"}, {"createRevision", std::to_string(revision)}};
}
json Modified(const std::string& key, int64_t revision) {
  return {{"key", Base64(key)}, {"target", "MOD"}, {"modRevision", std::to_string(revision)}};
}

struct Kv {
  std::string key, value;
  int64_t mod_revision;
  int64_t lease;  // the etcd lease it is attached to (0: none)
};

// The key-values of one range response (a txn response's entry or a /kv/range reply).
Result<std::vector<Kv>> Kvs(const json& range) {
  std::vector<Kv> out;
  if (!range.contains("kvs")) return out;
  for (const auto& kv : range["kvs"]) {
    CSM_ASSIGN_OR_RETURN(std::string k, Unbase64(kv.value("key", std::string())));
    CSM_ASSIGN_OR_RETURN(std::string v, Unbase64(kv.value("value", std::string())));
    out.push_back({std::move(k), std::move(v), Num(kv, "mod_revision"), Num(kv, "lease")});
  }
  return out;
}

Result<json> ParseValue(const std::string& text, const char* what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Corruption(std::string("etcd holds a malformed ") + what);
  return j;
}

// The range response at position i of a txn reply ({} if there is none).
const json& RangeAt(const json& txn, size_t i) {
  static const json kEmpty = json::object();
  if (!txn.contains("responses") || !txn["responses"].is_array() || txn["responses"].size() <= i) {
    return kEmpty;
  }
  const json& r = txn["responses"][i];
  return r.contains("response_range") ? r["response_range"] : kEmpty;
}

}  // namespace

EtcdDirectory::EtcdDirectory(EtcdOptions options, uint32_t node_id)
    : options_(std::move(options)), node_id_(node_id), prefix_("/csm/" + options_.cluster + "/") {}

EtcdDirectory::~EtcdDirectory() {
  if (watcher_.joinable()) {
    std::unique_lock<std::mutex> lock(watch_mu_);
    watch_stopping_ = true;
    watch_cv_.notify_all();
    // stop() ends a stream being read; repeated in case the watcher was between streams.
    while (!watch_done_) {
      watch_http_->stop();
      watch_cv_.wait_for(lock, std::chrono::milliseconds(50));
    }
    lock.unlock();
    watcher_.join();
  }
  if (lease_id_ != 0) (void)Post("lease/revoke", {{"ID", std::to_string(lease_id_)}});
}

Result<std::unique_ptr<EtcdDirectory>> EtcdDirectory::Connect(const EtcdOptions& options,
                                                              uint32_t node_id) {
  std::unique_ptr<EtcdDirectory> d(new EtcdDirectory(options, node_id));
  d->http_ = std::make_unique<httplib::Client>(options.endpoint);
  if (!d->http_->is_valid()) return InvalidArgument("bad etcd endpoint '" + options.endpoint + "'");
  auto ms = std::chrono::milliseconds(options.timeout_ms);
  d->http_->set_connection_timeout(ms);
  d->http_->set_read_timeout(ms);
  d->http_->set_write_timeout(ms);
  CSM_RETURN_IF_ERROR(d->Post("kv/range", {{"key", Base64(d->Key("config"))}}).status());
  return d;
}

Result<json> EtcdDirectory::Post(const std::string& path, const json& body) {
  std::lock_guard<std::mutex> lock(mu_);
  httplib::Result res = http_->Post(("/v3/" + path).c_str(), body.dump(), "application/json");
  if (!res) {
    return Unavailable("etcd at " + options_.endpoint + " is unreachable (" +
                       httplib::to_string(res.error()) + "): is it running?");
  }
  json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded()) return Corruption("etcd answered " + path + " with something not JSON");
  if (res->status != 200) {
    return Unavailable("etcd refused " + path + ": " + j.value("message", res->body));
  }
  return j;
}

Status EtcdDirectory::CheckConfig(const NodeInfo& self) {
  window_ = self.window;
  segment_count_ = self.window.size / self.window.segment_size;
  const std::string verifier = os::SecretVerifier(options_.secret, "csm cluster " + options_.cluster);
  json config = {{"window", {self.window.base, self.window.size, self.window.segment_size}},
                 {"fingerprint", self.fingerprint}, {"fingerprint_text", self.fingerprint_text},
                 {"secret_verifier", verifier}};
  CSM_ASSIGN_OR_RETURN(json txn, Post("kv/txn", {{"compare", {Created(Key("config"), 0)}},
                                                 {"success", {Put(Key("config"), config.dump())}},
                                                 {"failure", {Get(Key("config"))}}}));
  if (!txn.value("succeeded", false)) {
    CSM_ASSIGN_OR_RETURN(auto kvs, Kvs(RangeAt(txn, 0)));
    if (kvs.empty()) return Corruption("etcd lost the cluster config");
    CSM_ASSIGN_OR_RETURN(json c, ParseValue(kvs[0].value, "cluster config"));
    NodeInfo cluster;
    try {
      cluster.window = {c.at("window").at(0).get<uint64_t>(), c.at("window").at(1).get<uint64_t>(),
                        c.at("window").at(2).get<uint64_t>()};
      cluster.fingerprint = c.at("fingerprint").get<uint64_t>();
      cluster.fingerprint_text = c.at("fingerprint_text").get<std::string>();
      if (c.at("secret_verifier").get<std::string>() != verifier) {
        return PermissionDenied("this node's cluster secret differs from the one cluster '" +
                                options_.cluster + "' was started with: every node must be "
                                "started with the same secret");
      }
    } catch (const json::exception& e) {
      return Corruption(std::string("etcd holds a malformed cluster config: ") + e.what());
    }
    if (!(cluster.window == self.window)) {
      return FailedPrecondition("node " + std::to_string(self.node_id) + " uses window " +
                                Describe(self.window) + " but the cluster uses " +
                                Describe(cluster.window) + ": start every node with the same "
                                "heap_base, heap_size and segment_size");
    }
    if (cluster.fingerprint != self.fingerprint) {
      return FailedPrecondition("node " + std::to_string(self.node_id) + " runs a different csm "
                                "build (" + self.fingerprint_text + ") than the cluster (" +
                                cluster.fingerprint_text + "): objects are shared in place only "
                                "between identical builds");
    }
  }
  return Status::OK();
}

Status EtcdDirectory::Join(const NodeInfo& self) {
  CSM_RETURN_IF_ERROR(CheckConfig(self));
  CSM_ASSIGN_OR_RETURN(json grant, Post("lease/grant", {{"TTL", options_.ttl_seconds}}));
  lease_id_ = Num(grant, "ID");
  if (lease_id_ == 0) return Corruption("etcd granted no lease");
  std::string member = Key("members/" + std::to_string(self.node_id));
  CSM_ASSIGN_OR_RETURN(json joined, Post("kv/txn", {{"compare", {Created(member, 0)}},
                                                    {"success", {Put(member, ToJson(self).dump(), lease_id_)}}}));
  if (!joined.value("succeeded", false)) {
    return AlreadyExists("node id " + std::to_string(self.node_id) + " is taken by a live node: "
                         "give every node its own --node-id (a restarted node can rejoin " +
                         std::to_string(options_.ttl_seconds) + " s after its old one stopped)");
  }
  StartWatch();
  return Status::OK();
}

namespace {

std::string SegmentName(uint64_t first) {
  char name[32];
  std::snprintf(name, sizeof(name), "%020llu", static_cast<unsigned long long>(first));
  return name;
}

}  // namespace

Status EtcdDirectory::Rejoin(const NodeInfo& self, const std::vector<SegmentLease>& leases,
                             const std::vector<ObjectRecord>& records, std::vector<std::string>* conflicts) {
  CSM_RETURN_IF_ERROR(CheckConfig(self));
  CSM_ASSIGN_OR_RETURN(json grant, Post("lease/grant", {{"TTL", options_.ttl_seconds}}));
  const int64_t lease = Num(grant, "ID");
  if (lease == 0) return Corruption("etcd granted no lease");
  const std::string member = Key("members/" + std::to_string(self.node_id));
  const std::string version = Key("segments_version"), segments = Key("segments/");
  int64_t earlier_lease = 0;
  bool took = false;
  for (int attempt = 0; attempt < 20 && !took; ++attempt) {
    // The member key, the segment runs and their version at one revision; the takeover
    // happens only if none of them changed in between.
    CSM_ASSIGN_OR_RETURN(json seen, Post("kv/txn", {{"success", {Get(member), Get(version), GetPrefix(segments)}}}));
    CSM_ASSIGN_OR_RETURN(auto was, Kvs(RangeAt(seen, 0)));
    CSM_ASSIGN_OR_RETURN(auto v, Kvs(RangeAt(seen, 1)));
    CSM_ASSIGN_OR_RETURN(auto taken, Kvs(RangeAt(seen, 2)));
    json compare = json::array({Modified(version, v.empty() ? 0 : v[0].mod_revision)});
    earlier_lease = 0;
    if (was.empty()) {
      compare.push_back(Created(member, 0));
    } else {
      CSM_ASSIGN_OR_RETURN(json j, ParseValue(was[0].value, "member"));
      CSM_ASSIGN_OR_RETURN(NodeInfo earlier, NodeFromJson(j));
      if (earlier.incarnation != self.incarnation) {
        (void)Post("lease/revoke", {{"ID", std::to_string(lease)}});
        return AlreadyExists("node id " + std::to_string(self.node_id) + " is taken by a live node of another "
                             "incarnation: give every node its own --node-id");
      }
      compare.push_back(Modified(member, was[0].mod_revision));
      earlier_lease = was[0].lease;
    }
    json ops = json::array({Put(version, "1"), Put(member, ToJson(self).dump(), lease)});
    std::set<std::string> ours;
    for (const SegmentLease& l : leases) {
      const std::string name = segments + SegmentName(l.first);
      ours.insert(name);
      ops.push_back(Put(name, json{{"first", l.first}, {"count", l.count}, {"node", node_id_}}.dump(), lease));
    }
    for (const Kv& kv : taken) {
      CSM_ASSIGN_OR_RETURN(json run, ParseValue(kv.value, "segment lease"));
      const uint64_t first = run.value("first", uint64_t{0}), count = run.value("count", uint64_t{0});
      const uint32_t node = run.value("node", 0u);
      if (node == node_id_) {
        if (ours.count(kv.key) == 0) ops.push_back(Delete(kv.key));  // held no more
        continue;
      }
      for (const SegmentLease& l : leases) {
        if (first < l.first + l.count && l.first < first + count) {
          (void)Post("lease/revoke", {{"ID", std::to_string(lease)}});
          return FailedPrecondition("segments " + std::to_string(l.first) + "+" + std::to_string(l.count) +
                                    " of node " + std::to_string(node_id_) + " were leased to node " +
                                    std::to_string(node) + " while its csmd was down (longer than the " +
                                    std::to_string(options_.ttl_seconds) +
                                    " s etcd lease): its objects cannot come back; start it with --fresh");
        }
      }
    }
    CSM_ASSIGN_OR_RETURN(json result, Post("kv/txn", {{"compare", compare}, {"success", ops}}));
    took = result.value("succeeded", false);
  }
  if (!took) {
    (void)Post("lease/revoke", {{"ID", std::to_string(lease)}});
    return Unavailable("could not rejoin: too much contention in etcd, try again");
  }
  // The earlier csmd's lease holds nothing of ours any more.
  if (earlier_lease != 0 && earlier_lease != lease) (void)Post("lease/revoke", {{"ID", std::to_string(earlier_lease)}});
  lease_id_ = lease;
  StartWatch();
  for (const ObjectRecord& r : records) {
    Status s = Place(r, /*again=*/true);
    if (s.code() == StatusCode::kAlreadyExists) {
      conflicts->push_back(r.key);
    } else if (!s.ok()) {
      return s;
    }
  }
  return Status::OK();
}

void EtcdDirectory::StartWatch() {
  if (watcher_.joinable()) return;
  // The watch is open before Join returns: every record published after it is pushed.
  watch_http_ = std::make_unique<httplib::Client>(options_.endpoint);
  watch_http_->set_connection_timeout(std::chrono::milliseconds(options_.timeout_ms));
  watch_http_->set_read_timeout(std::chrono::minutes(5));  // a quiet cluster sends nothing
  watcher_ = std::thread([this] { WatchLoop(); });
  std::unique_lock<std::mutex> lock(watch_mu_);
  if (!watch_cv_.wait_for(lock, std::chrono::milliseconds(options_.timeout_ms), [&] { return watching_; })) {
    CSM_LOG_WARN("etcd's watch did not open within %d ms: lookups ask etcd until it does",
                 options_.timeout_ms);
  }
}

void EtcdDirectory::WatchLoop() {
  int64_t revision = 0;  // of the last change applied; 0: start from the members afresh
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      if (watch_stopping_) break;
    }
    Status s;
    if (revision == 0) {
      auto members = LiveMembers(&revision);
      if (members.ok()) {
        std::lock_guard<std::mutex> lock(watch_mu_);
        peers_.clear();
        for (const auto& [id, n] : *members) peers_[id] = n.peer_address;
        cache_.Clear();
      } else {
        s = members.status();
        revision = 0;
      }
    }
    if (s.ok()) s = WatchOnce(&revision);
    std::unique_lock<std::mutex> lock(watch_mu_);
    watching_ = false;
    if (watch_stopping_) break;
    CSM_LOG_DEBUG("etcd watch: %s; watching again", s.ToString().c_str());
    if (s.code() == StatusCode::kFailedPrecondition) revision = 0;  // compacted past what was applied
    watch_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return watch_stopping_; });
  }
  std::lock_guard<std::mutex> lock(watch_mu_);
  watching_ = false;
  watch_done_ = true;
  watch_cv_.notify_all();
}

Status EtcdDirectory::WatchOnce(int64_t* revision) {
  json create = {{"create_request", {{"key", Base64(prefix_)},
                                     {"range_end", Base64(PrefixEnd(prefix_))},
                                     {"start_revision", std::to_string(*revision + 1)}}}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v3/watch";
  req.body = create.dump();
  req.set_header("Content-Type", "application/json");
  std::string pending;  // the gateway sends one JSON message per line
  Status failed;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    pending.append(data, n);
    for (size_t end; (end = pending.find('\n')) != std::string::npos;) {
      failed = ApplyWatchMessage(pending.substr(0, end), revision);
      pending.erase(0, end + 1);
      if (!failed.ok()) return false;
    }
    std::lock_guard<std::mutex> lock(watch_mu_);
    return !watch_stopping_;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  watch_http_->send(req, res, error);
  CSM_RETURN_IF_ERROR(failed);
  return Unavailable("etcd's watch stream ended (" + httplib::to_string(error) + ")");
}

Status EtcdDirectory::ApplyWatchMessage(const std::string& line, int64_t* revision) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Corruption("etcd's watch sent something not JSON");
  if (!j.contains("result") || !j["result"].is_object()) {
    return Unavailable("etcd's watch failed: " + j.dump());
  }
  const json& r = j["result"];
  if (r.value("canceled", false)) {
    if (Num(r, "compact_revision") > 0) return FailedPrecondition("etcd compacted the watched revisions");
    return Unavailable("etcd cancelled the watch: " + r.value("cancel_reason", std::string()));
  }
  const std::string objects = Key("objects/"), members = Key("members/");
  std::lock_guard<std::mutex> lock(watch_mu_);
  if (r.value("created", false)) {
    watching_ = true;
    watch_cv_.notify_all();
  }
  if (!r.contains("events")) return Status::OK();
  for (const auto& e : r["events"]) {
    if (!e.contains("kv")) return Corruption("etcd's watch sent an event without a key");
    const json& kv = e["kv"];
    const bool deleted = e.value("type", std::string()) == "DELETE";
    CSM_ASSIGN_OR_RETURN(std::string key, Unbase64(kv.value("key", std::string())));
    CSM_ASSIGN_OR_RETURN(std::string value, Unbase64(kv.value("value", std::string())));
    if (key.starts_with(objects)) {
      if (deleted) {
        cache_.Erase(key.substr(objects.size()));
        Heard(key.substr(objects.size()), nullptr);
      } else {
        CSM_ASSIGN_OR_RETURN(json v, ParseValue(value, "object record"));
        CSM_ASSIGN_OR_RETURN(ObjectRecord record, RecordFromJson(v));
        auto peer = peers_.find(record.owner_node);
        record.owner_alive = peer != peers_.end();
        record.owner_address = record.owner_alive ? peer->second : "";
        cache_.Put(record);
        Heard(record.key, &record);  // after the cache has it: the listener may look it up
      }
    } else if (key.starts_with(members)) {
      const uint32_t id = static_cast<uint32_t>(std::strtoul(key.c_str() + members.size(), nullptr, 10));
      if (deleted) {
        peers_.erase(id);
      } else {
        CSM_ASSIGN_OR_RETURN(json v, ParseValue(value, "member"));
        CSM_ASSIGN_OR_RETURN(NodeInfo n, NodeFromJson(v));
        peers_[id] = n.peer_address;
      }
    }
    *revision = std::max(*revision, Num(kv, "mod_revision"));
  }
  return Status::OK();
}

Status EtcdDirectory::Heartbeat() {
  CSM_ASSIGN_OR_RETURN(json r, Post("lease/keepalive", {{"ID", std::to_string(lease_id_)}}));
  if (!r.contains("result") || Num(r["result"], "TTL") <= 0) {
    return FailedPrecondition("this node's etcd lease expired: the cluster counts it as dead; "
                              "restart it");
  }
  return Status::OK();
}

Result<uint64_t> EtcdDirectory::LeaseSegments(uint64_t count) {
  const std::string version = Key("segments_version"), segments = Key("segments/");
  for (int attempt = 0; attempt < 20; ++attempt) {
    // Read the taken runs and the version key at one revision, pick the first gap, and
    // take it only if nobody took anything in between.
    CSM_ASSIGN_OR_RETURN(json txn, Post("kv/txn", {{"success", {Get(version), GetPrefix(segments)}}}));
    CSM_ASSIGN_OR_RETURN(auto v, Kvs(RangeAt(txn, 0)));
    CSM_ASSIGN_OR_RETURN(auto taken, Kvs(RangeAt(txn, 1)));
    int64_t seen = v.empty() ? 0 : v[0].mod_revision;
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    for (const auto& kv : taken) {
      CSM_ASSIGN_OR_RETURN(json run, ParseValue(kv.value, "segment lease"));
      runs.push_back({run.value("first", uint64_t{0}), run.value("count", uint64_t{0})});
    }
    std::sort(runs.begin(), runs.end());
    uint64_t first = 0;
    for (const auto& [f, n] : runs) {
      if (f >= first + count) break;
      first = std::max(first, f + n);
    }
    if (first + count > segment_count_) {
      return CapacityExceeded("the cluster's window has no run of " + std::to_string(count) +
                              " free segments left: raise heap_size on every node");
    }
    json run = {{"first", first}, {"count", count}, {"node", node_id_}};
    CSM_ASSIGN_OR_RETURN(json took, Post("kv/txn", {{"compare", {Modified(version, seen)}},
                                                    {"success", {Put(version, "1"),
                                                                 Put(segments + SegmentName(first), run.dump(), lease_id_)}}}));
    if (took.value("succeeded", false)) return first;
  }
  return Unavailable("could not lease segments: too much contention in etcd, try again");
}

Result<std::map<uint32_t, NodeInfo>> EtcdDirectory::LiveMembers(int64_t* revision) {
  CSM_ASSIGN_OR_RETURN(json txn, Post("kv/txn", {{"success", {GetPrefix(Key("members/")),
                                                              GetPrefix(Key("segments/"))}}}));
  if (revision != nullptr) *revision = txn.contains("header") ? Num(txn["header"], "revision") : 0;
  CSM_ASSIGN_OR_RETURN(auto members, Kvs(RangeAt(txn, 0)));
  CSM_ASSIGN_OR_RETURN(auto segments, Kvs(RangeAt(txn, 1)));
  std::map<uint32_t, NodeInfo> out;
  for (const auto& kv : members) {
    CSM_ASSIGN_OR_RETURN(json j, ParseValue(kv.value, "member"));
    CSM_ASSIGN_OR_RETURN(NodeInfo n, NodeFromJson(j));
    n.alive = true;  // its key lives only as long as its lease
    n.leases.clear();
    out[n.node_id] = std::move(n);
  }
  for (const auto& kv : segments) {
    CSM_ASSIGN_OR_RETURN(json run, ParseValue(kv.value, "segment lease"));
    auto it = out.find(run.value("node", 0u));
    if (it != out.end()) it->second.leases.push_back({run.value("first", uint64_t{0}), run.value("count", uint64_t{0})});
  }
  return out;
}

std::vector<uint32_t> EtcdDirectory::LiveIds(const std::map<uint32_t, NodeInfo>& live) {
  std::vector<uint32_t> ids;
  for (const auto& [id, n] : live) ids.push_back(id);
  return ids;
}

Result<std::vector<NodeInfo>> EtcdDirectory::Members() {
  CSM_ASSIGN_OR_RETURN(auto live, LiveMembers());
  std::vector<NodeInfo> out;
  for (auto& [id, n] : live) out.push_back(std::move(n));
  return out;
}

Status EtcdDirectory::Publish(const ObjectRecord& record, std::vector<uint32_t>* replicas) {
  ObjectRecord with = record;
  if (record.copies > 1 && record.replicas.empty()) {
    CSM_ASSIGN_OR_RETURN(auto live, LiveMembers());
    with.replicas = ChooseReplicas(record.owner_node, record.copies, LiveIds(live), {});
  }
  CSM_RETURN_IF_ERROR(Place(with, /*again=*/false));
  if (replicas != nullptr) *replicas = with.replicas;
  return Status::OK();
}

Status EtcdDirectory::Place(const ObjectRecord& record, bool again) {
  const std::string key = Key("objects/" + record.key);
  for (int attempt = 0; attempt < 5; ++attempt) {
    CSM_ASSIGN_OR_RETURN(json txn, Post("kv/txn", {{"compare", {Created(key, 0)}},
                                                   {"success", {Put(key, ToJson(record).dump())}},
                                                   {"failure", {Get(key)}}}));
    if (txn.value("succeeded", false)) return Status::OK();
    CSM_ASSIGN_OR_RETURN(auto kvs, Kvs(RangeAt(txn, 0)));
    if (kvs.empty()) continue;  // deleted meanwhile: try again
    CSM_ASSIGN_OR_RETURN(json j, ParseValue(kvs[0].value, "object record"));
    CSM_ASSIGN_OR_RETURN(ObjectRecord existing, RecordFromJson(j));
    const bool ours = again && existing.owner_node == record.owner_node;
    if (ours && existing.object_id == record.object_id) return Status::OK();  // as it was
    CSM_ASSIGN_OR_RETURN(auto live, LiveMembers());
    if (!ours && live.count(existing.owner_node)) {
      return AlreadyExists("key '" + record.key + "' is already committed on node " +
                           std::to_string(existing.owner_node) +
                           ": objects are immutable; delete it first or choose another key");
    }
    // Its owner is dead and the object with it (or it is this node's earlier record):
    // take the key over, if still unchanged.
    CSM_ASSIGN_OR_RETURN(json took, Post("kv/txn", {{"compare", {Modified(key, kvs[0].mod_revision)}},
                                                    {"success", {Put(key, ToJson(record).dump())}}}));
    if (took.value("succeeded", false)) return Status::OK();
  }
  return Unavailable("could not publish '" + record.key + "': too much contention in etcd");
}

Status EtcdDirectory::Unpublish(const std::string& key, uint32_t owner_node) {
  const std::string k = Key("objects/" + key);
  CSM_ASSIGN_OR_RETURN(json range, Post("kv/range", {{"key", Base64(k)}}));
  CSM_ASSIGN_OR_RETURN(auto kvs, Kvs(range));
  if (kvs.empty()) return NotFound("no object '" + key + "' in the cluster");
  CSM_ASSIGN_OR_RETURN(json j, ParseValue(kvs[0].value, "object record"));
  CSM_ASSIGN_OR_RETURN(ObjectRecord r, RecordFromJson(j));
  if (r.owner_node != owner_node) {
    return NotFound("node " + std::to_string(owner_node) + " publishes no object '" + key + "'");
  }
  CSM_ASSIGN_OR_RETURN(json txn, Post("kv/txn", {{"compare", {Modified(k, kvs[0].mod_revision)}},
                                                 {"success", {Delete(k)}}}));
  if (!txn.value("succeeded", false)) return NotFound("'" + key + "' changed while being deleted");
  return Status::OK();
}

std::optional<Result<ObjectRecord>> EtcdDirectory::LookupHere(const std::string& key) {
  std::unique_lock<std::mutex> lock(watch_mu_);
  if (!watching_) return std::nullopt;
  lock.unlock();
  auto r = cache_.Find(key);
  if (!r) return std::nullopt;
  lock.lock();
  auto peer = peers_.find(r->owner_node);
  r->owner_alive = peer != peers_.end();
  r->owner_address = r->owner_alive ? peer->second : "";
  return Result<ObjectRecord>(std::move(*r));
}

Result<ObjectRecord> EtcdDirectory::Lookup(const std::string& key, Freshness freshness) {
  if (freshness == Freshness::kCachedOk) {
    if (auto here = LookupHere(key)) return std::move(*here);
  }
  const uint64_t mark = cache_.Mark();
  CSM_ASSIGN_OR_RETURN(json range, Post("kv/range", {{"key", Base64(Key("objects/" + key))}}));
  CSM_ASSIGN_OR_RETURN(auto kvs, Kvs(range));
  if (kvs.empty()) return NotFound("no object under key '" + key + "' in the cluster");
  CSM_ASSIGN_OR_RETURN(json j, ParseValue(kvs[0].value, "object record"));
  CSM_ASSIGN_OR_RETURN(ObjectRecord r, RecordFromJson(j));
  CSM_ASSIGN_OR_RETURN(auto live, LiveMembers());
  auto owner = live.find(r.owner_node);
  r.owner_alive = owner != live.end();
  r.owner_address = r.owner_alive ? owner->second.peer_address : "";
  // Kept while the watch runs (its events keep the record current from now on), unless
  // an event for the key arrived while the lookup was on its way.
  std::lock_guard<std::mutex> lock(watch_mu_);
  if (watching_) cache_.KeepAnswer(r, mark);
  return r;
}

Result<std::vector<ObjectRecord>> EtcdDirectory::List(const std::string& after, uint32_t limit,
                                                      bool* more) {
  const std::string prefix = Key("objects/");
  std::string from = after.empty() ? prefix : prefix + after + std::string(1, '\0');
  CSM_ASSIGN_OR_RETURN(json range, Post("kv/range", {{"key", Base64(from)},
                                                     {"range_end", Base64(PrefixEnd(prefix))},
                                                     {"limit", std::to_string(limit)}}));
  CSM_ASSIGN_OR_RETURN(auto kvs, Kvs(range));
  CSM_ASSIGN_OR_RETURN(auto live, LiveMembers());
  std::vector<ObjectRecord> out;
  for (const auto& kv : kvs) {
    CSM_ASSIGN_OR_RETURN(json j, ParseValue(kv.value, "object record"));
    CSM_ASSIGN_OR_RETURN(ObjectRecord r, RecordFromJson(j));
    auto owner = live.find(r.owner_node);
    r.owner_alive = owner != live.end();
    r.owner_address = r.owner_alive ? owner->second.peer_address : "";
    out.push_back(std::move(r));
  }
  *more = range.value("more", false);
  return out;
}

Result<std::vector<std::string>> EtcdDirectory::Stale(const std::vector<Held>& held) {
  CSM_ASSIGN_OR_RETURN(auto live, LiveMembers());
  std::vector<std::string> stale;
  constexpr size_t kOpsPerTxn = 100;  // etcd allows 128 by default
  for (size_t i = 0; i < held.size(); i += kOpsPerTxn) {
    json ops = json::array();
    size_t end = std::min(held.size(), i + kOpsPerTxn);
    for (size_t k = i; k < end; ++k) ops.push_back(Get(Key("objects/" + held[k].key)));
    CSM_ASSIGN_OR_RETURN(json txn, Post("kv/txn", {{"success", ops}}));
    for (size_t k = i; k < end; ++k) {
      CSM_ASSIGN_OR_RETURN(auto kvs, Kvs(RangeAt(txn, k - i)));
      bool good = false;
      if (!kvs.empty()) {
        CSM_ASSIGN_OR_RETURN(json j, ParseValue(kvs[0].value, "object record"));
        CSM_ASSIGN_OR_RETURN(ObjectRecord r, RecordFromJson(j));
        good = CopyStillGood(r, held[k].object_id, [&](uint32_t n) { return live.count(n) != 0; });
      }
      if (!good) stale.push_back(held[k].key);
    }
  }
  return stale;
}

Status EtcdDirectory::SetReplicas(const std::string& key, uint64_t object_id,
                                  const std::vector<uint32_t>& replicas) {
  const std::string k = Key("objects/" + key);
  for (int attempt = 0; attempt < 5; ++attempt) {
    CSM_ASSIGN_OR_RETURN(json range, Post("kv/range", {{"key", Base64(k)}}));
    CSM_ASSIGN_OR_RETURN(auto kvs, Kvs(range));
    if (kvs.empty()) break;
    CSM_ASSIGN_OR_RETURN(json j, ParseValue(kvs[0].value, "object record"));
    CSM_ASSIGN_OR_RETURN(ObjectRecord r, RecordFromJson(j));
    if (r.owner_node != node_id_ || r.object_id != object_id) break;
    if (replicas.size() >= r.copies) {
      return InvalidArgument("'" + key + "' keeps " + std::to_string(r.copies) + " copies: at most " +
                             std::to_string(r.copies - 1) + " replicas");
    }
    if (r.replicas == replicas) return Status::OK();
    r.replicas = replicas;
    CSM_ASSIGN_OR_RETURN(json took, Post("kv/txn", {{"compare", {Modified(k, kvs[0].mod_revision)}},
                                                    {"success", {Put(k, ToJson(r).dump())}}}));
    if (took.value("succeeded", false)) return Status::OK();
    if (attempt == 4) return Unavailable("could not name the replicas of '" + key + "': too much contention in etcd");
  }
  return NotFound("node " + std::to_string(node_id_) + " publishes no object " + std::to_string(object_id) +
                  " under '" + key + "'");
}

Result<std::vector<ObjectRecord>> EtcdDirectory::TakeOver(const std::vector<Held>& held) {
  std::vector<ObjectRecord> out;
  CSM_ASSIGN_OR_RETURN(auto live, LiveMembers());
  auto alive = [&](uint32_t n) { return live.count(n) != 0; };
  if (!alive(node_id_)) return out;
  const std::string version = Key("segments_version"), segments = Key("segments/");
  for (const Held& h : held) {
    const std::string key = Key("objects/" + h.key);
    for (int attempt = 0; attempt < 5; ++attempt) {
      // The record, the segment runs and their version at one revision.
      CSM_ASSIGN_OR_RETURN(json seen, Post("kv/txn", {{"success", {Get(key), Get(version), GetPrefix(segments)}}}));
      CSM_ASSIGN_OR_RETURN(auto record_kv, Kvs(RangeAt(seen, 0)));
      CSM_ASSIGN_OR_RETURN(auto version_kv, Kvs(RangeAt(seen, 1)));
      CSM_ASSIGN_OR_RETURN(auto runs, Kvs(RangeAt(seen, 2)));
      if (record_kv.empty()) break;
      CSM_ASSIGN_OR_RETURN(json j, ParseValue(record_kv[0].value, "object record"));
      CSM_ASSIGN_OR_RETURN(ObjectRecord r, RecordFromJson(j));
      if (!ShouldTakeOver(r, h.object_id, node_id_, alive)) break;
      // Its addresses must stay out of anyone else's leases: the dead owner's runs went
      // with its etcd lease, so this node leases the segments under its arenas, unless a
      // live node holds them already (another take-over from the same owner keeps them
      // too; a node that leased them afresh would build over the object: it is lost).
      json ops = json::array();
      Status reused;
      for (const auto& [first, last] : SegmentsOf(r, window_)) {
        bool covered = false;
        for (const auto& kv : runs) {
          CSM_ASSIGN_OR_RETURN(json run, ParseValue(kv.value, "segment lease"));
          const uint64_t f = run.value("first", uint64_t{0}), n = run.value("count", uint64_t{0});
          if (!(f <= last && first < f + n)) continue;
          covered = true;
          if (!run.value("taken_over", false) && run.value("node", 0u) != node_id_) {
            reused = Unavailable("the addresses of '" + h.key + "' were leased to node " +
                                 std::to_string(run.value("node", 0u)) + " after its owner died");
          }
        }
        if (!covered) {
          json run = {{"first", first}, {"count", last - first + 1}, {"node", node_id_}, {"taken_over", true}};
          ops.push_back(Put(segments + SegmentName(first), run.dump(), lease_id_));
        }
      }
      if (!reused.ok()) return reused;
      ObjectRecord taken = TakenOver(r, node_id_, LiveIds(live));
      ops.push_back(Put(key, ToJson(taken).dump()));
      ops.push_back(Put(version, "1"));
      const int64_t version_seen = version_kv.empty() ? 0 : version_kv[0].mod_revision;
      CSM_ASSIGN_OR_RETURN(json took, Post("kv/txn", {{"compare", {Modified(key, record_kv[0].mod_revision),
                                                                   Modified(version, version_seen)}},
                                                      {"success", ops}}));
      if (!took.value("succeeded", false)) {  // changed meanwhile: look again
        CSM_LOG_DEBUG("taking '%s' over: its record or the segment leases changed meanwhile", h.key.c_str());
        continue;
      }
      taken.owner_alive = true;
      taken.owner_address = live.at(node_id_).peer_address;
      out.push_back(std::move(taken));
      break;
    }
  }
  return out;
}

}  // namespace csm::cluster
