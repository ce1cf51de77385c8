// The tollgate binary as a user runs it: flags, bad configs, signals.

#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>
#include <regex>

using namespace tollgate;
using namespace std::chrono_literals;

namespace {

std::uint16_t port_from(const std::string& output) {
  static const std::regex re{R"(listening on http://127\.0\.0\.1:(\d+))"};
  std::smatch m;
  REQUIRE(std::regex_search(output, m, re));
  return static_cast<std::uint16_t>(std::stoi(m[1]));
}

} // namespace

TEST_CASE("the version flag prints the version", "[process]") {
  test::child_process p{{TOLLGATE_BINARY, "--version"}};
  CHECK(p.wait(10s) == 0);
  CHECK(p.output().rfind("tollgate ", 0) == 0);
}

namespace {

/// Sets an environment variable for the processes started in a scope.
struct scoped_env {
  std::string name;
  std::optional<std::string> old;
  scoped_env(std::string n, const char* value) : name(std::move(n)) {
    if (const char* o = std::getenv(name.c_str()))
      old = o;
    if (value != nullptr)
      ::setenv(name.c_str(), value, 1);
    else
      ::unsetenv(name.c_str());
  }
  ~scoped_env() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

} // namespace

TEST_CASE("the gateway runs with a larger malloc cache unless the operator set its own",
          "[process]") {
  test::temp_dir dir;
  const auto run = [&](const char* tunables, std::vector<std::string> argv = {TOLLGATE_BINARY}) {
    scoped_env env{"GLIBC_TUNABLES", tunables};
    for (const char* a : {"--listen", "127.0.0.1:0", "--log-level", "info", "--data-dir"})
      argv.emplace_back(a);
    argv.push_back(dir.str("data"));
    test::child_process p{argv};
    REQUIRE(p.wait_for_output("listening on", 20s));
    CHECK(test::request(port_from(p.output()), "GET", "/ping").status == 200);
    p.signal(SIGTERM);
    CHECK(p.wait(20s) == 0);
    return p.output();
  };
  CHECK(run(nullptr).find("glibc tunables: glibc.malloc.tcache_count=64\n") != std::string::npos);
  // Other tunables stay, and the cache's is added after them.
  CHECK(run("glibc.malloc.check=0")
          .find("glibc tunables: glibc.malloc.check=0:glibc.malloc.tcache_count=64\n")
        != std::string::npos);
  // The operator's own cache size is kept.
  CHECK(run("glibc.malloc.tcache_count=7").find("glibc tunables: glibc.malloc.tcache_count=7\n")
        != std::string::npos);
  {
    // Marked as the second run already: no other run.
    scoped_env marked{"TOLLGATE_TUNED_EXEC", "1"};
    CHECK(run(nullptr).find("glibc tunables:") == std::string::npos);
  }
  // Started through the dynamic loader, /proc/self/exe is the loader: the
  // gateway starts as it is, untuned, instead of running the loader alone.
  const std::string loader = "/lib64/ld-linux-x86-64.so.2";
  REQUIRE(::access(loader.c_str(), X_OK) == 0);
  CHECK(run(nullptr, {loader, TOLLGATE_BINARY}).find("glibc tunables:") == std::string::npos);
}

TEST_CASE("a bad config stops the start with exit code 2 and names key and line",
          "[process]") {
  test::temp_dir dir;
  const auto file = dir.str("bad.toml");
  SECTION("unknown key") {
    std::ofstream{file} << "[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n";
    test::child_process p{{TOLLGATE_BINARY, "--config", file}};
    CHECK(p.wait(10s) == 2);
    CHECK(p.output().find(file + ":3: server.lisen: unknown key") != std::string::npos);
  }
  SECTION("wrong type") {
    std::ofstream{file} << "[storage]\nsync_writes = \"yes\"\n";
    test::child_process p{{TOLLGATE_BINARY, "--config", file}};
    CHECK(p.wait(10s) == 2);
    CHECK(p.output().find(file + ":2: storage.sync_writes: expected a boolean, got a string")
          != std::string::npos);
  }
  SECTION("a required provider whose key is not in the environment") {
    std::ofstream{file} << "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = \""
                        << dir.str("data") << "\"\n"
                        // A provider that starts fine first: its actor must not
                        // keep the process from exiting.
                        << "[[providers]]\nname = \"demo\"\nbase_url = \"builtin:demo\"\n"
                        << "[[providers]]\nname = \"p\"\n"
                        << "base_url = \"https://api.example.com/v1\"\n"
                        << "api_key_env = \"TOLLGATE_TEST_NEVER_SET_KEY\"\n";
    test::child_process p{{TOLLGATE_BINARY, "--config", file}};
    CHECK(p.wait(10s) == 2);
    CHECK(p.output().find("TOLLGATE_TEST_NEVER_SET_KEY is not set") != std::string::npos);
  }
  SECTION("missing file") {
    test::child_process p{{TOLLGATE_BINARY, "--config", dir.str("absent.toml")}};
    CHECK(p.wait(10s) == 2);
    CHECK(p.output().find("cannot read") != std::string::npos);
  }
  SECTION("bad flag values") {
    test::child_process a{{TOLLGATE_BINARY, "--listen", "nonsense"}};
    CHECK(a.wait(10s) == 2);
    CHECK(a.output().find("--listen") != std::string::npos);
    test::child_process b{{TOLLGATE_BINARY, "--log-level", "loud"}};
    CHECK(b.wait(10s) == 2);
    CHECK(b.output().find("--log-level") != std::string::npos);
    test::child_process c{{TOLLGATE_BINARY, "--no-such-flag"}};
    CHECK(c.wait(10s) == 2);
  }
}

TEST_CASE("a store that cannot open stops the start with a clear message", "[process]") {
  test::temp_dir dir;
  std::ofstream{dir.str("not-a-dir")} << "x";
  test::child_process p{{TOLLGATE_BINARY, "--listen", "127.0.0.1:0", "--data-dir",
                         dir.str("not-a-dir")}};
  CHECK(p.wait(20s) == 1);
  CHECK(p.output().find("cannot open the store") != std::string::npos);
  CHECK(p.output().find(dir.str("not-a-dir")) != std::string::npos);
}

TEST_CASE("SIGTERM shuts down gracefully with exit 0 and the store reopens", "[process]") {
  test::temp_dir dir;
  for (int run = 0; run < 2; ++run) {
    test::child_process p{{TOLLGATE_BINARY, "--listen", "127.0.0.1:0", "--data-dir",
                           dir.str("data"), "--log-level", "info"}};
    REQUIRE(p.wait_for_output("listening on", 20s));
    const auto port = port_from(p.output());
    CHECK(test::request(port, "GET", "/ping").status == 200);
    CHECK(test::request(port, "GET", "/health").status == 200);
    p.signal(run == 0 ? SIGTERM : SIGINT);
    CHECK(p.wait(20s) == 0);
    CHECK(p.output().find("shutdown: complete") != std::string::npos);
    // One access-log line per request, with its request id.
    CHECK(p.output().find("\"GET /ping\" 200") != std::string::npos);
  }
}

TEST_CASE("a crash loses at most one flush interval of request counts", "[process][limits]") {
  test::temp_dir dir;
  const auto conf = dir.str("crash.toml");
  std::ofstream{conf} << "[server]\nlisten = \"127.0.0.1:0\"\n"
                      << "[storage]\ndata_dir = \"" << dir.str("data") << "\"\n"
                      << "[limits]\nper_minute = 1000000\nrequests_per_day = 5\n"
                      << "flush_interval_ms = 500\n[limits.plans]\n"
                      << "[log]\nlevel = \"info\"\naccess_log = false\n";
  std::string admin;
  {
    test::child_process p{{TOLLGATE_BINARY, "--config", conf}};
    REQUIRE(p.wait_for_output("listening on", 20s));
    const auto port = port_from(p.output());
    static const std::regex key_re{R"(gw_live_[A-Za-z0-9]{38})"};
    std::smatch m;
    REQUIRE(std::regex_search(p.output(), m, key_re));
    admin = m.str();
    // Three requests back to back (pipelined), well inside one flush interval,
    // so that the first periodic flush holds all three.
    test::connection c{port};
    std::string batch;
    for (int i = 0; i < 3; ++i)
      batch += test::make_request("GET", "/user/balance", "Authorization: Bearer " + admin + "\r\n");
    c.send(batch);
    for (int i = 0; i < 3; ++i) {
      auto r = c.read_response();
      REQUIRE(r);
      REQUIRE(r->status == 200);
    }
    // Wait (bounded) until the periodic flush has written the key's window.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    bool saved = false;
    while (!saved && std::chrono::steady_clock::now() < deadline) {
      const auto metrics = test::request(port, "GET", "/metrics").body;
      saved = metrics.find("tollgate_key_counters_saved_total 0") == std::string::npos
              && metrics.find("tollgate_key_counters_saved_total ") != std::string::npos;
    }
    REQUIRE(saved);
    p.signal(SIGKILL);  // no graceful shutdown, no final flush
    CHECK(p.wait(10s) == 128 + SIGKILL);
  }
  test::child_process p{{TOLLGATE_BINARY, "--config", conf}};
  REQUIRE(p.wait_for_output("listening on", 20s));
  const auto port = port_from(p.output());
  const auto call = [&] {
    return test::request(port, "GET", "/user/balance", "Authorization: Bearer " + admin + "\r\n");
  };
  CHECK(call().status == 200);  // 4th of 5 today
  CHECK(call().status == 200);  // 5th
  auto r = call();
  CHECK(r.status == 429);
  CHECK(r.header("x-ratelimit-limit") == "5");
  p.signal(SIGTERM);
  CHECK(p.wait(20s) == 0);
}
