#pragma once

// Message types, atoms and typed actor aliases of every actor in tollgate.
// This header is included by the actors and by code that talks to them.

#include "core/api_message.hpp"
#include "storage/store.hpp"

#include <caf/atom.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
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

} // namespace tollgate::actors

// A responder is a process-local handle (a pointer back to a connection); it
// is never serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tollgate::core::responder_ptr)
