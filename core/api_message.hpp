#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::core {

using header_list = std::vector<std::pair<std::string, std::string>>;

/// A request body that is still arriving while its request is handled (a
/// proxy route forwards it as it comes). The session produces it; one
/// consumer takes it. Thread-safe.
class body_source {
public:
  virtual ~body_source() = default;
  /// Sets the consumer, once. `on_data` gets the pieces in order (those
  /// that came before at once, on the caller's thread; later ones on the
  /// session's), then `on_end(true)` after the last, or `on_end(false)`
  /// when the client's body broke off.
  virtual void consume(std::function<void(std::string)> on_data,
                       std::function<void(bool complete)> on_end) = 0;
  /// The consumer has sent `bytes` on: the session may read more of them.
  virtual void taken(std::size_t bytes) noexcept = 0;
  /// The rest is not wanted; the connection closes after its answer.
  virtual void cancel() noexcept = 0;
  /// The declared length (Content-Length), or -1 for a chunked body.
  std::int64_t length = -1;
};

/// A parsed client request as it travels from an HTTP session to the actors.
/// Transport-neutral on purpose: actors never see Beast types.
struct api_request {
  std::string method;           ///< "GET", "POST", ...
  std::string path;             ///< path without the query string
  std::string query;            ///< raw query string without '?'
  std::uint32_t route_id = 0;   ///< index into the immutable route table
  std::string route;            ///< its template, e.g. "/user/api-keys/{key_id}"
  header_list params;           ///< path parameters captured by the route template
  header_list headers;          ///< lower-cased names of the headers handlers may read
  std::string body;
  std::string request_id;
  std::string remote_addr;
  /// Set (proxy routes): the body is still arriving and comes through this
  /// instead of `body`. Process-local (not part of inspect()).
  std::shared_ptr<body_source> body_stream;

  /// First header with the given lower-case name, or an empty view.
  std::string_view header(std::string_view lower_name) const noexcept;
  /// Path parameter by name, or an empty view.
  std::string_view param(std::string_view name) const noexcept;
};

/// Where a streamed body goes; implemented by the HTTP session. Callable
/// from any thread; calls must not overlap (the producer serialises them).
class stream_sink {
public:
  virtual ~stream_sink() = default;
  /// Sends bytes as one chunk as soon as the connection can take them.
  /// Dropped once the client has gone.
  virtual void write(std::string bytes) = 0;
  /// The body is complete; the connection goes on with its next request.
  virtual void finish() = 0;
  /// The body broke off: the connection closes without the last chunk, so
  /// the client can tell a cut answer from a whole one.
  virtual void abort() = 0;
};

/// A body produced while it is sent (server-sent events from an upstream).
class body_stream {
public:
  virtual ~body_stream() = default;
  /// Called once, after the head is written: from now on, write to `sink`.
  virtual void attach(std::shared_ptr<stream_sink> sink) = 0;
  /// The client went away before finish(): stop producing.
  virtual void cancel() noexcept = 0;
  /// `bytes` of what was written to the sink have reached the client's
  /// socket: a producer that holds back for a slow client may go on.
  virtual void written(std::size_t bytes) noexcept { (void)bytes; }
};

/// What a handler answers; the session turns it into an HTTP response.
struct api_response {
  std::uint16_t status = 200;
  std::string content_type = "application/json";
  header_list headers;
  /// Further header fields, already rendered as "Name: value\r\n" lines.
  /// Hot paths (the rate-limit headers on every metered response) append
  /// here: one string instead of a heap pair per field.
  std::string raw_headers;
  std::string body;
  /// Set: `body` is ignored and the response is sent chunked as the stream
  /// produces it. Process-local (not part of inspect()).
  std::shared_ptr<body_stream> stream;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_request& x) {
  return f(x.method, x.path, x.query, x.route_id, x.route, x.params, x.headers, x.body, x.request_id,
           x.remote_addr);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_response& x) {
  return f(x.status, x.content_type, x.headers, x.raw_headers, x.body);
}

/// The way back to the connection a request came from. An implementation must
/// be callable from any thread; it hands the response to its session without
/// blocking. Each request is answered exactly once.
class responder {
public:
  virtual ~responder() = default;
  virtual void respond(api_response&& response) noexcept = 0;
  /// Registers what to do if the client goes away before its answer (or
  /// while it streams): cancel the upstream call. Called at most once per
  /// request; the default ignores it (no connection to watch).
  virtual void on_cancel(std::function<void()> cancel) noexcept { (void)cancel; }
};

using responder_ptr = std::shared_ptr<responder>;

} // namespace tollgate::core
