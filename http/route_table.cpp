#include "http/route_table.hpp"

#include <stdexcept>

namespace tollgate::http {

namespace {

// Splits "/a/b" into {"a","b"}; "/" gives no segments; empty segments
// ("/a//b", "/a/") are kept so that they never match a template.
std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> out;
  out.reserve(8);
  if (!path.empty() && path[0] == '/')
    path.remove_prefix(1);
  if (path.empty())
    return out;
  for (;;) {
    const auto j = path.find('/');
    out.push_back(path.substr(0, j));
    if (j == std::string_view::npos)
      return out;
    path.remove_prefix(j + 1);
  }
}

} // namespace

bool route_table::score(const compiled& c, const std::vector<std::string_view>& segs,
                        std::uint64_t& out) noexcept {
  const std::size_t fixed = c.wildcard ? c.segments.size() - 1 : c.segments.size();
  if (c.wildcard ? segs.size() < fixed : segs.size() != fixed)
    return false;
  // One bit per position, set where the template has a literal: the highest
  // score is the most specific template. A wildcard's positions score nothing.
  out = 0;
  for (std::size_t i = 0; i < fixed; ++i) {
    if (c.is_param[i]) {
      if (segs[i].empty())
        return false;
    } else if (segs[i] == c.segments[i]) {
      out |= std::uint64_t{1} << (63 - (i < 63 ? i : 63));
    } else {
      return false;
    }
  }
  return true;
}

std::uint32_t route_table::add(std::string method, std::string pattern, bool metered,
                               bool proxy, bool upstream) {
  if (pattern.empty() || pattern[0] != '/')
    throw std::invalid_argument("route pattern must start with '/': " + pattern);
  has_proxy_ = has_proxy_ || proxy;
  compiled c;
  for (auto seg : split(pattern)) {
    if (c.wildcard)
      throw std::invalid_argument("a {*wildcard} must be the last segment: " + pattern);
    if (seg.size() > 3 && seg.substr(0, 2) == "{*" && seg.back() == '}') {
      c.wildcard = true;
      seg = seg.substr(1, seg.size() - 2);
      seg.remove_prefix(1);
      c.segments.emplace_back(seg);
      c.is_param.push_back(true);
      continue;
    }
    const bool param = seg.size() > 2 && seg.front() == '{' && seg.back() == '}';
    if (seg.empty() || (!param && seg.find_first_of("{}") != std::string_view::npos))
      throw std::invalid_argument("malformed route pattern: " + pattern);
    c.segments.emplace_back(param ? seg.substr(1, seg.size() - 2) : seg);
    c.is_param.push_back(param);
  }
  for (const auto& r : routes_)
    if (r.method == method && r.pattern == pattern)
      throw std::invalid_argument("duplicate route: " + method + " " + pattern);
  const auto id = static_cast<std::uint32_t>(routes_.size());
  c.route_index = id;
  bool literal = !c.wildcard;
  for (const bool param : c.is_param)
    literal = literal && !param;
  if (literal)
    literal_[pattern].push_back(id);
  routes_.push_back(
    route{std::move(method), std::move(pattern), id, metered, proxy, proxy || upstream});
  compiled_.push_back(std::move(c));
  return id;
}

route_table::match_result route_table::match(std::string_view method,
                                             std::string_view path) const {
  match_result result;
  // Most requests name a template without parameters: found directly. (A
  // method it does not take goes through the scoring below, which lists
  // the methods of 405's Allow.)
  if (const auto it = literal_.find(path); it != literal_.end()) {
    for (const auto id : it->second) {
      if (routes_[id].method == method) {
        result.kind = outcome::found;
        result.matched = &routes_[id];
        return result;
      }
    }
  }
  return match_by_score(method, path);
}

route_table::match_result route_table::match_by_score(std::string_view method,
                                                      std::string_view path) const {
  match_result result;
  const auto segs = split(path);
  std::uint64_t best_score = 0;
  const compiled* best = nullptr;
  std::uint64_t best_any_score = 0;
  bool any = false;
  for (const auto& c : compiled_) {
    std::uint64_t sc = 0;
    if (!score(c, segs, sc))
      continue;
    if (!any || sc > best_any_score)
      best_any_score = sc;
    any = true;
    if (routes_[c.route_index].method == method
        && (best == nullptr || sc > best_score
            || (sc == best_score && best->wildcard && !c.wildcard))) {
      best = &c;
      best_score = sc;
    }
  }
  if (best != nullptr && best_score == best_any_score) {
    result.kind = outcome::found;
    result.matched = &routes_[best->route_index];
    const std::size_t fixed = best->wildcard ? best->segments.size() - 1 : best->segments.size();
    for (std::size_t i = 0; i < fixed; ++i)
      if (best->is_param[i])
        result.params.emplace_back(best->segments[i], std::string{segs[i]});
    if (best->wildcard) {
      std::string rest;
      for (std::size_t i = fixed; i < segs.size(); ++i) {
        if (i > fixed)
          rest += '/';
        rest.append(segs[i]);
      }
      result.params.emplace_back(best->segments.back(), std::move(rest));
    }
    return result;
  }
  if (!any)
    return result;
  // The path names a resource; list the methods its most specific template takes.
  result.kind = outcome::method_not_allowed;
  for (const auto& c : compiled_) {
    std::uint64_t sc = 0;
    if (score(c, segs, sc) && sc == best_any_score) {
      if (!result.allow.empty())
        result.allow += ", ";
      result.allow += routes_[c.route_index].method;
    }
  }
  return result;
}

} // namespace tollgate::http
