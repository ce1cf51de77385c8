#include "app/config_loader.hpp"

#include <catch2/catch.hpp>

using namespace tollgate;
using app::config_error;
using app::parse_config;

namespace {
std::string error_of(const std::string& text) {
  try {
    parse_config(text, "t.toml");
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}
} // namespace

TEST_CASE("an empty file and a single table are valid and keep defaults", "[app][config]") {
  const auto empty = parse_config("", "t.toml");
  CHECK(empty.server.host == "127.0.0.1");
  CHECK(empty.server.port == 8080);
  CHECK(empty.storage.data_dir == "./data");
  CHECK(empty.log.level == "info");
  CHECK(empty.actors.scheduler == "io");
  CHECK(empty.actors.inline_below == 0);
  CHECK(empty.storage.writer_from == 2);

  const auto one = parse_config("[log]\nlevel = \"warn\"\n", "t.toml");
  CHECK(one.log.level == "warn");
  CHECK(one.server.port == 8080);
}

TEST_CASE("the shipped config parses", "[app][config]") {
  const auto cfg = app::load_config(TOLLGATE_SOURCE_DIR "/conf/tollgate.toml");
  CHECK(cfg.server.port == 8080);
  CHECK(cfg.server.bridge == "responder");
  CHECK(cfg.storage.data_dir == "./data");
}

TEST_CASE("every setting is read", "[app][config]") {
  const auto cfg = parse_config(R"(
[server]
listen = "[::1]:9000"
io_threads = 2
max_connections = 5
header_limit_bytes = 2048
body_limit_bytes = 10
request_timeout_ms = 100
idle_timeout_ms = 200
shutdown_grace_ms = 300
bridge = "actor"
routers = 3
[storage]
data_dir = "/tmp/x"
sync_writes = true
commit_delay_ms = 2
max_batch = 7
writer_from = 5
[log]
level = "off"
access_log = false
[actors]
scheduler = "threads"
inline_below = 9
threads = 4
aggressive_poll_attempts = 5
moderate_poll_attempts = 6
)",
                                "t.toml");
  CHECK(cfg.server.host == "::1");
  CHECK(cfg.server.port == 9000);
  CHECK(cfg.server.io_threads == 2);
  CHECK(cfg.server.max_connections == 5);
  CHECK(cfg.server.header_limit_bytes == 2048);
  CHECK(cfg.server.body_limit_bytes == 10);
  CHECK(cfg.server.request_timeout.count() == 100);
  CHECK(cfg.server.idle_timeout.count() == 200);
  CHECK(cfg.server.shutdown_grace.count() == 300);
  CHECK(cfg.server.bridge == "actor");
  CHECK(cfg.server.routers == 3);
  CHECK(cfg.storage.data_dir == "/tmp/x");
  CHECK(cfg.storage.sync_writes);
  CHECK(cfg.storage.commit_delay.count() == 2);
  CHECK(cfg.storage.max_batch == 7);
  CHECK(cfg.storage.writer_from == 5);
  CHECK(cfg.log.level == "off");
  CHECK_FALSE(cfg.log.access_log);
  CHECK(cfg.actors.scheduler == "threads");
  CHECK(cfg.actors.inline_below == 9);
  CHECK(cfg.actors.threads == 4);
  CHECK(cfg.actors.aggressive_poll_attempts == 5);
  CHECK(cfg.actors.moderate_poll_attempts == 6);
}

TEST_CASE("bad configs name the key and the line", "[app][config]") {
  CHECK(error_of("[server]\nport = 1\n") == "t.toml:2: server.port: unknown key");
  CHECK(error_of("[nope]\n") == "t.toml:1: nope: unknown key");
  CHECK(error_of("top = 1\n") == "t.toml:1: top: unknown key");
  CHECK(error_of("[server]\n\nio_threads = \"two\"\n")
        == "t.toml:3: server.io_threads: expected an integer, got a string");
  CHECK(error_of("[server]\nio_threads = 0\n")
        == "t.toml:2: server.io_threads: must be between 1 and 256, got 0");
  CHECK(error_of("[server]\nlisten = \"localhost\"\n")
        == "t.toml:2: server.listen: expected HOST:PORT, got \"localhost\"");
  CHECK(error_of("[server]\nlisten = \"h:99999\"\n")
        == "t.toml:2: server.listen: expected HOST:PORT with a port from 0 to 65535, got "
           "\"h:99999\"");
  CHECK(error_of("[log]\nlevel = \"loud\"\n")
        == "t.toml:2: log.level: must be one of trace, debug, info, warn, error, critical, off, "
           "got \"loud\"");
  CHECK(error_of("[storage]\nsync_writes = 1\n")
        == "t.toml:2: storage.sync_writes: expected a boolean, got an integer");
  CHECK(error_of("[actors]\nscheduler = \"fast\"\n")
        == "t.toml:2: actors.scheduler: must be \"io\" or \"threads\", got \"fast\"");
  CHECK(error_of("server = 3\n") == "t.toml:1: server: expected a table, got an integer");
  // TOML syntax errors carry their line too.
  CHECK(error_of("[server]\nlisten = \n").rfind("t.toml:2:", 0) == 0);
}

TEST_CASE("listen addresses", "[app][config]") {
  core::server_config s;
  CHECK(app::parse_listen("0.0.0.0:0", s).empty());
  CHECK(s.host == "0.0.0.0");
  CHECK(s.port == 0);
  CHECK_FALSE(app::parse_listen(":80", s).empty());
  CHECK_FALSE(app::parse_listen("host:", s).empty());
  CHECK_FALSE(app::parse_listen("host:8x", s).empty());
  CHECK_FALSE(app::parse_listen("[::1]8080", s).empty());
}

TEST_CASE("the example configs parse and say what their documents say", "[app][config]") {
  const auto scans = app::load_config(TOLLGATE_SOURCE_DIR "/conf/examples/scans-api.toml");
  CHECK(scans.limits.routes.size() == 23);
  const auto find = [&](const std::string& method, const std::string& path) -> std::int64_t {
    for (const auto& r : scans.limits.routes)
      if (r.method == method && r.path == path)
        return r.limit;
    return -1;
  };
  CHECK(find("POST", "/api/v1/scans") == 10);
  CHECK(find("GET", "/api/v1/scans/{id}/progress") == 500);
  CHECK(find("GET", "/api/v1/admin/api-keys/{id}/rate-limit") == 100);
  CHECK(find("DELETE", "/api/v1/scans/{id}") == 20);
  CHECK(scans.limits.headers == std::vector<std::string>{"x-ratelimit"});
  CHECK(scans.limits.plans_per_hour.empty());

  const auto pub = app::load_config(TOLLGATE_SOURCE_DIR "/conf/examples/public-api.toml");
  CHECK(pub.limits.per_minute == 500);
  CHECK(pub.limits.requests_per_day == 0);
  CHECK(pub.limits.headers == std::vector<std::string>{"ratelimit", "ietf"});
  CHECK(app::load_config(TOLLGATE_SOURCE_DIR "/conf/examples/minimal.toml").server.port == 8080);
}

TEST_CASE("limits settings and their errors", "[app][config]") {
  const auto cfg = parse_config(R"(
[limits]
per_minute = 7
algorithm = "token_bucket"
burst = 3
tokens_per_day = 10
flush_interval_ms = 250
[limits.plans]
gold = 5
[limits.headers_by_group]
admin = ["x-ratelimit"]
[[limits.routes]]
method = "POST"
path = "/x/{id}"
limit = 2
window_s = 10
algorithm = "sliding_window"
)",
                                "t.toml");
  CHECK(cfg.limits.per_minute == 7);
  CHECK(cfg.limits.algorithm == "token_bucket");
  CHECK(cfg.limits.burst == 3);
  CHECK(cfg.limits.flush_interval.count() == 250);
  REQUIRE(cfg.limits.plans_per_hour.size() == 1);
  CHECK(cfg.limits.plans_per_hour[0].first == "gold");
  REQUIRE(cfg.limits.routes.size() == 1);
  CHECK(cfg.limits.routes[0].window.count() == 10);
  CHECK(cfg.limits.routes[0].algorithm == "sliding_window");
  REQUIRE(cfg.limits.headers_by_group.size() == 1);

  CHECK(error_of("[limits]\nalgorithm = \"leaky\"\n").find("limits.algorithm: must be one of")
        != std::string::npos);
  CHECK(error_of("[limits]\nheaders = [\"x-ratelimit\", \"nope\"]\n")
          .find("t.toml:2: limits.headers[1]: must be one of")
        == 0);
  CHECK(error_of("[[limits.routes]]\nmethod = \"GET\"\npath = \"/a\"\n")
        == "t.toml:1: limits.routes[0]: needs method, path and limit");
  CHECK(error_of("[[limits.routes]]\nmethod = \"GET\"\npath = \"/a\"\nlimit = 1\nwindow = 5\n")
        == "t.toml:5: limits.routes[0].window: unknown key");
  CHECK(error_of("[[limits.routes]]\nmethod = \"GET\"\npath = \"/a\"\nlimit = 1\n"
                 "[[limits.routes]]\nmethod = \"GET\"\npath = \"/a\"\nlimit = 2\n")
        == "t.toml:5: limits.routes[1]: duplicate limit for GET /a");
  CHECK(error_of("[limits.headers_by_group]\nnope = []\n").find("unknown route group")
        != std::string::npos);
}

TEST_CASE("providers, models and proxy routes, and their errors", "[app][config][llm]") {
  const auto cfg = app::parse_config(R"(
[llm]
agent_model = "fast"
[[providers]]
name = "main"
base_url = "https://api.example.com/v1/"
api_key_env = "MAIN_KEY"
headers = { "OpenAI-Organization" = "org-1" }
max_concurrency = 4
queue_size = 50
queue_timeout_s = 120
tokens_per_minute = 20000
burst_tokens = 4000
request_timeout_s = 30
retries = 3
fallbacks = ["spare"]
[[providers.models]]
id = "fast"
upstream = "gpt-4o-mini"
context_length = 128000
prompt_price_per_mtok = 0.15
completion_price_per_mtok = 0.6
[[providers]]
name = "spare"
base_url = "builtin:demo"
[[providers.models]]
id = "fast"
[[routes]]
prefix = "/api/v1/"
upstream = "http://127.0.0.1:9000"
max_response_bytes = 1048576
[[routes.limits]]
method = "POST"
limit = 10
)",
                                     "t.toml");
  REQUIRE(cfg.llm.providers.size() == 2);
  const auto& p = cfg.llm.providers[0];
  CHECK(p.base_url == "https://api.example.com/v1");
  CHECK(p.headers == std::vector<std::pair<std::string, std::string>>{{"OpenAI-Organization", "org-1"}});
  CHECK(p.max_concurrency == 4);
  CHECK(p.queue_size == 50);
  CHECK(p.queue_timeout == std::chrono::seconds{120});
  CHECK(p.tokens_per_minute == 20000);
  CHECK(p.burst_tokens == 4000);
  CHECK(p.request_timeout == std::chrono::seconds{30});
  CHECK(p.retries == 3);
  CHECK(p.fallbacks == std::vector<std::string>{"spare"});
  REQUIRE(p.models.size() == 1);
  CHECK(p.models[0].upstream == "gpt-4o-mini");
  CHECK(p.models[0].prompt_price_micro_per_mtok == 150'000);
  CHECK(p.models[0].completion_price_micro_per_mtok == 600'000);
  CHECK(cfg.llm.providers[1].models[0].upstream == "fast");  // defaults to the id
  REQUIRE(cfg.routes.size() == 1);
  CHECK(cfg.routes[0].prefix == "/api/v1");
  CHECK(cfg.routes[0].max_response_bytes == 1'048'576);
  CHECK(core::proxy_route_config{}.max_response_bytes == 0);  // no cap unless set
  REQUIRE(cfg.limits.routes.size() == 1);
  CHECK(cfg.limits.routes[0].path == "/api/v1/{*rest}");
  CHECK(cfg.limits.routes[0].method == "POST");

  CHECK(error_of("[[providers]]\nname = \"a\"\n").find("needs name and base_url")
        != std::string::npos);
  CHECK(error_of("[[providers]]\nname = \"a\"\nbase_url = \"ftp://x\"\n")
          .find("t.toml:3: providers[0].base_url: must start with http://")
        != std::string::npos);
  CHECK(error_of("[[providers]]\nname = \"a\"\nbase_url = \"builtin:demo\"\nfallbacks = [\"b\"]\n")
          .find("\"b\" is not another provider")
        != std::string::npos);
  CHECK(error_of("[[providers]]\nname = \"a\"\nbase_url = \"builtin:demo\"\n"
                 "[[providers]]\nname = \"a\"\nbase_url = \"builtin:demo\"\n")
          .find("duplicate provider name")
        != std::string::npos);
  CHECK(error_of("[[providers]]\nname = \"a\"\nbase_url = \"builtin:demo\"\n"
                 "[[providers.models]]\nid = \"m\"\nprompt_price_per_mtok = -1\n")
          .find("providers[0].models[0].prompt_price_per_mtok: must be between")
        != std::string::npos);
  CHECK(error_of("[[providers]]\nname = \"a\"\nbase_url = \"builtin:demo\"\nmax_concurrency = 0\n")
          .find("providers[0].max_concurrency: must be between 1")
        != std::string::npos);
  CHECK(error_of("[llm]\nagent_model = \"ghost\"\n").find("is not a model of any provider")
        != std::string::npos);
  CHECK(error_of("[[routes]]\nprefix = \"/\"\nupstream = \"http://x\"\n").find("must be a path")
        != std::string::npos);
  CHECK(error_of("[[routes]]\nprefix = \"/a\"\nupstream = \"x\"\n")
          .find("routes[0].upstream: must start with http://")
        != std::string::npos);
  CHECK(error_of("[[routes]]\nprefix = \"/a\"\nupstream = \"http://x\"\ncredential_env = \"K\"\n")
          .find("credential_header and credential_env go together")
        != std::string::npos);
  CHECK(error_of("[[routes]]\nprefix = \"/a\"\nupstream = \"http://x\"\ngroup = \"nope\"\n")
          .find("unknown route group")
        != std::string::npos);
}
