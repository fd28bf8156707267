#pragma once
// One agent's control plane without its data plane, made once per fuzzer
// process: a journal in a temporary data dir (holding a few dead letters), a
// small segment of its own queue, AdminOps over both, a tokens file with one
// user and one admin token, and HttpApi. Nothing drains the segment, so a
// submit succeeds until the slots are taken, then answers QUEUE_FULL at
// once (the API is stopped: no submit waits for room).
#include <memory>
#include <string>
#include <string_view>

#include "control/admin_ops.hpp"
#include "http/auth.hpp"
#include "http/routes.hpp"
#include "journal/journal.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::fuzz {

inline constexpr const char* kUserToken = "pq_fuzz_user_token";
inline constexpr const char* kAdminToken = "pq_fuzz_admin_token";

struct Fixture {
  static Fixture& get();  // made on first use; removed at exit

  std::string data_dir;
  std::string queue;
  std::unique_ptr<agent::Journal> journal;
  std::shared_ptr<shm::Segment> seg;
  std::unique_ptr<agent::AdminOps> ops;
  agent::TokenStore tokens;
  std::unique_ptr<agent::HttpApi> api;
};

// One connection's exchange as a client: sends `in`, shuts its sending side
// (the server sees the end of the request stream), then reads until the
// server closes or `timeout_ms` passes. Returns what came back; closes fd.
std::string exchange(int fd, std::string_view in, int timeout_ms);

}  // namespace perfq::fuzz
