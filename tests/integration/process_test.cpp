// The tollgate binary as a user runs it: flags, bad configs, signals.

#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
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
