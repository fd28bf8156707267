// EventFeed (agent/include/perfq/agent/event_feed.hpp): the text of the
// event ring for SSE and `perfqctl events`. The test writes the ring itself
// (as the agent would), so a reader can be lapped by an exact count.
#include "control/event_feed.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.hpp"
#include "perfq/core/iso_time.hpp"
#include "perfq/shm/layout.hpp"

namespace perfq::agent {
namespace {

using nlohmann::json;

class Feed : public ::testing::Test {
 protected:
  void SetUp() override {
    shm::CreateOptions o;
    o.slot_count = 64;
    o.slot_payload_bytes = 64;
    o.max_clients = 4;
    shm::Segment::Opened how{};
    auto s = shm::Segment::open_for_agent(q_.str(), o, how);
    ASSERT_TRUE(s.ok()) << s.error().message;
    seg_ = std::move(s).value();
    ring_ = seg_->events();
  }

  std::unique_ptr<EventFeed> feed(FeedFormat format) {
    auto r = EventReader::connect(seg_);
    EXPECT_TRUE(r.ok());
    return std::make_unique<EventFeed>(std::move(*r), format);
  }

  // A request event as the agent writes it.
  static Event request_event(EventKind kind, uint64_t request_id) {
    Event e{};
    e.at_unix_ns = 1'796'000'000'123'000'000;
    e.request_id = request_id;
    e.kind = static_cast<uint8_t>(kind);
    e.status = static_cast<uint8_t>(Status::kFailed);
    e.priority = 12;
    e.attempt = 3;
    e.error = static_cast<uint8_t>(Errc::kProcessorError);
    e.mode = static_cast<uint8_t>(Mode::kPriority);
    e.type_len = 12;
    std::memcpy(e.type, "chat.message", 12);
    e.user_len = 3;
    std::memcpy(e.user_id, "ann", 3);
    return e;
  }

  test::QueueName q_;
  std::shared_ptr<shm::Segment> seg_;
  EventRing ring_;
};

TEST_F(Feed, AnSseEventCarriesItsRingPositionNameAndFieldsButNoPayload) {
  auto f = feed(FeedFormat::kSse);
  ring_.publish(request_event(EventKind::kFailed, 0xab));
  Event q{};
  q.at_unix_ns = 1'796'000'000'123'000'000;
  q.kind = static_cast<uint8_t>(EventKind::kQueueFull);
  ring_.publish(q);
  std::string out;
  EXPECT_EQ(f->next(out, 100), 2u);
  const std::string at = iso_time(1'796'000'000'123'000'000);
  EXPECT_EQ(out,
            "id: 0\nevent: request.failed\ndata: {\"id\":0,\"event\":\"request.failed\",\"at\":\"" +
                at +
                "\",\"requestId\":\"00000000000000ab\",\"type\":\"chat.message\","
                "\"userId\":\"ann\",\"status\":\"failed\",\"priority\":12,\"mode\":"
                "\"priority\",\"attempt\":3,\"error\":\"PROCESSOR_ERROR\"}\n\n"
                "id: 1\nevent: queue.full\ndata: {\"id\":1,\"event\":\"queue.full\",\"at\":\"" +
                at + "\"}\n\n");
  out.clear();
  EXPECT_EQ(f->next(out, 100), 0u);
  EXPECT_EQ(out, "") << "nothing new, and no keep-alive asked for";
}

TEST_F(Feed, ALappedReaderIsToldHowManyItMissedBeforeItsNextEvents) {
  auto f = feed(FeedFormat::kSse);
  const uint64_t lost = 10;
  const uint64_t written = ring_.capacity() + lost;
  for (uint64_t i = 0; i < written; ++i) ring_.publish(request_event(EventKind::kSubmitted, i + 1));
  std::string out;
  EXPECT_EQ(f->next(out, ring_.capacity()), ring_.capacity());
  const std::string notice = "event: events.missed\ndata: {\"missed\":" + std::to_string(lost) +
                             "}\n\nid: " + std::to_string(lost) + "\n";
  EXPECT_EQ(out.substr(0, notice.size()), notice) << "the notice, then the oldest event still held";
  EXPECT_EQ(out.find("events.missed", notice.size()), std::string::npos) << "one notice";
  // Every event after the notice, ids consecutive up to the last written.
  std::vector<uint64_t> ids, want;
  for (std::size_t at = out.find("id: "); at != std::string::npos; at = out.find("\nid: ", at)) {
    at += out[at] == '\n' ? 5 : 4;
    ids.push_back(std::stoull(out.substr(at)));
  }
  for (uint64_t id = lost; id < written; ++id) want.push_back(id);
  EXPECT_EQ(ids, want);
  // Caught up: the next events come without a notice.
  ring_.publish(request_event(EventKind::kCompleted, 7));
  out.clear();
  EXPECT_EQ(f->next(out, 100), 1u);
  EXPECT_EQ(out.substr(0, 4 + std::to_string(written).size() + 1),
            "id: " + std::to_string(written) + "\n");
}

TEST_F(Feed, JsonLinesGiveTheNoticeThenTheIdsAfterTheLap) {
  auto f = feed(FeedFormat::kJsonLines);
  ring_.publish(request_event(EventKind::kSubmitted, 1));
  std::string out;
  EXPECT_EQ(f->next(out, 100), 1u);
  // The reader is now at 1; lap it by 5 events.
  for (uint64_t i = 0; i < ring_.capacity() + 5; ++i) {
    ring_.publish(request_event(EventKind::kSubmitted, 2));
  }
  out.clear();
  EXPECT_EQ(f->next(out, 2), 2u);
  const auto first_line = out.substr(0, out.find('\n'));
  EXPECT_EQ(first_line, "{\"event\":\"events.missed\",\"missed\":5}");
  const json next = json::parse(out.substr(
      first_line.size() + 1, out.find('\n', first_line.size() + 1) - first_line.size() - 1));
  EXPECT_EQ(next["id"], 6);
}

TEST_F(Feed, TheMissedNoticeInEachFormat) {
  EXPECT_EQ(format_missed(FeedFormat::kSse, 3), "event: events.missed\ndata: {\"missed\":3}\n\n");
  EXPECT_EQ(format_missed(FeedFormat::kJsonLines, 3),
            "{\"event\":\"events.missed\",\"missed\":3}\n");
  EXPECT_EQ(format_missed(FeedFormat::kText, 1),
            "-- missed 1 event: this reader fell a lap behind the ring\n");
  EXPECT_EQ(format_missed(FeedFormat::kText, 3),
            "-- missed 3 events: this reader fell a lap behind the ring\n");
}

TEST_F(Feed, TheTextLineNamesTimeEventRequestTypeUserAndStatus) {
  const std::string line =
      format_event(FeedFormat::kText, 41, request_event(EventKind::kFailed, 0xab));
  EXPECT_EQ(line, iso_time(1'796'000'000'123'000'000) +
                      "  request.failed         00000000000000ab  type chat.message  user ann  "
                      "status failed  attempt 3  error PROCESSOR_ERROR  #41\n");
}

TEST_F(Feed, FieldsOutOfRangeInTheSegmentAreNotTrusted) {
  Event e = request_event(EventKind::kSubmitted, 5);
  e.kind = 200;
  e.status = 99;
  e.mode = 7;
  e.error = 250;
  e.type_len = 255;  // more than the field holds
  std::memset(e.type, 'x', sizeof e.type);
  e.user_len = 2;
  e.user_id[0] = '\xff';  // not UTF-8
  e.user_id[1] = 'a';
  const json j = json::parse(format_event(FeedFormat::kJsonLines, 0, e));
  EXPECT_EQ(j["event"], "unknown");
  EXPECT_EQ(j["status"], "unknown");
  EXPECT_EQ(j["mode"], "unknown");
  EXPECT_EQ(j["error"], "UNKNOWN");
  EXPECT_EQ(j["type"], std::string(kTypeMaxBytes, 'x'));
  EXPECT_EQ(j["userId"].get<std::string>().size(), std::string("\xEF\xBF\xBD"
                                                               "a")
                                                       .size());
}

TEST_F(Feed, SeekResumesWhereTheRingStillHoldsEventsAndClampsToTheTail) {
  for (uint64_t i = 0; i < 5; ++i) ring_.publish(request_event(EventKind::kSubmitted, i + 1));
  auto r = EventReader::connect(seg_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->position(), 5u) << "a reader starts at the head";
  (*r)->seek(3);
  std::vector<Event> evs;
  EXPECT_EQ((*r)->poll(evs), 2u);
  EXPECT_EQ(evs[0].request_id, 4u);
  EXPECT_EQ((*r)->missed(), 0u);
  (*r)->seek(1'000'000);
  EXPECT_EQ((*r)->position(), 5u);
}

}  // namespace
}  // namespace perfq::agent
