// `dlq list|show|review|replay|verify`: the dead-letter queue, through the
// agent's admin socket (verify also without the agent: admin_request.hpp).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "admin_request.hpp"
#include "flags.hpp"
#include "output.hpp"
#include "verbs.hpp"

namespace perfq::ctl {

namespace {

using nlohmann::json;

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

struct DlqOptions {
  std::optional<uint64_t> limit;  // the agent's default (50) when not given
  bool all = false;
  std::string id;
  std::string resolution;
  uint64_t timeout_ms = kAdminTimeoutMs;
};

int run_dlq(const Globals& g, const std::string& verb, const json& request, const DlqOptions& o) {
  json out;
  if (const int rc = admin_request(g.queue, request, g.json, o.timeout_ms, out); rc != 0) {
    return rc;
  }
  if (g.json) {
    print_json(out);
  } else {
    print_human(verb, out);
  }
  // verify exits 1 when it found a problem.
  return verb == "verify" && !out["ok"].get<bool>() ? kExitError : kExitOk;
}

}  // namespace

Run dlq(Command& cmd, const Globals& g) {
  auto o = std::make_shared<DlqOptions>();
  Command list = cmd.verb("list", "the dead letters, unreviewed first, newest first");
  list.number("--limit", o->limit, 1, 100, "N", "at most N entries (1..100; default 50)");
  list.flag("--all", o->all, "also the reviewed ones (after the unreviewed)");
  Command show = cmd.verb("show", "one entry: every field, its payload and errorHistory");
  show.word("DLQ_ID", o->id, "the entry's DLQ id (dlq list shows them)");
  Command review = cmd.verb("review", "mark an entry reviewed, with what was done about it");
  review.word("DLQ_ID", o->id, "the entry's DLQ id");
  review.text("--resolution", o->resolution, "what was done about it (audited)", true);
  Command replay = cmd.verb("replay", "submit the entry's original request again, once");
  replay.word("DLQ_ID", o->id, "the entry's DLQ id");
  Command verify =
      cmd.verb("verify",
               "check every record of the journal (read directly when the agent is down); "
               "exit 1 when one is damaged");
  Command verbs[] = {list, show, review, replay, verify};
  for (Command& v : verbs) v.timeout(o->timeout_ms, "the agent's answer");
  return [&g, o, list, show, review, replay] {
    if (list.given()) {
      json req = {{"op", "dlq.list"}, {"all", o->all}};
      if (o->limit) req["limit"] = *o->limit;
      return run_dlq(g, "list", req, *o);
    }
    if (show.given()) return run_dlq(g, "show", {{"op", "dlq.show"}, {"id", o->id}}, *o);
    if (review.given()) {
      const json req = {{"op", "dlq.review"}, {"id", o->id}, {"resolution", o->resolution}};
      return run_dlq(g, "review", req, *o);
    }
    if (replay.given()) return run_dlq(g, "replay", {{"op", "dlq.replay"}, {"id", o->id}}, *o);
    return run_dlq(g, "verify", {{"op", "dlq.verify"}}, *o);
  };
}

}  // namespace perfq::ctl
