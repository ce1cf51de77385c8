// The mock upstream the LLM routes' tests and benchmarks will run against.

#include "support/http_client.hpp"
#include "support/process.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <regex>

using namespace tollgate;
using namespace std::chrono_literals;

namespace {

std::uint16_t mock_port(const std::string& output) {
  static const std::regex re{R"(listening on http://127\.0\.0\.1:(\d+))"};
  std::smatch m;
  REQUIRE(std::regex_search(output, m, re));
  return static_cast<std::uint16_t>(std::stoi(m[1]));
}

} // namespace

TEST_CASE("mock upstream answers JSON, SSE and forced errors", "[tools][mock]") {
  test::child_process p{{TOLLGATE_MOCK_UPSTREAM, "--listen", "127.0.0.1:0", "--chunks", "4",
                         "--prompt-tokens", "7", "--completion-tokens", "9"}};
  REQUIRE(p.wait_for_output("listening on", 10s));
  const auto port = mock_port(p.output());

  auto r = test::request(port, "POST", "/v1/chat/completions", "Content-Type: application/json\r\n",
                         R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  REQUIRE(r.status == 200);
  CHECK(r.body.find(R"("object":"chat.completion")") != std::string::npos);
  CHECK(r.body.find(R"("usage":{"prompt_tokens":7,"completion_tokens":9,"total_tokens":16})")
        != std::string::npos);

  // A stream: four content chunks, the usage chunk when asked for, [DONE].
  test::connection c{port};
  c.send(test::make_request(
    "POST", "/v1/chat/completions", "Connection: close\r\n",
    R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]})"));
  std::string stream;
  REQUIRE(c.closed_by_peer(&stream));
  CHECK(stream.find("Content-Type: text/event-stream") != std::string::npos);
  std::size_t chunks = 0;
  for (auto pos = stream.find(R"("delta":{"content")"); pos != std::string::npos;
       pos = stream.find(R"("delta":{"content")", pos + 1))
    ++chunks;
  CHECK(chunks == 4);
  CHECK(stream.find(R"("usage":{"prompt_tokens":7)") != std::string::npos);
  CHECK(stream.find("data: [DONE]") != std::string::npos);

  r = test::request(port, "POST", "/v1/chat/completions",
                    "X-Mock-Status: 503\r\nX-Mock-Retry-After: 2\r\n", R"({"model":"m"})");
  CHECK(r.status == 503);
  CHECK(r.header("retry-after") == "2");
  CHECK(test::request(port, "POST", "/v1/chat/completions", {}, "not json").status == 400);
  CHECK(test::request(port, "GET", "/v1/models").status == 200);
  p.signal(SIGTERM);
  p.wait(10s);
}
