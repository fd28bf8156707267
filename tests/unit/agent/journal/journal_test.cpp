// Journal: the agent's durable DLQ journal and audit log (SPEC §5, §7).
// Real files under a unique /tmp directory per test; the journal thread is
// waited on through wait_round (bounded), never by sleeping; faults come
// through the IoSeam, time through a manual Clock.
#include "journal/journal.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "perfq/core/atomic.hpp"
#include "perfq/shm/layout.hpp"
#include "temp_dir.hpp"

namespace perfq::agent {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;

class TempDir : public test::TempDir {
 public:
  TempDir() : test::TempDir("journal") {}
  [[nodiscard]] std::string dlq() const { return file("dlq"); }
  [[nodiscard]] std::string segment(uint64_t seq) const {
    char b[32];
    std::snprintf(b, sizeof b, "%016llx.log", static_cast<unsigned long long>(seq));
    return file("dlq/" + std::string(b));
  }
  [[nodiscard]] std::string audit() const { return file("audit.log"); }
};

// A settable clock; the journal thread reads it, so the words are atomic.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t unix_ns) : unix_ns_(unix_ns) {}
  [[nodiscard]] uint64_t now_mono_ns() const noexcept override { return mono_ns_.load(); }
  [[nodiscard]] uint64_t now_unix_ns() const noexcept override { return unix_ns_.load(); }
  void set_unix_ns(uint64_t ns) { unix_ns_.store(ns); }
  void advance_ms(uint64_t ms) {
    unix_ns_.fetch_add(ms * 1'000'000);
    mono_ns_.fetch_add(ms * 1'000'000);
  }

 private:
  std::atomic<uint64_t> unix_ns_;
  std::atomic<uint64_t> mono_ns_{1'000'000'000};
};

// fdatasync fails with EIO while `fail` is set. Called from the journal thread.
class FailingFsyncSeam final : public IoSeam {
 public:
  std::atomic<bool> fail{false};
  std::atomic<int> failures{0};
  int on_result(Op op, int res) override {
    if (op == Op::kFsync && fail.load()) {
      failures.fetch_add(1);
      return -EIO;
    }
    return res;
  }
};

Bytes bytes_of(std::string_view s) {
  Bytes out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

// Every field distinct per index and distinct from its default. The payload
// holds NULs and high bytes; `payload_bytes` pads it (rotation tests).
DeadLetter make_letter(int i, std::size_t payload_bytes = 0) {
  DeadLetter d;
  const auto u = static_cast<uint64_t>(i);
  d.request_id = 0x0102030405060000ull + u;
  d.user_id = "user-" + std::to_string(i);
  d.type = "email.send." + std::to_string(i);
  d.mode = i % 2 == 0 ? Mode::kBatch : Mode::kPriority;
  d.priority = static_cast<uint8_t>(1 + i % 20);
  d.payload = bytes_of(std::string_view("\0bin\0ary\xff\x00", 10));
  d.payload.push_back(static_cast<std::byte>(i & 0xff));
  while (d.payload.size() < payload_bytes) {
    d.payload.push_back(static_cast<std::byte>(d.payload.size() * 7 + u));
  }
  d.metadata = R"({"k":"v","i":)" + std::to_string(i) + "}";
  d.status = i % 2 == 0 ? Status::kTimeout : Status::kFailed;
  d.reason = i % 2 == 0 ? Errc::kProcessingTimeout : Errc::kProcessorError;
  d.attempt_count = static_cast<uint32_t>(3 + i);
  d.first_attempt_unix_ns = 1'700'000'000'000'000'000ull + u * 1000 + 1;
  d.last_attempt_unix_ns = 1'700'000'000'900'000'000ull + u * 1000 + 2;
  d.history = {
      {d.first_attempt_unix_ns, Errc::kProcessorError, "boom " + std::to_string(i)},
      {d.first_attempt_unix_ns + 5, Errc::kWorkerDied, std::string("with\0nul", 8)},
      {d.last_attempt_unix_ns, d.reason, ""},
  };
  return d;
}

void expect_same_letter(const DeadLetter& x, const DeadLetter& y) {
  EXPECT_EQ(x.request_id, y.request_id);
  EXPECT_EQ(x.user_id, y.user_id);
  EXPECT_EQ(x.type, y.type);
  EXPECT_EQ(x.mode, y.mode);
  EXPECT_EQ(x.priority, y.priority);
  EXPECT_EQ(x.payload, y.payload);
  EXPECT_EQ(x.metadata, y.metadata);
  EXPECT_EQ(x.status, y.status);
  EXPECT_EQ(x.reason, y.reason);
  EXPECT_EQ(x.attempt_count, y.attempt_count);
  EXPECT_EQ(x.first_attempt_unix_ns, y.first_attempt_unix_ns);
  EXPECT_EQ(x.last_attempt_unix_ns, y.last_attempt_unix_ns);
  ASSERT_EQ(x.history.size(), y.history.size());
  for (std::size_t i = 0; i < x.history.size(); ++i) {
    EXPECT_EQ(x.history[i].at_unix_ns, y.history[i].at_unix_ns) << i;
    EXPECT_EQ(x.history[i].code, y.history[i].code) << i;
    EXPECT_EQ(x.history[i].message, y.history[i].message) << i;
  }
}

// The summary is the letter's fields (those the index keeps).
void expect_summary_of(const DlqSummary& s, const DeadLetter& d) {
  EXPECT_EQ(s.request_id, d.request_id);
  EXPECT_EQ(s.user_id, d.user_id);
  EXPECT_EQ(s.type, d.type);
  EXPECT_EQ(s.mode, d.mode);
  EXPECT_EQ(s.priority, d.priority);
  EXPECT_EQ(s.status, d.status);
  EXPECT_EQ(s.reason, d.reason);
  EXPECT_EQ(s.attempt_count, d.attempt_count);
  EXPECT_EQ(s.first_attempt_unix_ns, d.first_attempt_unix_ns);
  EXPECT_EQ(s.last_attempt_unix_ns, d.last_attempt_unix_ns);
}

JournalOptions options_for(const TempDir& dir) {
  JournalOptions o;
  o.data_dir = dir.path();
  return o;
}

std::unique_ptr<Journal> open_ok(const JournalOptions& options) {
  auto j = Journal::open(options);
  EXPECT_TRUE(j.ok()) << (j.ok() ? "" : j.error().message);
  return j.ok() ? std::move(j).value() : nullptr;
}

// Waits until `pred` holds, one journal round at a time; bounded (each wait
// ends at the next round or after 100 ms, at most ~20 s in all). The round is
// read before the predicate, so a round ending in between is not missed.
template <class Pred>
bool wait_until(Journal& j, Pred pred) {
  uint64_t r = j.round();
  for (int i = 0; i < 200; ++i) {
    if (pred()) return true;
    r = j.wait_round(r, 100);
  }
  return pred();
}

bool wait_durable(Journal& j, uint64_t ticket) {
  return wait_until(j, [&] { return j.durable() >= ticket; });
}

// Accepts one letter and waits until it is durable.
uint64_t accept_durable(Journal& j, DeadLetter d) {
  const uint64_t t = j.accept(std::move(d), false);
  EXPECT_TRUE(wait_durable(j, t)) << "ticket " << t << " never durable";
  return t;
}

std::vector<uint64_t> ids_of(const std::vector<DlqSummary>& v) {
  std::vector<uint64_t> out;
  out.reserve(v.size());
  for (const auto& s : v) out.push_back(s.dlq_id);
  return out;
}

const DlqSummary* find_request(const std::vector<DlqSummary>& v, uint64_t request_id) {
  for (const auto& s : v) {
    if (s.request_id == request_id) return &s;
  }
  return nullptr;
}

std::set<uint64_t> segment_files(const TempDir& dir) {
  std::set<uint64_t> out;
  for (const auto& de : fs::directory_iterator(dir.dlq())) {
    const std::string name = de.path().filename().string();
    if (name.size() != 20 || name.substr(16) != ".log") continue;
    if (name.find_first_not_of("0123456789abcdef") < 16) continue;
    out.insert(std::stoull(name.substr(0, 16), nullptr, 16));
  }
  return out;
}

std::string read_text(const std::string& path) {
  std::string out;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  std::fclose(f);
  return out;
}

Bytes read_all(const std::string& path) {
  const std::string s = read_text(path);
  return bytes_of(s);
}

void write_all(const std::string& path, std::span<const std::byte> bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
}

// ---------------------------------------------------------------------------
// 1. accept, durable, list, show

TEST(Journal, AcceptedLettersBecomeDurableAndReadBackExactly) {
  TempDir dir;
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().entries, 0u);
  EXPECT_TRUE(j->recovery().problems.empty());
  EXPECT_EQ(j->dir(), dir.dlq());

  constexpr int kN = 5;
  std::vector<DeadLetter> sent;
  std::vector<uint64_t> tickets;
  for (int i = 0; i < kN; ++i) {
    sent.push_back(make_letter(i));
    DeadLetter copy = sent.back();
    tickets.push_back(j->accept(std::move(copy), false));
  }
  for (int i = 1; i < kN; ++i) EXPECT_GT(tickets[i], tickets[i - 1]);  // accept order
  ASSERT_TRUE(wait_durable(*j, tickets.back()));
  EXPECT_GE(j->durable(), tickets.back());
  EXPECT_EQ(j->unreviewed(), static_cast<uint64_t>(kN));
  EXPECT_EQ(j->state().health, JournalHealth::kHealthy);

  const auto listed = j->list(100, false);
  ASSERT_EQ(listed.size(), static_cast<std::size_t>(kN));
  // dlq ids count up from 1 in accept order; the list is newest first.
  for (int k = 0; k < kN; ++k) {
    const DlqSummary& s = listed[static_cast<std::size_t>(k)];
    const int i = kN - 1 - k;
    SCOPED_TRACE(i);
    EXPECT_EQ(s.dlq_id, static_cast<uint64_t>(i + 1));
    expect_summary_of(s, sent[static_cast<std::size_t>(i)]);
    EXPECT_FALSE(s.reviewed);
    EXPECT_EQ(s.replayed_as, 0u);
    EXPECT_EQ(s.segment, 1u);
  }
  // Both statuses made it (the letters alternate failed / timeout).
  EXPECT_EQ(listed[0].status, Status::kTimeout);
  EXPECT_EQ(listed[1].status, Status::kFailed);

  for (int i = 0; i < kN; ++i) {
    SCOPED_TRACE(i);
    auto e = j->show(static_cast<uint64_t>(i + 1));
    ASSERT_TRUE(e.ok()) << e.error().message;
    EXPECT_EQ(e->summary.dlq_id, static_cast<uint64_t>(i + 1));
    expect_summary_of(e->summary, sent[static_cast<std::size_t>(i)]);
    expect_same_letter(e->letter, sent[static_cast<std::size_t>(i)]);
  }
  auto none = j->show(kN + 1);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.code(), Errc::kNotFound);
  EXPECT_EQ(j->show(0).code(), Errc::kNotFound);
}

TEST(Journal, ShowReadsBackThePayloadByteForByteAcrossReopen) {
  TempDir dir;
  DeadLetter big = make_letter(7, 3000);
  big.payload[100] = std::byte{0};
  big.payload[101] = std::byte{0xff};
  big.metadata = std::string("meta\0data", 9);
  {
    auto j = open_ok(options_for(dir));
    ASSERT_TRUE(j);
    accept_durable(*j, make_letter(6));
    accept_durable(*j, big);
    auto e = j->show(2);
    ASSERT_TRUE(e.ok()) << e.error().message;
    expect_same_letter(e->letter, big);
  }
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().entries, 2u);
  auto e = j->show(2);
  ASSERT_TRUE(e.ok()) << e.error().message;
  expect_same_letter(e->letter, big);
  auto first = j->show(1);
  ASSERT_TRUE(first.ok()) << first.error().message;
  expect_same_letter(first->letter, make_letter(6));
}

TEST(Journal, WakerIsCalledAfterDurableMoves) {
  TempDir dir;
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  std::mutex mu;
  std::condition_variable cv;
  uint64_t seen = 0;
  int calls = 0;
  Journal* jp = j.get();
  j->set_waker([&] {
    const uint64_t d = jp->durable();
    std::lock_guard lock(mu);
    seen = std::max(seen, d);
    ++calls;
    cv.notify_all();
  });
  const uint64_t t = j->accept(make_letter(1), false);
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return seen >= t; }));
  EXPECT_GE(calls, 1);
  lock.unlock();
  j.reset();  // the waker captures locals: stop the thread first
}

// ---------------------------------------------------------------------------
// 2. reopen: index rebuilt, list order, limit, ids continue

TEST(Journal, ReopenRebuildsTheIndexAndListsUnreviewedThenReviewedNewestFirst) {
  TempDir dir;
  constexpr int kN = 6;
  {
    auto j = open_ok(options_for(dir));
    ASSERT_TRUE(j);
    uint64_t last = 0;
    for (int i = 0; i < kN; ++i) last = j->accept(make_letter(i), false);
    ASSERT_TRUE(wait_durable(*j, last));
    ASSERT_TRUE(j->review(2, "alice", "fixed 2").ok());
    ASSERT_TRUE(j->review(5, "bob", "fixed 5").ok());
    EXPECT_EQ(ids_of(j->list(100, false)), (std::vector<uint64_t>{6, 4, 3, 1}));
  }
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  const JournalReport& rep = j->recovery();
  EXPECT_EQ(rep.segments, 1u);
  EXPECT_EQ(rep.entries, static_cast<uint64_t>(kN));
  EXPECT_EQ(rep.reviews, 2u);
  EXPECT_EQ(rep.records, static_cast<uint64_t>(kN + 2));
  EXPECT_EQ(rep.orphans, 0u);
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_TRUE(rep.problems.empty());
  EXPECT_EQ(j->unreviewed(), static_cast<uint64_t>(kN - 2));

  EXPECT_EQ(ids_of(j->list(100, false)), (std::vector<uint64_t>{6, 4, 3, 1}));
  EXPECT_EQ(ids_of(j->list(100, true)), (std::vector<uint64_t>{6, 4, 3, 1, 5, 2}));
  EXPECT_EQ(ids_of(j->list(2, false)), (std::vector<uint64_t>{6, 4}));
  EXPECT_EQ(ids_of(j->list(4, true)), (std::vector<uint64_t>{6, 4, 3, 1}));
  EXPECT_EQ(ids_of(j->list(5, true)), (std::vector<uint64_t>{6, 4, 3, 1, 5}));
  EXPECT_TRUE(j->list(0, true).empty());
  // The rebuilt summaries carry the letters' fields.
  for (const DlqSummary& s : j->list(100, true)) {
    SCOPED_TRACE(s.dlq_id);
    expect_summary_of(s, make_letter(static_cast<int>(s.dlq_id) - 1));
  }

  // New entries continue after the highest id.
  accept_durable(*j, make_letter(100));
  accept_durable(*j, make_letter(101));
  EXPECT_EQ(ids_of(j->list(2, false)), (std::vector<uint64_t>{8, 7}));
  const auto all = j->list(100, true);
  const DlqSummary* s = find_request(all, make_letter(100).request_id);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->dlq_id, static_cast<uint64_t>(kN + 1));
}

// ---------------------------------------------------------------------------
// 3. review

TEST(Journal, ReviewValidatesRefusesTwiceAndSurvivesReopen) {
  TempDir dir;
  ManualClock clock(1'800'000'000'000'000'000ull);
  JournalOptions o = options_for(dir);
  o.clock = &clock;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    uint64_t last = 0;
    for (int i = 0; i < 3; ++i) last = j->accept(make_letter(i), false);
    ASSERT_TRUE(wait_durable(*j, last));
    EXPECT_EQ(j->unreviewed(), 3u);

    auto empty = j->review(1, "alice", "");
    ASSERT_FALSE(empty.ok());
    EXPECT_EQ(empty.code(), Errc::kInvalidRequest);
    auto unknown = j->review(99, "alice", "fixed");
    ASSERT_FALSE(unknown.ok());
    EXPECT_EQ(unknown.code(), Errc::kNotFound);
    auto too_long = j->review(1, "alice", std::string(kJournalResolutionMax + 1, 'r'));
    ASSERT_FALSE(too_long.ok());
    EXPECT_EQ(too_long.code(), Errc::kInvalidRequest);
    EXPECT_EQ(j->unreviewed(), 3u);

    auto ok = j->review(2, "alice", "fixed upstream");
    ASSERT_TRUE(ok.ok()) << ok.error().message;
    EXPECT_EQ(j->unreviewed(), 2u);
    auto again = j->review(2, "bob", "other");
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.code(), Errc::kConflict);

    auto e = j->show(2);
    ASSERT_TRUE(e.ok());
    EXPECT_TRUE(e->summary.reviewed);
    EXPECT_EQ(e->summary.reviewed_by, "alice");
    EXPECT_EQ(e->summary.resolution, "fixed upstream");
    EXPECT_EQ(e->summary.reviewed_at_unix_ns, 1'800'000'000'000'000'000ull);

    clock.advance_ms(5);
    ASSERT_TRUE(j->review(3, "carol", "won't fix").ok());
    EXPECT_EQ(j->unreviewed(), 1u);
    EXPECT_EQ(ids_of(j->list(10, false)), (std::vector<uint64_t>{1}));
  }
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().reviews, 2u);
  EXPECT_EQ(j->unreviewed(), 1u);
  auto e = j->show(2);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->summary.reviewed);
  EXPECT_EQ(e->summary.reviewed_by, "alice");
  EXPECT_EQ(e->summary.resolution, "fixed upstream");
  EXPECT_EQ(e->summary.reviewed_at_unix_ns, 1'800'000'000'000'000'000ull);
  auto e3 = j->show(3);
  ASSERT_TRUE(e3.ok());
  EXPECT_EQ(e3->summary.reviewed_by, "carol");
  EXPECT_EQ(e3->summary.resolution, "won't fix");
  EXPECT_EQ(e3->summary.reviewed_at_unix_ns, 1'800'000'000'005'000'000ull);
  EXPECT_FALSE(j->show(1)->summary.reviewed);

  auto again = j->review(2, "bob", "other");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.code(), Errc::kConflict);
  ASSERT_TRUE(j->review(1, "dave", "done").ok());
  EXPECT_EQ(j->unreviewed(), 0u);
  EXPECT_TRUE(j->list(10, false).empty());
  EXPECT_EQ(ids_of(j->list(10, true)), (std::vector<uint64_t>{3, 2, 1}));
}

// ---------------------------------------------------------------------------
// 4. replay

TEST(Journal, ReplayIsRecordedOnceAndSurvivesReopen) {
  TempDir dir;
  {
    auto j = open_ok(options_for(dir));
    ASSERT_TRUE(j);
    accept_durable(*j, make_letter(0));
    accept_durable(*j, make_letter(1));

    EXPECT_EQ(j->check_replayable(42).code(), Errc::kNotFound);
    ASSERT_TRUE(j->check_replayable(1).ok());
    auto r = j->record_replay(1, 0xABCDEF01ull);
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto again = j->check_replayable(1);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.code(), Errc::kConflict);
    EXPECT_TRUE(j->check_replayable(2).ok());

    auto e = j->show(1);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->summary.replayed_as, 0xABCDEF01ull);
    EXPECT_FALSE(e->summary.reviewed);  // a replay is not a review
    EXPECT_EQ(j->show(2)->summary.replayed_as, 0u);
  }
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().replays, 1u);
  EXPECT_EQ(j->show(1)->summary.replayed_as, 0xABCDEF01ull);
  EXPECT_EQ(j->list(10, false)[1].replayed_as, 0xABCDEF01ull);
  auto again = j->check_replayable(1);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.code(), Errc::kConflict);
  EXPECT_TRUE(j->check_replayable(2).ok());
}

// ---------------------------------------------------------------------------
// 5. recovered letters

TEST(Journal, AnOutOfRangeLetterIsClampedAndHoldsNoOneBack) {
  // Fields a broken producer could have scribbled into the slot, beyond what
  // the record format accepts: the letter is journaled clamped, and the
  // letters behind it are not held.
  TempDir dir;
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  DeadLetter bad = make_letter(0);
  bad.priority = 0;
  bad.mode = static_cast<Mode>(200);
  bad.status = Status::kCompleted;
  bad.reason = static_cast<Errc>(250);
  bad.user_id.assign(kUserIdMaxBytes + 10, 'u');
  bad.history.push_back({1, static_cast<Errc>(99), std::string(kJournalMessageMax + 5, 'm')});
  const uint64_t t0 = j->accept(std::move(bad), false);
  const uint64_t t1 = j->accept(make_letter(1), false);
  ASSERT_TRUE(wait_durable(*j, std::max(t0, t1)));
  auto e = j->show(1);
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->letter.priority, kPriorityDefault);
  EXPECT_EQ(e->letter.mode, Mode::kFifo);
  EXPECT_EQ(e->letter.status, Status::kFailed);
  EXPECT_EQ(e->letter.reason, Errc::kInternal);
  EXPECT_EQ(e->letter.user_id.size(), kUserIdMaxBytes);
  ASSERT_FALSE(e->letter.history.empty());
  EXPECT_EQ(e->letter.history.back().code, Errc::kInternal);
  EXPECT_EQ(e->letter.history.back().message.size(), kJournalMessageMax);
  EXPECT_TRUE(j->show(2).ok());
}

TEST(Journal, RecoveredLetterForAJournaledRequestAddsNoEntry) {
  TempDir dir;
  {
    auto j = open_ok(options_for(dir));
    ASSERT_TRUE(j);
    accept_durable(*j, make_letter(0));
    accept_durable(*j, make_letter(1));
  }
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  // The restarted agent hands the SEALING request again.
  const uint64_t t = j->accept(make_letter(1), true);
  EXPECT_LE(t, j->durable());
  // A new request (recovered or not) is journaled; the duplicate took no id.
  const uint64_t t2 = j->accept(make_letter(2), false);
  const uint64_t t3 = j->accept(make_letter(3), true);
  ASSERT_TRUE(wait_durable(*j, std::max(t2, t3)));
  const auto all = j->list(100, true);
  EXPECT_EQ(ids_of(all), (std::vector<uint64_t>{4, 3, 2, 1}));
  std::size_t with_request1 = 0;
  for (const auto& s : all) with_request1 += s.request_id == make_letter(1).request_id ? 1 : 0;
  EXPECT_EQ(with_request1, 1u);
  ASSERT_NE(find_request(all, make_letter(2).request_id), nullptr);
  EXPECT_EQ(find_request(all, make_letter(2).request_id)->dlq_id, 3u);
  EXPECT_EQ(find_request(all, make_letter(3).request_id)->dlq_id, 4u);
  // And the duplicate never reached the file either.
  j.reset();
  auto again = open_ok(options_for(dir));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->recovery().entries, 4u);
}

// ---------------------------------------------------------------------------
// 6. rotation

TEST(Journal, RotatesSegmentsAndShowsOldEntriesAfterReopen) {
  TempDir dir;
  JournalOptions o = options_for(dir);
  o.segment_bytes = 4096;
  constexpr int kN = 12;
  std::vector<DeadLetter> sent;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    for (int i = 0; i < kN; ++i) {
      sent.push_back(make_letter(i, 1500));
      accept_durable(*j, sent.back());
    }
    auto rep = j->verify();
    ASSERT_TRUE(rep.ok());
    EXPECT_EQ(rep->entries, static_cast<uint64_t>(kN));
    EXPECT_TRUE(rep->problems.empty());
    EXPECT_GE(rep->segments, 3u);
  }
  const auto files = segment_files(dir);
  ASSERT_GE(files.size(), 3u);
  EXPECT_EQ(*files.begin(), 1u);
  // Sequence numbers are consecutive; every closed file reached the bound.
  uint64_t expect_seq = 1;
  for (const uint64_t seq : files) {
    EXPECT_EQ(seq, expect_seq++);
    if (seq != *files.rbegin()) {
      EXPECT_GE(fs::file_size(dir.segment(seq)), 4096u);
    }
  }

  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().segments, files.size());
  EXPECT_EQ(j->recovery().entries, static_cast<uint64_t>(kN));
  EXPECT_TRUE(j->recovery().problems.empty());
  const auto all = j->list(100, true);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kN));
  EXPECT_EQ(all.back().segment, 1u);                    // dlq 1, oldest file
  EXPECT_EQ(all.front().segment, *files.rbegin() - 1);  // newest entry closed the last file
  for (int i = 0; i < kN; ++i) {
    SCOPED_TRACE(i);
    auto e = j->show(static_cast<uint64_t>(i + 1));
    ASSERT_TRUE(e.ok()) << e.error().message;
    expect_same_letter(e->letter, sent[static_cast<std::size_t>(i)]);
  }
}

// ---------------------------------------------------------------------------
// 7. retention

TEST(Journal, RetentionDeletesOnlyOldFullyReviewedSegmentsBeforeTheFirstUnreviewed) {
  TempDir dir;
  constexpr uint64_t kT0 = 1'800'000'000'000'000'000ull;
  ManualClock clock(kT0);
  JournalOptions o = options_for(dir);
  o.segment_bytes = 4096;
  o.retention_ms = 1000;
  o.clock = &clock;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    // Each record exceeds segment_bytes: one entry per file.
    for (int i = 0; i < 4; ++i) accept_durable(*j, make_letter(i, 4200));
    // The fourth's rotation has opened file 5; its review records go there.
    ASSERT_TRUE(j->review(1, "ops", "gone").ok());
    ASSERT_TRUE(j->review(3, "ops", "gone").ok());
    ASSERT_TRUE(j->review(4, "ops", "gone").ok());
    // dlq 2 stays unreviewed.
  }
  ASSERT_EQ(segment_files(dir), (std::set<uint64_t>{1, 2, 3, 4, 5}));
  for (uint64_t seq = 1; seq <= 4; ++seq) {
    // Sanity: file `seq` holds dlq `seq` (the layout this test relies on).
    const ScanResult s = scan(read_all(dir.segment(seq)));
    ASSERT_EQ(s.records.size(), 1u) << seq;
    EXPECT_EQ(s.records.back().type, RecordType::kDeadLetter) << seq;
  }

  // Not yet older than retention: nothing goes.
  clock.advance_ms(999);
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    EXPECT_EQ(j->recovery().removed_segments, 0u);
  }
  ASSERT_EQ(segment_files(dir), (std::set<uint64_t>{1, 2, 3, 4, 5}));

  clock.advance_ms(2);
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().removed_segments, 1u);
  // File 1 went; file 2 holds an unreviewed entry, so it and all after stay
  // (file 3 and 4 qualify on their own but come after it).
  EXPECT_EQ(segment_files(dir), (std::set<uint64_t>{2, 3, 4, 5}));
  EXPECT_EQ(j->show(1).code(), Errc::kNotFound);
  EXPECT_EQ(ids_of(j->list(100, true)), (std::vector<uint64_t>{2, 4, 3}));
  EXPECT_EQ(j->unreviewed(), 1u);
  auto e3 = j->show(3);
  ASSERT_TRUE(e3.ok()) << e3.error().message;
  expect_same_letter(e3->letter, make_letter(2, 4200));
  EXPECT_TRUE(e3->summary.reviewed);
  auto v = j->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->segments, 4u);
  EXPECT_EQ(v->entries, 3u);
  EXPECT_TRUE(v->problems.empty());

  // Once dlq 2 is reviewed and old enough, files 2, 3 and 4 go too (never 5,
  // the active one).
  ASSERT_TRUE(j->review(2, "ops", "gone").ok());
  j.reset();
  clock.advance_ms(1001);
  j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().removed_segments, 3u);
  EXPECT_EQ(segment_files(dir), (std::set<uint64_t>{5}));
  EXPECT_TRUE(j->list(100, true).empty());
}

// dlq ids must not be handed out twice, even once retention has deleted every
// file that held an entry (only review records are left in the active file).
TEST(Journal, DlqIdsAreNotReusedAfterRetentionDeletedTheirSegments) {
  TempDir dir;
  ManualClock clock(1'800'000'000'000'000'000ull);
  JournalOptions o = options_for(dir);
  o.segment_bytes = 4096;
  o.retention_ms = 1;
  o.clock = &clock;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    accept_durable(*j, make_letter(0, 4200));  // file 1, then file 2 is active
    ASSERT_TRUE(j->review(1, "ops", "gone").ok());
  }
  clock.advance_ms(10);
  {
    auto j = open_ok(o);  // deletes file 1
    ASSERT_TRUE(j);
    EXPECT_EQ(j->recovery().removed_segments, 1u);
  }
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  accept_durable(*j, make_letter(1));
  const auto all = j->list(10, true);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_GT(all[0].dlq_id, 1u) << "dlq id 1 was given to another entry before";
}

// ---------------------------------------------------------------------------
// 8. corruption and torn tails

TEST(Journal, CorruptRecordInAClosedSegmentIsReportedAndSkipped) {
  TempDir dir;
  JournalOptions o = options_for(dir);
  o.segment_bytes = 4096;
  constexpr int kN = 7;
  std::vector<DlqSummary> all;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    for (int i = 0; i < kN; ++i) accept_durable(*j, make_letter(i, 900));
    all = j->list(100, true);
  }
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kN));
  std::vector<DlqSummary> in_first;  // oldest first
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->segment == 1) in_first.push_back(*it);
  }
  ASSERT_GE(in_first.size(), 3u);
  ASSERT_GT(segment_files(dir).size(), 1u);  // file 1 is closed
  const DlqSummary victim = in_first[1];     // neither first nor last in its file
  const std::string path = dir.segment(1);
  Bytes file = read_all(path);
  file[victim.offset + kRecordHeaderBytes + 300] ^= std::byte{0x10};  // inside the payload
  write_all(path, file);

  auto j = open_ok(o);
  ASSERT_TRUE(j);
  const JournalReport rep = j->recovery();  // a copy: j goes below
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_EQ(rep.problems[0].file, "0000000000000001.log");
  EXPECT_EQ(rep.problems[0].offset, victim.offset);
  EXPECT_GT(rep.problems[0].length, 0u);
  EXPECT_EQ(rep.entries, static_cast<uint64_t>(kN - 1));
  EXPECT_EQ(rep.truncated_bytes, 0u);
  EXPECT_EQ(fs::file_size(path), file.size());  // left in place

  EXPECT_EQ(j->show(victim.dlq_id).code(), Errc::kNotFound);
  const auto now = j->list(100, true);
  EXPECT_EQ(now.size(), static_cast<std::size_t>(kN - 1));
  for (const DlqSummary& s : all) {
    if (s.dlq_id == victim.dlq_id) continue;
    SCOPED_TRACE(s.dlq_id);
    auto e = j->show(s.dlq_id);
    ASSERT_TRUE(e.ok()) << e.error().message;
    expect_same_letter(e->letter, make_letter(static_cast<int>(s.dlq_id) - 1, 900));
  }

  auto v = j->verify();
  ASSERT_TRUE(v.ok()) << v.error().message;
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_EQ(v->problems[0].file, rep.problems[0].file);
  EXPECT_EQ(v->problems[0].offset, rep.problems[0].offset);
  EXPECT_EQ(v->problems[0].length, rep.problems[0].length);
  EXPECT_EQ(v->entries, static_cast<uint64_t>(kN - 1));

  // The same without an agent.
  j.reset();
  auto offline = verify_journal(dir.path());
  ASSERT_TRUE(offline.ok()) << offline.error().message;
  ASSERT_EQ(offline->problems.size(), 1u);
  EXPECT_EQ(offline->problems[0].file, rep.problems[0].file);
  EXPECT_EQ(offline->problems[0].offset, victim.offset);
  EXPECT_EQ(offline->entries, static_cast<uint64_t>(kN - 1));
}

TEST(Journal, TornTailOfTheActiveSegmentIsCutAtOpen) {
  TempDir dir;
  std::vector<DlqSummary> all;
  {
    auto j = open_ok(options_for(dir));
    ASSERT_TRUE(j);
    for (int i = 0; i < 4; ++i) accept_durable(*j, make_letter(i));
    all = j->list(100, true);
  }
  ASSERT_EQ(all.size(), 4u);
  const DlqSummary last = all.front();  // dlq 4, the file's last record
  ASSERT_EQ(last.dlq_id, 4u);
  const std::string path = dir.segment(1);
  const uint64_t size = fs::file_size(path);
  const uint64_t cut = size - 7;  // inside the last record
  ASSERT_GT(cut, last.offset);
  fs::resize_file(path, cut);

  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  const JournalReport& rep = j->recovery();
  EXPECT_EQ(rep.truncated_bytes, cut - last.offset);
  EXPECT_GT(rep.truncated_bytes, 0u);
  EXPECT_EQ(rep.entries, 3u);
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_EQ(rep.problems[0].file, "0000000000000001.log");
  EXPECT_EQ(rep.problems[0].offset, last.offset);
  EXPECT_EQ(fs::file_size(path), last.offset);
  EXPECT_EQ(ids_of(j->list(100, true)), (std::vector<uint64_t>{3, 2, 1}));
  for (uint64_t id = 1; id <= 3; ++id) {
    auto e = j->show(id);
    ASSERT_TRUE(e.ok()) << e.error().message;
    expect_same_letter(e->letter, make_letter(static_cast<int>(id) - 1));
  }
  // Appends follow the last valid record; the file is clean again.
  accept_durable(*j, make_letter(50));
  auto v = j->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->problems.empty());
  EXPECT_EQ(v->entries, 4u);
  const auto now = j->list(100, true);
  const DlqSummary* s = find_request(now, make_letter(50).request_id);
  ASSERT_NE(s, nullptr);
  auto e = j->show(s->dlq_id);
  ASSERT_TRUE(e.ok()) << e.error().message;
  expect_same_letter(e->letter, make_letter(50));
}

// ---------------------------------------------------------------------------
// 9. disk errors

TEST(Journal, FsyncErrorsMakeTheJournalFailingUntilTheDiskRecovers) {
  TempDir dir;
  FailingFsyncSeam seam;
  shm::JournalView view{};
  JournalOptions o = options_for(dir);
  o.seam = &seam;
  o.retry_ms = 1;
  o.retry_max_ms = 2;
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  j->attach_view(&view);
  EXPECT_EQ(load_relaxed(view.state), static_cast<uint32_t>(shm::JournalHealthState::kHealthy));

  const uint64_t t1 = accept_durable(*j, make_letter(0));
  ASSERT_TRUE(wait_until(*j, [&] { return load_relaxed(view.entries) == 1; }));

  seam.fail.store(true);
  const uint64_t t2 = j->accept(make_letter(1), false);
  ASSERT_GT(t2, t1);
  ASSERT_TRUE(wait_until(*j, [&] {
    return j->state().health == JournalHealth::kFailing &&
           load_relaxed(view.state) == static_cast<uint32_t>(shm::JournalHealthState::kFailing);
  }));
  EXPECT_EQ(load_relaxed(view.last_errno), EIO);
  EXPECT_GT(load_relaxed(view.awaiting), 0u);
  EXPECT_GE(load_relaxed(view.failed_flushes), 1u);
  const JournalState st = j->state();
  EXPECT_EQ(st.last_errno, EIO);
  EXPECT_FALSE(st.last_error.empty());
  EXPECT_GE(st.failed_flushes, 1u);
  EXPECT_LT(j->durable(), t2);
  EXPECT_EQ(j->show(2).code(), Errc::kNotFound);  // not durable, not in the index
  EXPECT_GT(seam.failures.load(), 0);

  // A review while failing times out (kInternal) and stays queued; a second
  // one for the same entry is refused meanwhile.
  auto r = j->review(1, "ops", "later", /*timeout_ms=*/1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), Errc::kInternal);
  // Two more rounds: the second started after the review was queued, so the
  // record now waits in the writer's queue.
  const uint64_t r0 = j->round();
  ASSERT_TRUE(wait_until(*j, [&] { return j->round() >= r0 + 2; }));
  auto dup = j->review(1, "ops", "again", /*timeout_ms=*/1);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.code(), Errc::kConflict);
  EXPECT_LT(j->durable(), t2);

  seam.fail.store(false);
  ASSERT_TRUE(wait_until(*j, [&] {
    return j->durable() >= t2 && j->unreviewed() == 1 &&
           load_relaxed(view.state) == static_cast<uint32_t>(shm::JournalHealthState::kHealthy) &&
           load_relaxed(view.awaiting) == 0;
  }));
  EXPECT_EQ(j->state().health, JournalHealth::kHealthy);
  EXPECT_EQ(load_relaxed(view.last_errno), 0);
  EXPECT_EQ(load_relaxed(view.entries), 2u);
  EXPECT_EQ(load_relaxed(view.unreviewed), 1u);
  auto e = j->show(1);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->summary.reviewed);
  EXPECT_EQ(e->summary.resolution, "later");
  auto e2 = j->show(2);
  ASSERT_TRUE(e2.ok()) << e2.error().message;
  expect_same_letter(e2->letter, make_letter(1));

  j.reset();  // before `view` goes
  // Every record is in the file exactly once.
  auto again = open_ok(options_for(dir));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->recovery().entries, 2u);
  EXPECT_EQ(again->recovery().reviews, 1u);
  EXPECT_TRUE(again->recovery().problems.empty());
}

TEST(Journal, ViewCountsEntriesUnreviewedAndSegments) {
  TempDir dir;
  shm::JournalView view{};
  JournalOptions o = options_for(dir);
  o.segment_bytes = 4096;
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  j->attach_view(&view);
  for (int i = 0; i < 3; ++i) accept_durable(*j, make_letter(i, 4200));
  ASSERT_TRUE(j->review(2, "ops", "ok").ok());
  ASSERT_TRUE(wait_until(*j, [&] { return load_relaxed(view.unreviewed) == 2; }));
  EXPECT_EQ(load_relaxed(view.entries), 3u);
  EXPECT_EQ(load_relaxed(view.segments), 4u);  // three full files and the active one
  EXPECT_EQ(load_relaxed(view.awaiting), 0u);
  EXPECT_GE(load_relaxed(view.durable_records), 4u);
  EXPECT_EQ(load_relaxed(view.state), static_cast<uint32_t>(shm::JournalHealthState::kHealthy));
  j->attach_view(nullptr);
  j.reset();
}

// ---------------------------------------------------------------------------
// 10. audit log

TEST(Journal, AuditLinesLandAndATornLastLineIsCutAtReopen) {
  TempDir dir;
  const std::vector<std::string> lines = {R"({"event":"x"})", R"({"event":"y","n":2})"};
  const std::string want = lines[0] + "\n" + lines[1] + "\n";
  {
    auto j = open_ok(options_for(dir));
    ASSERT_TRUE(j);
    for (const auto& l : lines) j->audit(l);
    ASSERT_TRUE(wait_until(*j, [&] { return read_text(dir.audit()) == want; }))
        << read_text(dir.audit());
  }
  EXPECT_EQ(read_text(dir.audit()), want);
  {
    std::FILE* f = std::fopen(dir.audit().c_str(), "ab");
    ASSERT_NE(f, nullptr);
    std::fputs(R"({"event":"to)", f);
    std::fclose(f);
  }
  ASSERT_NE(read_text(dir.audit()), want);
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  EXPECT_EQ(read_text(dir.audit()), want);
  // A newline inside a line cannot split it.
  j->audit("{\"event\":\"z\",\n\"k\":1}");
  const std::string want2 = want + "{\"event\":\"z\", \"k\":1}\n";
  ASSERT_TRUE(wait_until(*j, [&] { return read_text(dir.audit()) == want2; }))
      << read_text(dir.audit());
}

TEST(Journal, AuditOffWritesNoFile) {
  TempDir dir;
  JournalOptions o = options_for(dir);
  o.audit = false;
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  j->audit(R"({"event":"x"})");
  accept_durable(*j, make_letter(0));  // a round passes
  j.reset();
  EXPECT_FALSE(fs::exists(dir.audit()));
}

// ---------------------------------------------------------------------------
// Concurrency: operators review while the data plane keeps adding letters.

TEST(Journal, ReviewsWhileLettersStreamIn) {
  TempDir dir;
  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  constexpr int kFirst = 40;
  uint64_t last = 0;
  for (int i = 0; i < kFirst; ++i) last = j->accept(make_letter(i), false);
  ASSERT_TRUE(wait_durable(*j, last));

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> last_ticket{0};
  // The producer keeps rounds busy: a few letters, then it waits for a round.
  std::thread producer([&] {
    for (int i = kFirst; i < kFirst + 4000 && !stop.load(); ++i) {
      last_ticket.store(j->accept(make_letter(i), false));
      if (i % 4 == 0) (void)j->wait_round(j->round(), 100);
    }
  });
  for (uint64_t id = 1; id <= kFirst; ++id) {
    auto r = j->review(id, "ops", "bulk");
    EXPECT_TRUE(r.ok()) << id << ": " << r.error().message;
  }
  stop.store(true);
  producer.join();
  ASSERT_TRUE(wait_durable(*j, last_ticket.load()));
  const uint64_t total = last_ticket.load();
  EXPECT_EQ(j->list(100000, true).size(), total);
  EXPECT_EQ(j->unreviewed(), total - kFirst);
  j.reset();
  auto again = open_ok(options_for(dir));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->recovery().entries, total);
  EXPECT_EQ(again->recovery().reviews, static_cast<uint64_t>(kFirst));
  EXPECT_EQ(again->unreviewed(), total - kFirst);
}

// review() promises kConflict while another review of the entry is queued or
// in flight. The first review is queued while the journal waits to retry; the
// round that takes it also takes many large letters, so it spends a while
// appending them before the review reaches the writer's queue. A second
// review attempted meanwhile must still be refused.
TEST(Journal, ASecondReviewIsRefusedWhileTheFirstIsInFlight) {
  TempDir dir;
  FailingFsyncSeam seam;
  JournalOptions o = options_for(dir);
  o.seam = &seam;
  o.retry_ms = 300;
  o.retry_max_ms = 300;
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  accept_durable(*j, make_letter(0));

  seam.fail.store(true);
  (void)j->accept(make_letter(1), false);
  ASSERT_TRUE(wait_until(*j, [&] { return j->state().health == JournalHealth::kFailing; }));
  uint64_t last = 0;
  for (int i = 2; i < 202; ++i) last = j->accept(make_letter(i, 64 * 1024), false);
  auto first = j->review(1, "first", "a", /*timeout_ms=*/1);  // queued, not durable
  ASSERT_EQ(first.code(), Errc::kInternal);
  seam.fail.store(false);

  int attempts = 0;
  bool reviewed = false;
  // A safety bound only (the first review lands one retry after the disk
  // recovers); nothing is asserted about time.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!reviewed) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the first review never landed";
    auto second = j->review(1, "second", "b");
    ++attempts;
    ASSERT_EQ(second.code(), Errc::kConflict)
        << "attempt " << attempts << ": a second review of dlq 1 returned "
        << errc_name(second.code());
    auto e = j->show(1);
    ASSERT_TRUE(e.ok());
    reviewed = e->summary.reviewed;
  }
  EXPECT_EQ(j->show(1)->summary.reviewed_by, "first");
  ASSERT_TRUE(wait_durable(*j, last));
  j.reset();
  auto again = open_ok(options_for(dir));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->recovery().reviews, 1u);
}

}  // namespace
}  // namespace perfq::agent

namespace perfq::agent {
namespace {

// ---------------------------------------------------------------------------
// 12. lost segment files and the old format (issue 15)

// Three segment files, 1..3, each holding entries.
std::vector<DlqSummary> fill_three_segments(const TempDir& dir, JournalOptions o) {
  o.segment_bytes = 4096;
  auto j = open_ok(o);
  if (!j) return {};
  for (int i = 0; i < 60 && segment_files(dir).size() < 4; ++i) {
    accept_durable(*j, make_letter(i, 900));
  }
  return j->list(100, true);
}

TEST(Journal, ADeletedMiddleSegmentMakesVerifyFailAndNamesTheGap) {
  TempDir dir;
  const JournalOptions o = options_for(dir);
  const auto all = fill_three_segments(dir, o);
  ASSERT_GE(segment_files(dir).size(), 3u);
  ASSERT_TRUE(fs::remove(dir.segment(2)));

  auto offline = verify_journal(dir.path());
  ASSERT_TRUE(offline.ok()) << offline.error().message;
  ASSERT_EQ(offline->problems.size(), 1u);
  EXPECT_EQ(offline->problems[0].file, "0000000000000002.log");
  EXPECT_NE(offline->problems[0].what.find("missing"), std::string::npos);
  EXPECT_EQ(offline->missing_segments, 1u);

  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().missing_segments, 1u);  // logged at start (daemon.cpp)
  ASSERT_EQ(j->recovery().problems.size(), 1u);
  auto online = j->verify();
  ASSERT_TRUE(online.ok());
  EXPECT_FALSE(online->problems.empty());
  EXPECT_LT(j->list(100, true).size(), all.size());
}

TEST(Journal, ASegmentReplacedByADirectoryIsReported) {
  TempDir dir;
  const JournalOptions o = options_for(dir);
  (void)fill_three_segments(dir, o);
  ASSERT_GE(segment_files(dir).size(), 3u);
  ASSERT_TRUE(fs::remove(dir.segment(2)));
  fs::create_directory(dir.segment(2));
  auto rep = verify_journal(dir.path());
  ASSERT_TRUE(rep.ok());
  ASSERT_EQ(rep->problems.size(), 1u);
  EXPECT_NE(rep->problems[0].what.find("not a regular file"), std::string::npos);
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().missing_segments, 1u);
}

TEST(Journal, AFormatOneJournalIsReadAndTheNextSegmentIsWrittenInFormatTwo) {
  TempDir dir;
  fs::create_directories(dir.dlq());
  Bytes file;
  for (uint64_t id = 1; id <= 2; ++id) {
    DeadLetter d = make_letter(static_cast<int>(id));
    auto body = encode_dead_letter(JournalEntry{id, d});
    ASSERT_TRUE(body.ok());
    const Bytes rec = encode_legacy_record(RecordType::kDeadLetter, *body);
    file.insert(file.end(), rec.begin(), rec.end());
  }
  write_all(dir.segment(1), file);

  auto j = open_ok(options_for(dir));
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().entries, 2u);
  EXPECT_EQ(j->recovery().legacy_segments, 1u);
  ASSERT_TRUE(j->show(2).ok());
  accept_durable(*j, make_letter(3));
  EXPECT_EQ(segment_files(dir), (std::set<uint64_t>{1, 2}));
  EXPECT_EQ(read_all(dir.segment(1)), file);  // never appended to
  EXPECT_FALSE(legacy_format(read_all(dir.segment(2))));
  auto rep = j->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->problems.empty());
  EXPECT_EQ(rep->entries, 3u);
}

}  // namespace
}  // namespace perfq::agent
