#include "storage/write_queue.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace tollgate;
using storage::write_op;
using storage::write_queue;
using status = write_queue::status;

namespace {

write_op put(std::string key, std::string value) {
  return {static_cast<std::uint8_t>(storage::column::usage), std::move(key), std::move(value),
          false};
}

/// A queue over a recording "store": each batch it was given, and what it
/// answers.
struct recorder {
  std::vector<std::vector<std::string>> batches;  ///< "key=value" per op
  std::string answer;
  std::shared_ptr<write_queue> queue = std::make_shared<write_queue>(
    [this](const std::vector<write_op>& ops) {
      std::vector<std::string> b;
      for (const auto& op : ops)
        b.push_back(op.key + "=" + op.value);
      batches.push_back(std::move(b));
      return answer;
    });
};

} // namespace

TEST_CASE("write queue: outside a deferral a write commits before submit returns",
          "[storage][write_queue]") {
  recorder r;
  std::string seen = "not yet";
  const auto seq = r.queue->submit({put("a", "1")}, [&](const std::string& e) { seen = e; });
  CHECK(seq == 1);
  CHECK(seen.empty());
  REQUIRE(r.batches.size() == 1);
  CHECK(r.batches[0] == std::vector<std::string>{"a=1"});
  CHECK(r.queue->check(0, seq) == status::committed);
}

TEST_CASE("write queue: a deferral's writes are one batch at its end, in order",
          "[storage][write_queue]") {
  recorder r;
  std::vector<std::string> done;
  std::uint64_t last = 0;
  {
    write_queue::deferral outer;
    {
      write_queue::deferral inner;
      r.queue->submit({put("a", "1"), put("b", "1"), put("c", "1")}, [&](const std::string&) {
        done.push_back("first");
      });
    }
    // The inner end flushes nothing: only the outermost does.
    CHECK(r.batches.empty());
    last = r.queue->submit({put("d", "2")}, [&](const std::string&) { done.push_back("second"); });
    CHECK(last == 2);
    CHECK(r.queue->check(0, last) == status::pending);
    CHECK(done.empty());
  }
  REQUIRE(r.batches.size() == 1);
  CHECK(r.batches[0] == std::vector<std::string>{"a=1", "b=1", "c=1", "d=2"});
  CHECK(done == std::vector<std::string>{"first", "second"});
  CHECK(r.queue->check(0, last) == status::committed);
}

TEST_CASE("write queue: a lazy write is encoded when its batch is built",
          "[storage][write_queue]") {
  recorder r;
  int counter = 1;
  int made = 0;
  {
    write_queue::deferral burst;
    r.queue->submit({put("before", "x")}, [](const std::string&) {});
    r.queue->submit_lazy(
      [&]() -> std::vector<write_op> {
        ++made;
        return {put("counter", std::to_string(counter))};
      },
      [](const std::string&) {});
    r.queue->submit({put("after", "y")}, [](const std::string&) {});
    counter = 7;  // changed after the submit: the batch holds the last value
    CHECK(made == 0);
  }
  CHECK(made == 1);
  REQUIRE(r.batches.size() == 1);
  CHECK(r.batches[0] == std::vector<std::string>{"before=x", "counter=7", "after=y"});
}

TEST_CASE("write queue: a refused batch fails the writes it held, and only those",
          "[storage][write_queue]") {
  recorder r;
  r.queue->submit({put("a", "1")}, [](const std::string&) {});  // 1: committed
  std::string error;
  r.answer = "disk full";
  {
    write_queue::deferral burst;
    r.queue->submit({put("b", "1")}, [&](const std::string& e) { error = e; });  // 2
    r.queue->submit({put("c", "1")}, [](const std::string&) {});                // 3
  }
  CHECK(error == "disk full");
  r.answer.clear();
  r.queue->submit({put("d", "1")}, [](const std::string&) {});  // 4: committed
  CHECK(r.queue->check(0, 1) == status::committed);
  CHECK(r.queue->check(0, 2) == status::failed);
  CHECK(r.queue->check(1, 3) == status::failed);
  CHECK(r.queue->check(2, 3) == status::failed);
  CHECK(r.queue->check(3, 4) == status::committed);
}

TEST_CASE("write queue: waiters run once their writes are settled", "[storage][write_queue]") {
  recorder r;
  int ran = 0;
  r.queue->when_committed(0, [&] { ++ran; });  // nothing to wait for: at once
  CHECK(ran == 1);
  {
    write_queue::deferral burst;
    const auto seq = r.queue->submit({put("a", "1")}, [](const std::string&) {});
    r.queue->when_committed(seq, [&] {
      ++ran;
      CHECK(r.queue->check(0, seq) == status::committed);
    });
    CHECK(ran == 1);
  }
  CHECK(ran == 2);
}

TEST_CASE("write queue: the test hook refuses every batch while on", "[storage][write_queue]") {
  recorder r;
  storage::testing::refuse_writes(true);
  std::string error;
  const auto seq = r.queue->submit({put("a", "1")}, [&](const std::string& e) { error = e; });
  storage::testing::refuse_writes(false);
  CHECK_FALSE(error.empty());
  CHECK(r.batches.empty());
  CHECK(r.queue->check(0, seq) == status::failed);
}

TEST_CASE("write queue: the hold hook keeps writes queued until a flush after it ends",
          "[storage][write_queue]") {
  recorder r;
  storage::testing::hold_writes(true);
  int done = 0;
  int waited = 0;
  const auto seq = r.queue->submit({put("a", "1")}, [&](const std::string&) { ++done; });
  r.queue->when_committed(seq, [&] { ++waited; });
  r.queue->flush();  // held: nothing is applied
  CHECK(done == 0);
  CHECK(waited == 0);
  CHECK(r.batches.empty());
  CHECK(r.queue->check(0, seq) == status::pending);
  storage::testing::hold_writes(false);
  r.queue->submit({put("b", "2")}, [&](const std::string&) { ++done; });
  // That write commits both, in order, in one batch.
  REQUIRE(r.batches.size() == 1);
  CHECK(r.batches[0].size() == 2);
  CHECK(done == 2);
  CHECK(waited == 1);
  CHECK(r.queue->check(0, seq) == status::committed);
}

TEST_CASE("write queue: a lazy write that throws refuses its batch, and the queue goes on",
          "[storage][write_queue]") {
  recorder r;
  std::vector<std::string> errors;
  std::uint64_t seq = 0;
  int made_after = 0;
  {
    write_queue::deferral burst;
    r.queue->submit({put("a", "1")}, [&](const std::string& e) { errors.push_back(e); });
    seq = r.queue->submit_lazy([]() -> std::vector<write_op> { throw std::runtime_error{"bad"}; },
                               [&](const std::string& e) { errors.push_back(e); });
    r.queue->submit_lazy(
      [&] {
        ++made_after;
        return std::vector<write_op>{put("b", "2")};
      },
      [&](const std::string& e) { errors.push_back(e); });
  }  // the flush in this destructor must not throw
  CHECK(made_after == 1);
  CHECK(r.batches.empty());
  REQUIRE(errors.size() == 3);
  for (const auto& e : errors)
    CHECK(e.find("could not be encoded: bad") != std::string::npos);
  CHECK(r.queue->check(0, seq) == status::failed);
  CHECK(r.queue->committed() == r.queue->submitted());
  // Alone, outside a deferral, the same: refused, and the next commits.
  std::string error;
  r.queue->submit_lazy([]() -> std::vector<write_op> { throw std::runtime_error{"bad"}; },
                       [&](const std::string& e) { error = e; });
  CHECK_FALSE(error.empty());
  const auto next = r.queue->submit({put("c", "3")}, [&](const std::string& e) { error = e; });
  CHECK(error.empty());
  CHECK(r.queue->check(next - 1, next) == status::committed);
}

TEST_CASE("write queue: a batch writes each key once, with its last value",
          "[storage][write_queue]") {
  recorder r;
  {
    write_queue::deferral burst;
    r.queue->submit({put("balance", "10"), put("entry/1", "x")}, [](const std::string&) {});
    r.queue->submit({put("balance", "7")}, [](const std::string&) {});
    r.queue->submit({put("balance", "4"), put("entry/2", "y")}, [](const std::string&) {});
  }
  REQUIRE(r.batches.size() == 1);
  CHECK(r.batches[0] == std::vector<std::string>{"entry/1=x", "balance=4", "entry/2=y"});
  // Another column is another key.
  {
    write_queue::deferral burst;
    r.queue->submit({put("k", "1")}, [](const std::string&) {});
    write_op other = put("k", "2");
    other.family = static_cast<std::uint8_t>(storage::column::ledger);
    r.queue->submit({other}, [](const std::string&) {});
  }
  REQUIRE(r.batches.size() == 2);
  CHECK(r.batches[1].size() == 2);
}

TEST_CASE("write queue: the observer hears of every commit with its record count",
          "[storage][write_queue]") {
  std::vector<std::pair<std::size_t, bool>> seen;
  std::string answer;
  write_queue q{[&](const std::vector<write_op>&) { return answer; },
                [&](std::size_t records, bool ok) { seen.emplace_back(records, ok); }};
  q.submit({put("a", "1"), put("a", "2"), put("b", "1")}, [](const std::string&) {});
  answer = "disk full";
  q.submit({put("c", "1")}, [](const std::string&) {});
  q.submit({}, [](const std::string&) {});  // nothing to write: no commit
  answer.clear();
  // A write that cannot be encoded is a refused commit too.
  q.submit_lazy([]() -> std::vector<write_op> { throw std::runtime_error{"bad"}; },
                [](const std::string&) {});
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == std::make_pair(std::size_t{2}, true));
  CHECK(seen[1] == std::make_pair(std::size_t{1}, false));
  CHECK(seen[2] == std::make_pair(std::size_t{0}, false));
}

TEST_CASE("write queue: a store that throws refuses the batch, and the queue goes on",
          "[storage][write_queue]") {
  bool fail = true;
  auto queue = std::make_shared<write_queue>([&](const std::vector<write_op>&) -> std::string {
    if (fail)
      throw std::runtime_error{"no space"};
    return {};
  });
  auto& q = *queue;
  std::string error;
  std::uint64_t seq = 0;
  {
    write_queue::deferral burst;
    seq = q.submit({put("a", "1")}, [&](const std::string& e) { error = e; });
  }  // the flush in this destructor must not throw
  CHECK(error.find("no space") != std::string::npos);
  CHECK(q.check(0, seq) == status::failed);
  fail = false;
  const auto next = q.submit({put("b", "1")}, [&](const std::string& e) { error = e; });
  CHECK(error.empty());
  CHECK(q.check(next - 1, next) == status::committed);
}

TEST_CASE("write queue: an outage longer than the remembered ranges still reads as refused",
          "[storage][write_queue]") {
  recorder r;
  r.answer = "disk full";
  std::uint64_t first = 0;
  // Separate refused batches with a committed one between each pair, so
  // that they do not merge: more than the queue keeps.
  for (int i = 0; i < 300; ++i) {
    r.answer = "disk full";
    const auto seq = r.queue->submit({put("a", "1")}, [](const std::string&) {});
    if (i == 0)
      first = seq;
    r.answer.clear();
    r.queue->submit({put("b", "1")}, [](const std::string&) {});
  }
  CHECK(r.queue->check(first - 1, first) == status::failed);
  CHECK(r.queue->check(r.queue->submitted() - 1, r.queue->submitted()) == status::committed);
}

TEST_CASE("write queue: a call's range from the commit watermark sees a shared write refused",
          "[storage][write_queue]") {
  // Two grants ride on one queued write (an actor writes once per burst):
  // the second call's range starts at the watermark, not at the last
  // submitted number, so the refusal of that write is its too.
  recorder r;
  r.answer = "disk full";
  std::uint64_t from_second = 0;
  std::uint64_t upto_second = 0;
  {
    write_queue::deferral burst;
    r.queue->submit({put("counters", "1")}, [](const std::string&) {});
    from_second = r.queue->committed();
    upto_second = r.queue->submitted();  // nothing new submitted for it
  }
  CHECK(r.queue->check(from_second, upto_second) == status::failed);
}

namespace {

/// A store whose writes can be held at a gate, from another thread: what
/// each batch held, and the thread that wrote it.
struct gated_store {
  std::mutex mutex;
  std::condition_variable cv;
  bool open = true;
  std::string answer;
  std::vector<std::vector<std::string>> batches;
  std::vector<std::thread::id> writers;

  write_queue::apply_fn apply() {
    return [this](const std::vector<write_op>& ops) {
      std::unique_lock<std::mutex> lock{mutex};
      // Bounded: a batch written on the wrong thread fails the test, not hangs it.
      if (!cv.wait_for(lock, std::chrono::seconds{10}, [this] { return open; }))
        return std::string{"the gate stayed shut"};
      std::vector<std::string> b;
      for (const auto& op : ops)
        b.push_back(op.key + "=" + op.value);
      batches.push_back(std::move(b));
      writers.push_back(std::this_thread::get_id());
      return answer;
    };
  }
  void set_open(bool o) {
    {
      std::lock_guard<std::mutex> lock{mutex};
      open = o;
    }
    cv.notify_all();
  }
};

/// Where the writer's acknowledgements go (the lane, in the gateway): kept
/// until the test runs them.
struct backlog {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::function<void()>> fns;

  write_queue::back_fn back() {
    return [this](std::function<void()> fn) {
      {
        std::lock_guard<std::mutex> lock{mutex};
        fns.push_back(std::move(fn));
      }
      cv.notify_all();
    };
  }
  /// Waits (bounded) until `n` acknowledgements came; true if they did.
  bool wait_for(std::size_t n) {
    std::unique_lock<std::mutex> lock{mutex};
    return cv.wait_for(lock, std::chrono::seconds{10}, [&] { return fns.size() >= n; });
  }
  void run_all() {
    std::vector<std::function<void()>> now;
    {
      std::lock_guard<std::mutex> lock{mutex};
      now.swap(fns);
    }
    for (auto& f : now)
      f();
  }
};

} // namespace

TEST_CASE("write queue: under load a writer thread commits the batches, in order, and "
          "their acknowledgements run where the actors run",
          "[storage][write_queue]") {
  gated_store db;
  backlog lane;
  auto q = std::make_shared<write_queue>(db.apply());
  std::atomic<bool> loaded{true};
  q->offload([&loaded] { return loaded.load(); }, lane.back());
  std::vector<std::string> done;

  db.set_open(false);  // the first batch stays in the writer's hands
  {
    write_queue::deferral burst;
    q->submit({put("a", "1")}, [&](const std::string& e) { done.push_back("a:" + e); });
  }
  // The flush returned without writing: the write is pending, nothing acknowledged.
  CHECK(q->submitted() == 1);
  CHECK(q->check(0, 1) == status::pending);
  bool waited = false;
  q->when_committed(1, [&] { waited = true; });

  // Load gone, but a batch is still with the writer: the next one queues
  // behind it instead of overtaking it on this thread.
  loaded = false;
  {
    write_queue::deferral burst;
    q->submit({put("b", "2")}, [&](const std::string& e) { done.push_back("b:" + e); });
  }
  CHECK(q->check(1, 2) == status::pending);

  db.set_open(true);
  REQUIRE(lane.wait_for(2));
  CHECK(q->committed() == 2);
  CHECK(q->check(0, 2) == status::committed);
  {
    std::lock_guard<std::mutex> lock{db.mutex};
    REQUIRE(db.batches.size() == 2);
    CHECK(db.batches[0] == std::vector<std::string>{"a=1"});
    CHECK(db.batches[1] == std::vector<std::string>{"b=2"});
    CHECK(db.writers[0] != std::this_thread::get_id());
    CHECK(db.writers[1] == db.writers[0]);
  }
  // Committed, but acknowledged only where `back` runs them, in order.
  CHECK(done.empty());
  CHECK_FALSE(waited);
  // The writer is idle, but its acknowledgements have not run: a batch now
  // still goes through it, so that its own come after them.
  {
    write_queue::deferral burst;
    q->submit({put("x", "9")}, [&](const std::string& e) { done.push_back("x:" + e); });
  }
  REQUIRE(lane.wait_for(3));
  CHECK(done.empty());
  lane.run_all();
  CHECK(done == std::vector<std::string>{"a:", "b:", "x:"});
  CHECK(waited);

  // Idle writer, no load: the flush writes on its own thread again.
  {
    write_queue::deferral burst;
    q->submit({put("c", "3")}, [&](const std::string& e) { done.push_back("c:" + e); });
  }
  CHECK(done.back() == "c:");
  {
    std::lock_guard<std::mutex> lock{db.mutex};
    REQUIRE(db.writers.size() == 4);
    CHECK(db.writers[2] == db.writers[0]);
    CHECK(db.writers[3] == std::this_thread::get_id());
  }
  q->stop_offload();
}

TEST_CASE("write queue: the writer refuses what the store refused, and stopping it commits "
          "what it holds",
          "[storage][write_queue]") {
  gated_store db;
  backlog lane;
  auto q = std::make_shared<write_queue>(db.apply());
  q->offload([] { return true; }, lane.back());
  db.answer = "disk full";
  std::vector<std::string> done;
  {
    write_queue::deferral burst;
    q->submit({put("a", "1")}, [&](const std::string& e) { done.push_back(e); });
  }
  REQUIRE(lane.wait_for(1));
  CHECK(q->check(0, 1) == status::failed);
  lane.run_all();
  CHECK(done == std::vector<std::string>{"disk full"});

  db.answer.clear();
  db.set_open(false);
  {
    write_queue::deferral burst;
    q->submit({put("b", "2")}, [&](const std::string& e) { done.push_back("b:" + e); });
  }
  CHECK(q->check(1, 2) == status::pending);
  db.set_open(true);
  q->stop_offload();  // returns once the writer wrote it
  CHECK(q->check(1, 2) == status::committed);
  REQUIRE(lane.wait_for(1));
  lane.run_all();
  CHECK(done.back() == "b:");
  // Stopped: a flush writes on its own thread, whatever the load.
  {
    write_queue::deferral burst;
    q->submit({put("c", "3")}, [&](const std::string& e) { done.push_back("c:" + e); });
  }
  CHECK(done.back() == "c:");
  std::lock_guard<std::mutex> lock{db.mutex};
  CHECK(db.writers.back() == std::this_thread::get_id());
}
