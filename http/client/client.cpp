#include "http/client/client.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <charconv>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace tollgate::http::client {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

namespace detail {

/// The parts of an upstream URL the client needs.
struct target_url {
  bool tls = false;
  std::string host;         ///< lower-case, without IPv6 brackets
  bool ip_literal = false;
  std::uint16_t port = 0;
  std::string port_text;
  std::string target;       ///< path and query, never empty
  std::string host_header;
  std::string key;          ///< the pool key: scheme, host, port
};

/// What client::fix made: the URL parsed, and the request line, Host and
/// the fixed fields rendered as they go out.
struct fixed_part {
  target_url url;
  std::string head;  ///< "POST /x HTTP/1.1\r\nHost: h\r\n" and the fields, CRLF each
  bool head_request = false;
  bool body_expected = false;
};

} // namespace detail

namespace {

constexpr std::uint32_t header_limit_bytes = 64 * 1024;
constexpr std::size_t chunk_bytes = 16 * 1024;

char lower_char(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    c = lower_char(c);
  return out;
}

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower_char(a[i]) != lower_char(b[i]))
      return false;
  return true;
}

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty())
    return false;
  for (const char c : s)
    if (!is_tchar(c))
      return false;
  return true;
}

// A field value may hold visible characters, spaces and tabs; CR, LF and the
// other controls would let a caller smuggle extra fields or a second request.
bool is_field_value(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f)
      return false;
  }
  return true;
}

/// A field value without its leading and trailing spaces and tabs, as
/// beast's fields store it (RFC 9110: they are not part of the value).
std::string_view trim_ows(std::string_view s) {
  const auto ows = [](char c) { return c == ' ' || c == '\t'; };
  while (!s.empty() && ows(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && ows(s.back()))
    s.remove_suffix(1);
  return s;
}

// Returns the reason the URL is unusable, or "". The reasons never quote the
// URL: a query string can carry a key.
std::string parse_url(std::string_view url, detail::target_url& out) {
  for (const char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f)
      return "contains whitespace or control characters";
  }
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos)
    return "missing scheme";
  const auto scheme = lower(url.substr(0, scheme_end));
  std::uint16_t default_port = 0;
  if (scheme == "http") {
    default_port = 80;
  } else if (scheme == "https") {
    out.tls = true;
    default_port = 443;
  } else {
    return "unsupported scheme (only http and https)";
  }
  const auto rest = url.substr(scheme_end + 3);
  const auto authority_end = rest.find_first_of("/?#");
  const auto authority = rest.substr(0, authority_end);
  auto path = authority_end == std::string_view::npos ? std::string_view{}
                                                      : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos)
    return "credentials in the URL are not supported";
  if (authority.empty())
    return "missing host";

  std::string_view host;
  std::string_view port_text;
  bool has_port = false;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      return "unterminated IPv6 literal";
    host = authority.substr(1, close - 1);
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return "bad port";
      port_text = after.substr(1);
      has_port = true;
    }
    beast::error_code ec;
    net::ip::make_address_v6(std::string{host}, ec);
    if (ec)
      return "bad IPv6 literal";
    out.ip_literal = true;
  } else {
    const auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
    }
    if (host.empty())
      return "missing host";
    for (const char c : host) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                      || c == '-' || c == '.' || c == '_';
      if (!ok)
        return c == ':' ? "IPv6 addresses need brackets" : "bad host";
    }
    beast::error_code ec;
    net::ip::make_address_v4(std::string{host}, ec);
    out.ip_literal = !ec;
  }

  out.port = default_port;
  if (has_port) {
    if (port_text.empty() || port_text.size() > 5)
      return "bad port";
    unsigned long p = 0;
    for (const char c : port_text) {
      if (c < '0' || c > '9')
        return "bad port";
      p = p * 10 + static_cast<unsigned long>(c - '0');
    }
    if (p == 0 || p > 65535)
      return "bad port";
    out.port = static_cast<std::uint16_t>(p);
  }
  out.port_text = std::to_string(out.port);
  out.host = lower(host);

  path = path.substr(0, path.find('#'));  // fragments are never sent
  if (path.empty())
    out.target = "/";
  else if (path.front() == '?')
    out.target = "/" + std::string{path};
  else
    out.target = std::string{path};

  const bool v6 = authority.front() == '[';
  out.host_header = v6 ? "[" + out.host + "]" : out.host;
  if (out.port != default_port)
    out.host_header += ":" + out.port_text;
  out.key = scheme + "://" + (v6 ? "[" + out.host + "]" : out.host) + ":" + out.port_text;
  return {};
}

// Fields the client owns: it frames the message itself and decides on
// keep-alive, so caller copies would contradict it.
bool client_owned_field(std::string_view name) {
  return iequal(name, "host") || iequal(name, "content-length") || iequal(name, "connection")
         || iequal(name, "transfer-encoding");
}

/// Why header fields cannot go out ("bad request: …"), or "".
std::string check_fields(const std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [name, value] : headers) {
    if (!is_token(name))
      return "bad request: invalid header name";
    if (!is_field_value(value))
      return "bad request: invalid value for header " + name;
    // beast's own limits (a field's offsets are 16 bits), with its words.
    if (name.size() + 2 > std::numeric_limits<std::uint16_t>::max())
      return "bad request: field name too large";
    if (value.size() + 2 > std::numeric_limits<std::uint16_t>::max())
      return "bad request: field value too large";
  }
  return {};
}

/// Why a method or header fields cannot go out ("bad request: …"), or "".
std::string check_request(std::string_view method,
                          const std::vector<std::pair<std::string, std::string>>& headers) {
  if (!is_token(method))
    return "bad request: invalid method";
  return check_fields(headers);
}

/// Appends the fields as they go out (checked by check_fields), in the
/// order beast's serializer would write them.
void render_fields(std::string& out,
                   const std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [name, value] : headers)
    if (!client_owned_field(name))
      out.append(name).append(": ").append(trim_ows(value)).append("\r\n");
}

std::size_t rendered_size(const std::vector<std::pair<std::string, std::string>>& headers) {
  std::size_t n = 0;
  for (const auto& [name, value] : headers)
    n += name.size() + value.size() + 4;
  return n;
}

/// The request line and Host.
void render_start(std::string& out, std::string_view method, const detail::target_url& url) {
  out.append(method).append(" ").append(url.target).append(" HTTP/1.1\r\nHost: ");
  out.append(url.host_header).append("\r\n");
}

bool expects_body(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

/// Maps a read error to the caller's vocabulary.
std::string read_error(const beast::error_code& e) {
  if (e == beast::error::timeout)
    return "timeout";
  if (e == bhttp::error::body_limit)
    return "response too large";
  if (e == bhttp::error::header_limit)
    return "malformed response: header fields too large";
  if (e == bhttp::error::end_of_stream || e == bhttp::error::partial_message
      || e == net::error::eof || e == net::error::connection_reset
      || e == net::error::broken_pipe || e == ssl::error::stream_truncated)
    return "reset: " + e.message();
  if (e.category() == bhttp::make_error_code(bhttp::error::bad_version).category())
    return "malformed response: " + e.message();
  if (e.category() == net::error::get_ssl_category())
    return "tls: " + e.message();
  return "reset: " + e.message();
}

} // namespace

std::string upstream_head::header(std::string_view name_case_insensitive) const {
  for (const auto& [name, value] : headers)
    if (iequal(name, name_case_insensitive))
      return value;
  return {};
}

namespace detail {

using tls_stream = ssl::stream<beast::tcp_stream>;

/// One upstream connection, plain or TLS. Its stream's executor is a strand:
/// whoever uses the connection runs on that strand.
struct connection {
  std::string key;
  std::optional<beast::tcp_stream> plain;
  std::optional<tls_stream> tls;
  beast::flat_buffer buffer;
  /// Where bodies are read, chunk_bytes long once a call needed it: kept
  /// with the connection, not allocated per call (a 16 KiB block takes
  /// malloc's slow path).
  std::unique_ptr<char[]> body_chunk;
  steady::time_point idle_since;

  beast::tcp_stream& lowest() { return tls ? tls->next_layer() : *plain; }
  void close() noexcept { lowest().close(); }
};

using connection_ptr = std::unique_ptr<connection>;

/// What calls, handles and the client share. It outlives the io_context
/// (calls own a reference), so nothing here may own a socket once the client
/// is gone: the destructor empties the pool.
struct shared_state {
  std::mutex mutex;  ///< guards every member below
  bool open = true;  ///< false once the client's destructor runs: post nothing more
  std::condition_variable all_done;
  std::unordered_map<const call*, std::weak_ptr<call>> live;
  std::unordered_map<std::string, std::deque<connection_ptr>> idle;  ///< oldest first

  std::size_t max_idle_per_host = 32;
  steady::duration idle_ttl = std::chrono::seconds{30};

  // Drops expired connections of one host into `out` (closed outside the
  // lock) and returns the most recent live one, the likeliest still open.
  connection_ptr take_idle(const std::string& key, steady::time_point now,
                           std::vector<connection_ptr>& out) {
    const auto it = idle.find(key);
    if (it == idle.end())
      return {};
    auto& q = it->second;
    drop_expired(q, now, out);
    connection_ptr c;
    if (!q.empty()) {
      c = std::move(q.back());
      q.pop_back();
    }
    if (q.empty())
      idle.erase(it);
    return c;
  }

  void drop_expired(std::deque<connection_ptr>& q, steady::time_point now,
                    std::vector<connection_ptr>& out) {
    while (!q.empty() && now - q.front()->idle_since >= idle_ttl) {
      out.push_back(std::move(q.front()));
      q.pop_front();
    }
  }
};

/// TLS settings every call reads; owned by client::impl, which outlives
/// every handler that runs.
struct tls_settings {
  ssl::context* context = nullptr;
  std::string error;  ///< why the context is unusable, or ""
  bool verify = true;
};

void close_all(std::vector<connection_ptr>& conns) noexcept {
  for (auto& c : conns)
    c->close();
  conns.clear();
}

/// One exchange. Every member is touched only on `ex_` (the connection's
/// strand) except `cancel_requested_`, and by run_here on the caller's
/// thread before anything of the call can run on `ex_`.
///
///   init ─▶ resolving ─▶ connecting ─▶ handshaking ─┐
///     │                                             ▼
///     └──────── (pooled connection) ───────────▶ writing ─▶ head ─▶ body ─▶ done
///                                                  │        │
///              dead pooled connection, no response byte yet: once, fresh ─▶ resolving
class call : public std::enable_shared_from_this<call> {
public:
  call(std::shared_ptr<shared_state> st, const tls_settings& tls, net::any_io_executor ex,
       upstream_request req, upstream_handlers h)
    : st_(std::move(st)), tls_(tls), ex_(std::move(ex)), h_(std::move(h)),
      max_body_(req.max_response_bytes),
      deadline_(steady::now() + req.timeout) {
    // Never throws past here: once h_ holds the handlers, on_done is owed.
    try {
      prepare(std::move(req));
    } catch (const std::exception& e) {
      setup_error_ = std::string{"bad request: "} + e.what();
    }
  }

  /// The pool key ("" when the request is unusable).
  const std::string& key() const { return url_->key; }
  bool usable() const { return setup_error_.empty(); }
  bool streams_body() const { return src_ != nullptr; }

  /// Before run(): continue on a pooled connection (and on its strand).
  void adopt(connection_ptr c) {
    ex_ = c->lowest().get_executor();
    conn_ = std::move(c);
  }

  const net::any_io_executor& executor() const { return ex_; }

  /// Whether run_here may start this call: its deadline is far enough that
  /// no timeout handler (armed before each operation it bounds, and run on
  /// the I/O thread) can close the socket while this thread still sets the
  /// operation up.
  bool may_run_here() const { return deadline_ - steady::now() >= std::chrono::seconds{1}; }

  /// run() on the caller's thread, for a call that adopted a pooled
  /// connection: the request goes out from the thread that made it, and
  /// the I/O thread is woken only for what comes back, while the upstream
  /// already works on it. Nothing else can reach this call yet but a
  /// cancellation, which waits for the mutex; everything run() starts
  /// completes on `ex_`, and run() touches nothing after starting it.
  void run_here() {
    std::lock_guard<std::mutex> lock{start_mutex_};
    here_ = true;
    run();
    here_ = false;
  }

  void run() {
    guard([&] {
      if (done_)
        return;
      if (!setup_error_.empty()) {
        finish(std::move(setup_error_));
        return;
      }
      if (src_) {
        // Pieces come on the session's thread: posted here, in order. The
        // callbacks keep the call alive while it waits for them (no I/O of
        // its own is pending then); finish() lets go of the source, which
        // ends that cycle.
        auto self = shared_from_this();
        auto ex = ex_;
        src_->consume(
          [self, ex](std::string piece) {
            net::post(ex, [self, p = std::move(piece)]() mutable {
              self->guard([&] { self->on_piece(std::move(p)); });
            });
          },
          [self, ex](bool complete) {
            net::post(ex, [self, complete] {
              self->guard([&] { self->on_source_end(complete); });
            });
          });
      }
      if (conn_) {
        reused_ = true;
        spdlog::debug("upstream {}: reusing a pooled connection", url_->key);
        conn_->lowest().expires_at(deadline_);
        if (here_ && conn_->plain)
          write_now();
        else
          do_write();
        return;
      }
      do_open();
    });
  }

  /// Any thread.
  void request_cancel() noexcept {
    if (cancel_requested_.exchange(true, std::memory_order_acq_rel))
      return;
    try {
      std::lock_guard<std::mutex> lock{st_->mutex};
      if (!st_->open)
        return;  // the client's destructor cancels every live call itself
      net::post(ex_, [self = shared_from_this()] { self->on_cancel(); });
    } catch (const std::exception& e) {
      spdlog::error("upstream: cannot post a cancellation: {}", e.what());
    }
  }

  /// Any thread: a body held back by the consumer (upstream_handlers::hold)
  /// is read on.
  void request_resume() noexcept {
    try {
      std::lock_guard<std::mutex> lock{st_->mutex};
      if (!st_->open)
        return;
      net::post(ex_, [self = shared_from_this()] { self->guard([&] { self->resume_reading(); }); });
    } catch (const std::exception& e) {
      spdlog::error("upstream: cannot post a resume: {}", e.what());
    }
  }

  /// On the strand (or on the destructor's thread once the I/O threads are gone).
  void on_cancel() noexcept {
    std::lock_guard<std::mutex> lock{start_mutex_};  // after run_here, if it runs
    if (done_)
      return;
    spdlog::debug("upstream {}: cancelled", url_->key);
    finish("cancelled");
  }

  /// The client is shut down: the call never starts (nothing was sent).
  void refuse() noexcept { finish("stopped"); }

  /// Reports the outcome, exactly once. A failed or cancelled connection is
  /// closed here, which also completes its pending operation (ignored: done_).
  void finish(std::string error) noexcept {
    if (done_)
      return;
    done_ = true;
    phase_ = phase::done;
    if (src_) {
      src_->cancel();  // the session stops reading a body nobody takes
      src_.reset();
    }
    try {
      if (timer_)
        timer_->cancel();
      if (resolver_)
        resolver_->cancel();
    } catch (const std::exception& e) {
      spdlog::debug("upstream {}: cancelling the resolver: {}", url_->key, e.what());
    }
    if (conn_ && !error.empty())
      conn_->close();
    {
      std::lock_guard<std::mutex> lock{st_->mutex};
      st_->live.erase(this);
      if (st_->live.empty())
        st_->all_done.notify_all();
    }
    // Moved out so the caller's captures die with this call's last callback.
    auto h = std::move(h_);
    h_ = {};
    if (!h.on_done)
      return;
    try {
      h.on_done(std::move(error), std::move(head_), std::move(body_));
    } catch (const std::exception& e) {
      spdlog::error("upstream {}: on_done threw: {}", url_->key, e.what());
    } catch (...) {
      spdlog::error("upstream {}: on_done threw", url_->key);
    }
  }

private:
  enum class phase { init, resolving, connecting, handshaking, writing, head, body, done };

  void prepare(upstream_request&& req) {
    if (req.fixed) {
      prepare_fixed(std::move(req));
      return;
    }
    if (auto why = parse_url(req.url, own_url_); !why.empty()) {
      setup_error_ = "bad url: " + why;
      return;
    }
    if (auto why = check_request(req.method, req.headers); !why.empty()) {
      setup_error_ = std::move(why);
      return;
    }
    head_request_ = req.method == "HEAD";
    // Set by hand rather than with prepare_payload(), which throws for a
    // TRACE with a body.
    if (req.body_stream) {
      req_.version(11);
      req_.method_string(req.method);
      req_.target(url_->target);
      req_.set(bhttp::field::host, url_->host_header);
      for (const auto& [name, value] : req.headers)
        if (!client_owned_field(name))
          req_.insert(name, value);
      src_ = std::move(req.body_stream);
      if (src_->length >= 0) {
        req_.set(bhttp::field::content_length, std::to_string(src_->length));
      } else {
        req_.set(bhttp::field::transfer_encoding, "chunked");
        chunked_up_ = true;
      }
      return;
    }
    // A body known up front (every LLM call): the head as it goes out, in
    // the order beast's serializer would write it, built in one string; the
    // fields container and the serializer cost more than the bytes.
    out_head_.reserve(req.method.size() + url_->target.size() + url_->host_header.size() + 64
                      + rendered_size(req.headers));
    render_start(out_head_, req.method, *url_);
    render_fields(out_head_, req.headers);
    end_head(req.body.size(), expects_body(req.method));
    out_body_ = std::move(req.body);
  }

  /// A request whose URL and first fields client::fix checked and rendered:
  /// only its own fields are checked here.
  void prepare_fixed(upstream_request&& req) {
    if (req.body_stream) {
      setup_error_ = "bad request: a fixed request cannot stream its body";
      return;
    }
    fixed_ = std::move(req.fixed);
    url_ = &fixed_->url;
    if (auto why = check_fields(req.headers); !why.empty()) {
      setup_error_ = std::move(why);
      return;
    }
    head_request_ = fixed_->head_request;
    out_head_.reserve(fixed_->head.size() + rendered_size(req.headers) + 32);
    out_head_.append(fixed_->head);
    render_fields(out_head_, req.headers);
    end_head(req.body.size(), fixed_->body_expected);
    out_body_ = std::move(req.body);
  }

  /// Content-Length (when a body goes, or the method expects one) and the
  /// blank line.
  void end_head(std::size_t body_size, bool body_expected) {
    if (body_size != 0 || body_expected) {
      char digits[24];
      const auto r = std::to_chars(digits, digits + sizeof digits, body_size);
      out_head_.append("Content-Length: ").append(digits, r.ptr).append("\r\n");
    }
    out_head_.append("\r\n");
  }

  /// What of out_head_ and out_body_ the write in progress has not sent yet.
  std::array<net::const_buffer, 2> unwritten() const {
    const auto in_head = std::min(written_, out_head_.size());
    const auto in_body = written_ - in_head;
    return {net::buffer(out_head_.data() + in_head, out_head_.size() - in_head),
            net::buffer(out_body_.data() + in_body, out_body_.size() - in_body)};
  }

  // Runs a step; an exception (allocation, SSL_new, thread creation in the
  // resolver) becomes the error of the phase it interrupted.
  template <class F>
  void guard(F&& f) noexcept {
    try {
      f();
    } catch (const std::exception& e) {
      finish(error_prefix() + e.what());
    } catch (...) {
      finish(error_prefix() + "unexpected failure");
    }
  }

  std::string error_prefix() const {
    switch (phase_) {
    case phase::init:
    case phase::resolving:
    case phase::connecting:
      return "connect: ";
    case phase::handshaking:
      return "tls: ";
    default:
      return "reset: ";
    }
  }

  template <class F>
  void with_stream(F&& f) {
    if (conn_->tls)
      f(*conn_->tls);
    else
      f(*conn_->plain);
  }

  void do_open() {
    phase_ = phase::init;
    conn_ = std::make_unique<connection>();
    conn_->key = url_->key;
    if (url_->tls) {
      if (!tls_.error.empty()) {
        finish("tls: " + tls_.error);
        return;
      }
      conn_->tls.emplace(ex_, *tls_.context);
    } else {
      conn_->plain.emplace(ex_);
    }
    if (url_->ip_literal) {
      do_connect(std::vector<tcp::endpoint>{{net::ip::make_address(url_->host), url_->port}});
      return;
    }
    phase_ = phase::resolving;
    resolver_.emplace(ex_);
    // The stream's timer does not cover name resolution: a timer of our own does.
    timer_.emplace(ex_);
    timer_->expires_at(deadline_);
    timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec && self->phase_ == phase::resolving)
        self->finish("timeout");
    });
    resolver_->async_resolve(
      url_->host, url_->port_text,
      [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
        self->guard([&] { self->on_resolve(ec, results); });
      });
  }

  void on_resolve(beast::error_code ec, const tcp::resolver::results_type& results) {
    if (done_)
      return;
    timer_->cancel();
    if (ec) {
      finish("connect: cannot resolve " + url_->host + ": " + ec.message());
      return;
    }
    do_connect(results);
  }

  template <class Endpoints>
  void do_connect(const Endpoints& endpoints) {
    phase_ = phase::connecting;
    auto& s = conn_->lowest();
    s.expires_at(deadline_);
    s.async_connect(endpoints, [self = shared_from_this()](beast::error_code ec,
                                                           const tcp::endpoint&) {
      self->guard([&] { self->on_connect(ec); });
    });
  }

  /// Ends the call for a failed step: "timeout", or `what` and the reason.
  void fail(const beast::error_code& ec, const char* what) {
    finish(ec == beast::error::timeout ? std::string{"timeout"} : what + ec.message());
  }

  void on_connect(beast::error_code ec) {
    if (done_)
      return;
    if (ec) {
      fail(ec, "connect: ");
      return;
    }
    beast::error_code ignored;
    conn_->lowest().socket().set_option(tcp::no_delay{true}, ignored);
    spdlog::debug("upstream {}: connected", url_->key);
    if (conn_->tls)
      do_handshake();
    else
      do_write();
  }

  void do_handshake() {
    phase_ = phase::handshaking;
    auto& s = *conn_->tls;
    beast::error_code ec;
    if (tls_.verify) {
      s.set_verify_mode(ssl::verify_peer, ec);
      if (!ec)
        s.set_verify_callback(ssl::host_name_verification(url_->host), ec);
    } else {
      s.set_verify_mode(ssl::verify_none, ec);
    }
    if (ec) {
      finish("tls: " + ec.message());
      return;
    }
    // SNI carries names only (RFC 6066), never address literals. SSL_ctrl is
    // what the SSL_set_tlsext_host_name macro expands to, minus its C cast;
    // it copies the name, so the URL (shared by fixed requests) stays as is.
    if (!url_->ip_literal
        && SSL_ctrl(s.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                    const_cast<char*>(url_->host.c_str()))
             != 1) {
      finish("tls: cannot set the server name");
      return;
    }
    conn_->lowest().expires_at(deadline_);
    s.async_handshake(ssl::stream_base::client, [self = shared_from_this()](beast::error_code e) {
      self->guard([&] { self->on_handshake(e); });
    });
  }

  void on_handshake(beast::error_code ec) {
    if (done_)
      return;
    if (ec) {
      fail(ec, "tls: ");
      return;
    }
    do_write();
  }

  /// run_here on a plain pooled connection: the request goes into the
  /// socket now, without blocking, and the read of the answer is armed from
  /// here too. The I/O thread then wakes only when the answer comes (an
  /// asynchronous write would wake it once more for its completion, while
  /// the upstream needs the core). Whatever the socket does not take now is
  /// written asynchronously.
  void write_now() {
    phase_ = phase::writing;
    auto& s = *conn_->plain;
    beast::error_code ec;
    if (!s.socket().non_blocking())  // an ioctl: once per connection
      s.socket().non_blocking(true, ec);  // only sync calls see it; they are all here
    written_ = 0;
    const auto total = out_head_.size() + out_body_.size();
    while (!ec && written_ < total)
      written_ += s.socket().write_some(unwritten(), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      net::async_write(s, unwritten(),
                       [self = shared_from_this()](beast::error_code e, std::size_t) {
                         self->guard([&] { self->on_write(e); });
                       });
      return;
    }
    if (ec) {
      // A dead pooled connection: the retry (a fresh connection) or the
      // failure is the I/O thread's business, like every other outcome.
      net::post(ex_, [self = shared_from_this(), ec] { self->guard([&] { self->on_write(ec); }); });
      return;
    }
    on_write(ec);  // arms the read of the answer from here
  }

  void do_write() {
    phase_ = phase::writing;
    if (src_) {
      serializer_.emplace(req_);
      with_stream([&](auto& s) {
        bhttp::async_write_header(s, *serializer_,
                                  [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                    self->guard([&] { self->on_head_written(ec); });
                                  });
      });
      return;
    }
    written_ = 0;
    with_stream([&](auto& s) {
      net::async_write(s, unwritten(), [self = shared_from_this()](beast::error_code ec, std::size_t) {
        self->guard([&] { self->on_write(ec); });
      });
    });
  }

  void on_write(beast::error_code ec) {
    if (done_)
      return;
    if (ec) {
      if (ec == beast::error::timeout) {
        finish("timeout");
      } else if (reused_) {
        retry(ec);
      } else {
        finish("reset: " + ec.message());
      }
      return;
    }
    do_read_head();
  }

  // A streamed body: the head went out; the pieces follow as they come.
  void on_head_written(beast::error_code ec) {
    if (done_)
      return;
    if (ec) {
      fail(ec, "reset: ");
      return;
    }
    head_written_ = true;
    // The answer is read while the body goes out: a backend may answer
    // early (its own 413 or 401) and stop reading, or close.
    do_read_head();
    pump_body();
  }

  void on_piece(std::string piece) {
    if (done_ || piece.empty())
      return;
    const auto raw = piece.size();
    if (chunked_up_) {
      char size[20];
      const auto r = std::to_chars(size, size + sizeof size, raw, 16);
      std::string frame;
      frame.reserve(raw + 16);
      frame.append(size, r.ptr).append("\r\n").append(piece).append("\r\n");
      piece = std::move(frame);
    }
    pieces_.emplace_back(std::move(piece), raw);
    pump_body();
  }

  void on_source_end(bool complete) {
    if (done_)
      return;
    if (!complete) {
      finish("bad request: the client's body broke off");
      return;
    }
    source_ended_ = true;
    if (chunked_up_)
      pieces_.emplace_back("0\r\n\r\n", 0);
    pump_body();
  }

  void pump_body() {
    if (done_ || !head_written_ || writing_body_ || body_sent_ || answered_early_)
      return;
    if (pieces_.empty()) {
      body_sent_ = source_ended_;  // the answer is being read already
      return;
    }
    writing_body_ = true;
    with_stream([&](auto& s) {
      net::async_write(s, net::buffer(pieces_.front().first),
                       [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         self->guard([&] { self->on_piece_written(ec); });
                       });
    });
  }

  void on_piece_written(beast::error_code ec) {
    writing_body_ = false;
    if (done_)
      return;
    if (ec) {
      // A backend that answered early and closed fails the write before its
      // answer is read: no more body, and the read in flight decides (the
      // answer, or the reset or timeout it meets too).
      answered_early_ = true;
      src_->cancel();
      return;
    }
    const auto raw = pieces_.front().second;
    pieces_.pop_front();
    if (raw > 0)
      src_->taken(raw);
    pump_body();
  }

  // A pooled connection the upstream closed while it sat idle fails on its
  // first use; nothing of the response has been seen, so the request is sent
  // again, once, on a fresh connection.
  void retry(const beast::error_code& ec) {
    spdlog::debug("upstream {}: pooled connection was dead ({}); retrying on a fresh one",
                  url_->key, ec.message());
    reused_ = false;
    conn_->close();
    // Kept, not destroyed, inside the handler of its own operation.
    retired_ = std::move(conn_);
    do_open();
  }

  void do_read_head() {
    phase_ = phase::head;
    parser_.emplace();
    parser_->header_limit(header_limit_bytes);
    if (max_body_ != 0)
      parser_->body_limit(static_cast<std::uint64_t>(max_body_));
    else if (h_.on_data)
      // Streamed: the consumer's flow control bounds memory. Not boost::none,
      // which Beast 1.74 compares against a Content-Length as "over".
      parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    else
      parser_->body_limit(static_cast<std::uint64_t>(default_max_response_bytes));
    if (head_request_)
      parser_->skip(true);
    with_stream([&](auto& s) {
      bhttp::async_read_header(s, conn_->buffer, *parser_,
                               [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                 self->guard([&] { self->on_head(ec); });
                               });
    });
  }

  void on_head(beast::error_code ec) {
    if (done_)
      return;
    if (ec) {
      if (reused_ && ec != beast::error::timeout && !parser_->got_some()) {
        retry(ec);
        return;
      }
      finish(read_error(ec));
      return;
    }
    reused_ = false;  // response bytes seen: never resend from here on
    auto& res = parser_->get();
    const auto status = res.result_int();
    // An interim response (100 Continue, 103 Early Hints) is not the answer.
    if (status >= 100 && status < 200 && status != 101) {
      do_read_head();
      return;
    }
    if (src_ && !body_sent_ && (status >= 300 || !res.keep_alive())) {
      // Refused before the whole body went out: the rest is not sent (the
      // client's connection closes after this answer) and this connection
      // is not reused. A 2xx head that comes early (a backend that streams
      // its answer while it reads) lets the body go on.
      answered_early_ = true;
      src_->cancel();
    }
    head_.status = status;
    head_.headers.reserve(static_cast<std::size_t>(std::distance(res.begin(), res.end())));
    for (const auto& f : res)
      head_.headers.emplace_back(std::string{f.name_string()}, std::string{f.value()});
    if (h_.on_head && !invoke_user([&] { h_.on_head(head_); }))
      return;
    if (parser_->is_done()) {
      complete();
      return;
    }
    do_read_body();
  }

  void do_read_body() {
    phase_ = phase::body;
    auto& chunk = conn_->body_chunk;
    if (!chunk)
      chunk.reset(new char[chunk_bytes]);  // not zeroed: the parser writes before we read
    auto& body = parser_->get().body();
    body.data = chunk.get();
    body.size = chunk_bytes;
    // read_some, not read: a streamed body (SSE) must reach on_data as it
    // arrives, not when the chunk buffer happens to fill.
    with_stream([&](auto& s) {
      bhttp::async_read_some(s, conn_->buffer, *parser_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) {
                               self->guard([&] { self->on_body(ec); });
                             });
    });
  }

  void on_body(beast::error_code ec) {
    if (done_)
      return;
    if (ec == bhttp::error::need_buffer)
      ec = {};
    const auto got = chunk_bytes - parser_->get().body().size;
    if (got > 0 && !deliver({conn_->body_chunk.get(), got}))
      return;
    if (ec) {
      finish(read_error(ec));
      return;
    }
    if (parser_->is_done()) {
      complete();
      return;
    }
    if (h_.hold) {
      // Strong: a held call has no I/O of its own pending to keep it alive.
      // The consumer drops `resume` once it ran, or when the call ends.
      bool held = false;
      if (!invoke_user([&] {
            held = h_.hold([self = shared_from_this()] { self->request_resume(); });
          }))
        return;
      if (held) {
        waiting_ = true;  // resume_reading() reads on
        return;
      }
    }
    do_read_body();
  }

  void resume_reading() {
    if (done_ || !waiting_)
      return;
    waiting_ = false;
    do_read_body();
  }

  bool deliver(std::string_view bytes) {
    if (!h_.on_data) {
      body_.append(bytes.data(), bytes.size());
      return true;
    }
    return invoke_user([&] { h_.on_data(bytes); });
  }

  // A callback that throws is a broken consumer: the call stops there.
  template <class F>
  bool invoke_user(F&& f) {
    try {
      f();
      return true;
    } catch (const std::exception& e) {
      spdlog::error("upstream {}: a response handler threw: {}", url_->key, e.what());
    } catch (...) {
      spdlog::error("upstream {}: a response handler threw", url_->key);
    }
    finish("cancelled");
    return false;
  }

  void complete() {
    auto& res = parser_->get();
    // Bytes after the response mean the upstream broke framing: do not reuse.
    const bool body_out = !src_ || (body_sent_ && !answered_early_);
    const bool reusable =
      res.keep_alive() && !parser_->need_eof() && conn_->buffer.size() == 0 && body_out;
    if (reusable)
      release();
    else if (!body_out)
      conn_->close();  // a body write may still be pending on it
    finish({});
  }

  // Back to the pool before on_done, so a caller that starts its next call
  // from on_done finds it.
  void release() {
    conn_->lowest().expires_never();
    conn_->idle_since = steady::now();
    std::vector<connection_ptr> dropped;
    {
      std::lock_guard<std::mutex> lock{st_->mutex};
      if (st_->open) {
        auto& q = st_->idle[url_->key];
        st_->drop_expired(q, conn_->idle_since, dropped);
        if (q.size() < st_->max_idle_per_host)
          q.push_back(std::move(conn_));
      }
    }
    if (conn_)
      dropped.push_back(std::move(conn_));
    close_all(dropped);
  }

  std::shared_ptr<shared_state> st_;
  const tls_settings& tls_;
  net::any_io_executor ex_;
  upstream_handlers h_;
  std::size_t max_body_;
  steady::time_point deadline_;
  std::atomic<bool> cancel_requested_{false};
  std::mutex start_mutex_;  ///< run_here against on_cancel
  bool here_ = false;        ///< inside run_here

  target_url own_url_;
  std::shared_ptr<const fixed_part> fixed_;  ///< set: the URL and the head's start are its
  const target_url* url_ = &own_url_;        ///< own_url_ or fixed_'s
  std::string setup_error_;
  /// A streamed body's request, written by beast's serializer.
  bhttp::request<bhttp::string_body> req_;
  /// Otherwise the request as it goes out: out_head_, then out_body_, from
  /// two buffers (and written_ bytes of them by the write in progress).
  std::string out_head_;
  std::string out_body_;
  std::size_t written_ = 0;
  bool head_request_ = false;

  phase phase_ = phase::init;
  bool done_ = false;
  // A body that arrives while the call runs (upstream_request::body_stream).
  std::shared_ptr<core::body_source> src_;
  std::optional<bhttp::request_serializer<bhttp::string_body>> serializer_;
  std::deque<std::pair<std::string, std::size_t>> pieces_;  ///< framed, raw size
  bool chunked_up_ = false;
  bool head_written_ = false;
  bool writing_body_ = false;
  bool source_ended_ = false;
  bool body_sent_ = false;
  bool answered_early_ = false;  ///< the answer came before the whole body went out
  bool waiting_ = false;  ///< held back by the consumer between two body reads
  bool reused_ = false;  ///< on a pooled connection and no response byte seen yet
  connection_ptr conn_;
  connection_ptr retired_;
  std::optional<tcp::resolver> resolver_;
  std::optional<net::steady_timer> timer_;
  std::optional<bhttp::response_parser<bhttp::buffer_body>> parser_;
  upstream_head head_;
  std::string body_;
};

} // namespace detail

void call_handle::cancel() noexcept {
  if (auto c = call_.lock())
    c->request_cancel();
}



struct client::impl {
  explicit impl(options o)
    : opts(std::move(o)),
      owned(opts.io == nullptr ? std::make_unique<net::io_context>() : nullptr),
      ioc(opts.io == nullptr ? *owned : *opts.io),
      sweep(ioc) {
    if (owned)
      work.emplace(net::make_work_guard(ioc));
    state->max_idle_per_host = opts.max_idle_per_host;
    state->idle_ttl = opts.idle_ttl;
    init_tls();
  }

  // A broken TLS setup fails the https calls ("tls: …") instead of the
  // process: plain http upstreams keep working and the reason is logged once.
  void init_tls() {
    tls.context = &tls_context;
    tls.verify = opts.verify_tls;
    beast::error_code ec;
    tls_context.set_verify_mode(opts.verify_tls ? ssl::verify_peer : ssl::verify_none, ec);
    if (!ec) {
      if (opts.ca_file.empty())
        tls_context.set_default_verify_paths(ec);
      else
        tls_context.load_verify_file(opts.ca_file, ec);
    }
    if (ec) {
      tls.error = "cannot load the trusted certificates: " + ec.message();
      spdlog::error("upstream client: {}", tls.error);
      return;
    }
    auto* native = tls_context.native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    // OpenSSL 3 reports a close without close_notify as a protocol error,
    // which Asio 1.74 does not map to EOF; as a plain EOF, Beast's framing
    // decides (a body delimited by the close ends there, a short one is an error).
    SSL_CTX_set_options(native, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
  }

  void schedule_sweep() {
    const auto period = std::max<steady::duration>(std::chrono::seconds{1}, opts.idle_ttl / 2);
    sweep.expires_after(period);
    sweep.async_wait([this](beast::error_code ec) {
      if (ec)
        return;
      std::vector<detail::connection_ptr> expired;
      {
        std::lock_guard<std::mutex> lock{state->mutex};
        const auto now = steady::now();
        for (auto it = state->idle.begin(); it != state->idle.end();) {
          state->drop_expired(it->second, now, expired);
          it = it->second.empty() ? state->idle.erase(it) : std::next(it);
        }
      }
      if (!expired.empty())
        spdlog::debug("upstream client: closed {} idle connections", expired.size());
      detail::close_all(expired);
      schedule_sweep();
    });
  }

  // Declaration order is destruction order in reverse: the I/O objects go
  // before the io_context, which goes before the TLS context and the state.
  options opts;
  ssl::context tls_context{ssl::context::tls_client};
  detail::tls_settings tls;
  std::shared_ptr<detail::shared_state> state = std::make_shared<detail::shared_state>();
  std::unique_ptr<net::io_context> owned;  ///< null when running on options::io
  net::io_context& ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  net::steady_timer sweep;
  std::vector<std::thread> threads;
};

client::client(options o) : impl_(std::make_unique<impl>(std::move(o))) {
  const auto n = impl_->owned ? std::max<std::size_t>(1, impl_->opts.threads) : 0;
  impl_->schedule_sweep();
  impl_->threads.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    impl_->threads.emplace_back([this] {
      for (;;) {
        try {
          impl_->ioc.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("upstream client: an I/O handler threw: {}", e.what());
        }
      }
    });
  }
}

client::~client() {
  auto& s = *impl_;
  cancel_all();
  if (!s.owned)
    return;  // the owner's io_context has stopped (see the header)
  s.work.reset();
  s.ioc.stop();
  for (auto& t : s.threads)
    if (t.joinable())
      t.join();
  cancel_all();  // what did not finish in time, now that no thread races
}

void client::cancel_all() noexcept {
  auto& s = *impl_;
  try {
    std::vector<detail::connection_ptr> pooled;
    const bool running = !s.ioc.stopped();
    {
      std::lock_guard<std::mutex> lock{s.state->mutex};
      s.state->open = false;
      if (running)
        for (auto& [ptr, weak] : s.state->live)
          if (auto c = weak.lock())
            net::post(c->executor(), [c] { c->on_cancel(); });
      for (auto& [key, q] : s.state->idle)
        for (auto& c : q)
          pooled.push_back(std::move(c));
      s.state->idle.clear();
    }
    detail::close_all(pooled);
    if (running) {
      // Bounded: a callback that blocks must not hang the shutdown forever.
      std::unique_lock<std::mutex> lock{s.state->mutex};
      s.state->all_done.wait_for(lock, std::chrono::seconds{5},
                                 [&] { return s.state->live.empty(); });
      return;
    }
    // No thread runs the io_context: the calls are told here.
    std::vector<std::shared_ptr<detail::call>> left;
    {
      std::lock_guard<std::mutex> lock{s.state->mutex};
      for (auto& [ptr, weak] : s.state->live)
        if (auto c = weak.lock())
          left.push_back(std::move(c));
    }
    for (auto& c : left)
      c->on_cancel();
  } catch (const std::exception& e) {
    spdlog::error("upstream client: shutdown: {}", e.what());
  }
}

std::shared_ptr<call_handle> client::start(upstream_request req, upstream_handlers h) {
  auto& s = *impl_;
  std::shared_ptr<detail::call> c;
  try {
    // A strand only when several threads run the io_context (see
    // options::io_single_threaded).
    const bool one_thread = s.owned ? s.opts.threads <= 1 : s.opts.io_single_threaded;
    net::any_io_executor ex = one_thread ? net::any_io_executor{s.ioc.get_executor()}
                                         : net::any_io_executor{net::make_strand(s.ioc)};
    c = std::make_shared<detail::call>(s.state, s.tls, std::move(ex), std::move(req),
                                       std::move(h));
  } catch (const std::exception& e) {
    spdlog::error("upstream client: cannot start a call: {}", e.what());
    if (h.on_done)  // still ours when the allocation failed before the move
      h.on_done("connect: " + std::string{e.what()}, {}, {});
    return std::shared_ptr<call_handle>(new call_handle({}));
  }

  bool posted = false;
  bool here = false;  ///< on a pooled connection: written from this thread
  std::vector<detail::connection_ptr> expired;
  try {
    std::lock_guard<std::mutex> lock{s.state->mutex};
    if (s.state->open) {
      if (c->usable() && !c->streams_body())
        if (auto pooled = s.state->take_idle(c->key(), steady::now(), expired)) {
          c->adopt(std::move(pooled));
          // Not once the I/O threads stopped (shutdown): a request written
          // then would reach the upstream with nobody to read its answer.
          here = c->may_run_here() && !s.ioc.stopped();
        }
      s.state->live.emplace(c.get(), c);
      // Posted under the lock: the destructor cannot stop the io_context in between.
      if (!here)
        net::post(c->executor(), [c] { c->run(); });
      posted = true;
    }
  } catch (const std::exception& e) {
    spdlog::error("upstream client: cannot start a call: {}", e.what());
  }
  detail::close_all(expired);
  if (!posted)
    c->refuse();
  else if (here)
    c->run_here();  // the caller holds the client, and the client its io_context
  return std::shared_ptr<call_handle>(new call_handle(c));
}

fixed_request client::fix(std::string_view method, std::string_view url,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          std::string& error) {
  error.clear();
  auto f = std::make_shared<detail::fixed_part>();
  if (auto why = parse_url(url, f->url); !why.empty()) {
    error = "bad url: " + why;
    return {};
  }
  if (auto why = check_request(method, headers); !why.empty()) {
    error = std::move(why);
    return {};
  }
  f->head_request = method == "HEAD";
  f->body_expected = expects_body(method);
  render_start(f->head, method, f->url);
  render_fields(f->head, headers);
  return f;
}

std::size_t client::idle_connections() const {
  std::lock_guard<std::mutex> lock{impl_->state->mutex};
  std::size_t n = 0;
  for (const auto& [key, q] : impl_->state->idle)
    n += q.size();
  return n;
}

} // namespace tollgate::http::client
