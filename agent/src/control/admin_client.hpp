#pragma once
// The client end of the agent's admin socket (admin_socket.hpp), for
// perfqctl: connect, send one request line, read one answer line.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "perfq/core/result.hpp"

namespace perfq::agent {

// The answer, a JSON object: the verb's result or SPEC's error body (a
// refused peer gets {statusCode: 403, ...}). kAgentUnavailable when nothing
// listens at `socket_path`, or the agent closes or stays silent for
// timeout_ms without a well-formed answer. Blocks up to timeout_ms (plus the
// write's own bound): a verb may wait for a journal round.
//
// The socket's path comes from the segment, which any member of its group
// can rewrite: with `server_uid` set, the request is sent only if the
// process serving the socket (SO_PEERCRED) runs as that user (the segment's
// owner, the agent's) or as root; otherwise kAgentUnavailable names both.
[[nodiscard]] Result<nlohmann::json> admin_call(const std::string& socket_path,
                                                const nlohmann::json& request,
                                                uint64_t timeout_ms = 30'000,
                                                std::optional<uint32_t> server_uid = {});

}  // namespace perfq::agent
