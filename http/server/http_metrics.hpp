#pragma once

#include "metrics/registry.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace tollgate::http {

class route_table;

/// Request metrics labelled by route template, method and status class.
/// Children are looked up once per (route, method, class) and cached in
/// atomic slots, so the hot path is two array reads and two atomic adds.
class http_metrics {
public:
  http_metrics(metrics::registry& reg, const route_table& routes);

  /// Route index for requests that matched no route.
  std::uint32_t unmatched() const noexcept { return unmatched_; }

  void record(std::uint32_t route, std::string_view method, unsigned status, double seconds);

  metrics::gauge& in_flight;
  metrics::gauge& connections;
  metrics::counter& connections_rejected;
  metrics::counter& dropped_responses;
  /// Requests cut off before they were complete: timeout, too large, garbage.
  metrics::family<metrics::counter>& read_errors;

private:
  static constexpr std::size_t method_count = 8;
  static constexpr std::size_t class_count = 5;
  struct slot {
    std::array<std::atomic<metrics::counter*>, method_count * class_count> requests{};
    std::array<std::atomic<metrics::histogram*>, method_count> durations{};
  };
  static std::size_t method_index(std::string_view m) noexcept;

  std::vector<std::string> labels_;  ///< route template per index
  std::uint32_t unmatched_;
  std::unique_ptr<slot[]> slots_;
  metrics::family<metrics::counter>& requests_;
  metrics::family<metrics::histogram>& durations_;
};

} // namespace tollgate::http
