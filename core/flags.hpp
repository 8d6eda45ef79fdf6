// A typed set of flags over an enum class whose enumerators are bit values,
// so that mmap's PROT_*/MAP_* and friends cannot be mixed up with each other.
#pragma once

#include <type_traits>

namespace shmlink {

template <typename E>
class Flags {
public:
    using Bits = std::underlying_type_t<E>;

    constexpr Flags() noexcept = default;
    constexpr Flags(E e) noexcept : bits_(static_cast<Bits>(e)) {} // NOLINT: implicit on purpose

    [[nodiscard]] constexpr Bits bits() const noexcept { return bits_; }
    [[nodiscard]] constexpr bool has(E e) const noexcept { return (bits_ & static_cast<Bits>(e)) == static_cast<Bits>(e); }

    constexpr Flags operator|(Flags other) const noexcept { return from_bits(bits_ | other.bits_); }
    constexpr Flags& operator|=(Flags other) noexcept { return *this = *this | other; }
    constexpr Flags without(Flags other) const noexcept { return from_bits(bits_ & ~other.bits_); }
    constexpr bool operator==(const Flags&) const noexcept = default;

private:
    static constexpr Flags from_bits(Bits bits) noexcept
    {
        Flags f;
        f.bits_ = bits;
        return f;
    }
    Bits bits_ = 0;
};

} // namespace shmlink
