#include "http/server/dispatcher.hpp"

#include "http/errors.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

namespace tollgate::http {

dispatcher::dispatcher(caf::actor_system& sys, std::vector<actors::router_actor> routers,
                       bridge_mode mode, std::chrono::milliseconds timeout)
  : sys_(sys), routers_(std::move(routers)), mode_(mode), timeout_(timeout) {}

void dispatcher::dispatch(core::api_request&& req, core::responder_ptr out) {
  const auto& router = routers_[next_.fetch_add(1, std::memory_order_relaxed) % routers_.size()];
  if (mode_ == bridge_mode::responder) {
    caf::anon_send(router, actors::dispatch_atom::value, std::move(req), std::move(out));
    return;
  }
  sys_.spawn([router, req = std::move(req), out = std::move(out),
              timeout = timeout_](caf::event_based_actor* self) {
    self->request(router, timeout, actors::handle_atom::value, req)
      .then([out](core::api_response& res) { out->respond(std::move(res)); },
            [out](caf::error&) {
              out->respond(error_response(core::errc::unavailable, "Service Unavailable"));
            });
  });
}

} // namespace tollgate::http
