// Progress bar (see progress.h).
#include "common/progress.h"

#include <unistd.h>

#include <fmt/format.h>

namespace copse {

std::string format_duration(double s) {
  if (s < 60) return fmt::format("{:.1f}s", s);
  long t = static_cast<long>(s + 0.5);
  if (t < 3600) return fmt::format("{}m{:02d}s", t / 60, static_cast<int>(t % 60));
  return fmt::format("{}h{:02d}m", t / 3600, static_cast<int>((t / 60) % 60));
}

Progress::Progress(std::string label, long total, std::string unit, std::FILE* out, bool force)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), out_(out) {
  active_ = force || (out_ && isatty(fileno(out_)));
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::update(long done, const std::string& extra) {
  if (!active_ || finished_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  double el = std::chrono::duration<double>(now - start_).count();
  double rate = el > 0 ? done / el : 0;
  double eta = rate > 0 ? (total_ - done) / rate : 0;
  const int width = 24;
  int fill = total_ > 0 ? static_cast<int>(width * double(done) / total_) : width;
  std::string bar(fill, '=');
  if (fill < width) bar += '>' + std::string(width - fill - 1, ' ');
  fmt::print(out_, "\r{} [{}] {}/{} {} {:.0f} {}/s ETA {} {}\x1b[K", label_, bar, done, total_, unit_,
             rate, unit_, format_duration(eta), extra);
  std::fflush(out_);
}

void Progress::finish() {
  if (!active_ || finished_) return;
  finished_ = true;
  fmt::print(out_, "\r\x1b[K");
  std::fflush(out_);
}

}  // namespace copse
