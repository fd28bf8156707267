#pragma once
// Assertions as documentation that runs (TigerBeetle's paired assertions,
// iceoryx's IOX_ENFORCE):
//
//   PERFQ_ASSERT(cond)   a precondition, postcondition or invariant that only
//                        a bug in perfq can break. Checked in debug builds and
//                        in the sanitizer trees (PERFQ_ASSERTIONS), compiled
//                        out of release builds on hot paths.
//   PERFQ_ENFORCE(cond)  the same, checked in every build: for invariants off
//                        the hot path whose failure would otherwise corrupt
//                        state silently (a counter that would wrap, a journal
//                        round that went backwards).
//
// Either one, failing, prints the condition with its file and line to stderr
// and aborts: a broken invariant is a bug to fix, never a state to run on.
// Neither is for input from another process (segment bytes, requests, files):
// that is validated and refused, never asserted.

namespace perfq::detail {
[[noreturn]] void assertion_failed(const char* condition, const char* file, int line) noexcept;
}  // namespace perfq::detail

#define PERFQ_ENFORCE(cond)                     \
  (__builtin_expect(static_cast<bool>(cond), 1) \
       ? static_cast<void>(0)                   \
       : ::perfq::detail::assertion_failed(#cond, __FILE__, __LINE__))

#if defined(PERFQ_ASSERTIONS) || !defined(NDEBUG)
#define PERFQ_ASSERT(cond) PERFQ_ENFORCE(cond)
#else
// Unevaluated, so the condition still compiles and names stay used.
#define PERFQ_ASSERT(cond) static_cast<void>(sizeof(static_cast<bool>(cond)))
#endif
