#include <shmlink/transport/protocol.hpp>

#include <shmlink/core/error.hpp>

#include <algorithm>
#include <cstring>

namespace shmlink::protocol {
namespace {

constexpr std::size_t kMaxErrorText = 256;
constexpr std::size_t kNameField = 40;

/// Appends little-endian fields (every platform shmlink runs on is little-endian: the ABI tag checks it).
class Writer {
public:
    explicit Writer(FrameType type)
    {
        put32(kMagic);
        put16(kVersion);
        put16(static_cast<std::uint16_t>(type));
        put32(0); // body bytes, patched in finish()
        put32(static_cast<std::uint32_t>(fds_of(type)));
    }
    void put16(std::uint16_t v) { put(&v, sizeof(v)); }
    void put32(std::uint32_t v) { put(&v, sizeof(v)); }
    void put64(std::uint64_t v) { put(&v, sizeof(v)); }
    void put(const void* data, std::size_t n)
    {
        const auto* p = static_cast<const std::byte*>(data);
        bytes_.insert(bytes_.end(), p, p + n);
    }
    void put_string(const std::string& s, std::size_t max)
    {
        const auto n = static_cast<std::uint16_t>(s.size() < max ? s.size() : max);
        put16(n);
        put(s.data(), n);
    }
    std::vector<std::byte> finish()
    {
        const auto body = static_cast<std::uint32_t>(bytes_.size() - kHeaderBytes);
        std::memcpy(bytes_.data() + 8, &body, sizeof(body));
        return std::move(bytes_);
    }

private:
    std::vector<std::byte> bytes_;
};

/// Reads little-endian fields; any read past the end marks it failed.
class Reader {
public:
    explicit Reader(std::span<const std::byte> bytes) : bytes_(bytes) {}
    template <typename T>
    T get()
    {
        T v {};
        if (!take(&v, sizeof(v)))
            return T {};
        return v;
    }
    bool take(void* out, std::size_t n)
    {
        if (failed_ || n > bytes_.size() - at_) {
            failed_ = true;
            return false;
        }
        std::memcpy(out, bytes_.data() + at_, n);
        at_ += n;
        return true;
    }
    std::string get_string(std::size_t max)
    {
        const auto n = get<std::uint16_t>();
        if (n > max) {
            failed_ = true;
            return {};
        }
        std::string s(n, '\0');
        take(s.data(), n);
        return s;
    }
    /// True when every byte was read and no read failed.
    [[nodiscard]] bool complete() const noexcept { return !failed_ && at_ == bytes_.size(); }

private:
    std::span<const std::byte> bytes_;
    std::size_t at_ = 0;
    bool failed_ = false;
};

std::error_code fail(std::string& reason, const char* why) noexcept
{
    reason = why;
    return bad_frame();
}



} // namespace

std::error_code bad_frame() noexcept { return Errc::bad_frame; }

bool topic_name_ok(std::string_view name) noexcept
{
    // What an object's name may be: a topic is found in its segment's directory.
    return !name.empty() && name.size() <= kMaxTopicNameBytes && name.find('\0') == std::string_view::npos;
}

FrameType type_of(const Frame& frame) noexcept { return static_cast<FrameType>(frame.index() + 1); }

std::size_t fds_of(FrameType type) noexcept
{
    return type == FrameType::welcome || type == FrameType::offer || type == FrameType::topic
            || type == FrameType::join || type == FrameType::admit
        ? 1
        : 0;
}

std::vector<std::byte> encode(const Frame& frame)
{
    Writer w(type_of(frame));
    if (const auto* hello = std::get_if<Hello>(&frame)) {
        w.put32(hello->pid);
        w.put_string(hello->name, kMaxNameBytes);
    } else if (const auto* welcome = std::get_if<Welcome>(&frame)) {
        w.put32(welcome->lane);
        w.put32(welcome->token);
        w.put64(welcome->size_bytes);
        w.put64(welcome->max_size_bytes);
        w.put64(welcome->generation);
        const std::size_t count = welcome->directory.size() < kMaxDirectoryEntries ? welcome->directory.size()
                                                                                     : kMaxDirectoryEntries;
        w.put32(static_cast<std::uint32_t>(count));
        for (std::size_t i = 0; i < count; ++i) {
            const ObjectInfo& e = welcome->directory[i];
            char name[kNameField] = {};
            std::memcpy(name, e.name.data(), e.name.size() < kNameField - 1 ? e.name.size() : kNameField - 1);
            w.put(name, sizeof(name));
            w.put16(e.kind);
            w.put16(e.version);
            w.put32(0);
            w.put64(e.offset);
            w.put64(e.length);
        }
    } else if (const auto* grown = std::get_if<Grown>(&frame)) {
        w.put64(grown->size_bytes);
        w.put64(grown->generation);
    } else if (const auto* goodbye = std::get_if<Goodbye>(&frame)) {
        w.put32(goodbye->reason);
    } else if (const auto* error = std::get_if<ErrorReport>(&frame)) {
        w.put32(error->code);
        w.put_string(error->text, kMaxErrorText);
    } else if (const auto* joined = std::get_if<Joined>(&frame)) {
        w.put32(joined->lane);
    } else if (const auto* offer = std::get_if<Offer>(&frame)) {
        w.put_string(offer->name, kMaxTopicNameBytes);
    } else if (const auto* find = std::get_if<Find>(&frame)) {
        w.put_string(find->name, kMaxTopicNameBytes);
    } else if (const auto* topic = std::get_if<Topic>(&frame)) {
        w.put_string(topic->name, kMaxTopicNameBytes);
    } else if (const auto* join = std::get_if<Join>(&frame)) {
        w.put_string(join->name, kMaxTopicNameBytes);
    } else if (const auto* admit = std::get_if<Admit>(&frame)) {
        w.put_string(admit->name, kMaxTopicNameBytes);
    } else if (const auto* answer = std::get_if<Answer>(&frame)) {
        w.put32(answer->code);
        w.put_string(answer->text, kMaxErrorText);
    }
    return w.finish();
}

std::error_code decode_header(std::span<const std::byte> bytes, Header& header, std::string& reason) noexcept
{
    if (bytes.size() < kHeaderBytes)
        return fail(reason, "frame shorter than its header");
    Reader r(bytes.first(kHeaderBytes));
    const auto magic = r.get<std::uint32_t>();
    const auto version = r.get<std::uint16_t>();
    const auto type = r.get<std::uint16_t>();
    header.body_bytes = r.get<std::uint32_t>();
    header.fd_count = r.get<std::uint32_t>();
    if (magic != kMagic)
        return fail(reason, "bad magic: not a shmlink control frame");
    if (version != kVersion) {
        reason = "protocol version " + std::to_string(version) + " (this side speaks " + std::to_string(kVersion) + ")";
        return Errc::protocol_mismatch;
    }
    if (type < static_cast<std::uint16_t>(FrameType::hello) || type > static_cast<std::uint16_t>(FrameType::admit))
        return fail(reason, "unknown frame type");
    header.type = static_cast<FrameType>(type);
    if (header.body_bytes > kMaxFrameBytes - kHeaderBytes)
        return fail(reason, "frame longer than the protocol's maximum");
    if (header.fd_count != fds_of(header.type))
        return fail(reason, "frame declares fds its type does not carry");
    return {};
}

std::error_code decode(std::span<const std::byte> bytes, std::size_t fds_received, Frame& frame, std::string& reason)
{
    Header header;
    if (const auto ec = decode_header(bytes, header, reason))
        return ec;
    if (bytes.size() != kHeaderBytes + header.body_bytes)
        return fail(reason, "frame length differs from its header's");
    if (fds_received != header.fd_count)
        return fail(reason, fds_received > header.fd_count ? "frame came with fds it should not carry"
                                                           : "frame came without the fd it must carry");
    Reader r(bytes.subspan(kHeaderBytes));
    switch (header.type) {
    case FrameType::hello: {
        Hello hello;
        hello.pid = r.get<std::uint32_t>();
        hello.name = r.get_string(kMaxNameBytes);
        frame = std::move(hello);
        break;
    }
    case FrameType::welcome: {
        Welcome welcome;
        welcome.lane = r.get<std::uint32_t>();
        welcome.token = r.get<std::uint32_t>();
        welcome.size_bytes = r.get<std::uint64_t>();
        welcome.max_size_bytes = r.get<std::uint64_t>();
        welcome.generation = r.get<std::uint64_t>();
        const auto count = r.get<std::uint32_t>();
        if (count > kMaxDirectoryEntries)
            return fail(reason, "welcome lists more directory entries than a segment holds");
        for (std::uint32_t i = 0; i < count; ++i) {
            char name[kNameField] = {};
            ObjectInfo e;
            r.take(name, sizeof(name));
            e.kind = r.get<std::uint16_t>();
            e.version = r.get<std::uint16_t>();
            const auto reserved = r.get<std::uint32_t>();
            e.offset = r.get<std::uint64_t>();
            e.length = r.get<std::uint64_t>();
            const char* end = static_cast<const char*>(std::memchr(name, '\0', sizeof(name)));
            if (end == nullptr || name[0] == '\0')
                return fail(reason, "welcome has an empty or unterminated directory name");
            // One encoding per frame: padding and reserved bytes are zero.
            if (std::any_of(end, static_cast<const char*>(name) + sizeof(name), [](char c) { return c != '\0'; }) || reserved != 0)
                return fail(reason, "welcome has a directory entry with non-zero padding");
            e.name = name;
            welcome.directory.push_back(std::move(e));
        }
        frame = std::move(welcome);
        break;
    }
    case FrameType::grown: {
        Grown grown;
        grown.size_bytes = r.get<std::uint64_t>();
        grown.generation = r.get<std::uint64_t>();
        frame = grown;
        break;
    }
    case FrameType::goodbye:
        frame = Goodbye {r.get<std::uint32_t>()};
        break;
    case FrameType::error: {
        ErrorReport error;
        error.code = r.get<std::uint32_t>();
        error.text = r.get_string(kMaxErrorText);
        frame = std::move(error);
        break;
    }
    case FrameType::joined:
        frame = Joined {r.get<std::uint32_t>()};
        break;
    case FrameType::offer:
    case FrameType::find:
    case FrameType::topic:
    case FrameType::join:
    case FrameType::admit: {
        std::string name = r.get_string(kMaxTopicNameBytes);
        if (r.complete() && !topic_name_ok(name))
            return fail(reason, "frame names a topic with an empty name or a NUL byte");
        switch (header.type) {
        case FrameType::offer:
            frame = Offer {std::move(name)};
            break;
        case FrameType::find:
            frame = Find {std::move(name)};
            break;
        case FrameType::topic:
            frame = Topic {std::move(name)};
            break;
        case FrameType::join:
            frame = Join {std::move(name)};
            break;
        default:
            frame = Admit {std::move(name)};
            break;
        }
        break;
    }
    case FrameType::answer: {
        Answer answer;
        answer.code = r.get<std::uint32_t>();
        answer.text = r.get_string(kMaxErrorText);
        frame = std::move(answer);
        break;
    }
    }
    if (!r.complete())
        return fail(reason, "frame body does not match its type's layout");
    return {};
}

} // namespace shmlink::protocol
