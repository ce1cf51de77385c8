#pragma once

#include "actors/interfaces.hpp"
#include "core/clock.hpp"

#include <cstdint>
#include <vector>

namespace tollgate::actors {

struct accounts_config {
  /// Credits a user created through POST /admin/create starts with.
  std::int64_t initial_credits_micro = 10'000'000;
  /// A user may hold at most this many keys (revoked ones included).
  std::size_t max_keys_per_user = 100;
};

/// What the accounts actor starts from: every record loaded from storage.
struct accounts_snapshot {
  std::vector<core::user_record> users;
  std::vector<core::key_record> keys;
  std::vector<core::audit_entry> audit;
  /// Id sequences as last committed (ids are never reused).
  std::uint64_t next_user = 1;
  std::uint64_t next_key = 1;
  std::uint64_t next_audit = 1;
};

/// Reads every account record from the store (at start, before serving).
/// Records that do not decode are skipped with an error in the log.
accounts_snapshot load_accounts(storage::store& db);

/// Spawns the accounts actor. It keeps users, keys and the audit log in
/// memory, writes every change through the storage actor and answers only
/// after the write is committed; then it tells the key directory, so the
/// next request with a changed key sees the change.
accounts_actor spawn_accounts(caf::actor_system& sys, accounts_snapshot snapshot,
                              storage_actor storage, key_directory_actor directory,
                              const core::clock& clock, accounts_config cfg);

} // namespace tollgate::actors
