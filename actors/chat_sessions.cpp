#include "actors/chat_sessions.hpp"

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <limits>
#include <map>

namespace tollgate::actors {

namespace {

constexpr auto write_timeout = std::chrono::seconds{10};

struct chat_state {
  storage_actor storage;
  const core::clock* clock = nullptr;
  std::map<std::uint64_t, chat_session> sessions;
  std::uint64_t next_id = 1;

  std::int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(clock->now().time_since_epoch())
      .count();
  }
};

using chat_pointer = chat_sessions_actor::stateful_pointer<chat_state>;

caf::error not_found(std::uint64_t id) {
  return make_error(core::errc::not_found, "chat session " + std::to_string(id) + " not found");
}

/// The session if it exists and belongs to `user_id`.
chat_session* owned(chat_state& st, std::uint64_t user_id, std::uint64_t id) {
  auto it = st.sessions.find(id);
  if (it == st.sessions.end() || it->second.user_id != user_id)
    return nullptr;
  return &it->second;
}

/// Writes the session (or erases it), then answers `value`. Awaited, so no
/// other change overtakes an unconfirmed one; `undo` restores memory when
/// the write is refused.
template <class Undo>
void persist(chat_pointer self, const chat_session& s, bool erase,
             caf::typed_response_promise<chat_session> rp, chat_session value, Undo undo) {
  std::vector<storage::write_op> ops;
  ops.push_back({static_cast<std::uint8_t>(storage::column::sessions), chat_session_key(s.id),
                 erase ? std::string{} : encode(s), erase});
  ops.push_back({static_cast<std::uint8_t>(storage::column::meta), "seq/chat",
                 std::to_string(self->state.next_id), false});
  self->request(self->state.storage, write_timeout, write_atom::value, std::move(ops))
    .await(
      [rp, value, undo](write_ack& ack) mutable {
        if (ack.ok()) {
          rp.deliver(std::move(value));
          return;
        }
        spdlog::error("chat sessions: write refused: {}", ack.error);
        undo();
        rp.deliver(make_error(core::errc::unavailable, "storage is failing; nothing was changed"));
      },
      [rp](caf::error& e) mutable {
        spdlog::error("chat sessions: write not confirmed: {}", to_string(e));
        rp.deliver(make_error(core::errc::unavailable,
                              "storage did not confirm the change in time; it may have been saved"));
      });
}

} // namespace

std::string chat_session_key(std::uint64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "c/%020llu", static_cast<unsigned long long>(id));
  return buf;
}

std::string encode(const chat_session& s) {
  rapidjson::StringBuffer b;
  rapidjson::Writer<rapidjson::StringBuffer> w{b};
  const auto str = [&w](const std::string& v) {
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  };
  w.StartObject();
  w.Key("id");
  w.Uint64(s.id);
  w.Key("user_id");
  w.Uint64(s.user_id);
  w.Key("name");
  str(s.name);
  w.Key("description");
  str(s.description);
  w.Key("created_at");
  w.Int64(s.created_at);
  w.Key("updated_at");
  w.Int64(s.updated_at);
  w.Key("messages");
  w.StartArray();
  for (const auto& m : s.messages) {
    w.StartObject();
    w.Key("id");
    w.Uint64(m.id);
    w.Key("role");
    str(m.role);
    w.Key("content");
    str(m.content);
    w.Key("created_at");
    w.Int64(m.created_at);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return {b.GetString(), b.GetSize()};
}

std::optional<chat_session> decode_chat_session(std::string_view json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("id") || !d["id"].IsUint64()
      || !d.HasMember("user_id") || !d["user_id"].IsUint64())
    return std::nullopt;
  chat_session s;
  s.id = d["id"].GetUint64();
  s.user_id = d["user_id"].GetUint64();
  if (d.HasMember("name") && d["name"].IsString())
    s.name = d["name"].GetString();
  if (d.HasMember("description") && d["description"].IsString())
    s.description = d["description"].GetString();
  if (d.HasMember("created_at") && d["created_at"].IsInt64())
    s.created_at = d["created_at"].GetInt64();
  if (d.HasMember("updated_at") && d["updated_at"].IsInt64())
    s.updated_at = d["updated_at"].GetInt64();
  if (d.HasMember("messages") && d["messages"].IsArray())
    for (const auto& m : d["messages"].GetArray()) {
      if (!m.IsObject())
        continue;
      chat_message msg;
      if (m.HasMember("id") && m["id"].IsUint64())
        msg.id = m["id"].GetUint64();
      if (m.HasMember("role") && m["role"].IsString())
        msg.role = m["role"].GetString();
      if (m.HasMember("content") && m["content"].IsString())
        msg.content.assign(m["content"].GetString(), m["content"].GetStringLength());
      if (m.HasMember("created_at") && m["created_at"].IsInt64())
        msg.created_at = m["created_at"].GetInt64();
      s.messages.push_back(std::move(msg));
    }
  return s;
}

chat_sessions_snapshot load_chat_sessions(storage::store& db) {
  chat_sessions_snapshot snap;
  for (const auto& [key, value] :
       db.scan(storage::column::sessions, "c/", std::numeric_limits<std::size_t>::max())) {
    if (auto s = decode_chat_session(value)) {
      snap.next_id = std::max(snap.next_id, s->id + 1);
      snap.sessions.push_back(std::move(*s));
    } else {
      spdlog::error("storage: skipping undecodable chat session {}", key);
    }
  }
  std::string value;
  std::string error;
  if (db.get(storage::column::meta, "seq/chat", value, error)) {
    try {
      snap.next_id = std::max<std::uint64_t>(snap.next_id, std::stoull(value));
    } catch (...) {
      spdlog::error("storage: undecodable seq/chat");
    }
  }
  return snap;
}

chat_sessions_actor spawn_chat_sessions(caf::actor_system& sys, chat_sessions_snapshot snapshot,
                                        storage_actor storage, const core::clock& clock) {
  return sys.spawn([snapshot = std::move(snapshot), storage, &clock](
                     chat_pointer self) mutable -> chat_sessions_actor::behavior_type {
    auto& init = self->state;
    init.storage = storage;
    init.clock = &clock;
    init.next_id = snapshot.next_id;
    for (auto& s : snapshot.sessions)
      init.sessions.emplace(s.id, std::move(s));
    return {
      [=](create_atom, std::uint64_t user_id, std::string& name,
          std::string& description) -> caf::result<chat_session> {
        auto& st = self->state;
        chat_session s;
        s.id = st.next_id++;
        s.user_id = user_id;
        s.name = std::move(name);
        s.description = std::move(description);
        s.created_at = st.now();
        s.updated_at = s.created_at;
        st.sessions.emplace(s.id, s);
        auto rp = self->make_response_promise<chat_session>();
        persist(self, s, false, rp, s, [self, id = s.id] { self->state.sessions.erase(id); });
        return rp;
      },
      [=](list_atom, std::uint64_t user_id, const page& range) -> chat_session_list {
        chat_session_list out;
        // Newest first.
        for (auto it = self->state.sessions.rbegin(); it != self->state.sessions.rend(); ++it) {
          if (it->second.user_id != user_id)
            continue;
          if (out.total++ < range.offset || out.sessions.size() >= range.limit)
            continue;
          auto copy = it->second;
          copy.message_count = copy.messages.size();
          copy.messages.clear();
          out.sessions.push_back(std::move(copy));
        }
        return out;
      },
      [=](get_atom, std::uint64_t user_id, std::uint64_t id) -> caf::result<chat_session> {
        auto* s = owned(self->state, user_id, id);
        if (s == nullptr)
          return not_found(id);
        return *s;
      },
      [=](delete_atom, std::uint64_t user_id, std::uint64_t id) -> caf::result<chat_session> {
        auto* s = owned(self->state, user_id, id);
        if (s == nullptr)
          return not_found(id);
        auto gone = *s;
        self->state.sessions.erase(id);
        auto rp = self->make_response_promise<chat_session>();
        persist(self, gone, true, rp, gone,
                [self, gone] { self->state.sessions.emplace(gone.id, gone); });
        return rp;
      },
      [=](append_atom, std::uint64_t user_id, std::uint64_t id,
          std::vector<chat_message>& messages) -> caf::result<chat_session> {
        auto& st = self->state;
        auto* s = owned(st, user_id, id);
        if (s == nullptr)
          return not_found(id);
        const auto before = *s;
        std::uint64_t next = s->messages.empty() ? 1 : s->messages.back().id + 1;
        for (auto& m : messages) {
          m.id = next++;
          m.created_at = st.now();
          s->messages.push_back(std::move(m));
        }
        if (s->messages.size() > max_chat_messages)
          s->messages.erase(s->messages.begin(),
                            s->messages.begin()
                              + static_cast<std::ptrdiff_t>(s->messages.size() - max_chat_messages));
        s->updated_at = st.now();
        auto rp = self->make_response_promise<chat_session>();
        auto summary = *s;
        summary.message_count = summary.messages.size();
        summary.messages.clear();
        persist(self, *s, false, rp, summary,
                [self, before] { self->state.sessions[before.id] = before; });
        return rp;
      },
    };
  });
}

}  // namespace tollgate::actors
