#include "perfq/core/request.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace perfq {
namespace {

constexpr std::size_t kCapacity = 4096;

// A request that passes every rule; each test breaks exactly one field.
RequestView valid_request() {
  RequestView r;
  r.type = "email.send";
  r.user_id = "alice@example.com";
  r.mode = Mode::kPriority;
  r.priority = kPriorityDefault;
  return r;
}

Errc check(const RequestView& r, std::size_t capacity = kCapacity) {
  return validate(r, capacity).code;
}

TEST(RequestValidate, BaselineRequestIsValid) {
  const Violation v = validate(valid_request(), kCapacity);
  EXPECT_EQ(v.code, Errc::kOk);
}

TEST(RequestValidate, TypeLengthMustBeOneToSixtyFour) {
  RequestView r = valid_request();
  const std::string len64(64, 'a');
  const std::string len65(65, 'a');
  r.type = "";
  EXPECT_EQ(check(r), Errc::kInvalidRequest);
  r.type = "a";
  EXPECT_EQ(check(r), Errc::kOk);
  r.type = len64;
  EXPECT_EQ(check(r), Errc::kOk);
  r.type = len65;
  EXPECT_EQ(check(r), Errc::kInvalidRequest);
}

TEST(RequestValidate, TypeAcceptsExactlyItsCharset) {
  EXPECT_TRUE(valid_type("AZaz09._:-"));
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool allowed = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                         (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' ||
                         ch == '-';
    const std::string s = std::string("x") + ch + "y";
    EXPECT_EQ(valid_type(s), allowed) << "byte " << c;
    RequestView r = valid_request();
    r.type = s;
    EXPECT_EQ(check(r), allowed ? Errc::kOk : Errc::kInvalidRequest) << "byte " << c;
  }
  EXPECT_FALSE(valid_type("a@b")) << "'@' belongs to userId only";
}

TEST(RequestValidate, TypeViolationMessageDoesNotQuoteTheValue) {
  RequestView r = valid_request();
  r.type = "secret value!";
  const Violation v = validate(r, kCapacity);
  EXPECT_EQ(v.code, Errc::kInvalidRequest);
  EXPECT_FALSE(v.message.empty());
  EXPECT_EQ(v.message.find("secret"), std::string_view::npos);
}

TEST(RequestValidate, UserIdLengthMustBeOneToSixtyFour) {
  RequestView r = valid_request();
  const std::string len64(64, 'u');
  const std::string len65(65, 'u');
  r.user_id = "";
  EXPECT_EQ(check(r), Errc::kInvalidRequest);
  r.user_id = "u";
  EXPECT_EQ(check(r), Errc::kOk);
  r.user_id = len64;
  EXPECT_EQ(check(r), Errc::kOk);
  r.user_id = len65;
  EXPECT_EQ(check(r), Errc::kInvalidRequest);
}

TEST(RequestValidate, UserIdAcceptsExactlyItsCharsetIncludingAt) {
  EXPECT_TRUE(valid_user_id("AZaz09._:@-"));
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool allowed = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                         (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' ||
                         ch == '@' || ch == '-';
    const std::string s = std::string("u") + ch + "v";
    EXPECT_EQ(valid_user_id(s), allowed) << "byte " << c;
    RequestView r = valid_request();
    r.user_id = s;
    EXPECT_EQ(check(r), allowed ? Errc::kOk : Errc::kInvalidRequest) << "byte " << c;
  }
}

TEST(RequestValidate, PriorityMustBeOneToTwenty) {
  RequestView r = valid_request();
  r.priority = 0;
  EXPECT_EQ(check(r), Errc::kInvalidPriority);
  r.priority = 1;
  EXPECT_EQ(check(r), Errc::kOk);
  r.priority = 20;
  EXPECT_EQ(check(r), Errc::kOk);
  r.priority = 21;
  EXPECT_EQ(check(r), Errc::kInvalidPriority);
  r.priority = 255;
  EXPECT_EQ(check(r), Errc::kInvalidPriority);
}

TEST(RequestValidate, PriorityRangeAppliesInEveryMode) {
  for (Mode m : {Mode::kFifo, Mode::kPriority, Mode::kBatch}) {
    RequestView r = valid_request();
    r.mode = m;
    r.priority = 0;
    EXPECT_EQ(check(r), Errc::kInvalidPriority) << mode_name(m);
    r.priority = 21;
    EXPECT_EQ(check(r), Errc::kInvalidPriority) << mode_name(m);
  }
}

TEST(RequestValidate, DefaultPriorityIsFive) {
  EXPECT_EQ(RequestView{}.priority, 5);
  EXPECT_EQ(RequestView{}.mode, Mode::kFifo);
}

TEST(RequestValidate, ModeMustBeFifoPriorityOrBatch) {
  RequestView r = valid_request();
  for (Mode m : {Mode::kFifo, Mode::kPriority, Mode::kBatch}) {
    r.mode = m;
    EXPECT_EQ(check(r), Errc::kOk) << mode_name(m);
  }
  r.mode = static_cast<Mode>(3);
  EXPECT_EQ(check(r), Errc::kInvalidMode);
  r.mode = static_cast<Mode>(255);
  EXPECT_EQ(check(r), Errc::kInvalidMode);
}

TEST(RequestValidate, ModeNamesParseAndPrintBothWays) {
  for (Mode m : {Mode::kFifo, Mode::kPriority, Mode::kBatch}) {
    Mode out = static_cast<Mode>(200);
    ASSERT_TRUE(parse_mode(mode_name(m), out));
    EXPECT_EQ(out, m);
  }
  Mode out = Mode::kBatch;
  EXPECT_FALSE(parse_mode("FIFO", out));
  EXPECT_FALSE(parse_mode("", out));
  EXPECT_FALSE(parse_mode("fifo ", out));
  EXPECT_EQ(out, Mode::kBatch) << "a failed parse leaves the output alone";
}

TEST(RequestValidate, PayloadMayFillTheSlotButNotOneByteMore) {
  RequestView r = valid_request();
  const std::vector<std::byte> at_capacity(kCapacity);
  const std::vector<std::byte> over(kCapacity + 1);
  r.payload = {};
  EXPECT_EQ(check(r), Errc::kOk) << "an empty payload is allowed";
  r.payload = at_capacity;
  EXPECT_EQ(check(r), Errc::kOk);
  r.payload = over;
  EXPECT_EQ(check(r), Errc::kInvalidRequest);
  // The limit is the segment's slot_payload_bytes, not the default.
  r.payload = std::span<const std::byte>(at_capacity).first(100);
  EXPECT_EQ(check(r, 100), Errc::kOk);
  EXPECT_EQ(check(r, 99), Errc::kInvalidRequest);
}

TEST(RequestValidate, IdempotencyKeyIsOptionalUpToOneTwentyEightPrintableBytes) {
  RequestView r = valid_request();
  const std::string len128(128, 'k');
  const std::string len129(129, 'k');
  r.idempotency_key = "";
  EXPECT_EQ(check(r), Errc::kOk) << "empty means no key";
  r.idempotency_key = "k";
  EXPECT_EQ(check(r), Errc::kOk);
  r.idempotency_key = len128;
  EXPECT_EQ(check(r), Errc::kOk);
  r.idempotency_key = len129;
  EXPECT_EQ(check(r), Errc::kInvalidRequest);
  r.idempotency_key = " ~{}\"'!@#$%^&*()<>?/\\|";  // every printable byte is fine
  EXPECT_EQ(check(r), Errc::kOk);
}

TEST(RequestValidate, IdempotencyKeyRejectsNonPrintableBytes) {
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool printable = c >= 0x20 && c <= 0x7e;
    const std::string key = std::string("key") + ch;
    EXPECT_EQ(valid_idempotency_key(key), printable) << "byte " << c;
    RequestView r = valid_request();
    r.idempotency_key = key;
    EXPECT_EQ(check(r), printable ? Errc::kOk : Errc::kInvalidRequest) << "byte " << c;
  }
}

TEST(RequestValidate, MetadataIsOptionalJsonObjectOfAtMost512Bytes) {
  RequestView r = valid_request();
  r.metadata = "";
  EXPECT_EQ(check(r), Errc::kOk) << "empty means no metadata";
  r.metadata = "{}";
  EXPECT_EQ(check(r), Errc::kOk);
  r.metadata = " \t{\"a\": 1, \"b\": [1, 2]}\r\n";
  EXPECT_EQ(check(r), Errc::kOk);

  // Exactly 512 bytes: {"k":"xxx...x"}
  std::string at_limit = "{\"k\":\"" + std::string(512 - 8, 'x') + "\"}";
  ASSERT_EQ(at_limit.size(), 512u);
  r.metadata = at_limit;
  EXPECT_EQ(check(r), Errc::kOk);
  std::string over = "{\"k\":\"" + std::string(512 - 7, 'x') + "\"}";
  ASSERT_EQ(over.size(), 513u);
  r.metadata = over;
  EXPECT_EQ(check(r), Errc::kInvalidRequest);
}

TEST(RequestValidate, MetadataThatIsNotAJsonObjectIsRejected) {
  for (const char* text : {"[]", "[{}]", "1", "\"{}\"", "null", "true", "{", "}", "}{", "  ",
                           "{\"a\":1", "\"a\":1}", "abc"}) {
    RequestView r = valid_request();
    r.metadata = text;
    EXPECT_EQ(check(r), Errc::kInvalidRequest) << "metadata `" << text << "`";
  }
}

TEST(RequestValidate, FirstBrokenRuleIsReported) {
  RequestView r = valid_request();
  r.type = "";
  r.priority = 0;
  EXPECT_EQ(check(r), Errc::kInvalidRequest);
  r.type = "ok";
  EXPECT_EQ(check(r), Errc::kInvalidPriority);
}

TEST(BandFor, FifoIsAlwaysNormalWhateverThePriority) {
  for (int p = 0; p <= 255; ++p) {
    EXPECT_EQ(band_for(Mode::kFifo, static_cast<uint8_t>(p)), Band::kNormal) << p;
  }
}

TEST(BandFor, PriorityAndBatchFollowTheSpecTable) {
  for (Mode m : {Mode::kPriority, Mode::kBatch}) {
    for (uint8_t p = 1; p <= 4; ++p) EXPECT_EQ(band_for(m, p), Band::kLow) << int{p};
    for (uint8_t p = 5; p <= 9; ++p) EXPECT_EQ(band_for(m, p), Band::kNormal) << int{p};
    for (uint8_t p = 10; p <= 19; ++p) EXPECT_EQ(band_for(m, p), Band::kHigh) << int{p};
    EXPECT_EQ(band_for(m, 20), Band::kCritical);
  }
  static_assert(band_for(Mode::kPriority, 20) == Band::kCritical);
  static_assert(band_for(Mode::kBatch, 10) == Band::kHigh);
  static_assert(band_for(Mode::kFifo, 20) == Band::kNormal);
}

TEST(BandFor, BandsAreServedCriticalFirst) {
  EXPECT_EQ(static_cast<int>(Band::kCritical), 0);
  EXPECT_EQ(band_name(Band::kCritical), "CRITICAL");
  EXPECT_EQ(band_name(Band::kHigh), "HIGH");
  EXPECT_EQ(band_name(Band::kNormal), "NORMAL");
  EXPECT_EQ(band_name(Band::kLow), "LOW");
}

TEST(RequestStatus, NamesAndFinalityMatchTheSpec) {
  EXPECT_EQ(status_name(Status::kPending), "pending");
  EXPECT_EQ(status_name(Status::kAssigned), "assigned");
  EXPECT_EQ(status_name(Status::kProcessing), "processing");
  EXPECT_EQ(status_name(Status::kCompleted), "completed");
  EXPECT_EQ(status_name(Status::kFailed), "failed");
  EXPECT_EQ(status_name(Status::kTimeout), "timeout");
  EXPECT_EQ(status_name(Status::kCancelled), "cancelled");
  EXPECT_FALSE(is_final(Status::kPending));
  EXPECT_FALSE(is_final(Status::kAssigned));
  EXPECT_FALSE(is_final(Status::kProcessing));
  EXPECT_TRUE(is_final(Status::kCompleted));
  EXPECT_TRUE(is_final(Status::kFailed));
  EXPECT_TRUE(is_final(Status::kTimeout));
  EXPECT_TRUE(is_final(Status::kCancelled));
}

std::string format_id(uint64_t id) {
  char buf[17];
  format_request_id(id, buf);
  return buf;
}

TEST(RequestId, PrintsAsSixteenLowerCaseHexDigits) {
  EXPECT_EQ(format_id(0), "0000000000000000");
  EXPECT_EQ(format_id(1), "0000000000000001");
  EXPECT_EQ(format_id(0xABCDEF), "0000000000abcdef");
  EXPECT_EQ(format_id(0x0123456789ABCDEFull), "0123456789abcdef");
  EXPECT_EQ(format_id(~uint64_t{0}), "ffffffffffffffff");
}

TEST(RequestId, FormatThenParseRoundTrips) {
  uint64_t x = 0x9E37'79B9'7F4A'7C15ull;
  std::vector<uint64_t> ids = {0, 1, 15, 16, 0xFFFF'FFFFull, 1ull << 63, ~uint64_t{0}};
  for (int i = 0; i < 1000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ids.push_back(x);
  }
  for (uint64_t id : ids) {
    const std::string text = format_id(id);
    uint64_t back = 0;
    ASSERT_TRUE(parse_request_id(text, back)) << text;
    EXPECT_EQ(back, id) << text;
  }
}

TEST(RequestId, ParseRejectsEverythingButSixteenLowerCaseHexDigits) {
  for (const char* text :
       {"", "0", "000000000000000", "00000000000000000", "000000000000000A", "ABCDEF0123456789",
        "000000000000000g", "0x00000000000000", "-000000000000001", "+000000000000001",
        " 000000000000001", "000000000000001 ", "0000000000000\n01"}) {
    uint64_t out = 42;
    EXPECT_FALSE(parse_request_id(text, out)) << "`" << text << "`";
    EXPECT_EQ(out, 42u) << "a failed parse leaves the output alone";
  }
  uint64_t out = 0;
  EXPECT_FALSE(parse_request_id(std::string_view("00000000\0"
                                                 "0000000",
                                                 16),
                                out));
}

TEST(SlotGeometry, PartsAreCacheLineAlignedAndDoNotOverlap) {
  for (uint32_t cap : {0u, 1u, 127u, 128u, 129u, 4096u}) {
    const SlotGeometry g = SlotGeometry::for_capacity(cap);
    EXPECT_EQ(g.payload_capacity, cap);
    EXPECT_EQ(g.payload_offset % kCacheLine, 0u);
    EXPECT_EQ(g.result_offset % kCacheLine, 0u);
    EXPECT_EQ(g.stride % kCacheLine, 0u);
    EXPECT_GE(g.payload_offset, sizeof(RequestRecord));
    EXPECT_GE(g.result_offset, g.payload_offset + cap);
    EXPECT_GE(g.stride, g.result_offset + cap);
  }
}

}  // namespace
}  // namespace perfq
