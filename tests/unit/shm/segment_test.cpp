#include "perfq/shm/segment.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "harness.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/shm/layout.hpp"
#include "perfq/shm/status.hpp"

namespace perfq::shm {
namespace {

constexpr auto kChildBound = std::chrono::seconds(30);

// A queue name used by this test only; its segment is removed on both ends.
class TestQueue {
 public:
  TestQueue() {
    static std::atomic<uint32_t> seq{0};
    char name[48];
    std::snprintf(name, sizeof name, "u%d-seg%u", static_cast<int>(::getpid()),
                  seq.fetch_add(1, std::memory_order_relaxed));
    name_ = name;
    Segment::remove(name_);
  }
  ~TestQueue() { Segment::remove(name_); }
  TestQueue(const TestQueue&) = delete;
  TestQueue& operator=(const TestQueue&) = delete;
  [[nodiscard]] const std::string& str() const { return name_; }
  [[nodiscard]] std::string path() const { return "/dev/shm/" + segment_name(name_); }

 private:
  std::string name_;
};

CreateOptions small_options() {
  CreateOptions o;
  o.slot_count = 16;
  o.slot_payload_bytes = 64;
  o.max_clients = 4;
  return o;
}

std::unique_ptr<Segment> open_agent(const std::string& queue,
                                    const CreateOptions& opt = small_options()) {
  Segment::Opened how{};
  auto s = Segment::open_for_agent(queue, opt, how);
  if (!s) {
    ADD_FAILURE() << "open_for_agent: " << s.error().message;
    return nullptr;
  }
  return std::move(s).value();
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(Segment, OpenForAgentCreatesAFormattedSegment) {
  TestQueue q;
  Segment::Opened how = Segment::Opened::kReattached;
  auto r = Segment::open_for_agent(q.str(), small_options(), how);
  ASSERT_TRUE(r) << r.error().message;
  Segment& s = **r;
  EXPECT_EQ(how, Segment::Opened::kCreated);
  EXPECT_EQ(s.queue(), q.str());

  const Geometry want = compute_geometry(16, 64, 4);
  EXPECT_EQ(s.geometry().total_bytes, want.total_bytes);
  EXPECT_GE(s.size_bytes(), want.total_bytes);
  const SegmentHeader& h = s.header();
  EXPECT_EQ(h.magic, kMagic);
  EXPECT_EQ(h.layout_version, kLayoutVersion);
  EXPECT_EQ(h.header_bytes, sizeof(SegmentHeader));
  EXPECT_EQ(h.layout_hash, layout_hash());
  EXPECT_EQ(h.total_bytes, want.total_bytes);
  EXPECT_EQ(h.slot_count, 16u);
  EXPECT_EQ(h.slot_payload_bytes, 64u);
  EXPECT_EQ(h.max_clients, 4u);
  EXPECT_EQ(h.band_ring_capacity, want.band_ring_capacity);
  EXPECT_EQ(h.off_slots, want.off_slots);

  // The views work: every band ring is empty at full capacity, every slot free.
  for (uint8_t b = 0; b < kBandCount; ++b) {
    BandRing& ring = s.band(static_cast<Band>(b));
    EXPECT_EQ(ring.capacity(), want.band_ring_capacity);
    EXPECT_EQ(ring.try_pop().kind, BandRing::PopKind::kEmpty);
  }
  EXPECT_EQ(s.pool().count(), 16u);
  EXPECT_EQ(s.pool().count_free_approx(), 16u);

  struct stat st {};
  ASSERT_EQ(::stat(q.path().c_str(), &st), 0) << q.path();
  EXPECT_GE(static_cast<uint64_t>(st.st_size), want.total_bytes);
}

TEST(Segment, SegmentFileIsCreatedWithMode0660) {
  TestQueue q;
  auto s = open_agent(q.str());
  ASSERT_NE(s, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(q.path().c_str(), &st), 0) << q.path();
  EXPECT_EQ(st.st_mode & 07777, 0660u) << std::oct << (st.st_mode & 07777);
}

TEST(Segment, SegmentFileTakesTheConfiguredModeWhateverTheUmask) {
  TestQueue q;
  CreateOptions opt = small_options();
  opt.mode = 0640;
  const mode_t old = ::umask(0077);
  auto s = open_agent(q.str(), opt);
  ::umask(old);
  ASSERT_NE(s, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(q.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u) << std::oct << (st.st_mode & 07777);
}

TEST(Segment, SecondAgentInAnotherProcessIsRefusedWithConflict) {
  TestQueue q;
  auto s = open_agent(q.str());
  ASSERT_NE(s, nullptr);
  // flock belongs to the open file description: the refusal must come from
  // another open of the object, as another agent process would make it.
  test::Child child([&] {
    Segment::Opened how{};
    auto r = Segment::open_for_agent(q.str(), small_options(), how);
    if (r) return 1;
    if (r.code() != Errc::kConflict) return 2;
    if (!contains(r.error().message, "already has a running agent")) return 3;
    return 0;
  });
  EXPECT_EQ(child.wait(kChildBound), 0)
      << "1: second agent got the segment, 2: wrong error code, 3: message";
  // The refused attempt left the holder's segment alone.
  EXPECT_EQ(s->header().magic, kMagic);
}

TEST(Segment, AgentLockIsReleasedWhenItsHolderCloses) {
  TestQueue q;
  auto s = open_agent(q.str());
  ASSERT_NE(s, nullptr);
  aref(s->header().next_request_id).store(0x1234, std::memory_order_relaxed);
  s.reset();

  test::Child child([&] {
    Segment::Opened how = Segment::Opened::kCreated;
    auto r = Segment::open_for_agent(q.str(), small_options(), how);
    if (!r) return 1;
    if (how != Segment::Opened::kReattached) return 2;
    if (load_relaxed((*r)->header().next_request_id) != 0x1234) return 3;
    return 0;
  });
  EXPECT_EQ(child.wait(kChildBound), 0)
      << "1: refused, 2: re-created instead of re-attached, 3: lost the old contents";
}

TEST(Segment, AgentLockDiesWithTheHoldingProcess) {
  TestQueue q;
  test::Signal locked;
  test::Signal never;
  test::Child holder([&] {
    auto s = open_agent(q.str());
    if (s == nullptr) return 1;
    locked.notify();
    (void)never.wait(kChildBound);  // until killed
    return 0;
  });
  ASSERT_EQ(locked.wait(kChildBound), 1);
  {
    Segment::Opened how{};
    auto r = Segment::open_for_agent(q.str(), small_options(), how);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::kConflict);
  }
  holder.kill(SIGKILL);
  EXPECT_EQ(holder.wait(kChildBound), 128 + SIGKILL);

  Segment::Opened how = Segment::Opened::kCreated;
  auto r = Segment::open_for_agent(q.str(), small_options(), how);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(how, Segment::Opened::kReattached);
}

TEST(Segment, AttachSeesTheAgentsSegment) {
  TestQueue q;
  auto agent = open_agent(q.str());
  ASSERT_NE(agent, nullptr);
  auto r = Segment::attach(q.str());
  ASSERT_TRUE(r) << r.error().message;
  Segment& client = **r;
  EXPECT_EQ(client.geometry().total_bytes, agent->geometry().total_bytes);
  EXPECT_EQ(client.geometry().off_slots, agent->geometry().off_slots);

  // Two mappings of the same memory: a push on one pops on the other.
  ASSERT_EQ(client.band(Band::kHigh).try_push(7), BandRing::PushResult::kOk);
  const auto p = agent->band(Band::kHigh).try_pop();
  ASSERT_EQ(p.kind, BandRing::PopKind::kValue);
  EXPECT_EQ(p.value, 7u);
  client.record(15).request_id = 99;
  EXPECT_EQ(agent->record(15).request_id, 99u);
}

TEST(Segment, AttachWithoutAnAgentReportsAgentUnavailable) {
  TestQueue q;
  auto r = Segment::attach(q.str());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), Errc::kAgentUnavailable);
  EXPECT_TRUE(contains(r.error().message, q.str()));
}

TEST(Segment, InvalidQueueNamesAreRefused) {
  for (const char* name : {"", ".hidden", "a/b", "../etc", "sp ace", "x\n"}) {
    auto r = Segment::attach(name);
    ASSERT_FALSE(r) << "`" << name << "`";
    EXPECT_EQ(r.code(), Errc::kInvalidRequest) << "`" << name << "`";
    Segment::Opened how{};
    auto a = Segment::open_for_agent(name, small_options(), how);
    ASSERT_FALSE(a) << "`" << name << "`";
    EXPECT_EQ(a.code(), Errc::kInvalidRequest);
  }
  EXPECT_FALSE(valid_queue_name(std::string(65, 'q')));
  EXPECT_TRUE(valid_queue_name(std::string(64, 'q')));
  EXPECT_TRUE(valid_queue_name("orders-v2.eu_1"));
  EXPECT_EQ(segment_name("orders"), "perfq-orders");
}

struct Corruption {
  const char* what;
  std::function<void(SegmentHeader&)> apply;
  const char* message_names;
};

class SegmentAttachCorrupt : public ::testing::TestWithParam<int> {};

const Corruption kCorruptions[] = {
    {"magic", [](SegmentHeader& h) { h.magic ^= 1; }, "magic"},
    {"layout_version", [](SegmentHeader& h) { h.layout_version = kLayoutVersion + 1; },
     "layout version"},
    {"header_bytes", [](SegmentHeader& h) { h.header_bytes += 8; }, "header size"},
    {"layout_hash", [](SegmentHeader& h) { h.layout_hash ^= 0x100; }, "layout hash"},
    {"slot_count_zero", [](SegmentHeader& h) { h.slot_count = 0; }, "slot count"},
    {"slot_count_huge", [](SegmentHeader& h) { h.slot_count = kMaxSlotsLimit + 1; }, "slot count"},
    {"max_clients_zero", [](SegmentHeader& h) { h.max_clients = 0; }, "client count"},
    {"payload_huge", [](SegmentHeader& h) { h.slot_payload_bytes = (1u << 24) + 1; },
     "payload size"},
    {"slot_count_reshapes_regions", [](SegmentHeader& h) { h.slot_count = 4000; },
     "region offsets"},
    {"off_slots", [](SegmentHeader& h) { h.off_slots += kCacheLine; }, "region offsets"},
    {"total_bytes", [](SegmentHeader& h) { h.total_bytes += kCacheLine; }, "size"},
};

TEST_P(SegmentAttachCorrupt, AttachRefusesNamingTheFailedCheck) {
  const Corruption& c = kCorruptions[GetParam()];
  TestQueue q;
  auto agent = open_agent(q.str());
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(Segment::attach(q.str())) << "the intact segment attaches";
  c.apply(agent->header());

  auto r = Segment::attach(q.str());
  ASSERT_FALSE(r) << c.what;
  EXPECT_EQ(r.code(), Errc::kSegmentInvalid) << c.what;
  EXPECT_TRUE(contains(r.error().message, c.message_names))
      << c.what << ": message `" << r.error().message << "` should name `" << c.message_names
      << "`";
}

INSTANTIATE_TEST_SUITE_P(HeaderFields, SegmentAttachCorrupt,
                         ::testing::Range(0, static_cast<int>(std::size(kCorruptions))),
                         [](const auto& p) { return std::string(kCorruptions[p.param].what); });

TEST(Segment, SlotCountThatOnlyChangesTheNeededSizeIsRefusedNamingThatSize) {
  // slot_count 60 -> 61: ring capacities (64), control-word and hint arrays
  // (rounded to 128 bytes) and so every region offset stay the same; only
  // the size the geometry needs grows by one slot.
  TestQueue q;
  CreateOptions opt = small_options();
  opt.slot_count = 60;
  auto agent = open_agent(q.str(), opt);
  ASSERT_NE(agent, nullptr);
  const Geometry now = compute_geometry(60, 64, 4);
  const Geometry bad = compute_geometry(61, 64, 4);
  ASSERT_EQ(bad.off_slots, now.off_slots) << "precondition: only the size differs";
  ASSERT_EQ(bad.band_ring_capacity, now.band_ring_capacity);
  ASSERT_GT(bad.total_bytes, now.total_bytes);

  agent->header().slot_count = 61;
  auto r = Segment::attach(q.str());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), Errc::kSegmentInvalid);
  // The check that failed compares the header's total_bytes with the size
  // the header's geometry needs; the message must show that needed size
  // (today it prints the header's size and the mapping's size, which agree).
  EXPECT_TRUE(contains(r.error().message, std::to_string(bad.total_bytes)))
      << "message `" << r.error().message << "` does not name the size " << bad.total_bytes
      << " that 61 slots need";
}

TEST(Segment, AgentRefusesToReattachToACorruptSegment) {
  TestQueue q;
  auto agent = open_agent(q.str());
  ASSERT_NE(agent, nullptr);
  agent->header().layout_hash ^= 1;
  agent.reset();  // releases the lock; the corrupt segment stays

  Segment::Opened how{};
  auto r = Segment::open_for_agent(q.str(), small_options(), how);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), Errc::kSegmentInvalid);
  EXPECT_TRUE(contains(r.error().message, "layout hash")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "destroy")) << "tells the operator the way out";
}

// The lock word of event entry `index`.
uint64_t& event_lock(Segment& seg, uint32_t index) {
  auto* base = reinterpret_cast<std::byte*>(&seg.header());
  auto* entries =
      reinterpret_cast<Event*>(base + seg.geometry().off_events + sizeof(EventRingHeader));
  return entries[index].seq_word;
}

// A dead agent's half-written event at the ring's tail: the next agent
// repairs its lock, so a reader a lap behind learns it lost that event
// instead of waiting for the next one, and the reader at the tail waits.
TEST(Segment, TakeoverRepairsTheEventLeftMidWriteAtTheTail) {
  TestQueue q;
  auto agent = open_agent(q.str());
  ASSERT_NE(agent, nullptr);
  EventRing ring = agent->events();
  const uint32_t cap = ring.capacity();
  ASSERT_GE(cap, 2u);
  Event ev{};
  for (uint32_t i = 0; i < cap; ++i) {
    ev.request_id = i + 1;
    ring.publish(ev);
  }
  // Killed while writing position cap, over the event at position 0.
  aref(event_lock(*agent, 0)).store(EventRing::kWriting, std::memory_order_release);
  Event out{};
  EXPECT_EQ(ring.read(0, out), EventRing::Read::kNotYet) << "held until the next event";
  agent.reset();

  auto next = open_agent(q.str());
  ASSERT_NE(next, nullptr);
  EventRing again = next->events();
  EXPECT_EQ(again.tail(), cap);
  EXPECT_EQ(again.read(0, out), EventRing::Read::kLost);
  EXPECT_EQ(again.read(cap, out), EventRing::Read::kNotYet);
  EXPECT_EQ(again.read(1, out), EventRing::Read::kEvent);
  EXPECT_EQ(out.request_id, 2u);
  ev.request_id = 99;
  again.publish(ev);
  ASSERT_EQ(again.read(cap, out), EventRing::Read::kEvent);
  EXPECT_EQ(out.request_id, 99u);
}

// A status entry a dead agent left half-written is emptied by the next one:
// readable again, and matching no request.
TEST(Segment, TakeoverEmptiesTheStatusEntryLeftMidWrite) {
  TestQueue q;
  auto agent = open_agent(q.str());
  ASSERT_NE(agent, nullptr);
  StatusEntry e{};
  e.request_id = 5;
  e.status = static_cast<uint8_t>(Status::kCompleted);
  record_final(*agent, e);
  ASSERT_TRUE(lookup_status(*agent, 5, Caller{.user_id = "", .admin = true}));
  StatusEntry& dst = agent->status_entry(5);
  aref(dst.seq).fetch_add(1, std::memory_order_acq_rel);  // killed mid-write
  agent.reset();

  auto next = open_agent(q.str());
  ASSERT_NE(next, nullptr);
  StatusEntry& repaired = next->status_entry(5);
  EXPECT_EQ(load_relaxed(repaired.seq) % 2, 0u);
  EXPECT_EQ(load_relaxed(repaired.request_id), 0u);
  EXPECT_EQ(lookup_status(*next, 5, Caller{.user_id = "", .admin = true}).code(), Errc::kNotFound);
  record_final(*next, e);
  EXPECT_TRUE(lookup_status(*next, 5, Caller{.user_id = "", .admin = true}));
}

TEST(Segment, SegmentNeverInitialisedIsRefusedByAttachAndFormattedByTheNextAgent) {
  // A creator that died between creating the object and sizing it.
  TestQueue q;
  const std::string name = "/" + segment_name(q.str());
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 100), 0);
  ::close(fd);

  auto r = Segment::attach(q.str());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), Errc::kSegmentInvalid);
  EXPECT_TRUE(contains(r.error().message, "smaller than its header")) << r.error().message;

  // The next agent, holding the lock, knows nobody can have attached to an
  // unpublished segment: it formats it instead of refusing to start.
  Segment::Opened how{};
  auto a = Segment::open_for_agent(q.str(), small_options(), how);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(how, Segment::Opened::kCreated);
  EXPECT_TRUE(Segment::attach(q.str()));
}

TEST(Segment, SegmentZeroedButSizedHasBadMagic) {
  // A creator that died after sizing, before storing magic (stored last).
  TestQueue q;
  const std::string name = "/" + segment_name(q.str());
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(compute_geometry(16, 64, 4).total_bytes)), 0);
  ::close(fd);

  auto r = Segment::attach(q.str());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), Errc::kSegmentInvalid);
  EXPECT_TRUE(contains(r.error().message, "magic")) << r.error().message;

  Segment::Opened how{};
  auto a = Segment::open_for_agent(q.str(), small_options(), how);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(how, Segment::Opened::kCreated);
}

TEST(Segment, RemoveUnlinksTheNameButKeepsExistingMappings) {
  TestQueue q;
  auto agent = open_agent(q.str());
  ASSERT_NE(agent, nullptr);
  EXPECT_TRUE(Segment::remove(q.str()));
  EXPECT_FALSE(Segment::remove(q.str())) << "nothing left to remove";

  struct stat st {};
  EXPECT_NE(::stat(q.path().c_str(), &st), 0);
  auto r = Segment::attach(q.str());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), Errc::kAgentUnavailable);

  ASSERT_EQ(agent->band(Band::kLow).try_push(3), BandRing::PushResult::kOk);
  EXPECT_EQ(agent->band(Band::kLow).try_pop().value, 3u);
}

}  // namespace
}  // namespace perfq::shm
