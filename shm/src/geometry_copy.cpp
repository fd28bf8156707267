#include "perfq/shm/geometry_copy.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace perfq::shm {

namespace {

constexpr const char* kFirstLine = "perfq-segment-geometry 1";
constexpr std::size_t kMaxBytes = 4096;

// The copy's fields, by name, in the order they are written.
template <class Fn>
void each_field(GeometryCopy& c, Fn&& fn) {
  fn("slot_count", c.shape.slot_count);
  fn("slot_payload_bytes", c.shape.slot_payload_bytes);
  fn("max_clients", c.shape.max_clients);
  fn("status_entries", c.shape.status_entries);
  fn("idempotency_entries", c.shape.idempotency_entries);
  fn("rate_entries", c.shape.rate_entries);
  fn("rate_limit", c.shape.rate_limit);
  fn("metrics_types", c.shape.metrics_types);
  fn("total_bytes", c.total_bytes);
  fn("idempotency_seed", c.idempotency_seed);
  fn("rate_seed", c.rate_seed);
}

}  // namespace

Result<void> save_geometry_copy(const std::string& path, const GeometryCopy& copy) {
  std::ostringstream text;
  text << kFirstLine << '\n';
  GeometryCopy c = copy;
  each_field(c, [&text](const char* name, auto v) { text << name << ' ' << v << '\n'; });
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text.str();
    out.flush();
    if (!out) return {Errc::kInternal, "cannot write " + tmp + ": " + std::strerror(errno)};
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return {Errc::kInternal, "cannot rename " + tmp + ": " + std::strerror(errno)};
  }
  return {};
}

Result<GeometryCopy> load_geometry_copy(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error{Errc::kNotFound, "no geometry copy at " + path};
  std::string text(kMaxBytes, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  std::istringstream lines(text);
  std::string first;
  std::getline(lines, first);
  auto bad = [&path](const std::string& why) {
    return Error{Errc::kSegmentInvalid, "geometry copy " + path + ": " + why};
  };
  if (first != kFirstLine) return bad("not a perfq geometry copy");
  GeometryCopy c;
  bool ok = true;
  each_field(c, [&](const char* name, auto& v) {
    std::string key;
    if (!(lines >> key >> v) || key != name) ok = false;
  });
  if (!ok) return bad("fields missing or out of order");
  const Shape& sh = c.shape;
  const bool ranges = sh.slot_count >= 1 && sh.slot_count <= kMaxSlotsLimit &&
                      sh.max_clients >= 1 && sh.max_clients <= kMaxClientsLimit &&
                      sh.slot_payload_bytes <= (1u << 24);
  if (!ranges || !shape_valid(sh) || compute_geometry(sh).total_bytes != c.total_bytes) {
    return bad("describes no valid segment");
  }
  return c;
}

}  // namespace perfq::shm
