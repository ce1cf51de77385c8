#pragma once

#include "core/api_message.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::http {

/// Immutable table of route templates such as `/user/api-keys/{key_id}`.
/// Built once at start; matched on the I/O thread without locks.
class route_table {
public:
  struct route {
    std::string method;
    std::string pattern;
    std::uint32_t id = 0;
    bool metered = false;  ///< counts against a key's limits (later issues)
    bool proxy = false;    ///< forwarded to a backend: the session passes every header
    /// May call an upstream (proxy and LLM routes): the session watches for
    /// a client that leaves while the request is in flight.
    bool upstream = false;
  };

  enum class outcome { found, not_found, method_not_allowed };

  struct match_result {
    outcome kind = outcome::not_found;
    const route* matched = nullptr;   ///< set when found
    core::header_list params;         ///< captured `{name}` segments
    std::string allow;                ///< "GET, POST" when method_not_allowed
  };

  /// Adds a route; returns its id (dense, in insertion order). Throws
  /// std::invalid_argument on a malformed pattern or a duplicate.
  /// A last segment `{*name}` matches the rest of the path (zero or more
  /// segments, captured joined by '/'); any other template beats it on a tie.
  /// A proxy route is an upstream route.
  std::uint32_t add(std::string method, std::string pattern, bool metered = false,
                    bool proxy = false, bool upstream = false);

  /// Finds the route for method and path. A literal segment beats a
  /// parameter at the same position, so `/models/providers` wins over
  /// `/models/{id}`.
  match_result match(std::string_view method, std::string_view path) const;
  /// What match() answers, found by scoring every template (match() finds
  /// a parameterless template directly first). For tests that check both
  /// agree.
  match_result match_by_score(std::string_view method, std::string_view path) const;

  const std::vector<route>& routes() const noexcept { return routes_; }
  /// Some route forwards to a backend (the session then looks for request
  /// bodies to forward while they arrive).
  bool has_proxy() const noexcept { return has_proxy_; }

private:
  struct compiled {
    std::vector<std::string> segments;  ///< "{x}" segments are parameters
    std::vector<bool> is_param;
    bool wildcard = false;  ///< the last segment is `{*name}`
    std::uint32_t route_index = 0;
  };
  static bool score(const compiled& c, const std::vector<std::string_view>& segs,
                    std::uint64_t& out) noexcept;
  std::vector<route> routes_;
  bool has_proxy_ = false;
  std::vector<compiled> compiled_;
  /// Templates without parameters, by pattern: a path that equals one is
  /// that template's (no other matches it as specifically), so the methods
  /// listed here decide without scoring every template.
  std::map<std::string, std::vector<std::uint32_t>, std::less<>> literal_;
};

} // namespace tollgate::http
