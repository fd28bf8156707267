#include "journal/format.hpp"

#include <array>
#include <string_view>

#include "perfq/core/assert.hpp"

namespace perfq::agent {
namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// Appends little-endian fields. Bounds are checked by the callers before
// anything is appended.
class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(std::byte{v}); }
  void u16(uint16_t v) { le(v, 2); }
  void u32(uint32_t v) { le(v, 4); }
  void u64(uint64_t v) { le(v, 8); }
  void str16(std::string_view s) {
    PERFQ_ASSERT(s.size() <= UINT16_MAX);
    u16(static_cast<uint16_t>(s.size()));
    raw(s.data(), s.size());
  }
  void bytes32(std::span<const std::byte> b) {
    PERFQ_ASSERT(b.size() <= UINT32_MAX);
    u32(static_cast<uint32_t>(b.size()));
    raw(b.data(), b.size());
  }
  std::vector<std::byte> take() && { return std::move(out_); }

 private:
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(std::byte{static_cast<uint8_t>(v >> (8 * i))});
  }
  void raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  std::vector<std::byte> out_;
};

// Reads little-endian fields from an untrusted body. Once a read would pass
// the end, ok() stays false and every later read yields zero/empty.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] bool at_end() const { return ok_ && pos_ == in_.size(); }

  uint8_t u8() { return static_cast<uint8_t>(le(1)); }
  uint16_t u16() { return static_cast<uint16_t>(le(2)); }
  uint32_t u32() { return static_cast<uint32_t>(le(4)); }
  uint64_t u64() { return le(8); }
  // A u16-counted string of at most `max` bytes.
  std::string str16(std::size_t max) {
    const std::size_t n = u16();
    std::span<const std::byte> b = take(n, max);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  std::vector<std::byte> bytes32(std::size_t max) {
    const std::size_t n = u32();
    std::span<const std::byte> b = take(n, max);
    return {b.begin(), b.end()};
  }

 private:
  bool has(std::size_t n) {
    if (ok_ && n <= in_.size() - pos_) return true;
    ok_ = false;
    return false;
  }
  uint64_t le(int n) {
    if (!has(static_cast<std::size_t>(n))) return 0;
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t{std::to_integer<uint8_t>(in_[pos_ + i])} << (8 * i);
    pos_ += static_cast<std::size_t>(n);
    return v;
  }
  std::span<const std::byte> take(std::size_t n, std::size_t max) {
    if (n > max) ok_ = false;
    if (!has(n)) return {};
    std::span<const std::byte> b = in_.subspan(pos_, n);
    pos_ += n;
    return b;
  }
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

uint32_t load_u32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{std::to_integer<uint8_t>(p[i])} << (8 * i);
  return v;
}

bool valid_type(uint8_t raw) {
  return raw >= 1 && raw <= 4;
}

bool valid_priority(uint8_t p) {
  return p >= kPriorityMin && p <= kPriorityMax;
}
bool valid_dead_status(uint8_t s) {
  return s == static_cast<uint8_t>(Status::kFailed) || s == static_cast<uint8_t>(Status::kTimeout);
}

Error bad_body(const char* what) {
  return Error{Errc::kInternal, std::string("journal: ") + what};
}
Error bad_field(const char* what) {
  return Error{Errc::kInvalidRequest, std::string("journal: ") + what};
}

// The type of the inner record (header + body) at `h`, of `avail` bytes,
// if its header checks out (see the header's "Recovery"); 0 if not.
// `length` is the body's. Reads only inside [h, h + avail).
uint8_t check_inner(const std::byte* h, std::size_t avail, uint8_t version, uint32_t& length) {
  if (avail < kRecordHeaderBytes || load_u32(h) != kRecordMagic) return 0;
  length = load_u32(h + 4);
  if (length > kRecordBodyMax || avail - kRecordHeaderBytes < length) return 0;
  const auto type = std::to_integer<uint8_t>(h[12]);
  if (!valid_type(type) || std::to_integer<uint8_t>(h[13]) != version) return 0;
  if (h[14] != std::byte{0} || h[15] != std::byte{0}) return 0;
  const std::size_t covered = kRecordHeaderBytes - kRecordCrcStart + length;
  if (crc32c(h + kRecordCrcStart, covered) != load_u32(h + 8)) return 0;
  return type;
}

// Format 1: the unframed record at `off`, if one checks out completely.
bool legacy_record_at(std::span<const std::byte> file, std::size_t off, ScannedRecord& out) {
  if (off > file.size()) return false;
  uint32_t length = 0;
  const std::byte* h = file.data() + off;
  const uint8_t type = check_inner(h, file.size() - off, kLegacyRecordVersion, length);
  if (type == 0) return false;
  const auto body = file.subspan(off + kRecordHeaderBytes, length);
  out = ScannedRecord{
      off, kRecordHeaderBytes + length, static_cast<RecordType>(type), {body.begin(), body.end()}};
  return true;
}

// COBS (Cheshire & Baker, 1999): `in` without any zero byte. Each block is
// a code byte c (1..255) and c - 1 data bytes; a block whose code is below
// 255 stands for its bytes and one zero, except the last.
std::vector<std::byte> cobs_encode(std::span<const std::byte> in) {
  std::vector<std::byte> out;
  out.reserve(in.size() + in.size() / 254 + 2);
  std::size_t code_at = out.size();
  out.push_back(std::byte{1});
  uint8_t code = 1;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const std::byte b = in[i];
    if (b != std::byte{0}) {
      out.push_back(b);
      ++code;
    }
    // A full block ends without a zero; the last block is never empty but
    // for an input ending in a zero.
    if (b == std::byte{0} || (code == 0xFF && i + 1 < in.size())) {
      out[code_at] = std::byte{code};
      code_at = out.size();
      out.push_back(std::byte{1});
      code = 1;
    }
  }
  out[code_at] = std::byte{code};
  return out;
}

// The bytes `in` encodes, or false when `in` is no COBS encoding (a zero
// byte, or a block running past the end). At most `max` bytes come out.
bool cobs_decode(std::span<const std::byte> in, std::size_t max, std::vector<std::byte>& out) {
  out.clear();
  std::size_t i = 0;
  // Each block consumes >= 1 byte of `in`.
  while (i < in.size()) {
    const auto code = std::to_integer<uint8_t>(in[i++]);
    if (code == 0 || code - 1u > in.size() - i || out.size() + code > max + 1) return false;
    for (uint8_t k = 1; k < code; ++k, ++i) {
      if (in[i] == std::byte{0}) return false;
      out.push_back(in[i]);
    }
    if (code != 0xFF && i < in.size()) out.push_back(std::byte{0});
  }
  return true;
}

// Format 2: the framed record whose delimiter is at `off`, if one checks
// out completely. Its frame runs to the next delimiter or the end of file.
bool framed_record_at(std::span<const std::byte> file, std::size_t off, ScannedRecord& out) {
  if (off >= file.size() || file[off] != kRecordDelimiter) return false;
  std::size_t end = off + 1;
  while (end < file.size() && file[end] != kRecordDelimiter) ++end;
  std::vector<std::byte> inner;
  if (!cobs_decode(file.subspan(off + 1, end - off - 1), kRecordHeaderBytes + kRecordBodyMax,
                   inner)) {
    return false;
  }
  uint32_t length = 0;
  const uint8_t type = check_inner(inner.data(), inner.size(), kRecordVersion, length);
  if (type == 0 || inner.size() != kRecordHeaderBytes + length) return false;
  inner.erase(inner.begin(), inner.begin() + kRecordHeaderBytes);
  out = ScannedRecord{off, end - off, static_cast<RecordType>(type), std::move(inner)};
  return true;
}

// A frame that runs on past its record (junk without a zero byte after it,
// or the next frame's delimiter lost): the record at its start, if its own
// encoding is exactly the frame's first bytes. The rest is left to the scan
// (a corrupt range). Only ever at a delimiter, so no payload can pose as one.
bool framed_prefix_at(std::span<const std::byte> file, std::size_t off, ScannedRecord& out) {
  if (off >= file.size() || file[off] != kRecordDelimiter) return false;
  std::vector<std::byte> head;
  // The header sits in the first block or two (its reserved bytes are zero).
  const std::size_t avail = std::min<std::size_t>(file.size() - off - 1, 2 * 255);
  (void)cobs_decode(file.subspan(off + 1, avail), 2 * 255, head);
  if (head.size() < kRecordHeaderBytes || load_u32(head.data()) != kRecordMagic) return false;
  const uint32_t length = load_u32(head.data() + 4);
  if (length > kRecordBodyMax) return false;
  const std::size_t want = kRecordHeaderBytes + length;  // decoded bytes of the record
  const std::size_t span = std::min(file.size() - off - 1, want + want / 254 + 2);
  std::vector<std::byte> inner;
  (void)cobs_decode(file.subspan(off + 1, span), want + 255, inner);
  if (inner.size() < want) return false;
  inner.resize(want);
  uint32_t checked = 0;
  const uint8_t type = check_inner(inner.data(), inner.size(), kRecordVersion, checked);
  if (type == 0) return false;
  const std::vector<std::byte> encoded = cobs_encode(inner);
  if (encoded.size() > file.size() - off - 1 ||
      !std::equal(encoded.begin(), encoded.end(),
                  file.begin() + static_cast<std::ptrdiff_t>(off + 1)))
    return false;
  inner.erase(inner.begin(), inner.begin() + kRecordHeaderBytes);
  out = ScannedRecord{off, 1 + encoded.size(), static_cast<RecordType>(type), std::move(inner)};
  return true;
}

bool framed_or_prefix_at(std::span<const std::byte> file, std::size_t off, ScannedRecord& out) {
  return framed_record_at(file, off, out) || framed_prefix_at(file, off, out);
}

// The next offset after `off` where a record may start: any byte in format
// 1, only a delimiter in format 2 (never a byte inside a frame).
std::size_t next_candidate(std::span<const std::byte> file, std::size_t off, bool legacy) {
  std::size_t next = off + 1;
  if (legacy) return next;
  while (next < file.size() && file[next] != kRecordDelimiter) ++next;
  return next;
}

std::vector<std::byte> inner_record(RecordType type, uint8_t version,
                                    std::span<const std::byte> body) {
  PERFQ_ASSERT(body.size() <= kRecordBodyMax);
  PERFQ_ASSERT(valid_type(static_cast<uint8_t>(type)));
  Writer w;
  w.u32(kRecordMagic);
  w.u32(static_cast<uint32_t>(body.size()));
  w.u32(0);  // crc, filled below
  w.u8(static_cast<uint8_t>(type));
  w.u8(version);
  w.u16(0);
  std::vector<std::byte> out = std::move(w).take();
  out.insert(out.end(), body.begin(), body.end());
  const uint32_t crc = crc32c(out.data() + kRecordCrcStart, out.size() - kRecordCrcStart);
  for (int i = 0; i < 4; ++i) out[8 + i] = std::byte{static_cast<uint8_t>(crc >> (8 * i))};
  return out;
}

}  // namespace

uint32_t crc32c(const void* data, std::size_t size, uint32_t seed) noexcept {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~seed;
  for (std::size_t i = 0; i < size; ++i) c = kCrc32cTable[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

Result<std::vector<std::byte>> encode_dead_letter(const JournalEntry& entry) {
  const DeadLetter& d = entry.letter;
  if (static_cast<uint8_t>(d.mode) >= kModeCount) return bad_field("mode out of range");
  if (!valid_priority(d.priority)) return bad_field("priority out of range");
  if (!valid_dead_status(static_cast<uint8_t>(d.status)))
    return bad_field("status is not failed/timeout");
  if (!errc_valid(static_cast<uint8_t>(d.reason))) return bad_field("failure reason out of range");
  if (d.user_id.size() > kUserIdMaxBytes) return bad_field("user id too long");
  if (d.type.size() > kTypeMaxBytes) return bad_field("type too long");
  if (d.metadata.size() > kMetadataMaxBytes) return bad_field("metadata too long");
  if (d.payload.size() > kJournalPayloadMax) return bad_field("payload too long");
  if (d.history.size() > kJournalHistoryMax) return bad_field("error history too long");
  for (const AttemptFailure& f : d.history) {
    if (!errc_valid(static_cast<uint8_t>(f.code))) return bad_field("attempt code out of range");
    if (f.message.size() > kJournalMessageMax) return bad_field("attempt message too long");
  }
  Writer w;
  w.u64(entry.dlq_id);
  w.u64(d.request_id);
  w.u8(static_cast<uint8_t>(d.mode));
  w.u8(d.priority);
  w.u8(static_cast<uint8_t>(d.status));
  w.u8(static_cast<uint8_t>(d.reason));
  w.u32(d.attempt_count);
  w.u64(d.first_attempt_unix_ns);
  w.u64(d.last_attempt_unix_ns);
  w.str16(d.user_id);
  w.str16(d.type);
  w.str16(d.metadata);
  w.bytes32(d.payload);
  w.u16(static_cast<uint16_t>(d.history.size()));
  for (const AttemptFailure& f : d.history) {
    w.u64(f.at_unix_ns);
    w.u8(static_cast<uint8_t>(f.code));
    w.str16(f.message);
  }
  return std::move(w).take();
}

Result<JournalEntry> decode_dead_letter(std::span<const std::byte> body) {
  Reader r(body);
  JournalEntry e;
  DeadLetter& d = e.letter;
  e.dlq_id = r.u64();
  d.request_id = r.u64();
  const uint8_t mode = r.u8();
  d.priority = r.u8();
  const uint8_t status = r.u8();
  const uint8_t reason = r.u8();
  d.attempt_count = r.u32();
  d.first_attempt_unix_ns = r.u64();
  d.last_attempt_unix_ns = r.u64();
  d.user_id = r.str16(kUserIdMaxBytes);
  d.type = r.str16(kTypeMaxBytes);
  d.metadata = r.str16(kMetadataMaxBytes);
  d.payload = r.bytes32(kJournalPayloadMax);
  const std::size_t count = r.u16();
  if (!r.ok()) return bad_body("dead letter truncated or a length out of bounds");
  if (mode >= kModeCount) return bad_body("dead letter mode out of range");
  if (!valid_priority(d.priority)) return bad_body("dead letter priority out of range");
  if (!valid_dead_status(status)) return bad_body("dead letter status is not failed/timeout");
  if (!errc_valid(reason)) return bad_body("dead letter failure reason out of range");
  if (count > kJournalHistoryMax) return bad_body("dead letter error history too long");
  d.mode = static_cast<Mode>(mode);
  d.status = static_cast<Status>(status);
  d.reason = static_cast<Errc>(reason);
  d.history.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    AttemptFailure f;
    f.at_unix_ns = r.u64();
    const uint8_t code = r.u8();
    f.message = r.str16(kJournalMessageMax);
    if (!r.ok()) return bad_body("dead letter attempt truncated or too long");
    if (!errc_valid(code)) return bad_body("dead letter attempt code out of range");
    f.code = static_cast<Errc>(code);
    d.history.push_back(std::move(f));
  }
  if (!r.at_end()) return bad_body("dead letter has trailing bytes");
  return e;
}

Result<std::vector<std::byte>> encode_review(const ReviewRecord& review) {
  if (review.reviewed_by.size() > kJournalReviewerMax) return bad_field("reviewer too long");
  if (review.resolution.size() > kJournalResolutionMax) return bad_field("resolution too long");
  Writer w;
  w.u64(review.dlq_id);
  w.u64(review.reviewed_at_unix_ns);
  w.str16(review.reviewed_by);
  w.str16(review.resolution);
  return std::move(w).take();
}

Result<ReviewRecord> decode_review(std::span<const std::byte> body) {
  Reader r(body);
  ReviewRecord v;
  v.dlq_id = r.u64();
  v.reviewed_at_unix_ns = r.u64();
  v.reviewed_by = r.str16(kJournalReviewerMax);
  v.resolution = r.str16(kJournalResolutionMax);
  if (!r.ok()) return bad_body("review truncated or a length out of bounds");
  if (!r.at_end()) return bad_body("review has trailing bytes");
  return v;
}

std::vector<std::byte> encode_replay(const ReplayRecord& replay) {
  Writer w;
  w.u64(replay.dlq_id);
  w.u64(replay.replayed_as);
  w.u64(replay.at_unix_ns);
  return std::move(w).take();
}

Result<ReplayRecord> decode_replay(std::span<const std::byte> body) {
  Reader r(body);
  ReplayRecord v;
  v.dlq_id = r.u64();
  v.replayed_as = r.u64();
  v.at_unix_ns = r.u64();
  if (!r.ok()) return bad_body("replay truncated");
  if (!r.at_end()) return bad_body("replay has trailing bytes");
  return v;
}

std::vector<std::byte> encode_checkpoint(const CheckpointRecord& c) {
  Writer w;
  w.u64(c.next_dlq_id);
  return std::move(w).take();
}

Result<CheckpointRecord> decode_checkpoint(std::span<const std::byte> body) {
  Reader r(body);
  CheckpointRecord c;
  c.next_dlq_id = r.u64();
  if (!r.ok()) return bad_body("checkpoint truncated");
  if (!r.at_end()) return bad_body("checkpoint has trailing bytes");
  return c;
}

std::vector<std::byte> frame_record(std::span<const std::byte> inner) {
  std::vector<std::byte> out{kRecordDelimiter};
  const std::vector<std::byte> encoded = cobs_encode(inner);
  out.insert(out.end(), encoded.begin(), encoded.end());
  return out;
}

std::vector<std::byte> encode_record(RecordType type, std::span<const std::byte> body) {
  return frame_record(inner_record(type, kRecordVersion, body));
}

std::vector<std::byte> encode_legacy_record(RecordType type, std::span<const std::byte> body) {
  return inner_record(type, kLegacyRecordVersion, body);
}

bool legacy_format(std::span<const std::byte> file) noexcept {
  return file.size() >= 4 && load_u32(file.data()) == kRecordMagic;
}

ScanResult scan(std::span<const std::byte> file) {
  ScanResult result;
  const bool legacy = legacy_format(file);
  result.format = legacy ? kLegacyRecordVersion : kRecordVersion;
  const auto record_at = legacy ? legacy_record_at : framed_or_prefix_at;
  std::size_t off = 0;
  // Each iteration accepts at least one record (off grows by >= 1) or ends
  // the walk. In format 2 every frame is decoded at most once: linear.
  while (off < file.size()) {
    ScannedRecord rec;
    if (record_at(file, off, rec)) {
      off += rec.size;
      result.records.push_back(std::move(rec));
      continue;
    }
    std::size_t next = next_candidate(file, off, legacy);
    for (; next < file.size(); next = next_candidate(file, next, legacy)) {
      if (record_at(file, next, rec)) break;
    }
    if (next >= file.size()) break;  // nothing valid follows: torn tail at off
    result.corrupt.push_back(CorruptRange{off, next - off});
    off = next + rec.size;
    result.records.push_back(std::move(rec));
  }
  result.valid_end = off;
  result.torn_tail = off < file.size();
  return result;
}

}  // namespace perfq::agent
