#pragma once
// One request to the agent's admin socket (control/admin_client.hpp), whose
// path perfqctl finds in the segment. `dlq.verify` with the agent down reads
// the journal here instead: nothing writes it then.
#include <nlohmann/json.hpp>
#include <string>

namespace perfq::shm {
class Segment;
}

namespace perfq::ctl {

// 0 with `out` the verb's answer; else the error is printed (as `json`
// says) and the exit code returned.
int admin_request(shm::Segment& seg, const nlohmann::json& request, bool json, nlohmann::json& out);
// Attaches the queue's segment first.
int admin_request(const std::string& queue, const nlohmann::json& request, bool json,
                  nlohmann::json& out);

}  // namespace perfq::ctl
