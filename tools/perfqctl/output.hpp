#pragma once
// How perfqctl answers. With --json: one JSON body per line on stdout, the
// bodies of control/wire_json.hpp (the agent's own), errors as SPEC §6's
// {statusCode, message, error}. Without: lines for people on stdout, errors
// on stderr as "perfqctl: CODE: message". Either way an error exits 1
// (health: 3). A usage error is perfqctl's own, not the queue's: always
// text on stderr, exit 64 (main.cpp; the codes are in verbs.hpp).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perfq/core/result.hpp"

namespace perfq::ctl {

// Prints `e` (as JSON or for people) and returns 1.
int fail(bool json, const Error& e);
int fail(bool json, Errc code, const std::string& message);
// perfqctl gave up waiting (a --timeout passed): `message` names what it
// waited for. As JSON {statusCode: 504, error: "TIMEOUT", message}, the
// shape of SPEC §6's errors. Returns 1.
int timed_out(bool json, const std::string& message);

// One JSON body, one line, on stdout.
void print_json(const nlohmann::json& body);

// A field for a human line: strings as they are, null as "-", else its JSON.
[[nodiscard]] std::string text(const nlohmann::json& v);
// A number field, 0 when it is not a number.
[[nodiscard]] double num(const nlohmann::json& v);
// The elements of a JSON array as text(), comma-separated.
[[nodiscard]] std::string joined(const nlohmann::json& array);
// Band names in the order they are served (JSON objects sort their keys).
[[nodiscard]] std::vector<std::string> bands_in_order();

}  // namespace perfq::ctl
