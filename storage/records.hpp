#pragma once

#include "core/account.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace tollgate::storage {

/// Record codecs: each record is one JSON object (readable with any RocksDB
/// tool, tolerant of added fields). Keys of the column families:
///   users: "u/<id, 20 digits>"      keys: "k/<sha256 hex>"
///   audit: "a/<id, 20 digits>"
std::string user_key(std::uint64_t id);
std::string key_key(std::string_view hash);
std::string audit_key(std::uint64_t id);

std::string encode(const core::user_record& u);
std::string encode(const core::key_record& k);
std::string encode(const core::audit_entry& a);

std::optional<core::user_record> decode_user(std::string_view json);
std::optional<core::key_record> decode_key(std::string_view json);
std::optional<core::audit_entry> decode_audit(std::string_view json);

} // namespace tollgate::storage
