#pragma once
// A route table: method + path pattern -> handler, with the role each route
// needs. Patterns are matched segment by segment; a ":name" segment matches
// any one segment (an empty one too) and hands it to the handler:
//
//   pattern  /performance-queue/dlq/:id/review
//   path     /performance-queue/dlq/17/review      param "17"
//   path     /performance-queue/dlq/17             no match (one segment short)
//
// At most one ":name" per pattern. The first route that matches wins.
#include <cstdint>
#include <span>
#include <string_view>

namespace perfq::agent {

enum class Access : uint8_t {
  kOpen,   // no token (the probes)
  kUser,   // any valid bearer token
  kAdmin,  // an admin's token
};

template <class Handler>
struct Route {
  std::string_view method;
  std::string_view pattern;
  Access access;
  Handler handler;
};

// Whether `path` matches `pattern`; `param` is the ":name" segment's text.
[[nodiscard]] constexpr bool match_path(std::string_view pattern, std::string_view path,
                                        std::string_view& param) {
  // Each pass takes one segment off both; a path has at most as many
  // segments as bytes, so the loop ends.
  for (;;) {
    const auto p_end = pattern.find('/');
    const auto s_end = path.find('/');
    const std::string_view p = pattern.substr(0, p_end);
    const std::string_view s = path.substr(0, s_end);
    if (!p.empty() && p.front() == ':') {
      param = s;
    } else if (p != s) {
      return false;
    }
    if (p_end == std::string_view::npos || s_end == std::string_view::npos) {
      return p_end == s_end;  // both out of segments
    }
    pattern.remove_prefix(p_end + 1);
    path.remove_prefix(s_end + 1);
  }
}

// The first route of `method` whose pattern matches `path`, or nullptr.
template <class Handler>
[[nodiscard]] const Route<Handler>* find_route(std::span<const Route<Handler>> routes,
                                               std::string_view method, std::string_view path,
                                               std::string_view& param) {
  for (const Route<Handler>& r : routes) {
    std::string_view p;
    if (r.method == method && match_path(r.pattern, path, p)) {
      param = p;
      return &r;
    }
  }
  return nullptr;
}

}  // namespace perfq::agent
