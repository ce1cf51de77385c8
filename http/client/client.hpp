#pragma once

// The upstream HTTP/1.1 client: LLM providers and proxy backends are called
// through it. Beast, Asio and OpenSSL stay behind this header because it is
// included by the actors that start calls.

#include "core/api_message.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace tollgate::http::client {

namespace detail {
class call;
struct fixed_part;
} // namespace detail

/// The method, URL and first header fields of requests that many calls
/// share (an LLM provider's endpoint), checked and rendered once by
/// client::fix. Immutable; any number of calls may use it at once.
using fixed_request = std::shared_ptr<const detail::fixed_part>;

/// The response cap of a call that sets none.
inline constexpr std::size_t default_max_response_bytes = std::size_t{16} << 20;

/// One request to an upstream.
struct upstream_request {
  std::string method = "POST";
  /// "http://host:port/path?q" or "https://host/path"; an empty path means "/".
  std::string url;
  /// Sent as given, except Host, Content-Length, Transfer-Encoding and
  /// Connection, which the client sets itself.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Set: the body comes from here as it arrives (a proxied request body)
  /// instead of `body`; sent with its declared length, or chunked. Such a
  /// call always opens a fresh connection: a dead pooled one could not be
  /// retried once body bytes went out.
  std::shared_ptr<core::body_source> body_stream;
  /// Deadline of the whole exchange: resolve, connect, TLS, write, head, body.
  std::chrono::milliseconds timeout{60000};
  /// Cap on the response body; above it the call fails with "response too
  /// large". 0: no cap, for a streamed body (on_data set) only; a buffered
  /// one then keeps the default.
  std::size_t max_response_bytes = default_max_response_bytes;
  /// Set (client::fix): the method, the URL and the first header fields
  /// come from here, and `method` and `url` are not read; `headers` go out
  /// after its fields. Not with body_stream (the call then fails with
  /// "bad request: …").
  fixed_request fixed;
};

/// Status line and header fields of an upstream response.
struct upstream_head {
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  ///< names as received

  /// The value of the first field named `name` (any case), or "".
  std::string header(std::string_view name_case_insensitive) const;
};

/// Callbacks run on the client's I/O threads (on_done also on the caller's,
/// in the cases client::start names): they must be cheap, must not block and
/// must not destroy the client.
struct upstream_handlers {
  /// Once, before any body bytes. Optional.
  std::function<void(const upstream_head&)> on_head;
  /// Body bytes as they arrive (de-chunked). Optional; when set, the body is
  /// not buffered and on_done receives an empty one.
  std::function<void(std::string_view chunk)> on_data;
  /// Flow control, optional: asked after each on_data. True stops reading
  /// the body (the upstream's sending then stalls in TCP) until the
  /// consumer calls `resume` (any thread, once). A held call waits without
  /// a timer (the consumer bounds it: the session drops a client that takes
  /// nothing for its write timeout); past the deadline, the first read
  /// after resume fails with "timeout".
  std::function<bool(std::function<void()> resume)> hold;
  /// Exactly once, last. An empty `error` is success. `body` holds the whole
  /// body only in buffered mode (no on_data). Errors are one of
  /// "bad url: …", "bad request: …", "connect: …", "tls: …", "timeout",
  /// "reset: …", "malformed response: …", "response too large", "cancelled",
  /// "stopped" (started after cancel_all or shutdown: nothing was sent);
  /// they never contain header values or the URL (both can carry keys).
  std::function<void(std::string error, upstream_head head, std::string body)> on_done;
};

/// The caller's grip on a call in flight.
class call_handle {
public:
  /// Aborts the call: on_done("cancelled") follows unless the call has
  /// already finished. Thread-safe and idempotent; a no-op once the client
  /// is being destroyed (that cancels every call itself).
  void cancel() noexcept;

private:
  friend class client;
  explicit call_handle(std::weak_ptr<detail::call> c) : call_(std::move(c)) {}

  // Weak: the handle must not keep a finished call (and its buffers) alive.
  std::weak_ptr<detail::call> call_;
};

/// A pool of keep-alive connections per (scheme, host, port) and the I/O
/// threads that drive them.
///
///   start ──▶ pooled? ──yes──▶ write ──▶ head ──▶ body ──▶ on_done
///                │                 │  (dead: EOF or write error before any
///                no                │   response byte → once, on a fresh one)
///                ▼                 ▼
///             resolve ─▶ connect ─▶ [TLS] ─▶ write …   keep-alive ─▶ pool
class client {
public:
  struct options {
    std::size_t threads = 1;
    std::size_t max_idle_per_host = 32;
    std::chrono::seconds idle_ttl{30};
    bool verify_tls = true;
    std::string ca_file;  ///< empty: the system's default verify paths
    /// Run on this io_context instead of threads of its own (`threads` is
    /// then unused). Its owner runs it, stops it, and keeps it alive until
    /// the client is gone. The gateway passes the server's: a call and the
    /// session it answers then share a thread, and the answer needs no
    /// hand-off between threads.
    boost::asio::io_context* io = nullptr;
    /// Exactly one thread runs `io`: calls then need no strand of their own.
    bool io_single_threaded = false;
  };

  explicit client(options o);
  /// Cancels pending calls (on_done("cancelled")), closes pooled connections
  /// and joins the I/O threads. Must not run on one of those threads. With
  /// `options::io`, the client must go after that io_context has stopped.
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Starts a call. Thread-safe. Never throws: a failure is reported through
  /// on_done (synchronously, on the caller's thread, only when the client is
  /// shutting down or memory runs out). On a pooled plain-HTTP connection
  /// the request is written from the caller's thread without blocking (what
  /// the socket does not take goes on asynchronously); the answer is read
  /// on the I/O threads.
  std::shared_ptr<call_handle> start(upstream_request req, upstream_handlers h);

  /// Takes no more calls and cancels those in flight (on_done("cancelled")):
  /// on the I/O threads while they run (waiting up to 5 s for them), else
  /// here, on the caller's thread. The gateway calls it at shutdown, once
  /// its I/O threads stopped, so that every call settles what it holds.
  void cancel_all() noexcept;

  /// Checks and renders a method, a URL and header fields once, for the
  /// calls that name the result in upstream_request::fixed. Null when a
  /// call with them would fail; `error` then says why, in the words the
  /// call would use ("bad url: …", "bad request: …").
  static fixed_request fix(std::string_view method, std::string_view url,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           std::string& error);

  /// Pooled keep-alive connections right now (for tests and metrics).
  std::size_t idle_connections() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tollgate::http::client
