#include "core/clock.hpp"
#include "core/errc.hpp"
#include "core/request_id.hpp"
#include "core/time_format.hpp"

#include <catch2/catch.hpp>

#include <set>

using namespace tollgate::core;
using namespace std::chrono;

namespace {
std::chrono::system_clock::time_point at(std::int64_t epoch_seconds) {
  return std::chrono::system_clock::time_point{seconds{epoch_seconds}};
}
} // namespace

TEST_CASE("iso8601 formats UTC with a Z suffix", "[core][time]") {
  CHECK(iso8601(at(0)) == "1970-01-01T00:00:00Z");
  CHECK(iso8601(at(1640995200)) == "2022-01-01T00:00:00Z");
  CHECK(iso8601(at(1704067199)) == "2023-12-31T23:59:59Z");
  // Leap day and the day after it.
  CHECK(iso8601(at(1709164800)) == "2024-02-29T00:00:00Z");
  CHECK(iso8601(at(1709251200)) == "2024-03-01T00:00:00Z");
  // 2100 is not a leap year.
  CHECK(iso8601(at(4107542400)) == "2100-03-01T00:00:00Z");
  // Before the epoch.
  CHECK(iso8601(at(-1)) == "1969-12-31T23:59:59Z");
  // Sub-second parts are truncated, not rounded.
  CHECK(iso8601(at(59) + milliseconds{999}) == "1970-01-01T00:00:59Z");
}

TEST_CASE("manual clock moves only when told", "[core][clock]") {
  manual_clock c{at(100)};
  CHECK(c.now() == at(100));
  c.advance(seconds{5});
  CHECK(c.now() == at(105));
  c.set(at(7));
  CHECK(c.now() == at(7));
}

TEST_CASE("request ids: client ids are validated, generated ids are unique", "[core][request_id]") {
  CHECK(valid_request_id("abc-123_XYZ.:/+="));
  CHECK_FALSE(valid_request_id(""));
  CHECK_FALSE(valid_request_id("has space"));
  CHECK_FALSE(valid_request_id("quote\""));
  CHECK_FALSE(valid_request_id("new\nline"));
  CHECK_FALSE(valid_request_id(std::string(129, 'a')));
  CHECK(valid_request_id(std::string(128, 'a')));

  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    auto id = new_request_id();
    REQUIRE(id.size() == 32);
    REQUIRE(valid_request_id(id));
    seen.insert(std::move(id));
  }
  CHECK(seen.size() == 10000);
}

TEST_CASE("every errc has a distinct name", "[core][errc]") {
  std::set<std::string_view> names;
  for (int i = 0; i <= static_cast<int>(errc::payment_required); ++i)
    names.insert(to_string(static_cast<errc>(i)));
  CHECK(names.size() == static_cast<std::size_t>(errc::payment_required) + 1);
  CHECK(to_string(errc::not_found) == "not_found");
}
