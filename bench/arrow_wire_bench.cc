// arrow_wire_bench: an Arrow table fetched from another node by csm, against Arrow
// Flight DoGet of the same table, an Arrow IPC stream over a plain TCP socket, and the
// link's raw limit, over the same link in one run (scripts/run-wire-bench sets up two
// network namespaces joined by veth; docs/benchmarks.md).
//
//   serve     in A's namespace, attached to node A (CSM_SOCKET): builds the table once
//             in ordinary memory; on request puts a copy in the heap under a round's key
//             (untimed) or deletes it, writes the table as an IPC stream, or sends raw
//             bytes; with --flight-port also serves it by Flight DoGet
//   csm-get   (spawned by measure, one per cluster) on node B: per round, asks serve to
//             put the round's table, times GetTable (fetch into the same addresses +
//             descriptor checks) and one traversal, asks serve to delete it
//   measure   in B's namespace: runs csm-get per cluster, then Flight, IPC and raw link
//             rounds, and prints medians, spread, wire bytes and ratios against csm
#include <arpa/inet.h>
#include <arrow/api.h>
#include <arrow/flight/api.h>
#include <arrow/io/interfaces.h>
#include <arrow/ipc/api.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "csm/arrow.h"
#include "sockets.h"
#include "stats.h"

namespace {

using namespace csm::bench;

int Fail(const std::string& what) {
  std::fprintf(stderr, "arrow_wire_bench: %s\n", what.c_str());
  return 1;
}

template <typename T>
T Check(arrow::Result<T> r, const char* what) {
  if (!r.ok()) throw std::runtime_error(std::string(what) + ": " + r.status().ToString());
  return std::move(*r);
}
void Check(const arrow::Status& s, const char* what) {
  if (!s.ok()) throw std::runtime_error(std::string(what) + ": " + s.ToString());
}

// ---- the table ----------------------------------------------------------------------

// id int64, price double, qty int32, sym utf8 (8 bytes): 32 bytes a row, in batches
// of 1M rows, as a producer would have it in memory.
std::shared_ptr<arrow::Table> MakeTable(int64_t mib) {
  const int64_t rows = (mib << 20) / 32;
  auto schema = arrow::schema({arrow::field("id", arrow::int64()), arrow::field("price", arrow::float64()),
                               arrow::field("qty", arrow::int32()), arrow::field("sym", arrow::utf8())});
  std::vector<std::shared_ptr<arrow::RecordBatch>> batches;
  char sym[9];
  for (int64_t start = 0; start < rows; start += 1 << 20) {
    const int64_t n = std::min<int64_t>(1 << 20, rows - start);
    arrow::Int64Builder id;
    arrow::DoubleBuilder price;
    arrow::Int32Builder qty;
    arrow::StringBuilder syms;
    Check(id.Reserve(n), "reserve");
    Check(price.Reserve(n), "reserve");
    Check(qty.Reserve(n), "reserve");
    Check(syms.Reserve(n), "reserve");
    Check(syms.ReserveData(n * 8), "reserve");
    for (int64_t i = start; i < start + n; ++i) {
      id.UnsafeAppend(i);
      price.UnsafeAppend(static_cast<double>(i % 10007) * 0.25);
      qty.UnsafeAppend(static_cast<int32_t>(i % 1000));
      std::snprintf(sym, sizeof(sym), "S%07lld", static_cast<long long>(i % 10000000));
      syms.UnsafeAppend(std::string_view(sym, 8));
    }
    batches.push_back(arrow::RecordBatch::Make(
        schema, n, {Check(id.Finish(), "id"), Check(price.Finish(), "price"), Check(qty.Finish(), "qty"),
                    Check(syms.Finish(), "sym")}));
  }
  return Check(arrow::Table::FromRecordBatches(schema, batches), "table");
}

// The "used" measure: one pass over every value of every column.
uint64_t Traverse(const arrow::Table& t) {
  uint64_t h = 0;
  for (const auto& chunk : t.column(0)->chunks()) {
    const auto& a = static_cast<const arrow::Int64Array&>(*chunk);
    for (int64_t i = 0; i < a.length(); ++i) h += static_cast<uint64_t>(a.Value(i));
  }
  for (const auto& chunk : t.column(1)->chunks()) {
    const auto& a = static_cast<const arrow::DoubleArray&>(*chunk);
    double s = 0;
    for (int64_t i = 0; i < a.length(); ++i) s += a.Value(i);
    h += static_cast<uint64_t>(s);
  }
  for (const auto& chunk : t.column(2)->chunks()) {
    const auto& a = static_cast<const arrow::Int32Array&>(*chunk);
    for (int64_t i = 0; i < a.length(); ++i) h += static_cast<uint64_t>(a.Value(i));
  }
  for (const auto& chunk : t.column(3)->chunks()) {
    const auto& a = static_cast<const arrow::StringArray&>(*chunk);
    for (int64_t i = 0; i < a.length(); ++i) h += static_cast<uint8_t>(a.GetView(i).back());
  }
  return h;
}

// ---- sockets --------------------------------------------------------------------------

// The socket helpers throw; Arrow's streams return a Status.
template <typename F>
arrow::Status AsArrowStatus(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return arrow::Status::IOError(e.what());
  }
  return arrow::Status::OK();
}

// Arrow streams over a connected socket: the IPC writer writes straight to it, the
// reader reads each message body into a fresh buffer.
class SocketOutput : public arrow::io::OutputStream {
 public:
  explicit SocketOutput(int fd) : fd_(fd) {}
  arrow::Status Write(const void* data, int64_t n) override {
    ARROW_RETURN_NOT_OK(AsArrowStatus([&] { SendAll(fd_, data, static_cast<size_t>(n)); }));
    position_ += n;
    return arrow::Status::OK();
  }
  arrow::Status Close() override { return arrow::Status::OK(); }
  bool closed() const override { return false; }
  arrow::Result<int64_t> Tell() const override { return position_; }

 private:
  int fd_;
  int64_t position_ = 0;
};

class SocketInput : public arrow::io::InputStream {
 public:
  explicit SocketInput(int fd) : fd_(fd) {}
  arrow::Result<int64_t> Read(int64_t n, void* out) override {
    ARROW_RETURN_NOT_OK(AsArrowStatus([&] { RecvAll(fd_, out, static_cast<size_t>(n)); }));
    position_ += n;
    return n;
  }
  arrow::Result<std::shared_ptr<arrow::Buffer>> Read(int64_t n) override {
    ARROW_ASSIGN_OR_RAISE(auto buffer, arrow::AllocateResizableBuffer(n));
    ARROW_ASSIGN_OR_RAISE(int64_t got, Read(n, buffer->mutable_data()));
    ARROW_RETURN_NOT_OK(buffer->Resize(got));
    return std::shared_ptr<arrow::Buffer>(std::move(buffer));
  }
  arrow::Status Close() override { return arrow::Status::OK(); }
  bool closed() const override { return false; }
  arrow::Result<int64_t> Tell() const override { return position_; }

 private:
  int fd_;
  int64_t position_ = 0;
};

// ---- serve ------------------------------------------------------------------------------

// Requests on the control connection: one op byte and a u64; every reply starts with a u64.
enum Op : uint8_t { kPut = 'P', kDrop = 'D', kIpc = 'I', kRaw = 'R' };

std::string RoundKey(uint64_t round) { return "arrow-wire/" + std::to_string(round); }

class TableServer : public arrow::flight::FlightServerBase {
 public:
  explicit TableServer(std::shared_ptr<arrow::Table> table) : table_(std::move(table)) {}
  arrow::Status DoGet(const arrow::flight::ServerCallContext&, const arrow::flight::Ticket&,
                      std::unique_ptr<arrow::flight::FlightDataStream>* stream) override {
    *stream = std::make_unique<arrow::flight::RecordBatchStream>(std::make_shared<arrow::TableBatchReader>(table_));
    return arrow::Status::OK();
  }

 private:
  std::shared_ptr<arrow::Table> table_;
};

int Serve(int port, int flight_port, int64_t mib) {
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  auto table = MakeTable(mib);
  std::unique_ptr<TableServer> flight;
  if (flight_port > 0) {
    flight = std::make_unique<TableServer>(table);
    auto location = Check(arrow::flight::Location::ForGrpcTcp("0.0.0.0", flight_port), "flight location");
    Check(flight->Init(arrow::flight::FlightServerOptions(location)), "flight server");
  }
  int ls = Listen(port);
  std::printf("serving\n");
  std::fflush(stdout);
  std::string raw(64 << 20, '\0');
  for (;;) {  // one measuring process after another
    int fd = ::accept(ls, nullptr, nullptr);
    if (fd < 0) return Fail("accept");
    Tune(fd);
    try {
      for (;;) {
        uint8_t op = 0;
        uint64_t arg = 0;
        RecvAll(fd, &op, 1);
        RecvAll(fd, &arg, sizeof(arg));
        uint64_t reply = 0;
        if (op == kPut) {  // the table built in the heap of node A, as a producer would
          auto put = csm::PutTable(**client, RoundKey(arg), *table);
          if (!put.ok()) Fail(put.status().ToString());
          reply = put.ok() ? 0 : 1;
        } else if (op == kDrop) {
          reply = (*client)->Delete(RoundKey(arg)).ok() ? 0 : 1;
        } else if (op == kRaw) {  // the link's limit: `arg` bytes in 1 MiB writes
          SendAll(fd, &arg, sizeof(arg));
          for (uint64_t left = arg; left > 0;) {
            uint64_t k = std::min<uint64_t>(left, raw.size());
            SendAll(fd, raw.data(), k);
            left -= k;
          }
          continue;
        } else if (op == kIpc) {
          SendAll(fd, &reply, sizeof(reply));
          auto out = std::make_shared<SocketOutput>(fd);
          auto writer = Check(arrow::ipc::MakeStreamWriter(out, table->schema()), "ipc writer");
          Check(writer->WriteTable(*table), "ipc write");
          Check(writer->Close(), "ipc close");
          continue;
        } else {
          throw std::runtime_error("unknown request");
        }
        SendAll(fd, &reply, sizeof(reply));
      }
    } catch (const std::exception&) {
      ::close(fd);
    }
  }
}

// ---- build: where the table is built, and reading it where it lies ---------------------

// Sums every `stride`-th value of the id column (stride 1: all of them, sequentially);
// returns bytes of the column passed over per second, and adds the sum to *sum.
double ScanIds(const arrow::Table& t, int64_t stride, uint64_t* sum) {
  auto t0 = Clock::now();
  uint64_t h = 0;
  int64_t bytes = 0;
  for (const auto& chunk : t.column(0)->chunks()) {
    const int64_t* v = static_cast<const arrow::Int64Array&>(*chunk).raw_values();
    const int64_t n = chunk->length();
    for (int64_t i = 0; i < n; i += stride) h += static_cast<uint64_t>(v[i]);
    bytes += n * 8;
  }
  *sum += h;
  return static_cast<double>(bytes) / Seconds(t0, Clock::now());
}

// In a process of node B (CSM_SOCKET; with CSM_HOME_NODE=A, in node A's memory): per
// round, puts the table into the heap (timed), reads its id column sequentially and at
// strides, deletes it, waits `pause_ms`. Prints medians.
int Build(int64_t mib, int rounds, int pause_ms) {
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  auto table = MakeTable(mib);
  const int64_t strides[] = {1, 8, 16, 64};
  std::vector<double> put;
  std::vector<std::vector<double>> scans(std::size(strides));
  uint64_t sum = 0;
  for (int r = 0; r < rounds; ++r) {
    const std::string key = "build-" + std::to_string(::getpid()) + "-" + std::to_string(r);
    auto t0 = Clock::now();
    auto done = csm::PutTable(**client, key, *table);
    if (!done.ok()) return Fail(done.status().ToString());
    put.push_back(Seconds(t0, Clock::now()));
    auto got = csm::GetTable(**client, key);
    if (!got.ok()) return Fail(got.status().ToString());
    for (size_t s = 0; s < std::size(strides); ++s) scans[s].push_back(ScanIds(**got, strides[s], &sum));
    got->reset();
    if (!(*client)->Delete(key).ok()) return Fail("delete " + key);
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  }
  std::printf("put %.9f", Summarize(put).p50);
  for (size_t s = 0; s < std::size(strides); ++s) {
    std::printf(" stride%lld %.3f", static_cast<long long>(strides[s]), Summarize(scans[s]).p50 / 1e9);
  }
  std::printf(" | %llu\n", static_cast<unsigned long long>(sum));
  return 0;
}

// ---- measure --------------------------------------------------------------------------

struct Row {
  std::vector<double> usable, used;
  uint64_t bytes = 0;
};

void Ask(int fd, Op op, uint64_t arg) {
  SendAll(fd, &op, 1);
  SendAll(fd, &arg, sizeof(arg));
  uint64_t reply = 1;
  RecvAll(fd, &reply, sizeof(reply));
  if (reply != 0) throw std::runtime_error("serve could not do request " + std::string(1, static_cast<char>(op)));
}

// The sum of column 0 (int64) alone: a query that reads one column of four.
uint64_t SumFirstColumn(const arrow::Table& t) {
  uint64_t h = 0;
  for (const auto& chunk : t.column(0)->chunks()) {
    const auto& a = static_cast<const arrow::Int64Array&>(*chunk);
    for (int64_t i = 0; i < a.length(); ++i) h += static_cast<uint64_t>(a.Value(i));
  }
  return h;
}

// One process on node B: per round, the table is put on node A, then Get here fetches
// it into the same addresses. Prints "usable... | used... | bytes checksum".
// `one_column`: "used" asks for column 0 (csm::Prefetch) and sums it only; `fetch`: how
// GetTable brings it (docs/lazy.md).
int CsmGet(const std::string& peer, int port, int rounds, bool one_column, csm::Fetch fetch) {
  auto client = csm::Client::Connect();
  if (!client.ok()) return Fail(client.status().ToString());
  int fd = Dial(peer, port);
  Row row;
  uint64_t sum = 0;
  for (int r = 0; r < rounds; ++r) {
    const uint64_t round = static_cast<uint64_t>(::getpid()) * 1000 + static_cast<uint64_t>(r);
    Ask(fd, kPut, round);
    auto t0 = Clock::now();
    auto table = csm::GetTable(**client, RoundKey(round), csm::GetOptions{std::chrono::seconds(60), fetch});
    if (!table.ok()) return Fail(table.status().ToString());
    auto t1 = Clock::now();
    if (one_column) {
      // The query names its column: it comes at once, not block by block as the scan
      // reaches it (at once too when the table is here whole).
      csm::Status s = csm::Prefetch(**client, *(*table)->column(0));
      if (!s.ok()) return Fail(s.ToString());
    }
    sum += one_column ? SumFirstColumn(**table) : Traverse(**table);
    row.usable.push_back(Seconds(t0, t1));
    row.used.push_back(Seconds(t0, Clock::now()));
    auto parts = csm::TableParts(**client, RoundKey(round));
    if (parts.ok()) row.bytes = parts->front().bytes;
    table->reset();
    Ask(fd, kDrop, round);
    std::this_thread::sleep_for(std::chrono::seconds(2));  // B drops its copy at its next heartbeat
  }
  for (double u : row.usable) std::printf("%.9f ", u);
  std::printf("|");
  for (double u : row.used) std::printf(" %.9f", u);
  std::printf(" | %llu %llu\n", static_cast<unsigned long long>(row.bytes), static_cast<unsigned long long>(sum));
  return 0;
}

Row RunCsmGet(const std::string& self, const std::string& socket, const std::string& peer, int port, int rounds,
              uint64_t* sum, bool one_column, const std::string& fetch) {
  std::string command = "CSM_SOCKET='" + socket + "' '" + self + "' csm-get --peer " + peer + " --port " +
                        std::to_string(port) + " --rounds " + std::to_string(rounds) + " --fetch " + fetch +
                        (one_column ? " --one-column" : "");
  FILE* child = ::popen(command.c_str(), "r");
  if (child == nullptr) throw std::runtime_error("cannot run " + command);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), child) != nullptr) out += buf;
  if (::pclose(child) != 0) throw std::runtime_error("csm-get failed on " + socket + ": " + out);
  Row row;
  std::istringstream in(out);
  std::string token;
  std::vector<double>* into = &row.usable;
  while (in >> token) {
    if (token == "|") {
      if (into == &row.used) break;
      into = &row.used;
      continue;
    }
    into->push_back(std::stod(token));
  }
  unsigned long long bytes = 0, checksum = 0;
  in >> bytes >> checksum;
  row.bytes = bytes;
  *sum += checksum;
  return row;
}

// Prints the rows: medians, spread, ratios against the first.
void PrintRows(const std::vector<std::pair<std::string, Row>>& rows) {
  std::printf("%-26s %12s %11s %23s %11s %8s %8s\n", "path", "wire bytes", "usable p50", "usable min-max",
              "used p50", "usable", "used");
  std::printf("%-26s %12s %11s %23s %11s %8s %8s\n", "", "", "", "", "", "vs csm", "vs csm");
  for (const auto& [name, row] : rows) {
    auto u = Summarize(row.usable), d = Summarize(row.used);
    auto bu = Summarize(rows[0].second.usable), bd = Summarize(rows[0].second.used);
    std::printf("%-26s %12llu %11s %23s %11s %7.2fx %7.2fx\n", name.c_str(),
                static_cast<unsigned long long>(row.bytes), Human(u.p50).c_str(),
                (Human(u.min) + " - " + Human(u.max)).c_str(), Human(d.p50).c_str(), u.p50 / bu.p50,
                d.p50 / bd.p50);
  }
}

// `one_column`: csm only, "used" = GetTable + the sum of one int64 column of four; a
// label ending in "lazy" gets the table on demand.
int Measure(const std::string& self, const std::vector<std::pair<std::string, std::string>>& csms,
            const std::string& peer, int port, int flight_port, int rounds, bool one_column) {
  if (csms.empty()) return Fail("name at least one csm cluster with --csm LABEL=SOCKET:PORT");
  uint64_t sum = 0;
  std::vector<std::pair<std::string, Row>> rows;
  for (const auto& [label, target] : csms) {
    size_t colon = target.rfind(':');
    const std::string fetch = label.ends_with("lazy") ? "on-demand" : "node";
    rows.emplace_back("csm (" + label + ")", RunCsmGet(self, target.substr(0, colon), peer,
                                                       std::stoi(target.substr(colon + 1)), rounds, &sum,
                                                       one_column, fetch));
  }
  if (one_column) {
    PrintRows(rows);
    std::printf("(used: GetTable and the sum of its int64 column, one of four; %d rounds)\n", rounds);
    std::fprintf(stderr, "(checksum %llu)\n", static_cast<unsigned long long>(sum));
    return 0;
  }
  const uint64_t table_bytes = rows[0].second.bytes;

  auto location = Check(arrow::flight::Location::ForGrpcTcp(peer, flight_port), "flight location");
  auto flight = Check(arrow::flight::FlightClient::Connect(location), "flight connect");
  Row f;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    auto stream = Check(flight->DoGet(arrow::flight::Ticket{"table"}), "DoGet");
    auto table = Check(stream->ToTable(), "DoGet stream");
    auto t1 = Clock::now();
    sum += Traverse(*table);
    f.usable.push_back(Seconds(t0, t1));
    f.used.push_back(Seconds(t0, Clock::now()));
  }
  rows.emplace_back("flight DoGet", f);

  int fd = Dial(peer, port);
  Row ipc, raw;
  std::string warm;  // raw-link receive buffer, reused so only the link counts
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    Ask(fd, kIpc, 0);
    auto in = std::make_shared<SocketInput>(fd);
    auto reader = Check(arrow::ipc::RecordBatchStreamReader::Open(in), "ipc reader");
    auto table = Check(reader->ToTable(), "ipc stream");
    auto t1 = Clock::now();
    sum += Traverse(*table);
    ipc.usable.push_back(Seconds(t0, t1));
    ipc.used.push_back(Seconds(t0, Clock::now()));
    ipc.bytes = static_cast<uint64_t>(*in->Tell());

    t0 = Clock::now();
    Op op = kRaw;
    SendAll(fd, &op, 1);
    SendAll(fd, &table_bytes, sizeof(table_bytes));
    uint64_t n = 0;
    RecvAll(fd, &n, sizeof(n));
    if (warm.size() < n) warm.assign(n, 1);
    RecvAll(fd, warm.data(), n);
    double t = Seconds(t0, Clock::now());
    raw.usable.push_back(t);
    raw.used.push_back(t);
    raw.bytes = n;
  }
  rows.emplace_back("ipc over tcp", ipc);
  rows.emplace_back("raw link", raw);
  PrintRows(rows);
  const double link = Summarize(raw.usable).p50;
  for (size_t i = 0; i < csms.size(); ++i) {
    std::printf("%s: %.0f%% of the raw link (usable)\n", rows[i].first.c_str(),
                100.0 * link / Summarize(rows[i].second.usable).p50);
  }
  std::printf("(ratios: the path's time / csm (%s)'s; > 1 means csm is faster; %d rounds)\n",
              csms[0].first.c_str(), rounds);
  std::fprintf(stderr, "(checksum %llu)\n", static_cast<unsigned long long>(sum));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"arrow_wire_bench: a table from another node: csm vs Flight vs IPC over TCP vs the link"};
  app.require_subcommand(1);
  int rounds = 5, port = 7600, flight_port = 0;
  int64_t mib = 1024;
  std::string peer;
  auto* serve = app.add_subcommand("serve", "build the table; put, drop, stream or send it on request");
  auto* measure = app.add_subcommand("measure", "time every path from the other node");
  auto* csm_get = app.add_subcommand("csm-get", "(for measure) fetch the table through csm");
  auto* build = app.add_subcommand("build", "put the table into the heap (CSM_HOME_NODE: another node's memory) "
                                            "and read it where it lies; prints medians");
  for (auto* s : {serve, build}) {
    s->add_option("--mib", mib, "table size in MiB")->check(CLI::Range(int64_t{1}, int64_t{16384}));
  }
  build->add_option("--rounds", rounds)->check(CLI::Range(1, 1000));
  int pause_ms = 0;
  build->add_option("--pause-ms", pause_ms, "between rounds (the memory a round freed settles)")
      ->check(CLI::Range(0, 60000));
  for (auto* s : {serve, csm_get, measure}) s->add_option("--port", port, "serve's control port");
  for (auto* s : {serve, measure}) s->add_option("--flight-port", flight_port, "serve's Flight port");
  for (auto* s : {csm_get, measure}) {
    s->add_option("--rounds", rounds)->check(CLI::Range(1, 1000));
    s->add_option("--peer", peer, "serve's IPv4 address")->required();
  }
  bool one_column = false;
  std::string fetch = "node";
  for (auto* s : {csm_get, measure}) {
    s->add_flag("--one-column", one_column, "csm only: GetTable and the sum of one int64 column of four");
  }
  csm_get->add_option("--fetch", fetch, "node (its --fetch) or on-demand")->check(CLI::IsMember({"node", "on-demand"}));
  std::vector<std::string> csm_flags;
  measure->add_option("--csm", csm_flags,
                      "LABEL=SOCKET:PORT: a cluster's node B and the control port of the serve attached "
                      "to its node A (repeat; the first is the baseline)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (serve->parsed()) return Serve(port, flight_port, mib);
    if (csm_get->parsed()) {
      return CsmGet(peer, port, rounds, one_column, fetch == "on-demand" ? csm::Fetch::kOnDemand : csm::Fetch::kNodeDefault);
    }
    if (build->parsed()) return Build(mib, rounds, pause_ms);
    std::vector<std::pair<std::string, std::string>> csms;
    for (const auto& f : csm_flags) {
      size_t eq = f.find('=');
      if (eq == std::string::npos || f.rfind(':') < eq) return Fail("--csm takes LABEL=SOCKET:PORT, not " + f);
      csms.emplace_back(f.substr(0, eq), f.substr(eq + 1));
    }
    return Measure(std::filesystem::read_symlink("/proc/self/exe").string(), csms, peer, port, flight_port,
                   rounds, one_column);
  } catch (const std::exception& e) {
    return Fail(e.what());
  }
}
