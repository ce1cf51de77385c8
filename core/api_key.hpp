#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tollgate::core {

/// API keys look like `gw_<env>_<random><checksum>`: env is live, test,
/// staging or dev; random is 32 base62 characters from OpenSSL's CSPRNG;
/// checksum is the CRC32 of everything before it, in 6 base62 characters
/// (as GitHub's tokens do), so a mistyped or invented key is refused
/// without a storage lookup.
namespace api_key {

inline constexpr std::size_t random_chars = 32;
inline constexpr std::size_t checksum_chars = 6;

/// True for live, test, staging, dev.
bool valid_environment(std::string_view env) noexcept;

/// A new key for the environment (which must be valid).
std::string generate(std::string_view env);

/// The environment of a well-formed key with a correct checksum, or nullopt.
std::optional<std::string> parse(std::string_view key) noexcept;

/// Lower-case hex SHA-256 of the key: the only form that is stored.
std::string sha256_hex(std::string_view key);

/// The first 16 hex characters of the hash: how admin routes name a key
/// (the token-tracking page's `api_key_hash`).
std::string short_hash(std::string_view full_hash);

/// What listings show: `gw_live_...wxyz` (prefix and last 4).
std::string mask(std::string_view prefix, std::string_view last4);

/// The `gw_<env>_` prefix of a key.
std::string prefix_of(std::string_view env);

/// Constant-time equality of two equally long strings (lengths may leak).
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

/// The CRC32 checksum of `text` in 6 base62 characters.
std::string checksum(std::string_view text);

} // namespace api_key

} // namespace tollgate::core
