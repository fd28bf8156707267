#include "perfq/core/assert.hpp"

#include <cstdio>
#include <cstdlib>

namespace perfq::detail {

void assertion_failed(const char* condition, const char* file, int line) noexcept {
  std::fprintf(stderr, "perfq: assertion failed: %s (%s:%d)\n", condition, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace perfq::detail
