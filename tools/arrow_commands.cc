// See arrow_commands.h and docs/arrow.md.
#include "arrow_commands.h"

#include <arrow/csv/api.h>
#include <arrow/io/api.h>
#include <arrow/ipc/api.h>
#include <parquet/arrow/reader.h>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "csm/arrow.h"
#include "progress.h"

namespace csm::tools {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "csm: %s\n", s.ToString().c_str());
  return 1;
}
int Fail(const arrow::Status& s, const std::string& what) {
  std::fprintf(stderr, "csm: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

// Standard output as an Arrow stream that counts its own position: the IPC file writer
// asks Tell() for its footer's offsets, and stdout may be a pipe or /dev/null, where
// lseek fails or says 0 (arrow::io::FileOutputStream asks lseek).
class StdoutStream : public arrow::io::OutputStream {
 public:
  arrow::Status Write(const void* data, int64_t nbytes) override {
    const char* p = static_cast<const char*>(data);
    while (nbytes > 0) {
      ssize_t n = ::write(STDOUT_FILENO, p, static_cast<size_t>(nbytes));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return arrow::Status::IOError("writing to stdout: ", std::strerror(errno));
      p += n;
      nbytes -= n;
      position_ += n;
    }
    return arrow::Status::OK();
  }
  arrow::Result<int64_t> Tell() const override { return position_; }
  arrow::Status Close() override {
    closed_ = true;
    return arrow::Status::OK();
  }
  bool closed() const override { return closed_; }

 private:
  int64_t position_ = 0;
  bool closed_ = false;
};

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A file that counts the bytes read from it (by any of the reader's threads), for the
// progress line; everything else is the file's own.
class CountingFile : public arrow::io::RandomAccessFile {
 public:
  CountingFile(std::shared_ptr<arrow::io::RandomAccessFile> file, std::atomic<uint64_t>* read)
      : file_(std::move(file)), read_(read) {}
  arrow::Status Close() override { return file_->Close(); }
  bool closed() const override { return file_->closed(); }
  arrow::Result<int64_t> Tell() const override { return file_->Tell(); }
  arrow::Status Seek(int64_t position) override { return file_->Seek(position); }
  arrow::Result<int64_t> GetSize() override { return file_->GetSize(); }
  arrow::Result<int64_t> Read(int64_t nbytes, void* out) override { return Count(file_->Read(nbytes, out)); }
  arrow::Result<std::shared_ptr<arrow::Buffer>> Read(int64_t nbytes) override { return Count(file_->Read(nbytes)); }
  arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes, void* out) override {
    return Count(file_->ReadAt(position, nbytes, out));
  }
  arrow::Result<std::shared_ptr<arrow::Buffer>> ReadAt(int64_t position, int64_t nbytes) override {
    return Count(file_->ReadAt(position, nbytes));
  }

 private:
  arrow::Result<int64_t> Count(arrow::Result<int64_t> n) {
    if (n.ok()) read_->fetch_add(static_cast<uint64_t>(*n), std::memory_order_relaxed);
    return n;
  }
  arrow::Result<std::shared_ptr<arrow::Buffer>> Count(arrow::Result<std::shared_ptr<arrow::Buffer>> b) {
    if (b.ok()) read_->fetch_add(static_cast<uint64_t>((*b)->size()), std::memory_order_relaxed);
    return b;
  }

  std::shared_ptr<arrow::io::RandomAccessFile> file_;
  std::atomic<uint64_t>* read_;
};

// Reads `path` with every allocation in the heap pool, so the table's buffers are
// already in the object (nothing is copied at Put); counts the bytes read in `read`.
arrow::Result<std::shared_ptr<arrow::Table>> ReadFile(const std::string& path, arrow::MemoryPool* pool,
                                                      std::atomic<uint64_t>* read) {
  ARROW_ASSIGN_OR_RAISE(auto readable, arrow::io::ReadableFile::Open(path, pool));
  auto file = std::make_shared<CountingFile>(std::move(readable), read);
  if (EndsWith(path, ".parquet")) {
    ARROW_ASSIGN_OR_RAISE(auto reader, parquet::arrow::OpenFile(file, pool));
    return reader->ReadTable();
  }
  if (EndsWith(path, ".csv")) {
    ARROW_ASSIGN_OR_RAISE(auto reader, arrow::csv::TableReader::Make(
                                           arrow::io::IOContext(pool), file, arrow::csv::ReadOptions::Defaults(),
                                           arrow::csv::ParseOptions::Defaults(),
                                           arrow::csv::ConvertOptions::Defaults()));
    return reader->Read();
  }
  if (EndsWith(path, ".arrow") || EndsWith(path, ".feather") || EndsWith(path, ".ipc")) {
    auto options = arrow::ipc::IpcReadOptions::Defaults();
    options.memory_pool = pool;
    auto reader = arrow::ipc::RecordBatchFileReader::Open(file, options);
    if (reader.ok()) return (*reader)->ToTable();
    // Not the file format: try the stream format.
    ARROW_RETURN_NOT_OK(file->Seek(0));
    ARROW_ASSIGN_OR_RAISE(auto stream, arrow::ipc::RecordBatchStreamReader::Open(file, options));
    return stream->ToTable();
  }
  return arrow::Status::Invalid("unknown file kind (use .parquet, .csv or .arrow): ", path);
}

int Put(const ArrowFlags& f, Client& client) {
  auto builder = client.NewBuilder();
  if (!builder.ok()) return Fail(builder.status());
  // Never deleted (the process ends after this command): Arrow's CSV reader drops some
  // of its intermediate buffers from its threads after Read() returns, calling the pool.
  static HeapMemoryPool* pool = nullptr;
  pool = new HeapMemoryPool(&*builder);
  std::atomic<uint64_t> read{0};
  std::error_code size_error;
  const uint64_t size = std::filesystem::file_size(f.file, size_error);
  ProgressLine progress("put " + f.key, [&]() -> std::optional<ProgressLine::Sample> {
    return ProgressLine::Sample{std::min(read.load(std::memory_order_relaxed), size), size};
  });
  auto table = ReadFile(f.file, pool, &read);
  progress.Finish(table.ok());
  if (!table.ok()) return Fail(table.status(), "reading " + f.file);
  PutStats put;
  std::string committed = f.key;
  if (f.append) {
    auto appended = AppendTable(client, *builder, f.key, **table);
    if (!appended.ok()) return Fail(appended.status());
    put = *appended;
    committed = appended->part_key;
  } else {
    auto whole = PutTable(*builder, f.key, **table);
    if (!whole.ok()) return Fail(whole.status());
    put = *whole;
  }
  std::printf("put '%s': %lld rows, %d columns; object %s (read straight into the heap: %s copied); "
              "descriptor %llu bytes\n",
              committed.c_str(), static_cast<long long>((*table)->num_rows()), (*table)->num_columns(),
              FormatSize(builder->bytes_used()).c_str(), FormatSize(put.bytes_copied).c_str(),
              static_cast<unsigned long long>(put.descriptor_bytes));
  return 0;
}

// The progress of a copy of `key` arriving from another node, while `csm get` waits for
// it (nothing while it is not arriving: a local object, or a lookup).
ProgressLine::Poll TransferOf(Client& client, const std::string& key) {
  return [&client, key]() -> std::optional<ProgressLine::Sample> {
    auto info = client.Info();
    if (!info.ok()) return std::nullopt;
    for (const auto& t : info->transfers) {
      if (t.key == key) return ProgressLine::Sample{t.received, t.bytes};
    }
    return std::nullopt;
  };
}

int Get(const ArrowFlags& f, Client& client) {
  ProgressLine progress("get " + f.key, TransferOf(client, f.key));
  auto table = GetTable(client, f.key);
  progress.Finish(table.ok());
  if (!table.ok()) return Fail(table.status());
  auto parts = TableParts(client, f.key);
  if (!parts.ok()) return Fail(parts.status());
  const auto& t = **table;
  int64_t chunks = t.num_columns() > 0 ? t.column(0)->num_chunks() : 0;
  std::printf("key:     %s\nrows:    %lld\ncolumns: %d (%lld chunks each)\nparts:   %zu\n",
              f.key.c_str(), static_cast<long long>(t.num_rows()), t.num_columns(),
              static_cast<long long>(chunks), parts->size());
  for (const auto& p : *parts) {
    std::printf("  %-24s %10lld rows  %10s  on node %u\n", p.key.c_str(), static_cast<long long>(p.num_rows),
                FormatSize(p.bytes).c_str(), p.owner_node);
  }
  std::printf("schema:\n%s\n", t.schema()->ToString().c_str());
  std::printf("first %lld rows:\n%s\n", static_cast<long long>(std::min(f.rows, t.num_rows())),
              t.Slice(0, f.rows)->ToString().c_str());
  return 0;
}

int Cat(const ArrowFlags& f, Client& client) {
  ProgressLine progress("get " + f.key, TransferOf(client, f.key));
  auto table = GetTable(client, f.key);
  progress.Finish(table.ok());
  if (!table.ok()) return Fail(table.status());
  auto out = std::make_shared<StdoutStream>();
  arrow::Status s;
  if (f.format == "csv") {
    s = arrow::csv::WriteCSV(**table, arrow::csv::WriteOptions::Defaults(), out.get());
  } else {
    auto writer = arrow::ipc::MakeFileWriter(out, (*table)->schema());
    s = writer.status();
    if (s.ok()) s = (*writer)->WriteTable(**table);
    if (s.ok()) s = (*writer)->Close();
  }
  return s.ok() ? 0 : Fail(s, "writing '" + f.key + "'");
}

}  // namespace

ArrowCommands AddArrowCommands(CLI::App& app, ArrowFlags* f) {
  ArrowCommands c;
  c.put = app.add_subcommand("put", "read a .parquet, .csv or .arrow file straight into the heap as a table");
  c.put->add_option("FILE", f->file)->required()->check(CLI::ExistingFile);
  c.put->add_option("--key", f->key, "key to commit the table under")->required();
  c.put->add_flag("--append", f->append,
                  "add the file as the next part of the table under KEY (from any node; its schema must match)");
  c.get = app.add_subcommand("get", "show a table: schema, rows, size, where it lives, first rows");
  c.get->add_option("KEY", f->key)->required();
  c.get->add_option("--rows", f->rows, "rows to show")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  c.cat = app.add_subcommand("cat", "write a table to stdout");
  c.cat->add_option("KEY", f->key)->required();
  c.cat->add_option("--format", f->format, "csv or arrow (IPC file)")->check(CLI::IsMember({"csv", "arrow"}));
  return c;
}

std::optional<int> RunArrowCommand(const ArrowCommands& c, const ArrowFlags& f, Client& client) {
  if (c.put->parsed()) return Put(f, client);
  if (c.get->parsed()) return Get(f, client);
  if (c.cat->parsed()) return Cat(f, client);
  return std::nullopt;
}

}  // namespace csm::tools
