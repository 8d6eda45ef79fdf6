// shmlink: shared-memory IPC for processes on one Linux host. This umbrella
// header brings every public header of core (segments), ipc (rings and
// queues inside a segment) and transport (hosts and guests); a program that
// needs less includes the module's own headers, e.g. <shmlink/ipc/spsc_ring.hpp>.
#pragma once

#if __cplusplus < 202002L
#error "shmlink needs C++20: compile with -std=c++20 or newer"
#endif

#include <shmlink/core/error.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/core/version.hpp>
#include <shmlink/ipc/channel.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/subscriber.hpp>
#include <shmlink/transport/guest.hpp>
#include <shmlink/transport/host.hpp>
