#pragma once
// Status lookups (SPEC §5): what became of a request, for its owner.
//
// A live request is found in its slot. A finished one is found in the
// status table: a direct-mapped array the agent writes when a request
// reaches its final status, indexed by request id modulo its size. Ids are
// handed out in sequence, so an entry keeps a finished request until the
// request `entries` ids later finishes: with the default 32768 entries and
// 60 submits per user per minute, hours of history (docs/PROTOCOL.md §10).
//
// Each entry is 32 words with a sequence lock (core/seqlock.hpp, counter
// form) in word 0: the agent (its only writer) makes seq odd, writes, makes
// it even; readers copy the words with relaxed atomic loads between an
// acquire load of seq and its re-check.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "perfq/core/errc.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"

namespace perfq::shm {

class Segment;

struct StatusEntry {
  uint64_t seq;  // odd while written
  uint64_t request_id;
  uint64_t created_unix_ns;
  uint64_t finished_unix_ns;
  uint64_t wait_ns;        // eligible -> last dispatch
  uint64_t processing_ns;  // last dispatch -> final
  uint8_t status;          // Status
  uint8_t error;           // Errc
  uint8_t attempts;
  uint8_t mode;
  uint8_t priority;
  uint8_t band;
  uint8_t type_len;
  uint8_t user_len;
  char type[kTypeMaxBytes];
  char user_id[kUserIdMaxBytes];
  uint8_t reserved[72];
};
static_assert(std::is_trivially_copyable_v<StatusEntry>);
static_assert(sizeof(StatusEntry) == 256);
static_assert(offsetof(StatusEntry, status) == 48);
static_assert(offsetof(StatusEntry, type) == 56);
static_assert(offsetof(StatusEntry, user_id) == 120);

// What a status lookup answers.
struct RequestStatus {
  uint64_t request_id = 0;
  Status status = Status::kPending;
  Errc error = Errc::kOk;  // final: why it did not complete; pending: WORKER_UNAVAILABLE when
                           // no worker has a processor for its type
  Mode mode = Mode::kFifo;
  Band band = Band::kNormal;
  uint8_t priority = kPriorityDefault;
  uint8_t attempts = 0;
  std::string type;
  std::string user_id;
  uint64_t created_at_unix_ns = 0;
  uint64_t finished_at_unix_ns = 0;  // 0 while not final
};

// Who asks: the owner sees their requests; an admin sees every request.
struct Caller {
  std::string_view user_id;
  bool admin = false;
};

// Agent only: records a request's final status in the table.
void record_final(Segment& seg, const StatusEntry& e) noexcept;
// Agent only, on taking over a segment: entries a dead agent left
// half-written (seq odd) are emptied and made readable (seqlock::repair).
void repair_status_table(Segment& seg) noexcept;

// Any process. NOT_FOUND for an unknown id, one retained no longer, or one
// the caller may not see (SPEC §5: the same answer, so ids cannot be probed).
// Bounded: two table reads and one pass over the slots' control words.
[[nodiscard]] Result<RequestStatus> lookup_status(Segment& seg, uint64_t request_id,
                                                  const Caller& who);

// Whether any live worker registered a processor for `type`.
[[nodiscard]] bool type_has_worker(Segment& seg, std::string_view type) noexcept;

}  // namespace perfq::shm
