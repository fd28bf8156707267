// Request validation: core's validators (perfq/core/request.hpp) over raw
// text, and the JSON submit body as HTTP reads it (parse_request_json, then
// routes.cpp's read_submit, then the producer's validate()), driven through
// HttpApi::handle without the server: the input is a submit's body.
//
// Input: one selector byte, then the text. Selector bit 0 sends the text as
// the body of POST /performance-queue/submit with the user token; otherwise
// the text goes to each core validator and, when it parses, as the body of a
// submit too (an idempotency key, a mode, a request id).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fixture.hpp"
#include "perfq/core/request.hpp"

using namespace perfq;

namespace {

void validators(std::string_view text) {
  (void)valid_type(text);
  (void)valid_user_id(text);
  (void)valid_idempotency_key(text);
  Mode mode{};
  if (parse_mode(text, mode) && static_cast<uint8_t>(mode) >= kModeCount) std::abort();
  uint64_t id = 0;
  (void)parse_request_id(text, id);
  RequestView v;
  v.type = text;
  v.user_id = text;
  v.idempotency_key = text;
  v.metadata = text;
  v.payload = std::as_bytes(std::span(text.data(), text.size()));
  (void)validate(v, 1024);
}

agent::HttpResponse submit(std::string body) {
  agent::HttpRequest r;
  r.method = "POST";
  r.target = "/performance-queue/submit";
  r.authorization = std::string("Bearer ") + fuzz::kUserToken;
  r.remote = "127.0.0.1:1";
  r.body = std::move(body);
  return fuzz::Fixture::get().api->handle(r);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1u) == 0) validators(text);
  const agent::HttpResponse resp = submit(std::string(text));
  if (resp.status < 200 || resp.status > 599) std::abort();
  return 0;
}
