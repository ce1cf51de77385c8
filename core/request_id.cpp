#include "core/request_id.hpp"

#include <cstdint>
#include <random>

namespace tollgate::core {

bool valid_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128)
    return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || c == '.' || c == '_' || c == ':' || c == '/' || c == '+' || c == '='
                    || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

namespace {

// Request ids need uniqueness, not secrecy: a per-thread xorshift generator
// seeded from the OS keeps id generation off any lock.
struct id_generator {
  std::uint64_t s0;
  std::uint64_t s1;
  id_generator() {
    std::random_device rd;
    s0 = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    s1 = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ 0x9E3779B97F4A7C15ULL;
  }
  std::uint64_t next() noexcept {
    std::uint64_t x = s0;
    const std::uint64_t y = s1;
    s0 = y;
    x ^= x << 23;
    s1 = x ^ y ^ (x >> 17) ^ (y >> 26);
    return s1 + y;
  }
};

} // namespace

std::string new_request_id() {
  thread_local id_generator gen;
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = gen.next();
    for (int i = 0; i < 16; ++i) {
      out[static_cast<std::size_t>(half * 16 + i)] = hex[v & 0xF];
      v >>= 4;
    }
  }
  return out;
}

} // namespace tollgate::core
