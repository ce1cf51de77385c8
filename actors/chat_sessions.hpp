#pragma once

#include "actors/interfaces.hpp"
#include "core/clock.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::actors {

/// Sessions column keys: "c/<session id, 20 digits>" holds a session with
/// its messages as one JSON object.
std::string chat_session_key(std::uint64_t id);
std::string encode(const chat_session& s);
std::optional<chat_session> decode_chat_session(std::string_view json);

struct chat_sessions_snapshot {
  std::vector<chat_session> sessions;
  std::uint64_t next_id = 1;
};

chat_sessions_snapshot load_chat_sessions(storage::store& db);

/// At most this many messages are kept per session (the oldest go first).
inline constexpr std::size_t max_chat_messages = 1000;

/// Spawns the owner of chat sessions: in memory, written through to
/// storage before any change is answered.
chat_sessions_actor spawn_chat_sessions(caf::actor_system& sys, chat_sessions_snapshot snapshot,
                                        storage_actor storage, const core::clock& clock);

} // namespace tollgate::actors
