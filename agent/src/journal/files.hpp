#pragma once
// The journal's files as a reader sees them: segment names, reading a file,
// walking its records into a report, and verifying every file of a data dir.
// Read-only and without the writer (no io_uring), so that `perfqctl dlq
// verify` can check a journal whether or not an agent runs.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "journal/format.hpp"
#include "perfq/core/result.hpp"

namespace perfq::agent {

// A problem found in a file: a corrupt range (skipped), a record whose CRC
// holds but whose body does not decode, or a torn tail.
struct JournalProblem {
  std::string file;  // name inside dlq/
  uint64_t offset = 0;
  uint64_t length = 0;
  std::string what;
};

struct JournalReport {
  uint64_t segments = 0;
  uint64_t records = 0;
  uint64_t entries = 0;
  uint64_t reviews = 0;
  uint64_t replays = 0;
  uint64_t orphans = 0;           // reviews/replays of entries not in the index
  uint64_t truncated_bytes = 0;   // torn tail cut off the active segment at open
  uint64_t removed_segments = 0;  // by the retention sweep at open
  uint64_t missing_segments = 0;  // gaps in the numbering, and names that are no regular file
  uint64_t legacy_segments = 0;   // format-1 files (read, never appended to)
  std::vector<JournalProblem> problems;
};

// <16 hex digits>.log: the name of segment `seq` inside dlq/, and back.
[[nodiscard]] std::string segment_name(uint64_t seq);
[[nodiscard]] bool parse_segment_name(const std::string& name, uint64_t& seq);
// The sequence numbers of the segment files in `dir` (<data_dir>/dlq), ascending.
[[nodiscard]] Result<std::vector<uint64_t>> list_segments(const std::string& dir);

// Reports what list_segments cannot see: a name in `dir` that looks like a
// segment but is no regular file (a directory, a FIFO: its entries cannot be
// read), and each gap in the numbering between the oldest and the newest
// segment (retention deletes only the oldest, so a gap is a lost file).
void check_numbering(const std::string& dir, JournalReport& report);

// The record whose frame starts at `offset` of the file at `path` (read up
// to its end, at most kFrameBytesMax bytes), or nothing (kNotFound: no such
// file; kInternal: unreadable or no valid record there).
[[nodiscard]] Result<ScannedRecord> read_record(const std::string& path, uint64_t offset);

// Up to `limit` bytes of the file at `path`.
[[nodiscard]] Result<std::vector<std::byte>> read_file(const std::string& path, uint64_t limit);

// Applies one scanned file to a report (and, when given, to an index).
template <class OnEntry, class OnReview, class OnReplay>
inline void walk(const std::string& name, std::span<const std::byte> data, JournalReport& report,
                 OnEntry&& on_entry, OnReview&& on_review, OnReplay&& on_replay,
                 uint64_t* high_water = nullptr) {
  const ScanResult scanned = scan(data);
  if (scanned.format != kRecordVersion) ++report.legacy_segments;
  for (const CorruptRange& c : scanned.corrupt) {
    report.problems.push_back({name, c.offset, c.length, "corrupt record skipped"});
  }
  if (scanned.torn_tail) {
    report.problems.push_back(
        {name, scanned.valid_end, data.size() - scanned.valid_end, "torn tail"});
  }
  for (const ScannedRecord& r : scanned.records) {
    ++report.records;
    switch (r.type) {
      case RecordType::kDeadLetter: {
        auto e = decode_dead_letter(r.body);
        if (!e) {
          report.problems.push_back({name, r.offset, r.size, "dead-letter body does not decode"});
          break;
        }
        ++report.entries;
        on_entry(*e, r.offset);
        break;
      }
      case RecordType::kReview: {
        auto v = decode_review(r.body);
        if (!v) {
          report.problems.push_back({name, r.offset, r.size, "review body does not decode"});
          break;
        }
        ++report.reviews;
        if (!on_review(*v)) ++report.orphans;
        break;
      }
      case RecordType::kReplay: {
        auto v = decode_replay(r.body);
        if (!v) {
          report.problems.push_back({name, r.offset, r.size, "replay body does not decode"});
          break;
        }
        ++report.replays;
        if (!on_replay(*v)) ++report.orphans;
        break;
      }
      case RecordType::kCheckpoint: {
        auto v = decode_checkpoint(r.body);
        if (!v) {
          report.problems.push_back({name, r.offset, r.size, "checkpoint body does not decode"});
          break;
        }
        if (high_water != nullptr) *high_water = std::max(*high_water, v->next_dlq_id);
        break;
      }
    }
  }
}

// verify() without an agent: reads every segment file of <data_dir>/dlq
// (segment `active_seq` only up to `active_end`). Read-only.
[[nodiscard]] Result<JournalReport> verify_journal(const std::string& data_dir,
                                                   uint64_t active_seq = 0,
                                                   uint64_t active_end = UINT64_MAX);

}  // namespace perfq::agent
