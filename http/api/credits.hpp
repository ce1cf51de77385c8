#pragma once

#include "http/api/auth.hpp"

namespace tollgate::http::api {

// Credits (gateway reference): the balance, an admin's credit, and the
// caller's own ledger. Balances live in the wallet actor.

/// GET /user/balance: {"api_key", "credits", "status", "user_id", "plan"}.
void balance(actors::router_pointer, const actors::services&, core::api_request&,
             core::responder_ptr&, const core::principal&);
/// POST /admin/add_credits: {"user_id", "credits", "reason"} ->
/// {"success", "message", "new_balance"}.
void add_credits(actors::router_pointer, const actors::services&, core::api_request&,
                 core::responder_ptr&, const core::principal&);
/// GET /user/ledger?limit&offset: the caller's charges and credits, oldest first.
void my_ledger(actors::router_pointer, const actors::services&, core::api_request&,
               core::responder_ptr&, const core::principal&);

} // namespace tollgate::http::api
