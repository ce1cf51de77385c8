#pragma once

#include "core/api_message.hpp"
#include "core/errc.hpp"

#include <chrono>
#include <string>
#include <string_view>

namespace tollgate::http {

/// The one errc -> HTTP status table.
unsigned status_of(core::errc e) noexcept;

/// `{"detail": ..., "status_code": N, "timestamp": "ISO-8601"}`, the gateway
/// reference's error body.
std::string error_body(unsigned status, std::string_view detail,
                       std::chrono::system_clock::time_point now);

/// A complete JSON error response for `e`, timestamped with the system clock.
core::api_response error_response(core::errc e, std::string_view detail);

/// Reason phrase used as the default detail ("Not Found").
std::string_view reason_of(unsigned status) noexcept;

} // namespace tollgate::http
