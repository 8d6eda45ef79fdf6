// tests/helpers/creator PATH: plays a segment's creator in a process of its
// own (and, started under `unshare --pid --fork`, in a pid namespace of its
// own). It creates a segment at PATH that outlives it (Cleanup::keep),
// answers "ok pid=N" (its pid as it sees it), holds the segment until its
// stdin closes, and exits 0, leaving the file behind as a dead creator's.
#include <shmlink/core/segment.hpp>

#include <unistd.h>

#include <iostream>
#include <string>

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::cout << "error usage: creator PATH" << std::endl;
        return 2;
    }
    std::error_code ec;
    shmlink::Segment segment = shmlink::Segment::create(argv[1], 1 << 16, {.cleanup = shmlink::Cleanup::keep}, ec);
    if (ec) {
        std::cout << "error create " << argv[1] << ": " << ec.message() << std::endl;
        return 1;
    }
    std::cout << "ok pid=" << ::getpid() << std::endl;
    for (std::string line; std::getline(std::cin, line);) {
    }
    return 0;
}
