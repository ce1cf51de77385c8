#pragma once

// One watchdog for every LLM call in flight. A delayed message per call
// would be a timer in CAF's clock thread: a wake-up of that thread on every
// request, and an entry kept for minutes after the call ended (measured: a
// third of the clock thread's wake-ups and most of the RSS under load).
// Instead each call registers its deadline here, and one ticker actor looks
// once a second for calls past theirs.

#include <caf/atom.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tollgate::http::llm {

using watchdog_atom = caf::atom_constant<caf::atom("watchdog")>;

class call_watch {
public:
  using clock = std::chrono::steady_clock;

  /// Runs `fire` (from the ticker) once `deadline` is past, unless
  /// `remove`d before; returns the id to remove it by. `cancel` is what
  /// cancel_all runs for the call.
  std::uint64_t add(clock::time_point deadline, std::function<void()> fire,
                    std::function<void()> cancel = {}) {
    std::lock_guard<std::mutex> lock{m_};
    const auto id = ++next_;
    calls_.emplace(id, entry{deadline, std::move(fire), std::move(cancel)});
    return id;
  }

  void remove(std::uint64_t id) {
    std::lock_guard<std::mutex> lock{m_};
    calls_.erase(id);
  }

  /// Takes out and returns what to run for the calls past their deadline.
  std::vector<std::function<void()>> expired(clock::time_point now) {
    std::vector<std::function<void()>> out;
    std::lock_guard<std::mutex> lock{m_};
    for (auto it = calls_.begin(); it != calls_.end();) {
      if (it->second.deadline <= now) {
        out.push_back(std::move(it->second.fire));
        it = calls_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  /// Runs every call's cancel (at shutdown); the calls stay registered
  /// until they end.
  void cancel_all() {
    std::vector<std::function<void()>> cancels;
    {
      std::lock_guard<std::mutex> lock{m_};
      for (const auto& [id, e] : calls_)
        if (e.cancel)
          cancels.push_back(e.cancel);
    }
    for (const auto& c : cancels)
      c();
  }

  std::size_t size() {
    std::lock_guard<std::mutex> lock{m_};
    return calls_.size();
  }

private:
  std::mutex m_;
  std::uint64_t next_ = 0;
  struct entry {
    clock::time_point deadline;
    std::function<void()> fire;
    std::function<void()> cancel;
  };
  std::unordered_map<std::uint64_t, entry> calls_;
};

} // namespace tollgate::http::llm
