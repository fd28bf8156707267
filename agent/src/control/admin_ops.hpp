#pragma once
// The verbs behind the admin socket (admin_socket.hpp) and the HTTP admin
// routes, one member each, found by name in a table (admin_ops.cpp):
//
//   op           answer                           audited
//   health       SPEC §5 health (observe.hpp)     no
//   metrics      SPEC §5 metrics {period}         no
//   dlq.list     {entries, unreviewed}            no
//   dlq.verify   report_json                      no
//   dlq.show     dlq_json with the payload        yes
//   dlq.review   reviewed_json                    yes
//   dlq.replay   replayed_json                    yes
//   cancel       cancelled_json (an admin cancel  yes
//                of any user's pending request)
//   drain        {draining, timeoutMs}: admit     yes
//                nothing new, finish, then exit
//                {timeoutMs} (Conductor::request_drain)
//
// The reads change nothing and show no payload (a scraper would fill the
// log); every other request, an unknown op included, goes to the audit log
// with its outcome (event = the verb's name from the table; an unknown op is
// event "admin.unknown_op" with the op, sanitized, as a field), refused
// connections too (coalesced per uid per second; flush_audit() writes what
// is still coalesced at shutdown). Answers are wire_json's bodies or SPEC's error body.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <unordered_map>

#include "control/admin_socket.hpp"
#include "control/observe.hpp"
#include "perfq/core/result.hpp"

namespace perfq {
class Producer;
}
namespace perfq::shm {
class Segment;
}

namespace perfq::agent {

class Journal;

class AdminOps {
 public:
  AdminOps(Journal& journal, std::shared_ptr<shm::Segment> seg, HealthLimits limits = {});
  ~AdminOps();
  AdminOps(const AdminOps&) = delete;
  AdminOps& operator=(const AdminOps&) = delete;

  // From the admin socket: the actor is the peer's credentials.
  nlohmann::json handle(const nlohmann::json& request, const Peer& peer);
  // From elsewhere (HTTP): `actor` goes into the audit line as is, `reviewer`
  // names who reviews. Thread-safe.
  nlohmann::json handle_as(const nlohmann::json& request, const nlohmann::json& actor,
                           const std::string& reviewer);
  void refused(const Peer& peer);
  // Writes the refusals still coalesced (admin socket thread, or after it
  // stopped): the agent calls it at shutdown.
  void flush_audit();
  // The producer replays and admin cancels use (made on first use).
  [[nodiscard]] Result<Producer*> producer();
  void audit(const std::string& event, const nlohmann::json& actor, nlohmann::json fields);
  [[nodiscard]] const HealthLimits& limits() const noexcept { return limits_; }
  // Set before the admin socket opens. Settings the segment did not take
  // (health's ignoredSettings); what the drain verb calls (none: the verb
  // answers that this agent cannot drain).
  void set_ignored_settings(nlohmann::json ignored) { ignored_ = std::move(ignored); }
  void set_drain(std::function<void(uint64_t timeout_ms)> drain) { drain_ = std::move(drain); }

 private:
  // One request being answered: what a verb reads, and the audit line's
  // fields it adds to.
  struct Call {
    const nlohmann::json& req;
    const std::string& reviewer;
    nlohmann::json& detail;
  };
  struct Verb {
    std::string_view op;
    nlohmann::json (AdminOps::*run)(const Call&);
    bool audited;
  };
  static std::span<const Verb> verbs();

  nlohmann::json health(const Call& c);
  nlohmann::json metrics(const Call& c);
  nlohmann::json dlq_list(const Call& c);
  nlohmann::json dlq_verify(const Call& c);
  nlohmann::json dlq_show(const Call& c);
  nlohmann::json dlq_review(const Call& c);
  nlohmann::json dlq_replay(const Call& c);
  nlohmann::json cancel(const Call& c);
  nlohmann::json drain(const Call& c);

  struct Refusals {
    uint64_t last_line_ns = 0;
    uint64_t suppressed = 0;  // refused since that line, not yet written
    Peer last;                // the latest of them
  };
  std::unordered_map<uint32_t, Refusals> refusals_;  // by uid (admin socket thread only)
  std::mutex mu_;                                    // producer_'s creation

  Journal& journal_;
  std::shared_ptr<shm::Segment> seg_;
  HealthLimits limits_;
  std::unique_ptr<Producer> producer_;  // for replays and cancels, made on first use
  nlohmann::json ignored_ = nlohmann::json::array();
  std::function<void(uint64_t)> drain_;
};

}  // namespace perfq::agent
