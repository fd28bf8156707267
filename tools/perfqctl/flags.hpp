#pragma once
// The flags of perfqctl's verbs: "--name value" pairs, bare switches and
// positional words, in any order after the verb.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace perfq::ctl {

struct Flags {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> named;
  std::vector<std::string> switches;
  bool bad = false;  // a flag not in the verb's lists, or a valued one without its value

  // The value of `name`, or nullptr when not given.
  [[nodiscard]] const std::string* get(std::string_view name) const;
  // The value of `name`, or `fallback`.
  [[nodiscard]] std::string value_or(std::string_view name, std::string fallback) const;
  [[nodiscard]] bool has(std::string_view name) const;
};

// `valued` flags take the next word as their value; `bare` ones stand alone.
[[nodiscard]] Flags parse_flags(const std::vector<std::string>& args,
                                std::initializer_list<std::string_view> valued,
                                std::initializer_list<std::string_view> bare);

// A whole decimal number, nothing before or after it.
[[nodiscard]] bool parse_u64(std::string_view text, uint64_t& out);

}  // namespace perfq::ctl
