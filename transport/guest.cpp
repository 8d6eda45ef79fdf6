#include "transport/guest.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "transport/frame_socket.hpp"

#include <unistd.h>

#include <algorithm>
#include <optional>

namespace shmlink {

namespace {

/// How often a waiting receive() looks at the control socket: the bound on
/// how late a guest learns that its host died.
constexpr auto kWatchInterval = std::chrono::milliseconds(50);

} // namespace

struct Guest::State {
    boost::asio::io_context io; // owns nothing running: the socket needs one to exist
    std::optional<FrameSocket> control;
    Segment segment;
    MpscProducer outbox;
    SpscRing inbox;
    std::error_code host_error;

    /// Takes a lane of host.inbox and opens guest.<lane>.
    void join(const std::string& context)
    {
        outbox = MpscProducer::open(segment, "host.inbox");
        inbox = SpscRing::open(segment, "guest." + std::to_string(outbox.lane()));
        logger().info("{}: joined on lane {}", context, outbox.lane());
    }
};

Guest::Guest(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
Guest::Guest(Guest&&) noexcept = default;
Guest& Guest::operator=(Guest&&) noexcept = default;

Guest::~Guest()
{
    if (state_ && state_->control && state_->control->is_open() && !state_->host_error)
        state_->control->send(protocol::Goodbye {});
}

Guest Guest::connect(const std::filesystem::path& socket_path, const GuestOptions& options)
{
    const std::string context = "guest " + socket_path.string();
    auto state = std::make_unique<State>();
    boost::asio::local::stream_protocol::socket socket(state->io);
    boost::system::error_code error;
    socket.connect(boost::asio::local::stream_protocol::endpoint(socket_path.string()), error);
    if (error)
        throw Error(std::error_code(error.value(), std::system_category()), context, "connect: " + error.message());
    state->control.emplace(std::move(socket));
    if (const auto ec = state->control->send(protocol::Hello {static_cast<std::uint32_t>(::getpid()), options.name}))
        throw Error(ec, context, "hello: " + ec.message());

    ReceivedFrame received;
    std::string reason;
    if (const auto ec = state->control->receive(received, options.timeout, reason))
        throw Error(ec, context, reason.empty() ? "welcome: " + ec.message() : "welcome: " + reason);
    if (const auto* refusal = std::get_if<protocol::ErrorReport>(&received.frame))
        throw Error(Errc::refused, context, "refused: " + refusal->text);
    if (!std::holds_alternative<protocol::Welcome>(received.frame) || received.fds.size() != 1)
        throw Error(Errc::bad_frame, context, "the host answered the hello with something else than a welcome");
    state->segment = Segment::attach(std::move(received.fds.front()));
    state->join(context);
    return Guest(std::move(state));
}

Guest Guest::attach(const std::filesystem::path& segment_path)
{
    auto state = std::make_unique<State>();
    state->segment = Segment::attach(segment_path);
    state->join("guest " + segment_path.string());
    return Guest(std::move(state));
}

Segment& Guest::segment() noexcept { return state_->segment; }
std::uint32_t Guest::lane() const noexcept { return state_->outbox.lane(); }
MpscProducer& Guest::outbox() noexcept { return state_->outbox; }
SpscRing& Guest::inbox() noexcept { return state_->inbox; }

std::error_code Guest::poll()
{
    State& s = *state_;
    if (!s.control || s.host_error)
        return s.host_error;
    for (;;) {
        ReceivedFrame received;
        std::string reason;
        const std::error_code ec = s.control->receive(received, std::chrono::milliseconds(0), reason);
        if (ec == Errc::timed_out)
            return {};
        if (ec) {
            s.host_error = ec;
            logger().warn("guest: the host is gone: {}", reason.empty() ? ec.message() : reason);
            return ec;
        }
        if (std::holds_alternative<protocol::Grown>(received.frame)) {
            s.segment.refresh();
        } else if (std::holds_alternative<protocol::Goodbye>(received.frame)) {
            s.host_error = Errc::peer_closed;
            return s.host_error;
        } else {
            s.host_error = Errc::bad_frame;
            logger().warn("guest: the host sent a frame out of turn");
            return s.host_error;
        }
    }
}

RingStatus Guest::receive(std::span<std::byte> buffer, std::size_t& length, std::chrono::nanoseconds timeout,
    std::error_code& host_error)
{
    const auto deadline = deadline_after(timeout);
    for (;;) {
        if ((host_error = poll()))
            return RingStatus::timed_out;
        const auto slice = std::min<std::chrono::nanoseconds>(kWatchInterval, deadline - std::chrono::steady_clock::now());
        const RingStatus status = state_->inbox.pop(buffer, length, std::max(slice, std::chrono::nanoseconds::zero()));
        if (status != RingStatus::timed_out || std::chrono::steady_clock::now() >= deadline)
            return status;
    }
}

} // namespace shmlink
