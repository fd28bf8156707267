#pragma once
// Cache-line geometry of the shared-memory ABI.
//
// Fixed at 128 bytes rather than std::hardware_destructive_interference_size:
// the value is part of the wire format and must not change with the compiler,
// and 128 also keeps the adjacent-line prefetcher from pairing two hot lines.
#include <cstddef>

namespace perfq {

inline constexpr std::size_t kCacheLine = 128;

constexpr std::size_t align_up(std::size_t n, std::size_t a) noexcept {
  return (n + a - 1) / a * a;
}

}  // namespace perfq
