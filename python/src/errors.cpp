#include "errors.hpp"

#include <shmlink/core/error.hpp>
#include <shmlink/transport/asio.hpp> // boost::system::system_error, which Asio throws

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
    // Local: other pybind11 modules' std::system_errors stay theirs.
    py::register_local_exception_translator([](std::exception_ptr thrown) {
        const auto set = [](const std::error_code& ec, const char* what) {
            const py::object error = make_error(ec, what);
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
        };
        try {
            if (thrown)
                std::rethrow_exception(thrown);
        } catch (const std::system_error& e) { // shmlink::Error is one
            set(e.code(), e.what());
        } catch (const boost::system::system_error& e) { // Asio's, e.g. no fd left for an io_context
            set(std::error_code(e.code().value(), e.code().category() == boost::system::generic_category()
                        || e.code().category() == boost::system::system_category()
                    ? std::system_category()
                    : std::generic_category()),
                e.what());
        }
    });
}

} // namespace shmlink::python
