// Shared by the libFuzzer targets: the fuzz input as a file the readers can
// open, and the rule that copse::Error is an expected outcome.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.h"

namespace copse::fuzz {

// One in-memory file (memfd) per slot and process, rewritten for every input
// and opened by the readers through /proc/self/fd/N: no disk traffic, nothing
// left behind. Slots 0 and 1 are for readers that take two files (the SICK
// toks + parents pair). Returns its path.
inline const std::string& write_input_file(const uint8_t* data, size_t size, int slot = 0) {
  struct File {
    int fd;
    std::string path;
  };
  static const std::array<File, 2> files = [] {
    std::array<File, 2> f;
    for (File& x : f) {
      x.fd = ::memfd_create("copse_fuzz", MFD_CLOEXEC);
      if (x.fd < 0) {
        std::perror("memfd_create");
        std::abort();
      }
      x.path = "/proc/self/fd/" + std::to_string(x.fd);
    }
    return f;
  }();
  if (slot < 0 || slot > 1) std::abort();
  const int fd = files[slot].fd;
  if (::ftruncate(fd, 0) != 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  return files[slot].path;
}

// Runs fn(); a copse::Error is the reader rejecting bad input, as it should.
// Anything else escapes: libFuzzer reports an uncaught exception as a crash.
template <typename Fn>
void expect_ok_or_error(Fn&& fn) {
  try {
    fn();
  } catch (const copse::Error&) {
  }
}

// A violated property of a successful read: a bug, reported as a crash.
#define COPSE_FUZZ_CHECK(cond)                                                   \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                       \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

}  // namespace copse::fuzz
