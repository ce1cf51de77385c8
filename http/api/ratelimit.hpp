#pragma once

#include "actors/interfaces.hpp"
#include "core/config.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace tollgate::http::api {

/// Appends the rate-limit headers of every dialect in `dialects` to `out`,
/// rendered as "Name: value\r\n" lines (core::api_response::raw_headers):
///  - "x-ratelimit": X-RateLimit-Limit, -Remaining, -Reset (UTC epoch
///    seconds), -Window (seconds): the usage guide, gateway reference and
///    scans API;
///  - "ratelimit": RateLimit-Limit, -Remaining, -Reset (seconds until the
///    reset): the public API page;
///  - "ietf": the IETF draft's structured RateLimit-Policy (every policy
///    that applied) and RateLimit (the most restrictive one).
/// On a rejection, Retry-After (whole seconds, >= 1) as well.
void add_rate_limit_headers(std::string& out, const actors::limit_report& r,
                            const std::vector<std::string>& dialects, std::int64_t now_epoch);

/// The dialects configured for a route group.
const std::vector<std::string>& dialects_for(const core::limits_config& cfg,
                                             std::string_view group);

/// The 429 body that serves every document: the gateway reference's error
/// fields, the scans API's `error`/`message`, and `type`/`retry_after`.
std::string rate_limited_body(const actors::limit_report& r, std::int64_t now_epoch);

/// The 429 body for a spent token budget (token-tracking page), with the
/// gateway reference's fields: {"detail", "status_code", "timestamp",
/// "status": "token_limit_exceeded", "error": "Daily token limit exceeded.
/// Remaining: N tokens", "type": "token_limit_error", "estimated_tokens",
/// "remaining_tokens", "retry_after"}.
std::string token_limited_body(const actors::token_reservation& r, std::int64_t now_epoch);

/// OpenAI's error envelope for /v1/ routes: {"error": {"message", "type", "code"}}.
std::string openai_error_body(std::string_view message, std::string_view type,
                              std::string_view code);

} // namespace tollgate::http::api
