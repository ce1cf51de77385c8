#include "http/routes.hpp"

#include "http/api/public_routes.hpp"
#include "http/errors.hpp"

namespace tollgate::http {

route_set build_routes() {
  auto table = std::make_shared<route_table>();
  auto handlers = std::make_shared<actors::handler_table>();
  handlers->error = [](core::errc e, std::string_view detail) {
    return error_response(e, detail);
  };
  const auto add = [&](const char* method, const char* pattern, actors::route_handler h,
                       bool metered) {
    const auto id = table->add(method, pattern, metered);
    handlers->routes.resize(id + 1U);
    handlers->routes[id] = std::move(h);
  };

  // Public routes: no key, not metered.
  add("GET", "/health", api::health, false);
  add("GET", "/ping", api::ping, false);
  add("GET", "/metrics", api::metrics, false);

  return {std::move(table), std::move(handlers)};
}

} // namespace tollgate::http
