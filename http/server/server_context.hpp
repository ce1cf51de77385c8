#pragma once

#include "core/config.hpp"
#include "http/route_table.hpp"
#include "http/server/dispatcher.hpp"
#include "http/server/http_metrics.hpp"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace tollgate::http {

/// State shared by the listener and every session of one server. The config
/// and route table are immutable; the rest is atomics or behind the mutex.
struct server_context {
  core::server_config cfg;
  std::shared_ptr<const route_table> routes;
  dispatcher* dispatch = nullptr;
  http_metrics* metrics = nullptr;
  bool access_log = true;

  std::atomic<bool> draining{false};
  std::atomic<std::size_t> connections{0};

  /// Sessions register a drain callback so that a shutdown can close idle
  /// keep-alive connections at once. Keyed by the session's address.
  std::mutex mutex;
  std::condition_variable all_closed;
  std::unordered_map<const void*, std::function<void()>> drainers;
};

} // namespace tollgate::http
