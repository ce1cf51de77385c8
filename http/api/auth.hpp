#pragma once

#include "actors/router.hpp"
#include "core/account.hpp"

#include <functional>
#include <string_view>

namespace tollgate::http::api {

/// What a route asks of its caller.
struct access {
  const char* group = "";      ///< scope group: keys, account, admin, ...
  bool admin = false;          ///< role admin required
  bool anonymous_ok = false;   ///< keyless callers allowed when auth.allow_anonymous is on
};

/// A handler that runs only for an authenticated, authorised caller.
using authed_handler =
  std::function<void(actors::router_pointer self, const actors::services& svc,
                     core::api_request& req, core::responder_ptr& out,
                     const core::principal& who)>;

/// Wraps a handler with authentication (Bearer or X-API-Key; format and
/// checksum checked before any lookup; the key actor decides) and
/// authorisation (role, then scope: GET needs `read`, other methods
/// `write`). 401 and 403 carry the gateway's error body.
actors::route_handler authenticated(access a, authed_handler h);

/// The key a request presents: from `Authorization: Bearer` or `X-API-Key`.
/// `present` tells whether either header was there at all.
std::string_view presented_key(const core::api_request& req, bool& present) noexcept;

} // namespace tollgate::http::api
