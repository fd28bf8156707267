#include "flags.hpp"

#include <algorithm>
#include <charconv>

namespace perfq::ctl {

const std::string* Flags::get(std::string_view name) const {
  for (const auto& [k, v] : named) {
    if (k == name) return &v;
  }
  return nullptr;
}

std::string Flags::value_or(std::string_view name, std::string fallback) const {
  const std::string* v = get(name);
  return v != nullptr ? *v : fallback;
}

bool Flags::has(std::string_view name) const {
  return std::find(switches.begin(), switches.end(), name) != switches.end();
}

Flags parse_flags(const std::vector<std::string>& args,
                  std::initializer_list<std::string_view> valued,
                  std::initializer_list<std::string_view> bare) {
  Flags f;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& x = args[i];
    if (x.rfind("--", 0) != 0) {
      f.positional.push_back(x);
    } else if (std::find(valued.begin(), valued.end(), x) != valued.end() && i + 1 < args.size()) {
      f.named.emplace_back(x, args[++i]);
    } else if (std::find(bare.begin(), bare.end(), x) != bare.end()) {
      f.switches.push_back(x);
    } else {
      f.bad = true;
    }
  }
  return f;
}

bool parse_u64(std::string_view text, uint64_t& out) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc{} && r.ptr == text.data() + text.size();
}

}  // namespace perfq::ctl
