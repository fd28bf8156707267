#pragma once
// The agent's admin socket (SPEC §6): `<data_dir>/agent.sock`, a Unix stream
// socket that perfqctl uses for the verbs that change state or need the
// agent's own files (the DLQ). One JSON object per line each way, one
// request per connection:
//
//   -> {"op":"dlq.list","limit":50,"all":false}
//   <- {"entries":[...]}                       or the SPEC error body
//                                                {statusCode,message,error}
//
// Access: SO_PEERCRED. The agent's own uid, root, and the configured
// admin_uids / admin_gids are admitted; anyone else is answered 403 and the
// refusal goes to the audit log. The socket file is 0666 so that every
// refusal is seen (and audited) rather than stopped silently by the file
// mode; the credentials check is the gate.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "journal/journal.hpp"
#include "control/observe.hpp"
#include "perfq/core/iso_time.hpp"
#include "perfq/core/result.hpp"

namespace perfq {
class Producer;
}
namespace perfq::shm {
class Segment;
}

namespace perfq::agent {

struct Config;

using perfq::iso_time;  // the agent's JSON prints times as the bindings do

// Parses a request body; a value nested deeper than kMaxJsonDepth is refused
// like malformed JSON (is_discarded()): writing it back out recurses.
inline constexpr int kMaxJsonDepth = 64;
[[nodiscard]] nlohmann::json parse_request_json(std::string_view text);

// SPEC §6 error body.
[[nodiscard]] nlohmann::json error_body(Errc code, const std::string& message);

// SPEC §5 DLQ entry fields (ids as decimal strings, times ISO 8601).
[[nodiscard]] nlohmann::json dlq_json(const DlqSummary& s);
// With payload (parsed JSON when it is JSON text, else payloadBase64),
// metadata and errorHistory.
[[nodiscard]] nlohmann::json dlq_json(const DlqEntry& e);
// dlq verify's answer.
[[nodiscard]] nlohmann::json report_json(const JournalReport& r);

// One audit-log line: {"at": now, "event": event, ...fields}. Callers never
// put a payload, token or idempotency key in `fields`.
[[nodiscard]] std::string audit_line(const std::string& event, const nlohmann::json& fields);

// The effective settings, for the audit log's config.loaded line (paths and
// numbers; the tokens file's path, never a token).
[[nodiscard]] nlohmann::json config_json(const Config& cfg);

struct Peer {
  uint32_t uid = 0;
  uint32_t gid = 0;
  int32_t pid = 0;
};

class AdminServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request, const Peer& peer)>;
  using Refused = std::function<void(const Peer& peer)>;

  // Binds `path` (replacing a stale socket file) and starts the thread.
  [[nodiscard]] static Result<std::unique_ptr<AdminServer>> open(const std::string& path,
                                                                 std::vector<uint32_t> admin_uids,
                                                                 std::vector<uint32_t> admin_gids,
                                                                 Handler handler, Refused refused);
  ~AdminServer();  // stops the thread, removes the socket file
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  [[nodiscard]] bool admitted(const Peer& p) const noexcept;

 private:
  AdminServer() = default;
  void run();
  void serve(int fd);

  std::string path_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd
  std::vector<uint32_t> admin_uids_;
  std::vector<uint32_t> admin_gids_;
  Handler handler_;
  Refused refused_;
  std::thread thread_;
};

// The verbs behind the socket: health, metrics {period}, dlq.list, dlq.show,
// dlq.review, dlq.replay, dlq.verify, cancel (an admin cancel of any user's
// pending request). Every request but the reads (health, metrics, dlq.list,
// dlq.verify) goes to the audit log with its outcome (event = the op),
// refused connections too (coalesced per uid per second).
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
  // The producer replays and admin cancels use (made on first use).
  [[nodiscard]] Result<Producer*> producer();
  void audit(const std::string& event, const nlohmann::json& actor, nlohmann::json fields);
  [[nodiscard]] const HealthLimits& limits() const noexcept { return limits_; }

 private:
  nlohmann::json dispatch(const std::string& op, const nlohmann::json& req,
                          const std::string& reviewer, nlohmann::json& detail);

  struct Refusals {
    uint64_t last_line_ns = 0;
    uint64_t suppressed = 0;
  };
  std::unordered_map<uint32_t, Refusals> refusals_;  // by uid (admin socket thread only)
  std::mutex mu_;                                    // producer_'s creation

  Journal& journal_;
  std::shared_ptr<shm::Segment> seg_;
  HealthLimits limits_;
  std::unique_ptr<Producer> producer_;  // for replays and cancels, made on first use
};

// Client side (perfqctl): connects, sends one request, reads one response.
// kAgentUnavailable when nothing listens.
[[nodiscard]] Result<nlohmann::json> admin_call(const std::string& socket_path,
                                                const nlohmann::json& request,
                                                uint64_t timeout_ms = 30'000);

}  // namespace perfq::agent
