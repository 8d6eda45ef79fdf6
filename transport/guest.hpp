// shmlink::Guest: a process that joins a host's segment, through the host's
// socket (the segment's fd arrives in the welcome; SCM_RIGHTS) or by the
// segment's path. Either way it takes a lane of the host's inbox (its
// identity in the segment) and reads what the host sends it on guest.<lane>.
// A guest that came through the socket follows the host's grows and learns
// of the host's death from the socket's hang-up.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/spsc_ring.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace shmlink {

/// A subscriber's request to join a topic this guest offered: its slot file.
struct TopicJoin {
    std::string topic;
    UniqueFd slot_file;
};

struct GuestOptions {
    std::string name = "guest"; ///< sent in the hello, for the host's logs (0..64 bytes)
    /// For connecting and the welcome. The host holds a lane for the guest,
    /// waiting up to its own handshake timeout for one to come free: a
    /// guest whose timeout is shorter gives up (timed_out) before the host
    /// would tell it why it was refused.
    std::chrono::milliseconds timeout {2000};
    /// Keep trying while the socket is missing or refuses (ENOENT,
    /// ECONNREFUSED), up to `timeout`: for a guest started with its host,
    /// in either order. Off by default: a missing host is an error at once.
    bool wait_for_host = false;
};

class Guest {
public:
    /// Joins the host listening at `socket_path`. Throws shmlink::Error
    /// ("guest /run/x.sock: ..."): ECONNREFUSED, Errc::refused (with the
    /// host's reason), Errc::timed_out, Errc::bad_frame, Errc::no_free_lane.
    static Guest connect(const std::filesystem::path& socket_path, const GuestOptions& options = {});
    /// As connect(); on failure `ec` is set and the Guest is not valid().
    static Guest connect(const std::filesystem::path& socket_path, const GuestOptions& options,
        std::error_code& ec) noexcept;
    /// Joins by the segment's path, without a socket: no grown notices (call
    /// segment().refresh()) and no news of the host's death. Waits up to 2 s
    /// for a free lane (through connect(), the host holds one for the guest).
    static Guest attach(const std::filesystem::path& segment_path);
    static Guest attach(const std::filesystem::path& segment_path, std::error_code& ec) noexcept;

    /// False for a Guest that failed to join (the error_code forms) or was moved from.
    [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

    Guest(Guest&&) noexcept;
    Guest& operator=(Guest&&) noexcept;
    ~Guest(); ///< says goodbye (when connected) and gives the lane back

    /// The accessors below throw shmlink::Error (ENOTCONN) on a Guest that
    /// is not valid(); poll(), receive() and send() answer ENOTCONN instead.
    [[nodiscard]] Segment& segment();
    /// This guest's lane of host.inbox: its identity in the segment.
    [[nodiscard]] std::uint32_t lane() const;
    /// To the host (a lane of host.inbox). Its push() waits without looking
    /// at the host: a guest that may outlive its host sends with send().
    [[nodiscard]] MpscProducer& outbox();
    /// From the host: the ring guest.N, N being lane().
    [[nodiscard]] SpscRing& inbox();

    /// Handles the control frames that arrived, without waiting: a grown
    /// notice refreshes the segment. Errc::peer_closed once the host is gone
    /// (and from then on); a malformed frame is Errc::bad_frame.
    std::error_code poll();
    /// inbox().pop() that keeps watching the host meanwhile: ok, timed_out,
    /// or corrupt. A message already there is returned without a syscall.
    /// While it waits it looks at the control socket every 50 ms: when the
    /// host has gone, `host_error` is set (peer_closed, or the socket's
    /// error) and it returns timed_out at once. Never throws.
    RingStatus receive(std::span<std::byte> buffer, std::size_t& length, std::chrono::nanoseconds timeout,
        std::error_code& host_error);
    /// outbox().push() that keeps watching the host meanwhile, as receive()
    /// does: ok, too_large, corrupt, or timed_out (with `host_error` set
    /// when the host has gone: a full ring it will never read again).
    RingStatus send(std::span<const std::byte> message, std::chrono::nanoseconds timeout, std::error_code& host_error);

    /// Offers the topic `name` that this guest publishes in `segment`, a
    /// segment of its own (Segment::create_anonymous(), with
    /// Publisher::create() in it), to the host's other guests: the host
    /// hands a guest that asks for the topic by name (find_topic()) the
    /// segment's fd, for as long as this guest stays. Waits for the host's
    /// answer up to GuestOptions::timeout. Throws shmlink::Error
    /// ("guest /run/x.sock: offer topic 'frames': ..."): Errc::name_taken
    /// (another offers that name), Errc::directory_full (the host holds 64
    /// offers, or 16 of this guest's), Errc::invalid_argument (not a
    /// topic's name), Errc::timed_out, Errc::peer_closed, ENOTCONN (joined
    /// by path: there is no socket).
    void offer_topic(Segment& segment, std::string_view name);
    void offer_topic(Segment& segment, std::string_view name, std::error_code& ec) noexcept;
    /// The segment that holds the topic `name` another guest (or the host)
    /// offers, attached from the fd the host passed (its header checked as
    /// any attach's, mapped with guard_truncation; read-only when its creator
    /// sealed it against its peers' writes, SegmentOptions::peers_read_only:
    /// then join with a slot of your own and join_topic()); join the topic
    /// with Subscriber::open(segment, name), and keep the Segment for as
    /// long as the Subscriber. A topic in the host's own segment needs no find:
    /// open it in segment(). Errors as offer_topic()'s, and Errc::not_found
    /// (nobody offers it), and those of Segment::attach.
    Segment find_topic(std::string_view name);
    Segment find_topic(std::string_view name, std::error_code& ec) noexcept;
    /// Hands the topic's publisher the slot file of a subscriber of it that
    /// keeps its slot apart (SubscriberOptions::own_slot,
    /// Subscriber::share_slot()): the host passes it to the guest that
    /// offered the topic, whose take_join() gives it to its
    /// Publisher::admit(), or to its own on_topic_join. Returns once the
    /// host passed it on; the subscriber is admitted when its slot() says
    /// so. Errors as find_topic()'s, and Errc::timed_out (the publisher is
    /// not reading its socket), Errc::refused (the host admits nobody to
    /// its own topic), Errc::not_a_segment (not a file).
    void join_topic(std::string_view name, UniqueFd slot_file);
    void join_topic(std::string_view name, UniqueFd slot_file, std::error_code& ec) noexcept;
    /// The next subscriber that asked through the host to join a topic this
    /// guest offered (join_topic()), reading what the host sent meanwhile
    /// without waiting; pass its slot file to that topic's Publisher::admit().
    /// Up to 64 wait to be taken; beyond, the host's next ones are dropped
    /// (logged). Empty when none waits.
    std::optional<TopicJoin> take_join();

private:
    struct State;
    State& state() const;
    explicit Guest(std::unique_ptr<State> state) noexcept;
    template <typename Join>
    static Guest or_error(std::error_code& ec, Join&& join) noexcept;
    std::unique_ptr<State> state_;
};

} // namespace shmlink
