// `destroy`: removes a queue's segment; refused while its agent runs.
#include <cstdio>

#include "perfq/shm/segment.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

Run destroy(Command& /*cmd*/, const Globals& g) {
  return [&g] {
    auto seg = shm::Segment::attach(g.queue);
    if (seg && (*seg)->agent_alive()) {
      std::fprintf(stderr, "perfqctl: the agent of queue %s is running; stop it first\n",
                   g.queue.c_str());
      return kExitError;
    }
    if (!shm::Segment::remove(g.queue)) {
      std::fprintf(stderr, "perfqctl: no segment for queue %s\n", g.queue.c_str());
      return kExitError;
    }
    return kExitOk;
  };
}

}  // namespace perfq::ctl
