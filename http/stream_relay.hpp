#pragma once

#include "core/api_message.hpp"
#include "http/flow_window.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tollgate::http {

/// The streamed body between the upstream (client I/O thread) and the
/// session. Bytes that arrive before the session attached are kept.
///
/// Flow control: the bytes pushed but not yet on the client's socket are
/// counted. The producer asks hold() after each push; above high_water it
/// is told to stop, and its `resume` runs once the client has taken the
/// backlog down to low_water. A slow client thus holds the upstream back
/// instead of filling the gateway's memory.
class relay final : public core::body_stream {
public:
  static constexpr std::size_t high_water = std::size_t{1} << 20;
  static constexpr std::size_t low_water = std::size_t{256} << 10;

  ~relay() override {
    buffered_total().fetch_sub(static_cast<std::int64_t>(window_.pending()),
                               std::memory_order_relaxed);
    if (window_.paused())
      paused_total().fetch_sub(1, std::memory_order_relaxed);
  }

  /// Bytes held for clients by every relay in the process, and how many
  /// relays hold their producer back right now (both exported as metrics).
  static std::atomic<std::int64_t>& buffered_total() {
    static std::atomic<std::int64_t> n{0};
    return n;
  }
  static std::atomic<std::int64_t>& paused_total() {
    static std::atomic<std::int64_t> n{0};
    return n;
  }

  /// Asked by the producer after each push: true means stop producing
  /// until `resume` runs (from the thread that drained the backlog).
  bool hold(std::function<void()> resume) {
    std::lock_guard<std::mutex> g{m_};
    const bool was_paused = window_.paused();
    if (cancelled_ || !window_.pause_if_full())
      return false;
    if (!was_paused)
      paused_total().fetch_add(1, std::memory_order_relaxed);
    resume_ = std::move(resume);
    return true;
  }

  void push(std::string bytes) {
    std::lock_guard<std::mutex> g{m_};
    if (cancelled_ || finished_ || bytes.empty())
      return;
    window_.add(bytes.size());
    buffered_total().fetch_add(static_cast<std::int64_t>(bytes.size()),
                               std::memory_order_relaxed);
    if (sink_)
      sink_->write(std::move(bytes));
    else
      early_.push_back(std::move(bytes));
  }

  void written(std::size_t bytes) noexcept override {
    std::function<void()> resume;
    {
      std::lock_guard<std::mutex> g{m_};
      bool go_on = false;
      bytes = window_.take(bytes, go_on);
      buffered_total().fetch_sub(static_cast<std::int64_t>(bytes), std::memory_order_relaxed);
      if (go_on) {
        paused_total().fetch_sub(1, std::memory_order_relaxed);
        resume = std::move(resume_);
        resume_ = nullptr;
      }
    }
    if (resume)
      resume();
  }
  void finish() {
    std::lock_guard<std::mutex> g{m_};
    if (finished_)
      return;
    finished_ = true;
    if (sink_)
      sink_->finish();
  }
  /// Ends the body as broken (see core::stream_sink::abort).
  void abort() {
    std::lock_guard<std::mutex> g{m_};
    if (finished_)
      return;
    finished_ = true;
    aborted_ = true;
    if (sink_)
      sink_->abort();
  }
  void attach(std::shared_ptr<core::stream_sink> sink) override {
    std::lock_guard<std::mutex> g{m_};
    sink_ = std::move(sink);
    for (auto& b : early_)
      sink_->write(std::move(b));
    early_.clear();
    if (aborted_)
      sink_->abort();
    else if (finished_)
      sink_->finish();
  }
  void cancel() noexcept override {
    std::function<void()> f;
    {
      std::lock_guard<std::mutex> g{m_};
      cancelled_ = true;
      f = std::move(on_cancel_);
    }
    if (f)
      f();
  }
  void on_cancel(std::function<void()> f) {
    std::lock_guard<std::mutex> g{m_};
    on_cancel_ = std::move(f);
  }

private:
  std::mutex m_;
  std::function<void()> resume_;  ///< the held producer's way on
  flow_window window_{high_water, low_water};  ///< pushed, not yet on the client's socket
  std::shared_ptr<core::stream_sink> sink_;
  std::vector<std::string> early_;
  std::function<void()> on_cancel_;
  bool finished_ = false;
  bool aborted_ = false;
  bool cancelled_ = false;
};

} // namespace tollgate::http
