#include "core/clock.hpp"

namespace tollgate::core {

clock::time_point system_clock::now() const noexcept {
  return std::chrono::system_clock::now();
}

const system_clock& system_clock::instance() noexcept {
  static const system_clock instance;
  return instance;
}

namespace {
std::int64_t to_ns(clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
} // namespace

manual_clock::manual_clock(time_point start) noexcept : ns_(to_ns(start)) {}

clock::time_point manual_clock::now() const noexcept {
  return time_point{std::chrono::duration_cast<time_point::duration>(
    std::chrono::nanoseconds{ns_.load(std::memory_order_acquire)})};
}

void manual_clock::set(time_point t) noexcept {
  ns_.store(to_ns(t), std::memory_order_release);
}

void manual_clock::advance(std::chrono::nanoseconds d) noexcept {
  ns_.fetch_add(d.count(), std::memory_order_acq_rel);
}

} // namespace tollgate::core
