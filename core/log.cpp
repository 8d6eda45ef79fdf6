#include <shmlink/core/log.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

namespace shmlink {
namespace {

std::shared_ptr<spdlog::logger> make_default()
{
    if (auto existing = spdlog::get("shmlink"))
        return existing;
    auto made = std::make_shared<spdlog::logger>("shmlink", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    made->set_level(spdlog::level::off);
    if (const char* level = std::getenv("SHMLINK_LOG"))
        made->set_level(spdlog::level::from_str(level));
    return made;
}

std::shared_ptr<spdlog::logger>& current()
{
    static std::shared_ptr<spdlog::logger> instance = make_default();
    return instance;
}

} // namespace

spdlog::logger& logger() { return *current(); }

void set_logger(std::shared_ptr<spdlog::logger> replacement)
{
    if (replacement)
        current() = std::move(replacement);
}

} // namespace shmlink
