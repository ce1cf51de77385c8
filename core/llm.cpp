#include "core/llm.hpp"

#include <algorithm>
#include <cmath>

namespace tollgate::core::llm {

namespace {
// tokens x price can pass 2^63 (1e13 tokens at 1e15 micro-credits per Mtok).
__extension__ typedef __int128 wide;
} // namespace

std::int64_t price_micro(std::int64_t tokens, std::int64_t price_micro_per_mtok) noexcept {
  if (tokens <= 0 || price_micro_per_mtok <= 0)
    return 0;
  const auto product = static_cast<wide>(tokens) * price_micro_per_mtok;
  return static_cast<std::int64_t>((product + 999'999) / 1'000'000);
}

std::int64_t estimate_tokens(std::size_t bytes) noexcept {
  return static_cast<std::int64_t>((bytes + 2) / 3);
}

std::int64_t estimate_prompt_tokens(std::size_t text_bytes, std::size_t messages) noexcept {
  return estimate_tokens(text_bytes) + 4 * static_cast<std::int64_t>(messages) + 3;
}

token_bucket::token_bucket(std::int64_t rate_per_minute, std::int64_t capacity,
                           time_point now) noexcept
  : rate_(static_cast<double>(rate_per_minute)),
    capacity_(static_cast<double>(capacity > 0 ? capacity : rate_per_minute)),
    tokens_(capacity_),
    last_(now) {}

void token_bucket::refill(time_point now) noexcept {
  if (now <= last_)
    return;
  const double minutes = std::chrono::duration<double>(now - last_).count() / 60.0;
  tokens_ = std::min(capacity_, tokens_ + minutes * rate_);
  last_ = now;
}

bool token_bucket::take(std::int64_t n, time_point now) noexcept {
  if (unlimited())
    return true;
  refill(now);
  const auto want = static_cast<double>(n);
  if (tokens_ >= want || (want > capacity_ && tokens_ >= capacity_)) {
    tokens_ -= want;
    return true;
  }
  return false;
}

void token_bucket::give(std::int64_t n, time_point now) noexcept {
  if (unlimited() || n <= 0)
    return;
  refill(now);
  tokens_ = std::min(capacity_, tokens_ + static_cast<double>(n));
}

std::chrono::milliseconds token_bucket::wait_for(std::int64_t n, time_point now) noexcept {
  if (unlimited())
    return std::chrono::milliseconds{0};
  refill(now);
  const double want = std::min(static_cast<double>(n), capacity_);
  if (tokens_ >= want)
    return std::chrono::milliseconds{0};
  const double ms = (want - tokens_) / rate_ * 60'000.0;
  return std::chrono::milliseconds{static_cast<std::int64_t>(std::ceil(ms))};
}

double token_bucket::level(time_point now) noexcept {
  refill(now);
  return tokens_;
}

void sse_reader::feed(std::string_view bytes, std::vector<std::string>& events) {
  for (const char c : bytes) {
    if (c == '\n' && last_cr_) {  // the LF of a CRLF
      last_cr_ = false;
      continue;
    }
    last_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      line(line_, events);
      line_.clear();
    } else {
      line_.push_back(c);
    }
  }
}

void sse_reader::line(std::string_view l, std::vector<std::string>& events) {
  if (l.empty()) {  // end of an event
    if (has_data_)
      events.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (l.front() == ':')
    return;  // a comment
  const auto colon = l.find(':');
  const auto field = l.substr(0, colon);
  if (field != "data")
    return;
  auto value = colon == std::string_view::npos ? std::string_view{} : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ')
    value.remove_prefix(1);
  if (has_data_)
    data_.push_back('\n');
  data_.append(value);
  has_data_ = true;
}

} // namespace tollgate::core::llm
