#include "http/llm/llm.hpp"

#include "actors/provider.hpp"
#include "http/client/client.hpp"
#include "http/llm/watch.hpp"
#include "metrics/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace tollgate::http::llm {

const char* upstream_path(call_kind k) {
  switch (k) {
    case call_kind::responses: return "/responses";
    case call_kind::images: return "/images/generations";
    case call_kind::chat:
    case call_kind::send_message: return "/chat/completions";
  }
  return "/chat/completions";
}

namespace {

using watch_tick_atom = caf::atom_constant<caf::atom("wtick")>;

/// Once a second: every call past its deadline gets a watchdog message.
caf::behavior watchdog_impl(caf::event_based_actor* self, std::shared_ptr<call_watch> watch) {
  self->send(self, watch_tick_atom::value);
  return {
    [self, watch](watch_tick_atom) {
      for (auto& fire : watch->expired(call_watch::clock::now()))
        fire();
      self->delayed_send(self, std::chrono::seconds{1}, watch_tick_atom::value);
    },
  };
}

/// The provider's upstream requests, one per call kind and stream flag,
/// checked and rendered once. The fields go out in this order on every call,
/// followed by the call's X-Request-Id.
void fix_requests(provider_entry& e) {
  for (std::size_t k = 0; k < call_kinds; ++k) {
    for (const bool stream : {false, true}) {
      std::vector<std::pair<std::string, std::string>> headers;
      headers.emplace_back("Content-Type", "application/json");
      headers.emplace_back("Accept", stream ? "text/event-stream" : "application/json");
      if (!e.api_key.empty())
        headers.emplace_back("Authorization", "Bearer " + e.api_key);
      for (const auto& h : e.cfg.headers)
        headers.push_back(h);
      e.fixed[k][stream] = client::client::fix(
        "POST", e.cfg.base_url + upstream_path(static_cast<call_kind>(k)), headers,
        e.fixed_error);
      if (!e.fixed_error.empty()) {
        // Never quotes the URL or the fields: either can carry a key.
        spdlog::warn("provider {}: its requests cannot go out: {}", e.cfg.name, e.fixed_error);
        for (auto& per_kind : e.fixed)
          for (auto& f : per_kind)
            f.reset();
        return;
      }
    }
  }
}

} // namespace

std::vector<model_ref> context::candidates(std::string_view model) const {
  std::vector<model_ref> out;
  const auto add = [&](const provider_entry& p) {
    for (const auto& r : out)
      if (r.provider == &p)
        return;
    for (const auto& m : p.cfg.models)
      if (m.id == model) {
        out.push_back({&p, &m});
        return;
      }
  };
  const provider_entry* first = nullptr;
  for (const auto& p : providers) {
    for (const auto& m : p.cfg.models)
      if (m.id == model)
        first = &p;
    if (first != nullptr)
      break;
  }
  if (first == nullptr)
    return out;
  add(*first);
  for (const auto& name : first->cfg.fallbacks)
    for (const auto& p : providers)
      if (p.cfg.name == name)
        add(p);
  for (const auto& p : providers)
    add(p);
  return out;
}

std::shared_ptr<context> make_context(const core::llm_config& cfg, caf::actor_system& sys,
                                      const core::clock& clock,
                                      std::shared_ptr<client::client> http,
                                      metrics::registry* registry) {
  auto ctx = std::make_shared<context>();
  ctx->agent_model = cfg.agent_model;
  ctx->max_response_bytes = cfg.max_response_bytes;
  ctx->system = &sys;
  if (registry != nullptr) {
    ctx->calls = &registry->counters(
      "tollgate_llm_calls_total",
      "LLM calls by provider, model and outcome (ok, client_error, upstream_error, "
      "rate_limited, upstream_rate_limited, insufficient_credits, token_limited, cancelled, "
      "unavailable).",
      {"provider", "model", "outcome"});
    ctx->tokens = &registry->counters("tollgate_llm_tokens_total",
                                      "Tokens settled for LLM calls, by kind (prompt, completion).",
                                      {"provider", "model", "kind"});
    ctx->charged = &registry->counters("tollgate_llm_charged_micro_credits_total",
                                       "Micro-credits charged for LLM calls.",
                                       {"provider", "model"});
    ctx->answers_held = &registry->counter_metric(
      "tollgate_llm_answers_held_total",
      "LLM answers (or stream heads) that came from the upstream before the call's token "
      "reservation and credit hold were stored, and waited for that commit.");
  }
  ctx->providers.reserve(cfg.providers.size());
  for (const auto& p : cfg.providers) {
    provider_entry e;
    e.cfg = p;
    e.demo = p.base_url == "builtin:demo";
    if (!p.api_key_env.empty()) {
      const char* v = std::getenv(p.api_key_env.c_str());
      if (v == nullptr || *v == '\0') {
        if (p.optional) {
          spdlog::info("provider {}: {} is not set; the provider is off", p.name, p.api_key_env);
          continue;
        }
        // The actors spawned so far must go, or the actor system would
        // wait for them forever at exit.
        stop_context(*ctx);
        throw std::invalid_argument("providers: " + p.name + ": the environment variable "
                                    + p.api_key_env
                                    + " is not set (or mark the provider optional = true)");
      }
      e.api_key = v;
    }
    if (registry != nullptr)
      for (const auto& m : p.models)
        e.meters.push_back({&ctx->calls->with({p.name, m.id, "ok"}),
                            &ctx->tokens->with({p.name, m.id, "prompt"}),
                            &ctx->tokens->with({p.name, m.id, "completion"}),
                            &ctx->charged->with({p.name, m.id})});
    if (!e.demo)
      fix_requests(e);
    e.actor = actors::spawn_provider(sys, p, clock);
    spdlog::info("provider {}: {} with {} models", p.name, e.demo ? "built-in demo" : p.base_url,
                 p.models.size());
    ctx->providers.push_back(std::move(e));
  }
  // A fallback that is off (optional, key unset) is simply not tried.
  ctx->http = std::move(http);
  ctx->watch = std::make_shared<call_watch>();
  ctx->watchdog = sys.spawn(watchdog_impl, ctx->watch);
  const auto threads = sys.scheduler().num_workers();
  for (std::size_t i = 0; i < std::max<std::size_t>(1, threads); ++i)
    ctx->runners.push_back(spawn_call_runner(sys));
  return ctx;
}

void stop_context(context& ctx) {
  for (auto& p : ctx.providers)
    if (p.actor)
      caf::anon_send_exit(p.actor, caf::exit_reason::user_shutdown);
  if (ctx.watchdog)
    caf::anon_send_exit(ctx.watchdog, caf::exit_reason::user_shutdown);
  for (auto& r : ctx.runners)
    caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  ctx.http.reset();  // the gateway holds the client too and destroys it last
}

} // namespace tollgate::http::llm
