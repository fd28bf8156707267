#include "prometheus.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <string_view>

namespace perfq::test {

double Exposition::value(const std::string& name,
                         const std::map<std::string, std::string>& labels) const {
  for (const Sample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return NAN;
}

namespace {

// [a-zA-Z_:][a-zA-Z0-9_:]* for metric names (colons allowed), without ':'
// for label names.
bool valid_name(std::string_view s, bool colons) {
  auto letter = [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colons && c == ':');
  };
  if (s.empty() || !letter(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

}  // namespace

Exposition parse_exposition(const std::string& text) {
  Exposition x;
  std::map<std::string, bool> helped;
  std::set<std::string> series;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  auto bad = [&](const std::string& why) {
    if (x.error.empty()) x.error = "line " + std::to_string(n) + ": " + why + ": " + line;
  };
  if (text.empty() || text.back() != '\n') x.error = "the text must end with a newline";
  while (std::getline(in, line) && x.error.empty()) {
    ++n;
    if (line.empty()) {
      bad("empty line");
      continue;
    }
    if (line[0] == '#') {
      std::istringstream c(line);
      std::string hash, kind, family, rest;
      c >> hash >> kind >> family;
      std::getline(c, rest);
      if (!valid_name(family, true)) bad("bad family name");
      if (kind == "HELP") {
        if (helped[family]) bad("second HELP");
        helped[family] = true;
      } else if (kind == "TYPE") {
        const std::string t = rest.empty() ? "" : rest.substr(1);
        if (t != "counter" && t != "gauge" && t != "histogram" && t != "summary" &&
            t != "untyped") {
          bad("bad type");
        }
        if (x.types.count(family) != 0) bad("second TYPE");
        if (!helped[family]) bad("TYPE without HELP before it");
        if (t == "counter" &&
            (family.size() < 6 || family.compare(family.size() - 6, 6, "_total") != 0)) {
          bad("a counter's name ends in _total");
        }
        x.types[family] = t;
      } else {
        bad("unknown comment");
      }
      continue;
    }
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!valid_name(s.name, true)) bad("bad metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::size_t eq = line.find('=', i);
        if (eq == std::string::npos) {
          bad("label without =");
          break;
        }
        const std::string lname = line.substr(i, eq - i);
        if (!valid_name(lname, false)) bad("bad label name");
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') {
          bad("unquoted label value");
          break;
        }
        ++i;
        std::string v;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            if (i + 1 >= line.size()) break;
            const char e = line[i + 1];
            if (e == 'n') {
              v += '\n';
            } else if (e == '\\' || e == '"') {
              v += e;
            } else {
              bad("bad escape");
            }
            i += 2;
          } else {
            v += line[i++];
          }
        }
        if (i >= line.size()) {
          bad("unterminated label value");
          break;
        }
        ++i;  // closing quote
        if (s.labels.count(lname) != 0) bad("label twice");
        s.labels[lname] = v;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) {
        bad("unterminated labels");
        continue;
      }
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') {
      bad("no space before the value");
      continue;
    }
    const std::string value = line.substr(i + 1);
    if (value == "+Inf") {
      s.value = INFINITY;
    } else if (value == "-Inf") {
      s.value = -INFINITY;
    } else if (value == "NaN") {
      s.value = NAN;
    } else {
      std::size_t used = 0;
      try {
        s.value = std::stod(value, &used);
      } catch (...) {
        used = 0;
      }
      if (used == 0 || used != value.size()) bad("bad value (or a timestamp)");
    }
    // Its family: the name itself, or a histogram's _bucket/_sum/_count.
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string sx = suffix;
      if (x.types.count(family) == 0 && s.name.size() > sx.size() &&
          s.name.substr(s.name.size() - sx.size()) == sx &&
          x.types.count(s.name.substr(0, s.name.size() - sx.size())) != 0) {
        family = s.name.substr(0, s.name.size() - sx.size());
      }
    }
    if (x.types.count(family) == 0) bad("sample before its family's TYPE");
    if (family != s.name && x.types[family] != "histogram" && x.types[family] != "summary") {
      bad("suffix on a non-histogram");
    }
    if (x.types[family] == "histogram" && family == s.name) bad("bare histogram sample");
    if (s.name.size() > 7 && s.name.substr(s.name.size() - 7) == "_bucket" &&
        s.labels.count("le") == 0) {
      bad("bucket without le");
    }
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) key += "|" + k + "=" + v;
    if (!series.insert(key).second) bad("series twice");
    x.samples.push_back(std::move(s));
  }
  // Histograms: cumulative buckets ending at +Inf == _count.
  for (const auto& [family, type] : x.types) {
    if (type != "histogram" || !x.error.empty()) continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> by;
    for (const Sample& s : x.samples) {
      if (s.name != family + "_bucket") continue;
      auto labels = s.labels;
      const std::string le = labels["le"];
      labels.erase("le");
      by[labels].emplace_back(le == "+Inf" ? INFINITY : std::stod(le), s.value);
    }
    for (const auto& [labels, buckets] : by) {
      for (std::size_t k = 1; k < buckets.size(); ++k) {
        if (buckets[k].first <= buckets[k - 1].first) x.error = family + ": le not increasing";
        if (buckets[k].second < buckets[k - 1].second) x.error = family + ": not cumulative";
      }
      if (buckets.empty() || !std::isinf(buckets.back().first)) {
        x.error = family + ": no +Inf bucket";
      } else if (buckets.back().second != x.value(family + "_count", labels)) {
        x.error = family + ": +Inf bucket differs from _count";
      }
    }
  }
  return x;
}

}  // namespace perfq::test
