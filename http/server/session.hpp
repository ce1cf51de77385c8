#pragma once

#include "core/api_message.hpp"
#include "http/server/server_context.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace tollgate::http {

class cancel_slot;

/// One client connection. All its handlers run on the connection's strand.
///
///   idle ──first byte──▶ reading ──whole request──▶ waiting ──answer──▶ writing
///    ▲  (idle_timeout)     (request_timeout)       (router actor)          │
///    └──────────────────────────── keep-alive ─────────────────────────────┘
///
/// Any read error closes the connection; a protocol error (garbage, too
/// large) is answered first (400/413/431). Timeouts close without an answer
/// because Beast has closed the socket already.
class session : public std::enable_shared_from_this<session> {
public:
  session(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<server_context> ctx);
  ~session();

  /// Starts reading; `reject` answers 503 at once and closes (connection cap).
  void run(bool reject = false);

  /// Called on the strand when the router answers (via the responder).
  void on_response(core::api_response&& res);
  /// Called on the strand by the stream sink.
  void stream_write(std::string bytes);
  /// `broken`: close without the last chunk.
  void stream_finish(bool broken = false);

private:
  enum class phase { idle, reading, waiting, writing, streaming, closed };

  void do_read();
  void on_first_bytes(boost::beast::error_code ec, std::size_t n);
  void do_read_request();
  void on_header(boost::beast::error_code ec);
  void on_read(boost::beast::error_code ec);
  /// A proxy route's body: forwarded while it arrives (request_body.hpp).
  bool forwards_body_early() const;
  void start_body_forward();
  void read_body_piece();
  void on_body_piece(boost::beast::error_code ec);
  void on_read_error(boost::beast::error_code ec);
  void handle_request();
  void on_drain();
  void send(core::api_response&& res, bool close);
  void on_write(bool close, boost::beast::error_code ec, std::size_t bytes);
  void do_close();
  void do_linger();
  /// While a request is with the actors or its answer streams: notice the
  /// client closing (EOF or reset) without reading any of its bytes.
  void watch_client();
  void client_gone();
  void stream_pump();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::shared_ptr<server_context> ctx_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::string head_;            ///< the response head being written; keeps its capacity
  std::string body_;            ///< the response body being written
  unsigned status_ = 0;         ///< the status of the response being written
  phase phase_ = phase::idle;
  bool drain_ = false;
  bool counted_in_flight_ = false;
  std::string remote_;
  // Per-request bookkeeping for the access log and metrics.
  std::chrono::steady_clock::time_point started_;
  std::string method_;
  std::string path_;
  std::string request_id_;
  std::uint32_t route_ = 0;
  bool head_request_ = false;  ///< HEAD: the answer has no body (RFC 9110)
  bool http10_ = false;        ///< HTTP/1.0: no chunked encoding; a stream ends by closing
  // Client-gone detection and streamed answers.
  /// Set while a request of an upstream route is in flight: where its
  /// responder leaves what to do when the client goes away.
  std::shared_ptr<cancel_slot> cancel_;
  bool watching_ = false;
  bool gone_ = false;
  std::shared_ptr<core::body_stream> stream_body_;
  std::deque<std::string> stream_queue_;
  /// Per stream_queue_ entry: how many of its bytes are the body's own
  /// (without chunk framing), reported to the body stream once written.
  std::deque<std::size_t> stream_raw_;
  // A request body forwarded while it arrives.
  std::shared_ptr<class request_body> body_in_;
  bool body_reading_ = false;    ///< a read of it is in flight
  bool body_done_ = true;        ///< all of it was read (or it broke off)
  bool close_after_body_ = false;  ///< answered first: close when the read returns
  bool body_too_large_ = false;    ///< it went over body_limit_bytes: the answer is 413
  bool stream_writing_ = false;
  bool stream_finished_ = false;
  bool stream_close_ = false;
  std::size_t stream_bytes_ = 0;
};

} // namespace tollgate::http
