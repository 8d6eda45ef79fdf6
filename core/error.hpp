// The error model: setup calls throw shmlink::Error (a std::system_error that
// says what was being done, to what, and why); every such call also has a
// std::error_code& overload that never throws. Codes are errno values
// (std::system_category) or shmlink::Errc (shmlink::error_category()).
#pragma once

#include <string>
#include <string_view>
#include <system_error>

namespace shmlink {

/// Conditions that are not an errno. Values are stable: tools print them.
enum class Errc {
    invalid_argument = 1, ///< a caller's argument is out of its documented range
    empty_file,           ///< attach: the file has no bytes
    truncated,            ///< attach: the file is shorter than the segment header
    bad_magic,            ///< attach: not a shmlink segment
    version_too_new,      ///< attach: written by a newer layout version
    version_unsupported,  ///< attach: layout version 0 or otherwise unknown
    abi_mismatch,         ///< attach: byte order or struct sizes differ
    corrupt_header,       ///< attach/refresh: a header field is out of range; on_damage: the host rewrote one
    size_mismatch,        ///< the header claims more bytes than the file holds
    corrupt_directory,    ///< a directory entry is malformed or points outside the segment
    not_a_segment,        ///< the fd is not a regular file or memfd
    out_of_range,         ///< a bounds-checked access past the mapped size
    shrink_refused,       ///< grow() to a smaller size
    exceeds_maximum,      ///< grow()/create() past the maximum size
    not_owner,            ///< a host-only call on an attached segment
    not_found,            ///< no directory entry of that name
    name_taken,           ///< a directory entry of that name exists
    directory_full,       ///< every directory slot is used
    no_space,             ///< the data area cannot hold the object; grow first
    control_truncated,    ///< recvmsg: ancillary data (fds) were truncated (MSG_CTRUNC)
    message_truncated,    ///< recvmsg: the payload did not fit the buffer (MSG_TRUNC)
    too_many_fds,         ///< more fds than a message may carry
    peer_closed,          ///< the other end of a socket hung up
    wrong_kind,           ///< a directory object of that name is another kind of object
    no_free_lane,         ///< every producer lane of an MPSC ring is taken
    item_size_mismatch,   ///< a typed queue or channel holds items of another size
    bad_frame,            ///< a control frame is malformed (see docs/protocol.md)
    protocol_mismatch,    ///< the peer speaks another protocol version
    refused,              ///< the host refused this guest (credentials, or full)
    timed_out,            ///< a setup step (handshake, connect) took longer than its timeout
    corrupt_object,       ///< an object's control block breaks its own rules (a peer wrote over it)
    in_use,               ///< create: a live segment is at the path (its creator holds its lock)
    damaged,              ///< pages of the segment's file could not be restored; private pages stand in for them
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(Errc e) noexcept;

/// The exception thrown by setup calls. what() reads
/// "<context>: <detail>: <the code's message>", e.g. "guest /run/x.sock:
/// take a lane of host.inbox: every producer lane is taken": the detail
/// says what was being done, and the code's message, the cause, is never
/// dropped (only left out when the detail already contains it). A Reason
/// says why in more words than the code: "<context>: <reason>", e.g.
/// "attach /dev/shm/demo: layout version 3 is newer than 1".
class Error : public std::system_error {
public:
    struct Reason {
        std::string_view text;
    };
    Error(std::error_code code, std::string_view context, std::string_view detail = {});
    Error(std::error_code code, std::string_view context, Reason reason);
    const char* what() const noexcept override { return message_.c_str(); }

private:
    std::string message_;
};

/// errno as a std::error_code (system category).
std::error_code errno_code() noexcept;

} // namespace shmlink

/// \cond std_specialization (lets an Errc compare with and convert to std::error_code)
template <>
struct std::is_error_code_enum<shmlink::Errc> : std::true_type {};
/// \endcond
