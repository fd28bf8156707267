// The DLQ journal's record format and recovery scan (SPEC §5, issue 4).
#include "journal/format.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string_view>
#include <utility>

namespace perfq::agent {
namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

// Every field set to a value distinct from its default.
JournalEntry full_entry(uint64_t dlq_id) {
  JournalEntry e;
  e.dlq_id = dlq_id;
  DeadLetter& d = e.letter;
  d.request_id = 0x0123456789ABCDEFull + dlq_id;
  d.user_id = "user-42";
  d.type = "email.send";
  d.mode = Mode::kBatch;
  d.priority = 17;
  d.payload = bytes_of(std::string_view("\0bin\0ary\xff\x00payload", 17));
  d.metadata = R"({"k":"v","n":1})";
  d.status = Status::kTimeout;
  d.reason = Errc::kProcessingTimeout;
  d.attempt_count = 3;
  d.first_attempt_unix_ns = 1'700'000'000'000'000'001ull;
  d.last_attempt_unix_ns = 1'700'000'000'900'000'002ull;
  d.history = {
      {1'700'000'000'000'000'001ull, Errc::kProcessorError, "boom"},
      {1'700'000'000'400'000'000ull, Errc::kWorkerDied, std::string("with\0nul", 8)},
      {1'700'000'000'900'000'002ull, Errc::kProcessingTimeout, ""},
  };
  return e;
}

std::vector<std::byte> dead_letter_record(uint64_t dlq_id) {
  auto body = encode_dead_letter(full_entry(dlq_id));
  EXPECT_TRUE(body.ok());
  return encode_record(RecordType::kDeadLetter, body.value());
}

void append(std::vector<std::byte>& file, const std::vector<std::byte>& rec) {
  file.insert(file.end(), rec.begin(), rec.end());
}

void expect_same(const JournalEntry& a, const JournalEntry& b) {
  EXPECT_EQ(a.dlq_id, b.dlq_id);
  const DeadLetter& x = a.letter;
  const DeadLetter& y = b.letter;
  EXPECT_EQ(x.request_id, y.request_id);
  EXPECT_EQ(x.user_id, y.user_id);
  EXPECT_EQ(x.type, y.type);
  EXPECT_EQ(x.mode, y.mode);
  EXPECT_EQ(x.priority, y.priority);
  EXPECT_EQ(x.payload, y.payload);
  EXPECT_EQ(x.metadata, y.metadata);
  EXPECT_EQ(x.status, y.status);
  EXPECT_EQ(x.reason, y.reason);
  EXPECT_EQ(x.attempt_count, y.attempt_count);
  EXPECT_EQ(x.first_attempt_unix_ns, y.first_attempt_unix_ns);
  EXPECT_EQ(x.last_attempt_unix_ns, y.last_attempt_unix_ns);
  ASSERT_EQ(x.history.size(), y.history.size());
  for (std::size_t i = 0; i < x.history.size(); ++i) {
    EXPECT_EQ(x.history[i].at_unix_ns, y.history[i].at_unix_ns) << i;
    EXPECT_EQ(x.history[i].code, y.history[i].code) << i;
    EXPECT_EQ(x.history[i].message, y.history[i].message) << i;
  }
}

TEST(Crc32c, MatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(Crc32c, ContinuesFromASeed) {
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
}

// The inner record of the header comment, byte by byte, with `version`.
std::vector<std::byte> documented_inner(uint8_t version) {
  std::vector<std::byte> rec = bytes_of("PQJR");
  for (const uint8_t b : {3, 0, 0, 0, 0, 0, 0, 0, 2}) rec.push_back(std::byte{b});
  rec.push_back(std::byte{version});
  rec.push_back(std::byte{0});
  rec.push_back(std::byte{0});
  const std::vector<std::byte> body = bytes_of("xyz");
  rec.insert(rec.end(), body.begin(), body.end());
  const uint32_t crc = crc32c(rec.data() + 12, rec.size() - 12);
  for (int i = 0; i < 4; ++i) rec[8 + i] = std::byte{static_cast<uint8_t>(crc >> (8 * i))};
  return rec;
}

TEST(JournalFormat, HeaderIsLittleEndianAndDocumented) {
  const std::vector<std::byte> body = bytes_of("xyz");
  EXPECT_EQ(encode_legacy_record(RecordType::kReview, body), documented_inner(1));
  const std::vector<std::byte> rec = encode_record(RecordType::kReview, body);
  EXPECT_EQ(rec, frame_record(documented_inner(kRecordVersion)));
  EXPECT_EQ(rec[0], std::byte{0});  // the delimiter, and the only zero byte
  EXPECT_EQ(std::count(rec.begin(), rec.end(), std::byte{0}), 1);
}

TEST(JournalFormat, FramesAreCobsEncodedAsTheReferenceExamples) {
  // Cheshire & Baker's examples (after the leading delimiter).
  const auto framed = [](std::vector<uint8_t> in) {
    std::vector<std::byte> b;
    for (const uint8_t v : in) b.push_back(std::byte{v});
    std::vector<std::byte> out = frame_record(b);
    return std::vector<uint8_t>(reinterpret_cast<uint8_t*>(out.data()) + 1,
                                reinterpret_cast<uint8_t*>(out.data()) + out.size());
  };
  EXPECT_EQ(framed({0x00}), (std::vector<uint8_t>{0x01, 0x01}));
  EXPECT_EQ(framed({0x00, 0x00}), (std::vector<uint8_t>{0x01, 0x01, 0x01}));
  EXPECT_EQ(framed({0x11, 0x22, 0x00, 0x33}), (std::vector<uint8_t>{0x03, 0x11, 0x22, 0x02, 0x33}));
  EXPECT_EQ(framed({0x11, 0x00, 0x00, 0x00}), (std::vector<uint8_t>{0x02, 0x11, 0x01, 0x01, 0x01}));
  std::vector<uint8_t> run(254);
  for (std::size_t i = 0; i < run.size(); ++i) run[i] = static_cast<uint8_t>(i + 1);
  std::vector<uint8_t> want{0xFF};
  want.insert(want.end(), run.begin(), run.end());
  EXPECT_EQ(framed(run), want);
  run.push_back(0xFF);
  want.push_back(0x02);
  want.push_back(0xFF);
  EXPECT_EQ(framed(run), want);
}

TEST(JournalFormat, DeadLetterRoundTripsEveryField) {
  const JournalEntry in = full_entry(7);
  auto body = encode_dead_letter(in);
  ASSERT_TRUE(body.ok());
  const std::vector<std::byte> rec = encode_record(RecordType::kDeadLetter, body.value());
  const ScanResult s = scan(rec);
  ASSERT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.records[0].type, RecordType::kDeadLetter);
  auto out = decode_dead_letter(s.records[0].body);
  ASSERT_TRUE(out.ok()) << out.error().message;
  expect_same(in, out.value());
}

TEST(JournalFormat, DeadLetterWithEmptyFieldsRoundTrips) {
  JournalEntry in;
  in.dlq_id = 1;
  auto body = encode_dead_letter(in);
  ASSERT_TRUE(body.ok());
  auto out = decode_dead_letter(body.value());
  ASSERT_TRUE(out.ok()) << out.error().message;
  expect_same(in, out.value());
}

TEST(JournalFormat, DeadLetterWithLongestFieldsRoundTrips) {
  JournalEntry in = full_entry(9);
  in.letter.user_id.assign(kUserIdMaxBytes, 'u');
  in.letter.type.assign(kTypeMaxBytes, 't');
  in.letter.metadata.assign(kMetadataMaxBytes, 'm');
  in.letter.payload.assign(kJournalPayloadMax, std::byte{0});
  in.letter.history.assign(
      kJournalHistoryMax, AttemptFailure{5, Errc::kInternal, std::string(kJournalMessageMax, 'x')});
  auto body = encode_dead_letter(in);
  ASSERT_TRUE(body.ok());
  ASSERT_LE(body.value().size(), kRecordBodyMax);
  const std::vector<std::byte> rec = encode_record(RecordType::kDeadLetter, body.value());
  const ScanResult s = scan(rec);
  ASSERT_EQ(s.records.size(), 1u);
  auto out = decode_dead_letter(s.records[0].body);
  ASSERT_TRUE(out.ok()) << out.error().message;
  expect_same(in, out.value());
}

TEST(JournalFormat, ReviewRoundTripsEveryField) {
  const ReviewRecord in{42, "ops@example", 1'700'000'000'123'456'789ull,
                        std::string("fixed upstream\0, replay ok", 26)};
  auto body = encode_review(in);
  ASSERT_TRUE(body.ok());
  const std::vector<std::byte> rec = encode_record(RecordType::kReview, body.value());
  const ScanResult s = scan(rec);  // s's spans point into rec
  ASSERT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.records[0].type, RecordType::kReview);
  auto out = decode_review(s.records[0].body);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->dlq_id, in.dlq_id);
  EXPECT_EQ(out->reviewed_by, in.reviewed_by);
  EXPECT_EQ(out->reviewed_at_unix_ns, in.reviewed_at_unix_ns);
  EXPECT_EQ(out->resolution, in.resolution);
}

TEST(JournalFormat, ReplayRoundTripsEveryField) {
  const ReplayRecord in{43, 0xFEDCBA9876543210ull, 1'700'000'000'999'999'999ull};
  const std::vector<std::byte> body = encode_replay(in);
  EXPECT_EQ(body.size(), 24u);
  const std::vector<std::byte> rec = encode_record(RecordType::kReplay, body);
  const ScanResult s = scan(rec);  // s's spans point into rec
  ASSERT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.records[0].type, RecordType::kReplay);
  auto out = decode_replay(s.records[0].body);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->dlq_id, in.dlq_id);
  EXPECT_EQ(out->replayed_as, in.replayed_as);
  EXPECT_EQ(out->at_unix_ns, in.at_unix_ns);
}

TEST(JournalFormat, EncodeRefusesFieldsDecodeWouldRefuse) {
  JournalEntry e = full_entry(1);
  e.letter.user_id.assign(kUserIdMaxBytes + 1, 'u');
  EXPECT_FALSE(encode_dead_letter(e).ok());
  e = full_entry(1);
  e.letter.status = Status::kCompleted;
  EXPECT_FALSE(encode_dead_letter(e).ok());
  e = full_entry(1);
  e.letter.history.resize(kJournalHistoryMax + 1);
  EXPECT_FALSE(encode_dead_letter(e).ok());
  e = full_entry(1);
  e.letter.history[0].message.assign(kJournalMessageMax + 1, 'x');
  EXPECT_FALSE(encode_dead_letter(e).ok());
  EXPECT_FALSE(encode_review({1, "r", 2, std::string(kJournalResolutionMax + 1, 'x')}).ok());
}

TEST(JournalFormat, DecodeRejectsEveryTruncatedBody) {
  auto dead = encode_dead_letter(full_entry(3));
  auto review = encode_review({1, "ops", 2, "done"});
  ASSERT_TRUE(dead.ok());
  ASSERT_TRUE(review.ok());
  const std::vector<std::byte> replay = encode_replay({1, 2, 3});
  std::span<const std::byte> d(dead.value());
  std::span<const std::byte> r(review.value());
  std::span<const std::byte> p(replay);
  for (std::size_t n = 0; n < d.size(); ++n) EXPECT_FALSE(decode_dead_letter(d.first(n)).ok()) << n;
  for (std::size_t n = 0; n < r.size(); ++n) EXPECT_FALSE(decode_review(r.first(n)).ok()) << n;
  for (std::size_t n = 0; n < p.size(); ++n) EXPECT_FALSE(decode_replay(p.first(n)).ok()) << n;
}

TEST(JournalFormat, DecodeRejectsTrailingBytes) {
  auto dead = encode_dead_letter(full_entry(3));
  ASSERT_TRUE(dead.ok());
  dead.value().push_back(std::byte{0});
  EXPECT_FALSE(decode_dead_letter(dead.value()).ok());
  std::vector<std::byte> replay = encode_replay({1, 2, 3});
  replay.push_back(std::byte{0});
  EXPECT_FALSE(decode_replay(replay).ok());
}

// Offsets in the dead-letter body (see the header's layout).
constexpr std::size_t kUserIdLenAt = 40;

TEST(JournalFormat, DecodeRejectsOversizedLengthsAndOutOfRangeFields) {
  auto ok = encode_dead_letter(full_entry(3));
  ASSERT_TRUE(ok.ok());
  // user_id's u16 count says kUserIdMaxBytes + 1, with that many bytes present.
  {
    JournalEntry e = full_entry(3);
    e.letter.user_id.assign(kUserIdMaxBytes, 'u');
    auto body = encode_dead_letter(e);
    ASSERT_TRUE(body.ok());
    std::vector<std::byte> b = body.value();
    b[kUserIdLenAt] = std::byte{static_cast<uint8_t>(kUserIdMaxBytes + 1)};
    b.insert(b.begin() + kUserIdLenAt + 2, std::byte{'u'});
    ASSERT_TRUE(decode_dead_letter(body.value()).ok());
    EXPECT_FALSE(decode_dead_letter(b).ok());
  }
  // user_id's count set to 0xFFFF, far past the body.
  {
    std::vector<std::byte> b = ok.value();
    b[kUserIdLenAt] = std::byte{0xFF};
    b[kUserIdLenAt + 1] = std::byte{0xFF};
    EXPECT_FALSE(decode_dead_letter(b).ok());
  }
  // payload's u32 count set to 0xFFFFFFFF; history count to 0xFFFF.
  {
    JournalEntry e = full_entry(3);
    e.letter.user_id.clear();
    e.letter.type.clear();
    e.letter.metadata.clear();
    e.letter.payload.clear();
    e.letter.history.clear();
    auto body = encode_dead_letter(e);
    ASSERT_TRUE(body.ok());
    ASSERT_EQ(body.value().size(), 40u + 6 + 4 + 2);
    std::vector<std::byte> b = body.value();
    for (std::size_t i = 46; i < 50; ++i) b[i] = std::byte{0xFF};
    EXPECT_FALSE(decode_dead_letter(b).ok());
    b = body.value();
    b[50] = std::byte{0xFF};
    b[51] = std::byte{0xFF};
    EXPECT_FALSE(decode_dead_letter(b).ok());
    b[50] = std::byte{static_cast<uint8_t>(kJournalHistoryMax & 0xFF)};
    b[51] = std::byte{static_cast<uint8_t>(kJournalHistoryMax >> 8)};
    EXPECT_FALSE(decode_dead_letter(b).ok());  // count in range, attempts missing
  }
  // history_count of kJournalHistoryMax + 1 with every attempt present.
  {
    JournalEntry e = full_entry(3);
    e.letter.history.assign(kJournalHistoryMax, AttemptFailure{1, Errc::kInternal, ""});
    auto body = encode_dead_letter(e);
    ASSERT_TRUE(body.ok());
    ASSERT_TRUE(decode_dead_letter(body.value()).ok());
    std::vector<std::byte> b = body.value();
    const std::size_t count_at = b.size() - kJournalHistoryMax * (8 + 1 + 2) - 2;
    b[count_at] = std::byte{static_cast<uint8_t>((kJournalHistoryMax + 1) & 0xFF)};
    b[count_at + 1] = std::byte{static_cast<uint8_t>((kJournalHistoryMax + 1) >> 8)};
    b.insert(b.end(), b.end() - (8 + 1 + 2), b.end());
    EXPECT_FALSE(decode_dead_letter(b).ok());
  }
  // Out-of-range enums.
  {
    std::vector<std::byte> b = ok.value();
    b[16] = std::byte{kModeCount};
    EXPECT_FALSE(decode_dead_letter(b).ok());
    b = ok.value();
    b[18] = std::byte{static_cast<uint8_t>(Status::kCompleted)};
    EXPECT_FALSE(decode_dead_letter(b).ok());
    b = ok.value();
    b[19] = std::byte{kErrcCount};
    EXPECT_FALSE(decode_dead_letter(b).ok());
    b = ok.value();
    b[17] = std::byte{0};
    EXPECT_FALSE(decode_dead_letter(b).ok());
  }
  // An attempt's code out of range: empty strings and payload put the one
  // attempt at 52 and its code at 60.
  {
    JournalEntry e;
    e.letter.history = {AttemptFailure{1, Errc::kInternal, "m"}};
    auto body = encode_dead_letter(e);
    ASSERT_TRUE(body.ok());
    ASSERT_EQ(body.value().size(), 52u + 8 + 1 + 2 + 1);
    std::vector<std::byte> b = body.value();
    ASSERT_EQ(b[60], std::byte{static_cast<uint8_t>(Errc::kInternal)});
    ASSERT_TRUE(decode_dead_letter(b).ok());
    b[60] = std::byte{kErrcCount};
    EXPECT_FALSE(decode_dead_letter(b).ok());
  }
}

// A record with its header byte `at` set to `value` and the CRC recomputed,
// so only the header rule can reject it.
std::vector<std::byte> record_with_header_byte(std::size_t at, uint8_t value) {
  std::vector<std::byte> rec = encode_legacy_record(RecordType::kReplay, encode_replay({1, 2, 3}));
  rec[13] = std::byte{kRecordVersion};
  rec[at] = std::byte{value};
  const uint32_t crc = crc32c(rec.data() + kRecordCrcStart, rec.size() - kRecordCrcStart);
  for (int i = 0; i < 4; ++i) rec[8 + i] = std::byte{static_cast<uint8_t>(crc >> (8 * i))};
  return frame_record(rec);
}

TEST(JournalFormat, CheckpointRoundTripsAndRefusesOtherLengths) {
  const std::vector<std::byte> body = encode_checkpoint({0x0102'0304'0506'0708ull});
  ASSERT_EQ(body.size(), 8u);
  auto c = decode_checkpoint(body);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->next_dlq_id, 0x0102'0304'0506'0708ull);
  const std::vector<std::byte> rec = encode_record(RecordType::kCheckpoint, body);
  const ScanResult s = scan(rec);
  ASSERT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.records[0].type, RecordType::kCheckpoint);
  EXPECT_FALSE(decode_checkpoint(std::span(body).first(7)).ok());
  std::vector<std::byte> longer = body;
  longer.push_back(std::byte{0});
  EXPECT_FALSE(decode_checkpoint(longer).ok());
}

TEST(JournalScan, RejectsUnknownTypeVersionOrReservedEvenWithAGoodCrc) {
  ASSERT_EQ(scan(record_with_header_byte(12, 3)).records.size(), 1u);  // the control
  for (const auto& [at, value] : {std::pair<std::size_t, uint8_t>{12, 0},
                                  {12, 5},
                                  {13, 0},
                                  {13, 1},
                                  {13, 3},
                                  {14, 1},
                                  {15, 1}}) {
    std::vector<std::byte> file = record_with_header_byte(at, value);
    const ScanResult s = scan(file);
    EXPECT_TRUE(s.records.empty()) << "byte " << at << " = " << int{value};
    EXPECT_EQ(s.valid_end, 0u);
    EXPECT_TRUE(s.torn_tail);
  }
}

TEST(JournalScan, RejectsALengthAboveTheBodyMaximum) {
  // A header claiming kRecordBodyMax + 1 bytes, with all of them present and
  // the CRC right: only the length bound rejects it.
  std::vector<std::byte> body(kRecordBodyMax + 1, std::byte{0});
  std::vector<std::byte> rec(kRecordHeaderBytes);
  const uint32_t len = kRecordBodyMax + 1;
  std::memcpy(rec.data(), "PQJR", 4);
  for (int i = 0; i < 4; ++i) rec[4 + i] = std::byte{static_cast<uint8_t>(len >> (8 * i))};
  rec[12] = std::byte{3};
  rec[13] = std::byte{kRecordVersion};
  rec.insert(rec.end(), body.begin(), body.end());
  const uint32_t crc = crc32c(rec.data() + kRecordCrcStart, rec.size() - kRecordCrcStart);
  for (int i = 0; i < 4; ++i) rec[8 + i] = std::byte{static_cast<uint8_t>(crc >> (8 * i))};
  const ScanResult s = scan(frame_record(rec));
  EXPECT_TRUE(s.records.empty());
  EXPECT_EQ(s.valid_end, 0u);
}

TEST(JournalScan, CleanFileScansToItsEnd) {
  std::vector<std::byte> file;
  append(file, dead_letter_record(1));
  append(file, encode_record(RecordType::kReplay, encode_replay({1, 99, 5})));
  append(file, dead_letter_record(2));
  const ScanResult s = scan(file);
  ASSERT_EQ(s.records.size(), 3u);
  EXPECT_EQ(s.records[1].type, RecordType::kReplay);
  EXPECT_TRUE(s.corrupt.empty());
  EXPECT_EQ(s.valid_end, file.size());
  EXPECT_FALSE(s.torn_tail);
  EXPECT_TRUE(scan({}).records.empty());
  EXPECT_EQ(scan({}).valid_end, 0u);
}

TEST(JournalScan, CutAtEveryOffsetOfTheLastRecordKeepsTheOthers) {
  constexpr std::size_t kRecords = 4;
  std::vector<std::byte> file;
  std::vector<std::size_t> starts;
  for (uint64_t i = 0; i < kRecords; ++i) {
    starts.push_back(file.size());
    append(file, dead_letter_record(i + 1));
  }
  const std::size_t last = starts.back();
  for (std::size_t cut = last; cut < file.size(); ++cut) {
    const ScanResult s = scan(std::span<const std::byte>(file).first(cut));
    ASSERT_EQ(s.records.size(), kRecords - 1) << "cut at " << cut;
    for (std::size_t i = 0; i + 1 < kRecords; ++i) EXPECT_EQ(s.records[i].offset, starts[i]);
    EXPECT_TRUE(s.corrupt.empty()) << "cut at " << cut;
    EXPECT_EQ(s.valid_end, last) << "cut at " << cut;
    EXPECT_EQ(s.torn_tail, cut > last) << "cut at " << cut;
  }
}

TEST(JournalScan, BadCrcInTheLastRecordIsATornTail) {
  std::vector<std::byte> file;
  append(file, dead_letter_record(1));
  const std::size_t last = file.size();
  append(file, dead_letter_record(2));
  file.back() ^= std::byte{0x01};
  const ScanResult s = scan(file);
  EXPECT_EQ(s.records.size(), 1u);
  EXPECT_TRUE(s.corrupt.empty());
  EXPECT_EQ(s.valid_end, last);
  EXPECT_TRUE(s.torn_tail);
}

TEST(JournalScan, AFlippedByteInTheMiddleRecordIsReportedAndSkipped) {
  std::vector<std::byte> file;
  append(file, dead_letter_record(1));
  const std::size_t middle = file.size();
  append(file, dead_letter_record(2));
  const std::size_t third = file.size();
  append(file, dead_letter_record(3));
  for (std::size_t at = middle; at < third; ++at) {
    std::vector<std::byte> bad = file;
    bad[at] ^= std::byte{0x5A};
    const ScanResult s = scan(bad);
    ASSERT_EQ(s.records.size(), 2u) << "flip at " << at;
    EXPECT_EQ(s.records[0].offset, 0u);
    EXPECT_EQ(s.records[1].offset, third);
    ASSERT_EQ(s.corrupt.size(), 1u) << "flip at " << at;
    EXPECT_EQ(s.corrupt[0].offset, middle);
    EXPECT_EQ(s.corrupt[0].length, third - middle);
    EXPECT_EQ(s.valid_end, file.size());
    EXPECT_FALSE(s.torn_tail);
    auto first = decode_dead_letter(s.records[0].body);
    auto last = decode_dead_letter(s.records[1].body);
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE(last.ok());
    EXPECT_EQ(first->dlq_id, 1u);
    EXPECT_EQ(last->dlq_id, 3u);
  }
}

TEST(JournalScan, GarbageBetweenRecordsIsSkipped) {
  std::vector<std::byte> file;
  append(file, dead_letter_record(1));
  const std::size_t junk = file.size();
  append(file, bytes_of("PQJRjunk\xff\xff\xff\xffPQJ"));
  const std::size_t second = file.size();
  append(file, dead_letter_record(2));
  const ScanResult s = scan(file);
  ASSERT_EQ(s.records.size(), 2u);
  EXPECT_EQ(s.records[1].offset, second);
  ASSERT_EQ(s.corrupt.size(), 1u);
  EXPECT_EQ(s.corrupt[0].offset, junk);
  EXPECT_EQ(s.corrupt[0].length, second - junk);
}

TEST(JournalScan, RandomBuffersNeverCrashAndStayInBounds) {
  std::mt19937_64 rng(20261127);
  std::vector<std::byte> valid;
  append(valid, dead_letter_record(1));
  append(valid, encode_record(RecordType::kReplay, encode_replay({1, 2, 3})));
  auto review = encode_review({1, "ops", 4, "ok"});
  ASSERT_TRUE(review.ok());
  append(valid, encode_record(RecordType::kReview, review.value()));
  for (int round = 0; round < 4000; ++round) {
    std::vector<std::byte> buf;
    const int kind = round % 3;
    if (kind == 0) {  // pure noise, sometimes seeded with magics
      buf.resize(rng() % 512);
      for (auto& b : buf) b = std::byte{static_cast<uint8_t>(rng())};
      for (std::size_t i = 0; i + 4 <= buf.size(); i += 1 + rng() % 64) {
        if (rng() % 4 == 0) std::memcpy(buf.data() + i, "PQJR", 4);
      }
    } else {  // valid records with random bytes mutated and a random cut
      buf = valid;
      const std::size_t flips = 1 + rng() % 8;
      for (std::size_t i = 0; i < flips; ++i)
        buf[rng() % buf.size()] = std::byte{static_cast<uint8_t>(rng())};
      if (kind == 2) buf.resize(rng() % (buf.size() + 1));
    }
    const ScanResult s = scan(buf);
    ASSERT_LE(s.valid_end, buf.size());
    EXPECT_EQ(s.torn_tail, s.valid_end < buf.size());
    for (const ScannedRecord& r : s.records) {
      ASSERT_LE(r.offset + kRecordHeaderBytes + r.body.size(), buf.size());
      ASSERT_LE(r.offset + kRecordHeaderBytes + r.body.size(), s.valid_end);
      switch (r.type) {
        case RecordType::kDeadLetter:
          (void)decode_dead_letter(r.body);
          break;
        case RecordType::kReview:
          (void)decode_review(r.body);
          break;
        case RecordType::kReplay:
          (void)decode_replay(r.body);
          break;
        case RecordType::kCheckpoint:
          (void)decode_checkpoint(r.body);
          break;
      }
    }
    // Decoders on raw noise, too.
    (void)decode_dead_letter(buf);
    (void)decode_review(buf);
    (void)decode_replay(buf);
    (void)decode_checkpoint(buf);
  }
}

TEST(JournalFormat, MutatedBodiesNeverCrashTheDecoders) {
  std::mt19937_64 rng(4);
  auto dead = encode_dead_letter(full_entry(5));
  auto review = encode_review({1, "ops", 4, "ok"});
  ASSERT_TRUE(dead.ok());
  ASSERT_TRUE(review.ok());
  for (int round = 0; round < 3000; ++round) {
    std::vector<std::byte> d = dead.value();
    std::vector<std::byte> r = review.value();
    for (int i = 0; i < 1 + static_cast<int>(rng() % 4); ++i) {
      d[rng() % d.size()] = std::byte{static_cast<uint8_t>(rng())};
      r[rng() % r.size()] = std::byte{static_cast<uint8_t>(rng())};
    }
    d.resize(rng() % (d.size() + 1));
    auto e = decode_dead_letter(d);
    if (e.ok()) {
      EXPECT_LE(e->letter.payload.size(), kJournalPayloadMax);
      EXPECT_LE(e->letter.history.size(), kJournalHistoryMax);
    }
    (void)decode_review(r);
  }
}

}  // namespace
}  // namespace perfq::agent

namespace perfq::agent {
namespace {

TEST(JournalScan, ALostDelimiterLosesOnlyTheRecordItStarted) {
  std::vector<std::byte> file;
  append(file, dead_letter_record(1));
  const std::size_t middle = file.size();
  append(file, dead_letter_record(2));
  const std::size_t third = file.size();
  append(file, dead_letter_record(3));
  file[middle] = std::byte{0x5A};  // the first frame now runs on to the third
  const ScanResult s = scan(file);
  ASSERT_EQ(s.records.size(), 2u);
  EXPECT_EQ(s.records[0].offset, 0u);
  EXPECT_EQ(s.records[0].size, middle);
  EXPECT_EQ(s.records[1].offset, third);
  ASSERT_EQ(s.corrupt.size(), 1u);
  EXPECT_EQ(s.corrupt[0].offset, middle);
  EXPECT_EQ(s.corrupt[0].length, third - middle);
}

// Issue 15: a payload holding a whole encoded record, after a corrupt
// record, was taken for that record by the byte-wise resync.
TEST(JournalScan, ARecordForgedInsideAPayloadIsNeverTakenAfterACorruptRecord) {
  JournalEntry forged = full_entry(666);
  forged.letter.payload.clear();
  auto forged_body = encode_dead_letter(forged);
  ASSERT_TRUE(forged_body.ok());
  const std::vector<std::byte> forged_rec = encode_record(RecordType::kDeadLetter, *forged_body);
  JournalEntry carrier = full_entry(2);
  carrier.letter.payload = forged_rec;  // a client's binary payload
  auto carrier_body = encode_dead_letter(carrier);
  ASSERT_TRUE(carrier_body.ok());

  std::vector<std::byte> file;
  append(file, dead_letter_record(1));
  const std::size_t second = file.size();
  append(file, encode_record(RecordType::kDeadLetter, *carrier_body));
  const std::size_t third = file.size();
  append(file, dead_letter_record(3));
  file[second + 5] ^= std::byte{0x01};  // the carrier's header is corrupt
  ASSERT_NE(file[second + 5], std::byte{0});

  const ScanResult s = scan(file);
  for (const ScannedRecord& r : s.records) {
    auto e = decode_dead_letter(r.body);
    ASSERT_TRUE(e.ok());
    EXPECT_NE(e->dlq_id, 666u) << "the forged record was taken at offset " << r.offset;
  }
  ASSERT_EQ(s.records.size(), 2u);
  EXPECT_EQ(s.records[1].offset, third);
  ASSERT_EQ(s.corrupt.size(), 1u);
  EXPECT_EQ(s.corrupt[0].offset, second);
  EXPECT_EQ(s.corrupt[0].length, third - second);
}

TEST(JournalScan, AFormatOneFileIsStillRead) {
  std::vector<std::byte> file;
  for (uint64_t id = 1; id <= 3; ++id) {
    auto body = encode_dead_letter(full_entry(id));
    ASSERT_TRUE(body.ok());
    append(file, encode_legacy_record(RecordType::kDeadLetter, *body));
  }
  const ScanResult s = scan(file);
  EXPECT_EQ(s.format, kLegacyRecordVersion);
  ASSERT_EQ(s.records.size(), 3u);
  EXPECT_EQ(s.valid_end, file.size());
  auto e = decode_dead_letter(s.records[2].body);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->dlq_id, 3u);
}

}  // namespace
}  // namespace perfq::agent
