// shmlink::Segment: a file-backed MAP_SHARED segment that a host creates and
// guests attach to, by path or by fd. Its base address never moves: every
// process reserves the maximum size of address space up front and maps the
// file over its start; grow() and refresh() map only the new extent.
#pragma once

#include <shmlink/core/error.hpp>
#include <shmlink/core/layout.hpp>
#include <shmlink/core/liveness.hpp>
#include <shmlink/core/mmap.hpp>
#include <shmlink/core/snapshot.hpp>
#include <shmlink/core/unique_fd.hpp>

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace shmlink {

/// What happens to a path-backed segment's file.
enum class Cleanup {
    keep,            ///< the file stays after everyone closes
    unlink_on_close, ///< the creator's Segment removes it when it is destroyed (guests never do)
    unlink_now,      ///< never visible in the file system (O_TMPFILE); lives while mapped or open
};

/// How a process maps the segment; each process chooses its own.
struct MapOptions {
    bool populate = false;    ///< prefault pages (MAP_POPULATE)
    bool huge_pages = false;  ///< ask for transparent huge pages (MADV_HUGEPAGE; tmpfs may decline)
    bool lock_memory = false; ///< mlock the mapped extent; grow() and refresh() lock new extents too
    /// Survive another process truncating the file or punching holes in it:
    /// a SIGBUS in this mapping extends the file back and allocates the page
    /// (it reads as zeros) instead of killing this process, and repairs()
    /// counts it. A page the file cannot hold again (a full file system, a
    /// file size limit, a read-only mapping) becomes a private zero page of
    /// this process, counted by private_pages() and reported by
    /// check_backing(). Installs a process-wide SIGBUS handler that passes
    /// other faults on. Meant for path-backed segments shared with processes
    /// not trusted to leave the file alone (a memfd is sealed against
    /// shrinking and needs no guard).
    bool guard_truncation = false;
};

struct SegmentOptions {
    /// Address space reserved in every process, the ceiling for grow().
    /// 0 picks max(size, 1 GiB). Rounded up to whole pages.
    std::size_t max_size_bytes = 0;
    Cleanup cleanup = Cleanup::keep;
    mode_t mode = 0600; ///< applied exactly (umask does not narrow it)
    /// A file already at the path may be replaced, but only when it is a
    /// shmlink segment whose creator is provably gone (its lock is free; see
    /// remove_dead_segment()). A live segment is Errc::in_use; anything else
    /// (another kind of file, a checkpoint, a segment whose creator's
    /// liveness cannot be decided) is EEXIST and is left as it is.
    bool take_over_dead = false;
    /// Allocate the file's pages at create and grow (fallocate) so that a full
    /// file system is an error then, rather than SIGBUS on first touch.
    bool allocate_backing = true;
    MapOptions map {};
    std::string memfd_name = "shmlink"; ///< create_anonymous(): the name /proc shows
    /// create_anonymous() only: seal the memfd against writes by anyone but
    /// this mapping (F_SEAL_FUTURE_WRITE), so that every process it is passed
    /// to, whatever the fd's mode, can map it for reading only
    /// (AttachOptions::read_only), and none can resize it: the file is
    /// max_size_bytes long at once (sparse) and sealed against growing and
    /// shrinking. The creator maps all of it at create (address space only);
    /// grow() then allocates the new pages (allocate_backing) and announces
    /// the size.
    /// For topics whose subscribers keep their slots apart
    /// (SubscriberOptions::own_slot); a ring needs its peers' writes.
    bool peers_read_only = false;
};

/// Whether the file behind `fd` is sealed against writes by anyone without
/// a writable mapping made before (F_SEAL_WRITE, F_SEAL_FUTURE_WRITE: a
/// segment created with peers_read_only): it can be attached read_only only.
bool write_sealed(BorrowedFd fd) noexcept;

struct AttachOptions {
    bool read_only = false; ///< map PROT_READ only (write_at fails, allocate refused)
    MapOptions map {};
};

/// One named object in the directory, as validated.
struct ObjectInfo {
    std::string name {};
    std::uint16_t kind = 0;
    std::uint16_t version = 0;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
};

/// What the creator tells a guest over a channel the guest trusts (a host's
/// welcome): how far the segment reaches and what its directory holds. An
/// attach given it reads nothing of the header, so that what another process
/// writes over the header cannot keep that guest out (attach_as_told()).
struct SegmentLayout {
    std::uint64_t size_bytes = 0;
    std::uint64_t max_size_bytes = 0;
    std::vector<ObjectInfo> directory {};
};

/// The header's fields, read atomically where they change.
struct SegmentInfo {
    std::uint32_t layout_version = 0;
    std::uint64_t size_bytes = 0;
    std::uint64_t max_size_bytes = 0;
    std::uint64_t generation = 0;
    std::uint64_t nonce = 0;
    pid_t creator_pid = 0;
    std::uint64_t creator_start_time = 0;
    std::uint32_t flags = 0; ///< layout::HeaderFlags
    std::uint32_t directory_count = 0;
    std::uint64_t data_used_bytes = 0;
};

/// A mapped segment. Move-only; the destructor unmaps it and closes its fd
/// (and, for the creator with Cleanup::unlink_on_close, removes the file).
///
/// The creator holds a lock on the file for the Segment's lifetime, through
/// a file description of its own that is never handed to guests; how long
/// it lives is what creator_liveness() asks the kernel. A child forked from
/// the creator shares that description, and keeps the creator alive in the
/// kernel's eyes until it exits or execs.
///
/// Thread safety: data access (bytes(), read_into(), write_at()) from any
/// thread; grow(), refresh(), refresh_to(), allocate(), repair_header() and
/// snapshot() from one thread at a time per
/// Segment object. Pointers into the segment stay valid across grow() and
/// refresh() for the Segment's lifetime.
class Segment {
public:
    Segment() noexcept = default;
    Segment(Segment&&) noexcept;
    Segment& operator=(Segment&&) noexcept;
    ~Segment();

    /// Creates a segment file at `path` (O_EXCL; with take_over_dead a dead
    /// creator's segment there is removed first, by remove_dead_segment()).
    /// With Cleanup::unlink_on_close only the creating process removes the
    /// file: a child forked from it may destroy its copy freely.
    /// Errors: EEXIST (the message says what the file is), Errc::in_use (a
    /// live segment is there, with take_over_dead), EACCES...,
    /// Errc::invalid_argument (size 0), Errc::exceeds_maximum (size above the maximum).
    static Segment create(const std::filesystem::path& path, std::size_t size_bytes, const SegmentOptions& options = {});
    static Segment create(const std::filesystem::path& path, std::size_t size_bytes, const SegmentOptions& options,
        std::error_code& ec) noexcept;

    /// Creates a segment in an anonymous memfd, sealed against shrinking
    /// (F_SEAL_SHRINK) and against further seals (F_SEAL_SEAL): no peer can
    /// truncate it under the others. Guests attach through its fd().
    static Segment create_anonymous(std::size_t size_bytes, const SegmentOptions& options = {});
    static Segment create_anonymous(std::size_t size_bytes, const SegmentOptions& options, std::error_code& ec) noexcept;

    /// Attaches to an existing segment. Everything is validated before it is
    /// trusted: magic, version, ABI, sizes against fstat, the directory.
    static Segment attach(const std::filesystem::path& path, const AttachOptions& options = {});
    static Segment attach(const std::filesystem::path& path, const AttachOptions& options, std::error_code& ec) noexcept;
    static Segment attach(UniqueFd fd, const AttachOptions& options = {});
    static Segment attach(UniqueFd fd, const AttachOptions& options, std::error_code& ec) noexcept;
    /// Attaches to the segment `fd` as its creator described it (layout()),
    /// without reading its header: the told size is checked against the
    /// file and each told entry against the size. find() looks names up in
    /// the told directory first. Follow grows with refresh_to(). What else
    /// reads the header (refresh(), generation(), info(), objects(), and
    /// find() of a name not told) reads it as for any guest.
    static Segment attach_as_told(UniqueFd fd, const SegmentLayout& told, const AttachOptions& options = {});
    static Segment attach_as_told(UniqueFd fd, const SegmentLayout& told, const AttachOptions& options, std::error_code& ec) noexcept;

    /// Creator only: grows the segment to `new_size_bytes` (rounded up to
    /// pages) without moving it. Same size: no-op. Errors:
    /// Errc::shrink_refused, Errc::exceeds_maximum, Errc::not_owner, ENOSPC.
    /// A failed grow leaves the segment as it was.
    void grow(std::size_t new_size_bytes);
    void grow(std::size_t new_size_bytes, std::error_code& ec) noexcept;

    /// Maps whatever the creator has grown since; true if it mapped a new
    /// extent. Cheap (one atomic load) when nothing changed.
    bool refresh();
    bool refresh(std::error_code& ec) noexcept;
    /// Maps up to `size_bytes`, a size the creator told this process over a
    /// channel it trusts (a host's grown frame), rather than the header's;
    /// true if it mapped a new extent. Errc::corrupt_header when the size is
    /// not a page multiple or beyond the reservation, Errc::size_mismatch
    /// when the file is shorter.
    bool refresh_to(std::uint64_t size_bytes, std::error_code& ec) noexcept;

    /// Creator only: reserves `length` bytes of the data area under `name`
    /// (1..39 bytes) and publishes it in the directory. The bytes are zero;
    /// the offset is a multiple of `alignment` (a power of two, at least 8).
    /// `kind` and `version` are the caller's; core does not interpret them.
    /// Errors: Errc::name_taken, Errc::directory_full, Errc::no_space (grow first).
    ObjectInfo allocate(std::string_view name, std::uint16_t kind, std::uint16_t version, std::size_t length,
        std::size_t alignment = 128);
    ObjectInfo allocate(std::string_view name, std::uint16_t kind, std::uint16_t version, std::size_t length,
        std::size_t alignment, std::error_code& ec) noexcept;
    /// As allocate(), and calls `initialize` on the zeroed bytes before the
    /// entry is published, so that no process can find the object half made.
    /// `initialize` must not throw.
    ObjectInfo allocate(std::string_view name, std::uint16_t kind, std::uint16_t version, std::size_t length,
        std::size_t alignment, const std::function<void(std::span<std::byte>)>& initialize,
        std::error_code& ec) noexcept;

    /// Creator only: reserves `length` zeroed bytes of the data area without
    /// a directory entry, for an object that keeps track of its own extents
    /// (a topic's chunk pool); returns their offset, a multiple of
    /// `alignment` (a power of two, 8 .. a page). Errors: Errc::invalid_argument,
    /// Errc::no_space (grow first), Errc::not_owner.
    std::uint64_t allocate_extent(std::size_t length, std::size_t alignment, std::error_code& ec) noexcept;

    /// Looks an object up by name: among the told objects first (attach_as_told()),
    /// then in the directory, refreshing first if the segment grew.
    /// Throws Errc::not_found; the non-throwing form returns nullopt and sets ec.
    ObjectInfo find(std::string_view name);
    std::optional<ObjectInfo> find(std::string_view name, std::error_code& ec) noexcept;

    /// Every published object, validated. The creator answers from its own
    /// copy of the directory, never from the shared one.
    std::vector<ObjectInfo> objects(std::error_code& ec) const;

    /// Creator only: what a guest needs to attach without the header (see
    /// attach_as_told()), from the creator's own copy.
    [[nodiscard]] SegmentLayout layout() const;

    /// Creator only: compares the first page (header and directory) with
    /// the creator's copy of what it wrote, and rewrites every word another
    /// process changed (not the counters others write: truncations,
    /// damaged_pages), the magic last. Returns how many 8-byte words it
    /// rewrote (0: intact; then nothing is written) and names the fields in
    /// `what` ("magic, directory entry 2 'guest.1'"); each repair adds one
    /// to the header's header_repairs. Call it from the thread that calls
    /// grow() and allocate(). A read-only or guest segment: 0.
    std::size_t repair_header(std::string& what) noexcept;
    /// Times the creator rewrote the first page (the header's header_repairs).
    [[nodiscard]] std::uint64_t header_repairs() const noexcept;

    /// Bounds-checked access within the mapped size; Errc::out_of_range past it.
    std::error_code read_into(std::size_t offset, std::span<std::byte> out) const noexcept;
    std::error_code write_at(std::size_t offset, std::span<const std::byte> in) noexcept;
    /// The sub-range, or an empty span when it is not within the mapped size.
    std::span<std::byte> subspan(std::size_t offset, std::size_t length) const noexcept;
    /// The whole mapped extent, header included.
    std::span<std::byte> bytes() const noexcept;

    /// A private copy of the mapped extent as it is now (see Snapshot).
    /// A guest refreshes first, so the copy's header matches its size and the
    /// copy is itself a valid segment; the creator's copy gets the creator's
    /// own first page, whatever was written over the shared one.
    Snapshot snapshot(const SnapshotOptions& options = {});
    Snapshot snapshot(const SnapshotOptions& options, std::error_code& ec) noexcept;

    [[nodiscard]] bool valid() const noexcept { return fd_.valid(); }
    [[nodiscard]] bool is_owner() const noexcept { return owner_; }
    /// Mapped for writing (not attached read_only).
    [[nodiscard]] bool is_writable() const noexcept { return writable_; }
    [[nodiscard]] std::byte* base() const noexcept { return reservation_.data(); }
    /// Bytes mapped in this process (the creator's size as of the last grow/refresh).
    [[nodiscard]] std::size_t size_bytes() const noexcept
    {
        // acquire: pairs with the release store in grow() and refresh().
        return mapped_bytes_.load(std::memory_order_acquire);
    }
    [[nodiscard]] std::size_t max_size_bytes() const noexcept { return reservation_.size(); }
    /// The generation now (bumped by every grow): the creator's own count, or
    /// the header's for a guest (a told guest too: it is for people).
    [[nodiscard]] std::uint64_t generation() const noexcept;
    [[nodiscard]] SegmentInfo info() const noexcept;
    /// Whether the creator's Segment still lives, by a probe of its lock
    /// (through a file description of this call's own; needs /proc).
    /// Liveness::unknown when the segment carries no lock flag (an older
    /// segment, a checkpoint) or the probe fails: never taken for dead.
    [[nodiscard]] Liveness creator_liveness() const noexcept;

    /// Whether the file still holds every byte this process maps. When
    /// another process truncated it, extends it back (the cut extent reads as
    /// zeros; its data is lost) and answers Errc::truncated; a read-only
    /// attach cannot repair and answers the same. Once any process replaced
    /// pages the file could not hold again by private ones (private_pages()
    /// here, damaged_pages() in the header), answers Errc::damaged, which
    /// takes precedence: those pages are no longer shared, and stay so until
    /// the segment is mapped again. {} when intact.
    std::error_code check_backing() noexcept;
    /// How many times any process found the file cut and extended it back
    /// (the header's `truncations`): how a host learns that a peer truncated
    /// the file even when another process repaired it first.
    [[nodiscard]] std::uint64_t truncations() const noexcept;
    /// Faults in this mapping that MapOptions::guard_truncation survived.
    [[nodiscard]] std::uint64_t repairs() const noexcept;
    /// Pages of this mapping that MapOptions::guard_truncation replaced by
    /// private zero pages because the file could not hold them again.
    [[nodiscard]] std::uint64_t private_pages() const noexcept;
    /// Such pages in every process that maps the segment writable (the
    /// header's `damaged_pages`).
    [[nodiscard]] std::uint64_t damaged_pages() const noexcept;
    [[nodiscard]] const UniqueFd& fd() const noexcept { return fd_; }
    /// The path this segment was created at or attached by; empty for memfd and unlinked ones.
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    static Segment create_at(const std::filesystem::path& path, std::size_t size_bytes, const SegmentOptions& options,
        std::error_code& ec, std::string& detail) noexcept;
    static Segment create_memfd(std::size_t size_bytes, const SegmentOptions& options, std::error_code& ec,
        std::string& detail) noexcept;
    static Segment attach_path(const std::filesystem::path& path, const AttachOptions& options, std::error_code& ec,
        std::string& detail) noexcept;
    static Segment finish_create(UniqueFd fd, std::filesystem::path path, std::size_t size_bytes,
        const SegmentOptions& options, std::error_code& ec, std::string& detail) noexcept;
    static Segment attach_fd(UniqueFd fd, std::filesystem::path path, const AttachOptions& options,
        const SegmentLayout* told, std::error_code& ec, std::string& detail) noexcept;
    bool map_up_to(std::uint64_t size, std::error_code& ec) noexcept;
    std::error_code write_trusted_page(const UniqueFd& copy) const noexcept;
    std::error_code map_extent(std::size_t from, std::size_t to) noexcept;
    std::error_code start_guard() noexcept;
    std::uint32_t directory_count() const noexcept;
    std::error_code validate_directory(std::string& detail) const;
    std::optional<ObjectInfo> entry(std::uint32_t index, std::error_code& ec, std::string& detail) const;
    void release() noexcept;

    UniqueFd fd_;
    UniqueFd creator_lock_; // creator only: a description of our own that holds the creator's lock byte
    Mapping reservation_; // max_size_bytes of address space; the file is mapped over its start
    std::atomic<std::size_t> mapped_bytes_ {0}; // read by any thread, written by grow()/refresh()
    std::uint64_t data_used_ = 0;   // creator only: the allocation cursor (the header gets a copy)
    std::uint32_t entry_count_ = 0; // creator only: directory entries published
    // Creator only: the first page as the creator wrote it, which the shared
    // one is compared with and repaired from; the creator reads only this.
    std::unique_ptr<layout::HeaderPage> trusted_;
    // Attached with a SegmentLayout: the directory the creator told us of.
    std::optional<std::vector<ObjectInfo>> told_directory_;
    std::filesystem::path path_;
    bool owner_ = false;
    pid_t owner_pid_ = 0; // the creator's process: a forked child's copy never unlinks
    bool writable_ = false;
    bool mapped_ahead_ = false; // SegmentOptions::peers_read_only: the whole reservation is mapped
    Cleanup cleanup_ = Cleanup::keep;
    bool allocate_backing_ = true;
    MapOptions map_;
    int guard_slot_ = -1; // MapOptions::guard_truncation: this mapping's slot in the SIGBUS guard
};

} // namespace shmlink
