#pragma once

#include "actors/interfaces.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace tollgate::actors {

/// Owned by the state of an actor that writes through a write queue: CAF
/// destroys an actor's state when it terminates, which may come before a
/// deferred write commits; the write's `done` then does not run (as a
/// storage actor's answer to a terminated actor is dropped).
using state_life = std::shared_ptr<char>;

/// The storage actor's path for the actors on every LLM call (key actors,
/// wallet) when they have no write queue (`storage.sync_writes`: the group
/// commit on its own thread, so an fsync never blocks a scheduler thread).
/// `done(error)` runs once, in the actor's context, with "" when the batch
/// is committed. With a write queue they submit to it themselves, lazily
/// (key_directory.cpp, wallet.cpp). All writes of one actor take the same
/// path, so that they stay in order.
template <class Self, class Done>
void write_ops(Self* self, const storage_actor& storage, std::vector<storage::write_op> ops,
               Done done) {
  self->request(storage, std::chrono::seconds{10}, write_atom::value, std::move(ops))
    .then([done](write_ack& ack) mutable { done(ack.error); },
          [done](caf::error& e) mutable { done(to_string(e)); });
}

} // namespace tollgate::actors
