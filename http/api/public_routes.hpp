#pragma once

#include "actors/router.hpp"

namespace tollgate::http::api {

/// GET /health: liveness plus component states (storage ok/failing, uptime).
/// 200 when every component is ok, 503 otherwise.
void health(actors::router_pointer self, const actors::services& svc, core::api_request& req,
            core::responder_ptr& out);

/// GET /ping: `{"status": "pong", "timestamp", "uptime", "version"}`.
void ping(actors::router_pointer self, const actors::services& svc, core::api_request& req,
          core::responder_ptr& out);

/// GET /metrics: Prometheus text format 0.0.4.
void metrics(actors::router_pointer self, const actors::services& svc, core::api_request& req,
             core::responder_ptr& out);

} // namespace tollgate::http::api
