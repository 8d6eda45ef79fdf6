#include <shmlink/transport/host.hpp>

#include <shmlink/core/error.hpp>
#include <shmlink/core/file_type.hpp>
#include <shmlink/core/log.hpp>
#include <shmlink/transport/frame_socket.hpp>
#include <shmlink/transport/layout.hpp>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <optional>
#include <string>
#include <vector>

namespace shmlink {

using boost::asio::local::stream_protocol;

namespace {

constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
/// How often a guest waiting for a lane asks the inbox's consumer to reap.
constexpr auto kNudgeInterval = std::chrono::milliseconds(5);
/// The token a held lane carries (never 0): random, so that no other local
/// peer can guess it and take the lane held for a guest on its way.
std::uint32_t unguessable_token() noexcept
{
    std::uint32_t token = 0;
    while (token == 0)
        if (::getrandom(&token, sizeof(token), 0) != static_cast<ssize_t>(sizeof(token)))
            token = static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()) | 1;
    return token;
}

/// A connection that has said nothing for this long may give way to a newcomer.
constexpr auto kSilentAge = std::chrono::milliseconds(250);
/// Topics offered at once (docs/protocol.md), in all and by one guest: a
/// guest's offers hold fds in the host, and one guest must not take them all.
constexpr std::size_t kMaxOffers = 64;
constexpr std::size_t kMaxOffersPerGuest = 16;

std::string guest_ring_name(std::uint32_t lane) { return "guest." + std::to_string(lane); }

/// The peer's credentials, or nothing when the kernel would not say (then the peer is refused).
std::optional<PeerCredentials> credentials_of(stream_protocol::socket& socket)
{
    ucred cred {};
    socklen_t length = sizeof(cred);
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0)
        return std::nullopt;
    return PeerCredentials {cred.pid, cred.uid, cred.gid};
}

/// Removes a socket file that no host listens on any more; refuses to take
/// over a live host's path (EADDRINUSE) or to remove something that is not a socket.
void remove_stale_socket(const std::filesystem::path& path, const std::string& context)
{
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return;
    if (!S_ISSOCK(st.st_mode))
        throw Error(std::make_error_code(std::errc::file_exists), context,
            Error::Reason {path.string() + " is " + file_type_name(st.st_mode) + ", not a socket: left alone"});
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    if (!probe)
        throw Error(errno_code(), context, "socket");
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 || errno == EAGAIN)
        throw Error(std::make_error_code(std::errc::address_in_use), context, Error::Reason {"another host listens there"});
    if (errno != ECONNREFUSED)
        throw Error(errno_code(), context, "cannot tell whether the socket there is stale");
    ::unlink(path.c_str()); // nobody listens: a host that died left it
}

/// Writes host.socket (transport/layout.hpp): where this host listens, for
/// `shmlink gc` to find the socket should the host die. Not having it costs
/// only that, so a segment without room for it (a full directory) goes on
/// without it.
void record_socket_path(Segment& segment, const std::filesystem::path& socket_path, const std::string& context)
{
    std::error_code ec;
    const std::string path = std::filesystem::absolute(socket_path, ec).lexically_normal().string();
    if (ec || path.empty() || path.size() > transport::kSocketPathBytes) {
        logger().warn("{}: the socket's absolute path does not fit in {} bytes; not recorded in the segment", context,
            transport::kSocketPathBytes);
        return;
    }
    segment.allocate(transport::kHostSocketName, static_cast<std::uint16_t>(transport::ObjectKind::host_socket),
        transport::kHostSocketVersion, sizeof(transport::HostSocket), 8,
        [&](std::span<std::byte> bytes) {
            auto& record = *reinterpret_cast<transport::HostSocket*>(bytes.data());
            record.path_bytes = static_cast<std::uint32_t>(path.size());
            std::memcpy(record.path, path.data(), path.size()); // the rest stays zero
        },
        ec);
    if (ec)
        logger().warn("{}: the socket's path is not recorded in the segment: {}", context, ec.message());
}

} // namespace

/// Everything the io_context's handlers touch. Handlers hold a weak_ptr to
/// it and a shared_ptr to their connection, so that neither a destroyed Host
/// nor an erased connection is ever touched by a handler that runs later.
struct Host::State : std::enable_shared_from_this<Host::State> {
    /// Where a connection is in its handshake (docs/protocol.md).
    enum class Stage {
        hello,   ///< connected; its hello has not come
        lane,    ///< said hello; waits for a lane of the inbox to come free
        joining, ///< welcomed with a held lane; its joined has not come
        joined,  ///< took its lane: a guest
    };
    struct Connection {
        FrameSocket socket;
        boost::asio::steady_timer handshake;
        GuestInfo info;
        Stage stage = Stage::hello;
        std::uint32_t token = 0; // the held lane's token, while joining
        std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now(); // accepted
        bool closed = false;
    };
    using ConnectionPtr = std::shared_ptr<Connection>;

    State(Host& host, boost::asio::io_context& io, HostOptions options)
        : host(host), io(io), options(std::move(options)), acceptor(io), backoff(io), integrity(io), nudge(io)
    {
    }

    Host* host_ptr() noexcept { return stopped ? nullptr : &host; }

    Host& host;
    boost::asio::io_context& io;
    HostOptions options;
    Segment segment;
    MpscRing inbox;
    std::vector<SpscRing> outboxes;
    stream_protocol::acceptor acceptor;
    boost::asio::steady_timer backoff;
    boost::asio::steady_timer integrity; // the segment file's size, every reap_interval
    boost::asio::steady_timer nudge;     // asks the inbox to reap while a guest waits for a lane
    bool nudging = false;
    std::uint64_t truncations_seen = 0;
    std::uint64_t damage_seen = 0; // the header's damaged_pages plus our own private pages, when last reported
    bool cut_reported = false;     // the file is short and could not be extended back, and on_damage said so
    bool guarded = false;          // a path-backed segment mapped with guard_truncation: its file is checked too
    std::list<ConnectionPtr> connections; // in the order they came
    std::uint64_t next_connection = 1;
    /// A topic offered for guests to find: the segment's fd, held until
    /// whoever offered it leaves (connection 0: the host itself).
    struct Offered {
        std::string name;
        UniqueFd fd;
        std::uint64_t connection = 0;
        std::string by; // for messages
    };
    std::vector<Offered> offers;
    ino_t socket_inode = 0;
    bool stopped = false;

    /// Rewrites what another process wrote over the segment's header page
    /// (the header and the directory) from the host's own copy, and says so;
    /// false when on_damage stopped the host.
    bool repair_header()
    {
        std::string what;
        if (segment.repair_header(what) == 0)
            return true;
        return report(Errc::corrupt_header,
            "another process wrote over the segment's header page (" + what + "); rewritten from the host's copy ("
                + std::to_string(segment.header_repairs()) + " repairs so far)");
    }

    /// Every reap_interval: is the header page as the host wrote it? With a
    /// guarded file: is the file still as long as the mapping, and does
    /// every process still share every page? Any process's SIGBUS guard
    /// may have found out first; either way, say so, once per new damage.
    void check_integrity()
    {
        integrity.expires_after(options.reap_interval);
        integrity.async_wait([weak = weak_from_this()](const boost::system::error_code& error) {
            const auto self = weak.lock();
            if (!self || self->stopped || error)
                return;
            if (self->guarded && !self->check_backing())
                return;
            // After the file's checks: a cut first page is extended back there.
            if (self->repair_header())
                self->check_integrity();
        });
    }

    /// The guarded file's checks; false when on_damage stopped the host.
    bool check_backing()
    {
        // Our own check, and any repair by another process (a guarded guest
        // that touched the cut extent first), counted in the header.
        const std::error_code backing = segment.check_backing();
        const std::string file = "the segment file " + options.segment_path.string();
        if (const std::uint64_t truncations = segment.truncations(); truncations != truncations_seen) {
            truncations_seen = truncations;
            if (!report(Errc::truncated,
                    file + " was truncated by another process; it is extended back to "
                        + std::to_string(segment.size_bytes()) + " bytes, but what was in the cut extent is lost"))
                return false;
        }
        if (backing == Errc::truncated && !cut_reported) {
            cut_reported = true;
            if (!report(Errc::truncated,
                    file + " was truncated by another process and cannot be extended back to "
                        + std::to_string(segment.size_bytes())
                        + " bytes (see the log for why): what was in the cut extent is lost, and a process that"
                          " touches it gets a private page there"))
                return false;
        } else if (backing != Errc::truncated) {
            cut_reported = false;
        }
        const std::uint64_t damage = segment.damaged_pages() + segment.private_pages();
        if (backing == Errc::damaged && damage != damage_seen) {
            damage_seen = damage;
            if (!report(Errc::damaged,
                    file + " lost pages it cannot hold again (a hole or a cut on a full file system, or past a"
                           " file size limit): "
                        + std::to_string(segment.damaged_pages()) + " pages in all processes, "
                        + std::to_string(segment.private_pages())
                        + " in the host, are private zero pages now; what a process writes there no other"
                          " process sees"))
                return false;
        }
        return true;
    }

    /// Logs and calls on_damage; false when that stopped the host.
    bool report(Errc code, const std::string& what)
    {
        logger().error("host {}: {}", options.socket_path.string(), what);
        if (Host* h = host_ptr(); h && h->on_damage)
            h->on_damage(make_error_code(code), what); // last: it may destroy the Host
        return !stopped;
    }

    void accept()
    {
        acceptor.async_wait(stream_protocol::acceptor::wait_read,
            [weak = weak_from_this()](const boost::system::error_code& error) {
                const auto self = weak.lock();
                if (!self || self->stopped || error == boost::asio::error::operation_aborted)
                    return;
                self->accept_one();
            });
    }

    void accept_one()
    {
        // accept4 rather than Asio's accept: the connection must be close-on-exec,
        // or a child the host starts would keep guests from seeing it die.
        const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0 && errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            logger().warn("host {}: accept: {}; retrying in {} ms", options.socket_path.string(), std::strerror(errno),
                kAcceptBackoff.count());
            backoff.expires_after(kAcceptBackoff);
            backoff.async_wait([weak = weak_from_this()](const boost::system::error_code& error) {
                if (const auto self = weak.lock(); self && !error && !self->stopped)
                    self->accept();
            });
            return;
        }
        if (fd >= 0) {
            stream_protocol::socket socket(io);
            boost::system::error_code error;
            socket.assign(stream_protocol(), fd, error);
            if (error) {
                ::close(fd);
                logger().warn("host {}: a connection could not be registered: {}", options.socket_path.string(),
                    error.message());
            } else {
                admit(std::move(socket));
            }
        }
        if (!stopped)
            accept();
    }

    std::size_t count(Stage stage) const noexcept
    {
        return static_cast<std::size_t>(std::count_if(connections.begin(), connections.end(),
            [stage](const ConnectionPtr& c) { return c->stage == stage; }));
    }

    void admit(stream_protocol::socket socket)
    {
        const std::optional<PeerCredentials> peer = credentials_of(socket);
        auto c = std::make_shared<Connection>(Connection {FrameSocket(std::move(socket)), boost::asio::steady_timer(io),
            GuestInfo {next_connection++, peer.value_or(PeerCredentials {}), {}}});
        connections.push_back(c);
        if (!peer) {
            refuse(c, "the kernel would not tell who it is (SO_PEERCRED)");
            return;
        }
        const bool allowed = options.allow ? options.allow(*peer) : peer->uid == ::geteuid();
        if (!allowed) {
            refuse(c, "uid " + std::to_string(peer->uid) + " may not join");
            return;
        }
        // Handshakes are bounded apart from guests. A newcomer beyond the
        // bound pushes out the oldest connection that has been silent for
        // kSilentAge (a guest sends its hello at once), so that silent
        // connections renewed in time keep nobody out for long; a guest that
        // said hello (waiting for a lane, or joining) is never pushed out.
        // Without such a one, the newcomer is refused.
        if (connections.size() - 1 - count(Stage::joined) >= options.max_pending_handshakes) {
            const auto now = std::chrono::steady_clock::now();
            const auto silent = std::find_if(connections.begin(), connections.end(), [&](const ConnectionPtr& p) {
                return p->stage == Stage::hello && now - p->since >= kSilentAge;
            });
            if (silent == connections.end() || *silent == c) {
                refuse(c, std::to_string(options.max_pending_handshakes) + " handshakes are pending already");
                return;
            }
            const ConnectionPtr victim = *silent; // a copy: refuse() erases the element
            const auto silent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - victim->since).count();
            refuse(victim, "silent for " + std::to_string(silent_ms) + " ms while "
                    + std::to_string(options.max_pending_handshakes) + " handshakes were pending");
        }
        c->handshake.expires_after(options.handshake_timeout);
        c->handshake.async_wait([weak = weak_from_this(), c](const boost::system::error_code& error) {
            const auto self = weak.lock();
            if (!self || error || c->closed || c->stage == Stage::joined)
                return;
            if (c->stage == Stage::lane)
                self->refuse(c, "no lane of host.inbox came free within the handshake timeout");
            else
                self->drop(c, c->stage == Stage::hello ? "no hello within the handshake timeout"
                                                       : "did not take its lane within the handshake timeout");
        });
        receive(c);
    }

    void receive(const ConnectionPtr& c)
    {
        c->socket.async_receive([weak = weak_from_this(), c](std::error_code ec, ReceivedFrame received, std::string reason) {
            const auto self = weak.lock();
            if (!self || c->closed || ec == std::errc::operation_canceled)
                return;
            if (ec == Errc::peer_closed) {
                self->drop(c, c->stage == Stage::joined ? "hung up" : "hung up before it joined");
                return;
            }
            if (ec == Errc::protocol_mismatch) // told, so that an older guest can say why
                c->socket.send(protocol::ErrorReport {static_cast<std::uint32_t>(Errc::protocol_mismatch), reason});
            if (ec) {
                self->drop(c, reason.empty() ? ec.message() : reason);
                return;
            }
            const auto* joined = std::get_if<protocol::Joined>(&received.frame);
            if (const auto* hello = std::get_if<protocol::Hello>(&received.frame); hello && c->stage == Stage::hello) {
                self->hello(c, *hello);
            } else if (joined && c->stage == Stage::joining && joined->lane == c->info.lane) {
                if (!self->inbox.taken_held(c->info.lane, c->token)) {
                    self->drop(c, "said joined without taking its lane");
                    return;
                }
                self->joined(c);
            } else if (std::holds_alternative<protocol::Goodbye>(received.frame) && c->stage == Stage::joined) {
                self->drop(c, "said goodbye");
                return;
            } else if (const auto* offer = std::get_if<protocol::Offer>(&received.frame);
                       offer && c->stage == Stage::joined) {
                std::string why;
                const std::error_code ec = self->add_offer(c->info.connection,
                    "guest '" + c->info.name + "' (pid " + std::to_string(c->info.peer.pid) + ")", offer->name,
                    std::move(received.fds.front()), why);
                if (!self->answer(c, ec, why))
                    return;
            } else if (const auto* find = std::get_if<protocol::Find>(&received.frame);
                       find && c->stage == Stage::joined) {
                if (!self->find_topic(c, find->name))
                    return;
            } else if (const auto* join = std::get_if<protocol::Join>(&received.frame);
                       join && c->stage == Stage::joined) {
                if (!self->relay_join(c, join->name, std::move(received.fds.front())))
                    return;
            } else {
                self->drop(c, "sent a frame out of turn");
                return;
            }
            if (!c->closed && !self->stopped)
                self->receive(c);
        });
    }

    void hello(const ConnectionPtr& c, const protocol::Hello& hello)
    {
        c->info.name = hello.name;
        if (count(Stage::joined) + count(Stage::joining) >= options.max_guests)
            // Full, as far as frames read so far tell: a guest may have hung
            // up with its end-of-file still unread (in this same poll). Such
            // a guest is gone, and must not cost the newcomer its place.
            for (const auto& other : std::list(connections))
                if ((other->stage == Stage::joined || other->stage == Stage::joining) && !other->closed
                    && other->socket.hung_up()) {
                    drop(other, "hung up");
                    if (stopped)
                        return;
                }
        if (count(Stage::joined) + count(Stage::joining) >= options.max_guests) {
            refuse(c, "the host has " + std::to_string(options.max_guests) + " guests already");
            return;
        }
        c->stage = Stage::lane;
        offer_lane(c);
    }

    /// Welcomes a connection waiting for a lane when one is free; otherwise
    /// it waits for the inbox's next freed lane (on_lane_freed) or its timeout.
    void offer_lane(const ConnectionPtr& c)
    {
        // The header page first, as at every reap: the welcome comes from the
        // host's copy, but guests of other implementations read the page
        // (docs/protocol.md), and so do guests attaching by path.
        if (!repair_header())
            return;
        const std::uint32_t token = unguessable_token();
        const int lane = inbox.hold_lane(token);
        if (lane < 0) {
            // A lane its guest just left is free once the consumer has found
            // it unlocked and drained it; the lock may go a little after the
            // socket (a process's fds close one by one), so ask again and again.
            inbox.request_reap();
            keep_nudging();
            return;
        }
        // Rebuilt here too, not only when its last guest left: the ring of a
        // free lane is in a file others may write to, and the guest given it
        // must find what the host made, not what was written over it since.
        outboxes[static_cast<std::size_t>(lane)].reinitialize();
        c->info.lane = static_cast<std::uint32_t>(lane);
        c->token = token;
        c->stage = Stage::joining;
        protocol::Welcome frame;
        frame.lane = c->info.lane;
        frame.token = token;
        // From the host's own copy: the guest attaches as told here, and
        // never depends on the header, which other processes can write over.
        SegmentLayout told = segment.layout();
        frame.size_bytes = told.size_bytes;
        frame.max_size_bytes = told.max_size_bytes;
        frame.generation = segment.generation();
        frame.directory = std::move(told.directory);
        std::error_code ec;
        const BorrowedFd fds[] = {segment.fd()};
        if ((ec = c->socket.send(frame, fds)))
            drop(c, "welcome not sent: " + ec.message());
    }

    /// While a connection waits for a lane: a reap request every kNudgeInterval.
    void keep_nudging()
    {
        if (nudging)
            return;
        nudging = true;
        nudge.expires_after(kNudgeInterval);
        nudge.async_wait([weak = weak_from_this()](const boost::system::error_code& error) {
            const auto self = weak.lock();
            if (!self || error || self->stopped)
                return;
            self->nudging = false;
            self->offer_lanes(); // nudges again while one still waits
        });
    }

    /// Offers a lane to every connection that waits for one (the nudge's tick).
    void offer_lanes()
    {
        for (const auto& c : std::list(connections))
            if (!stopped && !c->closed && c->stage == Stage::lane)
                offer_lane(c);
    }

    void joined(const ConnectionPtr& c)
    {
        c->stage = Stage::joined;
        c->handshake.cancel();
        logger().info("host {}: guest '{}' (pid {}) joined on lane {}", options.socket_path.string(), c->info.name,
            c->info.peer.pid, c->info.lane);
        if (Host* h = host_ptr(); h && h->on_join)
            h->on_join(c->info); // last: it may destroy the Host (stopped is then set)
    }

    /// Records an offered topic; an error, with `why`, when it cannot be.
    std::error_code add_offer(std::uint64_t connection, const std::string& by, const std::string& name, UniqueFd fd,
        std::string& why)
    {
        // Kept and passed on, never mapped here nor read: what a guest offers
        // is checked by those that attach it. Only its type is the host's to
        // check, so that nobody is handed a pipe or a socket for a segment.
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) {
            why = "fstat of the fd offered for topic '" + name + "': " + errno_code().message();
            return Errc::not_a_segment; // an answer carries shmlink::Errc values only
        }
        if (!S_ISREG(st.st_mode)) {
            why = "the fd offered for topic '" + name + "' is " + file_type_name(st.st_mode) + ", not a segment's file";
            return Errc::not_a_segment;
        }
        const auto same = std::find_if(offers.begin(), offers.end(), [&](const Offered& o) { return o.name == name; });
        if (same != offers.end()) {
            why = "topic '" + name + "' is offered already, by " + same->by;
            return Errc::name_taken;
        }
        const auto own = static_cast<std::size_t>(std::count_if(offers.begin(), offers.end(),
            [&](const Offered& o) { return o.connection == connection; }));
        if (offers.size() >= kMaxOffers || (connection != 0 && own >= kMaxOffersPerGuest)) {
            why = "the host holds " + std::to_string(offers.size()) + " offered topics (" + std::to_string(own)
                + " of this offerer's); at most " + std::to_string(kMaxOffers) + ", " + std::to_string(kMaxOffersPerGuest)
                + " a guest";
            return Errc::directory_full;
        }
        logger().info("host {}: {} offers topic '{}'", options.socket_path.string(), by, name);
        offers.push_back(Offered {name, std::move(fd), connection, by});
        return {};
    }

    /// Answers an offer (or a find that found nothing); false when the
    /// guest had to be dropped for not reading its socket.
    bool answer(const ConnectionPtr& c, const std::error_code& ec, const std::string& why)
    {
        const protocol::Answer frame {static_cast<std::uint32_t>(ec ? ec.value() : 0), ec ? why : std::string()};
        if (const auto sent = c->socket.send(frame)) {
            drop(c, "cannot be answered (" + sent.message() + "): it stopped reading its socket");
            return false;
        }
        return true;
    }

    /// Answers a find: the segment's fd, or not_found.
    bool find_topic(const ConnectionPtr& c, const std::string& name)
    {
        const auto found = std::find_if(offers.begin(), offers.end(), [&](const Offered& o) { return o.name == name; });
        if (found == offers.end())
            return answer(c, Errc::not_found, "nobody offers topic '" + name + "'");
        const BorrowedFd fds[] = {found->fd};
        if (const auto sent = c->socket.send(protocol::Topic {name}, fds)) {
            drop(c, "cannot be answered (" + sent.message() + "): it stopped reading its socket");
            return false;
        }
        return true;
    }

    /// Passes a subscriber's slot file to the publisher of `name` (an admit
    /// frame to the guest that offered it, or on_topic_join), and answers
    /// the subscriber; false when it had to be dropped.
    bool relay_join(const ConnectionPtr& c, const std::string& name, UniqueFd slot_file)
    {
        const auto found = std::find_if(offers.begin(), offers.end(), [&](const Offered& o) { return o.name == name; });
        if (found == offers.end())
            return answer(c, Errc::not_found, "nobody offers topic '" + name + "'");
        // As for an offer, only the type is the host's to check; the publisher checks the rest.
        struct stat st {};
        if (::fstat(slot_file.get(), &st) != 0 || !S_ISREG(st.st_mode))
            return answer(c, Errc::not_a_segment, "the slot file sent to join topic '" + name + "' is not a file");
        if (found->connection == 0) {
            Host* h = host_ptr();
            if (h == nullptr || !h->on_topic_join)
                return answer(c, Errc::refused, "the host admits no subscriber apart to topic '" + name + "'");
            h->on_topic_join(name, std::move(slot_file));
            return !stopped && answer(c, {}, {});
        }
        const auto publisher = std::find_if(connections.begin(), connections.end(),
            [&](const ConnectionPtr& p) { return p->info.connection == found->connection && !p->closed; });
        if (publisher == connections.end())
            return answer(c, Errc::not_found, "the guest that offers topic '" + name + "' is leaving");
        // Written without waiting: a publisher whose socket is full gets no
        // more joins until it reads it, and the joiner is told so; one guest
        // that joins often cannot have the publisher dropped.
        const BorrowedFd fds[] = {slot_file};
        if (const auto sent = (*publisher)->socket.send(protocol::Admit {name}, fds))
            return answer(c, Errc::timed_out,
                "the publisher of topic '" + name + "' is not reading its socket (" + sent.message() + ")");
        return answer(c, {}, {});
    }

    void refuse(const ConnectionPtr& c, const std::string& why)
    {
        logger().warn("host {}: refused pid {}: {}", options.socket_path.string(), c->info.peer.pid, why);
        // The refusal stays readable in the guest's queue after we close,
        // even when its hello fails against the closed socket.
        c->socket.send(protocol::ErrorReport {static_cast<std::uint32_t>(Errc::refused), why});
        remove(c);
    }

    void drop(const ConnectionPtr& c, const std::string& why)
    {
        if (c->closed)
            return; // a timer and a read can both end one connection
        const bool joined = c->stage == Stage::joined;
        if (joined)
            logger().info("host {}: guest '{}' (pid {}) left: {}", options.socket_path.string(), c->info.name,
                c->info.peer.pid, why);
        else
            logger().warn("host {}: dropped pid {}: {}", options.socket_path.string(), c->info.peer.pid, why);
        remove(c);
        // The guest's lane of the inbox is freed by the inbox's own reap, on
        // the consumer's thread (the kernel dropped the lane's lock when the
        // guest closed its description): ask for it at the consumer's next call.
        inbox.request_reap();
        if (Host* h = host_ptr(); joined && h && h->on_leave)
            h->on_leave(c->info); // last: it may destroy the Host
    }

    /// Closes the connection; handlers still queued for it hold it alive and see it closed.
    void remove(const ConnectionPtr& c)
    {
        // A lane held for a guest that never took it goes back (one it took
        // is freed by the reap once the guest has gone).
        if (c->stage == Stage::joining)
            inbox.unhold_lane(c->info.lane, c->token);
        c->token = 0;
        c->closed = true;
        // Its offers end with it: no guest is handed a topic of one that left.
        std::erase_if(offers, [&](const Offered& o) { return o.connection == c->info.connection; });
        c->handshake.cancel();
        c->socket.close();
        connections.remove(c);
    }
};

Host::Host(boost::asio::io_context& io, HostOptions options)
    : state_(std::make_shared<State>(*this, io, std::move(options)))
{
    State& s = *state_;
    const std::string context = "host " + s.options.socket_path.string();
    if (s.options.socket_path.empty())
        throw Error(Errc::invalid_argument, context, Error::Reason {"the socket path is empty (no guest could reach an unnamed socket)"});
    if (s.options.socket_path.native().size() >= sizeof(sockaddr_un::sun_path))
        throw Error(Errc::invalid_argument, context,
            Error::Reason {"the socket path is " + std::to_string(s.options.socket_path.native().size())
                + " bytes; a Unix socket's path holds at most " + std::to_string(sizeof(sockaddr_un::sun_path) - 1)});
    if (s.options.max_guests == 0 || s.options.max_guests > 64)
        throw Error(Errc::invalid_argument, context, Error::Reason {"max_guests must be 1 to 64"});
    if (s.options.max_pending_handshakes == 0)
        throw Error(Errc::invalid_argument, context, Error::Reason {"max_pending_handshakes must be at least 1"});
    // Before the segment: a live host at this socket keeps its segment file too.
    remove_stale_socket(s.options.socket_path, context);
    s.guarded = s.options.guard_truncation && !s.options.segment_path.empty();
    const SegmentOptions segment_options {.max_size_bytes = s.options.max_segment_bytes,
        .cleanup = Cleanup::unlink_on_close, .take_over_dead = true, .map = {.guard_truncation = s.guarded}};
    s.segment = s.options.segment_path.empty() ? Segment::create_anonymous(s.options.segment_bytes, segment_options)
                                               : Segment::create(s.options.segment_path, s.options.segment_bytes, segment_options);
    MpscOptions inbox_options {.reap_interval = s.options.reap_interval,
        .on_lane_freed = [&s](std::uint32_t lane) {
            // On the consumer's thread, before the lane is offered again (a
            // guest waiting for one finds it at the next nudge): the next
            // guest on it must neither read what was meant for the last one
            // nor find the ring as the last one may have scribbled on it.
            s.outboxes[lane].reinitialize();
        }};
    s.inbox = MpscRing::create(s.segment, "host.inbox", s.options.ring_bytes, s.options.max_guests, inbox_options);
    for (std::uint32_t lane = 0; lane < s.options.max_guests; ++lane)
        s.outboxes.push_back(SpscRing::create(s.segment, guest_ring_name(lane), s.options.ring_bytes));
    record_socket_path(s.segment, s.options.socket_path, context);

    // Made by hand for SOCK_CLOEXEC (Asio's would leak into children), then handed to Asio.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        throw Error(errno_code(), context, "socket");
    boost::system::error_code error;
    s.acceptor.assign(stream_protocol(), fd, error);
    if (error)
        ::close(fd);
    if (!error)
        s.acceptor.bind(stream_protocol::endpoint(s.options.socket_path.string()), error);
    if (!error)
        s.acceptor.listen(boost::asio::socket_base::max_listen_connections, error);
    if (error)
        throw Error(std::error_code(error.value(), std::system_category()), context, "listen on the socket");
    struct stat st {};
    if (::stat(s.options.socket_path.c_str(), &st) == 0)
        s.socket_inode = st.st_ino;
    logger().info("{}: listening, segment of {} bytes", context, s.segment.size_bytes());
    s.accept();
    s.check_integrity();
}

Host::~Host()
{
    State& s = *state_;
    s.stopped = true; // handlers that still run see it and leave everything alone
    for (const auto& c : std::list(s.connections)) {
        if (c->stage == State::Stage::joined)
            c->socket.send(protocol::Goodbye {});
        s.remove(c);
    }
    boost::system::error_code ignored;
    s.backoff.cancel();
    s.integrity.cancel();
    s.nudge.cancel();
    s.acceptor.close(ignored);
    // Only our own socket file: a newer host may have taken the path since.
    struct stat st {};
    if (::stat(s.options.socket_path.c_str(), &st) == 0 && st.st_ino == s.socket_inode)
        ::unlink(s.options.socket_path.c_str());
}

Segment& Host::segment() noexcept { return state_->segment; }

MpscRing& Host::inbox() noexcept { return state_->inbox; }

SpscRing& Host::outbox(std::uint32_t lane)
{
    if (lane >= state_->outboxes.size())
        throw Error(Errc::invalid_argument, "host " + state_->options.socket_path.string(),
            Error::Reason {"outbox(" + std::to_string(lane) + "): the host has lanes 0 to "
                + std::to_string(state_->outboxes.size() - 1)});
    return state_->outboxes[lane];
}

RingStatus Host::send(std::uint32_t lane, std::span<const std::byte> message) noexcept
{
    return lane < state_->outboxes.size() ? state_->outboxes[lane].try_push(message) : RingStatus::corrupt;
}

std::size_t Host::guest_count() const noexcept { return state_->count(State::Stage::joined); }

void Host::offer_topic(Segment& segment, std::string_view name)
{
    State& s = *state_;
    const std::string context = "host " + s.options.socket_path.string() + ": offer topic '" + std::string(name) + "'";
    if (!protocol::topic_name_ok(name))
        throw Error(Errc::invalid_argument, context, Error::Reason {"a topic's name is 1 to 39 bytes, with no NUL"});
    UniqueFd fd(::fcntl(segment.fd().get(), F_DUPFD_CLOEXEC, 0));
    if (!fd)
        throw Error(errno_code(), context, "duplicate the segment's fd");
    std::string why;
    if (const std::error_code ec = s.add_offer(0, "the host", std::string(name), std::move(fd), why))
        throw Error(ec, context, Error::Reason {why});
}

void Host::grow(std::size_t new_size_bytes)
{
    const auto keep = state_; // on_leave, called from drop(), may destroy this Host
    State& s = *keep;
    s.segment.grow(new_size_bytes);
    const protocol::Grown grown {s.segment.size_bytes(), s.segment.generation()};
    for (const auto& c : std::list(s.connections)) {
        if (s.stopped)
            return;
        // Joining guests too: they attached at the welcome's size.
        if ((c->stage == State::Stage::joined || c->stage == State::Stage::joining) && !c->closed)
            if (const auto ec = c->socket.send(grown))
                s.drop(c, "cannot be told of the grow (" + ec.message() + "): it stopped reading its socket");
    }
}

} // namespace shmlink
