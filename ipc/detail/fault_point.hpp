// Fault points: named places in the header-only hot paths where the fault
// suite's helper (tests/helpers/ring_peer) can make its own process die, to
// prove recovery from a death at exactly that place. A program opts in by
// defining SHMLINK_FAULT_POINTS(name) before it includes any ipc header; in
// every other program a fault point is nothing at all.
#pragma once

#ifdef SHMLINK_FAULT_POINTS
#define SHMLINK_FAULT_POINT(name) SHMLINK_FAULT_POINTS(name)
#else
#define SHMLINK_FAULT_POINT(name) ((void)0)
#endif
