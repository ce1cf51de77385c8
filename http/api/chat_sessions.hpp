#pragma once

#include "http/api/auth.hpp"

namespace tollgate::http::api {

// Chat history (gateway reference): sessions owned by the caller's user.
// Another user's session is 404, never 403 (its existence is not told).

/// POST /chat/sessions {"name", "description"} -> {"success", "session_id", "name", "created_at"}.
void create_chat_session(actors::router_pointer, const actors::services&, core::api_request&,
                         core::responder_ptr&, const core::principal&);
/// GET /chat/sessions?limit&offset -> {"success", "data": [...], "count"}.
void list_chat_sessions(actors::router_pointer, const actors::services&, core::api_request&,
                        core::responder_ptr&, const core::principal&);
/// GET /chat/sessions/{session_id} -> {"success", "session": {..., "messages"}}.
void get_chat_session(actors::router_pointer, const actors::services&, core::api_request&,
                      core::responder_ptr&, const core::principal&);
/// DELETE /chat/sessions/{session_id}.
void delete_chat_session(actors::router_pointer, const actors::services&, core::api_request&,
                         core::responder_ptr&, const core::principal&);

} // namespace tollgate::http::api
