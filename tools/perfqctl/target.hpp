#pragma once
// `status ID --user U` and `cancel ID --user U`: a request as its owner
// sees it, through a producer of their own on the segment.
#include <cstdint>
#include <memory>
#include <string>

#include "perfq/perfq.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

struct Target {
  uint64_t id = 0;
  std::string user;
  std::unique_ptr<Producer> producer;
};

// Checks the request id `id` and connects as `user`. 0, or the exit code
// to leave with (the error printed).
int open_target(const Globals& g, const std::string& id, const std::string& user, Target& t);

}  // namespace perfq::ctl
