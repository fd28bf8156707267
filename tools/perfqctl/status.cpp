// `status ID --user U`: the request as its owner sees it (SPEC §6), the same
// body as the HTTP route's.
#include <cstdio>

#include "control/wire_json.hpp"
#include "output.hpp"
#include "perfq/core/iso_time.hpp"
#include "target.hpp"

namespace perfq::ctl {

int status(const Invocation& in) {
  Target t;
  if (const int rc = open_target(in, t); rc != 0) return rc;
  auto st = t.producer->status(t.id, shm::Caller{t.user, false});
  if (!st) return fail(in.json, st.error());
  if (in.json) {
    print_json(agent::status_json(*st));
    return 0;
  }
  const bool final = is_final(st->status);
  std::printf("requestId %s  status %s  mode %s  type %s  priority %u (%s)  attempts %u\n",
              agent::request_id_text(st->request_id).c_str(), status_name(st->status).data(),
              mode_name(st->mode).data(), st->type.c_str(), st->priority,
              band_name(st->band).data(), st->attempts);
  std::printf("created %s%s%s\n", iso_time(st->created_at_unix_ns).c_str(),
              final ? "  finished " : "", final ? iso_time(st->finished_at_unix_ns).c_str() : "");
  if (st->error != Errc::kOk) std::printf("error %s\n", errc_name(st->error).data());
  return 0;
}

}  // namespace perfq::ctl
