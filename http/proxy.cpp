#include "http/proxy.hpp"

#include "http/api/auth.hpp"
#include "http/api/common.hpp"
#include "http/client/client.hpp"
#include "http/errors.hpp"
#include "http/stream_relay.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace tollgate::http {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z')
      x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z')
      y = static_cast<char>(y - 'A' + 'a');
    if (x != y)
      return false;
  }
  return true;
}

/// Hop-by-hop fields (RFC 9110 7.6.1) and the ones the client sets itself:
/// never forwarded in either direction.
bool hop_by_hop(std::string_view name) noexcept {
  for (const char* h : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-authorization",
                        "proxy-authenticate", "content-length", "host", "expect"})
    if (iequals(name, h))
      return true;
  return false;
}

/// The client's credentials for tollgate: they stop here.
bool client_credential(std::string_view name) noexcept {
  return iequals(name, "authorization") || iequals(name, "x-api-key");
}

struct route_state {
  core::proxy_route_config cfg;
  std::shared_ptr<client::client> http;
  std::string credential;  ///< from cfg.credential_env; never logged
};

void forward(const std::shared_ptr<const route_state>& rs, core::api_request& req,
             core::responder_ptr& out) {
  client::upstream_request up;
  up.method = req.method;
  std::string path = req.path;
  if (rs->cfg.strip_prefix) {
    path = path.substr(rs->cfg.prefix.size());
    if (path.empty())
      path = "/";
  }
  up.url = rs->cfg.upstream + path + (req.query.empty() ? "" : "?" + req.query);
  for (auto& [name, value] : req.headers) {
    if (hop_by_hop(name) || client_credential(name) || iequals(name, "x-forwarded-for")
        || iequals(name, "x-request-id"))
      continue;
    if (!rs->cfg.credential_header.empty() && iequals(name, rs->cfg.credential_header))
      continue;  // a client may not pose as the gateway
    up.headers.emplace_back(name, std::move(value));
  }
  const auto xff = req.header("x-forwarded-for");
  up.headers.emplace_back("X-Forwarded-For", xff.empty() ? req.remote_addr
                                                          : std::string{xff} + ", "
                                                              + req.remote_addr);
  up.headers.emplace_back("X-Request-Id", req.request_id);
  if (!rs->credential.empty())
    up.headers.emplace_back(rs->cfg.credential_header, rs->credential);
  up.body = std::move(req.body);
  up.body_stream = std::move(req.body_stream);  // set when the body is still arriving
  up.timeout = rs->cfg.timeout;
  up.max_response_bytes = rs->cfg.max_response_bytes;

  struct shared {
    std::shared_ptr<relay> stream = std::make_shared<relay>();
    bool answered = false;
  };
  auto sh = std::make_shared<shared>();
  client::upstream_handlers h;
  h.on_head = [sh, out](const client::upstream_head& head) {
    core::api_response res;
    res.status = static_cast<std::uint16_t>(head.status);
    res.content_type.clear();
    for (const auto& [name, value] : head.headers) {
      if (hop_by_hop(name))
        continue;
      if (iequals(name, "content-type")) {
        res.content_type = value;
        continue;
      }
      res.headers.emplace_back(name, value);
    }
    // No body may follow a 1xx, 204 or 304 (RFC 9110): no stream then.
    if (head.status >= 200 && head.status != 204 && head.status != 304)
      res.stream = sh->stream;
    sh->answered = true;
    out->respond(std::move(res));
  };
  h.on_data = [sh](std::string_view chunk) { sh->stream->push(std::string{chunk}); };
  h.hold = [sh](std::function<void()> resume) { return sh->stream->hold(std::move(resume)); };
  const auto rid = req.request_id;
  h.on_done = [sh, out, rid](std::string error, client::upstream_head, std::string) {
    if (!sh->answered) {
      // No head came: the gateway answers for the backend.
      spdlog::warn("request {}: backend failed: {}", rid, error);
      auto code = error == "timeout" ? core::errc::gateway_timeout : core::errc::bad_gateway;
      auto o = out;
      api::respond_error(o, code, "the backend did not answer: " + error);
      return;
    }
    if (!error.empty() && error != "cancelled") {
      spdlog::warn("request {}: backend answer broke off: {}", rid, error);
      // No last chunk: the client can tell the answer was cut.
      sh->stream->abort();
      return;
    }
    sh->stream->finish();
  };
  auto handle = rs->http->start(std::move(up), std::move(h));
  std::weak_ptr<client::call_handle> weak = handle;
  const auto cancel = [weak] {
    if (auto hd = weak.lock())
      hd->cancel();
  };
  sh->stream->on_cancel(cancel);
  out->on_cancel(cancel);
}

} // namespace

actors::route_handler proxy_handler(const core::proxy_route_config& cfg,
                                    std::shared_ptr<client::client> http) {
  auto rs = std::make_shared<route_state>();
  rs->cfg = cfg;
  rs->http = std::move(http);
  if (!cfg.credential_env.empty()) {
    const char* v = std::getenv(cfg.credential_env.c_str());
    if (v == nullptr || *v == '\0')
      throw std::invalid_argument("routes: " + cfg.prefix + ": the environment variable "
                                  + cfg.credential_env + " is not set");
    rs->credential = v;
  }
  // The group is a string the route handler keeps; access holds a pointer.
  auto group = std::make_shared<std::string>(cfg.group);
  api::access a{group->c_str()};
  return api::authenticated(a, [rs, group](actors::router_pointer, const actors::services&,
                                           core::api_request& req, core::responder_ptr& out,
                                           const core::principal&) { forward(rs, req, out); });
}

} // namespace tollgate::http
