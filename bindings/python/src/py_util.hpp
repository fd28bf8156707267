#pragma once
// The CPython helpers every core of perfq._perfq shares: how perfq errors
// leave for Python (NativeError, turned into perfq.Error subclasses by the
// translator module.cpp registers), request ids as text, and the attached
// segment the cores of one perfq.Queue share.
//
// No C++ exception but NativeError and pybind11's own leaves a core.
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "perfq/perfq.hpp"
#include "perfq/shm/segment.hpp"

namespace py = pybind11;

namespace perfq::python {

using namespace std::chrono_literals;

// How long a blocked call waits without the GIL before it checks for
// signals and close().
inline constexpr auto kSlice = 100ms;

// A perfq error on its way to Python (see the translator in the module).
// `code` is an errc_name, or "CLOSED" for use after close().
struct NativeError {
  std::string code;
  int status_code = 0;
  std::string message;
  uint64_t retry_after_ms = 0;
};

[[noreturn]] inline void raise_error(const perfq::Error& e) {
  throw NativeError{std::string(perfq::errc_name(e.code)), perfq::http_status(e.code), e.message,
                    e.code == perfq::Errc::kRateLimitExceeded ? e.retry_after_ms : 0};
}

[[noreturn]] inline void raise_code(perfq::Errc code, std::string message) {
  raise_error(perfq::Error{code, std::move(message), 0});
}

[[noreturn]] inline void raise_closed() {
  throw NativeError{"CLOSED", 0, "this perfq.Queue is closed", 0};
}

inline bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

inline std::string format_id(uint64_t id) {
  char buf[17];
  perfq::format_request_id(id, buf);
  return {buf, 16};
}

inline uint64_t parse_id(const std::string& text) {
  uint64_t id = 0;
  if (!perfq::parse_request_id(text, id)) {
    raise_code(perfq::Errc::kInvalidRequest, "a request id is 16 hexadecimal digits");
  }
  return id;
}

inline py::object error_or_none(perfq::Errc e) {
  if (e == perfq::Errc::kOk) return py::none();
  return py::str(std::string(perfq::errc_name(e)));
}

// The attached segment, shared by the cores of one perfq.Queue.
struct SegmentHandle {
  std::shared_ptr<perfq::shm::Segment> seg;
  std::string queue;
};

}  // namespace perfq::python
