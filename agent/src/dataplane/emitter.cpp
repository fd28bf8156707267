#include "dataplane/emitter.hpp"

#include "dataplane/records.hpp"
#include "perfq/core/atomic.hpp"

namespace perfq::agent {

void Emitter::publish(EventKind kind, uint32_t slot, Status status, Errc error) noexcept {
  Event ev{};
  ev.at_unix_ns = clock_.now_unix_ns();
  ev.kind = static_cast<uint8_t>(kind);
  ev.status = static_cast<uint8_t>(status);
  ev.error = static_cast<uint8_t>(error);
  if (slot != UINT32_MAX) {
    const RequestRecord& rec = seg_.record(slot);
    // Each field loaded once: any member may be writing the record.
    ev.request_id = load_relaxed(rec.request_id);
    ev.priority = load_relaxed(rec.priority);
    ev.attempt = load_relaxed(rec.attempts);
    ev.mode = load_relaxed(rec.mode);
    copy_names(rec, ev);
  }
  events_.publish(ev);
}

}  // namespace perfq::agent
