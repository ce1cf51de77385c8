#include "http/api/admin.hpp"

#include "core/time_format.hpp"
#include "http/api/common.hpp"
#include "http/api/json.hpp"
#include "http/api/parse.hpp"

#include <caf/typed_event_based_actor.hpp>

namespace tollgate::http::api {

namespace {

std::vector<std::string> permissions_of(const std::string& role) {
  if (role == core::role_admin)
    return {"api:read", "api:write", "admin:read", "admin:write"};
  return {"api:read", "api:write"};
}

/// Splices the audit entry's stored details object into the output as JSON.
void write_raw_object(json_writer& w, std::string_view json) {
  if (json.empty()) {
    w->StartObject();
    w->EndObject();
    return;
  }
  w->RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

} // namespace

void admin_create_user(actors::router_pointer self, const actors::services& svc,
                       core::api_request& req, core::responder_ptr& out,
                       const core::principal& who) {
  auto body = parse_create_user(req.body);
  if (!body) {
    respond_error(out, core::errc::bad_request, body.error);
    return;
  }
  actors::new_user nu;
  nu.username = body.value.username;
  nu.email = body.value.email;
  nu.auth_method = body.value.auth_method;
  nu.env = body.value.environment_tag;
  nu.ctx = audit_ctx(req, who);
  self->request(svc.accounts, svc.ask_timeout, actors::create_user_atom::value, std::move(nu))
    .then(
      [out](actors::created_key& ck) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.field("user_id", ck.user.id);
        w.field("username", ck.user.username);
        w.field("email", ck.user.email);
        w.field("api_key", ck.plaintext);
        w.field("key_id", ck.key.id);
        w.field("credits", credits(ck.user.credits_micro));
        w.field("role", ck.user.role);
        w.field("created_at", core::iso8601(ck.user.created_at));
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void list_roles(actors::router_pointer self, const actors::services& svc, core::api_request& req,
                core::responder_ptr& out, const core::principal&) {
  listing_query q;
  if (!parse_listing(req, out, q))
    return;
  std::string role;
  if (auto it = q.params.find("role"); it != q.params.end()) {
    role = it->second;
    if (role != core::role_user && role != core::role_admin) {
      respond_error(out, core::errc::bad_request, "role must be \"user\" or \"admin\"");
      return;
    }
  }
  const page_params range{q.limit, q.offset};
  self
    ->request(svc.accounts, svc.ask_timeout, actors::list_users_atom::value, role,
              actors::page{range.offset, range.limit})
    .then(
      [out, range](actors::user_list& list) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.key("data");
        w->StartArray();
        for (const auto& u : list.users) {
          w->StartObject();
          w.field("user_id", u.id);
          w.field("username", u.username);
          w.field("email", u.email);
          w.field("role", u.role);
          w.field("assigned_at", core::iso8601(u.role_assigned_at));
          w->EndObject();
        }
        w->EndArray();
        w.field("total", list.total);
        w.field("limit", range.limit);
        w.field("offset", range.offset);
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void get_role(actors::router_pointer self, const actors::services& svc, core::api_request& req,
              core::responder_ptr& out, const core::principal&) {
  auto id = parse_id(req.param("user_id"), "user_id");
  if (!id) {
    respond_error(out, core::errc::bad_request, id.error);
    return;
  }
  self->request(svc.accounts, svc.ask_timeout, actors::get_user_atom::value, id.value)
    .then(
      [out](core::user_record& u) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.field("user_id", u.id);
        w.field("role", u.role);
        w.string_list("permissions", permissions_of(u.role));
        w.field("assigned_at", core::iso8601(u.role_assigned_at));
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void set_role(actors::router_pointer self, const actors::services& svc, core::api_request& req,
              core::responder_ptr& out, const core::principal& who) {
  auto id = parse_id(req.param("user_id"), "user_id");
  if (!id) {
    respond_error(out, core::errc::bad_request, id.error);
    return;
  }
  auto body = parse_role(req.body);
  if (!body) {
    respond_error(out, core::errc::bad_request, body.error);
    return;
  }
  actors::role_change change{id.value, body.value.role, body.value.reason, audit_ctx(req, who)};
  self->request(svc.accounts, svc.ask_timeout, actors::set_role_atom::value, std::move(change))
    .then(
      [out](actors::role_changed& rc) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.field("message", "Role updated successfully");
        w.field("user_id", rc.user.id);
        w.field("old_role", rc.old_role);
        w.field("new_role", rc.user.role);
        w.field("updated_at", core::iso8601(rc.user.role_assigned_at));
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void audit_logs(actors::router_pointer self, const actors::services& svc, core::api_request& req,
                core::responder_ptr& out, const core::principal&) {
  listing_query q;
  if (!parse_listing(req, out, q))
    return;
  actors::audit_filter f;
  f.range = {q.offset, q.limit};
  for (const auto& [name, value] : q.params) {
    if (name == "user_id") {
      auto id = parse_id(value, "user_id");
      if (!id) {
        respond_error(out, core::errc::bad_request, id.error);
        return;
      }
      f.user_id = id.value;
    } else if (name == "action") {
      f.action = value;
    } else if (name == "resource_type") {
      f.resource_type = value;
    } else if (name == "start_date" || name == "end_date") {
      auto t = core::parse_iso8601(value);
      if (!t) {
        respond_error(out, core::errc::bad_request,
                      name + " must be an ISO-8601 date or time, e.g. 2024-01-01 or "
                             "2024-01-01T00:00:00Z");
        return;
      }
      // A date-only end_date includes that whole day.
      if (name == "end_date" && value.size() == 10)
        *t += 86399;
      (name == "start_date" ? f.start : f.end) = *t;
    } else if (name != "limit" && name != "offset") {
      respond_error(out, core::errc::bad_request, "unknown query parameter '" + name + "'");
      return;
    }
  }
  if (f.start != 0 && f.end != 0 && f.start > f.end) {
    respond_error(out, core::errc::bad_request, "start_date must not be after end_date");
    return;
  }
  const page_params range{q.limit, q.offset};
  self->request(svc.accounts, svc.ask_timeout, actors::audit_atom::value, std::move(f))
    .then(
      [out, range](actors::audit_page& page) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.key("data");
        w->StartArray();
        for (const auto& a : page.entries) {
          w->StartObject();
          w.field("id", "log_" + std::to_string(a.id));
          w.field("user_id", a.user_id);
          w.field("action", a.action);
          w.field("resource_type", a.resource_type);
          w.field("resource_id", a.resource_id);
          w.key("details");
          write_raw_object(w, a.details_json);
          w.field("ip_address", a.ip_address);
          w.field("user_agent", a.user_agent);
          w.field("timestamp", core::iso8601(a.timestamp));
          w->EndObject();
        }
        w->EndArray();
        w.field("total", page.total);
        w.field("limit", range.limit);
        w.field("offset", range.offset);
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

} // namespace tollgate::http::api
