#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::core {

/// Route groups a key may be scoped to. GET needs the group in `read`,
/// every other method in `write`; "*" allows every group.
struct scope_permissions {
  std::vector<std::string> read{"*"};
  std::vector<std::string> write{"*"};

  bool allows(std::string_view group, bool write_access) const noexcept;
  /// True when `other` grants nothing this does not: a key may only hand
  /// out what it has.
  bool covers(const scope_permissions& other) const noexcept;
};

/// Known route groups (the names `scope_permissions` may list).
bool valid_scope_group(std::string_view group) noexcept;
/// The groups, for messages: "keys, account, admin, ...".
std::string scope_group_list();

inline constexpr const char* role_user = "user";
inline constexpr const char* role_admin = "admin";

/// A user: who owns keys, credits and a plan. Times are UTC epoch seconds.
/// Credits are micro-credits (1 credit = 1,000,000), never floating point.
struct user_record {
  std::uint64_t id = 0;
  std::string username;
  std::string email;
  std::string role = role_user;
  std::int64_t credits_micro = 0;
  std::string plan = "free";
  std::string auth_method = "api_key";
  std::int64_t created_at = 0;
  std::int64_t role_assigned_at = 0;
  /// Admin overrides of the request limits; 0 keeps the configured policy.
  std::int64_t requests_per_minute = 0;
  std::int64_t requests_per_hour = 0;
  std::int64_t requests_per_day = 0;
  /// Per-endpoint overrides, requests per minute: "METHOD /route/{template}"
  /// or an alias (chat_completions, image_generation, responses).
  std::vector<std::pair<std::string, std::int64_t>> custom_limits;
};

/// An API key as stored: only its SHA-256, never the plaintext.
struct key_record {
  std::uint64_t id = 0;
  std::uint64_t user_id = 0;
  std::string hash;       ///< lower-case hex SHA-256 of the key
  std::string name;
  std::string env;        ///< live, test, staging, dev
  std::string last4;      ///< for the masked form
  scope_permissions scopes;
  bool active = true;     ///< a user may switch a key off and on again
  bool revoked = false;   ///< final
  std::int64_t created_at = 0;
  std::int64_t expires_at = 0;  ///< 0: never
  std::int64_t revoked_at = 0;
  std::int64_t updated_at = 0;
  /// Admin overrides of the token budgets; 0 keeps the configured budget.
  std::int64_t tokens_per_day = 0;
  std::int64_t tokens_per_month = 0;
};

/// One audit log line.
struct audit_entry {
  std::uint64_t id = 0;
  std::uint64_t user_id = 0;  ///< who acted (0: the system)
  std::string action;         ///< api_key_created, role_changed, ...
  std::string resource_type;  ///< api_key, user, role
  std::string resource_id;
  std::string details_json;   ///< a JSON object
  std::string ip_address;
  std::string user_agent;
  std::int64_t timestamp = 0;
};

/// Who is calling, as the key actor decided.
struct principal {
  bool anonymous = false;
  std::uint64_t user_id = 0;
  std::uint64_t key_id = 0;
  std::string role = role_user;
  std::string key_hash;
  std::string env;
  std::string last4;
  scope_permissions scopes;

  bool is_admin() const noexcept { return role == role_admin; }
};

/// Where an admin or user action came from, for the audit log.
struct audit_context {
  std::uint64_t user_id = 0;
  std::string ip_address;
  std::string user_agent;
};

/// Why a stored key may not be used now; empty when it may. Pure, so the
/// key actor's decision is unit-tested on its own.
std::string key_refusal(const key_record& key, std::int64_t now_epoch_seconds);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scope_permissions& x) {
  return f(x.read, x.write);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_record& x) {
  return f(x.id, x.username, x.email, x.role, x.credits_micro, x.plan, x.auth_method,
           x.created_at, x.role_assigned_at, x.requests_per_minute, x.requests_per_hour,
           x.requests_per_day, x.custom_limits);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_record& x) {
  return f(x.id, x.user_id, x.hash, x.name, x.env, x.last4, x.scopes, x.active, x.revoked,
           x.created_at, x.expires_at, x.revoked_at, x.updated_at, x.tokens_per_day,
           x.tokens_per_month);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_entry& x) {
  return f(x.id, x.user_id, x.action, x.resource_type, x.resource_id, x.details_json,
           x.ip_address, x.user_agent, x.timestamp);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, principal& x) {
  return f(x.anonymous, x.user_id, x.key_id, x.role, x.key_hash, x.env, x.last4, x.scopes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_context& x) {
  return f(x.user_id, x.ip_address, x.user_agent);
}

} // namespace tollgate::core
