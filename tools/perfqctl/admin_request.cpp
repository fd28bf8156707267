#include "admin_request.hpp"

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "control/admin_client.hpp"
#include "control/wire_json.hpp"
#include "flags.hpp"
#include "journal/files.hpp"
#include "output.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::ctl {

namespace {

// The agent's error body, as perfqctl prints an error.
int print_refusal(bool json, const nlohmann::json& body) {
  if (json) {
    print_json(body);
  } else {
    const std::string code = body.contains("error") ? text(body["error"]) : "INTERNAL";
    std::fprintf(stderr, "perfqctl: %s: %s\n", code.c_str(),
                 body.contains("message") ? text(body["message"]).c_str() : "");
  }
  return 1;
}

}  // namespace

int admin_request(shm::Segment& seg, const nlohmann::json& request, bool json, uint64_t timeout_ms,
                  nlohmann::json& out) {
  const auto& h = seg.header();
  const std::string path(h.socket_path, strnlen(h.socket_path, sizeof h.socket_path));
  if (!seg.agent_alive()) {
    if (request.value("op", std::string()) == "dlq.verify") {
      const std::string data_dir = std::filesystem::path(path).parent_path().string();
      auto report = agent::verify_journal(data_dir);
      if (!report) return fail(json, report.error());
      out = agent::report_json(*report);
      return 0;
    }
    return fail(json, Errc::kAgentUnavailable,
                "the agent of queue " + seg.queue() + " is not running");
  }
  // The path is the segment's, which any member can rewrite: only the
  // segment owner's (the agent's) socket gets an operator's command.
  const uint64_t start_ns = mono_now_ns();
  auto answer = agent::admin_call(path, request, timeout_ms, seg.owner_uid());
  if (!answer) {
    // admin_call says "closed" also when its read ran out of time: the
    // clock tells them apart (the read ends early only on an answer or a
    // close, and counts its deadline in whole milliseconds).
    if (mono_now_ns() - start_ns + 1'000'000 >= timeout_ms * 1'000'000) {
      return timed_out(json, "no answer from the agent to " + request.value("op", std::string()) +
                                 " within " + duration_text(timeout_ms) + " (admin socket " + path +
                                 ")");
    }
    return fail(json, answer.error());
  }
  if (agent::is_error_body(*answer)) return print_refusal(json, *answer);
  out = std::move(*answer);
  return 0;
}

int admin_request(const std::string& queue, const nlohmann::json& request, bool json,
                  uint64_t timeout_ms, nlohmann::json& out) {
  auto seg = shm::Segment::attach(queue);
  if (!seg) return fail(json, seg.error());
  return admin_request(**seg, request, json, timeout_ms, out);
}

}  // namespace perfq::ctl
