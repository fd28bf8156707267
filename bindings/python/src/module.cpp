// perfq._perfq: the native half of the Python binding (bindings/python/perfq
// is the other half). This file is only the module glue: the error
// translator, the classes' registration and attach(). Three cores share one
// attached segment, each in its own file:
//
//   QueueCore   queue_core.hpp   producer side: submit, result (outcomes kept
//                                by a perfq::CompletionPump, whose completion
//                                thread owns the completion ring through
//                                Producer::wait_any), status, cancel
//   WorkerCore  worker_core.hpp  worker side: processors and the run loop
//   EventsCore  events_core.hpp  an EventReader, polled by the Python layer
//   py_util.hpp                  error mapping, request ids, the segment handle
//
// The GIL is released around everything that may wait; waits run in bounded
// slices so KeyboardInterrupt (PyErr_CheckSignals) and close() are noticed.
// perfq errors leave as NativeError and become perfq.Error subclasses in the
// translator registered below; no C++ exception escapes unconverted.
//
// Lock order: the GIL may be held when taking a core's mutex, never the
// other way round (a thread holding a core mutex never waits for the GIL).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "events_core.hpp"
#include "py_util.hpp"
#include "queue_core.hpp"
#include "worker_core.hpp"

namespace {

using perfq::python::EventsCore;
using perfq::python::NativeError;
using perfq::python::QueueCore;
using perfq::python::SegmentHandle;
using perfq::python::WorkerCore;

std::shared_ptr<SegmentHandle> attach(const std::string& queue) {
  perfq::Result<std::unique_ptr<perfq::shm::Segment>> r = [&] {
    py::gil_scoped_release nogil;
    return perfq::shm::Segment::attach(queue);
  }();
  if (!r) perfq::python::raise_error(r.error());
  auto h = std::make_shared<SegmentHandle>();
  h->seg = std::shared_ptr<perfq::shm::Segment>(std::move(r.value()));
  h->queue = queue;
  return h;
}

}  // namespace

PYBIND11_MODULE(_perfq, m) {
  m.doc() = "perfq native module; use the perfq package instead";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const NativeError& e) {
      try {
        py::object factory = py::module_::import("perfq._errors").attr("_from_native");
        py::object exc = factory(e.code, e.status_code, e.message, e.retry_after_ms);
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
      } catch (py::error_already_set& err) {
        err.restore();
      }
    }
  });

  py::class_<SegmentHandle, std::shared_ptr<SegmentHandle>>(m, "Segment")
      .def_readonly("queue", &SegmentHandle::queue);
  m.def("attach", &attach, py::arg("queue"));

  py::class_<QueueCore>(m, "QueueCore")
      .def(py::init<std::shared_ptr<SegmentHandle>, std::optional<std::string>, bool, size_t>(),
           py::arg("segment"), py::arg("user_id"), py::arg("admin"),
           py::arg("max_uncollected") = perfq::python::kDefaultMaxUncollected)
      .def("submit", &QueueCore::submit, py::arg("type"), py::arg("payload"), py::arg("mode"),
           py::arg("priority"), py::arg("idempotency_key"), py::arg("metadata"),
           py::arg("wait_for_room"))
      .def("submit_many", &QueueCore::submit_many, py::arg("requests"), py::arg("wait_for_room"))
      .def("result", &QueueCore::result, py::arg("request_id"), py::arg("timeout_s"))
      .def("watch", &QueueCore::watch, py::arg("request_id"), py::arg("callback"))
      .def("unwatch", &QueueCore::unwatch, py::arg("request_id"), py::arg("callback"))
      .def("watchers", &QueueCore::watchers)
      .def("forgotten", &QueueCore::forgotten)
      .def("forget", &QueueCore::forget, py::arg("request_id"))
      .def("status", &QueueCore::status, py::arg("request_id"))
      .def("cancel", &QueueCore::cancel, py::arg("request_id"))
      .def("tracked", &QueueCore::tracked)
      .def("waiting", &QueueCore::waiting)
      .def("close", &QueueCore::close);

  py::class_<WorkerCore>(m, "WorkerCore")
      .def(py::init<std::shared_ptr<SegmentHandle>>(), py::arg("segment"))
      .def("register_processor", &WorkerCore::register_processor, py::arg("type"),
           py::arg("adapter"))
      .def("register_batch_processor", &WorkerCore::register_batch_processor, py::arg("type"),
           py::arg("adapter"))
      .def("run", &WorkerCore::run, py::arg("stop"), py::arg("gather"))
      .def("close", &WorkerCore::close)
      .def("gil_holds", &WorkerCore::gil_holds);

  py::class_<EventsCore>(m, "EventsCore")
      .def(py::init<const std::shared_ptr<SegmentHandle>&>(), py::arg("segment"))
      .def("poll", &EventsCore::poll, py::arg("max") = 1024);
}
