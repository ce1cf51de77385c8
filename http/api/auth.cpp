#include "http/api/auth.hpp"

#include "actors/key_directory.hpp"
#include "core/api_key.hpp"
#include "http/api/common.hpp"
#include "http/api/ratelimit.hpp"
#include "metrics/registry.hpp"

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

/// Adds the rate-limit headers to whatever the handler answers.
class header_responder final : public core::responder {
public:
  header_responder(core::responder_ptr inner, std::string headers)
    : inner_(std::move(inner)), headers_(std::move(headers)) {}
  void respond(core::api_response&& r) noexcept override {
    if (r.raw_headers.empty())
      r.raw_headers = std::move(headers_);
    else
      r.raw_headers += headers_;
    inner_->respond(std::move(r));
  }
  void on_cancel(std::function<void()> cancel) noexcept override {
    inner_->on_cancel(std::move(cancel));
  }

private:
  core::responder_ptr inner_;
  std::string headers_;  ///< rendered "Name: value\r\n" lines
};

std::int64_t now_epoch(const actors::services& svc) {
  return std::chrono::duration_cast<std::chrono::seconds>(svc.clock->now().time_since_epoch())
    .count();
}

std::uint64_t policy_code(std::string_view name) noexcept {
  if (name == "minute")
    return 0;
  if (name == "hour")
    return 1;
  if (name == "day")
    return 2;
  if (name == "route")
    return 3;
  return 4;
}

/// tollgate_limit_decisions_total, through the router's own cache: the
/// family's lock and label vectors are paid once per (route, policy,
/// outcome) and router, not per request.
void count_decision(actors::router_pointer self, const actors::services& svc,
                    const core::api_request& req, const actors::limit_report& r) {
  const std::uint64_t key = (std::uint64_t{req.route_id} << 8) | (policy_code(r.policy) << 1)
                            | (r.allowed ? 1U : 0U);
  auto& slot = self->state.counter_cache[key];
  if (slot == nullptr)
    slot = &svc.limit_decisions->with({req.route, r.policy, r.allowed ? "admitted" : "rejected"});
  slot->inc();
}

void reject_rate_limited(const actors::services& svc, const access& a, core::api_request& req,
                         core::responder_ptr& out, const actors::limit_report& r) {
  core::api_response res;
  res.status = 429;
  const auto now = now_epoch(svc);
  if (req.path.rfind("/v1/", 0) == 0)
    res.body = openai_error_body("Rate limit exceeded: retry in "
                                   + std::to_string(std::max<std::int64_t>(1, r.retry_after))
                                   + " s",
                                 "rate_limit_error", "rate_limit_exceeded");
  else
    res.body = rate_limited_body(r, now);
  static const std::vector<std::string> all = {"x-ratelimit", "ratelimit", "ietf"};
  add_rate_limit_headers(res.raw_headers, r, svc.limits ? dialects_for(*svc.limits, a.group) : all,
                         now);
  out->respond(std::move(res));
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

namespace {

/// A request waiting for its key's decision.
struct auth_call {
  access a;
  std::shared_ptr<const authed_handler> h;
  core::api_request req;
  core::responder_ptr out;
};
using auth_call_ptr = std::shared_ptr<auth_call>;

void on_decision(actors::router_pointer self, const actors::services& svc, auth_call& c,
                 actors::auth_decision& d) {
  if (d.limits.metered && svc.limit_decisions != nullptr)
    count_decision(self, svc, c.req, d.limits);
  if (d.code == core::errc::too_many_requests) {
    reject_rate_limited(svc, c.a, c.req, c.out, d.limits);
    return;
  }
  if (d.code != core::errc::ok) {
    respond_error(c.out, core::errc::unauthorized, d.detail);
    return;
  }
  if (d.limits.metered && svc.limits) {
    std::string headers;
    add_rate_limit_headers(headers, d.limits, dialects_for(*svc.limits, c.a.group),
                           now_epoch(svc));
    c.out = std::make_shared<header_responder>(std::move(c.out), std::move(headers));
  }
  // The router's own try/catch does not cover continuations; an escaping
  // exception would take the router down.
  try {
    authorise(c.a, self, svc, c.req, c.out, d.who, *c.h);
  } catch (const std::exception& e) {
    spdlog::error("request {}: handler for {} {} threw: {}", c.req.request_id, c.req.method,
                  c.req.path, e.what());
    respond_error(c.out, core::errc::internal, "Internal Server Error");
  }
}

// No timeout on these requests: a timeout is a timer in CAF's clock thread,
// which wakes twice per request (set and cancel) and cost every metered
// route measurably. The directory always answers within bounds of its own:
// its storage and accounts lookups carry 10 s timeouts, and a key actor
// that stops bounces what is still in its mailbox.
void ask_directory(actors::router_pointer self, const actors::services& svc, auth_call_ptr c,
                   std::string hash, actors::admission adm) {
  self
    ->request(svc.directory, caf::duration{caf::infinite}, actors::auth_atom::value,
              std::move(hash), std::move(adm))
    .then([self, &svc, c](actors::auth_decision& d) { on_decision(self, svc, *c, d); },
          [c](caf::error& e) { respond_error(c->out, e); });
}

actors::admission admission_of(const core::api_request& req) {
  return {req.method, req.route, 1, true};
}

/// The key's own actor when the directory lists it as live (one hop less);
/// else, or when that actor turns out to be stopping, the directory.
void ask_key(actors::router_pointer self, const actors::services& svc, auth_call_ptr c,
             std::string hash) {
  const auto k = svc.keys ? svc.keys->find(hash) : actors::key_actor{};
  if (!k) {
    auto adm = admission_of(c->req);
    ask_directory(self, svc, std::move(c), std::move(hash), std::move(adm));
    return;
  }
  // Its hash again from the request for the directory, on the rare way there.
  const auto again = [self, &svc](auth_call_ptr call) {
    bool present = false;
    const auto key = presented_key(call->req, present);
    auto adm = admission_of(call->req);
    ask_directory(self, svc, call, core::api_key::sha256_hex(key), std::move(adm));
  };
  auto adm = admission_of(c->req);
  adm.direct = true;
  self
    ->request(k, caf::duration{caf::infinite}, actors::auth_atom::value, std::move(hash),
              std::move(adm))
    .then(
      [self, &svc, c, again](actors::auth_decision& d) {
        if (d.moved)
          again(c);
        else
          on_decision(self, svc, *c, d);
      },
      [c, again](caf::error& e) {
        if (actors::key_actor_gone(e))
          again(c);  // it stopped meanwhile
        else
          respond_error(c->out, e);
      });
}

} // namespace

actors::route_handler authenticated(access a, authed_handler h) {
  auto handler = std::make_shared<const authed_handler>(std::move(h));
  return [a, handler](actors::router_pointer self, const actors::services& svc,
                      core::api_request& req, core::responder_ptr& out) {
    bool present = false;
    const auto key = presented_key(req, present);
    if (!present) {
      if (a.anonymous_ok && svc.allow_anonymous) {
        core::principal anon;
        anon.anonymous = true;
        anon.key_hash = "anonymous";
        authorise(a, self, svc, req, out, anon, *handler);
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
    ask_key(self, svc,
            std::make_shared<auth_call>(auth_call{a, handler, std::move(req), out}),
            std::move(hash));
  };
}

} // namespace tollgate::http::api
