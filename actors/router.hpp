#pragma once

#include "actors/interfaces.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/errc.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <chrono>
#include <functional>
#include <unordered_map>
#include <memory>
#include <string_view>
#include <vector>

namespace tollgate::metrics {
class registry;
class counter;
template <class Metric>
class family;
} // namespace tollgate::metrics

namespace tollgate::storage {
class write_queue;
}

namespace tollgate::actors {

class live_keys;

/// What route handlers may use: the actors they ask and the shared services.
struct services {
  storage_actor storage;
  accounts_actor accounts;
  key_directory_actor directory;
  /// The directory's live key actors, asked straight when listed; null:
  /// always through the directory.
  std::shared_ptr<live_keys> keys;
  wallet_actor wallet;
  chat_sessions_actor chat;
  /// The key actors' and the wallet's write queue (no fsync mode), or null.
  /// Their grants may come before their writes commit: a call checks it
  /// before its client sees an answer.
  std::shared_ptr<storage::write_queue> writes;
  bool allow_anonymous = false;
  /// The limits configuration (header dialects per route group).
  std::shared_ptr<const core::limits_config> limits;
  /// tollgate_limit_decisions_total{route, policy, outcome}.
  metrics::family<metrics::counter>* limit_decisions = nullptr;
  metrics::registry* metrics = nullptr;
  const core::clock* clock = nullptr;
  std::chrono::steady_clock::time_point started;
  std::chrono::milliseconds ask_timeout{5000};
};

struct router_state;
using router_pointer = router_actor::stateful_pointer<router_state>;

/// A route handler runs inside a router actor. It validates the request,
/// asks the owning actor (with `self->request(...).then(ok, err)`), encodes
/// the answer and hands it to the responder. It must never block.
using route_handler =
  std::function<void(router_pointer self, const services& svc, core::api_request& req,
                     core::responder_ptr& out)>;

/// The immutable dispatch table a router runs on; built once by the HTTP
/// module, shared by every router actor.
struct handler_table {
  std::vector<route_handler> routes;  ///< indexed by api_request::route_id
  /// Encodes an error response (the one error body of the gateway).
  std::function<core::api_response(core::errc, std::string_view detail)> error;
};

struct router_state {
  std::shared_ptr<const handler_table> table;
  services svc;
  /// Per-router cache of metric children, so the hot path does not take the
  /// metric family's lock; keyed by the caller (see auth.cpp).
  std::unordered_map<std::uint64_t, metrics::counter*> counter_cache;
};

/// Behaviour of a router actor: looks up the handler by route id and runs it.
/// A throwing handler answers 500 instead of taking the actor down.
router_actor::behavior_type router_impl(router_pointer self,
                                        std::shared_ptr<const handler_table> table,
                                        services svc);

/// Adapts a typed response promise to the responder interface, so handlers
/// serve `handle` requests (per-request bridge actors) unchanged.
core::responder_ptr make_promise_responder(router_pointer self);

} // namespace tollgate::actors
