#include "flags.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>

#include "verbs.hpp"

namespace perfq::ctl {

namespace {

constexpr uint64_t kMaxDurationMs = uint64_t{7} * 24 * 3600 * 1000;

struct Unit {
  std::string_view suffix;
  uint64_t ms;
};
// Largest first: duration_text takes the first that divides.
constexpr Unit kUnits[] = {{"h", 3'600'000}, {"m", 60'000}, {"s", 1000}, {"ms", 1}};

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string range_text(uint64_t lo, uint64_t hi) {
  return std::to_string(lo) + ".." + std::to_string(hi);
}

// CLI11 prefixes what a check returns with the option's name.
CLI::Validator number_check(uint64_t lo, uint64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) -> std::string {
        uint64_t n = 0;
        if (parse_u64(v, n) && n >= lo && n <= hi) return {};
        const bool integer =
            all_digits(v) || (v.size() > 1 && v[0] == '-' && all_digits(v.substr(1)));
        if (!integer) return "'" + v + "' is not an integer";
        return v + " is out of range " + range_text(lo, hi);
      },
      "");
}

CLI::Validator duration_check(uint64_t lo_ms) {
  return CLI::Validator(
      [lo_ms](std::string& v) -> std::string {
        uint64_t ms = 0;
        if (!parse_duration_ms(v, ms)) {
          return "'" + v +
                 "' is not a duration: a whole number and its unit, ms, s, m or h "
                 "(500ms, 5s), at most a week";
        }
        if (ms < lo_ms) return v + " is less than the least, " + duration_text(lo_ms);
        return {};
      },
      "");
}

}  // namespace

Command Command::verb(const char* name, const char* help) {
  app_->require_subcommand(1);
  CLI::App* sub = app_->add_subcommand(name, help);
  sub->footer(kGlobalOptionsNote);
  return Command(*sub);
}

bool Command::given() const {
  return app_->parsed();
}

void Command::footer(const std::string& text) {
  const std::string& after = app_->get_footer();
  app_->footer(after.empty() ? text : text + "\n" + after);
}

void Command::text(const char* name, std::string& out, const std::string& help, bool required) {
  CLI::Option* o = app_->add_option(name, out, help)->type_name("TEXT");
  if (required) o->required();
  if (!out.empty()) o->default_str(out);
}

void Command::number(const char* name, uint64_t& out, uint64_t lo, uint64_t hi, const char* unit,
                     const std::string& help) {
  app_->add_option_function<std::string>(
          name, [&out](const std::string& v) { (void)parse_u64(v, out); }, help)
      ->check(number_check(lo, hi))
      ->type_name(unit)
      ->default_str(std::to_string(out));
}

void Command::number(const char* name, std::optional<uint64_t>& out, uint64_t lo, uint64_t hi,
                     const char* unit, const std::string& help) {
  app_->add_option_function<std::string>(
          name,
          [&out](const std::string& v) {
            uint64_t n = 0;
            (void)parse_u64(v, n);
            out = n;
          },
          help)
      ->check(number_check(lo, hi))
      ->type_name(unit);
}

void Command::duration(const char* name, uint64_t& out_ms, uint64_t lo_ms,
                       const std::string& help) {
  app_->add_option_function<std::string>(
          name, [&out_ms](const std::string& v) { (void)parse_duration_ms(v, out_ms); }, help)
      ->check(duration_check(lo_ms))
      ->type_name("DURATION")
      ->default_str(duration_text(out_ms));
}

void Command::duration(const char* name, std::optional<uint64_t>& out_ms, uint64_t lo_ms,
                       const std::string& help) {
  app_->add_option_function<std::string>(
          name,
          [&out_ms](const std::string& v) {
            uint64_t ms = 0;
            (void)parse_duration_ms(v, ms);
            out_ms = ms;
          },
          help)
      ->check(duration_check(lo_ms))
      ->type_name("DURATION");
}

void Command::timeout(uint64_t& out_ms, const std::string& what) {
  duration("--timeout", out_ms, 1,
           "how long to wait for " + what + "; then an error naming it (ms, s, m or h: 500ms, 5s)");
}

void Command::flag(const char* name, bool& out, const std::string& help) {
  app_->add_flag(name, out, help);
}

void Command::word(const char* name, std::string& out, const std::string& help) {
  app_->add_option(name, out, help)->required()->type_name("");
}

void Command::needs(const char* name, const char* other) {
  app_->get_option(name)->needs(app_->get_option(other));
}

bool parse_duration_ms(std::string_view text, uint64_t& out_ms) {
  const auto digits_end =
      std::find_if(text.begin(), text.end(), [](char c) { return c < '0' || c > '9'; });
  const std::string_view number = text.substr(0, static_cast<size_t>(digits_end - text.begin()));
  const std::string_view suffix = text.substr(number.size());
  uint64_t n = 0;
  if (!parse_u64(number, n)) return false;
  for (const Unit& u : kUnits) {
    if (suffix != u.suffix) continue;
    if (n > kMaxDurationMs / u.ms) return false;
    out_ms = n * u.ms;
    return true;
  }
  return false;
}

std::string duration_text(uint64_t ms) {
  for (const Unit& u : kUnits) {
    if (ms != 0 && ms % u.ms == 0) return std::to_string(ms / u.ms) + std::string(u.suffix);
  }
  return "0ms";
}

bool parse_u64(std::string_view text, uint64_t& out) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc{} && r.ptr == text.data() + text.size();
}

}  // namespace perfq::ctl
