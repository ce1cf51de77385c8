// Keys, users, roles and the audit log through the real server.

#include "app/config_loader.hpp"
#include "app/gateway.hpp"
#include "core/api_key.hpp"
#include "metrics/registry.hpp"

#include "support/fixture.hpp"
#include "support/http_client.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <rapidjson/document.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace tollgate;
using namespace std::chrono_literals;

using test::create_key;
using test::create_user;
using test::instance;
using test::json;
using test::str;
using test::user;

TEST_CASE("an empty store bootstraps one admin key, printed once", "[integration][keys]") {
  test::temp_dir dir;
  std::string admin;
  {
    instance g{dir.str("data")};
    admin = g.admin();
    REQUIRE(core::api_key::parse(admin));
    auto r = g.call("GET", "/roles", admin);
    REQUIRE(r.status == 200);
    auto d = json(r);
    CHECK(d["total"].GetUint64() == 1);
    CHECK(str(d["data"][0]["role"]) == "admin");
  }
  instance again{dir.str("data")};
  CHECK(again.admin().empty());  // not generated a second time
  CHECK(again.call("GET", "/roles", admin).status == 200);
}

TEST_CASE("TOLLGATE_ADMIN_KEY provides the first admin", "[integration][keys]") {
  test::temp_dir dir;
  const auto key = core::api_key::generate("staging");
  ::setenv("TOLLGATE_ADMIN_KEY", key.c_str(), 1);
  {
    instance g{dir.str("data")};
    CHECK(g.admin().empty());
    CHECK(g.call("GET", "/roles", key).status == 200);
  }
  ::setenv("TOLLGATE_ADMIN_KEY", "gw_live_not-a-key", 1);
  CHECK_THROWS_AS(instance{dir.str("data2")}, app::config_error);
  ::unsetenv("TOLLGATE_ADMIN_KEY");
}

TEST_CASE("key routes: create, list masked, update, delete", "[integration][keys]") {
  test::temp_dir dir;
  instance g{dir.str("data")};
  auto alice = create_user(g, "alice");

  std::string plaintext;
  const auto id = create_key(
    g, alice.key,
    R"({"key_name":"CI","environment_tag":"test","scope_permissions":{"read":["*"],"write":["*"]}})",
    &plaintext);
  REQUIRE(plaintext.rfind("gw_test_", 0) == 0);
  CHECK(g.call("GET", "/user/balance", plaintext).status == 200);

  auto r = g.call("GET", "/user/api-keys", alice.key);
  REQUIRE(r.status == 200);
  auto d = json(r);
  REQUIRE(d["count"].GetUint64() == 2);
  for (const auto& k : d["data"].GetArray()) {
    const auto shown = str(k["api_key"]);
    CHECK(shown.find("...") != std::string::npos);
    CHECK(shown != plaintext);
    CHECK(shown != alice.key);
    CHECK(str(k["api_key_hash"]).size() == 16);
  }
  CHECK(r.body.find(plaintext) == std::string::npos);
  CHECK(str(d["data"][1]["api_key"]) == "gw_test_..." + plaintext.substr(plaintext.size() - 4));
  CHECK(str(d["data"][1]["api_key_hash"])
        == core::api_key::sha256_hex(plaintext).substr(0, 16));

  r = g.call("PUT", "/user/api-keys/" + std::to_string(id), alice.key,
             R"({"key_name":"renamed","is_active":false})");
  REQUIRE(r.status == 200);
  CHECK(str(json(r)["message"]) == "API key updated successfully");
  // Deactivated: refused at once; reactivated: accepted again.
  auto refused = g.call("GET", "/user/balance", plaintext);
  CHECK(refused.status == 401);
  CHECK(str(json(refused)["detail"]) == "API key is inactive");
  REQUIRE(g.call("PUT", "/user/api-keys/" + std::to_string(id), alice.key,
                 R"({"is_active":true})")
            .status
          == 200);
  CHECK(g.call("GET", "/user/balance", plaintext).status == 200);

  r = g.call("DELETE", "/user/api-keys/" + std::to_string(id), alice.key);
  REQUIRE(r.status == 200);
  CHECK(str(json(r)["message"]) == "API key deleted successfully");
  CHECK(g.call("GET", "/user/balance", plaintext).status == 401);
  CHECK(g.call("DELETE", "/user/api-keys/" + std::to_string(id), alice.key).status == 404);
  CHECK(json(g.call("GET", "/user/api-keys", alice.key))["count"].GetUint64() == 1);
}

TEST_CASE("balance shows the caller's credits in the reference shape", "[integration][keys]") {
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(),
             [](core::config& c) { c.accounts.initial_credits_micro = 12'500'000; }};
  auto alice = create_user(g, "alice");
  auto r = g.call("GET", "/user/balance", alice.key);
  REQUIRE(r.status == 200);
  auto d = json(r);
  CHECK(d["credits"].GetDouble() == 12.5);
  CHECK(str(d["status"]) == "active");
  CHECK(d["user_id"].GetUint64() == alice.id);
  CHECK(str(d["api_key"]) == "gw_live_..." + alice.key.substr(alice.key.size() - 4));
}

TEST_CASE("admin credits land exactly, survive a restart and are in the ledger",
          "[integration][credits]") {
  test::temp_dir dir;
  const auto tweak = [](core::config& c) { c.accounts.initial_credits_micro = 10'000'000; };
  std::string admin;
  user alice;
  user bob;
  {
    instance g{dir.str("data"), core::system_clock::instance(), tweak};
    admin = g.admin();
    alice = create_user(g, "alice");
    bob = create_user(g, "bob");
    auto r = g.call("POST", "/admin/add_credits", admin,
                    R"({"user_id":)" + std::to_string(alice.id)
                      + R"(,"credits":50.000001,"reason":"Support credit"})");
    REQUIRE(r.status == 200);
    auto d = json(r);
    CHECK(d["success"].GetBool());
    CHECK(str(d["message"]) == "Credits added successfully");
    CHECK(d["new_balance"].GetDouble() == 60.000001);
    // The reference's "user_123" form too.
    r = g.call("POST", "/admin/add_credits", admin,
               R"({"user_id":"user_)" + std::to_string(alice.id) + R"(","credits":2})");
    REQUIRE(r.status == 200);
    CHECK(json(r)["new_balance"].GetDouble() == 62.000001);
    CHECK(json(g.call("GET", "/user/balance", alice.key))["credits"].GetDouble() == 62.000001);

    // Bad input names the field; nothing changes.
    for (const char* body :
         {R"({"credits":5})", R"({"user_id":1})", R"({"user_id":1,"credits":-5})",
          R"({"user_id":1,"credits":0})", R"({"user_id":1,"credits":"5"})",
          R"({"user_id":1,"credits":0.0000001})", R"({"user_id":0,"credits":1})", "not json",
          R"({"user_id":1,"credits":1e12})"}) {
      auto bad = g.call("POST", "/admin/add_credits", admin, body);
      INFO(body << " -> " << bad.body);
      CHECK(bad.status == 400);
    }
    CHECK(g.call("POST", "/admin/add_credits", admin, R"({"user_id":999,"credits":1})").status
          == 404);
    CHECK(json(g.call("GET", "/user/balance", alice.key))["credits"].GetDouble() == 62.000001);
  }
  instance g{dir.str("data"), core::system_clock::instance(), tweak};
  CHECK(json(g.call("GET", "/user/balance", alice.key))["credits"].GetDouble() == 62.000001);
  auto ledger = json(g.call("GET", "/user/ledger", alice.key));
  REQUIRE(ledger["data"].Size() == 2);
  CHECK(str(ledger["data"][0]["kind"]) == "credit");
  CHECK(ledger["data"][0]["amount_micro"].GetInt64() == 50'000'001);
  CHECK(str(ledger["data"][0]["note"]) == "Support credit");
  CHECK(ledger["data"][1]["amount_micro"].GetInt64() == 2'000'000);
  CHECK(ledger["data"][1]["balance"].GetDouble() == 62.000001);
  // Another user sees only their own ledger.
  CHECK(json(g.call("GET", "/user/ledger", bob.key))["data"].Size() == 0);
}

TEST_CASE("authorisation matrix across the routes", "[integration][keys][authz]") {
  test::temp_dir dir;
  instance g{dir.str("data")};
  const auto admin = g.admin();
  auto a = create_user(g, "usera");
  auto b = create_user(g, "userb");
  auto c = create_user(g, "userc");
  REQUIRE(g.call("POST", "/api/v1/admin/api-keys/" + std::to_string(c.key_id) + "/revoke", admin)
            .status
          == 200);
  const auto unknown = core::api_key::generate("live");  // well-formed, never issued
  const auto a_key = std::to_string(a.key_id);
  int n = 0;
  const auto unique = [&] { return "u" + std::to_string(++n); };

  struct route {
    std::string method;
    std::string path;
    std::function<std::string()> body;
    bool admin_only;
    bool a_owned;  ///< names user A's key: others get 404
  };
  const std::vector<route> routes = {
    {"POST", "/user/api-keys", [] { return std::string{"{}"}; }, false, false},
    {"GET", "/user/api-keys", nullptr, false, false},
    {"PUT", "/user/api-keys/" + a_key, [] { return std::string{R"({"key_name":"x"})"}; }, false,
     true},
    {"GET", "/user/balance", nullptr, false, false},
    {"GET", "/user/ledger", nullptr, false, false},
    {"POST", "/admin/add_credits",
     [&] { return R"({"user_id":)" + std::to_string(b.id) + R"(,"credits":1})"; }, true, false},
    {"POST", "/admin/create",
     [&] {
       auto u = unique();
       return R"({"username":")" + u + R"(","email":")" + u + R"(@x.io"})";
     },
     true, false},
    {"GET", "/roles", nullptr, true, false},
    {"GET", "/roles/" + std::to_string(a.id), nullptr, true, false},
    {"PUT", "/roles/" + std::to_string(b.id), [] { return std::string{R"({"role":"user"})"}; },
     true, false},
    {"GET", "/admin/audit-logs", nullptr, true, false},
    {"POST", "/api/v1/admin/api-keys",
     [&] { return R"({"user_id":)" + std::to_string(b.id) + "}"; }, true, false},
    {"GET", "/api/v1/admin/api-keys", nullptr, true, false},
    {"GET", "/api/v1/admin/api-keys/" + a_key, nullptr, true, false},
  };
  struct who {
    std::string name;
    std::string key;
    bool is_admin;
    bool is_a;
    bool valid;
  };
  const std::vector<who> callers = {
    {"no key", "", false, false, false},
    {"malformed key", "gw_live_short", false, false, false},
    {"unknown key", unknown, false, false, false},
    {"revoked key", c.key, false, false, false},
    {"user A", a.key, false, true, true},
    {"user B", b.key, false, false, true},
    {"admin", admin, true, false, true},
  };
  for (const auto& r : routes) {
    for (const auto& w : callers) {
      int expected = 200;
      if (!w.valid)
        expected = 401;
      else if (r.admin_only && !w.is_admin)
        expected = 403;
      else if (r.a_owned && !w.is_a)
        expected = 404;
      auto res = g.call(r.method, r.path, w.key, r.body ? r.body() : std::string{});
      INFO(r.method << " " << r.path << " as " << w.name << ": " << res.body);
      CHECK(res.status == expected);
      if (expected != 200) {
        auto d = json(res);
        CHECK(d["status_code"].GetInt() == expected);
      }
    }
  }
  // X-API-Key works like Bearer.
  CHECK(test::request(g.port(), "GET", "/user/balance", "X-API-Key: " + a.key + "\r\n").status
        == 200);
  // Public routes need no key.
  CHECK(g.call("GET", "/ping").status == 200);
}

TEST_CASE("revocation reaches the key at once and survives a restart", "[integration][keys]") {
  test::temp_dir dir;
  std::string admin;
  user a;
  {
    instance g{dir.str("data")};
    admin = g.admin();
    a = create_user(g, "alice");
    REQUIRE(g.call("GET", "/user/balance", a.key).status == 200);  // key actor is warm
    auto r = g.call("POST", "/api/v1/admin/api-keys/" + std::to_string(a.key_id) + "/revoke",
                    admin);
    REQUIRE(r.status == 200);
    CHECK(json(r)["data"]["is_revoked"].GetBool());
    auto refused = g.call("GET", "/user/balance", a.key);
    CHECK(refused.status == 401);
    CHECK(str(json(refused)["detail"]) == "API key has been revoked");
    // A revoked key cannot be switched back on.
    CHECK(g.call("PUT", "/user/api-keys/" + std::to_string(a.key_id), admin,
                 R"({"is_active":true})")
            .status
          == 404);  // not the admin's own key
  }
  instance g{dir.str("data")};
  CHECK(g.call("GET", "/user/balance", a.key).status == 401);
  // Admin routes name a key by id or by its api_key_hash.
  auto by_hash = g.call("GET",
                        "/api/v1/admin/api-keys/"
                          + core::api_key::short_hash(core::api_key::sha256_hex(a.key)),
                        admin);
  REQUIRE(by_hash.status == 200);
  CHECK(json(by_hash)["data"]["id"].GetUint64() == a.key_id);
  CHECK(g.call("GET", "/api/v1/admin/api-keys/0123456789abcdef", admin).status == 404);
  auto r = g.call("GET", "/api/v1/admin/api-keys/" + std::to_string(a.key_id), admin);
  REQUIRE(r.status == 200);
  CHECK(json(r)["data"]["is_revoked"].GetBool());
  CHECK(g.call("DELETE", "/api/v1/admin/api-keys/" + std::to_string(a.key_id), admin).status
        == 200);
  CHECK(g.call("GET", "/api/v1/admin/api-keys/" + std::to_string(a.key_id), admin).status
        == 404);
}

TEST_CASE("users, keys, roles and audit survive a restart, and ids are never reused",
          "[integration][keys]") {
  test::temp_dir dir;
  std::string admin;
  user a;
  std::uint64_t deleted_id = 0;
  {
    instance g{dir.str("data")};
    admin = g.admin();
    a = create_user(g, "alice");
    deleted_id = create_key(g, a.key, R"({"key_name":"temp"})");
    REQUIRE(g.call("DELETE", "/user/api-keys/" + std::to_string(deleted_id), a.key).status
            == 200);
    REQUIRE(g.call("PUT", "/roles/" + std::to_string(a.id), admin, R"({"role":"admin"})").status
            == 200);
  }
  instance g{dir.str("data")};
  CHECK(g.call("GET", "/roles", a.key).status == 200);  // still an admin
  auto roles = json(g.call("GET", "/roles/" + std::to_string(a.id), admin));
  CHECK(str(roles["role"]) == "admin");
  const auto next = create_key(g, a.key, "{}");
  CHECK(next > deleted_id);
  auto audit = json(g.call("GET", "/admin/audit-logs?action=api_key_deleted", admin));
  CHECK(audit["total"].GetUint64() == 1);
}

TEST_CASE("role changes reach warm key actors at once", "[integration][keys]") {
  test::temp_dir dir;
  instance g{dir.str("data")};
  auto a = create_user(g, "alice");
  CHECK(g.call("GET", "/roles", a.key).status == 403);
  auto r = g.call("PUT", "/roles/" + std::to_string(a.id), g.admin(),
                  R"({"role":"admin","reason":"on call"})");
  REQUIRE(r.status == 200);
  auto d = json(r);
  CHECK(str(d["old_role"]) == "user");
  CHECK(str(d["new_role"]) == "admin");
  CHECK(g.call("GET", "/roles", a.key).status == 200);
  REQUIRE(g.call("PUT", "/roles/" + std::to_string(a.id), g.admin(), R"({"role":"user"})").status
          == 200);
  CHECK(g.call("GET", "/roles", a.key).status == 403);
  auto role = json(g.call("GET", "/roles/" + std::to_string(a.id), g.admin()));
  CHECK(str(role["role"]) == "user");
  CHECK(role["permissions"].Size() == 2);
}

TEST_CASE("scope permissions are checked per route group", "[integration][keys]") {
  test::temp_dir dir;
  instance g{dir.str("data")};
  auto a = create_user(g, "alice");
  std::string read_only;
  create_key(g, a.key, R"({"scope_permissions":{"read":["keys"],"write":[]}})", &read_only);
  CHECK(g.call("GET", "/user/api-keys", read_only).status == 200);
  auto r = g.call("POST", "/user/api-keys", read_only, "{}");
  CHECK(r.status == 403);
  CHECK(str(json(r)["detail"])
        == "this key's scope_permissions do not grant write access to 'keys'");
  CHECK(g.call("GET", "/user/balance", read_only).status == 403);

  // A key cannot mint or widen to more than it has.
  std::string writer;
  create_key(g, a.key, R"({"scope_permissions":{"read":["keys"],"write":["keys"]}})", &writer);
  auto wider = g.call("POST", "/user/api-keys", writer,
                      R"({"scope_permissions":{"read":["*"],"write":["*"]}})");
  CHECK(wider.status == 403);
  auto inherited = g.call("POST", "/user/api-keys", writer, "{}");
  REQUIRE(inherited.status == 200);
  CHECK(json(inherited)["scope_permissions"]["read"].Size() == 1);
  CHECK(str(json(inherited)["scope_permissions"]["read"][0]) == "keys");
  const auto own_id = json(inherited)["id"].GetUint64();
  CHECK(g.call("PUT", "/user/api-keys/" + std::to_string(own_id), writer,
               R"({"scope_permissions":{"read":["admin"],"write":[]}})")
          .status
        == 403);
}

TEST_CASE("expired keys are refused (injected clock)", "[integration][keys]") {
  test::temp_dir dir;
  core::manual_clock clock{std::chrono::system_clock::time_point{std::chrono::hours{24 * 20000}}};
  instance g{dir.str("data"), clock};
  auto a = create_user(g, "alice");
  std::string key;
  create_key(g, a.key, R"({"expires_in_days":1})", &key);
  CHECK(g.call("GET", "/user/balance", key).status == 200);
  clock.advance(std::chrono::hours{24} - std::chrono::seconds{1});
  CHECK(g.call("GET", "/user/balance", key).status == 200);
  clock.advance(std::chrono::seconds{1});
  auto r = g.call("GET", "/user/balance", key);
  CHECK(r.status == 401);
  CHECK(str(json(r)["detail"]) == "API key has expired");
  CHECK(g.call("GET", "/user/balance", a.key).status == 200);  // no expiry
}

TEST_CASE("idle key actors stop and come back on the next request", "[integration][keys]") {
  test::temp_dir dir;
  instance g{dir.str("data"), core::system_clock::instance(),
             [](core::config& c) { c.auth.key_idle_timeout = 100ms; }};
  const auto admin = g.admin();
  const auto live = [&] {
    const auto text = g.gw->metrics().expose();
    const auto pos = text.find("\ntollgate_key_actors_live ");
    REQUIRE(pos != std::string::npos);
    return std::stoi(text.substr(pos + 26));
  };
  REQUIRE(g.call("GET", "/roles", admin).status == 200);
  CHECK(live() == 1);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (live() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  CHECK(live() == 0);
  CHECK(g.call("GET", "/roles", admin).status == 200);
  CHECK(g.gw->metrics().expose().find("tollgate_key_actors_spawned_total 2")
        != std::string::npos);
}

TEST_CASE("every account route names the bad field with a 400", "[integration][keys]") {
  test::temp_dir dir;
  instance g{dir.str("data")};
  const auto admin = g.admin();
  auto a = create_user(g, "alice");
  struct bad {
    std::string method;
    std::string path;
    std::string body;
    std::string detail;  ///< a part of the expected message
  };
  const std::vector<bad> cases = {
    {"POST", "/user/api-keys", "not json", "not valid JSON"},
    {"POST", "/user/api-keys", R"({"key_name":")" + std::string(300, 'n') + R"("})",
     "key_name must be at most 100 characters"},
    {"POST", "/user/api-keys", R"({"key_name":17})", "key_name must be a string"},
    {"POST", "/user/api-keys", R"({"environment_tag":"prod"})", "environment_tag"},
    {"POST", "/user/api-keys", R"({"scope_permissions":{"read":["nope"]}})",
     "scope_permissions.read"},
    {"PUT", "/user/api-keys/abc", R"({"key_name":"x"})", "key_id must be a positive integer"},
    {"PUT", "/user/api-keys/" + std::to_string(a.key_id), "{}", "nothing to update"},
    {"PUT", "/user/api-keys/" + std::to_string(a.key_id), R"({"is_active":1})",
     "is_active must be a boolean"},
    {"DELETE", "/user/api-keys/-3", "", "key_id must be a positive integer"},
    {"GET", "/user/api-keys?limit=0", "", "limit"},
    {"GET", "/user/api-keys?offset=x", "", "offset"},
    {"POST", "/admin/create", R"({"username":"x"})", "email is required"},
    {"POST", "/admin/create", R"({"username":"x","email":"x@y","environment_tag":"qa"})",
     "environment_tag"},
    {"POST", "/admin/create", R"({"username":"alice","email":"x@y.z"})", "username"},
    {"GET", "/roles?role=root", "", "role"},
    {"GET", "/roles/x1", "", "user_id must be a positive integer"},
    {"PUT", "/roles/" + std::to_string(a.id), R"({"role":"superuser"})", "role must be"},
    {"PUT", "/roles/1.5", R"({"role":"user"})", "user_id"},
    {"GET", "/admin/audit-logs?start_date=yesterday", "", "start_date"},
    {"GET", "/admin/audit-logs?user_id=me", "", "user_id"},
    {"GET", "/admin/audit-logs?verbose=1", "", "unknown query parameter 'verbose'"},
    {"GET", "/admin/audit-logs?limit=5000", "", "limit"},
    {"POST", "/api/v1/admin/api-keys", R"({"user_id":"two"})", "user_id"},
    {"GET", "/api/v1/admin/api-keys/zero", "", "id must be a positive integer or a 16"},
    {"POST", "/api/v1/admin/api-keys/0/revoke", "", "id must be a positive integer"},
    {"GET", "/api/v1/admin/api-keys?user_id=0", "", "user_id"},
  };
  for (const auto& c : cases) {
    auto r = g.call(c.method, c.path, c.method == "GET" && c.path.rfind("/user", 0) != 0
                                          ? admin
                                          : (c.path.rfind("/user", 0) == 0 ? a.key : admin),
                    c.body);
    INFO(c.method << " " << c.path << " " << c.body << " -> " << r.body);
    const bool conflict = c.path == "/admin/create" && c.body.find("alice") != std::string::npos;
    CHECK(r.status == (conflict ? 409 : 400));
    CHECK(str(json(r)["detail"]).find(c.detail) != std::string::npos);
  }
  // Unknown resources are 404, not 400.
  CHECK(g.call("GET", "/api/v1/admin/api-keys/999", admin).status == 404);
  CHECK(g.call("GET", "/roles/999", admin).status == 404);
  CHECK(g.call("POST", "/api/v1/admin/api-keys", admin, R"({"user_id":999})").status == 404);
}

TEST_CASE("the audit log records who did what, with filters and pages", "[integration][keys]") {
  test::temp_dir dir;
  instance g{dir.str("data")};
  const auto admin = g.admin();
  auto a = create_user(g, "alice");
  const auto k = create_key(g, a.key, R"({"key_name":"audited"})");
  REQUIRE(test::request(g.port(), "POST",
                        "/api/v1/admin/api-keys/" + std::to_string(k) + "/revoke",
                        "Authorization: Bearer " + admin + "\r\nUser-Agent: audit-test/1.0\r\n")
            .status
          == 200);
  auto r = g.call("GET", "/admin/audit-logs?action=api_key_revoked", admin);
  REQUIRE(r.status == 200);
  auto d = json(r);
  REQUIRE(d["total"].GetUint64() == 1);
  const auto& e = d["data"][0];
  CHECK(str(e["resource_type"]) == "api_key");
  CHECK(str(e["resource_id"]) == std::to_string(k));
  CHECK(e["user_id"].GetUint64() == 1);  // the admin
  CHECK(str(e["ip_address"]) == "127.0.0.1");
  CHECK(str(e["user_agent"]) == "audit-test/1.0");
  CHECK(str(e["details"]["key_name"]) == "audited");

  auto by_user = json(g.call("GET", "/admin/audit-logs?user_id=" + std::to_string(a.id), admin));
  CHECK(by_user["total"].GetUint64() == 1);  // alice created one key
  CHECK(str(by_user["data"][0]["action"]) == "api_key_created");

  auto all = json(g.call("GET", "/admin/audit-logs", admin));
  const auto total = all["total"].GetUint64();
  CHECK(total >= 6);  // bootstrap user+key, alice user+key, key, revoke
  auto page = json(g.call("GET", "/admin/audit-logs?limit=2&offset=1", admin));
  CHECK(page["data"].Size() == 2);
  CHECK(page["total"].GetUint64() == total);
  CHECK(str(page["data"][0]["id"]) == str(all["data"][1]["id"]));
  auto future = json(g.call("GET", "/admin/audit-logs?start_date=2999-01-01", admin));
  CHECK(future["total"].GetUint64() == 0);
  auto past = json(g.call("GET", "/admin/audit-logs?end_date=2000-01-01T00:00:00Z", admin));
  CHECK(past["total"].GetUint64() == 0);
  // A date-only end_date includes its whole day.
  const auto today = str(all["data"][0]["timestamp"]).substr(0, 10);
  auto one_day = json(g.call("GET",
                             "/admin/audit-logs?start_date=" + today + "&end_date=" + today,
                             admin));
  CHECK(one_day["total"].GetUint64() == total);
}

TEST_CASE("no plaintext key is ever written to the data dir or the logs",
          "[integration][keys][security]") {
  test::temp_dir dir;
  const auto log_file = dir.str("tollgate.log");
  auto previous = spdlog::default_logger();
  auto file_logger = spdlog::basic_logger_mt("leak-test", log_file);
  file_logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(file_logger);

  std::vector<std::string> issued;
  {
    instance g{dir.str("data"), core::system_clock::instance(), [](core::config& c) {
                 c.log.access_log = true;
               }};
    spdlog::set_level(spdlog::level::trace);
    issued.push_back(g.admin());
    auto a = create_user(g, "alice");
    issued.push_back(a.key);
    std::string k;
    create_key(g, a.key, R"({"key_name":"leak"})", &k);
    issued.push_back(k);
    auto r = g.call("POST", "/api/v1/admin/api-keys", g.admin(),
                    R"({"user_id":)" + std::to_string(a.id) + "}");
    issued.push_back(str(json(r)["api_key"]));
    // Use every key, also in ways that fail and get logged.
    for (const auto& key : issued) {
      g.call("GET", "/user/balance", key);
      g.call("GET", "/roles", key);
      g.call("GET", "/user/api-keys/", key);
    }
    g.call("POST", "/api/v1/admin/api-keys/" + std::to_string(a.key_id) + "/revoke", g.admin());
    g.call("GET", "/user/balance", a.key);
    g.gw->shutdown();
  }
  file_logger->flush();
  spdlog::set_default_logger(previous);
  spdlog::drop("leak-test");

  REQUIRE(issued.size() == 4);
  std::string everything;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (!entry.is_regular_file())
      continue;
    std::ifstream in{entry.path(), std::ios::binary};
    everything.append(std::istreambuf_iterator<char>{in}, {});
  }
  // The search sees the records: each key's hash is there...
  for (const auto& key : issued) {
    CHECK(everything.find(core::api_key::sha256_hex(key)) != std::string::npos);
    // ...and the log has lines about the requests...
    INFO("plaintext key found: " << key);
    CHECK(everything.find(key) == std::string::npos);
    // ...but not even the random part of a key appears anywhere.
    CHECK(everything.find(key.substr(8, 32)) == std::string::npos);
  }
  std::ifstream log{log_file};
  const std::string log_text{std::istreambuf_iterator<char>{log}, {}};
  CHECK(log_text.find("\"GET /user/balance\"") != std::string::npos);
}
