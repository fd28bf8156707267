#include "target.hpp"

#include "output.hpp"

namespace perfq::ctl {

int open_target(const Globals& g, const std::string& id, const std::string& user, Target& t) {
  t.user = user;
  if (!parse_request_id(id, t.id)) {
    return fail(g.json, Errc::kInvalidRequest, "a request id is 16 hex digits");
  }
  auto connected = Producer::connect(g.queue);
  if (!connected) return fail(g.json, connected.error());
  t.producer = std::move(*connected);
  return kExitOk;
}

}  // namespace perfq::ctl
