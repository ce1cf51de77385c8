#include "actors/accounts.hpp"
#include "actors/key_directory.hpp"
#include "actors/provider.hpp"
#include "actors/router.hpp"
#include "actors/storage_actor.hpp"
#include "actors/wallet.hpp"
#include "core/api_key.hpp"
#include "metrics/registry.hpp"

#include "support/temp_dir.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <catch2/catch.hpp>

#include <future>

using namespace tollgate;
using namespace std::chrono_literals;

namespace {

struct actor_env {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
};

std::vector<storage::write_op> one_write(const std::string& key, const std::string& value) {
  return {{static_cast<std::uint8_t>(storage::column::usage), key, value, false}};
}

std::uint64_t counter_value(metrics::registry& reg, const std::string& name) {
  const auto text = reg.expose();
  const auto pos = text.find("\n" + name + " ");
  REQUIRE(pos != std::string::npos);
  return std::stoull(text.substr(pos + name.size() + 2));
}

class promise_out final : public core::responder {
public:
  void respond(core::api_response&& r) noexcept override { p.set_value(std::move(r)); }
  std::promise<core::api_response> p;
};

} // namespace

TEST_CASE("storage actor acknowledges writes only after their group commit", "[actors][storage]") {
  test::temp_dir dir;
  actor_env env;
  metrics::registry reg;
  auto db = std::shared_ptr<storage::store>(storage::store::open({dir.str("db"), false}));
  // A long commit delay: only max_batch or an explicit flush can commit.
  auto st = actors::spawn_storage_actor(env.sys, db, {10s, 10}, reg);
  caf::scoped_actor self{env.sys};

  for (int i = 0; i < 5; ++i)
    self->send(st, actors::write_atom::value, one_write("k" + std::to_string(i), "v"));
  bool early_ack = false;
  self->receive([&](const actors::write_ack&) { early_ack = true; },
                caf::after(200ms) >> [] {});
  CHECK_FALSE(early_ack);
  CHECK(counter_value(reg, "tollgate_storage_commits_total") == 0);

  self->request(st, 5s, actors::flush_atom::value)
    .receive([](const actors::write_ack& ack) { CHECK(ack.ok()); },
             [](caf::error& e) { FAIL(to_string(e)); });
  int acks = 0;
  self->receive_for(acks, 5)([](const actors::write_ack& ack) { CHECK(ack.ok()); });
  CHECK(counter_value(reg, "tollgate_storage_commits_total") == 1);
  CHECK(counter_value(reg, "tollgate_storage_writes_total") == 5);
  caf::anon_send_exit(st, caf::exit_reason::user_shutdown);
}

TEST_CASE("storage actor commits a full batch at once and reads back", "[actors][storage]") {
  test::temp_dir dir;
  actor_env env;
  metrics::registry reg;
  auto db = std::shared_ptr<storage::store>(storage::store::open({dir.str("db"), false}));
  auto st = actors::spawn_storage_actor(env.sys, db, {10s, 10}, reg);
  caf::scoped_actor self{env.sys};
  for (int i = 0; i < 100; ++i)
    self->send(st, actors::write_atom::value, one_write("k" + std::to_string(i), std::to_string(i)));
  int acks = 0;
  self->receive_for(acks, 100)([](const actors::write_ack& ack) { CHECK(ack.ok()); });
  // 100 writes in batches of at most 10 and no timer: exactly 10 commits.
  CHECK(counter_value(reg, "tollgate_storage_commits_total") == 10);

  self
    ->request(st, 5s, actors::read_atom::value,
              static_cast<std::uint8_t>(storage::column::usage), std::string{"k42"})
    .receive(
      [](const actors::read_result& r) {
        CHECK(r.found);
        CHECK(r.value == "42");
      },
      [](caf::error& e) { FAIL(to_string(e)); });
  self->request(st, 5s, actors::health_atom::value)
    .receive(
      [](const actors::storage_health& h) {
        CHECK(h.ok);
        CHECK(h.pending == 0);
        CHECK(h.schema == storage::schema_version);
      },
      [](caf::error& e) { FAIL(to_string(e)); });
  caf::anon_send_exit(st, caf::exit_reason::user_shutdown);
}

TEST_CASE("storage actor without delay commits as soon as its mailbox is drained",
          "[actors][storage]") {
  test::temp_dir dir;
  actor_env env;
  metrics::registry reg;
  auto db = std::shared_ptr<storage::store>(storage::store::open({dir.str("db"), false}));
  auto st = actors::spawn_storage_actor(env.sys, db, {0ms, 1024}, reg);
  caf::scoped_actor self{env.sys};
  self->request(st, 5s, actors::write_atom::value, one_write("a", "1"))
    .receive([](const actors::write_ack& ack) { CHECK(ack.ok()); },
             [](caf::error& e) { FAIL(to_string(e)); });
  CHECK(counter_value(reg, "tollgate_storage_writes_total") == 1);
  caf::anon_send_exit(st, caf::exit_reason::user_shutdown);
}

TEST_CASE("router runs the handler of the route id and contains failures", "[actors][router]") {
  actor_env env;
  auto table = std::make_shared<actors::handler_table>();
  table->error = [](core::errc e, std::string_view detail) {
    core::api_response r;
    r.status = e == core::errc::not_found ? 404 : 500;
    r.body = std::string{detail};
    return r;
  };
  table->routes.push_back([](actors::router_pointer, const actors::services&,
                             core::api_request& req, core::responder_ptr& out) {
    core::api_response r;
    r.body = "echo " + req.path + " " + std::string{req.param("id")};
    out->respond(std::move(r));
  });
  table->routes.push_back([](actors::router_pointer, const actors::services&, core::api_request&,
                             core::responder_ptr&) { throw std::runtime_error("boom"); });
  auto router = env.sys.spawn(actors::router_impl, std::shared_ptr<const actors::handler_table>{table},
                              actors::services{});

  const auto ask = [&](std::uint32_t route) {
    core::api_request req;
    req.path = "/x";
    req.route_id = route;
    req.params.emplace_back("id", "7");
    auto out = std::make_shared<promise_out>();
    auto fut = out->p.get_future();
    caf::anon_send(router, actors::dispatch_atom::value, std::move(req),
                   core::responder_ptr{out});
    REQUIRE(fut.wait_for(5s) == std::future_status::ready);
    return fut.get();
  };
  CHECK(ask(0).body == "echo /x 7");
  const auto failed = ask(1);
  CHECK(failed.status == 500);
  CHECK(failed.body == "Internal Server Error");
  CHECK(ask(99).status == 404);

  // The request/response form used by per-request bridge actors.
  caf::scoped_actor self{env.sys};
  core::api_request req;
  req.path = "/y";
  self->request(router, 5s, actors::handle_atom::value, req)
    .receive([](const core::api_response& r) { CHECK(r.body == "echo /y "); },
             [](caf::error& e) { FAIL(to_string(e)); });
  caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
}

namespace {

actors::storage_actor::behavior_type refusing_storage() {
  return {
    [](actors::write_atom, std::vector<storage::write_op>&) {
      return actors::write_ack{"disk full"};
    },
    [](actors::read_atom, std::uint8_t, const std::string&) { return actors::read_result{}; },
    [](actors::scan_atom, std::uint8_t, const std::string&, std::uint32_t) {
      return actors::scan_result{};
    },
    [](actors::health_atom) { return actors::storage_health{}; },
    [](actors::flush_atom) { return actors::write_ack{}; },
    [](actors::commit_atom) {},
  };
}

} // namespace

TEST_CASE("accounts undo a change that storage refused", "[actors][accounts]") {
  actor_env env;
  metrics::registry reg;
  core::manual_clock clock;
  actors::accounts_snapshot snap;
  core::user_record u;
  u.id = 1;
  u.username = "alice";
  snap.users.push_back(u);
  snap.next_user = 2;
  auto directory = actors::spawn_key_directory(env.sys, clock, {}, reg);
  auto accounts = actors::spawn_accounts(env.sys, snap, env.sys.spawn(refusing_storage),
                                         directory, clock, {});
  caf::scoped_actor self{env.sys};
  actors::new_key nk;
  nk.user_id = 1;
  nk.name = "k";
  nk.env = "live";
  self->request(accounts, 5s, actors::create_key_atom::value, nk)
    .receive([](const actors::created_key&) { FAIL("the write was refused"); },
             [](caf::error& e) {
               auto [code, detail] = actors::from_error(e);
               CHECK(code == core::errc::unavailable);
               CHECK(detail == "storage is failing; nothing was changed");
             });
  self->request(accounts, 5s, actors::list_keys_atom::value, std::uint64_t{0}, actors::page{})
    .receive([](const actors::key_list& l) { CHECK(l.total == 0); },
             [](caf::error& e) { FAIL(to_string(e)); });
  self->request(accounts, 5s, actors::audit_atom::value, actors::audit_filter{})
    .receive([](const actors::audit_page& p) { CHECK(p.total == 0); },
             [](caf::error& e) { FAIL(to_string(e)); });
  actors::role_change rc;
  rc.user_id = 1;
  rc.role = "admin";
  self->request(accounts, 5s, actors::set_role_atom::value, rc)
    .receive([](const actors::role_changed&) { FAIL("the write was refused"); },
             [](caf::error&) {});
  self->request(accounts, 5s, actors::get_user_atom::value, std::uint64_t{1})
    .receive([](const core::user_record& user) { CHECK(user.role == "user"); },
             [](caf::error& e) { FAIL(to_string(e)); });
  caf::anon_send_exit(accounts, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
}

namespace {

/// Storage, accounts and a key directory with limits over one store.
struct key_env {
  actor_env env;
  metrics::registry reg;
  core::manual_clock clock{std::chrono::system_clock::time_point{std::chrono::hours{24 * 20000}}};
  actors::storage_actor storage;
  actors::key_directory_actor directory;
  actors::accounts_actor accounts;
  std::string hash;
  bool graceful = true;  ///< false: no flush at the end, as in a crash

  key_env(const std::string& db_dir, std::int64_t tokens_per_day) {
    auto db = std::shared_ptr<storage::store>(storage::store::open({db_dir, false}));
    auto snap = actors::load_accounts(*db);
    storage = actors::spawn_storage_actor(env.sys, db, {0ms, 1024}, reg);
    auto limits = std::make_shared<core::limits_config>();
    limits->tokens_per_day = tokens_per_day;
    actors::key_directory_config cfg;
    cfg.limits = limits;
    cfg.storage = storage;
    directory = actors::spawn_key_directory(env.sys, clock, cfg, reg);
    const bool fresh = snap.users.empty();
    core::user_record u;
    core::key_record k;
    if (fresh) {
      u.id = 1;
      u.username = "alice";
      k.id = 1;
      k.user_id = 1;
      k.hash = core::api_key::sha256_hex("not-a-real-key");
      snap.users.push_back(u);
      snap.keys.push_back(k);
    }
    hash = snap.keys.front().hash;
    accounts = actors::spawn_accounts(env.sys, snap, storage, directory, clock, {});
    caf::anon_send(directory, actors::lookup_atom::value, accounts);
  }
  ~key_env() {
    caf::scoped_actor self{env.sys};
    if (graceful) {
      self->request(directory, 5s, actors::flush_atom::value).receive([](std::uint64_t) {},
                                                                      [](caf::error&) {});
      self->request(storage, 5s, actors::flush_atom::value).receive([](actors::write_ack&) {},
                                                                    [](caf::error&) {});
    }
    for (auto* a : {&directory})
      caf::anon_send_exit(*a, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(accounts, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(storage, caf::exit_reason::user_shutdown);
  }
};

} // namespace

TEST_CASE("200 concurrent token reservations never overrun a budget", "[actors][tokens]") {
  test::temp_dir dir;
  key_env k{dir.str("db"), 100'000};
  caf::scoped_actor self{k.env.sys};
  for (int i = 0; i < 200; ++i)
    self->send(k.directory, actors::reserve_atom::value, k.hash, std::int64_t{1000});
  int granted = 0;
  int refused = 0;
  int received = 0;
  self->receive_for(received, 200)([&](const actors::token_reservation& r) {
    if (r.granted) {
      ++granted;
    } else {
      ++refused;
      CHECK(r.budget == "tokens_day");
      CHECK(r.remaining_day == 0);
      CHECK(r.retry_after >= 1);
    }
  });
  CHECK(granted == 100);
  CHECK(refused == 100);

  // Settling gives back what was not used; real use is always counted.
  self->request(k.directory, 5s, actors::settle_atom::value, k.hash, std::int64_t{1000},
                std::int64_t{400})
    .receive(
      [](const actors::key_usage& u) {
        for (const auto& p : u.policies)
          if (p.name == "tokens_day")
            CHECK(p.used == 99'400);
      },
      [](caf::error& e) { FAIL(to_string(e)); });
  self->request(k.directory, 5s, actors::reserve_atom::value, k.hash, std::int64_t{601})
    .receive([](const actors::token_reservation& r) { CHECK_FALSE(r.granted); },
             [](caf::error& e) { FAIL(to_string(e)); });
  self->request(k.directory, 5s, actors::reserve_atom::value, k.hash, std::int64_t{600})
    .receive([](const actors::token_reservation& r) { CHECK(r.granted); },
             [](caf::error& e) { FAIL(to_string(e)); });
}

TEST_CASE("token usage is stored before it is acknowledged", "[actors][tokens]") {
  test::temp_dir dir;
  {
    key_env k{dir.str("db"), 10'000};
    k.graceful = false;  // no shutdown flush: only the write-through can have stored it
    caf::scoped_actor self{k.env.sys};
    self->request(k.directory, 5s, actors::reserve_atom::value, k.hash, std::int64_t{7000})
      .receive([](const actors::token_reservation& r) { REQUIRE(r.granted); },
               [](caf::error& e) { FAIL(to_string(e)); });
  }
  key_env again{dir.str("db"), 10'000};
  caf::scoped_actor self{again.env.sys};
  self->request(again.directory, 5s, actors::reserve_atom::value, again.hash, std::int64_t{3001})
    .receive([](const actors::token_reservation& r) { CHECK_FALSE(r.granted); },
             [](caf::error& e) { FAIL(to_string(e)); });
}

TEST_CASE("a settlement never leaves less use stored than the key made", "[actors][tokens]") {
  // Use above the reservation is stored before the settlement is
  // acknowledged. Tokens given back may be stored later (the stored
  // reservation already covers the use), so a crash in between overstates
  // the key's use, never understates it.
  test::temp_dir dir;
  const auto reserve = [](key_env& k, std::int64_t tokens) {
    caf::scoped_actor self{k.env.sys};
    bool granted = false;
    self->request(k.directory, 5s, actors::reserve_atom::value, k.hash, tokens)
      .receive([&](const actors::token_reservation& r) { granted = r.granted; },
               [](caf::error& e) { FAIL(to_string(e)); });
    return granted;
  };
  const auto settle = [](key_env& k, std::int64_t reserved, std::int64_t used) {
    caf::scoped_actor self{k.env.sys};
    self->request(k.directory, 5s, actors::settle_atom::value, k.hash, reserved, used)
      .receive([](const actors::key_usage&) {}, [](caf::error& e) { FAIL(to_string(e)); });
  };
  {
    key_env k{dir.str("over"), 10'000};
    k.graceful = false;  // a crash: no flush
    REQUIRE(reserve(k, 1000));
    settle(k, 1000, 3000);
  }
  {
    key_env k{dir.str("over"), 10'000};
    CHECK_FALSE(reserve(k, 7001));  // 3,000 were used
    CHECK(reserve(k, 7000));
  }
  {
    key_env k{dir.str("under"), 10'000};
    k.graceful = false;
    REQUIRE(reserve(k, 1000));
    settle(k, 1000, 400);
  }
  {
    key_env k{dir.str("under"), 10'000};
    CHECK_FALSE(reserve(k, 9601));  // at least the 400 used are stored
  }
}

TEST_CASE("a waiter withdrawn from the head of a provider's queue lets the next one go",
          "[actors][provider]") {
  actor_env env;
  core::manual_clock clock;
  core::provider_config cfg;
  cfg.name = "p";
  cfg.max_concurrency = 8;
  cfg.queue_size = 8;
  cfg.queue_timeout = std::chrono::minutes{5};
  cfg.tokens_per_minute = 60;  // a token a second
  cfg.burst_tokens = 10;
  auto p = actors::spawn_provider(env.sys, cfg, clock);
  caf::scoped_actor self{env.sys};
  const auto slot = [&](std::int64_t tokens, std::uint64_t ticket) {
    actors::provider_slot out;
    self->request(p, 5s, actors::acquire_atom::value, tokens, ticket)
      .receive([&](const actors::provider_slot& s) { out = s; },
               [](caf::error& e) { FAIL(to_string(e)); });
    return out;
  };
  REQUIRE(slot(10, 1).granted);  // the bucket is empty now
  clock.advance(2s);             // two tokens back
  // A waiter for 50 tokens (48 s away) heads the queue, one for 1 waits behind.
  self->send(p, actors::acquire_atom::value, std::int64_t{50}, std::uint64_t{2});
  self->send(p, actors::acquire_atom::value, std::int64_t{1}, std::uint64_t{3});
  self->send(p, actors::withdraw_atom::value, std::uint64_t{2});
  std::vector<actors::provider_slot> answers;
  int received = 0;
  self->receive_for(received, 2)(
    [&](const actors::provider_slot& s) { answers.push_back(s); },
    caf::after(std::chrono::seconds{3}) >> [&] { FAIL("a waiter was left waiting"); });
  REQUIRE(answers.size() == 2);
  CHECK_FALSE(answers[0].granted);
  CHECK(answers[0].refusal == "cancelled");
  CHECK(answers[1].granted);  // at once, not at the old head's tick
  caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
}

TEST_CASE("ledger keys are zero-padded to 20 digits, so they sort by number", "[actors][wallet]") {
  using tollgate::actors::balance_key;
  using tollgate::actors::entry_key;
  CHECK(balance_key(0) == "b/00000000000000000000");
  CHECK(balance_key(42) == "b/00000000000000000042");
  CHECK(balance_key(18446744073709551615ULL) == "b/18446744073709551615");
  CHECK(entry_key(7, 1234567890123ULL) == "e/00000000000000000007/00000001234567890123");
  CHECK(entry_key(7, 9) < entry_key(7, 10));
  CHECK(entry_key(7, 18446744073709551615ULL) < entry_key(8, 0));
}
