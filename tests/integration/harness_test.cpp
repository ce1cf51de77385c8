// The HTTP server with hand-made routes and actors: a handler that answers
// only when the test says so, and a storage actor that reports failure. Used
// for the shutdown sequence and degraded health, which the real routes cannot
// produce on demand.

#include "actors/router.hpp"
#include "http/api/auth.hpp"
#include "http/api/public_routes.hpp"
#include "http/errors.hpp"
#include "http/route_table.hpp"
#include "http/server/dispatcher.hpp"
#include "http/server/http_metrics.hpp"
#include "http/server/server.hpp"
#include "metrics/registry.hpp"

#include "support/http_client.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

#include <future>
#include <mutex>
#include <thread>

using namespace tollgate;
using namespace std::chrono_literals;

namespace {

/// Holds the responders of /slow requests until the test releases them.
struct gate {
  std::mutex mutex;
  std::vector<core::responder_ptr> waiting;
  std::promise<void> arrived;
  bool signalled = false;

  void hold(core::responder_ptr out) {
    std::lock_guard<std::mutex> g{mutex};
    waiting.push_back(std::move(out));
    if (!signalled) {
      signalled = true;
      arrived.set_value();
    }
  }
  void release() {
    std::lock_guard<std::mutex> g{mutex};
    for (auto& out : waiting) {
      core::api_response r;
      r.body = R"({"slow":true})";
      out->respond(std::move(r));
    }
    waiting.clear();
  }
};

gate* the_gate = nullptr;

actors::storage_actor::behavior_type failing_storage() {
  return {
    [](actors::write_atom, std::vector<storage::write_op>&) {
      return actors::write_ack{"disk on fire"};
    },
    [](actors::read_atom, std::uint8_t, const std::string&) { return actors::read_result{}; },
    [](actors::scan_atom, std::uint8_t, const std::string&, std::uint32_t) {
      return actors::scan_result{};
    },
    [](actors::health_atom) {
      actors::storage_health h;
      h.detail = "disk on fire";
      return h;
    },
    [](actors::flush_atom) { return actors::write_ack{}; },
    [](actors::commit_atom) {},
  };
}

struct harness {
  gate g;
  metrics::registry reg;
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<http::route_table> table = std::make_shared<http::route_table>();
  std::unique_ptr<http::http_metrics> hm;
  std::unique_ptr<http::dispatcher> disp;
  std::unique_ptr<http::server> srv;
  actors::router_actor router;

  explicit harness(std::chrono::milliseconds grace = 5s, bool allow_anonymous = false) {
    spdlog::set_level(spdlog::level::warn);
    the_gate = &g;
    auto handlers = std::make_shared<actors::handler_table>();
    handlers->error = [](core::errc e, std::string_view d) { return http::error_response(e, d); };
    table->add("GET", "/slow");
    handlers->routes.push_back([](actors::router_pointer, const actors::services&,
                                  core::api_request&, core::responder_ptr& out) {
      the_gate->hold(out);
    });
    table->add("GET", "/health");
    handlers->routes.push_back(http::api::health);
    // Keyless callers allowed here when auth.allow_anonymous is on...
    const auto who_am_i = [](actors::router_pointer, const actors::services&, core::api_request&,
                             core::responder_ptr& out, const core::principal& who) {
      core::api_response r;
      r.body = who.anonymous ? "anonymous" : "user " + std::to_string(who.user_id);
      out->respond(std::move(r));
    };
    table->add("GET", "/anon-ok");
    handlers->routes.push_back(http::api::authenticated({"usage", false, true}, who_am_i));
    // ...but never here.
    table->add("GET", "/keyed");
    handlers->routes.push_back(http::api::authenticated({"usage", false, false}, who_am_i));

    actors::services svc;
    svc.storage = sys.spawn(failing_storage);
    svc.metrics = &reg;
    svc.clock = &core::system_clock::instance();
    svc.started = std::chrono::steady_clock::now();
    svc.allow_anonymous = allow_anonymous;
    router = sys.spawn(actors::router_impl, std::shared_ptr<const actors::handler_table>{handlers},
                       svc);
    hm = std::make_unique<http::http_metrics>(reg, *table);
    disp = std::make_unique<http::dispatcher>(sys, std::vector<actors::router_actor>{router},
                                              http::bridge_mode::responder);
    core::server_config sc;
    sc.port = 0;
    sc.shutdown_grace = grace;
    srv = std::make_unique<http::server>(sc, table, *disp, *hm, false);
    srv->start();
  }
  ~harness() {
    g.release();
    srv->stop();
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    the_gate = nullptr;
  }
  std::uint16_t port() const { return srv->port(); }
};

} // namespace

TEST_CASE("health reports a failing store with 503", "[integration][shutdown]") {
  harness h;
  auto r = test::request(h.port(), "GET", "/health");
  CHECK(r.status == 503);
  CHECK(r.body.find(R"("status":"unhealthy")") != std::string::npos);
  CHECK(r.body.find(R"("storage":{"status":"failing","detail":"disk on fire")")
        != std::string::npos);
}

TEST_CASE("graceful shutdown finishes in-flight requests and refuses new work",
          "[integration][shutdown]") {
  harness h;
  test::connection busy{h.port()};
  test::connection idle{h.port()};
  test::connection partial{h.port()};
  idle.send(test::make_request("GET", "/health"));
  REQUIRE(idle.read_response());
  busy.send(test::make_request("GET", "/slow"));
  REQUIRE(h.g.arrived.get_future().wait_for(5s) == std::future_status::ready);
  partial.send("GET /health HTTP/1.1\r\nHost: x\r\n");  // not finished yet

  auto drained = std::async(std::launch::async, [&] { return h.srv->drain(5s); });
  // The listener closes first: wait until new connections are refused.
  for (int i = 0; i < 200 && !test::connect_refused(h.port()); ++i)
    std::this_thread::yield();
  CHECK(test::connect_refused(h.port()));

  // The idle keep-alive connection is closed without an answer.
  CHECK(idle.closed_by_peer());
  // A request that completes during the drain gets 503 and a close.
  partial.send("\r\n");
  auto r = partial.read_response();
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(partial.closed_by_peer());
  // The in-flight request still gets its answer, with Connection: close.
  CHECK(drained.wait_for(100ms) == std::future_status::timeout);
  h.g.release();
  r = busy.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == R"({"slow":true})");
  CHECK(r->header("connection") == "close");
  CHECK(busy.closed_by_peer());
  CHECK(drained.get());
}

TEST_CASE("shutdown gives up on a stuck request after the grace period",
          "[integration][shutdown]") {
  harness h{300ms};
  test::connection busy{h.port()};
  busy.send(test::make_request("GET", "/slow"));
  REQUIRE(h.g.arrived.get_future().wait_for(5s) == std::future_status::ready);
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(h.srv->drain(300ms));
  CHECK(std::chrono::steady_clock::now() - start >= 300ms);
}

TEST_CASE("keyless requests pass as anonymous only when switched on and allowed by the route",
          "[integration][keys]") {
  {
    harness h;  // default: off
    auto r = test::request(h.port(), "GET", "/anon-ok");
    CHECK(r.status == 401);
    CHECK(r.header("www-authenticate") == "Bearer realm=\"tollgate\"");
  }
  harness h{5s, true};
  auto r = test::request(h.port(), "GET", "/anon-ok");
  CHECK(r.status == 200);
  CHECK(r.body == "anonymous");
  CHECK(test::request(h.port(), "GET", "/keyed").status == 401);
  // A presented key is never downgraded to anonymous: a bad one is refused.
  CHECK(test::request(h.port(), "GET", "/anon-ok", "X-API-Key: gw_live_bad\r\n").status == 401);
}
