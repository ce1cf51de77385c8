#include "http/errors.hpp"
#include "http/route_table.hpp"
#include "http/routes.hpp"
#include "http/server/cancel_slot.hpp"

#include <catch2/catch.hpp>

#include <stdexcept>

using namespace tollgate;
using http::route_table;

TEST_CASE("route table matches literals and parameters", "[http][routes]") {
  route_table t;
  const auto list = t.add("GET", "/user/api-keys");
  const auto put = t.add("PUT", "/user/api-keys/{key_id}");
  const auto del = t.add("DELETE", "/user/api-keys/{key_id}");
  const auto providers = t.add("GET", "/models/providers");
  const auto model = t.add("GET", "/models/{id}");

  auto m = t.match("GET", "/user/api-keys");
  REQUIRE(m.kind == route_table::outcome::found);
  CHECK(m.matched->id == list);

  m = t.match("PUT", "/user/api-keys/42");
  REQUIRE(m.kind == route_table::outcome::found);
  CHECK(m.matched->id == put);
  REQUIRE(m.params.size() == 1);
  CHECK(m.params[0].first == "key_id");
  CHECK(m.params[0].second == "42");

  m = t.match("DELETE", "/user/api-keys/7");
  REQUIRE(m.kind == route_table::outcome::found);
  CHECK(m.matched->id == del);

  SECTION("a literal segment beats a parameter") {
    m = t.match("GET", "/models/providers");
    REQUIRE(m.kind == route_table::outcome::found);
    CHECK(m.matched->id == providers);
    m = t.match("GET", "/models/gpt-4");
    REQUIRE(m.kind == route_table::outcome::found);
    CHECK(m.matched->id == model);
  }
  SECTION("wrong method lists the allowed ones") {
    m = t.match("POST", "/user/api-keys/42");
    REQUIRE(m.kind == route_table::outcome::method_not_allowed);
    CHECK(m.allow == "PUT, DELETE");
    m = t.match("DELETE", "/models/providers");
    REQUIRE(m.kind == route_table::outcome::method_not_allowed);
    CHECK(m.allow == "GET");
  }
  SECTION("unknown paths, empty segments and trailing slashes do not match") {
    CHECK(t.match("GET", "/nope").kind == route_table::outcome::not_found);
    CHECK(t.match("GET", "/user/api-keys/").kind == route_table::outcome::not_found);
    CHECK(t.match("GET", "/user//api-keys").kind == route_table::outcome::not_found);
    CHECK(t.match("GET", "/user/api-keys/1/2").kind == route_table::outcome::not_found);
    CHECK(t.match("GET", "/").kind == route_table::outcome::not_found);
    CHECK(t.match("GET", "").kind == route_table::outcome::not_found);
  }
}

TEST_CASE("route table refuses malformed and duplicate patterns", "[http][routes]") {
  route_table t;
  t.add("GET", "/a/{id}");
  CHECK_THROWS_AS(t.add("GET", "/a/{id}"), std::invalid_argument);
  CHECK_THROWS_AS(t.add("GET", "no-slash"), std::invalid_argument);
  CHECK_THROWS_AS(t.add("GET", "/a//b"), std::invalid_argument);
  CHECK_THROWS_AS(t.add("GET", "/a/{}"), std::invalid_argument);
  CHECK_THROWS_AS(t.add("GET", "/a/x{y}"), std::invalid_argument);
}

TEST_CASE("errc maps to one status each and error bodies have the reference shape",
          "[http][errors]") {
  CHECK(http::status_of(core::errc::bad_request) == 400);
  CHECK(http::status_of(core::errc::unauthorized) == 401);
  CHECK(http::status_of(core::errc::not_found) == 404);
  CHECK(http::status_of(core::errc::method_not_allowed) == 405);
  CHECK(http::status_of(core::errc::payload_too_large) == 413);
  CHECK(http::status_of(core::errc::headers_too_large) == 431);
  CHECK(http::status_of(core::errc::too_many_requests) == 429);
  CHECK(http::status_of(core::errc::unavailable) == 503);
  const auto body =
    http::error_body(404, "no \"such\" thing", std::chrono::system_clock::time_point{});
  CHECK(body
        == R"({"detail":"no \"such\" thing","status_code":404,"timestamp":"1970-01-01T00:00:00Z"})");
}

TEST_CASE("a {*wildcard} takes the rest of the path and loses every tie", "[http][routes]") {
  http::route_table t;
  const auto any = t.add("GET", "/api/v1/{*rest}");
  const auto scans = t.add("GET", "/api/v1/scans/{id}");
  const auto progress = t.add("GET", "/api/v1/scans/{id}/progress");
  t.add("POST", "/api/v1/{*rest}");

  auto m = t.match("GET", "/api/v1/scans/7");
  REQUIRE(m.kind == http::route_table::outcome::found);
  CHECK(m.matched->id == scans);
  m = t.match("GET", "/api/v1/scans/7/progress");
  CHECK(m.matched->id == progress);
  m = t.match("GET", "/api/v1/scans/7/progress/x");
  REQUIRE(m.kind == http::route_table::outcome::found);
  CHECK(m.matched->id == any);
  REQUIRE(m.params.size() == 1);
  CHECK(m.params[0].first == "rest");
  CHECK(m.params[0].second == "scans/7/progress/x");
  m = t.match("GET", "/api/v1");
  REQUIRE(m.kind == http::route_table::outcome::found);
  CHECK(m.matched->id == any);
  CHECK(m.params[0].second.empty());
  CHECK(t.match("GET", "/api/v2/x").kind == http::route_table::outcome::not_found);
  CHECK(t.match("DELETE", "/api/v1/x").kind == http::route_table::outcome::method_not_allowed);
  CHECK_THROWS_AS(t.add("GET", "/a/{*rest}/b"), std::invalid_argument);
}

TEST_CASE("the route table keeps the upstream flag, and a proxy route is an upstream route",
          "[http][routes]") {
  route_table t;
  t.add("GET", "/user/balance", true);
  t.add("POST", "/v1/chat/completions", true, false, true);
  t.add("GET", "/scans/{*rest}", true, true);
  CHECK_FALSE(t.match("GET", "/user/balance").matched->upstream);
  CHECK(t.match("POST", "/v1/chat/completions").matched->upstream);
  CHECK(t.match("GET", "/scans/a/b").matched->upstream);  // a proxy route
}

TEST_CASE("the gateway's routes that call an upstream are marked so, the others not",
          "[http][routes]") {
  const auto set = http::build_routes();
  const auto upstream = [&](const char* method, const char* path) {
    const auto m = set.table->match(method, path);
    REQUIRE(m.kind == route_table::outcome::found);
    return m.matched->upstream;
  };
  CHECK(upstream("POST", "/v1/chat/completions"));
  CHECK(upstream("POST", "/v1/responses"));
  CHECK(upstream("POST", "/images/generate"));
  CHECK(upstream("POST", "/api/send-message"));
  CHECK_FALSE(upstream("GET", "/v1/models"));
  CHECK_FALSE(upstream("GET", "/user/balance"));
  CHECK_FALSE(upstream("GET", "/api/agent/status"));
}

TEST_CASE("a path that names a template without parameters is matched as scoring matches it",
          "[http][routes]") {
  // The gateway's own table, with a proxy route's wildcard and a parameter
  // beside literals of the same length, and every path it names plus
  // near misses, for every method.
  const auto set = http::build_routes();
  auto t = *set.table;
  t.add("GET", "/scans/{*rest}", true, true);
  t.add("POST", "/scans/latest", true, true);
  std::vector<std::string> paths;
  for (const auto& r : t.routes()) {
    std::string p;
    for (const char c : r.pattern)
      p += c == '{' ? 'x' : c == '}' || c == '*' ? 'y' : c;  // parameters become values
    paths.push_back(r.pattern);
    paths.push_back(p);
    paths.push_back(p + "/");
    paths.push_back("/" + p);
    paths.push_back(p + "/more");
  }
  std::size_t literal_hits = 0;
  for (const auto& path : paths) {
    for (const char* method : {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}) {
      CAPTURE(method, path);
      const auto fast = t.match(method, path);
      const auto scored = t.match_by_score(method, path);
      REQUIRE(fast.kind == scored.kind);
      CHECK(fast.matched == scored.matched);
      CHECK(fast.params == scored.params);
      CHECK(fast.allow == scored.allow);
      literal_hits += fast.kind == route_table::outcome::found && fast.params.empty() ? 1 : 0;
    }
  }
  CHECK(literal_hits > 40);  // the direct path was taken, not only the scoring
  // The literal beats the wildcard; another method gets the literal's 405
  // (the most specific template decides), through the scoring.
  REQUIRE(t.match("POST", "/scans/latest").kind == route_table::outcome::found);
  CHECK(t.match("POST", "/scans/latest").matched->pattern == "/scans/latest");
  const auto other = t.match("GET", "/scans/latest");
  CHECK(other.kind == route_table::outcome::method_not_allowed);
  CHECK(other.allow == "POST");
}

TEST_CASE("a cancel slot runs its function once, whichever comes first", "[http][cancel]") {
  int runs = 0;
  SECTION("left first, then the client goes") {
    http::cancel_slot slot;
    slot.set([&runs] { ++runs; });
    CHECK(runs == 0);
    slot.fire();
    CHECK(runs == 1);
    slot.fire();  // a second report of the same departure
    CHECK(runs == 1);
  }
  SECTION("the client goes first: the function runs as it is left") {
    http::cancel_slot slot;
    slot.fire();
    CHECK(runs == 0);
    slot.set([&runs] { ++runs; });
    CHECK(runs == 1);
  }
  SECTION("a client that stays never runs it") {
    http::cancel_slot slot;
    slot.set([&runs] { ++runs; });
    CHECK(runs == 0);
  }
  SECTION("a throwing function is contained") {
    http::cancel_slot slot;
    slot.set([] { throw std::runtime_error{"boom"}; });
    CHECK_NOTHROW(slot.fire());
  }
}
