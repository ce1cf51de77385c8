#include "metrics/registry.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace tollgate::metrics {

namespace {

std::uint64_t to_bits(double d) noexcept {
  std::uint64_t u = 0;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

double from_bits(std::uint64_t u) noexcept {
  double d = 0;
  std::memcpy(&d, &u, sizeof d);
  return d;
}

// Prometheus floats: integers without exponent, +Inf spelled as such.
std::string format_value(double v) {
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v))
    return "NaN";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, const char* extra_name = nullptr,
                   const std::string& extra_value = {}) {
  if (names.empty() && extra_name == nullptr)
    return;
  out += '{';
  bool first = true;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!first)
      out += ',';
    first = false;
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  if (extra_name != nullptr) {
    if (!first)
      out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

void append_header(std::string& out, const std::string& name, const std::string& help,
                   const char* type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  for (const char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

} // namespace

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

histogram::histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()))
    throw std::invalid_argument("histogram bounds must be sorted");
  buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
  for (std::size_t i = 0; i <= bounds_.size(); ++i)
    buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) noexcept {
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  buckets_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  auto old = sum_bits_.load(std::memory_order_relaxed);
  while (!sum_bits_.compare_exchange_weak(old, to_bits(from_bits(old) + v),
                                          std::memory_order_relaxed)) {
  }
}

std::uint64_t histogram::bucket(std::size_t i) const noexcept {
  return buckets_[i].load(std::memory_order_relaxed);
}

std::uint64_t histogram::count() const noexcept {
  return count_.load(std::memory_order_relaxed);
}

double histogram::sum() const noexcept {
  return from_bits(sum_bits_.load(std::memory_order_relaxed));
}

std::vector<double> latency_buckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
          0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,    5,    10};
}

template <class Metric>
family<Metric>::family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bounds)
  : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)),
    bounds_(std::move(bounds)) {}

template <class Metric>
Metric& family<Metric>::with(const std::vector<std::string>& label_values) {
  if (label_values.size() != label_names_.size())
    throw std::invalid_argument("metric " + name_ + ": wrong number of label values");
  std::lock_guard<std::mutex> guard{mutex_};
  auto& slot = children_[label_values];
  if (!slot) {
    if constexpr (std::is_same_v<Metric, histogram>)
      slot = std::make_unique<histogram>(bounds_);
    else
      slot = std::make_unique<Metric>();
  }
  return *slot;
}

template <class Metric>
void family<Metric>::each(
  const std::function<void(const std::vector<std::string>&, const Metric&)>& f) const {
  std::lock_guard<std::mutex> guard{mutex_};
  for (const auto& [labels, metric] : children_)
    f(labels, *metric);
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

family<counter>& registry::counters(std::string name, std::string help,
                                    std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> guard{mutex_};
  counters_.push_back(
    std::make_unique<family<counter>>(std::move(name), std::move(help), std::move(label_names)));
  return *counters_.back();
}

family<gauge>& registry::gauges(std::string name, std::string help,
                                std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> guard{mutex_};
  gauges_.push_back(
    std::make_unique<family<gauge>>(std::move(name), std::move(help), std::move(label_names)));
  return *gauges_.back();
}

family<histogram>& registry::histograms(std::string name, std::string help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> bounds) {
  std::lock_guard<std::mutex> guard{mutex_};
  histograms_.push_back(std::make_unique<family<histogram>>(
    std::move(name), std::move(help), std::move(label_names), std::move(bounds)));
  return *histograms_.back();
}

counter& registry::counter_metric(std::string name, std::string help) {
  return counters(std::move(name), std::move(help)).with({});
}

gauge& registry::gauge_metric(std::string name, std::string help) {
  return gauges(std::move(name), std::move(help)).with({});
}

void registry::computed_gauge(std::string name, std::string help, std::function<double()> read) {
  std::lock_guard<std::mutex> guard{mutex_};
  computed_.push_back({std::move(name), std::move(help), std::move(read)});
}

std::string registry::expose() const {
  std::lock_guard<std::mutex> guard{mutex_};
  std::string out;
  out.reserve(4096);
  for (const auto& fam : counters_) {
    append_header(out, fam->name(), fam->help(), "counter");
    fam->each([&](const std::vector<std::string>& labels, const counter& c) {
      out += fam->name();
      append_labels(out, fam->label_names(), labels);
      out += ' ';
      out += std::to_string(c.value());
      out += '\n';
    });
  }
  for (const auto& fam : gauges_) {
    append_header(out, fam->name(), fam->help(), "gauge");
    fam->each([&](const std::vector<std::string>& labels, const gauge& g) {
      out += fam->name();
      append_labels(out, fam->label_names(), labels);
      out += ' ';
      out += std::to_string(g.value());
      out += '\n';
    });
  }
  for (const auto& c : computed_) {
    append_header(out, c.name, c.help, "gauge");
    out += c.name;
    out += ' ';
    out += format_value(c.read());
    out += '\n';
  }
  for (const auto& fam : histograms_) {
    append_header(out, fam->name(), fam->help(), "histogram");
    fam->each([&](const std::vector<std::string>& labels, const histogram& h) {
      std::uint64_t cumulative = 0;
      const auto& bounds = h.bounds();
      for (std::size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += h.bucket(i);
        out += fam->name();
        out += "_bucket";
        append_labels(out, fam->label_names(), labels, "le",
                      i < bounds.size() ? format_value(bounds[i]) : std::string{"+Inf"});
        out += ' ';
        out += std::to_string(cumulative);
        out += '\n';
      }
      out += fam->name();
      out += "_sum";
      append_labels(out, fam->label_names(), labels);
      out += ' ';
      out += format_value(h.sum());
      out += '\n';
      out += fam->name();
      out += "_count";
      append_labels(out, fam->label_names(), labels);
      out += ' ';
      // The +Inf bucket and _count must agree even while observe() runs
      // concurrently, so both come from the same cumulative sum.
      out += std::to_string(cumulative);
      out += '\n';
    });
  }
  return out;
}

} // namespace tollgate::metrics
