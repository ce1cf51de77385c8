#pragma once

// tools/mock_upstream as a child process on 127.0.0.1, for the LLM and
// proxy tests.

#include "support/process.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <memory>
#include <regex>
#include <string>
#include <vector>

namespace tollgate::test {

struct mock_upstream {
  std::unique_ptr<child_process> p;
  std::uint16_t port = 0;

  /// Starts it with 7 prompt and 9 completion tokens and 3 chunks, then `extra`.
  explicit mock_upstream(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{TOLLGATE_MOCK_UPSTREAM, "--listen",   "127.0.0.1:0",
                                  "--prompt-tokens",      "7",          "--completion-tokens",
                                  "9",                    "--chunks",   "3"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    p = std::make_unique<child_process>(argv);
    REQUIRE(p->wait_for_output("listening on", std::chrono::seconds{10}));
    static const std::regex re{R"(listening on http://127\.0\.0\.1:(\d+))"};
    std::smatch m;
    const auto out = p->output();
    REQUIRE(std::regex_search(out, m, re));
    port = static_cast<std::uint16_t>(std::stoi(m[1]));
  }
  ~mock_upstream() { p->signal(SIGKILL); }
  mock_upstream(const mock_upstream&) = delete;
  mock_upstream& operator=(const mock_upstream&) = delete;

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port); }
  std::string url() const { return base() + "/v1"; }
};

} // namespace tollgate::test
