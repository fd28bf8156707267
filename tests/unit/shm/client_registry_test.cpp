#include "perfq/shm/client_registry.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iterator>
#include <set>
#include <string>

#include "harness.hpp"
#include "perfq/shm/liveness.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::shm {
namespace {

constexpr uint32_t kMaxClients = 4;
constexpr auto kChildBound = std::chrono::seconds(30);

// A segment of its own for each test, removed at the end.
class ClientRegistry : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<uint32_t> seq{0};
    char name[48];
    std::snprintf(name, sizeof name, "u%d-reg%u", static_cast<int>(::getpid()),
                  seq.fetch_add(1, std::memory_order_relaxed));
    queue_ = name;
    Segment::remove(queue_);
    CreateOptions opt;
    opt.slot_count = 16;
    opt.slot_payload_bytes = 64;
    opt.max_clients = kMaxClients;
    Segment::Opened how{};
    auto r = Segment::open_for_agent(queue_, opt, how);
    ASSERT_TRUE(r) << r.error().message;
    seg_ = std::move(r).value();
  }
  void TearDown() override {
    seg_.reset();
    Segment::remove(queue_);
  }

  ClientState state(uint32_t id) { return state_of(seg_->client(id).state); }

  std::string queue_;
  std::unique_ptr<Segment> seg_;
};

TEST_F(ClientRegistry, RegisterTakesDistinctIdsUntilMaxClientsThenFails) {
  std::set<uint32_t> ids;
  for (uint32_t i = 0; i < kMaxClients; ++i) {
    auto r = register_client(*seg_, kRoleProducer);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_LT(*r, kMaxClients);
    EXPECT_TRUE(ids.insert(*r).second) << "id " << *r << " handed out twice";
    EXPECT_EQ(state(*r), ClientState::kRegistering);
  }
  auto r = register_client(*seg_, kRoleProducer);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), Errc::kAgentUnavailable);
  EXPECT_NE(r.error().message.find(std::to_string(kMaxClients)), std::string::npos)
      << r.error().message;
}

TEST_F(ClientRegistry, RegisterRecordsWhoTheClientIs) {
  auto r = register_client(*seg_, kRoleProducer | kRoleWorker);
  ASSERT_TRUE(r);
  const ClientRecord& c = seg_->client(*r);
  EXPECT_EQ(c.pid, static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(c.start_ticks, self_start_ticks());
  EXPECT_EQ(c.roles, kRoleProducer | kRoleWorker);
  EXPECT_EQ(c.incarnation, 1u);
  EXPECT_EQ(c.type_count, 0u);
}

TEST_F(ClientRegistry, RegisterResetsTheRingsALeftoverRecordHeld) {
  // Leftovers of a previous client of record 0, already freed by the agent.
  ClientRecord& c = seg_->client(0);
  c.completion.tail = 5;
  c.dispatch.head = 3;
  c.result.tail = 9;
  c.incarnation = 41;
  auto r = register_client(*seg_, kRoleWorker);
  ASSERT_TRUE(r);
  ASSERT_EQ(*r, 0u);
  EXPECT_EQ(c.completion.tail, 0u);
  EXPECT_EQ(c.dispatch.head, 0u);
  EXPECT_EQ(c.result.tail, 0u);
  EXPECT_EQ(c.incarnation, 42u) << "each registration of a record is a new incarnation";
  uint64_t out = 0;
  EXPECT_FALSE(seg_->completion_ring(0).try_pop(out));
  EXPECT_TRUE(seg_->result_ring(0).try_push(1));
}

TEST_F(ClientRegistry, ActivatePublishesTheRecord) {
  auto r = register_client(*seg_, kRoleProducer);
  ASSERT_TRUE(r);
  ASSERT_TRUE(activate_client(*seg_, *r));
  EXPECT_EQ(state(*r), ClientState::kActive);
}

TEST_F(ClientRegistry, FreeRecordIsNotGone) {
  EXPECT_FALSE(client_gone(*seg_, 0));
  EXPECT_FALSE(client_gone(*seg_, kMaxClients - 1));
}

TEST_F(ClientRegistry, LiveClientIsNotGone) {
  auto r = register_client(*seg_, kRoleProducer);
  ASSERT_TRUE(r);
  EXPECT_FALSE(client_gone(*seg_, *r)) << "while registering";
  ASSERT_TRUE(activate_client(*seg_, *r));
  EXPECT_FALSE(client_gone(*seg_, *r)) << "while active";
}

TEST_F(ClientRegistry, ClosedClientIsGoneAndKeepsItsRecordUntilTheAgentFreesIt) {
  std::set<uint32_t> ids;
  for (uint32_t i = 0; i < kMaxClients; ++i) {
    auto r = register_client(*seg_, kRoleProducer);
    ASSERT_TRUE(r);
    ids.insert(*r);
  }
  const uint32_t id = *ids.begin();
  ASSERT_TRUE(activate_client(*seg_, id));
  close_client(*seg_, id);
  EXPECT_EQ(state(id), ClientState::kClosing);
  EXPECT_TRUE(client_gone(*seg_, id));
  EXPECT_FALSE(register_client(*seg_, kRoleProducer))
      << "only the agent returns a closed record to the free list";
}

TEST_F(ClientRegistry, ClientWhoseProcessExitedIsGone) {
  // The child registers and exits without closing (a crash).
  test::Child child([&] {
    auto s = Segment::attach(queue_);
    if (!s) return 1;
    auto r = register_client(**s, kRoleProducer);
    if (!r) return 2;
    if (!activate_client(**s, *r)) return 3;
    return 0;
  });
  ASSERT_EQ(child.wait(kChildBound), 0);
  uint32_t id = kMaxClients;
  for (uint32_t i = 0; i < kMaxClients; ++i) {
    if (state(i) == ClientState::kActive) id = i;
  }
  ASSERT_LT(id, kMaxClients) << "the child's record is active";
  EXPECT_NE(seg_->client(id).pid, static_cast<uint32_t>(::getpid()));
  EXPECT_TRUE(client_gone(*seg_, id));
}

// A child that registers, activates, tells the parent, and waits to be
// killed; `rewrite` runs on its record first.
test::Child registered_child(const std::string& queue, test::Signal& ready,
                             const std::function<void(ClientRecord&)>& rewrite) {
  return test::Child([&queue, &ready, rewrite] {
    auto s = Segment::attach(queue);
    if (!s) return 1;
    auto r = register_client(**s, kRoleProducer);
    if (!r || !activate_client(**s, *r)) return 2;
    rewrite((*s)->client(*r));
    ready.notify();
    for (;;) ::pause();
  });
}

uint32_t active_record(Segment& seg) {
  for (uint32_t i = 0; i < kMaxClients; ++i) {
    if (state_of(seg.client(i).state) == ClientState::kActive) return i;
  }
  return kMaxClients;
}

// A client in another PID namespace: its pid means nothing here and /proc
// has no entry for it. Its liveness lock says it lives, and its death
// frees the lock.
TEST_F(ClientRegistry, AClientOfAnotherPidNamespaceLivesByItsLockAndDiesWithIt) {
  test::Signal ready;
  uint32_t absent = 4'000'000;  // a pid no process here has
  while (::kill(static_cast<pid_t>(absent), 0) == 0 || errno != ESRCH) ++absent;
  test::Child child = registered_child(queue_, ready, [absent](ClientRecord& c) {
    c.pid = absent;
    c.pid_ns = self_pid_ns() + 1;
  });
  ASSERT_EQ(ready.wait(kChildBound), 1);
  const uint32_t id = active_record(*seg_);
  ASSERT_LT(id, kMaxClients);
  EXPECT_FALSE(client_gone(*seg_, id)) << "a live client of another namespace was judged dead";
  child.kill(SIGKILL);
  ASSERT_EQ(child.wait(kChildBound), 128 + SIGKILL);
  EXPECT_TRUE(client_gone(*seg_, id)) << "its lock went with it";
}

// SIGSTOP stops a process; it does not end it.
TEST_F(ClientRegistry, AStoppedClientIsNotGone) {
  test::Signal ready;
  test::Child child = registered_child(queue_, ready, [](ClientRecord&) {});
  ASSERT_EQ(ready.wait(kChildBound), 1);
  const uint32_t id = active_record(*seg_);
  ASSERT_LT(id, kMaxClients);
  child.kill(SIGSTOP);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child.pid()), &info, WSTOPPED | WNOWAIT), 0);
  EXPECT_FALSE(client_gone(*seg_, id)) << "a stopped client was judged dead";
  child.kill(SIGKILL);
  ASSERT_EQ(child.wait(kChildBound), 128 + SIGKILL);
  EXPECT_TRUE(client_gone(*seg_, id));
}

// The registrant holds the record's lock from before its CAS (so the agent
// reads a free lock under a registering word as a death) until it closes.
TEST_F(ClientRegistry, ARegisteringRecordHoldsItsLock) {
  auto r = register_client(*seg_, kRoleProducer);
  ASSERT_TRUE(r);
  EXPECT_EQ(seg_->probe_client_lock(*r), LockProbe::kHeld);
  ASSERT_TRUE(activate_client(*seg_, *r));
  EXPECT_EQ(seg_->probe_client_lock(*r), LockProbe::kHeld);
  close_client(*seg_, *r);
  EXPECT_EQ(seg_->probe_client_lock(*r), LockProbe::kFree) << "a closed client keeps no lock";
}

TEST_F(ClientRegistry, ClientWithAReusedPidIsGone) {
  auto r = register_client(*seg_, kRoleProducer);
  ASSERT_TRUE(r);
  ASSERT_TRUE(activate_client(*seg_, *r));
  seg_->client(*r).start_ticks += 1;  // same pid, another process start
  EXPECT_TRUE(client_gone(*seg_, *r));
}

TEST_F(ClientRegistry, WorkerDeclaresUpToSixteenTypes) {
  auto r = register_client(*seg_, kRoleWorker);
  ASSERT_TRUE(r);
  for (uint32_t i = 0; i < kMaxTypesPerWorker; ++i) {
    char type[16];
    std::snprintf(type, sizeof type, "type.%u", i);
    ASSERT_TRUE(add_client_type(*seg_, *r, type, i % 2 == 1)) << i;
    const TypeName& t = seg_->client(*r).types[i];
    EXPECT_EQ(std::string_view(t.text, t.len), type);
    EXPECT_EQ(t.batch, i % 2);
  }
  EXPECT_EQ(seg_->client(*r).type_count, kMaxTypesPerWorker);
  auto extra = add_client_type(*seg_, *r, "one.too.many", false);
  ASSERT_FALSE(extra);
  EXPECT_EQ(extra.code(), Errc::kInvalidRequest);
  EXPECT_EQ(seg_->client(*r).type_count, kMaxTypesPerWorker);
}

TEST_F(ClientRegistry, AddClientTypeRefusesATypeThatDoesNotFitItsRecord) {
  // TypeName::text holds 64 bytes; a longer type must be refused, not copied
  // over the record's neighbouring bytes.
  auto r = register_client(*seg_, kRoleWorker);
  ASSERT_TRUE(r);
  ClientRecord& c = seg_->client(*r);
  std::fill(std::begin(c.types[0].reserved), std::end(c.types[0].reserved), uint8_t{0xAB});
  const std::string too_long(kTypeMaxBytes + 1, 't');

  auto added = add_client_type(*seg_, *r, too_long, false);
  EXPECT_FALSE(added) << "a 65-byte type was accepted";
  EXPECT_EQ(added.code(), Errc::kInvalidRequest);
  EXPECT_EQ(c.type_count, 0u);
  EXPECT_EQ(c.types[0].reserved[0], 0xAB) << "the copy ran past TypeName::text";
}

TEST_F(ClientRegistry, ARegistrationTakenBackCannotActivateAndJoinRegistersAgain) {
  auto r = register_client(*seg_, kRoleProducer);
  ASSERT_TRUE(r);
  EXPECT_NE(seg_->client(*r).pid, 0u);
  // The agent takes the stalled registration back: the record is free with
  // its pid cleared, and the late activate fails instead of reviving it.
  ASSERT_TRUE(take_back_registering(*seg_, *r, seg_->client(*r).state));
  EXPECT_EQ(state(*r), ClientState::kFree);
  EXPECT_EQ(seg_->client(*r).pid, 0u);
  EXPECT_FALSE(activate_client(*seg_, *r));
  EXPECT_EQ(state(*r), ClientState::kFree);
  // An active record is never taken back.
  auto j = join(*seg_, kRoleProducer);
  ASSERT_TRUE(j);
  EXPECT_EQ(state(*j), ClientState::kActive);
  EXPECT_FALSE(take_back_registering(*seg_, *j, registering_word(seg_->client(*j).pid)));
  EXPECT_EQ(state(*j), ClientState::kActive);
}

// Issue 13, defect 7: a registrant stalled past the agent's bound had its
// record taken back; another process registered it; the first one's
// activation CAS (Registering -> Active) then activated the other's
// registration. The state word names its registrant now: a stale
// activation fails.
TEST_F(ClientRegistry, AStaleRegistrantCannotActivateAnotherProcesssRegistration) {
  auto r = register_client(*seg_, kRoleProducer);
  ASSERT_TRUE(r);
  ClientRecord& c = seg_->client(*r);
  // The registration is taken back, and another process (pid 1, as far as
  // the record can tell) registers the same record.
  ASSERT_TRUE(take_back_registering(*seg_, *r, c.state));
  uint32_t expected = static_cast<uint32_t>(ClientState::kFree);
  ASSERT_TRUE(aref(c.state).compare_exchange_strong(expected, registering_word(1)));
  EXPECT_FALSE(activate_client(*seg_, *r)) << "activated another process's registration";
  EXPECT_EQ(load_relaxed(c.state), registering_word(1));
}

TEST(ClientStateWord, RegisteringWordsNameTheirRegistrantAndReadAsRegistering) {
  for (const uint32_t pid : {1u, 4194304u}) {
    EXPECT_EQ(state_of(registering_word(pid)), ClientState::kRegistering);
    EXPECT_EQ(registrant_of(registering_word(pid)), pid);
    EXPECT_TRUE(known_state_word(registering_word(pid)));
  }
  EXPECT_TRUE(known_state_word(static_cast<uint32_t>(ClientState::kEvicted)));
  EXPECT_FALSE(known_state_word(77));
}

TEST_F(ClientRegistry, ARecordStillRegisteringIsNotJudgedGone) {
  auto r = register_client(*seg_, kRoleWorker);
  ASSERT_TRUE(r);
  seg_->client(*r).pid = 0;  // as seen between the CAS and the pid store
  EXPECT_FALSE(client_gone(*seg_, *r));
}

}  // namespace
}  // namespace perfq::shm
