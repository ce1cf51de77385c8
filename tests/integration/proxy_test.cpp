// Generic proxy routes ([[routes]]) against the mock upstream's /echo and
// chat routes: what reaches the backend, what comes back, per-method limits.

#include "app/config_loader.hpp"
#include "http/stream_relay.hpp"

#include "support/fixture.hpp"
#include "support/http_client.hpp"
#include "support/mock.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>

using namespace tollgate;
using namespace std::chrono_literals;
using test::create_user;
using test::instance;
using test::json;
using test::str;

namespace {

core::proxy_route_config route(const std::string& prefix, const std::string& upstream) {
  core::proxy_route_config r;
  r.prefix = prefix;
  r.upstream = upstream;
  return r;
}

/// The mock upstream behind the proxy route `prefix` (stripped), a gateway
/// in front of it (`more` adjusts its config) and a user, alice.
struct behind_proxy {
  test::mock_upstream up;
  test::temp_dir dir;
  instance g;
  test::user a;

  explicit behind_proxy(const std::string& prefix,
                        const std::function<void(core::config&)>& more = {})
    : g{dir.str("data"), core::system_clock::instance(),
        [&](core::config& c) {
          auto r = route(prefix, up.base());
          r.strip_prefix = true;
          c.routes = {r};
          if (more)
            more(c);
        }},
      a{create_user(g, "alice")} {}
};

/// The head of an upload: POST `target` with `key` and its framing field
/// ("Content-Length: N" or "Transfer-Encoding: chunked").
std::string upload_head(const std::string& target, const std::string& key,
                        const std::string& framing) {
  return "POST " + target + " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + key + "\r\n"
         + framing + "\r\n\r\n";
}

} // namespace

TEST_CASE("a proxy route forwards the request without the client's key and relays the answer",
          "[integration][proxy]") {
  test::mock_upstream up;
  test::temp_dir dir;
  ::setenv("TOLLGATE_TEST_BACKEND_KEY", "backend-secret-42", 1);
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto r = route("/echo", up.base());
               r.credential_header = "X-Backend-Key";
               r.credential_env = "TOLLGATE_TEST_BACKEND_KEY";
               c.routes = {r};
             }};
  auto a = create_user(g, "alice");
  auto r = test::request(g.port(), "PATCH", "/echo/scans/7?verbose=1&x=%20y",
                         "Authorization: Bearer " + a.key
                           + "\r\nX-Custom: kept\r\nX-Backend-Key: forged\r\n"
                             "Content-Type: application/json\r\n",
                         R"({"name":"n"})");
  REQUIRE(r.status == 200);
  CHECK(!r.header("x-ratelimit-limit").empty());  // the gateway's headers are added
  CHECK(!r.header("x-request-id").empty());
  auto d = json(r);
  CHECK(str(d["method"]) == "PATCH");
  CHECK(str(d["target"]) == "/echo/scans/7?verbose=1&x=%20y");
  CHECK(str(d["body"]) == R"({"name":"n"})");
  const auto& h = d["headers"];
  CHECK(!h.HasMember("authorization"));  // the client's key stops at the gateway
  CHECK(str(h["x-custom"]) == "kept");
  CHECK(str(h["x-backend-key"]) == "backend-secret-42");  // not the forged one
  CHECK(str(h["x-forwarded-for"]) == "127.0.0.1");
  CHECK(str(h["x-request-id"]) == r.header("x-request-id"));
  CHECK(str(h["content-type"]) == "application/json");

  // X-API-Key is stripped too; the backend's status comes back as it was.
  r = test::request(g.port(), "GET", "/echo", "X-API-Key: " + a.key + "\r\nX-Mock-Status: 418\r\n");
  CHECK(r.status == 418);
  CHECK(r.body.find("forced by X-Mock-Status") != std::string::npos);
  // Without a key nothing is forwarded.
  CHECK(test::request(g.port(), "GET", "/echo/x").status == 401);
}

TEST_CASE("proxy routes: per-method limits, a streamed answer, a dead backend",
          "[integration][proxy]") {
  test::mock_upstream up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto chat = route("/backend", up.base());
               chat.strip_prefix = true;
               core::route_limit_config post;
               post.method = "POST";
               post.path = "/backend/{*rest}";
               post.limit = 2;
               c.limits.routes.push_back(post);
               c.routes = {chat, route("/dead", "http://127.0.0.1:1")};
             }};
  auto a = create_user(g, "alice");
  const std::string auth = "Authorization: Bearer " + a.key + "\r\n";
  const std::string sse =
    R"({"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]})";
  auto r = test::request(g.port(), "POST", "/backend/v1/chat/completions", auth, sse);
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type") == "text/event-stream");
  CHECK(r.body.find("data: [DONE]") != std::string::npos);
  CHECK(r.header("x-ratelimit-limit") == "2");
  CHECK(r.header("x-ratelimit-remaining") == "1");
  CHECK(test::request(g.port(), "POST", "/backend/v1/chat/completions", auth, sse).status == 200);
  r = test::request(g.port(), "POST", "/backend/v1/chat/completions", auth, sse);
  CHECK(r.status == 429);
  CHECK(std::stoi(r.header("retry-after")) >= 1);
  // GET has no such limit.
  CHECK(test::request(g.port(), "GET", "/backend/v1/models", auth).status == 200);

  r = test::request(g.port(), "GET", "/dead/x", auth);
  CHECK(r.status == 502);
  CHECK(str(json(r)["detail"]).find("the backend did not answer") != std::string::npos);
}

TEST_CASE("the example configs put their APIs behind proxy routes", "[config][proxy]") {
  for (const char* file : {"scans-api.toml", "public-api.toml"}) {
    INFO(file);
    const auto cfg = app::load_config(std::string{TOLLGATE_SOURCE_DIR} + "/conf/examples/" + file);
    REQUIRE(cfg.routes.size() == 1);
    CHECK(cfg.routes[0].upstream.rfind("http://127.0.0.1:", 0) == 0);
  }
  const auto tt = app::load_config(std::string{TOLLGATE_SOURCE_DIR}
                                   + "/conf/examples/token-tracking.toml");
  REQUIRE(tt.llm.providers.size() == 1);
  const auto& p = tt.llm.providers[0];
  // The token-tracking page's global limit.
  CHECK(p.tokens_per_minute == 20'000);
  CHECK(p.burst_tokens == 4'000);
  CHECK(p.queue_size == 50);
  CHECK(p.queue_timeout == std::chrono::minutes{2});
  CHECK(tt.auth.allow_anonymous);
  CHECK(tt.limits.tokens_per_day == 100'000);
  CHECK(tt.limits.tokens_per_month == 2'000'000);
  CHECK(tt.limits.requests_per_day == 1'000);
}

TEST_CASE("a backend answer that breaks off reaches the client as cut, not complete",
          "[integration][proxy]") {
  behind_proxy p{"/backend"};
  auto& g = p.g;
  auto& a = p.a;
  test::connection c{g.port()};
  c.send(test::make_request(
    "POST", "/backend/v1/chat/completions",
    "Authorization: Bearer " + a.key + "\r\nX-Mock-Break-After: 2\r\nX-Mock-Chunks: 10\r\n",
    R"({"model":"m","stream":true,"messages":[]})"));
  std::string seen;
  // The head and two chunks come, then the connection closes without the
  // chunked body's last chunk.
  CHECK(c.closed_by_peer(&seen));
  CHECK(seen.find("HTTP/1.1 200") == 0);
  CHECK(seen.find("word1") != std::string::npos);
  CHECK(seen.find("\r\n0\r\n\r\n") == std::string::npos);
}

namespace {

/// The body of a chunked HTTP/1.1 response (everything after the head).
std::string dechunk(const std::string& raw) {
  std::string body;
  auto pos = raw.find("\r\n\r\n");
  REQUIRE(pos != std::string::npos);
  pos += 4;
  for (;;) {
    const auto eol = raw.find("\r\n", pos);
    REQUIRE(eol != std::string::npos);
    const auto size = std::stoull(raw.substr(pos, eol - pos), nullptr, 16);
    if (size == 0)
      return body;
    body.append(raw, eol + 2, size);
    pos = eol + 2 + size + 2;
  }
}

template <class Condition>
bool eventually(Condition c) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!c())
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    else
      std::this_thread::yield();
  return true;
}

} // namespace

TEST_CASE("a client that reads slowly holds the backend back instead of filling memory",
          "[integration][proxy]") {
  behind_proxy p{"/files"};
  auto& g = p.g;
  auto& a = p.a;
  // More than the relay's mark plus whatever the sockets on the way hold.
  constexpr std::size_t n = std::size_t{12} << 20;
  test::connection c{g.port()};
  c.send(test::make_request("GET", "/files/bytes/" + std::to_string(n),
                            "Authorization: Bearer " + a.key + "\r\n"));
  std::string seen;
  REQUIRE(c.read_until("\r\n\r\n", seen));
  CHECK(seen.find("HTTP/1.1 200") == 0);

  // The client takes nothing more for now: past the mark the relay holds
  // the backend back right after the read that crossed it, so what the
  // gateway keeps is the mark plus one 16 KiB read (12 MiB without it).
  REQUIRE(eventually([] { return http::relay::paused_total().load() == 1; }));
  CHECK(http::relay::buffered_total().load()
        <= static_cast<std::int64_t>(http::relay::high_water + 16 * 1024));
  const auto metrics = g.call("GET", "/metrics", "").body;
  CHECK(metrics.find("\ntollgate_streams_paused 1\n") != std::string::npos);

  // Then it reads on: the backend resumes and the body arrives whole.
  REQUIRE(c.read_until("\r\n0\r\n\r\n", seen));
  const auto body = dechunk(seen);
  REQUIRE(body.size() == n);
  bool pattern = true;
  for (std::size_t i = 0; i < n && pattern; i += 4093)
    pattern = body[i] == static_cast<char>('a' + i % 26);
  CHECK(pattern);
  CHECK(eventually([] {
    return http::relay::paused_total().load() == 0 && http::relay::buffered_total().load() == 0;
  }));
}

TEST_CASE("a proxied answer has no size cap by default, and a route can set one",
          "[integration][proxy]") {
  // Over the upstream client's 16 MiB default for buffered answers.
  constexpr std::size_t n = std::size_t{17} << 20;
  SECTION("no cap: the whole body") {
    behind_proxy p{"/files"};
    test::connection c{p.g.port(), 10s};
    c.send(test::make_request("GET", "/files/bytes/" + std::to_string(n),
                              "Authorization: Bearer " + p.a.key + "\r\n"));
    std::string seen;
    REQUIRE(c.read_until("\r\n0\r\n\r\n", seen));
    CHECK(seen.find("HTTP/1.1 200") == 0);
    CHECK(dechunk(seen).size() == n);
  }
  SECTION("max_response_bytes: the body is cut there, without the last chunk") {
    behind_proxy p{"/files", [](core::config& c) { c.routes[0].max_response_bytes = 1 << 20; }};
    test::connection c{p.g.port()};
    c.send(test::make_request("GET", "/files/bytes/" + std::to_string(n),
                              "Authorization: Bearer " + p.a.key + "\r\n"));
    std::string head;
    REQUIRE(c.read_until("\r\n\r\n", head));
    CHECK(head.find("HTTP/1.1 200") == 0);
    std::string rest;
    CHECK(c.closed_by_peer(&rest));
    CHECK(rest.find("\r\n0\r\n\r\n") == std::string::npos);
    CHECK(head.size() + rest.size() < (std::size_t{2} << 20));
    CHECK(head.size() + rest.size() > (std::size_t{1} << 20));  // the cap's worth came
  }
}

TEST_CASE("a proxied request body goes to the backend while the client still sends it",
          "[integration][proxy]") {
  behind_proxy p{"/files"};
  auto& up = p.up;
  auto& g = p.g;
  auto& a = p.a;
  constexpr std::size_t half = 100'000;
  const std::string first(half, 'x');
  const std::string second(half, 'y');

  SECTION("with a Content-Length") {
    test::connection c{g.port()};
    c.send(upload_head("/files/upload", a.key, "Content-Length: " + std::to_string(2 * half))
           + first);
    // The backend has the first half while the second is not even sent:
    // without forwarding as it arrives, this never shows.
    REQUIRE(up.p->wait_for_output("upload received " + std::to_string(half) + "\n", 10s));
    c.send(second);
    auto r = c.read_response();
    REQUIRE(r);
    INFO(r->body);
    CHECK(r->status == 200);
    CHECK(r->body.find(R"("received":200000)") != std::string::npos);
    CHECK(!r->header("x-ratelimit-limit").empty());
    // The connection goes on with the next request.
    c.send(test::make_request("GET", "/files/echo", "Authorization: Bearer " + a.key + "\r\n"));
    auto next = c.read_response();
    REQUIRE(next);
    CHECK(next->status == 200);
  }

  SECTION("chunked") {
    test::connection c{g.port()};
    char size[16];
    std::snprintf(size, sizeof size, "%zx", half);
    c.send(upload_head("/files/upload", a.key, "Transfer-Encoding: chunked") + size + "\r\n"
           + first + "\r\n");
    REQUIRE(up.p->wait_for_output("upload received " + std::to_string(half) + "\n", 10s));
    c.send(std::string{size} + "\r\n" + second + "\r\n0\r\n\r\n");
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find(R"("received":200000)") != std::string::npos);
  }

  SECTION("a refused key: 401, the backend gets nothing, the connection closes") {
    // At once: well before the 10 s request timeout that would end the
    // read of the rest of the body otherwise.
    test::connection c{g.port(), 2s};
    c.send(upload_head("/files/upload", "gw_live_nope",
                       "Content-Length: " + std::to_string(2 * half))
           + first);
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(c.closed_by_peer());
    CHECK(up.p->output().find("upload received") == std::string::npos);
  }
}

TEST_CASE("a proxied request body over the limit gets 413, declared or chunked",
          "[integration][proxy]") {
  behind_proxy p{"/files", [](core::config& c) { c.server.body_limit_bytes = 50'000; }};
  auto& up = p.up;
  auto& g = p.g;
  auto& a = p.a;
  const std::string piece(40'000, 'x');
  SECTION("declared") {
    test::connection c{g.port()};
    c.send(upload_head("/files/upload", a.key, "Content-Length: 80000") + piece);
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
  }
  SECTION("chunked, found out on the way") {
    test::connection c{g.port()};
    c.send(upload_head("/files/upload", a.key, "Transfer-Encoding: chunked") + "9c40\r\n"
           + piece + "\r\n");
    REQUIRE(up.p->wait_for_output("upload received 40000\n", 10s));
    c.send("9c40\r\n" + piece + "\r\n0\r\n\r\n");
    auto r = c.read_response();
    REQUIRE(r);
    INFO(r->body);
    CHECK(r->status == 413);
    CHECK(c.closed_by_peer());
  }
}

TEST_CASE("a backend that refuses an upload early: its answer reaches the client at once",
          "[integration][proxy]") {
  behind_proxy p{"/files"};
  test::connection c{p.g.port(), 3s};
  // 500,000 bytes declared (under the gateway's limit), 100,000 sent: the
  // backend answers after the header, without reading any of it.
  c.send(upload_head("/files/early", p.a.key, "Content-Length: 500000")
         + std::string(100'000, 'x'));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 413);
  CHECK(r->body.find("too large for the backend") != std::string::npos);
  CHECK(c.closed_by_peer());  // the rest of the body is not read
}

TEST_CASE("a backend that answers 200 early and reads on gets the whole upload",
          "[integration][proxy]") {
  behind_proxy p{"/files"};
  test::connection c{p.g.port(), 5s};
  c.send(upload_head("/files/early-ok", p.a.key, "Content-Length: 200000")
         + std::string(100'000, 'x'));
  // Its head comes while half the body is still with the client.
  std::string seen;
  REQUIRE(c.read_until("\r\n\r\n", seen));
  CHECK(seen.find("HTTP/1.1 200") == 0);
  c.send(std::string(100'000, 'y'));
  REQUIRE(c.read_until("\r\n0\r\n\r\n", seen));
  CHECK(seen.find("received 200000") != std::string::npos);
}
