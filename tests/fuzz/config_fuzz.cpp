// The agent's configuration: arbitrary TOML text (load_toml) and arbitrary
// flag arrays (parse_args), as perfq-agent reads them at start.
//
// Input: the TOML text, then "\0\0", then the flags, '\0'-separated. Every
// --config value is replaced by the file holding the TOML text (the fuzzer
// must not open FIFOs or devices of its choosing; --tokens is only stored).
//
// Found: toml++ 3.3 (Debian 12's) reaches __builtin_unreachable in
// is_non_ascii_horizontal_whitespace() for some non-ASCII code points
// (marzer/tomlplusplus#190, #295). load_toml now refuses a non-ASCII byte
// outside a string or a comment before the parser sees it; the input is
// kept in regressions/config/.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "perfq/agent/config.hpp"

using namespace perfq::agent;

namespace {

const std::string& toml_path() {
  static const std::string path = [] {
    char t[] = "/tmp/perfq-config-fuzz-XXXXXX";
    const int fd = ::mkstemp(t);
    if (fd < 0) std::abort();
    ::close(fd);
    return std::string(t);
  }();
  return path;
}

void write_toml(std::string_view text) {
  FILE* f = std::fopen(toml_path().c_str(), "wb");
  if (f == nullptr) std::abort();
  if (!text.empty() && std::fwrite(text.data(), text.size(), 1, f) != 1) std::abort();
  std::fclose(f);
}

std::vector<std::string> flags_of(std::string_view in) {
  std::vector<std::string> args;
  while (!in.empty() && args.size() < 64) {
    const std::size_t at = in.find('\0');
    args.emplace_back(in.substr(0, at));
    if (at == std::string_view::npos) break;
    in.remove_prefix(at + 1);
  }
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--config") args[i + 1] = toml_path();
  }
  return args;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t split = in.find(std::string_view("\0\0", 2));
  const std::string_view toml = in.substr(0, split);
  write_toml(toml);
  Config from_file;
  (void)load_toml(toml_path(), from_file);
  if (split == std::string_view::npos) return 0;
  Config from_flags;
  (void)parse_args(flags_of(in.substr(split + 2)), from_flags);
  return 0;
}
