#pragma once

#include <cstdint>
#include <string_view>

namespace tollgate::core {

/// The one error enum of the gateway. Every failure that reaches a client is
/// one of these; http/errors.cpp maps each to exactly one HTTP status.
enum class errc : std::uint8_t {
  ok = 0,
  bad_request,          ///< malformed request line, headers, query or JSON
  unauthorized,         ///< missing or invalid credentials
  forbidden,            ///< authenticated but not allowed
  not_found,            ///< unknown route or resource
  method_not_allowed,   ///< route exists, method does not
  conflict,             ///< the resource's state forbids the change (taken name, revoked key)
  request_timeout,      ///< the client did not send a whole request in time
  payload_too_large,    ///< body over the configured limit
  headers_too_large,    ///< header block over the configured limit
  too_many_requests,    ///< a limit rejected the request
  internal,             ///< a bug or an unexpected failure on our side
  bad_gateway,          ///< the upstream answered garbage
  unavailable,          ///< shutting down, overloaded or a dependency is down
  gateway_timeout,      ///< the upstream or an internal actor did not answer in time
  payment_required,     ///< not enough credits for the call
};

/// Short machine-readable name, e.g. "not_found".
std::string_view to_string(errc e) noexcept;

} // namespace tollgate::core
