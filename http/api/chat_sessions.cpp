#include "http/api/chat_sessions.hpp"

#include "core/time_format.hpp"
#include "http/api/common.hpp"
#include "http/api/json.hpp"
#include "http/api/parse.hpp"

#include <caf/typed_event_based_actor.hpp>
#include <rapidjson/document.h>

namespace tollgate::http::api {

namespace {

bool no_anonymous(core::responder_ptr& out, const core::principal& who) {
  if (!who.anonymous)
    return true;
  respond_error(out, core::errc::unauthorized, "chat sessions need an API key");
  return false;
}

bool session_id(core::api_request& req, core::responder_ptr& out, std::uint64_t& id) {
  auto parsed = parse_id(req.param("session_id"), "session_id");
  if (!parsed) {
    respond_error(out, core::errc::bad_request, parsed.error);
    return false;
  }
  id = parsed.value;
  return true;
}

void write_session(json_writer& w, const actors::chat_session& s, bool messages) {
  w->StartObject();
  w.field("id", s.id);
  w.field("name", s.name);
  w.field("description", s.description);
  w.field("message_count", messages ? static_cast<std::uint64_t>(s.messages.size())
                                    : s.message_count);
  w.field("created_at", core::iso8601(s.created_at));
  w.field("updated_at", core::iso8601(s.updated_at));
  if (messages) {
    w.key("messages");
    w->StartArray();
    for (const auto& m : s.messages) {
      w->StartObject();
      w.field("id", m.id);
      w.field("role", m.role);
      w.field("content", m.content);
      w.field("created_at", core::iso8601(m.created_at));
      w->EndObject();
    }
    w->EndArray();
  }
  w->EndObject();
}

} // namespace

void create_chat_session(actors::router_pointer self, const actors::services& svc,
                         core::api_request& req, core::responder_ptr& out,
                         const core::principal& who) {
  if (!no_anonymous(out, who))
    return;
  std::string name = "New Chat";
  std::string description;
  if (!req.body.empty()) {
    rapidjson::Document d;
    d.Parse(req.body.data(), req.body.size());
    if (d.HasParseError() || !d.IsObject()) {
      respond_error(out, core::errc::bad_request, "the body must be a JSON object");
      return;
    }
    if (d.HasMember("name")) {
      if (!d["name"].IsString() || d["name"].GetStringLength() == 0
          || d["name"].GetStringLength() > 200) {
        respond_error(out, core::errc::bad_request, "name must be a string of 1 to 200 characters");
        return;
      }
      name = d["name"].GetString();
    }
    if (d.HasMember("description")) {
      if (!d["description"].IsString() || d["description"].GetStringLength() > 2000) {
        respond_error(out, core::errc::bad_request,
                      "description must be a string of at most 2000 characters");
        return;
      }
      description = d["description"].GetString();
    }
  }
  self
    ->request(svc.chat, svc.ask_timeout, actors::create_atom::value, who.user_id, std::move(name),
              std::move(description))
    .then(
      [out](actors::chat_session& s) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.field("session_id", s.id);
        w.field("name", s.name);
        w.field("description", s.description);
        w.field("created_at", core::iso8601(s.created_at));
        w->EndObject();
        respond_json(out, w.take(), 201);
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void list_chat_sessions(actors::router_pointer self, const actors::services& svc,
                        core::api_request& req, core::responder_ptr& out,
                        const core::principal& who) {
  if (!no_anonymous(out, who))
    return;
  listing_query q;
  if (!parse_listing(req, out, q))
    return;
  self
    ->request(svc.chat, svc.ask_timeout, actors::list_atom::value, who.user_id,
              actors::page{q.offset, q.limit})
    .then(
      [out](actors::chat_session_list& l) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.key("data");
        w->StartArray();
        for (const auto& s : l.sessions)
          write_session(w, s, false);
        w->EndArray();
        w.field("count", static_cast<std::uint64_t>(l.sessions.size()));
        w.field("total", l.total);
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void get_chat_session(actors::router_pointer self, const actors::services& svc,
                      core::api_request& req, core::responder_ptr& out,
                      const core::principal& who) {
  std::uint64_t id = 0;
  if (!no_anonymous(out, who) || !session_id(req, out, id))
    return;
  self->request(svc.chat, svc.ask_timeout, actors::get_atom::value, who.user_id, id)
    .then(
      [out](actors::chat_session& s) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.key("session");
        write_session(w, s, true);
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void delete_chat_session(actors::router_pointer self, const actors::services& svc,
                         core::api_request& req, core::responder_ptr& out,
                         const core::principal& who) {
  std::uint64_t id = 0;
  if (!no_anonymous(out, who) || !session_id(req, out, id))
    return;
  self->request(svc.chat, svc.ask_timeout, actors::delete_atom::value, who.user_id, id)
    .then(
      [out](actors::chat_session&) mutable {
        respond_json(out, R"({"success":true,"message":"Chat session deleted successfully"})");
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

} // namespace tollgate::http::api
