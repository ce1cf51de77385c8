#include "actors/interfaces.hpp"

#include <caf/message.hpp>

namespace tollgate::actors {

namespace {
constexpr auto category = caf::atom("tollgate");
} // namespace

caf::error make_error(core::errc code, std::string detail) {
  return caf::error{static_cast<std::uint8_t>(code), category,
                    caf::make_message(std::move(detail))};
}

std::pair<core::errc, std::string> from_error(const caf::error& e) {
  if (e.category() == category) {
    std::string detail;
    const auto& ctx = e.context();
    if (ctx.size() == 1 && ctx.match_element<std::string>(0))
      detail = ctx.get_as<std::string>(0);
    return {static_cast<core::errc>(e.code()), std::move(detail)};
  }
  return {core::errc::unavailable, "an internal service did not answer"};
}

} // namespace tollgate::actors
