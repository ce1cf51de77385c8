#include "http/server/session.hpp"

#include "http/server/cancel_slot.hpp"
#include "http/server/request_body.hpp"

#include "core/request_id.hpp"
#include "http/errors.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <atomic>
#include <cerrno>

#include <sys/socket.h>

namespace tollgate::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;

namespace {

// Request headers that handlers may read; everything else stays in the
// session (copying every header into each actor message costs allocations).
constexpr std::array<std::string_view, 7> forwarded_headers = {
  "authorization", "x-api-key", "content-type", "user-agent", "accept", "x-forwarded-for",
  "idempotency-key"};

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

/// Posts the answer back onto the session's strand. If the request is never
/// answered (a handler bug, a router that died with the message in its
/// mailbox) the destructor answers 500, so a client never hangs.
class session_responder final : public core::responder {
public:
  session_responder(std::shared_ptr<session> s, net::any_io_executor ex, http_metrics& m,
                    std::shared_ptr<cancel_slot> cancel)
    : session_(std::move(s)), ex_(std::move(ex)), metrics_(m), cancel_(std::move(cancel)) {}

  ~session_responder() override {
    if (!done_.load(std::memory_order_acquire)) {
      metrics_.dropped_responses.inc();
      deliver(error_response(core::errc::internal, "the request was dropped before an answer"));
    }
  }

  void respond(core::api_response&& res) noexcept override {
    if (done_.exchange(true, std::memory_order_acq_rel))
      return;
    deliver(std::move(res));
  }

  void on_cancel(std::function<void()> cancel) noexcept override {
    if (cancel_)
      cancel_->set(std::move(cancel));
  }

private:
  void deliver(core::api_response&& res) noexcept {
    try {
      net::post(ex_, [s = session_, r = std::move(res)]() mutable { s->on_response(std::move(r)); });
    } catch (const std::exception& e) {
      spdlog::error("cannot post a response to its session: {}", e.what());
    }
  }

  std::shared_ptr<session> session_;
  net::any_io_executor ex_;
  http_metrics& metrics_;
  std::shared_ptr<cancel_slot> cancel_;  ///< null: not an upstream route
  std::atomic<bool> done_{false};
};

void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

/// The session end of a streamed answer: posts onto the strand, in order.
class session_sink final : public core::stream_sink {
public:
  session_sink(std::shared_ptr<session> s, net::any_io_executor ex)
    : session_(std::move(s)), ex_(std::move(ex)) {}
  void write(std::string bytes) override {
    net::post(ex_, [s = session_, b = std::move(bytes)]() mutable { s->stream_write(std::move(b)); });
  }
  void finish() override {
    net::post(ex_, [s = session_] { s->stream_finish(); });
  }
  void abort() override {
    net::post(ex_, [s = session_] { s->stream_finish(true); });
  }

private:
  std::shared_ptr<session> session_;
  net::any_io_executor ex_;
};

constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";

} // namespace

session::session(net::ip::tcp::socket&& socket, std::shared_ptr<server_context> ctx)
  : stream_(std::move(socket)), ctx_(std::move(ctx)) {
  beast::error_code ec;
  stream_.socket().set_option(net::ip::tcp::no_delay{true}, ec);
  const auto ep = stream_.socket().remote_endpoint(ec);
  remote_ = ec ? std::string{"-"} : ep.address().to_string();
  ctx_->connections.fetch_add(1, std::memory_order_relaxed);
  ctx_->metrics->connections.inc();
}

session::~session() {
  ctx_->metrics->connections.dec();
  std::lock_guard<std::mutex> guard{ctx_->mutex};
  ctx_->drainers.erase(this);
  if (ctx_->connections.fetch_sub(1, std::memory_order_acq_rel) == 1)
    ctx_->all_closed.notify_all();
}

void session::run(bool reject) {
  {
    std::lock_guard<std::mutex> guard{ctx_->mutex};
    ctx_->drainers.emplace(this, [weak = weak_from_this(), ex = stream_.get_executor()] {
      net::post(ex, [weak] {
        if (auto self = weak.lock())
          self->on_drain();
      });
    });
  }
  net::dispatch(stream_.get_executor(), [self = shared_from_this(), reject] {
    if (reject) {
      self->route_ = self->ctx_->metrics->unmatched();
      self->method_ = "-";
      self->path_ = "-";
      self->started_ = std::chrono::steady_clock::now();
      self->send(error_response(core::errc::unavailable, "too many open connections"), true);
      return;
    }
    self->do_read();
  });
}

void session::do_read() {
  if (drain_ || ctx_->draining.load(std::memory_order_acquire)) {
    do_close();
    return;
  }
  phase_ = phase::idle;
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(ctx_->cfg.header_limit_bytes));
  parser_->body_limit(ctx_->cfg.body_limit_bytes);
  if (buffer_.size() > 0) {  // a pipelined request is already here
    do_read_request();
    return;
  }
  stream_.expires_after(ctx_->cfg.idle_timeout);
  stream_.async_read_some(buffer_.prepare(4096),
                          beast::bind_front_handler(&session::on_first_bytes, shared_from_this()));
}

void session::on_first_bytes(beast::error_code ec, std::size_t n) {
  if (ec) {
    if (ec == beast::error::timeout)
      ctx_->metrics->read_errors.with({"idle_timeout"}).inc();
    do_close();
    return;
  }
  buffer_.commit(n);
  do_read_request();
}

void session::do_read_request() {
  phase_ = phase::reading;
  // One deadline for the whole request: a client that trickles bytes cannot
  // keep the connection by sending one byte per idle timeout.
  stream_.expires_after(ctx_->cfg.request_timeout);
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             self->on_header(ec);
                           });
}

void session::on_header(beast::error_code ec) {
  if (ec) {
    on_read_error(ec);
    return;
  }
  const bool early = !parser_->is_done() && forwards_body_early();
  auto read_body = [self = shared_from_this(), early] {
    if (early) {
      self->start_body_forward();
      return;
    }
    bhttp::async_read(self->stream_, self->buffer_, *self->parser_,
                      [self](beast::error_code e, std::size_t) { self->on_read(e); });
  };
  const auto expect = parser_->get()[bhttp::field::expect];
  if (!parser_->is_done() && beast::iequals(expect, "100-continue")) {
    net::async_write(stream_, net::buffer(continue_line.data(), continue_line.size()),
                     [self = shared_from_this(), read_body](beast::error_code e, std::size_t) {
                       if (e)
                         self->do_close();
                       else
                         read_body();
                     });
    return;
  }
  read_body();
}

void session::on_read(beast::error_code ec) {
  if (ec) {
    on_read_error(ec);
    return;
  }
  handle_request();
}

bool session::forwards_body_early() const {
  if (!ctx_->routes->has_proxy())
    return false;
  const auto& req = parser_->get();
  const auto target = req.target();
  const auto path = target.substr(0, target.find('?'));
  if (path.empty() || path[0] != '/')
    return false;
  const auto m = ctx_->routes->match({req.method_string().data(), req.method_string().size()},
                                     {path.data(), path.size()});
  return m.kind == route_table::outcome::found && m.matched->proxy;
}

void session::start_body_forward() {
  std::weak_ptr<session> weak = shared_from_this();
  auto ex = stream_.get_executor();
  body_in_ = std::make_shared<request_body>([weak, ex] {
    net::post(ex, [weak] {
      if (auto s = weak.lock())
        s->read_body_piece();
    });
  });
  if (const auto n = parser_->content_length())
    body_in_->length = static_cast<std::int64_t>(*n);
  body_done_ = false;
  close_after_body_ = false;
  body_too_large_ = false;
  handle_request();
  read_body_piece();
}

void session::read_body_piece() {
  if (body_done_ || body_reading_ || !body_in_ || phase_ == phase::closed)
    return;
  if (body_in_->cancelled()) {
    // Not wanted (the answer went out, or the call ended): the connection
    // cannot find the next request without reading the rest, so it closes.
    body_done_ = true;
    drain_ = true;
    if (close_after_body_)
      do_close();
    return;
  }
  if (body_in_->hold_back())
    return;  // request_body's resume brings us back
  body_reading_ = true;
  bhttp::async_read_some(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                           self->on_body_piece(ec);
                         });
}

void session::on_body_piece(beast::error_code ec) {
  body_reading_ = false;
  auto& body = parser_->get().body();
  if (!body.empty()) {
    // A copy of what came, and the parser's string let go: the parser
    // reserved the whole declared length in it, which a moved piece would
    // carry along while it waits for the backend.
    body_in_->push(std::string{body.data(), body.size()});
    std::string{}.swap(body);
  }
  if (ec || parser_->is_done()) {
    body_in_->end(!ec);
    body_done_ = true;
    if (!ec && (phase_ == phase::waiting ? cancel_ != nullptr : phase_ == phase::streaming))
      watch_client();
    if (ec)
      drain_ = true;  // the rest of a broken body cannot be found
    if (ec == bhttp::error::body_limit) {
      // A chunked body (a declared length over the limit is refused with
      // the header): the backend call fails with it, the client learns why.
      body_too_large_ = true;
      ctx_->metrics->read_errors.with({"body_limit"}).inc();
    }
  }
  if (close_after_body_) {
    close_after_body_ = false;
    if (!body_done_) {
      body_done_ = true;
      body_in_->end(false);
    }
    do_close();
    return;
  }
  read_body_piece();
}

void session::on_read_error(beast::error_code ec) {
  const auto fail = [this](core::errc e, const char* reason, std::string_view detail) {
    ctx_->metrics->read_errors.with({reason}).inc();
    route_ = ctx_->metrics->unmatched();
    method_ = "-";
    path_ = "-";
    request_id_ = core::new_request_id();
    started_ = std::chrono::steady_clock::now();
    send(error_response(e, detail), true);
  };
  if (ec == bhttp::error::end_of_stream || ec == net::error::eof
      || ec == net::error::operation_aborted || ec == net::error::connection_reset) {
    do_close();
  } else if (ec == beast::error::timeout) {
    // Beast has closed the socket already; nothing can be answered.
    ctx_->metrics->read_errors.with({"request_timeout"}).inc();
    do_close();
  } else if (ec == bhttp::error::header_limit) {
    fail(core::errc::headers_too_large, "header_limit", "request header fields too large");
  } else if (ec == bhttp::error::body_limit) {
    fail(core::errc::payload_too_large, "body_limit", "request body too large");
  } else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
    fail(core::errc::bad_request, "malformed", "malformed HTTP request");
  } else {
    do_close();
  }
}

void session::handle_request() {
  started_ = std::chrono::steady_clock::now();
  auto& req = parser_->get();
  method_ = std::string{req.method_string()};
  const auto target = req.target();
  const auto q = target.find('?');
  path_ = std::string{target.substr(0, q)};
  const auto rid = req["X-Request-Id"];
  request_id_ = core::valid_request_id({rid.data(), rid.size()}) ? std::string{rid}
                                                                 : core::new_request_id();
  ctx_->metrics->in_flight.inc();
  counted_in_flight_ = true;
  route_ = ctx_->metrics->unmatched();
  const bool close = !req.keep_alive();
  head_request_ = req.method() == bhttp::verb::head;
  http10_ = req.version() < 11;
  drain_ = drain_ || close;

  if (ctx_->draining.load(std::memory_order_acquire)) {
    drain_ = true;
    send(error_response(core::errc::unavailable, "the gateway is shutting down"), true);
    return;
  }
  if (path_.empty() || path_[0] != '/') {
    path_ = "-";
    drain_ = true;
    send(error_response(core::errc::bad_request, "request target must be an absolute path"), true);
    return;
  }
  auto m = ctx_->routes->match(method_, path_);
  if (m.kind == route_table::outcome::not_found) {
    send(error_response(core::errc::not_found, "Not Found"), drain_);
    return;
  }
  if (m.kind == route_table::outcome::method_not_allowed) {
    auto res = error_response(core::errc::method_not_allowed, "Method Not Allowed");
    res.headers.emplace_back("Allow", std::move(m.allow));
    send(std::move(res), drain_);
    return;
  }
  route_ = m.matched->id;

  core::api_request out;
  out.method = method_;
  out.path = path_;
  if (q != beast::string_view::npos)
    out.query = std::string{target.substr(q + 1)};
  out.route_id = route_;
  out.route = m.matched->pattern;
  out.params = std::move(m.params);
  const bool proxy = m.matched->proxy;
  for (const auto& field : req) {
    const auto name = lower({field.name_string().data(), field.name_string().size()});
    if (proxy) {  // a backend gets every header (the proxy drops the hop-by-hop ones)
      out.headers.emplace_back(name, std::string{field.value()});
      continue;
    }
    for (const auto wanted : forwarded_headers) {
      if (name == wanted) {
        out.headers.emplace_back(name, std::string{field.value()});
        break;
      }
    }
  }
  if (body_in_)
    out.body_stream = body_in_;  // the body follows as it arrives
  else
    out.body = std::move(req.body());
  out.request_id = request_id_;
  out.remote_addr = remote_;
  phase_ = phase::waiting;
  gone_ = false;
  cancel_ = nullptr;
  if (m.matched->upstream) {
    // Only requests that can be cancelled (upstream calls) pay for watching;
    // while a forwarded body still arrives its bytes would end the watch at
    // once, so then it starts when the body is in (on_body_piece).
    cancel_ = std::make_shared<cancel_slot>();
    if (body_done_)
      watch_client();
  }
  ctx_->dispatch->dispatch(std::move(out),
                           std::make_shared<session_responder>(
                             shared_from_this(), stream_.get_executor(), *ctx_->metrics, cancel_));
}

void session::on_response(core::api_response&& res) {
  if (phase_ != phase::waiting) {
    if (res.stream)
      res.stream->cancel();  // nobody will read it
    return;
  }
  if (body_too_large_) {
    if (res.stream)
      res.stream->cancel();
    res = error_response(core::errc::payload_too_large, "request body too large");
  }
  // An answer before the whole forwarded body came: the connection closes
  // after it (the rest is not read), and the answer says so.
  if (!body_done_)
    drain_ = true;
  send(std::move(res), drain_ || ctx_->draining.load(std::memory_order_acquire));
}

void session::watch_client() {
  if (watching_)
    return;
  watching_ = true;
  // async_wait, not a one-byte peek read: the wait costs one epoll_ctl, and
  // while it is pending the next request's read queues behind it instead of
  // trying a recv that finds nothing. A peek read would cost two recvs (one
  // that finds nothing, one when the next request comes), measured.
  stream_.socket().async_wait(
    net::ip::tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
      self->watching_ = false;
      if (ec || (self->phase_ != phase::waiting && self->phase_ != phase::streaming))
        return;
      char c = 0;
      const auto n = ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0)
        return;  // the next request, pipelined: the client is still there
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        self->watch_client();
        return;
      }
      self->client_gone();
    });
}

void session::client_gone() {
  if (gone_)
    return;
  gone_ = true;
  ctx_->metrics->read_errors.with({"client_gone"}).inc();
  if (auto c = std::move(cancel_)) {
    cancel_ = nullptr;
    c->fire();
  }
  if (stream_body_)
    stream_body_->cancel();
}

void session::stream_write(std::string bytes) {
  if (phase_ != phase::streaming || stream_finished_ || bytes.empty())
    return;
  stream_bytes_ += bytes.size();
  stream_raw_.push_back(bytes.size());
  if (http10_) {
    stream_queue_.push_back(std::move(bytes));
  } else {
    char size[20];
    const auto r = std::to_chars(size, size + sizeof size, bytes.size(), 16);
    std::string frame;
    frame.reserve(bytes.size() + 16);
    frame.append(size, r.ptr).append("\r\n").append(bytes).append("\r\n");
    stream_queue_.push_back(std::move(frame));
  }
  stream_pump();
}

void session::stream_finish(bool broken) {
  if (phase_ != phase::streaming || stream_finished_)
    return;
  stream_finished_ = true;
  if (broken)
    stream_close_ = true;  // no last chunk: the client sees the answer was cut
  else if (!http10_) {
    stream_queue_.emplace_back("0\r\n\r\n");
    stream_raw_.push_back(0);
  }
  stream_pump();
}

void session::stream_pump() {
  if (stream_writing_ || phase_ != phase::streaming)
    return;
  if (stream_queue_.empty()) {
    if (stream_finished_) {
      stream_body_.reset();
      cancel_ = nullptr;
      on_write(stream_close_, {}, stream_bytes_);
    }
    return;
  }
  stream_writing_ = true;
  stream_.expires_after(ctx_->cfg.request_timeout);
  net::async_write(stream_, net::buffer(stream_queue_.front()),
                   [self = shared_from_this()](beast::error_code ec, std::size_t) {
                     self->stream_writing_ = false;
                     self->stream_queue_.pop_front();
                     const auto raw = self->stream_raw_.empty() ? 0 : self->stream_raw_.front();
                     if (!self->stream_raw_.empty())
                       self->stream_raw_.pop_front();
                     if (ec) {
                       self->client_gone();
                       self->stream_body_.reset();
                       self->stream_queue_.clear();
                       self->stream_raw_.clear();
                       self->on_write(true, ec, self->stream_bytes_);
                       return;
                     }
                     if (raw > 0 && self->stream_body_)
                       self->stream_body_->written(raw);
                     self->stream_pump();
                   });
}

void session::on_drain() {
  drain_ = true;
  // An idle keep-alive connection has no request to finish: close it now.
  // Busy ones close after their response. Bytes already waiting in the
  // socket are a request that arrived before the drain: it is read and
  // answered (503) rather than dropped.
  if (phase_ == phase::idle) {
    beast::error_code ec;
    if (stream_.socket().available(ec) == 0 || ec)
      stream_.cancel();
  }
}

void session::send(core::api_response&& res, bool close) {
  phase_ = phase::writing;
  status_ = res.status;
  // The head is written by hand into a buffer the session keeps: Beast's
  // fields container allocates an element per header and its serializer a
  // state object per response, which on a metered route (nine rate-limit
  // fields) cost more than the limits themselves.
  head_.clear();
  head_.append("HTTP/1.1 ");
  append_number(head_, res.status);
  head_.push_back(' ');
  const auto reason = bhttp::obsolete_reason(bhttp::int_to_status(res.status));
  head_.append(reason.data(), reason.size());
  head_.append("\r\n");
  if (!res.content_type.empty())
    head_.append("Content-Type: ").append(res.content_type).append("\r\n");
  head_.append("X-Request-Id: ").append(request_id_).append("\r\n");
  for (const auto& [name, value] : res.headers)
    head_.append(name).append(": ").append(value).append("\r\n");
  head_.append(res.raw_headers);
  if (res.stream) {
    // An HTTP/1.0 client knows no chunked encoding: the body ends when the
    // connection closes.
    if (http10_)
      close = true;
    else
      head_.append("Transfer-Encoding: chunked\r\n");
    if (close)
      head_.append("Connection: close\r\n");
    head_.append("\r\n");
    phase_ = phase::streaming;
    stream_body_ = std::move(res.stream);
    stream_queue_.clear();
    stream_raw_.clear();
    stream_queue_.push_back(head_);
    stream_raw_.push_back(0);
    stream_finished_ = false;
    stream_close_ = close;
    stream_bytes_ = 0;
    stream_body_->attach(std::make_shared<session_sink>(shared_from_this(), stream_.get_executor()));
    if (body_done_)  // else on_body_piece arms it once the forwarded body is in
      watch_client();
    stream_pump();
    return;
  }
  // RFC 9110: no Content-Length on 1xx, 204 and 304.
  if (res.status >= 200 && res.status != 204 && res.status != 304) {
    head_.append("Content-Length: ");
    append_number(head_, res.body.size());
    head_.append("\r\n");
  } else {
    res.body.clear();
  }
  if (close)
    head_.append("Connection: close\r\n");
  head_.append("\r\n");
  body_ = std::move(res.body);
  if (head_request_)
    body_.clear();  // Content-Length says what a GET would have sent
  stream_.expires_after(ctx_->cfg.request_timeout);
  const std::array<net::const_buffer, 2> out{net::buffer(head_), net::buffer(body_)};
  net::async_write(stream_, out,
                   beast::bind_front_handler(&session::on_write, shared_from_this(), close));
}

void session::on_write(bool close, beast::error_code ec, std::size_t bytes) {
  const auto status = status_;
  const auto elapsed = std::chrono::steady_clock::now() - started_;
  const double seconds = std::chrono::duration<double>(elapsed).count();
  ctx_->metrics->record(route_, method_, status, seconds);
  if (counted_in_flight_) {
    ctx_->metrics->in_flight.dec();
    counted_in_flight_ = false;
  }
  if (ctx_->access_log)
    spdlog::info("{} \"{} {}\" {} {} {:.3f}ms rid={}", remote_, method_, path_, status, bytes,
                 seconds * 1e3, request_id_);
  if (!body_done_) {
    // Answered before the whole body came (a refusal, an early backend
    // answer): the rest is not wanted and the connection closes.
    body_in_->cancel();
    if (body_reading_) {
      // The read may wait for bytes the client never sends: cut it short;
      // on_body_piece then closes.
      close_after_body_ = true;
      stream_.cancel();
      return;
    }
    body_done_ = true;
    body_in_->end(false);
    close = true;
  }
  body_in_.reset();
  if (ec || close) {
    do_close();
    return;
  }
  do_read();
}

void session::do_close() {
  if (phase_ == phase::closed)
    return;
  phase_ = phase::closed;
  beast::error_code ec;
  // Half-close, then read and discard what the client still sends until it
  // closes too (bounded by a short deadline): closing with unread data would
  // make the kernel send a reset that can destroy our last response (a 413
  // sent before the body was read) before the client reads it.
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  if (ec || !stream_.socket().is_open()) {
    stream_.close();
    return;
  }
  buffer_.clear();
  stream_.expires_after(std::chrono::seconds{1});
  do_linger();
}

void session::do_linger() {
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](
                                                   beast::error_code ec, std::size_t) {
    if (ec) {
      self->stream_.close();
      return;
    }
    self->do_linger();
  });
}

} // namespace tollgate::http
