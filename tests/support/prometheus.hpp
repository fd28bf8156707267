#pragma once
// A strict parser of the Prometheus text format, for the tests that check
// what /metrics and perfqctl print.
#include <map>
#include <string>
#include <vector>

namespace perfq::test {

// Prometheus text format 0.0.4, strictly: every sample belongs to a family
// declared by # HELP and # TYPE before it, names and labels are well formed,
// label values are quoted with only \\, \" and \n escapes, values are floats,
// no series appears twice, counters end in _total, and each histogram's
// buckets are cumulative, end with le="+Inf", and agree with _count.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> type
  std::vector<Sample> samples;
  std::string error;  // empty when valid

  // The sample's value; NaN when there is none.
  [[nodiscard]] double value(const std::string& name,
                             const std::map<std::string, std::string>& labels) const;
};

Exposition parse_exposition(const std::string& text);

}  // namespace perfq::test
