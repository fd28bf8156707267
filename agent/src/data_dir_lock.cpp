#include "data_dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace perfq::agent {

namespace {

// The pid a holder wrote, as text ("unknown" when there is none yet).
std::string holder_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string pid;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) pid += buf[i];
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

Result<DataDirLock> DataDirLock::take(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return {Errc::kInternal, "cannot create data dir " + data_dir + ": " + ec.message()};
  const std::string path = data_dir + "/agent.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) return {Errc::kInternal, "cannot open " + path + ": " + std::strerror(errno)};
  DataDirLock lock(fd);
  int r = 0;
  while ((r = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (r != 0 && errno == EWOULDBLOCK) {
    return {Errc::kConflict, "data dir " + data_dir + " is in use by another agent (pid " +
                                 holder_pid(fd) + ", lock " + path +
                                 "); each agent needs a data dir of its own (--data-dir)"};
  }
  if (r != 0) return {Errc::kInternal, "cannot lock " + path + ": " + std::strerror(errno)};
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    return {Errc::kInternal, "cannot write " + path + ": " + std::strerror(errno)};
  }
  return lock;
}

DataDirLock::DataDirLock(DataDirLock&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace perfq::agent
