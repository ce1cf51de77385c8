// Per-key request limits through the real server, on an injected clock.

#include "core/api_key.hpp"
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
  const auto text = g.gw->metrics().expose();
  CHECK(text.find(R"(tollgate_limit_decisions_total{route="/user/balance",policy="minute",outcome="rejected"} 2)")
        != std::string::npos);
  CHECK(text.find(R"(tollgate_limit_decisions_total{route="/user/balance",policy="minute",outcome="admitted"} 4)")
        != std::string::npos);
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

TEST_CASE("an admin override replaces the default and plan limits, route limits still apply",
          "[integration][limits]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:15Z")};
  instance g{dir.str("data"), clock, [](core::config& c) {
               c.limits.per_minute = 3;
               core::route_limit_config r;
               r.method = "GET";
               r.path = "/user/balance";
               r.limit = 2;
               c.limits.routes.push_back(r);
             }};
  auto a = create_user(g, "alice");
  // The admin has the same default of 3 per minute: give it room first.
  auto r = g.call("POST", "/admin/rate-limits", g.admin(),
                  R"({"user_id": 1, "requests_per_minute": 1000})");
  REQUIRE(r.status == 200);
  r = g.call("POST", "/admin/rate-limits", g.admin(),
             R"({"user_id": "user_)" + std::to_string(a.id)
               + R"(", "requests_per_minute": 5, "requests_per_hour": 1000, "reason": "Premium customer"})");
  REQUIRE(r.status == 200);
  auto d = json(r);
  CHECK(str(d["message"]) == "Rate limits updated successfully");
  CHECK(d["rate_limits"]["requests_per_minute"].GetInt() == 5);
  CHECK(d["rate_limits"]["requests_per_hour"].GetInt() == 1000);
  CHECK(d["rate_limits"]["requests_per_day"].GetInt() == 1000);  // not overridden

  r = g.call("GET", "/user/api-keys", a.key);
  CHECK(r.header("ratelimit-policy") == R"("minute";q=5;w=60, "hour";q=1000;w=3600, "day";q=1000;w=86400)");
  for (int i = 0; i < 4; ++i)
    REQUIRE(g.call("GET", "/user/api-keys", a.key).status == 200);
  CHECK(g.call("GET", "/user/api-keys", a.key).status == 429);  // 5 per minute, not 3

  // The route's own limit is not lifted by the override.
  clock.advance(60s);
  REQUIRE(g.call("GET", "/user/balance", a.key).status == 200);
  REQUIRE(g.call("GET", "/user/balance", a.key).status == 200);
  r = g.call("GET", "/user/balance", a.key);
  CHECK(r.status == 429);
  CHECK(str(json(r)["policy"]) == "route");

  // A per-endpoint override replaces that route's limit for this user only.
  r = g.call("POST", "/admin/rate-limits", g.admin(),
             R"({"user_id": )" + std::to_string(a.id)
               + R"(, "custom_limits": {"GET /user/balance": 4, "chat_completions": 50}})");
  REQUIRE(r.status == 200);
  r = g.call("GET", "/user/balance", a.key);
  CHECK(r.status == 200);
  CHECK(r.header("x-ratelimit-remaining") == "1");  // 3 of 4 used
  CHECK(g.call("GET", "/user/balance", a.key).status == 200);
  CHECK(g.call("GET", "/user/balance", a.key).status == 429);

  // The gateway reference's read-back, with usage summed over the user's keys.
  r = g.call("GET", "/admin/rate-limits/" + std::to_string(a.id), g.admin());
  REQUIRE(r.status == 200);
  d = json(r);
  CHECK(d["rate_limits"]["requests_per_minute"].GetInt() == 5);
  CHECK(d["rate_limits"]["custom_limits"]["GET /user/balance"].GetInt() == 4);
  CHECK(d["rate_limits"]["custom_limits"]["chat_completions"].GetInt() == 50);
  CHECK(d["current_usage"]["requests_this_minute"].GetInt() == 4);
  CHECK(d["current_usage"]["requests_this_hour"].GetInt() == 9);
  CHECK(d["current_usage"]["requests_this_day"].GetInt() == 9);

  // The audit log has it.
  auto audit = json(g.call("GET", "/admin/audit-logs?action=rate_limits_changed", g.admin()));
  CHECK(audit["total"].GetInt() == 3);
}

TEST_CASE("usage routes: own usage, status, admin usage, token limits, reset",
          "[integration][limits]") {
  test::temp_dir dir;
  core::manual_clock clock{at("2026-05-01T10:00:15Z")};
  instance g{dir.str("data"), clock, [](core::config& c) { c.limits.per_minute = 100; }};
  auto a = create_user(g, "alice");
  const auto hash = core::api_key::short_hash(core::api_key::sha256_hex(a.key));
  for (int i = 0; i < 3; ++i)
    REQUIRE(g.call("GET", "/user/balance", a.key).status == 200);

  auto r = g.call("GET", "/api/usage", a.key);
  REQUIRE(r.status == 200);
  auto d = json(r);
  CHECK(str(d["api_key_hash"]) == hash);
  CHECK(d["usage"]["total_requests"].GetInt() == 4);  // this one included
  CHECK(d["usage"]["daily_tokens_limit"].GetInt() == 100000);
  CHECK(d["usage"]["monthly_tokens_limit"].GetInt() == 2000000);
  CHECK(d["usage"]["daily_tokens_remaining"].GetInt() == 100000);
  CHECK(d["usage"]["daily_utilization_percent"].GetDouble() == 0.0);

  r = g.call("GET", "/api/rate-limit/status", a.key);
  REQUIRE(r.status == 200);
  d = json(r);
  bool saw_minute = false;
  for (const auto& p : d["policies"].GetArray()) {
    if (str(p["name"]) != "minute")
      continue;
    saw_minute = true;
    CHECK(p["used"].GetInt() == 5);
    CHECK(p["limit"].GetInt() == 100);
    CHECK(str(p["reset_time"]) == "2026-05-01T10:01:00Z");
  }
  CHECK(saw_minute);

  // Admin views by api_key_hash; token budgets per key.
  r = g.call("GET", "/api/admin/usage/" + hash, g.admin());
  REQUIRE(r.status == 200);
  CHECK(json(r)["usage"]["total_requests"].GetInt() == 5);  // alice's, not the admin's
  r = g.call("POST", "/api/admin/set-limits/" + hash, g.admin(),
             R"({"daily_limit": 50000, "monthly_limit": 1000000})");
  REQUIRE(r.status == 200);
  CHECK(json(r)["limits"]["daily_limit"].GetInt() == 50000);
  d = json(g.call("GET", "/api/usage", a.key));
  CHECK(d["usage"]["daily_tokens_limit"].GetInt() == 50000);
  CHECK(d["usage"]["monthly_tokens_limit"].GetInt() == 1000000);

  r = g.call("GET", "/api/admin/all-usage", g.admin());
  REQUIRE(r.status == 200);
  d = json(r);
  CHECK(d["count"].GetInt() == 2);  // the admin's key and alice's

  r = g.call("GET", "/api/v1/admin/api-keys/" + std::to_string(a.key_id) + "/rate-limit",
             g.admin());
  REQUIRE(r.status == 200);
  d = json(r);
  CHECK(d["api_key_id"].GetUint64() == a.key_id);
  CHECK(d["current_usage"]["requests_in_window"].GetInt() == 6);
  CHECK(d["current_usage"]["limit"].GetInt() == 100);
  CHECK(d["current_usage"]["remaining"].GetInt() == 94);
  CHECK(str(d["current_usage"]["reset_time"]) == "2026-05-01T10:01:00Z");

  r = g.call("DELETE", "/api/admin/reset-usage/" + hash, g.admin());
  REQUIRE(r.status == 200);
  CHECK(json(r)["usage"]["total_requests"].GetInt() == 0);
  r = g.call("GET", "/user/balance", a.key);
  CHECK(r.header("x-ratelimit-remaining") == "99");
}

TEST_CASE("limits routes refuse bad input with the field named", "[integration][limits]") {
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(),
             [](core::config& c) { c.limits.per_minute = 1000; }};
  const auto admin = g.admin();
  struct bad {
    std::string method;
    std::string path;
    std::string body;
    int status;
    std::string detail;
  };
  const std::vector<bad> cases = {
    {"POST", "/api/admin/set-limits/xyz", R"({"daily_limit":1})", 400, "api_key_hash"},
    {"POST", "/api/admin/set-limits/0123456789abcdef", "{}", 400, "daily_limit"},
    {"POST", "/api/admin/set-limits/0123456789abcdef", R"({"daily_limit":-5})", 400,
     "daily_limit must be an integer"},
    {"POST", "/api/admin/set-limits/0123456789abcdef", R"({"daily_limit":5})", 404, "not found"},
    {"GET", "/api/admin/usage/not-a-hash", "", 400, "api_key_hash"},
    {"GET", "/api/admin/usage/0123456789abcdef", "", 404, "not found"},
    {"DELETE", "/api/admin/reset-usage/0123456789abcdef", "", 404, "not found"},
    {"GET", "/api/admin/all-usage?limit=abc", "", 400, "limit"},
    {"GET", "/admin/rate-limits/abc", "", 400, "user_id"},
    {"GET", "/admin/rate-limits/999", "", 404, "not found"},
    {"POST", "/admin/rate-limits", R"({"requests_per_minute":5})", 400, "user_id is required"},
    {"POST", "/admin/rate-limits", R"({"user_id":1})", 400, "requests_per_minute"},
    {"POST", "/admin/rate-limits", R"({"user_id":1,"requests_per_hour":"lots"})", 400,
     "requests_per_hour"},
    {"POST", "/admin/rate-limits", R"({"user_id":1,"requests_per_day":1,"burst":3})", 400,
     "unknown field 'burst'"},
    {"POST", "/admin/rate-limits", R"({"user_id":999,"requests_per_day":1})", 404, "not found"},
    {"POST", "/admin/rate-limits", R"({"user_id":1,"custom_limits":{"teleport":5}})", 400,
     "custom_limits: unknown endpoint 'teleport'"},
    {"POST", "/admin/rate-limits", R"({"user_id":1,"custom_limits":{"GET /x":-1}})", 400,
     "custom_limits.GET /x must be an integer"},
    {"POST", "/admin/rate-limits", R"({"user_id":1,"custom_limits":[1]})", 400,
     "custom_limits must be an object"},
    {"GET", "/api/v1/admin/api-keys/abc/rate-limit", "", 400, "id"},
  };
  for (const auto& c : cases) {
    auto r = g.call(c.method, c.path, admin, c.body);
    INFO(c.method << " " << c.path << " " << c.body << " -> " << r.body);
    CHECK(r.status == c.status);
    CHECK(str(json(r)["detail"]).find(c.detail) != std::string::npos);
  }
  // A user may not use the admin routes.
  auto a = create_user(g, "alice");
  CHECK(g.call("GET", "/api/admin/all-usage", a.key).status == 403);
  CHECK(g.call("POST", "/admin/rate-limits", a.key, R"({"user_id":2,"requests_per_day":9})")
          .status
        == 403);
}
