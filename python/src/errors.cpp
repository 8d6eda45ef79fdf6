#include "errors.hpp"

#include <shmlink/core/error.hpp>

namespace py = pybind11;

namespace shmlink::python {

namespace {

/// The Python exception object for `ec` with `message`, built by
/// shmlink._make_error, which picks the classes.
py::object make_error(const std::error_code& ec, const std::string& message)
{
    const bool os = ec.category() == std::generic_category() || ec.category() == std::system_category();
    const py::object errno_value = os ? py::object(py::int_(ec.value())) : py::object(py::none());
    std::string kind = "error";
    if (ec == Errc::timed_out || ec == std::errc::timed_out)
        kind = "timeout";
    else if (ec == Errc::peer_closed || ec == std::errc::connection_reset || ec == std::errc::broken_pipe)
        kind = "connection";
    return py::module_::import("shmlink").attr("_make_error")(errno_value, ec.category().name(), ec.value(), kind,
        message);
}

[[noreturn]] void set_and_throw(const py::object& error)
{
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    throw py::error_already_set();
}

} // namespace

void raise(const std::error_code& ec, const std::string& what)
{
    set_and_throw(make_error(ec, what + ": " + ec.message()));
}

void register_translator()
{
    py::register_exception_translator([](std::exception_ptr thrown) {
        try {
            if (thrown)
                std::rethrow_exception(thrown);
        } catch (const std::system_error& e) { // shmlink::Error is one
            const py::object error = make_error(e.code(), e.what());
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
        }
    });
}

} // namespace shmlink::python
