#include <shmlink/core/version.hpp>

namespace shmlink {

std::string_view version() noexcept { return SHMLINK_VERSION; }

} // namespace shmlink
