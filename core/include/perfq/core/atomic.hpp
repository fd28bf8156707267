#pragma once
// Atomic access to fields of shared-memory structs.
//
// Shared structs stay trivially copyable plain data; every concurrent access
// goes through std::atomic_ref so the ordering is spelled out at each use.
#include <atomic>
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

}  // namespace perfq
