#include "app/io_scheduler.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <future>
#include <thread>

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;

std::uint64_t this_thread_hash() {
  return std::hash<std::thread::id>{}(std::this_thread::get_id());
}

/// Answers with the hash of the thread it runs on.
caf::behavior where(caf::event_based_actor*) {
  return {[](caf::get_atom) -> std::uint64_t { return this_thread_hash(); }};
}

/// Asks `next` and passes its answer on, plus its own thread: a chain of two
/// actors, so the second is scheduled by the first (exec_later).
caf::behavior relay(caf::event_based_actor* self, caf::actor next) {
  return {[=](caf::get_atom) -> caf::result<std::uint64_t, std::uint64_t> {
    auto rp = self->make_response_promise<std::uint64_t, std::uint64_t>();
    self->request(next, 5s, caf::get_atom::value).then([rp](std::uint64_t t) mutable {
      rp.deliver(this_thread_hash(), t);
    });
    return rp;
  }};
}

std::uint64_t ask(caf::actor_system& sys, const caf::actor& a) {
  caf::scoped_actor self{sys};
  std::uint64_t out = 0;
  self->request(a, 5s, caf::get_atom::value)
    .receive([&](std::uint64_t t) { out = t; }, [&](caf::error& e) { FAIL(to_string(e)); });
  return out;
}

/// An io_context run by one thread, as the server runs it.
struct io_thread {
  net::io_context ioc;
  std::uint64_t id = 0;
  std::thread t;

  io_thread() {
    std::promise<std::uint64_t> started;
    auto f = started.get_future();
    t = std::thread{[this, &started] {
      auto guard = net::make_work_guard(ioc);
      net::post(ioc, [&started] { started.set_value(this_thread_hash()); });
      ioc.run();
    }};
    id = f.get();
  }
  void stop() {
    ioc.stop();
    if (t.joinable())
      t.join();
  }
  ~io_thread() { stop(); }
};

} // namespace

TEST_CASE("the io lane runs actors on the I/O thread once attached, and off it before and after",
          "[app][scheduler]") {
  const auto test_thread = this_thread_hash();
  caf::actor_system_config cfg;
  auto lane = tollgate::app::io_lane::install(cfg);
  io_thread io;
  {
    caf::actor_system sys{cfg};
    auto a = sys.spawn(where);
    auto b = sys.spawn(relay, sys.spawn(where));

    // Before attach: the lane's own thread.
    const auto own = ask(sys, a);
    CHECK(own != test_thread);
    CHECK(own != io.id);

    std::atomic<bool> busy{false};
    lane->wait_idle();  // the own thread has finished `a`'s last step
    lane->attach(io.ioc, [&busy] { return busy.load(); });
    CHECK(ask(sys, a) == io.id);
    {
      // A chain: the second actor, scheduled by the first, stays there too.
      caf::scoped_actor self{sys};
      self->request(b, 5s, caf::get_atom::value)
        .receive(
          [&](std::uint64_t first, std::uint64_t second) {
            CHECK(first == io.id);
            CHECK(second == io.id);
          },
          [&](caf::error& e) { FAIL(to_string(e)); });
    }

    // Other requests in flight: the actors leave the I/O thread to them.
    // (wait_idle: the last burst has ended, so the next one is decided anew.)
    lane->wait_idle();
    busy = true;
    CHECK(ask(sys, a) == own);
    lane->wait_idle();
    busy = false;
    CHECK(ask(sys, a) == io.id);

    // The I/O thread stops (server shutdown): the actors still answer.
    io.stop();
    lane->detach();
    CHECK(ask(sys, a) == own);
    anon_send_exit(a, caf::exit_reason::user_shutdown);
    anon_send_exit(b, caf::exit_reason::user_shutdown);
  }  // the system's shutdown ends the lane's thread; a hang here fails the test's timeout
}

/// Answers with its thread, and counts its steps in `steps`. The first step
/// of all queues `first_step` on the io_context.
caf::behavior counted(caf::event_based_actor*, std::atomic<int>* steps,
                      std::function<void()>* first_step) {
  return {[=](caf::get_atom) -> std::uint64_t {
    if (++*steps == 1)
      (*first_step)();
    return this_thread_hash();
  }};
}

TEST_CASE("the io lane yields to the sockets after 64 steps, and under load hands the rest over",
          "[app][scheduler]") {
  caf::actor_system_config cfg;
  auto lane = tollgate::app::io_lane::install(cfg);
  io_thread io;
  caf::actor_system sys{cfg};
  std::atomic<bool> busy{false};
  lane->attach(io.ioc, [&busy] { return busy.load(); });
  std::atomic<int> steps{0};
  std::atomic<int> steps_seen_by_handler{-1};
  std::function<void()> first_step;
  bool load_comes = false;
  SECTION("not busy: the burst goes on on the I/O thread, after what is ready there") {
    // A handler queued during the burst (a socket's, in the server) runs
    // once the first 64 steps are done, before the rest of the burst.
    first_step = [&] {
      net::post(io.ioc, [&] { steps_seen_by_handler = steps.load(); });
    };
  }
  SECTION("busy by the end of the first 64 steps: the rest on the lane's own thread") {
    load_comes = true;
    first_step = [&] { busy = true; };
  }
  // Many actors made ready in one handler of the I/O thread. (Lazy: an actor
  // is first scheduled by its first message.)
  constexpr int n = 200;
  std::vector<caf::actor> actors;
  for (int i = 0; i < n; ++i)
    actors.push_back(sys.spawn<caf::lazy_init>(counted, &steps, &first_step));
  lane->wait_idle();
  caf::scoped_actor self{sys};
  std::promise<void> sent;
  net::post(io.ioc, [&] {
    for (auto& a : actors)
      self->send(a, caf::get_atom::value);
    sent.set_value();
  });
  sent.get_future().wait();
  int on_io = 0;
  int elsewhere = 0;
  for (int i = 0; i < n; ++i)
    self->receive([&](std::uint64_t t) { (t == io.id ? on_io : elsewhere)++; },
                  caf::after(5s) >> [&] { FAIL("no answer"); });
  if (load_comes) {
    CHECK(on_io == 64);
    CHECK(elsewhere == n - 64);
  } else {
    CHECK(on_io == n);
    CHECK(steps_seen_by_handler == 64);
  }
  for (auto& a : actors)
    anon_send_exit(a, caf::exit_reason::user_shutdown);
  lane->wait_idle();
  io.stop();
  lane->detach();
}

TEST_CASE("a function posted to the io lane runs as one of its jobs: on the I/O thread once "
          "attached, on the own thread after",
          "[app][scheduler]") {
  caf::actor_system_config cfg;
  auto lane = tollgate::app::io_lane::install(cfg);
  io_thread io;
  {
    caf::actor_system sys{cfg};
    auto a = sys.spawn(where);
    const auto own = ask(sys, a);
    lane->wait_idle();
    lane->attach(io.ioc, nullptr);

    const auto posted_on = [&] {
      auto ran = std::make_shared<std::promise<std::uint64_t>>();
      auto f = ran->get_future();
      lane->post([ran] { ran->set_value(this_thread_hash()); });
      REQUIRE(f.wait_for(10s) == std::future_status::ready);
      return f.get();
    };
    CHECK(posted_on() == io.id);
    // An exception in a posted function stays in the lane, which goes on.
    lane->post([] { throw std::runtime_error{"boom"}; });
    CHECK(posted_on() == io.id);
    CHECK(ask(sys, a) == io.id);

    io.stop();
    lane->detach();
    CHECK(posted_on() == own);
    anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
}
