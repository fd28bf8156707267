// The DLQ journal's readers over arbitrary segment files: the recovery scan
// (format.hpp), `dlq verify`'s reader (verify_journal), and the agent's
// recovery (Journal::open: the index, the writer's torn-tail cut), then
// every entry read back with show().
//
// Input: one flags byte, then up to kMaxFiles segment files separated by
// kSeparator. Flags bit 0 leaves a gap in the numbering (1, 3, 4, ...);
// bit 1 makes the second file a directory instead (both must be reported).
//
// Checked besides the sanitizers: after recovery the newest segment has no
// torn tail left, and every listed entry reads back with its own id.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "journal/files.hpp"
#include "journal/format.hpp"
#include "journal/journal.hpp"

namespace fs = std::filesystem;
using namespace perfq::agent;

namespace {

constexpr std::string_view kSeparator = "\nSEG\n";
constexpr std::size_t kMaxFiles = 4;

const std::string& work_dir() {
  static const std::string dir = [] {
    char t[] = "/tmp/perfq-journal-fuzz-XXXXXX";
    if (::mkdtemp(t) == nullptr) std::abort();
    return std::string(t);
  }();
  return dir;
}

std::vector<std::string_view> split(std::string_view in) {
  std::vector<std::string_view> files;
  while (files.size() + 1 < kMaxFiles) {
    const std::size_t at = in.find(kSeparator);
    if (at == std::string_view::npos) break;
    files.push_back(in.substr(0, at));
    in.remove_prefix(at + kSeparator.size());
  }
  files.push_back(in);
  return files;
}

void write_files(const std::string& dlq, const std::vector<std::string_view>& files,
                 uint8_t flags) {
  fs::remove_all(dlq);
  fs::create_directories(dlq);
  uint64_t seq = 1;
  for (std::size_t i = 0; i < files.size(); ++i, ++seq) {
    if (i == 1 && (flags & 1u) != 0) ++seq;
    const std::string path = dlq + "/" + segment_name(seq);
    if (i == 1 && (flags & 2u) != 0) {
      fs::create_directory(path);
      continue;
    }
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) std::abort();
    if (!files[i].empty() && std::fwrite(files[i].data(), files[i].size(), 1, f) != 1) std::abort();
    std::fclose(f);
  }
}

void scan_each(const std::vector<std::string_view>& files) {
  for (std::string_view f : files) {
    const auto bytes = std::as_bytes(std::span(f.data(), f.size()));
    const ScanResult s = scan(bytes);
    if (s.valid_end > bytes.size()) std::abort();
  }
}

void recover(const std::string& data_dir) {
  JournalOptions o;
  o.data_dir = data_dir;
  o.audit = false;
  o.retention_ms = uint64_t{1} << 40;  // nothing is old enough to sweep
  auto j = Journal::open(o);
  if (!j) return;  // refused (a format it does not read): said, not a crash
  auto rep = (*j)->verify();
  auto seqs = list_segments((*j)->dir());
  if (rep && seqs && !seqs->empty()) {
    const std::string newest = segment_name(seqs->back());
    for (const JournalProblem& p : rep->problems) {
      // The active segment was cut to its valid end at open.
      if (p.what == "torn tail" && p.offset > 0 && p.file == newest) std::abort();
    }
  }
  for (const DlqSummary& s : (*j)->list(100, true)) {
    auto e = (*j)->show(s.dlq_id);
    if (e && e->summary.dlq_id != s.dlq_id) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1 || size > (std::size_t{1} << 20)) return 0;
  const uint8_t flags = data[0];
  const std::vector<std::string_view> files =
      split({reinterpret_cast<const char*>(data) + 1, size - 1});
  scan_each(files);
  const std::string& dir = work_dir();
  write_files(dir + "/dlq", files, flags);
  (void)verify_journal(dir);
  recover(dir);
  return 0;
}
