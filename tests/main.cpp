// doctest's main for every test program, and one check after the tests: a
// program leaves nothing of its own in /tmp or /dev/shm (every name a test
// makes there starts with shmlink-test-<pid>-). What is left is listed,
// removed, and fails the program, so that a test that leaks files is found
// at once rather than filling /dev/shm run after run.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

namespace {

int remove_leftovers()
{
    const std::string prefix = "shmlink-test-" + std::to_string(::getpid()) + "-";
    int left = 0;
    for (const char* dir : {"/tmp", "/dev/shm"}) {
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
            if (entry.path().filename().string().rfind(prefix, 0) != 0)
                continue;
            std::fprintf(stderr, "left behind by this test program: %s\n", entry.path().c_str());
            std::filesystem::remove_all(entry.path(), ec);
            ++left;
        }
    }
    return left;
}

} // namespace

int main(int argc, char** argv)
{
    doctest::Context context(argc, argv);
    const int result = context.run();
    if (context.shouldExit())
        return result;
    const int left = remove_leftovers();
    return result != 0 ? result : left != 0 ? 1 : 0;
}
