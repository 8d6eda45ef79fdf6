// shmlink logs through one spdlog logger named "shmlink". It is quiet by
// default (level off) unless SHMLINK_LOG names a level (trace, debug, info,
// warn, error); an application may replace it or configure it like any other.
#pragma once

#include <spdlog/logger.h>

#include <memory>

namespace shmlink {

/// The logger shmlink writes to. Never logs on a hot path.
spdlog::logger& logger();

/// Replaces the logger (for example with one that writes to the
/// application's sinks). Not safe to call while other threads use shmlink.
void set_logger(std::shared_ptr<spdlog::logger> replacement);

} // namespace shmlink
