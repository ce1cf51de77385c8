#include "http/server/cancel_slot.hpp"

#include <spdlog/spdlog.h>

#include <exception>

namespace tollgate::http {

namespace {

void run(const std::function<void()>& f) noexcept {
  if (!f)
    return;
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::error("a cancel handler threw: {}", e.what());
  }
}

} // namespace

void cancel_slot::set(std::function<void()> f) noexcept {
  std::unique_lock<std::mutex> guard{mutex_};
  if (gone_) {
    guard.unlock();
    run(f);
    return;
  }
  f_ = std::move(f);
}

void cancel_slot::fire() noexcept {
  std::function<void()> f;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    gone_ = true;
    f = std::move(f_);
    f_ = nullptr;
  }
  run(f);
}

} // namespace tollgate::http
