#include "http/api/usage.hpp"

#include "core/api_key.hpp"
#include "core/limit_policies.hpp"
#include "core/time_format.hpp"
#include "http/api/common.hpp"
#include "http/api/json.hpp"
#include "http/api/parse.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <cmath>

namespace tollgate::http::api {

namespace {

const actors::policy_usage* find_policy(const actors::key_usage& u, std::string_view name) {
  for (const auto& p : u.policies)
    if (p.name == name)
      return &p;
  return nullptr;
}

double percent(std::int64_t used, std::int64_t limit) {
  if (limit <= 0)
    return 0;
  return std::round(static_cast<double>(used) * 10000.0 / static_cast<double>(limit)) / 100.0;
}

/// The token-tracking page's usage object, plus the request windows.
void write_usage(json_writer& w, const actors::key_usage& u) {
  const auto* day = find_policy(u, "tokens_day");
  const auto* month = find_policy(u, "tokens_month");
  const std::int64_t day_used = day ? day->used : 0;
  const std::int64_t day_limit = day ? day->limit : 0;
  const std::int64_t month_used = month ? month->used : 0;
  const std::int64_t month_limit = month ? month->limit : 0;
  w.key("usage");
  w->StartObject();
  w.field("daily_tokens_used", day_used);
  w.field("daily_tokens_limit", day_limit);
  w.field("daily_tokens_remaining", std::max<std::int64_t>(0, day_limit - day_used));
  w.field("monthly_tokens_used", month_used);
  w.field("monthly_tokens_limit", month_limit);
  w.field("monthly_tokens_remaining", std::max<std::int64_t>(0, month_limit - month_used));
  w.field("total_requests", u.total_requests);
  w.field("daily_utilization_percent", percent(day_used, day_limit));
  w.field("monthly_utilization_percent", percent(month_used, month_limit));
  w->EndObject();
}

void write_policies(json_writer& w, const actors::key_usage& u) {
  w.key("policies");
  w->StartArray();
  for (const auto& p : u.policies) {
    w->StartObject();
    w.field("name", p.name);
    w.field("limit", p.limit);
    w.field("used", p.used);
    w.field("remaining", p.remaining);
    w.field("reset", p.reset);
    w.field("reset_time", core::iso8601(p.reset));
    w.field("window", p.window);
    w->EndObject();
  }
  w->EndArray();
}

std::string usage_body(const actors::key_usage& u) {
  json_writer w;
  w->StartObject();
  w.field("api_key_hash", core::api_key::short_hash(u.key_hash));
  write_usage(w, u);
  w->EndObject();
  return w.take();
}

/// Resolves an api_key_hash (or numeric id) path parameter to the key
/// record (admin), then runs `next` with it.
template <class Next>
void with_key_record(actors::router_pointer self, const actors::services& svc,
                     core::api_request& req, core::responder_ptr& out, const core::principal& who,
                     const char* param, Next next) {
  actors::key_access a;
  const auto text = req.param(param);
  if (is_short_hash(text)) {
    a.short_hash = std::string{text};
  } else {
    auto id = parse_id(text, param);
    if (!id) {
      respond_error(out, core::errc::bad_request,
                    std::string{param} + " must be a 16-character api_key_hash or a key id");
      return;
    }
    a.key_id = id.value;
  }
  a.requester = who.user_id;
  a.admin = true;
  a.ctx = audit_ctx(req, who);
  self->request(svc.accounts, svc.ask_timeout, actors::get_key_atom::value, std::move(a))
    .then([next, out](core::key_record& k) mutable { next(k, out); },
          [out](caf::error& e) mutable { respond_error(out, e); });
}

/// Usage of several keys, in order; `done` gets them when all answered.
void usages_of(actors::router_pointer self, const actors::services& svc,
               std::vector<core::key_record> keys, core::responder_ptr out,
               std::function<void(std::vector<actors::key_usage>&, core::responder_ptr&)> done) {
  struct gather {
    std::vector<actors::key_usage> results;
    std::size_t left = 0;
    bool failed = false;
  };
  auto g = std::make_shared<gather>();
  g->results.resize(keys.size());
  g->left = keys.size();
  if (keys.empty()) {
    done(g->results, out);
    return;
  }
  for (std::size_t i = 0; i < keys.size(); ++i)
    self->request(svc.directory, svc.ask_timeout, actors::usage_atom::value, keys[i].hash)
      .then(
        [g, i, out, done](actors::key_usage& u) mutable {
          g->results[i] = std::move(u);
          if (--g->left == 0 && !g->failed)
            done(g->results, out);
        },
        [g, out](caf::error& e) mutable {
          if (!g->failed) {
            g->failed = true;
            respond_error(out, e);
          }
        });
}

} // namespace

void my_usage(actors::router_pointer self, const actors::services& svc, core::api_request&,
              core::responder_ptr& out, const core::principal& who) {
  self->request(svc.directory, svc.ask_timeout, actors::usage_atom::value, who.key_hash)
    .then([out](actors::key_usage& u) mutable { respond_json(out, usage_body(u)); },
          [out](caf::error& e) mutable { respond_error(out, e); });
}

void rate_limit_status(actors::router_pointer self, const actors::services& svc,
                       core::api_request&, core::responder_ptr& out, const core::principal& who) {
  self->request(svc.directory, svc.ask_timeout, actors::usage_atom::value, who.key_hash)
    .then(
      [out](actors::key_usage& u) mutable {
        json_writer w;
        w->StartObject();
        w.field("api_key_hash", core::api_key::short_hash(u.key_hash));
        w.field("total_requests", u.total_requests);
        write_policies(w, u);
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void admin_set_token_limits(actors::router_pointer self, const actors::services& svc,
                            core::api_request& req, core::responder_ptr& out,
                            const core::principal& who) {
  auto body = parse_token_limits(req.body);
  if (!body) {
    respond_error(out, core::errc::bad_request, body.error);
    return;
  }
  const auto text = req.param("api_key_hash");
  if (!is_short_hash(text)) {
    respond_error(out, core::errc::bad_request,
                  "api_key_hash must be 16 lower-case hex characters");
    return;
  }
  actors::key_limits l;
  l.access.short_hash = std::string{text};
  l.access.requester = who.user_id;
  l.access.admin = true;
  l.access.ctx = audit_ctx(req, who);
  l.tokens_per_day = body.value.daily_limit;
  l.tokens_per_month = body.value.monthly_limit;
  const auto limits = svc.limits;
  self->request(svc.accounts, svc.ask_timeout, actors::set_limits_atom::value, std::move(l))
    .then(
      [out, limits](core::key_record& k) mutable {
        const auto effective = core::token_policies(*limits, k);
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.field("message", "Token limits updated successfully");
        w.field("api_key_hash", core::api_key::short_hash(k.hash));
        w.key("limits");
        w->StartObject();
        for (const auto& p : effective)
          w.field(p.name == "tokens_day" ? "daily_limit" : "monthly_limit", p.limit);
        w->EndObject();
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void admin_key_usage(actors::router_pointer self, const actors::services& svc,
                     core::api_request& req, core::responder_ptr& out,
                     const core::principal& who) {
  with_key_record(self, svc, req, out, who, "api_key_hash",
                  [self, &svc](core::key_record& k, core::responder_ptr& o) {
                    self
                      ->request(svc.directory, svc.ask_timeout, actors::usage_atom::value, k.hash)
                      .then([o](actors::key_usage& u) mutable { respond_json(o, usage_body(u)); },
                            [o](caf::error& e) mutable { respond_error(o, e); });
                  });
}

void admin_reset_usage(actors::router_pointer self, const actors::services& svc,
                       core::api_request& req, core::responder_ptr& out,
                       const core::principal& who) {
  with_key_record(self, svc, req, out, who, "api_key_hash",
                  [self, &svc](core::key_record& k, core::responder_ptr& o) {
                    self
                      ->request(svc.directory, svc.ask_timeout, actors::reset_atom::value, k.hash)
                      .then(
                        [o](actors::key_usage& u) mutable {
                          json_writer w;
                          w->StartObject();
                          w.field("success", true);
                          w.field("message", "Usage reset successfully");
                          w.field("api_key_hash", core::api_key::short_hash(u.key_hash));
                          write_usage(w, u);
                          w->EndObject();
                          respond_json(o, w.take());
                        },
                        [o](caf::error& e) mutable { respond_error(o, e); });
                  });
}

void admin_all_usage(actors::router_pointer self, const actors::services& svc,
                     core::api_request& req, core::responder_ptr& out, const core::principal&) {
  listing_query q;
  if (!parse_listing(req, out, q))
    return;
  const page_params range{q.limit, q.offset};
  self
    ->request(svc.accounts, svc.ask_timeout, actors::list_keys_atom::value, std::uint64_t{0},
              actors::page{range.offset, range.limit})
    .then(
      [self, &svc, out, range](actors::key_list& list) mutable {
        const auto total = list.total;
        std::vector<core::key_record> keys;
        for (auto& k : list.keys)
          if (!k.revoked)
            keys.push_back(std::move(k));
        usages_of(self, svc, std::move(keys), out,
                  [total, range](std::vector<actors::key_usage>& all, core::responder_ptr& o) {
                    json_writer w;
                    w->StartObject();
                    w.field("success", true);
                    w.key("data");
                    w->StartArray();
                    for (const auto& u : all) {
                      w->StartObject();
                      w.field("api_key_hash", core::api_key::short_hash(u.key_hash));
                      w.field("key_id", u.key_id);
                      w.field("user_id", u.user_id);
                      write_usage(w, u);
                      w->EndObject();
                    }
                    w->EndArray();
                    w.field("count", static_cast<std::uint64_t>(all.size()));
                    w.field("total", total);
                    w.field("limit", range.limit);
                    w.field("offset", range.offset);
                    w->EndObject();
                    respond_json(o, w.take());
                  });
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

namespace {

void write_rate_limits(json_writer& w, const core::limits_config& cfg,
                       const core::user_record& u) {
  std::int64_t minute = 0;
  std::int64_t hour = 0;
  std::int64_t day = 0;
  for (const auto& p : core::key_policies(cfg, u)) {
    if (p.name == "minute")
      minute = p.limit;
    else if (p.name == "hour")
      hour = p.limit;
    else if (p.name == "day")
      day = p.limit;
  }
  w.key("rate_limits");
  w->StartObject();
  w.field("requests_per_minute", minute);
  w.field("requests_per_hour", hour);
  w.field("requests_per_day", day);
  // The configured route limits, with the user's own per-endpoint
  // overrides on top (those are per minute).
  w.key("custom_limits");
  w->StartObject();
  for (const auto& r : cfg.routes) {
    const auto name = r.method + " " + r.path;
    bool overridden = false;
    for (const auto& [custom, limit] : u.custom_limits)
      overridden = overridden || core::endpoint_of(custom) == name;
    if (!overridden)
      w.field(name, r.limit);
  }
  for (const auto& [custom, limit] : u.custom_limits)
    w.field(custom, limit);
  w->EndObject();
  w->EndObject();
  w.key("overrides");
  w->StartObject();
  w.field("requests_per_minute", u.requests_per_minute);
  w.field("requests_per_hour", u.requests_per_hour);
  w.field("requests_per_day", u.requests_per_day);
  w->EndObject();
}

} // namespace

void admin_get_rate_limits(actors::router_pointer self, const actors::services& svc,
                           core::api_request& req, core::responder_ptr& out,
                           const core::principal&) {
  auto text = req.param("user_id");
  if (text.rfind("user_", 0) == 0)
    text.remove_prefix(5);
  auto id = parse_id(text, "user_id");
  if (!id) {
    respond_error(out, core::errc::bad_request, id.error);
    return;
  }
  const auto user_id = id.value;
  self->request(svc.accounts, svc.ask_timeout, actors::get_user_atom::value, user_id)
    .then(
      [self, &svc, out, user_id](core::user_record& user) mutable {
        self
          ->request(svc.accounts, svc.ask_timeout, actors::list_keys_atom::value, user_id,
                    actors::page{0, 1000})
          .then(
            [self, &svc, out, user](actors::key_list& list) mutable {
              std::vector<core::key_record> keys;
              for (auto& k : list.keys)
                if (!k.revoked)
                  keys.push_back(std::move(k));
              const auto limits = svc.limits;
              usages_of(self, svc, std::move(keys), out,
                        [user, limits](std::vector<actors::key_usage>& all,
                                       core::responder_ptr& o) {
                          // Limits are per key; a user's usage is the sum
                          // over their keys.
                          std::int64_t minute = 0;
                          std::int64_t hour = 0;
                          std::int64_t day = 0;
                          for (const auto& u : all) {
                            if (const auto* p = find_policy(u, "minute"))
                              minute += p->used;
                            if (const auto* p = find_policy(u, "hour"))
                              hour += p->used;
                            if (const auto* p = find_policy(u, "day"))
                              day += p->used;
                          }
                          json_writer w;
                          w->StartObject();
                          w.field("success", true);
                          w.field("user_id", user.id);
                          write_rate_limits(w, *limits, user);
                          w.key("current_usage");
                          w->StartObject();
                          w.field("requests_this_minute", minute);
                          w.field("requests_this_hour", hour);
                          w.field("requests_this_day", day);
                          w->EndObject();
                          w->EndObject();
                          respond_json(o, w.take());
                        });
            },
            [out](caf::error& e) mutable { respond_error(out, e); });
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void admin_set_rate_limits(actors::router_pointer self, const actors::services& svc,
                           core::api_request& req, core::responder_ptr& out,
                           const core::principal& who) {
  auto body = parse_user_limits(req.body);
  if (!body) {
    respond_error(out, core::errc::bad_request, body.error);
    return;
  }
  actors::user_limits l;
  l.user_id = body.value.user_id;
  l.per_minute = body.value.per_minute;
  l.per_hour = body.value.per_hour;
  l.per_day = body.value.per_day;
  l.custom = body.value.custom;
  l.reason = body.value.reason;
  l.ctx = audit_ctx(req, who);
  const auto limits = svc.limits;
  self->request(svc.accounts, svc.ask_timeout, actors::set_limits_atom::value, std::move(l))
    .then(
      [out, limits](core::user_record& u) mutable {
        json_writer w;
        w->StartObject();
        w.field("success", true);
        w.field("message", "Rate limits updated successfully");
        w.field("user_id", u.id);
        write_rate_limits(w, *limits, u);
        w->EndObject();
        respond_json(out, w.take());
      },
      [out](caf::error& e) mutable { respond_error(out, e); });
}

void admin_key_rate_limit(actors::router_pointer self, const actors::services& svc,
                          core::api_request& req, core::responder_ptr& out,
                          const core::principal& who) {
  with_key_record(
    self, svc, req, out, who, "id", [self, &svc](core::key_record& k, core::responder_ptr& o) {
      self->request(svc.directory, svc.ask_timeout, actors::usage_atom::value, k.hash)
        .then(
          [o, id = k.id](actors::key_usage& u) mutable {
            // The key's per-minute window, as the scans API reports it.
            const auto* p = find_policy(u, "minute");
            json_writer w;
            w->StartObject();
            w.field("api_key_id", id);
            w.key("current_usage");
            w->StartObject();
            w.field("requests_in_window", p ? p->used : std::int64_t{0});
            w.field("limit", p ? p->limit : std::int64_t{0});
            w.field("remaining", p ? p->remaining : std::int64_t{0});
            w.field("reset_time", core::iso8601(p ? p->reset : std::int64_t{0}));
            w->EndObject();
            write_policies(w, u);
            w->EndObject();
            respond_json(o, w.take());
          },
          [o](caf::error& e) mutable { respond_error(o, e); });
    });
}

} // namespace tollgate::http::api
