#pragma once

#include "actors/interfaces.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"

namespace tollgate::actors {

/// Spawns the actor that admits calls to one provider:
///  - at most `max_concurrency` calls at once;
///  - beyond that a FIFO queue of `queue_size`; a full queue refuses at
///    once ("queue_full"), a call that waits longer than `queue_timeout`
///    is refused ("queue_timeout");
///  - a provider-wide token bucket (`tokens_per_minute`, `burst_tokens`)
///    that each call's estimate is taken from; the unused part of the
///    estimate is given back on release;
///  - after 5 failed calls in a row the provider counts as down for 10 s:
///    new calls are refused with "down" (503 instead of 429) so the caller
///    goes to a fallback at once.
/// The caller makes the upstream call itself and must release every
/// granted slot exactly once.
provider_actor spawn_provider(caf::actor_system& sys, const core::provider_config& cfg,
                              const core::clock& clock);

} // namespace tollgate::actors
