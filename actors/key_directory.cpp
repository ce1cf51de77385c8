#include "actors/key_directory.hpp"

#include "core/api_key.hpp"
#include "metrics/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <spdlog/spdlog.h>

#include <unordered_map>

namespace tollgate::actors {

namespace {

// ---- key actor ----------------------------------------------------------

struct key_state {
  core::key_record key;
  core::user_record user;
  const core::clock* clock = nullptr;
  key_directory_actor directory;
  std::chrono::milliseconds idle_timeout{};
  std::chrono::steady_clock::time_point last_used;
  bool idle_reported = false;
};

using key_pointer = key_actor::stateful_pointer<key_state>;

key_actor::behavior_type key_impl(key_pointer self) {
  self->state.last_used = std::chrono::steady_clock::now();
  self->delayed_send(self, self->state.idle_timeout, tick_atom::value);
  return {
    [=](auth_atom, const std::string& hash) -> auth_decision {
      auto& st = self->state;
      st.last_used = std::chrono::steady_clock::now();
      auth_decision d;
      if (!core::api_key::constant_time_equal(hash, st.key.hash)) {
        d.detail = "invalid API key";
        return d;
      }
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         st.clock->now().time_since_epoch())
                         .count();
      d.detail = core::key_refusal(st.key, now);
      if (!d.detail.empty())
        return d;
      d.code = core::errc::ok;
      d.who.user_id = st.key.user_id;
      d.who.key_id = st.key.id;
      d.who.role = st.user.role;
      d.who.key_hash = st.key.hash;
      d.who.env = st.key.env;
      d.who.last4 = st.key.last4;
      d.who.scopes = st.key.scopes;
      return d;
    },
    [=](key_changed_atom, core::key_record& key, bool deleted) {
      if (deleted) {
        // A deleted key answers "invalid" until the directory stops us.
        self->state.key.revoked = true;
        self->state.key.active = false;
        self->send(self->state.directory, idle_atom::value, self->state.key.hash);
        self->state.idle_reported = true;
        return;
      }
      self->state.key = std::move(key);
    },
    [=](user_changed_atom, core::user_record& user) { self->state.user = std::move(user); },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.idle_reported)
        return;
      const auto idle = std::chrono::steady_clock::now() - st.last_used;
      if (idle >= st.idle_timeout) {
        st.idle_reported = true;
        self->send(st.directory, idle_atom::value, st.key.hash);
        return;
      }
      self->delayed_send(self, st.idle_timeout - idle, tick_atom::value);
    },
    [=](stop_atom) { self->quit(); },
  };
}

// ---- directory ------------------------------------------------------------

struct directory_state {
  struct entry {
    key_actor actor;
    std::uint64_t user_id = 0;
  };
  accounts_actor accounts;
  const core::clock* clock = nullptr;
  key_directory_config cfg;
  std::unordered_map<std::string, entry> live;
  std::unordered_map<std::string, std::vector<caf::typed_response_promise<auth_decision>>>
    pending;
  metrics::gauge* live_gauge = nullptr;
  metrics::counter* spawned = nullptr;
};

using directory_pointer = key_directory_actor::stateful_pointer<directory_state>;

auth_decision refused(std::string detail) {
  auth_decision d;
  d.detail = std::move(detail);
  return d;
}

void on_lookup(directory_pointer self, const std::string& hash, key_lookup& found) {
  auto& st = self->state;
  auto waiting = std::move(st.pending[hash]);
  st.pending.erase(hash);
  if (!found.found) {
    for (auto& rp : waiting)
      rp.deliver(refused("invalid API key"));
    return;
  }
  // Linked: when the directory goes down (shutdown), its key actors go with it.
  auto actor = self->spawn<caf::linked>([key = found.key, user = found.user, clock = st.clock,
                            dir = key_directory_actor{self}, idle = st.cfg.idle_timeout](
                             key_pointer k) mutable -> key_actor::behavior_type {
    k->state.key = std::move(key);
    k->state.user = std::move(user);
    k->state.clock = clock;
    k->state.directory = std::move(dir);
    k->state.idle_timeout = idle;
    return key_impl(k);
  });
  st.live[hash] = {actor, found.key.user_id};
  st.live_gauge->set(static_cast<std::int64_t>(st.live.size()));
  st.spawned->inc();
  for (auto& rp : waiting)
    rp.delegate(actor, auth_atom::value, hash);
}

key_directory_actor::behavior_type directory_impl(directory_pointer self) {
  return {
    [=](lookup_atom, accounts_actor& accounts) { self->state.accounts = std::move(accounts); },
    [=](auth_atom, const std::string& hash) -> caf::result<auth_decision> {
      auto& st = self->state;
      if (auto it = st.live.find(hash); it != st.live.end())
        return self->delegate(it->second.actor, auth_atom::value, hash);
      auto rp = self->make_response_promise<auth_decision>();
      auto& queue = st.pending[hash];
      queue.push_back(rp);
      if (queue.size() > 1)
        return rp;  // a lookup for this key is already under way
      self->request(st.accounts, std::chrono::seconds{10}, lookup_atom::value, hash)
        .then([self, hash](key_lookup& found) { on_lookup(self, hash, found); },
              [self, hash](caf::error& e) {
                spdlog::error("key directory: lookup failed: {}", to_string(e));
                auto waiting = std::move(self->state.pending[hash]);
                self->state.pending.erase(hash);
                for (auto& p : waiting)
                  p.deliver(e);
              });
      return rp;
    },
    [=](key_changed_atom, const core::key_record& key, bool deleted) {
      if (auto it = self->state.live.find(key.hash); it != self->state.live.end())
        self->send(it->second.actor, key_changed_atom::value, key, deleted);
    },
    [=](user_changed_atom, const core::user_record& user) {
      for (auto& [hash, e] : self->state.live)
        if (e.user_id == user.id)
          self->send(e.actor, user_changed_atom::value, user);
    },
    [=](idle_atom, const std::string& hash) {
      auto& st = self->state;
      auto it = st.live.find(hash);
      if (it == st.live.end())
        return;
      // Forget first, then stop: every request already forwarded is in the
      // key actor's mailbox ahead of the stop.
      self->send(it->second.actor, stop_atom::value);
      st.live.erase(it);
      st.live_gauge->set(static_cast<std::int64_t>(st.live.size()));
    },
    [=](count_atom) -> std::uint64_t { return self->state.live.size(); },
  };
}

} // namespace

key_directory_actor spawn_key_directory(caf::actor_system& sys, const core::clock& clock,
                                        key_directory_config cfg, metrics::registry& metrics) {
  auto& live = metrics.gauge_metric("tollgate_key_actors_live", "Key actors currently running.");
  auto& spawned = metrics.counter_metric("tollgate_key_actors_spawned_total",
                                         "Key actors started (first use or after idling).");
  return sys.spawn([&clock, cfg, &live,
                    &spawned](directory_pointer self) -> key_directory_actor::behavior_type {
    self->state.clock = &clock;
    self->state.cfg = cfg;
    self->state.live_gauge = &live;
    self->state.spawned = &spawned;
    return directory_impl(self);
  });
}

} // namespace tollgate::actors
