#pragma once

// Which policies apply to a key, from the configuration and the admin
// overrides on its user and key. Pure; the key actor calls it whenever the
// user or key changes and keeps the counters of policies that stay.

#include "core/account.hpp"
#include "core/config.hpp"
#include "core/rate_limit.hpp"

#include <optional>
#include <string_view>
#include <vector>

namespace tollgate::core {

/// "fixed_window", "sliding_window", "token_bucket"; nullopt otherwise.
std::optional<limit_algorithm> parse_limit_algorithm(std::string_view name) noexcept;

/// The key-wide request policies, named "minute", "hour" and "day". An
/// override on the user replaces the configured policy of the same kind.
std::vector<limit_policy> key_policies(const limits_config& cfg, const user_record& user);

/// The route's own policy, named "route": the user's per-endpoint override
/// (per minute) when there is one, else the table's entry, else none.
std::optional<limit_policy> route_policy(const limits_config& cfg, std::string_view method,
                                         std::string_view route, const user_record* user = nullptr);

/// "chat_completions" -> "POST /v1/chat/completions" and the like; a
/// "METHOD /path" name is returned as it is; empty for an unknown name.
std::string endpoint_of(std::string_view custom_limit_name);

/// Token budgets, "tokens_day" and "tokens_month" (day resets at 00:00 UTC,
/// month on the 1st at 00:00 UTC); the key's overrides replace the defaults.
std::vector<limit_policy> token_policies(const limits_config& cfg, const key_record& key);

} // namespace tollgate::core
