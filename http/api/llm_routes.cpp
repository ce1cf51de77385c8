#include "http/api/llm_routes.hpp"

#include "core/llm.hpp"
#include "http/api/common.hpp"
#include "http/api/json.hpp"
#include "http/api/parse.hpp"
#include "http/api/ratelimit.hpp"
#include "http/llm/llm.hpp"

#include <caf/typed_event_based_actor.hpp>
#include <rapidjson/document.h>
#include <simdjson.h>

#include <algorithm>
#include <string_view>
#include <vector>

namespace tollgate::http::api {

namespace {

/// A 400 in the route's dialect.
void bad_request(core::responder_ptr& out, bool openai, const std::string& message,
                 std::string_view param = {}) {
  if (!openai) {
    respond_error(out, core::errc::bad_request, message);
    return;
  }
  json_writer w;
  w->StartObject();
  w.key("error");
  w->StartObject();
  w.field("message", message);
  w.field("type", "invalid_request_error");
  if (param.empty())
    w.null_field("param");
  else
    w.field("param", param);
  w.field("code", "invalid_request");
  w->EndObject();
  w->EndObject();
  respond_json(out, w.take(), 400);
}

bool positive_int(const rapidjson::Value& d, const char* k, std::int64_t& out, std::string& err) {
  if (!d.HasMember(k))
    return true;
  if (!d[k].IsInt64() || d[k].GetInt64() < 1 || d[k].GetInt64() > 10'000'000) {
    err = std::string{k} + " must be a positive integer";
    return false;
  }
  out = d[k].GetInt64();
  return true;
}

/// Text bytes of a message's content (a string or text parts).
bool content_bytes(const rapidjson::Value& c, std::size_t& n, std::string* text) {
  if (c.IsString()) {
    n += c.GetStringLength();
    if (text != nullptr)
      text->assign(c.GetString(), c.GetStringLength());
    return true;
  }
  if (c.IsNull())
    return true;
  if (!c.IsArray())
    return false;
  if (text != nullptr)
    text->clear();
  for (const auto& part : c.GetArray()) {
    if (!part.IsObject())
      return false;
    if (part.HasMember("text") && part["text"].IsString()) {
      n += part["text"].GetStringLength();
      if (text != nullptr)
        text->append(part["text"].GetString(), part["text"].GetStringLength());
    } else {
      n += 256;  // an image or audio part: counted, not read
    }
  }
  return true;
}

std::shared_ptr<const llm::context> no_llm_guard(const std::shared_ptr<const llm::context>& ctx,
                                                 core::responder_ptr& out, bool openai) {
  if (ctx == nullptr || ctx->providers.empty()) {
    if (openai) {
      respond_json(out,
                   openai_error_body("no LLM provider is configured", "server_error",
                                     "no_provider"),
                   503);
    } else {
      respond_error(out, core::errc::unavailable, "no LLM provider is configured");
    }
    return nullptr;
  }
  return ctx;
}

/// The part every OpenAI-style body shares: a provider exists, the body is
/// a JSON object, `model` is a non-empty string. Answers 400/503 and returns
/// false otherwise.
bool begin_call(const std::shared_ptr<const llm::context>& ctx, core::api_request& req,
                core::responder_ptr& out, bool openai, llm::call_kind kind,
                rapidjson::Document& d, llm::call_request& r) {
  if (!no_llm_guard(ctx, out, openai))
    return false;
  d.Parse(req.body.data(), req.body.size());
  if (d.HasParseError() || !d.IsObject()) {
    bad_request(out, openai, "the body must be a JSON object");
    return false;
  }
  // A key given twice is refused: the gateway would price and reserve by
  // one occurrence ("model", "max_tokens", "stream") while the provider may
  // read the other.
  std::vector<std::string_view> names;
  names.reserve(d.MemberCount());
  for (auto m = d.MemberBegin(); m != d.MemberEnd(); ++m)
    names.emplace_back(m->name.GetString(), m->name.GetStringLength());
  std::sort(names.begin(), names.end());
  if (const auto twice = std::adjacent_find(names.begin(), names.end()); twice != names.end()) {
    const std::string name{*twice};
    bad_request(out, openai, "'" + name + "' appears more than once in the body", name);
    return false;
  }
  if (!d.HasMember("model") || !d["model"].IsString() || d["model"].GetStringLength() == 0) {
    bad_request(out, openai, "model is required and must be a string", "model");
    return false;
  }
  r.kind = kind;
  r.model = d["model"].GetString();
  r.openai_errors = openai;
  return true;
}

/// Hands a checked request to its call.
void launch(std::shared_ptr<const llm::context> ctx, const actors::services& svc,
            core::api_request& req, core::responder_ptr& out, const core::principal& who,
            llm::call_request&& r) {
  r.body = std::move(req.body);
  r.who = who;
  r.request_id = req.request_id;
  llm::start_call(std::move(ctx), svc, std::move(r), out);
}

/// The end of both chat parsers: the session from the query, the prompt
/// estimate (`bytes` of text in `messages` messages), then the call.
void launch_chat(std::shared_ptr<const llm::context> ctx, const actors::services& svc,
                 core::api_request& req, core::responder_ptr& out, const core::principal& who,
                 llm::call_request&& r, std::size_t bytes, std::size_t messages) {
  auto q = parse_query(req.query);
  if (!q) {
    bad_request(out, true, q.error);
    return;
  }
  if (auto it = q.value.find("session_id"); it != q.value.end())
    r.session_id = it->second;
  r.prompt_tokens = core::llm::estimate_prompt_tokens(bytes, messages);
  launch(std::move(ctx), svc, req, out, who, std::move(r));
}

/// The chat route with a rapidjson DOM: the answers for every body simdjson
/// refuses to parse (a byte-order mark, an integer beyond 64 bits anywhere,
/// invalid UTF-8), which rapidjson reads as it always did.
void chat_rapidjson(std::shared_ptr<const llm::context> ctx, const actors::services& svc,
                    core::api_request& req, core::responder_ptr& out,
                    const core::principal& who) {
  rapidjson::Document d;
  llm::call_request r;
  if (!begin_call(ctx, req, out, true, llm::call_kind::chat, d, r))
    return;
  if (!d.HasMember("messages") || !d["messages"].IsArray() || d["messages"].Empty()) {
    bad_request(out, true, "messages must be a non-empty array", "messages");
    return;
  }
  std::size_t bytes = 0;
  for (const auto& m : d["messages"].GetArray()) {
    if (!m.IsObject() || !m.HasMember("role") || !m["role"].IsString()) {
      bad_request(out, true, "each message needs a role", "messages");
      return;
    }
    const bool user = std::string_view{m["role"].GetString()} == "user";
    if (m.HasMember("content")
        && !content_bytes(m["content"], bytes, user ? &r.user_text : nullptr)) {
      bad_request(out, true, "message content must be a string or an array of parts",
                  "messages");
      return;
    }
  }
  if (d.HasMember("stream")) {
    if (!d["stream"].IsBool()) {
      bad_request(out, true, "stream must be a boolean", "stream");
      return;
    }
    r.stream = d["stream"].GetBool();
  }
  std::string err;
  if (!positive_int(d, "max_tokens", r.max_tokens, err)
      || !positive_int(d, "max_completion_tokens", r.max_tokens, err)) {
    bad_request(out, true, err);
    return;
  }
  launch_chat(std::move(ctx), svc, req, out, who, std::move(r), bytes,
              d["messages"].GetArray().Size());
}

/// content_bytes for a simdjson element (the chat route's parser).
bool content_bytes(simdjson::dom::element c, std::size_t& n, std::string* text) {
  std::string_view sv;
  if (c.get(sv) == simdjson::SUCCESS) {
    n += sv.size();
    if (text != nullptr)
      text->assign(sv);
    return true;
  }
  if (c.is_null())
    return true;
  simdjson::dom::array parts;
  if (c.get(parts) != simdjson::SUCCESS)
    return false;
  if (text != nullptr)
    text->clear();
  for (auto part : parts) {
    simdjson::dom::object o;
    if (part.get(o) != simdjson::SUCCESS)
      return false;
    if (o["text"].get(sv) == simdjson::SUCCESS) {
      n += sv.size();
      if (text != nullptr)
        text->append(sv);
    } else {
      n += 256;  // an image or audio part: counted, not read
    }
  }
  return true;
}

/// positive_int for a simdjson object.
bool positive_int(simdjson::dom::object d, const char* k, std::int64_t& out, std::string& err) {
  simdjson::dom::element e;
  if (d[k].get(e) != simdjson::SUCCESS)
    return true;  // absent
  std::int64_t v = 0;
  if (e.get(v) != simdjson::SUCCESS || v < 1 || v > 10'000'000) {
    err = std::string{k} + " must be a positive integer";
    return false;
  }
  out = v;
  return true;
}

/// The chat route, the hot one, reads its body with simdjson (the house
/// JSON-in library; about 4% of a call's instructions with a rapidjson DOM).
/// The checks and their answers are chat_rapidjson's. One difference: a
/// string with a NUL (`"m1\u0000x"`) is read whole, where rapidjson's
/// GetString stopped at the NUL and priced a model the upstream never saw.
void chat(std::shared_ptr<const llm::context> ctx, const actors::services& svc,
          core::api_request& req, core::responder_ptr& out, const core::principal& who) {
  if (!no_llm_guard(ctx, out, true))
    return;
  // One parser per thread for ordinary bodies (it keeps buffers of about
  // 15 times the largest body it read); a larger one gets its own, so that
  // the thread does not keep them. Every element read below is used before
  // this function returns.
  constexpr std::size_t reused_up_to = 64 * 1024;
  thread_local simdjson::dom::parser reused;
  simdjson::dom::parser own;
  auto& parser = req.body.size() <= reused_up_to ? reused : own;
  simdjson::dom::element root;
  if (parser.parse(req.body).get(root) != simdjson::SUCCESS) {
    // Not JSON to simdjson: rapidjson decides, as before this parser.
    chat_rapidjson(std::move(ctx), svc, req, out, who);
    return;
  }
  simdjson::dom::object d;
  if (root.get(d) != simdjson::SUCCESS) {
    bad_request(out, true, "the body must be a JSON object");
    return;
  }
  // A key given twice is refused, as in begin_call.
  std::vector<std::string_view> names;
  names.reserve(d.size());
  for (auto field : d)
    names.push_back(field.key);
  std::sort(names.begin(), names.end());
  if (const auto twice = std::adjacent_find(names.begin(), names.end()); twice != names.end()) {
    const std::string name{*twice};
    bad_request(out, true, "'" + name + "' appears more than once in the body", name);
    return;
  }
  llm::call_request r;
  std::string_view model;
  if (d["model"].get(model) != simdjson::SUCCESS || model.empty()) {
    bad_request(out, true, "model is required and must be a string", "model");
    return;
  }
  r.kind = llm::call_kind::chat;
  r.model = std::string{model};
  r.openai_errors = true;
  simdjson::dom::array messages;
  if (d["messages"].get(messages) != simdjson::SUCCESS || messages.size() == 0) {
    bad_request(out, true, "messages must be a non-empty array", "messages");
    return;
  }
  std::size_t bytes = 0;
  for (auto m : messages) {
    simdjson::dom::object o;
    std::string_view role;
    if (m.get(o) != simdjson::SUCCESS || o["role"].get(role) != simdjson::SUCCESS) {
      bad_request(out, true, "each message needs a role", "messages");
      return;
    }
    const bool user = role == "user";
    simdjson::dom::element content;
    if (o["content"].get(content) == simdjson::SUCCESS
        && !content_bytes(content, bytes, user ? &r.user_text : nullptr)) {
      bad_request(out, true, "message content must be a string or an array of parts",
                  "messages");
      return;
    }
  }
  simdjson::dom::element stream;
  if (d["stream"].get(stream) == simdjson::SUCCESS) {
    if (stream.get(r.stream) != simdjson::SUCCESS) {
      bad_request(out, true, "stream must be a boolean", "stream");
      return;
    }
  }
  std::string err;
  if (!positive_int(d, "max_tokens", r.max_tokens, err)
      || !positive_int(d, "max_completion_tokens", r.max_tokens, err)) {
    bad_request(out, true, err);
    return;
  }
  launch_chat(std::move(ctx), svc, req, out, who, std::move(r), bytes, messages.size());
}

void responses(std::shared_ptr<const llm::context> ctx, const actors::services& svc,
               core::api_request& req, core::responder_ptr& out, const core::principal& who) {
  rapidjson::Document d;
  llm::call_request r;
  if (!begin_call(ctx, req, out, true, llm::call_kind::responses, d, r))
    return;
  if (!d.HasMember("input")) {
    bad_request(out, true, "input is required", "input");
    return;
  }
  std::size_t bytes = 0;
  if (d["input"].IsString()) {
    bytes = d["input"].GetStringLength();
  } else if (d["input"].IsArray()) {
    for (const auto& m : d["input"].GetArray())
      if (m.IsObject() && m.HasMember("content") && !content_bytes(m["content"], bytes, nullptr)) {
        bad_request(out, true, "input content must be a string or an array of parts", "input");
        return;
      }
  } else {
    bad_request(out, true, "input must be a string or an array", "input");
    return;
  }
  if (d.HasMember("stream") && !d["stream"].IsBool()) {
    bad_request(out, true, "stream must be a boolean", "stream");
    return;
  }
  r.stream = d.HasMember("stream") && d["stream"].GetBool();
  std::string err;
  if (!positive_int(d, "max_output_tokens", r.max_tokens, err)
      || !positive_int(d, "max_tokens", r.max_tokens, err)) {
    bad_request(out, true, err);
    return;
  }
  r.prompt_tokens = core::llm::estimate_prompt_tokens(bytes, 1);
  launch(std::move(ctx), svc, req, out, who, std::move(r));
}

void images(std::shared_ptr<const llm::context> ctx, const actors::services& svc,
            core::api_request& req, core::responder_ptr& out, const core::principal& who) {
  rapidjson::Document d;
  llm::call_request r;
  if (!begin_call(ctx, req, out, false, llm::call_kind::images, d, r))
    return;
  if (!d.HasMember("prompt") || !d["prompt"].IsString() || d["prompt"].GetStringLength() == 0) {
    bad_request(out, false, "prompt is required and must be a string");
    return;
  }
  r.prompt_tokens = core::llm::estimate_prompt_tokens(d["prompt"].GetStringLength(), 1);
  launch(std::move(ctx), svc, req, out, who, std::move(r));
}

void send_message(std::shared_ptr<const llm::context> ctx, const actors::services& svc,
                  core::api_request& req, core::responder_ptr& out, const core::principal& who) {
  auto c = no_llm_guard(ctx, out, false);
  if (!c)
    return;
  rapidjson::Document d;
  d.Parse(req.body.data(), req.body.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("message") || !d["message"].IsString()
      || d["message"].GetStringLength() == 0) {
    respond_error(out, core::errc::bad_request, "message is required and must be a string");
    return;
  }
  if (c->agent_model.empty()) {
    respond_error(out, core::errc::unavailable, "llm.agent_model is not configured");
    return;
  }
  llm::call_request r;
  r.kind = llm::call_kind::send_message;
  r.model = c->agent_model;
  r.user_text = d["message"].GetString();
  // The token-tracking page's estimate: length / 4 * 2 (input and output).
  r.prompt_tokens = core::llm::estimate_prompt_tokens(r.user_text.size(), 1);
  r.max_tokens = std::max<std::int64_t>(16, static_cast<std::int64_t>(r.user_text.size()) / 4);
  r.who = who;
  r.request_id = req.request_id;
  r.openai_errors = false;
  llm::start_call(std::move(c), svc, std::move(r), out);
}

/// An authenticated route over one of the handlers above.
template <class Handler>
actors::route_handler llm_route(access a, std::shared_ptr<const llm::context> ctx, Handler h) {
  return authenticated(a, [ctx, h](actors::router_pointer, const actors::services& svc,
                                   core::api_request& req, core::responder_ptr& out,
                                   const core::principal& who) { h(ctx, svc, req, out, who); });
}

} // namespace

actors::route_handler chat_completions_route(access a, std::shared_ptr<const llm::context> ctx) {
  return llm_route(a, std::move(ctx), chat);
}

actors::route_handler responses_route(access a, std::shared_ptr<const llm::context> ctx) {
  return llm_route(a, std::move(ctx), responses);
}

actors::route_handler images_route(access a, std::shared_ptr<const llm::context> ctx) {
  return llm_route(a, std::move(ctx), images);
}

actors::route_handler send_message_route(access a, std::shared_ptr<const llm::context> ctx) {
  return llm_route(a, std::move(ctx), send_message);
}

actors::route_handler openai_models_route(access a, std::shared_ptr<const llm::context> ctx) {
  return authenticated(a, [ctx](actors::router_pointer, const actors::services&,
                                core::api_request&, core::responder_ptr& out,
                                const core::principal&) {
    json_writer w;
    w->StartObject();
    w.field("object", "list");
    w.key("data");
    w->StartArray();
    if (ctx != nullptr)
      for (const auto& p : ctx->providers)
        for (const auto& m : p.cfg.models) {
          w->StartObject();
          w.field("id", m.id);
          w.field("object", "model");
          w.field("created", std::int64_t{0});
          w.field("owned_by", p.cfg.name);
          w->EndObject();
        }
    w->EndArray();
    w->EndObject();
    respond_json(out, w.take());
  });
}

actors::route_handler models_route(std::shared_ptr<const llm::context> ctx) {
  return [ctx](actors::router_pointer, const actors::services&, core::api_request& req,
               core::responder_ptr& out) {
    listing_query q;
    if (!parse_listing(req, out, q))
      return;
    std::string provider;
    if (auto it = q.params.find("provider"); it != q.params.end())
      provider = it->second;
    json_writer w;
    w->StartObject();
    w.field("success", true);
    w.key("data");
    w->StartArray();
    std::uint64_t index = 0;
    std::uint64_t count = 0;
    if (ctx != nullptr)
      for (const auto& p : ctx->providers)
        for (const auto& m : p.cfg.models) {
          if (!provider.empty() && provider != p.cfg.name)
            continue;
          if (index++ < q.offset || count >= q.limit)
            continue;
          ++count;
          w->StartObject();
          w.field("id", m.id);
          w.field("name", m.id);
          w.field("provider", p.cfg.name);
          w.field("context_length", m.context_length);
          w.key("pricing");
          w->StartObject();
          // Credits per token, as the reference shows them.
          w.field("prompt", static_cast<double>(m.prompt_price_micro_per_mtok) / 1e12);
          w.field("completion", static_cast<double>(m.completion_price_micro_per_mtok) / 1e12);
          w.field("prompt_per_mtok", credits(m.prompt_price_micro_per_mtok));
          w.field("completion_per_mtok", credits(m.completion_price_micro_per_mtok));
          w->EndObject();
          w->EndObject();
        }
    w->EndArray();
    w.field("count", count);
    w.field("total", index);
    w->EndObject();
    respond_json(out, w.take());
  };
}

actors::route_handler providers_route(std::shared_ptr<const llm::context> ctx) {
  return [ctx](actors::router_pointer, const actors::services&, core::api_request& req,
               core::responder_ptr& out) {
    listing_query q;
    if (!parse_listing(req, out, q))
      return;
    json_writer w;
    w->StartObject();
    w.field("success", true);
    w.key("data");
    w->StartArray();
    std::uint64_t index = 0;
    std::uint64_t count = 0;
    if (ctx != nullptr)
      for (const auto& p : ctx->providers) {
        if (index++ < q.offset || count >= q.limit)
          continue;
        ++count;
        w->StartObject();
        w.field("name", p.cfg.name);
        w.field("slug", p.cfg.name);
        w.field("description", p.demo ? "tollgate's built-in demo provider (no network)"
                                      : "OpenAI-compatible provider");
        w.field("model_count", static_cast<std::uint64_t>(p.cfg.models.size()));
        // The host only: a base URL can carry a path with a tenant or key.
        auto url = p.cfg.base_url;
        if (auto scheme = url.find("://"); scheme != std::string::npos) {
          auto slash = url.find('/', scheme + 3);
          if (slash != std::string::npos)
            url.resize(slash);
        }
        w.field("official_url", url);
        w->EndObject();
      }
    w->EndArray();
    w.field("count", count);
    w->EndObject();
    respond_json(out, w.take());
  };
}

actors::route_handler agent_status_route(access a, std::shared_ptr<const llm::context> ctx) {
  return authenticated(a, [ctx](actors::router_pointer self, const actors::services& svc,
                                core::api_request&, core::responder_ptr& out,
                                const core::principal&) {
    if (ctx == nullptr || ctx->agent_model.empty()) {
      respond_error(out, core::errc::unavailable, "llm.agent_model is not configured");
      return;
    }
    const auto cands = ctx->candidates(ctx->agent_model);
    if (cands.empty()) {
      respond_error(out, core::errc::unavailable, "the agent's provider is off");
      return;
    }
    const auto* p = cands.front().provider;
    self->request(p->actor, svc.ask_timeout, actors::status_atom::value)
      .then(
        [out, ctx, p](actors::provider_status& s) mutable {
          json_writer w;
          w->StartObject();
          w.field("status", s.up ? "online" : "degraded");
          w.field("model", ctx->agent_model);
          w.field("provider", s.name);
          w.key("rate_limits");
          w->StartObject();
          w.field("tokens_per_minute", p->cfg.tokens_per_minute);
          w.field("burst_tokens", p->cfg.burst_tokens);
          w.field("tokens_available", s.tokens_available);
          w.field("max_concurrency", s.max_concurrency);
          w.field("in_flight", s.in_flight);
          w.field("queue_size", s.queue_size);
          w.field("queued", s.queued);
          w.field("queue_timeout_s",
                  static_cast<std::int64_t>(
                    std::chrono::duration_cast<std::chrono::seconds>(p->cfg.queue_timeout)
                      .count()));
          w->EndObject();
          w.field("served", s.served);
          w.field("failed", s.failed);
          w->EndObject();
          respond_json(out, w.take());
        },
        [out](caf::error& e) mutable { respond_error(out, e); });
  });
}

} // namespace tollgate::http::api
