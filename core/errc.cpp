#include "core/errc.hpp"

namespace tollgate::core {

std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::ok: return "ok";
    case errc::bad_request: return "bad_request";
    case errc::unauthorized: return "unauthorized";
    case errc::forbidden: return "forbidden";
    case errc::not_found: return "not_found";
    case errc::method_not_allowed: return "method_not_allowed";
    case errc::conflict: return "conflict";
    case errc::request_timeout: return "request_timeout";
    case errc::payload_too_large: return "payload_too_large";
    case errc::headers_too_large: return "headers_too_large";
    case errc::too_many_requests: return "too_many_requests";
    case errc::internal: return "internal";
    case errc::bad_gateway: return "bad_gateway";
    case errc::unavailable: return "unavailable";
    case errc::gateway_timeout: return "gateway_timeout";
    case errc::payment_required: return "insufficient_credits";
  }
  return "unknown";
}

} // namespace tollgate::core
