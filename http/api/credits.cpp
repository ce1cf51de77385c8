#include "http/api/credits.hpp"

#include "core/api_key.hpp"
#include "core/time_format.hpp"
#include "http/api/common.hpp"
#include "http/api/json.hpp"
#include "http/api/parse.hpp"

#include <caf/typed_event_based_actor.hpp>

namespace tollgate::http::api {

void balance(actors::router_pointer self, const actors::services& svc, core::api_request&,
             core::responder_ptr& out, const core::principal& who) {
  if (who.anonymous) {
    respond_error(out, core::errc::unauthorized, "the anonymous identity has no balance");
    return;
  }
  self->request(svc.accounts, svc.ask_timeout, actors::get_user_atom::value, who.user_id)
    .then(
      [self, &svc, out, who](core::user_record& u) mutable {
        self->request(svc.wallet, svc.ask_timeout, actors::balance_atom::value, u.id)
          .then(
            [out, who, u](std::int64_t micro) mutable {
              json_writer w;
              w->StartObject();
              w.field("api_key",
                      core::api_key::mask(core::api_key::prefix_of(who.env), who.last4));
              w.field("credits", credits(micro));
              w.field("status", "active");
              w.field("user_id", u.id);
              w.field("plan", u.plan);
              w->EndObject();
              respond_json(out, w.take());
            },
            [out](caf::error& e) mutable { respond_error(out, e); });
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void add_credits(actors::router_pointer self, const actors::services& svc, core::api_request& req,
                 core::responder_ptr& out, const core::principal& who) {
  auto body = parse_add_credits(req.body);
  if (!body) {
    respond_error(out, core::errc::bad_request, body.error);
    return;
  }
  actors::ledger_entry entry;
  entry.user_id = body.value.user_id;
  entry.amount_micro = body.value.credits_micro;
  entry.note = body.value.reason.empty() ? "credit by user " + std::to_string(who.user_id)
                                         : body.value.reason;
  entry.request_id = req.request_id;
  // Longer than the wallet's worst case, so an admin never sees a timeout for a
  // credit that then lands (and retries it).
  self->request(svc.wallet, std::chrono::seconds{90}, actors::credit_atom::value, std::move(entry))
    .then(
      [out](actors::ledger_entry& done) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.field("message", "Credits added successfully");
        w.field("user_id", done.user_id);
        w.field("new_balance", credits(done.balance_micro));
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void my_ledger(actors::router_pointer self, const actors::services& svc, core::api_request& req,
               core::responder_ptr& out, const core::principal& who) {
  listing_query q;
  if (!parse_listing(req, out, q))
    return;
  self
    ->request(svc.wallet, svc.ask_timeout, actors::ledger_atom::value, who.user_id,
              actors::page{q.offset, q.limit})
    .then(
      [out](std::vector<actors::ledger_entry>& entries) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.key("data");
        w->StartArray();
        for (const auto& e : entries) {
          w->StartObject();
          w.field("id", e.id);
          w.field("kind", e.kind);
          w.field("key_id", e.key_id);
          w.field("model", e.model);
          w.field("provider", e.provider);
          w.field("prompt_tokens", e.prompt_tokens);
          w.field("completion_tokens", e.completion_tokens);
          w.field("amount", credits(e.amount_micro));
          w.field("amount_micro", e.amount_micro);
          w.field("balance", credits(e.balance_micro));
          w.field("balance_micro", e.balance_micro);
          w.field("timestamp", core::iso8601(e.timestamp));
          w.field("request_id", e.request_id);
          w.field("note", e.note);
          w->EndObject();
        }
        w->EndArray();
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

} // namespace tollgate::http::api
