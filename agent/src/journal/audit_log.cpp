#include "journal/audit_log.hpp"

#include <utility>

#include "perfq/core/assert.hpp"
#include "perfq/core/iso_time.hpp"

namespace perfq::agent {

JournalWriterOptions AuditLog::writer_options(const AuditLogOptions& options) {
  JournalWriterOptions o;
  o.lines = true;
  o.max_pending_bytes = options.max_pending_bytes;
  return o;
}

Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::string& path, AuditLogOptions options) {
  auto w = JournalWriter::open(path, nullptr, writer_options(options));
  if (!w) return w.error();
  return std::unique_ptr<AuditLog>(new AuditLog(path, std::move(*w), options));
}

AuditLog::AuditLog(std::string path, std::unique_ptr<JournalWriter> writer, AuditLogOptions options)
    : path_(std::move(path)),
      options_(options),
      writer_(std::move(writer)),
      backoff_(options.backoff) {
  PERFQ_ENFORCE(options_.queue_max >= 1);
}

bool AuditLog::push(std::string line) {
  PERFQ_ASSERT(line.find('\n') == std::string::npos);
  if (queue_.size() >= options_.queue_max) {
    ++dropped_;
    return false;
  }
  queue_.push_back(std::move(line));
  return true;
}

bool AuditLog::has_work() const noexcept {
  return !queue_.empty() || writer_->pending_records() > 0;
}

bool AuditLog::due(std::chrono::steady_clock::time_point now, bool stopping) const noexcept {
  return has_work() && (now >= retry_at_ || stopping);
}

std::vector<std::string> AuditLog::take(uint64_t now_unix_ns) {
  std::vector<std::string> lines;
  if (dropped_ == 0) {
    lines.swap(queue_);
    return lines;
  }
  lines.reserve(queue_.size() + 1);
  lines.push_back("{\"at\":\"" + iso_time(now_unix_ns) +
                  "\",\"event\":\"audit.dropped\",\"count\":" + std::to_string(dropped_) + "}");
  dropped_ = 0;
  for (std::string& line : queue_) lines.push_back(std::move(line));
  queue_.clear();
  return lines;
}

void AuditLog::put_back(std::vector<std::string> left) {
  state_ = writer_->state();
  if (left.empty()) return;
  left.insert(left.end(), std::make_move_iterator(queue_.begin()),
              std::make_move_iterator(queue_.end()));
  if (left.size() > options_.queue_max) {
    dropped_ += left.size() - options_.queue_max;
    left.resize(options_.queue_max);
  }
  queue_.swap(left);
  PERFQ_ENFORCE(queue_.size() <= options_.queue_max);
}

bool AuditLog::write(std::vector<std::string>& lines) {
  std::size_t taken = 0;
  while (taken < lines.size() && writer_->append_line(lines[taken]).ok()) ++taken;
  lines.erase(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(taken));
  if (writer_->flush().ok()) {
    backoff_.succeeded();
    if (reopen_.exchange(false, std::memory_order_relaxed)) {
      // Everything written is durable in the old file: the path anew.
      if (auto w = JournalWriter::open(path_, nullptr, writer_options(options_))) {
        writer_ = std::move(*w);
      }
    }
    return true;
  }
  backoff_.failed();
  retry_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_.wait_ms);
  return false;
}

}  // namespace perfq::agent
