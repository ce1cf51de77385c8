#include "http/api/auth.hpp"

#include "core/api_key.hpp"
#include "http/api/common.hpp"

#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

namespace tollgate::http::api {

namespace {

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool starts_with_bearer(std::string_view s) noexcept {
  if (s.size() < 7)
    return false;
  static constexpr std::string_view bearer = "bearer ";
  for (std::size_t i = 0; i < bearer.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
    if (c != bearer[i])
      return false;
  }
  return true;
}

void authorise(const access& a, actors::router_pointer self, const actors::services& svc,
               core::api_request& req, core::responder_ptr& out, const core::principal& who,
               const authed_handler& h) {
  if (a.admin && !who.is_admin()) {
    respond_error(out, core::errc::forbidden, "this route needs the admin role");
    return;
  }
  const bool write = req.method != "GET" && req.method != "HEAD";
  if (!who.scopes.allows(a.group, write)) {
    respond_error(out, core::errc::forbidden,
                  std::string{"this key's scope_permissions do not grant "}
                    + (write ? "write" : "read") + " access to '" + a.group + "'");
    return;
  }
  h(self, svc, req, out, who);
}

} // namespace

std::string_view presented_key(const core::api_request& req, bool& present) noexcept {
  const auto auth = req.header("authorization");
  if (!auth.empty()) {
    present = true;
    return starts_with_bearer(auth) ? trim(auth.substr(7)) : std::string_view{};
  }
  const auto key = req.header("x-api-key");
  present = !key.empty();
  return trim(key);
}

actors::route_handler authenticated(access a, authed_handler h) {
  return [a, h = std::move(h)](actors::router_pointer self, const actors::services& svc,
                               core::api_request& req, core::responder_ptr& out) {
    bool present = false;
    const auto key = presented_key(req, present);
    if (!present) {
      if (a.anonymous_ok && svc.allow_anonymous) {
        core::principal anon;
        anon.anonymous = true;
        anon.key_hash = "anonymous";
        authorise(a, self, svc, req, out, anon, h);
        return;
      }
      respond_error(out, core::errc::unauthorized,
                    "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'");
      return;
    }
    // Format and checksum first: a mistyped or invented key never costs a
    // lookup.
    if (!core::api_key::parse(key)) {
      respond_error(out, core::errc::unauthorized, "malformed API key");
      return;
    }
    auto hash = core::api_key::sha256_hex(key);
    self->request(svc.directory, svc.ask_timeout, actors::auth_atom::value, std::move(hash))
      .then(
        [a, h, self, &svc, req = std::move(req), out](actors::auth_decision& d) mutable {
          if (d.code != core::errc::ok) {
            respond_error(out, core::errc::unauthorized, d.detail);
            return;
          }
          // The router's own try/catch does not cover continuations; an
          // escaping exception would take the router down.
          try {
            authorise(a, self, svc, req, out, d.who, h);
          } catch (const std::exception& e) {
            spdlog::error("request {}: handler for {} {} threw: {}", req.request_id, req.method,
                          req.path, e.what());
            respond_error(out, core::errc::internal, "Internal Server Error");
          }
        },
        [out](caf::error& e) mutable { respond_error(out, e); });
  };
}

} // namespace tollgate::http::api
