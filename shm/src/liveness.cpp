#include "perfq/shm/liveness.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace perfq::shm {

namespace {

// Reads /proc/<pid>/stat: the state letter and field 22 (starttime). The
// command name (field 2) may hold spaces and parentheses, so parsing starts
// after the last ')'.
bool read_stat(pid_t pid, char& state, uint64_t& start_ticks) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;
  state = *p;
  // After the state (field 3) come fields 4..21, then starttime (22).
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  start_ticks = std::strtoull(p, nullptr, 10);
  return true;
}

}  // namespace

uint64_t process_start_ticks(pid_t pid) noexcept {
  char state = 0;
  uint64_t ticks = 0;
  return read_stat(pid, state, ticks) ? ticks : 0;
}

uint64_t self_start_ticks() noexcept {
  return process_start_ticks(::getpid());
}

bool process_alive(uint32_t pid, uint64_t start_ticks) noexcept {
  if (pid == 0) return false;
  char state = 0;
  uint64_t ticks = 0;
  if (!read_stat(static_cast<pid_t>(pid), state, ticks)) return false;
  if (state == 'Z' || state == 'X' || state == 'x') return false;
  return ticks == start_ticks;
}

uint64_t self_pid_ns() noexcept {
  // Read once: a process never changes its own PID namespace (unshare and
  // setns move only the children it makes later), and the agent asks on
  // every liveness pass for every record.
  static const uint64_t ns = [] {
    struct stat st {};
    return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : uint64_t{0};
  }();
  return ns;
}

namespace {

struct flock byte_lock(short type, uint64_t offset) noexcept {
  struct flock l {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = static_cast<off_t>(offset);
  l.l_len = 1;
  l.l_pid = 0;  // OFD locks require it
  return l;
}

}  // namespace

bool hold_lock_byte(int fd, uint64_t offset) noexcept {
  struct flock l = byte_lock(F_WRLCK, offset);
  return ::fcntl(fd, F_OFD_SETLK, &l) == 0;
}

void release_lock_byte(int fd, uint64_t offset) noexcept {
  struct flock l = byte_lock(F_UNLCK, offset);
  (void)::fcntl(fd, F_OFD_SETLK, &l);
}

LockProbe probe_lock_byte(int fd, uint64_t offset) noexcept {
  if (fd < 0) return LockProbe::kUnknown;
  struct flock l = byte_lock(F_WRLCK, offset);
  if (::fcntl(fd, F_OFD_GETLK, &l) != 0) return LockProbe::kUnknown;
  return l.l_type == F_UNLCK ? LockProbe::kFree : LockProbe::kHeld;
}

}  // namespace perfq::shm
