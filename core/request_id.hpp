#pragma once

#include <string>
#include <string_view>

namespace tollgate::core {

/// True when a client-supplied X-Request-Id is safe to echo and log:
/// 1..128 characters of [A-Za-z0-9._:/+=-].
bool valid_request_id(std::string_view id) noexcept;

/// A fresh 32-hex-character id; thread-safe, no locks.
std::string new_request_id();

} // namespace tollgate::core
