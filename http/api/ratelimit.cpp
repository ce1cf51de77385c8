#include "http/api/ratelimit.hpp"

#include "core/time_format.hpp"
#include "http/api/json.hpp"

#include <algorithm>

namespace tollgate::http::api {

namespace {

bool has(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

} // namespace

const std::vector<std::string>& dialects_for(const core::limits_config& cfg,
                                             std::string_view group) {
  for (const auto& [g, d] : cfg.headers_by_group)
    if (g == group)
      return d;
  return cfg.headers;
}

void add_rate_limit_headers(core::header_list& out, const actors::limit_report& r,
                            const std::vector<std::string>& dialects, std::int64_t now_epoch) {
  if (!r.metered)
    return;
  const auto until_reset = std::max<std::int64_t>(0, r.reset - now_epoch);
  if (has(dialects, "x-ratelimit")) {
    out.emplace_back("X-RateLimit-Limit", std::to_string(r.limit));
    out.emplace_back("X-RateLimit-Remaining", std::to_string(r.remaining));
    out.emplace_back("X-RateLimit-Reset", std::to_string(r.reset));
    out.emplace_back("X-RateLimit-Window", std::to_string(r.window));
  }
  if (has(dialects, "ratelimit")) {
    out.emplace_back("RateLimit-Limit", std::to_string(r.limit));
    out.emplace_back("RateLimit-Remaining", std::to_string(r.remaining));
    out.emplace_back("RateLimit-Reset", std::to_string(until_reset));
  }
  if (has(dialects, "ietf")) {
    std::string policy;
    for (const auto& p : r.policies) {
      if (!policy.empty())
        policy += ", ";
      policy += '"' + p.name + "\";q=" + std::to_string(p.limit) + ";w=" + std::to_string(p.window);
    }
    out.emplace_back("RateLimit-Policy", std::move(policy));
    out.emplace_back("RateLimit", '"' + r.policy + "\";r=" + std::to_string(r.remaining)
                                    + ";t=" + std::to_string(until_reset));
  }
  if (!r.allowed)
    out.emplace_back("Retry-After", std::to_string(std::max<std::int64_t>(1, r.retry_after)));
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
