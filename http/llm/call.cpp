#include "http/llm/llm.hpp"

#include "actors/key_directory.hpp"
#include "core/llm.hpp"
#include "core/time_format.hpp"
#include "http/api/common.hpp"
#include "http/api/json.hpp"
#include "http/api/ratelimit.hpp"
#include "http/client/client.hpp"
#include "http/errors.hpp"
#include "http/llm/demo.hpp"
#include "http/llm/watch.hpp"
#include "http/stream_relay.hpp"
#include "metrics/registry.hpp"
#include "storage/write_queue.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <mutex>

namespace tollgate::http::llm {

namespace {

using start_atom = caf::atom_constant<caf::atom("start")>;
using upstream_done_atom = caf::atom_constant<caf::atom("up_done")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;

constexpr std::size_t max_error_body = 64 * 1024;

/// The call's requests to other actors carry no timeout of their own: each
/// would cost a timer in CAF's clock thread (7% of throughput at 32
/// connections, measured). The actors asked always answer within bounds of
/// their own (lookups, writes and provider queues time out inside them), so
/// no grant can arrive after the call gave up on it; the watchdog
/// (watch.hpp) answers the client if something still hangs.
const caf::duration no_timeout{caf::infinite};

/// What an upstream attempt came to.
struct upstream_result {
  std::string error;        ///< transport error; empty when a response came
  unsigned status = 0;
  std::string retry_after;  ///< the upstream's Retry-After
  std::string body;         ///< the whole body (not streamed) or the error body
  bool streamed = false;    ///< a 200 head came and the body went to the client
  std::int64_t prompt_tokens = -1;      ///< from the upstream's usage; -1: none
  std::int64_t completion_tokens = -1;
  std::string text;         ///< the streamed assistant text, assembled
};

} // namespace
} // namespace tollgate::http::llm

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tollgate::http::llm::upstream_result)

namespace tollgate::http::llm {
namespace {
struct call_state;
} // namespace
} // namespace tollgate::http::llm

// Calls run in long-lived runner actors (see spawn_call_runner); their
// messages carry the call's state, which never leaves the process.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<tollgate::http::llm::call_state>)

namespace tollgate::http::llm {

namespace {

/// Usage and text from a chat completion or a response body.
void read_usage(const rapidjson::Value& d, upstream_result& r) {
  if (!d.IsObject())
    return;
  if (d.HasMember("usage") && d["usage"].IsObject()) {
    const auto& u = d["usage"];
    for (const char* k : {"prompt_tokens", "input_tokens"})
      if (u.HasMember(k) && u[k].IsInt64())
        r.prompt_tokens = u[k].GetInt64();
    for (const char* k : {"completion_tokens", "output_tokens"})
      if (u.HasMember(k) && u[k].IsInt64())
        r.completion_tokens = u[k].GetInt64();
  }
}

/// read_usage for a whole body, with simdjson (the hot path of every plain
/// answer). False when the body is not a JSON object.
bool read_body_usage(const std::string& body, upstream_result& r) {
  // One parser per thread for ordinary answers; a huge one gets its own, so
  // that a thread does not keep its buffers.
  constexpr std::size_t reused_up_to = 1 << 20;
  thread_local simdjson::dom::parser reused;
  simdjson::dom::parser own;
  auto& parser = body.size() <= reused_up_to ? reused : own;
  simdjson::dom::object d;
  if (parser.parse(body).get(d) != simdjson::SUCCESS)
    return false;
  simdjson::dom::object u;
  if (d["usage"].get(u) != simdjson::SUCCESS)
    return true;
  std::int64_t v = 0;
  for (const char* k : {"prompt_tokens", "input_tokens"})
    if (u[k].get(v) == simdjson::SUCCESS)
      r.prompt_tokens = v;
  for (const char* k : {"completion_tokens", "output_tokens"})
    if (u[k].get(v) == simdjson::SUCCESS)
      r.completion_tokens = v;
  return true;
}

/// The assistant's text in a non-streamed answer.
std::string answer_text(const rapidjson::Value& d) {
  if (!d.IsObject())
    return {};
  if (d.HasMember("choices") && d["choices"].IsArray() && !d["choices"].Empty()) {
    const auto& c = d["choices"][0];
    if (c.IsObject() && c.HasMember("message") && c["message"].IsObject()
        && c["message"].HasMember("content") && c["message"]["content"].IsString())
      return c["message"]["content"].GetString();
  }
  if (d.HasMember("output_text") && d["output_text"].IsString())
    return d["output_text"].GetString();
  return {};
}

/// Reads the SSE events of a streamed chat completion as they pass: the
/// usage chunk and the assembled text. Runs on the client's I/O thread.
struct stream_reader {
  core::llm::sse_reader sse;
  std::vector<std::string> events;
  upstream_result partial;
  std::size_t bytes = 0;

  void feed(std::string_view chunk) {
    bytes += chunk.size();
    events.clear();
    sse.feed(chunk, events);
    for (const auto& e : events) {
      if (e == "[DONE]")
        continue;
      rapidjson::Document d;
      d.Parse(e.data(), e.size());
      if (d.HasParseError() || !d.IsObject())
        continue;
      read_usage(d, partial);
      // The Responses API's stream: text in output_text.delta events, the
      // usage inside the response.completed event's response.
      if (d.HasMember("response") && d["response"].IsObject())
        read_usage(d["response"], partial);
      if (d.HasMember("type") && d["type"] == "response.output_text.delta"
          && d.HasMember("delta") && d["delta"].IsString())
        partial.text.append(d["delta"].GetString(), d["delta"].GetStringLength());
      if (d.HasMember("choices") && d["choices"].IsArray())
        for (const auto& c : d["choices"].GetArray())
          if (c.IsObject() && c.HasMember("delta") && c["delta"].IsObject()
              && c["delta"].HasMember("content") && c["delta"]["content"].IsString())
            partial.text.append(c["delta"]["content"].GetString(),
                                c["delta"]["content"].GetStringLength());
    }
  }
};

bool retryable(const upstream_result& r) {
  if (!r.error.empty())
    return r.error != "cancelled" && r.error != "stopped" && r.error != "response too large";
  return r.status == 429 || r.status >= 500;
}

std::int64_t parse_retry_after(const std::string& v) {
  if (v.empty())
    return 0;
  try {
    const auto s = std::stoll(v);
    return std::clamp<std::int64_t>(s, 0, 3600);
  } catch (...) {
    return 0;
  }
}

struct call_state {
  std::shared_ptr<const context> ctx;
  actors::services svc;
  call_request req;
  core::responder_ptr out;
  std::vector<model_ref> candidates;
  std::size_t candidate = 0;
  unsigned attempt = 0;
  std::int64_t max_tokens = 0;
  std::int64_t reserved = 0;      ///< tokens reserved at the key actor
  bool tokens_reserved = false;
  /// The key actor that granted the reservation, when it was asked straight
  /// (it stays until the call settles); else the directory settles it.
  actors::key_actor reserved_at;
  actors::credit_hold hold;
  bool slot = false;              ///< holding a provider slot
  std::shared_ptr<client::call_handle> handle;
  std::shared_ptr<http::relay> stream;
  bool cancelled = false;
  /// Waiting out a retry's backoff: the retry message is still to come.
  bool backing_off = false;
  /// A step threw: the call was answered 500 and gave back what it held;
  /// grants that arrive later go straight back.
  bool failed = false;
  /// Between the upstream client's start and the runner's upstream_done:
  /// the I/O thread may settle the call itself (answer_on_io_thread), so
  /// the runner leaves the slot, the tokens and the hold alone.
  bool upstream_running = false;
  /// Usage known from the upstream's answer, for a failure after it.
  std::int64_t used_prompt = 0;
  std::int64_t used_completion = 0;
  /// Asked the current provider for a slot, no answer yet (maybe queued).
  bool awaiting_slot = false;
  /// Set by whoever answers first: the runner, or the I/O thread that got
  /// the upstream's answer (answer_on_io_thread).
  std::atomic<bool> answered{false};
  /// The call's reservation and hold are among the write queue's writes
  /// (writes_from, writes_upto], granted before they commit: nothing
  /// reaches the client before they did (`stored`). 0: nothing to wait for.
  std::uint64_t writes_from = 0;
  std::uint64_t writes_upto = 0;
  std::uint64_t chat_session = 0;  ///< save the exchange here (?session_id=)
  std::uint64_t watch_id = 0;      ///< in ctx->watch while the call runs
  // The last failure, for the answer when nothing else is left to try.
  std::uint16_t fail_status = 0;
  std::string fail_message;
  std::string fail_code;
  std::string fail_type;
  std::int64_t fail_retry_after = 0;
  std::string fail_body;  ///< an upstream's own error body to pass through

  const model_ref& current() const { return candidates[candidate]; }
  /// The current candidate's metric children; null without a registry.
  const model_meters* meters() const {
    const auto& r = current();
    const auto i = static_cast<std::size_t>(r.model - r.provider->cfg.models.data());
    return i < r.provider->meters.size() ? &r.provider->meters[i] : nullptr;
  }
  std::int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(svc.clock->now().time_since_epoch())
      .count();
  }
};

using state_ptr = std::shared_ptr<call_state>;

/// Ends a call whose step threw (defined below).
void fail_call(caf::event_based_actor* self, const state_ptr& st, const char* what);

/// Runs a step of the call. An exception ends this call (answered 500,
/// whatever it holds given back), not the runner and every call it carries,
/// which is what an exception escaping to CAF would do.
template <class F>
void guarded(caf::event_based_actor* self, const state_ptr& st, F&& step) {
  try {
    step();
  } catch (const std::exception& e) {
    fail_call(self, st, e.what());
  }
}

/// A `.then` handler of the call's, guarded like its message handlers.
template <class T, class F>
auto guard_then(caf::event_based_actor* self, state_ptr st, F f) {
  return [self, st = std::move(st), f = std::move(f)](T& x) mutable {
    guarded(self, st, [&] { f(x); });
  };
}

std::atomic<bool> fault_armed{false};
std::mutex fault_mutex;
std::string fault_step;

/// testing::fail_once_at: throws here once if a test asked for `step`.
void fault_point(const char* step) {
  if (!fault_armed.load(std::memory_order_relaxed))
    return;
  std::lock_guard<std::mutex> lock{fault_mutex};
  if (fault_step != step)
    return;
  fault_step.clear();
  fault_armed = false;
  throw std::runtime_error(std::string{"injected fault at "} + step);
}

void count_call(const call_state& st, std::uint16_t status) {
  if (st.ctx->calls == nullptr)
    return;
  if (status < 400 && !st.candidates.empty())
    if (const auto* m = st.meters()) {
      m->ok_calls->inc();
      return;
    }
  // Labels come from the configuration only: an unknown model the client
  // named is "-", never its text.
  const bool known = !st.candidates.empty();
  const std::string provider = known ? st.current().provider->cfg.name : "-";
  const std::string model = known ? st.current().model->id : "-";
  const char* outcome = "upstream_error";
  if (status < 400)
    outcome = "ok";
  else if (status == 402)
    outcome = "insufficient_credits";
  else if (status == 499)
    outcome = "cancelled";
  else if (status == 429)
    outcome = st.fail_code.empty()                      ? "token_limited"
              : st.fail_code == "upstream_rate_limited" ? "upstream_rate_limited"
                                                        : "rate_limited";
  else if (status < 500)
    outcome = "client_error";
  else if (status == 503 && st.fail_code == "unavailable")
    outcome = "unavailable";  // the gateway's own: its store, its shutdown
  st.ctx->calls->with({provider, model, outcome}).inc();
}

using write_status = storage::write_queue::status;

/// Where the writes of the call's reservation and hold stand.
write_status stored(const call_state& st) {
  if (!st.svc.writes || st.writes_upto == 0)
    return write_status::committed;
  return st.svc.writes->check(st.writes_from, st.writes_upto);
}

/// The answer when the store refused the call's reservation or hold.
core::api_response unstored_response(bool openai_errors, const core::clock& clock) {
  core::api_response res;
  res.status = 503;
  const std::string message = "token usage could not be stored";
  res.body = openai_errors ? api::openai_error_body(message, "server_error", "unavailable")
                           : error_body(503, message, clock.now());
  res.raw_headers = "Retry-After: 1\r\n";
  return res;
}

/// Sends `res`, or the 503 that replaces it when the call's writes were
/// refused (then a stream it would have read is cancelled).
void respond_checked(write_status s, const core::responder_ptr& out, core::api_response res,
                     bool openai_errors, const core::clock& clock) {
  if (s == write_status::committed) {
    out->respond(std::move(res));
    return;
  }
  if (res.stream)
    res.stream->cancel();
  out->respond(unstored_response(openai_errors, clock));
}

/// Hands `res` to the client once the call's reservation and hold are
/// stored: at once (the usual case, their burst of actor work ended before
/// the upstream answered), or from the flush that commits them.
void respond_stored(const call_state& st, core::responder_ptr out, core::api_response res) {
  const auto s = stored(st);
  if (s != write_status::pending) {
    respond_checked(s, out, std::move(res), st.req.openai_errors, *st.svc.clock);
    return;
  }
  if (st.ctx->answers_held != nullptr)
    st.ctx->answers_held->inc();
  auto writes = st.svc.writes;
  writes->when_committed(st.writes_upto, [writes, from = st.writes_from, upto = st.writes_upto,
                                          out = std::move(out), res = std::move(res),
                                          openai = st.req.openai_errors,
                                          clock = st.svc.clock]() mutable {
    respond_checked(writes->check(from, upto), out, std::move(res), openai, *clock);
  });
}

void answer(call_state& st, core::api_response res) {
  if (st.answered.exchange(true))
    return;
  count_call(st, res.status);
  respond_stored(st, st.out, std::move(res));
}

/// An error answer: OpenAI's envelope on /v1/, the gateway body elsewhere.
void answer_error(call_state& st, std::uint16_t status, std::string_view type,
                  std::string_view code, const std::string& message,
                  std::int64_t retry_after = 0) {
  core::api_response res;
  res.status = status;
  if (st.req.openai_errors)
    res.body = api::openai_error_body(message, type, code);
  else
    res.body = error_body(status, message, st.svc.clock->now());
  if (retry_after > 0)
    res.raw_headers = "Retry-After: " + std::to_string(retry_after) + "\r\n";
  answer(st, std::move(res));
}

/// The token-tracking page's body when the provider's queue refuses.
void answer_rate_limited(call_state& st, std::uint16_t status, const std::string& error,
                         std::int64_t retry_after) {
  if (st.req.openai_errors) {
    answer_error(st, status, status == 503 ? "server_error" : "rate_limit_error", st.fail_code,
                 error, retry_after);
    return;
  }
  api::json_writer w;
  w->StartObject();
  w.field("status", "rate_limited");
  w.field("error", error);
  w.field("retry_after", std::to_string(retry_after));
  w.field("message", "API rate limit reached. Please try again shortly.");
  w.field("type", "rate_limit_error");
  w.field("status_code", std::int64_t{status});
  w->EndObject();
  core::api_response res;
  res.status = status;
  res.body = w.take();
  res.raw_headers = "Retry-After: " + std::to_string(retry_after) + "\r\n";
  answer(st, std::move(res));
}

/// The body as it goes to this candidate: its model name, and a request
/// for usage in the stream.
std::string upstream_body(const call_state& st) {
  const auto& model = st.current().model->upstream;
  // The route checked that the body is an object with one "model": when
  // that is already the provider's name and no stream_options need adding,
  // the body goes as the client sent it, unparsed.
  if (model == st.req.model && !(st.req.stream && st.req.kind == call_kind::chat))
    return st.req.body;
  rapidjson::Document d;
  d.Parse(st.req.body.data(), st.req.body.size());
  if (!d.IsObject())
    return st.req.body;
  auto& a = d.GetAllocator();
  const auto& upstream = st.current().model->upstream;
  if (d.HasMember("model"))
    d["model"].SetString(upstream.data(), static_cast<rapidjson::SizeType>(upstream.size()), a);
  else
    d.AddMember("model", rapidjson::Value{upstream.data(),
                                          static_cast<rapidjson::SizeType>(upstream.size()), a},
                a);
  if (st.req.stream && st.req.kind == call_kind::chat) {
    if (!d.HasMember("stream_options") || !d["stream_options"].IsObject()) {
      d.RemoveMember("stream_options");
      d.AddMember("stream_options", rapidjson::Value{rapidjson::kObjectType}, a);
    }
    auto& so = d["stream_options"];
    so.RemoveMember("include_usage");
    so.AddMember("include_usage", true, a);
  }
  rapidjson::StringBuffer b;
  rapidjson::Writer<rapidjson::StringBuffer> w{b};
  d.Accept(w);
  return {b.GetString(), b.GetSize()};
}

/// The send-message route's body for the chat completions a call made.
std::string chat_body_for_message(const std::string& model, const std::string& message) {
  api::json_writer w;
  w->StartObject();
  w.field("model", model);
  w.key("messages");
  w->StartArray();
  w->StartObject();
  w.field("role", "user");
  w.field("content", message);
  w->EndObject();
  w->EndArray();
  w->EndObject();
  return w.take();
}

/// Appends the user's message and the answer to the chat session, then
/// runs `then` (also when saving fails: the call itself succeeded).
void save_exchange(caf::event_based_actor* self, state_ptr st, std::string answer_text,
                   std::function<void()> then) {
  if (st->chat_session == 0) {
    then();
    return;
  }
  std::vector<actors::chat_message> msgs(2);
  msgs[0].role = "user";
  msgs[0].content = st->req.user_text;
  msgs[1].role = "assistant";
  msgs[1].content = std::move(answer_text);
  self
    ->request(st->svc.chat, no_timeout, actors::append_atom::value,
              st->req.who.user_id, st->chat_session, std::move(msgs))
    .then(guard_then<actors::chat_session>(self, st, [then](actors::chat_session&) { then(); }),
          guard_then<caf::error>(self, st, [then, st](caf::error& e) {
            spdlog::error("request {}: chat session not saved: {}", st->req.request_id,
                          to_string(e));
            then();
          }));
}

void try_next(caf::event_based_actor* self, state_ptr st);
void acquire(caf::event_based_actor* self, state_ptr st);

/// The charge for what was used (the hold is spent by it), counted in the
/// token and credit metrics.
actors::charge_request take_charge(call_state& st, std::int64_t prompt, std::int64_t completion) {
  st.hold.granted = false;
  actors::charge_request c;
  c.hold_id = st.hold.hold_id;
  c.held_micro = st.hold.held_micro;
  c.entry.user_id = st.req.who.user_id;
  c.entry.key_id = st.req.who.key_id;
  c.entry.request_id = st.req.request_id;
  const auto* m = st.candidates.empty() ? nullptr : st.current().model;
  if (m != nullptr) {
    c.entry.model = m->id;
    c.entry.provider = st.current().provider->cfg.name;
    c.entry.prompt_tokens = std::max<std::int64_t>(0, prompt);
    c.entry.completion_tokens = std::max<std::int64_t>(0, completion);
    c.entry.amount_micro =
      core::llm::price_micro(c.entry.prompt_tokens, m->prompt_price_micro_per_mtok)
      + core::llm::price_micro(c.entry.completion_tokens, m->completion_price_micro_per_mtok);
    if (const auto* mm = st.meters()) {
      mm->prompt_tokens->inc(static_cast<std::uint64_t>(c.entry.prompt_tokens));
      mm->completion_tokens->inc(static_cast<std::uint64_t>(c.entry.completion_tokens));
      mm->charged->inc(static_cast<std::uint64_t>(c.entry.amount_micro));
    }
  }
  return c;
}

/// Settles tokens and charges credits for what was used, then runs `done`
/// with the key's usage after settlement (empty when nothing was reserved).
void settle(caf::event_based_actor* self, state_ptr st, std::int64_t prompt,
            std::int64_t completion, std::function<void(actors::key_usage)> done) {
  // Both go out at once (they do not depend on each other): a caller that
  // answers the client right after this call has both already queued ahead
  // of anything the client sends next.
  struct join {
    std::function<void(actors::key_usage)> done;
    actors::key_usage usage;
    int left = 0;
    void one() {
      if (--left == 0)
        done(std::move(usage));
    }
  };
  auto j = std::make_shared<join>();
  j->done = std::move(done);
  j->left = 1;  // released at the end of this function
  const auto used = std::max<std::int64_t>(0, prompt) + std::max<std::int64_t>(0, completion);
  if (st->tokens_reserved) {
    st->tokens_reserved = false;
    ++j->left;
    auto asked = st->reserved_at
                   ? self->request(st->reserved_at, no_timeout, actors::settle_atom::value,
                                   st->reserved, used)
                   : self->request(st->svc.directory, no_timeout, actors::settle_atom::value,
                                   st->req.who.key_hash, st->reserved, used);
    asked.then(guard_then<actors::key_usage>(self, st,
                                          [j](actors::key_usage& u) {
                                            j->usage = std::move(u);
                                            j->one();
                                          }),
            guard_then<caf::error>(self, st, [j, st](caf::error& e) {
              spdlog::error("request {}: token usage not settled: {}", st->req.request_id,
                            to_string(e));
              j->one();
            }));
  }
  if (st->hold.granted && used == 0) {
    // Nothing was used: the hold goes back whole, with no ledger entry.
    st->hold.granted = false;
    ++j->left;
    self
      ->request(st->svc.wallet, no_timeout, actors::release_atom::value,
                st->req.who.user_id, st->hold.held_micro)
      .then(guard_then<std::int64_t>(self, st, [j](std::int64_t) { j->one(); }),
            guard_then<caf::error>(self, st, [j, st](caf::error& e) {
              spdlog::error("request {}: credit hold not released: {}", st->req.request_id,
                            to_string(e));
              j->one();
            }));
  }
  if (st->hold.granted) {
    ++j->left;
    self->request(st->svc.wallet, no_timeout, actors::charge_atom::value,
                  take_charge(*st, prompt, completion))
      .then(guard_then<actors::ledger_entry>(self, st, [j](actors::ledger_entry&) { j->one(); }),
            guard_then<caf::error>(self, st, [j, st](caf::error& e) {
              spdlog::error("request {}: charge not recorded: {}", st->req.request_id,
                            to_string(e));
              j->one();
            }));
  }
  j->one();
}

void release_slot(call_state& st, bool upstream_ok, std::int64_t used) {
  if (!st.slot)
    return;
  st.slot = false;
  caf::anon_send(st.current().provider->actor, actors::release_atom::value, upstream_ok,
                 st.reserved, used);
}

void release_slot(const state_ptr& st, bool upstream_ok, std::int64_t used) {
  release_slot(*st, upstream_ok, used);
}

/// The whole call ends: nothing is held any more. Its runner stays for the
/// next calls.
void end(caf::event_based_actor*, state_ptr st) {
  if (!st->answered)
    answer_error(*st, 500, "server_error", "internal_error", "the call ended without an answer");
  if (st->watch_id != 0 && st->ctx->watch)
    st->ctx->watch->remove(st->watch_id);
  st->watch_id = 0;
}

/// Settles nothing used and answers the error that was recorded last.
void fail_with_last(caf::event_based_actor* self, state_ptr st) {
  settle(self, st, 0, 0, [self, st](actors::key_usage) {
    if (st->fail_status == 0) {
      // Nothing failed: the client left before the call got anywhere.
      answer_error(*st, 499, "client_closed", "cancelled", "the client closed the request");
    } else if (!st->fail_body.empty()) {
      core::api_response res;
      res.status = st->fail_status;
      res.body = std::move(st->fail_body);
      if (st->fail_retry_after > 0)
        res.raw_headers = "Retry-After: " + std::to_string(st->fail_retry_after) + "\r\n";
      answer(*st, std::move(res));
    } else if (st->fail_code == "queue_full" || st->fail_code == "queue_timeout"
               || st->fail_code == "down") {
      answer_rate_limited(*st, st->fail_status, st->fail_message, st->fail_retry_after);
    } else {
      answer_error(*st, st->fail_status, st->fail_type, st->fail_code, st->fail_message,
                   st->fail_retry_after);
    }
    end(self, st);
  });
}

/// The gateway reference's image answer: {"success": true, "data": [...]}
/// around the upstream's data.
std::string images_answer(const std::string& upstream) {
  rapidjson::Document d;
  d.Parse(upstream.data(), upstream.size());
  rapidjson::StringBuffer b;
  rapidjson::Writer<rapidjson::StringBuffer> w{b};
  w.StartObject();
  w.Key("success");
  w.Bool(true);
  w.Key("data");
  if (!d.HasParseError() && d.IsObject() && d.HasMember("data") && d["data"].IsArray())
    d["data"].Accept(w);
  else {
    w.StartArray();
    w.EndArray();
  }
  w.EndObject();
  return {b.GetString(), b.GetSize()};
}

/// The send-message answer (token-tracking page).
std::string message_answer(const call_state& st, const std::string& text,
                           const actors::key_usage& usage) {
  api::json_writer w;
  w->StartObject();
  w.field("status", "success");
  w.field("response", text);
  w.key("metadata");
  w->StartObject();
  w.field("estimated_tokens", st.reserved);
  w.field("api_key_hash", st.req.who.key_hash.substr(0, 16));
  w.field("model", st.req.model);
  w.key("token_usage");
  w->StartObject();
  for (const auto& p : usage.policies) {
    if (p.name == "tokens_day") {
      w.field("daily_used", p.used);
      w.field("daily_remaining", p.remaining);
    } else if (p.name == "tokens_month") {
      w.field("monthly_used", p.used);
      w.field("monthly_remaining", p.remaining);
    }
  }
  w->EndObject();
  w->EndObject();
  w->EndObject();
  return w.take();
}

/// A plain answer (JSON, no stream, no chat session, not send-message)
/// goes to the client straight from the I/O thread the upstream's answer
/// arrived on, which is the client's session's own thread: no hand-off to
/// the runner and back. The settlement's messages are queued first, so
/// whatever the client asks next sees them, and the runner hears nothing
/// more of the call. False: the runner decides (an error, a body that is
/// not JSON).
bool answer_on_io_thread(call_state& st, upstream_result& r) {
  if (!r.error.empty() || r.status < 200 || r.status >= 300
      || stored(st) != write_status::committed)
    return false;
  if (st.req.kind != call_kind::images && !read_body_usage(r.body, r))
    return false;
  const auto prompt = std::max<std::int64_t>(
    0, r.prompt_tokens >= 0 ? r.prompt_tokens : st.req.prompt_tokens);
  const auto completion = std::max<std::int64_t>(0, r.completion_tokens);
  const auto used = prompt + completion;
  release_slot(st, true, used);
  if (st.tokens_reserved) {
    st.tokens_reserved = false;
    if (st.reserved_at)
      caf::anon_send(st.reserved_at, actors::settle_atom::value, st.reserved, used);
    else
      caf::anon_send(st.svc.directory, actors::settle_atom::value, st.req.who.key_hash,
                     st.reserved, used);
  }
  if (st.hold.granted && used == 0) {
    st.hold.granted = false;
    caf::anon_send(st.svc.wallet, actors::release_atom::value, st.req.who.user_id,
                   st.hold.held_micro);
  } else if (st.hold.granted) {
    caf::anon_send(st.svc.wallet, actors::charge_atom::value, take_charge(st, prompt, completion));
  }
  core::api_response res;
  res.status = 200;
  res.body = st.req.kind == call_kind::images ? images_answer(r.body) : std::move(r.body);
  answer(st, std::move(res));
  // The call is over: no upstream_done for the runner, whose end() would
  // only take the call off the watch. Its state stays as the upstream left
  // it (upstream_running: the runner leaves slot, tokens and hold alone); a
  // late cancel finds nothing to do. watch_id was set before the upstream
  // call started, and the watch is internally synchronised.
  if (st.watch_id != 0 && st.ctx->watch)
    st.ctx->watch->remove(st.watch_id);
  return true;
}

/// Records the gateway's own failure (its store, its shutdown) as the
/// call's answer: 503, "unavailable", retry in a second.
void fail_unavailable(call_state& st, std::string message) {
  st.fail_body.clear();
  st.fail_status = 503;
  st.fail_type = "server_error";
  st.fail_code = "unavailable";
  st.fail_message = std::move(message);
  st.fail_retry_after = 1;
}

void on_result(caf::event_based_actor* self, state_ptr st, upstream_result& r) {
  st->handle.reset();
  st->upstream_running = false;
  if (const auto s = stored(*st); s == write_status::pending) {
    // The upstream was faster than the commit of the call's own writes
    // (another I/O thread read its answer): the result comes back after it.
    st->svc.writes->when_committed(
      st->writes_upto, [me = caf::actor_cast<caf::actor>(self), st, r]() mutable {
        caf::anon_send(me, upstream_done_atom::value, st, std::move(r));
      });
    return;
  } else if (s == write_status::failed) {
    // Nothing stored backs this call: it charges nothing and answers 503.
    release_slot(st, true, st->req.prompt_tokens);
    if (st->stream)
      st->stream->cancel();
    fail_unavailable(*st, "token usage could not be stored");
    // A stream's head was turned into that 503 already (respond_stored).
    if (r.streamed && !st->answered.exchange(true))
      count_call(*st, 503);
    fail_with_last(self, st);
    return;
  }
  const bool ok = r.error.empty() && r.status >= 200 && r.status < 300;
  if (r.streamed) {
    const auto prompt = r.prompt_tokens >= 0 ? r.prompt_tokens : st->req.prompt_tokens;
    const auto completion = r.completion_tokens >= 0
                              ? r.completion_tokens
                              : core::llm::estimate_tokens(r.text.size());
    st->used_prompt = prompt;  // charged even if a step below throws
    st->used_completion = completion;
    // A client that left is not the provider's failure.
    release_slot(st, r.error.empty() || r.error == "cancelled", prompt + completion);
    if (!st->answered.exchange(true))  // the head went out from the client's I/O thread
      count_call(*st, 200);
    if (!r.error.empty() && r.error != "cancelled") {
      // The head went out as 200: the failure can only be told in-band.
      st->stream->push("data: " + api::openai_error_body("upstream stream broke: " + r.error,
                                                         "server_error", "bad_gateway")
                       + "\n\n");
    }
    auto s = st->stream;
    settle(self, st, prompt, completion,
           [self, st, s, text = std::move(r.text)](actors::key_usage) mutable {
             save_exchange(self, st, std::move(text), [self, st, s] {
               s->finish();
               end(self, st);
             });
           });
    return;
  }
  if (r.error == "stopped") {
    // The gateway shuts down and its client started nothing: no prompt
    // reached the upstream, so nothing is charged.
    release_slot(st, true, 0);
    fail_unavailable(*st, "the gateway is shutting down");
    fail_with_last(self, st);
    return;
  }
  if (st->cancelled || r.error == "cancelled") {
    release_slot(st, true, st->req.prompt_tokens);
    // The upstream may have read the prompt; what it wrote is unknown.
    settle(self, st, st->req.prompt_tokens, 0, [self, st](actors::key_usage) {
      answer_error(*st, 499, "client_closed", "cancelled", "the client closed the request");
      end(self, st);
    });
    return;
  }
  if (ok) {
    rapidjson::Document d;
    if (st->req.kind != call_kind::images) {
      d.Parse(r.body.data(), r.body.size());
      if (d.HasParseError() || !d.IsObject()) {
        release_slot(st, false, st->req.prompt_tokens);
        settle(self, st, st->req.prompt_tokens, 0, [self, st](actors::key_usage) {
          answer_error(*st, 502, "server_error", "bad_gateway",
                       "the upstream answered with a body that is not JSON");
          end(self, st);
        });
        return;
      }
      read_usage(d, r);
    }
    const auto prompt = r.prompt_tokens >= 0 ? r.prompt_tokens : st->req.prompt_tokens;
    const auto completion = r.completion_tokens >= 0 ? r.completion_tokens : 0;
    st->used_prompt = prompt;  // charged even if a step below throws
    st->used_completion = completion;
    release_slot(st, true, prompt + completion);
    auto text = st->req.kind == call_kind::send_message || st->chat_session != 0
                  ? answer_text(d)
                  : std::string{};
    if (st->req.kind != call_kind::send_message && st->chat_session == 0) {
      // The reservation and the hold, both durable, already cover this
      // call: the client need not wait for the settlement's commit. Its
      // requests are queued before the answer goes, so whatever the client
      // asks next sees them.
      core::api_response res;
      res.status = 200;
      res.body = st->req.kind == call_kind::images ? images_answer(r.body) : std::move(r.body);
      settle(self, st, prompt, completion, [self, st](actors::key_usage) { end(self, st); });
      answer(*st, std::move(res));
      return;
    }
    settle(self, st, prompt, completion,
           [self, st, body = std::move(r.body), text](actors::key_usage usage) mutable {
             if (st->chat_session != 0) {
               save_exchange(self, st, text, [self, st, body = std::move(body)]() mutable {
                 core::api_response res;
                 res.status = 200;
                 res.body = std::move(body);
                 answer(*st, std::move(res));
                 end(self, st);
               });
               return;
             }
             core::api_response res;
             res.status = 200;
             if (st->req.kind == call_kind::send_message)
               res.body = message_answer(*st, text, usage);
             else if (st->req.kind == call_kind::images)
               res.body = images_answer(body);
             else
               res.body = std::move(body);
             answer(*st, std::move(res));
             end(self, st);
           });
    return;
  }
  // Only the provider's own failures count against it: not a request it
  // refused (4xx other than 429), which another client could send at will.
  release_slot(st, !retryable(r), 0);
  // Remember why, in case nothing else works.
  if (!r.error.empty()) {
    st->fail_body.clear();
    st->fail_status = r.error == "timeout" ? 504 : 502;
    st->fail_type = "server_error";
    st->fail_code = r.error == "timeout" ? "upstream_timeout" : "bad_gateway";
    st->fail_message = "provider " + st->current().provider->cfg.name + ": " + r.error;
    st->fail_retry_after = 0;
  } else if (r.status == 429 || r.status >= 500) {
    st->fail_body.clear();
    st->fail_status = r.status == 429 ? 429 : 502;
    st->fail_type = r.status == 429 ? "rate_limit_error" : "server_error";
    st->fail_code = r.status == 429 ? "upstream_rate_limited" : "bad_gateway";
    st->fail_message = "provider " + st->current().provider->cfg.name + " answered "
                       + std::to_string(r.status);
    st->fail_retry_after = parse_retry_after(r.retry_after);
  } else if (r.status == 401 || r.status == 403 || r.status == 407) {
    // The provider refused tollgate's own credentials. Its body can quote
    // part of the upstream key: never passed on.
    spdlog::error("request {}: provider {} refused the gateway's credentials ({})",
                  st->req.request_id, st->current().provider->cfg.name, r.status);
    st->fail_body.clear();
    st->fail_status = 502;
    st->fail_type = "server_error";
    st->fail_code = "bad_gateway";
    st->fail_message = "provider " + st->current().provider->cfg.name
                       + " refused the gateway's credentials";
    st->fail_retry_after = 0;
  } else {
    // The upstream refused the request itself (400, 404, ...): its own
    // error, as it said it, and no retry.
    st->fail_status = static_cast<std::uint16_t>(r.status);
    st->fail_body = r.body.empty() ? api::openai_error_body("the provider refused the request",
                                                            "invalid_request_error",
                                                            "upstream_refused")
                                   : std::move(r.body);
    fail_with_last(self, st);
    return;
  }
  if (retryable(r) && !st->failed && st->attempt < st->current().provider->cfg.retries) {
    ++st->attempt;
    auto backoff = st->current().provider->cfg.retry_backoff * (1 << (st->attempt - 1));
    backoff = std::max<std::chrono::milliseconds>(
      backoff, std::chrono::seconds{parse_retry_after(r.retry_after)});
    backoff = std::min<std::chrono::milliseconds>(backoff, std::chrono::seconds{30});
    st->backing_off = true;
    self->delayed_send(self, backoff, retry_atom::value, st);
    return;
  }
  try_next(self, st);
}

/// Calls the current candidate. The answer comes back as upstream_done.
void call_upstream(caf::event_based_actor* self, state_ptr st) {
  // Every grant this call acts on was submitted by now (a grant is sent
  // after its write was queued); a retry keeps the first range.
  if (st->svc.writes && st->writes_upto == 0)
    st->writes_upto = st->svc.writes->submitted();
  const auto& ref = st->current();
  const auto path = upstream_path(st->req.kind);
  auto body = upstream_body(*st);
  if (ref.provider->demo) {
    auto a = demo::call(path, body);
    upstream_result r;
    r.status = a.status;
    if (st->req.stream && a.status == 200) {
      stream_reader reader;
      st->stream = std::make_shared<http::relay>();
      core::api_response res;
      res.status = 200;
      res.content_type = "text/event-stream";
      res.raw_headers = "Cache-Control: no-cache\r\n";
      res.stream = st->stream;
      // As an upstream's stream head: counted once the result is in (when
      // the store refused the call's writes, it goes out as a 503).
      respond_stored(*st, st->out, std::move(res));
      for (auto& c : a.chunks) {
        reader.feed(c);
        st->stream->push(std::move(c));
      }
      r = std::move(reader.partial);
      r.status = 200;
      r.streamed = true;
    } else {
      r.body = std::move(a.body);
    }
    self->send(self, upstream_done_atom::value, st, std::move(r));
    return;
  }
  const auto& fixed = ref.provider->fixed[static_cast<std::size_t>(st->req.kind)][st->req.stream];
  if (!fixed) {
    // The provider's URL or fields are unusable (logged at start): the call
    // fails as the client would have failed it.
    upstream_result r;
    r.error = ref.provider->fixed_error;
    self->send(self, upstream_done_atom::value, st, std::move(r));
    return;
  }
  client::upstream_request up;
  up.fixed = fixed;
  up.headers.emplace_back("X-Request-Id", st->req.request_id);
  up.body = std::move(body);
  up.timeout = ref.provider->cfg.request_timeout;
  up.max_response_bytes = st->ctx->max_response_bytes;

  auto me = caf::actor_cast<caf::actor>(self);
  struct shared {
    std::mutex m;
    upstream_result r;
    stream_reader reader;
    std::shared_ptr<http::relay> stream;
  };
  auto sh = std::make_shared<shared>();
  const bool want_stream = st->req.stream;
  // The relay exists before the head so that a cancel from the session
  // reaches the upstream call at any point.
  if (want_stream)
    sh->stream = std::make_shared<http::relay>();
  client::upstream_handlers h;
  auto out = st->out;
  auto rid = st->req.request_id;
  h.on_head = [sh, want_stream, out, st](const client::upstream_head& head) {
    sh->r.status = head.status;
    sh->r.retry_after = head.header("retry-after");
    if (want_stream && head.status == 200) {
      sh->r.streamed = true;
      core::api_response res;
      res.status = 200;
      res.content_type = "text/event-stream";
      res.raw_headers = "Cache-Control: no-cache\r\n";
      res.stream = sh->stream;
      respond_stored(*st, out, std::move(res));
    }
  };
  h.on_data = [sh](std::string_view chunk) {
    if (sh->r.streamed) {
      sh->reader.feed(chunk);
      sh->stream->push(std::string{chunk});
    } else if (sh->r.body.size() < max_error_body) {
      sh->r.body.append(chunk.substr(0, max_error_body - sh->r.body.size()));
    }
  };
  const bool plain = !want_stream && st->chat_session == 0
                     && st->req.kind != call_kind::send_message;
  h.on_done = [sh, me, st, plain](std::string error, client::upstream_head, std::string) {
    upstream_result r = std::move(sh->r);
    if (r.streamed) {
      auto& p = sh->reader.partial;
      r.prompt_tokens = p.prompt_tokens;
      r.completion_tokens = p.completion_tokens;
      r.text = std::move(p.text);
    }
    r.error = std::move(error);
    if (plain && stored(*st) == write_status::pending) {
      // The answer came before the burst that sent the request committed
      // the call's writes (under load, a long batch on the lane's own
      // thread): the same fast answer, from that commit.
      if (st->ctx->answers_held != nullptr)
        st->ctx->answers_held->inc();
      st->svc.writes->when_committed(st->writes_upto, [me, st, r = std::move(r)]() mutable {
        if (!answer_on_io_thread(*st, r))
          caf::anon_send(me, upstream_done_atom::value, st, std::move(r));
      });
      return;
    }
    if (!plain || !answer_on_io_thread(*st, r))
      caf::anon_send(me, upstream_done_atom::value, st, std::move(r));
  };
  if (want_stream) {
    st->stream = sh->stream;
    // A slow client holds the upstream back (stream_relay.hpp).
    h.hold = [sh](std::function<void()> resume) {
      return sh->r.streamed && sh->stream->hold(std::move(resume));
    };
  }
  // Non-streamed calls are buffered through on_data too, so that the body
  // cap and the error-body cap are one path; a 2xx body is kept whole.
  if (!want_stream) {
    h.on_data = [sh, cap = st->ctx->max_response_bytes](std::string_view chunk) {
      if (sh->r.status >= 200 && sh->r.status < 300) {
        if (sh->r.body.size() + chunk.size() <= cap)
          sh->r.body.append(chunk);
      } else if (sh->r.body.size() < max_error_body) {
        sh->r.body.append(chunk.substr(0, max_error_body - sh->r.body.size()));
      }
    };
  }
  st->upstream_running = true;
  st->handle = st->ctx->http->start(std::move(up), std::move(h));
  if (st->stream) {
    std::weak_ptr<client::call_handle> weak = st->handle;
    st->stream->on_cancel([weak] {
      if (auto hd = weak.lock())
        hd->cancel();
    });
  }
}

/// What the provider said about a slot for the current candidate.
void on_slot(caf::event_based_actor* self, state_ptr st, const actors::provider_slot& s) {
        if (!s.granted && s.refusal == "cancelled") {
          // Withdrawn: the client left. A failure at an earlier candidate
          // is not what ended the call.
          st->fail_status = 0;
          st->fail_body.clear();
          fail_with_last(self, st);
          return;
        }
        if (!s.granted) {
          st->fail_body.clear();
          st->fail_status = s.refusal == "down" ? 503 : 429;
          st->fail_code = s.refusal;
          st->fail_type = "rate_limit_error";
          st->fail_message = s.refusal == "queue_full"
                               ? "provider " + st->current().provider->cfg.name
                                   + ": queue is full"
                             : s.refusal == "queue_timeout"
                               ? "provider " + st->current().provider->cfg.name
                                   + ": waited too long in the queue"
                               : "provider " + st->current().provider->cfg.name + " is down";
          st->fail_retry_after = s.retry_after;
          try_next(self, st);
          return;
        }
        st->slot = true;
        if (st->cancelled) {
          release_slot(st, true, 0);
          fail_with_last(self, st);
          return;
        }
        call_upstream(self, st);
}

void on_slot_error(caf::event_based_actor* self, state_ptr st, const caf::error& e) {
  st->fail_body.clear();
  st->fail_status = 503;
  st->fail_code = "down";
  st->fail_type = "server_error";
  st->fail_message = "provider " + st->current().provider->cfg.name
                     + " did not answer: " + to_string(e);
  st->fail_retry_after = 1;
  try_next(self, st);
}

/// The call's ticket at its provider's queue: unique among the calls alive.
std::uint64_t ticket(const call_state& st) {
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&st));
}

/// Asks the current candidate's provider for a slot; `ok` or `err` follow.
template <class Ok, class Err>
void request_slot(caf::event_based_actor* self, const state_ptr& st, Ok ok, Err err) {
  const auto& p = *st->current().provider;
  st->awaiting_slot = true;
  self
    ->request(p.actor, no_timeout, actors::acquire_atom::value, st->reserved, ticket(*st))
    .then(guard_then<actors::provider_slot>(self, st,
                                            [st, ok = std::move(ok)](actors::provider_slot& s) mutable {
                                              st->awaiting_slot = false;
                                              if (s.granted)
                                                st->slot = true;  // held from here on
                                              if (st->failed) {
                                                release_slot(st, true, 0);
                                                return;
                                              }
                                              fault_point("slot");
                                              ok(s);
                                            }),
          guard_then<caf::error>(self, st, [st, err = std::move(err)](caf::error& e) mutable {
            st->awaiting_slot = false;
            if (!st->failed)
              err(e);
          }));
}

void acquire(caf::event_based_actor* self, state_ptr st) {
  if (st->cancelled) {
    fail_with_last(self, st);
    return;
  }
  request_slot(
    self, st, [self, st](actors::provider_slot& s) { on_slot(self, st, s); },
    [self, st](caf::error& e) { on_slot_error(self, st, e); });
}

void try_next(caf::event_based_actor* self, state_ptr st) {
  if (st->cancelled || st->failed || st->candidate + 1 >= st->candidates.size()) {
    fail_with_last(self, st);
    return;
  }
  ++st->candidate;
  st->attempt = 0;
  acquire(self, st);
}

/// After the call failed, whatever it was just granted (tokens, a hold)
/// goes straight back; true then.
bool given_back(caf::event_based_actor* self, const state_ptr& st) {
  if (!st->failed)
    return false;
  settle(self, st, 0, 0, [](actors::key_usage) {});
  return true;
}

/// Asks for the call's token reservation: from the key's own actor when
/// the directory lists it as live (one hop less), else, or when that actor
/// turns out to be stopping (`moved`, or gone), through the directory.
/// Either way `ok` or `err` runs once, guarded.
template <class Ok, class Err>
void ask_reservation(caf::event_based_actor* self, const state_ptr& st, Ok ok, Err err) {
  const auto via_directory = [self, st](Ok& on_ok, Err& on_err) {
    self
      ->request(st->svc.directory, no_timeout, actors::reserve_atom::value, st->req.who.key_hash,
                st->reserved)
      .then(guard_then<actors::token_reservation>(self, st, std::move(on_ok)),
            guard_then<caf::error>(self, st, std::move(on_err)));
  };
  const auto k = st->svc.keys ? st->svc.keys->find(st->req.who.key_hash) : actors::key_actor{};
  if (!k) {
    via_directory(ok, err);
    return;
  }
  auto next = std::make_shared<std::pair<Ok, Err>>(std::move(ok), std::move(err));
  self->request(k, no_timeout, actors::reserve_atom::value, st->reserved, true)
    .then(guard_then<actors::token_reservation>(
            self, st,
            [st, k, next, via_directory](actors::token_reservation& t) {
              if (t.moved) {
                via_directory(next->first, next->second);
                return;
              }
              if (t.granted)
                st->reserved_at = k;  // it does not go idle before the settlement
              next->first(t);
            }),
          guard_then<caf::error>(self, st, [next, via_directory](caf::error& e) {
            if (actors::key_actor_gone(e))
              via_directory(next->first, next->second);  // it stopped meanwhile
            else
              next->second(e);
          }));
}

/// Reserves the tokens and holds the credits at the same time (neither
/// depends on the other), then goes on to
/// the provider, or undoes whichever was granted and refuses.
void reserve_and_hold(caf::event_based_actor* self, state_ptr st) {
  if (st->cancelled) {
    // The client left during the chat-session lookup: nothing is held yet.
    fail_with_last(self, st);
    return;
  }
  // From the commit watermark, not the last submitted write: a grant may
  // ride on a key actor's or the wallet's write queued earlier in this
  // burst (one per actor and burst), which is still pending now.
  if (st->svc.writes)
    st->writes_from = st->svc.writes->committed();
  std::int64_t worst = 0;
  for (const auto& c : st->candidates)
    worst = std::max(worst, core::llm::price_micro(st->req.prompt_tokens,
                                                   c.model->prompt_price_micro_per_mtok)
                              + core::llm::price_micro(st->max_tokens,
                                                       c.model->completion_price_micro_per_mtok));
  struct gate {
    int left = 1;  ///< the reservation and the hold
    bool tokens_refused = false;
    actors::token_reservation tokens;
    bool credits_refused = false;
    actors::credit_hold credits;
    caf::error error;
    // The first candidate's slot is asked for at the same time. The actor
    // stays until its answer came, so a slot is never granted to nobody.
    bool slot_done = false;
    actors::provider_slot slot;
    caf::error slot_error;
    bool refused = false;   ///< the call is over: give the slot back
    bool answered = false;  ///< the refusal is answered
  };
  auto g = std::make_shared<gate>();
  const auto maybe_end = [self, st, g] {
    if (g->refused && g->slot_done && g->answered)
      end(self, st);
  };
  const auto go = [self, st, g] {
    if (g->slot_error)
      on_slot_error(self, st, g->slot_error);
    else
      on_slot(self, st, g->slot);
  };
  const auto decide = [self, st, g, worst, maybe_end, go] {
    if (--g->left != 0)
      return;
    if (g->error || g->tokens_refused || g->credits_refused) {
      g->refused = true;
      if (g->slot_done && g->slot.granted) {
        st->slot = true;
        release_slot(st, true, 0);
      }
      // settle() gives back whatever was granted: tokens and the hold.
      settle(self, st, 0, 0, [self, st, g, worst, maybe_end](actors::key_usage) {
        if (g->error) {
          const auto [code, detail] = actors::from_error(g->error);
          answer_error(*st, static_cast<std::uint16_t>(status_of(code)), "server_error",
                       std::string{core::to_string(code)}, detail);
        } else if (g->tokens_refused) {
          const auto& t = g->tokens;
          core::api_response res;
          res.status = 429;
          const auto retry = std::max<std::int64_t>(1, t.retry_after);
          res.body = st->req.openai_errors
                       ? api::openai_error_body(
                         std::string{t.budget == "tokens_month" ? "Monthly" : "Daily"}
                           + " token limit exceeded: this call needs up to "
                           + std::to_string(t.tokens) + " tokens, "
                           + std::to_string(t.budget == "tokens_month" ? t.remaining_month
                                                                       : t.remaining_day)
                           + " remain",
                         "tokens", "token_limit_exceeded")
                       : api::token_limited_body(t, st->now());
          res.raw_headers = "Retry-After: " + std::to_string(retry) + "\r\n";
          answer(*st, std::move(res));
        } else {
          answer_error(*st, 402, "insufficient_quota", "insufficient_credits",
                       "insufficient credits: this call may cost up to "
                         + std::to_string(api::credits(worst)) + " credits, the balance is "
                         + std::to_string(api::credits(g->credits.balance_micro)));
        }
        g->answered = true;
        maybe_end();
      });
      return;
    }
    if (g->slot_done)
      go();  // else the slot's answer goes on
  };
  request_slot(
    self, st,
    [st, g, maybe_end, go](actors::provider_slot& s) {
      g->slot_done = true;
      g->slot = s;
      if (g->refused) {
        if (s.granted) {
          st->slot = true;
          release_slot(st, true, 0);
        }
        maybe_end();
      } else if (g->left == 0) {
        go();
      }
    },
    [st, g, maybe_end, go](caf::error& e) {
      g->slot_done = true;
      g->slot_error = std::move(e);
      if (g->refused)
        maybe_end();
      else if (g->left == 0)
        go();
    });
  if (!st->req.who.anonymous) {
    ++g->left;
    ask_reservation(
      self, st,
      [self, st, g, decide](actors::token_reservation& t) {
        if (t.granted)
          st->tokens_reserved = true;
        else
          g->tokens_refused = true;
        if (given_back(self, st))
          return;
        fault_point("tokens");
        g->tokens = std::move(t);
        decide();
      },
      [st, g, decide](caf::error& e) {
        if (st->failed)
          return;
        g->error = std::move(e);
        decide();
      });
  }
  if (worst > 0 && !st->req.who.anonymous) {
    ++g->left;
    self
      ->request(st->svc.wallet, no_timeout, actors::hold_atom::value,
                st->req.who.user_id, worst)
      .then(
        guard_then<actors::credit_hold>(
          self, st,
          [self, st, g, decide](actors::credit_hold& h) {
            if (h.granted)
              st->hold = h;
            else
              g->credits_refused = true;
            if (given_back(self, st))
              return;
            fault_point("hold");
            g->credits = h;
            decide();
          }),
        guard_then<caf::error>(self, st, [st, g, decide](caf::error& e) {
          if (st->failed)
            return;
          if (!g->error)
            g->error = std::move(e);
          decide();
        }));
  }
  decide();
}

} // namespace

void start_call(std::shared_ptr<const context> ctx, const actors::services& svc,
                call_request req, core::responder_ptr out) {
  auto st = std::make_shared<call_state>();
  st->ctx = std::move(ctx);
  st->svc = svc;
  st->req = std::move(req);
  st->out = std::move(out);
  if (st->req.kind == call_kind::send_message) {
    st->req.body = chat_body_for_message(st->req.model, st->req.user_text);
  }
  st->candidates = st->ctx->candidates(st->req.model);
  if (st->candidates.empty()) {
    answer_error(*st, 404, "invalid_request_error", "model_not_found",
                 "The model '" + st->req.model + "' does not exist");
    return;
  }
  const auto& m = *st->candidates.front().model;
  st->max_tokens = st->req.max_tokens > 0 ? st->req.max_tokens : m.default_max_tokens;
  if (st->req.prompt_tokens >= m.context_length) {
    answer_error(*st, 400, "invalid_request_error", "context_length_exceeded",
                 "the prompt (about " + std::to_string(st->req.prompt_tokens)
                   + " tokens) does not fit the model's context of "
                   + std::to_string(m.context_length) + " tokens");
    return;
  }
  st->max_tokens = std::min(st->max_tokens, m.context_length - st->req.prompt_tokens);
  st->reserved = st->req.prompt_tokens + st->max_tokens;
  if (st->ctx->runners.empty()) {
    answer_error(*st, 503, "server_error", "unavailable", "the LLM gateway is not running");
    return;
  }
  const auto n = st->ctx->next_runner.fetch_add(1, std::memory_order_relaxed);
  caf::anon_send(st->ctx->runners[n % st->ctx->runners.size()], start_atom::value, st);
}

namespace {

/// The first step of a call, in its runner.
void begin(caf::event_based_actor* self, state_ptr st) {
  auto me = caf::actor_cast<caf::actor>(self);
  std::weak_ptr<call_state> weak = st;
  const auto cancel = [me, weak] {
    if (auto s = weak.lock())
      caf::anon_send(me, cancel_atom::value, std::move(s));
  };
  st->out->on_cancel(cancel);
  // The longest a healthy call can take: every candidate's queue wait and
  // every attempt at it, plus a minute for the gateway's own steps.
  auto limit = std::chrono::milliseconds{std::chrono::minutes{1}};
  for (const auto& c : st->candidates) {
    const auto& pc = c.provider->cfg;
    limit += pc.queue_timeout + (pc.request_timeout + std::chrono::seconds{30}) * (pc.retries + 1);
  }
  if (st->ctx->watch)
    st->watch_id = st->ctx->watch->add(
      call_watch::clock::now() + limit,
      [me, weak] {
        if (auto s = weak.lock())
          caf::anon_send(me, watchdog_atom::value, std::move(s));
      },
      cancel);
  if (st->req.session_id.empty()) {
    reserve_and_hold(self, st);
    return;
  }
  std::uint64_t id = 0;
  try {
    id = std::stoull(st->req.session_id);
  } catch (...) {
    id = 0;
  }
  self
    ->request(st->svc.chat, st->svc.ask_timeout, actors::get_atom::value, st->req.who.user_id,
              id)
    .then(guard_then<actors::chat_session>(self, st,
                                           [self, st, id](actors::chat_session&) {
                                             st->chat_session = id;
                                             reserve_and_hold(self, st);
                                           }),
          guard_then<caf::error>(self, st, [self, st](caf::error&) {
            answer_error(*st, 404, "invalid_request_error", "session_not_found",
                         "chat session '" + st->req.session_id + "' not found");
            end(self, st);
          }));
}

void fail_call(caf::event_based_actor* self, const state_ptr& st, const char* what) {
  spdlog::error("request {}: the call failed: {}", st->req.request_id, what);
  try {
    // What it holds goes back; a stream already under way ends cut. Grants
    // still on their way go back as they arrive (`failed`).
    st->failed = true;
    st->backing_off = false;
    if (st->upstream_running) {
      // The I/O thread may be settling it right now: the upstream call is
      // cancelled, and its upstream_done settles and ends the call as any
      // cancelled call (what the upstream may have read is charged).
      if (st->handle)
        st->handle->cancel();
      answer_error(*st, 500, "server_error", "internal_error", "the call failed");
      return;
    }
    if (st->awaiting_slot)  // maybe queued: out of the queue now
      caf::anon_send(st->current().provider->actor, actors::withdraw_atom::value, ticket(*st));
    settle(self, st, st->used_prompt, st->used_completion,
           [self, st](actors::key_usage) { end(self, st); });
    release_slot(st, true, 0);
    if (st->stream)
      st->stream->abort();
    answer_error(*st, 500, "server_error", "internal_error", "the call failed");
  } catch (const std::exception&) {
    if (st->watch_id != 0 && st->ctx->watch)
      st->ctx->watch->remove(st->watch_id);
    st->watch_id = 0;
  }
}

} // namespace

namespace testing {

void fail_once_at(std::string step) {
  std::lock_guard<std::mutex> lock{fault_mutex};
  fault_step = std::move(step);
  fault_armed = !fault_step.empty();
}

} // namespace testing

caf::actor spawn_call_runner(caf::actor_system& sys) {
  // A call is a chain of continuations and messages in one runner; a
  // runner carries many calls at once. Spawning an actor per call cost a
  // spawn and, at its end, a wake-up of CAF's clock thread (which every
  // terminating actor tells to drop its timers) on every request.
  return sys.spawn([](caf::event_based_actor* self) -> caf::behavior {
    // An exception would end the runner and every call it carries: it ends
    // only the call at hand (see `guarded`), in message handlers as in the
    // calls' `.then` handlers.
    return {
      [self](start_atom, state_ptr& st) {
        guarded(self, st, [&] { begin(self, st); });
      },
      [self](upstream_done_atom, state_ptr& st, upstream_result& r) {
        guarded(self, st, [&] { on_result(self, st, r); });
      },
      [self](retry_atom, state_ptr& st) {
        if (!st->backing_off)
          return;  // a cancel already went on with the call
        st->backing_off = false;
        guarded(self, st, [&] { acquire(self, st); });
      },
      [](watchdog_atom, state_ptr& st) {
        // Something did not answer in any reasonable time: the client is
        // told; the state stays for late answers, so grants still settle.
        if (!st->answered) {
          spdlog::error("request {}: the call did not finish in time", st->req.request_id);
          answer_error(*st, 504, "server_error", "gateway_timeout",
                       "the call did not finish in time");
        }
      },
      [self](cancel_atom, state_ptr& st) {
        st->cancelled = true;
        if (st->handle)
          st->handle->cancel();
        if (st->stream)
          st->stream->cancel();
        if (st->backing_off) {
          // Not after the backoff (up to 30 s): now, so that what the call
          // holds goes back at once (the retry finds it cancelled).
          st->backing_off = false;
          guarded(self, st, [&] { acquire(self, st); });
        }
        if (st->awaiting_slot)  // maybe queued: out of the queue now
          caf::anon_send(st->current().provider->actor, actors::withdraw_atom::value,
                         ticket(*st));
      },
    };
  });
}

} // namespace tollgate::http::llm
