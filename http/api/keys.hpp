#pragma once

#include "http/api/auth.hpp"

namespace tollgate::http::api {

// Key routes of the gateway reference (/user/...) and the scans API's admin
// key routes (/api/v1/admin/api-keys...). See README for shapes.

void create_own_key(actors::router_pointer, const actors::services&, core::api_request&,
                    core::responder_ptr&, const core::principal&);
void list_own_keys(actors::router_pointer, const actors::services&, core::api_request&,
                   core::responder_ptr&, const core::principal&);
void update_own_key(actors::router_pointer, const actors::services&, core::api_request&,
                    core::responder_ptr&, const core::principal&);
void delete_own_key(actors::router_pointer, const actors::services&, core::api_request&,
                    core::responder_ptr&, const core::principal&);

void admin_create_key(actors::router_pointer, const actors::services&, core::api_request&,
                      core::responder_ptr&, const core::principal&);
void admin_list_keys(actors::router_pointer, const actors::services&, core::api_request&,
                     core::responder_ptr&, const core::principal&);
void admin_get_key(actors::router_pointer, const actors::services&, core::api_request&,
                   core::responder_ptr&, const core::principal&);
void admin_revoke_key(actors::router_pointer, const actors::services&, core::api_request&,
                      core::responder_ptr&, const core::principal&);
void admin_delete_key(actors::router_pointer, const actors::services&, core::api_request&,
                      core::responder_ptr&, const core::principal&);

} // namespace tollgate::http::api
