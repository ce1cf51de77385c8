#include "core/rate_limit.hpp"
#include "core/time_format.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace tollgate::core;
using namespace std::chrono;

namespace {

tollgate::core::time_point at(const char* iso) {
  auto s = parse_iso8601(iso);
  REQUIRE(s);
  return tollgate::core::time_point{seconds{*s}};
}

limit_policy fixed(std::int64_t limit, seconds window) {
  limit_policy p;
  p.name = "test";
  p.limit = limit;
  p.window = window;
  return p;
}

} // namespace

TEST_CASE("fixed window: limit, remaining, reset at the window's end", "[core][limits]") {
  limiter l{fixed(3, seconds{60})};
  const auto t0 = at("2026-05-01T10:00:15Z");
  for (int i = 0; i < 3; ++i) {
    auto d = l.check(t0, 1);
    REQUIRE(d.allowed);
    CHECK(d.remaining == 2 - i);
    CHECK(d.limit == 3);
    CHECK(d.reset == at("2026-05-01T10:01:00Z"));
    CHECK(d.window == seconds{60});
    l.consume(t0);
  }
  auto d = l.check(t0 + seconds{44}, 1);
  CHECK_FALSE(d.allowed);
  CHECK(d.remaining == 0);
  CHECK(d.retry_after == seconds{1});  // 10:00:59 -> 10:01:00
  d = l.check(t0, 1);
  CHECK(d.retry_after == seconds{45});
  // The last microsecond of the window is still the window.
  CHECK_FALSE(l.check(at("2026-05-01T10:01:00Z") - microseconds{1}).allowed);
  // The next window starts fresh.
  d = l.check(at("2026-05-01T10:01:00Z"));
  CHECK(d.allowed);
  CHECK(d.remaining == 2);
  CHECK(l.used(at("2026-05-01T10:01:00Z")) == 0);
}

TEST_CASE("windows align to UTC boundaries", "[core][limits]") {
  const auto now = at("2026-05-01T10:17:42Z");
  auto [s1, e1] = window_bounds(fixed(1, hours{1}), now);
  CHECK(iso8601(s1) == "2026-05-01T10:00:00Z");
  CHECK(iso8601(e1) == "2026-05-01T11:00:00Z");
  auto [s2, e2] = window_bounds(fixed(1, hours{24}), now);
  CHECK(iso8601(s2) == "2026-05-01T00:00:00Z");
  CHECK(iso8601(e2) == "2026-05-02T00:00:00Z");
}

TEST_CASE("calendar months: lengths, leap day, year rollover", "[core][limits]") {
  limit_policy month;
  month.kind = window_kind::calendar_month;
  month.limit = 100;
  auto [s, e] = window_bounds(month, at("2024-02-29T23:59:59Z"));
  CHECK(iso8601(s) == "2024-02-01T00:00:00Z");
  CHECK(iso8601(e) == "2024-03-01T00:00:00Z");
  std::tie(s, e) = window_bounds(month, at("2023-02-15T00:00:00Z"));
  CHECK(e - s == hours{24 * 28});
  std::tie(s, e) = window_bounds(month, at("2025-12-31T23:59:59Z"));
  CHECK(iso8601(s) == "2025-12-01T00:00:00Z");
  CHECK(iso8601(e) == "2026-01-01T00:00:00Z");
  std::tie(s, e) = window_bounds(month, at("2026-01-01T00:00:00Z"));
  CHECK(iso8601(s) == "2026-01-01T00:00:00Z");

  limiter l{month};
  l.consume(at("2025-12-31T23:59:59Z"), 100);
  CHECK_FALSE(l.check(at("2025-12-31T23:59:59Z")).allowed);
  auto d = l.check(at("2026-01-01T00:00:00Z"));
  CHECK(d.allowed);
  CHECK(d.remaining == 99);
  CHECK(d.window == hours{24 * 31});
}

TEST_CASE("daily windows reset at 00:00 UTC, including on a leap day", "[core][limits]") {
  limiter l{fixed(2, hours{24})};
  l.consume(at("2024-02-28T23:00:00Z"), 2);
  auto d = l.check(at("2024-02-28T23:59:59Z"));
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == seconds{1});
  CHECK(d.reset == at("2024-02-29T00:00:00Z"));
  CHECK(l.check(at("2024-02-29T00:00:00Z")).allowed);
  l.consume(at("2024-02-29T12:00:00Z"), 2);
  CHECK(l.check(at("2024-02-29T12:00:00Z")).reset == at("2024-03-01T00:00:00Z"));
}

TEST_CASE("sliding window weighs the previous window out linearly", "[core][limits]") {
  auto p = fixed(10, seconds{60});
  p.algorithm = limit_algorithm::sliding_window;
  limiter l{p};
  l.consume(at("2026-05-01T10:00:30Z"), 10);
  // At the start of the next window the previous one still counts fully.
  auto d = l.check(at("2026-05-01T10:01:00Z"));
  CHECK_FALSE(d.allowed);
  // The weighted count is rounded down, so the first unit frees as soon as
  // any of the old window has faded.
  CHECK(d.retry_after == seconds{1});
  CHECK(l.check(at("2026-05-01T10:01:01Z")).allowed);
  CHECK_FALSE(l.check(at("2026-05-01T10:01:01Z"), 2).allowed);
  // Half way through, half of it counts: 5 left.
  d = l.check(at("2026-05-01T10:01:30Z"), 5);
  CHECK(d.allowed);
  CHECK(d.remaining == 0);
  CHECK_FALSE(l.check(at("2026-05-01T10:01:30Z"), 6).allowed);
  // Two windows later nothing is left of it.
  CHECK(l.check(at("2026-05-01T10:02:00Z"), 10).allowed);
}

TEST_CASE("token bucket (GCRA): burst, steady rate, no hoarding", "[core][limits]") {
  limit_policy p;
  p.algorithm = limit_algorithm::token_bucket;
  p.limit = 60;  // one per second
  p.window = seconds{60};
  p.burst = 5;
  limiter l{p};
  const auto t0 = at("2026-05-01T10:00:00Z");
  for (int i = 0; i < 5; ++i) {
    auto d = l.check(t0);
    REQUIRE(d.allowed);
    CHECK(d.remaining == 4 - i);
    l.consume(t0);
  }
  auto d = l.check(t0);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == seconds{1});
  CHECK(d.limit == 5);
  CHECK(l.check(t0 + seconds{1}).allowed);
  l.consume(t0 + seconds{1});
  CHECK_FALSE(l.check(t0 + seconds{1}).allowed);
  // A long idle period refills only up to the burst.
  const auto later = t0 + hours{1};
  for (int i = 0; i < 5; ++i) {
    REQUIRE(l.check(later).allowed);
    l.consume(later);
  }
  CHECK_FALSE(l.check(later).allowed);
  // A cost above the burst can never pass.
  CHECK_FALSE(l.check(later + hours{1}, 6).allowed);
}

TEST_CASE("admission is all-or-nothing across policies", "[core][limits]") {
  limiter wide{fixed(10, seconds{60})};
  limiter narrow{fixed(2, seconds{60})};
  std::vector<limiter*> all{&wide, &narrow};
  const auto t = at("2026-05-01T10:00:00Z");
  CHECK(admit(all, t).allowed);
  auto d = admit(all, t);
  CHECK(d.allowed);
  CHECK(d.remaining == 0);  // the narrow one is the most restrictive
  d = admit(all, t);
  CHECK_FALSE(d.allowed);
  // The rejected request consumed from neither.
  CHECK(wide.used(t) == 2);
  CHECK(narrow.used(t) == 2);
}

TEST_CASE("the reported decision is the most restrictive one", "[core][limits]") {
  limit_decision a;
  a.remaining = 5;
  a.reset = at("2026-05-01T10:01:00Z");
  limit_decision b;
  b.remaining = 5;
  b.reset = at("2026-05-01T10:00:30Z");
  limit_decision c;
  c.remaining = 9;
  CHECK(most_restrictive({a, b, c}).reset == b.reset);
  limit_decision r1;
  r1.allowed = false;
  r1.retry_after = seconds{3};
  limit_decision r2 = r1;
  r2.retry_after = seconds{30};
  CHECK(most_restrictive({a, r1, r2, c}).retry_after == seconds{30});
}

TEST_CASE("refunds settle a reservation", "[core][limits]") {
  limiter tokens{fixed(1000, hours{24})};
  const auto t = at("2026-05-01T10:00:00Z");
  tokens.consume(t, 300);  // reserve
  tokens.refund(t, 180);   // used 120
  CHECK(tokens.used(t) == 120);
  tokens.refund(t, 1000);
  CHECK(tokens.used(t) == 0);
}

TEST_CASE("Retry-After is never earlier than the policy admits", "[core][limits]") {
  std::mt19937_64 rng{42};
  std::vector<limit_policy> policies;
  policies.push_back(fixed(5, seconds{60}));
  auto sliding = fixed(5, seconds{60});
  sliding.algorithm = limit_algorithm::sliding_window;
  policies.push_back(sliding);
  limit_policy bucket;
  bucket.algorithm = limit_algorithm::token_bucket;
  bucket.limit = 10;
  bucket.window = seconds{60};
  bucket.burst = 3;
  policies.push_back(bucket);
  for (const auto& p : policies) {
    limiter l{p};
    tollgate::core::time_point now = at("2026-05-01T10:00:00Z");
    int rejections = 0;
    for (int i = 0; i < 2000; ++i) {
      now += milliseconds{static_cast<int>(rng() % 4000)};
      auto d = l.check(now);
      if (d.allowed) {
        l.consume(now);
        continue;
      }
      ++rejections;
      REQUIRE(d.retry_after >= seconds{1});
      INFO(p.name << " algorithm " << static_cast<int>(p.algorithm));
      REQUIRE(l.check(now + d.retry_after).allowed);
    }
    CHECK(rejections > 0);
  }
}
