#include <shmlink/core/detail/truncation_guard.hpp>

#include <shmlink/core/layout.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <span>

namespace shmlink::detail {
namespace {

constexpr int kPrivatePagesKept = 32;
/// Faults in a row on one page that the file holds each time the handler
/// looks, after which retrying is given up. Each such fault means another
/// process repaired the page between the fault and our look, which a peer
/// cutting the file in a loop can make happen a few times in a row; a page
/// that faults however often it is retried must still not loop forever.
constexpr std::uint32_t kRetriesOnHeldPage = 256;

/// One guarded segment. The handler reads these fields with plain atomic
/// loads (async-signal-safe); `begin` is 0 for a free slot, 1 while one is
/// being filled in, and the mapping's address once it is complete.
struct Slot {
    std::atomic<std::uintptr_t> begin {0};
    std::atomic<std::size_t> mapped {0};
    std::atomic<int> fd {-1};
    std::atomic<bool> writable {false};
    std::atomic<std::uint64_t> repairs {0};
    std::atomic<std::uint64_t> private_pages {0};
    /// The page last retried only because the file held it by the time the
    /// handler looked, and how many times in a row that happened.
    std::atomic<std::uintptr_t> retried {0};
    std::atomic<std::uint32_t> retries {0};
    /// Pages already replaced by private ones (the first kPrivatePagesKept),
    /// so that two threads faulting on one page map one private page, not
    /// one over the other (which would lose what the first thread wrote).
    std::atomic<std::uintptr_t> replaced[kPrivatePagesKept] {};
};

constexpr int kSlots = 64;
Slot g_slots[kSlots];
struct sigaction g_previous {};
std::once_flag g_installed;
std::uintptr_t g_page_size = 4096;

/// The disposition SIGBUS had before ours, for faults that are not ours.
void pass_on(int signal, siginfo_t* info, void* context) noexcept
{
    if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
        g_previous.sa_sigaction(signal, info, context);
        return;
    }
    if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler != nullptr) {
        g_previous.sa_handler(signal);
        return;
    }
    // The default: returning re-runs the access, which faults again and kills
    // the process with SIGBUS, as if we had never been here.
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    ::sigaction(SIGBUS, &fallback, nullptr);
}

/// Adds one to the header's `damaged_pages`; like count_truncation().
void count_damage(std::uintptr_t begin) noexcept
{
    auto& header = *reinterpret_cast<layout::SegmentHeader*>(begin);
    std::atomic_ref(header.damaged_pages).fetch_add(1, std::memory_order_relaxed);
}

/// Whether a read fault on a hole of `fd` can allocate a page now: a file
/// system without a size limit (f_blocks 0) always can.
bool has_room(int fd) noexcept
{
    struct statfs fs {};
    return ::fstatfs(fd, &fs) == 0 && (fs.f_blocks == 0 || fs.f_bavail > 0);
}

/// Puts a private zero page with the mapping's protection over `page`, once
/// per page however many threads fault on it. False when mmap fails.
bool replace_page(Slot& slot, std::uintptr_t begin, std::uintptr_t page, bool writable) noexcept
{
    for (auto& kept : slot.replaced) {
        std::uintptr_t seen = 0;
        // acq_rel: pairs with itself in a thread that races us for the same page.
        if (kept.compare_exchange_strong(seen, page, std::memory_order_acq_rel) || seen == page) {
            if (seen == page)
                return true; // another thread maps it (or has): the retried access waits for that by faulting again
            break;
        }
    }
    const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    if (::mmap(reinterpret_cast<void*>(page), g_page_size, prot, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        == MAP_FAILED)
        return false;
    slot.private_pages.fetch_add(1, std::memory_order_relaxed);
    if (writable) // a read-only mapping cannot write the header
        count_damage(begin);
    return true;
}

/// Makes the faulting page of `slot` accessible again; false when the fault
/// is not one this guard may hide.
bool repair(Slot& slot, std::uintptr_t begin, std::size_t mapped, std::uintptr_t address) noexcept
{
    const int fd = slot.fd.load(std::memory_order_relaxed);
    const bool writable = slot.writable.load(std::memory_order_relaxed);
    const std::uintptr_t page = address & ~(g_page_size - 1);
    const auto offset = static_cast<off_t>(page - begin);
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return false;
    off_t size = st.st_size;
    if (writable && size < static_cast<off_t>(mapped)) {
        // The file lost pages this process maps: give it back its length
        // (one byte at the end: the cut pages come back as holes, read as
        // zeros, and fallocate never shrinks, so racing repairs agree).
        if (::fallocate(fd, 0, static_cast<off_t>(mapped - 1), 1) == 0) {
            size = static_cast<off_t>(mapped);
            count_truncation(reinterpret_cast<void*>(begin));
        }
    }
    if (offset < size && ::lseek(fd, offset, SEEK_DATA) == offset) {
        // The file holds this page now: another process restored it between
        // the fault and our fstat, or the page is there and unreadable.
        char byte = 0;
        const ssize_t read = ::pread(fd, &byte, 1, offset);
        if (read < 0)
            return false; // an I/O error: not ours to hide
        if (read == 0)
            return true; // cut again since the lseek: the retry faults on the cut, which we repair
        // relaxed, here and below: a hint between faults of this slot, not an order.
        const bool again = slot.retried.exchange(page, std::memory_order_relaxed) == page;
        const std::uint32_t retries = again ? slot.retries.fetch_add(1, std::memory_order_relaxed) + 1 : 1;
        if (!again)
            slot.retries.store(1, std::memory_order_relaxed);
        if (retries < kRetriesOnHeldPage)
            return true;
        // Retried over and over though the file holds it: stop retrying.
    } else {
        slot.retried.store(0, std::memory_order_relaxed);
        // A hole or a cut page: allocating it in the file (which also
        // extends a file the length repair above could not) brings it back
        // as zeros, shared with every peer.
        if (writable && ::fallocate(fd, 0, offset, static_cast<off_t>(g_page_size)) == 0)
            return true;
        // Read-only, we cannot allocate; the retried read fault can, on a
        // hole inside the file where the file system has room.
        if (!writable && offset < size && has_room(fd))
            return true;
    }
    // The file cannot hold this page again (full, at its size limit, or not
    // ours to write): this process goes on with a private page, and says so.
    return replace_page(slot, begin, page, writable);
}

void on_sigbus(int signal, siginfo_t* info, void* context) noexcept
{
    const int saved_errno = errno;
    const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
    // Only a page the file lacks (BUS_ADRERR) may be ours; a memory error
    // (BUS_MCEERR_*) or BUS_OBJERR is not ours to hide.
    for (Slot& slot : info->si_code == BUS_ADRERR ? std::span(g_slots) : std::span<Slot>()) {
        const std::uintptr_t begin = slot.begin.load(std::memory_order_acquire);
        const std::size_t mapped = slot.mapped.load(std::memory_order_acquire);
        if (begin <= 1 || address < begin || address >= begin + mapped) // 0 free, 1 being filled in
            continue;
        if (!repair(slot, begin, mapped, address))
            break;
        slot.repairs.fetch_add(1, std::memory_order_relaxed);
        errno = saved_errno;
        return; // the access runs again and finds its page
    }
    errno = saved_errno;
    pass_on(signal, info, context);
}

void install() noexcept
{
    g_page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE)); // sysconf is not async-signal-safe
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    // SA_NODEFER: the handler's own touch of the header (the counts) may
    // fault on a cut header page; that fault must be handled, not fatal.
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, &g_previous);
}

} // namespace

void count_truncation(void* base) noexcept
{
    // Lock-free on every platform shmlink runs on, so safe in a signal handler.
    auto& header = *static_cast<layout::SegmentHeader*>(base);
    std::atomic_ref(header.truncations).fetch_add(1, std::memory_order_relaxed);
}

int guard_truncation(const void* base, int fd, std::size_t mapped, bool writable,
    std::error_code& ec) noexcept
{
    std::call_once(g_installed, install);
    for (int i = 0; i < kSlots; ++i) {
        Slot& slot = g_slots[i];
        std::uintptr_t expected = 0;
        // Claim with a placeholder, fill in, then publish the real base.
        if (!slot.begin.compare_exchange_strong(expected, 1, std::memory_order_acq_rel))
            continue;
        slot.mapped.store(mapped, std::memory_order_relaxed);
        slot.fd.store(fd, std::memory_order_relaxed);
        slot.writable.store(writable, std::memory_order_relaxed);
        slot.repairs.store(0, std::memory_order_relaxed);
        slot.private_pages.store(0, std::memory_order_relaxed);
        slot.retried.store(0, std::memory_order_relaxed);
        slot.retries.store(0, std::memory_order_relaxed);
        for (auto& kept : slot.replaced)
            kept.store(0, std::memory_order_relaxed);
        // release: pairs with the acquire load of begin in on_sigbus().
        slot.begin.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
        return i;
    }
    ec = std::make_error_code(std::errc::too_many_files_open);
    return -1;
}

void guard_resize(int slot, std::size_t mapped) noexcept
{
    if (slot >= 0 && slot < kSlots)
        g_slots[slot].mapped.store(mapped, std::memory_order_release);
}

void guard_forget(int slot) noexcept
{
    if (slot >= 0 && slot < kSlots)
        g_slots[slot].begin.store(0, std::memory_order_release);
}

std::uint64_t guard_repairs(int slot) noexcept
{
    return slot >= 0 && slot < kSlots ? g_slots[slot].repairs.load(std::memory_order_relaxed) : 0;
}

std::uint64_t guard_private_pages(int slot) noexcept
{
    return slot >= 0 && slot < kSlots ? g_slots[slot].private_pages.load(std::memory_order_relaxed) : 0;
}

} // namespace shmlink::detail
