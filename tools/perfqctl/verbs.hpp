#pragma once
// perfqctl's verbs, one file each (health.cpp, metrics.cpp, ...). A verb
// declares its options on its command (flags.hpp) and returns the Run that
// does its work once the command line is parsed; main.cpp lists them.
//
// Exit codes, the same for every verb (and in --help):
//   0   done
//   1   an error the verb printed: refused by the queue or the agent, the
//       agent not running, or the --timeout of what it waited for passed
//   64  a usage error (sysexits' EX_USAGE), on stderr, naming the argument
// except `health`, whose code is the queue's state, as a Nagios plugin's:
//   0 healthy, 1 degraded, 2 unhealthy, 3 unknown: the agent is down (no
//   segment, the agent not running) or did not answer (refused, or no answer
//   within --timeout). Its body is printed whenever perfqctl has one.
#include <cstdint>
#include <functional>
#include <string>

namespace perfq::ctl {

class Command;

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 64;
inline constexpr int kHealthDegraded = 1;
inline constexpr int kHealthUnhealthy = 2;
inline constexpr int kHealthUnknown = 3;

// Under each verb's --help: the options perfqctl takes anywhere.
inline constexpr const char* kGlobalOptionsNote =
    "Also, before or after the verb: --queue NAME (else $PERFQ_QUEUE), --json; perfqctl --help "
    "has the exit codes.";

// How long a request to the agent's admin socket waits for its answer
// unless --timeout says otherwise: a verb may wait for a journal round.
inline constexpr uint64_t kAdminTimeoutMs = 30'000;

// The options before or after the verb (main.cpp).
struct Globals {
  std::string queue;  // --queue, else PERFQ_QUEUE; empty for `token`
  bool json = false;  // --json
};

// A parsed verb's work: its exit code.
using Run = std::function<int()>;

// Each declares its options and words on `cmd` and returns its Run, which
// reads `g` (filled by the same parse) and owns what the options bind.
Run health(Command& cmd, const Globals& g);
Run metrics(Command& cmd, const Globals& g);
Run top(Command& cmd, const Globals& g);
Run submit(Command& cmd, const Globals& g);
Run status(Command& cmd, const Globals& g);
Run cancel(Command& cmd, const Globals& g);
Run dlq(Command& cmd, const Globals& g);
Run events(Command& cmd, const Globals& g);
Run destroy(Command& cmd, const Globals& g);
Run drain(Command& cmd, const Globals& g);
Run token(Command& cmd, const Globals& g);

}  // namespace perfq::ctl
