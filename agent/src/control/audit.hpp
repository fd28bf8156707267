#pragma once
// The lines of the agent's audit log (<data_dir>/audit.log): one JSON object
// per line, "at" and "event" first, written through Journal::audit. Callers
// never put a payload, token or idempotency key in a line.
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace perfq::agent {

struct Config;

// One audit-log line: {"at": now, "event": event, ...fields}.
[[nodiscard]] std::string audit_line(const std::string& event, const nlohmann::json& fields);

// The effective settings, for the config.loaded line (paths and numbers;
// the tokens file's path, never a token).
[[nodiscard]] nlohmann::json config_json(const Config& cfg);

}  // namespace perfq::agent
