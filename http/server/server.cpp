#include "http/server/server.hpp"

#include "http/server/listener.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <spdlog/spdlog.h>

#include <stdexcept>
#include <thread>
#include <vector>

namespace tollgate::http {

namespace net = boost::asio;

struct server::impl {
  explicit impl(net::io_context* io)
    : owned(io == nullptr ? std::make_unique<net::io_context>() : nullptr),
      ioc(io == nullptr ? *owned : *io) {}
  std::shared_ptr<server_context> ctx = std::make_shared<server_context>();
  std::unique_ptr<net::io_context> owned;  ///< null when running on the caller's
  net::io_context& ioc;
  std::shared_ptr<listener> lst;
  std::vector<std::thread> threads;
  bool stopped = false;
};

server::server(core::server_config cfg, std::shared_ptr<const route_table> routes, dispatcher& d,
               http_metrics& metrics, bool access_log, net::io_context* io)
  : impl_(std::make_unique<impl>(io)) {
  impl_->ctx->cfg = std::move(cfg);
  impl_->ctx->routes = std::move(routes);
  impl_->ctx->dispatch = &d;
  impl_->ctx->metrics = &metrics;
  impl_->ctx->access_log = access_log;
}

server::~server() {
  stop();
}

void server::start() {
  const auto& cfg = impl_->ctx->cfg;
  boost::system::error_code ec;
  const auto address = net::ip::make_address(cfg.host, ec);
  if (ec)
    throw std::runtime_error("invalid listen address '" + cfg.host + "': " + ec.message());
  try {
    impl_->lst = std::make_shared<listener>(impl_->ioc, net::ip::tcp::endpoint{address, cfg.port},
                                            impl_->ctx);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("cannot listen on " + cfg.host + ":" + std::to_string(cfg.port)
                             + ": " + e.code().message());
  }
  impl_->lst->run();
  const unsigned n = cfg.io_threads == 0 ? 1 : cfg.io_threads;
  for (unsigned i = 0; i < n; ++i)
    impl_->threads.emplace_back([this] {
      auto guard = net::make_work_guard(impl_->ioc);
      impl_->ioc.run();
    });
}

std::uint16_t server::port() const noexcept {
  return impl_->lst ? impl_->lst->port() : 0;
}

bool server::drain(std::chrono::milliseconds grace) {
  auto& ctx = *impl_->ctx;
  ctx.draining.store(true, std::memory_order_release);
  if (impl_->lst)
    impl_->lst->stop();
  std::unique_lock<std::mutex> lock{ctx.mutex};
  for (auto& [key, drain] : ctx.drainers)
    drain();
  const bool all = ctx.all_closed.wait_for(lock, grace, [&] {
    return ctx.connections.load(std::memory_order_acquire) == 0;
  });
  if (!all)
    spdlog::warn("shutdown: {} connections still open after the grace period",
                 ctx.connections.load());
  return all;
}

void server::stop() {
  if (impl_->stopped)
    return;
  impl_->stopped = true;
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable())
      t.join();
  impl_->threads.clear();
}

} // namespace tollgate::http
