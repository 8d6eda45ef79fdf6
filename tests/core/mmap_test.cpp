// Tests of core/mmap.hpp, core/flags.hpp and core/unique_fd.hpp.
#include <shmlink/core/mmap.hpp>

#include "tests/support/leaks.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

using namespace shmlink;

TEST_CASE("flags: typed sets combine and test bits")
{
    constexpr MapFlags flags = Map::shared | Map::populate;
    static_assert(flags.has(Map::shared) && flags.has(Map::populate) && !flags.has(Map::fixed));
    static_assert(flags.bits() == (MAP_SHARED | MAP_POPULATE));
    static_assert(flags.without(Map::populate) == MapFlags(Map::shared));
    CHECK((Prot::read | Prot::write).bits() == (PROT_READ | PROT_WRITE));
}

TEST_CASE("UniqueFd closes once and moves ownership")
{
    const test::ResourceCount before;
    {
        UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        REQUIRE(a.valid());
        const int raw = a.get();
        UniqueFd b(std::move(a));
        CHECK_FALSE(a.valid());
        CHECK(b.get() == raw);
        UniqueFd c;
        c = std::move(b);
        CHECK(c.get() == raw);
        CHECK(::fcntl(raw, F_GETFD) >= 0);
        c.reset();
        CHECK(::fcntl(raw, F_GETFD) == -1);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("map, protect, advise, sync, lock and unmap an anonymous mapping")
{
    const test::ResourceCount before;
    {
        std::error_code ec;
        Mapping m = map(4 * page_size(), Prot::read | Prot::write, Map::private_ | Map::anonymous, UniqueFd {}, 0, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(m.valid());
        std::memset(m.data(), 0x5a, m.size());
        CHECK_FALSE(remap(m, 8 * page_size(), true));
        CHECK(m.size() == 8 * page_size());
        CHECK(static_cast<unsigned char>(m.data()[0]) == 0x5a);
        CHECK_FALSE(advise(m.bytes(), Advice::willneed));
        CHECK_FALSE(sync(m.bytes(), Sync::async));
        CHECK_FALSE(protect(m.bytes().first(page_size()), Prot::read));
        CHECK(protect(m.bytes().subspan(1), Prot::read) == std::errc::invalid_argument); // not page aligned
        // mremap needs one VMA; the protect above split it in two.
        CHECK(remap(m, 16 * page_size(), true) == std::errc::bad_address);
        if (auto locked = lock(m.bytes()); !locked)
            CHECK_FALSE(unlock(m.bytes()));

        Mapping empty = map(0, Prot::read, Map::private_ | Map::anonymous, UniqueFd {}, 0, ec);
        CHECK(ec == std::errc::invalid_argument);
        CHECK_FALSE(empty.valid());
        Mapping bad = map(page_size(), Prot::read, Map::shared, UniqueFd {}, 0, ec); // no fd, not anonymous
        CHECK(ec == std::errc::bad_file_descriptor);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("reserve address space and map a file into it in place")
{
    const test::ResourceCount before;
    {
        std::error_code ec;
        UniqueFd fd = memfd_create("mmap-test", Memfd::cloexec | Memfd::allow_sealing, ec);
        REQUIRE_FALSE(ec);
        REQUIRE(::ftruncate(fd.get(), 2 * static_cast<off_t>(page_size())) == 0);
        Mapping space = reserve_address_space(16 * page_size(), ec);
        REQUIRE_FALSE(ec);
        std::byte* base = space.data();
        REQUIRE_FALSE(map_fixed(space, 0, page_size(), Prot::read | Prot::write, Map::shared, fd, 0));
        REQUIRE_FALSE(map_fixed(space, page_size(), page_size(), Prot::read | Prot::write, Map::shared, fd,
            static_cast<off_t>(page_size())));
        CHECK(space.data() == base);
        std::memcpy(base + page_size(), "second", 6);
        char seen[6];
        REQUIRE(::pread(fd.get(), seen, 6, static_cast<off_t>(page_size())) == 6);
        CHECK(std::memcmp(seen, "second", 6) == 0);
        // Outside the reservation, or misaligned: refused, nothing mapped.
        CHECK(map_fixed(space, 16 * page_size(), page_size(), Prot::read, Map::shared, fd, 0) == std::errc::invalid_argument);
        CHECK(map_fixed(space, 100, page_size(), Prot::read, Map::shared, fd, 0) == std::errc::invalid_argument);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("shm_open and shm_unlink")
{
    const test::ResourceCount before;
    const std::string name = "/shmlink-mmap-test-" + std::to_string(::getpid());
    {
        std::error_code ec;
        UniqueFd fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, ec);
        REQUIRE_FALSE(ec);
        UniqueFd again = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, ec);
        CHECK(ec == std::errc::file_exists);
        CHECK_FALSE(shm_unlink(name));
        CHECK(shm_unlink(name) == std::errc::no_such_file_or_directory);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}
