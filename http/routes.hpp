#pragma once

#include "actors/router.hpp"
#include "core/config.hpp"
#include "http/route_table.hpp"

#include <memory>

namespace tollgate::http {

/// The route table and the handlers behind it, built from one list so the
/// two can never disagree.
struct route_set {
  std::shared_ptr<const route_table> table;
  std::shared_ptr<const actors::handler_table> handlers;
};

namespace llm {
struct context;
}
namespace client {
class client;
}

/// Every route of the gateway; the LLM routes over `llm` (null: they
/// answer 503 "no LLM provider is configured").
route_set build_routes(std::shared_ptr<const llm::context> llm = nullptr,
                       const std::vector<core::proxy_route_config>& proxies = {},
                       std::shared_ptr<client::client> http = nullptr);

} // namespace tollgate::http
