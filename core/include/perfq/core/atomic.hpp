#pragma once
// Atomic access to fields of shared-memory structs.
//
// Shared structs stay trivially copyable plain data; every concurrent access
// goes through std::atomic_ref so the ordering is spelled out at each use.
#include <atomic>
#include <cstddef>
#include <cstdint>

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
// so neither side races. `bytes` is the field's size, a multiple of 8, and
// the field is 8-byte aligned; `text` (at most `bytes`) is zero-padded.
inline void store_shared_text(char* field, std::size_t bytes, const char* text,
                              std::size_t len) noexcept {
  for (std::size_t w = 0; w < bytes / 8; ++w) {
    uint64_t v = 0;
    for (std::size_t b = 0; b < 8 && w * 8 + b < len; ++b) {
      v |= uint64_t{static_cast<uint8_t>(text[w * 8 + b])} << (8 * b);
    }
    aref(reinterpret_cast<uint64_t*>(field)[w]).store(v, std::memory_order_relaxed);
  }
}

// Reads `len` bytes of a field written with store_shared_text.
inline void load_shared_text(const char* field, std::size_t len, char* out) noexcept {
  const auto* words = reinterpret_cast<const uint64_t*>(field);
  for (std::size_t w = 0; w * 8 < len; ++w) {
    const uint64_t v = load_relaxed(words[w]);
    for (std::size_t b = 0; b < 8 && w * 8 + b < len; ++b) {
      out[w * 8 + b] = static_cast<char>(v >> (8 * b));
    }
  }
}

}  // namespace perfq
