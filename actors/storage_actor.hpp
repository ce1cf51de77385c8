#pragma once

#include "actors/interfaces.hpp"

#include <chrono>
#include <cstddef>
#include <memory>

namespace tollgate::metrics {
class registry;
class counter;
class histogram;
} // namespace tollgate::metrics

namespace tollgate::actors {

/// Settings of the group commit.
struct storage_actor_config {
  /// Extra wait so that more writes share one commit; 0 commits as soon as
  /// the mailbox holds no more writes that arrived before the commit tick.
  std::chrono::milliseconds commit_delay{0};
  std::size_t max_batch = 1024;
};

/// The store's commit metrics (tollgate_storage_*). The storage actor and
/// the write queue commit to the same RocksDB and count into the same ones.
struct storage_metrics {
  metrics::counter* commits = nullptr;
  metrics::counter* writes = nullptr;
  metrics::counter* failures = nullptr;
  metrics::histogram* batch = nullptr;

  /// One group commit of `records` writes, accepted or refused.
  void committed(std::size_t records, bool ok) const;
};

/// Registers the metrics in `r` (once per registry).
storage_metrics make_storage_metrics(metrics::registry& r);

/// Spawns the storage actor detached (it blocks on RocksDB I/O, so it gets a
/// thread of its own and never stalls the scheduler). It takes ownership of
/// the store.
///
///   idle ──write──▶ pending ──commit tick or max_batch──▶ commit ──▶ idle
///
/// Writes are acknowledged only after the batch holding them is committed.
storage_actor spawn_storage_actor(caf::actor_system& sys, std::shared_ptr<storage::store> db,
                                  storage_actor_config cfg, const storage_metrics& metrics);
/// The same, registering the metrics in `r`.
storage_actor spawn_storage_actor(caf::actor_system& sys, std::shared_ptr<storage::store> db,
                                  storage_actor_config cfg, metrics::registry& r);

} // namespace tollgate::actors
