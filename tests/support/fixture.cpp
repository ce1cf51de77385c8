#include "support/fixture.hpp"

#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

namespace tollgate::test {

instance::instance(const std::string& data_dir, const core::clock& clock,
                   const std::function<void(core::config&)>& tweak) {
  spdlog::set_level(spdlog::level::warn);
  core::config cfg;
  cfg.server.port = 0;
  cfg.storage.data_dir = data_dir;
  cfg.log.access_log = false;
  if (tweak)
    tweak(cfg);
  gw = std::make_unique<app::gateway>(cfg, clock);
  gw->start();
}

http_response instance::call(const std::string& method, const std::string& target,
                             const std::string& key, const std::string& body) const {
  std::string headers;
  if (!key.empty())
    headers = "Authorization: Bearer " + key + "\r\n";
  if (!body.empty())
    headers += "Content-Type: application/json\r\n";
  return request(port(), method, target, headers, body);
}

rapidjson::Document json(const http_response& r) {
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  INFO(r.body);
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

std::string str(const rapidjson::Value& v) {
  return {v.GetString(), v.GetStringLength()};
}

user create_user(const instance& g, const std::string& name) {
  auto r = g.call("POST", "/admin/create", g.admin(),
                  R"({"username":")" + name + R"(","email":")" + name + R"(@example.com"})");
  INFO(r.body);
  REQUIRE(r.status == 200);
  auto d = json(r);
  return {d["user_id"].GetUint64(), str(d["api_key"]), d["key_id"].GetUint64()};
}

std::uint64_t create_key(const instance& g, const std::string& key, const std::string& body,
                         std::string* plaintext) {
  auto r = g.call("POST", "/user/api-keys", key, body);
  INFO(r.body);
  REQUIRE(r.status == 200);
  auto d = json(r);
  if (plaintext != nullptr)
    *plaintext = str(d["api_key"]);
  return d["id"].GetUint64();
}

} // namespace tollgate::test
