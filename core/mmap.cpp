#include <shmlink/core/mmap.hpp>

#include <shmlink/core/error.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace shmlink {
namespace {

std::error_code result(int rc) noexcept { return rc == 0 ? std::error_code{} : errno_code(); }

bool page_aligned(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p) % page_size() == 0; }

} // namespace

void Mapping::reset() noexcept
{
    if (base_ != nullptr)
        ::munmap(base_, length_);
    base_ = nullptr;
    length_ = 0;
}

std::size_t page_size() noexcept
{
    static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

std::size_t round_up_to_pages(std::size_t bytes) noexcept
{
    const std::size_t page = page_size();
    return (bytes + page - 1) / page * page;
}

Mapping map(std::size_t length, ProtFlags prot, MapFlags flags, const UniqueFd& fd, off_t offset,
    std::error_code& ec) noexcept
{
    ec.clear();
    if (length == 0) {
        ec = std::make_error_code(std::errc::invalid_argument);
        return {};
    }
    void* base = ::mmap(nullptr, length, prot.bits(), flags.bits(), fd.get(), offset);
    if (base == MAP_FAILED) {
        ec = errno_code();
        return {};
    }
    return {base, length};
}

Mapping reserve_address_space(std::size_t length, std::error_code& ec) noexcept
{
    return map(length, Prot::none, Map::private_ | Map::anonymous | Map::noreserve, UniqueFd{}, 0, ec);
}

std::error_code map_fixed(const Mapping& into, std::size_t offset_in_mapping, std::size_t length,
    ProtFlags prot, MapFlags flags, const UniqueFd& fd, off_t file_offset) noexcept
{
    if (!into.valid() || length == 0 || offset_in_mapping > into.size() || length > into.size() - offset_in_mapping
        || offset_in_mapping % page_size() != 0)
        return std::make_error_code(std::errc::invalid_argument);
    void* at = into.data() + offset_in_mapping;
    // MAP_FIXED is safe here: the range lies inside a mapping this process owns.
    void* got = ::mmap(at, length, prot.bits(), (flags | Map::fixed).bits(), fd.get(), file_offset);
    if (got == MAP_FAILED)
        return errno_code();
    return {};
}

std::error_code remap(Mapping& mapping, std::size_t new_length, bool may_move) noexcept
{
    if (!mapping.valid() || new_length == 0)
        return std::make_error_code(std::errc::invalid_argument);
    void* got = ::mremap(mapping.base_, mapping.length_, new_length, may_move ? MREMAP_MAYMOVE : 0);
    if (got == MAP_FAILED)
        return errno_code();
    mapping.base_ = static_cast<std::byte*>(got);
    mapping.length_ = new_length;
    return {};
}

std::error_code protect(std::span<std::byte> range, ProtFlags prot) noexcept
{
    if (!page_aligned(range.data()))
        return std::make_error_code(std::errc::invalid_argument);
    return result(::mprotect(range.data(), range.size(), prot.bits()));
}

std::error_code advise(std::span<std::byte> range, Advice advice) noexcept
{
    if (!page_aligned(range.data()))
        return std::make_error_code(std::errc::invalid_argument);
    return result(::madvise(range.data(), range.size(), static_cast<int>(advice)));
}

std::error_code sync(std::span<std::byte> range, SyncFlags flags) noexcept
{
    if (!page_aligned(range.data()))
        return std::make_error_code(std::errc::invalid_argument);
    return result(::msync(range.data(), range.size(), flags.bits()));
}

std::error_code lock(std::span<std::byte> range) noexcept { return result(::mlock(range.data(), range.size())); }

std::error_code unlock(std::span<std::byte> range) noexcept { return result(::munlock(range.data(), range.size())); }

UniqueFd memfd_create(const std::string& name, MemfdFlags flags, std::error_code& ec) noexcept
{
    ec.clear();
    UniqueFd fd(::memfd_create(name.c_str(), flags.bits()));
    if (!fd)
        ec = errno_code();
    return fd;
}

UniqueFd shm_open(const std::string& name, int open_flags, mode_t mode, std::error_code& ec) noexcept
{
    ec.clear();
    UniqueFd fd(::shm_open(name.c_str(), open_flags | O_CLOEXEC, mode));
    if (!fd)
        ec = errno_code();
    return fd;
}

std::error_code shm_unlink(const std::string& name) noexcept { return result(::shm_unlink(name.c_str())); }

} // namespace shmlink
