#include "core/llm.hpp"

#include <catch2/catch.hpp>

using namespace tollgate::core::llm;
using namespace std::chrono_literals;

TEST_CASE("prices are exact integers, rounded up to the micro-credit", "[llm]") {
  CHECK(price_micro(0, 1'000'000) == 0);
  CHECK(price_micro(1, 1'000'000) == 1);            // 1 credit per Mtok: 1 micro per token
  CHECK(price_micro(1'000'000, 150'000) == 150'000);
  CHECK(price_micro(1, 150'000) == 1);              // 0.15 micro, rounded up
  CHECK(price_micro(7, 2'500'000) == 18);           // 17.5 -> 18
  CHECK(price_micro(3, -5) == 0);
  // No overflow where a 64-bit product would wrap.
  CHECK(price_micro(1'000'000'000'000, 1'000'000'000'000) == 1'000'000'000'000'000'000);
}

TEST_CASE("token estimates lean high", "[llm]") {
  CHECK(estimate_tokens(0) == 0);
  CHECK(estimate_tokens(1) == 1);
  CHECK(estimate_tokens(3) == 1);
  CHECK(estimate_tokens(4) == 2);
  CHECK(estimate_prompt_tokens(12, 2) == 4 + 8 + 3);
}

TEST_CASE("the provider's token bucket refills per minute and caps at its burst", "[llm]") {
  const token_bucket::time_point t0{std::chrono::seconds{1'000'000}};
  token_bucket b{20'000, 4'000, t0};  // the token-tracking page's global limit
  CHECK(b.take(4'000, t0));
  CHECK_FALSE(b.take(1, t0));
  CHECK(b.wait_for(1'000, t0) == 3000ms);  // 20,000/min = 333.3/s
  CHECK_FALSE(b.take(1'000, t0 + 2999ms));
  CHECK(b.take(1'000, t0 + 3000ms));
  // Never above the burst, however long it rests.
  CHECK(b.level(t0 + 1h) == Approx(4'000));
  // A call larger than the bucket goes when the bucket is full, once.
  CHECK(b.take(10'000, t0 + 1h));
  CHECK_FALSE(b.take(1, t0 + 1h));
  CHECK(b.wait_for(1, t0 + 1h) > 0ms);
  // Unused estimate comes back, up to the cap.
  token_bucket c{60, 60, t0};
  CHECK(c.take(60, t0));
  c.give(30, t0);
  CHECK(c.level(t0) == Approx(30));
  token_bucket off{0, 0, t0};
  CHECK(off.unlimited());
  CHECK(off.take(1'000'000'000, t0));
}

TEST_CASE("the SSE reader takes events in any split, CRLF or LF", "[llm]") {
  const std::string stream =
    ": comment\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    sse_reader r;
    std::vector<std::string> events;
    r.feed(std::string_view{stream}.substr(0, cut), events);
    r.feed(std::string_view{stream}.substr(cut), events);
    INFO("cut at " << cut);
    REQUIRE(events.size() == 3);
    CHECK(events[0] == "{\"a\":1}");
    CHECK(events[1] == "line1\nline2");
    CHECK(events[2] == "[DONE]");
    CHECK(r.pending() == 0);
  }
  sse_reader r;
  std::vector<std::string> events;
  r.feed("data: partial", events);
  CHECK(events.empty());
  CHECK(r.pending() > 0);
}
