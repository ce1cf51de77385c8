#include "metrics/registry.hpp"

#include <catch2/catch.hpp>

#include <thread>
#include <vector>

using namespace tollgate::metrics;

TEST_CASE("counters and gauges render in text format 0.0.4", "[metrics]") {
  registry reg;
  auto& fam = reg.counters("t_requests_total", "Requests.", {"route", "code"});
  fam.with({"/a", "200"}).inc();
  fam.with({"/a", "200"}).inc(2);
  fam.with({"/b", "500"}).inc();
  auto& g = reg.gauge_metric("t_open", "Open things.");
  g.inc(5);
  g.dec(2);
  const auto text = reg.expose();
  CHECK(text.find("# HELP t_requests_total Requests.\n# TYPE t_requests_total counter\n")
        != std::string::npos);
  CHECK(text.find("t_requests_total{route=\"/a\",code=\"200\"} 3\n") != std::string::npos);
  CHECK(text.find("t_requests_total{route=\"/b\",code=\"500\"} 1\n") != std::string::npos);
  CHECK(text.find("# TYPE t_open gauge\nt_open 3\n") != std::string::npos);
}

TEST_CASE("label values are escaped", "[metrics]") {
  CHECK(escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  registry reg;
  reg.counters("t_total", "x", {"l"}).with({"q\"uote"}).inc();
  CHECK(reg.expose().find("t_total{l=\"q\\\"uote\"} 1") != std::string::npos);
}

TEST_CASE("histograms are cumulative and count matches the +Inf bucket", "[metrics]") {
  registry reg;
  auto& h = reg.histograms("t_seconds", "Durations.", {"route"}, {0.1, 1.0}).with({"/x"});
  h.observe(0.05);
  h.observe(0.1);  // le is inclusive
  h.observe(0.5);
  h.observe(3.0);
  const auto text = reg.expose();
  CHECK(text.find("t_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n") != std::string::npos);
  CHECK(text.find("t_seconds_bucket{route=\"/x\",le=\"1\"} 3\n") != std::string::npos);
  CHECK(text.find("t_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n") != std::string::npos);
  CHECK(text.find("t_seconds_count{route=\"/x\"} 4\n") != std::string::npos);
  CHECK(text.find("t_seconds_sum{route=\"/x\"} 3.65\n") != std::string::npos);
}

TEST_CASE("counters are exact under concurrent increments", "[metrics]") {
  registry reg;
  auto& fam = reg.counters("t_total", "x", {"l"});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i)
        fam.with({"same"}).inc();
    });
  for (auto& t : threads)
    t.join();
  CHECK(fam.with({"same"}).value() == 40000);
}

TEST_CASE("wrong label arity is refused", "[metrics]") {
  registry reg;
  auto& fam = reg.counters("t_total", "x", {"a", "b"});
  CHECK_THROWS_AS(fam.with({"only-one"}), std::invalid_argument);
}

TEST_CASE("computed gauges are read at scrape time", "[metrics]") {
  registry reg;
  double v = 1.5;
  reg.computed_gauge("t_value", "A value.", [&] { return v; });
  CHECK(reg.expose().find("t_value 1.5\n") != std::string::npos);
  v = 42;
  CHECK(reg.expose().find("t_value 42\n") != std::string::npos);
}
