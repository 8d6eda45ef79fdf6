#include <shmlink/core/segment.hpp>

#include <shmlink/core/bounds.hpp>
#include <shmlink/core/detail/truncation_guard.hpp>
#include <shmlink/core/layout.hpp>
#include <shmlink/core/log.hpp>
#include <shmlink/core/process.hpp>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <new>
#include <type_traits>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iterator>

namespace shmlink {
namespace {

using layout::DirectoryEntry;
using layout::SegmentHeader;

constexpr std::size_t kDefaultMaxBytes = std::size_t{1} << 30;

template <typename T>
std::atomic_ref<T> shared(T& field) noexcept
{
    return std::atomic_ref<T>(field);
}

SegmentHeader& header_of(std::byte* base) noexcept { return *reinterpret_cast<SegmentHeader*>(base); }

DirectoryEntry& entry_of(std::byte* base, std::uint32_t index) noexcept
{
    return reinterpret_cast<DirectoryEntry*>(base + layout::kDirectoryOffset)[index];
}

/// Makes the file at least `to` bytes long, allocating [from, to) when asked
/// so that a full file system shows up here and not as SIGBUS later.
std::error_code extend_file(const UniqueFd& fd, std::size_t from, std::size_t to, bool allocate) noexcept
{
    if (allocate) {
        int rc;
        do
            rc = ::fallocate(fd.get(), 0, static_cast<off_t>(from), static_cast<off_t>(to - from));
        while (rc != 0 && errno == EINTR);
        if (rc == 0)
            return {};
        if (errno != EOPNOTSUPP && errno != ENOSYS)
            return errno_code();
    }
    return ::ftruncate(fd.get(), static_cast<off_t>(to)) == 0 ? std::error_code{} : errno_code();
}

std::uint64_t random_nonce() noexcept
{
    std::uint64_t nonce = 0;
    if (::getrandom(&nonce, sizeof(nonce), 0) != static_cast<ssize_t>(sizeof(nonce)))
        nonce = static_cast<std::uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ULL ^ static_cast<std::uint64_t>(::time(nullptr));
    return nonce;
}

/// Runs `body`, turning an allocation failure into ENOMEM: the noexcept
/// overloads build paths and messages, and must not terminate for that.
template <typename Body>
auto guarded(std::error_code& ec, Body&& body) noexcept -> decltype(body())
{
    try {
        return body();
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        if constexpr (!std::is_void_v<decltype(body())>)
            return {};
    }
}

template <typename Result, typename Call>
Result throwing(std::string_view context, Call&& call)
{
    std::error_code ec;
    std::string detail;
    Result result = call(ec, detail);
    if (ec) {
        logger().error("{}: {}", context, detail.empty() ? ec.message() : detail);
        throw Error(ec, context, Error::Reason {detail}); // core's details say why: the code's own message is less
    }
    return result;
}

} // namespace

Segment::Segment(Segment&& other) noexcept { *this = std::move(other); }

Segment& Segment::operator=(Segment&& other) noexcept
{
    if (this != &other) {
        release();
        fd_ = std::move(other.fd_);
        creator_lock_ = std::move(other.creator_lock_);
        reservation_ = std::move(other.reservation_);
        mapped_bytes_.store(other.mapped_bytes_.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
        data_used_ = other.data_used_;
        entry_count_ = other.entry_count_;
        trusted_ = std::move(other.trusted_);
        told_directory_ = std::move(other.told_directory_);
        other.told_directory_.reset();
        path_ = std::move(other.path_);
        other.path_.clear();
        owner_ = std::exchange(other.owner_, false);
        owner_pid_ = other.owner_pid_;
        writable_ = std::exchange(other.writable_, false);
        mapped_ahead_ = std::exchange(other.mapped_ahead_, false);
        cleanup_ = std::exchange(other.cleanup_, Cleanup::keep);
        allocate_backing_ = other.allocate_backing_;
        map_ = other.map_;
        guard_slot_ = std::exchange(other.guard_slot_, -1);
    }
    return *this;
}

Segment::~Segment() { release(); }

void Segment::release() noexcept
{
    // A child forked from the creator holds a copy of this object; only the
    // creator's own process removes the file.
    if (owner_ && owner_pid_ == ::getpid() && cleanup_ == Cleanup::unlink_on_close && !path_.empty() && fd_) {
        // Remove the path only while it still names this segment's file: a
        // newer segment created at the same path after ours is left alone.
        struct stat ours {};
        struct stat named {};
        if (::fstat(fd_.get(), &ours) == 0 && ::stat(path_.c_str(), &named) == 0 && ours.st_dev == named.st_dev
            && ours.st_ino == named.st_ino) {
            ::unlink(path_.c_str());
            logger().info("segment {} removed by its creator", path_.string());
        }
    }
    detail::guard_forget(std::exchange(guard_slot_, -1)); // before the mapping and the fd go
    reservation_.reset();
    fd_.reset();
    // Last, after the unlink above: while we hold it, nobody who removes dead
    // segments (shmlink gc, take_over_dead) acts on the file.
    creator_lock_.reset();
    mapped_bytes_.store(0, std::memory_order_relaxed);
    owner_ = false;
}

// ---- create ---------------------------------------------------------------

Segment Segment::create(const std::filesystem::path& path, std::size_t size_bytes, const SegmentOptions& options)
{
    return throwing<Segment>("create " + path.string(), [&](std::error_code& ec, std::string& detail) {
        return create_at(path, size_bytes, options, ec, detail);
    });
}

Segment Segment::create(const std::filesystem::path& path, std::size_t size_bytes, const SegmentOptions& options,
    std::error_code& ec) noexcept
{
    std::string detail;
    return create_at(path, size_bytes, options, ec, detail);
}

Segment Segment::create_at(const std::filesystem::path& path, std::size_t size_bytes, const SegmentOptions& options,
    std::error_code& ec, std::string& detail) noexcept
{
    return guarded(ec, [&]() -> Segment {
        ec.clear();
        if (options.peers_read_only) {
            ec = Errc::invalid_argument;
            detail = "peers_read_only needs an anonymous segment (a file at a path cannot be sealed)";
            return {};
        }
        UniqueFd fd;
        bool linked = false;
        if (options.cleanup == Cleanup::unlink_now) {
            const std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : ".";
            fd.reset(::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, options.mode));
            if (!fd && (errno == EOPNOTSUPP || errno == EISDIR)) {
                // No O_TMPFILE on this file system: create, then unlink at once.
                fd.reset(::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, options.mode));
                if (fd)
                    ::unlink(path.c_str());
            }
        } else {
            // Another creator may come back at the path between our removal of a
            // dead segment and our create: a few rounds, then its EEXIST stands.
            for (int round = 0;; ++round) {
                fd.reset(::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, options.mode));
                if (fd || errno != EEXIST || !options.take_over_dead || round == 3)
                    break;
                ec = remove_dead_segment(path, nullptr, detail);
                if (ec && ec != std::errc::no_such_file_or_directory) {
                    detail = "a file is at the path and is not replaced: " + detail;
                    return {};
                }
                if (!ec)
                    logger().info("segment {}: its creator is gone, taking it over", path.string());
                ec.clear();
                detail.clear();
            }
            linked = fd.valid();
        }
        if (!fd) {
            ec = errno_code();
            return {};
        }
        Segment segment = finish_create(std::move(fd), linked ? path : std::filesystem::path{}, size_bytes, options, ec, detail);
        if (ec && linked)
            ::unlink(path.c_str()); // leave nothing behind from a failed create
        if (!ec)
            logger().info("created segment {} ({} bytes, maximum {})", path.string(), segment.size_bytes(),
                segment.max_size_bytes());
        return segment;
    });
}

Segment Segment::create_anonymous(std::size_t size_bytes, const SegmentOptions& options)
{
    return throwing<Segment>("create memfd segment", [&](std::error_code& ec, std::string& detail) {
        return create_memfd(size_bytes, options, ec, detail);
    });
}

Segment Segment::create_anonymous(std::size_t size_bytes, const SegmentOptions& options, std::error_code& ec) noexcept
{
    std::string detail;
    return create_memfd(size_bytes, options, ec, detail);
}

Segment Segment::create_memfd(std::size_t size_bytes, const SegmentOptions& options, std::error_code& ec,
    std::string& detail) noexcept
{
    return guarded(ec, [&]() -> Segment {
        UniqueFd fd = memfd_create(options.memfd_name, Memfd::cloexec | Memfd::allow_sealing, ec);
        if (ec)
            return {};
        Segment segment = finish_create(std::move(fd), {}, size_bytes, options, ec, detail);
        if (ec)
            return {};
        // No peer may shrink the file under the others (SIGBUS), nor add seals of
        // its own (F_SEAL_GROW would stop the host from growing). Sealed against
        // writes, the file keeps only the mapping we made before (all of it).
        // Sealed for its peers, the file is its maximum length at once (sparse:
        // grow() allocates, or only announces) and sealed against growing, so
        // that a peer can neither extend it nor make the creator's extension fail.
        if (options.peers_read_only && ::ftruncate(segment.fd_.get(), static_cast<off_t>(segment.max_size_bytes())) != 0) {
            ec = errno_code();
            return {};
        }
        const int seals = F_SEAL_SHRINK | F_SEAL_SEAL
            | (options.peers_read_only ? F_SEAL_FUTURE_WRITE | F_SEAL_GROW : 0);
        if (::fcntl(segment.fd_.get(), F_ADD_SEALS, seals) != 0) {
            ec = errno_code();
            return {};
        }
        logger().info("created memfd segment ({} bytes, maximum {})", segment.size_bytes(), segment.max_size_bytes());
        return segment;
    });
}

Segment Segment::finish_create(UniqueFd fd, std::filesystem::path path, std::size_t size_bytes,
    const SegmentOptions& options, std::error_code& ec, std::string& detail) noexcept
{
    if (size_bytes == 0) {
        ec = Errc::invalid_argument;
        detail = "size must be greater than 0";
        return {};
    }
    if (size_bytes > layout::kMaxSegmentBytes || options.max_size_bytes > layout::kMaxSegmentBytes) {
        ec = Errc::exceeds_maximum; // checked before rounding, which could wrap
        detail = "size exceeds the largest segment, " + std::to_string(layout::kMaxSegmentBytes) + " bytes";
        return {};
    }
    const std::size_t size = std::max<std::size_t>(round_up_to_pages(size_bytes), layout::kHeaderBytes);
    const std::size_t max_size = options.max_size_bytes != 0 ? round_up_to_pages(options.max_size_bytes)
                                                             : std::max(size, kDefaultMaxBytes);
    if (size > max_size || max_size > layout::kMaxSegmentBytes) {
        ec = Errc::exceeds_maximum;
        detail = "size " + std::to_string(size) + " exceeds the maximum " + std::to_string(max_size);
        return {};
    }
    if (::fchmod(fd.get(), options.mode) != 0) { // exact mode, whatever the umask
        ec = errno_code();
        return {};
    }
    if ((ec = extend_file(fd, 0, size, options.allocate_backing)))
        return {};
    // The creator's lock, through a description no guest will ever hold (the
    // fd itself is what guests receive), taken before the magic makes the
    // segment visible. Without /proc or OFD locks the segment still works;
    // its creator's liveness is then unknown to everyone, never "dead".
    std::error_code lock_ec;
    UniqueFd creator_lock = detail::reopen(fd, O_RDWR, lock_ec);
    if (creator_lock && !detail::take_creator_lock(creator_lock, lock_ec)) {
        if (!lock_ec)
            lock_ec = Errc::in_use; // a peer that opened the fresh file took it first
        creator_lock.reset();
    }
    if (!creator_lock)
        logger().warn("segment {}: creator lock not taken ({}); liveness of its creator will be unknown",
            path.empty() ? "memfd" : path.native(), lock_ec.message());

    Segment segment;
    segment.fd_ = std::move(fd);
    segment.creator_lock_ = std::move(creator_lock);
    segment.path_ = std::move(path);
    segment.owner_ = true;
    segment.owner_pid_ = ::getpid();
    segment.writable_ = true;
    segment.cleanup_ = options.cleanup;
    segment.allocate_backing_ = options.allocate_backing;
    segment.map_ = options.map;
    segment.reservation_ = reserve_address_space(max_size, ec);
    if (!ec && options.peers_read_only) {
        // The file will be sealed against new writable mappings: map all it can
        // grow to now. Pages past its end are never touched before grow() extends it.
        ec = map_fixed(segment.reservation_, 0, max_size, Prot::read | Prot::write, Map::shared, segment.fd_, 0);
        segment.mapped_ahead_ = !ec;
    }
    if (ec || (ec = segment.map_extent(0, size)))
        return {};
    segment.mapped_bytes_.store(size, std::memory_order_relaxed);
    if ((ec = segment.start_guard()))
        return {};
    segment.data_used_ = layout::kHeaderBytes;
    segment.trusted_.reset(new (std::nothrow) layout::HeaderPage {});
    if (!segment.trusted_) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        return {};
    }

    // Our copy first, then the shared page from it; the file is new, and
    // nobody trusts what they read there before the magic.
    SegmentHeader& h = segment.trusted_->header;
    h.layout_version = layout::kLayoutVersion;
    h.header_bytes = layout::kHeaderBytes;
    h.abi_tag = layout::abi_tag();
    h.max_size_bytes = max_size;
    h.size_bytes = size;
    h.generation = 0;
    h.nonce = random_nonce();
    h.creator_pid = static_cast<std::uint32_t>(::getpid());
    h.creator_start_time = process_start_time(::getpid());
    h.directory_offset = layout::kDirectoryOffset;
    h.directory_capacity = layout::kDirectoryCapacity;
    h.directory_count = 0;
    h.data_used_bytes = layout::kHeaderBytes;
    h.flags = segment.creator_lock_ ? std::uint32_t {layout::kCreatorLocked} : 0u;
    h.magic = layout::kMagic;
    SegmentHeader& shared_header = header_of(segment.base());
    std::memcpy(reinterpret_cast<std::byte*>(&shared_header) + sizeof(h.magic),
        reinterpret_cast<const std::byte*>(&h) + sizeof(h.magic), sizeof(h) - sizeof(h.magic));
    // release: pairs with the acquire load in attach's validation; the magic
    // goes last so that a header with a good magic is a complete one.
    shared(shared_header.magic).store(layout::kMagic, std::memory_order_release);
    return segment;
}

// ---- attach ---------------------------------------------------------------

Segment Segment::attach(const std::filesystem::path& path, const AttachOptions& options)
{
    return throwing<Segment>("attach " + path.string(), [&](std::error_code& ec, std::string& detail) {
        return attach_path(path, options, ec, detail);
    });
}

Segment Segment::attach(const std::filesystem::path& path, const AttachOptions& options, std::error_code& ec) noexcept
{
    std::string detail;
    return attach_path(path, options, ec, detail);
}

Segment Segment::attach_path(const std::filesystem::path& path, const AttachOptions& options, std::error_code& ec,
    std::string& detail) noexcept
{
    return guarded(ec, [&]() -> Segment {
        // The type first: opening a FIFO blocks until a writer comes, a socket
        // fails with a bare ENXIO, a directory with EISDIR.
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) {
            ec = errno_code();
            return {};
        }
        if (!S_ISREG(st.st_mode)) {
            ec = Errc::not_a_segment;
            detail = std::string("is ") + file_type_name(st.st_mode) + ", not a shmlink segment";
            return {};
        }
        // O_NONBLOCK in case it was swapped for a FIFO since; attach_fd checks the type again.
        UniqueFd fd(::open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
        if (!fd) {
            ec = errno_code();
            return {};
        }
        const int status_flags = ::fcntl(fd.get(), F_GETFL);
        if (status_flags >= 0)
            (void)::fcntl(fd.get(), F_SETFL, status_flags & ~O_NONBLOCK); // a regular file's fd as any other
        return attach_fd(std::move(fd), path, options, nullptr, ec, detail);
    });
}

Segment Segment::attach(UniqueFd fd, const AttachOptions& options)
{
    const std::string context = "attach fd " + std::to_string(fd.get());
    return throwing<Segment>(context, [&](std::error_code& ec, std::string& detail) {
        return attach_fd(std::move(fd), {}, options, nullptr, ec, detail);
    });
}

Segment Segment::attach(UniqueFd fd, const AttachOptions& options, std::error_code& ec) noexcept
{
    std::string detail;
    return attach_fd(std::move(fd), {}, options, nullptr, ec, detail);
}

Segment Segment::attach_as_told(UniqueFd fd, const SegmentLayout& told, const AttachOptions& options)
{
    const std::string context = "attach fd " + std::to_string(fd.get()) + " as told";
    return throwing<Segment>(context, [&](std::error_code& ec, std::string& detail) {
        return attach_fd(std::move(fd), {}, options, &told, ec, detail);
    });
}

Segment Segment::attach_as_told(UniqueFd fd, const SegmentLayout& told, const AttachOptions& options, std::error_code& ec) noexcept
{
    std::string detail;
    return attach_fd(std::move(fd), {}, options, &told, ec, detail);
}

namespace {

/// The header a creator that told us `told` would have written, as far as
/// attaching checks it: the told sizes and count go through the checks a
/// header read from the file does.
SegmentHeader header_told(const SegmentLayout& told) noexcept
{
    SegmentHeader h {};
    h.magic = layout::kMagic;
    h.layout_version = layout::kLayoutVersion;
    h.header_bytes = layout::kHeaderBytes;
    h.abi_tag = layout::abi_tag();
    h.max_size_bytes = told.max_size_bytes;
    h.size_bytes = told.size_bytes;
    h.directory_offset = layout::kDirectoryOffset;
    h.directory_capacity = layout::kDirectoryCapacity;
    h.directory_count = static_cast<std::uint32_t>(std::min<std::size_t>(told.directory.size(), UINT32_MAX));
    h.data_used_bytes = layout::kHeaderBytes; // not told, and nobody but the creator uses it
    return h;
}

/// Checks a told entry as a directory entry read from the file is checked.
std::error_code validate_told(const ObjectInfo& object, std::uint32_t index, std::uint64_t size_bytes,
    std::string& detail)
{
    DirectoryEntry entry {};
    if (object.name.size() >= layout::kNameBytes) {
        detail = "told directory entry " + std::to_string(index) + " has a name of " + std::to_string(object.name.size())
            + " bytes";
        return Errc::corrupt_directory;
    }
    std::memcpy(entry.name, object.name.data(), object.name.size());
    entry.state = static_cast<std::uint32_t>(layout::EntryState::ready);
    entry.offset = object.offset;
    entry.length = object.length;
    return layout::validate_entry(entry, index, size_bytes, detail);
}

} // namespace

bool write_sealed(BorrowedFd fd) noexcept
{
    const int seals = ::fcntl(fd.get(), F_GET_SEALS); // -1 (EINVAL) for a file that takes no seals
    return seals > 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0;
}

Segment Segment::attach_fd(UniqueFd fd, std::filesystem::path path, const AttachOptions& options,
    const SegmentLayout* told, std::error_code& ec, std::string& detail) noexcept
{
    ec.clear();
    try {
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0) {
            ec = fd ? errno_code() : std::make_error_code(std::errc::bad_file_descriptor);
            return {};
        }
        if (!S_ISREG(st.st_mode)) {
            ec = Errc::not_a_segment;
            detail = std::string("is ") + file_type_name(st.st_mode) + ", not a regular file or memfd";
            return {};
        }
        const int access = ::fcntl(fd.get(), F_GETFL) & O_ACCMODE;
        if (!options.read_only && access != O_RDWR) {
            ec = std::make_error_code(std::errc::permission_denied);
            detail = "the file is not open for reading and writing (attach read_only instead)";
            return {};
        }
        if (!options.read_only && write_sealed(fd)) {
            ec = std::make_error_code(std::errc::permission_denied);
            detail = "its creator sealed it against writes by its peers (attach read_only instead)";
            return {};
        }

        // Validate a private copy of the header before mapping anything: a
        // short or foreign file must never be touched through a mapping.
        // Told the layout, we check what we were told instead, and read
        // nothing of the header: another process may have written over it.
        SegmentHeader copy = told ? header_told(*told) : SegmentHeader {};
        auto file_bytes = static_cast<std::uint64_t>(st.st_size);
        if (!told && file_bytes >= sizeof(copy)) {
            const ssize_t got = ::pread(fd.get(), &copy, sizeof(copy), 0);
            if (got < 0) {
                ec = errno_code();
                return {};
            }
            if (static_cast<std::size_t>(got) != sizeof(copy)) {
                ec = Errc::truncated;
                detail = "file shrank while being read";
                return {};
            }
            // The size again, after the header: a creator extends the file
            // before its header announces the new size, so a size taken now
            // covers what the header says even when it grew meanwhile (taken
            // before, it could be older than the header and fail the check).
            if (::fstat(fd.get(), &st) != 0) {
                ec = errno_code();
                return {};
            }
            file_bytes = static_cast<std::uint64_t>(st.st_size);
        }
        if ((ec = layout::validate_header(copy, file_bytes, detail)))
            return {};

        Segment segment;
        segment.fd_ = std::move(fd);
        segment.path_ = std::move(path);
        segment.writable_ = !options.read_only;
        segment.map_ = options.map;
        segment.reservation_ = reserve_address_space(copy.max_size_bytes, ec);
        if (ec || (ec = segment.map_extent(0, copy.size_bytes)))
            return {};
        segment.mapped_bytes_.store(copy.size_bytes, std::memory_order_relaxed);
        if ((ec = segment.start_guard())) // before the directory is read through the mapping
            return {};
        if (told) {
            for (std::uint32_t i = 0; i < told->directory.size(); ++i)
                if ((ec = validate_told(told->directory[i], i, copy.size_bytes, detail)))
                    return {};
            segment.told_directory_ = told->directory;
        } else if ((ec = segment.validate_directory(detail))) {
            return {};
        }
        logger().info("attached segment {} ({} bytes, generation {})",
            segment.path_.empty() ? "fd" : segment.path_.native(), segment.size_bytes(), segment.generation());
        return segment;
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        return {};
    }
}

std::error_code Segment::start_guard() noexcept
{
    std::error_code ec;
    if (map_.guard_truncation)
        guard_slot_ = detail::guard_truncation(base(), fd_.get(), size_bytes(), writable_, ec);
    return ec;
}

std::error_code Segment::check_backing() noexcept
{
    struct stat st {};
    if (!valid())
        return std::make_error_code(std::errc::bad_file_descriptor);
    if (::fstat(fd_.get(), &st) != 0)
        return errno_code();
    const std::size_t mapped = size_bytes();
    const bool cut = static_cast<std::uint64_t>(st.st_size) < mapped;
    if (cut) {
        std::string outcome = "; read-only here, it stays cut";
        // Its last byte only: the length comes back, the cut pages as holes; never shrinks, so racing repairs agree.
        if (writable_ && ::fallocate(fd_.get(), 0, static_cast<off_t>(mapped - 1), 1) == 0) {
            detail::count_truncation(base());
            outcome = "; extended it back (the cut extent is lost)";
        } else if (writable_) {
            outcome = std::string("; extending it back failed: ") + std::strerror(errno);
        }
        logger().error("segment {}: the file was cut to {} of the {} bytes mapped{}",
            path_.empty() ? "memfd" : path_.native(), st.st_size, mapped, outcome);
    }
    // Not logged: a host asks every reap interval, and says so once itself.
    if (private_pages() != 0 || damaged_pages() != 0)
        return Errc::damaged;
    return cut ? std::error_code(Errc::truncated) : std::error_code();
}

std::uint64_t Segment::truncations() const noexcept
{
    return valid() ? shared(header_of(base()).truncations).load(std::memory_order_relaxed) : 0;
}

std::uint64_t Segment::repairs() const noexcept
{
    return detail::guard_repairs(guard_slot_);
}

std::uint64_t Segment::private_pages() const noexcept
{
    return detail::guard_private_pages(guard_slot_);
}

std::uint64_t Segment::damaged_pages() const noexcept
{
    return valid() ? shared(header_of(base()).damaged_pages).load(std::memory_order_relaxed) : 0;
}

std::error_code Segment::map_extent(std::size_t from, std::size_t to) noexcept
{
    const ProtFlags prot = writable_ ? Prot::read | Prot::write : ProtFlags(Prot::read);
    const MapFlags flags = map_.populate ? Map::shared | Map::populate : MapFlags(Map::shared);
    const auto extent = reservation_.bytes().subspan(from, to - from);
    if (mapped_ahead_) {
        if (map_.populate)
            (void)advise(extent, Advice::populate_write); // a hint, as MAP_POPULATE is
    } else if (auto ec = map_fixed(reservation_, from, to - from, prot, flags, fd_, static_cast<off_t>(from))) {
        return ec;
    }
    if (map_.huge_pages)
        (void)advise(extent, Advice::hugepage); // a hint: tmpfs without THP declines, and that is fine
    if (map_.lock_memory) {
        if (auto ec = lock(extent)) {
            // Give the extent back to the reservation so the segment stays as it
            // was; mapped ahead, the file's mapping cannot be made again: keep it.
            if (mapped_ahead_)
                (void)unlock(extent);
            else
                (void)map_fixed(reservation_, from, to - from, Prot::none,
                    Map::private_ | Map::anonymous | Map::noreserve, UniqueFd{}, 0);
            return ec;
        }
    }
    return {};
}

// ---- grow and refresh -----------------------------------------------------

void Segment::grow(std::size_t new_size_bytes)
{
    throwing<int>("grow " + (path_.empty() ? std::string("segment") : path_.string()) + " to "
            + std::to_string(new_size_bytes),
        [&](std::error_code& ec, std::string&) {
            grow(new_size_bytes, ec);
            return 0;
        });
}

void Segment::grow(std::size_t new_size_bytes, std::error_code& ec) noexcept
{
    return guarded(ec, [&]() -> void {
        ec.clear();
        if (!owner_) {
            ec = Errc::not_owner;
            return;
        }
        const std::size_t old_size = size_bytes();
        if (new_size_bytes > reservation_.size()) { // before rounding, which could wrap
            ec = Errc::exceeds_maximum;
            return;
        }
        const std::size_t new_size = round_up_to_pages(new_size_bytes);
        if (new_size == old_size)
            return;
        if (new_size < old_size) {
            ec = Errc::shrink_refused;
            return;
        }
        if (new_size > reservation_.size()) {
            ec = Errc::exceeds_maximum;
            return;
        }
        // Sealed for its peers, the file is already its maximum length: only
        // allocate (the length is not ours to change any more).
        if ((!mapped_ahead_ || allocate_backing_) && (ec = extend_file(fd_, old_size, new_size, allocate_backing_)))
            return;
        if ((ec = map_extent(old_size, new_size))) {
            // Give the file back its old length where the seals allow; the header
            // still says old_size, which is what every process trusts.
            if (!mapped_ahead_)
                (void)::ftruncate(fd_.get(), static_cast<off_t>(old_size));
            return;
        }
        detail::guard_resize(guard_slot_, new_size); // guarded before any thread can touch it
        // release: pairs with the acquire load in bytes(), for threads of this process.
        mapped_bytes_.store(new_size, std::memory_order_release);
        // Atomic: generation() and info() read our copy from any thread.
        SegmentHeader& mine = trusted_->header;
        shared(mine.size_bytes).store(new_size, std::memory_order_release);
        const auto generation = shared(mine.generation).fetch_add(1, std::memory_order_release) + 1;
        SegmentHeader& h = header_of(base());
        // release: pairs with the acquire load of size_bytes in refresh(); the
        // extent is in the file before any guest is told about it. Both from
        // our copy: a peer may have written over the shared ones.
        shared(h.size_bytes).store(new_size, std::memory_order_release);
        shared(h.generation).store(generation, std::memory_order_release);
        logger().info("grew segment {} from {} to {} bytes (generation {})", path_.empty() ? "memfd" : path_.native(),
            old_size, new_size, generation);
    });
}

bool Segment::refresh()
{
    return throwing<bool>("refresh " + (path_.empty() ? std::string("segment") : path_.string()),
        [&](std::error_code& ec, std::string&) { return refresh(ec); });
}

bool Segment::refresh(std::error_code& ec) noexcept
{
    return guarded(ec, [&]() -> bool {
        ec.clear();
        if (!valid()) {
            ec = std::make_error_code(std::errc::bad_file_descriptor);
            return false;
        }
        if (owner_)
            return false; // the creator's own extent is the truth; the header is only its announcement
        // acquire: pairs with the release store in grow().
        const std::uint64_t size = shared(header_of(base()).size_bytes).load(std::memory_order_acquire);
        if (size < size_bytes()) { // the header is peer-written: it must be sane
            ec = Errc::corrupt_header;
            return false;
        }
        return map_up_to(size, ec);
    });
}

bool Segment::refresh_to(std::uint64_t size_bytes, std::error_code& ec) noexcept
{
    return guarded(ec, [&]() -> bool {
        ec.clear();
        if (!valid()) {
            ec = std::make_error_code(std::errc::bad_file_descriptor);
            return false;
        }
        // A size below ours is an older grow's, told after we mapped a newer one.
        return !owner_ && size_bytes > this->size_bytes() && map_up_to(size_bytes, ec);
    });
}

bool Segment::map_up_to(std::uint64_t size, std::error_code& ec) noexcept
{
    const std::size_t mapped = size_bytes();
    if (size <= mapped)
        return false;
    // The new size must be sane and backed by the file.
    if (size > reservation_.size() || size % page_size() != 0) {
        ec = Errc::corrupt_header;
        return false;
    }
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) {
        ec = errno_code();
        return false;
    }
    if (static_cast<std::uint64_t>(st.st_size) < size) {
        ec = Errc::size_mismatch;
        return false;
    }
    if ((ec = map_extent(mapped, size)))
        return false;
    logger().debug("refreshed segment {} from {} to {} bytes", path_.native(), mapped, size);
    detail::guard_resize(guard_slot_, size); // guarded before any thread can touch it
    // release: pairs with the acquire load in bytes(), for threads of this process.
    mapped_bytes_.store(size, std::memory_order_release);
    return true;
}

std::uint64_t Segment::generation() const noexcept
{
    if (!valid())
        return 0;
    // acquire: pairs with the release stores in grow(), to our copy or the shared header.
    if (trusted_)
        return shared(trusted_->header.generation).load(std::memory_order_acquire);
    return shared(header_of(base()).generation).load(std::memory_order_acquire);
}

SegmentInfo Segment::info() const noexcept
{
    SegmentInfo info;
    if (!valid())
        return info;
    SegmentHeader& h = trusted_ ? trusted_->header : header_of(base()); // the creator reads only its own copy
    info.layout_version = h.layout_version;
    info.size_bytes = shared(h.size_bytes).load(std::memory_order_acquire);
    info.max_size_bytes = h.max_size_bytes;
    info.generation = shared(h.generation).load(std::memory_order_acquire);
    info.nonce = h.nonce;
    info.creator_pid = static_cast<pid_t>(h.creator_pid);
    info.creator_start_time = h.creator_start_time;
    info.flags = h.flags;
    info.directory_count = shared(h.directory_count).load(std::memory_order_acquire);
    info.data_used_bytes = shared(h.data_used_bytes).load(std::memory_order_acquire);
    return info;
}

Liveness Segment::creator_liveness() const noexcept
{
    if (!valid())
        return Liveness::unknown;
    if (creator_lock_)
        return Liveness::alive; // we are the creator, and hold it
    std::error_code ec;
    // A description of our own: GETLK does not see the locks of the
    // description it is asked through, and fd_ may be shared (passed over a
    // socket, inherited) with whoever holds one.
    const UniqueFd probe = detail::reopen(fd_, O_RDONLY, ec);
    if (!probe)
        return Liveness::unknown;
    std::string why;
    return probe_creator(probe, header_of(base()).flags, why);
}

// ---- directory ------------------------------------------------------------

std::optional<ObjectInfo> Segment::entry(std::uint32_t index, std::error_code& ec, std::string& detail) const
{
    // The creator reads only its own copy (a peer may have written over the shared one).
    DirectoryEntry& shared_entry = trusted_ ? trusted_->directory[index] : entry_of(base(), index);
    DirectoryEntry copy {};
    // acquire: pairs with the release store of state in allocate(); the
    // other fields are final once the entry is ready.
    copy.state = shared(shared_entry.state).load(std::memory_order_acquire);
    std::memcpy(copy.name, shared_entry.name, sizeof(copy.name));
    copy.kind = shared_entry.kind;
    copy.object_version = shared_entry.object_version;
    copy.offset = shared_entry.offset;
    copy.length = shared_entry.length;
    if ((ec = layout::validate_entry(copy, index, size_bytes(), detail)))
        return std::nullopt;
    return ObjectInfo {std::string(copy.name, ::strnlen(copy.name, sizeof(copy.name))), copy.kind,
        copy.object_version, copy.offset, copy.length};
}

std::uint32_t Segment::directory_count() const noexcept
{
    if (owner_)
        return entry_count_;
    // acquire: pairs with the release store of directory_count in allocate().
    return shared(header_of(base()).directory_count).load(std::memory_order_acquire);
}

std::error_code Segment::validate_directory(std::string& detail) const
{
    const std::uint32_t count = directory_count();
    if (count > layout::kDirectoryCapacity) {
        detail = "directory count " + std::to_string(count) + " exceeds its capacity";
        return Errc::corrupt_directory;
    }
    std::error_code ec;
    for (std::uint32_t i = 0; i < count && !ec; ++i)
        entry(i, ec, detail);
    return ec;
}

std::vector<ObjectInfo> Segment::objects(std::error_code& ec) const
{
    ec.clear();
    std::vector<ObjectInfo> result;
    if (!valid())
        return result;
    std::string detail;
    const std::uint32_t count = directory_count();
    if (count > layout::kDirectoryCapacity) {
        ec = Errc::corrupt_directory;
        return result;
    }
    for (std::uint32_t i = 0; i < count; ++i) {
        auto info = entry(i, ec, detail);
        if (!info)
            return {};
        result.push_back(std::move(*info));
    }
    return result;
}

ObjectInfo Segment::find(std::string_view name)
{
    return throwing<ObjectInfo>("find '" + std::string(name) + "'", [&](std::error_code& ec, std::string&) {
        auto found = find(name, ec);
        return found ? std::move(*found) : ObjectInfo{};
    });
}

std::optional<ObjectInfo> Segment::find(std::string_view name, std::error_code& ec) noexcept
{
    try {
        ec.clear();
        if (told_directory_)
            for (const ObjectInfo& object : *told_directory_)
                if (object.name == name)
                    return object; // checked against the size at attach, and the mapping only grows
        refresh(ec); // an object may live in an extent grown since we last looked
        if (ec)
            return std::nullopt;
        for (auto& object : objects(ec))
            if (object.name == name)
                return std::move(object);
        if (!ec)
            ec = Errc::not_found;
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
    }
    return std::nullopt;
}

ObjectInfo Segment::allocate(std::string_view name, std::uint16_t kind, std::uint16_t version, std::size_t length,
    std::size_t alignment)
{
    return throwing<ObjectInfo>("allocate '" + std::string(name) + "'", [&](std::error_code& ec, std::string&) {
        return allocate(name, kind, version, length, alignment, ec);
    });
}

ObjectInfo Segment::allocate(std::string_view name, std::uint16_t kind, std::uint16_t version, std::size_t length,
    std::size_t alignment, std::error_code& ec) noexcept
{
    return allocate(name, kind, version, length, alignment, {}, ec);
}

ObjectInfo Segment::allocate(std::string_view name, std::uint16_t kind, std::uint16_t version, std::size_t length,
    std::size_t alignment, const std::function<void(std::span<std::byte>)>& initialize, std::error_code& ec) noexcept
{
    return guarded(ec, [&]() -> ObjectInfo {
        ec.clear();
        if (!owner_) {
            ec = Errc::not_owner;
            return {};
        }
        if (name.empty() || name.size() >= layout::kNameBytes || name.find('\0') != std::string_view::npos || length == 0
            || alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > page_size()) {
            ec = Errc::invalid_argument;
            return {};
        }
        if (find(name, ec)) {
            ec = Errc::name_taken;
            return {};
        }
        if (ec != Errc::not_found)
            return {};
        ec.clear();
        // The count and the cursor come from this object, never from the header:
        // a guest may scribble on the header, and must not steer where we allocate.
        const std::uint32_t count = entry_count_;
        if (count >= layout::kDirectoryCapacity) {
            ec = Errc::directory_full;
            return {};
        }
        alignment = std::max<std::size_t>(alignment, layout::kMinAlignment);
        const std::uint64_t offset = (data_used_ + alignment - 1) / alignment * alignment;
        if (!in_bounds(size_bytes(), offset, length)) {
            ec = Errc::no_space;
            return {};
        }
        // Zero what a guest may have written into the free area before anyone
        // sees it, and let the caller fill it in before it is published.
        std::memset(base() + offset, 0, length);
        if (initialize)
            initialize({base() + offset, length});
        DirectoryEntry& mine = trusted_->directory[count];
        std::memcpy(mine.name, name.data(), name.size()); // the rest of our copy is zero
        mine.kind = kind;
        mine.object_version = version;
        mine.offset = offset;
        mine.length = length;
        constexpr auto ready = static_cast<std::uint32_t>(layout::EntryState::ready);
        // release: pairs with the acquire load of state in entry(), of either copy.
        shared(mine.state).store(ready, std::memory_order_release);
        DirectoryEntry& e = entry_of(base(), count);
        std::memcpy(&e, &mine, offsetof(DirectoryEntry, state));
        e.offset = offset;
        e.length = length;
        shared(e.state).store(ready, std::memory_order_release);
        data_used_ = offset + length;
        entry_count_ = count + 1;
        // Atomic: info() reads our copy from any thread.
        shared(trusted_->header.data_used_bytes).store(data_used_, std::memory_order_release);
        shared(trusted_->header.directory_count).store(entry_count_, std::memory_order_release);
        SegmentHeader& h = header_of(base());
        shared(h.data_used_bytes).store(data_used_, std::memory_order_release);
        // release: pairs with the acquire load of directory_count in directory_count().
        shared(h.directory_count).store(entry_count_, std::memory_order_release);
        logger().debug("allocated '{}' kind {} at [{}, +{})", name, kind, offset, length);
        return ObjectInfo {std::string(name), kind, version, offset, length};
    });
}

std::uint64_t Segment::allocate_extent(std::size_t length, std::size_t alignment, std::error_code& ec) noexcept
{
    ec.clear();
    if (!owner_) {
        ec = Errc::not_owner;
        return 0;
    }
    if (length == 0 || alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > page_size()) {
        ec = Errc::invalid_argument;
        return 0;
    }
    alignment = std::max<std::size_t>(alignment, layout::kMinAlignment);
    const std::uint64_t offset = (data_used_ + alignment - 1) / alignment * alignment;
    if (!in_bounds(size_bytes(), offset, length)) {
        ec = Errc::no_space;
        return 0;
    }
    std::memset(base() + offset, 0, length); // what a guest wrote into the free area is not the caller's
    data_used_ = offset + length;
    // Our copy first, as allocate() does: the header's is repaired from it.
    shared(trusted_->header.data_used_bytes).store(data_used_, std::memory_order_release);
    shared(header_of(base()).data_used_bytes).store(data_used_, std::memory_order_release);
    return offset;
}

// ---- the creator's copy of the first page ----------------------------------

SegmentLayout Segment::layout() const
{
    SegmentLayout told {size_bytes(), max_size_bytes(), {}};
    std::error_code ec;
    told.directory = objects(ec); // the creator's: from its own copy
    if (ec)
        throw Error(ec, "segment " + path_.string(), "list the directory");
    return told;
}

namespace {

/// The field of the first page that 8-byte word `word` holds, for people.
std::string field_at(std::size_t word, const layout::HeaderPage& page)
{
    static constexpr const char* kHeaderWords[] = {"magic", "layout_version and header_bytes", "abi_tag",
        "max_size_bytes", "size_bytes", "generation", "nonce", "creator_start_time",
        "creator_pid and directory_offset", "directory_capacity and directory_count", "data_used_bytes",
        "truncations", "damaged_pages", "flags", "header_repairs"};
    constexpr std::size_t header_words = sizeof(SegmentHeader) / 8;
    if (word < std::size(kHeaderWords))
        return kHeaderWords[word];
    if (word < header_words)
        return "reserved header bytes";
    const std::size_t index = (word - header_words) * 8 / sizeof(DirectoryEntry);
    const DirectoryEntry& entry = page.directory[index];
    const std::size_t name = ::strnlen(entry.name, sizeof(entry.name));
    return "directory entry " + std::to_string(index)
        + (name == 0 ? std::string(" (empty)") : " '" + std::string(entry.name, name) + "'");
}

} // namespace

std::size_t Segment::repair_header(std::string& what) noexcept
{
    what.clear();
    // Not in a child forked from the creator: its copy stops at the fork.
    if (!trusted_ || !writable_ || !valid() || owner_pid_ != ::getpid())
        return 0;
    constexpr std::size_t kWords = layout::kHeaderBytes / 8;
    // Counters other processes add to: theirs to write, not ours to restore.
    constexpr std::size_t kTruncations = offsetof(SegmentHeader, truncations) / 8;
    constexpr std::size_t kDamagedPages = offsetof(SegmentHeader, damaged_pages) / 8;
    constexpr std::size_t kRepairs = offsetof(SegmentHeader, header_repairs) / 8;
    auto* page = reinterpret_cast<std::uint64_t*>(base());
    const auto mine = [&](std::size_t word) {
        std::uint64_t value = 0;
        std::memcpy(&value, reinterpret_cast<const std::byte*>(trusted_.get()) + word * 8, sizeof(value));
        return value;
    };
    std::vector<std::size_t> differ;
    try {
        for (std::size_t word = 0; word < kWords; ++word)
            if (word != kTruncations && word != kDamagedPages
                && shared(page[word]).load(std::memory_order_relaxed) != mine(word))
                differ.push_back(word);
    } catch (const std::bad_alloc&) {
        return 0; // the next call looks again
    }
    if (differ.empty())
        return 0;
    shared(trusted_->header.header_repairs).fetch_add(1, std::memory_order_relaxed);
    // Every other word, then the count, then the magic, as at creation: a
    // reader that finds the magic good finds the rest rewritten before it (release).
    for (const std::size_t word : differ)
        if (word != 0 && word != kRepairs)
            shared(page[word]).store(mine(word), std::memory_order_release);
    shared(page[kRepairs]).store(mine(kRepairs), std::memory_order_release);
    if (differ.front() == 0)
        shared(page[0]).store(mine(0), std::memory_order_release);
    try {
        std::string last;
        for (const std::size_t word : differ) {
            std::string field = field_at(word, *trusted_);
            if (field != last)
                what += (what.empty() ? "" : ", ") + field;
            last = std::move(field);
        }
    } catch (const std::bad_alloc&) {
    }
    return differ.size();
}

std::uint64_t Segment::header_repairs() const noexcept
{
    if (!valid())
        return 0;
    return shared(trusted_ ? trusted_->header.header_repairs : header_of(base()).header_repairs)
        .load(std::memory_order_relaxed);
}

std::error_code Segment::write_trusted_page(const UniqueFd& copy) const noexcept
{
    // The creator's own first page, not what may have been written over the
    // shared one since; the counters other processes keep, as they are.
    layout::HeaderPage page;
    std::memcpy(&page, trusted_.get(), sizeof(page));
    page.header.truncations = truncations();
    page.header.damaged_pages = damaged_pages();
    const ssize_t wrote = ::pwrite(copy.get(), &page, sizeof(page), 0);
    if (wrote < 0)
        return errno_code();
    return wrote == static_cast<ssize_t>(sizeof(page)) ? std::error_code {} : std::make_error_code(std::errc::io_error);
}

// ---- bounded access -------------------------------------------------------

std::span<std::byte> Segment::bytes() const noexcept { return {reservation_.data(), size_bytes()}; }

std::span<std::byte> Segment::subspan(std::size_t offset, std::size_t length) const noexcept
{
    return checked_subspan(bytes(), offset, length);
}

std::error_code Segment::read_into(std::size_t offset, std::span<std::byte> out) const noexcept
{
    return copy_out(bytes(), offset, out);
}

std::error_code Segment::write_at(std::size_t offset, std::span<const std::byte> in) noexcept
{
    if (!writable_)
        return std::make_error_code(std::errc::permission_denied);
    return copy_in(bytes(), offset, in);
}

Snapshot Segment::snapshot(const SnapshotOptions& options)
{
    return throwing<Snapshot>("snapshot " + path_.string(),
        [&](std::error_code& ec, std::string&) { return snapshot(options, ec); });
}

Snapshot Segment::snapshot(const SnapshotOptions& options, std::error_code& ec) noexcept
{
    return guarded(ec, [&]() -> Snapshot {
        if (!valid()) {
            ec = std::make_error_code(std::errc::bad_file_descriptor);
            return {};
        }
        // The copy must describe itself: its header's size must be the size copied.
        // A guest catches up with the creator first; a grow racing the copy retries.
        for (int attempt = 0; attempt < 3; ++attempt) {
            refresh(ec);
            if (ec)
                return {};
            Snapshot snap = Snapshot::copy_of(fd_, bytes(), options, ec);
            if (ec)
                return {};
            if (trusted_ && (ec = write_trusted_page(snap.fd())))
                return {};
            std::uint64_t copied_size = 0;
            (void)snap.read_into(offsetof(SegmentHeader, size_bytes), std::as_writable_bytes(std::span(&copied_size, 1)));
            if (copied_size == snap.size_bytes())
                return snap;
        }
        ec = std::make_error_code(std::errc::resource_unavailable_try_again);
        return {};
    });
}

} // namespace shmlink
