#pragma once
// The client registry: one ClientRecord per attached producer or worker.
//
//   kFree --register (CAS)--> kRegistering --rings formatted--> kActive
//     ^                                                           |
//     +---- agent, after reclaiming its slots ---- kClosing <-----+ close()
//                                                   (or the process died)
//
// Only the agent returns a record to kFree, and only once the record's
// process has closed or died and everything it owned has been reclaimed, so
// a new client never inherits rings the agent still reads.
//
// While registering, the state word also names the registrant: kRegistering
// in its low 8 bits, the registrant's pid above them. Activation is a CAS
// from that exact word, and the agent takes a registration back only once
// that process is dead, so a registrant that stalls never activates (or
// writes into) a record another process registered since (issue 13).
#include <cstdint>
#include <string_view>

#include "perfq/core/result.hpp"
#include "perfq/shm/segment.hpp"

namespace perfq::shm {

[[nodiscard]] constexpr uint32_t registering_word(uint32_t pid) noexcept {
  return static_cast<uint32_t>(ClientState::kRegistering) | (pid << 8);
}
// The state a state word holds (a registering word names its registrant).
[[nodiscard]] constexpr ClientState state_of(uint32_t word) noexcept {
  return (word & 0xFF) == static_cast<uint32_t>(ClientState::kRegistering)
             ? ClientState::kRegistering
             : static_cast<ClientState>(word);
}
// A state word some client or the agent writes (anything else is garbage).
[[nodiscard]] constexpr bool known_state_word(uint32_t word) noexcept {
  return (word & 0xFF) == static_cast<uint32_t>(ClientState::kRegistering) ||
         word <= static_cast<uint32_t>(ClientState::kEvicted);
}
[[nodiscard]] constexpr uint32_t registrant_of(uint32_t word) noexcept {
  return word >> 8;
}

// Producers and workers. Takes a free record for this process.
[[nodiscard]] Result<uint32_t> register_client(Segment& seg, uint32_t roles);

// Worker only, at any time: declares a type it processes. The agent picks
// it up at its next liveness pass (type_count is published with release).
[[nodiscard]] Result<void> add_client_type(Segment& seg, uint32_t id, std::string_view type,
                                           bool batch);

// The owner announces a clean close; the agent reclaims as for a death.
void close_client(Segment& seg, uint32_t id) noexcept;

// Agent: is the record's process gone (closed, dead, or a reused pid)?
[[nodiscard]] bool client_gone(Segment& seg, uint32_t id) noexcept;

// Whether the process registered in record `id` as (pid, start ticks, PID
// namespace) lives: its liveness lock is held (liveness.hpp), and, when it
// shares our PID namespace, /proc agrees. The arguments are the caller's
// copy of the registration, never read here from the record.
[[nodiscard]] bool client_alive(Segment& seg, uint32_t id, uint32_t pid, uint64_t start_ticks,
                                uint64_t pid_ns) noexcept;

}  // namespace perfq::shm

namespace perfq::shm {
// The owner publishes its record. False if its registration is gone (the
// agent took the record back, judging this process dead): the caller
// registers again.
[[nodiscard]] bool activate_client(Segment& seg, uint32_t id) noexcept;

// Agent: returns a record to kFree (its pid cleared first).
void free_client(Segment& seg, uint32_t id) noexcept;

// Agent: takes back the registration `word` (kRegistering, its registrant
// dead). False if the record moved on meanwhile.
bool take_back_registering(Segment& seg, uint32_t id, uint32_t word) noexcept;

// Producers and workers: register and activate, retrying (a bounded number
// of times) when the agent took a stalled registration back.
[[nodiscard]] Result<uint32_t> join(Segment& seg, uint32_t roles, uint32_t max_inflight = 0);
}  // namespace perfq::shm
