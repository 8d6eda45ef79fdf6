// Errors as Python sees them: shmlink::Error and every std::error_code the
// bindings meet become instances of shmlink.Error (python/shmlink/__init__.py),
// which are also OSError subclasses (FileNotFoundError, ...) when an errno
// applies, TimeoutError for a timeout, ConnectionError for a peer gone.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <system_error>

namespace shmlink::python {

/// Raises (throws pybind11::error_already_set) the Python error for `ec`,
/// whose message is "<what>: <ec's message>".
[[noreturn]] void raise(const std::error_code& ec, const std::string& what);

/// Makes every shmlink::Error thrown through the bindings a shmlink.Error.
void register_translator();

} // namespace shmlink::python
