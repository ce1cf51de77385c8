#pragma once

// A real gateway in-process for integration tests, plus small helpers to
// call it and read its JSON.

#include "app/gateway.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"

#include "support/http_client.hpp"

#include <rapidjson/document.h>

#include <functional>
#include <memory>
#include <string>

namespace tollgate::test {

/// A gateway on 127.0.0.1:0 over a data dir that outlives it, so a test
/// can restart on the same store.
struct instance {
  std::unique_ptr<app::gateway> gw;

  explicit instance(const std::string& data_dir,
                    const core::clock& clock = core::system_clock::instance(),
                    const std::function<void(core::config&)>& tweak = {});
  std::uint16_t port() const { return gw->port(); }
  /// The admin key generated on an empty store.
  const std::string& admin() const { return gw->bootstrap_key(); }

  /// One request with `Authorization: Bearer key` (when given).
  http_response call(const std::string& method, const std::string& target,
                     const std::string& key = {}, const std::string& body = {}) const;
};

rapidjson::Document json(const http_response& r);
std::string str(const rapidjson::Value& v);

struct user {
  std::uint64_t id = 0;
  std::string key;
  std::uint64_t key_id = 0;
};

/// POST /admin/create as the bootstrap admin.
user create_user(const instance& g, const std::string& name);

/// POST /user/api-keys with `key`; returns the new key's id.
std::uint64_t create_key(const instance& g, const std::string& key, const std::string& body,
                         std::string* plaintext = nullptr);

} // namespace tollgate::test
