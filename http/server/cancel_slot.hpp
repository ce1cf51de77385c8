#pragma once

#include <functional>
#include <mutex>

namespace tollgate::http {

/// Where the cancel function of an upstream request meets the session's
/// client watch. The session arms the watch on its own thread when it
/// dispatches the request; the responder leaves the function from whatever
/// thread the call runs on. Before, registering the function posted to the
/// I/O thread and woke it once more per call.
class cancel_slot {
public:
  /// Keeps `f`, or runs it at once (on the caller's thread) when the client
  /// has already gone.
  void set(std::function<void()> f) noexcept;
  /// The client went away: runs the function left so far (once), and any
  /// left later.
  void fire() noexcept;

private:
  std::mutex mutex_;
  std::function<void()> f_;
  bool gone_ = false;
};

} // namespace tollgate::http
