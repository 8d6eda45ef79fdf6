// Test helper that plays a host or a guest of transport/ in its own process
// and prints one line per answer ("ok ..." or "error ..."):
//   endpoint host SOCKET SEGMENT|-       an echo host (a memfd segment for "-"); prints "ready";
//                                        reads "grow BYTES", "grow-loop STEP COUNT" (COUNT grows
//                                        by STEP, back to back), "guests" and "quit" on stdin
//   endpoint guest SOCKET NAME COUNT     joins through the socket, sends COUNT messages and
//                                        checks each echo; "ok lane=L echoed=N generation=G size=S"
//   endpoint path-guest SEGMENT COUNT    the same, joined by the segment's path
//   endpoint stepped-guest SOCKET        joins through the socket, prints "ok lane=L", then for each
//                                        line "echo N" on stdin does as guest does with N messages,
//                                        and answers as it does; ends at the end of stdin
//   endpoint wait-host SOCKET            joins, then waits for a message until the host is gone;
//                                        "ok host=<error> waited_ms=T"
//   endpoint truncate SOCKET BYTES       joins, then truncates the segment's file to BYTES through
//                                        the fd it was given; "ok truncated" or "error <errno>"
//   endpoint soak-guest SOCKET ID COUNTER   joins, then sends tagged messages (ID, seq) until killed
//                                        or the host goes; after each push stores seq + 1 in the
//                                        8-byte file COUNTER, so that its committed count
//                                        survives a SIGKILL
//   endpoint stuck-guest SOCKET COUNT    joins (waiting for its host), sends COUNT messages and never reads an echo;
//                                        prints "ok sent" and then waits until killed
//   endpoint scribble SOCKET             joins, writes garbage over the fixed fields of its
//                                        own rings (guest.<lane>'s capacity, the inbox's lane
//                                        capacity and count) once, and exits; "ok lane=L"
//   endpoint linger-guest SOCKET MS      joins, then exits leaving a child that holds the
//                                        lane's lock (not the socket) for MS more milliseconds:
//                                        the host hears the hang-up before the lane is free
//   endpoint send-host SOCKET            joins, then sends (never reading) until a send fails;
//                                        "ok status=S host=<error> waited_ms=T" (T: the last send)
//   endpoint nofile-guest SOCKET         joins once, then again with its open-file limit lower each
//                                        time; "ok <the error of the first try whose passed fd
//                                        the kernel dropped>" or "error ..."
//   endpoint idle-guest SOCKET|--path SEGMENT
//                                        joins through the socket (or by the segment's path), prints
//                                        "ok lane=L", sends one message, then stays until a line (or
//                                        the end) on stdin
//   endpoint toucher SEGMENT             attaches by path, prints "attached", then refreshes and
//                                        reads every page it has mapped, over and over, until the
//                                        creator is gone; "ok size=S generation=G passes=P"
//   endpoint guarded-toucher SEGMENT     the same with MapOptions::guard_truncation, until a line
//                                        (or the end) on stdin; "ok passes=P repairs=R private=N"
//   endpoint spoil SEGMENT punch|truncate BYTES FILLER
//                                        opens the file by path and punches a hole of one page at
//                                        offset BYTES (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), or
//                                        truncates it to BYTES; then, unless FILLER is "-", writes the
//                                        file FILLER until its file system is full;
//                                        "ok filled=F" or "error <what>: <errno>"
//   endpoint topic-publisher SOCKET TOPIC COUNT [apart N]
//                                        joins, creates a memfd segment of its own with the topic TOPIC
//                                        in it and offers it (Guest::offer_topic); "ok offered"; on the
//                                        line "go" publishes COUNT samples (tests/support/samples.hpp),
//                                        "ok published=N extents=E"; then leaves at the end of stdin.
//                                        With "apart N": the segment is sealed for its peers
//                                        (peers_read_only), and after "go" it admits the first N joins
//                                        (Guest::take_join) before it publishes
//   endpoint topic-subscriber SOCKET TOPIC [apart]
//                                        joins, finds TOPIC (Guest::find_topic), subscribes (blocking
//                                        its publisher), "ok joined slot=S read_only=0|1", takes and
//                                        checks every sample until the publisher is gone, and prints
//                                        take_all()'s line; "error <what>" when it cannot find or join
//                                        the topic. With "apart": with a slot of its own, sent to the
//                                        publisher through the host (Guest::join_topic)
//   endpoint topic-offers SOCKET         joins, then offers and finds what must be refused: the same
//                                        name twice, a name nobody offers, and (by a raw frame on its
//                                        socket) a pipe for a segment; "ok twice=<errc> missing=<errc>
//                                        pipe=<errc>" with each refusal's shmlink::Errc value
#include <shmlink/transport/guest.hpp>
#include <shmlink/transport/host.hpp>

#include "tests/support/leaks.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/samples.hpp"
#include "tests/support/take_all.hpp"

#include <shmlink/ipc/publisher.hpp>
#include <shmlink/transport/fd_socket.hpp>
#include <shmlink/transport/protocol.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;

namespace {

/// Echoes every message back to the lane it came from, and obeys stdin.
int run_host(const std::string& socket_path, const std::string& segment_path)
{
    boost::asio::io_context io;
    Host host(io, {.socket_path = socket_path, .segment_path = segment_path == "-" ? "" : segment_path});
    std::printf("ready\n");
    std::fflush(stdout);
    std::string line;
    for (;;) {
        io.poll();
        const std::size_t echoed = host.inbox().consume(
            [&](std::uint32_t lane, std::span<const std::byte> bytes) { host.outbox(lane).push(bytes, 1s); }, 256);
        pollfd in {STDIN_FILENO, POLLIN, 0};
        if (::poll(&in, 1, echoed == 0 ? 1 : 0) > 0) {
            if (!std::getline(std::cin, line) || line == "quit")
                return 0;
            if (line.rfind("grow ", 0) == 0) {
                host.grow(std::strtoull(line.c_str() + 5, nullptr, 10));
                std::printf("ok generation=%llu size=%zu\n", static_cast<unsigned long long>(host.segment().generation()),
                    host.segment().size_bytes());
            } else if (line.rfind("grow-loop ", 0) == 0) {
                char* end = nullptr;
                const auto step = std::strtoull(line.c_str() + 10, &end, 10);
                const auto count = std::strtoull(end, nullptr, 10);
                for (std::uint64_t i = 0; i < count; ++i) {
                    host.grow(host.segment().size_bytes() + step);
                    io.poll(); // the grown notices go out as they would
                }
                std::printf("ok generation=%llu size=%zu\n", static_cast<unsigned long long>(host.segment().generation()),
                    host.segment().size_bytes());
            } else if (line == "guests") {
                std::printf("ok guests=%zu\n", host.guest_count());
            } else {
                std::printf("error unknown command\n");
            }
            std::fflush(stdout);
        }
    }
}

/// Sends `count` messages and checks that each comes back intact.
int echo_loop(Guest& guest, std::uint64_t count)
{
    std::vector<std::byte> message(8 + 512);
    std::vector<std::byte> reply(8 + 512);
    const std::uint64_t id = 1000 + guest.lane();
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        const auto length = test::make_tagged_message(id, seq, 512, message);
        if (const auto status = guest.outbox().push(std::span(message).first(length), 10s); status != RingStatus::ok) {
            std::printf("error push %llu: %s\n", static_cast<unsigned long long>(seq), to_string(status));
            return 1;
        }
        std::size_t got = 0;
        std::error_code host_error;
        if (const auto status = guest.receive(reply, got, 10s, host_error); status != RingStatus::ok) {
            std::printf("error echo %llu: %s %s (lane=%u generation=%llu size=%zu)\n", static_cast<unsigned long long>(seq),
                to_string(status), host_error.message().c_str(), guest.lane(),
                static_cast<unsigned long long>(guest.segment().generation()), guest.segment().size_bytes());
            return 1;
        }
        if (got != length || std::memcmp(reply.data(), message.data(), length) != 0) {
            std::printf("error echo %llu differs\n", static_cast<unsigned long long>(seq));
            return 1;
        }
    }
    guest.poll(); // handles the grown notices still queued: no refresh() of our own
    std::printf("ok lane=%u echoed=%llu generation=%llu size=%zu\n", guest.lane(), static_cast<unsigned long long>(count),
        static_cast<unsigned long long>(guest.segment().generation()), guest.segment().size_bytes());
    return 0;
}

/// Joins, then echoes on the test's word: "echo N" runs echo_loop(N).
int stepped_guest(const std::string& socket_path)
{
    Guest guest = Guest::connect(socket_path, {.name = "stepped"});
    std::printf("ok lane=%u\n", guest.lane());
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.rfind("echo ", 0) != 0) {
            std::printf("error unknown command\n");
            return 1;
        }
        const int status = echo_loop(guest, std::strtoull(line.c_str() + 5, nullptr, 10));
        std::fflush(stdout);
        if (status != 0)
            return status;
    }
    return 0;
}

int wait_host(const std::string& socket_path)
{
    Guest guest = Guest::connect(socket_path, {.name = "waiter"});
    std::printf("joined lane=%u\n", guest.lane());
    std::fflush(stdout);
    std::byte buffer[64];
    std::size_t length = 0;
    std::error_code host_error;
    const auto start = std::chrono::steady_clock::now();
    const auto status = guest.receive(buffer, length, 60s, host_error);
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    std::printf("ok status=%s host=%s waited_ms=%lld\n", to_string(status), host_error ? host_error.message().c_str() : "alive",
        static_cast<long long>(waited.count()));
    return 0;
}

int soak_guest(const std::string& socket_path, std::uint64_t id, const std::string& counter_path)
{
    const int fd = ::open(counter_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, 8) != 0)
        return 1;
    void* mapped = ::mmap(nullptr, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (mapped == MAP_FAILED)
        return 1;
    auto& committed = *static_cast<std::uint64_t*>(mapped);
    Guest guest = Guest::connect(socket_path, {.name = "soak-" + std::to_string(id), .timeout = 10s});
    std::vector<std::byte> message(8 + 512);
    std::error_code host_error;
    for (std::uint64_t seq = 0;; ++seq) {
        const auto length = test::make_tagged_message(id, seq, 512, message); // as test::Tally reads them
        const RingStatus status = guest.send(std::span(message).first(length), std::chrono::hours(1), host_error);
        if (host_error) // the host is gone
            return 0;
        if (status != RingStatus::ok)
            return 1;
        std::atomic_ref(committed).store(seq + 1, std::memory_order_relaxed);
        if (seq % 64 == 0 && guest.poll()) // grown notices; the host's departure
            return 0;
    }
}

int stuck_guest(const std::string& socket_path, std::uint64_t count)
{
    Guest guest = Guest::connect(socket_path, {.name = "stuck", .timeout = 10s, .wait_for_host = true}); // started with its host
    std::vector<std::byte> message(24);
    std::error_code host_error;
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        const auto length = test::make_tagged_message(99, seq, 16, message);
        if (const auto status = guest.send(std::span(message).first(length), 10s, host_error); status != RingStatus::ok) {
            std::printf("error send %llu: %s\n", static_cast<unsigned long long>(seq), to_string(status));
            return 1;
        }
    }
    std::printf("ok sent\n");
    std::fflush(stdout);
    for (;;)
        ::pause();
}

int scribble(const std::string& socket_path)
{
    Guest guest = Guest::connect(socket_path, {.name = "scribbler"});
    const std::uint32_t lane = guest.lane();
    Segment& segment = guest.segment();
    const ObjectInfo ring = segment.find("guest." + std::to_string(lane));
    const ObjectInfo inbox = segment.find("host.inbox");
    // SpscRingControl::capacity_bytes at 0; MpscRingControl::lane_count at 0 and
    // lane_capacity_bytes at 8 (docs/layout.md).
    const std::uint64_t huge = std::uint64_t {1} << 30;
    const std::uint32_t lanes = 63;
    if (segment.write_at(ring.offset, std::as_bytes(std::span(&huge, 1)))
        || segment.write_at(inbox.offset, std::as_bytes(std::span(&lanes, 1)))
        || segment.write_at(inbox.offset + 8, std::as_bytes(std::span(&huge, 1)))) {
        std::printf("error write\n");
        return 1;
    }
    std::printf("ok lane=%u\n", lane);
    return 0;
}

int linger_guest(const std::string& socket_path, int linger_ms)
{
    Guest guest = Guest::connect(socket_path, {.name = "linger"});
    std::printf("joined lane=%u\n", guest.lane());
    std::fflush(stdout);
    int closed[2];
    if (::pipe2(closed, O_CLOEXEC) != 0)
        return 1;
    if (::fork() == 0) {
        // The child keeps every fd but the sockets: the lane's lock lives on.
        for (int fd = 3; fd < 1024; ++fd) {
            struct stat st {};
            if (::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
                ::close(fd);
        }
        ::close(STDOUT_FILENO); // the test reads our parent's output to its end
        const char done = 1;
        if (::write(closed[1], &done, 1) != 1)
            ::_exit(1);
        ::usleep(static_cast<useconds_t>(linger_ms) * 1000);
        ::_exit(0);
    }
    // Gone only once the child has closed its copy of the socket: until then
    // the host could not hear the hang-up, which the test means it to hear.
    ::close(closed[1]);
    char done = 0;
    while (::read(closed[0], &done, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0); // no goodbye, no leave: as a process that dies
}

int send_host(const std::string& socket_path)
{
    Guest guest = Guest::connect(socket_path, {.name = "sender"});
    std::printf("joined lane=%u\n", guest.lane());
    std::fflush(stdout);
    std::vector<std::byte> message(512);
    std::error_code host_error;
    for (;;) {
        const auto start = std::chrono::steady_clock::now();
        const RingStatus status = guest.send(message, 60s, host_error);
        const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        if (status != RingStatus::ok) {
            std::printf("ok status=%s host=%s waited_ms=%lld\n", to_string(status),
                host_error ? host_error.message().c_str() : "alive", static_cast<long long>(waited.count()));
            return 0;
        }
    }
}

int topic_publisher(const std::string& socket_path, const std::string& topic, std::uint64_t count, int apart)
{
    Guest guest = Guest::connect(socket_path, {.name = "publisher"});
    Segment own = Segment::create_anonymous(std::size_t {1} << 20,
        {.max_size_bytes = std::size_t {256} << 20, .peers_read_only = apart > 0});
    Publisher<> publisher = Publisher<>::create(own, topic);
    guest.offer_topic(own, topic);
    std::printf("ok offered\n");
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line) || line != "go")
        return 2;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (int admitted = 0; admitted < apart;) {
        if (std::optional<TopicJoin> join = guest.take_join()) {
            if (join->topic != topic) {
                std::printf("error join of topic '%s'\n", join->topic.c_str());
                return 1;
            }
            (void)publisher.admit(std::move(join->slot_file));
            ++admitted;
        } else if (std::chrono::steady_clock::now() > deadline) {
            std::printf("error admitted %d of %d\n", admitted, apart);
            return 1;
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        Loan<> loan = publisher.loan(test::sample_size(seq));
        if (!loan) {
            std::printf("error loan %s\n", to_string(loan.status()));
            return 1;
        }
        test::fill_sample(loan.bytes(), seq);
        // timed_out: a subscriber starved past the block timeout missed it, counted in its missed.
        if (const TopicStatus status = publisher.publish(std::move(loan)); status != TopicStatus::ok
            && status != TopicStatus::timed_out) {
            std::printf("error publish %s\n", to_string(status));
            return 1;
        }
    }
    std::printf("ok published=%llu extents=%llu\n", static_cast<unsigned long long>(count),
        static_cast<unsigned long long>(publisher.stats().extents));
    std::fflush(stdout);
    while (std::getline(std::cin, line)) {
    }
    return 0;
}

int topic_subscriber(const std::string& socket_path, const std::string& topic, bool apart)
{
    Guest guest = Guest::connect(socket_path, {.name = "subscriber"});
    Segment segment;
    Subscriber<> subscriber;
    try {
        segment = guest.find_topic(topic);
        subscriber = Subscriber<>::open(segment, topic, {.overflow = Overflow::block_publisher, .own_slot = apart});
        if (apart)
            guest.join_topic(topic, subscriber.share_slot());
    } catch (const Error& e) {
        std::printf("error %s\n", e.what());
        return 3;
    }
    std::printf("ok joined slot=%u read_only=%d\n", subscriber.slot(), segment.is_writable() ? 0 : 1);
    std::fflush(stdout);
    const test::TakeAll seen = test::take_all(subscriber, segment);
    std::printf("%s\n", seen.line.c_str());
    return seen.ok ? 0 : 1;
}

/// The code of the Error that `call` throws; 0 when it throws none.
template <typename Call>
int refusal(Call&& call)
{
    try {
        call();
    } catch (const Error& e) {
        return e.code().value();
    }
    return 0;
}

int topic_offers(const std::string& socket_path)
{
    Guest guest = Guest::connect(socket_path, {.name = "offers"});
    Segment own = Segment::create_anonymous(std::size_t {1} << 20);
    Publisher<> publisher = Publisher<>::create(own, "t");
    guest.offer_topic(own, "t");
    const int twice = refusal([&] { guest.offer_topic(own, "t"); });
    const int missing = refusal([&] { (void)guest.find_topic("nobody"); });
    // A hostile guest's offer of a pipe, written past the Guest onto its
    // socket (the only one this process has): the host must refuse it, not
    // hand it to another guest as a segment.
    int socket_fd = -1;
    if (DIR* fds = ::opendir("/proc/self/fd")) {
        while (const dirent* entry = ::readdir(fds)) {
            struct stat st {};
            const int fd = std::atoi(entry->d_name);
            if (entry->d_name[0] != '.' && fd != ::dirfd(fds) && ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
                socket_fd = fd;
        }
        ::closedir(fds);
    }
    int pipe_fds[2];
    if (socket_fd < 0 || ::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        std::printf("error no socket or pipe\n");
        return 1;
    }
    const UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    const auto frame = protocol::encode(protocol::Offer {"piped"});
    const BorrowedFd passed[] = {read_end};
    if (const auto ec = send_with_fds(BorrowedFd::of(socket_fd), frame, passed)) {
        std::printf("error send %s\n", ec.message().c_str());
        return 1;
    }
    std::vector<std::byte> answer(protocol::kMaxFrameBytes);
    std::size_t have = 0;
    protocol::Frame decoded;
    std::string reason;
    for (;;) { // the answer, however the stream splits it
        pollfd in {socket_fd, POLLIN, 0};
        ReceivedMessage received;
        if (::poll(&in, 1, 10000) != 1
            || recv_with_fds(BorrowedFd::of(socket_fd), std::span(answer).subspan(have), received)) {
            std::printf("error no answer to the raw offer\n");
            return 1;
        }
        have += received.bytes;
        if (!protocol::decode(std::span(answer).first(have), 0, decoded, reason))
            break;
        if (have >= protocol::kHeaderBytes + 2 + 256 + 4) {
            std::printf("error bad answer: %s\n", reason.c_str());
            return 1;
        }
    }
    const auto* refused = std::get_if<protocol::Answer>(&decoded);
    std::printf("ok twice=%d missing=%d pipe=%d\n", twice, missing, refused ? static_cast<int>(refused->code) : -1);
    return 0;
}

int nofile_guest(const std::string& socket_path)
{
    rlimit original {};
    ::getrlimit(RLIMIT_NOFILE, &original);
    const int base = test::count_open_fds();
    int used = 0;
    {
        Guest guest = Guest::connect(socket_path, {.name = "nofile-measure"});
        used = test::count_open_fds() - base;
    }
    // From one fd short of a whole guest downwards: the last fds a guest
    // opens are the segment's (from the welcome) and its lane lock's, so a
    // few steps down the kernel can no longer install the passed fd. Lower
    // still would fail Asio's own reactor first, which is not what is tested.
    std::string dropped;
    for (int extra = used - 1; extra > 0 && dropped.empty(); --extra) {
        rlimit limit = original;
        limit.rlim_cur = static_cast<rlim_t>(base + extra);
        ::setrlimit(RLIMIT_NOFILE, &limit);
        try {
            Guest guest = Guest::connect(socket_path, {.name = "nofile"});
        } catch (const Error& e) {
            if (e.code() == Errc::control_truncated)
                dropped = e.what();
        }
        ::setrlimit(RLIMIT_NOFILE, &original);
    }
    std::printf(dropped.empty() ? "error no try lost its fd\n" : "ok %s\n", dropped.c_str());
    return dropped.empty() ? 1 : 0;
}

/// Reads every page of the segment as far as it is mapped, again and again:
/// a header that announced an extent the file does not have would be SIGBUS.
int toucher(const std::string& segment_path)
{
    Segment segment = Segment::attach(segment_path);
    std::printf("attached\n");
    std::fflush(stdout);
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::uint64_t passes = 0;
    std::uint64_t sum = 0;
    for (bool last = false; !last; ++passes) {
        last = segment.creator_liveness() != Liveness::alive; // one more pass after the creator is gone (or unknowable)
        std::error_code ec;
        segment.refresh(ec);
        if (ec) {
            std::printf("error refresh: %s\n", ec.message().c_str());
            return 1;
        }
        const auto bytes = segment.bytes();
        for (std::size_t at = 0; at < bytes.size(); at += page)
            sum += static_cast<std::uint8_t>(*static_cast<volatile const std::byte*>(bytes.data() + at));
    }
    std::printf("ok size=%zu generation=%llu passes=%llu sum=%llu\n", segment.size_bytes(),
        static_cast<unsigned long long>(segment.generation()), static_cast<unsigned long long>(passes),
        static_cast<unsigned long long>(sum));
    return 0;
}

/// Reads every mapped page, guarded, until told to stop: a fault this guard
/// did not survive kills the process, which the test sees.
int guarded_toucher(const std::string& segment_path)
{
    Segment segment = Segment::attach(segment_path, {.map = {.guard_truncation = true}});
    std::printf("attached\n");
    std::fflush(stdout);
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::uint64_t passes = 0;
    std::uint64_t sum = 0;
    for (pollfd in {STDIN_FILENO, POLLIN, 0}; ::poll(&in, 1, 0) == 0; ++passes) {
        const auto bytes = segment.bytes();
        for (std::size_t at = 0; at < bytes.size(); at += page)
            sum += static_cast<std::uint8_t>(*static_cast<volatile const std::byte*>(bytes.data() + at));
    }
    std::printf("ok passes=%llu repairs=%llu private=%llu sum=%llu\n", static_cast<unsigned long long>(passes),
        static_cast<unsigned long long>(segment.repairs()), static_cast<unsigned long long>(segment.private_pages()),
        static_cast<unsigned long long>(sum));
    return 0;
}

/// What a hostile peer with write access to the file can do to it.
int spoil(const std::string& segment_path, const std::string& how, off_t bytes, const std::string& filler)
{
    const auto fail = [](const std::string& what) {
        std::printf("error %s: %s\n", what.c_str(), std::strerror(errno));
        return 1;
    };
    const int fd = ::open(segment_path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return fail("open " + segment_path);
    const off_t page = ::sysconf(_SC_PAGESIZE);
    if (how == "punch" && ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, bytes, page) != 0)
        return fail("punch");
    if (how == "truncate" && ::ftruncate(fd, bytes) != 0)
        return fail("truncate");
    ::close(fd);
    std::uint64_t filled = 0;
    if (filler != "-") {
        const int out = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0)
            return fail("open " + filler);
        const std::vector<char> block(static_cast<std::size_t>(page), 'x');
        for (;;) {
            const ssize_t n = ::write(out, block.data(), block.size());
            if (n < 0 && errno == ENOSPC)
                break;
            if (n <= 0)
                return fail("fill " + filler);
            filled += static_cast<std::uint64_t>(n);
        }
        ::close(out);
    }
    std::printf("ok filled=%llu\n", static_cast<unsigned long long>(filled));
    return 0;
}

} // namespace

int main(int argc, char** argv)
try {
    const std::string job = argc > 1 ? argv[1] : "";
    if (job == "host" && argc == 4)
        return run_host(argv[2], argv[3]);
    if (job == "guest" && argc == 5) {
        Guest guest = Guest::connect(argv[2], {.name = argv[3]});
        return echo_loop(guest, std::strtoull(argv[4], nullptr, 10));
    }
    if (job == "stepped-guest" && argc == 3)
        return stepped_guest(argv[2]);
    if (job == "early-guest" && argc == 5) { // started before its host
        Guest guest = Guest::connect(argv[2], {.name = argv[3], .timeout = std::chrono::seconds(10), .wait_for_host = true});
        return echo_loop(guest, std::strtoull(argv[4], nullptr, 10));
    }
    if (job == "path-guest" && argc == 4) {
        Guest guest = Guest::attach(argv[2]);
        return echo_loop(guest, std::strtoull(argv[3], nullptr, 10));
    }
    if (job == "idle-guest" && (argc == 3 || (argc == 4 && std::string(argv[2]) == "--path"))) {
        Guest guest = argc == 4 ? Guest::attach(argv[3]) : Guest::connect(argv[2], {.name = "idle"});
        std::printf("ok lane=%u\n", guest.lane());
        std::fflush(stdout);
        const std::string hello = "idle";
        guest.outbox().push(std::as_bytes(std::span(hello)), 1s);
        std::string line;
        std::getline(std::cin, line);
        return 0;
    }
    if (job == "truncate" && argc == 4) {
        Guest guest = Guest::connect(argv[2], {.name = "truncater"});
        if (::ftruncate(guest.segment().fd().get(), static_cast<off_t>(std::strtoull(argv[3], nullptr, 10))) != 0)
            std::printf("error %s\n", std::strerror(errno));
        else
            std::printf("ok truncated\n");
        return 0;
    }
    if (job == "soak-guest" && argc == 5)
        return soak_guest(argv[2], std::strtoull(argv[3], nullptr, 10), argv[4]);
    if (job == "stuck-guest" && argc == 4)
        return stuck_guest(argv[2], std::strtoull(argv[3], nullptr, 10));
    if (job == "scribble" && argc == 3)
        return scribble(argv[2]);
    if (job == "linger-guest" && argc == 4)
        return linger_guest(argv[2], std::atoi(argv[3]));
    if (job == "send-host" && argc == 3)
        return send_host(argv[2]);
    if (job == "nofile-guest" && argc == 3)
        return nofile_guest(argv[2]);
    if (job == "toucher" && argc == 3)
        return toucher(argv[2]);
    if (job == "wait-host" && argc == 3)
        return wait_host(argv[2]);
    if (job == "guarded-toucher" && argc == 3)
        return guarded_toucher(argv[2]);
    if (job == "topic-publisher" && (argc == 5 || (argc == 7 && std::string(argv[5]) == "apart")))
        return topic_publisher(argv[2], argv[3], std::strtoull(argv[4], nullptr, 10), argc == 7 ? std::atoi(argv[6]) : 0);
    if (job == "topic-subscriber" && (argc == 4 || (argc == 5 && std::string(argv[4]) == "apart")))
        return topic_subscriber(argv[2], argv[3], argc == 5);
    if (job == "topic-offers" && argc == 3)
        return topic_offers(argv[2]);
    if (job == "spoil" && argc == 6)
        return spoil(argv[2], argv[3], static_cast<off_t>(std::strtoll(argv[4], nullptr, 10)), argv[5]);
    std::fprintf(stderr,
        "usage: endpoint host|guest|stepped-guest|early-guest|path-guest|idle-guest|wait-host|truncate|soak-guest|stuck-guest|scribble"
        "|linger-guest|send-host|nofile-guest|toucher|guarded-toucher|spoil|topic-publisher|topic-subscriber|topic-offers ...\n");
    return 2;
} catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 1;
}
