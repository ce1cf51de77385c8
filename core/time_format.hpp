#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::core {

/// Formats a UTC time as ISO-8601 with a `Z` suffix, second precision:
/// `2024-01-01T00:00:00Z` (the gateway reference's timestamp shape).
std::string iso8601(std::chrono::system_clock::time_point t);

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm), and back.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept;
void civil_from_days(std::int64_t days, std::int64_t& y, unsigned& m, unsigned& d) noexcept;

/// The same, from UTC epoch seconds.
std::string iso8601(std::int64_t epoch_seconds);

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SS` with an
/// optional fraction and `Z` or `+00:00`, to UTC epoch seconds.
std::optional<std::int64_t> parse_iso8601(std::string_view text) noexcept;

} // namespace tollgate::core
