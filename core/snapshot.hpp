// Snapshot: a private copy of a segment's bytes, for inspection or as a
// checkpoint, and the atomic commit of such a copy to a path.
#pragma once

#include <shmlink/core/error.hpp>
#include <shmlink/core/mmap.hpp>
#include <shmlink/core/unique_fd.hpp>

#include <cstddef>
#include <filesystem>
#include <span>
#include <system_error>

namespace shmlink {

struct SnapshotOptions {
    /// Empty: the copy lives in an anonymous memfd. Otherwise an unnamed
    /// file (O_TMPFILE) in this directory, cloned with FICLONE when the
    /// segment's file system shares blocks (reflinks), copied otherwise.
    std::filesystem::path directory {};
};

/// An immutable copy of a segment's mapped extent at the moment it was taken.
/// It is exactly as consistent as the segment was then: take it while
/// writers are quiescent, or read objects that carry their own sequence
/// numbers. A snapshot is itself a valid segment file once committed.
class Snapshot {
public:
    Snapshot() noexcept = default;

    /// Copies `bytes` (the mapping of `source`) into a new unnamed file.
    static Snapshot copy_of(const UniqueFd& source, std::span<const std::byte> bytes, const SnapshotOptions& options,
        std::error_code& ec) noexcept;

    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {map_.data(), map_.size()}; }
    [[nodiscard]] std::size_t size_bytes() const noexcept { return map_.size(); }
    [[nodiscard]] const UniqueFd& fd() const noexcept { return fd_; }
    std::error_code read_into(std::size_t offset, std::span<std::byte> out) const noexcept;

    /// Writes the copy to `target` atomically: a reader of `target` sees the
    /// old file or the new one, never a mix (O_TMPFILE, linkat, rename,
    /// fsync). The file gets `mode`. A segment's copy is marked a checkpoint
    /// in its header (layout::kCheckpoint), so that `shmlink gc` and
    /// take_over_dead never take it for a dead creator's leftovers.
    void commit(const std::filesystem::path& target, mode_t mode = 0600) const;
    void commit(const std::filesystem::path& target, mode_t mode, std::error_code& ec) const noexcept;

private:
    UniqueFd fd_;
    Mapping map_;
};

} // namespace shmlink
