// JournalWriter: group commit through io_uring, retries, failures, recovery
// on open (issue 4). Real files under a unique /tmp directory; faults come
// through the IoSeam.
#include "journal/writer.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "temp_dir.hpp"

namespace perfq::agent {
namespace {

namespace fs = std::filesystem;

class TempDir : public test::TempDir {
 public:
  TempDir() : test::TempDir("jw") {}
};
using Bytes = std::vector<std::byte>;

Bytes read_all(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  EXPECT_FALSE(ec);
  Bytes out(ec ? 0 : static_cast<std::size_t>(size));
  std::FILE* f = std::fopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr);
  if (f == nullptr) return {};
  out.resize(std::fread(out.data(), 1, out.size(), f));
  std::fclose(f);
  return out;
}

void write_all(const std::string& path, std::span<const std::byte> bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
}

// A distinct body per index; "SECRET" marks bytes that must never reach a
// message. Sizes vary so records straddle each other differently.
Bytes body_of(int i) {
  std::string s = "SECRET-payload-" + std::to_string(i) + "-" +
                  std::string(static_cast<std::size_t>(i % 37), 'x');
  Bytes out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

void append_ok(JournalWriter& w, int i, Bytes* expected_file) {
  const Bytes body = body_of(i);
  auto t = w.append(RecordType::kDeadLetter, body);
  ASSERT_TRUE(t.ok());
  if (expected_file != nullptr) {
    const Bytes rec = encode_record(RecordType::kDeadLetter, body);
    expected_file->insert(expected_file->end(), rec.begin(), rec.end());
  }
}

// Scans the file and checks it holds exactly bodies first..first+n-1, clean.
void expect_records(const std::string& path, int first, int n) {
  const Bytes file = read_all(path);
  const ScanResult s = scan(file);
  EXPECT_TRUE(s.corrupt.empty());
  EXPECT_FALSE(s.torn_tail);
  EXPECT_EQ(s.valid_end, file.size());
  ASSERT_EQ(s.records.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const Bytes want = body_of(first + i);
    ASSERT_EQ(s.records[static_cast<std::size_t>(i)].body.size(), want.size()) << i;
    EXPECT_EQ(
        std::memcmp(s.records[static_cast<std::size_t>(i)].body.data(), want.data(), want.size()),
        0)
        << i;
  }
}

// Rewrites results from a per-op script, then passes the rest through.
class ScriptedSeam : public IoSeam {
 public:
  using Step = std::function<int(int)>;
  std::deque<Step> writes;
  std::deque<Step> fsyncs;
  int write_calls = 0;
  int fsync_calls = 0;

  int on_result(Op op, int res) override {
    std::deque<Step>& script = op == Op::kWrite ? writes : fsyncs;
    ++(op == Op::kWrite ? write_calls : fsync_calls);
    if (script.empty()) return res;
    Step step = std::move(script.front());
    script.pop_front();
    return step(res);
  }
};

std::unique_ptr<JournalWriter> open_ok(const std::string& path, IoSeam* seam = nullptr) {
  auto w = JournalWriter::open(path, seam);
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().message);
  return w.ok() ? std::move(w).value() : nullptr;
}

TEST(JournalWriter, AppendedRecordsAreDurableInOrderAfterOneGroupCommit) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  ScriptedSeam seam;
  auto w = open_ok(path, &seam);
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->recovery().created);
  constexpr int kN = 100;
  uint64_t last = 0;
  for (int i = 0; i < kN; ++i) {
    auto t = w->append(RecordType::kDeadLetter, body_of(i));
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t.value(), last + 1);
    last = t.value();
  }
  EXPECT_EQ(w->durable_ticket(), 0u);
  auto d = w->flush();
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d.value(), last);
  EXPECT_EQ(w->durable_ticket(), last);
  EXPECT_EQ(w->pending_records(), 0u);
  EXPECT_EQ(seam.write_calls, 1);  // group commit: one write, one fdatasync
  EXPECT_EQ(seam.fsync_calls, 1);
  w.reset();
  expect_records(path, 0, kN);

  auto again = open_ok(path);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->recovery().created);
  EXPECT_EQ(again->recovery().records, static_cast<uint64_t>(kN));
  EXPECT_EQ(again->recovery().truncated_bytes, 0u);
  EXPECT_TRUE(again->recovery().corrupt.empty());
}

TEST(JournalWriter, InterleavedBatchesConcatenateInTheFile) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  auto w = open_ok(path);
  ASSERT_TRUE(w);
  Bytes expected;
  int next = 0;
  for (int batch = 0; batch < 30; ++batch) {
    for (int k = 0; k < 1 + batch % 7; ++k) append_ok(*w, next++, &expected);
    auto d = (batch % 5 == 4) ? w->flush_each() : w->flush();
    ASSERT_TRUE(d.ok()) << d.error().message;
    EXPECT_EQ(d.value(), static_cast<uint64_t>(next));
    EXPECT_EQ(w->durable_end(), expected.size());
  }
  auto empty = w->flush();  // nothing queued: no I/O, same ticket
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty.value(), static_cast<uint64_t>(next));
  w.reset();
  EXPECT_EQ(read_all(path), expected);
  expect_records(path, 0, next);
}

TEST(JournalWriter, FlushEachSyncsOncePerRecord) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  ScriptedSeam seam;
  auto w = open_ok(path, &seam);
  ASSERT_TRUE(w);
  for (int i = 0; i < 5; ++i) append_ok(*w, i, nullptr);
  auto d = w->flush_each();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value(), 5u);
  EXPECT_EQ(seam.write_calls, 5);
  EXPECT_EQ(seam.fsync_calls, 5);
  w.reset();
  expect_records(path, 0, 5);
}

TEST(JournalWriter, ShortWriteIsResubmittedAndTheFileIsWhole) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  ScriptedSeam seam;
  seam.writes.push_back([](int res) { return res > 1 ? res / 3 : res; });
  auto w = open_ok(path, &seam);
  ASSERT_TRUE(w);
  Bytes expected;
  for (int i = 0; i < 10; ++i) append_ok(*w, i, &expected);
  auto d = w->flush();
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d.value(), 10u);
  EXPECT_EQ(seam.write_calls, 2);  // the short one and the rest
  EXPECT_EQ(w->state().health, JournalHealth::kHealthy);
  w.reset();
  EXPECT_EQ(read_all(path), expected);
  expect_records(path, 0, 10);
}

// A completion never reports more bytes than its write asked for; one that
// does is a broken contract (kernel or seam), never clamped and trusted.
TEST(JournalWriter, AWriteReportingMoreThanItAskedForStopsTheProcess) {
  TempDir dir;
  ScriptedSeam seam;
  seam.writes.push_back([](int res) { return res + 1; });
  auto w = open_ok(dir.file("seg-0"), &seam);
  ASSERT_TRUE(w);
  append_ok(*w, 0, nullptr);
  EXPECT_DEATH((void)w->flush(), "assertion failed: static_cast<unsigned>\\(w\\) <= pass.len");
}

TEST(JournalWriter, EagainOnWriteAndOnFsyncIsRequeued) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  ScriptedSeam seam;
  seam.writes.push_back([](int) { return -EAGAIN; });
  seam.fsyncs.push_back([](int res) { return res; });  // the first round's (write retried)
  seam.fsyncs.push_back([](int) { return -EINTR; });
  auto w = open_ok(path, &seam);
  ASSERT_TRUE(w);
  for (int i = 0; i < 4; ++i) append_ok(*w, i, nullptr);
  auto d = w->flush();
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d.value(), 4u);
  EXPECT_EQ(w->state().health, JournalHealth::kHealthy);
  EXPECT_GE(seam.fsync_calls, 3);
  w.reset();
  expect_records(path, 0, 4);
}

TEST(JournalWriter, PersistentEagainGivesUpBoundedAndKeepsRecords) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  struct AlwaysAgain : IoSeam {
    int on_result(Op, int) override { return -EAGAIN; }
  } seam;
  auto w = open_ok(path, &seam);
  ASSERT_TRUE(w);
  append_ok(*w, 0, nullptr);
  auto d = w->flush();
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.code(), Errc::kInternal);
  EXPECT_EQ(w->state().health, JournalHealth::kFailing);
  EXPECT_EQ(w->pending_records(), 1u);
}

TEST(JournalWriter, FsyncErrorFailsKeepsRecordsQueuedThenCommitsExactlyOnce) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  ScriptedSeam seam;
  auto w = open_ok(path, &seam);
  ASSERT_TRUE(w);
  for (int i = 0; i < 3; ++i) append_ok(*w, i, nullptr);
  ASSERT_TRUE(w->flush().ok());
  ASSERT_EQ(w->durable_ticket(), 3u);

  for (int i = 3; i < 8; ++i) append_ok(*w, i, nullptr);
  seam.fsyncs.push_back([](int) { return -EIO; });
  auto failed = w->flush();
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.code(), Errc::kInternal);
  EXPECT_NE(failed.error().message.find(std::strerror(EIO)), std::string::npos);
  EXPECT_EQ(failed.error().message.find("SECRET"), std::string::npos);
  EXPECT_EQ(w->state().health, JournalHealth::kFailing);
  EXPECT_FALSE(w->state().last_error.empty());
  EXPECT_EQ(w->state().last_error.find("SECRET"), std::string::npos);
  EXPECT_EQ(w->durable_ticket(), 3u);
  EXPECT_EQ(w->pending_records(), 5u);
  EXPECT_EQ(w->written_end(), w->durable_end());  // the next flush rewrites in place

  // Still failing, more records arrive; then the disk recovers.
  append_ok(*w, 8, nullptr);
  auto ok = w->flush();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok.value(), 9u);
  EXPECT_EQ(w->state().health, JournalHealth::kHealthy);
  EXPECT_TRUE(w->state().last_error.empty());
  EXPECT_EQ(w->state().failed_flushes, 1u);
  EXPECT_EQ(w->pending_records(), 0u);
  w.reset();
  expect_records(path, 0, 9);  // no record twice
}

TEST(JournalWriter, WriteErrorFailsThenTheNextFlushCommits) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  ScriptedSeam seam;
  seam.writes.push_back([](int res) { return res > 1 ? res / 2 : res; });  // some progress
  seam.writes.push_back([](int) { return -EIO; });                         // then an error
  auto w = open_ok(path, &seam);
  ASSERT_TRUE(w);
  for (int i = 0; i < 6; ++i) append_ok(*w, i, nullptr);
  auto failed = w->flush();
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(w->durable_ticket(), 0u);
  EXPECT_EQ(w->pending_records(), 6u);
  EXPECT_EQ(w->state().health, JournalHealth::kFailing);
  auto ok = w->flush();
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok.value(), 6u);
  w.reset();
  expect_records(path, 0, 6);
}

TEST(JournalWriter, AppendRefusesPastThePendingBound) {
  TempDir dir;
  JournalWriterOptions opts;
  opts.max_pending_bytes = 100;
  auto w = JournalWriter::open(dir.file("seg-0"), nullptr, opts);
  ASSERT_TRUE(w.ok());
  const Bytes body(60);
  ASSERT_TRUE((*w)->append(RecordType::kReplay, body).ok());
  auto full = (*w)->append(RecordType::kReplay, body);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.code(), Errc::kQueueFull);
  ASSERT_TRUE((*w)->flush().ok());
  EXPECT_TRUE((*w)->append(RecordType::kReplay, body).ok());
}

TEST(JournalWriter, OpenTruncatesATornTailAndAppendsAfterTheValidRecords) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  {
    auto w = open_ok(path);
    ASSERT_TRUE(w);
    for (int i = 0; i < 3; ++i) append_ok(*w, i, nullptr);
    ASSERT_TRUE(w->flush().ok());
  }
  Bytes file = read_all(path);
  const uint64_t valid = file.size();
  const Bytes partial = encode_record(RecordType::kDeadLetter, body_of(99));
  file.insert(file.end(), partial.begin(), partial.begin() + 20);
  write_all(path, file);

  auto w = open_ok(path);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->recovery().records, 3u);
  EXPECT_EQ(w->recovery().truncated_bytes, 20u);
  EXPECT_EQ(w->recovery().valid_end, valid);
  EXPECT_EQ(fs::file_size(path), valid);
  append_ok(*w, 3, nullptr);
  ASSERT_TRUE(w->flush().ok());
  w.reset();
  expect_records(path, 0, 4);
}

TEST(JournalWriter, OpenReportsACorruptMiddleRecordAndKeepsAppending) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  Bytes expected;
  {
    auto w = open_ok(path);
    ASSERT_TRUE(w);
    for (int i = 0; i < 4; ++i) append_ok(*w, i, &expected);
    ASSERT_TRUE(w->flush().ok());
  }
  const uint64_t second = encode_record(RecordType::kDeadLetter, body_of(0)).size();
  Bytes file = read_all(path);
  file[second + kRecordHeaderBytes + 2] ^= std::byte{0x40};
  write_all(path, file);

  auto w = open_ok(path);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->recovery().records, 3u);
  ASSERT_EQ(w->recovery().corrupt.size(), 1u);
  EXPECT_EQ(w->recovery().corrupt[0].offset, second);
  EXPECT_EQ(w->recovery().truncated_bytes, 0u);
  EXPECT_EQ(w->recovery().valid_end, file.size());
  append_ok(*w, 4, nullptr);
  ASSERT_TRUE(w->flush().ok());
  w.reset();
  const ScanResult s = scan(read_all(path));
  EXPECT_EQ(s.records.size(), 4u);
  EXPECT_EQ(s.corrupt.size(), 1u);
  EXPECT_FALSE(s.torn_tail);
}

TEST(JournalWriter, AFileCutAtEveryByteOfItsLastRecordRecoversToTheOthers) {
  TempDir dir;
  const std::string path = dir.file("seg-0");
  constexpr int kN = 4;
  {
    auto w = open_ok(path);
    ASSERT_TRUE(w);
    for (int i = 0; i < kN; ++i) append_ok(*w, i, nullptr);
    ASSERT_TRUE(w->flush().ok());
  }
  const Bytes full = read_all(path);
  const std::size_t last =
      full.size() - encode_record(RecordType::kDeadLetter, body_of(kN - 1)).size();
  const Bytes next_rec = encode_record(RecordType::kDeadLetter, body_of(kN));
  for (std::size_t cut = last; cut < full.size(); ++cut) {
    SCOPED_TRACE(cut);
    write_all(path, std::span<const std::byte>(full).first(cut));
    auto w = open_ok(path);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->recovery().records, static_cast<uint64_t>(kN - 1));
    EXPECT_EQ(w->recovery().valid_end, last);
    EXPECT_EQ(w->recovery().truncated_bytes, cut - last);
    ASSERT_TRUE(w->append(RecordType::kDeadLetter, body_of(kN)).ok());
    ASSERT_TRUE(w->flush().ok());
    w.reset();
    Bytes want(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(last));
    want.insert(want.end(), next_rec.begin(), next_rec.end());
    ASSERT_EQ(read_all(path), want);
  }
}

}  // namespace
}  // namespace perfq::agent
