#include "app/gateway.hpp"

#include "actors/accounts.hpp"
#include "actors/chat_sessions.hpp"
#include "actors/key_directory.hpp"
#include "actors/router.hpp"
#include "actors/storage_actor.hpp"
#include "actors/wallet.hpp"
#include "app/config_loader.hpp"
#include "app/io_scheduler.hpp"
#include "http/client/client.hpp"
#include "http/llm/llm.hpp"
#include "http/llm/watch.hpp"
#include "http/routes.hpp"
#include "http/server/dispatcher.hpp"
#include "http/server/http_metrics.hpp"
#include "http/server/server.hpp"
#include "http/stream_relay.hpp"
#include "metrics/registry.hpp"
#include "storage/write_queue.hpp"

#include <tollgate/version.hpp>

#include <boost/asio/io_context.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <functional>
#include <iostream>
#include <thread>

namespace tollgate::app {

struct gateway::impl {
  core::config cfg;
  const core::clock& clock;
  // Declaration order is destruction order in reverse: metrics outlive
  // everything that records into them.
  metrics::registry registry;
  std::unique_ptr<caf::actor_system_config> caf_cfg;
  /// Set with `actors.scheduler = "io"`: runs the actors on the I/O threads
  /// once the server runs them.
  std::shared_ptr<io_lane> lane;
  /// Token and credit writes without fsync; its writer thread, when it has
  /// one, hands its acknowledgements to the lane.
  std::shared_ptr<storage::write_queue> writes;
  std::unique_ptr<caf::actor_system> system;
  actors::storage_actor storage;
  actors::key_directory_actor directory;
  /// The directory's live key actors, which routes ask straight.
  std::shared_ptr<actors::live_keys> keys = std::make_shared<actors::live_keys>();
  actors::accounts_actor accounts;
  actors::wallet_actor wallet;
  actors::chat_sessions_actor chat;
  /// The I/O threads' io_context: the server's sessions and the upstream
  /// client's calls both run on it. It goes after both.
  std::unique_ptr<boost::asio::io_context> io;
  std::shared_ptr<http::client::client> upstream;
  std::shared_ptr<http::llm::context> llm;
  std::vector<actors::router_actor> routers;
  http::route_set routes;
  std::unique_ptr<http::http_metrics> http_metrics;
  std::unique_ptr<http::dispatcher> dispatch;
  std::unique_ptr<http::server> server;
  std::string bootstrap_key;
  bool started = false;
  bool stopped = false;

  impl(core::config c, const core::clock& clk) : cfg(std::move(c)), clock(clk) {}
};

gateway::gateway(core::config cfg, const core::clock& clk)
  : impl_(std::make_unique<impl>(std::move(cfg), clk)) {}

gateway::~gateway() {
  shutdown();
}

void gateway::start() {
  auto& s = *impl_;
  const auto started = std::chrono::steady_clock::now();
  s.registry.gauges("tollgate_build_info", "Build information; the value is always 1.",
                    {"version"})
    .with({core::version})
    .set(1);
  s.registry.computed_gauge("tollgate_uptime_seconds", "Seconds since the gateway started.",
                            [started] {
                              return std::chrono::duration<double>(
                                       std::chrono::steady_clock::now() - started)
                                .count();
                            });
  s.registry.computed_gauge(
    "tollgate_stream_buffered_bytes",
    "Bytes of streamed answers (LLM streams, proxied bodies) held for clients that have not "
    "taken them yet.",
    [] { return static_cast<double>(http::relay::buffered_total().load()); });
  s.registry.computed_gauge(
    "tollgate_streams_paused",
    "Streamed answers whose upstream is held back because their client reads slower than it "
    "sends.",
    [] { return static_cast<double>(http::relay::paused_total().load()); });

  auto db = std::shared_ptr<storage::store>(
    storage::store::open({s.cfg.storage.data_dir, s.cfg.storage.sync_writes}));
  auto snapshot = actors::load_accounts(*db);
  auto wallet_snapshot = actors::load_wallet(*db);
  auto chat_snapshot = actors::load_chat_sessions(*db);
  spdlog::info("loaded {} users, {} keys, {} audit entries", snapshot.users.size(),
               snapshot.keys.size(), snapshot.audit.size());

  s.caf_cfg = std::make_unique<caf::actor_system_config>();
  const unsigned hw = std::max(1U, std::thread::hardware_concurrency());
  // By default the actors get the cores the I/O threads leave: on two
  // cores, one scheduler thread beside one I/O thread answered the LLM
  // route 1.5x faster at 1 connection and 2x at 32 than two scheduler
  // threads did (BENCHMARKS.md, "Threads").
  const unsigned io = std::max(1U, s.cfg.server.io_threads);
  const unsigned workers = s.cfg.actors.threads != 0 ? s.cfg.actors.threads
                           : hw > io                ? hw - io
                                                    : 1U;
  s.caf_cfg->set("scheduler.max-threads", static_cast<std::size_t>(workers));
  // CAF's idle workers poll with 50 us sleeps before they block on a
  // condition variable; every request that finds a worker in that phase
  // waits out a sleep. Blocking right after the spin phase halves /ping's
  // latency (BENCHMARKS.md).
  s.caf_cfg->set("work-stealing.aggressive-poll-attempts",
                 static_cast<std::size_t>(s.cfg.actors.aggressive_poll_attempts));
  s.caf_cfg->set("work-stealing.moderate-poll-attempts",
                 static_cast<std::size_t>(s.cfg.actors.moderate_poll_attempts));
  // The default: actors on the I/O threads. A request then reaches its
  // actors, and the upstream, without a thread waking another
  // (BENCHMARKS.md, "Actors on the I/O thread").
  if (s.cfg.actors.scheduler == "io")
    s.lane = io_lane::install(*s.caf_cfg);
  s.system = std::make_unique<caf::actor_system>(*s.caf_cfg);

  const auto storage_metrics = actors::make_storage_metrics(s.registry);
  s.storage = actors::spawn_storage_actor(
    *s.system, db, {s.cfg.storage.commit_delay, s.cfg.storage.max_batch}, storage_metrics);

  auto limits = std::make_shared<const core::limits_config>(s.cfg.limits);
  actors::key_directory_config dir_cfg;
  dir_cfg.idle_timeout = s.cfg.auth.key_idle_timeout;
  dir_cfg.limits = limits;
  dir_cfg.storage = s.storage;
  // Without fsync, token and credit writes go through a write queue: one
  // WriteBatch per burst of actor work on the io lane, at once with the
  // threads scheduler (README, "Storage and durability"); with fsync, through the storage
  // actor's group commit and its own thread.
  std::shared_ptr<storage::write_queue> writes;
  if (!s.cfg.storage.sync_writes)
    writes = storage::write_queue::over(db, [storage_metrics](std::size_t records, bool ok) {
      storage_metrics.committed(records, ok);
    });
  dir_cfg.direct = writes;
  dir_cfg.live = s.keys;
  s.writes = writes;
  s.directory = actors::spawn_key_directory(*s.system, s.clock, dir_cfg, s.registry);
  s.accounts = actors::spawn_accounts(
    *s.system, std::move(snapshot), s.storage, s.directory, s.clock,
    {s.cfg.accounts.initial_credits_micro, s.cfg.accounts.max_keys_per_user});
  caf::anon_send(s.directory, actors::lookup_atom::value, s.accounts);
  s.wallet = actors::spawn_wallet(*s.system, std::move(wallet_snapshot), s.storage, s.accounts,
                                  s.clock, writes);
  s.chat = actors::spawn_chat_sessions(*s.system, std::move(chat_snapshot), s.storage, s.clock);
  bootstrap_admin();

  bool needs_client = !s.cfg.routes.empty();
  for (const auto& p : s.cfg.llm.providers)
    needs_client = needs_client || p.base_url != "builtin:demo";
  s.io = std::make_unique<boost::asio::io_context>();
  if (needs_client) {
    http::client::client::options o;
    o.io = s.io.get();
    o.io_single_threaded = s.cfg.server.io_threads <= 1;
    s.upstream = std::make_shared<http::client::client>(o);
  }
  try {
    s.llm = http::llm::make_context(s.cfg.llm, *s.system, s.clock, s.upstream, &s.registry);
  } catch (const std::invalid_argument& e) {
    throw config_error(e.what());  // exit code 2, like every other bad setting
  }
  // Every [[limits.routes]] template under a proxy prefix is a route of that
  // proxy, so its limit has a route to apply to.
  auto proxies = s.cfg.routes;
  for (auto& p : proxies)
    for (const auto& l : s.cfg.limits.routes)
      if (l.path.rfind(p.prefix + "/", 0) == 0 || l.path == p.prefix)
        if (std::find(p.paths.begin(), p.paths.end(), l.path) == p.paths.end())
          p.paths.push_back(l.path);
  try {
    s.routes = http::build_routes(s.llm, proxies, s.upstream);
  } catch (const std::invalid_argument& e) {
    throw config_error(e.what());
  }
  actors::services svc;
  svc.storage = s.storage;
  svc.accounts = s.accounts;
  svc.directory = s.directory;
  svc.keys = s.keys;
  svc.wallet = s.wallet;
  svc.chat = s.chat;
  svc.writes = writes;
  svc.allow_anonymous = s.cfg.auth.allow_anonymous;
  svc.limits = limits;
  svc.limit_decisions = &s.registry.counters(
    "tollgate_limit_decisions_total",
    "Metered requests by route template, deciding (most restrictive) policy and outcome.",
    {"route", "policy", "outcome"});
  svc.metrics = &s.registry;
  svc.clock = &s.clock;
  svc.started = started;
  const unsigned n_routers = s.cfg.server.routers == 0 ? std::max(1U, s.cfg.server.io_threads)
                                                       : s.cfg.server.routers;
  for (unsigned i = 0; i < n_routers; ++i)
    s.routers.push_back(s.system->spawn(actors::router_impl, s.routes.handlers, svc));

  s.http_metrics = std::make_unique<http::http_metrics>(s.registry, *s.routes.table);
  s.dispatch = std::make_unique<http::dispatcher>(
    *s.system, s.routers,
    s.cfg.server.bridge == "actor" ? http::bridge_mode::actor : http::bridge_mode::responder);
  s.server = std::make_unique<http::server>(s.cfg.server, s.routes.table, *s.dispatch,
                                            *s.http_metrics, s.cfg.log.access_log, s.io.get());
  s.started = true;
  s.server->start();
  if (s.lane) {
    // One request in flight runs its actors on the I/O thread; with more,
    // they run on the lane's thread while the I/O thread serves the others.
    // With 0, they always run on the I/O thread.
    const auto* in_flight = &s.http_metrics->in_flight;
    const auto limit = static_cast<std::int64_t>(s.cfg.actors.inline_below);
    std::function<bool()> busy;
    if (limit > 0)
      busy = [in_flight, limit] { return in_flight->value() >= limit; };
    s.lane->attach(*s.io, std::move(busy));
    // Under load the writes' RocksDB commit leaves the thread that runs the
    // actors (BENCHMARKS.md, "A writer thread under load").
    if (s.writes && s.cfg.storage.writer_from > 0) {
      const auto from = static_cast<std::int64_t>(s.cfg.storage.writer_from);
      s.writes->offload([in_flight, from] { return in_flight->value() >= from; },
                        [lane = s.lane](std::function<void()> fn) { lane->post(std::move(fn)); });
    }
  }
  spdlog::info("tollgate {} listening on http://{}:{} (data dir {})", core::version,
               s.cfg.server.host, s.server->port(), s.cfg.storage.data_dir);
}

void gateway::bootstrap_admin() {
  auto& s = *impl_;
  const char* env = std::getenv("TOLLGATE_ADMIN_KEY");
  const std::string configured = env == nullptr ? "" : env;
  caf::scoped_actor self{*s.system};
  std::string generated;
  std::string failure;
  self->request(s.accounts, std::chrono::seconds{30}, actors::bootstrap_atom::value, configured)
    .receive([&](std::string& plaintext) { generated = std::move(plaintext); },
             [&](caf::error& e) { failure = actors::from_error(e).second; });
  if (!failure.empty())
    throw config_error(failure);
  if (!generated.empty()) {
    // Printed once, to the terminal only (never to the log): the store keeps
    // just its hash, so this is the only time anyone can see it.
    std::cerr << "\n  No users yet: created user 'admin' with this admin API key.\n"
                 "  It is shown once and stored only as a hash; keep it somewhere safe:\n\n    "
              << generated << "\n\n";
    s.bootstrap_key = generated;
  }
}

const std::string& gateway::bootstrap_key() const noexcept {
  return impl_->bootstrap_key;
}

std::uint16_t gateway::port() const noexcept {
  return impl_->server ? impl_->server->port() : 0;
}

bool gateway::shutdown() {
  auto& s = *impl_;
  if (s.stopped)
    return true;
  s.stopped = true;
  bool ok = true;
  if (s.server) {
    spdlog::info("shutdown: draining connections (grace {} ms)", s.cfg.server.shutdown_grace.count());
    ok = s.server->drain(s.cfg.server.shutdown_grace);
    s.server->stop();
  }
  // No thread runs the io_context now: the actors go back to a thread of
  // their own for the rest of the shutdown.
  if (s.lane)
    s.lane->detach();
  // What the writer holds commits now; its acknowledgements go to the
  // lane's own thread.
  if (s.writes)
    s.writes->stop_offload();
  if (s.llm && s.llm->watch) {
    // Calls queued at a provider are refused now instead of at their queue
    // timeout, so they settle within the wait below. First: a call
    // cancelled next gives its slot back, which must not start a queued
    // call (it would reach the upstream and be charged).
    for (const auto& p : s.llm->providers)
      if (p.actor)
        caf::anon_send(p.actor, actors::stop_atom::value);
  }
  if (s.upstream) {
    // Upstream calls still in flight cannot go on without the I/O threads:
    // each is told now, so that its call settles the tokens and credits it
    // holds before the counters and the ledger are flushed below. (Left
    // frozen, a call's handlers would also keep the storage actor's handle
    // in the stopped io_context's queue, and the actor system would wait
    // for that detached actor forever.)
    s.upstream->cancel_all();
  }
  if (s.llm && s.llm->watch) {
    // Every call still open is cancelled: one waiting out a retry's backoff
    // (up to 30 s) or still in a mailbox settles now, not after the wait.
    s.llm->watch->cancel_all();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds{3};
    while (s.llm->watch->size() > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    if (const auto left = s.llm->watch->size(); left > 0)
      spdlog::warn("shutdown: {} LLM calls did not finish; what they hold stays held", left);
  }
  if (s.system) {
    if (s.directory) {
      // Key counters first, so the storage flush below includes them.
      caf::scoped_actor self{*s.system};
      self->request(s.directory, std::chrono::seconds{15}, actors::flush_atom::value)
        .receive([](std::uint64_t n) { spdlog::info("shutdown: saved the counters of {} keys", n); },
                 [&](caf::error& e) {
                   spdlog::error("shutdown: key counters not saved: {}", to_string(e));
                   ok = false;
                 });
    }
    if (s.storage) {
      caf::scoped_actor self{*s.system};
      self->request(s.storage, std::chrono::seconds{10}, actors::flush_atom::value)
        .receive(
          [&](const actors::write_ack& ack) {
            if (!ack.ok()) {
              spdlog::error("shutdown: storage flush failed: {}", ack.error);
              ok = false;
            }
          },
          [&](caf::error& e) {
            spdlog::error("shutdown: storage flush did not complete: {}", to_string(e));
            ok = false;
          });
    }
    for (auto& r : s.routers)
      caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
    if (s.llm)
      http::llm::stop_context(*s.llm);
    if (s.accounts)
      caf::anon_send_exit(s.accounts, caf::exit_reason::user_shutdown);
    if (s.wallet)
      caf::anon_send_exit(s.wallet, caf::exit_reason::user_shutdown);
    if (s.chat)
      caf::anon_send_exit(s.chat, caf::exit_reason::user_shutdown);
    if (s.directory)
      caf::anon_send_exit(s.directory, caf::exit_reason::user_shutdown);
    s.accounts = nullptr;
    s.wallet = nullptr;
    s.chat = nullptr;
    s.directory = nullptr;
    if (s.storage)
      caf::anon_send_exit(s.storage, caf::exit_reason::user_shutdown);
    s.routers.clear();
    s.storage = nullptr;
    // Actors first: a router may still hold responders that post to the
    // server's io_context, so that must outlive every actor.
    s.system.reset();  // waits for every actor to finish
    // Then the client (its sockets belong to the io_context; the routes'
    // proxy handlers and the LLM context hold it too), the server, and the
    // io_context with whatever its queue still holds (sessions, responders),
    // all while the metrics and the dispatcher they point to still exist.
    s.routes = {};
    s.llm.reset();
    s.upstream.reset();
    s.server.reset();
    s.io.reset();
    s.dispatch.reset();
  }
  if (s.started)
    spdlog::info("shutdown: complete");
  return ok;
}

metrics::registry& gateway::metrics() noexcept {
  return impl_->registry;
}

actors::live_keys& gateway::live_keys() noexcept {
  return *impl_->keys;
}

std::size_t gateway::llm_calls_open() const {
  const auto& s = *impl_;
  return s.llm && s.llm->watch ? s.llm->watch->size() : 0;
}

} // namespace tollgate::app
