#include "http/api/ratelimit.hpp"

#include "core/time_format.hpp"
#include "http/api/json.hpp"

#include <algorithm>
#include <charconv>

namespace tollgate::http::api {

namespace {

bool has(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

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
  out.reserve(out.size() + 400);
  const auto field = [&out](std::string_view name, std::int64_t value) {
    out.append(name);
    out.append(": ");
    append_int(out, value);
    out.append("\r\n");
  };
  if (has(dialects, "x-ratelimit")) {
    field("X-RateLimit-Limit", r.limit);
    field("X-RateLimit-Remaining", r.remaining);
    field("X-RateLimit-Reset", r.reset);
    field("X-RateLimit-Window", r.window);
  }
  if (has(dialects, "ratelimit")) {
    field("RateLimit-Limit", r.limit);
    field("RateLimit-Remaining", r.remaining);
    field("RateLimit-Reset", until_reset);
  }
  if (has(dialects, "ietf")) {
    out.append("RateLimit-Policy: ");
    bool first = true;
    for (const auto& p : r.policies) {
      if (!first)
        out.append(", ");
      first = false;
      out.append("\"").append(p.name).append("\";q=");
      append_int(out, p.limit);
      out.append(";w=");
      append_int(out, p.window);
    }
    out.append("\r\nRateLimit: \"").append(r.policy).append("\";r=");
    append_int(out, r.remaining);
    out.append(";t=");
    append_int(out, until_reset);
    out.append("\r\n");
  }
  if (!r.allowed)
    field("Retry-After", std::max<std::int64_t>(1, r.retry_after));
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
