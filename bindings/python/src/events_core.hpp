#pragma once
// EventsCore: an EventReader on the queue's event ring, polled by the
// Python layer (perfq.Queue.on and its thread). Never blocks.
#include <pybind11/pybind11.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "perfq/client/events.hpp"
#include "py_util.hpp"

namespace perfq::python {

class EventsCore {
 public:
  explicit EventsCore(const std::shared_ptr<SegmentHandle>& seg);

  // Never blocks. Returns (missed, [event tuples]); `missed` counts events
  // lost before these by falling behind. An event tuple: (id, event, at,
  // request_id, type, user_id, status, priority, mode, attempt, error);
  // the request fields are None for queue events.
  py::tuple poll(size_t max);

 private:
  std::unique_ptr<perfq::EventReader> reader_;
  std::vector<perfq::Event> batch_;
};

}  // namespace perfq::python
