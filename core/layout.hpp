// The bytes at the start of every segment, as another process sees them: the
// segment header and the named-object directory. This is an ABI; it matches
// docs/layout.md field for field, and the static_asserts below pin it.
// Fields that change after creation are accessed with std::atomic_ref.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>

namespace shmlink::layout {

/// "SHMLINK\0" read as a little-endian 64-bit integer.
inline constexpr std::uint64_t kMagic = 0x004b4e494c4d4853ULL;
inline constexpr std::uint32_t kLayoutVersion = 1;
/// Bytes before the data area: header plus directory, one 4 KiB page.
inline constexpr std::uint32_t kHeaderBytes = 4096;
inline constexpr std::uint32_t kDirectoryOffset = 256;
inline constexpr std::uint32_t kDirectoryCapacity = 60;
inline constexpr std::size_t kNameBytes = 40;
/// Every object's offset is a multiple of this, so atomics inside it can be aligned.
inline constexpr std::uint64_t kMinAlignment = 8;
/// Largest maximum size a segment may declare (1 TiB of address space).
inline constexpr std::uint64_t kMaxSegmentBytes = 1ULL << 40;

/// The byte of the file the creator holds an open-file-description write
/// lock on (F_OFD_SETLK) for as long as its Segment lives. Objects lock
/// bytes of their own at offsets >= kHeaderBytes, so they never meet it.
inline constexpr std::uint64_t kCreatorLockByte = 0;

/// Bits of SegmentHeader::flags. Bits a reader does not know are ignored.
enum HeaderFlags : std::uint32_t {
    /// The creator holds the lock on kCreatorLockByte: whether it lives is
    /// the kernel's answer to a lock probe. Without it (an older segment, or
    /// a file system without OFD locks) nobody can tell.
    kCreatorLocked = 1u << 0,
    /// A checkpoint written by Snapshot::commit: a file of value whose
    /// creator is expected to be gone. Never garbage.
    kCheckpoint = 1u << 1,
};

/// Directory entry states.
enum class EntryState : std::uint32_t {
    empty = 0,
    ready = 1, ///< every other field is written and final
};

/// The segment header, at offset 0.
struct SegmentHeader {
    std::uint64_t magic;              ///< kMagic, written last by the creator
    std::uint32_t layout_version;     ///< kLayoutVersion
    std::uint32_t header_bytes;       ///< kHeaderBytes: where the data area starts
    std::uint64_t abi_tag;            ///< abi_tag(): byte order and struct sizes
    std::uint64_t max_size_bytes;     ///< address space every process reserves
    std::uint64_t size_bytes;         ///< current size; atomic, grows only
    std::uint64_t generation;         ///< bumped by every grow; atomic
    std::uint64_t nonce;              ///< random, fixed at creation
    std::uint64_t creator_start_time; ///< creator's start time (clock ticks since boot)
    std::uint32_t creator_pid;        ///< creator's pid (with start time: survives pid reuse)
    std::uint32_t directory_offset;   ///< kDirectoryOffset
    std::uint32_t directory_capacity; ///< kDirectoryCapacity
    std::uint32_t directory_count;    ///< entries published; atomic, grows only
    std::uint64_t data_used_bytes;    ///< first free byte of the data area; atomic
    std::uint64_t truncations;        ///< times a process found the file cut and extended it back; atomic
    std::uint64_t damaged_pages;      ///< pages a process could not restore and replaced by private ones; atomic
    std::uint32_t flags;              ///< HeaderFlags; fixed at creation (a committed copy gets its own)
    std::uint32_t reserved0;          ///< zero
    /// Times the creator found this page (header or directory) written over
    /// and rewrote it from its own copy; atomic, written by the creator only.
    std::uint64_t header_repairs;
    std::uint8_t reserved[136];       ///< zero
};

/// One named object in the segment, at kDirectoryOffset + 64 * index.
struct DirectoryEntry {
    char name[kNameBytes];        ///< NUL-terminated, NUL-padded, not empty
    std::uint16_t kind;           ///< what the object is; core does not interpret it
    std::uint16_t object_version; ///< layout version of that kind of object
    std::uint32_t state;          ///< EntryState; atomic, set to ready last
    std::uint64_t offset;         ///< from the segment's start; >= header_bytes
    std::uint64_t length;         ///< bytes; offset + length <= size_bytes
};

/// The first page of a segment: the header, then the directory. The creator
/// keeps a private copy of it, as it wrote it (Segment::repair_header()).
struct HeaderPage {
    SegmentHeader header;
    DirectoryEntry directory[kDirectoryCapacity];
};

static_assert(sizeof(SegmentHeader) == 256);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, layout_version) == 8);
static_assert(offsetof(SegmentHeader, header_bytes) == 12);
static_assert(offsetof(SegmentHeader, abi_tag) == 16);
static_assert(offsetof(SegmentHeader, max_size_bytes) == 24);
static_assert(offsetof(SegmentHeader, size_bytes) == 32);
static_assert(offsetof(SegmentHeader, generation) == 40);
static_assert(offsetof(SegmentHeader, nonce) == 48);
static_assert(offsetof(SegmentHeader, creator_start_time) == 56);
static_assert(offsetof(SegmentHeader, creator_pid) == 64);
static_assert(offsetof(SegmentHeader, directory_offset) == 68);
static_assert(offsetof(SegmentHeader, directory_capacity) == 72);
static_assert(offsetof(SegmentHeader, directory_count) == 76);
static_assert(offsetof(SegmentHeader, data_used_bytes) == 80);
static_assert(offsetof(SegmentHeader, truncations) == 88);
static_assert(offsetof(SegmentHeader, damaged_pages) == 96);
static_assert(offsetof(SegmentHeader, flags) == 104);
static_assert(offsetof(SegmentHeader, reserved0) == 108);
static_assert(offsetof(SegmentHeader, header_repairs) == 112);
static_assert(offsetof(SegmentHeader, reserved) == 120);
static_assert(sizeof(DirectoryEntry) == 64);
static_assert(offsetof(DirectoryEntry, kind) == 40);
static_assert(offsetof(DirectoryEntry, object_version) == 42);
static_assert(offsetof(DirectoryEntry, state) == 44);
static_assert(offsetof(DirectoryEntry, offset) == 48);
static_assert(offsetof(DirectoryEntry, length) == 56);
static_assert(kDirectoryOffset >= sizeof(SegmentHeader));
static_assert(offsetof(HeaderPage, directory) == kDirectoryOffset);
static_assert(sizeof(HeaderPage) == kHeaderBytes);
static_assert(kDirectoryOffset + kDirectoryCapacity * sizeof(DirectoryEntry) <= kHeaderBytes);
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);
static_assert(alignof(SegmentHeader) >= std::atomic_ref<std::uint64_t>::required_alignment);
static_assert(alignof(DirectoryEntry) >= std::atomic_ref<std::uint64_t>::required_alignment);

/// Byte-order probe in the low 16 bits, struct sizes above it: a peer with
/// another byte order or another idea of the structs writes another tag.
constexpr std::uint64_t abi_tag() noexcept
{
    return (std::uint64_t{sizeof(SegmentHeader)} << 32) | (std::uint64_t{sizeof(DirectoryEntry)} << 16) | 0x1234u;
}

/// Checks a copy of a header against the file's size. On error, `detail`
/// says what is wrong in a sentence ("layout version 3 is newer than 1").
std::error_code validate_header(const SegmentHeader& header, std::uint64_t file_bytes, std::string& detail);

/// Checks a copy of directory entry `index` against the segment's size.
std::error_code validate_entry(const DirectoryEntry& entry, std::uint32_t index, std::uint64_t size_bytes,
    std::string& detail);

} // namespace shmlink::layout
