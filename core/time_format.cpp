#include "core/time_format.hpp"

#include <cstdint>
#include <cstdio>

namespace tollgate::core {

namespace {

// Howard Hinnant's days-to-civil algorithm: exact for the proleptic
// Gregorian calendar, no locale, no gmtime_r and no time_t range limits.
void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2)
    ++y;
}

} // namespace

std::string iso8601(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto secs = duration_cast<seconds>(t.time_since_epoch()).count();
  std::int64_t days = secs / 86400;
  std::int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  std::int64_t y = 0;
  unsigned m = 0;
  unsigned d = 0;
  civil_from_days(days, y, m, d);
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02dZ",
                              static_cast<long long>(y), m, d, static_cast<int>(rem / 3600),
                              static_cast<int>(rem % 3600 / 60), static_cast<int>(rem % 60));
  return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0U);
}

} // namespace tollgate::core
