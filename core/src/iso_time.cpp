#include "perfq/core/iso_time.hpp"

#include <cstdio>
#include <ctime>

namespace perfq {

std::string iso_time(uint64_t unix_ns) {
  const auto secs = static_cast<time_t>(unix_ns / 1'000'000'000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<unsigned>(unix_ns / 1'000'000 % 1000));
  return buf;
}

}  // namespace perfq
