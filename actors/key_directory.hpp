#pragma once

#include "actors/interfaces.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/rate_limit.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <chrono>

namespace tollgate::metrics {
class registry;
}

namespace tollgate::storage {
class write_queue;
}

namespace tollgate::actors {

/// The key actors the directory runs, by key hash, so that the request path
/// asks a live key's actor straight (auth, token reservations) instead of
/// through the directory, one message hop less. The directory adds an actor
/// once it runs and removes it when the actor reports itself idle, before it
/// stops. A caller that still holds it then gets `moved` (or, once it has
/// stopped, an error) and asks the directory. Thread-safe.
class live_keys {
public:
  /// The key's actor, or an invalid handle.
  key_actor find(const std::string& hash) const;
  void add(const std::string& hash, key_actor actor);
  void remove(const std::string& hash);
  void clear();
  std::size_t size() const;

private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, key_actor> actors_;
};

/// Whether an error from a key actor asked straight means it is gone (it
/// stopped before the request reached it), so the directory is to be asked.
inline bool key_actor_gone(const caf::error& e) {
  return e == caf::sec::request_receiver_down || e.category() == caf::atom("exit");
}

struct key_directory_config {
  /// A key actor with no request for this long flushes and stops; the next
  /// request with its key spawns it again.
  std::chrono::milliseconds idle_timeout{std::chrono::minutes{5}};
  /// The limits every key actor applies; null: no limits.
  std::shared_ptr<const core::limits_config> limits;
  /// Where key actors keep their counters; unset: nowhere (tests).
  storage_actor storage;
  /// Set: key actors write their counters through this queue themselves
  /// instead of through the storage actor (see storage.sync_writes in the
  /// README: without fsync a write is microseconds, and the two thread
  /// hand-offs of the storage actor cost more than the write). All of a key
  /// actor's writes take the same path, so they stay in order. A
  /// reservation is then granted before its write commits: whoever acts on
  /// it checks the queue before answering its client (http/llm/call.cpp).
  std::shared_ptr<storage::write_queue> direct;
  /// Set: the directory lists its live key actors here (see live_keys).
  std::shared_ptr<live_keys> live;
};

/// The counters of a key as stored in the usage column ("l/<hash>").
std::string encode_counters(const std::vector<std::pair<std::string, core::limiter_state>>& c,
                            std::uint64_t total_requests);
bool decode_counters(std::string_view text,
                     std::vector<std::pair<std::string, core::limiter_state>>& out,
                     std::uint64_t& total_requests);

/// Spawns the key directory. It needs the accounts actor for lookups, which
/// it gets with a `lookup_atom` message right after both are spawned.
///
/// Per key hash:
///
///   unknown ──auth──▶ looking up ──found──▶ live (key actor) ──idle──▶ unknown
///                        │ not found: 401          ▲ key/user changes forwarded
///
/// A key actor that has been idle asks the directory to stop it; the
/// directory forgets it first (and takes it off `live`) and then stops it,
/// so the directory never forwards a request to a key actor that is going
/// away. A caller that asked such an actor straight (through `live`) gets
/// `moved` for auth and reservations, or an error once it stopped, and asks
/// the directory.
key_directory_actor spawn_key_directory(caf::actor_system& sys, const core::clock& clock,
                                        key_directory_config cfg, metrics::registry& metrics);

} // namespace tollgate::actors
