#pragma once

// The LLM gateway: providers and their actors, the upstream client, and the
// call that ties a request to its reservations, its upstream and its
// charge. Included by the route handlers and the app; no Beast here.

#include "actors/interfaces.hpp"
#include "actors/router.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace caf {
class actor_system;
}

namespace tollgate::http::client {
class client;
namespace detail {
struct fixed_part;
}
} // namespace tollgate::http::client

namespace tollgate::metrics {
class registry;
class counter;
template <class T>
class family;
}

namespace tollgate::http::llm {

class call_watch;

/// A model's children of the LLM metric families, looked up once at start:
/// a lookup takes the family's lock and builds its label vector.
struct model_meters {
  metrics::counter* ok_calls = nullptr;  ///< tollgate_llm_calls_total{outcome="ok"}
  metrics::counter* prompt_tokens = nullptr;
  metrics::counter* completion_tokens = nullptr;
  metrics::counter* charged = nullptr;
};

/// What kind of upstream call a route makes.
enum class call_kind { chat, responses, images, send_message };
inline constexpr std::size_t call_kinds = 4;
static_assert(static_cast<std::size_t>(call_kind::send_message) + 1 == call_kinds);

/// The upstream path of a call kind, after the provider's base_url.
const char* upstream_path(call_kind k);

struct provider_entry {
  core::provider_config cfg;
  std::vector<model_meters> meters;  ///< parallel to cfg.models; empty without a registry
  actors::provider_actor actor;
  std::string api_key;  ///< from cfg.api_key_env; never logged, never sent to clients
  bool demo = false;    ///< "builtin:demo": answered in-process
  /// The upstream request's method, URL and fixed fields (Content-Type,
  /// Accept, Authorization, cfg.headers) per call kind, without and with a
  /// stream: checked and rendered once (client::fix). Null when unusable;
  /// `fixed_error` says why, and a call then fails with it.
  std::shared_ptr<const client::detail::fixed_part> fixed[call_kinds][2];
  std::string fixed_error;
};

/// A model at a provider.
struct model_ref {
  const provider_entry* provider = nullptr;
  const core::model_config* model = nullptr;
};

/// Everything the LLM routes share; immutable after make_context.
struct context {
  std::vector<provider_entry> providers;
  std::shared_ptr<client::client> http;
  std::string agent_model;
  std::size_t max_response_bytes = 16 << 20;
  caf::actor_system* system = nullptr;
  /// tollgate_llm_calls_total{provider,model,outcome},
  /// tollgate_llm_tokens_total{provider,model,kind} (prompt, completion),
  /// tollgate_llm_charged_micro_credits_total{provider,model}. Null in
  /// contexts built without a registry.
  metrics::family<metrics::counter>* calls = nullptr;
  metrics::family<metrics::counter>* tokens = nullptr;
  metrics::family<metrics::counter>* charged = nullptr;
  /// tollgate_llm_answers_held_total: answers that waited for the commit of
  /// their call's reservation and hold.
  metrics::counter* answers_held = nullptr;
  /// The deadlines of the calls in flight (internally synchronised) and the
  /// actor that checks them once a second.
  std::shared_ptr<call_watch> watch;
  caf::actor watchdog;
  /// The actors the calls run in, taken in turn.
  std::vector<caf::actor> runners;
  mutable std::atomic<std::size_t> next_runner{0};

  /// Where a model can be served, in the order to try: the first provider
  /// that lists it, then that provider's fallbacks that list it, then any
  /// other provider that lists it. Empty: unknown model.
  std::vector<model_ref> candidates(std::string_view model) const;
};

/// Spawns a provider actor per configured provider; calls go through `http`.
/// An optional provider whose api_key_env is unset is left out with a log
/// line; a required one throws std::invalid_argument (a configuration
/// error).
std::shared_ptr<context> make_context(const core::llm_config& cfg, caf::actor_system& sys,
                                      const core::clock& clock,
                                      std::shared_ptr<client::client> http,
                                      metrics::registry* registry = nullptr);

/// Stops the provider actors and the watchdog (at shutdown).
void stop_context(context& ctx);

/// One client request, parsed and checked by its route.
struct call_request {
  call_kind kind = call_kind::chat;
  std::string model;
  std::string body;  ///< the client's JSON (chat, responses, images)
  bool stream = false;
  std::int64_t prompt_tokens = 0;  ///< estimate
  std::int64_t max_tokens = 0;     ///< 0: the model's default
  std::string session_id;          ///< chat: save the exchange to this chat session
  std::string user_text;           ///< the last user message (for the session)
  core::principal who;
  std::string request_id;
  bool openai_errors = true;       ///< /v1/*: OpenAI's error envelope
};

/// Runs the call in one of the context's runner actors: reserve tokens, hold credits, get
/// a provider slot, call the upstream (retries, then fallbacks), answer
/// (or stream), settle tokens, charge credits. Every path settles what it
/// reserved. `out` is answered exactly once.
void start_call(std::shared_ptr<const context> ctx, const actors::services& svc,
                call_request req, core::responder_ptr out);

/// An actor that runs calls (make_context spawns one per scheduler thread).
caf::actor spawn_call_runner(caf::actor_system& sys);

namespace testing {
/// Tests only: the next call that reaches `step` ("tokens", "hold" or
/// "slot": right after that grant is recorded) throws there once, as an
/// allocation failure could. An empty step disarms.
void fail_once_at(std::string step);
} // namespace testing

} // namespace tollgate::http::llm
