#pragma once
// The DLQ journal's on-disk record format (SPEC §5 "DLQ journal") and the
// recovery scan over a segment file. Pure functions over bytes: no I/O here.
//
// All integers are little-endian. A segment file is a sequence of framed
// records (format 2): each is one zero byte, the delimiter, then the record
// (header and body) encoded with COBS, which leaves no zero byte in it:
//
//   +--------------- frame ----------------+--------------- frame ---- ...
//   | 0x00 | COBS(header (16 B) | body)     | 0x00 | COBS(header | body) ...
//   +--------------------------------------+-------------------------- ...
//
// COBS (Consistent Overhead Byte Stuffing): the record is cut at each zero
// byte (and after 254 non-zero bytes) into blocks; each block is written as
// a code byte c = 1 + its length (1..255), then its bytes; a code below 255
// stands for its bytes and one zero, except the last block's. Overhead: one
// byte, plus one per 254 bytes. So a zero byte in the file is always a
// delimiter, and whatever a payload holds (a whole encoded record included)
// can never be taken for the start of a record: the scan only ever starts
// at a delimiter (docs/DECISIONS.md "Journal framing").
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
//   13      1   version   2 (kRecordVersion; 1 in a format-1 file)
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
// Recovery (scan): frames are walked from offset 0. A record is valid when
// its frame decodes (COBS), and the header and body it holds are exactly as
// above: magic, version, reserved and type as listed, length <= kRecordBodyMax
// and equal to the decoded body's, and the CRC matches. At an invalid record
// the scanner tries each later delimiter in turn for a valid record:
//   - found: the bytes in between are reported as one corrupt range (the
//     invalid record's offset) and the walk resumes there;
//   - not found: it is a torn tail; valid_end is the invalid record's offset,
//     the length to truncate the file to.
// A frame that runs on past its record (junk with no zero byte, or the next
// delimiter lost) still yields the record at its start when that record's
// own encoding is exactly the frame's first bytes; the rest is the corrupt
// range. Linear: each frame is decoded at most twice.
//
// Format 1 (before issue 15), read but never written: the same records
// without frame or delimiter, back to back, version 1; a file is format 1
// when it starts with the magic (a format-2 file starts with 0x00). Its
// resync tries every byte offset, so a payload holding a whole encoded
// record can be taken for it there; the agent appends to no format-1 file
// (Journal::open starts a new segment) and verify reports each one.
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
inline constexpr uint8_t kRecordVersion = 2;          // COBS-framed records (issue 15)
inline constexpr uint8_t kLegacyRecordVersion = 1;    // format 1: unframed; read, never written
inline constexpr std::byte kRecordDelimiter{0};       // starts every frame
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
// The most bytes one frame takes on disk: delimiter, COBS overhead, record.
inline constexpr std::size_t kFrameBytesMax =
    1 + (kRecordHeaderBytes + kRecordBodyMax) + (kRecordHeaderBytes + kRecordBodyMax) / 254 + 1;

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

// One framed record (format 2): delimiter, COBS(header + body). Programmer
// error (asserted) if body.size() > kRecordBodyMax.
[[nodiscard]] std::vector<std::byte> encode_record(RecordType type,
                                                   std::span<const std::byte> body);
// The frame of an inner record (header + body) as given: tests craft bad
// headers with it.
[[nodiscard]] std::vector<std::byte> frame_record(std::span<const std::byte> inner);
// A format-1 record (unframed, version 1), for the tests of the old format.
[[nodiscard]] std::vector<std::byte> encode_legacy_record(RecordType type,
                                                          std::span<const std::byte> body);
// True when `file` is in format 1 (it starts with the record magic).
[[nodiscard]] bool legacy_format(std::span<const std::byte> file) noexcept;

struct ScannedRecord {
  uint64_t offset = 0;  // of its frame (format 1: its header) in the file
  uint64_t size = 0;    // bytes it takes in the file, frame included
  RecordType type = RecordType::kDeadLetter;
  std::vector<std::byte> body;  // decoded
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
  uint8_t format = kRecordVersion;     // kLegacyRecordVersion: a format-1 file
};

// Walks a whole segment file (see "Recovery" above). Never throws
// (std::bad_alloc aside), never reads outside `file`. Linear in format 2;
// in format 1 the worst case is quadratic in the bytes after a corrupt record.
[[nodiscard]] ScanResult scan(std::span<const std::byte> file);

}  // namespace perfq::agent
