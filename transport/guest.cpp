#include <shmlink/transport/guest.hpp>

#include <shmlink/core/error.hpp>
#include <shmlink/core/file_type.hpp>
#include <shmlink/core/log.hpp>
#include <shmlink/transport/frame_socket.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include <algorithm>
#include <deque>
#include <optional>
#include <thread>

namespace shmlink {

namespace {

/// How often a waiting receive() looks at the control socket: the bound on
/// how late a guest learns that its host died.
constexpr auto kWatchInterval = std::chrono::milliseconds(50);
/// How long a guest that attaches by path waits for a free lane.
constexpr auto kLaneWait = std::chrono::seconds(2);
/// Joins of subscribers to this guest's topics (admit frames) kept until
/// take_join(): a publisher that never takes them holds no more fds than this.
constexpr std::size_t kMaxPendingJoins = 64;

/// A frame that answers a guest's request (offer, find).
bool is_answer(const protocol::Frame& frame) noexcept
{
    return std::holds_alternative<protocol::Answer>(frame) || std::holds_alternative<protocol::Topic>(frame);
}

/// ": PATH is a regular file, not a socket" when something else than a
/// socket is at the path, for the message of a failed connect; "" otherwise.
std::string what_is_there(const std::filesystem::path& path)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || S_ISSOCK(st.st_mode))
        return {};
    return ": " + path.string() + " is " + file_type_name(st.st_mode) + ", not a socket";
}

} // namespace

struct Guest::State {
    boost::asio::io_context io; // owns nothing running: the socket needs one to exist
    std::optional<FrameSocket> control;
    Segment segment;
    MpscProducer outbox;
    SpscRing inbox;
    std::error_code host_error;
    std::string context;                  // "guest /run/x.sock", for messages
    std::chrono::milliseconds timeout {}; // GuestOptions::timeout, for requests
    std::uint32_t late_answers = 0;       // answers to requests that timed out, still to come
    std::deque<TopicJoin> joins;          // admit frames not taken yet (take_join())

    /// Handles the control frames that arrived (Guest::poll()).
    std::error_code poll();
    /// What a frame the host sent of its own accord (grown, goodbye) does;
    /// `late` is an answer to a request that timed out, skipped.
    std::error_code follow(ReceivedFrame& received);
    /// Sends a request (offer, find) and waits up to `timeout` for its
    /// answer (topic, answer), following grows meanwhile. The error, with
    /// `why`, when the host answered with one or could not be asked.
    std::error_code request(const protocol::Frame& frame, std::span<const BorrowedFd> fds, ReceivedFrame& reply,
        std::string& why);
    /// request() for the topic `name` (offer, find), throwing
    /// "<context>: <what> '<name>': <why>" on a bad name or a refusal.
    ReceivedFrame ask(const char* what, std::string_view name, const protocol::Frame& frame,
        std::span<const BorrowedFd> fds);

    /// Takes a free lane of host.inbox (a guest joined by path) and opens
    /// guest.<lane>. A lane its last guest just left is free again within
    /// the host's reap interval, so no free lane is worth waiting for until
    /// `deadline`.
    void join(const std::string& context, std::chrono::steady_clock::time_point deadline)
    {
        std::error_code ec;
        while (!(outbox = MpscProducer::open(segment, "host.inbox", ec)).valid()) {
            if (ec != Errc::no_free_lane || std::chrono::steady_clock::now() >= deadline)
                throw Error(ec, context, "take a lane of host.inbox");
            detail::pause_briefly();
        }
        open_inbox(context);
    }

    /// Takes the lane the host's welcome held for us, and opens guest.<lane>.
    void join_held(const std::string& context, const protocol::Welcome& welcome)
    {
        std::error_code ec;
        outbox = MpscProducer::open_held(segment, "host.inbox", welcome.lane, welcome.token, ec);
        if (!outbox.valid())
            throw Error(ec, context, "take lane " + std::to_string(welcome.lane) + " of host.inbox, held for this guest");
        open_inbox(context);
    }

    void open_inbox(const std::string& context)
    {
        std::error_code ec;
        const std::string name = "guest." + std::to_string(outbox.lane());
        inbox = SpscRing::open(segment, name, ec);
        if (!inbox.valid())
            throw Error(ec, context, "open " + name);
        logger().info("{}: joined on lane {}", context, outbox.lane());
    }

    /// A blocking ring call that keeps watching the host meanwhile:
    /// `attempt()` until it answers other than `busy`, with
    /// `wait_slice(slice)` (the ring's own blocking call, which answers
    /// timed_out at the end of its slice) in between, and the control socket
    /// polled every kWatchInterval. A host gone sets `host_error` and ends it
    /// with timed_out at once.
    template <typename Attempt, typename WaitSlice>
    RingStatus watch(RingStatus busy, std::chrono::nanoseconds timeout, std::error_code& host_error,
        Attempt&& attempt, WaitSlice&& wait_slice);
};

Guest::Guest(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
Guest::Guest(Guest&&) noexcept = default;
Guest& Guest::operator=(Guest&&) noexcept = default;

Guest::~Guest()
{
    if (!state_)
        return;
    // The lane first: when the host hears the goodbye, it finds the lane
    // left, and frees it at once for the next guest.
    state_->inbox = SpscRing();
    state_->outbox = MpscProducer();
    if (state_->control && state_->control->is_open() && !state_->host_error)
        state_->control->send(protocol::Goodbye {});
}

Guest Guest::connect(const std::filesystem::path& socket_path, const GuestOptions& options)
{
    const std::string context = "guest " + socket_path.string();
    const auto deadline = deadline_after(options.timeout);
    auto state = std::make_unique<State>();
    state->context = context;
    state->timeout = options.timeout;
    // Close-on-exec (a child of ours must not keep the host's connection
    // alive) and non-blocking: a host whose backlog is full makes connect()
    // answer EAGAIN, which we retry until the timeout rather than block.
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        throw Error(errno_code(), context, "socket");
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    if (socket_path.empty())
        throw Error(Errc::invalid_argument, context, Error::Reason {"the socket path is empty"});
    if (socket_path.native().size() >= sizeof(address.sun_path))
        throw Error(Errc::invalid_argument, context,
            Error::Reason {"the socket path is " + std::to_string(socket_path.native().size())
                + " bytes; a Unix socket's path holds at most " + std::to_string(sizeof(address.sun_path) - 1)});
    std::strncpy(address.sun_path, socket_path.c_str(), sizeof(address.sun_path) - 1);
    while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        const int error = errno;
        const bool no_host = error == ENOENT || error == ECONNREFUSED;
        if (error != EAGAIN && error != EINTR && !(no_host && options.wait_for_host))
            throw Error(std::error_code(error, std::system_category()), context, "connect" + what_is_there(socket_path));
        if (std::chrono::steady_clock::now() >= deadline)
            throw Error(Errc::timed_out, context,
                Error::Reason {no_host ? std::string("connect: no host came: ") + std::strerror(error)
                                       : "connect: the host's backlog stayed full"});
        if (no_host)
            std::this_thread::sleep_for(std::chrono::milliseconds(10)); // a host starting takes milliseconds
        else
            detail::pause_briefly();
    }
    try {
        // Asio makes its reactor (an epoll fd, an eventfd) with the first socket, and throws its own errors.
        boost::asio::local::stream_protocol::socket socket(state->io);
        socket.assign(boost::asio::local::stream_protocol(), fd.get());
        static_cast<void>(fd.release()); // the Asio socket owns it now
        state->control.emplace(std::move(socket));
    } catch (const boost::system::system_error& e) {
        throw Error(std::error_code(e.code().value(), std::system_category()), context, "register the socket");
    }
    // A host that refuses us may close before our hello is out: its reason
    // is still in our receive queue, so read it even when the hello fails.
    const auto sent = state->control->send(protocol::Hello {static_cast<std::uint32_t>(::getpid()), options.name});
    if (sent && sent != std::errc::broken_pipe && sent != std::errc::connection_reset)
        throw Error(sent, context, "hello");

    ReceivedFrame received;
    std::string reason;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (const auto ec = state->control->receive(received, std::max(left, std::chrono::milliseconds(0)), reason)) {
        if (sent)
            throw Error(sent, context, "hello");
        throw Error(ec, context, reason.empty() ? "welcome: " + ec.message() : "welcome: " + reason);
    }
    if (const auto* refusal = std::get_if<protocol::ErrorReport>(&received.frame)) {
        if (refusal->code == static_cast<std::uint32_t>(Errc::protocol_mismatch))
            throw Error(Errc::protocol_mismatch, context, Error::Reason {"the host speaks another protocol: " + refusal->text});
        throw Error(Errc::refused, context, Error::Reason {"refused: " + refusal->text});
    }
    const auto* welcome = std::get_if<protocol::Welcome>(&received.frame);
    if (welcome == nullptr || received.fds.size() != 1)
        throw Error(Errc::bad_frame, context, Error::Reason {"the host answered the hello with something else than a welcome"});
    // Guarded: another guest of a path-backed host could truncate the file under us.
    // As the welcome describes it, not as its header says: another process
    // may have written over the header, and the host's word is the truth.
    state->segment = Segment::attach_as_told(std::move(received.fds.front()),
        SegmentLayout {welcome->size_bytes, welcome->max_size_bytes, welcome->directory},
        {.map = {.guard_truncation = true}});
    state->join_held(context, *welcome);
    // Only now is this guest one for the host (on_join): it holds its lane and its rings.
    if (const auto ec = state->control->send(protocol::Joined {welcome->lane}))
        throw Error(ec, context, "joined");
    return Guest(std::move(state));
}

namespace {

/// The error_code form of a throwing call: its result, or `failed` with
/// `ec` set to why it threw.
template <typename Result, typename Call>
Result into_error_code(std::error_code& ec, Result failed, Call&& call) noexcept
{
    try {
        ec.clear();
        return call();
    } catch (const std::system_error& e) {
        ec = e.code();
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
    } catch (const std::exception&) {
        ec = std::make_error_code(std::errc::io_error);
    }
    return failed;
}

} // namespace

/// The error_code form of a throwing join.
template <typename Join>
Guest Guest::or_error(std::error_code& ec, Join&& join) noexcept
{
    return into_error_code(ec, Guest(nullptr), std::forward<Join>(join));
}

Guest Guest::connect(const std::filesystem::path& socket_path, const GuestOptions& options,
    std::error_code& ec) noexcept
{
    return or_error(ec, [&] { return connect(socket_path, options); });
}

Guest Guest::attach(const std::filesystem::path& segment_path, std::error_code& ec) noexcept
{
    return or_error(ec, [&] { return attach(segment_path); });
}

Guest Guest::attach(const std::filesystem::path& segment_path)
{
    auto state = std::make_unique<State>();
    state->context = "guest " + segment_path.string();
    state->segment = Segment::attach(segment_path, {.map = {.guard_truncation = true}});
    state->join(state->context, deadline_after(kLaneWait));
    return Guest(std::move(state));
}

Guest::State& Guest::state() const
{
    if (!state_)
        throw Error(std::make_error_code(std::errc::not_connected), "guest",
            "this Guest is not joined (moved from, or its connect or attach failed)");
    return *state_;
}

Segment& Guest::segment() { return state().segment; }
std::uint32_t Guest::lane() const { return state().outbox.lane(); }
MpscProducer& Guest::outbox() { return state().outbox; }
SpscRing& Guest::inbox() { return state().inbox; }

std::error_code Guest::poll()
{
    if (!state_)
        return std::make_error_code(std::errc::not_connected);
    return state_->poll();
}

std::error_code Guest::State::poll()
{
    if (!control || host_error)
        return host_error;
    for (;;) {
        ReceivedFrame received;
        std::string reason;
        const std::error_code ec = control->receive(received, std::chrono::milliseconds(0), reason);
        if (ec == Errc::timed_out)
            return {};
        if (ec) {
            host_error = ec;
            logger().warn("guest: the host is gone: {}", reason.empty() ? ec.message() : reason);
            return ec;
        }
        if (const auto followed = follow(received))
            return followed;
    }
}

std::error_code Guest::State::follow(ReceivedFrame& received)
{
    const protocol::Frame& frame = received.frame;
    if (const auto* admit = std::get_if<protocol::Admit>(&frame)) {
        if (joins.size() >= kMaxPendingJoins) {
            logger().warn("guest: {} joins wait to be taken; a subscriber's join to topic '{}' is dropped",
                joins.size(), admit->name); // its slot file is closed: it is never admitted
            return {};
        }
        joins.push_back(TopicJoin {admit->name, std::move(received.fds.front())});
        return {};
    }
    if (const auto* grown = std::get_if<protocol::Grown>(&frame)) {
        std::error_code refresh_error;
        segment.refresh_to(grown->size_bytes, refresh_error); // the host's word, not the header's
        if (refresh_error) {
            host_error = refresh_error;
            logger().warn("guest: cannot follow the host's grow: {}", refresh_error.message());
        }
        return refresh_error;
    }
    if (std::holds_alternative<protocol::Goodbye>(frame)) {
        host_error = Errc::peer_closed;
        return host_error;
    }
    if (is_answer(frame) && late_answers > 0) {
        --late_answers; // to a request that gave up waiting; its fd, if any, is closed with it
        return {};
    }
    host_error = Errc::bad_frame;
    logger().warn("guest: the host sent a frame out of turn");
    return host_error;
}

std::error_code Guest::State::request(const protocol::Frame& frame, std::span<const BorrowedFd> fds,
    ReceivedFrame& reply, std::string& why)
{
    if (!control) {
        why = "joined by path: there is no socket to the host";
        return std::make_error_code(std::errc::not_connected);
    }
    if (host_error) {
        why = "the host is gone";
        return host_error;
    }
    if (const auto sent = control->send(frame, fds)) {
        why = "send the request: " + sent.message();
        return sent;
    }
    const auto deadline = deadline_after(timeout);
    for (;;) {
        ReceivedFrame received;
        std::string reason;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        const std::error_code ec = control->receive(received, std::max(left, std::chrono::milliseconds(0)), reason);
        if (ec == Errc::timed_out) {
            ++late_answers;
            why = "no answer within " + std::to_string(timeout.count()) + " ms";
            return ec;
        }
        if (ec) {
            host_error = ec;
            why = reason.empty() ? "the host is gone" : reason;
            return ec;
        }
        if (is_answer(received.frame) && late_answers == 0) {
            if (const auto* answer = std::get_if<protocol::Answer>(&received.frame); answer && answer->code != 0) {
                why = answer->text;
                return make_error_code(static_cast<Errc>(answer->code));
            }
            reply = std::move(received);
            return {};
        }
        if (const auto followed = follow(received)) {
            why = "the host is gone";
            return followed;
        }
    }
}

ReceivedFrame Guest::State::ask(const char* what, std::string_view name, const protocol::Frame& frame,
    std::span<const BorrowedFd> fds)
{
    const std::string doing = std::string(what) + " '" + std::string(name) + "'";
    if (!protocol::topic_name_ok(name))
        throw Error(Errc::invalid_argument, context, Error::Reason {doing + ": a topic's name is 1 to 39 bytes, with no NUL"});
    ReceivedFrame reply;
    std::string why;
    if (const auto ec = request(frame, fds, reply, why))
        throw Error(ec, context, Error::Reason {doing + ": " + why});
    return reply;
}

void Guest::offer_topic(Segment& segment, std::string_view name)
{
    const BorrowedFd fds[] = {segment.fd()};
    const ReceivedFrame reply = state().ask("offer topic", name, protocol::Offer {std::string(name)}, fds);
    if (!std::holds_alternative<protocol::Answer>(reply.frame))
        throw Error(Errc::bad_frame, state_->context,
            Error::Reason {"offer topic '" + std::string(name) + "': the host answered an offer with a topic"});
}

void Guest::offer_topic(Segment& segment, std::string_view name, std::error_code& ec) noexcept
{
    into_error_code(ec, false, [&] {
        offer_topic(segment, name);
        return true;
    });
}

Segment Guest::find_topic(std::string_view name)
{
    ReceivedFrame reply = state().ask("find topic", name, protocol::Find {std::string(name)}, {});
    const std::string doing = "find topic '" + std::string(name) + "'";
    const auto* topic = std::get_if<protocol::Topic>(&reply.frame);
    if (topic == nullptr || topic->name != name || reply.fds.size() != 1)
        throw Error(Errc::bad_frame, state_->context, Error::Reason {doing + ": the host answered with another topic or none"});
    // Checked as any attach is: the offering guest wrote its header, and may
    // cut its file under us.
    // A segment its creator sealed against its peers' writes
    // (SegmentOptions::peers_read_only) is attached read-only: a subscriber
    // of it keeps its slot apart (SubscriberOptions::own_slot).
    const bool read_only = write_sealed(reply.fds.front());
    std::error_code ec;
    Segment segment = Segment::attach(std::move(reply.fds.front()),
        {.read_only = read_only, .map = {.guard_truncation = !read_only}}, ec);
    if (ec)
        throw Error(ec, state_->context, doing + ": attach the segment the host passed");
    return segment;
}

Segment Guest::find_topic(std::string_view name, std::error_code& ec) noexcept
{
    return into_error_code(ec, Segment(), [&] { return find_topic(name); });
}

void Guest::join_topic(std::string_view name, UniqueFd slot_file)
{
    const BorrowedFd fds[] = {slot_file};
    const ReceivedFrame reply = state().ask("join topic", name, protocol::Join {std::string(name)}, fds);
    if (!std::holds_alternative<protocol::Answer>(reply.frame))
        throw Error(Errc::bad_frame, state_->context,
            Error::Reason {"join topic '" + std::string(name) + "': the host answered a join with a topic"});
}

void Guest::join_topic(std::string_view name, UniqueFd slot_file, std::error_code& ec) noexcept
{
    into_error_code(ec, false, [&] {
        join_topic(name, std::move(slot_file));
        return true;
    });
}

std::optional<TopicJoin> Guest::take_join()
{
    State& s = state();
    if (s.joins.empty()) {
        (void)s.poll(); // what arrived since; an error stays in poll()'s answer
        if (s.joins.empty())
            return std::nullopt;
    }
    TopicJoin join = std::move(s.joins.front());
    s.joins.pop_front();
    return join;
}

template <typename Attempt, typename WaitSlice>
RingStatus Guest::State::watch(RingStatus busy, std::chrono::nanoseconds timeout, std::error_code& host_error,
    Attempt&& attempt, WaitSlice&& wait_slice)
{
    // The ring first: a message (or room) that is there costs no syscall,
    // even when the host has gone since.
    host_error.clear();
    const RingStatus first = attempt();
    if (first != busy)
        return first;
    const auto deadline = deadline_after(timeout);
    for (;;) {
        if ((host_error = poll()))
            return RingStatus::timed_out;
        const auto slice = std::min<std::chrono::nanoseconds>(kWatchInterval, deadline - std::chrono::steady_clock::now());
        const RingStatus status = wait_slice(std::max(slice, std::chrono::nanoseconds::zero()));
        if (status != RingStatus::timed_out || std::chrono::steady_clock::now() >= deadline)
            return status;
    }
}

RingStatus Guest::receive(std::span<std::byte> buffer, std::size_t& length, std::chrono::nanoseconds timeout,
    std::error_code& host_error)
{
    if (!state_) {
        host_error = std::make_error_code(std::errc::not_connected);
        return RingStatus::corrupt;
    }
    SpscRing& ring = state_->inbox;
    return state_->watch(RingStatus::empty, timeout, host_error, [&] { return ring.try_pop(buffer, length); },
        [&](std::chrono::nanoseconds slice) { return ring.pop(buffer, length, slice); });
}

RingStatus Guest::send(std::span<const std::byte> message, std::chrono::nanoseconds timeout, std::error_code& host_error)
{
    if (!state_) {
        host_error = std::make_error_code(std::errc::not_connected);
        return RingStatus::corrupt;
    }
    MpscProducer& ring = state_->outbox;
    return state_->watch(RingStatus::full, timeout, host_error, [&] { return ring.try_push(message); },
        [&](std::chrono::nanoseconds slice) { return ring.push(message, slice); });
}

} // namespace shmlink
