#pragma once

// Limit algorithms, pure and clock-free: every call takes `now`. The key
// actor owns one `limiter` per policy of its key and admits a request only
// if every policy admits it (see admit()).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace tollgate::core {

using time_point = std::chrono::system_clock::time_point;

enum class limit_algorithm : std::uint8_t {
  fixed_window,    ///< counter per aligned window; resets at the window's end (default)
  sliding_window,  ///< weighted previous + current window counter
  token_bucket,    ///< GCRA: steady rate limit/window with a burst
};

/// How a fixed window is cut: by its length from the epoch (minute, hour and
/// day windows then start at UTC boundaries), or by calendar month.
enum class window_kind : std::uint8_t { duration, calendar_month };

struct limit_policy {
  std::string name;  ///< e.g. "key:minute", "route:POST /api/v1/scans", "tokens:day"
  limit_algorithm algorithm = limit_algorithm::fixed_window;
  window_kind kind = window_kind::duration;
  std::int64_t limit = 0;                 ///< per window (requests or tokens)
  std::chrono::seconds window{60};        ///< ignored for calendar_month
  std::int64_t burst = 0;                 ///< token_bucket only; 0 means `limit`
};

/// What one policy says about a request of some cost.
struct limit_decision {
  std::string policy;  ///< the name of the policy that decided
  bool allowed = true;
  std::int64_t limit = 0;
  std::int64_t remaining = 0;      ///< after this request when allowed, else now
  time_point reset;                ///< when the window resets / the bucket is full again
  std::chrono::seconds window{0};  ///< the policy's window length (month: this month's)
  std::chrono::seconds retry_after{0};  ///< when rejected: >= 1 s, never earlier than admitted
};

/// Start and end of the window holding `now` (fixed windows and months).
std::pair<time_point, time_point> window_bounds(const limit_policy& p, time_point now);

/// Per-policy counter state; small and copyable so it can be persisted.
struct limiter_state {
  std::int64_t window_start = 0;  ///< epoch seconds of the current window
  std::int64_t count = 0;         ///< used in the current window
  std::int64_t previous = 0;      ///< used in the window before (sliding)
  std::int64_t tat_us = 0;        ///< GCRA theoretical arrival time, epoch microseconds
};

/// A policy and its state.
class limiter {
public:
  explicit limiter(limit_policy p, limiter_state s = {}) : policy_(std::move(p)), state_(s) {}

  /// The decision for `cost` units at `now`, without consuming.
  limit_decision check(time_point now, std::int64_t cost = 1) const;
  /// Consumes `cost` units (call only after every policy admitted).
  void consume(time_point now, std::int64_t cost = 1);
  /// Gives back units (settling a reservation that was larger than the use).
  void refund(time_point now, std::int64_t units);
  /// Used units in the current window (0 after it rolled over).
  std::int64_t used(time_point now) const;

  const limit_policy& policy() const noexcept { return policy_; }
  const limiter_state& state() const noexcept { return state_; }

private:
  limiter_state rolled(time_point now) const;
  limit_policy policy_;
  limiter_state state_;
};

/// All-or-nothing admission over several limiters: consumes from every one
/// only if every one admits. Returns the decision to report: the blocking
/// policy with the longest wait when rejected, otherwise the most
/// restrictive one (fewest remaining, then earliest reset).
limit_decision admit(std::vector<limiter*>& limiters, time_point now, std::int64_t cost = 1);

/// The decision to report among several (same rule as admit()).
limit_decision most_restrictive(const std::vector<limit_decision>& decisions);

} // namespace tollgate::core
