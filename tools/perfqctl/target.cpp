#include "target.hpp"

#include "flags.hpp"
#include "output.hpp"

namespace perfq::ctl {

int open_target(const Invocation& in, Target& t) {
  const Flags f = parse_flags(in.args, {"--user"}, {});
  if (f.bad || f.positional.size() != 1 || f.get("--user") == nullptr) return usage();
  t.user = *f.get("--user");
  if (!parse_request_id(f.positional[0], t.id)) {
    return fail(in.json, Errc::kInvalidRequest, "a request id is 16 hex digits");
  }
  auto connected = Producer::connect(in.queue);
  if (!connected) return fail(in.json, connected.error());
  t.producer = std::move(*connected);
  return 0;
}

}  // namespace perfq::ctl
