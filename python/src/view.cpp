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
    if (py::object existing = alive(memoryview_ref_); !existing.is_none())
        return existing;
    py::object view = py::cast(View {bytes_.data(), bytes_.size(), !writable_, true, 0, std::move(ring)});
    auto memoryview = py::reinterpret_steal<py::object>(PyMemoryView_FromObject(view.ptr()));
    if (!memoryview)
        throw py::error_already_set();
    view_ref_ = py::weakref(view);
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
    if (py::object memoryview = alive(memoryview_ref_); !memoryview.is_none()) {
        try {
            memoryview.attr("release")();
        } catch (py::error_already_set& e) {
            if (!e.matches(PyExc_BufferError))
                throw;
            still_used();
        }
    }
    if (py::object view = alive(view_ref_); !view.is_none()) {
        View& v = view.cast<View&>();
        if (v.exports > 0)
            still_used();
        v.valid = false;
        v.keep = py::object();
    }
    view_ref_ = py::object();
    memoryview_ref_ = py::object();
    open_ = false;
}

} // namespace shmlink::python
