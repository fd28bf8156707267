#include "regular_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "perfq/shm/fd_guard.hpp"

namespace perfq::agent {

namespace {

// read() retries on EINTR.
constexpr int kMaxEintr = 1024;

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

Result<RegularFile> read_regular_file(const std::string& path, std::size_t max_bytes,
                                      std::string_view what) {
  const std::string name = std::string(what) + " " + path;
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
  shm::FdGuard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) return {Errc::kInvalidRequest, name + " does not exist"};
    return {Errc::kInvalidRequest, name + ": " + std::strerror(err)};
  }
  RegularFile f;
  if (::fstat(fd.get(), &f.st) != 0) {
    const int err = errno;
    return {Errc::kInternal, name + ": fstat: " + std::strerror(err)};
  }
  if (!S_ISREG(f.st.st_mode)) {
    return {Errc::kInvalidRequest, name + " is not a regular file (" + kind_of(f.st.st_mode) + ")"};
  }
  if (static_cast<uint64_t>(f.st.st_size) > max_bytes) {
    return {Errc::kInvalidRequest,
            name + " is larger than " + std::to_string(max_bytes) + " bytes"};
  }
  f.text.resize(static_cast<std::size_t>(f.st.st_size));
  std::size_t got = 0;
  for (int eintr = 0; got < f.text.size();) {
    const ssize_t r = ::read(fd.get(), f.text.data() + got, f.text.size() - got);
    if (r < 0) {
      const int err = errno;
      if (err == EINTR && ++eintr < kMaxEintr) continue;
      return {Errc::kInternal, name + ": read: " + std::strerror(err)};
    }
    if (r == 0) break;  // shrank under us: what is there
    got += static_cast<std::size_t>(r);
  }
  f.text.resize(got);
  return f;
}

}  // namespace perfq::agent
