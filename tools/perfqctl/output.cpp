#include "output.hpp"

#include <cstdio>

#include "control/wire_json.hpp"
#include "perfq/core/request.hpp"

namespace perfq::ctl {

int fail(bool json, const Error& e) {
  if (json) {
    print_json(agent::error_body(e));
    return 1;
  }
  std::fprintf(stderr, "perfqctl: %s: %s", errc_name(e.code).data(), e.message.c_str());
  if (e.retry_after_ms != 0) {
    std::fprintf(stderr, " (retry after %llu ms)",
                 static_cast<unsigned long long>(e.retry_after_ms));
  }
  std::fprintf(stderr, "\n");
  return 1;
}

int fail(bool json, Errc code, const std::string& message) {
  return fail(json, Error{code, message});
}

int timed_out(bool json, const std::string& message) {
  if (json) {
    print_json({{"statusCode", 504}, {"message", message}, {"error", "TIMEOUT"}});
  } else {
    std::fprintf(stderr, "perfqctl: TIMEOUT: %s\n", message.c_str());
  }
  return 1;
}

void print_json(const nlohmann::json& body) {
  const std::string line = agent::wire_text(body);
  std::printf("%s\n", line.c_str());
}

std::string text(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>()
         : v.is_null() ? std::string("-")
                       : agent::wire_text(v);
}

double num(const nlohmann::json& v) {
  return v.is_number() ? v.get<double>() : 0.0;
}

std::string joined(const nlohmann::json& array) {
  std::string out;
  for (const auto& v : array) {
    if (!out.empty()) out += ',';
    out += text(v);
  }
  return out;
}

std::vector<std::string> bands_in_order() {
  std::vector<std::string> out;
  for (uint8_t b = 0; b < kBandCount; ++b) out.emplace_back(band_name(static_cast<Band>(b)));
  return out;
}

}  // namespace perfq::ctl
