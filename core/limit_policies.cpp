#include "core/limit_policies.hpp"

namespace tollgate::core {

std::optional<limit_algorithm> parse_limit_algorithm(std::string_view name) noexcept {
  if (name == "fixed_window")
    return limit_algorithm::fixed_window;
  if (name == "sliding_window")
    return limit_algorithm::sliding_window;
  if (name == "token_bucket")
    return limit_algorithm::token_bucket;
  return std::nullopt;
}

std::vector<limit_policy> key_policies(const limits_config& cfg, const user_record& user) {
  const auto algo = parse_limit_algorithm(cfg.algorithm).value_or(limit_algorithm::fixed_window);
  std::vector<limit_policy> out;
  const auto add = [&](const char* name, std::int64_t limit, std::chrono::seconds window) {
    if (limit <= 0)
      return;
    limit_policy p;
    p.name = name;
    p.algorithm = algo;
    p.limit = limit;
    p.window = window;
    p.burst = cfg.burst;
    out.push_back(std::move(p));
  };
  add("minute", user.requests_per_minute > 0 ? user.requests_per_minute : cfg.per_minute,
      std::chrono::seconds{60});
  std::int64_t hourly = user.requests_per_hour;
  if (hourly <= 0)
    for (const auto& [plan, per_hour] : cfg.plans_per_hour)
      if (plan == user.plan)
        hourly = per_hour;
  add("hour", hourly, std::chrono::seconds{3600});
  add("day", user.requests_per_day > 0 ? user.requests_per_day : cfg.requests_per_day,
      std::chrono::seconds{86400});
  return out;
}

std::string endpoint_of(std::string_view name) {
  if (name == "chat_completions")
    return "POST /v1/chat/completions";
  if (name == "image_generation")
    return "POST /images/generate";
  if (name == "responses")
    return "POST /v1/responses";
  const auto sp = name.find(' ');
  if (sp == std::string_view::npos || sp + 1 >= name.size() || name[sp + 1] != '/')
    return {};
  const auto method = name.substr(0, sp);
  for (const char* m : {"GET", "POST", "PUT", "PATCH", "DELETE"})
    if (method == m)
      return std::string{name};
  return {};
}

std::optional<limit_policy> route_policy(const limits_config& cfg, std::string_view method,
                                         std::string_view route, const user_record* user) {
  if (user != nullptr) {
    for (const auto& [name, limit] : user->custom_limits) {
      const auto endpoint = endpoint_of(name);
      const auto sp = endpoint.find(' ');
      if (limit > 0 && sp != std::string::npos && endpoint.compare(0, sp, method) == 0
          && std::string_view{endpoint}.substr(sp + 1) == route) {
        limit_policy p;
        p.name = "route";
        p.limit = limit;
        p.window = std::chrono::seconds{60};
        return p;
      }
    }
  }
  for (const auto& r : cfg.routes) {
    if (r.method != method || r.path != route)
      continue;
    limit_policy p;
    p.name = "route";
    p.algorithm = parse_limit_algorithm(r.algorithm).value_or(limit_algorithm::fixed_window);
    p.limit = r.limit;
    p.window = r.window;
    p.burst = r.burst;
    return p;
  }
  return std::nullopt;
}

std::vector<limit_policy> token_policies(const limits_config& cfg, const key_record& key) {
  std::vector<limit_policy> out;
  limit_policy day;
  day.name = "tokens_day";
  day.limit = key.tokens_per_day > 0 ? key.tokens_per_day : cfg.tokens_per_day;
  day.window = std::chrono::seconds{86400};
  if (day.limit > 0)
    out.push_back(day);
  limit_policy month;
  month.name = "tokens_month";
  month.kind = window_kind::calendar_month;
  month.limit = key.tokens_per_month > 0 ? key.tokens_per_month : cfg.tokens_per_month;
  if (month.limit > 0)
    out.push_back(month);
  return out;
}

} // namespace tollgate::core
