#pragma once
// Compare-then-store of a shared word its owner rewrites when a member of
// the segment's group scribbled on it (docs/PROTOCOL.md §17): a word that
// already holds the value is only read, so a sound header costs no writes.
#include "perfq/core/atomic.hpp"

namespace perfq {

// Stores `want` in `field` (relaxed) when it differs: 1 if it wrote, else 0.
template <class T, class U>
[[nodiscard]] int restore_word(T& field, U want) noexcept {
  const auto w = static_cast<T>(want);
  if (load_relaxed(field) == w) return 0;
  store_relaxed(field, w);
  return 1;
}

}  // namespace perfq
