// The LLM routes end to end: tollgate in-process, the mock upstream as a
// process on 127.0.0.1. Prices are chosen so every charge is a round
// number of micro-credits: 1,000 per prompt token, 3,000 per completion
// token; the mock reports 7 prompt and 9 completion tokens (34,000).

#include "support/fixture.hpp"
#include "support/http_client.hpp"
#include "support/mock.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include "actors/key_directory.hpp"
#include "app/gateway.hpp"
#include "core/api_key.hpp"
#include "http/llm/llm.hpp"
#include "storage/write_queue.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <thread>

using namespace tollgate;
using namespace std::chrono_literals;
using test::create_user;
using test::instance;
using test::json;
using test::str;
using test::user;

namespace {

constexpr std::int64_t cost = 7 * 1000 + 9 * 3000;  // micro-credits per mock call

using mock = test::mock_upstream;

core::provider_config provider(const std::string& name, const std::string& url,
                               std::vector<std::pair<std::string, std::string>> headers = {}) {
  core::provider_config p;
  p.name = name;
  p.base_url = url;
  p.headers = std::move(headers);
  p.retry_backoff = 10ms;
  core::model_config m;
  m.id = "m1";
  m.upstream = "upstream-m1";
  m.prompt_price_micro_per_mtok = 1'000'000'000;      // 1,000 micro-credits per token
  m.completion_price_micro_per_mtok = 3'000'000'000;  // 3,000
  m.default_max_tokens = 100;
  p.models.push_back(m);
  return p;
}

std::string chat_body(bool stream = false, int max_tokens = 50) {
  return R"({"model":"m1","max_tokens":)" + std::to_string(max_tokens)
         + R"(,"messages":[{"role":"user","content":"hello there"}])"
         + (stream ? R"(,"stream":true)" : "") + "}";
}

/// Sends a chat completion on `c` without waiting for its answer.
void send_chat(test::connection& c, const std::string& key, const std::string& body) {
  c.send(test::make_request("POST", "/v1/chat/completions", "Authorization: Bearer " + key + "\r\n",
                            body));
}

std::int64_t tokens_used(const instance& g, const std::string& key) {
  return json(g.call("GET", "/api/usage", key))["usage"]["daily_tokens_used"].GetInt64();
}

rapidjson::Document ledger(const instance& g, const std::string& key) {
  return json(g.call("GET", "/user/ledger", key));
}

/// The agent model's calls in flight (its provider's slots taken), as
/// /api/agent/status reports them.
int calls_in_flight(const instance& g, const std::string& key) {
  return json(g.call("GET", "/api/agent/status", key))["rate_limits"]["in_flight"].GetInt();
}

std::int64_t balance_micro(const instance& g, const std::string& key) {
  return static_cast<std::int64_t>(
    json(g.call("GET", "/user/balance", key))["credits"].GetDouble() * 1e6 + 0.5);
}

/// The value of an unlabelled metric on /metrics (-1: not there).
double metric(const instance& g, const std::string& name) {
  const auto body = g.call("GET", "/metrics").body;
  const auto at = body.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(body.substr(at + name.size() + 2));
}

/// Turns the store's test hooks off when a test ends, passed or not.
/// A gateway whose one provider, "mock", is a fresh mock upstream.
struct gateway_on_mock {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(),
             [this](core::config& c) { c.llm.providers = {provider("mock", up.url())}; }};
};

struct store_hooks_off {
  ~store_hooks_off() {
    storage::testing::refuse_writes(false);
    storage::testing::hold_writes(false);
    storage::testing::hold_writer(false);
  }
};

/// Polls `done` until it holds or `limit` passes (for effects that land
/// after the response: a settlement after a client left).
template <class F>
bool eventually(F done, std::chrono::seconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/// On `c`, the key's usage after one mock call: its 16 tokens settled and
/// its price charged, seen by the next request on the same connection.
void expect_one_mock_call_settled(test::connection& c, const instance& g, const std::string& key) {
  c.send(test::make_request("GET", "/api/usage", "Authorization: Bearer " + key + "\r\n"));
  auto u = c.read_response();
  REQUIRE(u);
  CHECK(json(*u)["usage"]["daily_tokens_used"].GetInt64() == 16);
  CHECK(balance_micro(g, key) == 10'000'000 - cost);
}

/// What a stand-in key actor does with auth and reservations.
enum class stand_in { stopping, refusing_requests, refusing_tokens };

/// A key actor standing in for a key's real one (`real`):
/// - stopping: answers auth and reservations with `moved`, deciding nothing;
/// - refusing_requests: refuses every request with a rate limit of its own;
/// - refusing_tokens: passes auth on to the real actor and refuses every
///   reservation.
actors::key_actor::behavior_type stand_in_key_actor(actors::key_actor::pointer self,
                                                    stand_in mode, actors::key_actor real) {
  const auto refuse = [] { return caf::make_error(caf::sec::unexpected_message); };
  return {
    [=](actors::auth_atom, const std::string& hash,
        const actors::admission& a) -> caf::result<actors::auth_decision> {
      actors::auth_decision d;
      if (mode == stand_in::stopping) {
        d.moved = true;
        return d;
      }
      if (mode == stand_in::refusing_requests) {
        d.code = core::errc::too_many_requests;
        d.limits.metered = true;
        d.limits.allowed = false;
        d.limits.policy = "stand-in";
        d.limits.limit = 1;
        d.limits.window = 60;
        d.limits.retry_after = 7;
        return d;
      }
      return self->delegate(real, actors::auth_atom::value, hash, a);
    },
    [refuse](actors::usage_atom) -> caf::result<actors::key_usage> { return refuse(); },
    [refuse](actors::reset_atom) -> caf::result<actors::key_usage> { return refuse(); },
    [mode](actors::reserve_atom, std::int64_t tokens, bool) {
      actors::token_reservation r;
      r.tokens = tokens;
      if (mode == stand_in::stopping) {
        r.moved = true;
      } else {
        r.budget = "tokens_day";
        r.retry_after = 9;
      }
      return r;
    },
    [refuse](actors::settle_atom, std::int64_t, std::int64_t) -> caf::result<actors::key_usage> {
      return refuse();
    },
    [](actors::persist_atom) {},
    [refuse](actors::flush_atom) -> caf::result<actors::write_ack> { return refuse(); },
    [](actors::key_changed_atom, const core::key_record&, bool) {},
    [](actors::user_changed_atom, const core::user_record&) {},
    [](actors::tick_atom) {},
    [](actors::commit_atom) {},
    [](actors::stop_atom) {},
  };
}

} // namespace

TEST_CASE("routes ask a live key's actor straight, and the directory when it is stopping or gone",
          "[integration][llm][limits]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};  // the stand-ins' (they outlive the gateway's handles)
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(),
             [&](core::config& c) { c.llm.providers = {provider("mock", up.url())}; }};
  auto a = create_user(g, "alice");
  const auto hash = core::api_key::sha256_hex(a.key);
  auto& live = g.gw->live_keys();
  // Alice's key actor runs, and is listed.
  auto r = g.call("GET", "/user/balance", a.key);
  REQUIRE(r.status == 200);
  REQUIRE(live.find(hash));
  const auto remaining = std::stoll(r.header("x-ratelimit-remaining"));

  const auto real = live.find(hash);

  // Asked straight: a stand-in listed for the key answers for it.
  live.add(hash, sys.spawn(stand_in_key_actor, stand_in::refusing_requests, real));
  r = g.call("GET", "/user/balance", a.key);
  CHECK(r.status == 429);
  CHECK(r.header("retry-after") == "7");
  live.add(hash, sys.spawn(stand_in_key_actor, stand_in::refusing_tokens, real));
  r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  CHECK(r.status == 429);
  CHECK(r.header("retry-after") == "9");
  CHECK(r.body.find("Daily token limit exceeded") != std::string::npos);
  CHECK(tokens_used(g, a.key) == 0);

  // Listed but stopping: every answer is `moved`; the directory's actor
  // decides instead, and counts.
  live.add(hash, sys.spawn(stand_in_key_actor, stand_in::stopping, real));
  r = g.call("GET", "/user/balance", a.key);
  CHECK(r.status == 200);
  // Counted by the real actor: the chat completion and the usage request
  // above (their auth went on to it), and this request.
  CHECK(r.header("x-ratelimit-remaining") == std::to_string(remaining - 3));
  r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  REQUIRE(r.status == 200);
  CHECK(tokens_used(g, a.key) == 16);

  // Listed but gone: the request to it fails; the directory's actor decides.
  auto gone = sys.spawn(stand_in_key_actor, stand_in::stopping, real);
  caf::anon_send_exit(gone, caf::exit_reason::user_shutdown);
  {
    caf::scoped_actor self{sys};
    self->wait_for(gone);
  }
  live.add(hash, gone);
  r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  REQUIRE(r.status == 200);
  CHECK(tokens_used(g, a.key) == 32);
  CHECK(balance_micro(g, a.key) == 10'000'000 - 2 * cost);
  live.remove(hash);
}

TEST_CASE("a key actor holding a reservation does not go idle: the call settles with it",
          "[integration][llm][limits]") {
  // The upstream takes longer than the key's idle timeout; the call
  // reserved with the key's actor straight and settles with it straight.
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.llm.providers = {provider("slow", up.url(), {{"X-Mock-Latency-Ms", "600"}})};
               c.auth.key_idle_timeout = 100ms;
             }};
  auto a = create_user(g, "alice");
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  REQUIRE(r.status == 200);
  // Settled exactly (a lost settlement would leave the whole reservation,
  // prompt and 50 completion tokens, counted).
  CHECK(tokens_used(g, a.key) == 16);
  CHECK(balance_micro(g, a.key) == 10'000'000 - cost);
}

TEST_CASE("chat completion as JSON: relayed, tokens and credits exact, ledger durable",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  const auto tweak = [&](core::config& c) { c.llm.providers = {provider("mock", up.url())}; };
  std::string key;
  {
    instance g{dir.str("data"), core::system_clock::instance(), tweak};
    auto a = create_user(g, "alice");
    key = a.key;
    auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
    REQUIRE(r.status == 200);
    auto d = json(r);
    CHECK(str(d["object"]) == "chat.completion");
    CHECK(str(d["model"]) == "upstream-m1");  // the provider's name went upstream
    CHECK(d["usage"]["total_tokens"].GetInt() == 16);
    CHECK(!r.header("x-ratelimit-limit").empty());
    CHECK(tokens_used(g, a.key) == 16);
    CHECK(balance_micro(g, a.key) == 10'000'000 - cost);
    auto l = ledger(g, a.key);
    REQUIRE(l["data"].Size() == 1);
    CHECK(str(l["data"][0]["kind"]) == "charge");
    CHECK(str(l["data"][0]["provider"]) == "mock");
    CHECK(str(l["data"][0]["model"]) == "m1");
    CHECK(l["data"][0]["prompt_tokens"].GetInt() == 7);
    CHECK(l["data"][0]["completion_tokens"].GetInt() == 9);
    CHECK(l["data"][0]["amount_micro"].GetInt64() == cost);
    CHECK(l["data"][0]["balance_micro"].GetInt64() == 10'000'000 - cost);
    CHECK(str(l["data"][0]["request_id"]) == r.header("x-request-id"));

    // The call ended with its answer (from the I/O thread, without the
    // runner): it is off the deadline watch.
    CHECK(eventually([&] { return g.gw->llm_calls_open() == 0; }));

    // /v1/responses reads input/output tokens the same way.
    r = g.call("POST", "/v1/responses", a.key, R"({"model":"m1","input":"hi"})");
    REQUIRE(r.status == 200);
    CHECK(tokens_used(g, a.key) == 32);
    CHECK(balance_micro(g, a.key) == 10'000'000 - 2 * cost);

    // Metrics: by provider and model, never by key or user.
    CHECK(g.call("POST", "/v1/chat/completions", a.key,
                 R"({"model":"secret-name","messages":[{"role":"user","content":"x"}]})")
            .status
          == 404);
    const auto m = g.call("GET", "/metrics").body;
    CHECK(m.find(R"(tollgate_llm_calls_total{provider="mock",model="m1",outcome="ok"} 2)")
          != std::string::npos);
    CHECK(m.find(R"(tollgate_llm_calls_total{provider="-",model="-",outcome="client_error"} 1)")
          != std::string::npos);
    CHECK(m.find(R"(tollgate_llm_tokens_total{provider="mock",model="m1",kind="completion"} 18)")
          != std::string::npos);
    CHECK(m.find(R"(tollgate_llm_charged_micro_credits_total{provider="mock",model="m1"} 68000)")
          != std::string::npos);
    CHECK(m.find("secret-name") == std::string::npos);
  }
  instance g{dir.str("data"), core::system_clock::instance(), tweak};
  CHECK(tokens_used(g, key) == 32);
  CHECK(balance_micro(g, key) == 10'000'000 - 2 * cost);
  CHECK(ledger(g, key)["data"].Size() == 2);
}

TEST_CASE("chat completion as SSE: relayed as it comes, usage from the stream",
          "[integration][llm]") {
  gateway_on_mock setup;
  auto& g = setup.g;
  auto a = create_user(g, "alice");
  test::connection c{g.port()};
  const auto body = chat_body(true);
  send_chat(c, a.key, body);
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("content-type") == "text/event-stream");
  CHECK(r->header("transfer-encoding") == "chunked");
  CHECK(!r->header("x-ratelimit-remaining").empty());
  int content = 0;
  for (auto pos = r->body.find(R"("delta":{"content")"); pos != std::string::npos;
       pos = r->body.find(R"("delta":{"content")", pos + 1))
    ++content;
  CHECK(content == 3);
  CHECK(r->body.find(R"("usage":{"prompt_tokens":7)") != std::string::npos);
  CHECK(r->body.find("data: [DONE]") != std::string::npos);
  // Settled and charged before the stream ended; the connection lives on.
  expect_one_mock_call_settled(c, g, a.key);
  // Counted once, as a success.
  const auto m = g.call("GET", "/metrics").body;
  CHECK(m.find(R"(tollgate_llm_calls_total{provider="mock",model="m1",outcome="ok"} 1)")
        != std::string::npos);
  CHECK(m.find("outcome=\"upstream_error\"") == std::string::npos);
}

TEST_CASE("not enough credits: 402 before any upstream call, nothing kept",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.accounts.initial_credits_micro = 100'000;  // 0.1 credits
               c.llm.providers = {provider("mock", up.url())};
             }};
  auto a = create_user(g, "alice");
  // Worst case: prompt estimate + 1000 tokens x 3,000 = more than 0.1 credits.
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body(false, 1000));
  REQUIRE(r.status == 402);
  auto d = json(r);
  CHECK(str(d["error"]["code"]) == "insufficient_credits");
  CHECK(str(d["error"]["type"]) == "insufficient_quota");
  CHECK(tokens_used(g, a.key) == 0);  // the token reservation was released
  CHECK(balance_micro(g, a.key) == 100'000);
  CHECK(ledger(g, a.key)["data"].Size() == 0);
  auto status = json(g.call("GET", "/api/agent/status", g.admin()));
  // A call that fits goes through.
  r = g.call("POST", "/v1/chat/completions", a.key, chat_body(false, 20));
  CHECK(r.status == 200);
  CHECK(balance_micro(g, a.key) == 100'000 - cost);
}

TEST_CASE("a spent token budget refuses before the upstream, in OpenAI's envelope",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.limits.tokens_per_day = 100;
               c.llm.providers = {provider("mock", up.url())};
               c.llm.agent_model = "m1";
             }};
  auto a = create_user(g, "alice");
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body(false, 200));
  REQUIRE(r.status == 429);
  CHECK(str(json(r)["error"]["code"]) == "token_limit_exceeded");
  CHECK(std::stoi(r.header("retry-after")) >= 1);
  // The token-tracking page's own body on its own route.
  r = g.call("POST", "/api/send-message", a.key,
             R"({"message":")" + std::string(400, 'x') + R"("})");
  REQUIRE(r.status == 429);
  auto d = json(r);
  CHECK(str(d["status"]) == "token_limit_exceeded");
  CHECK(str(d["type"]) == "token_limit_error");
  CHECK(d["remaining_tokens"].GetInt64() == 100);
  CHECK(tokens_used(g, a.key) == 0);
  // A message that fits: the page's success shape with the usage after it.
  r = g.call("POST", "/api/send-message", a.key, R"({"message":"hi"})");
  REQUIRE(r.status == 200);
  d = json(r);
  CHECK(str(d["status"]) == "success");
  CHECK(d["metadata"]["token_usage"]["daily_used"].GetInt64() == 16);
  CHECK(d["metadata"]["token_usage"]["daily_remaining"].GetInt64() == 84);
  CHECK(str(d["metadata"]["api_key_hash"]).size() == 16);
}

TEST_CASE("provider queue full and queue timeout answer 429 with Retry-After",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto slow = provider("slow", up.url(), {{"X-Mock-Latency-Ms", "600"}});
               slow.max_concurrency = 1;
               slow.queue_size = 1;
               slow.queue_timeout = 150ms;
               slow.retries = 0;
               c.llm.providers = {slow};
               c.llm.agent_model = "m1";
             }};
  auto a = create_user(g, "alice");
  std::atomic<int> first_status{0};
  std::thread first{[&] {
    first_status = g.call("POST", "/v1/chat/completions", a.key, chat_body()).status;
  }};
  // Wait until the first call holds the only slot.
  REQUIRE(eventually([&] {
    return json(g.call("GET", "/api/agent/status", a.key))["rate_limits"]["in_flight"].GetInt()
           == 1;
  }));
  // The second waits in the one queue place and times out after 150 ms;
  // while it waits, a third finds the queue full.
  std::atomic<int> second_status{0};
  std::string second_body;
  std::thread second{[&] {
    auto r = g.call("POST", "/api/send-message", a.key, R"({"message":"hi"})");
    second_body = r.body;
    second_status = r.status;
  }};
  REQUIRE(eventually([&] {
    return json(g.call("GET", "/api/agent/status", a.key))["rate_limits"]["queued"].GetInt()
           == 1;
  }));
  auto third = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  CHECK(third.status == 429);
  CHECK(std::stoi(third.header("retry-after")) >= 1);
  CHECK(str(json(third)["error"]["code"]) == "queue_full");
  second.join();
  first.join();
  CHECK(first_status == 200);
  CHECK(second_status == 429);
  rapidjson::Document d;
  d.Parse(second_body.c_str());
  REQUIRE(d.IsObject());
  CHECK(str(d["status"]) == "rate_limited");
  CHECK(str(d["type"]) == "rate_limit_error");
  CHECK(str(d["message"]) == "API rate limit reached. Please try again shortly.");
  CHECK(std::stoi(str(d["retry_after"])) >= 1);
  // Only the first call used anything.
  CHECK(tokens_used(g, a.key) == 16);
  CHECK(balance_micro(g, a.key) == 10'000'000 - cost);
}

TEST_CASE("retries on 5xx, then the fallback serves, and the charge names the fallback",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto bad = provider("bad", up.url(), {{"X-Mock-Status", "503"}});
               bad.retries = 2;
               bad.fallbacks = {"good"};
               c.llm.providers = {bad, provider("good", up.url())};
             }};
  auto a = create_user(g, "alice");
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  REQUIRE(r.status == 200);
  auto l = ledger(g, a.key);
  REQUIRE(l["data"].Size() == 1);
  CHECK(str(l["data"][0]["provider"]) == "good");
  auto providers = json(g.call("GET", "/models/providers", ""));
  CHECK(providers["count"].GetInt() == 2);
  CHECK(balance_micro(g, a.key) == 10'000'000 - cost);

  // Without a working fallback the client gets a 502 in OpenAI's envelope
  // and nothing is charged.
  test::temp_dir dir2;
  instance g2{dir2.str("data"), core::system_clock::instance(), [&](core::config& c) {
                auto bad = provider("bad", up.url(), {{"X-Mock-Status", "500"}});
                bad.retries = 1;
                c.llm.providers = {bad};
              }};
  auto b = create_user(g2, "bob");
  r = g2.call("POST", "/v1/chat/completions", b.key, chat_body());
  CHECK(r.status == 502);
  CHECK(str(json(r)["error"]["code"]) == "bad_gateway");
  CHECK(tokens_used(g2, b.key) == 0);
  CHECK(balance_micro(g2, b.key) == 10'000'000);
  // An upstream 429 after the retries: 429 with the upstream's Retry-After.
  test::temp_dir dir3;
  instance g3{dir3.str("data"), core::system_clock::instance(), [&](core::config& c) {
                auto busy = provider("busy", up.url(),
                                     {{"X-Mock-Status", "429"}, {"X-Mock-Retry-After", "0"}});
                busy.retries = 0;
                c.llm.providers = {busy};
              }};
  auto e = create_user(g3, "eve");
  r = g3.call("POST", "/v1/chat/completions", e.key, chat_body());
  CHECK(r.status == 429);
  CHECK(str(json(r)["error"]["type"]) == "rate_limit_error");
}

TEST_CASE("an upstream that answers garbage gets the client a 502, and the prompt is settled",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto p = provider("junk", up.url(), {{"X-Mock-Garbage", "1"}});
               p.retries = 0;
               c.llm.providers = {p};
             }};
  auto a = create_user(g, "alice");
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  REQUIRE(r.status == 502);
  CHECK(str(json(r)["error"]["message"]).find("not JSON") != std::string::npos);
  // The prompt estimate is settled and charged; the completion reserve is back.
  const auto used = tokens_used(g, a.key);
  CHECK(used > 0);
  CHECK(used < 50);
  auto l = ledger(g, a.key);
  REQUIRE(l["data"].Size() == 1);
  CHECK(l["data"][0]["completion_tokens"].GetInt() == 0);
  CHECK(l["data"][0]["amount_micro"].GetInt64() == used * 1000);
}

TEST_CASE("a provider whose requests cannot go out fails each call, and its fallback serves",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               // A field no request may carry (it would smuggle another one
               // in), and a port no URL may name.
               auto bad_field = provider("bad_field", up.url(), {{"X-Org", "o1\r\nX-Evil: 1"}});
               bad_field.retries = 0;
               bad_field.fallbacks = {"mock"};
               auto bad_port = provider("bad_port", "http://127.0.0.1:99999/v1");
               bad_port.retries = 0;
               bad_port.models[0].id = "m2";
               c.llm.providers = {bad_field, bad_port, provider("mock", up.url())};
             }};
  auto a = create_user(g, "alice");
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  REQUIRE(r.status == 200);
  auto l = ledger(g, a.key);
  REQUIRE(l["data"].Size() == 1);
  CHECK(str(l["data"][0]["provider"]) == "mock");
  CHECK(balance_micro(g, a.key) == 10'000'000 - cost);

  r = g.call("POST", "/v1/chat/completions", a.key,
             R"({"model":"m2","messages":[{"role":"user","content":"x"}]})");
  CHECK(r.status == 502);
  CHECK(str(json(r)["error"]["message"]).find("bad url") != std::string::npos);
  CHECK(r.body.find("99999") == std::string::npos);  // never the URL
  CHECK(ledger(g, a.key)["data"].Size() == 1);       // nothing charged, all released
  CHECK(balance_micro(g, a.key) == 10'000'000 - cost);
  CHECK(tokens_used(g, a.key) == 16);
}

TEST_CASE("a stream that breaks mid-way ends with an error event and settles what came",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto p = provider("broken", up.url(),
                                 {{"X-Mock-Break-After", "2"}, {"X-Mock-Chunks", "10"}});
               p.retries = 0;
               c.llm.providers = {p};
             }};
  auto a = create_user(g, "alice");
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body(true));
  REQUIRE(r.status == 200);
  CHECK(r.body.find("upstream stream broke") != std::string::npos);
  CHECK(r.body.find("data: [DONE]") == std::string::npos);
  const auto used = tokens_used(g, a.key);
  CHECK(used > 0);
  CHECK(used < 50);  // far below the reservation of prompt + 50
  CHECK(ledger(g, a.key)["data"].Size() == 1);
}

TEST_CASE("a client that leaves mid-stream cancels the upstream, and usage settles, rest released",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.llm.providers = {provider(
                 "slow", up.url(), {{"X-Mock-Chunks", "50"}, {"X-Mock-Chunk-Interval-Ms", "50"}})};
             }};
  auto a = create_user(g, "alice");
  {
    test::connection c{g.port()};
    send_chat(c, a.key, chat_body(true, 500));
    std::string seen;
    REQUIRE(c.read_until("word1 ", seen));
  }  // the client closes after two chunks of fifty
  REQUIRE(eventually([&] { return ledger(g, a.key)["data"].Size() == 1; }));
  auto l = ledger(g, a.key);
  const auto completion = l["data"][0]["completion_tokens"].GetInt64();
  CHECK(completion >= 1);
  CHECK(completion < 50);  // fifty chunks were never sent
  const auto used = tokens_used(g, a.key);
  CHECK(used < 100);  // the reservation was prompt + 500
  CHECK(balance_micro(g, a.key) == 10'000'000 - l["data"][0]["amount_micro"].GetInt64());
  // The slot came back: the next call is served at once.
  auto status = json(g.call("GET", "/models/providers", ""));
  CHECK(status["count"].GetInt() == 1);
}

TEST_CASE("200 concurrent calls never overrun a token budget or a balance",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  // Each call reserves its prompt estimate + 40 tokens and holds up to
  // about 0.13 credits; it really uses 16 tokens and 0.034 credits.
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.limits.per_minute = 100'000;
               c.limits.requests_per_day = 100'000;
               c.limits.tokens_per_day = 1'000;
               c.limits.plans_per_hour.clear();
               c.accounts.initial_credits_micro = 2'000'000;  // 2 credits
               auto p = provider("mock", up.url(), {{"X-Mock-Latency-Ms", "20"}});
               p.max_concurrency = 64;
               p.queue_size = 1000;
               c.llm.providers = {p};
               c.server.max_connections = 1000;
               // Two I/O threads: sessions and upstream calls on strands.
               c.server.io_threads = 2;
             }};
  auto a = create_user(g, "alice");
  std::atomic<int> ok{0};
  std::atomic<int> refused{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 200; ++i)
    threads.emplace_back([&] {
      auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body(false, 40));
      if (r.status == 200)
        ++ok;
      else if (r.status == 429 || r.status == 402)
        ++refused;
      else
        ++other;
    });
  for (auto& t : threads)
    t.join();
  CHECK(other == 0);
  CHECK(ok + refused == 200);
  CHECK(ok > 0);
  CHECK(refused > 0);
  const auto used = tokens_used(g, a.key);
  const auto balance = balance_micro(g, a.key);
  INFO("ok " << ok << ", tokens used " << used << ", balance " << balance);
  CHECK(used <= 1'000);
  CHECK(balance >= 0);
  // Exact: every success charged 16 tokens and `cost`, nothing else.
  CHECK(used == 16 * ok);
  CHECK(balance == 2'000'000 - cost * ok);
  CHECK(static_cast<int>(ledger(g, a.key)["data"].Size()) == ok);
}

TEST_CASE("LLM routes refuse bad input with 400/404 and list models in both shapes",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  ::setenv("TOLLGATE_TEST_UPSTREAM_KEY", "sk-secret-upstream-key-123", 1);
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto p = provider("mock", up.url());
               p.api_key_env = "TOLLGATE_TEST_UPSTREAM_KEY";
               c.llm.providers = {p};
             }};
  auto a = create_user(g, "alice");
  // Each bad body, the parameter its error names ("" for none), and its message.
  struct bad_body {
    std::string body;
    const char* param;
    const char* message;
  };
  const std::string x = R"("messages":[{"role":"user","content":"x"}])";
  const std::vector<bad_body> bad = {
    {"not json", "", "the body must be a JSON object"},
    {"[]", "", "the body must be a JSON object"},
    {"{" + x + "}", "model", "model is required and must be a string"},
    {R"({"model":"",)" + x + "}", "model", "model is required"},
    {R"({"model":"m1"})", "messages", "messages must be a non-empty array"},
    {R"({"model":"m1","messages":[]})", "messages", "messages must be a non-empty array"},
    {R"({"model":"m1","messages":{"role":"user"}})", "messages", "non-empty array"},
    {R"({"model":"m1","messages":[{"content":"x"}]})", "messages", "each message needs a role"},
    {R"({"model":"m1","messages":[{"role":5,"content":"x"}]})", "messages", "needs a role"},
    {R"({"model":"m1","messages":["x"]})", "messages", "each message needs a role"},
    {R"({"model":"m1","messages":[{"role":"user","content":5}]})", "messages",
     "message content must be a string or an array of parts"},
    {R"({"model":"m1","messages":[{"role":"user","content":["x"]}]})", "messages",
     "an array of parts"},
    {R"({"model":"m1","stream":"yes",)" + x + "}", "stream", "stream must be a boolean"},
    {R"({"model":"m1","stream":null,)" + x + "}", "stream", "stream must be a boolean"},
    {R"({"model":"m1","max_tokens":0,)" + x + "}", "", "max_tokens must be a positive integer"},
    {R"({"model":"m1","max_tokens":-3,)" + x + "}", "", "max_tokens must be a positive integer"},
    {R"({"model":"m1","max_tokens":"9",)" + x + "}", "", "max_tokens must be a positive integer"},
    {R"({"model":"m1","max_tokens":5.0,)" + x + "}", "", "max_tokens must be a positive integer"},
    {R"({"model":"m1","max_tokens":9223372036854775808,)" + x + "}", "",
     "max_tokens must be a positive integer"},
    {R"({"model":"m1","max_completion_tokens":10000001,)" + x + "}", "",
     "max_completion_tokens must be a positive integer"},
    // Priced and reserved by one occurrence, served by the other: refused,
    // also when one is written with an escape.
    {R"({"model":"m1","model":"m2",)" + x + "}", "model", "'model' appears more than once"},
    {R"({"mo\u0064el":"m1","model":"m2",)" + x + "}", "model", "'model' appears more than once"},
    {R"({"model":"m1","max_tokens":1,"max_tokens":100000,)" + x + "}", "max_tokens",
     "'max_tokens' appears more than once"},
    // What simdjson does not parse (a byte-order mark, an integer beyond 64
    // bits) is read as before: the answer names what is wrong in it.
    {"\xEF\xBB\xBF" R"({"model":"m1"})", "messages", "messages must be a non-empty array"},
    {R"({"model":"m1","seed":99999999999999999999})", "messages",
     "messages must be a non-empty array"}};
  for (const auto& [body, param, message] : bad) {
    auto r = g.call("POST", "/v1/chat/completions", a.key, body);
    INFO(body << " -> " << r.body);
    CHECK(r.status == 400);
    auto e = json(r);
    CHECK(str(e["error"]["type"]) == "invalid_request_error");
    CHECK(str(e["error"]["message"]).find(message) != std::string::npos);
    if (*param == '\0')
      CHECK(e["error"]["param"].IsNull());
    else
      CHECK(str(e["error"]["param"]) == param);
  }
  CHECK(ledger(g, a.key)["data"].Size() == 0);  // none of them was charged
  auto r = g.call("POST", "/v1/chat/completions", a.key,
                  R"({"model":"nope","messages":[{"role":"user","content":"x"}]})");
  CHECK(r.status == 404);
  CHECK(str(json(r)["error"]["code"]) == "model_not_found");
  CHECK(g.call("POST", "/v1/chat/completions", "", chat_body()).status == 401);
  CHECK(g.call("POST", "/images/generate", a.key, R"({"model":"m1"})").status == 400);
  CHECK(g.call("POST", "/api/send-message", a.key, R"({"message":""})").status == 400);

  auto models = json(g.call("GET", "/v1/models", a.key));
  CHECK(str(models["object"]) == "list");
  CHECK(str(models["data"][0]["id"]) == "m1");
  auto listing = json(g.call("GET", "/models?provider=mock&limit=1", ""));
  CHECK(listing["count"].GetInt() == 1);
  CHECK(str(listing["data"][0]["provider"]) == "mock");
  CHECK(listing["data"][0]["pricing"]["prompt_per_mtok"].GetDouble() == 1000.0);
  CHECK(json(g.call("GET", "/models?provider=other", ""))["count"].GetInt() == 0);
  CHECK(g.call("GET", "/models?limit=0", "").status == 400);

  // Images through the upstream, in the gateway reference's shape.
  r = g.call("POST", "/images/generate", a.key, R"({"model":"m1","prompt":"a sunset"})");
  REQUIRE(r.status == 200);
  CHECK(json(r)["success"].GetBool());
  CHECK(json(r)["data"].Size() == 1);

  // The upstream key went upstream only: never in an answer.
  r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  CHECK(r.status == 200);
  for (const auto& [name, value] : r.headers)
    CHECK(value.find("sk-secret") == std::string::npos);
  CHECK(r.body.find("sk-secret") == std::string::npos);
  CHECK(g.call("GET", "/models/providers", "").body.find("sk-secret") == std::string::npos);
}

TEST_CASE("chat sessions: owned by their user, filled by ?session_id= on JSON and SSE",
          "[integration][llm][chat]") {
  mock up;
  test::temp_dir dir;
  const auto tweak = [&](core::config& c) { c.llm.providers = {provider("mock", up.url())}; };
  user alice;
  std::uint64_t id = 0;
  {
    instance g{dir.str("data"), core::system_clock::instance(), tweak};
    alice = create_user(g, "alice");
    auto bob = create_user(g, "bob");
    auto r = g.call("POST", "/chat/sessions", alice.key,
                    R"({"name":"My Chat Session","description":"Discussion about AI"})");
    REQUIRE(r.status == 201);
    auto d = json(r);
    CHECK(d["success"].GetBool());
    CHECK(str(d["name"]) == "My Chat Session");
    id = d["session_id"].GetUint64();
    const auto path = "/chat/sessions/" + std::to_string(id);

    // Bob cannot see, fill or delete it.
    CHECK(g.call("GET", path, bob.key).status == 404);
    CHECK(g.call("DELETE", path, bob.key).status == 404);
    CHECK(json(g.call("GET", "/chat/sessions", bob.key))["count"].GetInt() == 0);
    r = g.call("POST", "/v1/chat/completions?session_id=" + std::to_string(id), bob.key,
               chat_body());
    CHECK(r.status == 404);
    CHECK(str(json(r)["error"]["code"]) == "session_not_found");
    CHECK(tokens_used(g, bob.key) == 0);

    // Alice's JSON call and her stream both land in it.
    r = g.call("POST", "/v1/chat/completions?session_id=" + std::to_string(id), alice.key,
               chat_body());
    REQUIRE(r.status == 200);
    r = g.call("POST", "/v1/chat/completions?session_id=" + std::to_string(id), alice.key,
               chat_body(true));
    REQUIRE(r.status == 200);
    d = json(g.call("GET", path, alice.key));
    const auto& msgs = d["session"]["messages"];
    REQUIRE(msgs.Size() == 4);
    CHECK(str(msgs[0]["role"]) == "user");
    CHECK(str(msgs[0]["content"]) == "hello there");
    CHECK(str(msgs[1]["role"]) == "assistant");
    CHECK(str(msgs[1]["content"]) == "word0 word1 word2 ");
    CHECK(str(msgs[3]["content"]) == "word0 word1 word2 ");  // the stream, assembled
    CHECK(msgs[3]["id"].GetUint64() == 4);

    auto list = json(g.call("GET", "/chat/sessions", alice.key));
    CHECK(list["count"].GetInt() == 1);
    CHECK(list["data"][0]["message_count"].GetInt() == 4);

    for (const char* body : {"not json", R"({"name":""})", R"({"name":5})",
                             R"({"description":7})"})
      CHECK(g.call("POST", "/chat/sessions", alice.key, body).status == 400);
    CHECK(g.call("GET", "/chat/sessions/abc", alice.key).status == 400);
    CHECK(g.call("GET", "/chat/sessions/999", alice.key).status == 404);
    CHECK(g.call("GET", "/chat/sessions?limit=0", alice.key).status == 400);
  }
  // Durable, then deleted.
  instance g{dir.str("data"), core::system_clock::instance(), tweak};
  const auto path = "/chat/sessions/" + std::to_string(id);
  CHECK(json(g.call("GET", path, alice.key))["session"]["messages"].Size() == 4);
  auto r = g.call("DELETE", path, alice.key);
  CHECK(r.status == 200);
  CHECK(str(json(r)["message"]) == "Chat session deleted successfully");
  CHECK(g.call("GET", path, alice.key).status == 404);
}

TEST_CASE("a client that leaves before a JSON answer cancels the upstream call",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto p = provider("slow", up.url(), {{"X-Mock-Latency-Ms", "60000"}});
               p.max_concurrency = 1;
               c.llm.providers = {p};
               c.llm.agent_model = "m1";
             }};
  auto a = create_user(g, "alice");
  const auto in_flight = [&] { return calls_in_flight(g, a.key); };
  {
    test::connection c{g.port()};
    send_chat(c, a.key, chat_body());
    REQUIRE(eventually([&] { return in_flight() == 1; }));
  }  // the client goes; the mock would answer only after 60 s
  // The slot comes back long before the upstream would have answered, and
  // the prompt (which the upstream may have read) is what is charged.
  // (20 s: generous for a loaded CI machine, still a third of the latency.)
  REQUIRE(eventually([&] { return in_flight() == 0; }, 20s));
  REQUIRE(eventually([&] { return ledger(g, a.key)["data"].Size() == 1; }, 20s));
  CHECK(ledger(g, a.key)["data"][0]["completion_tokens"].GetInt() == 0);
  CHECK(tokens_used(g, a.key) < 50);
}

TEST_CASE("pipelined calls on one connection are all answered: the next request is not a leave",
          "[integration][llm]") {
  // While a call waits for its upstream, the session watches the client;
  // the next request's bytes arriving must not count as the client gone.
  // They are sent once the first call is in flight, so that they arrive on
  // a socket under watch (sent together, the first read takes them all).
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.llm.providers = {provider("mock", up.url(), {{"X-Mock-Latency-Ms", "500"}})};
               c.llm.agent_model = "m1";
             }};
  auto a = create_user(g, "alice");
  const auto in_flight = [&] { return calls_in_flight(g, a.key); };
  const auto chat = test::make_request("POST", "/v1/chat/completions",
                                       "Authorization: Bearer " + a.key + "\r\n", chat_body());
  test::connection c{g.port()};
  c.send(chat);
  REQUIRE(eventually([&] { return in_flight() == 1; }));
  c.send(chat + chat);
  for (int i = 0; i < 3; ++i) {
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(tokens_used(g, a.key) == 3 * 16);
  CHECK(balance_micro(g, a.key) == 10'000'000 - 3 * cost);
  CHECK(g.call("GET", "/metrics").body.find("reason=\"client_gone\"") == std::string::npos);
}

TEST_CASE("a client that half-closes after its request is taken as gone",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.llm.providers = {provider("slow", up.url(), {{"X-Mock-Latency-Ms", "60000"}})};
               c.llm.agent_model = "m1";  // /api/agent/status reports its provider
             }};
  auto a = create_user(g, "alice");
  test::connection c{g.port()};
  const auto in_flight = [&] { return calls_in_flight(g, a.key); };
  send_chat(c, a.key, chat_body());
  c.shut_write();
  // The upstream would answer after 60 s. The leave may come before the
  // upstream call starts or after; either way the slot and the reservation
  // come back at once.
  REQUIRE(eventually(
    [&] { return g.call("GET", "/metrics").body.find("reason=\"client_gone\"} 1") != std::string::npos; },
    20s));
  REQUIRE(eventually([&] { return in_flight() == 0; }, 20s));
  CHECK(tokens_used(g, a.key) < 50);
  CHECK(ledger(g, a.key)["data"].Size() <= 1);
}

TEST_CASE("a request limit under /v1/ answers 429 in OpenAI's envelope with the headers",
          "[integration][llm][limits]") {
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.limits.per_minute = 1;
               c.llm.providers = {provider("demo", "builtin:demo")};
             }};
  auto a = create_user(g, "alice");
  REQUIRE(g.call("GET", "/v1/models", a.key).status == 200);
  auto r = g.call("GET", "/v1/models", a.key);
  REQUIRE(r.status == 429);
  auto d = json(r);
  CHECK(str(d["error"]["type"]) == "rate_limit_error");
  CHECK(str(d["error"]["code"]) == "rate_limit_exceeded");
  CHECK(!d.HasMember("detail"));  // not the gateway body: the SDKs read error.*
  CHECK(std::stoi(r.header("retry-after")) >= 1);
  CHECK(r.header("x-ratelimit-remaining") == "0");
  CHECK(r.header("ratelimit-limit") == "1");
  // The same limit elsewhere answers the combined body.
  r = g.call("GET", "/user/balance", a.key);
  REQUIRE(r.status == 429);
  CHECK(str(json(r)["error"]) == "rate_limit_exceeded");
  CHECK(json(r)["status_code"].GetInt() == 429);
}

TEST_CASE("refused requests do not take a provider down, and its credential errors stay private",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto refusing = provider("refusing", up.url(), {{"X-Mock-Status", "400"}});
               refusing.retries = 0;
               auto locked = provider("locked", up.url(), {{"X-Mock-Status", "401"}});
               locked.retries = 0;
               locked.models[0].id = "m2";
               c.llm.providers = {refusing, locked};
               c.llm.agent_model = "m1";
             }};
  auto a = create_user(g, "alice");
  // Eight 400s in a row: the upstream's own error each time, never "down".
  for (int i = 0; i < 8; ++i) {
    auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
    CHECK(r.status == 400);
    CHECK(r.body.find("forced by X-Mock-Status") != std::string::npos);
  }
  CHECK(str(json(g.call("GET", "/api/agent/status", a.key))["status"]) == "online");
  CHECK(tokens_used(g, a.key) == 0);
  // A provider that refuses tollgate's key: 502, and its body is not passed on.
  auto r = g.call("POST", "/v1/chat/completions", a.key,
                  R"({"model":"m2","messages":[{"role":"user","content":"x"}]})");
  CHECK(r.status == 502);
  CHECK(r.body.find("forced by X-Mock-Status") == std::string::npos);
  CHECK(str(json(r)["error"]["message"]).find("refused the gateway's credentials")
        != std::string::npos);
}

TEST_CASE("an HTTP/1.0 client gets a stream unchunked, ended by the close, and HEAD gets no body",
          "[integration][llm][http]") {
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               c.llm.providers = {provider("demo", "builtin:demo")};
             }};
  auto a = create_user(g, "alice");
  const std::string body =
    R"({"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]})";
  {
    test::connection c{g.port()};
    c.send("POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer " + a.key
           + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    std::string seen;
    REQUIRE(c.closed_by_peer(&seen));
    CHECK(seen.find("HTTP/1.1 200") == 0);
    CHECK(seen.find("Transfer-Encoding") == std::string::npos);
    CHECK(seen.find("Connection: close") != std::string::npos);
    const auto start = seen.find("\r\n\r\n") + 4;
    CHECK(seen.compare(start, 6, "data: ") == 0);  // no chunk-size line
    CHECK(seen.find("data: [DONE]") != std::string::npos);
  }
  {
    // HEAD on a GET-only route: 405 with Content-Length but no body, so the
    // pipelined request after it is read correctly.
    test::connection c{g.port()};
    c.send("HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n"
           "Connection: close\r\n\r\n");
    std::string seen;
    REQUIRE(c.closed_by_peer(&seen));
    CHECK(seen.find("HTTP/1.1 405") == 0);
    const auto end_of_head = seen.find("\r\n\r\n") + 4;
    CHECK(seen.compare(end_of_head, 12, "HTTP/1.1 200") == 0);
  }
}

TEST_CASE("calls in flight or queued at shutdown settle what they hold", "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  const auto setup = [&](core::config& c) {
    auto p = provider("mock", up.url(), {{"X-Mock-Latency-Ms", "5000"}});
    p.max_concurrency = 1;  // the second call waits in the provider's queue
    p.queue_timeout = std::chrono::minutes{5};
    c.llm.providers = {p};
    c.server.shutdown_grace = 50ms;
  };
  std::string key;
  std::int64_t before = 0;
  {
    instance g{dir.str("data"), core::system_clock::instance(), setup};
    auto a = create_user(g, "alice");
    key = a.key;
    before = balance_micro(g, key);
    std::int64_t one_hold = 0;
    const auto call = [&] {
      try {
        (void)g.call("POST", "/v1/chat/completions", key, chat_body());
      } catch (const std::exception&) {
        // The gateway went away before answering: expected here.
      }
    };
    std::thread first{call};
    // The first holds its worst case while the upstream takes its time...
    REQUIRE(eventually([&] { return balance_micro(g, key) < before; }));
    one_hold = before - balance_micro(g, key);
    // ...and the second holds as much while it waits for the provider.
    std::thread second{call};
    REQUIRE(eventually([&] { return balance_micro(g, key) == before - 2 * one_hold; }));
    g.gw->shutdown();  // the drain gives up after 50 ms: both calls are open
    first.join();
    second.join();
  }
  // After a restart: both holds are gone; the call that reached the
  // upstream is charged its prompt (the upstream may have read it), the
  // queued one nothing. One ledger entry, nothing else.
  instance g{dir.str("data"), core::system_clock::instance(), setup};
  auto l = ledger(g, key);
  REQUIRE(l["data"].Size() == 1);
  const auto& e = l["data"][0];
  CHECK(e["completion_tokens"].GetInt64() == 0);
  const auto charged = e["amount_micro"].GetInt64();
  CHECK(charged == e["prompt_tokens"].GetInt64() * 1000);
  CHECK(balance_micro(g, key) == before - charged);
}

TEST_CASE("a call waiting out a retry's backoff settles at once when cancelled",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  const auto setup = [&](core::config& c) {
    auto p = provider("flaky", up.url(), {{"X-Mock-Status", "503"}});
    p.retries = 1;
    p.retry_backoff = std::chrono::seconds{20};  // far longer than any wait below
    c.llm.providers = {p};
    c.llm.agent_model = "m1";
    c.server.shutdown_grace = 50ms;
  };
  // The provider counts the first attempt's 503 when it gets the slot back,
  // right before the call starts its backoff.
  const auto failed = [](const instance& g, const std::string& key) {
    return json(g.call("GET", "/api/agent/status", key))["failed"].GetUint64();
  };
  SECTION("the client leaves") {
    instance g{dir.str("data"), core::system_clock::instance(), setup};
    auto a = create_user(g, "alice");
    const auto before = balance_micro(g, a.key);
    {
      test::connection c{g.port()};
      send_chat(c, a.key, chat_body());
      REQUIRE(eventually([&] { return failed(g, a.key) == 1; }));
      CHECK(balance_micro(g, a.key) < before);  // its worst case is held
    }
    // Back within seconds, not after the 20 s backoff.
    CHECK(eventually([&] { return balance_micro(g, a.key) == before; }));
    CHECK(tokens_used(g, a.key) == 0);
  }
  SECTION("the gateway shuts down") {
    std::string key;
    std::int64_t before = 0;
    {
      instance g{dir.str("data"), core::system_clock::instance(), setup};
      key = create_user(g, "alice").key;
      before = balance_micro(g, key);
      std::thread call{[&] {
        try {
          (void)g.call("POST", "/v1/chat/completions", key, chat_body());
        } catch (const std::exception&) {
          // The gateway went away before answering: expected here.
        }
      }};
      REQUIRE(eventually([&] { return failed(g, key) == 1; }));
      g.gw->shutdown();
      call.join();
    }
    // After a restart: the hold is gone and nothing was charged.
    instance g{dir.str("data"), core::system_clock::instance(), setup};
    CHECK(balance_micro(g, key) == before);
    CHECK(ledger(g, key)["data"].Size() == 0);
  }
}

TEST_CASE("a client that leaves while its call is queued gets its hold back at once",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               // The first call keeps the one slot far longer than the test.
               auto p = provider("slow", up.url(), {{"X-Mock-Latency-Ms", "30000"}});
               p.max_concurrency = 1;  // the second call waits in the queue
               p.queue_timeout = std::chrono::minutes{5};
               c.llm.providers = {p};
               c.llm.agent_model = "m1";
               c.server.shutdown_grace = 50ms;
             }};
  auto a = create_user(g, "alice");
  const auto before = balance_micro(g, a.key);
  const auto queued = [&] {
    return json(g.call("GET", "/api/agent/status", a.key))["rate_limits"]["queued"].GetUint64();
  };
  test::connection first{g.port()};
  send_chat(first, a.key, chat_body());
  REQUIRE(eventually([&] { return balance_micro(g, a.key) < before; }));
  const auto one_hold = before - balance_micro(g, a.key);
  {
    test::connection second{g.port()};
    send_chat(second, a.key, chat_body());
    REQUIRE(eventually([&] { return queued() == 1; }));
    CHECK(balance_micro(g, a.key) == before - 2 * one_hold);
  }
  // The second client left: out of the queue and its hold back, well
  // before the first call's 30 s and the queue's 5 minutes.
  CHECK(eventually([&] { return queued() == 0 && balance_micro(g, a.key) == before - one_hold; },
                   3s));
}

TEST_CASE("a call withdrawn from a fallback's queue ends as the client's cancel",
          "[integration][llm]") {
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto bad = provider("bad", up.url(), {{"X-Mock-Status", "503"}});
               bad.retries = 0;
               bad.fallbacks = {"busy"};
               auto busy = provider("busy", up.url(), {{"X-Mock-Latency-Ms", "30000"}});
               busy.max_concurrency = 1;
               busy.queue_timeout = std::chrono::minutes{5};
               // Only "busy" serves m2: the agent status then shows its queue.
               busy.models.push_back(busy.models[0]);
               busy.models[1].id = "m2";
               c.llm.providers = {bad, busy};
               c.llm.agent_model = "m2";
               c.server.shutdown_grace = 50ms;
             }};
  auto a = create_user(g, "alice");
  const auto metric = [&](const std::string& outcome) {
    const auto m = g.call("GET", "/metrics", "").body;
    return m.find("tollgate_llm_calls_total{provider=\"busy\",model=\"m1\",outcome=\"" + outcome
                  + "\"} 1")
           != std::string::npos;
  };
  test::connection first{g.port()};
  send_chat(first, a.key, chat_body());
  const auto before = balance_micro(g, a.key);
  {
    test::connection second{g.port()};
    send_chat(second, a.key, chat_body());
    // Refused by "bad", the second call waits in "busy"'s queue.
    REQUIRE(eventually([&] { return balance_micro(g, a.key) < before; }));
    REQUIRE(eventually([&] {
      return json(g.call("GET", "/api/agent/status", a.key))["rate_limits"]["queued"].GetUint64()
             == 1;
    }));
  }
  // Its client left: counted as cancelled, not as "bad"'s 503.
  CHECK(eventually([&] { return metric("cancelled"); }, 3s));
  CHECK_FALSE(metric("upstream_error"));
}

TEST_CASE("a response as SSE (/v1/responses): relayed, usage from response.completed",
          "[integration][llm]") {
  gateway_on_mock setup;
  auto& g = setup.g;
  auto a = create_user(g, "alice");
  test::connection c{g.port()};
  c.send(test::make_request("POST", "/v1/responses", "Authorization: Bearer " + a.key + "\r\n",
                            R"({"model":"m1","input":"hello there","stream":true})"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("content-type") == "text/event-stream");
  CHECK(r->body.find("event: response.output_text.delta") != std::string::npos);
  CHECK(r->body.find("event: response.completed") != std::string::npos);
  CHECK(r->body.find(R"("usage":{"input_tokens":7,"output_tokens":9})") != std::string::npos);
  // The usage came from inside response.completed: settled exactly.
  expect_one_mock_call_settled(c, g, a.key);
  CHECK(g.call("POST", "/v1/responses", a.key, R"({"model":"m1","input":"x","stream":"yes"})")
          .status
        == 400);

  // The built-in demo provider streams the same events.
  test::temp_dir dir2;
  instance d{dir2.str("data"), core::system_clock::instance(),
             [&](core::config& cfg) { cfg.llm.providers = {provider("demo", "builtin:demo")}; }};
  auto b = create_user(d, "bob");
  auto s = d.call("POST", "/v1/responses", b.key,
                  R"({"model":"m1","input":"hello there","stream":true})");
  CHECK(s.status == 200);
  CHECK(s.body.find("event: response.output_text.delta") != std::string::npos);
  CHECK(s.body.find("event: response.completed") != std::string::npos);
  CHECK(tokens_used(d, b.key) > 0);
}

TEST_CASE("a step of a call that throws ends that call only, and gives back what it held",
          "[integration][llm]") {
  // An exception in a `.then` handler of the call's used to end its runner:
  // every call the runner carried lost its state, and what they held (a
  // provider slot, tokens, a credit hold) stayed taken.
  mock up;
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(), [&](core::config& c) {
               auto p = provider("mock", up.url());
               p.max_concurrency = 1;  // a slot kept would block the next call
               p.queue_timeout = 2s;
               // Another user's call stays in flight meanwhile (on the one
               // runner a single scheduler thread gets).
               auto slow = provider("slow", up.url(), {{"X-Mock-Latency-Ms", "1500"}});
               slow.models[0].id = "m2";
               c.llm.providers = {p, slow};
             }};
  struct disarm {
    ~disarm() { http::llm::testing::fail_once_at(""); }
  } disarmed;
  auto a = create_user(g, "alice");
  auto b = create_user(g, "bob");
  // A paid call first: with usage above zero, a grant given back twice shows.
  REQUIRE(g.call("POST", "/v1/chat/completions", a.key, chat_body()).status == 200);
  const auto before = balance_micro(g, a.key);
  REQUIRE(tokens_used(g, a.key) == 16);
  const auto b_before = balance_micro(g, b.key);
  test::connection other{g.port()};
  auto m2 = chat_body();
  m2.replace(m2.find("\"m1\""), 4, "\"m2\"");
  send_chat(other, b.key, m2);
  REQUIRE(eventually([&] { return balance_micro(g, b.key) < b_before; }));  // in flight
  for (const char* step : {"tokens", "hold", "slot"}) {
    INFO("step " << step);
    http::llm::testing::fail_once_at(step);
    auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
    CHECK(r.status == 500);
    CHECK(str(json(r)["error"]["code"]) == "internal_error");
    CHECK(eventually([&] {
      return tokens_used(g, a.key) == 16 && balance_micro(g, a.key) == before;
    }));
  }
  http::llm::testing::fail_once_at("");
  // The one slot is free, and the next call is settled exactly: nothing was
  // given back twice.
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  CHECK(r.status == 200);
  CHECK(tokens_used(g, a.key) == 32);
  CHECK(balance_micro(g, a.key) == before - cost);
  // The call that was in flight on the same runner all along finished.
  auto o = other.read_response();
  REQUIRE(o);
  CHECK(o->status == 200);
  CHECK(eventually([&] { return balance_micro(g, b.key) == b_before - cost; }));
}

TEST_CASE("a store that refuses a call's writes: 503 instead of the answer, nothing charged",
          "[integration][llm]") {
  // A reservation and a hold are granted before their writes commit (with
  // the burst of actor work that sends the upstream request), so nothing of
  // the call may reach the client before they did. When the store refuses
  // them, the client gets a 503, never the upstream's answer, and the call
  // settles as nothing used.
  gateway_on_mock setup;
  auto& g = setup.g;
  store_hooks_off hooks_off;
  auto a = create_user(g, "alice");
  REQUIRE(g.call("POST", "/v1/chat/completions", a.key, chat_body()).status == 200);
  // Its charge is stored before the store starts refusing.
  REQUIRE(eventually([&] { return ledger(g, a.key)["data"].Size() == 1; }));
  const auto before = balance_micro(g, a.key);
  REQUIRE(tokens_used(g, a.key) == 16);
  for (const bool stream : {false, true}) {
    INFO("stream " << stream);
    storage::testing::refuse_writes(true);
    auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body(stream));
    storage::testing::refuse_writes(false);
    CHECK(r.status == 503);
    CHECK(r.header("content-type").find("event-stream") == std::string::npos);
    CHECK(str(json(r)["error"]["code"]) == "unavailable");
    CHECK(r.header("retry-after") == "1");
    CHECK(eventually([&] {
      return tokens_used(g, a.key) == 16 && balance_micro(g, a.key) == before;
    }));
  }
  // What the refused calls reserved and held went back, exactly once.
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body());
  CHECK(r.status == 200);
  CHECK(tokens_used(g, a.key) == 32);
  CHECK(balance_micro(g, a.key) == before - cost);
  CHECK(ledger(g, a.key)["data"].Size() == 2);
  const auto m = g.call("GET", "/metrics").body;
  CHECK(m.find(R"(tollgate_llm_calls_total{provider="mock",model="m1",outcome="unavailable"} 2)")
        != std::string::npos);
}

TEST_CASE("an answer that beats its call's writes waits for their commit, JSON and SSE",
          "[integration][llm]") {
  gateway_on_mock setup;
  auto& g = setup.g;
  store_hooks_off hooks_off;
  auto a = create_user(g, "alice");
  const auto before = balance_micro(g, a.key);
  for (const bool stream : {false, true}) {
    INFO("stream " << stream);
    const auto held = metric(g, "tollgate_llm_answers_held_total");
    REQUIRE(held >= 0);
    // The store is slow: the call's reservation and hold are granted, the
    // upstream answers, and their writes are still queued.
    storage::testing::hold_writes(true);
    test::connection c{g.port()};
    send_chat(c, a.key, chat_body(stream));
    REQUIRE(eventually([&] { return metric(g, "tollgate_llm_answers_held_total") == held + 1; }));
    // Held until the commit: not a byte of it reached the client.
    CHECK(c.nothing_received());
    storage::testing::hold_writes(false);
    // The next write's flush commits the held ones (an admin's credit here).
    REQUIRE(g.call("POST", "/admin/add_credits", g.admin(),
                   R"({"user_id":)" + std::to_string(a.id) + R"(,"credits":1})")
              .status
            == 200);
    auto answer = c.read_response();
    REQUIRE(answer);
    auto& r = *answer;
    CHECK(r.status == 200);
    if (stream) {
      CHECK(r.header("content-type").find("event-stream") != std::string::npos);
      CHECK(r.body.find("data: [DONE]") != std::string::npos);
    } else {
      CHECK(json(r)["usage"]["completion_tokens"].GetInt() == 9);
    }
  }
  // Both calls settled and charged exactly once.
  CHECK(eventually([&] {
    return tokens_used(g, a.key) == 32 && balance_micro(g, a.key) == before + 2'000'000 - 2 * cost;
  }));
  CHECK(ledger(g, a.key)["data"].Size() == 4);  // two credits, two charges
  // The write queue's commits are the store's commits too.
  const auto commits = metric(g, "tollgate_storage_commits_total");
  CHECK(commits >= 2);
  CHECK(metric(g, "tollgate_storage_writes_total") >= commits);
}

TEST_CASE("a demo stream the store refuses is a 503, counted as unavailable, not ok",
          "[integration][llm]") {
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(),
             [&](core::config& c) { c.llm.providers = {provider("demo", "builtin:demo")}; }};
  store_hooks_off hooks_off;
  auto a = create_user(g, "alice");
  const auto before = balance_micro(g, a.key);
  storage::testing::refuse_writes(true);
  auto r = g.call("POST", "/v1/chat/completions", a.key, chat_body(true));
  storage::testing::refuse_writes(false);
  CHECK(r.status == 503);
  CHECK(str(json(r)["error"]["code"]) == "unavailable");
  CHECK(eventually([&] { return balance_micro(g, a.key) == before; }));
  const auto m = g.call("GET", "/metrics").body;
  CHECK(m.find(R"(tollgate_llm_calls_total{provider="demo",model="m1",outcome="unavailable"} 1)")
        != std::string::npos);
  CHECK(m.find(R"(tollgate_llm_calls_total{provider="demo",model="m1",outcome="ok"} 0)")
        != std::string::npos);
  CHECK(metric(g, "tollgate_storage_commit_failures_total") >= 1);
}

TEST_CASE("with a writer thread, a ledger listing waits for an entry whose batch it holds",
          "[integration][llm][credits]") {
  store_hooks_off hooks;
  test::temp_dir dir;
  // Every batch goes to the writer thread (one request in flight is load).
  instance g{dir.str("data"), core::system_clock::instance(),
             [](core::config& c) { c.storage.writer_from = 1; }};
  const auto admin = g.admin();
  auto a = create_user(g, "alice");
  const auto before = ledger(g, a.key)["data"].Size();

  storage::testing::hold_writer(true);
  test::connection credit{g.port()};
  credit.send(test::make_request("POST", "/admin/add_credits",
                                 "Authorization: Bearer " + admin + "\r\n",
                                 R"({"user_id":)" + std::to_string(a.id) + R"(,"credits":2})"));
  REQUIRE(eventually([] { return storage::testing::writer_holding(); }));
  // The credit's batch is built (the wallet no longer has a write queued)
  // but not committed: the listing waits for it instead of reading the
  // store without it.
  test::connection listing{g.port(), 1s};
  listing.send(test::make_request("GET", "/user/ledger", "Authorization: Bearer " + a.key + "\r\n"));
  CHECK_FALSE(listing.read_response());  // nothing within its 1 s timeout
  storage::testing::hold_writer(false);
  auto c = credit.read_response();
  REQUIRE(c);
  CHECK(c->status == 200);
  auto l = listing.read_response();
  REQUIRE(l);
  REQUIRE(l->status == 200);
  CHECK(json(*l)["data"].Size() == before + 1);
}
