// Per-key request limits through the real server, on an injected clock.

#include "core/rate_limit.hpp"
#include "metrics/registry.hpp"
#include "core/time_format.hpp"

#include "support/fixture.hpp"
#include "support/http_client.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace tollgate;
using namespace std::chrono_literals;
using test::create_user;
using test::instance;
using test::json;
using test::str;

namespace {

core::time_point at(const char* iso) {
  return core::time_point{std::chrono::seconds{*core::parse_iso8601(iso)}};
}

std::int64_t epoch(const char* iso) {
  return *core::parse_iso8601(iso);
}

} // namespace

TEST_CASE("metered responses carry every header dialect, consistent with each other",
          "[integration][limits]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:15Z")};
  instance g{dir.str("data"), clock};
  auto a = create_user(g, "alice");
  auto r = g.call("GET", "/user/balance", a.key);
  REQUIRE(r.status == 200);
  CHECK(r.header("x-ratelimit-limit") == "60");
  CHECK(r.header("x-ratelimit-remaining") == "59");
  CHECK(r.header("x-ratelimit-reset") == std::to_string(epoch("2026-05-01T10:01:00Z")));
  CHECK(r.header("x-ratelimit-window") == "60");
  CHECK(r.header("ratelimit-limit") == "60");
  CHECK(r.header("ratelimit-remaining") == "59");
  CHECK(r.header("ratelimit-reset") == "45");
  CHECK(r.header("ratelimit-policy")
        == R"("minute";q=60;w=60, "hour";q=100;w=3600, "day";q=1000;w=86400)");
  CHECK(r.header("ratelimit") == R"("minute";r=59;t=45)");
  CHECK(r.header("retry-after").empty());
  // Public routes are not metered.
  auto p = g.call("GET", "/ping");
  CHECK(p.header("x-ratelimit-limit").empty());
  CHECK(p.header("ratelimit").empty());
}

TEST_CASE("the most restrictive policy is reported", "[integration][limits]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:15Z")};
  instance g{dir.str("data"), clock, [](core::config& c) { c.limits.requests_per_day = 2; }};
  auto a = create_user(g, "alice");
  auto r = g.call("GET", "/user/balance", a.key);
  CHECK(r.header("x-ratelimit-limit") == "2");
  CHECK(r.header("x-ratelimit-remaining") == "1");
  CHECK(r.header("x-ratelimit-window") == "86400");
  CHECK(r.header("x-ratelimit-reset") == std::to_string(epoch("2026-05-02T00:00:00Z")));
  CHECK(r.header("ratelimit") == R"("day";r=1;t=50385)");
}

TEST_CASE("over the limit: 429 with Retry-After and the combined body", "[integration][limits]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:15Z")};
  instance g{dir.str("data"), clock, [](core::config& c) { c.limits.per_minute = 3; }};
  auto a = create_user(g, "alice");
  for (int i = 0; i < 3; ++i)
    REQUIRE(g.call("GET", "/user/balance", a.key).status == 200);
  auto r = g.call("GET", "/user/balance", a.key);
  REQUIRE(r.status == 429);
  CHECK(r.header("retry-after") == "45");
  CHECK(r.header("x-ratelimit-remaining") == "0");
  CHECK(r.header("ratelimit-reset") == "45");
  auto d = json(r);
  CHECK(d["status_code"].GetInt() == 429);
  CHECK(str(d["error"]) == "rate_limit_exceeded");
  CHECK(str(d["message"]) == "Too many requests. Rate limit exceeded.");
  CHECK(str(d["type"]) == "rate_limit_error");
  CHECK(d["retry_after"].GetInt() == 45);
  CHECK(str(d["detail"]).find("3 requests per 60 s") != std::string::npos);
  CHECK(str(d["timestamp"]) == "2026-05-01T10:00:15Z");
  // Not a second earlier than Retry-After, and right on time after it.
  clock.advance(44s);
  CHECK(g.call("GET", "/user/balance", a.key).status == 429);
  clock.advance(1s);
  auto ok = g.call("GET", "/user/balance", a.key);
  CHECK(ok.status == 200);
  CHECK(ok.header("x-ratelimit-remaining") == "2");
}

TEST_CASE("1000 simultaneous requests against a limit of 100 admit exactly 100",
          "[integration][limits][concurrency]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:00Z")};
  instance g{dir.str("data"), clock, [](core::config& c) {
               c.limits.per_minute = 100;
               c.server.io_threads = 2;
               c.server.routers = 2;
             }};
  auto a = create_user(g, "alice");
  constexpr int connections = 50;
  constexpr int per_connection = 20;
  std::atomic<int> ok{0};
  std::atomic<int> limited{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c)
    threads.emplace_back([&] {
      test::connection conn{g.port()};
      std::string batch;
      for (int i = 0; i < per_connection; ++i)
        batch += test::make_request("GET", "/user/balance", "X-API-Key: " + a.key + "\r\n");
      conn.send(batch);  // pipelined: all in flight at once
      for (int i = 0; i < per_connection; ++i) {
        auto r = conn.read_response();
        if (!r)
          ++other;
        else if (r->status == 200)
          ++ok;
        else if (r->status == 429)
          ++limited;
        else
          ++other;
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(ok == 100);
  CHECK(limited == 900);
  CHECK(other == 0);
}

TEST_CASE("route limits from the table apply with the key's, all-or-nothing",
          "[integration][limits]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:15Z")};
  instance g{dir.str("data"), clock, [](core::config& c) {
               c.limits.per_minute = 10;
               core::route_limit_config r;
               r.method = "GET";
               r.path = "/user/balance";
               r.limit = 2;
               c.limits.routes.push_back(r);
             }};
  auto a = create_user(g, "alice");
  auto r = g.call("GET", "/user/balance", a.key);
  CHECK(r.header("x-ratelimit-limit") == "2");
  CHECK(r.header("ratelimit-policy")
        == R"("minute";q=10;w=60, "hour";q=100;w=3600, "day";q=1000;w=86400, "route";q=2;w=60)");
  REQUIRE(g.call("GET", "/user/balance", a.key).status == 200);
  r = g.call("GET", "/user/balance", a.key);
  CHECK(r.status == 429);
  CHECK(str(json(r)["policy"]) == "route");
  // Other routes are not limited by it, and the rejected request did not
  // consume the key's minute window: 2 admitted + this one.
  r = g.call("GET", "/user/api-keys", a.key);
  CHECK(r.status == 200);
  CHECK(r.header("x-ratelimit-remaining") == "7");
}

TEST_CASE("a restart never hands out a fresh window", "[integration][limits]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:15Z")};
  const auto tweak = [](core::config& c) { c.limits.per_minute = 5; };
  test::user a;
  {
    instance g{dir.str("data"), clock, tweak};
    a = create_user(g, "alice");
    for (int i = 0; i < 5; ++i)
      REQUIRE(g.call("GET", "/user/balance", a.key).status == 200);
    CHECK(g.gw->shutdown());
  }
  instance g{dir.str("data"), clock, tweak};
  auto r = g.call("GET", "/user/balance", a.key);
  CHECK(r.status == 429);
  CHECK(r.header("retry-after") == "45");
  clock.advance(45s);
  CHECK(g.call("GET", "/user/balance", a.key).status == 200);
}

TEST_CASE("an idle key actor's counters come back when it respawns", "[integration][limits]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:15Z")};
  instance g{dir.str("data"), clock, [](core::config& c) {
               c.limits.per_minute = 5;
               c.auth.key_idle_timeout = 100ms;
             }};
  auto a = create_user(g, "alice");
  for (int i = 0; i < 3; ++i)
    REQUIRE(g.call("GET", "/user/balance", a.key).status == 200);
  const auto live = [&] {
    const auto text = g.gw->metrics().expose();
    const auto pos = text.find("\ntollgate_key_actors_live ");
    return std::stoi(text.substr(pos + 26));
  };
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (live() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  REQUIRE(live() == 0);
  auto r = g.call("GET", "/user/balance", a.key);
  CHECK(r.status == 200);
  CHECK(r.header("x-ratelimit-remaining") == "1");
}
