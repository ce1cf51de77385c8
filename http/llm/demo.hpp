#pragma once

// The built-in demo provider ("builtin:demo"): answers OpenAI-shaped chat,
// responses and image calls in-process, so a fresh install answers a chat
// completion without network or keys. Deterministic, for tests too.

#include <string>
#include <string_view>
#include <vector>

namespace tollgate::http::llm::demo {

struct answer {
  unsigned status = 200;
  std::string body;                 ///< JSON (not streaming)
  std::vector<std::string> chunks;  ///< SSE frames "data: ...\n\n" (streaming)
};

/// `path` is the upstream path ("/chat/completions", "/responses",
/// "/images/generations"), `body` the request as it would go upstream.
answer call(std::string_view path, std::string_view body);

} // namespace tollgate::http::llm::demo
