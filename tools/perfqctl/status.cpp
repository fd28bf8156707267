// `status ID --user U`: the request as its owner sees it (SPEC §6), the same
// body as the HTTP route's.
#include <cstdio>
#include <memory>

#include "control/wire_json.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "perfq/core/iso_time.hpp"
#include "target.hpp"

namespace perfq::ctl {

namespace {

int run_status(const Globals& g, const std::string& id, const std::string& user) {
  Target t;
  if (const int rc = open_target(g, id, user, t); rc != 0) return rc;
  auto st = t.producer->status(t.id, shm::Caller{t.user, false});
  if (!st) return fail(g.json, st.error());
  if (g.json) {
    print_json(agent::status_json(*st));
    return kExitOk;
  }
  const bool final = is_final(st->status);
  std::printf("requestId %s  status %s  mode %s  type %s  priority %u (%s)  attempts %u\n",
              agent::request_id_text(st->request_id).c_str(), status_name(st->status).data(),
              mode_name(st->mode).data(), st->type.c_str(), st->priority,
              band_name(st->band).data(), st->attempts);
  std::printf("created %s%s%s\n", iso_time(st->created_at_unix_ns).c_str(),
              final ? "  finished " : "", final ? iso_time(st->finished_at_unix_ns).c_str() : "");
  if (st->error != Errc::kOk) std::printf("error %s\n", errc_name(st->error).data());
  return kExitOk;
}

}  // namespace

Run status(Command& cmd, const Globals& g) {
  struct Options {
    std::string id;
    std::string user;
  };
  auto o = std::make_shared<Options>();
  cmd.word("ID", o->id, "the request id, 16 hex digits");
  cmd.text("--user", o->user, "its owner: another user's request is NOT_FOUND", true);
  return [&g, o] { return run_status(g, o->id, o->user); };
}

}  // namespace perfq::ctl
