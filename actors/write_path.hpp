#pragma once

#include "actors/interfaces.hpp"
#include "storage/write_queue.hpp"

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

/// The write path of the actors on every LLM call (key actors, wallet):
/// through the write queue when `direct` is set (no fsync: one WriteBatch
/// per burst of actor work on the io lane, else at once), else through the
/// storage actor's group commit. `done(error)` runs once, with "" when the
/// batch is committed: in the actor's own step (a write outside a deferral
/// commits alone, at once) or, deferred, on the io lane between two actor
/// jobs, never beside one. All writes of one actor must take the same path
/// so that they stay in order.
template <class Self, class Done>
void write_ops(Self* self, const storage_actor& storage,
               const std::shared_ptr<storage::write_queue>& direct, const state_life& life,
               std::vector<storage::write_op> ops, Done done) {
  if (direct) {
    direct->submit(std::move(ops), [alive = std::weak_ptr<char>{life},
                                    done = std::move(done)](const std::string& error) mutable {
      if (!alive.expired())
        done(error);
    });
    return;
  }
  self->request(storage, std::chrono::seconds{10}, write_atom::value, std::move(ops))
    .then([done](write_ack& ack) mutable { done(ack.error); },
          [done](caf::error& e) mutable { done(to_string(e)); });
}

} // namespace tollgate::actors
