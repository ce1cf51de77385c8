#include "actors/key_directory.hpp"
#include "actors/write_path.hpp"
#include "storage/write_queue.hpp"

#include "core/api_key.hpp"
#include "core/limit_policies.hpp"
#include "metrics/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <spdlog/spdlog.h>

#include <charconv>
#include <functional>
#include <map>
#include <unordered_map>
#include <unordered_set>

namespace tollgate::actors {

namespace {

std::int64_t to_epoch(core::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

/// Epoch seconds of a reset, rounded up so that a client never retries early.
std::int64_t reset_epoch(core::time_point t) {
  const auto us =
    std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  return (us + 999'999) / 1'000'000;
}

std::string usage_key(const std::string& hash) {
  return "l/" + hash;
}

// ---- key actor ----------------------------------------------------------

struct key_state {
  core::key_record key;
  core::user_record user;
  const core::clock* clock = nullptr;
  key_directory_actor directory;
  key_directory_config cfg;
  std::chrono::steady_clock::time_point last_used;
  bool idle_reported = false;
  /// Reservations granted and not settled yet: while there are any the
  /// actor does not go idle, so that a call may settle with it straight.
  std::int64_t open_reservations = 0;
  // Every counter of the key, by policy name ("minute", "route:GET /x", ...).
  /// By name; std::less<> finds a name given as a literal without a string.
  std::map<std::string, core::limiter, std::less<>> limiters;
  std::uint64_t total_requests = 0;
  bool dirty = false;
  bool persist_scheduled = false;
  /// Token changes waiting for the next write of the counters (one write
  /// for every reservation and settlement that came in one burst).
  std::vector<std::function<void(const std::string&)>> awaiting_write;
  bool commit_scheduled = false;
  /// A write of the counters waits in the write queue (`queue_counters`).
  bool write_queued = false;
  metrics::counter* tokens_reserved = nullptr;
  metrics::counter* tokens_settled = nullptr;
  metrics::counter* reservations_refused = nullptr;
  metrics::counter* counters_saved = nullptr;
  state_life life = std::make_shared<char>();

  key_state() = default;
  key_state(const key_state&) = delete;
  key_state& operator=(const key_state&) = delete;
  /// CAF destroys the state when the actor ends: a write still waiting in
  /// the queue (its encoder finds the state gone) is written from here.
  ~key_state();
};

std::vector<storage::write_op> counter_ops(const key_state& st);

key_state::~key_state() {
  if (write_queued && cfg.direct)
    cfg.direct->submit(counter_ops(*this), [](const std::string& error) {
      if (!error.empty())
        spdlog::error("key actor: counters of a stopped key not saved: {}", error);
    });
}

using key_pointer = key_actor::stateful_pointer<key_state>;

/// Re-derives the key-wide and token policies after a change of the user
/// or key, keeping the counters of every policy that stays.
void rebuild(key_state& st) {
  if (!st.cfg.limits)
    return;
  decltype(st.limiters) next;
  auto keep = [&](core::limit_policy p) {
    auto it = st.limiters.find(p.name);
    const auto state = it != st.limiters.end() ? it->second.state() : core::limiter_state{};
    auto name = p.name;
    next.emplace(std::move(name), core::limiter{std::move(p), state});
  };
  for (auto& p : core::key_policies(*st.cfg.limits, st.user))
    keep(std::move(p));
  for (auto& p : core::token_policies(*st.cfg.limits, st.key))
    keep(std::move(p));
  // Route limiters: the user's per-endpoint override may have changed.
  for (auto& [name, l] : st.limiters) {
    if (name.rfind("route:", 0) != 0)
      continue;
    const auto rest = std::string_view{name}.substr(6);
    const auto sp = rest.find(' ');
    if (sp == std::string_view::npos)
      continue;
    if (auto p = core::route_policy(*st.cfg.limits, rest.substr(0, sp), rest.substr(sp + 1),
                                    &st.user))
      next.emplace(name, core::limiter{std::move(*p), l.state()});
  }
  st.limiters = std::move(next);
}

void schedule_persist(key_pointer self) {
  auto& st = self->state;
  st.dirty = true;
  if (st.persist_scheduled || !st.cfg.storage)
    return;
  st.persist_scheduled = true;
  self->delayed_send(self, st.cfg.limits ? st.cfg.limits->flush_interval
                                         : std::chrono::milliseconds{1000},
                     persist_atom::value);
}

void queue_counters(key_pointer self);

/// Writes the key's counters record (its only record): through the write
/// queue when the directory was given one, encoded when the batch is built
/// (once for every change before it), else as it is now, through the
/// storage actor. `done` gets the error ("" when committed).
template <class Done>
void store_counters(key_pointer self, Done done) {
  auto& st = self->state;
  if (st.cfg.direct) {
    st.awaiting_write.emplace_back(std::move(done));
    if (!st.write_queued)
      queue_counters(self);
    return;
  }
  write_ops(self, st.cfg.storage, counter_ops(st), std::move(done));
}

void persist(key_pointer self) {
  auto& st = self->state;
  st.persist_scheduled = false;
  if (!st.dirty || !st.cfg.storage)
    return;
  st.dirty = false;
  store_counters(self, [saved = st.counters_saved](const std::string& error) {
    if (!error.empty())
      spdlog::error("key actor: counters not saved: {}", error);
    else if (saved != nullptr)
      saved->inc();
  });
}

template <class Int>
void append_number(std::string& out, Int v) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(end - buf));
}

void append_counters_head(std::string& out, std::size_t limiters, std::uint64_t total_requests) {
  // Written on every change of a key: one buffer, no temporaries.
  out.reserve(out.size() + 32 + limiters * 96);
  out += "v1\ttotal\t";
  append_number(out, total_requests);
  out += '\n';
}

void append_counters_line(std::string& out, const std::string& name,
                          const core::limiter_state& s) {
  out += name;
  for (const auto v : {s.window_start, s.count, s.previous, s.tat_us}) {
    out += '\t';
    append_number(out, v);
  }
  out += '\n';
}

std::vector<storage::write_op> counter_ops(const key_state& st) {
  // encode_counters' format, straight from the limiters.
  std::string value;
  append_counters_head(value, st.limiters.size(), st.total_requests);
  for (const auto& [name, l] : st.limiters)
    append_counters_line(value, name, l.state());
  return {{static_cast<std::uint8_t>(storage::column::usage), usage_key(st.key.hash),
           std::move(value), false}};
}

/// One write of the counters in the write queue, encoded when its batch is
/// built; it answers every change that came before.
void queue_counters(key_pointer self) {
  auto& st = self->state;
  st.write_queued = true;
  using waiting = std::vector<std::function<void(const std::string&)>>;
  auto taken = std::make_shared<waiting>();
  std::weak_ptr<char> alive = st.life;
  st.cfg.direct->submit_lazy(
    [self, alive, taken]() -> std::vector<storage::write_op> {
      if (alive.expired())
        return {};
      auto& s = self->state;
      s.write_queued = false;
      s.dirty = false;
      taken->swap(s.awaiting_write);
      return counter_ops(s);
    },
    [alive, taken](const std::string& error) {
      if (alive.expired())
        return;
      for (auto& w : *taken)
        w(error);
    });
}


/// Writes the counters now and runs `then` once storage answered. Token
/// usage is money: through the storage actor it is acknowledged only when
/// it is stored; through the write queue a reservation is granted at once
/// and the call waits for the commit before its client sees an answer
/// (http/llm/call.cpp). Not awaited:
/// memory is the truth and moves on at once (the next request of the key
/// is admitted meanwhile); every write carries the whole state and the
/// storage actor commits in order, so the last commit holds the latest
/// counters. A reservation counted before its write commits only makes the
/// next decision stricter, never looser.
///
/// Through the storage actor, changes that come in one burst share a write:
/// the first schedules a commit message to this actor, which queues behind
/// the messages already in the mailbox; the commit writes the counters once
/// and answers them all. A write queue (`direct`) batches by itself.
template <class Then>
void write_through(key_pointer self, Then then) {
  auto& st = self->state;
  if (!st.cfg.storage) {
    then(std::string{});
    return;
  }
  if (st.cfg.direct) {
    // In the queue now, before any grant it backs goes out.
    store_counters(self, std::move(then));
    return;
  }
  st.awaiting_write.emplace_back(std::move(then));
  if (!st.commit_scheduled) {
    st.commit_scheduled = true;
    self->send(self, commit_atom::value);
  }
}

void commit_counters(key_pointer self) {
  auto& st = self->state;
  st.commit_scheduled = false;
  if (st.awaiting_write.empty())
    return;
  auto waiting = std::move(st.awaiting_write);
  st.awaiting_write.clear();
  st.dirty = false;
  store_counters(self, [waiting = std::move(waiting)](const std::string& error) {
    for (auto& w : waiting)
      w(error);
  });
}

limit_report admit(key_pointer self, const admission& a) {
  auto& st = self->state;
  limit_report r;
  if (!a.meter || !st.cfg.limits || !st.cfg.limits->enabled)
    return r;
  const auto now = st.clock->now();
  std::vector<core::limiter*> applied;
  applied.reserve(4);
  for (const char* name : {"minute", "hour", "day"})
    if (auto it = st.limiters.find(name); it != st.limiters.end())
      applied.push_back(&it->second);
  auto name = "route:" + a.method + " " + a.route;
  auto it = st.limiters.find(name);
  if (it == st.limiters.end()) {
    if (auto route = core::route_policy(*st.cfg.limits, a.method, a.route, &st.user))
      it = st.limiters.emplace(name, core::limiter{std::move(*route)}).first;
  }
  if (it != st.limiters.end())
    applied.push_back(&it->second);
  if (applied.empty())
    return r;
  const auto d = core::admit(applied, now, a.cost);
  r.metered = true;
  r.allowed = d.allowed;
  r.policy = d.policy;
  r.limit = d.limit;
  r.remaining = d.remaining;
  r.reset = reset_epoch(d.reset);
  r.window = d.window.count();
  r.retry_after = d.retry_after.count();
  r.policies.reserve(applied.size());
  for (auto* l : applied) {
    const auto& p = l->policy();
    const auto [start, end] = core::window_bounds(p, now);
    r.policies.push_back(
      {p.name, p.limit, std::chrono::duration_cast<std::chrono::seconds>(end - start).count()});
  }
  if (d.allowed) {
    ++st.total_requests;
    schedule_persist(self);
  }
  return r;
}

key_usage usage_of(const key_state& st) {
  key_usage u;
  u.key_hash = st.key.hash;
  u.key_id = st.key.id;
  u.user_id = st.key.user_id;
  u.total_requests = st.total_requests;
  const auto now = st.clock->now();
  for (const auto& [name, l] : st.limiters) {
    const auto d = l.check(now, 0);
    const auto [start, end] = core::window_bounds(l.policy(), now);
    policy_usage p;
    p.name = name;
    p.limit = l.policy().limit;
    p.used = l.used(now);
    p.remaining = std::max<std::int64_t>(0, p.limit - p.used);
    p.reset = reset_epoch(d.reset);
    p.window = std::chrono::duration_cast<std::chrono::seconds>(end - start).count();
    u.policies.push_back(std::move(p));
  }
  return u;
}

key_actor::behavior_type key_impl(key_pointer self) {
  self->state.last_used = std::chrono::steady_clock::now();
  self->delayed_send(self, self->state.cfg.idle_timeout, tick_atom::value);
  return {
    [=](auth_atom, const std::string& hash, const admission& a) -> auth_decision {
      auto& st = self->state;
      st.last_used = std::chrono::steady_clock::now();
      auth_decision d;
      if (!core::api_key::constant_time_equal(hash, st.key.hash)) {
        d.detail = "invalid API key";
        return d;
      }
      d.detail = core::key_refusal(st.key, to_epoch(st.clock->now()));
      if (!d.detail.empty())
        return d;
      if (st.idle_reported && a.direct) {
        // Stopping: what this actor counts now could miss its last write.
        // (What the directory forwarded came before its flush, and counts.)
        d.moved = true;
        return d;
      }
      d.who.user_id = st.key.user_id;
      d.who.key_id = st.key.id;
      d.who.role = st.user.role;
      d.who.key_hash = st.key.hash;
      d.who.env = st.key.env;
      d.who.last4 = st.key.last4;
      d.who.scopes = st.key.scopes;
      d.limits = admit(self, a);
      d.code = d.limits.allowed ? core::errc::ok : core::errc::too_many_requests;
      return d;
    },
    [=](usage_atom) -> key_usage { return usage_of(self->state); },
    [=](reserve_atom, std::int64_t tokens, bool direct) -> caf::result<token_reservation> {
      auto& st = self->state;
      token_reservation r;
      r.tokens = tokens;
      if (st.idle_reported && direct) {
        r.moved = true;  // stopping: the key's next actor reserves (as for auth)
        return r;
      }
      if (tokens < 0)
        return make_error(core::errc::bad_request, "a reservation cannot be negative");
      const auto now = st.clock->now();
      std::vector<core::limiter*> budgets;
      budgets.reserve(2);
      for (const char* name : {"tokens_day", "tokens_month"})
        if (auto it = st.limiters.find(name); it != st.limiters.end())
          budgets.push_back(&it->second);
      const auto d = core::admit(budgets, now, tokens);
      const auto left = [&](const char* name) -> std::int64_t {
        auto it = st.limiters.find(name);
        return it == st.limiters.end()
                 ? 0
                 : std::max<std::int64_t>(0, it->second.policy().limit - it->second.used(now));
      };
      r.remaining_day = left("tokens_day");
      r.remaining_month = left("tokens_month");
      if (!budgets.empty() && !d.allowed) {
        r.budget = d.policy;
        r.retry_after = d.retry_after.count();
        if (st.reservations_refused != nullptr)
          st.reservations_refused->inc();
        return r;
      }
      r.granted = true;
      ++st.open_reservations;
      if (st.tokens_reserved != nullptr)
        st.tokens_reserved->inc(static_cast<std::uint64_t>(tokens));
      if (st.cfg.direct) {
        // Granted before the write commits (with the rest of this burst of
        // actor work, after the call's upstream request left): the call
        // checks the write queue before its client sees an answer, and a
        // refused write makes it settle nothing used, which gives the
        // tokens back.
        write_through(self, [](const std::string& error) {
          if (!error.empty())
            spdlog::error("key actor: a token reservation was not stored: {}", error);
        });
        return r;
      }
      auto rp = self->make_response_promise<token_reservation>();
      // By name, not by pointer: a key or user change before the commit
      // rebuilds the limiters.
      write_through(self, [rp, r, self, tokens](const std::string& error) mutable {
        if (error.empty()) {
          rp.deliver(r);
          return;
        }
        // Not stored: give the tokens back and refuse.
        auto& s = self->state;
        s.open_reservations = std::max<std::int64_t>(0, s.open_reservations - 1);
        for (const char* name : {"tokens_day", "tokens_month"})
          if (auto it = s.limiters.find(name); it != s.limiters.end())
            it->second.refund(s.clock->now(), tokens);
        rp.deliver(make_error(core::errc::unavailable, "token usage could not be stored"));
      });
      return rp;
    },
    [=](settle_atom, std::int64_t reserved, std::int64_t used) -> caf::result<key_usage> {
      auto& st = self->state;
      if (reserved < 0 || used < 0)
        return make_error(core::errc::bad_request, "token counts cannot be negative");
      if (st.open_reservations == 0)
        spdlog::warn("key actor: a settlement without an open reservation");
      else
        --st.open_reservations;
      const auto now = st.clock->now();
      for (const char* name : {"tokens_day", "tokens_month"}) {
        auto it = st.limiters.find(name);
        if (it == st.limiters.end())
          continue;
        if (used < reserved)
          it->second.refund(now, reserved - used);
        else if (used > reserved)
          it->second.consume(now, used - reserved);  // real use is always counted
      }
      if (st.tokens_settled != nullptr)
        st.tokens_settled->inc(static_cast<std::uint64_t>(used));
      // Sent without a reply wanted (the I/O thread's settlement): the
      // usage report would be computed for nobody.
      const auto* m = self->current_mailbox_element();
      const bool wants_reply = m != nullptr && m->mid.is_request();
      if (used <= reserved) {
        // The stored counters already hold the whole reservation (it was
        // written before it counted), so they cover this use. What goes
        // back can wait for the next write (any reservation's, the periodic
        // one, an idle stop's or shutdown's): until then the stored use
        // overstates the key's, never understates it.
        schedule_persist(self);
        if (!wants_reply)
          return key_usage{};
        return usage_of(st);
      }
      auto rp = self->make_response_promise<key_usage>();
      write_through(self, [rp, self, wants_reply](const std::string& error) mutable {
        if (!error.empty())
          spdlog::error("key actor: settled token usage not stored: {}", error);
        rp.deliver(wants_reply ? usage_of(self->state) : key_usage{});
      });
      return rp;
    },
    [=](reset_atom) -> key_usage {
      // An admin's reset: every window and budget of the key starts empty.
      auto& st = self->state;
      for (auto& [name, l] : st.limiters)
        l = core::limiter{l.policy()};
      st.total_requests = 0;
      schedule_persist(self);
      return usage_of(st);
    },
    [=](persist_atom) { persist(self); },
    [=](commit_atom) { commit_counters(self); },
    [=](flush_atom) -> caf::result<write_ack> {
      // Shutdown: write the counters now and answer once they are stored.
      commit_counters(self);
      auto& st = self->state;
      if (!st.cfg.storage)
        return write_ack{};
      st.dirty = false;
      auto rp = self->make_response_promise<write_ack>();
      store_counters(self,
                     [rp](const std::string& error) mutable { rp.deliver(write_ack{error}); });
      return rp;
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
      rebuild(self->state);
    },
    [=](user_changed_atom, core::user_record& user) {
      self->state.user = std::move(user);
      rebuild(self->state);
    },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.idle_reported)
        return;
      const auto idle = std::chrono::steady_clock::now() - st.last_used;
      if (idle >= st.cfg.idle_timeout && st.open_reservations > 0) {
        // Calls still hold reservations here and settle with this actor.
        self->delayed_send(self, st.cfg.idle_timeout, tick_atom::value);
        return;
      }
      if (idle >= st.cfg.idle_timeout) {
        st.idle_reported = true;
        persist(self);
        self->send(st.directory, idle_atom::value, st.key.hash);
        return;
      }
      self->delayed_send(self, st.cfg.idle_timeout - idle, tick_atom::value);
    },
    [=](stop_atom) {
      commit_counters(self);
      persist(self);
      self->quit();
    },
  };
}

// ---- directory ------------------------------------------------------------

struct directory_state {
  struct entry {
    key_actor actor;
    std::uint64_t user_id = 0;
  };
  /// What to do with a key actor once it is running (or that it is not).
  struct waiting {
    std::function<void(const key_actor&)> go;
    std::function<void(const caf::error&)> fail;
    std::function<void()> unknown;  ///< no such key
  };
  accounts_actor accounts;
  const core::clock* clock = nullptr;
  key_directory_config cfg;
  std::unordered_map<std::string, entry> live;
  std::unordered_map<std::string, std::vector<waiting>> pending;
  /// Keys whose idle actor is writing its counters: a new actor for one of
  /// them waits (in `pending`) until that write is committed, so it never
  /// starts from counters older than its predecessor's last ones.
  std::unordered_set<std::string> stopping;
  metrics::gauge* live_gauge = nullptr;
  metrics::counter* spawned = nullptr;
  metrics::counter* tokens_reserved = nullptr;
  metrics::counter* tokens_settled = nullptr;
  metrics::counter* reservations_refused = nullptr;
  metrics::counter* counters_saved = nullptr;

  directory_state() = default;
  directory_state(const directory_state&) = delete;
  directory_state& operator=(const directory_state&) = delete;
  /// The directory's end (shutdown) ends its linked key actors: the shared
  /// list lets go of them.
  ~directory_state() {
    if (cfg.live)
      cfg.live->clear();
  }
};

using directory_pointer = key_directory_actor::stateful_pointer<directory_state>;

auth_decision refused(std::string detail) {
  auth_decision d;
  d.detail = std::move(detail);
  return d;
}

void fail_pending(directory_pointer self, const std::string& hash, const caf::error& e) {
  auto waiting = std::move(self->state.pending[hash]);
  self->state.pending.erase(hash);
  for (auto& w : waiting)
    w.fail(e);
}

void spawn_key(directory_pointer self, const std::string& hash, key_lookup& found,
               const std::string& stored_counters) {
  auto& st = self->state;
  auto waiting = std::move(st.pending[hash]);
  st.pending.erase(hash);
  std::vector<std::pair<std::string, core::limiter_state>> counters;
  std::uint64_t total = 0;
  if (!stored_counters.empty() && !decode_counters(stored_counters, counters, total))
    spdlog::error("key directory: stored counters of a key do not decode; starting fresh");
  // Linked: when the directory goes down (shutdown), its key actors go with it.
  auto actor = self->spawn<caf::linked>(
    [key = found.key, user = found.user, clock = st.clock, dir = key_directory_actor{self},
     cfg = st.cfg, counters = std::move(counters), total, reserved = st.tokens_reserved,
     settled = st.tokens_settled, refused = st.reservations_refused,
     saved = st.counters_saved](key_pointer k) mutable -> key_actor::behavior_type {
      auto& ks = k->state;
      ks.counters_saved = saved;
      ks.tokens_reserved = reserved;
      ks.tokens_settled = settled;
      ks.reservations_refused = refused;
      ks.key = std::move(key);
      ks.user = std::move(user);
      ks.clock = clock;
      ks.directory = std::move(dir);
      ks.cfg = std::move(cfg);
      ks.total_requests = total;
      // Restore stored counters first; rebuild() then attaches the current
      // policies to them (a restart never hands out a fresh window).
      for (auto& [name, state] : counters) {
        core::limit_policy placeholder;
        placeholder.name = name;
        if (name.rfind("route:", 0) == 0 && ks.cfg.limits) {
          const auto rest = name.substr(6);
          const auto sp = rest.find(' ');
          if (sp == std::string::npos)
            continue;
          auto p = core::route_policy(*ks.cfg.limits, rest.substr(0, sp), rest.substr(sp + 1),
                                      &ks.user);
          if (!p)
            continue;  // the route lost its limit
          placeholder = std::move(*p);
        }
        ks.limiters.emplace(name, core::limiter{std::move(placeholder), state});
      }
      rebuild(ks);
      return key_impl(k);
    });
  st.live[hash] = {actor, found.key.user_id};
  if (st.cfg.live)
    st.cfg.live->add(hash, actor);
  st.live_gauge->set(static_cast<std::int64_t>(st.live.size()));
  st.spawned->inc();
  for (auto& w : waiting)
    w.go(actor);
}

void on_lookup(directory_pointer self, const std::string& hash, key_lookup& found) {
  auto& st = self->state;
  if (!found.found) {
    auto waiting = std::move(st.pending[hash]);
    st.pending.erase(hash);
    for (auto& w : waiting)
      w.unknown();
    return;
  }
  if (!st.cfg.storage) {
    spawn_key(self, hash, found, {});
    return;
  }
  // The counters come from storage so that a restart or an idle stop never
  // hands out a fresh window.
  self
    ->request(st.cfg.storage, std::chrono::seconds{10}, read_atom::value,
              static_cast<std::uint8_t>(storage::column::usage), usage_key(hash))
    .then(
      [self, hash, found](read_result& r) mutable {
        if (!r.error.empty()) {
          fail_pending(self, hash,
                       make_error(core::errc::unavailable, "cannot read the key's counters"));
          return;
        }
        spawn_key(self, hash, found, r.found ? r.value : std::string{});
      },
      [self, hash](caf::error& e) { fail_pending(self, hash, e); });
}

/// Runs `w.go` with the key's actor, spawning it first (from the accounts
/// record and the stored counters) when the key is not live.
void with_key(directory_pointer self, const std::string& hash, directory_state::waiting w) {
  auto& st = self->state;
  if (auto it = st.live.find(hash); it != st.live.end()) {
    w.go(it->second.actor);
    return;
  }
  auto& queue = st.pending[hash];
  queue.push_back(std::move(w));
  if (queue.size() > 1 || st.stopping.count(hash) != 0)
    return;  // a lookup for this key is already under way, or will be
  self->request(st.accounts, std::chrono::seconds{10}, lookup_atom::value, hash)
    .then([self, hash](key_lookup& found) { on_lookup(self, hash, found); },
          [self, hash](caf::error& e) {
            spdlog::error("key directory: lookup failed: {}", to_string(e));
            fail_pending(self, hash, e);
          });
}

key_directory_actor::behavior_type directory_impl(directory_pointer self) {
  return {
    [=](lookup_atom, accounts_actor& accounts) { self->state.accounts = std::move(accounts); },
    [=](auth_atom, const std::string& hash, admission& a) -> caf::result<auth_decision> {
      if (auto it = self->state.live.find(hash); it != self->state.live.end())
        return self->delegate(it->second.actor, auth_atom::value, hash, std::move(a));
      auto rp = self->make_response_promise<auth_decision>();
      with_key(self, hash,
               {[rp, hash, a](const key_actor& k) mutable {
                  rp.delegate(k, auth_atom::value, hash, std::move(a));
                },
                [rp](const caf::error& e) mutable { rp.deliver(e); },
                [rp]() mutable { rp.deliver(refused("invalid API key")); }});
      return rp;
    },
    [=](usage_atom, const std::string& hash) -> caf::result<key_usage> {
      auto rp = self->make_response_promise<key_usage>();
      with_key(self, hash,
               {[rp](const key_actor& k) mutable { rp.delegate(k, usage_atom::value); },
                [rp](const caf::error& e) mutable { rp.deliver(e); },
                [rp]() mutable {
                  rp.deliver(make_error(core::errc::not_found, "no such API key"));
                }});
      return rp;
    },
    [=](reserve_atom, const std::string& hash,
        std::int64_t tokens) -> caf::result<token_reservation> {
      // A live key (every call's): straight on, as with_key would, without
      // its promise and callbacks.
      if (auto it = self->state.live.find(hash); it != self->state.live.end())
        return self->delegate(it->second.actor, reserve_atom::value, tokens, false);
      auto rp = self->make_response_promise<token_reservation>();
      with_key(self, hash,
               {[rp, tokens](const key_actor& k) mutable {
                  rp.delegate(k, reserve_atom::value, tokens, false);
                },
                [rp](const caf::error& e) mutable { rp.deliver(e); },
                [rp]() mutable {
                  rp.deliver(make_error(core::errc::not_found, "no such API key"));
                }});
      return rp;
    },
    [=](settle_atom, const std::string& hash, std::int64_t reserved,
        std::int64_t used) -> caf::result<key_usage> {
      if (auto it = self->state.live.find(hash); it != self->state.live.end())
        return self->delegate(it->second.actor, settle_atom::value, reserved, used);
      auto rp = self->make_response_promise<key_usage>();
      with_key(self, hash,
               {[rp, reserved, used](const key_actor& k) mutable {
                  rp.delegate(k, settle_atom::value, reserved, used);
                },
                [rp](const caf::error& e) mutable { rp.deliver(e); },
                [rp]() mutable {
                  rp.deliver(make_error(core::errc::not_found, "no such API key"));
                }});
      return rp;
    },
    [=](reset_atom, const std::string& hash) -> caf::result<key_usage> {
      auto rp = self->make_response_promise<key_usage>();
      with_key(self, hash,
               {[rp](const key_actor& k) mutable { rp.delegate(k, reset_atom::value); },
                [rp](const caf::error& e) mutable { rp.deliver(e); },
                [rp]() mutable {
                  rp.deliver(make_error(core::errc::not_found, "no such API key"));
                }});
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
      // Forget first, then flush and stop: every request already forwarded
      // is in the key actor's mailbox ahead of the flush. A request for the
      // key that comes meanwhile waits for the flush to commit.
      auto old = it->second.actor;
      st.live.erase(it);
      if (st.cfg.live)
        st.cfg.live->remove(hash);
      st.live_gauge->set(static_cast<std::int64_t>(st.live.size()));
      st.stopping.insert(hash);
      const auto resume = [self, hash, old] {
        self->send(old, stop_atom::value);
        auto& s = self->state;
        s.stopping.erase(hash);
        auto p = s.pending.find(hash);
        if (p == s.pending.end() || p->second.empty())
          return;
        auto waiters = std::move(p->second);
        s.pending.erase(p);
        for (auto& w : waiters)
          with_key(self, hash, std::move(w));
      };
      self->request(old, std::chrono::seconds{10}, flush_atom::value)
        .then([resume](write_ack&) { resume(); },
              [resume](caf::error& e) {
                spdlog::error("key directory: an idle key's counters were not saved: {}",
                              to_string(e));
                resume();
              });
    },
    [=](flush_atom) -> caf::result<std::uint64_t> {
      // Every live key writes its counters; answer when all have.
      auto& st = self->state;
      auto rp = self->make_response_promise<std::uint64_t>();
      if (st.live.empty()) {
        rp.deliver(std::uint64_t{0});
        return rp;
      }
      auto left = std::make_shared<std::size_t>(st.live.size());
      auto total = st.live.size();
      for (auto& [hash, entry] : st.live)
        self->request(entry.actor, std::chrono::seconds{10}, flush_atom::value)
          .then(
            [rp, left, total](write_ack& ack) mutable {
              if (!ack.ok())
                spdlog::error("shutdown: counters of a key not saved: {}", ack.error);
              if (--*left == 0)
                rp.deliver(std::uint64_t{total});
            },
            [rp, left, total](caf::error& e) mutable {
              spdlog::error("shutdown: a key actor did not flush: {}", to_string(e));
              if (--*left == 0)
                rp.deliver(std::uint64_t{total});
            });
      return rp;
    },
    [=](count_atom) -> std::uint64_t { return self->state.live.size(); },
  };
}

} // namespace

std::string encode_counters(const std::vector<std::pair<std::string, core::limiter_state>>& c,
                            std::uint64_t total_requests) {
  std::string out;
  append_counters_head(out, c.size(), total_requests);
  for (const auto& [name, s] : c)
    append_counters_line(out, name, s);
  return out;
}

bool decode_counters(std::string_view text,
                     std::vector<std::pair<std::string, core::limiter_state>>& out,
                     std::uint64_t& total_requests) {
  const auto num = [](std::string_view s, auto& v) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc{} && end == s.data() + s.size();
  };
  bool first = true;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    std::vector<std::string_view> f;
    std::size_t pos = 0;
    while (true) {
      const auto tab = line.find('\t', pos);
      f.push_back(line.substr(pos, tab == std::string_view::npos ? line.npos : tab - pos));
      if (tab == std::string_view::npos)
        break;
      pos = tab + 1;
    }
    if (first) {
      if (f.size() != 3 || f[0] != "v1" || f[1] != "total" || !num(f[2], total_requests))
        return false;
      first = false;
      continue;
    }
    core::limiter_state s;
    if (f.size() != 5 || !num(f[1], s.window_start) || !num(f[2], s.count)
        || !num(f[3], s.previous) || !num(f[4], s.tat_us))
      return false;
    out.emplace_back(std::string{f[0]}, s);
  }
  return !first;
}

key_actor live_keys::find(const std::string& hash) const {
  std::lock_guard<std::mutex> lock{mutex_};
  const auto it = actors_.find(hash);
  return it == actors_.end() ? key_actor{} : it->second;
}

void live_keys::add(const std::string& hash, key_actor actor) {
  std::lock_guard<std::mutex> lock{mutex_};
  actors_[hash] = std::move(actor);
}

void live_keys::remove(const std::string& hash) {
  key_actor gone;  // released after the lock
  std::lock_guard<std::mutex> lock{mutex_};
  if (const auto it = actors_.find(hash); it != actors_.end()) {
    gone = std::move(it->second);
    actors_.erase(it);
  }
}

void live_keys::clear() {
  std::unordered_map<std::string, key_actor> gone;
  std::lock_guard<std::mutex> lock{mutex_};
  gone.swap(actors_);
}

std::size_t live_keys::size() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return actors_.size();
}

key_directory_actor spawn_key_directory(caf::actor_system& sys, const core::clock& clock,
                                        key_directory_config cfg, metrics::registry& metrics) {
  auto& live = metrics.gauge_metric("tollgate_key_actors_live", "Key actors currently running.");
  auto& spawned = metrics.counter_metric("tollgate_key_actors_spawned_total",
                                         "Key actors started (first use or after idling).");
  auto& reserved = metrics.counter_metric("tollgate_tokens_reserved_total",
                                          "Tokens reserved against budgets before upstream calls.");
  auto& settled = metrics.counter_metric("tollgate_tokens_settled_total",
                                         "Tokens actually used, as settled after upstream calls.");
  auto& refused = metrics.counter_metric("tollgate_token_reservations_refused_total",
                                         "Reservations refused because a token budget was spent.");
  auto& saved = metrics.counter_metric("tollgate_key_counters_saved_total",
                                       "Periodic writes of key request windows to storage.");
  return sys.spawn([&clock, cfg = std::move(cfg), &live, &spawned, &reserved, &settled, &refused,
                    &saved](directory_pointer self) -> key_directory_actor::behavior_type {
    self->state.counters_saved = &saved;
    self->state.tokens_reserved = &reserved;
    self->state.tokens_settled = &settled;
    self->state.reservations_refused = &refused;
    self->state.clock = &clock;
    self->state.cfg = cfg;
    self->state.live_gauge = &live;
    self->state.spawned = &spawned;
    return directory_impl(self);
  });
}

} // namespace tollgate::actors
