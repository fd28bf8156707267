#pragma once
// Segment: create, attach and validate the shared-memory segment of a queue,
// and typed access to its regions.
//
// The agent creates (or re-attaches to) the segment and holds an exclusive
// flock on it for as long as it runs; the kernel drops the lock when the
// agent dies, so a lock can never outlive its holder. Producers, workers and
// perfqctl attach to an existing segment, and attach refuses a segment whose
// identity or geometry does not check out, naming the check that failed.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "perfq/core/band_ring.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"
#include "perfq/core/slot_pool.hpp"
#include "perfq/core/spsc_ring.hpp"
#include "perfq/shm/layout.hpp"
#include "perfq/shm/liveness.hpp"
#include "perfq/shm/tables/idempotency.hpp"
#include "perfq/shm/tables/rate_limit.hpp"

namespace perfq::shm {

struct CreateOptions {
  uint32_t slot_count = 20000;
  uint32_t slot_payload_bytes = 4096;
  uint32_t max_clients = 64;
  uint32_t status_entries = Shape{}.status_entries;
  uint32_t idempotency_entries = Shape{}.idempotency_entries;
  uint32_t rate_entries = Shape{}.rate_entries;
  uint32_t rate_limit = Shape{}.rate_limit;
  uint32_t metrics_types = Shape{}.metrics_types;
  uint32_t mode = 0660;
  std::string group;  // empty: the creator's group
  // The agent's copy of the segment's shape (geometry_copy.hpp), kept
  // outside the segment; empty: none. Written after the segment is created
  // or attached; used to rebuild a header that fails validation.
  std::string geometry_copy;
};

// The object name of a queue's segment: "perfq-<queue>" (/dev/shm/perfq-<queue>).
[[nodiscard]] std::string segment_name(std::string_view queue);
[[nodiscard]] bool valid_queue_name(std::string_view queue) noexcept;

class Segment {
 public:
  enum class Opened : uint8_t { kCreated, kReattached };

  // Agent only. Takes the queue's agent lock; creates the segment, or
  // re-attaches to the one a previous agent left and repairs the sequence
  // locks that agent may have left odd (admission view, status entries, the
  // event at the ring's tail). Fails with a message when another agent
  // holds the lock or an existing segment does not validate.
  [[nodiscard]] static Result<std::unique_ptr<Segment>> open_for_agent(std::string_view queue,
                                                                       const CreateOptions& opt,
                                                                       Opened& how);
  // Producers, workers, tools. Validates before returning.
  [[nodiscard]] static Result<std::unique_ptr<Segment>> attach(std::string_view queue);
  // Removes the name; existing mappings stay valid.
  static bool remove(std::string_view queue) noexcept;

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  [[nodiscard]] SegmentHeader& header() noexcept { return *header_; }
  [[nodiscard]] const SegmentHeader& header() const noexcept { return *header_; }
  [[nodiscard]] const Geometry& geometry() const noexcept { return geo_; }
  [[nodiscard]] std::size_t size_bytes() const noexcept { return size_; }
  [[nodiscard]] const std::string& queue() const noexcept { return queue_; }

  [[nodiscard]] SlotPool& pool() noexcept { return pool_; }
  [[nodiscard]] BandRing& band(Band b) noexcept { return bands_[static_cast<uint8_t>(b)]; }
  [[nodiscard]] BandRing& cancel_ring() noexcept { return bands_[kCancelRing]; }
  // The MPSC rings by index: bands 0..3, then kCancelRing.
  [[nodiscard]] BandRing& ring(uint8_t i) noexcept {
    return bands_[i < kRingCount ? i : kCancelRing];
  }
  [[nodiscard]] RequestRecord& record(uint32_t slot) noexcept {
    return *reinterpret_cast<RequestRecord*>(slot_base(slot));
  }
  [[nodiscard]] std::byte* payload(uint32_t slot) noexcept {
    return slot_base(slot) + geo_.slot.payload_offset;
  }
  [[nodiscard]] std::byte* result(uint32_t slot) noexcept {
    return slot_base(slot) + geo_.slot.result_offset;
  }
  [[nodiscard]] ClientRecord& client(uint32_t id) noexcept {
    return reinterpret_cast<ClientRecord*>(base_ + geo_.off_clients)[id];
  }
  [[nodiscard]] SpscRing completion_ring(uint32_t id) noexcept {
    return SpscRing(&client(id).completion, ring_entries(id, 0), geo_.client_ring_capacity);
  }
  [[nodiscard]] SpscRing dispatch_ring(uint32_t id) noexcept {
    return SpscRing(&client(id).dispatch, ring_entries(id, 1), geo_.client_ring_capacity);
  }
  [[nodiscard]] SpscRing result_ring(uint32_t id) noexcept {
    return SpscRing(&client(id).result, ring_entries(id, 2), geo_.client_ring_capacity);
  }
  [[nodiscard]] EventRing events() noexcept {
    return EventRing(reinterpret_cast<EventRingHeader*>(base_ + geo_.off_events),
                     reinterpret_cast<Event*>(base_ + geo_.off_events + sizeof(EventRingHeader)),
                     kEventCapacity);
  }
  // The status table (status.hpp): the entry request `id` maps to.
  [[nodiscard]] uint32_t status_capacity() const noexcept { return geo_.status_entries; }
  [[nodiscard]] StatusEntry& status_entry(uint64_t id) noexcept {
    return reinterpret_cast<StatusEntry*>(base_ + geo_.off_status)[id & (geo_.status_entries - 1)];
  }
  // The metrics history region (metrics.hpp).
  [[nodiscard]] std::byte* metrics_region() noexcept { return base_ + geo_.off_metrics; }
  [[nodiscard]] const std::byte* metrics_region() const noexcept {
    return base_ + geo_.off_metrics;
  }
  // The producers' tables; nullptr when the segment has none.
  [[nodiscard]] IdempotencyTable* idempotency() noexcept { return idem_ ? &*idem_ : nullptr; }
  [[nodiscard]] RateLimiter* rate_limiter() noexcept { return rate_ ? &*rate_ : nullptr; }

  // Resets a client's three rings; only while the record is kRegistering.
  void format_client_rings(uint32_t id) noexcept;

  // Agent only: rewrites every identity and geometry word of the header (and
  // the sizes in the band, event and metrics headers) that differs from this
  // process's own geometry, so that a member's scribble there cannot lock
  // new clients out while the agent runs. Compares before it writes: a sound
  // header costs reads only. Returns the words rewritten.
  int restore_header() noexcept;

  // Why the header was rebuilt from the geometry copy when this agent
  // attached (the validation it failed); empty when it was not.
  [[nodiscard]] const std::string& header_rebuilt() const noexcept { return rebuilt_; }

  // The user that owns the segment's object (its creator, the agent).
  [[nodiscard]] uint32_t owner_uid() const noexcept;

  // Whether the process that last owned the segment as agent is alive:
  // its liveness lock (liveness.hpp) is held. Works across PID namespaces.
  [[nodiscard]] bool agent_alive() noexcept;

  // Client record `id`'s liveness lock (liveness.hpp), held through this
  // Segment's descriptor. Probes go through a second descriptor of the same
  // file that holds nothing, so they see every holder, this process's other
  // Segments included.
  [[nodiscard]] bool hold_client_lock(uint32_t id) noexcept;
  void release_client_lock(uint32_t id) noexcept;
  [[nodiscard]] LockProbe probe_client_lock(uint32_t id) noexcept;

 private:
  Segment();
  // `agent`: map with every page present (clients map lazily).
  [[nodiscard]] Result<void> map_and_validate(std::string_view queue, bool agent);
  void format(const CreateOptions& opt);
  void bind_views();
  [[nodiscard]] Result<void> bind_tables();
  // open_for_agent's steps.
  [[nodiscard]] Result<void> open_object(const std::string& name, const CreateOptions& opt,
                                         bool& created);
  [[nodiscard]] Result<void> take_agent_lock(std::string_view queue);
  void open_probe() noexcept;
  [[nodiscard]] Result<void> create_fresh(std::string_view queue, const CreateOptions& opt);
  [[nodiscard]] Result<void> reattach(std::string_view queue, const std::string& name,
                                      const std::string& copy_path);
  void repair_after_takeover() noexcept;
  [[nodiscard]] Result<void> rebuild_header(const std::string& queue, const std::string& copy_path);
  void save_copy(const std::string& path) noexcept;
  [[nodiscard]] std::byte* slot_base(uint32_t slot) noexcept {
    return base_ + geo_.off_slots + std::size_t{slot} * geo_.slot.stride;
  }
  [[nodiscard]] uint64_t* ring_entries(uint32_t id, uint32_t which) noexcept {
    return reinterpret_cast<uint64_t*>(base_ + geo_.off_client_rings +
                                       id * geo_.client_rings_stride() +
                                       which * SpscRing::entries_bytes(geo_.client_ring_capacity));
  }

  struct Mapping;  // the Boost.Interprocess objects
  std::unique_ptr<Mapping> mapping_;
  int probe_fd_ = -1;  // a second open file description, for lock probes only
  std::string queue_;
  std::byte* base_ = nullptr;
  std::string rebuilt_;
  std::size_t size_ = 0;
  SegmentHeader* header_ = nullptr;
  Geometry geo_{};
  SlotPool pool_{};
  BandRing bands_[kRingCount]{};  // the four bands, then the cancel ring
  std::optional<IdempotencyTable> idem_;
  std::optional<RateLimiter> rate_;
};

}  // namespace perfq::shm
