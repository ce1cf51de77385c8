#pragma once

#include "core/config.hpp"

#include <chrono>
#include <cstdint>
#include <memory>

namespace boost::asio {
class io_context;
}

namespace tollgate::http {

class dispatcher;
class http_metrics;
class route_table;

/// The HTTP front: a listener, its sessions and the I/O threads. Beast stays
/// behind this interface.
class server {
public:
  /// With `io`, the server runs on that io_context (which must outlive it,
  /// and which stop() stops) instead of one of its own.
  server(core::server_config cfg, std::shared_ptr<const route_table> routes, dispatcher& d,
         http_metrics& metrics, bool access_log, boost::asio::io_context* io = nullptr);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds, listens and starts the I/O threads. Throws std::runtime_error
  /// naming the address when it cannot bind.
  void start();

  /// The bound port (useful with port 0).
  std::uint16_t port() const noexcept;

  /// Graceful shutdown, part one: stop accepting, close idle connections,
  /// answer 503 to new requests and wait until every connection has closed
  /// or `grace` has passed. Returns true when all closed in time.
  bool drain(std::chrono::milliseconds grace);

  /// Stops the I/O threads and joins them. Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tollgate::http
