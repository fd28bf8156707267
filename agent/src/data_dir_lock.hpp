#pragma once
// The data dir's lock (issue 14): `<data_dir>/agent.lock`, held with flock
// for the agent's whole life and taken before anything else in the data dir
// is opened (the journal, the audit log, agent.sock). The segment's own lock
// keeps one agent per queue; this one keeps one agent per data dir, whatever
// its queue, so a second agent can never cut a group commit in flight as a
// torn tail or take over the admin socket. The file holds the holder's pid
// (a note for the message; the flock is the lock), and stays when the agent
// stops: the kernel drops the lock with the descriptor, a crash included.
#include <string>

#include "perfq/core/result.hpp"

namespace perfq::agent {

class DataDirLock {
 public:
  // Creates the data dir if needed and takes its lock without waiting.
  // kConflict naming the holder's pid when another agent holds it.
  [[nodiscard]] static Result<DataDirLock> take(const std::string& data_dir);
  DataDirLock(DataDirLock&& other) noexcept;
  DataDirLock& operator=(DataDirLock&&) = delete;
  DataDirLock(const DataDirLock&) = delete;
  ~DataDirLock();  // releases the lock

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace perfq::agent
