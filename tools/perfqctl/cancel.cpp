// `cancel ID --user U` cancels as the owner, through a producer on the
// segment; `cancel ID` (no --user) as an admin, through the agent, which
// audits it.
#include <cstdio>
#include <memory>

#include "admin_request.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "target.hpp"

namespace perfq::ctl {

namespace {

struct CancelOptions {
  std::string id;
  std::string user;
  uint64_t timeout_ms = kAdminTimeoutMs;
};

int run_cancel(const Globals& g, const CancelOptions& o) {
  if (o.user.empty()) {
    nlohmann::json out;
    const nlohmann::json request = {{"op", "cancel"}, {"id", o.id}};
    if (const int rc = admin_request(g.queue, request, g.json, o.timeout_ms, out); rc != 0) {
      return rc;
    }
    if (!g.json) std::printf("cancelled\n");
    return kExitOk;
  }
  Target t;
  if (const int rc = open_target(g, o.id, o.user, t); rc != 0) return rc;
  if (auto r = t.producer->cancel(t.id, shm::Caller{t.user, false}); !r) {
    return fail(g.json, r.error());
  }
  if (!g.json) std::printf("cancelled\n");
  return kExitOk;
}

}  // namespace

Run cancel(Command& cmd, const Globals& g) {
  auto o = std::make_shared<CancelOptions>();
  cmd.word("ID", o->id, "the request id, 16 hex digits");
  cmd.text("--user", o->user,
           "cancel as this owner, on the segment (default: as an admin, through the agent, "
           "which audits it)");
  cmd.timeout(o->timeout_ms, "the agent's answer (an admin cancel)");
  return [&g, o] { return run_cancel(g, *o); };
}

}  // namespace perfq::ctl
