#pragma once
// Atomic access to fields of shared-memory structs.
//
// Shared structs stay trivially copyable plain data; every concurrent access
// goes through std::atomic_ref so the ordering is spelled out at each use.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace perfq {

template <class T>
[[nodiscard]] inline std::atomic_ref<T> aref(T& field) noexcept {
  static_assert(std::atomic_ref<T>::is_always_lock_free, "shared fields must be lock-free");
  return std::atomic_ref<T>(field);
}

// Read-only view for fields of const structs: atomic_ref needs a non-const T.
template <class T>
[[nodiscard]] inline T load_acquire(const T& field) noexcept {
  return std::atomic_ref<T>(const_cast<T&>(field)).load(std::memory_order_acquire);
}

template <class T>
[[nodiscard]] inline T load_relaxed(const T& field) noexcept {
  return std::atomic_ref<T>(const_cast<T&>(field)).load(std::memory_order_relaxed);
}

template <class T>
inline void store_relaxed(T& field, T value) noexcept {
  aref(field).store(value, std::memory_order_relaxed);
}

// A text field that a process may read while another rewrites it (a status
// lookup or a cancel reading a slot a new request is claiming; the reader
// then discards what it read): copied as whole words with relaxed atomics,
// so neither side races. Only the words that hold `len` bytes are written
// (a reader reads only as many bytes as the length it read). The field is
// 8-byte aligned and at least `len` bytes; `len` is at most kSharedTextMax.
inline constexpr std::size_t kSharedTextMax = 128;

inline void store_shared_text(char* field, const char* text, std::size_t len) noexcept {
  if (len > kSharedTextMax) len = kSharedTextMax;
  const std::size_t n = (len + 7) / 8;
  uint64_t words[kSharedTextMax / 8];
  if (n > 0) words[n - 1] = 0;
  std::memcpy(words, text, len);
  auto* dst = reinterpret_cast<uint64_t*>(field);
  for (std::size_t w = 0; w < n; ++w) aref(dst[w]).store(words[w], std::memory_order_relaxed);
}

// Reads `len` (at most kSharedTextMax) bytes of a field written with
// store_shared_text.
inline void load_shared_text(const char* field, std::size_t len, char* out) noexcept {
  if (len > kSharedTextMax) len = kSharedTextMax;
  uint64_t words[kSharedTextMax / 8];
  const auto* src = reinterpret_cast<const uint64_t*>(field);
  const std::size_t n = (len + 7) / 8;
  for (std::size_t w = 0; w < n; ++w) words[w] = load_relaxed(src[w]);
  std::memcpy(out, words, len);
}

}  // namespace perfq
