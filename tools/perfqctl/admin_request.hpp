#pragma once
// One request to the agent's admin socket (control/admin_client.hpp), whose
// path perfqctl finds in the segment. `dlq.verify` with the agent down reads
// the journal here instead: nothing writes it then.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace perfq::shm {
class Segment;
}

namespace perfq::ctl {

// 0 with `out` the verb's answer; else the error is printed (as `json`
// says) and 1 returned. Waits at most timeout_ms for the answer (and the
// admin client's own bound on writing the request, 5 s): past it, the
// error is a TIMEOUT naming the request and the socket.
int admin_request(shm::Segment& seg, const nlohmann::json& request, bool json, uint64_t timeout_ms,
                  nlohmann::json& out);
// Attaches the queue's segment first.
int admin_request(const std::string& queue, const nlohmann::json& request, bool json,
                  uint64_t timeout_ms, nlohmann::json& out);

}  // namespace perfq::ctl
