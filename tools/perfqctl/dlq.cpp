// `dlq list|show|review|replay|verify`: the dead-letter queue, through the
// agent's admin socket (verify also without the agent: admin_request.hpp).
#include <cstdio>
#include <string>
#include <vector>

#include "admin_request.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

using nlohmann::json;

// The admin request of `verb`; 0, or the exit code to leave with.
int dlq_request(const std::string& verb, const std::vector<std::string>& rest, bool as_json,
                json& req) {
  if (verb == "list") {
    const Flags f = parse_flags(rest, {"--limit"}, {"--all"});
    if (f.bad || !f.positional.empty()) return usage();
    req = {{"op", "dlq.list"}, {"all", f.has("--all")}};
    if (const std::string* l = f.get("--limit")) {
      uint64_t n = 0;
      if (!parse_u64(*l, n) || n < 1 || n > 100) {
        return fail(as_json, Errc::kInvalidRequest, "limit must be an integer from 1 to 100");
      }
      req["limit"] = n;
    }
  } else if (verb == "show" || verb == "replay") {
    const Flags f = parse_flags(rest, {}, {});
    if (f.bad || f.positional.size() != 1) return usage();
    req = {{"op", "dlq." + verb}, {"id", f.positional[0]}};
  } else if (verb == "review") {
    const Flags f = parse_flags(rest, {"--resolution"}, {});
    if (f.bad || f.positional.size() != 1 || f.get("--resolution") == nullptr) return usage();
    req = {{"op", "dlq.review"}, {"id", f.positional[0]}, {"resolution", *f.get("--resolution")}};
  } else if (verb == "verify") {
    if (!rest.empty()) return usage();
    req = {{"op", "dlq.verify"}};
  } else {
    return usage();
  }
  return 0;
}

void print_list(const json& out) {
  std::printf("%-8s %-16s %-12s %-16s %-8s %-18s %-8s %-24s %s\n", "DLQ ID", "REQUEST", "USER",
              "TYPE", "STATUS", "REASON", "ATTEMPTS", "LAST ATTEMPT", "REVIEWED");
  for (const auto& e : out["entries"]) {
    std::printf("%-8s %-16s %-12s %-16s %-8s %-18s %-8s %-24s %s\n", text(e["dlqId"]).c_str(),
                text(e["originalRequestId"]).c_str(), text(e["userId"]).c_str(),
                text(e["type"]).c_str(), text(e["status"]).c_str(),
                text(e["failureReason"]).c_str(), text(e["attemptCount"]).c_str(),
                text(e["lastAttemptAt"]).c_str(), e["reviewed"].get<bool>() ? "yes" : "no");
  }
  std::printf("%s unreviewed\n", text(out["unreviewed"]).c_str());
}

void print_entry(const json& out) {
  for (const auto& [k, v] : out.items()) {
    if (k == "errorHistory") continue;
    std::printf("%-18s %s\n", k.c_str(), text(v).c_str());
  }
  std::printf("errorHistory\n");
  for (const auto& h : out["errorHistory"]) {
    std::printf("  %s  %-18s %s\n", text(h["at"]).c_str(), text(h["code"]).c_str(),
                text(h["message"]).c_str());
  }
}

void print_report(const json& out) {
  std::printf("%s segment(s), %s record(s): %s entries, %s reviews, %s replays, %s orphan(s)\n",
              text(out["segments"]).c_str(), text(out["records"]).c_str(),
              text(out["entries"]).c_str(), text(out["reviews"]).c_str(),
              text(out["replays"]).c_str(), text(out["orphans"]).c_str());
  for (const auto& p : out["problems"]) {
    std::printf("problem: %s at offset %s (%s bytes): %s\n", text(p["file"]).c_str(),
                text(p["offset"]).c_str(), text(p["length"]).c_str(), text(p["what"]).c_str());
  }
  std::printf("%s\n", out["ok"].get<bool>() ? "ok" : "PROBLEMS FOUND");
}

void print_human(const std::string& verb, const json& out) {
  if (verb == "list") {
    print_list(out);
  } else if (verb == "show") {
    print_entry(out);
  } else if (verb == "review") {
    std::printf("reviewed DLQ entry %s\n", text(out["dlqId"]).c_str());
  } else if (verb == "replay") {
    std::printf("replayed DLQ entry %s as request %s\n", text(out["dlqId"]).c_str(),
                text(out["replayedAs"]).c_str());
  } else {
    print_report(out);
  }
}

}  // namespace

int dlq(const Invocation& in) {
  if (in.args.empty()) return usage();
  const std::string& verb = in.args[0];
  const std::vector<std::string> rest(in.args.begin() + 1, in.args.end());
  json req;
  if (const int rc = dlq_request(verb, rest, in.json, req); rc != 0) return rc;
  json out;
  if (const int rc = admin_request(in.queue, req, in.json, out); rc != 0) return rc;
  if (in.json) {
    print_json(out);
  } else {
    print_human(verb, out);
  }
  // verify exits non-zero when it found a problem.
  return verb == "verify" && !out["ok"].get<bool>() ? 1 : 0;
}

}  // namespace perfq::ctl
