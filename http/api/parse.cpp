#include "http/api/parse.hpp"

#include "core/api_key.hpp"
#include "core/limit_policies.hpp"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <functional>

namespace tollgate::http::api {

namespace {

constexpr std::size_t max_name = 100;
constexpr std::size_t max_email = 254;

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool decode_component(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size())
        return false;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

bool printable(std::string_view s) noexcept {
  for (const unsigned char c : s)
    if (c < 0x20 || c == 0x7F)
      return false;
  return true;
}

/// The body as a JSON object, or the reason it is not one.
struct json_body {
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  std::string error;

  explicit json_body(std::string_view text) {
    if (text.empty()) {
      error = "request body must be a JSON object";
      return;
    }
    simdjson::dom::element doc;
    if (parser.parse(text.data(), text.size(), true).get(doc) != simdjson::SUCCESS) {
      error = "request body is not valid JSON";
      return;
    }
    if (doc.get(object) != simdjson::SUCCESS)
      error = "request body must be a JSON object";
  }
};

/// Walks the fields; `on` returns an error for a bad value, and unknown
/// fields are errors too (a typo should not be silently ignored).
std::string each_field(simdjson::dom::object obj,
                       const std::function<std::string(std::string_view, simdjson::dom::element,
                                                       bool&)>& on) {
  for (auto field : obj) {
    bool known = false;
    auto err = on(field.key, field.value, known);
    if (!err.empty())
      return err;
    if (!known)
      return "unknown field '" + std::string{field.key} + "'";
  }
  return {};
}

/// Parses `body` as a JSON object and hands each field to
/// `on(value, key, element, known)`; the result's error is the first problem.
template <class T, class OnField>
parsed<T> parse_fields(std::string_view body, OnField on) {
  parsed<T> r;
  json_body j{body};
  if (!j.error.empty()) {
    r.error = j.error;
    return r;
  }
  r.error = each_field(j.object, [&](std::string_view k, simdjson::dom::element e, bool& known) {
    return on(r.value, k, e, known);
  });
  return r;
}

std::string get_string(simdjson::dom::element v, std::string_view field, std::size_t max_len,
                       bool allow_empty, std::string& out) {
  std::string_view s;
  if (v.get(s) != simdjson::SUCCESS)
    return std::string{field} + " must be a string";
  if (!allow_empty && s.empty())
    return std::string{field} + " must not be empty";
  if (s.size() > max_len)
    return std::string{field} + " must be at most " + std::to_string(max_len) + " characters";
  if (!printable(s))
    return std::string{field} + " must not contain control characters";
  out = std::string{s};
  return {};
}

std::string get_env(simdjson::dom::element v, std::string& out) {
  auto err = get_string(v, "environment_tag", 16, false, out);
  if (!err.empty())
    return err;
  if (!core::api_key::valid_environment(out))
    return "environment_tag must be one of live, test, staging, dev";
  return {};
}

std::string get_group_list(simdjson::dom::element v, std::string_view field,
                           std::vector<std::string>& out) {
  simdjson::dom::array arr;
  if (v.get(arr) != simdjson::SUCCESS)
    return "scope_permissions." + std::string{field} + " must be an array of strings";
  out.clear();
  for (auto item : arr) {
    std::string_view s;
    if (item.get(s) != simdjson::SUCCESS)
      return "scope_permissions." + std::string{field} + " must be an array of strings";
    if (!core::valid_scope_group(s))
      return "scope_permissions." + std::string{field} + ": unknown group '" + std::string{s}
             + "' (known: " + core::scope_group_list() + ")";
    if (out.size() >= 16)
      return "scope_permissions." + std::string{field} + " lists too many groups";
    out.emplace_back(s);
  }
  return {};
}

std::string get_scopes(simdjson::dom::element v, core::scope_permissions& out) {
  simdjson::dom::object obj;
  if (v.get(obj) != simdjson::SUCCESS)
    return "scope_permissions must be an object with \"read\" and \"write\" arrays";
  // A missing list grants nothing of that kind.
  out.read.clear();
  out.write.clear();
  for (auto field : obj) {
    std::string err;
    if (field.key == "read")
      err = get_group_list(field.value, "read", out.read);
    else if (field.key == "write")
      err = get_group_list(field.value, "write", out.write);
    else
      err = "scope_permissions: unknown field '" + std::string{field.key} + "'";
    if (!err.empty())
      return err;
  }
  return {};
}

} // namespace

parsed<std::map<std::string, std::string>> parse_query(std::string_view query) {
  parsed<std::map<std::string, std::string>> r;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty())
      continue;
    const auto eq = part.find('=');
    std::string name;
    std::string value;
    if (!decode_component(part.substr(0, eq), name)
        || (eq != std::string_view::npos && !decode_component(part.substr(eq + 1), value))) {
      r.error = "malformed query string: bad percent escape";
      return r;
    }
    r.value[name] = value;
  }
  return r;
}

parsed<std::uint64_t> parse_id(std::string_view text, std::string_view field) {
  parsed<std::uint64_t> r;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v == 0)
    r.error = std::string{field} + " must be a positive integer";
  else
    r.value = v;
  return r;
}

parsed<page_params> parse_page(const std::map<std::string, std::string>& q,
                               std::uint64_t default_limit, std::uint64_t max_limit) {
  parsed<page_params> r;
  r.value.limit = default_limit;
  if (auto it = q.find("limit"); it != q.end()) {
    auto n = parse_id(it->second, "limit");
    if (!n || n.value > max_limit) {
      r.error = "limit must be an integer from 1 to " + std::to_string(max_limit);
      return r;
    }
    r.value.limit = n.value;
  }
  if (auto it = q.find("offset"); it != q.end()) {
    std::uint64_t v = 0;
    const auto& s = it->second;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) {
      r.error = "offset must be a non-negative integer";
      return r;
    }
    r.value.offset = v;
  }
  return r;
}

parsed<create_key_body> parse_create_key(std::string_view body, bool allow_user_id) {
  auto r = parse_fields<create_key_body>(body, [&](create_key_body& v, std::string_view k, simdjson::dom::element e,
                                     bool& known) -> std::string {
    known = true;
    if (k == "key_name")
      return get_string(e, "key_name", max_name, false, v.key_name);
    if (k == "environment_tag")
      return get_env(e, v.environment_tag);
    if (k == "scope_permissions") {
      v.has_scopes = true;
      return get_scopes(e, v.scopes);
    }
    if (k == "expires_in_days") {
      std::int64_t days = 0;
      if (e.get(days) != simdjson::SUCCESS || days < 1 || days > 3650)
        return "expires_in_days must be an integer from 1 to 3650";
      v.expires_in_days = days;
      return {};
    }
    if (k == "user_id" && allow_user_id) {
      std::uint64_t id = 0;
      if (e.get(id) != simdjson::SUCCESS || id == 0)
        return "user_id must be a positive integer";
      v.user_id = id;
      return {};
    }
    known = false;
    return {};
  });
  return r;
}

parsed<update_key_body> parse_update_key(std::string_view body) {
  auto r = parse_fields<update_key_body>(body, [&](update_key_body& v, std::string_view k, simdjson::dom::element e,
                                     bool& known) -> std::string {
    known = true;
    if (k == "key_name") {
      std::string name;
      auto err = get_string(e, "key_name", max_name, false, name);
      v.key_name = std::move(name);
      return err;
    }
    if (k == "is_active") {
      bool b = false;
      if (e.get(b) != simdjson::SUCCESS)
        return "is_active must be a boolean";
      v.is_active = b;
      return {};
    }
    if (k == "scope_permissions") {
      core::scope_permissions s;
      auto err = get_scopes(e, s);
      v.scopes = std::move(s);
      return err;
    }
    known = false;
    return {};
  });
  auto& v = r.value;
  if (r && !v.key_name && !v.is_active && !v.scopes)
    r.error = "nothing to update: send key_name, is_active or scope_permissions";
  return r;
}

parsed<create_user_body> parse_create_user(std::string_view body) {
  bool has_username = false;
  bool has_email = false;
  auto r = parse_fields<create_user_body>(body, [&](create_user_body& v, std::string_view k,
                                                    simdjson::dom::element e,
                                                    bool& known) -> std::string {
    known = true;
    if (k == "username") {
      has_username = true;
      return get_string(e, "username", max_name, false, v.username);
    }
    if (k == "email") {
      has_email = true;
      auto err = get_string(e, "email", max_email, false, v.email);
      if (err.empty()
          && (v.email.find('@') == std::string::npos || v.email.front() == '@'
              || v.email.back() == '@' || v.email.find(' ') != std::string::npos))
        err = "email must be an address like name@example.com";
      return err;
    }
    if (k == "auth_method")
      return get_string(e, "auth_method", 32, false, v.auth_method);
    if (k == "environment_tag")
      return get_env(e, v.environment_tag);
    known = false;
    return {};
  });
  if (r && !has_username)
    r.error = "username is required";
  else if (r && !has_email)
    r.error = "email is required";
  return r;
}

parsed<role_body> parse_role(std::string_view body) {
  auto r = parse_fields<role_body>(body, [&](role_body& v, std::string_view k, simdjson::dom::element e,
                                     bool& known) -> std::string {
    known = true;
    if (k == "role") {
      auto err = get_string(e, "role", 16, false, v.role);
      if (err.empty() && v.role != core::role_user && v.role != core::role_admin)
        err = "role must be \"user\" or \"admin\"";
      return err;
    }
    if (k == "reason")
      return get_string(e, "reason", 500, true, v.reason);
    known = false;
    return {};
  });
  auto& v = r.value;
  if (r && v.role.empty())
    r.error = "role is required";
  return r;
}

} // namespace tollgate::http::api

namespace tollgate::http::api {

namespace {

std::string get_limit(simdjson::dom::element e, std::string_view field, std::int64_t& out) {
  std::int64_t v = 0;
  if (e.get(v) != simdjson::SUCCESS || v < 0 || v > 1'000'000'000'000)
    return std::string{field} + " must be an integer from 0 (back to the default) to 10^12";
  out = v;
  return {};
}

} // namespace

bool is_short_hash(std::string_view s) noexcept {
  if (s.size() != 16)
    return false;
  for (const char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

parsed<token_limits_body> parse_token_limits(std::string_view body) {
  auto r = parse_fields<token_limits_body>(body, [&](token_limits_body& v, std::string_view k, simdjson::dom::element e,
                                     bool& known) -> std::string {
    known = true;
    if (k == "daily_limit")
      return get_limit(e, "daily_limit", v.daily_limit);
    if (k == "monthly_limit")
      return get_limit(e, "monthly_limit", v.monthly_limit);
    known = false;
    return {};
  });
  auto& v = r.value;
  if (r && v.daily_limit < 0 && v.monthly_limit < 0)
    r.error = "send daily_limit and/or monthly_limit";
  return r;
}

namespace {

/// A user id as a number or, as the gateway reference shows it, "user_123".
std::string get_user_id(simdjson::dom::element e, std::uint64_t& out) {
  std::uint64_t id = 0;
  std::string_view text;
  if (e.get(id) == simdjson::SUCCESS && id > 0) {
    out = id;
    return {};
  }
  if (e.get(text) == simdjson::SUCCESS) {
    if (text.rfind("user_", 0) == 0)
      text.remove_prefix(5);
    auto parsed_id = parse_id(text, "user_id");
    if (parsed_id) {
      out = parsed_id.value;
      return {};
    }
  }
  return "user_id must be a positive integer";
}

} // namespace

parsed<add_credits_body> parse_add_credits(std::string_view body) {
  auto r = parse_fields<add_credits_body>(
    body, [&](add_credits_body& v, std::string_view k, simdjson::dom::element e,
              bool& known) -> std::string {
      known = true;
      if (k == "user_id")
        return get_user_id(e, v.user_id);
      if (k == "reason")
        return get_string(e, "reason", 500, true, v.reason);
      if (k == "credits") {
        double d = 0;
        std::int64_t i = 0;
        if (e.get(i) == simdjson::SUCCESS)
          d = static_cast<double>(i);
        else if (e.get(d) != simdjson::SUCCESS)
          return "credits must be a number";
        if (!(d > 0 && d <= 1e9))
          return "credits must be more than 0 and at most 1000000000";
        const double micro = d * 1e6;
        v.credits_micro = static_cast<std::int64_t>(micro + 0.5);
        if (v.credits_micro <= 0 || std::abs(micro - static_cast<double>(v.credits_micro)) > 1e-3)
          return "credits: at most 6 decimal places";
        return {};
      }
      known = false;
      return {};
    });
  if (r && r.value.user_id == 0)
    r.error = "user_id is required";
  else if (r && r.value.credits_micro == 0)
    r.error = "credits is required";
  return r;
}

parsed<user_limits_body> parse_user_limits(std::string_view body) {
  auto r = parse_fields<user_limits_body>(body, [&](user_limits_body& v, std::string_view k, simdjson::dom::element e,
                                     bool& known) -> std::string {
    known = true;
    if (k == "user_id")
      return get_user_id(e, v.user_id);
    if (k == "requests_per_minute")
      return get_limit(e, "requests_per_minute", v.per_minute);
    if (k == "requests_per_hour")
      return get_limit(e, "requests_per_hour", v.per_hour);
    if (k == "requests_per_day")
      return get_limit(e, "requests_per_day", v.per_day);
    if (k == "reason")
      return get_string(e, "reason", 500, true, v.reason);
    if (k == "custom_limits") {
      simdjson::dom::object obj;
      if (e.get(obj) != simdjson::SUCCESS)
        return "custom_limits must be an object of endpoint: requests per minute";
      for (auto field : obj) {
        const std::string name{field.key};
        if (core::endpoint_of(name).empty())
          return "custom_limits: unknown endpoint '" + name
                 + "' (use chat_completions, image_generation, responses or \"METHOD /route\")";
        std::int64_t limit = 0;
        auto err = get_limit(field.value, "custom_limits." + name, limit);
        if (!err.empty())
          return err;
        if (v.custom.size() >= 64)
          return "custom_limits lists too many endpoints";
        v.custom.emplace_back(name, limit);
      }
      return {};
    }
    known = false;
    return {};
  });
  auto& v = r.value;
  if (r && v.user_id == 0)
    r.error = "user_id is required";
  else if (r && v.per_minute < 0 && v.per_hour < 0 && v.per_day < 0 && v.custom.empty())
    r.error = "send requests_per_minute, requests_per_hour, requests_per_day and/or "
              "custom_limits";
  return r;
}

} // namespace tollgate::http::api
