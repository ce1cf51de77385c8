#pragma once

#include "http/api/auth.hpp"

namespace tollgate::http::api {

// Usage and limits routes: the token-tracking page (/api/usage,
// /api/rate-limit/status, /api/admin/...), the gateway reference
// (/admin/rate-limits) and the scans API (/api/v1/admin/api-keys/{id}/rate-limit).

void my_usage(actors::router_pointer, const actors::services&, core::api_request&,
              core::responder_ptr&, const core::principal&);
void rate_limit_status(actors::router_pointer, const actors::services&, core::api_request&,
                       core::responder_ptr&, const core::principal&);
void admin_set_token_limits(actors::router_pointer, const actors::services&, core::api_request&,
                            core::responder_ptr&, const core::principal&);
void admin_key_usage(actors::router_pointer, const actors::services&, core::api_request&,
                     core::responder_ptr&, const core::principal&);
void admin_all_usage(actors::router_pointer, const actors::services&, core::api_request&,
                     core::responder_ptr&, const core::principal&);
void admin_reset_usage(actors::router_pointer, const actors::services&, core::api_request&,
                       core::responder_ptr&, const core::principal&);
void admin_get_rate_limits(actors::router_pointer, const actors::services&, core::api_request&,
                           core::responder_ptr&, const core::principal&);
void admin_set_rate_limits(actors::router_pointer, const actors::services&, core::api_request&,
                           core::responder_ptr&, const core::principal&);
void admin_key_rate_limit(actors::router_pointer, const actors::services&, core::api_request&,
                          core::responder_ptr&, const core::principal&);

} // namespace tollgate::http::api
