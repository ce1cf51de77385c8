#include "http/server/listener.hpp"

#include "http/server/session.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <spdlog/spdlog.h>

namespace tollgate::http {

namespace net = boost::asio;

listener::listener(net::io_context& ioc, const net::ip::tcp::endpoint& ep,
                   std::shared_ptr<server_context> ctx)
  : ioc_(ioc), acceptor_(net::make_strand(ioc)), backoff_(acceptor_.get_executor()),
    ctx_(std::move(ctx)) {
  acceptor_.open(ep.protocol());
  acceptor_.set_option(net::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(net::socket_base::max_listen_connections);
  port_ = acceptor_.local_endpoint().port();
}

void listener::run() {
  net::post(acceptor_.get_executor(), [self = shared_from_this()] { self->do_accept(); });
}

void listener::stop() {
  net::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ec;
    self->acceptor_.close(ec);
    self->backoff_.cancel();
  });
}

void listener::do_accept() {
  // A strand per connection only when several threads run the io_context:
  // with one (the default) the thread itself serialises every handler, and
  // a strand's queue and lock cost 8% of the LLM route's throughput at 32
  // connections (BENCHMARKS.md).
  net::any_io_executor ex = ctx_->cfg.io_threads > 1 ? net::any_io_executor{net::make_strand(ioc_)}
                                                     : net::any_io_executor{ioc_.get_executor()};
  acceptor_.async_accept(ex,
                         [self = shared_from_this()](boost::system::error_code ec,
                                                     net::ip::tcp::socket socket) {
                           self->on_accept(ec, std::move(socket));
                         });
}

void listener::on_accept(boost::system::error_code ec, net::ip::tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor_.is_open())
    return;
  if (ec) {
    // Out of descriptors and the like: accepting again at once would spin;
    // wait a little for connections to close.
    spdlog::warn("accept failed: {}; retrying in 100 ms", ec.message());
    backoff_.expires_after(std::chrono::milliseconds{100});
    backoff_.async_wait([self = shared_from_this()](boost::system::error_code e) {
      if (!e)
        self->do_accept();
    });
    return;
  }
  if (ctx_->draining.load(std::memory_order_acquire)) {
    boost::system::error_code ignored;
    socket.close(ignored);
  } else {
    const bool over_cap =
      ctx_->connections.load(std::memory_order_relaxed) >= ctx_->cfg.max_connections;
    if (over_cap)
      ctx_->metrics->connections_rejected.inc();
    std::make_shared<session>(std::move(socket), ctx_)->run(over_cap);
  }
  do_accept();
}

} // namespace tollgate::http
