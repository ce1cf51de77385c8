#pragma once

#include "http/api/auth.hpp"

namespace tollgate::http::api {

// Admin routes of the gateway reference: users, roles, audit log.

void admin_create_user(actors::router_pointer, const actors::services&, core::api_request&,
                       core::responder_ptr&, const core::principal&);
void list_roles(actors::router_pointer, const actors::services&, core::api_request&,
                core::responder_ptr&, const core::principal&);
void get_role(actors::router_pointer, const actors::services&, core::api_request&,
              core::responder_ptr&, const core::principal&);
void set_role(actors::router_pointer, const actors::services&, core::api_request&,
              core::responder_ptr&, const core::principal&);
void audit_logs(actors::router_pointer, const actors::services&, core::api_request&,
                core::responder_ptr&, const core::principal&);

} // namespace tollgate::http::api
