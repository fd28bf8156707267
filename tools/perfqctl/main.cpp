// perfqctl: operate a queue (SPEC §6). Health, metrics, the DLQ and admin
// cancels go through the agent's admin socket; submit, status and a user's
// cancel act as a producer on the segment; events, top and (with the agent
// down) health read the segment directly. It links the control library
// (perfq_control: wire JSON, observation, the event feed, the admin
// socket's client) and the journal's read-only side, never the daemon.
#include <string>
#include <string_view>
#include <vector>

#include "output.hpp"
#include "verbs.hpp"

namespace {

struct Verb {
  std::string_view name;
  int (*run)(const perfq::ctl::Invocation&);
  bool needs_queue;
};

constexpr Verb kVerbs[] = {
    {"health", perfq::ctl::health, true},
    {"metrics", perfq::ctl::metrics, true},
    {"top", perfq::ctl::top, true},
    {"submit", perfq::ctl::submit, true},
    {"status", perfq::ctl::status, true},
    {"cancel", perfq::ctl::cancel, true},
    {"dlq", perfq::ctl::dlq, true},
    {"events", perfq::ctl::events, true},
    {"destroy", perfq::ctl::destroy, true},
    // The only verb without a queue: it writes the agent's tokens file.
    {"token", perfq::ctl::token, false},
};

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  perfq::ctl::Invocation in;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    if (args[i] == "--queue" && i + 1 < args.size())
      in.queue = args[++i];
    else if (args[i] == "--json")
      in.json = true;
    else
      break;
  }
  if (i >= args.size()) return perfq::ctl::usage();
  const std::string_view name = args[i];
  in.args.assign(args.begin() + static_cast<long>(i) + 1, args.end());
  for (const Verb& v : kVerbs) {
    if (v.name != name) continue;
    if (v.needs_queue && in.queue.empty()) return perfq::ctl::usage();
    return v.run(in);
  }
  return perfq::ctl::usage();
}
