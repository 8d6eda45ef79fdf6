// What every ipc object does to be created and found by name in a segment's
// directory: the kind, version and size checks, and the throwing wrappers
// over the error_code forms.
#pragma once

#include <shmlink/core/error.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/layout.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

namespace shmlink::detail {

/// The object `name`, checked to be of `kind` and `version` and at least
/// `min_length` bytes, and aligned for its control block. Null with `ec` set
/// otherwise (Errc::not_found, wrong_kind, version_unsupported, corrupt_directory;
/// EACCES for a ring in a segment attached read-only).
std::byte* open_object(Segment& segment, std::string_view name, ipc::ObjectKind kind, std::uint16_t version,
    std::size_t min_length, std::uint64_t& length, std::error_code& ec) noexcept;

/// Allocates `length` bytes under `name` for an object of `kind`, aligned
/// for its control block, and has `initialize` fill in its fixed fields
/// before it is published; null with `ec` set on failure.
std::byte* create_object(Segment& segment, std::string_view name, ipc::ObjectKind kind, std::uint16_t version,
    std::size_t length, const std::function<void(std::byte*)>& initialize, std::error_code& ec) noexcept;

/// Why `name` cannot name an object ("" when it can): 1 to 39 bytes, no NUL.
std::string name_rule_broken(std::string_view name);

/// Calls the error_code form `make(ec)` and throws shmlink::Error
/// ("<what> '<name>': <reason>") if it failed. For Errc::invalid_argument
/// the reason is the rule broken: the name's, or else `explain()`.
template <typename Make, typename Explain>
auto or_throw(std::string_view what, std::string_view name, Make&& make, Explain&& explain)
{
    std::error_code ec;
    auto object = make(ec);
    if (ec) {
        std::string reason;
        if (ec == Errc::invalid_argument && (reason = name_rule_broken(name)).empty())
            reason = explain();
        throw Error(ec, std::string(what) + " '" + std::string(name) + "'", reason);
    }
    return object;
}

template <typename Make>
auto or_throw(std::string_view what, std::string_view name, Make&& make)
{
    return or_throw(what, name, std::forward<Make>(make), [] { return std::string(); });
}

/// The rule a ring's capacity breaks, for or_throw's explanation.
std::string capacity_rule(std::string_view what, std::uint64_t capacity_bytes);

} // namespace shmlink::detail
