// `token create`: works on the tokens file alone (no queue, no agent). The
// token goes to stdout and nowhere else: FILE gets its hash, and the note
// for a human goes to stderr so that `$(perfqctl token create ...)` is the
// token.
#include <cstdio>
#include <memory>

#include "control/wire_json.hpp"
#include "flags.hpp"
#include "http/auth.hpp"
#include "output.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

struct TokenOptions {
  std::string tokens;
  std::string user;
  std::string role;
};

int run_create(const Globals& g, const TokenOptions& o) {
  agent::Role role{};
  if (!agent::parse_role(o.role, role)) {
    return fail(g.json, Errc::kInvalidRequest, "role must be user or admin");
  }
  auto t = agent::create_token(o.tokens, o.user, role);
  if (!t) return fail(g.json, t.error());
  const std::string_view role_text = agent::role_name(role);
  if (g.json) {
    print_json(agent::token_json(*t, o.user, role_text));
    return kExitOk;
  }
  std::printf("%s\n", t->c_str());
  std::fflush(stdout);  // the token line first, also when both streams share a pipe
  std::fprintf(stderr, "perfqctl: %s token for %s; %s holds its hash. It is not shown again.\n",
               role_text.data(), o.user.c_str(), o.tokens.c_str());
  return kExitOk;
}

}  // namespace

Run token(Command& cmd, const Globals& g) {
  auto o = std::make_shared<TokenOptions>();
  Command create =
      cmd.verb("create", "make a token, print it once, append its hash to the tokens file");
  create.text("--tokens", o->tokens, "the agent's tokens file (its --tokens)", true);
  create.text("--user", o->user, "the user the token authenticates as", true);
  create.text("--role", o->role, "user or admin", true);
  return [&g, o] { return run_create(g, *o); };
}

}  // namespace perfq::ctl
