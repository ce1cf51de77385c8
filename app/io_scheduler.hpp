#pragma once

#include <functional>
#include <memory>

namespace boost::asio {
class io_context;
}
namespace caf {
class actor_system_config;
}

namespace tollgate::app {

/// A CAF scheduler that runs the actors, one at a time, as handlers of the
/// server's io_context while the gateway is not busy: a request, the actors
/// that decide it and the upstream call it starts share one thread, and no
/// thread wakes another on the way. While it is busy, the actors run on the
/// lane's own thread beside the I/O thread (BENCHMARKS.md, "Actors on the
/// I/O thread").
///
/// Until `attach` and after `detach`, the actors run on a thread of the
/// lane's own (start-up and shutdown, when no thread runs the io_context).
/// Detached actors keep their threads, and CAF's timers their clock thread.
///
/// Nothing on a thread of the io_context may wait for an actor: the actor
/// would wait for that thread.
class io_lane {
public:
  struct state;

  /// Makes the lane the scheduler of every actor system built from `cfg`
  /// (one at a time).
  static std::shared_ptr<io_lane> install(caf::actor_system_config& cfg);

  /// From now on, a burst of actor work starts on the thread of `ioc` that
  /// queued it, unless `busy()` says the gateway has other requests to
  /// serve. `ioc` must be running (or about to) until `detach`.
  void attach(boost::asio::io_context& ioc, std::function<bool()> busy);

  /// Back to the lane's own thread. Call it once no thread runs the
  /// io_context any more (its threads joined), and before the actor system
  /// is destroyed.
  void detach();

  /// Runs `fn` as a job of the lane, after the jobs queued before it: one
  /// at a time with the actors, as an actor's step would. Any thread.
  void post(std::function<void()> fn);

  /// Waits until no actor job is queued or running (for tests).
  void wait_idle();

  explicit io_lane(std::shared_ptr<state> st) : st_(std::move(st)) {}

private:
  std::shared_ptr<state> st_;
};

} // namespace tollgate::app
