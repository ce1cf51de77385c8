#pragma once

#include "storage/store.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tollgate::storage {

/// The hot path's writes (token counters, credit balances, ledger entries),
/// committed in the order they were submitted.
///
/// Outside a `deferral`, a write commits before `submit` returns (unless a
/// batch is with the writer thread, below: it then queues behind). Inside
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

  ~write_queue();

  write_queue(const write_queue&) = delete;
  write_queue& operator=(const write_queue&) = delete;

  /// Runs a function where the actors run (the io lane), later.
  using back_fn = std::function<void(std::function<void()>)>;

  /// From now on, a flush for which `when()` says so (the gateway: under
  /// load) still builds its batch on the flushing thread, where the lazy
  /// writes read their actors' state, but hands the RocksDB write to a
  /// writer thread of the queue's own. That thread then moves the watermark
  /// and gives the writes' `done` and the released waiters to `back`, so
  /// that they run where the actors run, as they would after a flush there.
  /// Batches still commit in submission order, and their acknowledgements
  /// run in that order: while a batch is with the writer, or its
  /// acknowledgements have not run yet, every later batch goes there too.
  /// `back` must not throw, and must work until `stop_offload` returned.
  /// Null arguments change nothing.
  void offload(std::function<bool()> when, back_fn back);

  /// Waits until the writer committed what it holds (its acknowledgements
  /// went to `back`, and may not have run yet), then ends it: every flush
  /// commits on its own thread again. Also done by the destructor.
  void stop_offload();

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
  /// once when they are, else on the thread of the flush that settles them,
  /// or through `back` when the writer thread settled them.
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

  /// A batch built by a flush, for the writer thread.
  struct handed {
    std::vector<write_op> batch;
    std::string unencoded;  ///< an encoder's error: refuses the batch
    std::vector<item> items;
    std::uint64_t from = 0;
    std::uint64_t upto = 0;
  };

  void writer_loop();

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
  /// Batches taken by a flush and not committed yet (with the writer, more
  /// than one).
  int flushing_ = 0;
  /// The last write number a flush took: the next batch starts after it.
  std::uint64_t taken_ = 0;
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

  /// Held by offload and stop_offload.
  std::mutex offload_mutex_;
  /// The writer thread and its queue, under `writer_mutex_`.
  std::mutex writer_mutex_;
  std::condition_variable writer_cv_;
  std::deque<handed> handed_;
  bool writer_running_ = false;  ///< takes batches (until it stopped)
  bool writer_busy_ = false;     ///< a batch is being written
  int acks_outstanding_ = 0;     ///< given to `back`, not run yet
  bool writer_stopping_ = false;
  std::function<bool()> offload_when_;  ///< set while the writer runs
  back_fn back_;
  std::thread writer_;
};

namespace testing {
/// Tests only: while on, every batch with something to write is refused
/// (as by a failing disk).
void refuse_writes(bool on);
/// Tests only: while on, writes stay queued (as behind a slow disk); the
/// first flush after it is turned off commits them. Lets a test see what
/// waits for a commit.
void hold_writes(bool on);
/// Tests only: while on, the writer thread holds the batch it took (for up
/// to 10 s) before committing it, as behind a slow disk.
void hold_writer(bool on);
/// Tests only: whether the writer thread is holding a batch now.
bool writer_holding();
} // namespace testing

} // namespace tollgate::storage
