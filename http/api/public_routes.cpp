#include "http/api/public_routes.hpp"

#include "core/time_format.hpp"
#include "http/api/json.hpp"
#include "metrics/registry.hpp"

#include <tollgate/version.hpp>

#include <caf/typed_event_based_actor.hpp>

namespace tollgate::http::api {

namespace {

std::int64_t uptime_seconds(const actors::services& svc) {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now()
                                                          - svc.started)
    .count();
}

core::api_response encode_health(const actors::services& svc, const actors::storage_health& h) {
  json_writer w;
  w->StartObject();
  w.field("status", h.ok ? "healthy" : "unhealthy");
  w.field("timestamp", core::iso8601(svc.clock->now()));
  w.field("version", core::version);
  w.field("uptime", uptime_seconds(svc));
  w.key("components");
  w->StartObject();
  w.key("storage");
  w->StartObject();
  w.field("status", h.ok ? "ok" : "failing");
  if (!h.ok)
    w.field("detail", h.detail);
  w.field("pending_writes", h.pending);
  w.field("schema_version", static_cast<std::uint64_t>(h.schema));
  w->EndObject();
  w->EndObject();
  w->EndObject();
  core::api_response res;
  res.status = h.ok ? 200 : 503;
  res.body = w.take();
  return res;
}

} // namespace

void health(actors::router_pointer self, const actors::services& svc, core::api_request&,
            core::responder_ptr& out) {
  self->request(svc.storage, svc.ask_timeout, actors::health_atom::value)
    .then([svc, out](actors::storage_health& h) { out->respond(encode_health(svc, h)); },
          [svc, out](caf::error& e) {
            actors::storage_health h;
            h.detail = "storage actor did not answer: " + to_string(e);
            out->respond(encode_health(svc, h));
          });
}

void ping(actors::router_pointer, const actors::services& svc, core::api_request&,
          core::responder_ptr& out) {
  json_writer w;
  w->StartObject();
  w.field("status", "pong");
  w.field("timestamp", core::iso8601(svc.clock->now()));
  w.field("uptime", uptime_seconds(svc));
  w.field("version", core::version);
  w->EndObject();
  core::api_response res;
  res.body = w.take();
  out->respond(std::move(res));
}

void metrics(actors::router_pointer, const actors::services& svc, core::api_request&,
             core::responder_ptr& out) {
  core::api_response res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  res.body = svc.metrics->expose();
  out->respond(std::move(res));
}

} // namespace tollgate::http::api
