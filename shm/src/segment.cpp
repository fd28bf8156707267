#include "perfq/shm/segment.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "perfq/core/atomic.hpp"
#include "perfq/core/clock.hpp"
#include "perfq/core/restore_word.hpp"
#include "perfq/shm/admission.hpp"
#include "perfq/shm/geometry_copy.hpp"
#include "perfq/shm/liveness.hpp"
#include "perfq/shm/metrics.hpp"
#include "perfq/shm/status.hpp"

namespace bip = boost::interprocess;

namespace perfq::shm {

struct Segment::Mapping {
  bip::shared_memory_object object;
  bip::mapped_region region;
};

Segment::Segment() = default;
Segment::~Segment() {
  if (probe_fd_ >= 0) ::close(probe_fd_);
}

namespace {

uint32_t next_pow2(uint32_t v) noexcept {
  uint32_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// The header as one copy: each 8-byte word loaded once (relaxed).
SegmentHeader snapshot(const SegmentHeader& shared) noexcept {
  static_assert(sizeof(SegmentHeader) % sizeof(uint64_t) == 0);
  SegmentHeader copy;
  const auto* src = reinterpret_cast<const uint64_t*>(&shared);
  auto* dst = reinterpret_cast<uint64_t*>(&copy);
  for (std::size_t i = 0; i < sizeof(SegmentHeader) / sizeof(uint64_t); ++i) {
    dst[i] = load_relaxed(src[i]);
  }
  return copy;
}

int fd_of(const bip::shared_memory_object& o) noexcept {
  return static_cast<int>(o.get_mapping_handle().handle);
}

std::string errno_text(int e) {
  return std::strerror(e);
}

// The agent maps the whole segment with its pages present, so no dispatch
// ever pays for a page fault. Clients map without populating: a producer or
// worker brings in only the pages it touches (its record, the slots it
// writes or reads), instead of every page of the segment at attach.
constexpr int kAgentMapOptions = MAP_POPULATE;
constexpr int kClientMapOptions = 0;

// What each region of a segment of geometry `g` takes, largest first, with
// the setting that sizes it: "slots 7.7 MB (slot_count 2000 x
// slot_payload_bytes 1024), metrics history 37.3 MB (metrics_types 64), ...".
std::string size_breakdown(const Geometry& g) {
  struct Part {
    uint64_t off;
    std::string what;
  };
  std::vector<Part> parts = {
      {g.off_clients,
       "client records and rings (max_clients " + std::to_string(g.max_clients) + " x slot_count)"},
      {g.off_band_headers, "band rings (slot_count)"},
      {g.off_events, "event ring"},
      {g.off_status,
       "status table (status_table_entries " + std::to_string(g.status_entries) + ")"},
      {g.off_idempotency, "idempotency table (idempotency_table_entries " +
                              std::to_string(g.idempotency_entries) + ")"},
      {g.off_rate,
       "rate-limit table (rate_limit_table_entries " + std::to_string(g.rate_entries) + ")"},
      {g.off_metrics, "metrics history (metrics_types " + std::to_string(g.metrics_types) + ")"},
      {g.off_slots, "slots (slot_count " + std::to_string(g.slot_count) + " x slot_payload_bytes " +
                        std::to_string(g.slot_payload_bytes) + ")"},
  };
  std::sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.off < b.off; });
  std::vector<std::pair<uint64_t, std::string>> sized;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const uint64_t end = i + 1 < parts.size() ? parts[i + 1].off : g.total_bytes;
    if (end > parts[i].off) sized.emplace_back(end - parts[i].off, parts[i].what);
  }
  std::sort(sized.begin(), sized.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string out;
  for (const auto& [bytes, what] : sized) {
    char mb[32];
    std::snprintf(mb, sizeof mb, " %.1f MB", static_cast<double>(bytes) / 1e6);
    out += (out.empty() ? "" : ", ") + what + mb;
  }
  return out;
}

// True when the object is too small for a header or its magic is still zero.
bool never_published(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  if (static_cast<std::size_t>(st.st_size) < sizeof(SegmentHeader)) return true;
  uint64_t magic = 0;
  if (::pread(fd, &magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic)) return false;
  return magic == 0;
}

// Reserves the object's pages in its file system (tmpfs: /dev/shm) so that
// a lack of room is this error, naming the figures, rather than a SIGBUS at
// the first touch of a page that cannot be had.
Result<void> reserve(int fd, const Geometry& g) {
  const int e = ::posix_fallocate(fd, 0, static_cast<off_t>(g.total_bytes));
  if (e == 0) return {};
  struct statvfs fs {};
  const uint64_t free_bytes =
      ::fstatvfs(fd, &fs) == 0 ? uint64_t{fs.f_bavail} * fs.f_frsize : uint64_t{0};
  return Error{Errc::kInternal,
               "cannot reserve the segment: it needs " + std::to_string(g.total_bytes) +
                   " bytes and /dev/shm has " + std::to_string(free_bytes) + " free (" +
                   errno_text(e) + "). It holds: " + size_breakdown(g) +
                   ". slot_count is max_queue_depth x 2 (at least 1024) unless slots is set. "
                   "Lower those settings, or give /dev/shm more room (docker --shm-size; a "
                   "Kubernetes emptyDir of medium Memory with a larger sizeLimit)"};
}

}  // namespace

Geometry compute_geometry(uint32_t slot_count, uint32_t slot_payload_bytes,
                          uint32_t max_clients) noexcept {
  Shape shape;
  shape.slot_count = slot_count;
  shape.slot_payload_bytes = slot_payload_bytes;
  shape.max_clients = max_clients;
  return compute_geometry(shape);
}

namespace {

bool pow2_or_zero(uint32_t v) noexcept {
  return (v & (v - 1)) == 0;
}

}  // namespace

bool shape_valid(const Shape& s) noexcept {
  return pow2_or_zero(s.status_entries) && s.status_entries <= (1u << 24) &&
         pow2_or_zero(s.idempotency_entries) && s.idempotency_entries != 1 &&
         s.idempotency_entries != 2 && s.idempotency_entries <= (1u << 24) &&
         pow2_or_zero(s.rate_entries) && s.rate_entries <= (1u << 20) &&
         s.rate_limit <= RateLimiter::kMaxLimit && (s.rate_limit == 0 || (s.rate_entries >= 4)) &&
         s.metrics_types <= kMetricsTypesMax;
}

Geometry compute_geometry(const Shape& shape) noexcept {
  const uint32_t slot_count = shape.slot_count;
  const uint32_t slot_payload_bytes = shape.slot_payload_bytes;
  const uint32_t max_clients = shape.max_clients;
  Geometry g;
  g.slot_count = slot_count;
  g.slot_payload_bytes = slot_payload_bytes;
  g.band_ring_capacity = next_pow2(slot_count);
  g.client_ring_capacity = next_pow2(slot_count);
  g.max_clients = max_clients;
  g.slot = SlotGeometry::for_capacity(slot_payload_bytes);
  uint64_t off = align_up(sizeof(SegmentHeader), kCacheLine);
  g.off_clients = off;
  off += uint64_t{max_clients} * sizeof(ClientRecord);
  g.off_client_rings = off;
  off += uint64_t{max_clients} * g.client_rings_stride();
  g.off_band_headers = off;
  off += kRingCount * sizeof(BandRingHeader);
  g.off_band_cells = off;
  off += kRingCount * BandRing::cells_bytes(g.band_ring_capacity);
  g.off_slot_ctl = off;
  off += SlotPool::ctl_bytes(slot_count);
  g.off_slot_hints = off;
  off += SlotPool::hint_bytes(slot_count);
  g.off_events = off;
  off += sizeof(EventRingHeader) + EventRing::entries_bytes(kEventCapacity);
  g.status_entries = shape.status_entries;
  g.idempotency_entries = shape.idempotency_entries;
  g.rate_limit = shape.rate_limit;
  g.rate_entries = shape.rate_limit == 0 ? 0 : shape.rate_entries;
  g.off_status = off;
  off += uint64_t{g.status_entries} * sizeof(StatusEntry);
  g.off_idempotency = off;
  if (g.idempotency_entries != 0) {
    off += align_up(IdempotencyTable::bytes_for(g.idempotency_entries), kCacheLine);
  }
  g.off_rate = off;
  if (g.rate_entries != 0) {
    off += align_up(RateLimiter::bytes_for(g.rate_entries, g.rate_limit), kCacheLine);
  }
  g.metrics_types = shape.metrics_types;
  g.off_metrics = off;
  off += align_up(metrics_region_bytes(g.metrics_types), kCacheLine);
  g.off_slots = off;
  off += uint64_t{slot_count} * g.slot.stride;
  g.total_bytes = off;
  return g;
}

bool valid_queue_name(std::string_view q) noexcept {
  if (q.empty() || q.size() > 64) return false;
  for (char c : q) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return q[0] != '.';
}

std::string segment_name(std::string_view queue) {
  return "perfq-" + std::string(queue);
}

bool Segment::remove(std::string_view queue) noexcept {
  return bip::shared_memory_object::remove(segment_name(queue).c_str());
}

void Segment::bind_views() {
  base_ = static_cast<std::byte*>(mapping_->region.get_address());
  size_ = mapping_->region.get_size();
  header_ = reinterpret_cast<SegmentHeader*>(base_);
  pool_ = SlotPool(reinterpret_cast<uint64_t*>(base_ + geo_.off_slot_ctl),
                   reinterpret_cast<uint64_t*>(base_ + geo_.off_slot_hints), geo_.slot_count);
  auto* bh = reinterpret_cast<BandRingHeader*>(base_ + geo_.off_band_headers);
  for (uint8_t b = 0; b < kRingCount; ++b) {
    auto* cells = reinterpret_cast<uint64_t*>(base_ + geo_.off_band_cells +
                                              b * BandRing::cells_bytes(geo_.band_ring_capacity));
    bands_[b] = BandRing(&bh[b], cells, geo_.band_ring_capacity);
  }
}

void Segment::format_client_rings(uint32_t id) noexcept {
  ClientRecord& c = client(id);
  SpscRing::format(c.completion, ring_entries(id, 0), geo_.client_ring_capacity);
  SpscRing::format(c.dispatch, ring_entries(id, 1), geo_.client_ring_capacity);
  SpscRing::format(c.result, ring_entries(id, 2), geo_.client_ring_capacity);
}

void Segment::format(const CreateOptions& opt) {
  // The memory is fresh from ftruncate (all zero) and nobody else can pass
  // validation before `magic` is stored, last, with release.
  SegmentHeader& h = *header_;
  h.layout_version = kLayoutVersion;
  h.header_bytes = sizeof(SegmentHeader);
  h.layout_hash = layout_hash();
  h.total_bytes = geo_.total_bytes;
  h.created_unix_ns = unix_now_ns();
  h.slot_count = geo_.slot_count;
  h.slot_payload_bytes = geo_.slot_payload_bytes;
  h.slot_stride = geo_.slot.stride;
  h.band_ring_capacity = geo_.band_ring_capacity;
  h.client_ring_capacity = geo_.client_ring_capacity;
  h.max_clients = geo_.max_clients;
  h.off_clients = geo_.off_clients;
  h.off_client_rings = geo_.off_client_rings;
  h.off_band_headers = geo_.off_band_headers;
  h.off_band_cells = geo_.off_band_cells;
  h.off_slot_ctl = geo_.off_slot_ctl;
  h.off_slot_hints = geo_.off_slot_hints;
  h.off_slots = geo_.off_slots;
  h.off_events = geo_.off_events;
  h.status_entries = geo_.status_entries;
  h.idempotency_entries = geo_.idempotency_entries;
  h.rate_entries = geo_.rate_entries;
  h.rate_limit = geo_.rate_limit;
  h.off_status = geo_.off_status;
  h.off_idempotency = geo_.off_idempotency;
  h.off_rate = geo_.off_rate;
  h.off_metrics = geo_.off_metrics;
  h.metrics_types = geo_.metrics_types;
  auto& mh = *reinterpret_cast<MetricsHeader*>(base_ + geo_.off_metrics);
  mh.minutes = kMetricsMinutes;
  mh.types = geo_.metrics_types;
  mh.row_bytes = metrics_row_bytes(geo_.metrics_types);
  if (geo_.idempotency_entries != 0) {
    IdempotencyTable::format(base_ + geo_.off_idempotency, geo_.idempotency_entries);
  }
  if (geo_.rate_entries != 0) {
    RateLimiter::format(base_ + geo_.off_rate, geo_.rate_entries, geo_.rate_limit, kRateWindowMs);
  }
  EventRing::format(*reinterpret_cast<EventRingHeader*>(base_ + geo_.off_events),
                    reinterpret_cast<Event*>(base_ + geo_.off_events + sizeof(EventRingHeader)),
                    kEventCapacity);
  // Ids are unique across segments of the same name too: the counter starts
  // at the creation time in milliseconds, shifted to leave 2^16 ids per
  // millisecond of the previous segment's life.
  h.next_request_id = (h.created_unix_ns / 1'000'000) << 16;
  auto* bh = reinterpret_cast<BandRingHeader*>(base_ + geo_.off_band_headers);
  for (uint8_t b = 0; b < kRingCount; ++b) {
    auto* cells = reinterpret_cast<uint64_t*>(base_ + geo_.off_band_cells +
                                              b * BandRing::cells_bytes(geo_.band_ring_capacity));
    BandRing::format(bh[b], cells, geo_.band_ring_capacity);
  }
  SlotPool::format(reinterpret_cast<uint64_t*>(base_ + geo_.off_slot_ctl),
                   reinterpret_cast<uint64_t*>(base_ + geo_.off_slot_hints), geo_.slot_count);
  (void)opt;
  // release: pairs with the acquire load of magic in map_and_validate.
  aref(h.magic).store(kMagic, std::memory_order_release);
}

Result<void> Segment::bind_tables() {
  idem_.reset();
  rate_.reset();
  if (geo_.idempotency_entries != 0) {
    auto t = IdempotencyTable::attach(base_ + geo_.off_idempotency,
                                      IdempotencyTable::bytes_for(geo_.idempotency_entries));
    if (!t) return Error{Errc::kSegmentInvalid, "idempotency table: " + t.error().message};
    idem_.emplace(std::move(*t));
  }
  if (geo_.rate_entries != 0) {
    auto t = RateLimiter::attach(base_ + geo_.off_rate,
                                 RateLimiter::bytes_for(geo_.rate_entries, geo_.rate_limit));
    if (!t) return Error{Errc::kSegmentInvalid, "rate-limit table: " + t.error().message};
    rate_.emplace(std::move(*t));
  }
  return {};
}

Result<void> Segment::map_and_validate(std::string_view queue, bool agent) {
  queue_ = std::string(queue);
  mapping_->region = bip::mapped_region(mapping_->object, bip::read_write, 0, 0, nullptr,
                                        agent ? kAgentMapOptions : kClientMapOptions);
  const std::size_t size = mapping_->region.get_size();
  if (size < sizeof(SegmentHeader)) {
    return {Errc::kSegmentInvalid, "segment is smaller than its header (" + std::to_string(size) +
                                       " bytes): it was never initialised"};
  }
  auto* shared = static_cast<SegmentHeader*>(mapping_->region.get_address());
  // acquire: pairs with the creator's release store of magic.
  if (load_acquire(shared->magic) != kMagic) return {Errc::kSegmentInvalid, "bad magic"};
  // Copied once, word by word (the agent may be rewriting a word a member
  // scribbled on); everything below checks and uses the copy only.
  const SegmentHeader copy = snapshot(*shared);
  const SegmentHeader* h = &copy;
  if (h->layout_version != kLayoutVersion) {
    return {Errc::kSegmentInvalid, "layout version " + std::to_string(h->layout_version) +
                                       ", this build speaks " + std::to_string(kLayoutVersion)};
  }
  if (h->header_bytes != sizeof(SegmentHeader)) return {Errc::kSegmentInvalid, "header size"};
  if (h->layout_hash != layout_hash()) return {Errc::kSegmentInvalid, "layout hash"};
  if (h->slot_count == 0 || h->slot_count > kMaxSlotsLimit) {
    return {Errc::kSegmentInvalid, "slot count out of range"};
  }
  if (h->max_clients == 0 || h->max_clients > kMaxClientsLimit) {
    return {Errc::kSegmentInvalid, "client count out of range"};
  }
  if (h->slot_payload_bytes > (1u << 24)) return {Errc::kSegmentInvalid, "payload size"};
  Shape shape;
  shape.slot_count = h->slot_count;
  shape.slot_payload_bytes = h->slot_payload_bytes;
  shape.max_clients = h->max_clients;
  shape.status_entries = h->status_entries;
  shape.idempotency_entries = h->idempotency_entries;
  shape.rate_entries = h->rate_entries;
  shape.rate_limit = h->rate_limit;
  shape.metrics_types = h->metrics_types;
  if (!shape_valid(shape)) return {Errc::kSegmentInvalid, "table sizes out of range"};
  geo_ = compute_geometry(shape);
  const bool offsets_ok =
      h->slot_stride == geo_.slot.stride && h->band_ring_capacity == geo_.band_ring_capacity &&
      h->client_ring_capacity == geo_.client_ring_capacity && h->off_clients == geo_.off_clients &&
      h->off_client_rings == geo_.off_client_rings &&
      h->off_band_headers == geo_.off_band_headers && h->off_band_cells == geo_.off_band_cells &&
      h->off_slot_ctl == geo_.off_slot_ctl && h->off_slot_hints == geo_.off_slot_hints &&
      h->off_slots == geo_.off_slots && h->off_events == geo_.off_events &&
      h->off_status == geo_.off_status && h->off_idempotency == geo_.off_idempotency &&
      h->off_rate == geo_.off_rate && h->off_metrics == geo_.off_metrics;
  if (!offsets_ok) return {Errc::kSegmentInvalid, "region offsets"};
  if (h->total_bytes != geo_.total_bytes || size < geo_.total_bytes) {
    return {Errc::kSegmentInvalid, "size: the geometry needs " + std::to_string(geo_.total_bytes) +
                                       " bytes, the header says " + std::to_string(h->total_bytes) +
                                       " and the mapping has " + std::to_string(size)};
  }
  bind_views();
  return bind_tables();
}

Result<std::unique_ptr<Segment>> Segment::attach(std::string_view queue) {
  if (!valid_queue_name(queue)) return Error{Errc::kInvalidRequest, "invalid queue name"};
  std::unique_ptr<Segment> s(new Segment());
  s->mapping_ = std::make_unique<Mapping>();
  try {
    s->mapping_->object =
        bip::shared_memory_object(bip::open_only, segment_name(queue).c_str(), bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    return Error{Errc::kAgentUnavailable, "no segment for queue '" + std::string(queue) +
                                              "' (is perfq-agent running?): " + e.what()};
  }
  try {
    if (auto r = s->map_and_validate(queue, false); !r) return r.error();
  } catch (const bip::interprocess_exception& e) {
    return Error{Errc::kSegmentInvalid, std::string("cannot map segment: ") + e.what()};
  }
  s->open_probe();
  return s;
}

// Reopens the segment's own inode (not its name, which a new agent may
// have given another object) as a new open file description.
void Segment::open_probe() noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd_of(mapping_->object));
  probe_fd_ = ::open(path, O_RDONLY | O_CLOEXEC);
}

bool Segment::hold_client_lock(uint32_t id) noexcept {
  return hold_lock_byte(fd_of(mapping_->object), client_lock_byte(id));
}

void Segment::release_client_lock(uint32_t id) noexcept {
  release_lock_byte(fd_of(mapping_->object), client_lock_byte(id));
}

LockProbe Segment::probe_client_lock(uint32_t id) noexcept {
  return probe_lock_byte(probe_fd_, client_lock_byte(id));
}

// Creates the segment's object, or opens the one that exists; `created`
// says which.
Result<void> Segment::open_object(const std::string& name, const CreateOptions& opt,
                                  bool& created) {
  created = false;
  try {
    try {
      mapping_->object = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                                   bip::permissions(static_cast<int>(opt.mode)));
      created = true;
    } catch (const bip::interprocess_exception& e) {
      if (e.get_error_code() != bip::already_exists_error) throw;
      mapping_->object = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    }
  } catch (const bip::interprocess_exception& e) {
    return Error{Errc::kInternal, "cannot open segment /" + name + ": " + e.what()};
  }
  return {};
}

// The queue's agent lock (an flock the kernel drops when its holder dies).
// kConflict, naming the holder's pid if the segment says it, when another
// agent holds it.
Result<void> Segment::take_agent_lock(std::string_view queue) {
  if (::flock(fd_of(mapping_->object), LOCK_EX | LOCK_NB) == 0) return {};
  const int e = errno;
  if (e != EWOULDBLOCK) return Error{Errc::kInternal, "cannot lock segment: " + errno_text(e)};
  std::string who;
  try {
    if (map_and_validate(queue, false)) {
      who = " (pid " + std::to_string(load_acquire(header().agent_pid)) + ")";
    }
  } catch (const bip::interprocess_exception&) {
  }
  return Error{Errc::kConflict,
               "queue '" + std::string(queue) + "' already has a running agent" + who};
}

// Holding the agent lock: gives the object its owner and size, and formats
// it. Removes the name again if it cannot.
Result<void> Segment::create_fresh(std::string_view queue, const CreateOptions& opt) {
  const int fd = fd_of(mapping_->object);
  ::fchmod(fd, static_cast<mode_t>(opt.mode));
  if (!opt.group.empty()) {
    struct group* gr = ::getgrnam(opt.group.c_str());
    if (gr == nullptr || ::fchown(fd, static_cast<uid_t>(-1), gr->gr_gid) != 0) {
      Segment::remove(queue);
      return Error{Errc::kInvalidRequest, "cannot give the segment to group '" + opt.group + "'"};
    }
  }
  Shape shape;
  shape.slot_count = opt.slot_count;
  shape.slot_payload_bytes = opt.slot_payload_bytes;
  shape.max_clients = opt.max_clients;
  shape.status_entries = opt.status_entries;
  shape.idempotency_entries = opt.idempotency_entries;
  shape.rate_entries = opt.rate_entries;
  shape.rate_limit = opt.rate_limit;
  shape.metrics_types = opt.metrics_types;
  if (!shape_valid(shape)) {
    Segment::remove(queue);
    return Error{Errc::kInvalidRequest,
                 "table sizes must be powers of two (idempotency and rate tables at least 4), "
                 "max_requests_per_user_per_minute at most " +
                     std::to_string(RateLimiter::kMaxLimit) + " and metrics_types at most " +
                     std::to_string(kMetricsTypesMax)};
  }
  const Geometry geo = compute_geometry(shape);
  try {
    mapping_->object.truncate(static_cast<bip::offset_t>(geo.total_bytes));
    if (auto r = reserve(fd, geo); !r) {
      Segment::remove(queue);
      return r.error();
    }
    mapping_->region =
        bip::mapped_region(mapping_->object, bip::read_write, 0, 0, nullptr, kAgentMapOptions);
  } catch (const bip::interprocess_exception& e) {
    Segment::remove(queue);
    return Error{Errc::kInternal, std::string("cannot size segment: ") + e.what()};
  }
  queue_ = std::string(queue);
  geo_ = geo;
  bind_views();
  format(opt);
  bind_views();  // the consumer's head of each ring, known only after format
  return bind_tables();
}

// Holding the agent lock: validates the segment a previous agent left, then
// repairs what that agent may have left half-written.
Result<void> Segment::reattach(std::string_view queue, const std::string& name,
                               const std::string& copy_path) {
  try {
    if (auto r = map_and_validate(queue, true); !r) {
      // A member of the group may have scribbled on the header: rebuilt
      // from the agent's own copy, the queue and what it holds are kept.
      auto rebuilt = copy_path.empty() ? Result<void>(r.error())
                                       : rebuild_header(std::string(queue), copy_path);
      if (!rebuilt) {
        return Error{r.error().code,
                     "existing segment /" + name + " fails validation: " + r.error().message +
                         (copy_path.empty() ? "" : " (and " + rebuilt.error().message + ")") +
                         " (remove it with `perfqctl --queue " + std::string(queue) +
                         " destroy` if no process uses it; that loses what it holds)"};
      }
      rebuilt_ = r.error().message;
    }
  } catch (const bip::interprocess_exception& e) {
    return Error{Errc::kSegmentInvalid, std::string("cannot map segment: ") + e.what()};
  }
  repair_after_takeover();
  return {};
}

// Holding the agent lock, with a header that fails validation: rewrites
// every identity and geometry word (and the keyed tables' headers, with
// their seeds) from the copy, then validates afresh.
Result<void> Segment::rebuild_header(const std::string& queue, const std::string& copy_path) {
  auto copy = load_geometry_copy(copy_path);
  if (!copy) return copy.error();
  const Geometry geo = compute_geometry(copy->shape);
  if (mapping_->region.get_size() < geo.total_bytes) {
    return Error{Errc::kSegmentInvalid,
                 "the geometry copy " + copy_path + " describes a larger segment than this one"};
  }
  geo_ = geo;
  base_ = static_cast<std::byte*>(mapping_->region.get_address());
  if (geo.idempotency_entries != 0) {
    (void)KeyedTable::adopt(base_ + geo.off_idempotency, geo.idempotency_entries,
                            sizeof(IdempotencyEntry), copy->idempotency_seed)
        .restore_header(TableKind::kIdempotency, 0, 0);
  }
  if (geo.rate_entries != 0) {
    (void)KeyedTable::adopt(base_ + geo.off_rate, geo.rate_entries,
                            RateLimiter::entry_stride(geo.rate_limit), copy->rate_seed)
        .restore_header(TableKind::kRateLimit, geo.rate_limit, kRateWindowMs);
  }
  bind_views();
  (void)restore_header();  // magic last, with release
  return map_and_validate(queue, true);
}

// The agent's copy of what it attached to, for a later rebuild. A copy it
// cannot write only loses that help; the queue runs without it.
void Segment::save_copy(const std::string& path) noexcept {
  if (path.empty()) return;
  GeometryCopy c;
  c.shape = Shape{geo_.slot_count,     geo_.slot_payload_bytes,  geo_.max_clients,
                  geo_.status_entries, geo_.idempotency_entries, geo_.rate_entries,
                  geo_.rate_limit,     geo_.metrics_types};
  c.total_bytes = geo_.total_bytes;
  if (idem_) c.idempotency_seed = idem_->table().seed();
  if (rate_) c.rate_seed = rate_->table().seed();
  try {
    (void)save_geometry_copy(path, c);
  } catch (...) {
  }
}

// Every sequence lock the agent is the only writer of, and a dead agent may
// have left odd (docs/PROTOCOL.md, "Sequence locks"). The metrics rows need
// nothing here: MetricsWriter rewrites the since-start row when it starts,
// and a minute row's clearing marker reads as an empty row.
void Segment::repair_after_takeover() noexcept {
  repair_admission(*this);
  repair_status_table(*this);
  (void)events().repair();
}

Result<std::unique_ptr<Segment>> Segment::open_for_agent(std::string_view queue,
                                                         const CreateOptions& opt, Opened& how) {
  if (!valid_queue_name(queue)) return Error{Errc::kInvalidRequest, "invalid queue name"};
  const std::string name = segment_name(queue);
  std::unique_ptr<Segment> s(new Segment());
  s->mapping_ = std::make_unique<Mapping>();
  bool created = false;
  if (auto r = s->open_object(name, opt, created); !r) return r.error();
  if (auto r = s->take_agent_lock(queue); !r) return r.error();
  // The liveness lock clients and tools probe, in any PID namespace.
  if (!hold_lock_byte(fd_of(s->mapping_->object), kAgentLockByte)) {
    return Error{Errc::kConflict, "cannot take the agent's liveness lock on segment /" + name +
                                      " (another process holds byte 0)"};
  }
  s->open_probe();
  // Holding the lock, a segment whose magic was never stored is one whose
  // creator died (or lost the lock race) before publishing it: nobody can
  // have attached to it, so it is formatted afresh rather than refused.
  if (created || never_published(fd_of(s->mapping_->object))) {
    if (auto r = s->create_fresh(queue, opt); !r) return r.error();
    s->save_copy(opt.geometry_copy);
    how = Opened::kCreated;
    return s;
  }
  if (auto r = s->reattach(queue, name, opt.geometry_copy); !r) return r.error();
  s->save_copy(opt.geometry_copy);
  how = Opened::kReattached;
  return s;
}

int Segment::restore_header() noexcept {
  SegmentHeader& h = *header_;
  int n = 0;
  n += restore_word(h.layout_version, kLayoutVersion);
  n += restore_word(h.header_bytes, static_cast<uint32_t>(sizeof(SegmentHeader)));
  n += restore_word(h.layout_hash, layout_hash());
  n += restore_word(h.total_bytes, geo_.total_bytes);
  n += restore_word(h.slot_count, geo_.slot_count);
  n += restore_word(h.slot_payload_bytes, geo_.slot_payload_bytes);
  n += restore_word(h.slot_stride, geo_.slot.stride);
  n += restore_word(h.band_ring_capacity, geo_.band_ring_capacity);
  n += restore_word(h.client_ring_capacity, geo_.client_ring_capacity);
  n += restore_word(h.max_clients, geo_.max_clients);
  for (auto [field, want] : {std::pair{&h.off_clients, geo_.off_clients},
                             {&h.off_client_rings, geo_.off_client_rings},
                             {&h.off_band_headers, geo_.off_band_headers},
                             {&h.off_band_cells, geo_.off_band_cells},
                             {&h.off_slot_ctl, geo_.off_slot_ctl},
                             {&h.off_slot_hints, geo_.off_slot_hints},
                             {&h.off_slots, geo_.off_slots},
                             {&h.off_events, geo_.off_events},
                             {&h.off_status, geo_.off_status},
                             {&h.off_idempotency, geo_.off_idempotency},
                             {&h.off_rate, geo_.off_rate},
                             {&h.off_metrics, geo_.off_metrics}}) {
    n += restore_word(*field, want);
  }
  n += restore_word(h.status_entries, geo_.status_entries);
  n += restore_word(h.idempotency_entries, geo_.idempotency_entries);
  n += restore_word(h.rate_entries, geo_.rate_entries);
  n += restore_word(h.rate_limit, geo_.rate_limit);
  n += restore_word(h.metrics_types, geo_.metrics_types);
  auto* bh = reinterpret_cast<BandRingHeader*>(base_ + geo_.off_band_headers);
  for (uint8_t b = 0; b < kRingCount; ++b) {
    n += restore_word(bh[b].capacity, geo_.band_ring_capacity);
    n += restore_word(bh[b].mask, geo_.band_ring_capacity - 1);
  }
  n += restore_word(reinterpret_cast<EventRingHeader*>(base_ + geo_.off_events)->capacity,
                    kEventCapacity);
  auto& mh = *reinterpret_cast<MetricsHeader*>(base_ + geo_.off_metrics);
  n += restore_word(mh.minutes, kMetricsMinutes);
  n += restore_word(mh.types, geo_.metrics_types);
  n += restore_word(mh.row_bytes, metrics_row_bytes(geo_.metrics_types));
  if (idem_) n += idem_->restore_header();
  if (rate_) n += rate_->restore_header();
  // Last, with release: a client that sees the magic sees the words above.
  if (load_acquire(h.magic) != kMagic) {
    aref(h.magic).store(kMagic, std::memory_order_release);
    ++n;
  }
  return n;
}

uint32_t Segment::owner_uid() const noexcept {
  struct stat st {};
  if (::fstat(fd_of(mapping_->object), &st) != 0) return UINT32_MAX;  // matches no server
  return static_cast<uint32_t>(st.st_uid);
}

bool Segment::agent_alive() noexcept {
  switch (probe_lock_byte(probe_fd_, kAgentLockByte)) {
    case LockProbe::kHeld:
      return true;
    case LockProbe::kFree:
      return false;
    case LockProbe::kUnknown:
      break;
  }
  // No lock to read (no /proc to reopen the file through): the pid, which
  // only answers within the agent's PID namespace.
  const auto pid = load_acquire(header_->agent_pid);
  const auto ticks = load_acquire(header_->agent_start_ticks);
  return pid != 0 && process_alive(pid, ticks);
}

}  // namespace perfq::shm
