#include "core/account.hpp"
#include "core/api_key.hpp"
#include "core/time_format.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <thread>

using namespace tollgate::core;

TEST_CASE("generated keys have the documented shape and a valid checksum", "[core][keys]") {
  std::set<std::string> seen;
  for (const char* env : {"live", "test", "staging", "dev"}) {
    for (int i = 0; i < 200; ++i) {
      const auto key = api_key::generate(env);
      const auto prefix = api_key::prefix_of(env);
      REQUIRE(key.rfind(prefix, 0) == 0);
      REQUIRE(key.size() == prefix.size() + 32 + 6);
      for (std::size_t j = prefix.size(); j < key.size(); ++j)
        REQUIRE(std::isalnum(static_cast<unsigned char>(key[j])));
      const auto parsed = api_key::parse(key);
      REQUIRE(parsed);
      CHECK(*parsed == env);
      seen.insert(key);
    }
  }
  CHECK(seen.size() == 800);
  CHECK_THROWS(api_key::generate("prod"));
}

TEST_CASE("mistyped, forged and malformed keys are refused without a lookup", "[core][keys]") {
  const auto key = api_key::generate("live");
  REQUIRE(api_key::parse(key));
  // One character changed anywhere in the random part breaks the checksum.
  for (std::size_t i = 8; i < key.size() - 6; ++i) {
    auto typo = key;
    typo[i] = typo[i] == 'a' ? 'b' : 'a';
    CHECK_FALSE(api_key::parse(typo));
  }
  // Swapped checksum characters.
  auto swapped = key;
  std::swap(swapped[swapped.size() - 1], swapped[swapped.size() - 2]);
  if (swapped != key)
    CHECK_FALSE(api_key::parse(swapped));
  CHECK_FALSE(api_key::parse(""));
  CHECK_FALSE(api_key::parse("gw_live_"));
  CHECK_FALSE(api_key::parse(key.substr(0, key.size() - 1)));
  CHECK_FALSE(api_key::parse(key + "0"));
  CHECK_FALSE(api_key::parse("gw_prod_" + key.substr(8)));
  CHECK_FALSE(api_key::parse("xx_live_" + key.substr(8)));
  auto bad_char = key;
  bad_char[10] = '-';
  CHECK_FALSE(api_key::parse(bad_char));
  // The environment is part of what the checksum covers.
  CHECK_FALSE(api_key::parse("gw_test_" + key.substr(8)));
}

TEST_CASE("checksum is CRC32 in six base62 digits", "[core][keys]") {
  // CRC32("123456789") is the standard check value 0xCBF43926; in base62
  // (0-9A-Za-z) that is "3jZRME" (computed independently with Python's zlib).
  CHECK(api_key::checksum("123456789") == "3jZRME");
  CHECK(api_key::checksum("") == "000000");
}

TEST_CASE("hashes, short hashes and masks", "[core][keys]") {
  CHECK(api_key::sha256_hex("abc")
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(api_key::short_hash(api_key::sha256_hex("abc")) == "ba7816bf8f01cfea");
  // The thread's reused context starts clean each time: the same answers
  // in any order, on another thread too.
  CHECK(api_key::sha256_hex("")
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(api_key::sha256_hex("abc")
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string other;
  std::thread{[&] { other = api_key::sha256_hex(""); }}.join();
  CHECK(other == api_key::sha256_hex(""));
  CHECK(api_key::mask("gw_live_", "wxyz") == "gw_live_...wxyz");
  CHECK(api_key::constant_time_equal("abc", "abc"));
  CHECK_FALSE(api_key::constant_time_equal("abc", "abd"));
  CHECK_FALSE(api_key::constant_time_equal("abc", "abcd"));
}

TEST_CASE("scope permissions check read and write per group", "[core][keys]") {
  scope_permissions all;
  CHECK(all.allows("keys", true));
  CHECK(all.allows("admin", false));
  scope_permissions ro;
  ro.read = {"keys", "account"};
  ro.write = {};
  CHECK(ro.allows("keys", false));
  CHECK_FALSE(ro.allows("keys", true));
  CHECK_FALSE(ro.allows("admin", false));
  // covers: a key may only hand out what it has.
  CHECK(all.covers(ro));
  CHECK(all.covers(all));
  CHECK_FALSE(ro.covers(all));
  scope_permissions keys_read;
  keys_read.read = {"keys"};
  keys_read.write = {};
  CHECK(ro.covers(keys_read));
  scope_permissions admin_read;
  admin_read.read = {"admin"};
  admin_read.write = {};
  CHECK_FALSE(ro.covers(admin_read));
  CHECK(valid_scope_group("*"));
  CHECK(valid_scope_group("admin"));
  CHECK_FALSE(valid_scope_group("everything"));
}

TEST_CASE("key refusal: revoked, inactive, expired", "[core][keys]") {
  key_record k;
  CHECK(key_refusal(k, 1000).empty());
  k.expires_at = 2000;
  CHECK(key_refusal(k, 1999).empty());
  CHECK(key_refusal(k, 2000) == "API key has expired");
  k.active = false;
  CHECK(key_refusal(k, 0) == "API key is inactive");
  k.revoked = true;
  CHECK(key_refusal(k, 0) == "API key has been revoked");
}

TEST_CASE("ISO-8601 parsing", "[core][time]") {
  CHECK(parse_iso8601("1970-01-01") == 0);
  CHECK(parse_iso8601("2024-01-01T00:00:00Z") == 1704067200);
  CHECK(parse_iso8601("2024-02-29T12:30:15Z") == 1709209815);
  CHECK(parse_iso8601("2024-02-29T12:30:15.123Z") == 1709209815);
  CHECK(parse_iso8601("2024-02-29T12:30:15+00:00") == 1709209815);
  CHECK(parse_iso8601("2024-02-29T12:30:15") == 1709209815);
  CHECK_FALSE(parse_iso8601("2023-02-29"));
  CHECK_FALSE(parse_iso8601("2024-13-01"));
  CHECK_FALSE(parse_iso8601("2024-01-01T25:00:00Z"));
  CHECK_FALSE(parse_iso8601("2024-01-01T00:00:00+02:00"));
  CHECK_FALSE(parse_iso8601("yesterday"));
  CHECK_FALSE(parse_iso8601(""));
  // Round trip with the formatter.
  CHECK(iso8601(*parse_iso8601("2031-07-04T08:09:10Z")) == "2031-07-04T08:09:10Z");
}
