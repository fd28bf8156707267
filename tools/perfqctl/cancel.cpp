// `cancel ID --user U` cancels as the owner, through a producer on the
// segment; `cancel ID` (no --user) as an admin, through the agent, which
// audits it.
#include <cstdio>

#include "admin_request.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "target.hpp"

namespace perfq::ctl {

int cancel(const Invocation& in) {
  if (const Flags f = parse_flags(in.args, {"--user"}, {}); !f.bad && f.get("--user") == nullptr) {
    if (f.positional.size() != 1) return usage();
    nlohmann::json out;
    const nlohmann::json request = {{"op", "cancel"}, {"id", f.positional[0]}};
    if (const int rc = admin_request(in.queue, request, in.json, out); rc != 0) return rc;
    if (!in.json) std::printf("cancelled\n");
    return 0;
  }
  Target t;
  if (const int rc = open_target(in, t); rc != 0) return rc;
  if (auto r = t.producer->cancel(t.id, shm::Caller{t.user, false}); !r) {
    return fail(in.json, r.error());
  }
  if (!in.json) std::printf("cancelled\n");
  return 0;
}

}  // namespace perfq::ctl
