#pragma once

#include "http/api/auth.hpp"

#include <memory>

namespace tollgate::http::llm {
struct context;
}

namespace tollgate::http::api {

// The LLM routes (gateway reference, OpenAI, token-tracking page). Each is
// built over the LLM context; a null or empty context answers 503.

/// POST /v1/chat/completions (JSON and SSE; ?session_id=).
actors::route_handler chat_completions_route(access a, std::shared_ptr<const llm::context> ctx);
/// POST /v1/responses.
actors::route_handler responses_route(access a, std::shared_ptr<const llm::context> ctx);
/// POST /images/generate (upstream /images/generations).
actors::route_handler images_route(access a, std::shared_ptr<const llm::context> ctx);
/// POST /api/send-message: {"message"} to llm.agent_model.
actors::route_handler send_message_route(access a, std::shared_ptr<const llm::context> ctx);
/// GET /v1/models: OpenAI's list shape.
actors::route_handler openai_models_route(access a, std::shared_ptr<const llm::context> ctx);
/// GET /models?provider&limit&offset (public, gateway reference shape).
actors::route_handler models_route(std::shared_ptr<const llm::context> ctx);
/// GET /models/providers (public).
actors::route_handler providers_route(std::shared_ptr<const llm::context> ctx);
/// GET /api/agent/status: the agent model's provider, its queue and bucket.
actors::route_handler agent_status_route(access a, std::shared_ptr<const llm::context> ctx);

} // namespace tollgate::http::api
