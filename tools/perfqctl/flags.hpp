#pragma once
// How a verb declares its command line. CLI11 parses it (flags.cpp, the one
// file besides main.cpp that includes it); this wrapper makes every option
// read the same in --help (what it does, its default, its unit) and every
// refused value name its flag and say why: "--limit: 'abc' is not an
// integer". Options are accepted before or after the verb, as --flag value
// or --flag=value.
//
// The variables an option binds must outlive the parse: a verb keeps them
// in the state its Run owns (verbs.hpp).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace CLI {
class App;
}

namespace perfq::ctl {

class Command {
 public:
  explicit Command(CLI::App& app) noexcept : app_(&app) {}

  // A verb under this one (`dlq list`); exactly one must be given.
  [[nodiscard]] Command verb(const char* name, const char* help);
  // Whether this command is the one the command line named.
  [[nodiscard]] bool given() const;
  // Printed under the options in --help, before what is there already.
  void footer(const std::string& text);

  // --name TEXT; `out` holds the default, if any. `required`: the verb
  // cannot run without it.
  void text(const char* name, std::string& out, const std::string& help, bool required = false);
  // --name N, a whole number from lo to hi; `out` holds the default. `unit`
  // names the value in --help (N, MINUTES).
  void number(const char* name, uint64_t& out, uint64_t lo, uint64_t hi, const char* unit,
              const std::string& help);
  // The same without a default: nullopt when not given.
  void number(const char* name, std::optional<uint64_t>& out, uint64_t lo, uint64_t hi,
              const char* unit, const std::string& help);
  // --name DURATION (parse_duration_ms), at least lo_ms; `out_ms` holds the
  // default.
  void duration(const char* name, uint64_t& out_ms, uint64_t lo_ms, const std::string& help);
  // The same without a default: nullopt when not given.
  void duration(const char* name, std::optional<uint64_t>& out_ms, uint64_t lo_ms,
                const std::string& help);
  // --timeout DURATION of a verb that waits for `what`; `out_ms` holds the
  // default.
  void timeout(uint64_t& out_ms, const std::string& what);
  // --name, a switch.
  void flag(const char* name, bool& out, const std::string& help);
  // A required word in its place (an ID).
  void word(const char* name, std::string& out, const std::string& help);
  // --name is refused unless --other is given too.
  void needs(const char* name, const char* other);

 private:
  CLI::App* app_;
};

// A duration as perfqctl's flags take it: a whole number and its unit, one
// of ms, s, m, h: "500ms", "5s", "2m". No unit is an error (is "5" five
// seconds or five milliseconds?). At most a week.
[[nodiscard]] bool parse_duration_ms(std::string_view text, uint64_t& out_ms);
// A duration for messages and --help, in the largest unit that divides it:
// 60000 -> "1m", 30000 -> "30s", 1500 -> "1500ms".
[[nodiscard]] std::string duration_text(uint64_t ms);

// A whole decimal number, nothing before or after it.
[[nodiscard]] bool parse_u64(std::string_view text, uint64_t& out);

}  // namespace perfq::ctl
