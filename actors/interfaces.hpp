#pragma once

// Message types, atoms and typed actor aliases of every actor in tollgate.
// This header is included by the actors and by code that talks to them.

#include "core/account.hpp"
#include "core/api_message.hpp"
#include "core/errc.hpp"
#include "storage/store.hpp"

#include <caf/atom.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tollgate::actors {

using dispatch_atom = caf::atom_constant<caf::atom("dispatch")>;
using handle_atom = caf::atom_constant<caf::atom("handle")>;
using write_atom = caf::atom_constant<caf::atom("write")>;
using read_atom = caf::atom_constant<caf::atom("read")>;
using scan_atom = caf::atom_constant<caf::atom("scan")>;
using commit_atom = caf::atom_constant<caf::atom("commit")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using health_atom = caf::atom_constant<caf::atom("health")>;
using auth_atom = caf::atom_constant<caf::atom("auth")>;
using key_changed_atom = caf::atom_constant<caf::atom("key_chg")>;
using user_changed_atom = caf::atom_constant<caf::atom("user_chg")>;
using count_atom = caf::atom_constant<caf::atom("count")>;
using lookup_atom = caf::atom_constant<caf::atom("lookup")>;
using create_user_atom = caf::atom_constant<caf::atom("mk_user")>;
using create_key_atom = caf::atom_constant<caf::atom("mk_key")>;
using list_keys_atom = caf::atom_constant<caf::atom("ls_keys")>;
using get_key_atom = caf::atom_constant<caf::atom("get_key")>;
using update_key_atom = caf::atom_constant<caf::atom("upd_key")>;
using revoke_key_atom = caf::atom_constant<caf::atom("rvk_key")>;
using delete_key_atom = caf::atom_constant<caf::atom("del_key")>;
using get_user_atom = caf::atom_constant<caf::atom("get_user")>;
using list_users_atom = caf::atom_constant<caf::atom("ls_users")>;
using set_role_atom = caf::atom_constant<caf::atom("set_role")>;
using audit_atom = caf::atom_constant<caf::atom("audit")>;
using bootstrap_atom = caf::atom_constant<caf::atom("bootstrap")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using idle_atom = caf::atom_constant<caf::atom("idle")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using usage_atom = caf::atom_constant<caf::atom("usage")>;
using persist_atom = caf::atom_constant<caf::atom("persist")>;
using reset_atom = caf::atom_constant<caf::atom("reset")>;
using set_limits_atom = caf::atom_constant<caf::atom("set_lim")>;
using reserve_atom = caf::atom_constant<caf::atom("reserve")>;
using settle_atom = caf::atom_constant<caf::atom("settle")>;
using hold_atom = caf::atom_constant<caf::atom("hold")>;
using charge_atom = caf::atom_constant<caf::atom("charge")>;
using credit_atom = caf::atom_constant<caf::atom("credit")>;
using balance_atom = caf::atom_constant<caf::atom("balance")>;
using ledger_atom = caf::atom_constant<caf::atom("ledger")>;
using acquire_atom = caf::atom_constant<caf::atom("acquire")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using withdraw_atom = caf::atom_constant<caf::atom("withdraw")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using create_atom = caf::atom_constant<caf::atom("create")>;
using list_atom = caf::atom_constant<caf::atom("list")>;
using get_atom = caf::atom_constant<caf::atom("get")>;
using delete_atom = caf::atom_constant<caf::atom("delete")>;
using append_atom = caf::atom_constant<caf::atom("append")>;

/// Errors that actors answer with: a core::errc plus a message for the
/// client, in the "tollgate" category.
caf::error make_error(core::errc code, std::string detail);
/// The errc and detail of an error from make_error; other errors (timeouts,
/// dead actors) map to unavailable with CAF's description.
std::pair<core::errc, std::string> from_error(const caf::error& e);

/// Outcome of a write: empty `error` means it is committed to the WAL.
struct write_ack {
  std::string error;
  bool ok() const noexcept { return error.empty(); }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, write_ack& x) {
  return f(x.error);
}

struct read_result {
  bool found = false;
  std::string value;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, read_result& x) {
  return f(x.found, x.value, x.error);
}

struct scan_result {
  std::vector<std::pair<std::string, std::string>> rows;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scan_result& x) {
  return f(x.rows);
}

struct storage_health {
  bool ok = false;
  std::string detail;            ///< RocksDB's message when not ok
  std::uint64_t pending = 0;     ///< writes waiting for the next group commit
  std::uint32_t schema = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, storage_health& x) {
  return f(x.ok, x.detail, x.pending, x.schema);
}

/// What a request asks of its key's limits.
struct admission {
  std::string method;
  std::string route;   ///< route template
  std::int64_t cost = 1;
  bool meter = true;   ///< false: authenticate only
  /// Sent to the key actor straight (live_keys), not through the directory:
  /// a stopping actor answers `moved` only to these.
  bool direct = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admission& x) {
  return f(x.method, x.route, x.cost, x.meter, x.direct);
}

struct policy_summary {
  std::string name;
  std::int64_t limit = 0;
  std::int64_t window = 0;  ///< seconds
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, policy_summary& x) {
  return f(x.name, x.limit, x.window);
}

/// The limits' verdict, as the headers and a 429 report it: the blocking
/// policy when rejected, otherwise the most restrictive one.
struct limit_report {
  bool metered = false;
  bool allowed = true;
  std::string policy;
  std::int64_t limit = 0;
  std::int64_t remaining = 0;
  std::int64_t reset = 0;        ///< UTC epoch seconds
  std::int64_t window = 0;       ///< seconds
  std::int64_t retry_after = 0;  ///< seconds, when rejected
  std::vector<policy_summary> policies;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, limit_report& x) {
  return f(x.metered, x.allowed, x.policy, x.limit, x.remaining, x.reset, x.window,
           x.retry_after, x.policies);
}

/// What the key actor decided about a request's key and limits.
struct auth_decision {
  core::errc code = core::errc::unauthorized;  ///< ok, unauthorized or too_many_requests
  std::string detail;
  core::principal who;
  limit_report limits;
  /// The key actor asked straight (admission::direct) is stopping (it
  /// reported itself idle): nothing was decided or counted; ask the
  /// directory, which runs the key's next actor.
  bool moved = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, auth_decision& x) {
  return f(x.code, x.detail, x.who, x.limits, x.moved);
}

/// The answer to a token reservation: granted (and held until settled), or
/// refused by the named budget with what is left of it.
struct token_reservation {
  bool granted = false;
  std::int64_t tokens = 0;
  std::string budget;             ///< "tokens_day" or "tokens_month" when refused
  std::int64_t remaining_day = 0;
  std::int64_t remaining_month = 0;
  std::int64_t retry_after = 0;   ///< seconds until the refusing budget resets
  /// As auth_decision::moved: nothing reserved; ask the directory.
  bool moved = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_reservation& x) {
  return f(x.granted, x.tokens, x.budget, x.remaining_day, x.remaining_month, x.retry_after,
           x.moved);
}

/// One policy's state for the usage routes.
struct policy_usage {
  std::string name;
  std::int64_t limit = 0;
  std::int64_t used = 0;
  std::int64_t remaining = 0;
  std::int64_t reset = 0;   ///< UTC epoch seconds
  std::int64_t window = 0;  ///< seconds
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, policy_usage& x) {
  return f(x.name, x.limit, x.used, x.remaining, x.reset, x.window);
}

struct key_usage {
  std::string key_hash;
  std::uint64_t key_id = 0;
  std::uint64_t user_id = 0;
  std::uint64_t total_requests = 0;
  std::vector<policy_usage> policies;  ///< requests and tokens
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_usage& x) {
  return f(x.key_hash, x.key_id, x.user_id, x.total_requests, x.policies);
}

/// A key record together with its owner, as the key directory needs it.
struct key_lookup {
  bool found = false;
  core::key_record key;
  core::user_record user;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_lookup& x) {
  return f(x.found, x.key, x.user);
}

struct new_user {
  std::string username;
  std::string email;
  std::string auth_method;
  std::string env;
  core::audit_context ctx;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, new_user& x) {
  return f(x.username, x.email, x.auth_method, x.env, x.ctx);
}

struct new_key {
  std::uint64_t user_id = 0;
  std::string name;
  std::string env;
  core::scope_permissions scopes;
  std::int64_t expires_at = 0;
  core::audit_context ctx;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, new_key& x) {
  return f(x.user_id, x.name, x.env, x.scopes, x.expires_at, x.ctx);
}

/// A created key: the only time the plaintext exists outside the client.
struct created_key {
  core::key_record key;
  core::user_record user;
  std::string plaintext;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, created_key& x) {
  return f(x.key, x.user, x.plaintext);
}

/// Who asks about a key: an owner sees only their keys, an admin all.
struct key_access {
  std::uint64_t key_id = 0;   ///< the key by id...
  std::string short_hash;     ///< ...or by api_key_hash (16 hex), when key_id is 0
  std::uint64_t requester = 0;
  bool admin = false;
  core::audit_context ctx;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_access& x) {
  return f(x.key_id, x.short_hash, x.requester, x.admin, x.ctx);
}

struct key_update {
  key_access access;
  bool set_name = false;
  std::string name;
  bool set_active = false;
  bool active = true;
  bool set_scopes = false;
  core::scope_permissions scopes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_update& x) {
  return f(x.access, x.set_name, x.name, x.set_active, x.active, x.set_scopes, x.scopes);
}

struct page {
  std::uint64_t offset = 0;
  std::uint64_t limit = 100;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, page& x) {
  return f(x.offset, x.limit);
}

struct key_list {
  std::vector<core::key_record> keys;
  std::uint64_t total = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_list& x) {
  return f(x.keys, x.total);
}

struct user_list {
  std::vector<core::user_record> users;
  std::uint64_t total = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_list& x) {
  return f(x.users, x.total);
}

struct role_change {
  std::uint64_t user_id = 0;
  std::string role;
  std::string reason;
  core::audit_context ctx;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, role_change& x) {
  return f(x.user_id, x.role, x.reason, x.ctx);
}

struct role_changed {
  core::user_record user;
  std::string old_role;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, role_changed& x) {
  return f(x.user, x.old_role);
}

/// An admin's request-limit override for a user; a negative value keeps the
/// current setting, 0 removes the override.
struct user_limits {
  std::uint64_t user_id = 0;
  std::int64_t per_minute = -1;
  std::int64_t per_hour = -1;
  std::int64_t per_day = -1;
  /// Per-endpoint overrides to merge in; a limit of 0 removes one.
  std::vector<std::pair<std::string, std::int64_t>> custom;
  std::string reason;
  core::audit_context ctx;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_limits& x) {
  return f(x.user_id, x.per_minute, x.per_hour, x.per_day, x.custom, x.reason, x.ctx);
}

/// An admin's token-budget override for a key (same conventions).
struct key_limits {
  key_access access;
  std::int64_t tokens_per_day = -1;
  std::int64_t tokens_per_month = -1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_limits& x) {
  return f(x.access, x.tokens_per_day, x.tokens_per_month);
}

struct audit_filter {
  std::uint64_t user_id = 0;  ///< 0: any
  std::string action;
  std::string resource_type;
  std::int64_t start = 0;     ///< 0: open
  std::int64_t end = 0;       ///< 0: open
  page range;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_filter& x) {
  return f(x.user_id, x.action, x.resource_type, x.start, x.end, x.range);
}

struct audit_page {
  std::vector<core::audit_entry> entries;
  std::uint64_t total = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_page& x) {
  return f(x.entries, x.total);
}

/// Credits set aside for one call: the worst-case price is taken from the
/// balance (and written) before the upstream call, so concurrent calls can
/// never spend more than the balance.
struct credit_hold {
  bool granted = false;
  std::uint64_t hold_id = 0;
  std::int64_t held_micro = 0;
  std::int64_t balance_micro = 0;  ///< after the hold (or the balance that refused it)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, credit_hold& x) {
  return f(x.granted, x.hold_id, x.held_micro, x.balance_micro);
}

/// One durable line of the ledger: a charge for a call or a credit by an admin.
struct ledger_entry {
  std::uint64_t id = 0;
  std::uint64_t user_id = 0;
  std::uint64_t key_id = 0;
  std::string kind;  ///< "charge" or "credit"
  std::string model;
  std::string provider;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t amount_micro = 0;   ///< charged (charge) or added (credit)
  std::int64_t balance_micro = 0;  ///< after this entry
  std::int64_t timestamp = 0;
  std::string request_id;
  std::string note;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ledger_entry& x) {
  return f(x.id, x.user_id, x.key_id, x.kind, x.model, x.provider, x.prompt_tokens,
           x.completion_tokens, x.amount_micro, x.balance_micro, x.timestamp, x.request_id, x.note);
}

/// Settles a hold: the held amount comes back, `entry.amount_micro` is
/// charged and recorded.
struct charge_request {
  std::uint64_t hold_id = 0;
  std::int64_t held_micro = 0;
  ledger_entry entry;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, charge_request& x) {
  return f(x.hold_id, x.held_micro, x.entry);
}

/// The storage actor: a detached actor that owns the RocksDB handle and
/// group-commits writes (see storage_actor.hpp).
using storage_actor = caf::typed_actor<
  caf::replies_to<write_atom, std::vector<storage::write_op>>::with<write_ack>,
  caf::replies_to<read_atom, std::uint8_t, std::string>::with<read_result>,
  caf::replies_to<scan_atom, std::uint8_t, std::string, std::uint32_t>::with<scan_result>,
  caf::replies_to<health_atom>::with<storage_health>,
  caf::replies_to<flush_atom>::with<write_ack>,
  caf::reacts_to<commit_atom>>;

/// The router: takes every routed request from the HTTP sessions.
/// `dispatch` carries a responder and is fire-and-forget (the fast bridge);
/// `handle` is the request/response form used by per-request bridge actors.
using router_actor = caf::typed_actor<
  caf::reacts_to<dispatch_atom, core::api_request, core::responder_ptr>,
  caf::replies_to<handle_atom, core::api_request>::with<core::api_response>>;

/// Users, keys and the audit log: the source of truth for account data,
/// written through to storage before any change is acknowledged.
using accounts_actor = caf::typed_actor<
  caf::replies_to<lookup_atom, std::string>::with<key_lookup>,
  caf::replies_to<create_user_atom, new_user>::with<created_key>,
  caf::replies_to<create_key_atom, new_key>::with<created_key>,
  caf::replies_to<list_keys_atom, std::uint64_t, page>::with<key_list>,
  caf::replies_to<get_key_atom, key_access>::with<core::key_record>,
  caf::replies_to<update_key_atom, key_update>::with<core::key_record>,
  caf::replies_to<revoke_key_atom, key_access>::with<core::key_record>,
  caf::replies_to<delete_key_atom, key_access>::with<core::key_record>,
  caf::replies_to<get_user_atom, std::uint64_t>::with<core::user_record>,
  caf::replies_to<list_users_atom, std::string, page>::with<user_list>,
  caf::replies_to<set_role_atom, role_change>::with<role_changed>,
  caf::replies_to<audit_atom, audit_filter>::with<audit_page>,
  caf::replies_to<set_limits_atom, user_limits>::with<core::user_record>,
  caf::replies_to<set_limits_atom, key_limits>::with<core::key_record>,
  caf::replies_to<bootstrap_atom, std::string>::with<std::string>>;

/// A provider's answer to a request for a concurrency slot.
struct provider_slot {
  bool granted = false;
  std::string refusal;            ///< "queue_full", "queue_timeout" or "down"
  std::int64_t retry_after = 0;   ///< seconds, when refused
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, provider_slot& x) {
  return f(x.granted, x.refusal, x.retry_after);
}

struct provider_status {
  std::string name;
  bool up = true;
  std::uint64_t in_flight = 0;
  std::uint64_t queued = 0;
  std::uint64_t max_concurrency = 0;
  std::uint64_t queue_size = 0;
  std::int64_t tokens_available = -1;  ///< -1: no token bucket
  std::uint64_t served = 0;
  std::uint64_t failed = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, provider_status& x) {
  return f(x.name, x.up, x.in_flight, x.queued, x.max_concurrency, x.queue_size,
           x.tokens_available, x.served, x.failed);
}

/// One actor per upstream provider (see provider.hpp): `acquire` asks for a
/// slot for a call estimated at N tokens, under the caller's ticket;
/// `withdraw` takes a ticket's call out of the queue (its answer: refused,
/// "cancelled"); `release` returns a slot with whether the upstream
/// answered and the tokens it really used.
using provider_actor = caf::typed_actor<
  caf::replies_to<acquire_atom, std::int64_t, std::uint64_t>::with<provider_slot>,
  caf::reacts_to<withdraw_atom, std::uint64_t>,
  caf::reacts_to<release_atom, bool, std::int64_t, std::int64_t>,
  caf::reacts_to<tick_atom>,
  caf::replies_to<status_atom>::with<provider_status>,
  /// Shutdown: refuses everyone queued and every new caller ("down").
  caf::reacts_to<stop_atom>>;

struct chat_message {
  std::uint64_t id = 0;
  std::string role;
  std::string content;
  std::int64_t created_at = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_message& x) {
  return f(x.id, x.role, x.content, x.created_at);
}

/// A chat session (gateway reference), owned by one user.
struct chat_session {
  std::uint64_t id = 0;
  std::uint64_t user_id = 0;
  std::string name;
  std::string description;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
  std::uint64_t message_count = 0;  ///< set in listings, which carry no messages
  std::vector<chat_message> messages;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_session& x) {
  return f(x.id, x.user_id, x.name, x.description, x.created_at, x.updated_at, x.message_count,
           x.messages);
}

struct chat_session_list {
  std::vector<chat_session> sessions;  ///< without their messages
  std::uint64_t total = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_session_list& x) {
  return f(x.sessions, x.total);
}

/// Chat sessions (see chat_sessions.hpp). Every message names the user
/// asking; a session of another user is "not found".
using chat_sessions_actor = caf::typed_actor<
  caf::replies_to<create_atom, std::uint64_t, std::string, std::string>::with<chat_session>,
  caf::replies_to<list_atom, std::uint64_t, page>::with<chat_session_list>,
  caf::replies_to<get_atom, std::uint64_t, std::uint64_t>::with<chat_session>,
  caf::replies_to<delete_atom, std::uint64_t, std::uint64_t>::with<chat_session>,
  caf::replies_to<append_atom, std::uint64_t, std::uint64_t,
                  std::vector<chat_message>>::with<chat_session>>;

/// Balances and the ledger (see wallet.hpp).
using wallet_actor = caf::typed_actor<
  caf::replies_to<hold_atom, std::uint64_t, std::int64_t>::with<credit_hold>,
  caf::replies_to<charge_atom, charge_request>::with<ledger_entry>,
  caf::replies_to<release_atom, std::uint64_t, std::int64_t>::with<std::int64_t>,
  caf::replies_to<credit_atom, ledger_entry>::with<ledger_entry>,
  caf::replies_to<balance_atom, std::uint64_t>::with<std::int64_t>,
  caf::replies_to<ledger_atom, std::uint64_t, page>::with<std::vector<ledger_entry>>,
  caf::reacts_to<commit_atom>>;

/// One actor per live API key: answers the auth decision and (from the
/// limits issue on) owns every counter of its key.
using key_actor = caf::typed_actor<
  caf::replies_to<auth_atom, std::string, admission>::with<auth_decision>,
  caf::replies_to<usage_atom>::with<key_usage>,
  caf::replies_to<reset_atom>::with<key_usage>,
  /// Tokens, and whether asked straight (not through the directory).
  caf::replies_to<reserve_atom, std::int64_t, bool>::with<token_reservation>,
  caf::replies_to<settle_atom, std::int64_t, std::int64_t>::with<key_usage>,
  caf::reacts_to<persist_atom>,
  caf::replies_to<flush_atom>::with<write_ack>,
  caf::reacts_to<key_changed_atom, core::key_record, bool>,
  caf::reacts_to<user_changed_atom, core::user_record>,
  caf::reacts_to<tick_atom>,
  caf::reacts_to<commit_atom>,
  caf::reacts_to<stop_atom>>;

/// Maps key hashes to key actors, spawning them on first use.
using key_directory_actor = caf::typed_actor<
  caf::reacts_to<lookup_atom, accounts_actor>,
  caf::replies_to<auth_atom, std::string, admission>::with<auth_decision>,
  caf::replies_to<usage_atom, std::string>::with<key_usage>,
  caf::replies_to<reset_atom, std::string>::with<key_usage>,
  caf::replies_to<reserve_atom, std::string, std::int64_t>::with<token_reservation>,
  caf::replies_to<settle_atom, std::string, std::int64_t, std::int64_t>::with<key_usage>,
  caf::reacts_to<key_changed_atom, core::key_record, bool>,
  caf::reacts_to<user_changed_atom, core::user_record>,
  caf::reacts_to<idle_atom, std::string>,
  caf::replies_to<flush_atom>::with<std::uint64_t>,
  caf::replies_to<count_atom>::with<std::uint64_t>>;

} // namespace tollgate::actors

// A responder is a process-local handle (a pointer back to a connection); it
// is never serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tollgate::core::responder_ptr)
