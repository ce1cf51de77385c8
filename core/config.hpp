#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tollgate::core {

/// Typed configuration. Every field has a default so that an empty file, or a
/// file with a single table, is a valid configuration. app/config_loader.cpp
/// maps `conf/tollgate.toml` onto these structs.
struct server_config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  unsigned io_threads = 1;
  std::size_t max_connections = 10000;
  std::size_t header_limit_bytes = 16 * 1024;
  std::size_t body_limit_bytes = 1024 * 1024;
  /// Deadline for reading one whole request once its first byte arrived.
  std::chrono::milliseconds request_timeout{10'000};
  /// How long a keep-alive connection may sit idle between requests.
  std::chrono::milliseconds idle_timeout{60'000};
  /// On SIGTERM: how long in-flight requests may take before we exit anyway.
  std::chrono::milliseconds shutdown_grace{10'000};
  /// "responder": the session sends the router a message carrying a handle
  /// that posts the answer back (default, measured fastest); "actor": a bridge
  /// actor is spawned per request and uses request/then.
  std::string bridge = "responder";
  /// Number of router actors; 0 means one per I/O thread.
  unsigned routers = 0;
};

struct storage_config {
  std::string data_dir = "./data";
  /// fsync the WAL on every group commit. Off: a process crash loses nothing
  /// that was acknowledged, a power loss can lose the OS's unflushed tail.
  bool sync_writes = false;
  /// Extra time a write may wait so that more writes share its commit.
  std::chrono::milliseconds commit_delay{0};
  /// A group commit never holds more than this many writes.
  std::size_t max_batch = 1024;
  /// With the "io" scheduler: from this many requests in flight, the token
  /// and credit writes of a burst are committed by a writer thread instead
  /// of the thread that ran the burst. 0: never.
  unsigned writer_from = 2;
};

struct log_config {
  std::string level = "info";   ///< trace, debug, info, warn, error, critical, off
  bool access_log = true;       ///< one line per request at level info
};

struct actors_config {
  /// "io": the actors run on the server's I/O threads, one at a time;
  /// "threads": on CAF's work-stealing threads (`threads` below).
  std::string scheduler = "io";
  /// With the "io" scheduler: the actors run on the I/O thread while fewer
  /// than this many requests are in flight, else on a thread of their own.
  /// 0 (the default): always on the I/O thread, with the writes committed by
  /// a writer thread under load (`storage.writer_from`).
  unsigned inline_below = 0;
  unsigned threads = 0;  ///< CAF scheduler threads; 0 = cores minus server.io_threads (at least 1)
  /// Spins of an idle worker before it sleeps (CAF's default: 100).
  unsigned aggressive_poll_attempts = 100;
  /// Polls with 50 us sleeps after the spins (CAF's default: 500); 0 makes an
  /// idle worker block at once and be woken by the next message.
  unsigned moderate_poll_attempts = 0;
};

struct auth_config {
  /// Let requests without a key through as the shared `anonymous` identity
  /// on routes that allow it (the token-tracking page); off by default.
  bool allow_anonymous = false;
  /// A key actor with no request for this long stops; 0 is not allowed.
  std::chrono::milliseconds key_idle_timeout{300'000};
};

struct accounts_config {
  /// Credits of a user created by POST /admin/create, in micro-credits.
  std::int64_t initial_credits_micro = 10'000'000;
  std::size_t max_keys_per_user = 100;
};

/// A limit on one route template and method (the scans API's table).
struct route_limit_config {
  std::string method;
  std::string path;  ///< a route template, e.g. "/api/v1/scans/{id}"
  std::int64_t limit = 0;
  std::chrono::seconds window{60};
  std::string algorithm = "fixed_window";
  std::int64_t burst = 0;
};

struct limits_config {
  bool enabled = true;
  /// Default per key (the usage guide's 60/min); an admin override of
  /// requests_per_minute replaces it.
  std::int64_t per_minute = 60;
  std::string algorithm = "fixed_window";  ///< for the per-key policies
  std::int64_t burst = 0;                  ///< token_bucket only
  /// Daily request cap (the token-tracking page); override: requests_per_day.
  std::int64_t requests_per_day = 1000;
  /// Per plan, requests per hour (the gateway reference); override:
  /// requests_per_hour. A plan not listed has no hourly limit.
  std::vector<std::pair<std::string, std::int64_t>> plans_per_hour = {
    {"free", 100}, {"pro", 10'000}, {"enterprise", 100'000}};
  std::int64_t tokens_per_day = 100'000;
  std::int64_t tokens_per_month = 2'000'000;
  std::vector<route_limit_config> routes;
  /// How often a key's request windows are written to storage (at most
  /// this much is lost on a crash).
  std::chrono::milliseconds flush_interval{1000};
  /// Header dialects sent: "x-ratelimit", "ratelimit" (public API page),
  /// "ietf" (RateLimit-Policy / RateLimit). Per route group, with a default.
  std::vector<std::string> headers = {"x-ratelimit", "ratelimit", "ietf"};
  std::vector<std::pair<std::string, std::vector<std::string>>> headers_by_group;
};

/// A model a provider serves. Prices are micro-credits per million tokens
/// (the config file says credits, with up to six decimals).
struct model_config {
  std::string id;        ///< what clients send
  std::string upstream;  ///< the provider's name for it; empty = id
  std::int64_t context_length = 8192;
  std::int64_t prompt_price_micro_per_mtok = 0;
  std::int64_t completion_price_micro_per_mtok = 0;
  /// Completion tokens reserved when the client sends no max_tokens.
  std::int64_t default_max_tokens = 1024;
};

/// An upstream LLM provider (any OpenAI-compatible API, or "builtin:demo").
struct provider_config {
  std::string name;
  std::string base_url;     ///< e.g. "https://api.openai.com/v1"; "builtin:demo" needs no network
  std::string api_key_env;  ///< env variable holding the upstream key; empty = none
  /// Skip this provider (with a log line) when api_key_env is not set,
  /// instead of refusing to start.
  bool optional = false;
  std::vector<std::pair<std::string, std::string>> headers;
  std::size_t max_concurrency = 16;
  std::size_t queue_size = 100;
  std::chrono::milliseconds queue_timeout{120'000};
  std::int64_t tokens_per_minute = 0;  ///< 0: no provider-wide token bucket
  std::int64_t burst_tokens = 0;       ///< bucket size; 0 = tokens_per_minute / 6
  std::chrono::milliseconds request_timeout{60'000};
  unsigned retries = 2;
  std::chrono::milliseconds retry_backoff{250};  ///< doubled per retry
  std::vector<std::string> fallbacks;
  std::vector<model_config> models;
};

struct llm_config {
  std::vector<provider_config> providers;
  /// The model behind POST /api/send-message (the token-tracking page).
  std::string agent_model;
  /// Cap on an upstream response body, buffered or streamed.
  std::size_t max_response_bytes = 16 << 20;
};

/// A generic proxy route: every request under `prefix` goes to `upstream`
/// behind the same keys and limits.
struct proxy_route_config {
  std::string prefix;    ///< e.g. "/api/v1" (no trailing '/')
  std::string upstream;  ///< e.g. "http://127.0.0.1:9000"; the path is appended
  bool strip_prefix = false;  ///< true: /api/v1/scans goes upstream as /scans
  /// Header carrying the backend's own credential (never the client's key).
  std::string credential_header;
  std::string credential_env;  ///< env variable holding it
  std::string group = "proxy"; ///< scope group the keys need
  /// The whole exchange, the answer's body included.
  std::chrono::milliseconds timeout{30'000};
  /// Cap on an answer's body; 0 (the default): none. The body streams to
  /// the client under flow control, so its size does not cost memory.
  std::size_t max_response_bytes = 0;
  /// Route templates under the prefix that get their own limits and metric
  /// labels (the [[limits.routes]] under the prefix are added by themselves).
  std::vector<std::string> paths;
};

struct config {
  server_config server;
  storage_config storage;
  log_config log;
  actors_config actors;
  auth_config auth;
  accounts_config accounts;
  limits_config limits;
  llm_config llm;
  std::vector<proxy_route_config> routes;
};

} // namespace tollgate::core
