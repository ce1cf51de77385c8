#pragma once

#include "actors/interfaces.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace tollgate::actors {

/// The write path of the actors on every LLM call (key actors, wallet):
/// straight into the store when `direct` is set (no fsync: a write is
/// microseconds, less than the storage actor's two thread hand-offs), else
/// through the storage actor's group commit. `done(error)` runs once, with
/// "" when the batch is committed. All writes of one actor must take the
/// same path so that they stay in order.
template <class Self, class Done>
void write_ops(Self* self, const storage_actor& storage,
               const std::shared_ptr<storage::store>& direct, std::vector<storage::write_op> ops,
               Done done) {
  if (direct) {
    done(direct->apply(ops));
    return;
  }
  self->request(storage, std::chrono::seconds{10}, write_atom::value, std::move(ops))
    .then([done](write_ack& ack) mutable { done(ack.error); },
          [done](caf::error& e) mutable { done(to_string(e)); });
}

} // namespace tollgate::actors
