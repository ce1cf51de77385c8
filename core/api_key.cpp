#include "core/api_key.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include <array>
#include <memory>
#include <stdexcept>

namespace tollgate::core::api_key {

namespace {

constexpr std::string_view alphabet =
  "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

bool is_base62(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

} // namespace

bool valid_environment(std::string_view env) noexcept {
  return env == "live" || env == "test" || env == "staging" || env == "dev";
}

std::string prefix_of(std::string_view env) {
  std::string p{"gw_"};
  p += env;
  p += '_';
  return p;
}

std::string checksum(std::string_view text) {
  auto crc = ::crc32(0L, reinterpret_cast<const Bytef*>(text.data()),
                     static_cast<uInt>(text.size()));
  std::string out(checksum_chars, '0');
  for (std::size_t i = checksum_chars; i-- > 0 && crc > 0;) {
    out[i] = alphabet[crc % 62];
    crc /= 62;
  }
  return out;
}

std::string generate(std::string_view env) {
  if (!valid_environment(env))
    throw std::invalid_argument("unknown key environment");
  std::string key = prefix_of(env);
  // Rejection sampling keeps the characters uniform: 248 = 4 * 62.
  std::array<unsigned char, 64> buf{};
  while (key.size() < prefix_of(env).size() + random_chars) {
    if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1)
      throw std::runtime_error("the CSPRNG failed");
    for (const auto b : buf) {
      if (b >= 248)
        continue;
      key += alphabet[b % 62];
      if (key.size() == prefix_of(env).size() + random_chars)
        break;
    }
  }
  key += checksum(key);
  return key;
}

std::optional<std::string> parse(std::string_view key) noexcept {
  if (key.substr(0, 3) != "gw_")
    return std::nullopt;
  const auto sep = key.find('_', 3);
  if (sep == std::string_view::npos)
    return std::nullopt;
  const auto env = key.substr(3, sep - 3);
  if (!valid_environment(env))
    return std::nullopt;
  const auto body = key.substr(sep + 1);
  if (body.size() != random_chars + checksum_chars)
    return std::nullopt;
  for (const char c : body)
    if (!is_base62(c))
      return std::nullopt;
  try {
    const auto expected = checksum(key.substr(0, key.size() - checksum_chars));
    if (!constant_time_equal(expected, key.substr(key.size() - checksum_chars)))
      return std::nullopt;
    return std::string{env};
  } catch (...) {
    return std::nullopt;
  }
}

std::string sha256_hex(std::string_view key) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  // Fetched once: EVP_sha256() makes every digest look the algorithm up in
  // the provider store again (two thirds of a key's hashing cost).
  // If that fetch failed, the per-call lookup still gets its chance.
  static EVP_MD* const fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  const EVP_MD* sha256 = fetched != nullptr ? fetched : EVP_sha256();
  // One context per thread, reset by each init: EVP_Digest would allocate
  // and free one per key (a request's key is hashed on the I/O thread).
  struct ctx_deleter {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  thread_local std::unique_ptr<EVP_MD_CTX, ctx_deleter> ctx;
  if (!ctx)
    ctx.reset(EVP_MD_CTX_new());  // again on the next key if it failed
  if (!ctx || EVP_DigestInit_ex2(ctx.get(), sha256, nullptr) != 1
      || EVP_DigestUpdate(ctx.get(), key.data(), key.size()) != 1
      || EVP_DigestFinal_ex(ctx.get(), md.data(), &len) != 1)
    throw std::runtime_error("SHA-256 failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::array<char, EVP_MAX_MD_SIZE * 2> text{};
  for (unsigned int i = 0; i < len; ++i) {
    text[2 * i] = hex[md[i] >> 4];
    text[2 * i + 1] = hex[md[i] & 0xF];
  }
  return std::string{text.data(), len * 2U};
}

std::string short_hash(std::string_view full_hash) {
  return std::string{full_hash.substr(0, 16)};
}

std::string mask(std::string_view prefix, std::string_view last4) {
  std::string out{prefix};
  out += "...";
  out += last4;
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size())
    return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace tollgate::core::api_key
