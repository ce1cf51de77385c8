#include "http/api/parse.hpp"
#include "storage/records.hpp"

#include <catch2/catch.hpp>

using namespace tollgate;
using namespace tollgate::http::api;

TEST_CASE("query strings decode and reject bad escapes", "[http][parse]") {
  auto q = parse_query("a=1&b=hello%20world&c=x+y&empty=&flag&a=2");
  REQUIRE(q);
  CHECK(q.value["a"] == "2");
  CHECK(q.value["b"] == "hello world");
  CHECK(q.value["c"] == "x y");
  CHECK(q.value["empty"].empty());
  CHECK(q.value.count("flag") == 1);
  CHECK_FALSE(parse_query("a=%zz"));
  CHECK_FALSE(parse_query("a=%4"));
  CHECK(parse_query("").value.empty());
}

TEST_CASE("ids and pages", "[http][parse]") {
  CHECK(parse_id("42", "key_id").value == 42);
  CHECK(parse_id("abc", "key_id").error == "key_id must be a positive integer");
  CHECK_FALSE(parse_id("0", "key_id"));
  CHECK_FALSE(parse_id("-1", "key_id"));
  CHECK_FALSE(parse_id("1.5", "key_id"));
  CHECK_FALSE(parse_id("99999999999999999999999", "key_id"));
  CHECK_FALSE(parse_id("", "key_id"));

  auto p = parse_page({{"limit", "10"}, {"offset", "20"}}, 100, 1000);
  REQUIRE(p);
  CHECK(p.value.limit == 10);
  CHECK(p.value.offset == 20);
  CHECK(parse_page({}, 50, 1000).value.limit == 50);
  CHECK(parse_page({{"limit", "0"}}, 100, 1000).error == "limit must be an integer from 1 to 1000");
  CHECK_FALSE(parse_page({{"limit", "1001"}}, 100, 1000));
  CHECK(parse_page({{"offset", "x"}}, 100, 1000).error == "offset must be a non-negative integer");
}

TEST_CASE("create-key bodies", "[http][parse]") {
  auto b = parse_create_key(
    R"({"key_name":"CI","environment_tag":"test","scope_permissions":{"read":["keys"],"write":[]},"expires_in_days":30})",
    false);
  REQUIRE(b);
  CHECK(b.value.key_name == "CI");
  CHECK(b.value.environment_tag == "test");
  CHECK(b.value.scopes.read == std::vector<std::string>{"keys"});
  CHECK(b.value.scopes.write.empty());
  CHECK(b.value.expires_in_days == 30);

  auto d = parse_create_key("{}", false);
  REQUIRE(d);
  CHECK(d.value.environment_tag == "live");
  CHECK(d.value.scopes.read == std::vector<std::string>{"*"});

  CHECK(parse_create_key("", false).error == "request body must be a JSON object");
  CHECK(parse_create_key("[1]", false).error == "request body must be a JSON object");
  CHECK(parse_create_key("{", false).error == "request body is not valid JSON");
  CHECK(parse_create_key(R"({"key_name":5})", false).error == "key_name must be a string");
  CHECK(parse_create_key(R"({"key_name":""})", false).error == "key_name must not be empty");
  CHECK(parse_create_key(R"({"key_name":")" + std::string(101, 'x') + R"("})", false).error
        == "key_name must be at most 100 characters");
  CHECK(parse_create_key(R"({"key_name":"a\u0001b"})", false).error
        == "key_name must not contain control characters");
  CHECK(parse_create_key(R"({"environment_tag":"prod"})", false).error
        == "environment_tag must be one of live, test, staging, dev");
  CHECK(parse_create_key(R"({"scope_permissions":{"read":["everything"]}})", false)
          .error.rfind("scope_permissions.read: unknown group 'everything'", 0)
        == 0);
  CHECK(parse_create_key(R"({"scope_permissions":{"read":"keys"}})", false).error
        == "scope_permissions.read must be an array of strings");
  CHECK(parse_create_key(R"({"scope_permissions":[]})", false).error
        == R"(scope_permissions must be an object with "read" and "write" arrays)");
  CHECK(parse_create_key(R"({"expires_in_days":0})", false).error
        == "expires_in_days must be an integer from 1 to 3650");
  CHECK(parse_create_key(R"({"expires_in_days":"7"})", false).error
        == "expires_in_days must be an integer from 1 to 3650");
  CHECK(parse_create_key(R"({"nme":"typo"})", false).error == "unknown field 'nme'");
  // user_id only on the admin route.
  CHECK(parse_create_key(R"({"user_id":3})", false).error == "unknown field 'user_id'");
  CHECK(parse_create_key(R"({"user_id":3})", true).value.user_id == 3);
  CHECK(parse_create_key(R"({"user_id":"3"})", true).error
        == "user_id must be a positive integer");
}

TEST_CASE("update-key bodies", "[http][parse]") {
  auto b = parse_update_key(R"({"key_name":"renamed","is_active":false})");
  REQUIRE(b);
  CHECK(*b.value.key_name == "renamed");
  CHECK(*b.value.is_active == false);
  CHECK_FALSE(b.value.scopes);
  CHECK(parse_update_key("{}").error
        == "nothing to update: send key_name, is_active or scope_permissions");
  CHECK(parse_update_key(R"({"is_active":"yes"})").error == "is_active must be a boolean");
}

TEST_CASE("create-user and role bodies", "[http][parse]") {
  auto u = parse_create_user(R"({"username":"bob","email":"bob@example.com"})");
  REQUIRE(u);
  CHECK(u.value.environment_tag == "live");
  CHECK(parse_create_user(R"({"email":"bob@example.com"})").error == "username is required");
  CHECK(parse_create_user(R"({"username":"bob"})").error == "email is required");
  CHECK(parse_create_user(R"({"username":"bob","email":"nope"})").error
        == "email must be an address like name@example.com");
  CHECK(parse_create_user(R"({"username":["bob"],"email":"b@x"})").error
        == "username must be a string");

  CHECK(parse_role(R"({"role":"admin","reason":"promoted"})").value.role == "admin");
  CHECK(parse_role(R"({"role":"root"})").error == R"(role must be "user" or "admin")");
  CHECK(parse_role(R"({"reason":"x"})").error == "role is required");
}

TEST_CASE("records round-trip through their codecs", "[storage][records]") {
  core::key_record k;
  k.id = 7;
  k.user_id = 3;
  k.hash = std::string(64, 'a');
  k.name = "name \"quoted\"";
  k.env = "test";
  k.last4 = "wxyz";
  k.scopes.read = {"keys"};
  k.scopes.write = {};
  k.revoked = true;
  k.expires_at = 123;
  const auto back = storage::decode_key(storage::encode(k));
  REQUIRE(back);
  CHECK(back->id == 7);
  CHECK(back->name == k.name);
  CHECK(back->scopes.read == k.scopes.read);
  CHECK(back->scopes.write.empty());
  CHECK(back->revoked);
  CHECK(back->expires_at == 123);

  core::user_record u;
  u.id = 3;
  u.username = "alice";
  u.credits_micro = 10'500'000;
  u.role = "admin";
  const auto ub = storage::decode_user(storage::encode(u));
  REQUIRE(ub);
  CHECK(ub->credits_micro == 10'500'000);
  CHECK(ub->role == "admin");

  CHECK_FALSE(storage::decode_key("not json"));
  CHECK_FALSE(storage::decode_key(R"({"id":"seven"})"));
  CHECK(storage::user_key(42) == "u/00000000000000000042");
}
