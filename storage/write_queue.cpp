#include "storage/write_queue.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <unordered_set>

#include <pthread.h>

namespace tollgate::storage {

namespace {

/// Depth of the deferrals open on this thread, and the queues written to
/// under them (flushed when the outermost ends).
thread_local int deferral_depth = 0;
thread_local std::vector<std::shared_ptr<write_queue>> deferred_queues;

/// Drops every op that a later op of the same batch overwrites (same column
/// and key): the batch leaves the same state, with fewer memtable entries.
/// Under load one batch holds a user's balance once per hold and charge;
/// only the last counts.
void keep_last_writes(std::vector<write_op>& ops) {
  if (ops.size() < 2)
    return;
  const auto same = [](const write_op& a, const write_op& b) {
    return a.family == b.family && a.key == b.key;
  };
  std::vector<bool> keep(ops.size(), true);
  bool dropped = false;
  if (ops.size() <= 64) {
    for (std::size_t i = ops.size(); i-- > 0;)
      for (std::size_t j = i + 1; j < ops.size(); ++j)
        if (keep[j] && same(ops[i], ops[j])) {
          keep[i] = false;
          dropped = true;
          break;
        }
  } else {
    std::unordered_set<std::string> seen;
    for (std::size_t i = ops.size(); i-- > 0;) {
      auto id = std::string(1, static_cast<char>(ops[i].family)) + ops[i].key;
      if (!seen.insert(std::move(id)).second) {
        keep[i] = false;
        dropped = true;
      }
    }
  }
  if (!dropped)
    return;
  std::size_t out = 0;
  for (std::size_t i = 0; i < ops.size(); ++i)
    if (keep[i]) {
      if (out != i)
        ops[out] = std::move(ops[i]);
      ++out;
    }
  ops.resize(out);
}

/// Refused batches remembered for `check`; a call's writes are recent.
constexpr std::size_t max_failed_ranges = 256;

std::atomic<bool> refusing{false};  ///< testing::refuse_writes
std::atomic<bool> holding{false};   ///< testing::hold_writes

/// testing::hold_writer
std::mutex writer_hook_mutex;
std::condition_variable writer_hook_cv;
bool writer_hold = false;
bool writer_held = false;

void writer_hook() {
  std::unique_lock<std::mutex> lock{writer_hook_mutex};
  if (!writer_hold)
    return;
  writer_held = true;
  writer_hook_cv.wait_for(lock, std::chrono::seconds{10}, [] { return !writer_hold; });
  writer_held = false;
}

} // namespace

write_queue::write_queue(apply_fn apply, observe_fn observe)
  : apply_(std::move(apply)), observe_(std::move(observe)) {}

std::shared_ptr<write_queue> write_queue::over(std::shared_ptr<store> db, observe_fn observe) {
  return std::make_shared<write_queue>(
    [db = std::move(db)](const std::vector<write_op>& ops) { return db->apply(ops); },
    std::move(observe));
}

std::uint64_t write_queue::submit(std::vector<write_op> ops, done_fn done) {
  return enqueue({std::move(ops), nullptr, std::move(done)});
}

std::uint64_t write_queue::submit_lazy(make_fn make, done_fn done) {
  return enqueue({{}, std::move(make), std::move(done)});
}

std::uint64_t write_queue::enqueue(item it) {
  std::unique_lock<std::mutex> lock{mutex_};
  const auto seq = submitted_.load(std::memory_order_relaxed) + 1;
  if (deferral_depth == 0 && pending_.empty() && !flushing_
      && !holding.load(std::memory_order_relaxed)) {
    // Alone, numbered and committed under one lock (no flush is writing):
    // the watermark stays whole, and `done` runs here, in the submitting
    // actor's step.
    submitted_.store(seq, std::memory_order_release);
    taken_ = seq;
    std::vector<write_op> ops;
    // A write that cannot be encoded is refused like one the disk refused:
    // the watermark moves on either way.
    std::string error = commit(ops, encode(it, ops));
    auto ready = settle(seq - 1, seq, error);
    lock.unlock();
    if (it.done)
      it.done(error);
    for (auto& r : ready)
      r.fn();
    return seq;
  }
  pending_.push_back(std::move(it));
  submitted_.store(seq, std::memory_order_release);
  lock.unlock();
  if (deferral_depth == 0) {
    flush();
    return seq;
  }
  if (std::find_if(deferred_queues.begin(), deferred_queues.end(),
                   [this](const auto& q) { return q.get() == this; })
      == deferred_queues.end())
    deferred_queues.push_back(shared_from_this());
  return seq;
}

std::string write_queue::commit(std::vector<write_op>& ops, std::string error) noexcept {
  // Nothing thrown here may leave: a flush runs in a deferral's destructor,
  // and the watermark must move on.
  try {
    keep_last_writes(ops);
    if (error.empty() && ops.empty())
      return {};
    // An encoder's failure refuses the batch unwritten.
    if (error.empty())
      error = refusing.load(std::memory_order_relaxed) ? "writes refused (test hook)"
                                                       : apply_(ops);
  } catch (const std::exception& e) {
    error = std::string{"the store failed: "} + e.what();
  } catch (...) {
    error = "the store failed";
  }
  try {
    if (observe_)
      observe_(ops.size(), error.empty());
  } catch (...) {
    // a metric is not worth the batch
  }
  return error;
}

std::string write_queue::encode(item& it, std::vector<write_op>& ops) {
  if (!it.make) {
    ops = std::move(it.ops);
    return {};
  }
  try {
    ops = it.make();
    return {};
  } catch (const std::exception& e) {
    return std::string{"a write could not be encoded: "} + e.what();
  } catch (...) {
    return "a write could not be encoded";
  }
}

std::vector<write_queue::waiter> write_queue::settle(std::uint64_t from, std::uint64_t upto,
                                                    const std::string& error) {
  if (!error.empty())
    record_failure(from, upto);
  committed_.store(upto, std::memory_order_release);
  return take_ready();
}

std::vector<write_queue::waiter> write_queue::take_ready() {
  const auto settled = committed_.load(std::memory_order_relaxed);
  auto it = std::partition(waiters_.begin(), waiters_.end(),
                           [settled](const waiter& w) { return w.upto > settled; });
  std::vector<waiter> ready{std::make_move_iterator(it), std::make_move_iterator(waiters_.end())};
  waiters_.erase(it, waiters_.end());
  return ready;
}

void write_queue::record_failure(std::uint64_t from, std::uint64_t upto) {
  if (!failed_.empty() && failed_.back().second == from) {
    failed_.back().second = upto;
  } else {
    if (failed_.size() == max_failed_ranges) {
      forgotten_ = failed_.front().second;
      failed_.erase(failed_.begin());
    }
    failed_.emplace_back(from, upto);
  }
  any_failed_.store(true, std::memory_order_release);
}

void write_queue::flush() {
  // One flush at a time, so batches commit in submission order; the state
  // lock is not held while RocksDB writes, so that a thread that submits,
  // checks or waits meanwhile (the I/O thread, with an answer) never
  // blocks on the disk.
  std::unique_lock<std::mutex> one_at_a_time{commit_mutex_};
  std::vector<item> items;
  std::uint64_t from = 0;
  std::uint64_t upto = 0;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    if (!pending_.empty() && !holding.load(std::memory_order_relaxed)) {
      items.swap(pending_);
      from = taken_;
      upto = submitted_.load(std::memory_order_relaxed);
      taken_ = upto;
      ++flushing_;
    }
  }
  std::string error;
  if (!items.empty()) {
    batch_.clear();
    std::string unencoded;
    try {
      for (auto& i : items) {
        // Every lazy write is made, even after one failed: making it is
        // what tells its actor that the write left the queue.
        std::vector<write_op> ops;
        auto failed = encode(i, ops);
        if (unencoded.empty())
          unencoded = std::move(failed);
        batch_.insert(batch_.end(), std::make_move_iterator(ops.begin()),
                      std::make_move_iterator(ops.end()));
      }
    } catch (...) {
      if (unencoded.empty())
        unencoded = "the batch could not be built";
    }
    // Under load, or behind a batch still with the writer: the writer
    // commits it, in the order the batches were handed over (this flush
    // still holds `commit_mutex_`).
    {
      std::lock_guard<std::mutex> lock{writer_mutex_};
      if (writer_running_
          && (writer_busy_ || !handed_.empty() || acks_outstanding_ > 0
              || (!writer_stopping_ && offload_when_ && offload_when_()))) {
        handed_.push_back({std::move(batch_), std::move(unencoded), std::move(items), from, upto});
        batch_ = {};
        writer_cv_.notify_one();
        return;
      }
    }
    // One write that cannot be encoded refuses the batch whole.
    error = commit(batch_, std::move(unencoded));
    batch_.clear();
  }
  std::vector<waiter> ready;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    if (!items.empty()) {
      ready = settle(from, upto, error);
      --flushing_;
    } else {
      ready = take_ready();
    }
  }
  // The acknowledgements may submit and flush again.
  one_at_a_time.unlock();
  for (auto& i : items)
    if (i.done)
      i.done(error);
  for (auto& w : ready)
    w.fn();
}

write_queue::~write_queue() {
  stop_offload();
}

void write_queue::offload(std::function<bool()> when, back_fn back) {
  std::lock_guard<std::mutex> one_at_a_time{offload_mutex_};
  if (!when || !back)
    return;
  std::lock_guard<std::mutex> lock{writer_mutex_};
  offload_when_ = std::move(when);
  back_ = std::move(back);
  if (writer_running_)
    return;
  writer_running_ = true;
  writer_stopping_ = false;
  writer_ = std::thread{[this] {
    pthread_setname_np(pthread_self(), "tg.writer");
    writer_loop();
  }};
}

void write_queue::stop_offload() {
  std::lock_guard<std::mutex> one_at_a_time{offload_mutex_};
  {
    std::lock_guard<std::mutex> lock{writer_mutex_};
    if (!writer_.joinable())
      return;
    writer_stopping_ = true;
  }
  writer_cv_.notify_one();
  writer_.join();
  std::lock_guard<std::mutex> lock{writer_mutex_};
  offload_when_ = nullptr;
  back_ = nullptr;
  writer_stopping_ = false;
}

void write_queue::writer_loop() {
  std::unique_lock<std::mutex> lock{writer_mutex_};
  for (;;) {
    writer_cv_.wait(lock, [this] { return !handed_.empty() || writer_stopping_; });
    if (handed_.empty()) {
      // Stopping with nothing left: from now on every flush commits itself,
      // even before the last acknowledgements handed to `back` ran (at
      // shutdown, where nothing waits on their order any more).
      writer_running_ = false;
      return;
    }
    auto h = std::move(handed_.front());
    handed_.pop_front();
    writer_busy_ = true;
    const auto back = back_;
    lock.unlock();
    struct acks {
      std::vector<item> items;
      std::vector<waiter> ready;
      std::string error;
    };
    auto a = std::make_shared<acks>();
    writer_hook();
    a->error = commit(h.batch, std::move(h.unencoded));
    {
      std::lock_guard<std::mutex> state{mutex_};
      a->ready = settle(h.from, h.upto, a->error);
      --flushing_;
    }
    a->items = std::move(h.items);
    lock.lock();
    // Until they ran, later batches still go through here: their
    // acknowledgements then come after these.
    ++acks_outstanding_;
    writer_busy_ = false;
    lock.unlock();
    // The acknowledgements run where the actors run: they touch the state
    // of the actors that wrote. The job holds the only reference, so the
    // actors' closures end there too. (`back` must not throw: an exception
    // ends the process rather than losing acknowledgements someone waits for.)
    back([self = weak_from_this(), a = std::move(a)] {
      for (auto& i : a->items)
        if (i.done)
          i.done(a->error);
      for (auto& w : a->ready)
        w.fn();
      a->items.clear();
      a->ready.clear();
      if (auto q = self.lock()) {
        std::lock_guard<std::mutex> l{q->writer_mutex_};
        --q->acks_outstanding_;
      }
    });
    lock.lock();
  }
}

write_queue::status write_queue::check(std::uint64_t from, std::uint64_t upto) const {
  if (committed_.load(std::memory_order_acquire) < upto)
    return status::pending;
  if (!any_failed_.load(std::memory_order_acquire))
    return status::committed;
  std::lock_guard<std::mutex> lock{mutex_};
  if (from < forgotten_)
    return status::failed;
  for (const auto& [lo, hi] : failed_)
    if (lo < upto && hi > from)
      return status::failed;
  return status::committed;
}

void write_queue::when_committed(std::uint64_t upto, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock{mutex_};
    if (committed_.load(std::memory_order_relaxed) < upto) {
      waiters_.push_back({upto, std::move(fn)});
      return;
    }
  }
  fn();
}

write_queue::deferral::deferral() noexcept {
  ++deferral_depth;
}

write_queue::deferral::~deferral() {
  if (--deferral_depth != 0)
    return;
  // The flushes run `done`s, which may submit again: at depth 0 those
  // commit at once and leave the list alone.
  std::vector<std::shared_ptr<write_queue>> queues;
  queues.swap(deferred_queues);
  for (auto& q : queues)
    q->flush();
  queues.clear();
  if (deferred_queues.empty())
    queues.swap(deferred_queues);  // keeps the capacity
}

namespace testing {
void refuse_writes(bool on) {
  refusing.store(on);
}

void hold_writes(bool on) {
  holding.store(on);
}

void hold_writer(bool on) {
  {
    std::lock_guard<std::mutex> lock{writer_hook_mutex};
    writer_hold = on;
  }
  writer_hook_cv.notify_all();
}

bool writer_holding() {
  std::lock_guard<std::mutex> lock{writer_hook_mutex};
  return writer_held;
}
} // namespace testing

} // namespace tollgate::storage
