// `destroy`: removes a queue's segment; refused while its agent runs.
#include <cstdio>

#include "perfq/shm/segment.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

int destroy(const Invocation& in) {
  auto seg = shm::Segment::attach(in.queue);
  if (seg && (*seg)->agent_alive()) {
    std::fprintf(stderr, "perfqctl: the agent of queue %s is running; stop it first\n",
                 in.queue.c_str());
    return 1;
  }
  if (!shm::Segment::remove(in.queue)) {
    std::fprintf(stderr, "perfqctl: no segment for queue %s\n", in.queue.c_str());
    return 1;
  }
  return 0;
}

}  // namespace perfq::ctl
