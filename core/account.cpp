#include "core/account.hpp"

#include <algorithm>
#include <array>

namespace tollgate::core {

namespace {
constexpr std::array<std::string_view, 7> groups = {"keys",   "account", "admin", "usage",
                                                    "models", "chat",    "proxy"};
} // namespace

bool scope_permissions::allows(std::string_view group, bool write_access) const noexcept {
  const auto& list = write_access ? write : read;
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& g) { return g == "*" || g == group; });
}

bool scope_permissions::covers(const scope_permissions& other) const noexcept {
  const auto within = [](const std::vector<std::string>& have,
                         const std::vector<std::string>& want) {
    const bool all = std::find(have.begin(), have.end(), "*") != have.end();
    return all || std::all_of(want.begin(), want.end(), [&](const std::string& g) {
             return g != "*" && std::find(have.begin(), have.end(), g) != have.end();
           });
  };
  return within(read, other.read) && within(write, other.write);
}

bool valid_scope_group(std::string_view group) noexcept {
  return group == "*" || std::find(groups.begin(), groups.end(), group) != groups.end();
}

std::string scope_group_list() {
  std::string out{"*"};
  for (const auto g : groups) {
    out += ", ";
    out += g;
  }
  return out;
}

std::string key_refusal(const key_record& key, std::int64_t now_epoch_seconds) {
  if (key.revoked)
    return "API key has been revoked";
  if (!key.active)
    return "API key is inactive";
  if (key.expires_at != 0 && now_epoch_seconds >= key.expires_at)
    return "API key has expired";
  return {};
}

} // namespace tollgate::core
