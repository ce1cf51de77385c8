#pragma once

#include "actors/router.hpp"
#include "http/route_table.hpp"

#include <memory>

namespace tollgate::http {

/// The route table and the handlers behind it, built from one list so the
/// two can never disagree.
struct route_set {
  std::shared_ptr<const route_table> table;
  std::shared_ptr<const actors::handler_table> handlers;
};

/// Every route of the gateway.
route_set build_routes();

} // namespace tollgate::http
