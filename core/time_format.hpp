#pragma once

#include <chrono>
#include <string>

namespace tollgate::core {

/// Formats a UTC time as ISO-8601 with a `Z` suffix, second precision:
/// `2024-01-01T00:00:00Z` (the gateway reference's timestamp shape).
std::string iso8601(std::chrono::system_clock::time_point t);

} // namespace tollgate::core
