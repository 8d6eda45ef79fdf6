#include "transport/host.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "transport/frame_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <list>
#include <string>
#include <vector>

namespace shmlink {

using boost::asio::local::stream_protocol;

namespace {

std::string guest_ring_name(std::uint32_t lane) { return "guest." + std::to_string(lane); }

PeerCredentials credentials_of(stream_protocol::socket& socket)
{
    ucred cred {};
    socklen_t length = sizeof(cred);
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0)
        return {};
    return {cred.pid, cred.uid, cred.gid};
}

} // namespace

struct Host::State {
    struct Connection {
        FrameSocket socket;
        boost::asio::steady_timer handshake;
        GuestInfo info;
        bool joined = false;
    };

    State(Host& host, boost::asio::io_context& io, HostOptions options)
        : host(host), io(io), options(std::move(options)), acceptor(io)
    {
    }

    Host& host;
    boost::asio::io_context& io;
    HostOptions options;
    Segment segment;
    MpscRing inbox;
    std::vector<SpscRing> outboxes;
    stream_protocol::acceptor acceptor;
    std::list<Connection> connections;
    std::uint64_t next_connection = 1;

    void accept()
    {
        acceptor.async_accept([this](const boost::system::error_code& error, stream_protocol::socket socket) {
            if (error == boost::asio::error::operation_aborted)
                return; // the host is going away
            if (!error)
                admit(std::move(socket));
            else
                logger().warn("host {}: accept: {}", options.socket_path.string(), error.message());
            accept();
        });
    }

    void admit(stream_protocol::socket socket)
    {
        const PeerCredentials peer = credentials_of(socket);
        auto& c = connections.emplace_back(Connection {FrameSocket(std::move(socket)), boost::asio::steady_timer(io),
            GuestInfo {next_connection++, peer, {}}});
        const bool allowed = options.allow ? options.allow(peer) : peer.uid == ::geteuid();
        if (!allowed) {
            refuse(c, Errc::refused, "uid " + std::to_string(peer.uid) + " may not join");
            return;
        }
        if (connections.size() > options.max_guests) {
            refuse(c, Errc::refused, "the host has " + std::to_string(options.max_guests) + " guests already");
            return;
        }
        c.handshake.expires_after(options.handshake_timeout);
        c.handshake.async_wait([this, &c](const boost::system::error_code& error) {
            if (!error && !c.joined)
                drop(c, "no hello within the handshake timeout");
        });
        receive(c);
    }

    void receive(Connection& c)
    {
        c.socket.async_receive([this, &c](std::error_code ec, ReceivedFrame received, std::string reason) {
            if (ec == std::errc::operation_canceled)
                return;
            if (ec == Errc::peer_closed) {
                drop(c, c.joined ? "hung up" : "hung up before its hello");
                return;
            }
            if (ec) {
                drop(c, reason.empty() ? ec.message() : reason);
                return;
            }
            if (const auto* hello = std::get_if<protocol::Hello>(&received.frame); hello && !c.joined) {
                welcome(c, *hello);
            } else if (std::holds_alternative<protocol::Goodbye>(received.frame) && c.joined) {
                drop(c, "said goodbye");
                return;
            } else {
                drop(c, "sent a frame out of turn");
                return;
            }
            receive(c);
        });
    }

    void welcome(Connection& c, const protocol::Hello& hello)
    {
        c.info.name = hello.name;
        protocol::Welcome frame;
        const SegmentInfo info = segment.info();
        frame.size_bytes = segment.size_bytes();
        frame.max_size_bytes = segment.max_size_bytes();
        frame.generation = info.generation;
        std::error_code ec;
        for (const ObjectInfo& o : segment.objects(ec))
            frame.directory.push_back({o.name, o.kind, o.version, o.offset, o.length});
        const BorrowedFd fds[] = {segment.fd()};
        if ((ec = c.socket.send(frame, fds))) {
            drop(c, "welcome not sent: " + ec.message());
            return;
        }
        c.joined = true;
        c.handshake.cancel();
        logger().info("host {}: guest '{}' (pid {}) joined", options.socket_path.string(), c.info.name, c.info.peer.pid);
        if (host.on_join)
            host.on_join(c.info);
    }

    void refuse(Connection& c, Errc code, const std::string& why)
    {
        logger().warn("host {}: refused pid {}: {}", options.socket_path.string(), c.info.peer.pid, why);
        c.socket.send(protocol::ErrorReport {static_cast<std::uint32_t>(code), why});
        remove(c);
    }

    void drop(Connection& c, const std::string& why)
    {
        if (c.joined)
            logger().info("host {}: guest '{}' (pid {}) left: {}", options.socket_path.string(), c.info.name,
                c.info.peer.pid, why);
        else
            logger().warn("host {}: dropped pid {}: {}", options.socket_path.string(), c.info.peer.pid, why);
        const GuestInfo info = c.info;
        const bool joined = c.joined;
        remove(c);
        // A dead guest's lane is freed (and its guest.N emptied) by the
        // inbox's reap: the kernel dropped its lock when it died.
        inbox.reap();
        if (joined && host.on_leave)
            host.on_leave(info);
    }

    /// Closes the connection and forgets it once its pending handlers ran.
    void remove(Connection& c)
    {
        c.handshake.cancel();
        c.socket.close();
        // Handlers still queued for it must see it alive: erase later.
        boost::asio::post(io, [this, &c] {
            connections.remove_if([&](const Connection& other) { return &other == &c; });
        });
    }
};

Host::Host(boost::asio::io_context& io, HostOptions options)
    : state_(std::make_unique<State>(*this, io, std::move(options)))
{
    State& s = *state_;
    const std::string context = "host " + s.options.socket_path.string();
    if (s.options.max_guests == 0 || s.options.max_guests > 64)
        throw Error(Errc::invalid_argument, context, "max_guests must be 1 to 64");
    const SegmentOptions segment_options {.max_size_bytes = s.options.max_segment_bytes,
        .cleanup = Cleanup::unlink_on_close, .replace_existing = true};
    s.segment = s.options.segment_path.empty() ? Segment::create_anonymous(s.options.segment_bytes, segment_options)
                                               : Segment::create(s.options.segment_path, s.options.segment_bytes, segment_options);
    MpscOptions inbox_options {.reap_interval = s.options.reap_interval, .on_lane_freed = [&s](std::uint32_t lane) {
        // The next guest on this lane must not read what was meant for the last.
        SpscRing leftovers = SpscRing::open(s.segment, guest_ring_name(lane));
        leftovers.consume([](std::span<const std::byte>) {}, SIZE_MAX);
    }};
    s.inbox = MpscRing::create(s.segment, "host.inbox", s.options.ring_bytes, s.options.max_guests, inbox_options);
    for (std::uint32_t lane = 0; lane < s.options.max_guests; ++lane)
        s.outboxes.push_back(SpscRing::create(s.segment, guest_ring_name(lane), s.options.ring_bytes));

    ::unlink(s.options.socket_path.c_str()); // a stale socket from a host that died
    boost::system::error_code error;
    s.acceptor.open(stream_protocol(), error);
    if (!error)
        s.acceptor.bind(stream_protocol::endpoint(s.options.socket_path.string()), error);
    if (!error)
        s.acceptor.listen(boost::asio::socket_base::max_listen_connections, error);
    if (error)
        throw Error(std::error_code(error.value(), std::system_category()), context, "listen: " + error.message());
    logger().info("{}: listening, segment of {} bytes", context, s.segment.size_bytes());
    s.accept();
}

Host::~Host()
{
    State& s = *state_;
    for (auto& c : s.connections) {
        if (c.joined)
            c.socket.send(protocol::Goodbye {});
        c.handshake.cancel();
        c.socket.close();
    }
    boost::system::error_code ignored;
    s.acceptor.close(ignored);
    ::unlink(s.options.socket_path.c_str());
}

Segment& Host::segment() noexcept { return state_->segment; }

MpscRing& Host::inbox() noexcept { return state_->inbox; }

SpscRing& Host::outbox(std::uint32_t lane) { return state_->outboxes.at(lane); }

std::size_t Host::guest_count() const noexcept
{
    std::size_t joined = 0;
    for (const auto& c : state_->connections)
        joined += c.joined && c.socket.is_open();
    return joined;
}

void Host::grow(std::size_t new_size_bytes)
{
    State& s = *state_;
    s.segment.grow(new_size_bytes);
    const protocol::Grown grown {s.segment.size_bytes(), s.segment.generation()};
    for (auto& c : s.connections)
        if (c.joined)
            if (const auto ec = c.socket.send(grown))
                logger().warn("host {}: grown not sent to '{}': {}", s.options.socket_path.string(), c.info.name,
                    ec.message());
}

} // namespace shmlink
