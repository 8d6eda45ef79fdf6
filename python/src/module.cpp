// shmlink._native: the C++ API for Python (the package is python/shmlink).
// Every object that maps or holds part of a segment can be closed (and is a
// context manager); closing an owner (a Segment, Host or Guest) first ends
// the loans of everything opened on it, then closes those too, and refuses
// while a view is in use or a call waits on one of them; a view keeps what
// its bytes belong to alive. So no Python object reaches memory that is gone. Blocking calls
// release the GIL, wait in slices of at most 100 ms and answer signals
// (Ctrl-C) between them; timeouts are in seconds, None waits for good.
#include <shmlink/shmlink.hpp>

#include "errors.hpp"
#include "view.hpp"

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <fcntl.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace py = pybind11;
using namespace std::chrono_literals;

namespace shmlink::python {

namespace {

using Timeout = std::optional<double>;

[[noreturn]] void raise_closed(const char* what)
{
    PyErr_SetString(PyExc_ValueError, (std::string(what) + " is closed").c_str());
    throw py::error_already_set();
}

/// Counts a call that may release the GIL: while one runs, nothing may
/// close the object it uses (another thread, or a signal handler run
/// between wait slices, would free it under the call).
class InUse {
public:
    explicit InUse(int& calls) noexcept : calls_(calls) { ++calls_; }
    InUse(const InUse&) = delete;
    InUse& operator=(const InUse&) = delete;
    ~InUse() { --calls_; }

private:
    int& calls_;
};

[[noreturn]] void raise_in_use(const char* what)
{
    PyErr_SetString(PyExc_RuntimeError,
        (std::string(what) + " is in use by a call that waits (in another thread, or under a signal handler)").c_str());
    throw py::error_already_set();
}

/// Something that lives on an Owner: ended and detached when its owner closes.
struct Dependent {
    int calls = 0; ///< calls in progress (InUse)
    virtual ~Dependent() = default;
    [[nodiscard]] virtual bool in_use() const noexcept { return calls > 0; }
    virtual py::object object() = 0; ///< its Python object, strongly
    virtual void end_loans() = 0;    ///< may raise BufferError: the owner then stays open
    virtual void detach() noexcept = 0;
};

/// What rings are opened on: keeps their list, closes them before itself.
struct Owner {
    std::vector<Dependent*> dependents;
    void add(Dependent* d) { dependents.push_back(d); }
    void remove(Dependent* d) noexcept { std::erase(dependents, d); }
    [[nodiscard]] bool dependents_in_use() const noexcept
    {
        return std::any_of(dependents.begin(), dependents.end(), [](const Dependent* d) { return d->in_use(); });
    }
    /// Refuses (RuntimeError, BufferError) before it changes anything where
    /// it can; ends every loan, then detaches every dependent.
    void close_dependents(const char* what)
    {
        if (dependents_in_use())
            raise_in_use(what);
        // Strong references while we go: ending a loan can drop the last
        // other reference to a dependent, which would then leave the list.
        std::vector<py::object> held;
        for (Dependent* d : dependents)
            held.push_back(d->object());
        const std::vector<Dependent*> all = dependents;
        for (Dependent* d : all)
            d->end_loans();
        for (Dependent* d : all)
            d->detach();
        dependents.clear();
    }
};

/// Whether a call with `timeout` may wait at all; NaN is refused.
bool waits(Timeout timeout)
{
    if (timeout && std::isnan(*timeout)) {
        PyErr_SetString(PyExc_ValueError, "timeout: NaN is not a number of seconds");
        throw py::error_already_set();
    }
    return !timeout || *timeout > 0;
}

/// Runs `attempt(slice)` without the GIL until it answers anything but
/// timed_out, or `timeout` seconds have passed; signals are checked between
/// slices so that Ctrl-C interrupts a long wait.
template <typename Attempt>
RingStatus wait_in_slices(Timeout timeout, Attempt&& attempt)
{
    if (timeout && std::isnan(*timeout)) {
        PyErr_SetString(PyExc_ValueError, "timeout: NaN is not a number of seconds");
        throw py::error_already_set();
    }
    // A year or more (or infinity) waits for good: the clock arithmetic would overflow.
    if (timeout && !(*timeout < 3.2e7))
        timeout.reset();
    const auto now = std::chrono::steady_clock::now();
    const auto deadline = timeout ? now + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::duration<double>(std::max(*timeout, 0.0)))
                                  : std::chrono::steady_clock::time_point::max();
    for (;;) {
        const auto left = deadline - std::chrono::steady_clock::now();
        const auto slice = std::clamp<std::chrono::nanoseconds>(left, 0ns, 100ms);
        RingStatus status;
        {
            py::gil_scoped_release unlocked;
            status = attempt(slice);
        }
        if (status != RingStatus::timed_out)
            return status;
        if (PyErr_CheckSignals() != 0)
            throw py::error_already_set();
        if (std::chrono::steady_clock::now() >= deadline)
            return RingStatus::timed_out;
    }
}

/// The object `make()` returns, made once and kept in `slot` by its owner:
/// a ring must have one Python object only, or two could lend its one
/// message, and one that died with a loan open would lose it.
template <typename Make>
py::object cached(py::object& slot, Make&& make)
{
    if (!slot)
        slot = make();
    return slot;
}

/// Raises for the statuses that are errors, and says whether it was ok.
bool check(RingStatus status, std::size_t length, std::size_t max_bytes, const char* what)
{
    if (status == RingStatus::too_large) {
        PyErr_SetString(PyExc_ValueError, (std::string(what) + ": a message of " + std::to_string(length)
                                              + " bytes is longer than the ring's largest, " + std::to_string(max_bytes))
                                              .c_str());
        throw py::error_already_set();
    }
    if (status == RingStatus::corrupt)
        raise(Errc::corrupt_object, std::string(what) + ": the ring is corrupt (a peer wrote over it) or closed");
    return status == RingStatus::ok;
}

/// The bytes of any object with the buffer protocol (bytes, bytearray,
/// memoryview, numpy arrays), held while this lives: a thread that changes
/// a bytearray meanwhile cannot free it. Cheaper than py::buffer_info,
/// which the hot paths would pay for every message.
class Buffer {
public:
    explicit Buffer(py::handle object)
    {
        if (PyObject_GetBuffer(object.ptr(), &view_, PyBUF_SIMPLE) != 0)
            throw py::error_already_set();
    }
    Buffer(Buffer&& other) noexcept : view_(other.view_) { other.view_.obj = nullptr; }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer& operator=(Buffer&&) = delete;
    ~Buffer()
    {
        if (view_.obj != nullptr)
            PyBuffer_Release(&view_);
    }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept
    {
        return {static_cast<const std::byte*>(view_.buf), static_cast<std::size_t>(view_.len)};
    }

private:
    Py_buffer view_ {};
};

py::bytes to_bytes(std::span<const std::byte> bytes)
{
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// ---- Segment ----

struct PySegment final : Owner, Dependent {
    std::unique_ptr<Segment> owned;
    Segment* segment = nullptr;
    Owner* parent = nullptr; ///< the Host or Guest a borrowed segment belongs to
    py::object keep;         ///< and that object, kept alive

    PySegment(std::unique_ptr<Segment> s) : owned(std::move(s)), segment(owned.get()) {}
    PySegment(Segment& s, Owner& owner, py::object owner_object)
        : segment(&s), parent(&owner), keep(std::move(owner_object))
    {
        parent->add(this);
    }
    ~PySegment() override
    {
        if (parent != nullptr)
            parent->remove(this);
    }
    Segment& get()
    {
        if (segment == nullptr)
            raise_closed("the segment");
        return *segment;
    }
    void close()
    {
        close_dependents("the segment");
        if (parent != nullptr)
            parent->remove(this);
        parent = nullptr;
        segment = nullptr;
        owned.reset();
    }
    [[nodiscard]] bool in_use() const noexcept override { return dependents_in_use(); }
    py::object object() override { return py::cast(this, py::return_value_policy::reference); }
    void end_loans() override
    {
        for (Dependent* d : dependents)
            d->end_loans();
    }
    void detach() noexcept override
    {
        for (Dependent* d : std::vector(dependents))
            d->detach();
        dependents.clear();
        segment = nullptr;
        parent = nullptr;
    }
};

py::dict info_of(const Segment& segment)
{
    const SegmentInfo info = segment.info();
    py::dict d;
    d["layout_version"] = info.layout_version;
    d["size_bytes"] = info.size_bytes;
    d["max_size_bytes"] = info.max_size_bytes;
    d["generation"] = info.generation;
    d["nonce"] = info.nonce;
    d["creator_pid"] = info.creator_pid;
    d["directory_count"] = info.directory_count;
    d["data_used_bytes"] = info.data_used_bytes;
    d["path"] = segment.path().string();
    py::list objects;
    std::error_code ec;
    for (const ObjectInfo& o : segment.objects(ec))
        objects.append(py::dict(py::arg("name") = o.name, py::arg("kind") = o.kind, py::arg("offset") = o.offset,
            py::arg("length") = o.length));
    d["objects"] = objects;
    return d;
}

// ---- rings ----

/// A ring side opened on an Owner (a Segment, or the Host or Guest whose ring it is).
template <typename Ring>
struct PyRing : Dependent {
    std::unique_ptr<Ring> owned;
    Ring* ring = nullptr;
    Owner* owner = nullptr;
    py::object keep;
    Loan read_loan;  ///< the message peek() lends
    Loan write_loan; ///< the message reserve() lends
    const char* what;
    bool produces = true; ///< false for a guest's inbox: its producer is the host
    bool consumes = true; ///< false for a host's outbox: its consumer is the guest

    PyRing(const char* name, Ring* r, std::unique_ptr<Ring> o, Owner& parent, py::object parent_object)
        : owned(std::move(o)), ring(r != nullptr ? r : owned.get()), owner(&parent), keep(std::move(parent_object)),
          what(name)
    {
        owner->add(this);
    }
    /// A ring of a Host or Guest, which holds this object for as long as it
    /// lives: the ring keeps no reference back (that would be a cycle), and
    /// a view keeps the owner alive instead, and so the ring's memory.
    PyRing(const char* name, Ring& r, bool produce, bool consume, Owner& parent, py::handle parent_object)
        : PyRing(name, &r, nullptr, parent, py::object())
    {
        produces = produce;
        consumes = consume;
        owner_object = parent_object;
    }
    py::handle owner_object; ///< a borrowed ring's owner (it outlives this object)
    ~PyRing() override
    {
        // No view of a loan lives now: each keeps this object alive. A loan
        // left open leaves its message in the ring, unreleased.
        if (owner != nullptr)
            owner->remove(this);
        // The ring before `keep`: it may hold the last reference to the
        // segment the ring lives in (a producer gives its lane back there).
        owned.reset();
    }
    py::object self_object() { return py::cast(this, py::return_value_policy::reference); }
    /// What a view of a loan keeps alive: this object, or a borrowed ring's owner.
    py::object view_keep() { return owner_object ? py::reinterpret_borrow<py::object>(owner_object) : self_object(); }
    py::object object() override { return self_object(); }
    Ring& get()
    {
        if (ring == nullptr)
            raise_closed(what);
        return *ring;
    }
    /// The ring, for a producer's call: refused on a consumer-only side,
    /// and while a reserved message is open (a push would reuse its bytes).
    Ring& producer(const char* call)
    {
        Ring& r = get();
        if (!produces)
            refuse(call, "this side only consumes (its producer is the peer)");
        if (write_loan.active())
            refuse(call, "a reserved message is not committed yet");
        return r;
    }
    Ring& consumer(const char* call)
    {
        Ring& r = get();
        if (!consumes)
            refuse(call, "this side only produces (its consumer is the peer)");
        return r;
    }
    [[noreturn]] static void refuse(const char* call, const char* why)
    {
        PyErr_SetString(PyExc_RuntimeError, (std::string(call) + ": " + why).c_str());
        throw py::error_already_set();
    }
    void end_loans() override
    {
        read_loan.end();
        write_loan.end();
    }
    void detach() noexcept override
    {
        ring = nullptr;
        owned.reset();
        owner = nullptr;
    }
    void close()
    {
        if (calls > 0)
            raise_in_use(what);
        const py::object held = self_object();
        end_loans();
        if (owner != nullptr)
            owner->remove(this);
        detach();
    }
};

// Producer side, shared by SpscRing and MpscProducer.
template <typename Ring>
bool try_push(PyRing<Ring>& self, py::handle data)
{
    const Buffer buffer(data);
    const auto bytes = buffer.bytes();
    Ring& ring = self.producer("try_push");
    return check(ring.try_push(bytes), bytes.size(), ring.max_message_bytes(), "try_push");
}

template <typename Ring>
bool push(PyRing<Ring>& self, py::handle data, Timeout timeout)
{
    const Buffer buffer(data);
    const auto bytes = buffer.bytes();
    Ring& ring = self.producer("push");
    const InUse in_use(self.calls);
    RingStatus status = ring.try_push(bytes);
    if (status == RingStatus::full && waits(timeout))
        status = wait_in_slices(timeout, [&](std::chrono::nanoseconds slice) { return ring.push(bytes, slice); });
    return check(status, bytes.size(), ring.max_message_bytes(), "push");
}

template <typename Ring>
std::size_t push_batch(PyRing<Ring>& self, const py::sequence& messages, Timeout timeout)
{
    std::vector<Buffer> buffers; // first: iterating `messages` may run any Python code
    buffers.reserve(messages.size());
    for (const py::handle message : messages)
        buffers.emplace_back(message);
    Ring& ring = self.producer("push_batch");
    const InUse in_use(self.calls);
    std::vector<std::span<const std::byte>> spans;
    spans.reserve(buffers.size());
    for (const Buffer& b : buffers)
        spans.push_back(b.bytes());
    if (spans.empty())
        return 0;
    std::size_t pushed = ring.try_push_batch(spans);
    if (pushed == 0) {
        // None fit: the first is too long, or the ring is full (then wait for room for it).
        RingStatus status = ring.try_push(spans.front());
        if (status == RingStatus::full && waits(timeout))
            status = wait_in_slices(
                timeout, [&](std::chrono::nanoseconds slice) { return ring.push(spans.front(), slice); });
        if (!check(status, spans.front().size(), ring.max_message_bytes(), "push_batch"))
            return 0;
        pushed = 1 + ring.try_push_batch(std::span(spans).subspan(1));
    }
    return pushed;
}

template <typename Ring>
py::object reserve(PyRing<Ring>& self, std::size_t length, Timeout timeout)
{
    Ring& ring = self.producer("reserve");
    const InUse in_use(self.calls);
    RingSpan<std::byte> span = ring.reserve(length);
    if (span.status == RingStatus::full && waits(timeout)) {
        const RingStatus waited = wait_in_slices(
            timeout, [&](std::chrono::nanoseconds slice) { return ring.wait_writable(length, slice); });
        if (waited == RingStatus::ok)
            span = ring.reserve(length);
        else
            span.status = waited;
    }
    if (!check(span.status, length, ring.max_message_bytes(), "reserve"))
        return py::none();
    return self.write_loan.open(span.bytes, true, self.view_keep());
}

template <typename Ring>
void commit(PyRing<Ring>& self, std::optional<std::size_t> length)
{
    Ring& ring = self.get();
    if (!self.write_loan.active()) {
        PyErr_SetString(PyExc_RuntimeError, "commit: nothing is reserved");
        throw py::error_already_set();
    }
    const std::size_t reserved = self.write_loan.length();
    if (length && *length > reserved) {
        PyErr_SetString(PyExc_ValueError, "commit: longer than what was reserved");
        throw py::error_already_set();
    }
    self.write_loan.end();
    ring.commit(length.value_or(reserved));
}

/// ring.peek(), waiting up to `timeout` for a message when there is none.
template <typename Ring>
RingSpan<const std::byte> peek_waiting(Ring& ring, Timeout timeout)
{
    RingSpan<const std::byte> span = ring.peek();
    if (span.status == RingStatus::empty && waits(timeout)) {
        const RingStatus waited
            = wait_in_slices(timeout, [&](std::chrono::nanoseconds slice) { return ring.wait_readable(slice); });
        span = waited == RingStatus::ok ? ring.peek() : RingSpan<const std::byte> {waited, {}};
    }
    return span;
}

// Consumer side, shared by SpscRing and MpscRing.
template <typename Ring>
py::object peek(PyRing<Ring>& self, Timeout timeout)
{
    Ring& ring = self.consumer("peek");
    if (self.read_loan.active())
        return self.read_loan.memoryview(self.view_keep()); // the same message until release()
    const InUse in_use(self.calls);
    const RingSpan<const std::byte> span = peek_waiting(ring, timeout);
    if (!check(span.status, 0, ring.max_message_bytes(), "peek"))
        return py::none();
    return self.read_loan.open({const_cast<std::byte*>(span.bytes.data()), span.bytes.size()}, false, self.view_keep());
}

template <typename Ring>
void release(PyRing<Ring>& self)
{
    Ring& ring = self.consumer("release");
    if (!self.read_loan.active())
        return;
    self.read_loan.end();
    ring.release();
}

template <typename Ring>
py::object pop_copy(PyRing<Ring>& self, Timeout timeout)
{
    Ring& ring = self.consumer("pop");
    if (self.read_loan.active())
        PyRing<Ring>::refuse("pop", "a peeked message is not released yet");
    const InUse in_use(self.calls);
    const RingSpan<const std::byte> span = peek_waiting(ring, timeout);
    if (!check(span.status, 0, ring.max_message_bytes(), "pop"))
        return py::none();
    py::bytes copy = to_bytes(span.bytes);
    ring.release();
    return copy;
}

/// Up to `max` messages at once, freed with one store: a list of what
/// `make(lane, bytes)` makes (bytes, or (lane, bytes) for an MPSC ring).
template <typename Ring, typename Make>
py::list pop_batch(PyRing<Ring>& self, std::size_t max, Timeout timeout, Make&& make)
{
    Ring& ring = self.consumer("pop_batch");
    if (self.read_loan.active())
        PyRing<Ring>::refuse("pop_batch", "a peeked message is not released yet");
    if (max == 0) {
        PyErr_SetString(PyExc_ValueError, "pop_batch: max must be at least 1");
        throw py::error_already_set();
    }
    const InUse in_use(self.calls);
    py::list out;
    RingStatus status = RingStatus::ok;
    // consume() is noexcept: a Python error (out of memory) is kept and raised after it.
    std::optional<py::error_already_set> failed;
    const auto append = [&](std::uint32_t lane, std::span<const std::byte> bytes) {
        if (!failed)
            try {
                out.append(make(lane, bytes));
            } catch (py::error_already_set& e) {
                failed = std::move(e);
            }
    };
    const auto take = [&] {
        if constexpr (std::is_same_v<Ring, MpscRing>)
            ring.consume(append, max, &status);
        else
            ring.consume([&](std::span<const std::byte> bytes) { append(0, bytes); }, max, &status);
        if (failed)
            throw std::move(*failed);
    };
    take();
    if (out.empty() && status != RingStatus::corrupt && waits(timeout)
        && wait_in_slices(timeout, [&](std::chrono::nanoseconds slice) { return ring.wait_readable(slice); })
            == RingStatus::ok)
        take();
    if (out.empty())
        check(status, 0, ring.max_message_bytes(), "pop_batch");
    return out;
}

template <typename Ring, typename Class>
void bind_producer(Class& cls)
{
    using Self = PyRing<Ring>;
    cls.def("try_push", &try_push<Ring>, py::arg("data"), "Pushes `data` if it fits now; False when the ring is full.")
        .def("push_batch", &push_batch<Ring>, py::arg("messages"), py::arg("timeout") = py::none(),
            "Pushes as many of `messages` as fit, in order, published at once; waits up to `timeout` for room "
            "for the first. Returns how many were pushed.")
        .def("push", &push<Ring>, py::arg("data"), py::arg("timeout") = py::none(),
            "Pushes `data`, waiting up to `timeout` seconds for room; False on timeout.")
        .def("reserve", &reserve<Ring>, py::arg("length"), py::arg("timeout") = 0.0,
            "A writable memoryview of `length` bytes in the ring (None when full after `timeout`); commit() publishes it.")
        .def("commit", &commit<Ring>, py::arg("length") = py::none(),
            "Publishes the reserved message (shortened to `length`); the memoryview is released.")
        .def_property_readonly("max_message_bytes", [](Self& s) { return s.get().max_message_bytes(); })
        .def_property_readonly("capacity_bytes", [](Self& s) { return s.get().capacity_bytes(); });
}

template <typename Ring, typename Class>
void bind_consumer(Class& cls)
{
    cls.def("peek", &peek<Ring>, py::arg("timeout") = 0.0,
           "A read-only memoryview of the oldest message, in place (None when empty after `timeout`); "
           "release() frees it and the memoryview.")
        .def("release", &release<Ring>, "Frees the peeked message; BufferError while something still views it.");
}

template <typename Ring, typename Class>
void bind_closing(Class& cls)
{
    using Self = PyRing<Ring>;
    cls.def("close", &Self::close)
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](Self& s, py::args) { s.close(); })
        .def_property_readonly("closed", [](const Self& s) { return s.ring == nullptr; });
}

// ---- MPMC queue of fixed-size items ----

template <std::size_t N>
using Item = std::array<std::byte, N>;

/// The item sizes a Python MpmcQueue takes: queues of any other size are
/// MpmcQueue<T> of a C++ type the bindings cannot know.
using AnyMpmc = std::variant<MpmcQueue<Item<1>>, MpmcQueue<Item<2>>, MpmcQueue<Item<4>>, MpmcQueue<Item<8>>,
    MpmcQueue<Item<16>>, MpmcQueue<Item<32>>, MpmcQueue<Item<64>>, MpmcQueue<Item<128>>, MpmcQueue<Item<256>>,
    MpmcQueue<Item<512>>, MpmcQueue<Item<1024>>, MpmcQueue<Item<2048>>, MpmcQueue<Item<4096>>>;

template <typename Queue>
struct ItemOf;
template <typename T>
struct ItemOf<MpmcQueue<T>> {
    using type = T;
};
template <typename Queue>
using ItemOf_t = typename ItemOf<std::decay_t<Queue>>::type;

template <std::size_t I = 0>
AnyMpmc make_mpmc(Segment& segment, const std::string& name, std::size_t item_size, std::optional<std::size_t> capacity)
{
    if constexpr (I == std::variant_size_v<AnyMpmc>) {
        raise(Errc::invalid_argument, "MpmcQueue " + name + ": item size " + std::to_string(item_size)
                + " is not one of 1, 2, 4, ..., 4096 bytes");
    } else {
        using Queue = std::variant_alternative_t<I, AnyMpmc>;
        if (sizeof(ItemOf_t<Queue>) == item_size)
            return capacity ? Queue::create(segment, name, *capacity) : Queue::open(segment, name);
        return make_mpmc<I + 1>(segment, name, item_size, capacity);
    }
}

struct Mpmc {
    AnyMpmc queue;
    std::size_t item_size;
    // (the PyRing interface, for Owner's sake)
    std::size_t max_message_bytes() const noexcept { return item_size; }
};

// ---- Host and Guest ----

/// The ring object in an owner's `slot`, if it was made.
template <typename Ring>
PyRing<Ring>* alive_ring(const py::object& slot)
{
    return slot ? slot.cast<PyRing<Ring>*>() : nullptr;
}

struct PyHost final : Owner {
    std::unique_ptr<boost::asio::io_context> io = std::make_unique<boost::asio::io_context>();
    std::unique_ptr<Host> host;
    py::object on_join = py::none();
    py::object on_leave = py::none();
    /// Joins (true) and leaves the Host reported during io->poll(), handed to
    /// the callbacks after it returns: Python code (which may close this
    /// host) never runs inside the io_context, and an event a raising
    /// callback did not reach waits for the next poll().
    std::deque<std::pair<bool, GuestInfo>> events;
    py::object inbox_object;                           ///< host.inbox's object, made once
    std::map<std::uint32_t, py::object> outbox_objects; ///< host.outbox(lane)'s, made once each
    bool delivering = false;

    Host& get()
    {
        if (!host)
            raise_closed("the host");
        return *host;
    }
    static py::dict describe(const GuestInfo& guest)
    {
        // A guest's name is whatever bytes it sent: never let them fail a poll().
        auto name = py::reinterpret_steal<py::object>(
            PyUnicode_DecodeUTF8(guest.name.data(), static_cast<Py_ssize_t>(guest.name.size()), "replace"));
        if (!name)
            throw py::error_already_set();
        return py::dict(py::arg("name") = name, py::arg("lane") = guest.lane, py::arg("pid") = guest.peer.pid,
            py::arg("uid") = guest.peer.uid);
    }
    std::size_t poll()
    {
        get(); // raises once closed
        const std::size_t handled = io->poll();
        if (delivering)
            return handled; // poll() from a callback: the outer call delivers
        delivering = true;
        try {
            while (!events.empty()) {
                auto [joined, guest] = events.front();
                events.pop_front();
                const py::object callback = joined ? on_join : on_leave; // a copy: it may reassign itself
                if (!callback.is_none())
                    callback(describe(guest));
            }
        } catch (...) {
            delivering = false;
            throw;
        }
        delivering = false;
        return handled;
    }
    void close()
    {
        close_dependents("the host");
        inbox_object = py::object();
        outbox_objects.clear();
        host.reset(); // (not inside io->poll(): callbacks run after it returns)
        io.reset();
        events.clear();
    }
};

struct PyGuest final : Owner {
    std::unique_ptr<Guest> guest;
    std::vector<std::byte> buffer;
    py::object inbox_object;  ///< guest.inbox's object, made once
    py::object outbox_object; ///< guest.outbox's object, made once
    int calls = 0;         ///< send()/receive() waiting (InUse)

    Guest& get()
    {
        if (!guest)
            raise_closed("the guest");
        return *guest;
    }
    void close()
    {
        if (calls > 0)
            raise_in_use("the guest");
        close_dependents("the guest");
        inbox_object = py::object();
        outbox_object = py::object();
        guest.reset();
    }
};

/// Seconds as milliseconds for a setup call's timeout, a year at most.
std::chrono::milliseconds to_ms(double seconds)
{
    if (std::isnan(seconds)) {
        PyErr_SetString(PyExc_ValueError, "timeout: NaN is not a number of seconds");
        throw py::error_already_set();
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::clamp(seconds, 0.0, 3.2e7) * 1000));
}

} // namespace

} // namespace shmlink::python

PYBIND11_MODULE(_native, m)
{
    using namespace shmlink;
    using namespace shmlink::python;
    m.doc() = "shmlink's C++ library (python/shmlink wraps it)";
    register_translator();
    bind_view(m);
    m.attr("version") = std::string(shmlink::version());

    py::class_<PySegment>(m, "Segment", "A shared-memory segment: created here, or attached by path or fd.")
        .def_static(
            "create",
            [](const std::string& path, std::size_t size_bytes, std::size_t max_size_bytes, bool take_over_dead,
                bool unlink_on_close) {
                return std::make_unique<PySegment>(std::make_unique<Segment>(Segment::create(path, size_bytes,
                    {.max_size_bytes = max_size_bytes,
                        .cleanup = unlink_on_close ? Cleanup::unlink_on_close : Cleanup::keep,
                        .take_over_dead = take_over_dead})));
            },
            py::arg("path"), py::arg("size_bytes"), py::arg("max_size_bytes") = 0, py::arg("take_over_dead") = false,
            py::arg("unlink_on_close") = false)
        .def_static(
            "create_anonymous",
            [](std::size_t size_bytes, std::size_t max_size_bytes) {
                return std::make_unique<PySegment>(std::make_unique<Segment>(
                    Segment::create_anonymous(size_bytes, {.max_size_bytes = max_size_bytes})));
            },
            py::arg("size_bytes"), py::arg("max_size_bytes") = 0, "A memfd segment: share it by passing fileno().")
        .def_static(
            "attach",
            [](const py::object& where) {
                if (py::isinstance<py::int_>(where)) { // an fd: ours is a duplicate, the caller keeps theirs
                    const int fd = ::fcntl(where.cast<int>(), F_DUPFD_CLOEXEC, 0);
                    if (fd < 0)
                        raise(std::error_code(errno, std::system_category()), "attach fd " + py::str(where).cast<std::string>());
                    return std::make_unique<PySegment>(std::make_unique<Segment>(Segment::attach(UniqueFd(fd))));
                }
                return std::make_unique<PySegment>(
                    std::make_unique<Segment>(Segment::attach(py::str(where).cast<std::string>())));
            },
            py::arg("path_or_fd"), "Attaches by path (str or os.PathLike) or by an open fd (int, duplicated).")
        .def("grow", [](PySegment& s, std::size_t size_bytes) { s.get().grow(size_bytes); }, py::arg("size_bytes"))
        .def("refresh", [](PySegment& s) { return s.get().refresh(); },
            "Maps what the creator grew; True when the size changed.")
        .def("info", [](PySegment& s) { return info_of(s.get()); }, "The header and directory, as a dict.")
        .def("fileno", [](PySegment& s) { return s.get().fd().get(); })
        .def_property_readonly("size_bytes", [](PySegment& s) { return s.get().size_bytes(); })
        .def_property_readonly("generation", [](PySegment& s) { return s.get().generation(); })
        .def_property_readonly("path", [](PySegment& s) { return s.get().path().string(); })
        .def_property_readonly("closed", [](const PySegment& s) { return s.segment == nullptr; })
        .def("close", &PySegment::close, "Closes every ring opened on it, then unmaps it.")
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](PySegment& s, py::args) { s.close(); });

    using Spsc = PyRing<SpscRing>;
    py::class_<Spsc> spsc(m, "SpscRing", "One producer and one consumer, each in a process (or thread) of its own.");
    spsc.def_static(
            "create",
            [](PySegment& s, const std::string& name, std::size_t capacity_bytes) {
                py::object segment = py::cast(&s, py::return_value_policy::reference); // kept by the ring
                return std::make_unique<Spsc>("the ring", nullptr,
                    std::make_unique<SpscRing>(SpscRing::create(s.get(), name, capacity_bytes)), s, segment);
            },
            py::arg("segment"), py::arg("name"), py::arg("capacity_bytes"))
        .def_static(
            "open",
            [](PySegment& s, const std::string& name) {
                py::object segment = py::cast(&s, py::return_value_policy::reference); // kept by the ring
                return std::make_unique<Spsc>(
                    "the ring", nullptr, std::make_unique<SpscRing>(SpscRing::open(s.get(), name)), s, segment);
            },
            py::arg("segment"), py::arg("name"))
        .def("try_pop", [](Spsc& s) { return pop_copy(s, 0.0); }, "The oldest message as bytes, or None.")
        .def("pop", &pop_copy<SpscRing>, py::arg("timeout") = py::none(),
            "The oldest message as bytes, waiting up to `timeout` seconds; None on timeout.")
        .def(
            "pop_batch",
            [](Spsc& s, std::size_t max, Timeout timeout) {
                return pop_batch(s, max, timeout, [](std::uint32_t, std::span<const std::byte> b) { return to_bytes(b); });
            },
            py::arg("max") = 64, py::arg("timeout") = py::none(),
            "Up to `max` messages as a list of bytes, waiting up to `timeout` for the first; [] on timeout.")
        .def_property_readonly("size_bytes", [](Spsc& s) { return s.get().size_bytes(); });
    bind_producer<SpscRing>(spsc);
    bind_consumer<SpscRing>(spsc);
    bind_closing<SpscRing>(spsc);

    using Mpsc = PyRing<MpscRing>;
    py::class_<Mpsc> mpsc(m, "MpscRing", "The consumer of a ring with a lane per producer.");
    mpsc.def_static(
            "create",
            [](PySegment& s, const std::string& name, std::size_t lane_capacity_bytes, std::uint32_t lanes) {
                py::object segment = py::cast(&s, py::return_value_policy::reference); // kept by the ring
                return std::make_unique<Mpsc>("the ring", nullptr,
                    std::make_unique<MpscRing>(MpscRing::create(s.get(), name, lane_capacity_bytes, lanes)), s, segment);
            },
            py::arg("segment"), py::arg("name"), py::arg("lane_capacity_bytes"), py::arg("lanes"))
        .def_static(
            "open",
            [](PySegment& s, const std::string& name) {
                py::object segment = py::cast(&s, py::return_value_policy::reference); // kept by the ring
                return std::make_unique<Mpsc>(
                    "the ring", nullptr, std::make_unique<MpscRing>(MpscRing::open(s.get(), name)), s, segment);
            },
            py::arg("segment"), py::arg("name"))
        .def(
            "pop",
            [](Mpsc& s, Timeout timeout) -> py::object {
                py::list one = pop_batch(s, 1, timeout,
                    [](std::uint32_t lane, std::span<const std::byte> b) { return py::make_tuple(lane, to_bytes(b)); });
                return one.empty() ? py::object(py::none()) : py::object(one[0]);
            },
            py::arg("timeout") = py::none(), "(lane, bytes) of the next message, waiting up to `timeout`; None on timeout.")
        .def("try_pop", [](py::object self) { return self.attr("pop")(0.0); })
        .def(
            "pop_batch",
            [](Mpsc& s, std::size_t max, Timeout timeout) {
                return pop_batch(s, max, timeout,
                    [](std::uint32_t lane, std::span<const std::byte> b) { return py::make_tuple(lane, to_bytes(b)); });
            },
            py::arg("max") = 64, py::arg("timeout") = py::none(),
            "Up to `max` messages as a list of (lane, bytes), waiting up to `timeout` for the first; [] on timeout.")
        .def("reap", [](Mpsc& s) { return s.get().reap(); }, "Frees the lanes of producers that are gone; how many.")
        .def("stats",
            [](Mpsc& s) {
                const MpscStats st = s.get().stats();
                return py::dict(py::arg("producers") = st.producers, py::arg("dead_producers") = st.dead_producers,
                    py::arg("abandoned_claims") = st.abandoned_claims, py::arg("corrupt_lanes") = st.corrupt_lanes);
            })
        .def_property_readonly("lane_count", [](Mpsc& s) { return s.get().lane_count(); })
        .def_property_readonly("max_message_bytes", [](Mpsc& s) { return s.get().max_message_bytes(); });
    bind_consumer<MpscRing>(mpsc);
    bind_closing<MpscRing>(mpsc);

    using Producer = PyRing<MpscProducer>;
    py::class_<Producer> producer(m, "MpscProducer", "A producer's lane of an MpscRing; close() gives it back.");
    producer
        .def_static(
            "open",
            [](PySegment& s, const std::string& name) {
                py::object segment = py::cast(&s, py::return_value_policy::reference); // kept by the ring
                return std::make_unique<Producer>(
                    "the producer", nullptr, std::make_unique<MpscProducer>(MpscProducer::open(s.get(), name)), s, segment);
            },
            py::arg("segment"), py::arg("name"))
        .def_property_readonly("lane", [](Producer& s) { return s.get().lane(); });
    bind_producer<MpscProducer>(producer);
    bind_closing<MpscProducer>(producer);

    using Queue = PyRing<Mpmc>;
    py::class_<Queue> queue(m, "MpmcQueue", "Fixed-size items (1, 2, 4 .. 4096 bytes), any number of producers and consumers.");
    queue
        .def_static(
            "create",
            [](PySegment& s, const std::string& name, std::size_t capacity, std::size_t item_size) {
                py::object segment = py::cast(&s, py::return_value_policy::reference); // kept by the ring
                return std::make_unique<Queue>("the queue", nullptr,
                    std::make_unique<Mpmc>(Mpmc {make_mpmc(s.get(), name, item_size, capacity), item_size}), s, segment);
            },
            py::arg("segment"), py::arg("name"), py::arg("capacity"), py::arg("item_size"))
        .def_static(
            "open",
            [](PySegment& s, const std::string& name, std::size_t item_size) {
                py::object segment = py::cast(&s, py::return_value_policy::reference); // kept by the ring
                return std::make_unique<Queue>("the queue", nullptr,
                    std::make_unique<Mpmc>(Mpmc {make_mpmc(s.get(), name, item_size, std::nullopt), item_size}), s,
                    segment);
            },
            py::arg("segment"), py::arg("name"), py::arg("item_size"))
        .def(
            "push",
            [](Queue& s, py::handle data, Timeout timeout) {
                Mpmc& q = s.get();
                const InUse in_use(s.calls);
                const Buffer buffer(data);
                const auto bytes = buffer.bytes();
                if (bytes.size() != q.item_size) {
                    PyErr_SetString(PyExc_ValueError, ("push: an item is " + std::to_string(q.item_size) + " bytes, not "
                                                          + std::to_string(bytes.size()))
                                                          .c_str());
                    throw py::error_already_set();
                }
                return std::visit(
                    [&](auto& queue) {
                        ItemOf_t<decltype(queue)> item;
                        std::memcpy(item.data(), bytes.data(), bytes.size());
                        RingStatus status = queue.try_push(item);
                        if (status == RingStatus::full && waits(timeout))
                            status = wait_in_slices(
                                timeout, [&](std::chrono::nanoseconds slice) { return queue.push(item, slice); });
                        return check(status, bytes.size(), q.item_size, "push");
                    },
                    q.queue);
            },
            py::arg("data"), py::arg("timeout") = py::none(), "Pushes one item, waiting up to `timeout`; False on timeout.")
        .def("try_push", [](py::object self, py::handle data) { return self.attr("push")(data, 0.0); })
        .def(
            "pop",
            [](Queue& s, Timeout timeout) -> py::object {
                Mpmc& q = s.get();
                const InUse in_use(s.calls);
                return std::visit(
                    [&](auto& queue) -> py::object {
                        ItemOf_t<decltype(queue)> item;
                        RingStatus status = queue.try_pop(item);
                        if (status == RingStatus::empty && waits(timeout))
                            status = wait_in_slices(
                                timeout, [&](std::chrono::nanoseconds slice) { return queue.pop(item, slice); });
                        if (!check(status, 0, q.item_size, "pop"))
                            return py::none();
                        return to_bytes(item);
                    },
                    q.queue);
            },
            py::arg("timeout") = py::none(), "One item as bytes, waiting up to `timeout`; None on timeout.")
        .def("try_pop", [](py::object self) { return self.attr("pop")(0.0); })
        .def_property_readonly("item_size", [](Queue& s) { return s.get().item_size; });
    bind_closing<Mpmc>(queue);

    // The Host holds Python callables (on_join, on_leave) that often refer
    // to the host itself: the garbage collector must see them, or such a
    // cycle would keep the host, and its socket on disk, for good.
    py::class_<PyHost>(m, "Host", "Creates a segment, listens on a Unix socket, and lets guests join.",
        py::custom_type_setup([](PyHeapTypeObject* heap_type) {
            PyTypeObject* type = &heap_type->ht_type;
            type->tp_flags |= Py_TPFLAGS_HAVE_GC;
            type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) {
#if PY_VERSION_HEX >= 0x03090000
                Py_VISIT(Py_TYPE(self));
#endif
                if (!reinterpret_cast<py::detail::instance*>(self)->get_value_and_holder().holder_constructed())
                    return 0;
                PyHost& host = py::handle(self).cast<PyHost&>();
                Py_VISIT(host.on_join.ptr());
                Py_VISIT(host.on_leave.ptr());
                return 0;
            };
            type->tp_clear = [](PyObject* self) {
                if (!reinterpret_cast<py::detail::instance*>(self)->get_value_and_holder().holder_constructed())
                    return 0;
                PyHost& host = py::handle(self).cast<PyHost&>();
                host.on_join = py::none();
                host.on_leave = py::none();
                return 0;
            };
        }))
        .def(py::init([](const std::string& socket_path, const std::string& segment_path, std::size_t segment_bytes,
                          std::size_t max_segment_bytes, std::uint32_t max_guests, std::size_t ring_bytes,
                          double handshake_timeout, double reap_interval) {
            auto h = std::make_unique<PyHost>();
            h->host = std::make_unique<Host>(*h->io,
                HostOptions {.socket_path = socket_path, .segment_path = segment_path, .segment_bytes = segment_bytes,
                    .max_segment_bytes = max_segment_bytes, .max_guests = max_guests, .ring_bytes = ring_bytes,
                    .handshake_timeout = to_ms(handshake_timeout), .reap_interval = to_ms(reap_interval)});
            PyHost* raw = h.get();
            h->host->on_join = [raw](const GuestInfo& g) { raw->events.emplace_back(true, g); };
            h->host->on_leave = [raw](const GuestInfo& g) { raw->events.emplace_back(false, g); };
            return h;
        }),
            py::arg("socket_path"), py::arg("segment_path") = "", py::arg("segment_bytes") = std::size_t {4} << 20,
            py::arg("max_segment_bytes") = std::size_t {1} << 30, py::arg("max_guests") = 8,
            py::arg("ring_bytes") = std::size_t {64} << 10, py::arg("handshake_timeout") = 2.0,
            py::arg("reap_interval") = 0.1)
        .def("poll", &PyHost::poll, "Accepts, welcomes, notices leaves; never waits. Calls on_join/on_leave.")
        .def_readwrite("on_join", &PyHost::on_join, "Called with a dict (name, lane, pid, uid) when a guest joined.")
        .def_readwrite("on_leave", &PyHost::on_leave, "Called with the same dict when a guest left.")
        .def_property_readonly("inbox",
            [](py::object self) {
                PyHost& h = *self.cast<PyHost*>();
                return cached(h.inbox_object,
                    [&] { return py::cast(std::make_unique<Mpsc>("the inbox", h.get().inbox(), false, true, h, self)); });
            },
            "The MpscRing every guest sends into (a lane each).")
        .def(
            "outbox",
            [](py::object self, std::uint32_t lane) {
                PyHost& h = *self.cast<PyHost*>();
                SpscRing& ring = h.get().outbox(lane); // throws for a lane out of range
                return cached(h.outbox_objects[lane],
                    [&] { return py::cast(std::make_unique<Spsc>("the outbox", ring, true, false, h, self)); });
            },
            py::arg("lane"), "The SpscRing to the guest of `lane`.")
        .def(
            "send",
            [](PyHost& h, std::uint32_t lane, py::handle data) {
                const Buffer buffer(data);
                const auto bytes = buffer.bytes();
                Host& host = h.get();
                if (const auto it = h.outbox_objects.find(lane); it != h.outbox_objects.end())
                    if (Spsc* outbox = alive_ring<SpscRing>(it->second); outbox != nullptr && outbox->write_loan.active())
                        Spsc::refuse("send", "host.outbox(lane) has a reserved message not committed yet");
                return check(host.send(lane, bytes), bytes.size(), host.outbox(lane).max_message_bytes(), "send");
            },
            py::arg("lane"), py::arg("data"), "Sends to the guest of `lane` without waiting; False when its ring is full.")
        .def("grow", [](PyHost& h, std::size_t size_bytes) { h.get().grow(size_bytes); }, py::arg("size_bytes"))
        .def_property_readonly("guest_count", [](PyHost& h) { return h.get().guest_count(); })
        .def_property_readonly("segment",
            [](py::object self) {
                PyHost& h = *self.cast<PyHost*>();
                return std::make_unique<PySegment>(h.get().segment(), h, self);
            })
        .def("close", &PyHost::close, "Says goodbye to every guest and removes the socket.")
        .def_property_readonly("closed", [](const PyHost& h) { return !h.host; })
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](PyHost& h, py::args) { h.close(); });

    py::class_<PyGuest>(m, "Guest", "Joins a host through its socket (the segment's fd comes with the welcome), or by path.")
        .def_static(
            "connect",
            [](const std::string& socket_path, const std::string& name, double timeout, bool wait_for_host) {
                auto g = std::make_unique<PyGuest>();
                py::gil_scoped_release unlocked; // the handshake waits for the host
                g->guest = std::make_unique<Guest>(Guest::connect(
                    socket_path, {.name = name, .timeout = to_ms(timeout), .wait_for_host = wait_for_host}));
                return g;
            },
            py::arg("socket_path"), py::arg("name") = "guest", py::arg("timeout") = 2.0, py::arg("wait_for_host") = false)
        .def_static(
            "attach",
            [](const std::string& segment_path) {
                auto g = std::make_unique<PyGuest>();
                py::gil_scoped_release unlocked;
                g->guest = std::make_unique<Guest>(Guest::attach(segment_path));
                return g;
            },
            py::arg("segment_path"))
        .def(
            "send",
            [](PyGuest& g, py::handle data, Timeout timeout) {
                const Buffer buffer(data);
                const auto bytes = buffer.bytes();
                Guest& guest = g.get();
                if (Producer* outbox = alive_ring<MpscProducer>(g.outbox_object); outbox != nullptr && outbox->write_loan.active())
                    Producer::refuse("send", "guest.outbox has a reserved message not committed yet");
                const InUse in_use(g.calls);
                std::error_code host_error;
                const RingStatus status = wait_in_slices(timeout, [&](std::chrono::nanoseconds slice) {
                    const RingStatus s = guest.send(bytes, slice, host_error);
                    return host_error ? RingStatus::ok : s;
                });
                if (host_error)
                    raise(host_error, "send: the host is gone");
                return check(status, bytes.size(), guest.outbox().max_message_bytes(), "send");
            },
            py::arg("data"), py::arg("timeout") = py::none(), "Sends to the host, waiting up to `timeout` for room.")
        .def(
            "receive",
            [](PyGuest& g, Timeout timeout) -> py::object {
                Guest& guest = g.get();
                if (Spsc* inbox = alive_ring<SpscRing>(g.inbox_object); inbox != nullptr && inbox->read_loan.active())
                    Spsc::refuse("receive", "guest.inbox has a peeked message not released yet");
                const InUse in_use(g.calls);
                g.buffer.resize(guest.inbox().max_message_bytes());
                std::size_t length = 0;
                std::error_code host_error;
                const RingStatus status = wait_in_slices(timeout, [&](std::chrono::nanoseconds slice) {
                    const RingStatus s = guest.receive(g.buffer, length, slice, host_error);
                    return host_error ? RingStatus::ok : s;
                });
                if (host_error)
                    raise(host_error, "receive: the host is gone");
                if (!check(status, length, g.buffer.size(), "receive"))
                    return py::none();
                return to_bytes(std::span(g.buffer).first(length));
            },
            py::arg("timeout") = py::none(), "The next message from the host as bytes, or None on timeout.")
        .def("poll",
            [](PyGuest& g) {
                if (const std::error_code ec = g.get().poll())
                    raise(ec, "poll: the host is gone");
            },
            "Handles the host's notices (grown); raises when the host is gone.")
        .def_property_readonly("lane", [](PyGuest& g) { return g.get().lane(); })
        .def_property_readonly("segment",
            [](py::object self) {
                PyGuest& g = *self.cast<PyGuest*>();
                return std::make_unique<PySegment>(g.get().segment(), g, self);
            })
        .def_property_readonly("inbox",
            [](py::object self) {
                PyGuest& g = *self.cast<PyGuest*>();
                return cached(g.inbox_object,
                    [&] { return py::cast(std::make_unique<Spsc>("the inbox", g.get().inbox(), false, true, g, self)); });
            },
            "The SpscRing the host sends to this guest on (zero-copy peek/release).")
        .def_property_readonly("outbox",
            [](py::object self) {
                PyGuest& g = *self.cast<PyGuest*>();
                return cached(g.outbox_object, [&] {
                    return py::cast(std::make_unique<Producer>("the outbox", g.get().outbox(), true, false, g, self));
                });
            },
            "This guest's lane of the host's inbox (zero-copy reserve/commit).")
        .def("close", &PyGuest::close, "Gives the lane back and says goodbye.")
        .def_property_readonly("closed", [](const PyGuest& g) { return !g.guest; })
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](PyGuest& g, py::args) { g.close(); });
}
