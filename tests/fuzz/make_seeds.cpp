// Writes the journal fuzzer's seed corpus with the real encoders:
//   cmake --build --preset fuzz --target journal_seeds
//   build-fuzz/bin/journal_seeds tests/fuzz/corpus/journal
// Each seed is what journal_fuzz.cpp reads: a flags byte, then segment
// files separated by "\nSEG\n".
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "journal/format.hpp"

using namespace perfq::agent;
using Bytes = std::vector<std::byte>;

namespace {

Bytes letter(uint64_t id, Bytes payload) {
  JournalEntry e;
  e.dlq_id = id;
  e.letter.request_id = 0x1000 + id;
  e.letter.user_id = "alice";
  e.letter.type = "email";
  e.letter.payload = std::move(payload);
  e.letter.metadata = R"({"k":"v"})";
  e.letter.attempt_count = 2;
  e.letter.history = {{1700000000000000000ull, perfq::Errc::kInternal, "boom"}};
  auto body = encode_dead_letter(e);
  if (!body) std::abort();
  return encode_record(RecordType::kDeadLetter, *body);
}

Bytes text(const std::string& s) {
  Bytes b;
  for (const char c : s) b.push_back(static_cast<std::byte>(c));
  return b;
}

void add(Bytes& to, const Bytes& more) {
  to.insert(to.end(), more.begin(), more.end());
}

void write(const std::string& dir, const char* name, uint8_t flags,
           const std::vector<Bytes>& files) {
  Bytes out{std::byte{flags}};
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (i > 0) add(out, text("\nSEG\n"));
    add(out, files[i]);
  }
  FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
  if (f == nullptr || std::fwrite(out.data(), 1, out.size(), f) != out.size()) std::abort();
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  Bytes one = letter(1, text(R"({"to":"a@b"})"));
  add(one, encode_record(RecordType::kReview,
                         encode_review({1, "ops", 1700000000000000001ull, "fixed"}).value()));
  add(one, encode_record(RecordType::kReplay, encode_replay({1, 0x2000, 1700000000000000002ull})));
  add(one, encode_record(RecordType::kCheckpoint, encode_checkpoint({9})));
  write(dir, "clean-one-segment", 0, {one});
  // A binary payload holding a whole encoded record (issue 15).
  Bytes carrier = letter(2, letter(666, text("forged")));
  Bytes torn = letter(3, text("{}"));
  torn.resize(torn.size() / 2);
  Bytes two = letter(4, text("{}"));
  add(two, carrier);
  add(two, torn);
  write(dir, "forged-payload-torn-tail", 0, {one, two});
  write(dir, "gap-in-numbering", 1, {one, two, letter(5, text("{}"))});
  write(dir, "directory-segment", 2, {one, two, letter(5, text("{}"))});
  Bytes legacy = encode_legacy_record(RecordType::kCheckpoint, encode_checkpoint({3}));
  write(dir, "format-one-newest", 0, {one, legacy});
  return 0;
}
