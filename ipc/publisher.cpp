#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/subscriber.hpp>

#include <shmlink/core/log.hpp>
#include <shmlink/core/mmap.hpp>
#include <shmlink/ipc/detail/liveness.hpp>
#include <shmlink/ipc/detail/object.hpp>
#include <shmlink/ipc/detail/topic.hpp>
#include <shmlink/ipc/wait.hpp>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <new>
#include <optional>
#include <string>
#include <vector>

namespace shmlink {
namespace detail {
namespace {

/// Chunks of 2^class bytes; the smallest class holds a cache line.
constexpr unsigned kMinClass = 6;
constexpr unsigned kClasses = 41; // up to 1 TiB, layout::kMaxSegmentBytes
/// An extent holds at least this much, so that small classes grow in steps
/// that amortise the grow, and never less than one chunk.
constexpr std::size_t kMinExtentBytes = 64 * 1024;
constexpr std::size_t kPage = 4096;

unsigned class_of(std::size_t size_bytes) noexcept
{
    return size_bytes <= (std::size_t {1} << kMinClass) ? kMinClass
                                                        : static_cast<unsigned>(std::bit_width(size_bytes - 1));
}

/// Grows `segment` once, to just what `length` more bytes at `alignment`
/// need past its data area's end: the cost is that of the new pages, not of
/// the segment (the base never moves). Errc::no_space past its maximum.
void grow_for(Segment& segment, std::size_t length, std::size_t alignment, std::error_code& ec) noexcept
{
    const std::uint64_t used = segment.info().data_used_bytes;
    const std::uint64_t start = (used + alignment - 1) / alignment * alignment;
    const std::uint64_t wanted = (start + length + kPage - 1) / kPage * kPage;
    if (wanted > segment.max_size_bytes()) {
        ec = Errc::no_space;
        return;
    }
    segment.grow(wanted, ec);
}

struct Chunk {
    std::uint64_t offset = 0;
    std::uint32_t refs = 0; // queued, held or kept for history: one each
    std::uint8_t size_class = 0;
    bool loaned = false;
};

struct Kept {
    std::uint32_t chunk;
    std::uint64_t size;
    std::uint64_t sequence;
};

struct Held {
    std::uint64_t position;
    std::uint32_t chunk;
};

/// publish()'s deadline, read off the clock only when a blocking subscriber
/// makes it wait: a publish that never waits reads no clock.
struct LazyDeadline {
    std::chrono::nanoseconds timeout {};
    std::optional<std::chrono::steady_clock::time_point> at {};
    std::chrono::steady_clock::time_point get() noexcept
    {
        if (!at)
            at = deadline_after(timeout);
        return *at;
    }
};

enum class SlotUse : std::uint8_t {
    idle,        // no subscriber adopted
    active,      // delivered to
    quarantined, // its fields broke the rules: delivered to no more, until its owner is gone
};

/// What the publisher knows of one slot, in its own memory: which chunk each
/// queued or taken position refers to. The shared slot is only ever compared
/// with it.
struct SlotBook {
    SlotUse use = SlotUse::idle;
    std::uint64_t owner = 0;        // the owner word adopted
    std::uint64_t tail = 0;         // deliveries queued
    std::uint64_t head = 0;         // positions below were taken or dropped
    std::uint64_t release_head = 0; // release entries read
    std::uint64_t drained_tail = 0; // tail when we last read the releases: at most depth deliveries ago
    std::uint32_t depth = 0;
    std::uint32_t max_held = 0;
    Overflow overflow = Overflow::drop_oldest;
    std::vector<std::uint32_t> queued; // chunk of position p at p % queue_depth, for p in [head, tail)
    std::vector<Held> held;            // taken, not released yet
    UniqueFd wake_fd;                  // the subscriber's eventfd (set_wake_fd()), until the slot is freed
    // A slot file of the subscriber's own (admit()), mapped, and the file: its
    // lock byte says whether that subscriber lives. Empty for a slot of the table.
    Mapping own;
    UniqueFd own_fd;
};

} // namespace

struct PublisherCore {
    Segment* segment = nullptr;
    TopicView view {};
    TopicOptions options {};
    std::string name;
    UniqueFd lock; // our own description: holds the publisher's byte, probes the slots'
    std::vector<Chunk> chunks;
    std::array<std::vector<std::uint32_t>, kClasses> free {};
    std::vector<SlotBook> books;
    std::vector<Kept> history; // the newest samples, oldest first, one reference each
    std::uint64_t sequence = 0;
    std::uint32_t joins_seen = 0;
    std::uint32_t calls = 0;
    std::chrono::steady_clock::time_point next_reap {};
    std::uint64_t dead_subscribers = 0;
    std::uint64_t corrupt_slots = 0;
    std::uint64_t bogus_releases = 0;

    std::uint32_t queue_depth() const noexcept { return view.geometry.queue_depth; }
    /// Where slot `index` lies: in the table, or in its subscriber's own file.
    std::byte* slot_base(std::uint32_t index) const noexcept
    {
        return books[index].own.valid() ? books[index].own.data() : view.slot_bytes(index);
    }
    ipc::TopicSlot& slot(std::uint32_t index) const noexcept { return slot_at(slot_base(index)); }
    ipc::TopicDelivery* queue(std::uint32_t index) const noexcept { return queue_at(slot_base(index)); }
    std::uint64_t* releases(std::uint32_t index) const noexcept { return releases_at(slot_base(index), view.geometry); }

    void unref(std::uint32_t chunk) noexcept
    {
        Chunk& c = chunks[chunk];
        if (--c.refs == 0 && !c.loaned)
            free[c.size_class].push_back(chunk); // reserved for every chunk of the class: no allocation
    }

    TopicStatus add_extent(unsigned size_class) noexcept;
    void maybe_reap() noexcept
    {
        // A clock read per 64 calls keeps reaping off the hot path.
        if ((++calls & 63) == 0 && std::chrono::steady_clock::now() >= next_reap)
            reap();
    }
    std::size_t reap() noexcept;
    /// Reads every live slot's releases: what they gave back is free again.
    void drain_all() noexcept
    {
        for (std::uint32_t i = 0; i < view.geometry.slot_count; ++i)
            if (books[i].use == SlotUse::active && sync(i))
                (void)drain_releases(i);
    }
    void look_for_joins(bool always) noexcept;
    void adopt(std::uint32_t index, std::uint64_t owner) noexcept;
    std::uint32_t admit(UniqueFd file, std::error_code& ec, std::string& why) noexcept;
    void free_slot(std::uint32_t index) noexcept;
    void drop_everything(SlotBook& book) noexcept;
    void quarantine(std::uint32_t index, const char* why) noexcept;
    bool sync(std::uint32_t index) noexcept;
    bool drain_releases(std::uint32_t index) noexcept;
    bool deliver(std::uint32_t index, std::uint32_t chunk, std::uint64_t size, std::uint64_t sequence,
        LazyDeadline& deadline) noexcept;
};

TopicStatus PublisherCore::add_extent(unsigned size_class) noexcept
{
    const std::size_t chunk_bytes = std::size_t {1} << size_class;
    const std::size_t extent_bytes = std::max(chunk_bytes, kMinExtentBytes);
    const std::size_t alignment = std::min(chunk_bytes, kPage);
    if (extent_bytes > segment->max_size_bytes())
        return TopicStatus::too_large;
    try {
        std::error_code ec;
        std::uint64_t offset = segment->allocate_extent(extent_bytes, alignment, ec);
        if (ec == Errc::no_space) {
            ec.clear();
            grow_for(*segment, extent_bytes, alignment, ec);
            if (ec) {
                if (ec != Errc::no_space)
                    logger().warn("topic '{}': grow for a pool extent of {} bytes: {}", name, extent_bytes,
                        ec.message());
                return TopicStatus::no_space;
            }
            offset = segment->allocate_extent(extent_bytes, alignment, ec);
        }
        if (ec)
            return TopicStatus::no_space;
        const std::size_t count = extent_bytes / chunk_bytes;
        chunks.reserve(chunks.size() + count);
        // Room for every chunk of the class, so that unref() never allocates.
        std::size_t in_class = 0;
        for (const Chunk& c : chunks)
            in_class += c.size_class == size_class;
        free[size_class].reserve(in_class + count);
        for (std::size_t i = count; i-- > 0;) {
            free[size_class].push_back(static_cast<std::uint32_t>(chunks.size()));
            chunks.push_back(Chunk {offset + i * chunk_bytes, 0, static_cast<std::uint8_t>(size_class), false});
        }
    } catch (const std::bad_alloc&) {
        return TopicStatus::no_space;
    }
    // relaxed: statistics, for inspection.
    shared(view.control->extents).fetch_add(1, std::memory_order_relaxed);
    shared(view.control->pool_bytes).fetch_add(extent_bytes, std::memory_order_relaxed);
    return TopicStatus::ok;
}

void PublisherCore::drop_everything(SlotBook& book) noexcept
{
    for (std::uint64_t p = book.head; p != book.tail; ++p)
        unref(book.queued[p & (queue_depth() - 1)]);
    for (const Held& h : book.held)
        unref(h.chunk);
    book.held.clear();
    book.head = book.tail;
}

void PublisherCore::quarantine(std::uint32_t index, const char* why) noexcept
{
    SlotBook& book = books[index];
    drop_everything(book);
    book.use = SlotUse::quarantined;
    ++corrupt_slots;
    ipc::TopicSlot& slot = this->slot(index);
    // release: pairs with the acquire load of flags in the subscriber's take().
    shared(slot.flags).fetch_or(ipc::kSlotQuarantined, std::memory_order_release);
    notify_sole(slot.readable, book.wake_fd.get());
    logger().warn("topic '{}': subscriber slot {} {}; quarantined until its subscriber is gone", name, index, why);
}

void PublisherCore::free_slot(std::uint32_t index) noexcept
{
    SlotBook& book = books[index];
    drop_everything(book);
    book.use = SlotUse::idle;
    book.owner = 0;
    book.wake_fd.reset(); // the next subscriber of the slot brings its own
    book.own.reset();     // a slot file goes with its subscriber; the table entry is what is freed
    book.own_fd.reset();
    ipc::TopicSlot& slot = view.slot(index);
    // Every word but the owner's back to zero (whatever a peer wrote there),
    // as a new subscriber expects, before the owner word says free.
    auto* words = reinterpret_cast<std::uint64_t*>(&slot);
    for (std::size_t i = 1; i < view.geometry.slot_bytes / sizeof(std::uint64_t); ++i)
        std::atomic_ref(words[i]).store(0, std::memory_order_relaxed); // relaxed: ordered by the owner's release
    // release: pairs with the acquire compare-and-swap of a subscriber that takes the slot.
    shared(slot.owner).store(0, std::memory_order_release);
}

void PublisherCore::adopt(std::uint32_t index, std::uint64_t owner) noexcept
{
    SlotBook& book = books[index];
    ipc::TopicSlot& slot = this->slot(index);
    // relaxed: written before the owner word said joined (acquire in look_for_joins()).
    const std::uint32_t depth = shared(slot.depth).load(std::memory_order_relaxed);
    const std::uint32_t max_held = shared(slot.max_held).load(std::memory_order_relaxed);
    const std::uint32_t overflow = shared(slot.overflow).load(std::memory_order_relaxed);
    book.owner = owner;
    book.tail = book.head = book.release_head = book.drained_tail = 0;
    book.held.clear();
    book.use = SlotUse::active;
    if (depth == 0 || depth > queue_depth() || max_held == 0 || max_held > view.geometry.max_held || overflow > 1
        || shared(slot.head).load(std::memory_order_relaxed) != 0
        || shared(slot.release_tail).load(std::memory_order_relaxed) != 0) {
        quarantine(index, "joined with options or positions out of range");
        return;
    }
    book.depth = depth;
    book.max_held = max_held;
    book.overflow = static_cast<Overflow>(overflow);
    // A late joiner gets the newest samples first kept: as many as its queue holds.
    const std::size_t replay = std::min<std::size_t>(history.size(), depth);
    LazyDeadline never_waits; // room for all of them: the queue is empty
    for (std::size_t i = history.size() - replay; i < history.size(); ++i)
        (void)deliver(index, history[i].chunk, history[i].size, history[i].sequence, never_waits);
}

void PublisherCore::look_for_joins(bool always) noexcept
{
    // acquire: pairs with the release increment of a subscriber that joined or left.
    const std::uint32_t joins = shared(view.control->joins).load(std::memory_order_acquire);
    if (!always && joins == joins_seen)
        return;
    joins_seen = joins;
    for (std::uint32_t i = 0; i < view.geometry.slot_count; ++i) {
        SlotBook& book = books[i];
        if (book.own.valid())
            continue; // its entry only says `apart`; reap() watches the slot file
        // acquire: pairs with the subscriber's release store of joined or leaving.
        const std::uint64_t owner = shared(view.slot(i).owner).load(std::memory_order_acquire);
        const ipc::SlotState state = slot_state(owner);
        if (book.use == SlotUse::idle) {
            if (state == ipc::SlotState::joined)
                adopt(i, owner);
            else if (state == ipc::SlotState::leaving)
                free_slot(i); // joined and left before we saw it
        } else if (state == ipc::SlotState::leaving && owner >> 32 == book.owner >> 32) {
            free_slot(i);
        }
    }
}

std::uint32_t PublisherCore::admit(UniqueFd file, std::error_code& ec, std::string& why) noexcept
{
    const std::size_t bytes = own_slot_file_bytes(view.geometry);
    struct stat st {};
    if (!file || ::fstat(file.get(), &st) != 0) {
        ec = file ? errno_code() : std::make_error_code(std::errc::bad_file_descriptor);
        return Subscriber<>::kNoSlot;
    }
    // A memfd of tmpfs, not of hugetlbfs: the subscriber could punch holes in
    // that one and fault us, seals or not.
    struct statfs fs {};
    if (!S_ISREG(st.st_mode) || ::fstatfs(file.get(), &fs) != 0 || fs.f_type != TMPFS_MAGIC) {
        ec = Errc::not_a_segment;
        return Subscriber<>::kNoSlot;
    }
    // A file its subscriber could shrink would fault us on its next delivery.
    const int seals = ::fcntl(file.get(), F_GET_SEALS);
    if (static_cast<std::uint64_t>(st.st_size) != bytes || seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
        ec = Errc::invalid_argument;
        why = "not a slot file of this topic: " + std::to_string(st.st_size) + " bytes, not " + std::to_string(bytes)
            + (seals < 0 || (seals & F_SEAL_SHRINK) == 0 ? ", not sealed against shrinking" : "");
        return Subscriber<>::kNoSlot;
    }
    for (const SlotBook& book : books) {
        struct stat other {};
        if (book.own_fd && ::fstat(book.own_fd.get(), &other) == 0 && other.st_ino == st.st_ino
            && other.st_dev == st.st_dev) {
            ec = Errc::invalid_argument;
            why = "its slot file is admitted already, as slot " + std::to_string(&book - books.data());
            return Subscriber<>::kNoSlot;
        }
    }
    Mapping mapped = map(bytes, Prot::read | Prot::write, MapFlags(Map::shared), file, 0, ec);
    if (!mapped.valid())
        return Subscriber<>::kNoSlot;
    // acquire: pairs with the subscriber's release store of joined, after its options.
    const std::uint64_t owner = shared(slot_at(mapped.data()).owner).load(std::memory_order_acquire);
    if (slot_state(owner) != ipc::SlotState::joined) {
        ec = Errc::invalid_argument;
        why = "its slot file does not say joined";
        return Subscriber<>::kNoSlot;
    }
    if (!byte_locked(file, kOwnSlotLockByte)) {
        ec = Errc::peer_closed; // its subscriber is gone
        return Subscriber<>::kNoSlot;
    }
    for (std::uint32_t i = 0; i < view.geometry.slot_count; ++i) {
        if (books[i].use != SlotUse::idle)
            continue;
        std::uint64_t free = 0;
        // relaxed: only the index is taken; nobody reads more of an `apart` entry.
        // It competes with a subscriber of the table that takes the same entry.
        if (!shared(view.slot(i).owner).compare_exchange_strong(free,
                owner_word(static_cast<pid_t>(owner >> 32), ipc::SlotState::apart), std::memory_order_relaxed))
            continue;
        books[i].own = std::move(mapped);
        books[i].own_fd = std::move(file);
        shared(slot(i).admitted).store(i + 1, std::memory_order_relaxed); // relaxed: a number for the subscriber
        adopt(i, owner);
        return i;
    }
    ec = Errc::no_free_lane;
    return Subscriber<>::kNoSlot;
}

std::size_t PublisherCore::reap() noexcept
{
    next_reap = std::chrono::steady_clock::now() + options.reap_interval;
    look_for_joins(true); // a scribbled joins counter must not hide a join for ever
    std::size_t freed = 0;
    for (std::uint32_t i = 0; i < view.geometry.slot_count; ++i) {
        if (books[i].own.valid()) {
            // acquire: pairs with the subscriber's release store of leaving, after its releases.
            const bool left = slot_state(shared(slot(i).owner).load(std::memory_order_acquire))
                == ipc::SlotState::leaving;
            if (!left && byte_locked(books[i].own_fd, kOwnSlotLockByte))
                continue;
            dead_subscribers += !left;
            free_slot(i);
            ++freed;
            continue;
        }
        // relaxed: the lock, not the word, says whether its subscriber lives.
        const std::uint64_t owner = shared(view.slot(i).owner).load(std::memory_order_relaxed);
        if (books[i].use == SlotUse::idle && owner == 0)
            continue;
        if (byte_locked(lock, view.slot_lock_byte(i)))
            continue;
        if (books[i].use != SlotUse::idle)
            ++dead_subscribers;
        free_slot(i);
        ++freed;
    }
    drain_all();
    return freed;
}

bool PublisherCore::drain_releases(std::uint32_t index) noexcept
{
    SlotBook& book = books[index];
    ipc::TopicSlot& slot = this->slot(index);
    const std::uint32_t capacity = view.geometry.release_capacity;
    // acquire: pairs with the subscriber's release store in release(); it read
    // the samples it names before.
    const std::uint64_t tail = shared(slot.release_tail).load(std::memory_order_acquire);
    if (tail == book.release_head) {
        book.drained_tail = book.tail;
        return true;
    }
    if (tail - book.release_head > capacity) {
        quarantine(index, "wrote a release ring position out of range");
        return false;
    }
    const std::uint64_t* entries = releases(index);
    for (std::uint64_t r = book.release_head; r != tail; ++r) {
        // relaxed: ordered by the acquire load of release_tail.
        const std::uint64_t position = std::atomic_ref(const_cast<std::uint64_t&>(entries[r & (capacity - 1)]))
                                           .load(std::memory_order_relaxed);
        auto found = std::find_if(book.held.begin(), book.held.end(),
            [&](const Held& h) { return h.position == position; });
        if (found == book.held.end() && position >= book.head && position < book.tail) {
            // Taken after we last looked at head: what it took is visible now
            // (the release store follows the take in the subscriber).
            if (!sync(index))
                return false;
            found = std::find_if(book.held.begin(), book.held.end(),
                [&](const Held& h) { return h.position == position; });
        }
        if (found == book.held.end()) {
            ++bogus_releases; // names nothing it holds: a lie or a second release; ignored
            continue;
        }
        unref(found->chunk);
        *found = book.held.back();
        book.held.pop_back();
    }
    book.release_head = tail;
    book.drained_tail = book.tail;
    // release: pairs with the subscriber's acquire load before it reuses entries.
    shared(slot.release_head).store(tail, std::memory_order_release);
    return true;
}

bool PublisherCore::sync(std::uint32_t index) noexcept
{
    SlotBook& book = books[index];
    ipc::TopicSlot& slot = this->slot(index);
    // acquire: pairs with the subscriber's compare-and-swap in take().
    const std::uint64_t head = shared(slot.head).load(std::memory_order_acquire);
    if (head < book.head || head > book.tail) {
        quarantine(index, "wrote a queue head out of range");
        return false;
    }
    for (std::uint64_t p = book.head; p != head; ++p)
        book.held.push_back(Held {p, book.queued[p & (queue_depth() - 1)]}); // reserved: no allocation
    book.head = head;
    // An honest subscriber holds at most max_held, and since we last read its
    // releases may have taken what was queued then and what we delivered
    // since (a queue each, see deliver()): anything beyond is a lie, and
    // costs the liar its oldest samples, never another subscriber's.
    while (book.held.size() > std::size_t {book.max_held} + 2 * std::size_t {book.depth}) {
        auto oldest = std::min_element(book.held.begin(), book.held.end(),
            [](const Held& a, const Held& b) { return a.position < b.position; });
        unref(oldest->chunk);
        *oldest = book.held.back();
        book.held.pop_back();
        shared(slot.reclaimed).fetch_add(1, std::memory_order_relaxed); // relaxed: a statistic
    }
    return true;
}

bool PublisherCore::deliver(std::uint32_t index, std::uint32_t chunk, std::uint64_t size, std::uint64_t sequence,
    LazyDeadline& deadline) noexcept
{
    SlotBook& book = books[index];
    ipc::TopicSlot& slot = this->slot(index);
    // The subscriber's lines are read only when its queue looks full (by the
    // head we last saw, which is never ahead of the real one) or a queue's
    // worth of deliveries after we last read its releases: its release ring
    // holds all it can release meanwhile (release_capacity_for()). A publish
    // then touches no line the subscriber writes, as a ring's producer does not.
    if (book.tail - book.head >= book.depth || book.tail - book.drained_tail >= book.depth)
        if (!sync(index) || !drain_releases(index))
            return true;
    const std::uint32_t mask = queue_depth() - 1;
    while (book.tail - book.head >= book.depth) {
        if (book.overflow == Overflow::drop_oldest) {
            std::uint64_t expected = book.head;
            // acq_rel: competes with the subscriber's take for the oldest
            // position; whoever wins owns it.
            if (shared(slot.head).compare_exchange_strong(expected, book.head + 1, std::memory_order_acq_rel,
                    std::memory_order_relaxed)) {
                unref(book.queued[book.head & mask]);
                ++book.head;
                shared(slot.missed).fetch_add(1, std::memory_order_relaxed); // relaxed: a statistic
            } else if (!sync(index)) {
                return true;
            }
            continue;
        }
        // Wait until the queue is half empty, not for one free entry: the
        // subscriber wakes us only then (take()), so that a publisher ahead of
        // its subscriber sleeps once per half queue, not once per sample.
        const std::uint64_t tail = book.tail;
        const std::uint32_t low = book.depth / 2;
        const bool room = wait_until(
            slot.writable.seq, SoleSleeper {slot.writable},
            [&] {
                // relaxed: sync() acquires. A subscriber that leaves wakes us too.
                return tail - shared(slot.head).load(std::memory_order_relaxed) <= low
                    || shared(slot.owner).load(std::memory_order_relaxed) != book.owner;
            },
            WaitOptions {}, deadline.get());
        if (!sync(index))
            return true;
        // relaxed: the lock or the next look at the joins decides what becomes of the slot.
        if (shared(slot.owner).load(std::memory_order_relaxed) != book.owner)
            return true; // it left (or wrote over its owner word): not worth the wait
        if (!room && book.tail - book.head >= book.depth) {
            shared(slot.missed).fetch_add(1, std::memory_order_relaxed); // relaxed: a statistic
            return false;
        }
    }
    const std::uint64_t position = book.tail;
    ipc::TopicDelivery& d = queue(index)[position & mask];
    // relaxed: published by the release store of the mark.
    shared(d.offset).store(chunks[chunk].offset, std::memory_order_relaxed);
    shared(d.size).store(size, std::memory_order_relaxed);
    shared(d.sequence).store(sequence, std::memory_order_relaxed);
    // release: pairs with the subscriber's acquire load of the mark in take().
    shared(d.mark).store(position + 1, std::memory_order_release);
    book.queued[position & mask] = chunk;
    ++chunks[chunk].refs;
    book.tail = position + 1;
    // release: pairs with the acquire load of tail in the subscriber's take().
    shared(slot.tail).store(book.tail, std::memory_order_release);
    notify_sole(slot.readable, book.wake_fd.get());
    return true;
}

} // namespace detail

// ---- Loan ----

Loan<void>& Loan<void>::operator=(Loan&& other) noexcept
{
    if (this != &other) {
        give_back();
        core_ = std::exchange(other.core_, nullptr);
        chunk_ = other.chunk_;
        capacity_ = std::exchange(other.capacity_, 0);
        bytes_ = std::exchange(other.bytes_, {});
        status_ = std::exchange(other.status_, TopicStatus::invalid);
    }
    return *this;
}

bool Loan<void>::resize(std::size_t size_bytes) noexcept
{
    if (core_ == nullptr || size_bytes > capacity_)
        return false;
    bytes_ = {bytes_.data(), size_bytes};
    return true;
}

void Loan<void>::give_back() noexcept
{
    if (core_ == nullptr)
        return;
    detail::Chunk& c = core_->chunks[chunk_];
    c.loaned = false;
    if (c.refs == 0)
        core_->free[c.size_class].push_back(chunk_);
    core_ = nullptr;
    bytes_ = {};
    status_ = TopicStatus::invalid;
}

// ---- Publisher ----

Publisher<void>::Publisher() noexcept = default;
Publisher<void>::Publisher(Publisher&&) noexcept = default;
Publisher<void>& Publisher<void>::operator=(Publisher&& other) noexcept
{
    if (this != &other) {
        Publisher gone(std::move(*this));
        core_ = std::move(other.core_);
    }
    return *this;
}

Publisher<void>::~Publisher()
{
    if (!core_)
        return;
    ipc::TopicControl& control = *core_->view.control;
    // release: pairs with the subscribers' acquire load of publisher; all we queued is published before.
    detail::shared(control.publisher)
        .store(detail::owner_word(getpid(), ipc::PublisherState::closed), std::memory_order_release);
    for (std::uint32_t i = 0; i < core_->view.geometry.slot_count; ++i)
        notify_sole(core_->slot(i).readable, core_->books[i].wake_fd.get());
}

Publisher<void> Publisher<void>::create(Segment& segment, std::string_view name, const TopicOptions& options)
{
    std::string why;
    return detail::or_throw("create topic", name,
        [&](std::error_code& ec) {
            (void)detail::TopicGeometry::from(options, why);
            return create(segment, name, options, ec);
        },
        [&] { return why; });
}

Publisher<void> Publisher<void>::create(Segment& segment, std::string_view name, const TopicOptions& options,
    std::error_code& ec) noexcept
{
    ec.clear();
    try {
        if (!segment.is_owner()) {
            ec = Errc::not_owner;
            return {};
        }
        std::string why;
        const detail::TopicGeometry geometry = detail::TopicGeometry::from(options, why);
        if (!why.empty()) {
            ec = Errc::invalid_argument;
            return {};
        }
        detail::register_waker(); // before this process's first notify() (ipc/wait.hpp)
        auto core = std::make_unique<detail::PublisherCore>();
        core->lock = detail::reopen_segment(segment, ec);
        if (!core->lock)
            return {};
        bool locked = false;
        const auto initialize = [&](std::byte* bytes) {
            auto& control = *reinterpret_cast<ipc::TopicControl*>(bytes);
            control.slot_count = geometry.slot_count;
            control.queue_depth = geometry.queue_depth;
            control.max_held = geometry.max_held;
            control.release_capacity = geometry.release_capacity;
            control.history = geometry.history;
            control.slot_bytes = geometry.slot_bytes;
            control.publisher = detail::owner_word(getpid(), ipc::PublisherState::open);
            // Locked before the topic can be found, so that nobody takes it for dead.
            locked = detail::lock_byte(core->lock, static_cast<std::uint64_t>(bytes - segment.base()));
        };
        std::byte* object = detail::create_object(segment, name, ipc::ObjectKind::topic, ipc::kTopicVersion,
            geometry.object_bytes(), initialize, ec);
        if (ec == Errc::no_space) {
            // The topic grows the segment as its pool does: once, by what it needs.
            ec.clear();
            detail::grow_for(segment, geometry.object_bytes(), ipc::kFalseSharingRange, ec);
            if (!ec)
                object = detail::create_object(segment, name, ipc::ObjectKind::topic, ipc::kTopicVersion,
                    geometry.object_bytes(), initialize, ec);
        }
        if (object == nullptr)
            return {};
        core->segment = &segment;
        core->view.control = reinterpret_cast<ipc::TopicControl*>(object);
        core->view.geometry = geometry;
        core->view.object_offset = static_cast<std::uint64_t>(object - segment.base());
        core->options = options;
        core->name = std::string(name);
        core->books.resize(geometry.slot_count);
        for (detail::SlotBook& book : core->books) {
            book.queued.resize(geometry.queue_depth);
            // sync() trims past max_held + 2 depth, after it added up to 2 depth.
            book.held.reserve(std::size_t {geometry.max_held} + 4 * std::size_t {geometry.queue_depth});
        }
        core->history.reserve(geometry.history + 1);
        core->next_reap = std::chrono::steady_clock::now() + options.reap_interval;
        Publisher publisher;
        publisher.core_ = std::move(core);
        if (!locked) {
            ec = errno_code();
            return {}; // the destructor says closed: no subscriber waits for a publisher nobody can see die
        }
        logger().info("topic '{}' created: {} subscriber slots, queue depth {}, {} held each", name,
            geometry.slot_count, geometry.queue_depth, geometry.max_held);
        return publisher;
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        return {};
    }
}

Loan<> Publisher<void>::loan(std::size_t size_bytes) noexcept
{
    Loan<> loan;
    if (!core_)
        return loan;
    detail::PublisherCore& core = *core_;
    core.maybe_reap();
    if (size_bytes > core.segment->max_size_bytes()) {
        loan.status_ = TopicStatus::too_large;
        return loan;
    }
    const unsigned size_class = detail::class_of(size_bytes);
    auto& free = core.free[size_class];
    if (free.empty()) {
        // Released chunks come back only when we read the release rings:
        // read them all before the pool grows.
        core.drain_all();
    }
    if (free.empty()) {
        const TopicStatus grown = core.add_extent(size_class);
        if (grown != TopicStatus::ok) {
            loan.status_ = grown;
            return loan;
        }
    }
    const std::uint32_t chunk = free.back();
    free.pop_back();
    detail::Chunk& c = core.chunks[chunk];
    c.loaned = true;
    loan.core_ = &core;
    loan.chunk_ = chunk;
    loan.capacity_ = std::size_t {1} << size_class;
    loan.bytes_ = {core.segment->base() + c.offset, size_bytes};
    loan.status_ = TopicStatus::ok;
    return loan;
}

TopicStatus Publisher<void>::publish(Loan<>&& loan) noexcept
{
    return publish(std::move(loan), core_ ? std::chrono::nanoseconds(core_->options.block_timeout)
                                          : std::chrono::nanoseconds::zero());
}

TopicStatus Publisher<void>::publish(Loan<>&& loan, std::chrono::nanoseconds timeout) noexcept
{
    if (!core_ || loan.core_ != core_.get())
        return TopicStatus::invalid;
    detail::PublisherCore& core = *core_;
    const std::uint32_t chunk = loan.chunk_;
    const std::uint64_t size = loan.bytes_.size();
    loan.core_ = nullptr; // the chunk is ours again: what follows decides where it goes
    loan.bytes_ = {};
    loan.status_ = TopicStatus::invalid;
    core.chunks[chunk].loaned = false;
    core.maybe_reap();
    core.look_for_joins(false);
    const std::uint64_t sequence = core.sequence++;
    detail::LazyDeadline deadline {timeout};
    TopicStatus status = TopicStatus::ok;
    ++core.chunks[chunk].refs; // ours while we deliver, so that no drop frees it meanwhile
    for (std::uint32_t i = 0; i < core.view.geometry.slot_count; ++i)
        if (core.books[i].use == detail::SlotUse::active && !core.deliver(i, chunk, size, sequence, deadline))
            status = TopicStatus::timed_out;
    if (core.view.geometry.history != 0) {
        ++core.chunks[chunk].refs;
        core.history.push_back(detail::Kept {chunk, size, sequence}); // reserved: history + 1
        if (core.history.size() > core.view.geometry.history) {
            core.unref(core.history.front().chunk);
            core.history.erase(core.history.begin());
        }
    }
    core.unref(chunk);
    // relaxed: a statistic, of which we are the only writer (no locked add).
    detail::shared(core.view.control->published).store(core.sequence, std::memory_order_relaxed);
    return status;
}

std::size_t Publisher<void>::reap() noexcept { return core_ ? core_->reap() : 0; }

std::uint32_t Publisher<void>::admit(UniqueFd slot_file)
{
    std::string why;
    return detail::or_throw("admit a subscriber to topic", core_ ? std::string_view(core_->name) : "",
        [&](std::error_code& ec) { return admit(std::move(slot_file), ec, why); }, [&] { return why; });
}

std::uint32_t Publisher<void>::admit(UniqueFd slot_file, std::error_code& ec) noexcept
{
    std::string why;
    return admit(std::move(slot_file), ec, why);
}

std::uint32_t Publisher<void>::admit(UniqueFd slot_file, std::error_code& ec, std::string& why) noexcept
{
    ec.clear();
    if (!core_) {
        ec = Errc::invalid_argument;
        why = "the publisher is empty";
        return Subscriber<>::kNoSlot;
    }
    try {
        return core_->admit(std::move(slot_file), ec, why);
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        return Subscriber<>::kNoSlot;
    }
}

bool Publisher<void>::set_wake_fd(std::uint32_t slot, UniqueFd wake_fd) noexcept
{
    if (!core_ || slot >= core_->view.geometry.slot_count)
        return false;
    core_->books[slot].wake_fd = std::move(wake_fd);
    return true;
}

PublisherStats Publisher<void>::stats() const
{
    PublisherStats s;
    if (!core_)
        return s;
    const detail::PublisherCore& core = *core_;
    for (const detail::SlotBook& book : core.books)
        s.subscribers += book.use == detail::SlotUse::active;
    s.published = core.sequence;
    s.extents = detail::shared(core.view.control->extents).load(std::memory_order_relaxed);
    s.pool_bytes = detail::shared(core.view.control->pool_bytes).load(std::memory_order_relaxed);
    s.dead_subscribers = core.dead_subscribers;
    s.corrupt_slots = core.corrupt_slots;
    s.bogus_releases = core.bogus_releases;
    for (unsigned c = 0; c < detail::kClasses; ++c) {
        PoolClass pc;
        for (const detail::Chunk& chunk : core.chunks)
            pc.chunks += chunk.size_class == c;
        if (pc.chunks == 0)
            continue;
        pc.chunk_bytes = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t {1} << c, UINT32_MAX));
        pc.free = static_cast<std::uint32_t>(core.free[c].size());
        s.classes.push_back(pc);
    }
    return s;
}

} // namespace shmlink
