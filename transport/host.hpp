// shmlink::Host: the process that owns a segment and lets guests in. It
// creates the segment (a path, or a memfd that only the socket hands out),
// an MPSC ring every guest writes into ("host.inbox", one lane per guest)
// and an SPSC ring back to each lane's guest ("guest.N"), and listens on a
// Unix socket. For each connection it checks the peer's credentials
// (SO_PEERCRED), waits for its hello, answers with a welcome carrying the
// segment's fd, tells it about every grow, and notices its hang-up. All of
// it runs on one Boost.Asio io_context; the rings are the caller's to use.
//
// Threading: construct, destroy and call grow() and guest_count() on the
// thread that runs the io_context. The inbox has one consumer (any thread);
// a dead guest's lane is freed by the inbox's own reap on that thread.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/transport/asio.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace shmlink {

/// Who is at the other end of a connection, as the kernel says (SO_PEERCRED).
struct PeerCredentials {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

/// A guest that joined through the socket.
struct GuestInfo {
    std::uint64_t connection = 0; ///< numbers connections in the order they came
    PeerCredentials peer {};
    std::string name {};       ///< from its hello
    std::uint32_t lane = 0; ///< its lane of host.inbox (and its ring guest.N), once joined
};

struct HostOptions {
    /// Where guests connect (1 to 107 bytes); replaced only if a stale socket
    /// is there (nobody listens), never when a host listens or it is no socket.
    std::filesystem::path socket_path {};
    /// Empty: an anonymous memfd, reachable only through the socket. A file
    /// already at the path is taken over only when it is the segment of a
    /// host that is gone (SegmentOptions::take_over_dead): a live host's
    /// segment fails the constructor with Errc::in_use, and any other file
    /// (not a segment, a checkpoint) with EEXIST, left as it is.
    std::filesystem::path segment_path {};
    std::size_t segment_bytes = std::size_t {4} << 20;
    std::size_t max_segment_bytes = std::size_t {1} << 30;
    std::uint32_t max_guests = 8;                  ///< lanes of host.inbox, and guest.N rings
    std::size_t ring_bytes = std::size_t {64} << 10; ///< each lane's and each guest.N ring's capacity
    /// From connect to joined: a hello, a free lane, and the guest's word
    /// that it took it. A connection that takes longer is dropped.
    std::chrono::milliseconds handshake_timeout {2000};
    /// Connections not joined yet that the host keeps at once. They do not
    /// count against max_guests. A newcomer beyond the bound pushes out the
    /// oldest connection that has not said hello for 250 ms, so that peers
    /// that connect and stay silent cannot keep guests out; when there is
    /// none (every pending one is a guest on its way), it is refused.
    std::uint32_t max_pending_handshakes = 64;
    std::chrono::milliseconds reap_interval {100};
    /// Who may join; the default lets in processes of the host's own uid.
    std::function<bool(const PeerCredentials&)> allow = {};
    /// A path-backed segment can be truncated by anyone who may open the
    /// file. With this, the host maps it with MapOptions::guard_truncation
    /// and checks the file every reap_interval: a truncation costs the data
    /// in the cut extent, not the host's life, and on_damage says so. (A memfd
    /// segment is sealed against shrinking: nobody can truncate it.)
    bool guard_truncation = true;
};

class Host {
public:
    /// Creates the segment and the rings and starts listening on `io`.
    /// Throws shmlink::Error ("host /run/x.sock: ...").
    Host(boost::asio::io_context& io, HostOptions options);
    ~Host(); ///< says goodbye to every guest, stops listening, removes the socket path
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

    [[nodiscard]] Segment& segment() noexcept;
    /// The consumer of host.inbox: what every guest sends. consume() with a
    /// `(lane, bytes)` handler says which guest (lane) sent what.
    [[nodiscard]] MpscRing& inbox() noexcept;
    /// The producer of guest.N: to the guest on lane N of the inbox. Use it
    /// on the inbox consumer's thread: the host empties and re-initialises
    /// guest.N there when lane N is freed. Throws shmlink::Error for a lane
    /// out of range.
    [[nodiscard]] SpscRing& outbox(std::uint32_t lane);
    /// Sends to the guest on `lane` without ever waiting: ok, or full when
    /// that guest is not reading (drop the message or keep it; never wait
    /// for one guest inside consume(), or every other guest waits too),
    /// too_large, corrupt (also for a lane out of range). The rule of a
    /// server: one slow guest costs only its own messages.
    RingStatus send(std::uint32_t lane, std::span<const std::byte> message) noexcept;
    /// Guests joined through the socket now.
    [[nodiscard]] std::size_t guest_count() const noexcept;

    /// Offers the topic `name` in `segment` (this host's own, or another
    /// segment it created) to guests that ask for it by name
    /// (Guest::find_topic()): they get a duplicate of the segment's fd.
    /// Guests offer theirs the same way (Guest::offer_topic()); a guest's
    /// offers end when it leaves, the host's when it is destroyed. Throws
    /// shmlink::Error: Errc::invalid_argument (not a name a topic can
    /// have), Errc::name_taken (offered already), Errc::directory_full
    /// (64 topics are offered).
    void offer_topic(Segment& segment, std::string_view name);

    /// Grows the segment (Segment::grow) and sends every joined guest a
    /// grown frame, so that it refreshes before it touches the new extent.
    void grow(std::size_t new_size_bytes);

    /// Called on the io_context's thread when a guest joins (it took its
    /// lane and opened its rings, and said so) or goes (a goodbye, a
    /// hang-up, or death: the kernel closes a dead guest's socket); on_leave
    /// only for a guest that joined.
    /// They may destroy the Host (and with it the callback itself: touch
    /// nothing of the callback's own after that). Must not throw.
    std::function<void(const GuestInfo&)> on_join;
    std::function<void(const GuestInfo&)> on_leave;
    /// Called on the io_context's thread when the segment's file was found
    /// truncated (Errc::truncated, with what happened). The file has been
    /// extended back, but what was in the cut extent is lost: rings there
    /// report corruption. Called with Errc::damaged when pages the file could
    /// not hold again (a full file system) were replaced by private pages in
    /// some process: those pages are not shared any more. A host would
    /// normally log it and start over with a new segment, on a memfd if
    /// guests cannot be trusted with the file.
    /// Called with Errc::corrupt_header when another process wrote over the
    /// segment's header page (the header or the directory): the host found
    /// it at a reap or before handing out a lane, and has rewritten it from
    /// its own copy (Segment::repair_header(), the header's header_repairs).
    /// Nothing is lost: guests joined keep working, guests joining through
    /// the socket never depended on it, and guests by path can join again.
    /// (The host checks the page every reap_interval on any segment; a
    /// path-backed one without guard_truncation must not be cut under it.)
    std::function<void(const std::error_code&, const std::string&)> on_damage;
    /// Called on the io_context's thread when a guest asks to join a topic
    /// the host offered (Guest::join_topic()), with that subscriber's slot
    /// file: pass it to the topic's Publisher::admit(). Unset, such joins
    /// are refused (Errc::refused). Must not throw.
    std::function<void(const std::string& topic, UniqueFd slot_file)> on_topic_join;

private:
    struct State;
    std::shared_ptr<State> state_; // shared with the io_context's handlers, which hold it weakly
};

} // namespace shmlink
