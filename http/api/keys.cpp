#include "http/api/keys.hpp"

#include "core/api_key.hpp"
#include "core/time_format.hpp"
#include "http/api/common.hpp"
#include "http/api/json.hpp"
#include "http/api/parse.hpp"

#include <caf/typed_event_based_actor.hpp>

namespace tollgate::http::api {

namespace {

void write_scopes(json_writer& w, const core::scope_permissions& s) {
  w.key("scope_permissions");
  w->StartObject();
  w.string_list("read", s.read);
  w.string_list("write", s.write);
  w->EndObject();
}

void write_time_or_null(json_writer& w, const char* k, std::int64_t t) {
  if (t == 0)
    w.null_field(k);
  else
    w.field(k, core::iso8601(t));
}

/// A key as listings show it: masked, never the hash in full.
void write_key(json_writer& w, const core::key_record& k) {
  w->StartObject();
  w.field("id", k.id);
  w.field("user_id", k.user_id);
  w.field("key_name", k.name);
  w.field("api_key", core::api_key::mask(core::api_key::prefix_of(k.env), k.last4));
  w.field("api_key_hash", core::api_key::short_hash(k.hash));
  w.field("environment_tag", k.env);
  w.field("is_active", k.active && !k.revoked);
  w.field("is_revoked", k.revoked);
  write_scopes(w, k.scopes);
  w.field("created_at", core::iso8601(k.created_at));
  write_time_or_null(w, "expires_at", k.expires_at);
  write_time_or_null(w, "revoked_at", k.revoked_at);
  w->EndObject();
}

/// The answer to a key creation: the only response that carries the key.
std::string created_body(const actors::created_key& ck) {
  json_writer w;
  w->StartObject();
  w.field("success", true);
  w.field("id", ck.key.id);
  w.field("user_id", ck.key.user_id);
  w.field("api_key", ck.plaintext);
  w.field("api_key_hash", core::api_key::short_hash(ck.key.hash));
  w.field("key_name", ck.key.name);
  w.field("environment_tag", ck.key.env);
  write_scopes(w, ck.key.scopes);
  w.field("created_at", core::iso8601(ck.key.created_at));
  write_time_or_null(w, "expires_at", ck.key.expires_at);
  w->EndObject();
  return w.take();
}

/// `{"success": true, "message": ..., "data": key}` (message optional).
std::string key_body(const core::key_record& k, const char* message = nullptr) {
  json_writer w;
  w->StartObject();
  w.field("success", true);
  if (message != nullptr)
    w.field("message", message);
  w.key("data");
  write_key(w, k);
  w->EndObject();
  return w.take();
}

std::string message_body(const char* message) {
  json_writer w;
  w->StartObject();
  w.field("success", true);
  w.field("message", message);
  w->EndObject();
  return w.take();
}

std::int64_t now_seconds(const actors::services& svc) {
  return std::chrono::duration_cast<std::chrono::seconds>(svc.clock->now().time_since_epoch())
    .count();
}

void create_key(actors::router_pointer self, const actors::services& svc,
                core::api_request& req, core::responder_ptr& out, const core::principal& who,
                bool admin_route) {
  auto body = parse_create_key(req.body, admin_route);
  if (!body) {
    respond_error(out, core::errc::bad_request, body.error);
    return;
  }
  actors::new_key nk;
  nk.user_id = body.value.user_id != 0 ? body.value.user_id : who.user_id;
  nk.name = body.value.key_name;
  nk.env = body.value.environment_tag;
  // A key hands out at most its own scopes (admins, on the admin route,
  // may grant any).
  nk.scopes = body.value.has_scopes ? body.value.scopes : who.scopes;
  if (!admin_route && !who.scopes.covers(nk.scopes)) {
    respond_error(out, core::errc::forbidden,
                  "scope_permissions: a key cannot grant more than its own scopes");
    return;
  }
  if (body.value.expires_in_days > 0)
    nk.expires_at = now_seconds(svc) + body.value.expires_in_days * 86400;
  nk.ctx = audit_ctx(req, who);
  self->request(svc.accounts, svc.ask_timeout, actors::create_key_atom::value, std::move(nk))
    .then([out](actors::created_key& ck) mutable { respond_json(out, created_body(ck)); },
          [out](caf::error& e) mutable { respond_error(out, e); });
}

void list_keys(actors::router_pointer self, const actors::services& svc, core::api_request& req,
               core::responder_ptr& out, std::uint64_t user_id, bool with_query_user) {
  listing_query q;
  if (!parse_listing(req, out, q))
    return;
  if (with_query_user) {
    if (auto it = q.params.find("user_id"); it != q.params.end()) {
      auto id = parse_id(it->second, "user_id");
      if (!id) {
        respond_error(out, core::errc::bad_request, id.error);
        return;
      }
      user_id = id.value;
    }
  }
  const page_params range{q.limit, q.offset};
  self
    ->request(svc.accounts, svc.ask_timeout, actors::list_keys_atom::value, user_id,
              actors::page{range.offset, range.limit})
    .then(
      [out, range](actors::key_list& list) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.key("data");
        w->StartArray();
        for (const auto& k : list.keys)
          write_key(w, k);
        w->EndArray();
        w.field("count", static_cast<std::uint64_t>(list.keys.size()));
        w.field("total", list.total);
        w.field("limit", range.limit);
        w.field("offset", range.offset);
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

/// Parses the key path parameter: a numeric id, or on admin routes also an
/// `api_key_hash` (16 lower-case hex characters, the token-tracking page's
/// way of naming a key).
bool key_access_of(core::api_request& req, core::responder_ptr& out, const core::principal& who,
                   const char* param, actors::key_access& a) {
  const auto text = req.param(param);
  const bool admin_route = std::string_view{param} == "id";
  if (admin_route && is_short_hash(text)) {
    a.short_hash = std::string{text};
  } else {
    auto id = parse_id(text, param);
    if (!id) {
      respond_error(out, core::errc::bad_request,
                    admin_route ? std::string{"id must be a positive integer or a 16-character "
                                              "api_key_hash"}
                                : id.error);
      return false;
    }
    a.key_id = id.value;
  }
  a.requester = who.user_id;
  a.admin = false;
  a.ctx = audit_ctx(req, who);
  return true;
}

/// Admin key routes: the key from the `id` parameter, one question to the
/// accounts actor, and `answer` on success.
template <class Atom, class Answer>
void ask_admin_key(actors::router_pointer self, const actors::services& svc,
                   core::api_request& req, core::responder_ptr& out, const core::principal& who,
                   Atom atom, Answer answer) {
  actors::key_access a;
  if (!key_access_of(req, out, who, "id", a))
    return;
  a.admin = true;
  self->request(svc.accounts, svc.ask_timeout, atom, std::move(a))
    .then([out, answer](core::key_record& k) mutable { respond_json(out, answer(k)); },
          [out](caf::error& e) mutable { respond_error(out, e); });
}

} // namespace

void create_own_key(actors::router_pointer self, const actors::services& svc,
                    core::api_request& req, core::responder_ptr& out,
                    const core::principal& who) {
  create_key(self, svc, req, out, who, false);
}

void list_own_keys(actors::router_pointer self, const actors::services& svc,
                   core::api_request& req, core::responder_ptr& out,
                   const core::principal& who) {
  list_keys(self, svc, req, out, who.user_id, false);
}

void update_own_key(actors::router_pointer self, const actors::services& svc,
                    core::api_request& req, core::responder_ptr& out,
                    const core::principal& who) {
  actors::key_update upd;
  if (!key_access_of(req, out, who, "key_id", upd.access))
    return;
  auto body = parse_update_key(req.body);
  if (!body) {
    respond_error(out, core::errc::bad_request, body.error);
    return;
  }
  if (body.value.key_name) {
    upd.set_name = true;
    upd.name = *body.value.key_name;
  }
  if (body.value.is_active) {
    upd.set_active = true;
    upd.active = *body.value.is_active;
  }
  if (body.value.scopes) {
    if (!who.scopes.covers(*body.value.scopes)) {
      respond_error(out, core::errc::forbidden,
                    "scope_permissions: a key cannot grant more than its own scopes");
      return;
    }
    upd.set_scopes = true;
    upd.scopes = *body.value.scopes;
  }
  self->request(svc.accounts, svc.ask_timeout, actors::update_key_atom::value, std::move(upd))
    .then(
      [out](core::key_record& k) mutable {
        respond_json(out, key_body(k, "API key updated successfully"));
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void delete_own_key(actors::router_pointer self, const actors::services& svc,
                    core::api_request& req, core::responder_ptr& out,
                    const core::principal& who) {
  actors::key_access a;
  if (!key_access_of(req, out, who, "key_id", a))
    return;
  self->request(svc.accounts, svc.ask_timeout, actors::delete_key_atom::value, std::move(a))
    .then([out](core::key_record&) mutable {
            respond_json(out, message_body("API key deleted successfully"));
          },
          [out](caf::error& e) mutable { respond_error(out, e); });
}

void admin_create_key(actors::router_pointer self, const actors::services& svc,
                      core::api_request& req, core::responder_ptr& out,
                      const core::principal& who) {
  create_key(self, svc, req, out, who, true);
}

void admin_list_keys(actors::router_pointer self, const actors::services& svc,
                     core::api_request& req, core::responder_ptr& out, const core::principal&) {
  list_keys(self, svc, req, out, 0, true);
}

void admin_get_key(actors::router_pointer self, const actors::services& svc,
                   core::api_request& req, core::responder_ptr& out,
                   const core::principal& who) {
  ask_admin_key(self, svc, req, out, who, actors::get_key_atom::value,
                [](const core::key_record& k) { return key_body(k); });
}

void admin_revoke_key(actors::router_pointer self, const actors::services& svc,
                      core::api_request& req, core::responder_ptr& out,
                      const core::principal& who) {
  ask_admin_key(self, svc, req, out, who, actors::revoke_key_atom::value,
                [](const core::key_record& k) {
                  return key_body(k, "API key revoked successfully");
                });
}

void admin_delete_key(actors::router_pointer self, const actors::services& svc,
                      core::api_request& req, core::responder_ptr& out,
                      const core::principal& who) {
  ask_admin_key(self, svc, req, out, who, actors::delete_key_atom::value,
                [](const core::key_record&) {
                  return message_body("API key deleted successfully");
                });
}

} // namespace tollgate::http::api
