#pragma once

#include "actors/interfaces.hpp"
#include "core/clock.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::storage {
class write_queue;
}

namespace tollgate::actors {

/// What the wallet starts from: every stored balance and the ledger's id
/// sequence. A user with no stored balance has never been charged or
/// credited; the wallet asks the accounts actor for their initial credits
/// the first time it needs them.
struct wallet_snapshot {
  std::map<std::uint64_t, std::int64_t> balances;
  std::uint64_t next_entry = 1;
};

/// Ledger column keys: "b/<user, 20 digits>" holds a balance in
/// micro-credits, "e/<user, 20 digits>/<entry id, 20 digits>" an entry.
std::string balance_key(std::uint64_t user_id);
std::string entry_key(std::uint64_t user_id, std::uint64_t entry_id);
std::string encode(const ledger_entry& e);
std::optional<ledger_entry> decode_entry(std::string_view json);

wallet_snapshot load_wallet(storage::store& db);

/// Spawns the wallet: the one owner of balances. Every change (a hold, a
/// charge, a credit) updates memory at once, so the next hold sees it, and
/// is answered only once its batch (new balance plus ledger entry) is
/// committed, except a hold through a write queue (below). A hold is written too: a crash between hold and charge keeps
/// the worst case charged rather than forgetting the call (no entry is
/// written for it; the README says so).
/// With `direct` set, the wallet writes through that queue (no fsync mode;
/// see key_directory_config::direct) instead of through `storage`, and a
/// hold is granted before its write commits.
wallet_actor spawn_wallet(caf::actor_system& sys, wallet_snapshot snapshot, storage_actor storage,
                          accounts_actor accounts, const core::clock& clock,
                          std::shared_ptr<storage::write_queue> direct = nullptr);

} // namespace tollgate::actors
