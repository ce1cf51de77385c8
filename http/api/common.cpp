#include "http/api/common.hpp"

#include "http/api/parse.hpp"
#include "http/errors.hpp"

#include <caf/error.hpp>

namespace tollgate::http::api {

void respond_json(core::responder_ptr& out, std::string body, std::uint16_t status) {
  core::api_response res;
  res.status = status;
  res.body = std::move(body);
  out->respond(std::move(res));
}

void respond_error(core::responder_ptr& out, core::errc e, std::string_view detail) {
  auto res = error_response(e, detail);
  if (e == core::errc::unauthorized)
    res.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"tollgate\"");
  out->respond(std::move(res));
}

void respond_error(core::responder_ptr& out, const caf::error& e) {
  auto [code, detail] = actors::from_error(e);
  respond_error(out, code, detail.empty() ? reason_of(status_of(code)) : detail);
}

core::audit_context audit_ctx(const core::api_request& req, const core::principal& who) {
  core::audit_context ctx;
  ctx.user_id = who.user_id;
  ctx.ip_address = req.remote_addr;
  ctx.user_agent = std::string{req.header("user-agent").substr(0, 256)};
  return ctx;
}

bool parse_listing(const core::api_request& req, core::responder_ptr& out, listing_query& q) {
  auto parsed_query = parse_query(req.query);
  if (!parsed_query) {
    respond_error(out, core::errc::bad_request, parsed_query.error);
    return false;
  }
  auto pg = parse_page(parsed_query.value, 100, 1000);
  if (!pg) {
    respond_error(out, core::errc::bad_request, pg.error);
    return false;
  }
  q.params = std::move(parsed_query.value);
  q.limit = pg.value.limit;
  q.offset = pg.value.offset;
  return true;
}

double credits(std::int64_t micro) noexcept {
  return static_cast<double>(micro) / 1e6;
}

} // namespace tollgate::http::api
