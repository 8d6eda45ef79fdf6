// The version of the shmlink libraries a program runs with, which may be
// newer than the headers it was built with (the soname changes only with
// the ABI).
#pragma once

#include <string_view>

namespace shmlink {

/// "0.1.0": the version of the library loaded, from the project's meson.build.
std::string_view version() noexcept;

} // namespace shmlink
