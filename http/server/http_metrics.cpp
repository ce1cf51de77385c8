#include "http/server/http_metrics.hpp"

#include "http/route_table.hpp"

namespace tollgate::http {

namespace {
constexpr std::string_view method_names[] = {"GET",  "POST",    "PUT",    "DELETE",
                                             "PATCH", "HEAD", "OPTIONS", "other"};
constexpr const char* class_names[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
} // namespace

http_metrics::http_metrics(metrics::registry& reg, const route_table& routes)
  : in_flight(reg.gauge_metric("tollgate_http_requests_in_flight",
                               "Requests read and not yet answered.")),
    connections(reg.gauge_metric("tollgate_http_connections_open", "Open client connections.")),
    connections_rejected(reg.counter_metric("tollgate_http_connections_rejected_total",
                                            "Connections refused at the connection cap.")),
    dropped_responses(reg.counter_metric(
      "tollgate_http_dropped_responses_total",
      "Requests whose handler never answered; the client got a 500.")),
    read_errors(reg.counters("tollgate_http_read_errors_total",
                             "Requests cut off before they were complete, by reason.",
                             {"reason"})),
    unmatched_(static_cast<std::uint32_t>(routes.routes().size())),
    slots_(std::make_unique<slot[]>(routes.routes().size() + 1)),
    requests_(reg.counters("tollgate_http_requests_total",
                           "HTTP requests answered, by route template, method and status class.",
                           {"route", "method", "status_class"})),
    durations_(reg.histograms("tollgate_http_request_duration_seconds",
                              "Time from a whole request read to its response written.",
                              {"route", "method"})) {
  for (const auto& r : routes.routes())
    labels_.push_back(r.pattern);
  labels_.emplace_back("unmatched");
}

std::size_t http_metrics::method_index(std::string_view m) noexcept {
  for (std::size_t i = 0; i + 1 < method_count; ++i)
    if (method_names[i] == m)
      return i;
  return method_count - 1;
}

void http_metrics::record(std::uint32_t route, std::string_view method, unsigned status,
                          double seconds) {
  if (route > unmatched_)
    route = unmatched_;
  const auto mi = method_index(method);
  std::size_t ci = status / 100;
  ci = ci >= 1 && ci <= 5 ? ci - 1 : 4;
  auto& s = slots_[route];
  auto* c = s.requests[mi * class_count + ci].load(std::memory_order_acquire);
  if (c == nullptr) {
    c = &requests_.with({labels_[route], std::string{method_names[mi]}, class_names[ci]});
    s.requests[mi * class_count + ci].store(c, std::memory_order_release);
  }
  c->inc();
  auto* h = s.durations[mi].load(std::memory_order_acquire);
  if (h == nullptr) {
    h = &durations_.with({labels_[route], std::string{method_names[mi]}});
    s.durations[mi].store(h, std::memory_order_release);
  }
  h->observe(seconds);
}

} // namespace tollgate::http
