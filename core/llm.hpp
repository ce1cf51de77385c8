#pragma once

// Pure pieces of the LLM gateway, unit-tested on their own: prices, token
// estimates, the provider's token bucket and an incremental SSE reader.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::core::llm {

/// Micro-credits for `tokens` at `price_micro_per_mtok` micro-credits per
/// million tokens, rounded up to the next micro-credit (a call is never
/// charged less than it cost). Exact: no floating point.
std::int64_t price_micro(std::int64_t tokens, std::int64_t price_micro_per_mtok) noexcept;

/// An upper-leaning estimate of the tokens in `bytes` of text: one token per
/// three bytes, rounded up (OpenAI's tokenizers average about four).
std::int64_t estimate_tokens(std::size_t bytes) noexcept;

/// Prompt tokens of a chat request: its text plus 4 per message and 3 for
/// the reply's priming, as OpenAI documents.
std::int64_t estimate_prompt_tokens(std::size_t text_bytes, std::size_t messages) noexcept;

/// A token bucket: `rate_per_minute` tokens refill per minute up to
/// `capacity`. Time comes from the caller (an injected clock).
class token_bucket {
public:
  using time_point = std::chrono::system_clock::time_point;
  token_bucket() = default;
  token_bucket(std::int64_t rate_per_minute, std::int64_t capacity, time_point now) noexcept;

  bool unlimited() const noexcept { return rate_ <= 0; }
  /// Takes `n` tokens if the bucket holds them. A request larger than the
  /// whole bucket is admitted when the bucket is full (and drives it
  /// negative), so it waits its turn instead of starving forever.
  bool take(std::int64_t n, time_point now) noexcept;
  /// Gives back tokens taken for an estimate that turned out too high.
  void give(std::int64_t n, time_point now) noexcept;
  /// How long until `n` tokens could be taken.
  std::chrono::milliseconds wait_for(std::int64_t n, time_point now) noexcept;
  double level(time_point now) noexcept;

private:
  void refill(time_point now) noexcept;
  double rate_ = 0;  ///< tokens per minute
  double capacity_ = 0;
  double tokens_ = 0;
  time_point last_{};
};

/// Reads a server-sent-events stream in whatever pieces it arrives and
/// hands out the `data` of each complete event (multi-line data joined by
/// '\n'). Comments and other fields are skipped.
class sse_reader {
public:
  /// Feeds bytes; appends the data of every event completed by them.
  void feed(std::string_view bytes, std::vector<std::string>& events);
  /// Bytes held for an event not yet complete.
  std::size_t pending() const noexcept { return line_.size() + data_.size(); }

private:
  void line(std::string_view l, std::vector<std::string>& events);
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_cr_ = false;
};

} // namespace tollgate::core::llm
