#pragma once

// Pure request parsing and validation for the account routes. Every error
// message names the field it is about. Unit-tested on its own.

#include "core/account.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::http::api {

/// A value or the message of a 400.
template <class T>
struct parsed {
  T value{};
  std::string error;
  explicit operator bool() const noexcept { return error.empty(); }
};

/// Query string to decoded name/value pairs; a repeated name keeps the last.
/// Malformed percent escapes are an error.
parsed<std::map<std::string, std::string>> parse_query(std::string_view query);

/// A positive integer id from a path or query parameter.
parsed<std::uint64_t> parse_id(std::string_view text, std::string_view field);

struct page_params {
  std::uint64_t limit = 100;
  std::uint64_t offset = 0;
};

/// `limit` (1..max_limit, default default_limit) and `offset` (>= 0).
parsed<page_params> parse_page(const std::map<std::string, std::string>& q,
                               std::uint64_t default_limit, std::uint64_t max_limit);

struct create_key_body {
  std::uint64_t user_id = 0;  ///< admin route only; 0: the caller
  std::string key_name = "API Key";
  std::string environment_tag = "live";
  core::scope_permissions scopes;
  bool has_scopes = false;           ///< false: the new key gets the caller's scopes
  std::int64_t expires_in_days = 0;  ///< 0: never expires
};

/// POST /user/api-keys (allow_user_id false) and POST /api/v1/admin/api-keys.
parsed<create_key_body> parse_create_key(std::string_view body, bool allow_user_id);

struct update_key_body {
  std::optional<std::string> key_name;
  std::optional<bool> is_active;
  std::optional<core::scope_permissions> scopes;
};

/// PUT /user/api-keys/{key_id}: at least one field.
parsed<update_key_body> parse_update_key(std::string_view body);

struct create_user_body {
  std::string username;
  std::string email;
  std::string auth_method = "email";
  std::string environment_tag = "live";
};

/// POST /admin/create.
parsed<create_user_body> parse_create_user(std::string_view body);

struct role_body {
  std::string role;
  std::string reason;
};

/// PUT /roles/{user_id}.
parsed<role_body> parse_role(std::string_view body);

} // namespace tollgate::http::api

namespace tollgate::http::api {

struct token_limits_body {
  std::int64_t daily_limit = -1;    ///< -1: unchanged; 0: back to the default
  std::int64_t monthly_limit = -1;
};

/// POST /api/admin/set-limits/{api_key_hash}: daily_limit and/or monthly_limit.
parsed<token_limits_body> parse_token_limits(std::string_view body);

struct user_limits_body {
  std::uint64_t user_id = 0;
  std::int64_t per_minute = -1;  ///< -1: unchanged; 0: back to the default
  std::int64_t per_hour = -1;
  std::int64_t per_day = -1;
  std::vector<std::pair<std::string, std::int64_t>> custom;  ///< custom_limits
  std::string reason;
};

/// POST /admin/rate-limits: user_id and at least one of requests_per_minute,
/// requests_per_hour, requests_per_day, custom_limits ({"chat_completions": 50,
/// "GET /user/balance": 10}: requests per minute per endpoint; 0 removes).
parsed<user_limits_body> parse_user_limits(std::string_view body);

struct add_credits_body {
  std::uint64_t user_id = 0;
  std::int64_t credits_micro = 0;
  std::string reason;
};

/// POST /admin/add_credits: user_id, credits (> 0, at most 6 decimals), reason.
parsed<add_credits_body> parse_add_credits(std::string_view body);

/// True for an api_key_hash: 16 lower-case hex characters.
bool is_short_hash(std::string_view s) noexcept;

} // namespace tollgate::http::api
