// Boost.Asio for shmlink: include Asio only through this header. Boost
// 1.74's Asio uses std::exchange without including <utility>, which g++ 12
// in C++20 mode does not pull in for it.
#pragma once

#include <utility>

#include <boost/asio.hpp>
