#pragma once
// perfqctl's verbs, one file each (health.cpp, metrics.cpp, ...), all with
// one signature: the invocation in, the exit code out (0 done, 1 an error
// the verb printed, 2 a usage error). main.cpp picks one by name.
#include <string>
#include <vector>

namespace perfq::ctl {

struct Invocation {
  std::string queue;              // --queue; empty for the verbs that need none
  bool json = false;              // --json
  std::vector<std::string> args;  // the words after the verb
};

int health(const Invocation& in);
int metrics(const Invocation& in);
int top(const Invocation& in);
int submit(const Invocation& in);
int status(const Invocation& in);
int cancel(const Invocation& in);
int dlq(const Invocation& in);
int events(const Invocation& in);
int destroy(const Invocation& in);
int token(const Invocation& in);

}  // namespace perfq::ctl
