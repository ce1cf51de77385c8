#include "actors/accounts.hpp"

#include "core/api_key.hpp"
#include "storage/records.hpp"

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <map>
#include <unordered_map>

namespace tollgate::actors {

namespace {

struct accounts_state {
  storage_actor storage;
  key_directory_actor directory;
  const core::clock* clock = nullptr;
  accounts_config cfg;
  std::map<std::uint64_t, core::user_record> users;
  std::unordered_map<std::string, std::uint64_t> user_by_name;
  std::map<std::uint64_t, core::key_record> keys;
  std::unordered_map<std::string, std::uint64_t> key_by_hash;
  std::unordered_map<std::string, std::uint64_t> key_by_short_hash;
  std::vector<core::audit_entry> audit;
  std::uint64_t next_user = 1;
  std::uint64_t next_key = 1;
  std::uint64_t next_audit = 1;

  std::int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(clock->now().time_since_epoch())
      .count();
  }
};

using accounts_pointer = accounts_actor::stateful_pointer<accounts_state>;

constexpr auto write_timeout = std::chrono::seconds{10};

storage::write_op put_op(storage::column c, std::string key, std::string value) {
  return {static_cast<std::uint8_t>(c), std::move(key), std::move(value), false};
}

storage::write_op erase_op(storage::column c, std::string key) {
  return {static_cast<std::uint8_t>(c), std::move(key), {}, true};
}

/// Small JSON objects for audit details.
class details {
public:
  details() : w_(buf_) { w_.StartObject(); }
  details& str(const char* k, std::string_view v) {
    w_.Key(k);
    w_.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    return *this;
  }
  details& boolean(const char* k, bool v) {
    w_.Key(k);
    w_.Bool(v);
    return *this;
  }
  details& list(const char* k, const std::vector<std::string>& v) {
    w_.Key(k);
    w_.StartArray();
    for (const auto& s : v)
      w_.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
    w_.EndArray();
    return *this;
  }
  std::string take() {
    w_.EndObject();
    return {buf_.GetString(), buf_.GetSize()};
  }

private:
  rapidjson::StringBuffer buf_;
  rapidjson::Writer<rapidjson::StringBuffer> w_;
};

core::audit_entry& add_audit(accounts_pointer self, std::vector<storage::write_op>& ops,
                             const core::audit_context& ctx, std::string action,
                             std::string resource_type, std::string resource_id,
                             std::string details_json) {
  auto& st = self->state;
  core::audit_entry a;
  a.id = st.next_audit++;
  a.user_id = ctx.user_id;
  a.action = std::move(action);
  a.resource_type = std::move(resource_type);
  a.resource_id = std::move(resource_id);
  a.details_json = std::move(details_json);
  a.ip_address = ctx.ip_address;
  a.user_agent = ctx.user_agent;
  a.timestamp = st.now();
  ops.push_back(put_op(storage::column::audit, storage::audit_key(a.id), storage::encode(a)));
  st.audit.push_back(std::move(a));
  return st.audit.back();
}

/// The id sequences go into every batch, so an id is never handed out twice,
/// not even after the record that had it was deleted and the process restarted.
void add_sequences(const accounts_state& st, std::vector<storage::write_op>& ops) {
  ops.push_back(put_op(storage::column::meta, "seq/user", std::to_string(st.next_user)));
  ops.push_back(put_op(storage::column::meta, "seq/key", std::to_string(st.next_key)));
  ops.push_back(put_op(storage::column::meta, "seq/audit", std::to_string(st.next_audit)));
}

/// Writes ops in one batch. Mutations are serialised: `await` keeps every
/// other message of this actor in the mailbox until the write is answered,
/// so no change or lookup ever sees another change that is not committed,
/// and `undo` restores exactly the state before this change.
///
///   committed  -> effects(), then ok()
///   refused    -> undo(), then failed(503 "nothing was changed")
///   no answer  -> effects() (the write may still land: keep memory, key
///                 actors and RocksDB agreeing on the likelier outcome),
///                 then failed(503 "may have been saved")
template <class Effects, class Ok, class Undo, class Failed>
void persist(accounts_pointer self, std::vector<storage::write_op> ops, Effects effects, Ok ok,
             Undo undo, Failed failed) {
  add_sequences(self->state, ops);
  self->request(self->state.storage, write_timeout, write_atom::value, std::move(ops))
    .await(
      [effects, ok, undo, failed](write_ack& ack) mutable {
        if (ack.ok()) {
          effects();
          ok();
          return;
        }
        spdlog::error("accounts: write refused: {}", ack.error);
        undo();
        failed(make_error(core::errc::unavailable, "storage is failing; nothing was changed"));
      },
      [effects, failed](caf::error& e) mutable {
        spdlog::error("accounts: write not confirmed: {}", to_string(e));
        effects();
        failed(make_error(core::errc::unavailable,
                          "storage did not confirm the change in time; it may have been saved"));
      });
}

/// persist() for handlers that answer with the committed value.
template <class T, class Undo>
void persist_then_deliver(accounts_pointer self, std::vector<storage::write_op> ops,
                          caf::typed_response_promise<T> rp, T value, Undo undo,
                          std::function<void()> after_commit = {}) {
  persist(
    self, std::move(ops),
    [after_commit] {
      if (after_commit)
        after_commit();
    },
    [rp, value]() mutable { rp.deliver(std::move(value)); }, undo,
    [rp](caf::error e) mutable { rp.deliver(std::move(e)); });
}

core::key_record make_key(accounts_pointer self, std::uint64_t user_id, std::string name,
                          std::string env, core::scope_permissions scopes,
                          std::int64_t expires_at, const std::string& plaintext) {
  auto& st = self->state;
  core::key_record k;
  k.id = st.next_key++;
  k.user_id = user_id;
  k.hash = core::api_key::sha256_hex(plaintext);
  k.name = std::move(name);
  k.env = std::move(env);
  k.last4 = plaintext.substr(plaintext.size() - 4);
  k.scopes = std::move(scopes);
  k.created_at = st.now();
  k.updated_at = k.created_at;
  k.expires_at = expires_at;
  return k;
}

void insert_key(accounts_state& st, const core::key_record& k) {
  st.keys[k.id] = k;
  st.key_by_hash[k.hash] = k.id;
  st.key_by_short_hash[core::api_key::short_hash(k.hash)] = k.id;
}

void erase_key(accounts_state& st, const core::key_record& k) {
  st.keys.erase(k.id);
  st.key_by_hash.erase(k.hash);
  st.key_by_short_hash.erase(core::api_key::short_hash(k.hash));
}

void insert_user(accounts_state& st, const core::user_record& u) {
  st.users[u.id] = u;
  st.user_by_name[u.username] = u.id;
}

void erase_user(accounts_state& st, const core::user_record& u) {
  st.users.erase(u.id);
  st.user_by_name.erase(u.username);
}

/// The key if the requester may see it; otherwise nullptr (which callers
/// turn into 404, so other users' keys do not even appear to exist).
core::key_record* visible_key(accounts_state& st, const key_access& a) {
  auto id = a.key_id;
  if (id == 0) {
    auto h = st.key_by_short_hash.find(a.short_hash);
    if (h == st.key_by_short_hash.end())
      return nullptr;
    id = h->second;
  }
  auto it = st.keys.find(id);
  if (it == st.keys.end())
    return nullptr;
  if (!a.admin && it->second.user_id != a.requester)
    return nullptr;
  return &it->second;
}

caf::error key_not_found(const key_access& a) {
  return make_error(core::errc::not_found,
                    "API key " + (a.key_id != 0 ? std::to_string(a.key_id) : a.short_hash)
                      + " not found");
}

std::size_t keys_of(const accounts_state& st, std::uint64_t user_id) {
  return static_cast<std::size_t>(std::count_if(
    st.keys.begin(), st.keys.end(), [&](const auto& kv) { return kv.second.user_id == user_id; }));
}

/// Creates a user and a first key in one committed batch, then calls
/// `done` with the result or the error.
void create_user(accounts_pointer self, const new_user& req, const std::string& role,
                 std::string plaintext, std::function<void(caf::expected<created_key>)> done) {
  auto& st = self->state;
  if (st.user_by_name.count(req.username) != 0) {
    done(make_error(core::errc::conflict, "username: '" + req.username + "' is already taken"));
    return;
  }
  core::user_record u;
  u.id = st.next_user++;
  u.username = req.username;
  u.email = req.email;
  u.role = role;
  u.auth_method = req.auth_method.empty() ? "api_key" : req.auth_method;
  // The first admin gets credits too, so the demo provider answers out of the box.
  u.credits_micro = st.cfg.initial_credits_micro;
  // The operator's own account should not run into the free plan's hourly
  // limit while administering.
  if (role == core::role_admin)
    u.plan = "enterprise";
  u.created_at = st.now();
  u.role_assigned_at = u.created_at;
  if (plaintext.empty()) {
    try {
      plaintext = core::api_key::generate(req.env);
    } catch (const std::exception& e) {
      st.next_user--;
      done(make_error(core::errc::unavailable, std::string{"cannot create a key: "} + e.what()));
      return;
    }
  }
  auto k = make_key(self, u.id, "default", req.env, {}, 0, plaintext);
  insert_user(st, u);
  insert_key(st, k);
  std::vector<storage::write_op> ops;
  ops.push_back(put_op(storage::column::users, storage::user_key(u.id), storage::encode(u)));
  ops.push_back(put_op(storage::column::keys, storage::key_key(k.hash), storage::encode(k)));
  add_audit(self, ops, req.ctx, "user_created", "user", std::to_string(u.id),
            details{}.str("username", u.username).str("role", u.role).take());
  add_audit(self, ops, req.ctx, "api_key_created", "api_key", std::to_string(k.id),
            details{}.str("key_name", k.name).str("environment_tag", k.env).take());
  const auto audits = st.audit.size();
  persist(
    self, std::move(ops), [] {},
    [done, ck = created_key{k, u, plaintext}]() mutable { done(std::move(ck)); },
    [self, u, k, audits] {
      erase_user(self->state, u);
      erase_key(self->state, k);
      self->state.audit.resize(audits - 2);
    },
    [done](caf::error e) mutable { done(std::move(e)); });
}

/// Writes a changed key and its audit entry; on commit the key directory
/// hears of it (so a running key actor sees it before the caller does), on
/// refusal the key is put back as it was.
caf::result<core::key_record> commit_key_change(accounts_pointer self,
                                                const core::key_record& before,
                                                const core::key_record& after,
                                                const core::audit_context& ctx, std::string action,
                                                std::string details_json) {
  auto& st = self->state;
  std::vector<storage::write_op> ops;
  ops.push_back(
    put_op(storage::column::keys, storage::key_key(after.hash), storage::encode(after)));
  add_audit(self, ops, ctx, std::move(action), "api_key", std::to_string(after.id),
            std::move(details_json));
  const auto audits = st.audit.size();
  auto rp = self->make_response_promise<core::key_record>();
  persist_then_deliver(
    self, std::move(ops), rp, after,
    [self, before, audits] {
      insert_key(self->state, before);
      self->state.audit.resize(audits - 1);
    },
    [self, after] { self->send(self->state.directory, key_changed_atom::value, after, false); });
  return rp;
}

accounts_actor::behavior_type accounts_impl(accounts_pointer self) {
  return {
    [=](lookup_atom, const std::string& hash) -> key_lookup {
      auto& st = self->state;
      key_lookup r;
      auto it = st.key_by_hash.find(hash);
      if (it == st.key_by_hash.end())
        return r;
      auto kit = st.keys.find(it->second);
      if (kit == st.keys.end())
        return r;
      r.key = kit->second;
      auto u = st.users.find(r.key.user_id);
      if (u == st.users.end())
        return r;
      r.user = u->second;
      r.found = true;
      return r;
    },
    [=](create_user_atom, const new_user& req) -> caf::result<created_key> {
      auto rp = self->make_response_promise<created_key>();
      create_user(self, req, core::role_user, {}, [rp](caf::expected<created_key> r) mutable {
        if (r)
          rp.deliver(std::move(*r));
        else
          rp.deliver(std::move(r.error()));
      });
      return rp;
    },
    [=](create_key_atom, new_key& req) -> caf::result<created_key> {
      auto& st = self->state;
      auto u = st.users.find(req.user_id);
      if (u == st.users.end())
        return make_error(core::errc::not_found,
                          "user_id: user " + std::to_string(req.user_id) + " not found");
      if (keys_of(st, req.user_id) >= st.cfg.max_keys_per_user)
        return make_error(core::errc::conflict, "this user already has the maximum of "
                                                  + std::to_string(st.cfg.max_keys_per_user)
                                                  + " keys; delete one first");
      std::string plaintext;
      try {
        plaintext = core::api_key::generate(req.env);
      } catch (const std::exception& e) {
        return make_error(core::errc::unavailable,
                          std::string{"cannot create a key: "} + e.what());
      }
      auto k = make_key(self, req.user_id, req.name, req.env, req.scopes, req.expires_at,
                        plaintext);
      insert_key(st, k);
      std::vector<storage::write_op> ops;
      ops.push_back(put_op(storage::column::keys, storage::key_key(k.hash), storage::encode(k)));
      add_audit(self, ops, req.ctx, "api_key_created", "api_key", std::to_string(k.id),
                details{}
                  .str("key_name", k.name)
                  .str("environment_tag", k.env)
                  .list("read", k.scopes.read)
                  .list("write", k.scopes.write)
                  .take());
      const auto audits = st.audit.size();
      auto rp = self->make_response_promise<created_key>();
      persist_then_deliver(self, std::move(ops), rp, created_key{k, u->second, plaintext},
                           [self, k, audits] {
                             erase_key(self->state, k);
                             self->state.audit.resize(audits - 1);
                           });
      return rp;
    },
    [=](list_keys_atom, std::uint64_t user_id, const page& range) -> key_list {
      key_list r;
      for (const auto& [id, k] : self->state.keys) {
        if (user_id != 0 && k.user_id != user_id)
          continue;
        if (r.total >= range.offset && r.keys.size() < range.limit)
          r.keys.push_back(k);
        ++r.total;
      }
      return r;
    },
    [=](get_key_atom, const key_access& a) -> caf::result<core::key_record> {
      auto* k = visible_key(self->state, a);
      if (k == nullptr)
        return key_not_found(a);
      return *k;
    },
    [=](update_key_atom, key_update& upd) -> caf::result<core::key_record> {
      auto& st = self->state;
      auto* k = visible_key(st, upd.access);
      if (k == nullptr)
        return key_not_found(upd.access);
      if (k->revoked)
        return make_error(core::errc::conflict, "a revoked key cannot be changed");
      const auto before = *k;
      details d;
      if (upd.set_name) {
        k->name = upd.name;
        d.str("key_name", upd.name);
      }
      if (upd.set_active) {
        k->active = upd.active;
        d.boolean("is_active", upd.active);
      }
      if (upd.set_scopes) {
        k->scopes = upd.scopes;
        d.list("read", upd.scopes.read).list("write", upd.scopes.write);
      }
      k->updated_at = st.now();
      return commit_key_change(self, before, *k, upd.access.ctx, "api_key_updated", d.take());
    },
    [=](revoke_key_atom, const key_access& a) -> caf::result<core::key_record> {
      auto& st = self->state;
      auto* k = visible_key(st, a);
      if (k == nullptr)
        return key_not_found(a);
      if (k->revoked)
        return *k;  // revoking twice changes nothing
      const auto before = *k;
      k->revoked = true;
      k->active = false;
      k->revoked_at = st.now();
      k->updated_at = k->revoked_at;
      return commit_key_change(self, before, *k, a.ctx, "api_key_revoked",
                               details{}.str("key_name", k->name).take());
    },
    [=](delete_key_atom, const key_access& a) -> caf::result<core::key_record> {
      auto& st = self->state;
      auto* k = visible_key(st, a);
      if (k == nullptr)
        return key_not_found(a);
      const auto gone = *k;
      erase_key(st, gone);
      std::vector<storage::write_op> ops;
      ops.push_back(erase_op(storage::column::keys, storage::key_key(gone.hash)));
      add_audit(self, ops, a.ctx, "api_key_deleted", "api_key", std::to_string(gone.id),
                details{}.str("key_name", gone.name).take());
      const auto audits = st.audit.size();
      auto rp = self->make_response_promise<core::key_record>();
      persist_then_deliver(
        self, std::move(ops), rp, gone,
        [self, gone, audits] {
          insert_key(self->state, gone);
          self->state.audit.resize(audits - 1);
        },
        [self, gone] { self->send(self->state.directory, key_changed_atom::value, gone, true); });
      return rp;
    },
    [=](get_user_atom, std::uint64_t id) -> caf::result<core::user_record> {
      auto it = self->state.users.find(id);
      if (it == self->state.users.end())
        return make_error(core::errc::not_found, "user " + std::to_string(id) + " not found");
      return it->second;
    },
    [=](list_users_atom, const std::string& role, const page& range) -> user_list {
      user_list r;
      for (const auto& [id, u] : self->state.users) {
        if (!role.empty() && u.role != role)
          continue;
        if (r.total >= range.offset && r.users.size() < range.limit)
          r.users.push_back(u);
        ++r.total;
      }
      return r;
    },
    [=](set_role_atom, role_change& change) -> caf::result<role_changed> {
      auto& st = self->state;
      auto it = st.users.find(change.user_id);
      if (it == st.users.end())
        return make_error(core::errc::not_found,
                          "user " + std::to_string(change.user_id) + " not found");
      const auto before = it->second;
      it->second.role = change.role;
      it->second.role_assigned_at = st.now();
      const auto after = it->second;
      std::vector<storage::write_op> ops;
      ops.push_back(
        put_op(storage::column::users, storage::user_key(after.id), storage::encode(after)));
      add_audit(self, ops, change.ctx, "role_changed", "user", std::to_string(after.id),
                details{}
                  .str("old_role", before.role)
                  .str("new_role", after.role)
                  .str("reason", change.reason)
                  .take());
      const auto audits = st.audit.size();
      auto rp = self->make_response_promise<role_changed>();
      persist_then_deliver(
        self, std::move(ops), rp, role_changed{after, before.role},
        [self, before, audits] {
          self->state.users[before.id] = before;
          self->state.audit.resize(audits - 1);
        },
        [self, after] { self->send(self->state.directory, user_changed_atom::value, after); });
      return rp;
    },
    [=](set_limits_atom, const user_limits& l) -> caf::result<core::user_record> {
      auto& st = self->state;
      auto it = st.users.find(l.user_id);
      if (it == st.users.end())
        return make_error(core::errc::not_found,
                          "user_id: user " + std::to_string(l.user_id) + " not found");
      const auto before = it->second;
      auto& u = it->second;
      if (l.per_minute >= 0)
        u.requests_per_minute = l.per_minute;
      if (l.per_hour >= 0)
        u.requests_per_hour = l.per_hour;
      if (l.per_day >= 0)
        u.requests_per_day = l.per_day;
      for (const auto& [name, limit] : l.custom) {
        auto& list = u.custom_limits;
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [&](const auto& kv) { return kv.first == name; }),
                   list.end());
        if (limit > 0)
          list.emplace_back(name, limit);
      }
      const auto after = u;
      std::vector<storage::write_op> ops;
      ops.push_back(
        put_op(storage::column::users, storage::user_key(after.id), storage::encode(after)));
      add_audit(self, ops, l.ctx, "rate_limits_changed", "user", std::to_string(after.id),
                details{}
                  .str("requests_per_minute", std::to_string(after.requests_per_minute))
                  .str("requests_per_hour", std::to_string(after.requests_per_hour))
                  .str("requests_per_day", std::to_string(after.requests_per_day))
                  .str("reason", l.reason)
                  .take());
      const auto audits = st.audit.size();
      auto rp = self->make_response_promise<core::user_record>();
      persist_then_deliver(
        self, std::move(ops), rp, after,
        [self, before, audits] {
          self->state.users[before.id] = before;
          self->state.audit.resize(audits - 1);
        },
        [self, after] { self->send(self->state.directory, user_changed_atom::value, after); });
      return rp;
    },
    [=](set_limits_atom, const key_limits& l) -> caf::result<core::key_record> {
      auto& st = self->state;
      auto* k = visible_key(st, l.access);
      if (k == nullptr)
        return key_not_found(l.access);
      const auto before = *k;
      if (l.tokens_per_day >= 0)
        k->tokens_per_day = l.tokens_per_day;
      if (l.tokens_per_month >= 0)
        k->tokens_per_month = l.tokens_per_month;
      k->updated_at = st.now();
      return commit_key_change(self, before, *k, l.access.ctx, "token_limits_changed",
                               details{}
                                 .str("daily_limit", std::to_string(k->tokens_per_day))
                                 .str("monthly_limit", std::to_string(k->tokens_per_month))
                                 .take());
    },
    [=](audit_atom, const audit_filter& f) -> audit_page {
      audit_page r;
      const auto& log = self->state.audit;
      // Newest first, as an operator reads a log.
      for (auto it = log.rbegin(); it != log.rend(); ++it) {
        const auto& a = *it;
        if ((f.user_id != 0 && a.user_id != f.user_id)
            || (!f.action.empty() && a.action != f.action)
            || (!f.resource_type.empty() && a.resource_type != f.resource_type)
            || (f.start != 0 && a.timestamp < f.start) || (f.end != 0 && a.timestamp > f.end))
          continue;
        if (r.total >= f.range.offset && r.entries.size() < f.range.limit)
          r.entries.push_back(a);
        ++r.total;
      }
      return r;
    },
    [=](bootstrap_atom, const std::string& configured) -> caf::result<std::string> {
      auto& st = self->state;
      new_user req;
      req.username = "admin";
      req.auth_method = "bootstrap";
      req.env = "live";
      if (!configured.empty()) {
        auto env = core::api_key::parse(configured);
        if (!env)
          return make_error(core::errc::bad_request,
                            "TOLLGATE_ADMIN_KEY is not a well-formed gw_<env>_ key with a valid "
                            "checksum");
        if (st.key_by_hash.count(core::api_key::sha256_hex(configured)) != 0)
          return std::string{};
        req.env = *env;
        if (st.user_by_name.count(req.username) != 0)
          req.username = "admin-" + std::to_string(st.next_user);
      } else if (!st.users.empty()) {
        return std::string{};
      }
      // A configured key is known to the operator: answer nothing. A
      // generated one is answered once, for the gateway to print.
      auto rp = self->make_response_promise<std::string>();
      const bool generated = configured.empty();
      create_user(self, req, core::role_admin, configured,
                  [rp, generated](caf::expected<created_key> r) mutable {
                    if (!r)
                      rp.deliver(std::move(r.error()));
                    else
                      rp.deliver(generated ? r->plaintext : std::string{});
                  });
      return rp;
    },
  };
}

} // namespace

accounts_actor spawn_accounts(caf::actor_system& sys, accounts_snapshot snapshot,
                              storage_actor storage, key_directory_actor directory,
                              const core::clock& clock, accounts_config cfg) {
  return sys.spawn([snap = std::move(snapshot), storage, directory, &clock,
                    cfg](accounts_pointer self) mutable -> accounts_actor::behavior_type {
    auto& st = self->state;
    st.next_user = snap.next_user;
    st.next_key = snap.next_key;
    st.next_audit = snap.next_audit;
    st.storage = storage;
    st.directory = directory;
    st.clock = &clock;
    st.cfg = cfg;
    for (auto& u : snap.users) {
      st.next_user = std::max(st.next_user, u.id + 1);
      insert_user(st, u);
    }
    for (auto& k : snap.keys) {
      st.next_key = std::max(st.next_key, k.id + 1);
      insert_key(st, k);
    }
    std::sort(snap.audit.begin(), snap.audit.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    for (auto& a : snap.audit)
      st.next_audit = std::max(st.next_audit, a.id + 1);
    st.audit = std::move(snap.audit);
    return accounts_impl(self);
  });
}

accounts_snapshot load_accounts(storage::store& db) {
  accounts_snapshot snap;
  constexpr auto all = std::numeric_limits<std::size_t>::max();
  for (const auto& [key, value] : db.scan(storage::column::users, "u/", all)) {
    if (auto u = storage::decode_user(value))
      snap.users.push_back(std::move(*u));
    else
      spdlog::error("storage: skipping undecodable user record {}", key);
  }
  for (const auto& [key, value] : db.scan(storage::column::keys, "k/", all)) {
    if (auto k = storage::decode_key(value))
      snap.keys.push_back(std::move(*k));
    else
      spdlog::error("storage: skipping undecodable key record");
  }
  for (const auto& [key, value] : db.scan(storage::column::audit, "a/", all)) {
    if (auto a = storage::decode_audit(value))
      snap.audit.push_back(std::move(*a));
    else
      spdlog::error("storage: skipping undecodable audit record {}", key);
  }
  const auto seq = [&](const char* name) -> std::uint64_t {
    std::string value;
    std::string error;
    if (!db.get(storage::column::meta, name, value, error))
      return 1;
    try {
      return std::stoull(value);
    } catch (...) {
      return 1;
    }
  };
  snap.next_user = seq("seq/user");
  snap.next_key = seq("seq/key");
  snap.next_audit = seq("seq/audit");
  return snap;
}

} // namespace tollgate::actors
