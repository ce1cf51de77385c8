#include "http/api/ratelimit.hpp"

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <cstdint>
#include <limits>
#include <string>

using namespace tollgate;

namespace {
// The value of `name` in a block of rendered "Name: value\r\n" lines; every
// line must be well formed.
std::string header(const std::string& block, const std::string& name) {
  std::string found = "<absent>";
  std::size_t pos = 0;
  while (pos < block.size()) {
    const auto eol = block.find("\r\n", pos);
    REQUIRE(eol != std::string::npos);
    const auto line = block.substr(pos, eol - pos);
    const auto colon = line.find(": ");
    REQUIRE(colon != std::string::npos);
    REQUIRE(colon > 0);
    if (line.substr(0, colon) == name) {
      REQUIRE(found == "<absent>");  // each field once
      found = line.substr(colon + 2);
    }
    pos = eol + 2;
  }
  return found;
}
} // namespace

TEST_CASE("rate-limit headers per dialect", "[http][limits]") {
  actors::limit_report r;
  r.metered = true;
  r.policy = "minute";
  r.limit = 60;
  r.remaining = 0;
  r.reset = 1000;
  r.window = 60;
  r.allowed = false;
  r.retry_after = 40;
  r.policies = {{"minute", 60, 60}, {"day", 1000, 86400}};
  std::string all;
  http::api::add_rate_limit_headers(all, r, {"x-ratelimit", "ratelimit", "ietf"}, 960);
  CHECK(header(all, "X-RateLimit-Limit") == "60");
  CHECK(header(all, "X-RateLimit-Remaining") == "0");
  CHECK(header(all, "X-RateLimit-Reset") == "1000");
  CHECK(header(all, "X-RateLimit-Window") == "60");
  CHECK(header(all, "RateLimit-Limit") == "60");
  CHECK(header(all, "RateLimit-Remaining") == "0");
  CHECK(header(all, "RateLimit-Reset") == "40");
  CHECK(header(all, "RateLimit-Policy") == R"("minute";q=60;w=60, "day";q=1000;w=86400)");
  CHECK(header(all, "RateLimit") == R"("minute";r=0;t=40)");
  CHECK(header(all, "Retry-After") == "40");

  std::string one;
  http::api::add_rate_limit_headers(one, r, {"ratelimit"}, 960);
  CHECK(header(one, "X-RateLimit-Limit") == "<absent>");
  CHECK(header(one, "RateLimit-Policy") == "<absent>");
  CHECK(header(one, "RateLimit-Limit") == "60");
  CHECK(header(one, "Retry-After") == "40");  // a 429 always says when

  core::limits_config cfg;
  cfg.headers_by_group = {{"admin", {"x-ratelimit"}}};
  CHECK(http::api::dialects_for(cfg, "admin") == std::vector<std::string>{"x-ratelimit"});
  CHECK(http::api::dialects_for(cfg, "keys").size() == 3);

  actors::limit_report unmetered;
  std::string none;
  http::api::add_rate_limit_headers(none, unmetered, {"x-ratelimit"}, 0);
  CHECK(none.empty());
}

TEST_CASE("rate-limit headers: the widest numbers and long policy names", "[http][limits]") {
  // Every number at its widest (20 characters, 19 where it cannot be
  // negative), in every field, with long names: the headers are written
  // into room sized up front.
  constexpr auto lo = std::numeric_limits<std::int64_t>::min();
  const auto lo_text = std::to_string(lo);
  actors::limit_report r;
  r.metered = true;
  r.allowed = false;
  r.policy = std::string(300, 'p');
  r.limit = lo;
  r.remaining = lo;
  r.reset = std::numeric_limits<std::int64_t>::max();  // so that the reset in seconds is wide too
  r.window = lo;
  const auto hi_text = std::to_string(r.reset);
  r.retry_after = std::numeric_limits<std::int64_t>::max();
  for (const int count : {0, 1, 5}) {
    CAPTURE(count);
    r.policies.clear();
    std::string policies;
    for (int i = 0; i < count; ++i) {
      const auto name = std::string(40 + i, static_cast<char>('a' + i));
      r.policies.push_back({name, lo, lo});
      policies += (i ? ", \"" : "\"") + name + "\";q=" + lo_text + ";w=" + lo_text;
    }
    std::string out = "Before: 1\r\n";
    http::api::add_rate_limit_headers(out, r, {"x-ratelimit", "ratelimit", "ietf"}, 0);
    CHECK(header(out, "Before") == "1");
    CHECK(header(out, "X-RateLimit-Limit") == lo_text);
    CHECK(header(out, "X-RateLimit-Remaining") == lo_text);
    CHECK(header(out, "X-RateLimit-Reset") == hi_text);
    CHECK(header(out, "X-RateLimit-Window") == lo_text);
    CHECK(header(out, "RateLimit-Limit") == lo_text);
    CHECK(header(out, "RateLimit-Remaining") == lo_text);
    CHECK(header(out, "RateLimit-Reset") == hi_text);
    CHECK(header(out, "RateLimit-Policy") == policies);
    CHECK(header(out, "RateLimit") == "\"" + r.policy + "\";r=" + lo_text + ";t=" + hi_text);
    CHECK(header(out, "Retry-After") == std::to_string(r.retry_after));
    CHECK(out.size() == out.find_last_of('\n') + 1);  // nothing after the last line
  }
}

TEST_CASE("429 bodies: request limits, token budgets, OpenAI envelope", "[http][limits]") {
  actors::token_reservation t;
  t.tokens = 150;
  t.budget = "tokens_day";
  t.remaining_day = 0;
  t.retry_after = 3600;
  rapidjson::Document d;
  d.Parse(http::api::token_limited_body(t, 0).c_str());
  REQUIRE(d.IsObject());
  CHECK(std::string{d["status"].GetString()} == "token_limit_exceeded");
  CHECK(std::string{d["error"].GetString()} == "Daily token limit exceeded. Remaining: 0 tokens");
  CHECK(std::string{d["type"].GetString()} == "token_limit_error");
  CHECK(d["estimated_tokens"].GetInt() == 150);
  CHECK(d["status_code"].GetInt() == 429);

  d.Parse(http::api::openai_error_body("slow down", "rate_limit_error", "rate_limit_exceeded")
            .c_str());
  CHECK(std::string{d["error"]["message"].GetString()} == "slow down");
  CHECK(std::string{d["error"]["type"].GetString()} == "rate_limit_error");
  CHECK(std::string{d["error"]["code"].GetString()} == "rate_limit_exceeded");
}
