#include "journal/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace perfq::agent {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSegmentSuffix = ".log";

}  // namespace

bool parse_segment_name(const std::string& name, uint64_t& seq) {
  if (name.size() != 16 + 4 || name.substr(16) != kSegmentSuffix) return false;
  seq = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = name[static_cast<std::size_t>(i)];
    const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return false;
    seq = seq << 4 | static_cast<uint64_t>(v);
  }
  return true;
}

std::string segment_name(uint64_t seq) {
  char b[32];
  std::snprintf(b, sizeof b, "%016" PRIx64 "%s", seq, kSegmentSuffix);
  return b;
}

Result<std::vector<uint64_t>> list_segments(const std::string& dir) {
  std::vector<uint64_t> seqs;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir, ec)) {
    uint64_t seq = 0;
    if (de.is_regular_file() && parse_segment_name(de.path().filename().string(), seq)) {
      seqs.push_back(seq);
    }
  }
  if (ec) return {Errc::kInternal, "journal: cannot list " + dir + ": " + ec.message()};
  std::sort(seqs.begin(), seqs.end());
  return seqs;
}

Result<std::vector<std::byte>> read_file(const std::string& path, uint64_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {Errc::kInternal, path + ": " + std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return {Errc::kInternal, path + ": " + std::strerror(err)};
  }
  const uint64_t size = std::min<uint64_t>(static_cast<uint64_t>(st.st_size), limit);
  std::vector<std::byte> data(static_cast<std::size_t>(size));
  std::size_t got = 0;
  while (got < data.size()) {
    const ssize_t r = ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  data.resize(got);
  return data;
}

Result<JournalReport> verify_journal(const std::string& data_dir, uint64_t active_seq,
                                     uint64_t active_end) {
  const std::string dir = data_dir + "/dlq";
  auto seqs = list_segments(dir);
  if (!seqs) return seqs.error();
  JournalReport rep;
  rep.segments = seqs->size();
  for (const uint64_t seq : *seqs) {
    auto data =
        read_file(dir + "/" + segment_name(seq), seq == active_seq ? active_end : UINT64_MAX);
    if (!data) return data.error();
    walk(
        segment_name(seq), *data, rep, [](const JournalEntry&, uint64_t) {},
        [](const ReviewRecord&) { return true; }, [](const ReplayRecord&) { return true; });
  }
  return rep;
}

}  // namespace perfq::agent
