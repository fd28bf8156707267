#pragma once
// Small helpers over the raw Node-API C interface: checked calls, values in
// and out, and errors that carry perfq's codes.
//
// Contract: every napi_status is checked. A failed call throws NapiFailure
// (a C++ exception that never leaves this addon: every JS-facing callback
// runs its body through guarded(), which turns it into a pending JS error).
#include <node_api.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "perfq/core/errc.hpp"
#include "perfq/core/result.hpp"

namespace perfq::node {

// A Node-API call failed; a JS exception may be pending already.
struct NapiFailure {
  napi_status status;
  const char* what;
};

// Thrown by argument checks: becomes a JS Error with `.code` and
// `.statusCode` (and `.retryAfterMs` when not zero).
struct CodedError {
  std::string code;
  std::string message;
  int status_code = 500;
  uint64_t retry_after_ms = 0;
};

inline CodedError coded(const Error& e) {
  return {std::string(errc_name(e.code)), e.message, http_status(e.code), e.retry_after_ms};
}
inline CodedError coded(Errc c, std::string message) {
  return {std::string(errc_name(c)), std::move(message), http_status(c), 0};
}

inline void check(napi_status s, const char* what) {
  if (s != napi_ok) throw NapiFailure{s, what};
}

// For calls whose failure nothing can be done about (clean-up in a
// completion or a finalizer, throwing an error): reported on stderr (never
// with data), not thrown.
// napi_pending_exception is not reported: JS already has an exception, or
// cannot run any more (a terminating worker_thread), so nothing was lost.
inline void best_effort(napi_status s, const char* what) noexcept {
  if (s != napi_ok && s != napi_pending_exception) {
    std::fprintf(stderr, "perfq: Node-API %s failed (status %d)\n", what, static_cast<int>(s));
  }
}

inline napi_value make_string(napi_env env, std::string_view s) {
  napi_value v;
  check(napi_create_string_utf8(env, s.data(), s.size(), &v), "create string");
  return v;
}
inline napi_value make_number(napi_env env, double d) {
  napi_value v;
  check(napi_create_double(env, d, &v), "create number");
  return v;
}
inline napi_value make_bool(napi_env env, bool b) {
  napi_value v;
  check(napi_get_boolean(env, b, &v), "create boolean");
  return v;
}
inline napi_value make_object(napi_env env) {
  napi_value v;
  check(napi_create_object(env, &v), "create object");
  return v;
}
inline napi_value undefined(napi_env env) {
  napi_value v;
  check(napi_get_undefined(env, &v), "get undefined");
  return v;
}
inline napi_value null(napi_env env) {
  napi_value v;
  check(napi_get_null(env, &v), "get null");
  return v;
}
inline void set(napi_env env, napi_value obj, const char* key, napi_value v) {
  check(napi_set_named_property(env, obj, key, v), "set property");
}

inline napi_valuetype type_of(napi_env env, napi_value v) {
  napi_valuetype t;
  check(napi_typeof(env, v, &t), "typeof");
  return t;
}
inline bool is_nullish(napi_env env, napi_value v) {
  const napi_valuetype t = type_of(env, v);
  return t == napi_undefined || t == napi_null;
}
inline napi_value get(napi_env env, napi_value obj, const char* key) {
  napi_value v;
  check(napi_get_named_property(env, obj, key, &v), "get property");
  return v;
}

// Raw bytes as a Buffer (copied).
inline napi_value make_buffer(napi_env env, std::string_view bytes) {
  napi_value b;
  void* data = nullptr;
  check(napi_create_buffer_copy(env, bytes.size(), bytes.data(), &data, &b), "create buffer");
  return b;
}

// A Buffer's or Uint8Array's bytes; nullopt for any other value.
inline std::optional<std::string> bytes_of(napi_env env, napi_value v) {
  bool is = false;
  check(napi_is_typedarray(env, v, &is), "is typedarray");
  if (!is) return std::nullopt;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  check(napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr),
        "typedarray info");
  if (type != napi_uint8_array) return std::nullopt;
  return std::string(static_cast<const char*>(data), length);
}

// A JS string's UTF-8 bytes; `bad` when the value is no string.
inline std::string to_string(napi_env env, napi_value v, const CodedError& bad) {
  if (type_of(env, v) != napi_string) throw bad;
  size_t len = 0;
  check(napi_get_value_string_utf8(env, v, nullptr, 0, &len), "string length");
  std::string s(len, '\0');
  size_t got = 0;
  check(napi_get_value_string_utf8(env, v, s.data(), len + 1, &got), "string value");
  s.resize(got);
  return s;
}

inline napi_value make_error(napi_env env, const CodedError& e) {
  napi_value err;
  check(napi_create_error(env, make_string(env, e.code), make_string(env, e.message), &err),
        "create error");
  if (e.status_code != 0) set(env, err, "statusCode", make_number(env, e.status_code));
  if (e.retry_after_ms != 0) {
    set(env, err, "retryAfterMs", make_number(env, static_cast<double>(e.retry_after_ms)));
  }
  return err;
}

inline bool exception_pending(napi_env env) noexcept {
  bool pending = false;
  return napi_is_exception_pending(env, &pending) != napi_ok || pending;
}

inline void throw_internal(napi_env env, const char* message) noexcept {
  if (exception_pending(env)) return;  // e.g. a terminating worker_thread
  best_effort(napi_throw_error(env, "ERR_PERFQ_INTERNAL", message), "throw");
}

// Runs a JS-facing callback's body; no C++ exception crosses into Node. An
// exception already pending in JS (a failed call, a terminating thread)
// is left as it is.
template <class F>
napi_value guarded(napi_env env, F&& body) noexcept {
  try {
    return body();
  } catch (const CodedError& e) {
    if (!exception_pending(env)) {
      try {
        best_effort(napi_throw(env, make_error(env, e)), "throw");
      } catch (...) {
        throw_internal(env, "could not build an error object");
      }
    }
  } catch (const NapiFailure& f) {
    const std::string msg = std::string("Node-API call failed: ") + f.what;
    throw_internal(env, msg.c_str());
  } catch (const std::exception& e) {
    throw_internal(env, e.what());
  } catch (...) {
    throw_internal(env, "unknown C++ exception");
  }
  return nullptr;
}

}  // namespace perfq::node
