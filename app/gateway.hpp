#pragma once

#include "core/clock.hpp"
#include "core/config.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace tollgate::metrics {
class registry;
}

namespace tollgate::actors {
class live_keys;
}

namespace tollgate::app {

/// The whole process wired together: store, actor system, storage actor,
/// routers, HTTP server. Tests run one in-process on 127.0.0.1:0.
class gateway {
public:
  explicit gateway(core::config cfg, const core::clock& clk = core::system_clock::instance());
  ~gateway();
  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  /// Opens the store (throws storage::open_error), spawns the actors and
  /// starts serving (throws std::runtime_error when it cannot listen).
  void start();

  /// The bound port.
  std::uint16_t port() const noexcept;

  /// Graceful shutdown: stop accepting, finish in-flight requests up to the
  /// grace period, flush storage, stop the actors. Idempotent. Returns true
  /// when everything finished within its deadline.
  bool shutdown();

  metrics::registry& metrics() noexcept;

  /// The key actors routes ask straight (tests change entries in it).
  actors::live_keys& live_keys() noexcept;

  /// LLM calls not ended yet (on the watch for their deadline).
  std::size_t llm_calls_open() const;

  /// The admin key generated at this start (empty when none was): printed
  /// once to stderr by start(); exposed for tests.
  const std::string& bootstrap_key() const noexcept;

private:
  /// Creates the first admin: from TOLLGATE_ADMIN_KEY, or, on a store
  /// without users, a generated key printed once. Throws config_error for a
  /// malformed TOLLGATE_ADMIN_KEY.
  void bootstrap_admin();

  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tollgate::app
