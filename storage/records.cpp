#include "storage/records.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <simdjson.h>

#include <cstdio>

namespace tollgate::storage {

namespace {

using writer = rapidjson::Writer<rapidjson::StringBuffer>;

void put(writer& w, const char* k, std::string_view v) {
  w.Key(k);
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}
void put(writer& w, const char* k, std::int64_t v) {
  w.Key(k);
  w.Int64(v);
}
void put(writer& w, const char* k, std::uint64_t v) {
  w.Key(k);
  w.Uint64(v);
}
void put(writer& w, const char* k, bool v) {
  w.Key(k);
  w.Bool(v);
}
void put_list(writer& w, const char* k, const std::vector<std::string>& v) {
  w.Key(k);
  w.StartArray();
  for (const auto& s : v)
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  w.EndArray();
}

std::string padded_id(std::uint64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(id));
  return buf;
}

// Field readers: absent fields keep their defaults, wrong types fail.
struct reader {
  simdjson::dom::object obj;
  bool ok = true;

  void get(const char* k, std::string& out) {
    auto v = obj[k];
    if (v.error() == simdjson::NO_SUCH_FIELD)
      return;
    std::string_view s;
    if (v.get(s) != simdjson::SUCCESS) {
      ok = false;
      return;
    }
    out = std::string{s};
  }
  void get(const char* k, std::int64_t& out) {
    auto v = obj[k];
    if (v.error() == simdjson::NO_SUCH_FIELD)
      return;
    if (v.get(out) != simdjson::SUCCESS)
      ok = false;
  }
  void get(const char* k, std::uint64_t& out) {
    auto v = obj[k];
    if (v.error() == simdjson::NO_SUCH_FIELD)
      return;
    if (v.get(out) != simdjson::SUCCESS)
      ok = false;
  }
  void get(const char* k, bool& out) {
    auto v = obj[k];
    if (v.error() == simdjson::NO_SUCH_FIELD)
      return;
    if (v.get(out) != simdjson::SUCCESS)
      ok = false;
  }
  void get_list(simdjson::dom::object o, const char* k, std::vector<std::string>& out) {
    auto v = o[k];
    if (v.error() == simdjson::NO_SUCH_FIELD)
      return;
    simdjson::dom::array arr;
    if (v.get(arr) != simdjson::SUCCESS) {
      ok = false;
      return;
    }
    out.clear();
    for (auto item : arr) {
      std::string_view s;
      if (item.get(s) != simdjson::SUCCESS) {
        ok = false;
        return;
      }
      out.emplace_back(s);
    }
  }
};

template <class F>
auto with_object(std::string_view json, F&& f) -> decltype(f(std::declval<reader&>())) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size(), true).get(doc) != simdjson::SUCCESS)
    return std::nullopt;
  reader r;
  if (doc.get(r.obj) != simdjson::SUCCESS)
    return std::nullopt;
  return f(r);
}

} // namespace

std::string user_key(std::uint64_t id) {
  return "u/" + padded_id(id);
}

std::string key_key(std::string_view hash) {
  return "k/" + std::string{hash};
}

std::string audit_key(std::uint64_t id) {
  return "a/" + padded_id(id);
}

std::string encode(const core::user_record& u) {
  rapidjson::StringBuffer buf;
  writer w{buf};
  w.StartObject();
  put(w, "id", u.id);
  put(w, "username", u.username);
  put(w, "email", u.email);
  put(w, "role", u.role);
  put(w, "credits_micro", u.credits_micro);
  put(w, "plan", u.plan);
  put(w, "auth_method", u.auth_method);
  put(w, "created_at", u.created_at);
  put(w, "role_assigned_at", u.role_assigned_at);
  put(w, "requests_per_minute", u.requests_per_minute);
  put(w, "requests_per_hour", u.requests_per_hour);
  put(w, "requests_per_day", u.requests_per_day);
  w.Key("custom_limits");
  w.StartObject();
  for (const auto& [name, limit] : u.custom_limits) {
    w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    w.Int64(limit);
  }
  w.EndObject();
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

std::string encode(const core::key_record& k) {
  rapidjson::StringBuffer buf;
  writer w{buf};
  w.StartObject();
  put(w, "id", k.id);
  put(w, "user_id", k.user_id);
  put(w, "hash", k.hash);
  put(w, "name", k.name);
  put(w, "env", k.env);
  put(w, "last4", k.last4);
  w.Key("scopes");
  w.StartObject();
  put_list(w, "read", k.scopes.read);
  put_list(w, "write", k.scopes.write);
  w.EndObject();
  put(w, "active", k.active);
  put(w, "revoked", k.revoked);
  put(w, "created_at", k.created_at);
  put(w, "expires_at", k.expires_at);
  put(w, "revoked_at", k.revoked_at);
  put(w, "updated_at", k.updated_at);
  put(w, "tokens_per_day", k.tokens_per_day);
  put(w, "tokens_per_month", k.tokens_per_month);
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

std::string encode(const core::audit_entry& a) {
  rapidjson::StringBuffer buf;
  writer w{buf};
  w.StartObject();
  put(w, "id", a.id);
  put(w, "user_id", a.user_id);
  put(w, "action", a.action);
  put(w, "resource_type", a.resource_type);
  put(w, "resource_id", a.resource_id);
  put(w, "details", a.details_json);
  put(w, "ip_address", a.ip_address);
  put(w, "user_agent", a.user_agent);
  put(w, "timestamp", a.timestamp);
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

std::optional<core::user_record> decode_user(std::string_view json) {
  return with_object(json, [](reader& r) -> std::optional<core::user_record> {
    core::user_record u;
    r.get("id", u.id);
    r.get("username", u.username);
    r.get("email", u.email);
    r.get("role", u.role);
    r.get("credits_micro", u.credits_micro);
    r.get("plan", u.plan);
    r.get("auth_method", u.auth_method);
    r.get("created_at", u.created_at);
    r.get("role_assigned_at", u.role_assigned_at);
    r.get("requests_per_minute", u.requests_per_minute);
    r.get("requests_per_hour", u.requests_per_hour);
    r.get("requests_per_day", u.requests_per_day);
    simdjson::dom::object custom;
    if (r.obj["custom_limits"].get(custom) == simdjson::SUCCESS)
      for (auto field : custom) {
        std::int64_t limit = 0;
        if (field.value.get(limit) != simdjson::SUCCESS)
          return std::nullopt;
        u.custom_limits.emplace_back(std::string{field.key}, limit);
      }
    if (!r.ok || u.id == 0)
      return std::nullopt;
    return u;
  });
}

std::optional<core::key_record> decode_key(std::string_view json) {
  return with_object(json, [](reader& r) -> std::optional<core::key_record> {
    core::key_record k;
    r.get("id", k.id);
    r.get("user_id", k.user_id);
    r.get("hash", k.hash);
    r.get("name", k.name);
    r.get("env", k.env);
    r.get("last4", k.last4);
    simdjson::dom::object scopes;
    if (r.obj["scopes"].get(scopes) == simdjson::SUCCESS) {
      r.get_list(scopes, "read", k.scopes.read);
      r.get_list(scopes, "write", k.scopes.write);
    }
    r.get("active", k.active);
    r.get("revoked", k.revoked);
    r.get("created_at", k.created_at);
    r.get("expires_at", k.expires_at);
    r.get("revoked_at", k.revoked_at);
    r.get("updated_at", k.updated_at);
    r.get("tokens_per_day", k.tokens_per_day);
    r.get("tokens_per_month", k.tokens_per_month);
    if (!r.ok || k.id == 0 || k.hash.size() != 64)
      return std::nullopt;
    return k;
  });
}

std::optional<core::audit_entry> decode_audit(std::string_view json) {
  return with_object(json, [](reader& r) -> std::optional<core::audit_entry> {
    core::audit_entry a;
    r.get("id", a.id);
    r.get("user_id", a.user_id);
    r.get("action", a.action);
    r.get("resource_type", a.resource_type);
    r.get("resource_id", a.resource_id);
    r.get("details", a.details_json);
    r.get("ip_address", a.ip_address);
    r.get("user_agent", a.user_agent);
    r.get("timestamp", a.timestamp);
    if (!r.ok || a.id == 0)
      return std::nullopt;
    return a;
  });
}

} // namespace tollgate::storage
