#include "core/api_message.hpp"

namespace tollgate::core {

namespace {
std::string_view find(const header_list& list, std::string_view name) noexcept {
  for (const auto& [k, v] : list)
    if (k == name)
      return v;
  return {};
}
} // namespace

std::string_view api_request::header(std::string_view lower_name) const noexcept {
  return find(headers, lower_name);
}

std::string_view api_request::param(std::string_view name) const noexcept {
  return find(params, name);
}

} // namespace tollgate::core
