#include "http/routes.hpp"

#include "http/api/admin.hpp"
#include "http/api/auth.hpp"
#include "http/api/chat_sessions.hpp"
#include "http/api/credits.hpp"
#include "http/api/keys.hpp"
#include "http/api/llm_routes.hpp"
#include "http/api/public_routes.hpp"
#include "http/api/usage.hpp"
#include "http/errors.hpp"
#include "http/proxy.hpp"

#include <algorithm>
#include <stdexcept>

namespace tollgate::http {

route_set build_routes(std::shared_ptr<const llm::context> llm,
                       const std::vector<core::proxy_route_config>& proxies,
                       std::shared_ptr<client::client> http) {
  auto table = std::make_shared<route_table>();
  auto handlers = std::make_shared<actors::handler_table>();
  handlers->error = [](core::errc e, std::string_view detail) {
    return error_response(e, detail);
  };
  const auto add = [&](const std::string& method, const std::string& pattern,
                       actors::route_handler h, bool metered, bool proxy = false,
                       bool upstream = false) {
    const auto id = table->add(method, pattern, metered, proxy, upstream);
    handlers->routes.resize(id + 1U);
    handlers->routes[id] = std::move(h);
  };

  // Public routes: no key, not metered.
  add("GET", "/health", api::health, false);
  add("GET", "/ping", api::ping, false);
  add("GET", "/metrics", api::metrics, false);
  add("GET", "/models", api::models_route(llm), false);
  add("GET", "/models/providers", api::providers_route(llm), false);

  using api::access;
  using api::authenticated;
  const access keys{"keys"};
  const access account{"account"};
  const access admin{"admin", true};
  const access usage{"usage"};

  // Keys and account (gateway reference).
  add("POST", "/user/api-keys", authenticated(keys, api::create_own_key), true);
  add("GET", "/user/api-keys", authenticated(keys, api::list_own_keys), true);
  add("PUT", "/user/api-keys/{key_id}", authenticated(keys, api::update_own_key), true);
  add("DELETE", "/user/api-keys/{key_id}", authenticated(keys, api::delete_own_key), true);
  // LLM routes.
  const access models{"models"};
  const access chat{"chat"};
  const access agent{"chat", false, true};
  add("POST", "/v1/chat/completions", api::chat_completions_route(chat, llm), true, false, true);
  add("POST", "/v1/responses", api::responses_route(chat, llm), true, false, true);
  add("GET", "/v1/models", api::openai_models_route(models, llm), true);
  add("POST", "/images/generate", api::images_route(chat, llm), true, false, true);
  add("POST", "/api/send-message", api::send_message_route(agent, llm), true, false, true);
  add("GET", "/api/agent/status", api::agent_status_route(agent, llm), true);
  add("POST", "/chat/sessions", authenticated(chat, api::create_chat_session), true);
  add("GET", "/chat/sessions", authenticated(chat, api::list_chat_sessions), true);
  add("GET", "/chat/sessions/{session_id}", authenticated(chat, api::get_chat_session), true);
  add("DELETE", "/chat/sessions/{session_id}", authenticated(chat, api::delete_chat_session),
      true);
  add("GET", "/user/balance", authenticated(account, api::balance), true);
  add("GET", "/user/ledger", authenticated(account, api::my_ledger), true);
  add("POST", "/admin/add_credits", authenticated(admin, api::add_credits), true);

  // Admin: users, roles, audit (gateway reference).
  add("POST", "/admin/create", authenticated(admin, api::admin_create_user), true);
  add("GET", "/roles", authenticated(admin, api::list_roles), true);
  add("GET", "/roles/{user_id}", authenticated(admin, api::get_role), true);
  add("PUT", "/roles/{user_id}", authenticated(admin, api::set_role), true);
  add("GET", "/admin/audit-logs", authenticated(admin, api::audit_logs), true);

  // Admin key routes (scans API).
  add("POST", "/api/v1/admin/api-keys", authenticated(admin, api::admin_create_key), true);
  add("GET", "/api/v1/admin/api-keys", authenticated(admin, api::admin_list_keys), true);
  add("GET", "/api/v1/admin/api-keys/{id}", authenticated(admin, api::admin_get_key), true);
  add("POST", "/api/v1/admin/api-keys/{id}/revoke", authenticated(admin, api::admin_revoke_key),
      true);
  add("DELETE", "/api/v1/admin/api-keys/{id}", authenticated(admin, api::admin_delete_key), true);

  // Usage and limits (token-tracking page, gateway reference, scans API).
  add("GET", "/api/usage", authenticated(usage, api::my_usage), true);
  add("GET", "/api/rate-limit/status", authenticated(usage, api::rate_limit_status), true);
  add("POST", "/api/admin/set-limits/{api_key_hash}",
      authenticated(admin, api::admin_set_token_limits), true);
  add("GET", "/api/admin/usage/{api_key_hash}", authenticated(admin, api::admin_key_usage), true);
  add("GET", "/api/admin/all-usage", authenticated(admin, api::admin_all_usage), true);
  add("DELETE", "/api/admin/reset-usage/{api_key_hash}",
      authenticated(admin, api::admin_reset_usage), true);
  add("GET", "/admin/rate-limits/{user_id}", authenticated(admin, api::admin_get_rate_limits),
      true);
  add("POST", "/admin/rate-limits", authenticated(admin, api::admin_set_rate_limits), true);
  add("GET", "/api/v1/admin/api-keys/{id}/rate-limit",
      authenticated(admin, api::admin_key_rate_limit), true);

  // Generic proxy routes, after tollgate's own: a template of the gateway's
  // own (same method and pattern) stays the gateway's.
  if (!proxies.empty() && http == nullptr)
    throw std::invalid_argument("proxy routes need an upstream client");
  for (const auto& p : proxies) {
    auto h = proxy_handler(p, http);
    std::vector<std::string> templates{p.prefix + "/{*rest}"};
    for (const auto& t : p.paths)
      if (std::find(templates.begin(), templates.end(), t) == templates.end())
        templates.push_back(t);
    for (const auto& t : templates)
      for (const char* method : {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
        bool own = false;
        for (const auto& r : table->routes())
          own = own || (r.method == method && r.pattern == t);
        if (!own)
          add(method, t, h, true, true);
      }
  }

  return {std::move(table), std::move(handlers)};
}

} // namespace tollgate::http
