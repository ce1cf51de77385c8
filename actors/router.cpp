#include "actors/router.hpp"

#include <caf/typed_response_promise.hpp>

#include <spdlog/spdlog.h>

#include <exception>

namespace tollgate::actors {

namespace {

class promise_responder final : public core::responder {
public:
  explicit promise_responder(caf::typed_response_promise<core::api_response> rp)
    : rp_(std::move(rp)) {}

  void respond(core::api_response&& response) noexcept override {
    rp_.deliver(std::move(response));
  }

private:
  caf::typed_response_promise<core::api_response> rp_;
};

void run(router_pointer self, core::api_request& req, core::responder_ptr& out) {
  const auto& table = *self->state.table;
  if (req.route_id >= table.routes.size() || !table.routes[req.route_id]) {
    out->respond(table.error(core::errc::not_found, "Not Found"));
    return;
  }
  try {
    table.routes[req.route_id](self, self->state.svc, req, out);
  } catch (const std::exception& e) {
    spdlog::error("request {}: handler for {} {} threw: {}", req.request_id, req.method, req.path,
                  e.what());
    out->respond(table.error(core::errc::internal, "Internal Server Error"));
  }
}

} // namespace

core::responder_ptr make_promise_responder(router_pointer self) {
  return std::make_shared<promise_responder>(self->make_response_promise<core::api_response>());
}

router_actor::behavior_type router_impl(router_pointer self,
                                        std::shared_ptr<const handler_table> table,
                                        services svc) {
  self->state.table = std::move(table);
  self->state.svc = std::move(svc);
  return {
    [=](dispatch_atom, core::api_request& req, core::responder_ptr& out) { run(self, req, out); },
    [=](handle_atom, core::api_request& req) -> caf::result<core::api_response> {
      auto rp = self->make_response_promise<core::api_response>();
      core::responder_ptr out = std::make_shared<promise_responder>(rp);
      run(self, req, out);
      return rp;
    },
  };
}

} // namespace tollgate::actors
