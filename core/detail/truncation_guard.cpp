#include "core/detail/truncation_guard.hpp"

#include "core/layout.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <span>

namespace shmlink::detail {
namespace {

/// One guarded segment. The handler reads these fields with plain atomic
/// loads (async-signal-safe); `begin` is 0 for a free slot, 1 while one is
/// being filled in, and the mapping's address once it is complete.
struct Slot {
    std::atomic<std::uintptr_t> begin {0};
    std::atomic<std::size_t> mapped {0};
    std::atomic<int> fd {-1};
    std::atomic<bool> writable {false};
    std::atomic<std::uint64_t> repairs {0};
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

void on_sigbus(int signal, siginfo_t* info, void* context) noexcept
{
    const int saved_errno = errno;
    const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
    // Only an access past the end of the file (BUS_ADRERR) is a truncation;
    // a memory or I/O error (BUS_MCEERR_*, BUS_OBJERR) is not ours to hide.
    for (Slot& slot : info->si_code == BUS_ADRERR ? std::span(g_slots) : std::span<Slot>()) {
        const std::uintptr_t begin = slot.begin.load(std::memory_order_acquire);
        const std::size_t mapped = slot.mapped.load(std::memory_order_acquire);
        if (begin <= 1 || address < begin || address >= begin + mapped) // 0 free, 1 being filled in
            continue;
        const int fd = slot.fd.load(std::memory_order_relaxed);
        struct stat st {};
        if (::fstat(fd, &st) != 0 || static_cast<std::uintptr_t>(st.st_size) > address - begin)
            break; // the file does reach this page: some other fault
        const bool writable = slot.writable.load(std::memory_order_relaxed);
        if (writable) {
            // The file lost pages this process maps: give it back its length
            // (one byte at the end: the cut pages come back as holes, read as
            // zeros, and fallocate never shrinks, so racing repairs agree).
            if (::fallocate(fd, 0, static_cast<off_t>(mapped - 1), 1) != 0)
                break; // cannot repair (a full file system): a private page would hide our writes from peers
            slot.repairs.fetch_add(1, std::memory_order_relaxed);
            count_truncation(reinterpret_cast<void*>(begin));
            errno = saved_errno;
            return; // the access runs again and finds its page
        }
        // Read-only: no repair, but a private zero page lets this process go
        // on (it keeps that page until it maps the segment again).
        void* const page = reinterpret_cast<void*>(address & ~(g_page_size - 1));
        if (::mmap(page, g_page_size, PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
            slot.repairs.fetch_add(1, std::memory_order_relaxed);
            errno = saved_errno;
            return;
        }
        break;
    }
    errno = saved_errno;
    pass_on(signal, info, context);
}

void install() noexcept
{
    g_page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE)); // sysconf is not async-signal-safe
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
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

} // namespace shmlink::detail
