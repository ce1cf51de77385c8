#include "http/api/ratelimit.hpp"

#include "core/time_format.hpp"
#include "http/api/json.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace tollgate::http::api {

namespace {

bool has(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

/// Writes fields at `p`, into room the caller sized: the headers are about
/// fifteen short pieces per response, and one append each (a capacity
/// check and a call) cost more than the bytes. Writing past `end` throws
/// (a wrong bound is a bug, never an overrun).
struct field_writer {
  char* p;
  char* end;
  void put(std::string_view s) {
    if (s.size() > static_cast<std::size_t>(end - p))
      throw std::length_error("rate-limit headers: room too small");
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void put(std::int64_t v) {
    const auto r = std::to_chars(p, end, v);
    if (r.ec != std::errc{})
      throw std::length_error("rate-limit headers: room too small");
    p = r.ptr;
  }
  void field(std::string_view name, std::int64_t value) {
    put(name);
    put(": ");
    put(value);
    put("\r\n");
  }
  static constexpr std::size_t max_int = 20;  ///< "-9223372036854775808"
};

} // namespace

const std::vector<std::string>& dialects_for(const core::limits_config& cfg,
                                             std::string_view group) {
  for (const auto& [g, d] : cfg.headers_by_group)
    if (g == group)
      return d;
  return cfg.headers;
}

void add_rate_limit_headers(std::string& out, const actors::limit_report& r,
                            const std::vector<std::string>& dialects, std::int64_t now_epoch) {
  if (!r.metered)
    return;
  const auto until_reset = std::max<std::int64_t>(0, r.reset - now_epoch);
  const bool x_ratelimit = has(dialects, "x-ratelimit");
  const bool ratelimit = has(dialects, "ratelimit");
  const bool ietf = has(dialects, "ietf");
  // An upper bound of what follows: the fixed text (about 210 bytes), the
  // names, the numbers (eight in plain fields, two more in RateLimit).
  std::size_t room = 256 + 8 * field_writer::max_int;
  if (ietf) {
    room += r.policy.size() + 2 * field_writer::max_int;
    for (const auto& p : r.policies)
      room += p.name.size() + 12 + 2 * field_writer::max_int;
  }
  const auto old = out.size();
  out.resize(old + room);
  field_writer w{out.data() + old, out.data() + out.size()};
  try {
    if (x_ratelimit) {
      w.field("X-RateLimit-Limit", r.limit);
      w.field("X-RateLimit-Remaining", r.remaining);
      w.field("X-RateLimit-Reset", r.reset);
      w.field("X-RateLimit-Window", r.window);
    }
    if (ratelimit) {
      w.field("RateLimit-Limit", r.limit);
      w.field("RateLimit-Remaining", r.remaining);
      w.field("RateLimit-Reset", until_reset);
    }
    if (ietf) {
      w.put("RateLimit-Policy: ");
      bool first = true;
      for (const auto& p : r.policies) {
        if (!first)
          w.put(", ");
        first = false;
        w.put("\"");
        w.put(p.name);
        w.put("\";q=");
        w.put(p.limit);
        w.put(";w=");
        w.put(p.window);
      }
      w.put("\r\nRateLimit: \"");
      w.put(r.policy);
      w.put("\";r=");
      w.put(r.remaining);
      w.put(";t=");
      w.put(until_reset);
      w.put("\r\n");
    }
    if (!r.allowed)
      w.field("Retry-After", std::max<std::int64_t>(1, r.retry_after));
  } catch (...) {
    out.resize(old);  // no room's worth of NULs left behind
    throw;
  }
  out.resize(static_cast<std::size_t>(w.p - out.data()));
}

std::string rate_limited_body(const actors::limit_report& r, std::int64_t now_epoch) {
  const auto retry = std::max<std::int64_t>(1, r.retry_after);
  const auto detail = "Rate limit exceeded: " + std::to_string(r.limit) + " requests per "
                      + std::to_string(r.window) + " s (" + r.policy + " limit); retry in "
                      + std::to_string(retry) + " s";
  json_writer w;
  w->StartObject();
  w.field("detail", detail);
  w.field("status_code", std::int64_t{429});
  w.field("timestamp", core::iso8601(now_epoch));
  w.field("error", "rate_limit_exceeded");
  w.field("message", "Too many requests. Rate limit exceeded.");
  w.field("type", "rate_limit_error");
  w.field("retry_after", retry);
  w.field("policy", r.policy);
  w->EndObject();
  return w.take();
}

std::string token_limited_body(const actors::token_reservation& r, std::int64_t now_epoch) {
  const bool daily = r.budget != "tokens_month";
  const auto remaining = daily ? r.remaining_day : r.remaining_month;
  const auto error = std::string{daily ? "Daily" : "Monthly"} + " token limit exceeded. Remaining: "
                     + std::to_string(remaining) + " tokens";
  json_writer w;
  w->StartObject();
  w.field("detail", error);
  w.field("status_code", std::int64_t{429});
  w.field("timestamp", core::iso8601(now_epoch));
  w.field("status", "token_limit_exceeded");
  w.field("error", error);
  w.field("type", "token_limit_error");
  w.field("estimated_tokens", r.tokens);
  w.field("remaining_tokens", remaining);
  w.field("retry_after", std::max<std::int64_t>(1, r.retry_after));
  w->EndObject();
  return w.take();
}

std::string openai_error_body(std::string_view message, std::string_view type,
                              std::string_view code) {
  json_writer w;
  w->StartObject();
  w.key("error");
  w->StartObject();
  w.field("message", message);
  w.field("type", type);
  w.field("code", code);
  w->EndObject();
  w->EndObject();
  return w.take();
}

} // namespace tollgate::http::api
