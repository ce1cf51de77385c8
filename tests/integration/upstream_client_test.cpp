// The upstream client against a scripted HTTP server on 127.0.0.1: each test
// writes exactly the bytes (and the pauses) the case needs.

#include "http/client/client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace uc = tollgate::http::client;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr auto bound = 5s;  // no wait in these tests may hang a failing run

struct seen_request {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  ///< lower-case names
  std::string body;

  std::string header(const std::string& lower_name) const {
    for (const auto& [n, v] : headers)
      if (n == lower_name)
        return v;
    return {};
  }
  std::size_t count(const std::string& lower_name) const {
    std::size_t n = 0;
    for (const auto& h : headers)
      n += h.first == lower_name ? 1 : 0;
    return n;
  }
};

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return s;
}

/// Reads one request with a Content-Length body; false at EOF or on error.
bool read_request(tcp::socket& s, std::string& buf, seen_request& out) {
  boost::system::error_code ec;
  const auto n = net::read_until(s, net::dynamic_buffer(buf), "\r\n\r\n", ec);
  if (ec)
    return false;
  const std::string head = buf.substr(0, n);
  buf.erase(0, n);
  out = {};
  auto line_end = head.find("\r\n");
  const auto line = head.substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = line.find(' ', sp1 + 1);
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::size_t content_length = 0;
  for (auto pos = line_end + 2; pos < head.size();) {
    const auto end = head.find("\r\n", pos);
    if (end == pos)
      break;
    const auto field = head.substr(pos, end - pos);
    const auto colon = field.find(':');
    auto value = field.substr(colon + 1);
    while (!value.empty() && value.front() == ' ')
      value.erase(0, 1);
    out.headers.emplace_back(lower(field.substr(0, colon)), value);
    if (out.headers.back().first == "content-length")
      content_length = std::stoul(value);
    pos = end + 2;
  }
  if (buf.size() < content_length)
    net::read(s, net::dynamic_buffer(buf), net::transfer_exactly(content_length - buf.size()), ec);
  if (ec)
    return false;
  out.body = buf.substr(0, content_length);
  buf.erase(0, content_length);
  return true;
}

void send(tcp::socket& s, const std::string& bytes) {
  boost::system::error_code ec;
  net::write(s, net::buffer(bytes), ec);
}

/// Blocks until the peer closes (or the server shuts the socket down).
void wait_for_eof(tcp::socket& s) {
  char sink[512];
  boost::system::error_code ec;
  while (!ec)
    s.read_some(net::buffer(sink), ec);
}

std::string response(const std::string& body, const std::string& extra_headers = {}) {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"
         + extra_headers + "\r\n" + body;
}

/// A blocking HTTP server on 127.0.0.1:0; each connection runs `session` on
/// its own thread with the connection's index (0 for the first).
class test_server {
public:
  using session_fn = std::function<void(tcp::socket&, int index)>;

  /// `receive_buffer`: SO_RCVBUF of the accepted connections (0: the default).
  explicit test_server(session_fn fn, int receive_buffer = 0)
    : fn_(std::move(fn)), acceptor_(ioc_, {net::ip::make_address("127.0.0.1"), 0}) {
    if (receive_buffer > 0)
      acceptor_.set_option(net::socket_base::receive_buffer_size(receive_buffer));
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { accept_loop(); });
  }

  ~test_server() {
    stop_ = true;
    {
      // Wakes the blocking accept.
      boost::system::error_code ec;
      tcp::socket s{ioc_};
      s.connect({net::ip::make_address("127.0.0.1"), port_}, ec);
    }
    thread_.join();
    {
      // Unblocks sessions still reading; the sockets close when they are joined.
      std::lock_guard<std::mutex> lock{mutex_};
      for (auto& s : sockets_)
        ::shutdown(s->native_handle(), SHUT_RDWR);
    }
    for (auto& t : sessions_)
      t.join();
  }

  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

private:
  void accept_loop() {
    for (;;) {
      auto s = std::make_shared<tcp::socket>(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(*s, ec);
      if (stop_ || ec)
        return;
      const int index = accepted_++;
      {
        std::lock_guard<std::mutex> lock{mutex_};
        sockets_.push_back(s);
      }
      sessions_.emplace_back([this, s, index] {
        fn_(*s, index);
        // Shut down, not closed: the destructor may still touch the descriptor.
        ::shutdown(s->native_handle(), SHUT_RDWR);
      });
    }
  }

  session_fn fn_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::thread> sessions_;
};

/// Answers every request on the connection with 200 "echo:<method>:<body>".
void echo_session(tcp::socket& s, std::mutex* m = nullptr, std::vector<seen_request>* seen = nullptr) {
  std::string buf;
  seen_request r;
  while (read_request(s, buf, r)) {
    if (m && seen) {
      std::lock_guard<std::mutex> lock{*m};
      seen->push_back(r);
    }
    send(s, response("echo:" + r.method + ":" + r.body,
                     "X-Upstream: yes\r\nContent-Type: text/plain\r\n"));
  }
}

/// What one call reported, collected from the I/O thread.
struct probe {
  std::promise<void> done;
  std::future<void> done_future = done.get_future();
  std::atomic<int> done_calls{0};
  std::atomic<int> head_calls{0};
  std::atomic<bool> head_before_data{true};
  std::promise<void> first_data;
  std::future<void> first_data_future = first_data.get_future();
  std::mutex m;
  std::string error;
  uc::upstream_head head;
  std::string body;
  std::vector<std::string> pieces;

  bool finished() { return done_future.wait_for(bound) == std::future_status::ready; }
};

uc::upstream_handlers handlers(const std::shared_ptr<probe>& p, bool streaming) {
  uc::upstream_handlers h;
  h.on_head = [p](const uc::upstream_head&) { p->head_calls++; };
  if (streaming) {
    h.on_data = [p](std::string_view d) {
      if (p->head_calls.load() == 0)
        p->head_before_data = false;
      std::lock_guard<std::mutex> lock{p->m};
      p->pieces.emplace_back(d);
      if (p->pieces.size() == 1)
        p->first_data.set_value();
    };
  }
  h.on_done = [p](std::string e, uc::upstream_head hd, std::string b) {
    {
      std::lock_guard<std::mutex> lock{p->m};
      p->error = std::move(e);
      p->head = std::move(hd);
      p->body = std::move(b);
    }
    if (p->done_calls++ == 0)
      p->done.set_value();
  };
  return h;
}

uc::upstream_request get_request(const std::string& url) {
  uc::upstream_request r;
  r.method = "GET";
  r.url = url;
  return r;
}

} // namespace

TEST_CASE("upstream client: buffered GET and POST", "[http][client]") {
  std::mutex m;
  std::vector<seen_request> seen;
  test_server server{[&](tcp::socket& s, int) { echo_session(s, &m, &seen); }};
  uc::client c{{}};

  SECTION("POST with a body, headers both ways") {
    uc::upstream_request req;
    req.url = server.url("/v1/echo?x=1");
    req.headers = {{"Authorization", "Bearer sk-test"}, {"Host", "evil.example"},
                   {"Content-Type", "text/plain"}, {"X-Padded", " \t padded value \t "}};
    req.body = "ping";
    auto p = std::make_shared<probe>();
    auto handle = c.start(req, handlers(p, false));
    REQUIRE(p->finished());
    CHECK(p->error.empty());
    CHECK(p->head.status == 200);
    CHECK(p->head.header("x-upstream") == "yes");
    CHECK(p->head.header("CONTENT-TYPE") == "text/plain");
    CHECK(p->head.header("absent").empty());
    CHECK(p->body == "echo:POST:ping");
    CHECK(p->head_calls == 1);

    std::lock_guard<std::mutex> lock{m};
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].method == "POST");
    CHECK(seen[0].target == "/v1/echo?x=1");
    CHECK(seen[0].count("host") == 1);
    CHECK(seen[0].header("host") == "127.0.0.1:" + std::to_string(server.port()));
    CHECK(seen[0].header("authorization") == "Bearer sk-test");
    CHECK(seen[0].header("content-length") == "4");
    CHECK(seen[0].header("x-padded") == "padded value");  // trimmed, as beast stored it
    CHECK(seen[0].body == "ping");

    // Cancelling a finished call changes nothing.
    handle->cancel();
    handle->cancel();
  }

  SECTION("GET with an empty path") {
    auto p = std::make_shared<probe>();
    c.start(get_request("http://127.0.0.1:" + std::to_string(server.port())), handlers(p, false));
    REQUIRE(p->finished());
    CHECK(p->error.empty());
    CHECK(p->body == "echo:GET:");
    std::lock_guard<std::mutex> lock{m};
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].target == "/");
    CHECK(seen[0].header("content-length").empty());
  }
}

TEST_CASE("upstream client: a fixed request sends what the same request in full sends",
          "[http][client]") {
  std::mutex m;
  std::vector<seen_request> seen;
  test_server server{[&](tcp::socket& s, int) { echo_session(s, &m, &seen); }};
  uc::client c{{}};
  const std::vector<std::pair<std::string, std::string>> fixed_fields{
    {"Content-Type", "application/json"}, {"Authorization", "Bearer sk-test"},
    {"Host", "evil.example"}, {"X-Padded", " \t padded value \t "}};
  for (const std::string method : {"POST", "GET"}) {
    for (const std::string body : {"{\"a\":1}", ""}) {
      CAPTURE(method, body);
      {
        std::lock_guard<std::mutex> lock{m};
        seen.clear();
      }
      // In full: URL and every field on the request.
      uc::upstream_request full;
      full.method = method;
      full.url = server.url("/v1/echo?x=1");
      full.headers = fixed_fields;
      full.headers.emplace_back("X-Request-Id", "r1");
      full.body = body;
      auto p0 = std::make_shared<probe>();
      c.start(full, handlers(p0, false));
      REQUIRE(p0->finished());
      CHECK(p0->error.empty());

      // Fixed: the method, URL and first fields once; twice, so that the
      // second goes on the pooled connection and the shared part is reused.
      std::string error = "stale";
      const auto fixed = uc::client::fix(method, server.url("/v1/echo?x=1"), fixed_fields, error);
      REQUIRE(fixed);
      CHECK(error.empty());
      for (const std::string id : {"r1", "r2"}) {
        uc::upstream_request req;
        req.method = "DELETE";  // not read: the fixed part's method goes
        req.url = "ftp://ignored";
        req.fixed = fixed;
        req.headers = {{"X-Request-Id", id}};
        req.body = body;
        auto p = std::make_shared<probe>();
        c.start(std::move(req), handlers(p, false));
        REQUIRE(p->finished());
        CHECK(p->error.empty());
        CHECK(p->head.status == 200);
        CHECK(p->body == p0->body);
      }
      std::lock_guard<std::mutex> lock{m};
      REQUIRE(seen.size() == 3);
      for (std::size_t i = 1; i < 3; ++i) {
        CHECK(seen[i].method == seen[0].method);
        CHECK(seen[i].target == seen[0].target);
        CHECK(seen[i].body == seen[0].body);
        auto fields = seen[i].headers;
        if (i == 2) {
          const auto id = std::find_if(fields.begin(), fields.end(),
                                       [](const auto& f) { return f.first == "x-request-id"; });
          REQUIRE(id != fields.end());
          CHECK(id->second == "r2");
          id->second = "r1";
        }
        CHECK(fields == seen[0].headers);  // the same fields, in the same order
      }
      CHECK(seen[0].header("x-padded") == "padded value");
      CHECK(seen[0].count("host") == 1);
      CHECK(seen[0].header("content-length") == (method == "POST" || !body.empty()
                                                   ? std::to_string(body.size())
                                                   : std::string{}));
    }
  }
  CHECK(c.idle_connections() == 1);  // every call above went on one connection
}

TEST_CASE("upstream client: unusable fixed requests", "[http][client]") {
  std::string error;
  CHECK_FALSE(uc::client::fix("POST", "ftp://127.0.0.1/", {}, error));
  CHECK(error.rfind("bad url: ", 0) == 0);
  CHECK_FALSE(uc::client::fix("POST", "http://127.0.0.1:1/", {{"X-Key", "a\r\nX-Evil: 1"}}, error));
  CHECK(error == "bad request: invalid value for header X-Key");
  CHECK_FALSE(uc::client::fix("PO ST", "http://127.0.0.1:1/", {}, error));
  CHECK(error == "bad request: invalid method");
  const auto fixed = uc::client::fix("POST", "http://127.0.0.1:1/", {}, error);
  REQUIRE(fixed);
  CHECK(error.empty());

  // The call's own fields are still checked, and a streamed body is refused.
  uc::client c{{}};
  const auto check = [&](uc::upstream_request req, const std::string& expected) {
    auto p = std::make_shared<probe>();
    c.start(std::move(req), handlers(p, false));
    REQUIRE(p->finished());
    CHECK(p->error == expected);
  };
  uc::upstream_request injected;
  injected.fixed = fixed;
  injected.headers = {{"X-Request-Id", "a\nX-Evil: 1"}};
  check(injected, "bad request: invalid value for header X-Request-Id");
  struct never_source final : tollgate::core::body_source {
    void consume(std::function<void(std::string)>, std::function<void(bool)>) override {}
    void taken(std::size_t) noexcept override {}
    void cancel() noexcept override {}
  };
  uc::upstream_request streamed;
  streamed.fixed = fixed;
  streamed.body_stream = std::make_shared<never_source>();
  check(streamed, "bad request: a fixed request cannot stream its body");
}

TEST_CASE("upstream client: a chunked body reaches on_data as it arrives", "[http][client]") {
  auto p = std::make_shared<probe>();
  std::atomic<bool> streamed{false};
  test_server server{[&](tcp::socket& s, int) {
    std::string buf;
    seen_request r;
    if (!read_request(s, buf, r))
      return;
    send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    // The rest is only sent once the client has delivered the first piece:
    // a client that buffered the body would leave `streamed` false.
    streamed = p->first_data_future.wait_for(bound) == std::future_status::ready;
    send(s, "6\r\n world\r\n0\r\n\r\n");
    wait_for_eof(s);
  }};
  uc::client c{{}};
  c.start(get_request(server.url("/stream")), handlers(p, true));
  REQUIRE(p->finished());
  CHECK(streamed);
  CHECK(p->error.empty());
  CHECK(p->head.status == 200);
  CHECK(p->body.empty());  // streaming mode: the body went to on_data
  CHECK(p->head_before_data);
  std::lock_guard<std::mutex> lock{p->m};
  REQUIRE(p->pieces.size() >= 2);
  CHECK(std::string{"hello"}.rfind(p->pieces[0], 0) == 0);  // the first piece came alone
  std::string all;
  for (const auto& piece : p->pieces)
    all += piece;
  CHECK(all == "hello world");
}

TEST_CASE("upstream client: keep-alive reuses one connection", "[http][client]") {
  test_server server{[](tcp::socket& s, int) { echo_session(s); }};
  uc::client c{{}};
  for (int i = 0; i < 2; ++i) {
    auto p = std::make_shared<probe>();
    c.start(get_request(server.url("/again")), handlers(p, false));
    REQUIRE(p->finished());
    CHECK(p->error.empty());
    CHECK(p->body == "echo:GET:");
  }
  CHECK(server.accepted() == 1);
  CHECK(c.idle_connections() == 1);
}

TEST_CASE("upstream client: a pooled connection closed by the server is retried once",
          "[http][client]") {
  std::promise<void> closed;
  auto closed_future = closed.get_future();
  test_server server{[&](tcp::socket& s, int index) {
    if (index > 0) {
      echo_session(s);
      return;
    }
    // The first connection answers with keep-alive, then goes away while
    // the client holds it in its pool (an upstream's idle timeout).
    std::string buf;
    seen_request r;
    if (!read_request(s, buf, r))
      return;
    send(s, response("first"));
    ::shutdown(s.native_handle(), SHUT_RDWR);
    closed.set_value();
  }};
  uc::client c{{}};

  auto first = std::make_shared<probe>();
  c.start(get_request(server.url("/a")), handlers(first, false));
  REQUIRE(first->finished());
  CHECK(first->body == "first");
  CHECK(c.idle_connections() == 1);
  REQUIRE(closed_future.wait_for(bound) == std::future_status::ready);

  auto second = std::make_shared<probe>();
  uc::upstream_request req;
  req.url = server.url("/b");
  req.body = "again";
  c.start(req, handlers(second, false));
  REQUIRE(second->finished());
  CHECK(second->error.empty());
  CHECK(second->body == "echo:POST:again");
  CHECK(server.accepted() == 2);
}

TEST_CASE("upstream client: a pooled call whose body the socket cannot take at once is "
          "written whole", "[http][client]") {
  // On a pooled connection the first write happens on the caller's thread
  // without blocking; what the socket does not take goes on asynchronously.
  // The server reads nothing of the second request until start() returned,
  // and its receive buffer is 64 KiB, so 8 MiB cannot all fit into the
  // socket buffers by then (Linux caps a send buffer at tcp_wmem, 4 MiB by
  // default).
  std::promise<void> started;
  auto started_future = started.get_future();
  test_server server{[&](tcp::socket& s, int) {
    std::string buf;
    seen_request r;
    if (!read_request(s, buf, r))
      return;
    send(s, response("first"));
    if (started_future.wait_for(bound) != std::future_status::ready)
      return;
    if (!read_request(s, buf, r))
      return;
    std::size_t sum = 0;
    for (const char c : r.body)
      sum = sum * 31 + static_cast<unsigned char>(c);
    send(s, response(std::to_string(r.body.size()) + ":" + std::to_string(sum)));
  }, 64 * 1024};
  uc::client c{{}};
  auto first = std::make_shared<probe>();
  c.start(get_request(server.url("/a")), handlers(first, false));
  REQUIRE(first->finished());
  REQUIRE(c.idle_connections() == 1);

  uc::upstream_request req;
  req.url = server.url("/big");
  req.body.resize(8u << 20);
  std::size_t sum = 0;
  for (std::size_t i = 0; i < req.body.size(); ++i) {
    req.body[i] = static_cast<char>('a' + i % 23);
    sum = sum * 31 + static_cast<unsigned char>(req.body[i]);
  }
  auto second = std::make_shared<probe>();
  const auto expected = std::to_string(req.body.size()) + ":" + std::to_string(sum);
  c.start(std::move(req), handlers(second, false));
  started.set_value();
  REQUIRE(second->finished());
  CHECK(second->error.empty());
  CHECK(second->body == expected);
  CHECK(server.accepted() == 1);
}

TEST_CASE("upstream client: an upstream that never answers times out", "[http][client]") {
  test_server server{[](tcp::socket& s, int) {
    std::string buf;
    seen_request r;
    if (read_request(s, buf, r))
      wait_for_eof(s);
  }};
  uc::client c{{}};
  auto req = get_request(server.url("/slow"));
  req.timeout = 200ms;  // the behaviour under test, not a wait
  auto p = std::make_shared<probe>();
  const auto started = std::chrono::steady_clock::now();
  c.start(req, handlers(p, false));
  REQUIRE(p->finished());
  CHECK(p->error == "timeout");
  CHECK(std::chrono::steady_clock::now() - started >= 150ms);
  CHECK(c.idle_connections() == 0);
}

TEST_CASE("upstream client: cancel mid-body", "[http][client]") {
  test_server server{[](tcp::socket& s, int) {
    std::string buf;
    seen_request r;
    if (!read_request(s, buf, r))
      return;
    send(s, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789");
    wait_for_eof(s);
  }};
  auto p = std::make_shared<probe>();
  {
    uc::client c{{}};
    auto handle = c.start(get_request(server.url("/big")), handlers(p, true));
    REQUIRE(p->first_data_future.wait_for(bound) == std::future_status::ready);
    handle->cancel();
    handle->cancel();  // idempotent
    REQUIRE(p->finished());
    CHECK(p->error == "cancelled");
    CHECK(p->head.status == 200);
    CHECK(c.idle_connections() == 0);
  }
  // The client is gone: on_done was still called exactly once.
  CHECK(p->done_calls == 1);
}

TEST_CASE("upstream client: a response above max_response_bytes fails", "[http][client]") {
  const std::string piece(600, 'x');
  std::string reply;
  SECTION("announced by Content-Length") {
    reply = response(std::string(4096, 'x'));
  }
  SECTION("chunked") {
    reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i)
      reply += "258\r\n" + piece + "\r\n";  // 0x258 = 600
    reply += "0\r\n\r\n";
  }
  test_server server{[&](tcp::socket& s, int) {
    std::string buf;
    seen_request r;
    if (!read_request(s, buf, r))
      return;
    send(s, reply);
    wait_for_eof(s);
  }};
  uc::client c{{}};
  auto req = get_request(server.url("/huge"));
  req.max_response_bytes = 1024;
  auto p = std::make_shared<probe>();
  c.start(req, handlers(p, false));
  REQUIRE(p->finished());
  CHECK(p->error == "response too large");
  CHECK(c.idle_connections() == 0);
}

TEST_CASE("upstream client: connection refused", "[http][client]") {
  std::uint16_t port = 0;
  {
    net::io_context ioc;
    tcp::acceptor a{ioc, {net::ip::make_address("127.0.0.1"), 0}};
    port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  uc::client c{{}};
  auto p = std::make_shared<probe>();
  c.start(get_request("http://127.0.0.1:" + std::to_string(port) + "/"), handlers(p, false));
  REQUIRE(p->finished());
  CHECK(p->error.rfind("connect", 0) == 0);
  CHECK(p->head.status == 0);
}

TEST_CASE("upstream client: unusable URLs and headers fail without I/O", "[http][client]") {
  uc::client c{{}};
  const auto check = [&](uc::upstream_request req, const std::string& prefix) {
    auto p = std::make_shared<probe>();
    c.start(std::move(req), handlers(p, false));
    REQUIRE(p->finished());
    CHECK(p->error.rfind(prefix, 0) == 0);
  };
  check(get_request("ftp://127.0.0.1/"), "bad url: ");
  check(get_request("http://127.0.0.1:99999/"), "bad url: ");
  check(get_request("http://user:secret@127.0.0.1/"), "bad url: ");
  check(get_request("127.0.0.1/no-scheme"), "bad url: ");
  auto injected = get_request("http://127.0.0.1:1/");
  injected.headers = {{"X-Key", "a\r\nX-Evil: 1"}};
  check(injected, "bad request: ");
  // The fields' 16-bit sizes: refused before any I/O, as beast refused them.
  auto huge = get_request("http://127.0.0.1:1/");
  huge.headers = {{"X-Big", std::string(70'000, 'v')}};
  check(huge, "bad request: field value too large");
}

TEST_CASE("upstream client: destroying the client cancels calls in flight", "[http][client]") {
  std::promise<void> arrived;
  auto arrived_future = arrived.get_future();
  test_server server{[&](tcp::socket& s, int) {
    std::string buf;
    seen_request r;
    if (!read_request(s, buf, r))
      return;
    arrived.set_value();
    wait_for_eof(s);
  }};
  auto p = std::make_shared<probe>();
  {
    uc::client c{{}};
    c.start(get_request(server.url("/pending")), handlers(p, false));
    // The call is mid-exchange (waiting for the head) when the client goes.
    REQUIRE(arrived_future.wait_for(bound) == std::future_status::ready);
  }
  REQUIRE(p->done_future.wait_for(0s) == std::future_status::ready);
  CHECK(p->error == "cancelled");
  CHECK(p->done_calls == 1);
}

TEST_CASE("upstream client: a call started after cancel_all is refused unsent", "[http][client]") {
  std::atomic<int> requests{0};
  test_server server{[&](tcp::socket&, int) { ++requests; }};
  uc::client c{{}};
  c.cancel_all();
  auto p = std::make_shared<probe>();
  c.start(get_request(server.url("/late")), handlers(p, false));
  REQUIRE(p->done_future.wait_for(bound) == std::future_status::ready);
  CHECK(p->error == "stopped");  // not "cancelled": nothing went out
  CHECK(p->done_calls == 1);
  CHECK(requests == 0);
}
