#include "actors/provider.hpp"

#include "core/llm.hpp"

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <algorithm>
#include <deque>

namespace tollgate::actors {

namespace {

constexpr int failures_until_down = 5;
constexpr auto down_for = std::chrono::seconds{10};

struct waiter {
  caf::typed_response_promise<provider_slot> rp;
  std::int64_t tokens = 0;
  std::chrono::steady_clock::time_point deadline;
  std::uint64_t ticket = 0;  ///< the caller's, for withdraw
};

struct provider_state {
  core::provider_config cfg;
  const core::clock* clock = nullptr;
  core::llm::token_bucket bucket;
  std::deque<waiter> queue;
  std::uint64_t in_flight = 0;
  int failures_in_a_row = 0;
  std::chrono::steady_clock::time_point down_until{};
  bool tick_pending = false;
  bool stopping = false;  ///< the gateway shuts down: no more slots
  std::uint64_t served = 0;
  std::uint64_t failed = 0;

  bool down(std::chrono::steady_clock::time_point now) const { return now < down_until; }
};

using provider_pointer = provider_actor::stateful_pointer<provider_state>;

std::int64_t seconds_up(std::chrono::milliseconds ms) {
  return std::max<std::int64_t>(1, (ms.count() + 999) / 1000);
}

/// How long a new caller would probably wait: the bucket's refill time, or
/// a second when only the slots are busy.
std::int64_t retry_hint(provider_state& st, std::int64_t tokens) {
  return seconds_up(std::max(st.bucket.wait_for(tokens, st.clock->now()),
                             std::chrono::milliseconds{1000}));
}

void schedule_tick(provider_pointer self, std::chrono::milliseconds after) {
  auto& st = self->state;
  if (st.tick_pending)
    return;
  st.tick_pending = true;
  self->delayed_send(self, std::max(after, std::chrono::milliseconds{1}), tick_atom::value);
}

/// Grants slots to waiters in FIFO order while slots and tokens allow;
/// refuses those whose deadline passed; schedules the next look.
void pump(provider_pointer self) {
  auto& st = self->state;
  const auto now = std::chrono::steady_clock::now();
  while (!st.queue.empty() && st.queue.front().deadline <= now) {
    st.queue.front().rp.deliver(provider_slot{false, "queue_timeout", retry_hint(st, 0)});
    st.queue.pop_front();
  }
  // Expired waiters further back are refused too (the deadline is the same
  // for every waiter, so the queue is ordered by deadline).
  while (!st.queue.empty() && st.in_flight < st.cfg.max_concurrency) {
    auto& w = st.queue.front();
    if (!st.bucket.take(w.tokens, st.clock->now()))
      break;
    ++st.in_flight;
    w.rp.deliver(provider_slot{true, {}, 0});
    st.queue.pop_front();
  }
  if (st.queue.empty())
    return;
  auto next = std::chrono::duration_cast<std::chrono::milliseconds>(st.queue.front().deadline
                                                                    - now);
  if (st.in_flight < st.cfg.max_concurrency)  // waiting for tokens, not for a slot
    next = std::min(next, st.bucket.wait_for(st.queue.front().tokens, st.clock->now()));
  schedule_tick(self, next);
}

} // namespace

provider_actor spawn_provider(caf::actor_system& sys, const core::provider_config& cfg,
                              const core::clock& clock) {
  return sys.spawn([cfg, &clock](provider_pointer self) -> provider_actor::behavior_type {
    auto& init = self->state;
    init.cfg = cfg;
    init.clock = &clock;
    init.bucket = core::llm::token_bucket{
      cfg.tokens_per_minute,
      cfg.burst_tokens > 0 ? cfg.burst_tokens : std::max<std::int64_t>(1, cfg.tokens_per_minute / 6),
      clock.now()};
    return {
      [=](acquire_atom, std::int64_t tokens, std::uint64_t ticket) -> caf::result<provider_slot> {
        auto& st = self->state;
        const auto now = std::chrono::steady_clock::now();
        if (st.stopping)
          return provider_slot{false, "down", 1};
        if (st.down(now))
          return provider_slot{
            false, "down",
            std::max<std::int64_t>(
              1, std::chrono::duration_cast<std::chrono::seconds>(st.down_until - now).count())};
        if (st.queue.empty() && st.in_flight < st.cfg.max_concurrency
            && st.bucket.take(tokens, st.clock->now())) {
          ++st.in_flight;
          return provider_slot{true, {}, 0};
        }
        if (st.queue.size() >= st.cfg.queue_size)
          return provider_slot{false, "queue_full", retry_hint(st, tokens)};
        auto rp = self->make_response_promise<provider_slot>();
        st.queue.push_back(waiter{rp, tokens, now + st.cfg.queue_timeout, ticket});
        pump(self);
        return rp;
      },
      [=](withdraw_atom, std::uint64_t ticket) {
        // The caller left while it waited: its place (and what it holds
        // elsewhere) is given back now, not at its queue timeout.
        auto& q = self->state.queue;
        for (auto it = q.begin(); it != q.end(); ++it) {
          if (it->ticket == ticket) {
            it->rp.deliver(provider_slot{false, "cancelled", 0});
            q.erase(it);
            pump(self);  // a smaller waiter behind it may fit now
            return;
          }
        }
      },
      [=](release_atom, bool upstream_ok, std::int64_t reserved, std::int64_t used) {
        auto& st = self->state;
        if (st.in_flight > 0)
          --st.in_flight;
        if (reserved > used)
          st.bucket.give(reserved - used, st.clock->now());
        if (upstream_ok) {
          ++st.served;
          st.failures_in_a_row = 0;
        } else {
          ++st.failed;
          if (++st.failures_in_a_row >= failures_until_down) {
            st.down_until = std::chrono::steady_clock::now() + down_for;
            st.failures_in_a_row = 0;
          }
        }
        pump(self);
      },
      [=](tick_atom) {
        self->state.tick_pending = false;
        pump(self);
      },
      [=](stop_atom) {
        // Every waiter gets its answer now, so its call settles what it
        // holds before the gateway flushes the store.
        auto& st = self->state;
        st.stopping = true;
        for (auto& w : st.queue)
          w.rp.deliver(provider_slot{false, "down", 1});
        st.queue.clear();
      },
      [=](status_atom) -> provider_status {
        auto& st = self->state;
        provider_status s;
        s.name = st.cfg.name;
        s.up = !st.down(std::chrono::steady_clock::now());
        s.in_flight = st.in_flight;
        s.queued = st.queue.size();
        s.max_concurrency = st.cfg.max_concurrency;
        s.queue_size = st.cfg.queue_size;
        s.tokens_available = st.bucket.unlimited()
                               ? -1
                               : static_cast<std::int64_t>(st.bucket.level(st.clock->now()));
        s.served = st.served;
        s.failed = st.failed;
        return s;
      },
    };
  });
}

} // namespace tollgate::actors
