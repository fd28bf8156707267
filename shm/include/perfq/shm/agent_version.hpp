#pragma once
// The running agent's version in the segment header
// (SegmentHeader::agent_version, docs/PROTOCOL.md §2): written by each agent
// at start and restored by its liveness pass; read by /metrics
// (perfq_build_info) and anyone who asks which agent serves the queue.
//
// The field is 32 bytes, NUL-padded, stored and loaded as 8-byte words with
// relaxed atomics (store_shared_text), so a reader never races the writer.
// What a reader gets is untrusted: copied once, then checked.
#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <string_view>

#include "perfq/core/atomic.hpp"
#include "perfq/shm/layout.hpp"

namespace perfq::shm {

// Agent only: stores `version` (cut to kAgentVersionBytes - 1 bytes,
// NUL-padded) where the header's copy differs. Returns 1 if it wrote, else
// 0 (restore_word's contract: a sound header costs reads only).
[[nodiscard]] inline int write_agent_version(SegmentHeader& h, std::string_view version) noexcept {
  std::array<char, kAgentVersionBytes> want{};
  std::memcpy(want.data(), version.data(), std::min(version.size(), want.size() - 1));
  std::array<char, kAgentVersionBytes> have{};
  load_shared_text(h.agent_version, have.size(), have.data());
  if (have == want) return 0;
  store_shared_text(h.agent_version, want.data(), want.size());
  return 1;
}

// The version the agent wrote, checked: the bytes before the first NUL,
// each printable ASCII other than a space (anything else becomes '?');
// "unknown" when there are none.
[[nodiscard]] inline std::string read_agent_version(const SegmentHeader& h) {
  std::array<char, kAgentVersionBytes> copy{};
  load_shared_text(h.agent_version, copy.size(), copy.data());
  std::string v;
  for (const char c : copy) {
    if (c == '\0') break;
    v += c > ' ' && c <= '~' ? c : '?';
  }
  return v.empty() ? std::string("unknown") : v;
}

}  // namespace perfq::shm
