// perfq-agent: owns one queue's segment and runs its data plane.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perfq/agent/admin.hpp"
#include "perfq/agent/agent.hpp"
#include "perfq/agent/config.hpp"
#include "perfq/agent/journal.hpp"
#include "perfq/shm/segment.hpp"

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) {
  g_stop.store(true, std::memory_order_release);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::fputs(perfq::agent::usage().c_str(), stdout);
    return 0;
  }
  perfq::agent::Config cfg;
  if (auto r = perfq::agent::parse_args(args, cfg); !r) {
    std::fprintf(stderr, "perfq-agent: %s\n%s", r.error().message.c_str(),
                 perfq::agent::usage().c_str());
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(cfg.data_dir, ec);
  if (ec) {
    std::fprintf(stderr, "perfq-agent: cannot create data dir %s: %s\n", cfg.data_dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  // The journal first: a re-attaching agent hands it the letters a
  // predecessor left SEALING.
  perfq::agent::JournalOptions jo;
  jo.data_dir = cfg.data_dir;
  jo.segment_bytes = cfg.dlq_segment_bytes;
  jo.retention_ms = cfg.dlq_retention_ms;
  auto journal = perfq::agent::Journal::open(jo);
  if (!journal) {
    std::fprintf(stderr, "perfq-agent: %s\n", journal.error().message.c_str());
    return 1;
  }
  const auto& rec = (*journal)->recovery();
  std::fprintf(stderr,
               "perfq-agent: DLQ journal %s: %llu segment(s), %llu record(s), %llu entr%s "
               "(%llu unreviewed)\n",
               (*journal)->dir().c_str(), static_cast<unsigned long long>(rec.segments),
               static_cast<unsigned long long>(rec.records),
               static_cast<unsigned long long>(rec.entries), rec.entries == 1 ? "y" : "ies",
               static_cast<unsigned long long>((*journal)->unreviewed()));
  for (const auto& p : rec.problems) {
    std::fprintf(stderr, "perfq-agent: DLQ journal %s at offset %llu (%llu bytes): %s\n",
                 p.file.c_str(), static_cast<unsigned long long>(p.offset),
                 static_cast<unsigned long long>(p.length), p.what.c_str());
  }
  auto agent = perfq::agent::Agent::open(cfg, perfq::system_clock(), journal->get());
  if (!agent) {
    std::fprintf(stderr, "perfq-agent: %s\n", agent.error().message.c_str());
    return 1;
  }
  auto seg = (*agent)->segment();
  (*journal)->attach_view(&seg->header().journal);
  (*journal)->audit(perfq::agent::audit_line(
      "agent.start",
      {{"pid", ::getpid()}, {"queue", cfg.queue}, {"reattached", (*agent)->reattached()}}));
  (*journal)->audit(perfq::agent::audit_line("config.loaded", perfq::agent::config_json(cfg)));
  perfq::agent::AdminOps ops(**journal, seg);
  auto admin = perfq::agent::AdminServer::open(
      std::string(seg->header().socket_path), cfg.admin_uids, cfg.admin_gids,
      [&ops](const nlohmann::json& req, const perfq::agent::Peer& p) { return ops.handle(req, p); },
      [&ops](const perfq::agent::Peer& p) { ops.refused(p); });
  if (!admin) {
    std::fprintf(stderr, "perfq-agent: %s\n", admin.error().message.c_str());
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  const auto& geo = seg->geometry();
  std::fprintf(stderr,
               "perfq-agent: queue %s %s segment /%s, %llu bytes (%u slots x %u B, %u clients), "
               "data dir %s, admin socket %s, idle %s\n",
               cfg.queue.c_str(), (*agent)->reattached() ? "re-attached to" : "created",
               perfq::shm::segment_name(cfg.queue).c_str(),
               static_cast<unsigned long long>(geo.total_bytes), geo.slot_count, geo.slot.stride,
               geo.max_clients, cfg.data_dir.c_str(), seg->header().socket_path,
               perfq::idle_name(cfg.idle).data());
  (*agent)->run(g_stop);
  admin->reset();
  (*journal)->attach_view(nullptr);
  (*journal)->audit(
      perfq::agent::audit_line("agent.stop", {{"pid", ::getpid()}, {"queue", cfg.queue}}));
  agent->reset();
  journal->reset();  // one last round: the stop line and anything queued
  std::fprintf(stderr, "perfq-agent: queue %s stopped\n", cfg.queue.c_str());
  return 0;
}
