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

void check_numbering(const std::string& dir, JournalReport& report) {
  std::vector<uint64_t> seqs;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir, ec)) {
    uint64_t seq = 0;
    const std::string name = de.path().filename().string();
    if (!parse_segment_name(name, seq)) continue;
    seqs.push_back(seq);
    std::error_code type_ec;
    if (!de.is_regular_file(type_ec)) {
      ++report.missing_segments;
      report.problems.push_back({name, 0, 0, "not a regular file: its entries cannot be read"});
    }
  }
  std::sort(seqs.begin(), seqs.end());
  for (std::size_t i = 1; i < seqs.size(); ++i) {
    if (seqs[i] - seqs[i - 1] <= 1) continue;
    const uint64_t missing = seqs[i] - seqs[i - 1] - 1;
    report.missing_segments += missing;
    report.problems.push_back({segment_name(seqs[i - 1] + 1), 0, 0,
                               "segment file missing: " + std::to_string(missing) +
                                   " segment(s) between " + segment_name(seqs[i - 1]) + " and " +
                                   segment_name(seqs[i]) + " are gone, with their entries"});
  }
}

namespace {

// The length of the record at the start of `buf` once `buf` holds all of it
// (format 2: up to the next delimiter, searched from `searched`; format 1:
// header and body), else 0.
std::size_t record_end(std::span<const std::byte> buf, std::size_t& searched) {
  if (legacy_format(buf)) {
    if (buf.size() < kRecordHeaderBytes) return 0;
    uint32_t len = 0;
    std::memcpy(&len, buf.data() + 4, 4);
    const std::size_t want = kRecordHeaderBytes + std::min<std::size_t>(len, kRecordBodyMax);
    return buf.size() >= want ? want : 0;
  }
  for (searched = std::max<std::size_t>(searched, 1); searched < buf.size(); ++searched) {
    if (buf[searched] == kRecordDelimiter) return searched;
  }
  return 0;
}

}  // namespace

Result<ScannedRecord> read_record(const std::string& path, uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return {Errc::kNotFound, path + ": no such file"};
  if (fd < 0) return {Errc::kInternal, path + ": " + std::strerror(errno)};
  // Chunks until the record's end or the file's (at most kFrameBytesMax).
  std::vector<std::byte> buf;
  constexpr std::size_t kChunk = 64 * 1024;
  std::size_t searched = 0;
  for (int eintr = 0; buf.size() < kFrameBytesMax;) {
    const std::size_t have = buf.size();
    buf.resize(have + kChunk);
    const ssize_t r = ::pread(fd, buf.data() + have, kChunk, static_cast<off_t>(offset + have));
    buf.resize(have + static_cast<std::size_t>(std::max<ssize_t>(r, 0)));
    if (r < 0 && errno == EINTR && ++eintr < 1024) continue;
    if (r <= 0) break;
    if (const std::size_t end = record_end(buf, searched); end > 0) {
      buf.resize(end);
      break;
    }
  }
  ::close(fd);
  ScanResult one = scan(buf);
  if (one.records.empty() || one.records[0].offset != 0) {
    return {Errc::kInternal, path + ": no valid record at offset " + std::to_string(offset)};
  }
  return std::move(one.records[0]);
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
  check_numbering(dir, rep);
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
