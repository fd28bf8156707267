#pragma once
// A googletest fixture for tests of the whole agent (test::spawn_daemon) on
// a queue and data dir of their own: SetUp makes the settings and the dir,
// start_daemon() runs the agent and attaches its segment, TearDown stops the
// worker and the agent (SIGTERM, bounded waits) and removes the dir.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "harness.hpp"

namespace perfq::test {

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = test_config(q_.str());
    std::filesystem::remove_all(cfg_.data_dir);
    std::filesystem::create_directories(cfg_.data_dir);
  }
  void TearDown() override {
    for (Child* c : {&worker_, &daemon_}) {
      if (c->pid() > 0) {
        c->kill(SIGTERM);
        (void)c->wait(std::chrono::seconds(20));
      }
    }
    std::filesystem::remove_all(cfg_.data_dir);
  }
  void start_daemon(const agent::DaemonHooks& hooks = {}) {
    daemon_ = spawn_daemon(cfg_, hooks);
    auto seg = shm::Segment::attach(q_.str());
    ASSERT_TRUE(seg.ok()) << seg.error().message;
    seg_ = std::move(*seg);
  }

  QueueName q_;
  agent::Config cfg_;
  Child daemon_;
  Child worker_;  // stopped before the agent
  std::unique_ptr<shm::Segment> seg_;
};

}  // namespace perfq::test
