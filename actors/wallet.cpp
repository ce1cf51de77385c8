#include "actors/wallet.hpp"

#include "actors/write_path.hpp"
#include "storage/write_queue.hpp"

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <limits>

namespace tollgate::actors {

namespace {

constexpr auto write_timeout = std::chrono::seconds{10};
constexpr auto lookup_timeout = std::chrono::seconds{5};

struct wallet_state {
  storage_actor storage;
  std::shared_ptr<storage::write_queue> direct;
  accounts_actor accounts;
  const core::clock* clock = nullptr;
  std::map<std::uint64_t, std::int64_t> balances;
  std::uint64_t next_entry = 1;
  std::uint64_t next_hold = 1;
  /// Writes of one burst, committed together by the next commit message
  /// (storage actor) or the write queue's next batch (`direct`).
  std::vector<storage::write_op> pending;
  std::vector<std::function<void(bool)>> pending_done;
  bool commit_scheduled = false;
  /// A write waits in the write queue (`queue_pending`).
  bool write_queued = false;
  /// The number of the last write put in the write queue: once its batch
  /// is built it may still wait for a writer thread to commit it.
  std::uint64_t last_write = 0;
  /// The ledger sequence as last put in a write-queue batch (0: unknown).
  /// A hold creates no entry: its batch need not rewrite the sequence.
  std::uint64_t seq_queued = 0;
  state_life life = std::make_shared<char>();

  wallet_state() = default;
  wallet_state(const wallet_state&) = delete;
  wallet_state& operator=(const wallet_state&) = delete;
  /// CAF destroys the state when the actor ends: a write still waiting in
  /// the queue (its encoder finds the state gone) is written from here.
  ~wallet_state() {
    if (!write_queued || !direct)
      return;
    pending.push_back({static_cast<std::uint8_t>(storage::column::meta), "seq/ledger",
                       std::to_string(next_entry), false});
    direct->submit(std::move(pending), [](const std::string& error) {
      if (!error.empty())
        spdlog::error("wallet: last writes at shutdown not committed: {}", error);
    });
  }

  std::int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(clock->now().time_since_epoch())
      .count();
  }
};

using wallet_pointer = wallet_actor::stateful_pointer<wallet_state>;

storage::write_op put(std::string key, std::string value) {
  return {static_cast<std::uint8_t>(storage::column::ledger), std::move(key), std::move(value),
          false};
}

/// A ledger entry whose JSON is made when its batch commits (on the write
/// queue's writer under load), not in the wallet's step on the I/O thread.
/// The wallet's answer reads the same entry.
struct entry_value final : storage::deferred_value {
  explicit entry_value(ledger_entry e) : entry(std::move(e)) {}
  std::string make() const override { return encode(entry); }
  ledger_entry entry;
};

storage::write_op put_entry(std::shared_ptr<const entry_value> v) {
  storage::write_op op = put(entry_key(v->entry.user_id, v->entry.id), {});
  op.deferred = std::move(v);
  return op;
}

std::vector<storage::write_op> balance_ops(const wallet_state& st, std::uint64_t user_id) {
  std::vector<storage::write_op> ops;
  ops.reserve(2);  // a charge or credit adds its entry
  ops.push_back(put(balance_key(user_id), std::to_string(st.balances.at(user_id))));
  return ops;
}

/// Writes ops; `done(true)` once committed, `done(false)` when refused or
/// unconfirmed. Not awaited: the wallet goes on with the next message, so
/// calls of many users share group commits. Balances are whole values and
/// the storage actor commits in order, so the last write always holds the
/// latest balance.
template <class Done>
void write_now(wallet_pointer self, std::vector<storage::write_op> ops, Done done) {
  ops.push_back({static_cast<std::uint8_t>(storage::column::meta), "seq/ledger",
                 std::to_string(self->state.next_entry), false});
  write_ops(self, self->state.storage, std::move(ops),
            [done](const std::string& error) mutable {
              if (!error.empty())
                spdlog::error("wallet: write not committed: {}", error);
              done(error.empty());
            });
}

/// Through the storage actor, writes of a burst (the messages already in
/// the mailbox) share one batch: the first schedules a commit message that
/// queues behind them.
void commit(wallet_pointer self) {
  auto& st = self->state;
  st.commit_scheduled = false;
  if (st.direct || st.pending_done.empty())  // the queue's write takes them
    return;
  auto ops = std::move(st.pending);
  auto done = std::move(st.pending_done);
  st.pending.clear();
  st.pending_done.clear();
  write_now(self, std::move(ops), [done = std::move(done)](bool ok) {
    for (const auto& d : done)
      d(ok);
  });
}

/// One write in the write queue for what the wallet changes until its batch
/// is built: queued before any grant it backs goes out, it takes every
/// write that came before then.
void queue_pending(wallet_pointer self) {
  auto& st = self->state;
  st.write_queued = true;
  struct taken {
    std::vector<std::function<void(bool)>> done;
  };
  auto t = std::make_shared<taken>();
  std::weak_ptr<char> alive = st.life;
  st.last_write = st.direct->submit_lazy(
    [self, alive, t]() -> std::vector<storage::write_op> {
      if (alive.expired())
        return {};
      auto& s = self->state;
      s.write_queued = false;
      auto ops = std::move(s.pending);
      s.pending.clear();
      t->done.swap(s.pending_done);
      if (s.next_entry != s.seq_queued) {
        ops.push_back({static_cast<std::uint8_t>(storage::column::meta), "seq/ledger",
                       std::to_string(s.next_entry), false});
        s.seq_queued = s.next_entry;
      }
      return ops;
    },
    [self, alive, t](const std::string& error) {
      if (alive.expired())
        return;
      if (!error.empty()) {
        spdlog::error("wallet: write not committed: {}", error);
        self->state.seq_queued = 0;  // the next batch writes it again
      }
      for (const auto& d : t->done)
        d(error.empty());
    });
}

template <class Done>
void write(wallet_pointer self, std::vector<storage::write_op> ops, Done done) {
  auto& st = self->state;
  for (auto& op : ops)
    st.pending.push_back(std::move(op));
  st.pending_done.emplace_back(std::move(done));
  if (st.direct) {
    if (!st.write_queued)
      queue_pending(self);
    return;
  }
  if (!st.commit_scheduled) {
    st.commit_scheduled = true;
    self->send(self, commit_atom::value);
  }
}

/// Runs `then` once the user's balance is known: at once, or after asking
/// the accounts actor for the initial credits of a user the wallet has never
/// seen. The lookup is awaited, so no other change overtakes it.
template <class Then>
void with_balance(wallet_pointer self, std::uint64_t user_id, Then then) {
  if (self->state.balances.count(user_id) != 0) {
    then(true);
    return;
  }
  self->request(self->state.accounts, lookup_timeout, get_user_atom::value, user_id)
    .await(
      [self, user_id, then](core::user_record& u) mutable {
        self->state.balances.emplace(user_id, u.credits_micro);
        then(true);
      },
      [then](caf::error&) mutable { then(false); });
}

caf::error unknown_user(std::uint64_t user_id) {
  return make_error(core::errc::not_found, "user " + std::to_string(user_id) + " not found");
}

caf::error not_saved() {
  return make_error(core::errc::unavailable, "storage is failing; the change was not confirmed");
}

} // namespace

namespace {

/// `id` in 20 digits, zero-padded (snprintf's "%020llu", which cost a call
/// about 3% of its instructions: two or three of these per call).
void append_padded(std::string& out, std::uint64_t id) {
  char digits[20];
  for (int i = 19; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + id % 10);
    id /= 10;
  }
  out.append(digits, sizeof digits);
}

} // namespace

std::string balance_key(std::uint64_t user_id) {
  std::string key = "b/";
  key.reserve(22);
  append_padded(key, user_id);
  return key;
}

std::string entry_key(std::uint64_t user_id, std::uint64_t entry_id) {
  std::string key = "e/";
  key.reserve(43);
  append_padded(key, user_id);
  key += '/';
  append_padded(key, entry_id);
  return key;
}

std::string encode(const ledger_entry& e) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  const auto str = [&w](const char* k, const std::string& v) {
    w.Key(k);
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  };
  w.StartObject();
  w.Key("id");
  w.Uint64(e.id);
  w.Key("user_id");
  w.Uint64(e.user_id);
  w.Key("key_id");
  w.Uint64(e.key_id);
  str("kind", e.kind);
  str("model", e.model);
  str("provider", e.provider);
  w.Key("prompt_tokens");
  w.Int64(e.prompt_tokens);
  w.Key("completion_tokens");
  w.Int64(e.completion_tokens);
  w.Key("amount_micro");
  w.Int64(e.amount_micro);
  w.Key("balance_micro");
  w.Int64(e.balance_micro);
  w.Key("timestamp");
  w.Int64(e.timestamp);
  str("request_id", e.request_id);
  str("note", e.note);
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

std::optional<ledger_entry> decode_entry(std::string_view json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError() || !d.IsObject())
    return std::nullopt;
  ledger_entry e;
  const auto u64 = [&d](const char* k, std::uint64_t& out) {
    if (d.HasMember(k) && d[k].IsUint64())
      out = d[k].GetUint64();
  };
  const auto i64 = [&d](const char* k, std::int64_t& out) {
    if (d.HasMember(k) && d[k].IsInt64())
      out = d[k].GetInt64();
  };
  const auto str = [&d](const char* k, std::string& out) {
    if (d.HasMember(k) && d[k].IsString())
      out.assign(d[k].GetString(), d[k].GetStringLength());
  };
  u64("id", e.id);
  u64("user_id", e.user_id);
  u64("key_id", e.key_id);
  str("kind", e.kind);
  str("model", e.model);
  str("provider", e.provider);
  i64("prompt_tokens", e.prompt_tokens);
  i64("completion_tokens", e.completion_tokens);
  i64("amount_micro", e.amount_micro);
  i64("balance_micro", e.balance_micro);
  i64("timestamp", e.timestamp);
  str("request_id", e.request_id);
  str("note", e.note);
  if (e.id == 0 || e.user_id == 0)
    return std::nullopt;
  return e;
}

wallet_snapshot load_wallet(storage::store& db) {
  wallet_snapshot snap;
  constexpr auto all = std::numeric_limits<std::size_t>::max();
  for (const auto& [key, value] : db.scan(storage::column::ledger, "b/", all)) {
    try {
      snap.balances[std::stoull(key.substr(2))] = std::stoll(value);
    } catch (...) {
      spdlog::error("storage: skipping undecodable balance {}", key);
    }
  }
  std::string value;
  std::string error;
  if (db.get(storage::column::meta, "seq/ledger", value, error)) {
    try {
      snap.next_entry = std::stoull(value);
    } catch (...) {
      spdlog::error("storage: undecodable seq/ledger; scanning the ledger");
    }
  }
  // The sequence is written with every batch that adds an entry; a scan
  // guards against a batch that was lost, and a store written by a version
  // that did not write it.
  for (const auto& [key, v] : db.scan(storage::column::ledger, "e/", all))
    if (auto e = decode_entry(v))
      snap.next_entry = std::max(snap.next_entry, e->id + 1);
  return snap;
}

wallet_actor spawn_wallet(caf::actor_system& sys, wallet_snapshot snapshot, storage_actor storage,
                          accounts_actor accounts, const core::clock& clock,
                          std::shared_ptr<storage::write_queue> direct) {
  return sys.spawn([snapshot = std::move(snapshot), storage, accounts, &clock,
                    direct = std::move(direct)](
                     wallet_pointer self) mutable -> wallet_actor::behavior_type {
    auto& init = self->state;
    init.storage = storage;
    init.direct = std::move(direct);
    init.accounts = accounts;
    init.clock = &clock;
    init.balances = std::move(snapshot.balances);
    init.next_entry = snapshot.next_entry;
    return {
      [=](hold_atom, std::uint64_t user_id, std::int64_t amount) -> caf::result<credit_hold> {
        auto rp = self->make_response_promise<credit_hold>();
        with_balance(self, user_id, [self, rp, user_id, amount](bool known) mutable {
          if (!known) {
            rp.deliver(unknown_user(user_id));
            return;
          }
          auto& st = self->state;
          auto& balance = st.balances[user_id];
          credit_hold h;
          h.balance_micro = balance;
          if (amount < 0 || balance - amount < 0) {
            rp.deliver(h);  // refused: not enough credits
            return;
          }
          h.granted = true;
          h.hold_id = st.next_hold++;
          h.held_micro = amount;
          if (amount == 0) {
            rp.deliver(h);
            return;
          }
          balance -= amount;
          h.balance_micro = balance;
          if (st.direct) {
            // Granted before the write commits (with the rest of this burst
            // of actor work): the call checks the write queue before its
            // client sees an answer, and a refused write makes it release
            // the hold.
            write(self, balance_ops(st, user_id), [](bool) {});
            rp.deliver(h);
            return;
          }
          write(self, balance_ops(st, user_id), [self, rp, h, user_id](bool ok) mutable {
            if (ok) {
              rp.deliver(h);
              return;
            }
            self->state.balances[user_id] += h.held_micro;
            rp.deliver(not_saved());
          });
        });
        return rp;
      },
      [=](charge_atom, charge_request& c) -> caf::result<ledger_entry> {
        auto rp = self->make_response_promise<ledger_entry>();
        const auto user_id = c.entry.user_id;
        with_balance(self, user_id, [self, rp, c = std::move(c)](bool known) mutable {
          if (!known) {
            rp.deliver(unknown_user(c.entry.user_id));
            return;
          }
          auto& st = self->state;
          auto& balance = st.balances[c.entry.user_id];
          // Exact: the real cost is charged even when it exceeds the hold
          // (an upstream that ignored max_tokens); the balance may then dip
          // below zero by that excess, and the next hold is refused.
          balance += c.held_micro - c.entry.amount_micro;
          auto e = std::move(c.entry);
          e.id = st.next_entry++;
          e.kind = "charge";
          e.balance_micro = balance;
          e.timestamp = st.now();
          auto v = std::make_shared<const entry_value>(std::move(e));
          auto ops = balance_ops(st, v->entry.user_id);
          ops.push_back(put_entry(v));
          write(self, std::move(ops), [rp, v](bool ok) mutable {
            if (!rp.pending())
              return;  // sent without a reply wanted (the I/O thread's charge)
            if (ok)
              rp.deliver(v->entry);
            else
              rp.deliver(not_saved());
          });
        });
        return rp;
      },
      [=](release_atom, std::uint64_t user_id, std::int64_t held) -> caf::result<std::int64_t> {
        // A hold given back whole: the call did not happen. No ledger entry.
        auto rp = self->make_response_promise<std::int64_t>();
        with_balance(self, user_id, [self, rp, user_id, held](bool known) mutable {
          if (!known) {
            rp.deliver(unknown_user(user_id));
            return;
          }
          auto& st = self->state;
          st.balances[user_id] += std::max<std::int64_t>(0, held);
          const auto balance = st.balances[user_id];
          write(self, balance_ops(st, user_id), [rp, balance](bool ok) mutable {
            if (ok)
              rp.deliver(balance);
            else
              rp.deliver(not_saved());
          });
        });
        return rp;
      },
      [=](credit_atom, ledger_entry& in) -> caf::result<ledger_entry> {
        auto rp = self->make_response_promise<ledger_entry>();
        const auto user_id = in.user_id;
        with_balance(self, user_id, [self, rp, in = std::move(in)](bool known) mutable {
          if (!known) {
            rp.deliver(unknown_user(in.user_id));
            return;
          }
          auto& st = self->state;
          auto& balance = st.balances[in.user_id];
          if (in.amount_micro > std::numeric_limits<std::int64_t>::max() / 2 - balance) {
            rp.deliver(make_error(core::errc::bad_request, "credits: the balance would overflow"));
            return;
          }
          balance += in.amount_micro;
          auto e = std::move(in);
          e.id = st.next_entry++;
          e.kind = "credit";
          e.balance_micro = balance;
          e.timestamp = st.now();
          auto v = std::make_shared<const entry_value>(std::move(e));
          auto ops = balance_ops(st, v->entry.user_id);
          ops.push_back(put_entry(v));
          write(self, std::move(ops), [self, rp, v](bool ok) mutable {
            if (ok) {
              rp.deliver(v->entry);
              return;
            }
            self->state.balances[v->entry.user_id] -= v->entry.amount_micro;
            rp.deliver(not_saved());
          });
        });
        return rp;
      },
      [=](balance_atom, std::uint64_t user_id) -> caf::result<std::int64_t> {
        auto rp = self->make_response_promise<std::int64_t>();
        with_balance(self, user_id, [self, rp, user_id](bool known) mutable {
          if (known)
            rp.deliver(self->state.balances[user_id]);
          else
            rp.deliver(unknown_user(user_id));
        });
        return rp;
      },
      [=](commit_atom) { commit(self); },
      [=](ledger_atom, std::uint64_t user_id, const page& range)
        -> caf::result<std::vector<ledger_entry>> {
        auto rp = self->make_response_promise<std::vector<ledger_entry>>();
        const auto prefix = balance_key(user_id).replace(0, 1, "e") + "/";
        const auto want = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(range.offset + range.limit, 1'000'000));
        auto scan = [self, rp, range, prefix, want](bool) mutable {
          self
            ->request(self->state.storage, write_timeout, scan_atom::value,
                      static_cast<std::uint8_t>(storage::column::ledger), prefix, want)
            .then(
            [rp, range](scan_result& r) mutable {
              std::vector<ledger_entry> out;
              for (std::size_t i = range.offset; i < r.rows.size(); ++i)
                if (auto e = decode_entry(r.rows[i].second))
                  out.push_back(std::move(*e));
              rp.deliver(std::move(out));
            },
            [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        };
        // A charge still in the write queue is read after it commits; so
        // is one whose batch is built but still with the writer thread.
        auto& st = self->state;
        if (st.write_queued)
          st.pending_done.emplace_back(std::move(scan));
        else if (st.direct && st.direct->committed() < st.last_write)
          st.direct->when_committed(st.last_write, [scan]() mutable { scan(true); });
        else
          scan(true);
        return rp;
      },
    };
  });
}

} // namespace tollgate::actors
