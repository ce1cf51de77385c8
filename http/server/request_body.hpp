#pragma once

// The session's side of a request body that is forwarded while it arrives
// (core::body_source). The session pushes what it reads; the consumer (the
// upstream client) takes it on. Past high_water bytes not yet taken the
// session stops reading the client's socket, so a fast client cannot fill
// the gateway's memory when the backend is slow; `resume` (set by the
// session) reads on once the consumer is down to low_water.

#include "core/api_message.hpp"
#include "http/flow_window.hpp"

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

namespace tollgate::http {

class request_body final : public core::body_source {
public:
  static constexpr std::size_t high_water = std::size_t{256} << 10;
  static constexpr std::size_t low_water = std::size_t{64} << 10;

  explicit request_body(std::function<void()> resume) : resume_(std::move(resume)) {}

  // --- the session's side (its thread) ---

  // The consumer's callbacks run under the lock, which keeps the pieces in
  // order; they must only hand over (post), never call back in.

  void push(std::string bytes) {
    std::lock_guard<std::mutex> g{m_};
    if (cancelled_ || ended_ || bytes.empty())
      return;
    window_.add(bytes.size());
    if (on_data_)
      on_data_(std::move(bytes));
    else
      early_.push_back(std::move(bytes));
  }

  void end(bool complete) {
    std::lock_guard<std::mutex> g{m_};
    if (ended_)
      return;
    ended_ = true;
    complete_ = complete && !cancelled_;  // bytes were dropped since the cancel
    if (on_end_)
      on_end_(complete);
  }

  /// True (and the session waits for `resume`) when too much is untaken.
  bool hold_back() {
    std::lock_guard<std::mutex> g{m_};
    return window_.pause_if_full();
  }

  bool cancelled() const {
    std::lock_guard<std::mutex> g{m_};
    return cancelled_;
  }

  // --- the consumer's side (any thread) ---

  void consume(std::function<void(std::string)> on_data,
               std::function<void(bool)> on_end) override {
    std::lock_guard<std::mutex> g{m_};
    on_data_ = std::move(on_data);
    on_end_ = std::move(on_end);
    for (auto& b : early_)
      on_data_(std::move(b));
    early_.clear();
    if (ended_)
      on_end_(complete_);
  }

  void taken(std::size_t bytes) noexcept override {
    bool resume = false;
    {
      std::lock_guard<std::mutex> g{m_};
      window_.take(bytes, resume);
    }
    if (resume && resume_)
      resume_();
  }

  void cancel() noexcept override {
    bool resume = false;
    {
      std::lock_guard<std::mutex> g{m_};
      cancelled_ = true;
      resume = window_.unpause();
    }
    // A session waiting for room goes on, sees the cancel and stops.
    if (resume && resume_)
      resume_();
  }

private:
  mutable std::mutex m_;
  std::function<void()> resume_;
  std::function<void(std::string)> on_data_;
  std::function<void(bool)> on_end_;
  std::deque<std::string> early_;
  flow_window window_{high_water, low_water};  ///< pushed, not yet taken by the consumer
  bool ended_ = false;
  bool complete_ = false;
  bool cancelled_ = false;
};

} // namespace tollgate::http
