#include <shmlink/core/error.hpp>

#include <cerrno>

namespace shmlink {
namespace {

class Category final : public std::error_category {
public:
    const char* name() const noexcept override { return "shmlink"; }
    std::string message(int value) const override
    {
        switch (static_cast<Errc>(value)) {
        case Errc::invalid_argument: return "invalid argument";
        case Errc::empty_file: return "file is empty";
        case Errc::truncated: return "file is shorter than the segment header";
        case Errc::bad_magic: return "not a shmlink segment (bad magic)";
        case Errc::version_too_new: return "layout version is newer than this library";
        case Errc::version_unsupported: return "unsupported layout version";
        case Errc::abi_mismatch: return "segment ABI (byte order or struct sizes) differs";
        case Errc::corrupt_header: return "segment header is corrupt";
        case Errc::size_mismatch: return "header size is larger than the file";
        case Errc::corrupt_directory: return "segment directory is corrupt";
        case Errc::not_a_segment: return "not a regular file or memfd";
        case Errc::out_of_range: return "access outside the mapped segment";
        case Errc::shrink_refused: return "shrinking a segment is refused";
        case Errc::exceeds_maximum: return "size exceeds the segment's maximum";
        case Errc::not_owner: return "only the segment's creator may do this";
        case Errc::not_found: return "no such object in the directory";
        case Errc::name_taken: return "an object of that name exists";
        case Errc::directory_full: return "the segment directory is full";
        case Errc::no_space: return "not enough free space in the segment";
        case Errc::control_truncated: return "ancillary data truncated (MSG_CTRUNC)";
        case Errc::message_truncated: return "message truncated (MSG_TRUNC)";
        case Errc::too_many_fds: return "too many file descriptors in one message";
        case Errc::peer_closed: return "peer closed the connection";
        case Errc::wrong_kind: return "the object is of another kind";
        case Errc::no_free_lane: return "every producer lane is taken";
        case Errc::item_size_mismatch: return "the queue holds items of another size";
        case Errc::bad_frame: return "malformed control frame";
        case Errc::protocol_mismatch: return "unsupported protocol version";
        case Errc::refused: return "refused by the host";
        case Errc::timed_out: return "timed out";
        case Errc::corrupt_object: return "the object's control block is corrupt";
        case Errc::in_use: return "another process owns it";
        case Errc::damaged: return "segment pages the file could not hold again were replaced by private pages that peers do not see";
        }
        return "unknown shmlink error " + std::to_string(value);
    }
};

} // namespace

const std::error_category& error_category() noexcept
{
    static const Category category;
    return category;
}

std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), error_category()}; }

std::error_code errno_code() noexcept { return {errno, std::system_category()}; }

Error::Error(std::error_code code, std::string_view context, std::string_view detail)
    : std::system_error(code)
    , message_(std::string(context) + ": " + std::string(detail))
{
    // The detail says what was being done, or why; the code's own text is
    // the cause, and is never dropped unless the detail already says it.
    const std::string cause = code.message();
    if (detail.empty())
        message_ += cause;
    else if (detail.find(cause) == std::string_view::npos)
        message_ += ": " + cause;
}

Error::Error(std::error_code code, std::string_view context, Reason reason)
    : std::system_error(code), message_(std::string(context) + ": " + std::string(reason.text))
{
    if (reason.text.empty())
        message_ += code.message();
}

} // namespace shmlink
