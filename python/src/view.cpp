#include "view.hpp"

#include <string>

namespace py = pybind11;

namespace shmlink::python {

namespace {

int get_buffer(PyObject* self, Py_buffer* buffer, int flags)
{
    View* view = nullptr;
    try {
        view = py::handle(self).cast<View*>();
    } catch (const py::cast_error&) {
        PyErr_SetString(PyExc_TypeError, "not a shmlink view");
        buffer->obj = nullptr;
        return -1;
    }
    if (!view->valid) {
        PyErr_SetString(PyExc_ValueError, "the message of this view was released");
        buffer->obj = nullptr;
        return -1;
    }
    if (PyBuffer_FillInfo(buffer, self, view->data, static_cast<Py_ssize_t>(view->size), view->readonly ? 1 : 0,
            flags) != 0)
        return -1;
    ++view->exports;
    return 0;
}

void release_buffer(PyObject* self, Py_buffer*)
{
    py::handle(self).cast<View*>()->exports -= 1;
}

} // namespace

void bind_view(py::module_& module)
{
    py::class_<View>(module, "_View", py::custom_type_setup([](PyHeapTypeObject* type) {
        type->as_buffer.bf_getbuffer = get_buffer;
        type->as_buffer.bf_releasebuffer = release_buffer;
        type->ht_type.tp_as_buffer = &type->as_buffer;
    }))
        .def("__len__", [](const View& view) { return view.size; });
}

namespace {

py::object alive(const py::object& ref)
{
    if (!ref)
        return py::none();
    return ref();
}

} // namespace

py::object Loan::open(std::span<std::byte> bytes, bool writable, py::object ring)
{
    bytes_ = bytes;
    writable_ = writable;
    open_ = true;
    return memoryview(std::move(ring));
}

py::object Loan::memoryview(py::object ring)
{
    py::object memoryview = alive(memoryview_ref_);
    if (!memoryview.is_none()) {
        try {
            (void)py::object(memoryview.attr("nbytes")); // raises once the user released it
            return memoryview;
        } catch (py::error_already_set& e) {
            if (!e.matches(PyExc_ValueError))
                throw;
        }
    }
    py::object view = alive(view_ref_);
    // A slice or another memoryview may still hold the _View: the new
    // memoryview shares it, so that its export count covers them all.
    if (view.is_none()) {
        view = py::cast(View {bytes_.data(), bytes_.size(), !writable_, true, 0, std::move(ring)});
        view_ref_ = py::weakref(view);
    }
    memoryview = py::reinterpret_steal<py::object>(PyMemoryView_FromObject(view.ptr()));
    if (!memoryview)
        throw py::error_already_set();
    memoryview_ref_ = py::weakref(memoryview);
    return memoryview;
}

void Loan::end()
{
    if (!open_)
        return;
    const auto still_used = [] {
        PyErr_SetString(PyExc_BufferError, "the message is still in use by a numpy array, a memoryview or a slice "
                                           "of it: drop those (or release the memoryview) first");
        throw py::error_already_set();
    };
    // Strong references for the length of this call: the _View may be all
    // that keeps the ring object (and so this Loan) alive.
    const py::object view = alive(view_ref_);
    py::object memoryview = alive(memoryview_ref_);
    View* v = view.is_none() ? nullptr : &view.cast<View&>();
    // More than our memoryview's one export: refuse before touching anything.
    if (v != nullptr && v->exports > (memoryview.is_none() ? 0 : 1))
        still_used();
    if (!memoryview.is_none()) {
        try {
            memoryview.attr("release")();
        } catch (py::error_already_set& e) {
            if (!e.matches(PyExc_BufferError))
                throw;
            still_used(); // a numpy array on our memoryview: it stays usable
        }
    }
    if (v != nullptr && v->exports > 0)
        still_used(); // a slice of it held the buffer (the memoryview is gone; peek() makes another)
    view_ref_ = py::object();
    memoryview_ref_ = py::object();
    open_ = false;
    py::object ring; // dropped last, after every use of this Loan
    if (v != nullptr) {
        v->valid = false;
        ring = std::move(v->keep);
    }
}

} // namespace shmlink::python
