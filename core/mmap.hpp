// The typed mmap layer: thin, exact wrappers over mmap, mremap, munmap,
// mprotect, madvise, msync, mlock, memfd_create and shm_open. Flags are typed
// sets, results are std::error_code, and a Mapping unmaps itself.
#pragma once

#include <shmlink/core/flags.hpp>
#include <shmlink/core/unique_fd.hpp>

#include <sys/mman.h>

#include <cstddef>
#include <span>
#include <string>
#include <system_error>
#include <utility>

namespace shmlink {

enum class Prot : int {
    none = PROT_NONE,
    read = PROT_READ,
    write = PROT_WRITE,
    exec = PROT_EXEC,
};
using ProtFlags = Flags<Prot>;
constexpr ProtFlags operator|(Prot a, Prot b) noexcept { return ProtFlags(a) | b; }

enum class Map : int {
    shared = MAP_SHARED,
    private_ = MAP_PRIVATE,
    anonymous = MAP_ANONYMOUS,
    fixed = MAP_FIXED,
    fixed_noreplace = MAP_FIXED_NOREPLACE,
    noreserve = MAP_NORESERVE,
    populate = MAP_POPULATE,
    hugetlb = MAP_HUGETLB,
    locked = MAP_LOCKED,
};
using MapFlags = Flags<Map>;
constexpr MapFlags operator|(Map a, Map b) noexcept { return MapFlags(a) | b; }

enum class Advice : int {
    normal = MADV_NORMAL,
    random = MADV_RANDOM,
    sequential = MADV_SEQUENTIAL,
    willneed = MADV_WILLNEED,
    dontneed = MADV_DONTNEED,
    remove = MADV_REMOVE,
    hugepage = MADV_HUGEPAGE,
    nohugepage = MADV_NOHUGEPAGE,
    dontdump = MADV_DONTDUMP,
    dodump = MADV_DODUMP,
    populate_write = MADV_POPULATE_WRITE, ///< Linux 5.14; older kernels answer EINVAL
};

enum class Sync : int {
    async = MS_ASYNC,
    sync = MS_SYNC,
    invalidate = MS_INVALIDATE,
};
using SyncFlags = Flags<Sync>;

enum class Memfd : unsigned {
    cloexec = MFD_CLOEXEC,
    allow_sealing = MFD_ALLOW_SEALING,
    hugetlb = MFD_HUGETLB,
};
using MemfdFlags = Flags<Memfd>;
constexpr MemfdFlags operator|(Memfd a, Memfd b) noexcept { return MemfdFlags(a) | b; }

/// A move-only mapped range; the destructor unmaps it. Everything mapped
/// with MAP_FIXED inside a Mapping's range belongs to it and goes with it.
class Mapping {
public:
    Mapping() noexcept = default;
    Mapping(void* base, std::size_t length) noexcept : base_(static_cast<std::byte*>(base)), length_(length) {}
    Mapping(Mapping&& other) noexcept
        : base_(std::exchange(other.base_, nullptr)), length_(std::exchange(other.length_, 0))
    {
    }
    Mapping& operator=(Mapping&& other) noexcept
    {
        if (this != &other) {
            reset();
            base_ = std::exchange(other.base_, nullptr);
            length_ = std::exchange(other.length_, 0);
        }
        return *this;
    }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() { reset(); }

    [[nodiscard]] std::byte* data() const noexcept { return base_; }
    [[nodiscard]] std::size_t size() const noexcept { return length_; }
    [[nodiscard]] std::span<std::byte> bytes() const noexcept { return {base_, length_}; }
    [[nodiscard]] bool valid() const noexcept { return base_ != nullptr; }

    void reset() noexcept;

private:
    friend std::error_code remap(Mapping&, std::size_t, bool) noexcept;
    std::byte* base_ = nullptr;
    std::size_t length_ = 0;
};

/// The system page size in bytes.
std::size_t page_size() noexcept;

/// Rounds `bytes` up to a whole number of pages (0 stays 0).
std::size_t round_up_to_pages(std::size_t bytes) noexcept;

/// mmap(2). `fd` may be an empty UniqueFd for anonymous mappings.
Mapping map(std::size_t length, ProtFlags prot, MapFlags flags, const UniqueFd& fd, off_t offset,
    std::error_code& ec) noexcept;

/// Anonymous PROT_NONE, MAP_NORESERVE address space: costs no memory until
/// something is mapped over it with map_fixed().
Mapping reserve_address_space(std::size_t length, std::error_code& ec) noexcept;

/// Maps `fd` at `offset_in_mapping` inside `into` with MAP_FIXED; the pages
/// then belong to `into`. The range must lie within `into`.
std::error_code map_fixed(const Mapping& into, std::size_t offset_in_mapping, std::size_t length,
    ProtFlags prot, MapFlags flags, const UniqueFd& fd, off_t file_offset) noexcept;

/// mremap(2): resizes in place, or moves the mapping when `may_move`.
std::error_code remap(Mapping& mapping, std::size_t new_length, bool may_move) noexcept;

std::error_code protect(std::span<std::byte> range, ProtFlags prot) noexcept;
std::error_code advise(std::span<std::byte> range, Advice advice) noexcept;
std::error_code sync(std::span<std::byte> range, SyncFlags flags) noexcept;
std::error_code lock(std::span<std::byte> range) noexcept;
std::error_code unlock(std::span<std::byte> range) noexcept;

/// memfd_create(2). The name is for /proc/PID/fd and debugging only.
UniqueFd memfd_create(const std::string& name, MemfdFlags flags, std::error_code& ec) noexcept;

/// shm_open(3) / shm_unlink(3): POSIX shared-memory names ("/name").
UniqueFd shm_open(const std::string& name, int open_flags, mode_t mode, std::error_code& ec) noexcept;
std::error_code shm_unlink(const std::string& name) noexcept;

} // namespace shmlink
