#pragma once
// The DLQ journal's on-disk record format (SPEC §5 "DLQ journal") and the
// recovery scan over a segment file. Pure functions over bytes: no I/O here.
//
// All integers are little-endian. A segment file is a sequence of records:
//
//   +---------------- record ----------------+---------------- record ---- ...
//   | header (16 bytes) | body (length bytes) | header | body | ...
//   +----------------------------------------+------------------------- ...
//
// Record header, byte by byte:
//
//   offset size field     value
//   ------ ---- --------- ----------------------------------------------------
//    0      4   magic     0x524A5150: the bytes 'P' 'Q' 'J' 'R' in the file
//    4      4   length    bytes of the body that follows; <= kRecordBodyMax
//    8      4   crc       CRC32C (Castagnoli, reflected 0x82F63B78, seed 0)
//                         over bytes [12, 16 + length): type, version,
//                         reserved and the body
//   12      1   type      1 dead-letter entry, 2 review, 3 replay, 4 checkpoint
//   13      1   version   1 (kRecordVersion)
//   14      2   reserved  0
//   16      -   body      length bytes, laid out by `type` (below)
//
// Bodies. str16 = u16 byte count then the bytes (no NUL terminator);
// bytes32 = u32 byte count then the bytes. A body must be consumed exactly:
// trailing bytes make it invalid.
//
//   type 1, dead-letter entry (SPEC §5 entry; agent::DeadLetter):
//    0   8  u64      dlq_id
//    8   8  u64      original_request_id
//   16   1  u8       mode (perfq::Mode, < kModeCount)
//   17   1  u8       priority (kPriorityMin..kPriorityMax)
//   18   1  u8       status (perfq::Status: 4 failed or 5 timeout)
//   19   1  u8       failure_reason (perfq::Errc, < kErrcCount)
//   20   4  u32      attempt_count
//   24   8  u64      first_attempt_unix_ns (0: never dispatched)
//   32   8  u64      last_attempt_unix_ns
//   40   -  str16    user_id  (<= kUserIdMaxBytes)
//        -  str16    type     (<= kTypeMaxBytes)
//        -  str16    metadata (<= kMetadataMaxBytes)
//        -  bytes32  payload  (<= kJournalPayloadMax; any bytes, NUL included)
//        2  u16      history_count (<= kJournalHistoryMax), then per attempt,
//                    oldest first:
//             8  u64    at_unix_ns
//             1  u8     code (perfq::Errc, < kErrcCount)
//             -  str16  message (<= kJournalMessageMax)
//
//   type 2, review:
//    0   8  u64    dlq_id
//    8   8  u64    reviewed_at_unix_ns
//   16   -  str16  reviewed_by (<= kJournalReviewerMax)
//        -  str16  resolution  (<= kJournalResolutionMax)
//
//   type 3, replay (24 bytes):
//    0   8  u64  dlq_id
//    8   8  u64  replayed_as (the new request's id)
//   16   8  u64  at_unix_ns
//
//   type 4, checkpoint (8 bytes): the journal's id high-water mark, written
//   before retention deletes segments, so that dlq ids are never given twice
//    0   8  u64  next_dlq_id
//
// Recovery (scan): records are walked from offset 0. A record is valid when
// its whole header and body lie inside the file, magic/version/reserved/type
// are as above, length <= kRecordBodyMax and the CRC matches. At an invalid
// record the scanner searches forward, byte by byte, for the next offset that
// holds a valid record:
//   - found: the bytes in between are reported as one corrupt range (the
//     invalid record's offset) and the walk resumes there;
//   - not found: it is a torn tail; valid_end is the invalid record's offset,
//     the length to truncate the file to.
// Caveat: a payload that itself contains a complete, CRC-valid encoded record
// can be mistaken for that record during a resync (never on the normal walk).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "perfq/agent/dead_letter.hpp"
#include "perfq/core/request.hpp"
#include "perfq/core/result.hpp"

namespace perfq::agent {

// CRC32C (Castagnoli), reflected polynomial 0x82F63B78, software table.
// `seed` is a previous return value to continue a running CRC (0 to start).
// crc32c("123456789") == 0xE3069283.
[[nodiscard]] uint32_t crc32c(const void* data, std::size_t size, uint32_t seed = 0) noexcept;

inline constexpr uint32_t kRecordMagic = 0x524A5150;  // "PQJR" in file order
inline constexpr uint8_t kRecordVersion = 1;
inline constexpr std::size_t kRecordHeaderBytes = 16;
inline constexpr std::size_t kRecordCrcStart = 12;  // the CRC covers [12, 16 + length)

// Bounds checked on encode and on decode; nothing read from a file is trusted.
inline constexpr std::size_t kJournalPayloadMax = std::size_t{1} << 20;  // = max slot_payload_bytes
inline constexpr std::size_t kJournalHistoryMax = 256;
inline constexpr std::size_t kJournalMessageMax = 1024;
inline constexpr std::size_t kJournalReviewerMax = 256;
inline constexpr std::size_t kJournalResolutionMax = 4096;
inline constexpr std::size_t kRecordBodyMax = std::size_t{4} << 20;
static_assert(kRecordBodyMax >= 40 + 3 * 2 + kUserIdMaxBytes + kTypeMaxBytes + kMetadataMaxBytes +
                                    4 + kJournalPayloadMax + 2 +
                                    kJournalHistoryMax * (8 + 1 + 2 + kJournalMessageMax),
              "the largest dead-letter body must fit in a record");
static_assert(kRecordBodyMax <= UINT32_MAX);

enum class RecordType : uint8_t { kDeadLetter = 1, kReview = 2, kReplay = 3, kCheckpoint = 4 };

// A dead letter as the journal stores it: the letter plus its DLQ id.
struct JournalEntry {
  uint64_t dlq_id = 0;
  DeadLetter letter;
};

struct ReviewRecord {
  uint64_t dlq_id = 0;
  std::string reviewed_by;
  uint64_t reviewed_at_unix_ns = 0;
  std::string resolution;
};

struct ReplayRecord {
  uint64_t dlq_id = 0;
  uint64_t replayed_as = 0;  // request id of the new submission
  uint64_t at_unix_ns = 0;
};

struct CheckpointRecord {
  uint64_t next_dlq_id = 0;  // every dlq id below it was given
};

// Bodies. Encoding fails (kInvalidRequest) when a field is outside the bounds
// above, so nothing is written that decode would refuse. Decoding fails
// (kInternal) on a short, long or out-of-range body; it never reads outside
// `body`.
[[nodiscard]] Result<std::vector<std::byte>> encode_dead_letter(const JournalEntry& entry);
[[nodiscard]] Result<JournalEntry> decode_dead_letter(std::span<const std::byte> body);
[[nodiscard]] Result<std::vector<std::byte>> encode_review(const ReviewRecord& review);
[[nodiscard]] Result<ReviewRecord> decode_review(std::span<const std::byte> body);
[[nodiscard]] std::vector<std::byte> encode_replay(const ReplayRecord& replay);
[[nodiscard]] Result<ReplayRecord> decode_replay(std::span<const std::byte> body);
[[nodiscard]] std::vector<std::byte> encode_checkpoint(const CheckpointRecord& c);
[[nodiscard]] Result<CheckpointRecord> decode_checkpoint(std::span<const std::byte> body);

// Header + body. Programmer error (asserted) if body.size() > kRecordBodyMax.
[[nodiscard]] std::vector<std::byte> encode_record(RecordType type,
                                                   std::span<const std::byte> body);

struct ScannedRecord {
  uint64_t offset = 0;  // of its header in the file
  RecordType type = RecordType::kDeadLetter;
  std::span<const std::byte> body;  // a view into the scanned buffer
};

struct CorruptRange {
  uint64_t offset = 0;  // of the invalid record
  uint64_t length = 0;  // bytes skipped up to the next valid record
};

struct ScanResult {
  std::vector<ScannedRecord> records;  // valid records in file order
  std::vector<CorruptRange> corrupt;   // skipped in the middle, in file order
  uint64_t valid_end = 0;              // truncate the file to this length
  bool torn_tail = false;              // valid_end < file.size()
};

// Walks a whole segment file (see "Recovery" above). Never throws
// (std::bad_alloc aside), never reads outside `file`. The worst case is
// quadratic in the bytes after a corrupt record; a clean file is one pass.
[[nodiscard]] ScanResult scan(std::span<const std::byte> file);

}  // namespace perfq::agent
