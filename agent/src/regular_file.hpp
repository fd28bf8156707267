#pragma once
// Reading an operator's file (the config, the tokens file) whole, without
// trusting what the path names: a FIFO would block the agent's start, a
// directory or a device (/dev/zero) has no text to read. Opened with
// O_NONBLOCK, checked with fstat before any read, bounded in size.
//
// Role: blocking file I/O (startup and control plane only).
#include <sys/stat.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "perfq/core/result.hpp"

namespace perfq::agent {

struct RegularFile {
  std::string text;
  struct stat st {};  // as fstat saw it before the read
};

// The whole of `path` if it is a regular file of at most `max_bytes`.
// Errors (kInvalidRequest, kInternal for a failed read) start with `what`
// and the path: "tokens file /x is not a regular file (a FIFO)".
[[nodiscard]] Result<RegularFile> read_regular_file(const std::string& path, std::size_t max_bytes,
                                                    std::string_view what);

}  // namespace perfq::agent
