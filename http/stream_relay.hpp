#pragma once

#include "core/api_message.hpp"

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tollgate::http {

/// The streamed body between the upstream (client I/O thread) and the
/// session. Bytes that arrive before the session attached are kept.
class relay final : public core::body_stream {
public:
  void push(std::string bytes) {
    std::lock_guard<std::mutex> g{m_};
    if (cancelled_ || finished_)
      return;
    if (sink_)
      sink_->write(std::move(bytes));
    else
      early_.push_back(std::move(bytes));
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
  std::shared_ptr<core::stream_sink> sink_;
  std::vector<std::string> early_;
  std::function<void()> on_cancel_;
  bool finished_ = false;
  bool aborted_ = false;
  bool cancelled_ = false;
};

} // namespace tollgate::http
