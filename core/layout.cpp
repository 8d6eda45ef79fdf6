#include <shmlink/core/layout.hpp>

#include <shmlink/core/error.hpp>
#include <shmlink/core/mmap.hpp>

#include <cstring>

namespace shmlink::layout {
namespace {

std::error_code fail(Errc code, std::string& detail, std::string text)
{
    detail = std::move(text);
    return code;
}

} // namespace

std::error_code validate_header(const SegmentHeader& h, std::uint64_t file_bytes, std::string& detail)
{
    const auto n = [](std::uint64_t v) { return std::to_string(v); };
    if (file_bytes == 0)
        return fail(Errc::empty_file, detail, "file is empty");
    if (file_bytes < kHeaderBytes)
        return fail(Errc::truncated, detail,
            "file is " + n(file_bytes) + " bytes, shorter than the " + n(kHeaderBytes) + "-byte header");
    if (h.magic != kMagic)
        return fail(Errc::bad_magic, detail, "not a shmlink segment (bad magic)");
    if (h.layout_version > kLayoutVersion)
        return fail(Errc::version_too_new, detail,
            "layout version " + n(h.layout_version) + " is newer than " + n(kLayoutVersion));
    if (h.layout_version != kLayoutVersion)
        return fail(Errc::version_unsupported, detail, "layout version " + n(h.layout_version) + " is not supported");
    if (h.abi_tag != abi_tag())
        return fail(Errc::abi_mismatch, detail, "ABI tag differs (another byte order or struct layout)");
    if (h.header_bytes != kHeaderBytes || h.directory_offset != kDirectoryOffset
        || h.directory_capacity != kDirectoryCapacity)
        return fail(Errc::corrupt_header, detail, "header or directory placement fields are corrupt");
    if (h.max_size_bytes > kMaxSegmentBytes || h.max_size_bytes % page_size() != 0)
        return fail(Errc::corrupt_header, detail, "maximum size " + n(h.max_size_bytes) + " is out of range");
    if (h.size_bytes < kHeaderBytes || h.size_bytes % page_size() != 0 || h.size_bytes > h.max_size_bytes)
        return fail(Errc::corrupt_header, detail,
            "size " + n(h.size_bytes) + " is out of range (maximum " + n(h.max_size_bytes) + ")");
    if (h.size_bytes > file_bytes)
        return fail(Errc::size_mismatch, detail,
            "header says " + n(h.size_bytes) + " bytes but the file has " + n(file_bytes));
    if (h.directory_count > kDirectoryCapacity)
        return fail(Errc::corrupt_directory, detail,
            "directory count " + n(h.directory_count) + " exceeds its capacity " + n(kDirectoryCapacity));
    if (h.data_used_bytes < kHeaderBytes || h.data_used_bytes > h.size_bytes)
        return fail(Errc::corrupt_header, detail, "data cursor " + n(h.data_used_bytes) + " is out of range");
    return {};
}

std::error_code validate_entry(const DirectoryEntry& e, std::uint32_t index, std::uint64_t size_bytes,
    std::string& detail)
{
    const std::string where = "directory entry " + std::to_string(index);
    const auto name_length = ::strnlen(e.name, kNameBytes);
    if (name_length == 0 || name_length == kNameBytes)
        return fail(Errc::corrupt_directory, detail, where + " has no valid name");
    if (e.state != static_cast<std::uint32_t>(EntryState::ready))
        return fail(Errc::corrupt_directory, detail, where + " is counted but not ready");
    if (e.length == 0 || e.offset % kMinAlignment != 0)
        return fail(Errc::corrupt_directory, detail, where + " has a zero length or a misaligned offset");
    if (e.offset < kHeaderBytes || e.offset > size_bytes || e.length > size_bytes - e.offset)
        return fail(Errc::corrupt_directory, detail,
            where + " '" + std::string(e.name, name_length) + "' [" + std::to_string(e.offset) + ", +"
                + std::to_string(e.length) + ") lies outside the " + std::to_string(size_bytes) + "-byte segment");
    return {};
}

} // namespace shmlink::layout
