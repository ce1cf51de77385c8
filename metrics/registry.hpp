#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tollgate::metrics {

/// Monotonic counter; lock-free.
class counter {
public:
  void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::uint64_t> value_{0};
};

/// Up-and-down integer gauge; lock-free.
class gauge {
public:
  void inc(std::int64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  void dec(std::int64_t n = 1) noexcept { value_.fetch_sub(n, std::memory_order_relaxed); }
  void set(std::int64_t v) noexcept { value_.store(v, std::memory_order_relaxed); }
  std::int64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::int64_t> value_{0};
};

/// Cumulative histogram with fixed upper bounds; lock-free observe().
class histogram {
public:
  explicit histogram(std::vector<double> upper_bounds);
  void observe(double v) noexcept;
  const std::vector<double>& bounds() const noexcept { return bounds_; }
  /// Count of observations <= bounds()[i] (non-cumulative per bucket; the
  /// exposition accumulates). Index bounds().size() is the +Inf overflow.
  std::uint64_t bucket(std::size_t i) const noexcept;
  std::uint64_t count() const noexcept;
  double sum() const noexcept;

private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_bits_{0};
};

/// Default latency buckets in seconds: 50 us .. 10 s.
std::vector<double> latency_buckets();

/// A named metric with a fixed list of label names; children are created on
/// first use of a label-value combination and live as long as the registry.
/// Callers on hot paths keep the returned reference instead of looking up
/// again.
template <class Metric>
class family {
public:
  family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {});
  family(const family&) = delete;
  family& operator=(const family&) = delete;

  /// The child for these label values (same order as the label names).
  Metric& with(const std::vector<std::string>& label_values);

  const std::string& name() const noexcept { return name_; }
  const std::string& help() const noexcept { return help_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }

  /// Calls f(label_values, metric) for each child, in label order.
  void each(const std::function<void(const std::vector<std::string>&, const Metric&)>& f) const;

private:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

/// Owns every metric of the process and renders Prometheus text format 0.0.4.
class registry {
public:
  family<counter>& counters(std::string name, std::string help,
                            std::vector<std::string> label_names = {});
  family<gauge>& gauges(std::string name, std::string help,
                        std::vector<std::string> label_names = {});
  family<histogram>& histograms(std::string name, std::string help,
                                std::vector<std::string> label_names,
                                std::vector<double> bounds = latency_buckets());

  /// Shorthands for metrics without labels.
  counter& counter_metric(std::string name, std::string help);
  gauge& gauge_metric(std::string name, std::string help);

  /// A gauge whose value is computed at scrape time (uptime, queue depth).
  void computed_gauge(std::string name, std::string help, std::function<double()> read);

  /// The whole registry in the Prometheus text exposition format 0.0.4.
  std::string expose() const;

private:
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<family<counter>>> counters_;
  std::vector<std::unique_ptr<family<gauge>>> gauges_;
  std::vector<std::unique_ptr<family<histogram>>> histograms_;
  struct computed {
    std::string name;
    std::string help;
    std::function<double()> read;
  };
  std::vector<computed> computed_;
};

/// Escapes a label value for the text format (backslash, quote, newline).
std::string escape_label_value(const std::string& v);

} // namespace tollgate::metrics
