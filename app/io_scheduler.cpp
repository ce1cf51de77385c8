#include "app/io_scheduler.hpp"

#include "storage/write_queue.hpp"

#include <boost/asio/defer.hpp>
#include <boost/asio/io_context.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/detail/set_thread_name.hpp>
#include <caf/detail/thread_safe_actor_clock.hpp>
#include <caf/execution_unit.hpp>
#include <caf/ref_counted.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace tollgate::app {

namespace net = boost::asio;

namespace {

/// A function run as a job of the lane (io_lane::post).
class function_job final : public caf::resumable, public caf::ref_counted {
public:
  explicit function_job(std::function<void()> fn) : fn_(std::move(fn)) {}
  subtype_t subtype() const override { return function_object; }
  resume_result resume(caf::execution_unit*, std::size_t) override {
    // An escaping exception would end the thread that drains the lane.
    try {
      fn_();
    } catch (const std::exception& e) {
      spdlog::error("a job of the io lane failed: {}", e.what());
    } catch (...) {
      spdlog::error("a job of the io lane failed");
    }
    return done;
  }
  void intrusive_ptr_add_ref_impl() override { ref(); }
  void intrusive_ptr_release_impl() override { deref(); }

private:
  std::function<void()> fn_;
};

class unit final : public caf::execution_unit {
public:
  unit(caf::actor_system* sys, io_lane::state* st) : caf::execution_unit(sys), st_(st) {}
  void exec_later(caf::resumable* job) override;

private:
  io_lane::state* st_;
};

} // namespace

/// The lane: one queue of actor jobs, drained by one thread at a time.
/// Attached, a burst starts on the I/O thread that queued it (no wake-up);
/// a burst longer than the budget goes on on the lane's own thread, so that
/// under load the I/O thread gets back to its sockets and both cores work.
/// Detached, the own thread drains everything.
struct io_lane::state : std::enable_shared_from_this<io_lane::state> {
  enum class drainer : std::uint8_t { none, io, own };

  std::mutex mutex;
  std::condition_variable own_cv;   ///< the own thread waits here for work or stop
  std::condition_variable idle_cv;  ///< detach waits here for a drain on the I/O thread
  int idle_waiters = 0;
  std::deque<caf::resumable*> queue;
  net::io_context* ioc = nullptr;  ///< attached, or null
  std::uint64_t epoch = 0;         ///< bumped by attach and detach: older handlers do nothing
  drainer scheduled = drainer::none;  ///< who drains the queue next, or now
  bool io_running = false;            ///< a drain runs on an I/O thread
  bool stopping = false;
  std::size_t max_throughput = 0;
  /// Jobs a burst runs on the I/O thread before the rest goes to the own
  /// thread: a burst cannot keep the sockets waiting long.
  static constexpr std::size_t io_budget = 64;
  /// Messages an actor handles per step on the I/O thread (CAF's default
  /// is all of its mailbox); the rest waits for its next step.
  static constexpr std::size_t io_throughput = 32;
  /// On the own thread: jobs between two commits of the write queue, and
  /// messages an actor handles per step.
  static constexpr std::size_t own_commit_jobs = 64;
  static constexpr std::size_t own_throughput = 1024;
  /// True while the gateway is busy (`actors.inline_below` requests in
  /// flight or more): the actors' bursts then go to the own thread, so that
  /// the I/O thread serves sockets while they run.
  std::function<bool()> busy;
  std::unique_ptr<unit> eu;
  std::thread own;

  void push(caf::resumable* job) {
    std::unique_lock<std::mutex> lock{mutex};
    queue.push_back(job);
    if (scheduled != drainer::none)
      return;
    if (ioc != nullptr && !(busy && busy())) {
      scheduled = drainer::io;
      post_drain(lock);
      return;
    }
    scheduled = drainer::own;
    lock.unlock();
    own_cv.notify_one();
  }

  /// Queues a drain on the io_context. `lock` is held, and released.
  void post_drain(std::unique_lock<std::mutex>& lock) {
    // From a handler of `ioc` this is a continuation: it runs after that
    // handler on the same thread, and wakes no one. Queued under the lock,
    // so that `ioc` cannot be detached (and destroyed) meanwhile.
    net::defer(*ioc, [self = shared_from_this(), ep = epoch] { self->on_io(ep); });
    lock.unlock();
  }

  void on_io(std::uint64_t ep) {
    std::unique_lock<std::mutex> lock{mutex};
    if (ep != epoch || scheduled != drainer::io)
      return;
    io_running = true;
    std::size_t n = 0;
    for (;;) {
      {
        // The burst's token and credit writes commit together at its end,
        // after the upstream requests it started have left, and while this
        // thread still drains: their `done`s run between actor jobs.
        storage::write_queue::deferral writes;
        while (!queue.empty() && n < io_budget) {
          auto* job = queue.front();
          queue.pop_front();
          lock.unlock();
          run(job, io_throughput);
          ++n;
          lock.lock();
        }
        lock.unlock();
      }
      lock.lock();
      // What the commit answered (grants, acknowledgements) goes on here.
      if (queue.empty() || n >= io_budget)
        break;
    }
    io_running = false;
    const bool wake_idle = idle_waiters > 0;
    bool wake_own = false;
    if (queue.empty()) {
      scheduled = drainer::none;
    } else if (ioc != nullptr && ep == epoch && !(busy && busy())) {
      // A long burst while the gateway is not busy: the rest runs after the
      // sockets' ready handlers, on this thread still. (Not after a detach,
      // nor after an attach that already queued the next drain.)
      post_drain(lock);
    } else {
      scheduled = drainer::own;  // a long burst under load: the rest on the own thread
      wake_own = true;
    }
    if (lock.owns_lock())
      lock.unlock();
    if (wake_own)
      own_cv.notify_one();
    if (wake_idle)
      idle_cv.notify_all();
  }

  void run(caf::resumable* job, std::size_t throughput) {
    switch (job->resume(eu.get(), throughput)) {
      case caf::resumable::resume_later:
        push(job);  // keeps its reference; a drainer is scheduled, so no new one
        break;
      case caf::resumable::done:
      case caf::resumable::awaiting_message:
        caf::intrusive_ptr_release(job);
        break;
      case caf::resumable::shutdown_execution_unit:
        break;  // never queued here
    }
  }

  void own_loop() {
    caf::detail::set_thread_name("caf.lane");
    std::deque<caf::resumable*> batch;
    std::unique_lock<std::mutex> lock{mutex};
    for (;;) {
      own_cv.wait(lock, [&] {
        return scheduled == drainer::own || (stopping && scheduled == drainer::none);
      });
      if (scheduled != drainer::own)
        return;  // stopping, nothing queued
      // One lock per batch, not per job: the I/O thread pushes meanwhile.
      while (!queue.empty()) {
        batch.swap(queue);
        lock.unlock();
        // One commit per batch, or per `own_commit_jobs` of a long one, and
        // a bounded step per actor: a busy mailbox cannot hold every write
        // (and every answer waiting for one) back.
        for (std::size_t i = 0; i < batch.size();) {
          storage::write_queue::deferral writes;
          for (std::size_t end = std::min(batch.size(), i + own_commit_jobs); i < end; ++i)
            run(batch[i], std::min(max_throughput, own_throughput));
        }
        batch.clear();
        lock.lock();
      }
      scheduled = drainer::none;
      if (idle_waiters > 0)
        idle_cv.notify_all();
    }
  }

  void wait_idle() {
    std::unique_lock<std::mutex> lock{mutex};
    ++idle_waiters;
    idle_cv.wait(lock, [&] { return scheduled == drainer::none && queue.empty(); });
    --idle_waiters;
  }

  void attach(net::io_context& io, std::function<bool()> is_busy) {
    std::unique_lock<std::mutex> lock{mutex};
    ioc = &io;
    busy = std::move(is_busy);
    ++epoch;
    // A drain queued under the old epoch does nothing now: queue its successor.
    if (!queue.empty() && (scheduled == drainer::none || scheduled == drainer::io)) {
      scheduled = drainer::io;
      post_drain(lock);
    }
  }

  void detach() {
    std::unique_lock<std::mutex> lock{mutex};
    if (ioc == nullptr)
      return;
    ++epoch;
    ioc = nullptr;
    ++idle_waiters;
    idle_cv.wait(lock, [&] { return !io_running; });
    --idle_waiters;
    // A drain queued on the io_context will not run (its threads are gone),
    // or runs as a stale epoch and does nothing: the own thread takes over.
    if (scheduled == drainer::io)
      scheduled = queue.empty() ? drainer::none : drainer::own;
    lock.unlock();
    own_cv.notify_one();
  }

  void begin(caf::actor_system& sys, std::size_t throughput) {
    {
      // A second system from the same config starts from a clean lane.
      std::lock_guard<std::mutex> lock{mutex};
      stopping = false;
      scheduled = drainer::none;
      ioc = nullptr;
      busy = nullptr;
      ++epoch;
    }
    max_throughput = throughput;
    eu = std::make_unique<unit>(&sys, this);
    own = std::thread{[this, &sys] {
      sys.thread_started();
      own_loop();
      sys.thread_terminates();
    }};
  }

  /// Runs what is still queued, then ends the own thread.
  void end() {
    detach();
    {
      std::lock_guard<std::mutex> lock{mutex};
      stopping = true;
    }
    own_cv.notify_one();
    if (own.joinable())
      own.join();
    std::deque<caf::resumable*> left;
    {
      std::lock_guard<std::mutex> lock{mutex};
      left.swap(queue);
    }
    for (auto* job : left)
      caf::scheduler::abstract_coordinator::cleanup_and_release(job);
  }
};

namespace {

void unit::exec_later(caf::resumable* job) {
  st_->push(job);
}

class coordinator final : public caf::scheduler::abstract_coordinator {
public:
  coordinator(caf::actor_system& sys, std::shared_ptr<io_lane::state> st)
    : abstract_coordinator(sys), st_(std::move(st)) {}

  void enqueue(caf::resumable* job) override { st_->push(job); }

  caf::detail::thread_safe_actor_clock& clock() noexcept override { return clock_; }

  bool detaches_utility_actors() const override { return true; }

  void start() override {
    st_->begin(system(), max_throughput());
    timer_ = std::thread{[this] {
      caf::detail::set_thread_name("caf.clock");
      system().thread_started();
      clock_.run_dispatch_loop();
      system().thread_terminates();
    }};
    abstract_coordinator::start();
  }

  void stop() override {
    stop_actors();
    st_->end();
    clock_.cancel_dispatch_loop();
    if (timer_.joinable())
      timer_.join();
  }

private:
  std::shared_ptr<io_lane::state> st_;
  caf::detail::thread_safe_actor_clock clock_;
  std::thread timer_;
};

} // namespace

std::shared_ptr<io_lane> io_lane::install(caf::actor_system_config& cfg) {
  auto st = std::make_shared<state>();
  cfg.module_factories.push_back([st](caf::actor_system& sys) -> caf::actor_system::module* {
    return new coordinator(sys, st);
  });
  return std::make_shared<io_lane>(st);
}

void io_lane::attach(net::io_context& ioc, std::function<bool()> busy) {
  st_->attach(ioc, std::move(busy));
}

void io_lane::detach() {
  st_->detach();
}

void io_lane::post(std::function<void()> fn) {
  st_->push(new function_job(std::move(fn)));  // the queue holds its one reference
}

void io_lane::wait_idle() {
  st_->wait_idle();
}

} // namespace tollgate::app
