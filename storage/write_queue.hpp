#pragma once

#include "storage/store.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tollgate::storage {

/// The hot path's writes (token counters, credit balances, ledger entries),
/// committed in the order they were submitted.
///
/// Outside a `deferral`, a write commits before `submit` returns. Inside
/// one (the io lane opens one around each burst of actor work), writes wait
/// for the deferral's end, where every write of the burst goes into one
/// WriteBatch: one WAL append instead of one per actor, and it happens after
/// the burst's upstream request has left rather than before.
///
/// Writes are numbered from 1. Whoever acted on a write before it was
/// committed (a call that went upstream on a reservation whose write is
/// still pending) asks `check` before it lets anything reach the client,
/// and waits with `when_committed`.
///
/// A write submitted outside a deferral while nothing is pending (the
/// threads scheduler: no deferrals at all) commits alone, and its `done`
/// runs on the submitting thread, inside the submitting actor's step.
class write_queue : public std::enable_shared_from_this<write_queue> {
public:
  using apply_fn = std::function<std::string(const std::vector<write_op>&)>;
  using done_fn = std::function<void(const std::string& error)>;
  /// Told after each commit: the records written, and whether the store
  /// took them.
  using observe_fn = std::function<void(std::size_t records, bool ok)>;

  /// `apply` commits a batch atomically and returns "" or the error.
  explicit write_queue(apply_fn apply, observe_fn observe = {});
  /// Over a store: `store::apply`.
  static std::shared_ptr<write_queue> over(std::shared_ptr<store> db, observe_fn observe = {});

  write_queue(const write_queue&) = delete;
  write_queue& operator=(const write_queue&) = delete;

  /// Queues `ops` (one write); `done(error)` runs once, after the batch
  /// holding them was committed ("" then) or refused. Returns the write's
  /// number. Any thread.
  std::uint64_t submit(std::vector<write_op> ops, done_fn done);

  /// Like `submit`, but `make` produces the ops when the batch is built
  /// (on the committing thread, in submission order): an actor whose state
  /// changes many times in one burst writes it once, as it is at the end.
  /// `make` may return nothing.
  using make_fn = std::function<std::vector<write_op>()>;
  std::uint64_t submit_lazy(make_fn make, done_fn done);

  /// Commits everything pending in one batch, then runs the writes' `done`
  /// and the waiters whose writes it covered.
  void flush();

  /// The number of the last write submitted (0: none yet).
  std::uint64_t submitted() const noexcept { return submitted_.load(std::memory_order_acquire); }

  /// Every write up to this number was committed or refused.
  std::uint64_t committed() const noexcept { return committed_.load(std::memory_order_acquire); }

  enum class status : std::uint8_t { committed, pending, failed };

  /// Where the writes numbered (from, upto] stand: failed when a batch
  /// holding any of them was refused.
  status check(std::uint64_t from, std::uint64_t upto) const;

  /// Runs `fn` once every write up to `upto` was committed or refused: at
  /// once when they are, else on the thread of the flush that settles them.
  void when_committed(std::uint64_t upto, std::function<void()> fn);

  /// While one lives on a thread, that thread's submits wait for its end
  /// (the outermost, when nested), which flushes the queues they went to.
  class deferral {
  public:
    deferral() noexcept;
    ~deferral();
    deferral(const deferral&) = delete;
    deferral& operator=(const deferral&) = delete;
  };

private:
  struct waiter {
    std::uint64_t upto;
    std::function<void()> fn;
  };

  struct item {
    std::vector<write_op> ops;
    make_fn make;  ///< set: the ops come from it at flush time
    done_fn done;
  };

  std::uint64_t enqueue(item it);
  /// The item's ops into `ops` (a lazy one's from its `make`); "" or why
  /// they could not be made. An exception stays here: a flush runs in a
  /// deferral's destructor, and the watermark must move on.
  static std::string encode(item& it, std::vector<write_op>& ops);
  /// Applies `ops` (nothing to apply: committed), less the ops a later
  /// one of them overwrites, unless `error` (an encoder's) refuses them;
  /// tells the observer either way. "" or the error; never throws.
  std::string commit(std::vector<write_op>& ops, std::string error) noexcept;
  /// Under `mutex_`: the writes (from, upto] are settled, refused when
  /// `error` is set; returns the waiters they release.
  std::vector<waiter> settle(std::uint64_t from, std::uint64_t upto, const std::string& error);
  /// Under `mutex_`: the waiters whose writes are all settled, taken out.
  std::vector<waiter> take_ready();
  void record_failure(std::uint64_t from, std::uint64_t upto);

  apply_fn apply_;
  observe_fn observe_;
  /// Held by a flush from taking its writes to committing them.
  std::mutex commit_mutex_;
  /// The rest of the state. A flush does not hold it while RocksDB writes;
  /// a write committed alone, outside a deferral (the threads scheduler),
  /// does.
  mutable std::mutex mutex_;
  std::vector<item> pending_;
  bool flushing_ = false;  ///< a flush took writes and has not committed them
  std::vector<write_op> batch_;  ///< reused by flush, under commit_mutex_
  std::vector<waiter> waiters_;
  /// Ranges (from, upto] of refused batches, oldest first; adjacent ones
  /// merge (an outage is one range). Writes up to `forgotten_` may have
  /// been refused in a range dropped to keep the list short: they count
  /// as refused.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> failed_;
  std::uint64_t forgotten_ = 0;
  std::atomic<std::uint64_t> submitted_{0};
  std::atomic<std::uint64_t> committed_{0};  ///< settled: committed or refused
  std::atomic<bool> any_failed_{false};
};

namespace testing {
/// Tests only: while on, every batch with something to write is refused
/// (as by a failing disk).
void refuse_writes(bool on);
/// Tests only: while on, writes stay queued (as behind a slow disk); the
/// first flush after it is turned off commits them. Lets a test see what
/// waits for a commit.
void hold_writes(bool on);
} // namespace testing

} // namespace tollgate::storage
