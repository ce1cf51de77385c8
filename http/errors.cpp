#include "http/errors.hpp"

#include "core/time_format.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace tollgate::http {

unsigned status_of(core::errc e) noexcept {
  switch (e) {
    case core::errc::ok: return 200;
    case core::errc::bad_request: return 400;
    case core::errc::unauthorized: return 401;
    case core::errc::forbidden: return 403;
    case core::errc::not_found: return 404;
    case core::errc::method_not_allowed: return 405;
    case core::errc::conflict: return 409;
    case core::errc::request_timeout: return 408;
    case core::errc::payload_too_large: return 413;
    case core::errc::headers_too_large: return 431;
    case core::errc::too_many_requests: return 429;
    case core::errc::internal: return 500;
    case core::errc::bad_gateway: return 502;
    case core::errc::unavailable: return 503;
    case core::errc::gateway_timeout: return 504;
    case core::errc::payment_required: return 402;
  }
  return 500;
}

std::string_view reason_of(unsigned status) noexcept {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 402: return "Payment Required";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

std::string error_body(unsigned status, std::string_view detail,
                       std::chrono::system_clock::time_point now) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  w.StartObject();
  w.Key("detail");
  w.String(detail.data(), static_cast<rapidjson::SizeType>(detail.size()));
  w.Key("status_code");
  w.Uint(status);
  w.Key("timestamp");
  const auto ts = core::iso8601(now);
  w.String(ts.data(), static_cast<rapidjson::SizeType>(ts.size()));
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

core::api_response error_response(core::errc e, std::string_view detail) {
  core::api_response r;
  r.status = static_cast<std::uint16_t>(status_of(e));
  r.body = error_body(r.status, detail, std::chrono::system_clock::now());
  return r;
}

} // namespace tollgate::http
