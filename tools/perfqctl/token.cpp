// `token create`: works on the tokens file alone (no queue, no agent). The
// token goes to stdout and nowhere else: FILE gets its hash, and the note
// for a human goes to stderr so that `$(perfqctl token create ...)` is the
// token.
#include <cstdio>

#include "control/wire_json.hpp"
#include "flags.hpp"
#include "http/auth.hpp"
#include "output.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

int token(const Invocation& in) {
  if (in.args.empty() || in.args[0] != "create") return usage();
  const std::vector<std::string> rest(in.args.begin() + 1, in.args.end());
  const Flags f = parse_flags(rest, {"--tokens", "--user", "--role"}, {"--json"});
  if (f.bad || !f.positional.empty() || f.get("--tokens") == nullptr ||
      f.get("--user") == nullptr || f.get("--role") == nullptr) {
    return usage();
  }
  const bool json = in.json || f.has("--json");
  const std::string& path = *f.get("--tokens");
  const std::string& user = *f.get("--user");
  agent::Role role{};
  if (!agent::parse_role(*f.get("--role"), role)) {
    return fail(json, Errc::kInvalidRequest, "role must be user or admin");
  }
  auto t = agent::create_token(path, user, role);
  if (!t) return fail(json, t.error());
  const std::string_view role_text = agent::role_name(role);
  if (json) {
    print_json(agent::token_json(*t, user, role_text));
    return 0;
  }
  std::printf("%s\n", t->c_str());
  std::fflush(stdout);  // the token line first, also when both streams share a pipe
  std::fprintf(stderr, "perfqctl: %s token for %s; %s holds its hash. It is not shown again.\n",
               role_text.data(), user.c_str(), path.c_str());
  return 0;
}

}  // namespace perfq::ctl
