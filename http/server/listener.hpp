#pragma once

#include "http/server/server_context.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>

namespace tollgate::http {

/// Accepts connections and gives each a session on its own strand.
class listener : public std::enable_shared_from_this<listener> {
public:
  /// Binds and listens; throws boost::system::system_error on failure.
  listener(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& ep,
           std::shared_ptr<server_context> ctx);

  void run();
  /// Stops accepting (thread-safe).
  void stop();
  std::uint16_t port() const noexcept { return port_; }

private:
  void do_accept();
  void on_accept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer backoff_;
  std::shared_ptr<server_context> ctx_;
  std::uint16_t port_ = 0;
};

} // namespace tollgate::http
