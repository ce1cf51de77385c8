#pragma once

#include "core/config.hpp"

#include <stdexcept>
#include <string>
#include <string_view>

namespace tollgate::app {

/// A configuration that cannot be used. The message names the file, line and
/// key: `conf/x.toml:3: server.port: expected an integer, got a string`.
class config_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Parses and validates TOML text. Unknown keys, wrong types and bad values
/// are errors; anything absent keeps its default.
core::config parse_config(std::string_view toml_text, const std::string& source_name);

/// Reads and parses a file (see parse_config).
core::config load_config(const std::string& path);

/// Parses `HOST:PORT` (IPv6 as `[::1]:8080`) into the server config.
/// Returns an error message, or an empty string on success.
std::string parse_listen(std::string_view text, core::server_config& out);

/// Checks a log level name (trace, debug, info, warn, error, critical, off).
bool valid_log_level(std::string_view level) noexcept;

} // namespace tollgate::app
