#pragma once

#include "actors/interfaces.hpp"

#include <chrono>
#include <cstddef>
#include <memory>

namespace tollgate::metrics {
class registry;
}

namespace tollgate::actors {

/// Settings of the group commit.
struct storage_actor_config {
  /// Extra wait so that more writes share one commit; 0 commits as soon as
  /// the mailbox holds no more writes that arrived before the commit tick.
  std::chrono::milliseconds commit_delay{0};
  std::size_t max_batch = 1024;
};

/// Spawns the storage actor detached (it blocks on RocksDB I/O, so it gets a
/// thread of its own and never stalls the scheduler). It takes ownership of
/// the store.
///
///   idle ──write──▶ pending ──commit tick or max_batch──▶ commit ──▶ idle
///
/// Writes are acknowledged only after the batch holding them is committed.
storage_actor spawn_storage_actor(caf::actor_system& sys, std::shared_ptr<storage::store> db,
                                  storage_actor_config cfg, metrics::registry& metrics);

} // namespace tollgate::actors
