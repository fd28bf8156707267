// perfqctl: operate a queue (SPEC §6). Health, metrics, the DLQ and admin
// cancels go through the agent's admin socket; submit, status and a user's
// cancel act as a producer on the segment; events, top and (with the agent
// down) health read the segment directly. It links the control library
// (perfq_control: wire JSON, observation, the event feed, the admin
// socket's client) and the journal's read-only side, never the daemon.
//
// The command line is CLI11's: --help and --version on stdout (exit 0),
// the global options before or after the verb, --flag=value, and every
// refused argument named on stderr with exit 64 (verbs.hpp has the codes).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "flags.hpp"
#include "perfq/version.hpp"
#include "verbs.hpp"

namespace {

using perfq::ctl::Command;
using perfq::ctl::Globals;
using perfq::ctl::Run;

struct Verb {
  const char* name;
  const char* help;
  bool needs_queue;
  Run (*declare)(Command&, const Globals&);
};

// The verbs, in the order --help lists them. A new verb is a file with its
// declare function (verbs.hpp) and a line here.
constexpr Verb kVerbs[] = {
    {"health", "the queue's health (SPEC §5) and why; the exit code is the state", true,
     perfq::ctl::health},
    {"metrics", "counts, throughput, wait and processing percentiles of the last minutes", true,
     perfq::ctl::metrics},
    {"top", "a live view from the segment, redrawn in place", true, perfq::ctl::top},
    {"submit", "submit a request as a producer; with --wait, wait for its outcome", true,
     perfq::ctl::submit},
    {"status", "a request as its owner sees it", true, perfq::ctl::status},
    {"cancel", "cancel a request, as its owner or as an admin", true, perfq::ctl::cancel},
    {"dlq", "the dead-letter queue: list, show, review, replay, verify", true, perfq::ctl::dlq},
    {"events", "follow the queue's events (never a payload)", true, perfq::ctl::events},
    {"drain",
     "stop admitting, finish what the queue holds within --timeout, let the agent exit; "
     "says what was left",
     true, perfq::ctl::drain},
    {"destroy", "remove the queue's segment (its agent must not be running)", true,
     perfq::ctl::destroy},
    // The only verb without a queue: it writes the agent's tokens file.
    {"token", "bearer tokens for the agent's HTTP API", false, perfq::ctl::token},
};

constexpr const char* kExitCodes =
    "Exit codes: 0 done; 1 an error the verb printed (refused, the agent not running, a "
    "--timeout passed); 64 a usage error. health: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown "
    "(the agent down or not answering).\n"
    "Durations (--timeout, --interval): a whole number and its unit, ms, s, m or h: 500ms, 5s.";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "perfqctl: %s\nRun perfqctl --help, or perfqctl VERB --help, for usage.\n",
               message.c_str());
  return perfq::ctl::kExitUsage;
}

// What a refused command line gets told. CLI11 reports a missing verb
// before a word it did not know: the word is the news.
std::string usage_message(const CLI::App& app, const CLI::ParseError& e) {
  const std::vector<std::string> extra = app.remaining(true);
  const bool missing = dynamic_cast<const CLI::RequiredError*>(&e) != nullptr;
  if (missing && !extra.empty()) return CLI::ExtrasError(extra).what();
  if (missing && std::string_view(e.what()) == "A subcommand is required") {
    return "a verb is required";
  }
  return e.what();
}

}  // namespace

int main(int argc, char** argv) {
  Globals g;
  CLI::App app(
      "perfqctl: operate a perfq queue: its health and metrics, requests, the "
      "dead-letter queue, events and tokens.",
      "perfqctl");
  app.set_version_flag("--version", std::string("perfqctl ") + perfq::kVersion,
                       "print the version and exit");
  app.get_formatter()->column_width(36);
  // Set before the verbs are added, which inherit it: an option a verb does
  // not know goes up to its parent, so the global ones also come after it.
  app.fallthrough();
  app.add_option("--queue", g.queue,
                 "the queue (its segment is /dev/shm/perfq-NAME); without the flag, "
                 "$PERFQ_QUEUE; the flag wins. Every verb but token needs one")
      ->envname("PERFQ_QUEUE")
      ->type_name("NAME");
  app.add_flag("--json", g.json,
               "answer in JSON, one body per line on stdout, errors as {statusCode, message, "
               "error}")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.require_subcommand(1);
  app.footer(kExitCodes);

  struct Declared {
    const Verb* verb;
    Command cmd;
    Run run;
  };
  std::vector<Declared> declared;
  for (const Verb& v : kVerbs) {
    CLI::App* sub = app.add_subcommand(v.name, v.help);
    sub->footer(perfq::ctl::kGlobalOptionsNote);
    Command cmd(*sub);
    Run run = v.declare(cmd, g);
    declared.push_back({&v, cmd, std::move(run)});
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version: stdout, exit 0
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(usage_message(app, e));
  }
  for (const Declared& d : declared) {
    if (!d.cmd.given()) continue;
    if (d.verb->needs_queue && g.queue.empty()) {
      return usage_error(std::string(d.verb->name) + " needs --queue NAME (or PERFQ_QUEUE)");
    }
    return d.run();
  }
  return usage_error("no verb");  // require_subcommand(1) refuses that first
}
