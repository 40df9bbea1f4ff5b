// copse::Error, the one exception type users see, and the internal assert.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace copse {

// A user-facing error: bad input, bad model, resource failure. The message
// says where ("file:line:col", the vertex, the op) and what is wrong.
class Error : public std::runtime_error {
 public:
  // Carries `what` as the message (what()).
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws Error with the fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Internal invariant violated: a bug in copse, not in the user's input.
class InternalError : public std::logic_error {
 public:
  // Carries `what` as the message.
  explicit InternalError(const std::string& what) : std::logic_error(what) {}
};

}  // namespace copse

// Throws InternalError naming the file, line and condition when `cond` is
// false; checked in every build type.
#define COPSE_ASSERT(cond)                                                          \
  do {                                                                              \
    if (!(cond))                                                                    \
      throw ::copse::InternalError(                                                 \
          ::fmt::format("internal error: {}:{}: assertion `{}` failed", __FILE__, \
                        __LINE__, #cond));                                          \
  } while (0)
