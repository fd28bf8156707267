#include "events_core.hpp"

#include <algorithm>
#include <string>

#include "perfq/core/iso_time.hpp"

namespace perfq::python {

EventsCore::EventsCore(const std::shared_ptr<SegmentHandle>& seg) {
  auto r = perfq::EventReader::connect(seg->seg);
  if (!r) raise_error(r.error());
  reader_ = std::move(r.value());
}

py::tuple EventsCore::poll(size_t max) {
  const uint64_t missed_before = reader_->missed();
  batch_.clear();
  const size_t n = reader_->poll(batch_, max);
  uint64_t id = reader_->position() - n;
  py::list out;
  for (const perfq::Event& e : batch_) {
    const auto kind =
        static_cast<perfq::EventKind>(e.kind < perfq::kEventKindCount ? e.kind : uint8_t{0});
    const bool request_event =
        kind != perfq::EventKind::kQueueFull && kind != perfq::EventKind::kQueueEmpty;
    if (!request_event) {
      out.append(py::make_tuple(id++, perfq::event_name(kind), perfq::iso_time(e.at_unix_ns)));
      continue;
    }
    const auto status =
        static_cast<perfq::Status>(e.status < perfq::kStatusCount ? e.status : uint8_t{0});
    const auto mode = static_cast<perfq::Mode>(e.mode < perfq::kModeCount ? e.mode : uint8_t{0});
    const auto error =
        perfq::errc_valid(e.error) ? static_cast<perfq::Errc>(e.error) : perfq::Errc::kInternal;
    out.append(py::make_tuple(
        id++, perfq::event_name(kind), perfq::iso_time(e.at_unix_ns), format_id(e.request_id),
        std::string(e.type, std::min<size_t>(e.type_len, perfq::kTypeMaxBytes)),
        std::string(e.user_id, std::min<size_t>(e.user_len, perfq::kUserIdMaxBytes)),
        std::string(perfq::status_name(status)), int{e.priority},
        std::string(perfq::mode_name(mode)), int{e.attempt}, error_or_none(error)));
  }
  return py::make_tuple(reader_->missed() - missed_before, out);
}

}  // namespace perfq::python
