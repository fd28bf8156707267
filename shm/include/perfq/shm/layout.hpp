#pragma once
// The segment /perfq-<queue>, byte by byte (docs/PROTOCOL.md draws it).
//
//   +---------------------------+ 0
//   | SegmentHeader             |  identity, geometry, agent facts, doorbell
//   +---------------------------+ off_clients
//   | ClientRecord[max_clients] |  producers and workers
//   +---------------------------+ off_client_rings
//   | per client: completion,   |  u64 entries, client_ring_capacity each
//   |   dispatch, result rings  |
//   +---------------------------+ off_band_headers
//   | BandRingHeader[5]         |  CRITICAL, HIGH, NORMAL, LOW, CANCEL
//   +---------------------------+ off_band_cells
//   | u64 cells[5][band_cap]    |
//   +---------------------------+ off_slot_ctl
//   | u64 ctl[slot_count]       |  SlotPool control words
//   +---------------------------+ off_slot_hints
//   | u64 hints[...]            |  SlotPool free hints
//   +---------------------------+ off_events
//   | EventRingHeader, Event[]  |  lossy broadcast of events
//   +---------------------------+ off_status
//   | StatusEntry[status_cap]   |  final statuses, by request id
//   +---------------------------+ off_idempotency
//   | idempotency table         |  (userId, key) -> request (producers)
//   +---------------------------+ off_rate
//   | rate-limit table          |  per user: last `limit` accept times
//   +---------------------------+ off_metrics
//   | metrics history           |  per-minute rows, 1440 + 1 (metrics.hpp)
//   +---------------------------+ off_slots
//   | slot[slot_count]          |  RequestRecord + payload + result
//   +---------------------------+ total_bytes
//
// Every offset is a multiple of kCacheLine. Nothing in the segment is a
// pointer; every index read from it is checked against the geometry.
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "perfq/core/atomic.hpp"
#include "perfq/core/band_ring.hpp"
#include "perfq/core/cache_line.hpp"
#include "perfq/core/event_ring.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/spsc_ring.hpp"
#include "perfq/core/wait_word.hpp"
#include "perfq/shm/status.hpp"

namespace perfq::shm {

inline constexpr uint64_t kMagic = 0x5045'5246'5153'4547ull;  // "PERFQSEG"
inline constexpr uint32_t kLayoutVersion = 9;
inline constexpr uint32_t kMaxTypesPerWorker = 16;
inline constexpr uint32_t kMaxClientsLimit = 1024;
inline constexpr uint32_t kMaxSlotsLimit = 1u << 22;
inline constexpr uint32_t kEventCapacity = 4096;
// The rate limiter's rolling window (SPEC §4: per minute).
inline constexpr uint64_t kRateWindowMs = 60000;
// MPSC rings of slot indices: the four bands, then the cancel ring (any
// process -> agent: slots whose requests were cancelled while pending).
inline constexpr uint8_t kRingCount = kBandCount + 1;
inline constexpr uint8_t kCancelRing = kBandCount;  // events a reader may lag before it loses some

// The part of the configuration that shapes the segment. Fixed at creation.
struct Shape {
  uint32_t slot_count = 0;
  uint32_t slot_payload_bytes = 0;
  uint32_t max_clients = 0;
  uint32_t status_entries = 1024;       // power of two; 0: no status table
  uint32_t idempotency_entries = 1024;  // power of two >= 4; 0: no idempotency table
  uint32_t rate_entries = 256;          // users; power of two >= 4; 0 with rate_limit 0
  uint32_t rate_limit = 60;             // max_requests_per_user_per_minute; 0: unlimited
  uint32_t metrics_types = 8;           // type columns of the metrics history, <= 64
};

struct Geometry {
  uint32_t slot_count = 0;
  uint32_t slot_payload_bytes = 0;
  uint32_t band_ring_capacity = 0;    // power of two >= slot_count
  uint32_t client_ring_capacity = 0;  // power of two >= slot_count
  uint32_t max_clients = 0;
  SlotGeometry slot{};

  uint64_t off_clients = 0;
  uint64_t off_client_rings = 0;
  uint64_t off_band_headers = 0;
  uint64_t off_band_cells = 0;
  uint64_t off_slot_ctl = 0;
  uint64_t off_slot_hints = 0;
  uint64_t off_slots = 0;
  uint64_t off_events = 0;  // EventRingHeader, then Event[kEventCapacity]
  uint32_t status_entries = 0;
  uint32_t idempotency_entries = 0;
  uint32_t rate_entries = 0;
  uint32_t rate_limit = 0;
  uint64_t off_status = 0;
  uint64_t off_idempotency = 0;
  uint64_t off_rate = 0;
  uint32_t metrics_types = 0;
  uint64_t off_metrics = 0;  // MetricsHeader, names, rows (metrics.hpp)
  uint64_t total_bytes = 0;

  [[nodiscard]] uint64_t client_rings_stride() const noexcept {
    return 3 * SpscRing::entries_bytes(client_ring_capacity);
  }
};

// Computes every offset from the inputs that shape the segment.
[[nodiscard]] Geometry compute_geometry(const Shape& shape) noexcept;
// The same with the tables at their Shape defaults.
[[nodiscard]] Geometry compute_geometry(uint32_t slot_count, uint32_t slot_payload_bytes,
                                        uint32_t max_clients) noexcept;
// Whether a Shape's table sizes are ones compute_geometry accepts.
[[nodiscard]] bool shape_valid(const Shape& shape) noexcept;

// kDraining: the agent admits nothing new and finishes what it holds, then
// stops (perfqctl drain; PROTOCOL.md §2, §7).
enum class AgentState : uint32_t { kStarting = 0, kRunning = 1, kStopped = 2, kDraining = 3 };

// Why a producer refused a submit: the index of its counter in
// SegmentHeader::rejected (perfq_rejected_total{reason}; rejections.hpp).
enum class RejectReason : uint8_t {
  kQueueFull = 0,    // QUEUE_FULL: max_queue_depth reached, no free slot
  kRateLimited = 1,  // RATE_LIMIT_EXCEEDED
  kInvalid = 2,      // INVALID_REQUEST, INVALID_MODE, INVALID_PRIORITY (payload too large too)
  kDraining = 3,     // refused while the agent drains (agent_state kDraining)
  kConflict = 4,     // CONFLICT: the same key is being submitted by another call
  kOther = 5,        // any other code
};
inline constexpr uint8_t kRejectReasonCount = 6;
// Counters the header's line holds; the ones past kRejectReasonCount are spare.
inline constexpr uint32_t kRejectCounters = 12;
// The agent's version text (perfq/version.hpp), NUL-padded.
inline constexpr std::size_t kAgentVersionBytes = 32;

// Counters the agent publishes for health and perfqctl. Written by the agent
// only (relaxed), read by anyone.
struct AgentCounters {
  uint64_t submitted;   // taken from the band rings
  uint64_t dispatched;  // attempts handed to workers
  uint64_t completed;
  uint64_t failed;
  uint64_t retried;
  uint64_t rejected_invalid;  // garbage slots, indices or lengths from producers
  uint64_t ring_claims_skipped;
  uint64_t slots_reclaimed;         // from dead producers
  uint64_t attempts_redispatched;   // from dead workers
  uint64_t inflight;                // dispatched, not yet settled
  uint64_t band_depth[kBandCount];  // pending in the agent's scheduler
  uint64_t waiting_for_worker;      // pending requests whose type has no worker
  uint64_t stale_cells;             // ring cells whose slot was not waiting to be taken
  uint64_t timed_out;               // requests that waited past queue_timeout_ms
  uint64_t workers_evicted;         // live workers that stopped heart-beating
  uint64_t cancelled;               // requests cancelled before dispatch
  uint64_t batches;                 // batch dispatches (each of 2 or more requests)
  uint64_t slots_swept;             // requests taken from the slot states: no ring brought them
  uint64_t rings_resynced;          // rings rebuilt because their tail was out of its window
};
static_assert(std::is_trivially_copyable_v<AgentCounters>);
static_assert(sizeof(AgentCounters) == 22 * 8);

enum class JournalHealthState : uint32_t { kOff = 0, kHealthy = 1, kFailing = 2 };

// The DLQ journal as health reports it (SPEC §5 "journal state", dlqSize).
// Written by the agent's journal thread only, relaxed; readers take each word
// as it is.
struct JournalView {
  uint32_t state;       // JournalHealthState
  int32_t last_errno;   // of the last failed flush; 0 when healthy
  uint64_t unreviewed;  // dlqSize
  uint64_t entries;     // dead-letter entries in the index
  uint64_t awaiting;    // requests held out of failed/timeout until their record is durable
  uint64_t failed_flushes;
  uint64_t durable_records;  // records made durable since the agent started
  uint64_t segments;         // segment files in <data_dir>/dlq
  uint32_t audit_state;      // JournalHealthState of <data_dir>/audit.log
  int32_t audit_errno;       // of its last failed flush; 0 when healthy
};
static_assert(std::is_trivially_copyable_v<JournalView>);
static_assert(sizeof(JournalView) == 64);

// What producers need to admit a request (SPEC §5 admission) and to tell its
// queue position, published by the agent under a sequence lock: `seq` is odd
// while the agent writes. With `head` (each band ring's head when published)
// a producer counts every accepted request exactly once:
//   depth_now <= depth + sum over bands of (ring tail - head)
// since a cell the agent consumed after publishing is still counted by the
// ring term. Readers retry a bounded number of times, then assume full.
struct AdmissionView {
  uint64_t seq;
  uint64_t depth;                   // pending + waiting for retry + in flight
  uint64_t band_depth[kBandCount];  // pending per band (incl. waiting for a worker)
  uint64_t head[kBandCount];        // band ring heads at this publish
};
static_assert(std::is_trivially_copyable_v<AdmissionView>);
static_assert(sizeof(AdmissionView) == 80);

struct SegmentHeader {
  // --- identity (written once by the creator; magic last)
  uint64_t magic;
  uint32_t layout_version;
  uint32_t header_bytes;
  uint64_t layout_hash;
  uint64_t total_bytes;
  uint64_t created_unix_ns;
  // --- geometry (written once by the creator)
  uint32_t slot_count;
  uint32_t slot_payload_bytes;
  uint32_t slot_stride;
  uint32_t band_ring_capacity;
  uint32_t client_ring_capacity;
  uint32_t max_clients;
  uint64_t off_clients;
  uint64_t off_client_rings;
  uint64_t off_band_headers;
  uint64_t off_band_cells;
  uint64_t off_slot_ctl;
  uint64_t off_slot_hints;
  uint64_t off_slots;
  uint64_t off_events;
  // --- the agent that owns the segment (rewritten by each agent at start)
  alignas(kCacheLine) uint32_t agent_pid;
  uint32_t agent_state;        // AgentState
  uint64_t agent_start_ticks;  // /proc/<pid>/stat starttime: pid-reuse guard
  uint64_t agent_started_unix_ns;
  uint64_t agent_generation;  // agents that have owned this segment
  char socket_path[108];
  char http_address[64];
  // runtime settings clients follow (written by the agent at start)
  uint64_t processing_timeout_ms;
  uint64_t worker_idle_timeout_ms;
  uint64_t max_queue_depth;
  uint64_t rope_drop_timeout_ms;
  uint64_t agent_pid_ns;  // the agent's PID namespace (liveness.hpp), 0 unknown
  // --- hot words, one line each
  alignas(kCacheLine) uint64_t heartbeat_mono_ns;  // agent, every duty cycle
  alignas(kCacheLine) uint64_t next_request_id;    // producers, fetch_add
  alignas(kCacheLine) WaitWord doorbell;           // producers, workers -> agent
  alignas(kCacheLine) AgentCounters counters;
  JournalView journal;  // same line as the counters: both are read by health
  alignas(kCacheLine) AdmissionView admission;  // agent writes, producers read
  alignas(kCacheLine) WaitWord room;            // agent -> producers waiting for room
  // --- the tables (geometry written once by the creator)
  alignas(kCacheLine) uint32_t status_entries;
  uint32_t idempotency_entries;
  uint32_t rate_entries;
  uint32_t rate_limit;  // accepted submits per user per rolling minute; 0: unlimited
  uint64_t off_status;
  uint64_t off_idempotency;
  uint64_t off_rate;
  uint64_t idempotency_ttl_ms;  // runtime: written by the agent at start
  // --- the metrics history (written once by the creator)
  alignas(kCacheLine) uint64_t off_metrics;
  uint32_t metrics_types;
  uint32_t metrics_reserved;
  // --- the agent's build (each agent at start) and the producers' refusals
  // (PROTOCOL.md §2; rejections.hpp, agent_version.hpp). One line: both are
  // written rarely (the version once, a counter on a refused submit only).
  alignas(kCacheLine) char agent_version[kAgentVersionBytes];  // 8-byte words (store_shared_text)
  uint64_t rejected[kRejectCounters];                          // by RejectReason; fetch_add
};
static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(std::is_trivially_copyable_v<SegmentHeader>);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, layout_version) == 8);
static_assert(offsetof(SegmentHeader, layout_hash) == 16);
static_assert(offsetof(SegmentHeader, slot_count) == 40);
static_assert(offsetof(SegmentHeader, off_clients) == 64);
static_assert(offsetof(SegmentHeader, off_slots) == 112);
static_assert(offsetof(SegmentHeader, off_events) == 120);
static_assert(offsetof(SegmentHeader, agent_pid) == 1 * kCacheLine);
static_assert(offsetof(SegmentHeader, socket_path) == 1 * kCacheLine + 32);
static_assert(offsetof(SegmentHeader, http_address) == 1 * kCacheLine + 140);
static_assert(offsetof(SegmentHeader, processing_timeout_ms) == 1 * kCacheLine + 208);
static_assert(offsetof(SegmentHeader, heartbeat_mono_ns) == 3 * kCacheLine);
static_assert(offsetof(SegmentHeader, next_request_id) == 4 * kCacheLine);
static_assert(offsetof(SegmentHeader, doorbell) == 5 * kCacheLine);
static_assert(offsetof(SegmentHeader, counters) == 6 * kCacheLine);
static_assert(offsetof(SegmentHeader, journal) == 6 * kCacheLine + 176);
static_assert(offsetof(SegmentHeader, max_queue_depth) == 1 * kCacheLine + 224);
static_assert(offsetof(SegmentHeader, agent_pid_ns) == 1 * kCacheLine + 240);
static_assert(offsetof(SegmentHeader, admission) == 8 * kCacheLine);
static_assert(offsetof(SegmentHeader, room) == 9 * kCacheLine);
static_assert(offsetof(SegmentHeader, status_entries) == 10 * kCacheLine);
static_assert(offsetof(SegmentHeader, off_status) == 10 * kCacheLine + 16);
static_assert(offsetof(SegmentHeader, idempotency_ttl_ms) == 10 * kCacheLine + 40);
static_assert(offsetof(SegmentHeader, off_metrics) == 11 * kCacheLine);
static_assert(offsetof(SegmentHeader, agent_version) == 12 * kCacheLine);
static_assert(offsetof(SegmentHeader, rejected) == 12 * kCacheLine + kAgentVersionBytes);
static_assert(kAgentVersionBytes % 8 == 0 && kAgentVersionBytes <= kSharedTextMax);
static_assert(kRejectReasonCount <= kRejectCounters);
static_assert(sizeof(SegmentHeader) == 13 * kCacheLine);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);

// kEvicted: a worker the agent stopped trusting (no heartbeat for
// worker_idle_timeout_ms) while its process lives; it gets no dispatches, and
// on seeing the state the worker registers anew and closes this record.
enum class ClientState : uint32_t {
  kFree = 0,
  kRegistering = 1,
  kActive = 2,
  kClosing = 3,
  kEvicted = 4
};
enum ClientRole : uint32_t { kRoleProducer = 1, kRoleWorker = 2 };

struct TypeName {
  uint8_t len;
  uint8_t batch;  // 1: the worker registered a batch processor for it
  char text[kTypeMaxBytes];
  uint8_t reserved[62];
};
static_assert(sizeof(TypeName) == 128);

// One attached process. The index of its record is its client id (the
// `owner` of slot control words). `state` changes by CAS only.
struct ClientRecord {
  alignas(kCacheLine) uint32_t state;  // ClientState
  uint32_t pid;
  uint64_t start_ticks;   // /proc/<pid>/stat starttime: pid-reuse guard
  uint32_t roles;         // ClientRole bits
  uint32_t incarnation;   // bumped at every registration of this record
  uint32_t type_count;    // published with release after `types`
  uint32_t max_inflight;  // dispatches the worker accepts at once
  uint64_t pid_ns;        // the process's PID namespace (liveness.hpp), 0 unknown
  alignas(kCacheLine) uint64_t heartbeat_mono_ns;  // workers, at least every idle period
  alignas(kCacheLine) WaitWord completion_wake;    // agent -> producer
  alignas(kCacheLine) WaitWord dispatch_wake;      // agent -> worker
  SpscRingHeader completion;                       // agent writes, producer reads
  SpscRingHeader dispatch;                         // agent writes, worker reads
  SpscRingHeader result;                           // worker writes, agent reads
  TypeName types[kMaxTypesPerWorker];
};
static_assert(std::is_standard_layout_v<ClientRecord>);
static_assert(std::is_trivially_copyable_v<ClientRecord>);
static_assert(offsetof(ClientRecord, pid) == 4);
static_assert(offsetof(ClientRecord, roles) == 16);
static_assert(offsetof(ClientRecord, pid_ns) == 32);
static_assert(offsetof(ClientRecord, heartbeat_mono_ns) == 1 * kCacheLine);
static_assert(offsetof(ClientRecord, completion_wake) == 2 * kCacheLine);
static_assert(offsetof(ClientRecord, dispatch_wake) == 3 * kCacheLine);
static_assert(offsetof(ClientRecord, completion) == 4 * kCacheLine);
static_assert(offsetof(ClientRecord, dispatch) == 7 * kCacheLine);
static_assert(offsetof(ClientRecord, result) == 10 * kCacheLine);
static_assert(offsetof(ClientRecord, types) == 13 * kCacheLine);
static_assert(sizeof(ClientRecord) == (13 + kMaxTypesPerWorker) * kCacheLine);

// A hash over every size and offset above: two builds that disagree on any
// of them refuse to share a segment even if the version was not bumped.
[[nodiscard]] constexpr uint64_t layout_hash() noexcept {
  constexpr uint64_t facts[] = {sizeof(SegmentHeader),
                                offsetof(SegmentHeader, agent_pid),
                                offsetof(SegmentHeader, heartbeat_mono_ns),
                                offsetof(SegmentHeader, next_request_id),
                                offsetof(SegmentHeader, doorbell),
                                offsetof(SegmentHeader, off_events),
                                sizeof(Event),
                                sizeof(StatusEntry),
                                sizeof(EventRingHeader),
                                kEventCapacity,
                                offsetof(SegmentHeader, counters),
                                offsetof(SegmentHeader, journal),
                                sizeof(JournalView),
                                offsetof(SegmentHeader, admission),
                                offsetof(SegmentHeader, room),
                                offsetof(SegmentHeader, max_queue_depth),
                                offsetof(SegmentHeader, agent_pid_ns),
                                offsetof(ClientRecord, pid_ns),
                                offsetof(SegmentHeader, status_entries),
                                offsetof(SegmentHeader, idempotency_ttl_ms),
                                offsetof(SegmentHeader, off_metrics),
                                offsetof(SegmentHeader, agent_version),
                                offsetof(SegmentHeader, rejected),
                                kAgentVersionBytes,
                                kRejectCounters,
                                sizeof(AgentCounters),
                                sizeof(ClientRecord),
                                offsetof(ClientRecord, completion),
                                offsetof(ClientRecord, dispatch),
                                offsetof(ClientRecord, result),
                                offsetof(ClientRecord, types),
                                sizeof(TypeName),
                                sizeof(RequestRecord),
                                offsetof(RequestRecord, type),
                                offsetof(RequestRecord, producer_incarnation),
                                offsetof(RequestRecord, metadata),
                                offsetof(RequestRecord, status),
                                offsetof(RequestRecord, result_len),
                                offsetof(RequestRecord, retry_at_mono_ns),
                                offsetof(RequestRecord, history),
                                sizeof(AttemptError),
                                kAttemptHistory,
                                sizeof(BandRingHeader),
                                sizeof(SpscRingHeader),
                                sizeof(WaitWord),
                                kCacheLine,
                                kMaxTypesPerWorker,
                                kLayoutVersion};
  uint64_t h = 0xcbf2'9ce4'8422'2325ull;  // FNV-1a
  for (uint64_t f : facts) {
    for (int i = 0; i < 8; ++i) {
      h ^= (f >> (8 * i)) & 0xff;
      h *= 0x100'0000'01b3ull;
    }
  }
  return h;
}

}  // namespace perfq::shm
