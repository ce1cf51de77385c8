#include "core/rate_limit.hpp"

#include "core/time_format.hpp"

#include <algorithm>

namespace tollgate::core {

namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::seconds;

std::int64_t epoch_seconds(time_point t) {
  return duration_cast<seconds>(t.time_since_epoch()).count();
}

std::int64_t epoch_us(time_point t) {
  return duration_cast<microseconds>(t.time_since_epoch()).count();
}

time_point from_seconds(std::int64_t s) {
  return time_point{seconds{s}};
}

time_point from_us(std::int64_t us) {
  return time_point{duration_cast<time_point::duration>(microseconds{us})};
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

/// a * b / c rounded down, without overflowing int64 for counts times
/// microsecond spans; long double's 64-bit mantissa keeps the error far
/// below one unit for the counts a limit can hold.
std::int64_t mul_div(std::int64_t a, std::int64_t b, std::int64_t c) {
  const long double r = static_cast<long double>(a) * static_cast<long double>(b)
                        / static_cast<long double>(c);
  return static_cast<std::int64_t>(r);
}

std::chrono::seconds ceil_seconds(std::int64_t us) {
  return seconds{(us + 999'999) / 1'000'000};
}

} // namespace

std::pair<time_point, time_point> window_bounds(const limit_policy& p, time_point now) {
  const auto s = epoch_seconds(now);
  if (p.kind == window_kind::calendar_month) {
    std::int64_t y = 0;
    unsigned m = 0;
    unsigned day = 0;
    civil_from_days(floor_div(s, 86400), y, m, day);
    const auto start = days_from_civil(y, m, 1) * 86400;
    const auto end = (m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1))
                     * 86400;
    return {from_seconds(start), from_seconds(end)};
  }
  const auto w = std::max<std::int64_t>(1, p.window.count());
  const auto start = floor_div(s, w) * w;
  return {from_seconds(start), from_seconds(start + w)};
}

limiter_state limiter::rolled(time_point now) const {
  limiter_state s = state_;
  if (policy_.algorithm == limit_algorithm::token_bucket)
    return s;
  const auto [start, end] = window_bounds(policy_, now);
  const auto start_s = epoch_seconds(start);
  if (s.window_start == start_s)
    return s;
  // The previous window is the one that ended where this one starts.
  const auto [prev_start, prev_end] = window_bounds(policy_, start - seconds{1});
  s.previous = s.window_start == epoch_seconds(prev_start) ? s.count : 0;
  s.count = 0;
  s.window_start = start_s;
  return s;
}

std::int64_t limiter::used(time_point now) const {
  return rolled(now).count;
}

limit_decision limiter::check(time_point now, std::int64_t cost) const {
  limit_decision d;
  d.policy = policy_.name;
  d.limit = policy_.limit;
  const auto& p = policy_;
  if (p.algorithm == limit_algorithm::token_bucket) {
    // GCRA. T: time per unit; tau: how far ahead of schedule a burst may run.
    const auto limit = std::max<std::int64_t>(1, p.limit);
    const std::int64_t window_us = p.window.count() * 1'000'000;
    const std::int64_t t_us = std::max<std::int64_t>(1, window_us / limit);
    const std::int64_t burst = p.burst > 0 ? p.burst : limit;
    d.limit = burst;
    d.window = p.window;
    const std::int64_t capacity_us = burst * t_us;
    const std::int64_t now_us = epoch_us(now);
    const std::int64_t tat = std::max(state_.tat_us, now_us);
    const std::int64_t new_tat = tat + cost * t_us;
    if (new_tat - now_us <= capacity_us) {
      d.allowed = true;
      d.remaining = (capacity_us - (new_tat - now_us)) / t_us;
      d.reset = from_us(new_tat);
    } else {
      d.allowed = false;
      d.remaining = std::max<std::int64_t>(0, (capacity_us - (tat - now_us)) / t_us);
      d.reset = from_us(tat);
      d.retry_after = std::max(seconds{1}, ceil_seconds(new_tat - now_us - capacity_us));
      if (cost > burst)  // can never pass: say when the bucket is full
        d.retry_after = std::max(seconds{1}, ceil_seconds(tat - now_us));
    }
    return d;
  }
  const auto s = rolled(now);
  const auto [start, end] = window_bounds(p, now);
  d.reset = end;
  d.window = duration_cast<seconds>(end - start);
  std::int64_t used = s.count;
  if (p.algorithm == limit_algorithm::sliding_window) {
    // Weighted count: the previous window's use fades out linearly.
    const auto total_us = epoch_us(end) - epoch_us(start);
    const auto left_us = epoch_us(end) - epoch_us(now);
    used += mul_div(s.previous, left_us, total_us);
  }
  if (used + cost <= p.limit) {
    d.allowed = true;
    d.remaining = p.limit - used - cost;
    return d;
  }
  d.allowed = false;
  d.remaining = std::max<std::int64_t>(0, p.limit - used);
  if (p.algorithm != limit_algorithm::sliding_window) {
    d.retry_after = std::max(seconds{1}, ceil_seconds(epoch_us(end) - epoch_us(now)));
    return d;
  }
  // Sliding: wait until enough of the fading window's weight is gone.
  const auto total_us = epoch_us(end) - epoch_us(start);
  const auto left_us = epoch_us(end) - epoch_us(now);
  // Microseconds until floor(weight * left' / total) <= target, where left'
  // is the time left in the window whose predecessor weighs `weight`.
  const auto fade = [total_us](std::int64_t weight, std::int64_t target, std::int64_t left) {
    if (weight <= 0)
      return std::int64_t{0};
    const auto want_left = mul_div(target + 1, total_us, weight) - 1;
    return want_left >= left ? std::int64_t{0} : left - want_left;
  };
  std::int64_t wait_us = 0;
  if (s.count + cost <= p.limit)
    // Within this window; at its end the previous weight is gone anyway.
    wait_us = std::min(left_us, fade(s.previous, p.limit - s.count - cost, left_us));
  else if (cost > p.limit)
    wait_us = left_us + total_us;  // never passes; report a full window
  else
    // This window's use becomes the next one's fading weight.
    wait_us = left_us + fade(s.count, p.limit - cost, total_us);
  d.retry_after = std::max(seconds{1}, ceil_seconds(wait_us));
  return d;
}

void limiter::consume(time_point now, std::int64_t cost) {
  if (policy_.algorithm == limit_algorithm::token_bucket) {
    const auto limit = std::max<std::int64_t>(1, policy_.limit);
    const std::int64_t t_us = std::max<std::int64_t>(1, policy_.window.count() * 1'000'000 / limit);
    state_.tat_us = std::max(state_.tat_us, epoch_us(now)) + cost * t_us;
    return;
  }
  state_ = rolled(now);
  state_.count += cost;
}

void limiter::refund(time_point now, std::int64_t units) {
  if (units <= 0)
    return;
  if (policy_.algorithm == limit_algorithm::token_bucket) {
    const auto limit = std::max<std::int64_t>(1, policy_.limit);
    const std::int64_t t_us = std::max<std::int64_t>(1, policy_.window.count() * 1'000'000 / limit);
    state_.tat_us = std::max(epoch_us(now), state_.tat_us - units * t_us);
    return;
  }
  state_ = rolled(now);
  state_.count = std::max<std::int64_t>(0, state_.count - units);
}

limit_decision most_restrictive(const std::vector<limit_decision>& decisions) {
  limit_decision best;
  bool have = false;
  for (const auto& d : decisions) {
    if (!have) {
      best = d;
      have = true;
      continue;
    }
    if (best.allowed != d.allowed) {
      if (!d.allowed)
        best = d;
      continue;
    }
    if (!d.allowed) {
      if (d.retry_after > best.retry_after)
        best = d;
      continue;
    }
    if (d.remaining < best.remaining || (d.remaining == best.remaining && d.reset < best.reset))
      best = d;
  }
  return best;
}

limit_decision admit(std::vector<limiter*>& limiters, time_point now, std::int64_t cost) {
  std::vector<limit_decision> decisions;
  decisions.reserve(limiters.size());
  bool all = true;
  for (auto* l : limiters) {
    decisions.push_back(l->check(now, cost));
    all = all && decisions.back().allowed;
  }
  if (all)
    for (auto* l : limiters)
      l->consume(now, cost);
  return most_restrictive(decisions);
}

} // namespace tollgate::core
