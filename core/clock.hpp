#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tollgate::core {

/// Wall-clock time source. Everything time-dependent takes one of these so
/// tests can move time by hand instead of sleeping.
class clock {
public:
  using time_point = std::chrono::system_clock::time_point;
  virtual ~clock() = default;
  /// Current UTC wall-clock time.
  virtual time_point now() const noexcept = 0;
};

/// The real clock.
class system_clock final : public clock {
public:
  time_point now() const noexcept override;
  /// Process-wide instance.
  static const system_clock& instance() noexcept;
};

/// A clock that only moves when told to; thread-safe.
class manual_clock final : public clock {
public:
  explicit manual_clock(time_point start = time_point{}) noexcept;
  time_point now() const noexcept override;
  void set(time_point t) noexcept;
  void advance(std::chrono::nanoseconds d) noexcept;

private:
  std::atomic<std::int64_t> ns_;
};

} // namespace tollgate::core
