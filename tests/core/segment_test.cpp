// Tests of core/segment.hpp. Cross-process cases drive tests/helpers/guest,
// a separate executable, through tests/support/child.hpp.
#include <shmlink/core/layout.hpp>
#include <shmlink/core/process.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/transport/fd_socket.hpp>

#include "tests/support/child.hpp"
#include "tests/support/hostile_files.hpp"
#include "tests/support/leaks.hpp"
#include "tests/support/ring_peer.hpp"

#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>

using namespace shmlink;
using shmlink::test::Child;

namespace {

std::span<const std::byte> text(const std::string& s) { return std::as_bytes(std::span(s)); }

std::string read_text(const Segment& s, std::size_t offset, std::size_t length)
{
    std::string out(length, '\0');
    REQUIRE_FALSE(s.read_into(offset, std::as_writable_bytes(std::span(out))));
    return out;
}

/// The value of "key=..." in a helper's answer.
std::string field(const std::string& answer, const std::string& key)
{
    const auto at = answer.find(key + "=");
    REQUIRE(at != std::string::npos);
    const auto start = at + key.size() + 1;
    return answer.substr(start, answer.find(' ', start) - start);
}

std::string address(const Segment& s)
{
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "%p", static_cast<const void*>(s.base()));
    return buffer;
}

Child start_guest(const std::vector<Child::PassFd>& pass = {})
{
    return Child::spawn({shmlink::test::guest_helper()}, pass);
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

/// A creator's segment at a fresh /dev/shm path, removed when the creator
/// goes, and a guest process attached to it by path.
struct HostWithGuest {
    explicit HostWithGuest(const std::string& tag, SegmentOptions options = {.cleanup = Cleanup::unlink_on_close})
        : file(tag), host(Segment::create(file.path, 1 << 16, options)), guest(start_guest()),
          attached(guest.request("attach-path " + file.path))
    {
        REQUIRE(attached.rfind("ok", 0) == 0);
    }
    test::ShmPath file;
    Segment host;
    Child guest;
    std::string attached; ///< the guest's answer to attach-path
};

/// A file that holds exactly `bytes`.
void write_file(const std::string& path, const std::string& bytes)
{
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    ::close(fd);
}

/// Patches `value` into a file at `offset`.
template <typename T>
void patch(const std::string& path, off_t offset, T value)
{
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, &value, sizeof(value), offset) == static_cast<ssize_t>(sizeof(value)));
    ::close(fd);
}

/// The error attach() reports for `path`, from both the throwing and the non-throwing form.
std::pair<std::error_code, std::string> attach_error(const std::string& path)
{
    std::error_code ec;
    Segment s = Segment::attach(path, {}, ec);
    CHECK_FALSE(s.valid());
    try {
        Segment::attach(path);
        FAIL("attach did not throw");
    } catch (const Error& e) {
        CHECK(e.code() == ec);
        return {ec, e.what()};
    }
    return {ec, ""};
}

} // namespace

TEST_CASE("create: the file has the requested mode and size")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("create");
    const std::string& path = path_file.path;
    {
        SegmentOptions options;
        options.mode = 0640;
        Segment s = Segment::create(path, 10000, options);
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0640);
        CHECK(s.size_bytes() == 12288); // whole pages
        CHECK(static_cast<std::size_t>(st.st_size) == s.size_bytes());
        CHECK(s.max_size_bytes() == (std::size_t {1} << 30));
        CHECK(s.is_owner());
        CHECK(s.path() == path);
        CHECK(s.generation() == 0);
    }
    {
        // The first one's creator (this process's Segment above) is gone: its file is taken over.
        Segment s = Segment::create(path, 4096, {.cleanup = Cleanup::keep, .take_over_dead = true});
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600); // the default, whatever the umask
    }
    SUBCASE("an existing path is refused without take_over_dead, even a dead creator's segment")
    {
        std::error_code ec;
        Segment s = Segment::create(path, 4096, {}, ec);
        CHECK(ec == std::errc::file_exists);
        CHECK_FALSE(s.valid());
        CHECK_THROWS_AS(Segment::create(path, 4096), Error);
    }
    ::unlink(path.c_str());
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("create: zero size and a size above the maximum are refused, leaving no file")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("refused");
    const std::string& path = path_file.path;
    std::error_code ec;
    Segment zero = Segment::create(path, 0, {}, ec);
    CHECK(ec == Errc::invalid_argument);
    CHECK_FALSE(exists(path));
    try {
        Segment::create(path, 0);
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "create " + path + ": size must be greater than 0");
    }

    Segment big = Segment::create(path, 1 << 20, {.max_size_bytes = 1 << 16}, ec);
    CHECK(ec == Errc::exceeds_maximum);
    CHECK_FALSE(exists(path));
    Segment anon = Segment::create_anonymous(0, {}, ec);
    CHECK(ec == Errc::invalid_argument);
    // Sizes near SIZE_MAX must not wrap into a small segment when rounded to pages.
    Segment wraps = Segment::create(path, ~std::size_t {0}, {}, ec);
    CHECK(ec == Errc::exceeds_maximum);
    CHECK_FALSE(exists(path));
    Segment wrapping_max = Segment::create_anonymous(4096, {.max_size_bytes = ~std::size_t {0}}, ec);
    CHECK(ec == Errc::exceeds_maximum);
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("attach by path: a guest process sees the host's writes and the host sees the guest's")
{
    const test::ResourceCount before;
    {
        HostWithGuest pair("path");
        auto& [file, host, guest, attached] = pair;
        REQUIRE_FALSE(host.write_at(8192, text("hello-from-host")));
        CHECK(field(attached, "size") == std::to_string(host.size_bytes()));
        CHECK(guest.request("read 8192 15") == "ok hello-from-host");
        CHECK(guest.request("write 9000 hello-from-guest") == "ok");
        CHECK(read_text(host, 9000, 16) == "hello-from-guest");
        CHECK(guest.wait() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("attach by fd inherited across exec")
{
    const test::ResourceCount before;
    {
        Segment host = Segment::create_anonymous(1 << 16);
        REQUIRE_FALSE(host.write_at(4096, text("inherited")));
        Child guest = start_guest({{host.fd().get(), 7}});
        REQUIRE(guest.request("attach-fd 7").rfind("ok", 0) == 0);
        CHECK(guest.request("read 4096 9") == "ok inherited");
        CHECK(guest.request("write 5000 back") == "ok");
        CHECK(read_text(host, 5000, 4) == "back");
        CHECK(guest.wait() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("attach by fd received through a socketpair with SCM_RIGHTS")
{
    const test::ResourceCount before;
    {
        Segment host = Segment::create_anonymous(1 << 16);
        REQUIRE_FALSE(host.write_at(4096, text("passed")));
        int pair[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
        UniqueFd ours(pair[0]);
        UniqueFd theirs(pair[1]);
        Child guest = start_guest({{theirs.get(), 5}});
        theirs.reset(); // the child has its copy
        guest.send("recv-fd 5");
        const std::byte tag[] = {std::byte {'S'}};
        const BorrowedFd fds[] = {host.fd()};
        REQUIRE_FALSE(send_with_fds(ours, tag, fds));
        REQUIRE(guest.read_line().rfind("ok", 0) == 0);
        CHECK(guest.request("read 4096 6") == "ok passed");
        CHECK(guest.request("write 6000 seen") == "ok");
        CHECK(read_text(host, 6000, 4) == "seen");
        CHECK(guest.wait() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("attach by fd: a file that is not a segment is refused with a clear error")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("foreign");
    const std::string& path = path_file.path;
    write_file(path, std::string(8192, 'x'));
    {
        std::error_code ec;
        Segment s = Segment::attach(UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC)), {}, ec);
        CHECK(ec == Errc::bad_magic);
        try {
            Segment::attach(UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC)));
            FAIL("no throw");
        } catch (const Error& e) {
            CHECK(std::string(e.what()).find("not a shmlink segment") != std::string::npos);
        }
        int pipe_fds[2];
        REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
        UniqueFd write_end(pipe_fds[1]);
        Segment p = Segment::attach(UniqueFd(pipe_fds[0]), {}, ec);
        CHECK(ec == Errc::not_a_segment);
        Segment none = Segment::attach(UniqueFd(), {}, ec);
        CHECK(ec == std::errc::bad_file_descriptor);

        // The same refusal in a guest process that inherited the fd.
        UniqueFd foreign(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        Child guest = start_guest({{foreign.get(), 8}});
        CHECK(guest.request("attach-fd 8").find("not a shmlink segment") != std::string::npos);
        CHECK(guest.wait() == 0);
    }
    ::unlink(path.c_str());
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("cleanup policies")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("cleanup");
    const std::string& path = path_file.path;
    SUBCASE("keep leaves the file")
    {
        { Segment s = Segment::create(path, 4096, {.cleanup = Cleanup::keep}); }
        CHECK(exists(path));
        Segment again = Segment::attach(path);
        CHECK(again.size_bytes() == 4096);
        CHECK_FALSE(again.is_owner());
        ::unlink(path.c_str());
    }
    SUBCASE("unlink_on_close removes it when the owner goes, not when a guest goes")
    {
        {
            Segment owner = Segment::create(path, 4096, {.cleanup = Cleanup::unlink_on_close});
            Child guest = start_guest();
            REQUIRE(guest.request("attach-path " + path).rfind("ok", 0) == 0);
            CHECK(guest.request("detach") == "ok");
            CHECK(guest.wait() == 0);
            { Segment local_guest = Segment::attach(path); }
            CHECK(exists(path));
        }
        CHECK_FALSE(exists(path));
    }
    SUBCASE("unlink_on_close: a child forked from the creator that destroys its copy removes nothing")
    {
        {
            Segment owner = Segment::create(path, 4096, {.cleanup = Cleanup::unlink_on_close});
            const pid_t child = ::fork();
            if (child == 0) {
                { Segment copy = std::move(owner); } // the inherited copy's destructor runs here
                ::_exit(exists(path) ? 0 : 1);
            }
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
            CHECK(exists(path));
        }
        CHECK_FALSE(exists(path));
    }
    SUBCASE("unlink_on_close leaves a newer segment at the same path alone")
    {
        {
            Segment old_owner = Segment::create(path, 4096, {.cleanup = Cleanup::unlink_on_close});
            ::unlink(path.c_str()); // someone removes it under its live creator, and makes another
            Segment newer = Segment::create(path, 4096, {.cleanup = Cleanup::keep});
        }
        CHECK(exists(path));
        ::unlink(path.c_str());
    }
    SUBCASE("unlink_now leaves no file but a working segment")
    {
        // This process's files only: other test programs run beside it.
        const std::string mine = "shmlink-test-" + std::to_string(::getpid()) + "-";
        const auto entries = [&] {
            int n = 0;
            DIR* dir = ::opendir("/dev/shm");
            while (const dirent* e = ::readdir(dir))
                n += std::strncmp(e->d_name, mine.c_str(), mine.size()) == 0;
            ::closedir(dir);
            return n;
        };
        const int files_before = entries();
        Segment s = Segment::create(path, 1 << 16, {.cleanup = Cleanup::unlink_now});
        CHECK_FALSE(exists(path));
        CHECK(entries() == files_before);
        CHECK(s.path().empty());
        REQUIRE_FALSE(s.write_at(4096, text("unnamed")));
        Child guest = start_guest({{s.fd().get(), 9}});
        REQUIRE(guest.request("attach-fd 9").rfind("ok", 0) == 0);
        CHECK(guest.request("read 4096 7") == "ok unnamed");
        s.grow(1 << 17);
        CHECK(guest.request("refresh").rfind("ok 1 ", 0) == 0);
        CHECK(guest.wait() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("grow while a guest process is attached: it remaps, nothing moves, data survives")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("grow");
    const std::string& path = path_file.path;
    {
        Segment host = Segment::create(path, 1 << 16, {.max_size_bytes = 64 << 20, .cleanup = Cleanup::unlink_on_close});
        const std::string host_base = address(host);
        REQUIRE_FALSE(host.write_at(4096, text("before-grow")));
        Child guest = start_guest();
        const auto attached = guest.request("attach-path " + path);
        REQUIRE(attached.rfind("ok", 0) == 0);
        const std::string guest_base = field(attached, "base");
        CHECK(guest.request("refresh").rfind("ok 0 ", 0) == 0); // nothing to do yet

        std::size_t size = host.size_bytes();
        for (int round = 1; round <= 8; ++round) {
            size *= 2;
            host.grow(size);
            CHECK(host.size_bytes() == size);
            CHECK(host.generation() == static_cast<std::uint64_t>(round));
            CHECK(address(host) == host_base);
            const std::string tag = "after-grow-" + std::to_string(round);
            REQUIRE_FALSE(host.write_at(size - 64, text(tag)));
            // Out of the guest's reach until it refreshes.
            CHECK(guest.request("read " + std::to_string(size - 64) + " " + std::to_string(tag.size())).rfind("error", 0) == 0);
            const auto refreshed = guest.request("refresh");
            REQUIRE(refreshed.rfind("ok 1 ", 0) == 0);
            CHECK(field(refreshed, "base") == guest_base);
            CHECK(field(refreshed, "size") == std::to_string(size));
            CHECK(field(refreshed, "gen") == std::to_string(round));
            CHECK(guest.request("read " + std::to_string(size - 64) + " " + std::to_string(tag.size())) == "ok " + tag);
            CHECK(guest.request("read 4096 11") == "ok before-grow");
            CHECK(guest.request("write " + std::to_string(size - 128) + " guest-" + std::to_string(round)) == "ok");
            CHECK(read_text(host, size - 128, 7) == "guest-" + std::to_string(round));
        }
        CHECK(guest.wait() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("grow: same size is a no-op, shrink and past-maximum are refused, guests may not grow")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("grow-rules");
    const std::string& path = path_file.path;
    {
        Segment host = Segment::create(path, 1 << 16, {.max_size_bytes = 1 << 20, .cleanup = Cleanup::unlink_on_close});
        std::error_code ec;
        host.grow(1 << 16, ec);
        CHECK_FALSE(ec);
        CHECK(host.generation() == 0);
        host.grow(1 << 12, ec);
        CHECK(ec == Errc::shrink_refused);
        host.grow(2 << 20, ec);
        CHECK(ec == Errc::exceeds_maximum);
        host.grow(~std::size_t {0}, ec);
        CHECK(ec == Errc::exceeds_maximum);
        CHECK_THROWS_AS(host.grow(2 << 20), Error);
        CHECK(host.size_bytes() == 1 << 16);
        CHECK(host.generation() == 0);
        host.grow(1 << 20);
        CHECK(host.size_bytes() == 1 << 20);

        Segment guest = Segment::attach(path);
        guest.grow(2 << 20, ec);
        CHECK(ec == Errc::not_owner);
        guest.allocate("x", 1, 1, 64, 64, ec);
        CHECK(ec == Errc::not_owner);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("grow: a failed grow leaves the segment as it was")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("grow-fail");
    const std::string& path = path_file.path;
    {
        Segment host = Segment::create(path, 1 << 16, {.cleanup = Cleanup::unlink_on_close});
        REQUIRE_FALSE(host.write_at(4096, text("intact")));
        // A file-size limit makes the file system refuse the new extent (EFBIG),
        // as a full /dev/shm would (ENOSPC).
        rlimit old_limit {};
        ::getrlimit(RLIMIT_FSIZE, &old_limit);
        auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
        rlimit limit = old_limit;
        limit.rlim_cur = 1 << 17;
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
        std::error_code ec;
        host.grow(1 << 20, ec);
        ::setrlimit(RLIMIT_FSIZE, &old_limit);
        ::signal(SIGXFSZ, old_handler);
        CHECK(ec == std::errc::file_too_large);
        CHECK(host.size_bytes() == 1 << 16);
        CHECK(host.generation() == 0);
        CHECK(read_text(host, 4096, 6) == "intact");
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK(st.st_size == 1 << 16);
        Segment guest = Segment::attach(path);
        CHECK_FALSE(guest.refresh());
        host.grow(1 << 20); // and the next grow works
        CHECK(guest.refresh());
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("attach: every kind of bad file gets its own clear error and no crash")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("bad");
    const std::string& path = path_file.path;
    const auto fresh_segment = [&] {
        Segment s = Segment::create(path, 1 << 16, {.cleanup = Cleanup::keep});
        s.allocate("ring", 7, 1, 1024);
    };

    SUBCASE("empty file")
    {
        write_file(path, "");
        auto [ec, what] = attach_error(path);
        CHECK(ec == Errc::empty_file);
        CHECK(what == "attach " + path + ": file is empty");
    }
    SUBCASE("file shorter than the header")
    {
        write_file(path, std::string(100, '\0'));
        auto [ec, what] = attach_error(path);
        CHECK(ec == Errc::truncated);
        CHECK(what.find("100 bytes, shorter than the 4096-byte header") != std::string::npos);
    }
    SUBCASE("wrong magic")
    {
        fresh_segment();
        patch<std::uint64_t>(path, 0, 0x1122334455667788ULL);
        auto [ec, what] = attach_error(path);
        CHECK(ec == Errc::bad_magic);
    }
    SUBCASE("a newer layout version")
    {
        fresh_segment();
        patch<std::uint32_t>(path, offsetof(layout::SegmentHeader, layout_version), 3);
        auto [ec, what] = attach_error(path);
        CHECK(ec == Errc::version_too_new);
        CHECK(what == "attach " + path + ": layout version 3 is newer than 1");
    }
    SUBCASE("an ABI tag of another byte order")
    {
        fresh_segment();
        patch<std::uint64_t>(path, offsetof(layout::SegmentHeader, abi_tag), __builtin_bswap64(layout::abi_tag()));
        CHECK(attach_error(path).first == Errc::abi_mismatch);
    }
    SUBCASE("header size larger than the file")
    {
        fresh_segment();
        patch<std::uint64_t>(path, offsetof(layout::SegmentHeader, size_bytes), 1 << 20);
        auto [ec, what] = attach_error(path);
        CHECK(ec == Errc::size_mismatch);
        CHECK(what.find("header says 1048576 bytes but the file has 65536") != std::string::npos);
    }
    SUBCASE("maximum size beyond what any segment may declare")
    {
        fresh_segment();
        patch<std::uint64_t>(path, offsetof(layout::SegmentHeader, max_size_bytes), ~std::uint64_t {0} & ~0xfffULL);
        CHECK(attach_error(path).first == Errc::corrupt_header);
    }
    SUBCASE("a directory entry pointing outside the segment")
    {
        fresh_segment();
        patch<std::uint64_t>(path, layout::kDirectoryOffset + offsetof(layout::DirectoryEntry, offset), 1ULL << 40);
        auto [ec, what] = attach_error(path);
        CHECK(ec == Errc::corrupt_directory);
        CHECK(what.find("directory entry 0 'ring'") != std::string::npos);
    }
    SUBCASE("a directory entry whose length overflows")
    {
        fresh_segment();
        patch<std::uint64_t>(path, layout::kDirectoryOffset + offsetof(layout::DirectoryEntry, length), ~std::uint64_t {0});
        CHECK(attach_error(path).first == Errc::corrupt_directory);
    }
    SUBCASE("a directory count above its capacity")
    {
        fresh_segment();
        patch<std::uint32_t>(path, offsetof(layout::SegmentHeader, directory_count), 1000);
        CHECK(attach_error(path).first == Errc::corrupt_directory);
    }
    SUBCASE("a directory name without its terminating NUL")
    {
        fresh_segment();
        const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        const std::string name(layout::kNameBytes, 'n');
        REQUIRE(::pwrite(fd, name.data(), name.size(), layout::kDirectoryOffset) == static_cast<ssize_t>(name.size()));
        ::close(fd);
        CHECK(attach_error(path).first == Errc::corrupt_directory);
    }
    ::unlink(path.c_str());
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("memfd backing: a guest process cannot truncate it, and the host can still grow it")
{
    const test::ResourceCount before;
    {
        Segment host = Segment::create_anonymous(1 << 16);
        CHECK(host.path().empty());
        CHECK(::fcntl(host.fd().get(), F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_SEAL));
        Child guest = start_guest({{host.fd().get(), 6}});
        REQUIRE(guest.request("attach-fd 6").rfind("ok", 0) == 0);
        CHECK(guest.request("truncate 4096") == "error " + std::string(std::strerror(EPERM)));
        host.grow(1 << 18);
        CHECK(guest.request("refresh").rfind("ok 1 ", 0) == 0);
        CHECK(guest.wait() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("directory: allocate by name on the host, find by name in a guest")
{
    const test::ResourceCount before;
    {
        HostWithGuest pair("dir");
        auto& [file, host, guest, attached] = pair;
        const ObjectInfo a = host.allocate("alpha", 3, 2, 1000);
        CHECK(a.offset % 128 == 0);
        CHECK(a.offset >= layout::kHeaderBytes);
        const ObjectInfo b = host.allocate("beta", 4, 1, 5000, 4096);
        CHECK(b.offset % 4096 == 0);
        CHECK(b.offset >= a.offset + a.length);
        std::error_code ec;
        host.allocate("alpha", 3, 2, 10, 64, ec);
        CHECK(ec == Errc::name_taken);
        host.allocate(std::string(40, 'n'), 3, 2, 10, 64, ec);
        CHECK(ec == Errc::invalid_argument);
        host.allocate("huge", 3, 2, 1 << 20, 64, ec);
        CHECK(ec == Errc::no_space);
        CHECK(host.find("missing", ec) == std::nullopt);
        CHECK(ec == Errc::not_found);

        CHECK(guest.request("find beta") == "ok " + std::to_string(b.offset) + " 5000");
        // An object in an extent grown after the guest attached: find() refreshes.
        host.grow(1 << 21);
        const ObjectInfo c = host.allocate("gamma", 5, 1, 1 << 20);
        CHECK(guest.request("find gamma") == "ok " + std::to_string(c.offset) + " " + std::to_string(1 << 20));
        CHECK(guest.wait() == 0);

        Segment local = Segment::attach(file.path);
        auto all = local.objects(ec);
        REQUIRE(all.size() == 3);
        CHECK(all[0].name == "alpha");
        CHECK(all[0].kind == 3);
        CHECK(all[0].version == 2);
        CHECK(all[2].name == "gamma");
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("directory: all slots used is a clear error")
{
    const test::ResourceCount before;
    {
        Segment host = Segment::create_anonymous(1 << 20);
        for (std::uint32_t i = 0; i < layout::kDirectoryCapacity; ++i)
            host.allocate("object-" + std::to_string(i), 1, 1, 64, 64);
        std::error_code ec;
        host.allocate("one-more", 1, 1, 64, 64, ec);
        CHECK(ec == Errc::directory_full);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("snapshot: a copy that does not follow later changes")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("snap");
    const std::string& path = path_file.path;
    {
        Segment host = Segment::create(path, 1 << 16, {.cleanup = Cleanup::unlink_on_close});
        REQUIRE_FALSE(host.write_at(4096, text("version-one")));
        for (const SnapshotOptions& options : {SnapshotOptions {}, SnapshotOptions {"/dev/shm"}}) {
            Snapshot snap = host.snapshot(options);
            CHECK(snap.size_bytes() == host.size_bytes());
            REQUIRE_FALSE(host.write_at(4096, text("version-two")));
            std::string seen(11, '\0');
            REQUIRE_FALSE(snap.read_into(4096, std::as_writable_bytes(std::span(seen))));
            CHECK(seen == "version-one");
            CHECK(snap.read_into(snap.size_bytes() - 2, std::as_writable_bytes(std::span(seen))) == Errc::out_of_range);
            REQUIRE_FALSE(host.write_at(4096, text("version-one")));
        }
        // A committed snapshot is a segment in its own right.
        const auto copy_path = path + "-copy";
        host.snapshot().commit(copy_path);
        REQUIRE_FALSE(host.write_at(4096, text("version-two")));
        Segment copy = Segment::attach(copy_path);
        CHECK(read_text(copy, 4096, 11) == "version-one");
        ::unlink(copy_path.c_str());
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("snapshot commit replaces the target atomically for a concurrent reader in another process")
{
    const test::ResourceCount before;
    const test::ShmPath target_file("commit-target");
    const std::string& target = target_file.path;
    {
        Segment a = Segment::create_anonymous(1 << 18);
        Segment b = Segment::create_anonymous(1 << 18);
        std::memset(a.bytes().data() + 4096, 'A', a.size_bytes() - 4096);
        std::memset(b.bytes().data() + 4096, 'B', b.size_bytes() - 4096);
        const Snapshot snap_a = a.snapshot();
        const Snapshot snap_b = b.snapshot();
        snap_a.commit(target);

        Child reader = start_guest();
        reader.send("watch-file " + target + " 1000");
        std::string answer;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        for (int i = 0; answer.empty(); ++i) {
            (i % 2 ? snap_a : snap_b).commit(target);
            // Poll for the reader's answer between commits without blocking.
            if (auto got = reader.poll_line())
                answer = *got;
            REQUIRE(std::chrono::steady_clock::now() < deadline);
        }
        INFO(answer);
        CHECK(answer.rfind("ok reads=1000 mixed=0", 0) == 0);
        CHECK(reader.wait() == 0);
    }
    std::error_code ec;
    Snapshot().commit(target + "-never", 0600, ec);
    CHECK(ec == Errc::invalid_argument);
    CHECK_FALSE(exists(target + "-never"));
    ::unlink(target.c_str());
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("bounds: out-of-range read_into, write_at and subspan are errors")
{
    const test::ResourceCount before;
    {
        Segment s = Segment::create_anonymous(1 << 16);
        std::byte buffer[16] {};
        CHECK_FALSE(s.read_into(s.size_bytes() - 16, buffer));
        CHECK(s.read_into(s.size_bytes() - 15, buffer) == Errc::out_of_range);
        CHECK(s.read_into(~std::size_t {0}, buffer) == Errc::out_of_range);
        CHECK(s.write_at(s.size_bytes(), buffer) == Errc::out_of_range);
        CHECK(s.write_at(~std::size_t {0} - 4, buffer) == Errc::out_of_range);
        CHECK_FALSE(s.write_at(s.size_bytes(), {}));
        CHECK(s.subspan(s.size_bytes() - 8, 16).empty());
        CHECK(s.subspan(8, ~std::size_t {0}).empty());
        CHECK(s.subspan(4096, 16).size() == 16);

        Segment reader = Segment::attach(UniqueFd(::fcntl(s.fd().get(), F_DUPFD_CLOEXEC, 0)), {.read_only = true});
        CHECK(reader.write_at(4096, buffer) == std::errc::permission_denied);
        CHECK_FALSE(reader.read_into(4096, buffer));
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("map options: populate, huge pages and mlock apply to created, attached and grown extents")
{
    const test::ResourceCount before;
    {
        SegmentOptions options;
        options.map = {.populate = true, .huge_pages = true, .lock_memory = true};
        std::error_code ec;
        Segment s = Segment::create_anonymous(1 << 16, options, ec);
        if (ec == std::errc::resource_unavailable_try_again || ec == std::errc::operation_not_permitted) {
            MESSAGE("mlock not permitted here: " << ec.message());
        } else {
            REQUIRE_FALSE(ec);
            const auto locked_kib = [] {
                std::ifstream status("/proc/self/status");
                for (std::string line; std::getline(status, line);)
                    if (line.rfind("VmLck:", 0) == 0)
                        return std::stol(line.substr(6));
                return -1L;
            };
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
            constexpr bool mlock_works = false; // ASan and TSan turn mlock into a no-op
#else
            constexpr bool mlock_works = true;
#endif
            const long at_create = locked_kib();
            CHECK((!mlock_works || at_create >= 64));
            s.grow(1 << 17);
            CHECK((!mlock_works || locked_kib() == at_create + 64)); // the grown extent is locked too
            Segment guest = Segment::attach(UniqueFd(::fcntl(s.fd().get(), F_DUPFD_CLOEXEC, 0)),
                {.map = {.populate = true, .lock_memory = true}});
            CHECK(guest.size_bytes() == 1 << 17);
            CHECK((!mlock_works || locked_kib() == at_create + 64 + 128));
            // populate: every page of the guest's mapping is resident at once.
            std::vector<unsigned char> resident(guest.size_bytes() / page_size());
            REQUIRE(::mincore(guest.base(), guest.size_bytes(), resident.data()) == 0);
            CHECK(std::count(resident.begin(), resident.end(), 0) == 0);
        }
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("a guest scribbling on the header cannot steer the creator's allocations")
{
    const test::ResourceCount before;
    {
        HostWithGuest pair("scribble");
        auto& [file, host, guest, attached] = pair;
        const ObjectInfo first = host.allocate("first", 1, 1, 1000);
        // The guest rewinds the allocation cursor and the directory count, and
        // fills the free area with junk.
        guest.send("write " + std::to_string(offsetof(layout::SegmentHeader, data_used_bytes)) + " AAAAAAAA");
        CHECK(guest.read_line() == "ok");
        guest.send("write " + std::to_string(offsetof(layout::SegmentHeader, directory_count)) + " AAAA");
        CHECK(guest.read_line() == "ok");
        guest.send("write " + std::to_string(first.offset + first.length + 256) + " " + std::string(500, 'J'));
        CHECK(guest.read_line() == "ok");

        const ObjectInfo second = host.allocate("second", 1, 1, 1000);
        CHECK(second.offset >= first.offset + first.length);
        std::string bytes(second.length, 'x');
        REQUIRE_FALSE(host.read_into(second.offset, std::as_writable_bytes(std::span(bytes))));
        CHECK(bytes == std::string(second.length, '\0')); // zeroed, junk gone
        CHECK(host.find("first").offset == first.offset);
        // Publishing "second" wrote the creator's own count and cursor back: guests see both again.
        CHECK(guest.request("find second") == "ok " + std::to_string(second.offset) + " 1000");
        CHECK(guest.wait() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("snapshot taken by a guest after the creator grew is a valid segment")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("guest-snap");
    const test::ShmPath copy_file("guest-snap-copy");
    {
        Segment host = Segment::create(path_file.path, 1 << 16, {.cleanup = Cleanup::unlink_on_close});
        Segment guest = Segment::attach(path_file.path);
        host.grow(1 << 20);
        const ObjectInfo late = host.allocate("late", 1, 1, 4096);
        REQUIRE_FALSE(host.write_at(late.offset, text("late-data")));
        guest.snapshot().commit(copy_file.path);
        Segment copy = Segment::attach(copy_file.path);
        CHECK(copy.size_bytes() == 1 << 20);
        CHECK(read_text(copy, copy.find("late").offset, 9) == "late-data");
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

namespace {

/// tests/helpers/creator holding a segment at `path`, started under
/// `runner` (say, unshare and its options) when that is given.
Child start_creator(const std::string& path, std::vector<std::string> runner = {})
{
    runner.push_back(test::helper_path("SHMLINK_CREATOR"));
    runner.push_back(path);
    return Child::spawn(runner);
}

/// unshare's path when this process may make a pid namespace with it, else "".
std::string pid_namespace_runner()
{
    for (const std::string candidate : {"/usr/bin/unshare", "/bin/unshare"})
        if (::access(candidate.c_str(), X_OK) == 0
            && std::system((candidate + " --pid --fork --kill-child true >/dev/null 2>&1").c_str()) == 0)
            return candidate;
    return {};
}

} // namespace

TEST_CASE("creator_liveness: the creator's lock tells, not its pid")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("alive");
    const std::string& path = path_file.path;
    {
        auto creator = std::make_optional(Segment::create(path, 4096));
        CHECK((creator->info().flags & layout::kCreatorLocked) != 0);
        CHECK(creator->creator_liveness() == Liveness::alive);
        CHECK(Segment::attach(path).creator_liveness() == Liveness::alive);
        // What a guest receives over a socket is the creator's fd; holding it
        // must not keep the creator alive once the creator is gone.
        UniqueFd passed(::dup(creator->fd().get()));
        creator.reset();
        CHECK(Segment::attach(path).creator_liveness() == Liveness::dead);
        CHECK(Segment::attach(std::move(passed)).creator_liveness() == Liveness::dead);

        // The pid and start time of a live process (this one) do not make it alive.
        patch<std::uint32_t>(path, offsetof(layout::SegmentHeader, creator_pid), static_cast<std::uint32_t>(::getpid()));
        patch<std::uint64_t>(path, offsetof(layout::SegmentHeader, creator_start_time), process_start_time(::getpid()));
        CHECK(Segment::attach(path).creator_liveness() == Liveness::dead);

        // Without the lock flag (a segment of an older shmlink): unknown, never dead.
        patch<std::uint32_t>(path, offsetof(layout::SegmentHeader, flags), 0);
        CHECK(Segment::attach(path).creator_liveness() == Liveness::unknown);
        ::unlink(path.c_str());
    }
    {
        // A creator in another process: alive while it runs, dead once it exited.
        Child creator = start_creator(path);
        REQUIRE(creator.read_line().rfind("ok", 0) == 0);
        CHECK(Segment::attach(path).creator_liveness() == Liveness::alive);
        CHECK(creator.wait() == 0);
        CHECK(Segment::attach(path).creator_liveness() == Liveness::dead);
        ::unlink(path.c_str());
    }
    {
        // memfd and O_TMPFILE backings carry the lock too.
        Segment memfd = Segment::create_anonymous(4096);
        CHECK((memfd.info().flags & layout::kCreatorLocked) != 0);
        CHECK(Segment::attach(UniqueFd(::dup(memfd.fd().get()))).creator_liveness() == Liveness::alive);
        Segment unnamed = Segment::create(path, 4096, {.cleanup = Cleanup::unlink_now});
        CHECK((unnamed.info().flags & layout::kCreatorLocked) != 0);
        CHECK(Segment::attach(UniqueFd(::dup(unnamed.fd().get()))).creator_liveness() == Liveness::alive);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("creator_liveness: a creator in another pid namespace (pid 1 there) is alive while it runs")
{
    const std::string unshare = pid_namespace_runner();
    if (unshare.empty()) {
        MESSAGE("skipped: this process may not make a pid namespace (unshare --pid --fork failed)");
        return;
    }
    const test::ShmPath path_file("pid-namespace");
    const std::string& path = path_file.path;
    Child creator = start_creator(path, {unshare, "--pid", "--fork", "--kill-child"});
    REQUIRE(creator.read_line() == "ok pid=1"); // here, pid 1 is another process
    Segment seen = Segment::attach(path);
    CHECK(seen.info().creator_pid == 1);
    CHECK(seen.creator_liveness() == Liveness::alive);
    CHECK(creator.wait() == 0);
    CHECK(seen.creator_liveness() == Liveness::dead);
}

TEST_CASE("create with take_over_dead: a live segment and any other file are refused; a dead one is taken over")
{
    const test::ResourceCount before;
    const test::ShmPath path_file("take-over");
    const std::string& path = path_file.path;
    const auto create_error = [&](const SegmentOptions& options) -> std::pair<std::error_code, std::string> {
        std::error_code ec;
        Segment s = Segment::create(path, 4096, options, ec);
        CHECK_FALSE(s.valid());
        try {
            Segment::create(path, 4096, options);
            FAIL("create did not throw");
        } catch (const Error& e) {
            CHECK(e.code() == ec);
            return {ec, e.what()};
        }
        return {ec, ""};
    };
    SUBCASE("a live creator's segment, held by another process: in_use, and the segment untouched")
    {
        Child creator = start_creator(path);
        REQUIRE(creator.read_line().rfind("ok", 0) == 0);
        const std::uint64_t nonce = Segment::attach(path).info().nonce;
        const auto [ec, what] = create_error({.take_over_dead = true});
        CHECK(ec == Errc::in_use);
        CHECK(what.find("create " + path + ": ") == 0);
        CHECK(what.find("another process owns it") != std::string::npos);
        CHECK(Segment::attach(path).info().nonce == nonce);
        CHECK(Segment::attach(path).creator_liveness() == Liveness::alive);

        // Once its creator exited: still EEXIST without the option, taken over with it.
        CHECK(creator.wait() == 0);
        CHECK(create_error({}).first == std::errc::file_exists);
        Segment taken = Segment::create(path, 4096, {.take_over_dead = true});
        CHECK(taken.is_owner());
        CHECK(taken.info().nonce != nonce);
        CHECK(Segment::attach(path).info().nonce == taken.info().nonce);
        CHECK(Segment::attach(path).creator_liveness() == Liveness::alive);
    }
    SUBCASE("notes.txt: EEXIST naming the path and what the file is, and not one byte changed")
    {
        write_file(path, "notes: buy milk\n");
        const auto [ec, what] = create_error({.take_over_dead = true});
        CHECK(ec == std::errc::file_exists);
        CHECK(what.find("create " + path + ": ") == 0);
        CHECK(what.find("not a valid shmlink segment") != std::string::npos);
        std::ifstream in(path);
        const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        CHECK(content == "notes: buy milk\n");
    }
    SUBCASE("a segment whose creator's liveness cannot be decided, and a FIFO: EEXIST, left as they are")
    {
        { Segment::create(path, 4096, {.cleanup = Cleanup::keep}); }
        patch<std::uint32_t>(path, offsetof(layout::SegmentHeader, flags), 0); // as an older shmlink made it
        const auto [ec, what] = create_error({.take_over_dead = true});
        CHECK(ec == std::errc::file_exists);
        CHECK(what.find("cannot be decided") != std::string::npos);
        CHECK(Segment::attach(path).valid());
        ::unlink(path.c_str());

        REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
        const auto [fifo_ec, fifo_what] = create_error({.take_over_dead = true});
        CHECK(fifo_ec == std::errc::file_exists);
        CHECK(fifo_what.find("is a FIFO") != std::string::npos);
        struct stat st {};
        CHECK((::lstat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)));
    }
    ::unlink(path.c_str());
    SHMLINK_CHECK_NO_LEAKS(before);
}

namespace {

/// What attach says of `path`, asked in a forked child that an alarm ends
/// should attach block: a regression fails the test instead of hanging it.
std::string attach_error_at_once(const std::string& path, bool read_only)
{
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::alarm(10);
        std::string what = "attached";
        try {
            Segment::attach(path, {.read_only = read_only});
        } catch (const std::exception& e) {
            what = e.what();
        }
        (void)!::write(out[1], what.data(), what.size());
        ::_exit(0);
    }
    ::close(out[1]);
    std::string what;
    char buffer[512];
    for (ssize_t n; (n = ::read(out[0], buffer, sizeof(buffer))) > 0;)
        what.append(buffer, static_cast<std::size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        return "blocked: killed by signal " + std::to_string(WTERMSIG(status));
    return what;
}

} // namespace

TEST_CASE("attach: a FIFO, a socket, a directory or a device is a clear error at once, never a block")
{
    const test::HostileFiles files("attach-hostile");
    for (const bool read_only : {true, false}) {
        CAPTURE(read_only);
        CHECK(attach_error_at_once(files.fifo, read_only) == "attach " + files.fifo + ": is a FIFO, not a shmlink segment");
        CHECK(attach_error_at_once(files.socket, read_only)
            == "attach " + files.socket + ": is a socket, not a shmlink segment");
        CHECK(attach_error_at_once(files.directory, read_only)
            == "attach " + files.directory + ": is a directory, not a shmlink segment");
        CHECK(attach_error_at_once("/dev/null", read_only)
            == "attach /dev/null: is a character device, not a shmlink segment");
    }
    // By fd: the end of a pipe says what it is, too.
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    UniqueFd write_end(pipe_fds[1]);
    try {
        Segment::attach(UniqueFd(pipe_fds[0]));
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("is a FIFO") != std::string::npos);
    }
}

namespace {

/// Forks; the child runs `body` and exits 0. Answers the child's wait status.
template <typename Body>
int in_child(Body&& body)
{
    const pid_t pid = ::fork();
    if (pid == 0) {
        try {
            body();
        } catch (...) {
            ::_exit(3);
        }
        ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
}

/// A child that faulted did not get past it: killed by SIGBUS, or (under a
/// sanitizer, whose handler takes the fault) exited with the sanitizer's 1.
bool died_of_the_fault(int status)
{
    return (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) || (WIFEXITED(status) && WEXITSTATUS(status) == 1);
}

/// Reads the byte at `offset` of `segment` through the mapping.
std::uint8_t touch(const Segment& segment, std::size_t offset)
{
    return static_cast<std::uint8_t>(*static_cast<volatile const std::byte*>(segment.base() + offset));
}

} // namespace

TEST_CASE("guard_truncation: a file cut under the mapping is extended back instead of SIGBUS; other faults still kill")
{
    const test::ShmPath file("guard");
    Segment host = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close, .map = {.guard_truncation = true}});
    const auto object = host.allocate("data", 1, 1, 64 << 10);
    const std::byte mark {0x7e};
    REQUIRE_FALSE(host.write_at(object.offset + 100, std::span(&mark, 1)));
    const std::size_t far = (1 << 20) - 4096; // a page the cut takes away

    // Unguarded, a process that touches a cut page dies of SIGBUS.
    const int unguarded = in_child([&] {
        Segment guest = Segment::attach(file.path);
        if (::truncate(file.path.c_str(), 4096) != 0)
            ::_exit(4);
        touch(guest, far);
        ::_exit(2);
    });
    CHECK(died_of_the_fault(unguarded));

    // Guarded, the same touch reads zero, the file is whole again, and it is counted.
    CHECK(touch(host, far) == 0);
    CHECK(host.repairs() == 1);
    struct stat st {};
    REQUIRE(::stat(file.path.c_str(), &st) == 0);
    CHECK(static_cast<std::size_t>(st.st_size) == host.size_bytes());
    CHECK(touch(host, object.offset + 100) == 0); // the data in the cut extent is lost
    CHECK(host.check_backing() == std::error_code {});

    // check_backing() finds a cut before anything touches it, and repairs it too.
    REQUIRE(::truncate(file.path.c_str(), 4096) == 0);
    CHECK(host.check_backing() == Errc::truncated);
    REQUIRE(::stat(file.path.c_str(), &st) == 0);
    CHECK(static_cast<std::size_t>(st.st_size) == host.size_bytes());
    CHECK(touch(host, far) == 0);
    CHECK(host.repairs() == 1); // no fault was needed

    // A read-only guest cannot extend the file: it gets a private zero page instead.
    const int read_only = in_child([&] {
        Segment guest = Segment::attach(file.path, {.read_only = true, .map = {.guard_truncation = true}});
        if (::truncate(file.path.c_str(), 4096) != 0 || touch(guest, far) != 0 || guest.repairs() != 1)
            ::_exit(1);
    });
    CHECK(WIFEXITED(read_only));
    CHECK(WEXITSTATUS(read_only) == 0);
    CHECK(host.check_backing() == Errc::truncated); // the read-only guest left it cut
    CHECK(host.truncations() == 3); // in the header, for every process: two repairs above and this one

    // With the guard installed, a SIGBUS in a mapping it does not guard still kills.
    // The child dies before any cleanup of its own: the file is this process's to remove.
    const test::ShmPath other("guard-other");
    const int foreign = in_child([&] {
        Segment unguarded = Segment::create(other.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
        Segment guarded = Segment::attach(file.path, {.map = {.guard_truncation = true}});
        if (::truncate(other.path.c_str(), 4096) != 0)
            ::_exit(4);
        touch(unguarded, far);
        ::_exit(2);
    });
    CHECK(died_of_the_fault(foreign));
}

TEST_CASE("a Segment that is not valid (default or moved from) answers every call with an error, never a crash")
{
    Segment moved_from = Segment::create_anonymous(1 << 16);
    const Segment taker = std::move(moved_from);
    Segment fresh;
    for (Segment* s : {&moved_from, &fresh}) {
        CHECK_FALSE(s->valid());
        std::error_code ec;
        s->grow(1 << 20, ec);
        CHECK(ec == Errc::not_owner);
        CHECK_FALSE(s->refresh(ec));
        CHECK(ec);
        CHECK_FALSE(s->find("x", ec));
        CHECK(ec);
        s->allocate("x", 1, 1, 64, 128, ec);
        CHECK(ec == Errc::not_owner);
        (void)s->snapshot({}, ec);
        CHECK(ec);
        CHECK(s->check_backing());
        CHECK(s->bytes().empty());
        std::byte b[8] {};
        CHECK(s->read_into(0, b) == Errc::out_of_range);
        CHECK(s->write_at(0, b));
        CHECK(s->subspan(0, 8).empty());
        CHECK(s->generation() == 0);
        CHECK(s->info().size_bytes == 0);
        CHECK(s->objects(ec).empty());
        CHECK_THROWS_AS(s->grow(1 << 20), Error);
        CHECK_THROWS_AS((void)s->find("x"), Error);
    }
    CHECK(taker.valid());
}

TEST_CASE("repair_header: the creator rewrites what another process wrote over the header page; a guest told the layout never reads it")
{
    const test::ShmPath file("repair-header");
    Segment host = Segment::create(file.path, 64 << 10);
    const ObjectInfo a = host.allocate("a", 1, 1, 256);
    const ObjectInfo b = host.allocate("b", 1, 1, 256);
    const SegmentLayout told = host.layout();
    REQUIRE(told.directory.size() == 2);
    std::string what;
    CHECK(host.repair_header(what) == 0);
    CHECK(what.empty());

    CHECK(test::while_scribbled(file.path, "@page", 5, 4, [] {}) == "ok scribbled=4");
    std::error_code ec;
    CHECK_FALSE(Segment::attach(file.path, {}, ec).valid());
    CHECK(ec == Errc::bad_magic);

    // The creator's snapshot carries the creator's page, not the damage.
    const Snapshot snap = host.snapshot();
    layout::SegmentHeader copied {};
    REQUIRE_FALSE(snap.read_into(0, std::as_writable_bytes(std::span(&copied, 1))));
    std::string why;
    CHECK_FALSE(layout::validate_header(copied, snap.size_bytes(), why));
    CHECK(why.empty());

    // The creator looks only at its own copy; a guest told the layout (as a
    // host's welcome tells it) never reads the header, and follows a grow
    // by the size it is told.
    CHECK(host.find("b").offset == b.offset);
    Segment guest = Segment::attach_as_told(UniqueFd(::open(file.path.c_str(), O_RDWR | O_CLOEXEC)), told);
    CHECK(guest.find("a").offset == a.offset);
    host.grow(128 << 10);
    CHECK(guest.refresh_to(host.size_bytes(), ec));
    CHECK_FALSE(ec);
    CHECK(guest.size_bytes() == host.size_bytes());
    CHECK_FALSE(guest.refresh_to(64 << 10, ec)); // an older grow's size, told late
    CHECK_FALSE(ec);
    CHECK_FALSE(guest.refresh_to((256 << 10) + 1, ec));
    CHECK(ec == Errc::corrupt_header);

    CHECK(host.repair_header(what) > 0);
    INFO(what);
    CHECK(what.find("magic") != std::string::npos);
    CHECK(what.find("directory entry 0 'a'") != std::string::npos);
    CHECK(host.header_repairs() == 1);
    CHECK(host.repair_header(what) == 0);
    Segment again = Segment::attach(file.path);
    CHECK(again.find("b").offset == b.offset);
    CHECK(again.info().size_bytes == host.size_bytes());
    CHECK(again.info().generation == 1);
    CHECK(again.header_repairs() == 1);

    // What other processes count is theirs, and stays (a scribbled count too).
    const std::uint64_t truncations = host.truncations();
    std::atomic_ref(reinterpret_cast<layout::SegmentHeader*>(again.base())->truncations).fetch_add(3);
    CHECK(host.repair_header(what) == 0);
    CHECK(host.truncations() == truncations + 3);
}
