#pragma once
// Result<T>: the value of an operation or the reason it failed.
//
// Operational failures (QUEUE_FULL, INVALID_REQUEST, ...) travel as values;
// exceptions never cross the hot path or a process boundary.
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include "perfq/core/assert.hpp"
#include "perfq/core/errc.hpp"

namespace perfq {

struct Error {
  Errc code = Errc::kInternal;
  std::string message;
  uint64_t retry_after_ms = 0;  // RATE_LIMIT_EXCEEDED: when a submit may be accepted again
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  Result(Errc code, std::string message) : v_(Error{code, std::move(message)}) {}

  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    PERFQ_ASSERT(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    PERFQ_ASSERT(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    PERFQ_ASSERT(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  [[nodiscard]] const Error& error() const& {
    PERFQ_ASSERT(!ok());
    return std::get<1>(v_);
  }
  [[nodiscard]] Errc code() const noexcept { return ok() ? Errc::kOk : std::get<1>(v_).code; }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  Result(Errc code, std::string message) : error_{code, std::move(message)}, ok_(false) {}
  [[nodiscard]] bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  [[nodiscard]] const Error& error() const& {
    PERFQ_ASSERT(!ok_);
    return error_;
  }
  [[nodiscard]] Errc code() const noexcept { return ok_ ? Errc::kOk : error_.code; }

 private:
  Error error_{Errc::kOk, {}};
  bool ok_ = true;
};

}  // namespace perfq
