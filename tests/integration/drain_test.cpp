// Drain (issue 15): an agent asked to drain (perfqctl drain, the admin
// socket's "drain", or SIGTERM with drain_timeout_ms) admits nothing new,
// finishes what it holds within its bound, then exits and says what was
// left.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "control/admin_client.hpp"
#include "daemon_test.hpp"
#include "harness.hpp"
#include "perfq/core/atomic.hpp"
#include "perfq/perfq.hpp"
#include "perfq/shm/rejections.hpp"
#include "temp_dir.hpp"

namespace perfq {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

using test::slurp;

class Drain : public test::DaemonTest {
 protected:
  // `n` requests of `type`, pending (no worker of the type yet).
  std::vector<Future> submit_pending(Producer& p, const std::string& type, int n) {
    std::vector<Future> out;
    for (int i = 0; i < n; ++i) {
      auto s = p.try_submit(test::make_request(type, "alice", "{}"));
      EXPECT_TRUE(s.ok()) << s.error().message;
      if (s.ok()) out.push_back(std::move(s->outcome));
    }
    return out;
  }
  bool draining() { return shm::agent_draining(seg_->header()); }
  json admin(const json& req) {
    auto r = agent::admin_call(cfg_.data_dir + "/agent.sock", req);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : json();
  }
  // The audit log's agent.stop line.
  json stop_line() {
    std::istringstream lines(slurp(cfg_.data_dir + "/audit.log"));
    for (std::string line; std::getline(lines, line);) {
      const json a = json::parse(line, nullptr, false);
      if (a.is_object() && a.value("event", std::string()) == "agent.stop") return a;
    }
    return json();
  }
  void start_echo_worker(const std::string& type) {
    test::Signal ready;
    worker_ = test::spawn_worker(
        q_.str(), type, [](const Job&) { return Reply::ok(); }, &ready);
    ASSERT_EQ(ready.wait(10s), 1);
  }
};

TEST_F(Drain, ADrainRefusesNewRequestsFinishesWhatItHoldsAndExits) {
  start_daemon();
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok()) << p.error().message;
  std::vector<Future> held = submit_pending(**p, "slow", 20);
  const json answer = admin({{"op", "drain"}, {"timeoutMs", 60000}});
  EXPECT_EQ(answer.value("draining", false), true) << answer.dump();
  ASSERT_TRUE(test::eventually([&] { return draining(); }, 10s));

  // New requests are refused at once, with the reason, and counted as such.
  const uint64_t before = shm::rejections(seg_->header(), shm::RejectReason::kDraining);
  auto refused = (*p)->submit(test::make_request("slow", "bob", "{}"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kQueueFull);
  EXPECT_EQ(refused.error().message, refusal::kDraining);
  EXPECT_EQ(shm::rejections(seg_->header(), shm::RejectReason::kDraining), before + 1);

  // What it held is finished once a worker comes; then it exits on its own.
  start_echo_worker("slow");
  for (auto& f : held) {
    ASSERT_TRUE(f.wait_for(30s));
    EXPECT_EQ(f.get().status, Status::kCompleted);
  }
  EXPECT_EQ(daemon_.wait(30s), 0);
  EXPECT_EQ(load_relaxed(seg_->header().agent_state),
            static_cast<uint32_t>(shm::AgentState::kStopped));
  const json stop = stop_line();
  EXPECT_EQ(stop.value("left", -1), 0) << stop.dump();
  EXPECT_EQ(stop.value("drained", false), true) << stop.dump();
}

TEST_F(Drain, ADrainEndsAtItsBoundAndSaysWhatWasLeft) {
  start_daemon();
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok()) << p.error().message;
  std::vector<Future> held = submit_pending(**p, "nobody", 5);  // no worker ever comes
  (void)admin({{"op", "drain"}, {"timeoutMs", 200}});
  EXPECT_EQ(daemon_.wait(30s), 0);
  const json stop = stop_line();
  EXPECT_EQ(stop.value("left", -1), 5) << stop.dump();
  EXPECT_EQ(stop.value("drained", true), false) << stop.dump();
  // Left in the segment, for the next agent: none of them was finished.
  for (auto& f : held) EXPECT_FALSE(f.ready());
}

TEST_F(Drain, SigtermDrainsFirstWithDrainTimeoutMs) {
  cfg_.drain_timeout_ms = 60000;
  start_daemon();
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok()) << p.error().message;
  std::vector<Future> held = submit_pending(**p, "slow", 3);
  daemon_.kill(SIGTERM);
  ASSERT_TRUE(test::eventually([&] { return draining(); }, 10s));
  start_echo_worker("slow");
  for (auto& f : held) {
    ASSERT_TRUE(f.wait_for(30s));
    EXPECT_EQ(f.get().status, Status::kCompleted);
  }
  EXPECT_EQ(daemon_.wait(30s), 0);
  EXPECT_EQ(stop_line().value("drained", false), true);
}

// perfqctl drain waits for the agent's exit and says what was left; its
// exit code says whether anything was.
TEST_F(Drain, PerfqctlDrainWaitsForTheExitAndSaysWhatWasLeft) {
  start_daemon();
  start_echo_worker("fast");
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok()) << p.error().message;
  std::vector<Future> done = submit_pending(**p, "fast", 3);
  const test::ToolRun r =
      test::run_tool({PERFQCTL_PATH, "drain", "--queue", q_.str(), "--timeout", "20s"});
  EXPECT_EQ(r.exit, 0) << r.out;
  EXPECT_NE(r.out.find("drained: the agent exited with nothing left"), std::string::npos) << r.out;
  for (auto& f : done) {
    ASSERT_TRUE(f.wait_for(10s));
    EXPECT_EQ(f.get().status, Status::kCompleted);
  }
  EXPECT_EQ(daemon_.wait(10s), 0);
}

TEST_F(Drain, PerfqctlDrainExitsOneWhenRequestsAreLeft) {
  start_daemon();
  auto p = Producer::connect(q_.str());
  ASSERT_TRUE(p.ok()) << p.error().message;
  std::vector<Future> held = submit_pending(**p, "nobody", 2);
  const test::ToolRun r =
      test::run_tool({PERFQCTL_PATH, "--json", "drain", "--queue", q_.str(), "--timeout", "100ms"});
  EXPECT_EQ(r.exit, 1) << r.out;
  const json body = json::parse(r.out.substr(r.out.rfind('{')), nullptr, false);
  EXPECT_EQ(body.value("left", -1), 2) << r.out;
  EXPECT_EQ(body.value("drained", true), false) << r.out;
  EXPECT_EQ(daemon_.wait(10s), 0);
  // Without an agent there is nothing to drain.
  const test::ToolRun again = test::run_tool({PERFQCTL_PATH, "drain", "--queue", q_.str()});
  EXPECT_EQ(again.exit, 1) << again.out;
}

TEST_F(Drain, ABadDrainRequestIsRefused) {
  start_daemon();
  for (const json& bad :
       {json{{"op", "drain"}, {"timeoutMs", 0}}, json{{"op", "drain"}, {"timeoutMs", "soon"}},
        json{{"op", "drain"}, {"timeoutMs", -5}}}) {
    EXPECT_EQ(admin(bad).value("statusCode", 0), 400) << bad.dump();
  }
  EXPECT_FALSE(draining());
}

}  // namespace
}  // namespace perfq
