#pragma once

// Helpers shared by the route handlers: answering, errors, audit context.

#include "actors/router.hpp"
#include "core/account.hpp"

#include <map>
#include <string>
#include <string_view>

namespace caf {
class error;
}

namespace tollgate::http::api {

/// Answers a JSON body with the status.
void respond_json(core::responder_ptr& out, std::string body, std::uint16_t status = 200);

/// Answers the gateway's error body for `e` (401 adds WWW-Authenticate).
void respond_error(core::responder_ptr& out, core::errc e, std::string_view detail);

/// Answers an actor's error: its errc and detail, or 503 for a timeout or a
/// dead actor.
void respond_error(core::responder_ptr& out, const caf::error& e);

/// Who did what from where, for the audit log.
core::audit_context audit_ctx(const core::api_request& req, const core::principal& who);

/// A listing's query: its parameters and `limit`/`offset` (default 100, at
/// most 1000). Answers 400 and returns false when either is malformed.
struct listing_query {
  std::map<std::string, std::string> params;
  std::uint64_t limit = 100;
  std::uint64_t offset = 0;
};
bool parse_listing(const core::api_request& req, core::responder_ptr& out, listing_query& q);

/// Micro-credits as the decimal the API shows (10500000 -> 10.5).
double credits(std::int64_t micro) noexcept;

} // namespace tollgate::http::api
