#include "app/config_loader.hpp"

#include "core/account.hpp"

#include <toml++/toml.h>

#include <charconv>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

namespace tollgate::app {

namespace {

/// Where a node sits, for messages.
struct place {
  const std::string& source;
  std::string key;
  const toml::node& node;

  [[noreturn]] void fail(const std::string& problem) const {
    const auto line = node.source().begin.line;
    throw config_error(source + ":" + std::to_string(line) + ": " + key + ": " + problem);
  }
};

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date or time";
  }
}

std::int64_t get_int(const place& p, std::int64_t min, std::int64_t max) {
  const auto* v = p.node.as_integer();
  if (v == nullptr)
    p.fail(std::string{"expected an integer, got "} + type_name(p.node));
  const auto x = v->get();
  if (x < min || x > max)
    p.fail("must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got "
           + std::to_string(x));
  return x;
}

bool get_bool(const place& p) {
  const auto* v = p.node.as_boolean();
  if (v == nullptr)
    p.fail(std::string{"expected a boolean, got "} + type_name(p.node));
  return v->get();
}

std::string get_string(const place& p, bool allow_empty = false) {
  const auto* v = p.node.as_string();
  if (v == nullptr)
    p.fail(std::string{"expected a string, got "} + type_name(p.node));
  if (!allow_empty && v->get().empty())
    p.fail("must not be empty");
  return v->get();
}

std::string get_choice(const place& p, std::initializer_list<const char*> choices) {
  auto s = get_string(p);
  std::string list;
  for (const char* c : choices) {
    if (s == c)
      return s;
    list += list.empty() ? "" : ", ";
    list += c;
  }
  p.fail("must be one of " + list + ", got \"" + s + "\"");
}

std::chrono::milliseconds get_ms(const place& p, std::int64_t min, std::int64_t max) {
  return std::chrono::milliseconds{get_int(p, min, max)};
}

/// Credits as a TOML integer or float, to micro-credits; at most 6 decimals.
std::int64_t get_credits(const place& p) {
  if (const auto* i = p.node.as_integer()) {
    if (i->get() < 0 || i->get() > 1'000'000'000)
      p.fail("must be between 0 and 1000000000");
    return i->get() * 1'000'000;
  }
  const auto* f = p.node.as_floating_point();
  if (f == nullptr)
    p.fail(std::string{"expected a number, got "} + type_name(p.node));
  const double v = f->get();
  if (!(v >= 0 && v <= 1e9))
    p.fail("must be between 0 and 1000000000");
  return static_cast<std::int64_t>(v * 1e6 + 0.5);
}

std::string get_algorithm(const place& p) {
  return get_choice(p, {"fixed_window", "sliding_window", "token_bucket"});
}

std::vector<std::string> get_dialects(const place& p) {
  const auto* arr = p.node.as_array();
  if (arr == nullptr)
    p.fail(std::string{"expected an array of strings, got "} + type_name(p.node));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const place item{p.source, p.key + "[" + std::to_string(i) + "]", *arr->get(i)};
    out.push_back(get_choice(item, {"x-ratelimit", "ratelimit", "ietf"}));
  }
  return out;
}

const toml::table& get_table(const place& p) {
  const auto* t = p.node.as_table();
  if (t == nullptr)
    p.fail(std::string{"expected a table, got "} + type_name(p.node));
  return *t;
}

core::route_limit_config get_route_limit(const place& p) {
  core::route_limit_config r;
  bool has_method = false;
  bool has_path = false;
  bool has_limit = false;
  for (const auto& [k, node] : get_table(p)) {
    const std::string name{k.str()};
    const place f{p.source, p.key + "." + name, node};
    if (name == "method") {
      r.method = get_choice(f, {"GET", "POST", "PUT", "PATCH", "DELETE"});
      has_method = true;
    } else if (name == "path") {
      r.path = get_string(f);
      if (r.path.front() != '/')
        f.fail("must start with '/'");
      has_path = true;
    } else if (name == "limit") {
      r.limit = get_int(f, 1, 1'000'000'000);
      has_limit = true;
    } else if (name == "window_s") {
      r.window = std::chrono::seconds{get_int(f, 1, 31 * 86400)};
    } else if (name == "algorithm") {
      r.algorithm = get_algorithm(f);
    } else if (name == "burst") {
      r.burst = get_int(f, 0, 1'000'000'000);
    } else {
      f.fail("unknown key");
    }
  }
  if (!has_method || !has_path || !has_limit)
    p.fail("needs method, path and limit");
  return r;
}

std::vector<std::string> get_strings(const place& p) {
  const auto* arr = p.node.as_array();
  if (arr == nullptr)
    p.fail(std::string{"expected an array of strings, got "} + type_name(p.node));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < arr->size(); ++i)
    out.push_back(get_string(place{p.source, p.key + "[" + std::to_string(i) + "]", *arr->get(i)}));
  return out;
}

core::model_config get_model(const place& p) {
  core::model_config m;
  for (const auto& [k, node] : get_table(p)) {
    const std::string name{k.str()};
    const place f{p.source, p.key + "." + name, node};
    if (name == "id")
      m.id = get_string(f);
    else if (name == "upstream")
      m.upstream = get_string(f);
    else if (name == "context_length")
      m.context_length = get_int(f, 16, 100'000'000);
    else if (name == "prompt_price_per_mtok")
      m.prompt_price_micro_per_mtok = get_credits(f);
    else if (name == "completion_price_per_mtok")
      m.completion_price_micro_per_mtok = get_credits(f);
    else if (name == "default_max_tokens")
      m.default_max_tokens = get_int(f, 1, 100'000'000);
    else
      f.fail("unknown key");
  }
  if (m.id.empty())
    p.fail("needs an id");
  if (m.upstream.empty())
    m.upstream = m.id;
  return m;
}

core::provider_config get_provider(const place& p) {
  core::provider_config c;
  for (const auto& [k, node] : get_table(p)) {
    const std::string name{k.str()};
    const place f{p.source, p.key + "." + name, node};
    if (name == "name") {
      c.name = get_string(f);
    } else if (name == "base_url") {
      c.base_url = get_string(f);
      while (c.base_url.size() > 1 && c.base_url.back() == '/')
        c.base_url.pop_back();
      if (c.base_url != "builtin:demo" && c.base_url.rfind("http://", 0) != 0
          && c.base_url.rfind("https://", 0) != 0)
        f.fail("must start with http:// or https://, or be \"builtin:demo\"");
    } else if (name == "api_key_env") {
      c.api_key_env = get_string(f);
    } else if (name == "optional") {
      c.optional = get_bool(f);
    } else if (name == "headers") {
      for (const auto& [hk, hv] : get_table(f)) {
        const place h{f.source, f.key + "." + std::string{hk.str()}, hv};
        c.headers.emplace_back(std::string{hk.str()}, get_string(h, true));
      }
    } else if (name == "max_concurrency") {
      c.max_concurrency = static_cast<std::size_t>(get_int(f, 1, 100'000));
    } else if (name == "queue_size") {
      c.queue_size = static_cast<std::size_t>(get_int(f, 0, 1'000'000));
    } else if (name == "queue_timeout_s") {
      c.queue_timeout = std::chrono::seconds{get_int(f, 0, 3600)};
    } else if (name == "queue_timeout_ms") {
      c.queue_timeout = get_ms(f, 0, 3'600'000);
    } else if (name == "tokens_per_minute") {
      c.tokens_per_minute = get_int(f, 0, 1'000'000'000'000);
    } else if (name == "burst_tokens") {
      c.burst_tokens = get_int(f, 0, 1'000'000'000'000);
    } else if (name == "request_timeout_s") {
      c.request_timeout = std::chrono::seconds{get_int(f, 1, 3600)};
    } else if (name == "request_timeout_ms") {
      c.request_timeout = get_ms(f, 1, 3'600'000);
    } else if (name == "retries") {
      c.retries = static_cast<unsigned>(get_int(f, 0, 10));
    } else if (name == "retry_backoff_ms") {
      c.retry_backoff = get_ms(f, 0, 60'000);
    } else if (name == "fallbacks") {
      c.fallbacks = get_strings(f);
    } else if (name == "models") {
      const auto* arr = f.node.as_array();
      if (arr == nullptr)
        f.fail("expected an array of tables ([[providers.models]])");
      for (std::size_t i = 0; i < arr->size(); ++i) {
        const place item{f.source, f.key + "[" + std::to_string(i) + "]", *arr->get(i)};
        auto m = get_model(item);
        for (const auto& other : c.models)
          if (other.id == m.id)
            item.fail("duplicate model id \"" + m.id + "\"");
        c.models.push_back(std::move(m));
      }
    } else {
      f.fail("unknown key");
    }
  }
  if (c.name.empty() || c.base_url.empty())
    p.fail("needs name and base_url");
  return c;
}

core::proxy_route_config get_proxy_route(const place& p, core::config& cfg) {
  core::proxy_route_config r;
  // paths and limits need the prefix, which a table may list after them.
  std::optional<place> paths;
  std::optional<place> limits;
  for (const auto& [k, node] : get_table(p)) {
    const std::string name{k.str()};
    const place f{p.source, p.key + "." + name, node};
    if (name == "prefix") {
      r.prefix = get_string(f);
      while (r.prefix.size() > 1 && r.prefix.back() == '/')
        r.prefix.pop_back();
      if (r.prefix.front() != '/' || r.prefix == "/" || r.prefix.find('{') != std::string::npos)
        f.fail("must be a path like \"/api/v1\" (not \"/\", no {parameters})");
    } else if (name == "upstream") {
      r.upstream = get_string(f);
      while (!r.upstream.empty() && r.upstream.back() == '/')
        r.upstream.pop_back();
      if (r.upstream.rfind("http://", 0) != 0 && r.upstream.rfind("https://", 0) != 0)
        f.fail("must start with http:// or https://");
    } else if (name == "strip_prefix") {
      r.strip_prefix = get_bool(f);
    } else if (name == "credential_header") {
      r.credential_header = get_string(f);
    } else if (name == "credential_env") {
      r.credential_env = get_string(f);
    } else if (name == "group") {
      r.group = get_string(f);
      if (!core::valid_scope_group(r.group) || r.group == "*")
        f.fail("unknown route group (known: " + core::scope_group_list() + ")");
    } else if (name == "timeout_s") {
      r.timeout = std::chrono::seconds{get_int(f, 1, 3600)};
    } else if (name == "max_response_bytes") {
      r.max_response_bytes = static_cast<std::size_t>(get_int(f, 0, 1LL << 50));
    } else if (name == "paths") {
      paths.emplace(f);
    } else if (name == "limits") {
      limits.emplace(f);
    } else {
      f.fail("unknown key");
    }
  }
  if (r.prefix.empty() || r.upstream.empty())
    p.fail("needs prefix and upstream");
  if (paths) {
    r.paths = get_strings(*paths);
    for (const auto& path : r.paths)
      if (path != r.prefix && path.rfind(r.prefix + "/", 0) != 0)
        paths->fail("\"" + path + "\" is not under the prefix " + r.prefix);
  }
  if (limits) {
    // Per-method limits of this backend: [[limits.routes]] entries whose
    // path defaults to everything under the prefix.
    const auto* arr = limits->node.as_array();
    if (arr == nullptr)
      limits->fail("expected an array of tables ([[routes.limits]])");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const place item{limits->source, limits->key + "[" + std::to_string(i) + "]", *arr->get(i)};
      const auto* t = item.node.as_table();
      if (t != nullptr && !t->contains("path")) {
        toml::table copy = *t;
        copy.insert("path", r.prefix + "/{*rest}");
        cfg.limits.routes.push_back(get_route_limit(place{item.source, item.key, copy}));
      } else {
        cfg.limits.routes.push_back(get_route_limit(item));
      }
    }
  }
  if (r.credential_header.empty() != r.credential_env.empty())
    p.fail("credential_header and credential_env go together");
  return r;
}

void get_proxy_routes(const place& p, core::config& cfg) {
  const auto* arr = p.node.as_array();
  if (arr == nullptr)
    p.fail("expected an array of tables ([[routes]])");
  cfg.routes.clear();
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const place item{p.source, p.key + "[" + std::to_string(i) + "]", *arr->get(i)};
    auto r = get_proxy_route(item, cfg);
    for (const auto& other : cfg.routes)
      if (other.prefix == r.prefix)
        item.fail("duplicate prefix \"" + r.prefix + "\"");
    cfg.routes.push_back(std::move(r));
  }
}

void get_providers(const place& p, core::config& cfg) {
  const auto* arr = p.node.as_array();
  if (arr == nullptr)
    p.fail("expected an array of tables ([[providers]])");
  cfg.llm.providers.clear();
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const place item{p.source, p.key + "[" + std::to_string(i) + "]", *arr->get(i)};
    auto c = get_provider(item);
    for (const auto& other : cfg.llm.providers)
      if (other.name == c.name)
        item.fail("duplicate provider name \"" + c.name + "\"");
    cfg.llm.providers.push_back(std::move(c));
  }
  for (std::size_t i = 0; i < cfg.llm.providers.size(); ++i)
    for (const auto& f : cfg.llm.providers[i].fallbacks) {
      bool known = false;
      for (const auto& other : cfg.llm.providers)
        known = known || (other.name == f && f != cfg.llm.providers[i].name);
      if (!known)
        place{p.source, p.key + "[" + std::to_string(i) + "].fallbacks", *arr->get(i)}.fail(
          "\"" + f + "\" is not another provider");
    }
}

using setter = std::function<void(const place&, core::config&)>;
using section_schema = std::map<std::string, setter>;

const std::map<std::string, section_schema>& schema() {
  static const std::map<std::string, section_schema> s = {
    {"server",
     {
       {"listen",
        [](const place& p, core::config& c) {
          auto err = parse_listen(get_string(p), c.server);
          if (!err.empty())
            p.fail(err);
        }},
       {"io_threads",
        [](const place& p, core::config& c) {
          c.server.io_threads = static_cast<unsigned>(get_int(p, 1, 256));
        }},
       {"max_connections",
        [](const place& p, core::config& c) {
          c.server.max_connections = static_cast<std::size_t>(get_int(p, 1, 1'000'000));
        }},
       {"header_limit_bytes",
        [](const place& p, core::config& c) {
          c.server.header_limit_bytes = static_cast<std::size_t>(get_int(p, 1024, 1 << 20));
        }},
       {"body_limit_bytes",
        [](const place& p, core::config& c) {
          c.server.body_limit_bytes = static_cast<std::size_t>(get_int(p, 0, 1LL << 32));
        }},
       {"request_timeout_ms",
        [](const place& p, core::config& c) {
          c.server.request_timeout = get_ms(p, 1, 3'600'000);
        }},
       {"idle_timeout_ms",
        [](const place& p, core::config& c) { c.server.idle_timeout = get_ms(p, 1, 86'400'000); }},
       {"shutdown_grace_ms",
        [](const place& p, core::config& c) { c.server.shutdown_grace = get_ms(p, 0, 600'000); }},
       {"bridge",
        [](const place& p, core::config& c) {
          c.server.bridge = get_choice(p, {"responder", "actor"});
        }},
       {"routers",
        [](const place& p, core::config& c) {
          c.server.routers = static_cast<unsigned>(get_int(p, 0, 256));
        }},
     }},
    {"storage",
     {
       {"data_dir", [](const place& p, core::config& c) { c.storage.data_dir = get_string(p); }},
       {"sync_writes",
        [](const place& p, core::config& c) { c.storage.sync_writes = get_bool(p); }},
       {"commit_delay_ms",
        [](const place& p, core::config& c) { c.storage.commit_delay = get_ms(p, 0, 1000); }},
       {"max_batch",
        [](const place& p, core::config& c) {
          c.storage.max_batch = static_cast<std::size_t>(get_int(p, 1, 1'000'000));
        }},
       {"writer_from",
        [](const place& p, core::config& c) {
          c.storage.writer_from = static_cast<unsigned>(get_int(p, 0, 1'000'000));
        }},
     }},
    {"log",
     {
       {"level",
        [](const place& p, core::config& c) {
          c.log.level =
            get_choice(p, {"trace", "debug", "info", "warn", "error", "critical", "off"});
        }},
       {"access_log", [](const place& p, core::config& c) { c.log.access_log = get_bool(p); }},
     }},
    {"auth",
     {
       {"allow_anonymous",
        [](const place& p, core::config& c) { c.auth.allow_anonymous = get_bool(p); }},
       {"key_idle_timeout_ms",
        [](const place& p, core::config& c) {
          c.auth.key_idle_timeout = get_ms(p, 1, 86'400'000);
        }},
     }},
    {"accounts",
     {
       {"initial_credits",
        [](const place& p, core::config& c) {
          c.accounts.initial_credits_micro = get_credits(p);
        }},
       {"max_keys_per_user",
        [](const place& p, core::config& c) {
          c.accounts.max_keys_per_user = static_cast<std::size_t>(get_int(p, 1, 100'000));
        }},
     }},
    {"limits",
     {
       {"enabled", [](const place& p, core::config& c) { c.limits.enabled = get_bool(p); }},
       {"per_minute",
        [](const place& p, core::config& c) {
          c.limits.per_minute = get_int(p, 0, 1'000'000'000);
        }},
       {"algorithm",
        [](const place& p, core::config& c) { c.limits.algorithm = get_algorithm(p); }},
       {"burst",
        [](const place& p, core::config& c) { c.limits.burst = get_int(p, 0, 1'000'000'000); }},
       {"requests_per_day",
        [](const place& p, core::config& c) {
          c.limits.requests_per_day = get_int(p, 0, 1'000'000'000'000);
        }},
       {"tokens_per_day",
        [](const place& p, core::config& c) {
          c.limits.tokens_per_day = get_int(p, 0, 1'000'000'000'000);
        }},
       {"tokens_per_month",
        [](const place& p, core::config& c) {
          c.limits.tokens_per_month = get_int(p, 0, 1'000'000'000'000);
        }},
       {"flush_interval_ms",
        [](const place& p, core::config& c) {
          c.limits.flush_interval = get_ms(p, 10, 60'000);
        }},
       {"headers", [](const place& p, core::config& c) { c.limits.headers = get_dialects(p); }},
       {"headers_by_group",
        [](const place& p, core::config& c) {
          c.limits.headers_by_group.clear();
          for (const auto& [k, node] : get_table(p)) {
            const std::string group{k.str()};
            const place f{p.source, p.key + "." + group, node};
            if (!core::valid_scope_group(group) || group == "*")
              f.fail("unknown route group (known: " + core::scope_group_list() + ")");
            c.limits.headers_by_group.emplace_back(group, get_dialects(f));
          }
        }},
       {"plans",
        [](const place& p, core::config& c) {
          c.limits.plans_per_hour.clear();
          for (const auto& [k, node] : get_table(p)) {
            const std::string plan{k.str()};
            const place f{p.source, p.key + "." + plan, node};
            c.limits.plans_per_hour.emplace_back(plan, get_int(f, 0, 1'000'000'000));
          }
        }},
       {"routes",
        [](const place& p, core::config& c) {
          const auto* arr = p.node.as_array();
          if (arr == nullptr)
            p.fail("expected an array of tables ([[limits.routes]])");
          c.limits.routes.clear();
          for (std::size_t i = 0; i < arr->size(); ++i) {
            const place item{p.source, p.key + "[" + std::to_string(i) + "]", *arr->get(i)};
            auto r = get_route_limit(item);
            for (const auto& other : c.limits.routes)
              if (other.method == r.method && other.path == r.path)
                item.fail("duplicate limit for " + r.method + " " + r.path);
            c.limits.routes.push_back(std::move(r));
          }
        }},
     }},
    {"llm",
     {
       {"agent_model",
        [](const place& p, core::config& c) { c.llm.agent_model = get_string(p); }},
       {"max_response_bytes",
        [](const place& p, core::config& c) {
          c.llm.max_response_bytes = static_cast<std::size_t>(get_int(p, 1024, 1LL << 32));
        }},
     }},
    {"actors",
     {
       {"scheduler",
        [](const place& p, core::config& c) {
          auto v = get_string(p);
          if (v != "io" && v != "threads")
            p.fail("must be \"io\" or \"threads\", got \"" + v + "\"");
          c.actors.scheduler = std::move(v);
        }},
       {"inline_below",
        [](const place& p, core::config& c) {
          c.actors.inline_below = static_cast<unsigned>(get_int(p, 0, 1'000'000));
        }},
       {"threads",
        [](const place& p, core::config& c) {
          c.actors.threads = static_cast<unsigned>(get_int(p, 0, 256));
        }},
       {"aggressive_poll_attempts",
        [](const place& p, core::config& c) {
          c.actors.aggressive_poll_attempts = static_cast<unsigned>(get_int(p, 0, 1'000'000));
        }},
       {"moderate_poll_attempts",
        [](const place& p, core::config& c) {
          c.actors.moderate_poll_attempts = static_cast<unsigned>(get_int(p, 0, 1'000'000));
        }},
     }},
  };
  return s;
}

} // namespace

std::string parse_listen(std::string_view text, core::server_config& out) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return "expected [IPv6]:PORT, got \"" + std::string{text} + "\"";
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return "expected HOST:PORT, got \"" + std::string{text} + "\"";
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || ec != std::errc{} || end != port.data() + port.size()
      || value > 65535)
    return "expected HOST:PORT with a port from 0 to 65535, got \"" + std::string{text} + "\"";
  out.host = std::string{host};
  out.port = static_cast<std::uint16_t>(value);
  return {};
}

bool valid_log_level(std::string_view level) noexcept {
  for (const char* l : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    if (level == l)
      return true;
  return false;
}

core::config parse_config(std::string_view toml_text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    throw config_error(source_name + ":" + std::to_string(e.source().begin.line) + ": "
                       + std::string{e.description()});
  }
  core::config cfg;
  const auto& sections = schema();
  for (const auto& [section_key, section_node] : root) {
    const std::string section{section_key.str()};
    const place sp{source_name, section, section_node};
    if (section == "providers") {
      get_providers(sp, cfg);
      continue;
    }
    if (section == "routes") {
      get_proxy_routes(sp, cfg);
      continue;
    }
    const auto it = sections.find(section);
    if (it == sections.end())
      sp.fail("unknown key");
    const auto* table = section_node.as_table();
    if (table == nullptr)
      sp.fail(std::string{"expected a table, got "} + type_name(section_node));
    for (const auto& [key, node] : *table) {
      const std::string name{key.str()};
      const place p{source_name, section + "." + name, node};
      const auto field = it->second.find(name);
      if (field == it->second.end())
        p.fail("unknown key");
      field->second(p, cfg);
    }
  }
  if (!cfg.llm.agent_model.empty()) {
    bool known = false;
    for (const auto& pr : cfg.llm.providers)
      for (const auto& m : pr.models)
        known = known || m.id == cfg.llm.agent_model;
    if (!known)
      throw config_error(source_name + ": llm.agent_model: \"" + cfg.llm.agent_model
                         + "\" is not a model of any provider");
  }
  return cfg;
}

core::config load_config(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    throw config_error(path + ": cannot read the configuration file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

} // namespace tollgate::app
