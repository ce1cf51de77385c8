#pragma once

#include <algorithm>
#include <cstddef>

namespace tollgate::http {

/// The flow control shared by the two forwarded streams (a request body on
/// its way to a backend, an answer on its way to a client): counts the
/// bytes handed on and not yet taken, pauses the producer above `high` and
/// lets it go on once the consumer is down to `low`. Not synchronised: its
/// owner calls it under its own lock.
class flow_window {
public:
  constexpr flow_window(std::size_t high, std::size_t low) noexcept : high_(high), low_(low) {}

  void add(std::size_t bytes) noexcept { pending_ += bytes; }

  /// Asked after an add: true (and paused from then on) when over `high`.
  bool pause_if_full() noexcept {
    if (pending_ <= high_)
      return false;
    paused_ = true;
    return true;
  }

  /// The consumer took `bytes`; returns how many of them were pending.
  /// `resume` tells whether a paused producer may now go on.
  std::size_t take(std::size_t bytes, bool& resume) noexcept {
    bytes = std::min(bytes, pending_);
    pending_ -= bytes;
    resume = paused_ && pending_ <= low_;
    if (resume)
      paused_ = false;
    return bytes;
  }

  /// Lets a paused producer go (the stream was cancelled); true if it was.
  bool unpause() noexcept {
    const bool was = paused_;
    paused_ = false;
    return was;
  }

  std::size_t pending() const noexcept { return pending_; }
  bool paused() const noexcept { return paused_; }

private:
  std::size_t high_;
  std::size_t low_;
  std::size_t pending_ = 0;
  bool paused_ = false;
};

} // namespace tollgate::http
