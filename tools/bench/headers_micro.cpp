// Micro-benchmark: building the rate-limit headers of all three dialects
// for one response (what the router does per metered request). Not a test;
// run build/tools/bench_headers_micro and read the figure.

#include "http/api/ratelimit.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>

int main() {
  using namespace tollgate;
  actors::limit_report r;
  r.metered = true;
  r.policy = "minute";
  r.limit = 60;
  r.remaining = 59;
  r.reset = 1795396140;
  r.window = 60;
  r.policies = {{"minute", 60, 60}, {"hour", 100000, 3600}, {"day", 1000, 86400}};
  const std::vector<std::string> dialects{"x-ratelimit", "ratelimit", "ietf"};
  constexpr int rounds = 1'000'000;
  std::size_t fields = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < rounds; ++i) {
    std::string h;
    http::api::add_rate_limit_headers(h, r, dialects, 1795396080);
    fields += static_cast<std::size_t>(std::count(h.begin(), h.end(), '\n'));
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  std::printf("%.3f us per response (%zu fields each)\n",
              std::chrono::duration<double, std::micro>(elapsed).count() / rounds,
              fields / rounds);
}
