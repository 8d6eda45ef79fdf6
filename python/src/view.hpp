// Zero-copy views of messages in a segment, for Python. A ring side hands
// out at most one message at a time (peek, or reserve); the bindings give it
// to Python as a memoryview over a `_View`, an object whose buffer export
// count the bindings can read. Ending the loan (release, commit, close)
// first releases that memoryview and then checks that no other object
// (a numpy array, a slice, another memoryview) still exports the bytes; if
// one does, the loan stays open and BufferError says so. So a view raises
// once its message is gone (the memoryview is released), and never reads or
// writes bytes the ring has given back. The view keeps its ring object
// alive; the loan holds the view and the memoryview only weakly, so a view
// dropped unreleased leaves nothing behind (the message stays in the ring
// until release() or commit()).
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <span>

namespace shmlink::python {

/// The exporter: the bytes of one loaned message.
struct View {
    std::byte* data = nullptr;
    std::size_t size = 0;
    bool readonly = true;
    bool valid = true;      ///< false once its loan ended: no new export
    Py_ssize_t exports = 0; ///< buffers handed out and not yet released
    pybind11::object keep;  ///< the ring object, which must outlive the bytes' use
};

/// Registers `_View` (with the buffer protocol) in `module`.
void bind_view(pybind11::module_& module);

/// One ring side's outstanding message.
class Loan {
public:
    /// Opens the loan of `bytes` (read-only unless `writable`) and returns its memoryview.
    pybind11::object open(std::span<std::byte> bytes, bool writable, pybind11::object ring);
    [[nodiscard]] bool active() const noexcept { return open_; }
    [[nodiscard]] std::size_t length() const noexcept { return bytes_.size(); }
    /// The loan's memoryview: the one handed out if it lives, else a new one.
    pybind11::object memoryview(pybind11::object ring);
    /// Ends the loan; BufferError (as pybind11::error_already_set) while
    /// something still exports its bytes, and then the loan stays open.
    void end();

private:
    pybind11::object view_ref_;       ///< weakref to the _View
    pybind11::object memoryview_ref_; ///< weakref to the memoryview
    std::span<std::byte> bytes_;
    bool writable_ = false;
    bool open_ = false;
};

} // namespace shmlink::python
