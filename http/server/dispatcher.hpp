#pragma once

#include "actors/interfaces.hpp"
#include "core/api_message.hpp"

#include <atomic>
#include <chrono>
#include <vector>

namespace caf {
class actor_system;
}

namespace tollgate::http {

/// How a session's request reaches a router actor and its answer comes back.
enum class bridge_mode {
  /// `anon_send` of the request with a responder that posts the answer onto
  /// the session's strand: no actor is created per request.
  responder,
  /// A bridge actor is spawned per request; it uses request/then on the
  /// router and hands the reply to the responder.
  actor,
};

/// Hands requests from I/O threads to the router actors, round-robin.
/// Never blocks: both bridges only enqueue messages.
class dispatcher {
public:
  /// `timeout` bounds how long a bridge actor waits for its router (the
  /// responder bridge needs none: a dropped responder answers by itself).
  dispatcher(caf::actor_system& sys, std::vector<actors::router_actor> routers, bridge_mode mode,
             std::chrono::milliseconds timeout = std::chrono::seconds{60});

  void dispatch(core::api_request&& req, core::responder_ptr out);

private:
  caf::actor_system& sys_;
  std::vector<actors::router_actor> routers_;
  bridge_mode mode_;
  std::chrono::milliseconds timeout_;
  std::atomic<std::size_t> next_{0};
};

} // namespace tollgate::http
