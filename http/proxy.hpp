#pragma once

#include "actors/router.hpp"
#include "core/config.hpp"

#include <memory>

namespace tollgate::http::client {
class client;
}

namespace tollgate::http {

/// The handler of a generic proxy route (a [[routes]] table): forwards the
/// request (method, path, query, headers, body) to the backend without the
/// client's key, with the backend's credential when configured, and relays
/// the backend's answer (status, headers, body as it arrives) with the
/// rate-limit headers added. The request body is buffered (up to
/// server.body_limit_bytes); the response body streams.
actors::route_handler proxy_handler(const core::proxy_route_config& cfg,
                                    std::shared_ptr<client::client> http);

} // namespace tollgate::http
