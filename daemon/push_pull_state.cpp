#include "daemon/push_pull_state.hpp"

#include <cstring>

#include <zstd.h>

#include <algorithm>

#include <boost/json/serialize.hpp>

#include "common/error.hpp"
#include "common/json_fields.hpp"

namespace swarmnet::daemon {

namespace json = boost::json;

namespace {

// zstd's default: small lines compress in microseconds at it.
constexpr int kLevel = 3;

bool has_value(const json::value& line) {
  return line.is_object() && line.as_object().contains("value");
}

}  // namespace

struct PushPullState::Dictionary {
  std::string text;
  ZSTD_CDict* compress = nullptr;
  ZSTD_DDict* decompress = nullptr;
  explicit Dictionary(std::string t) : text(std::move(t)) {
    compress = ZSTD_createCDict(text.data(), text.size(), kLevel);
    decompress = ZSTD_createDDict(text.data(), text.size());
    if (!compress || !decompress) {
      ZSTD_freeCDict(compress);
      ZSTD_freeDDict(decompress);
      throw Error(Errc::internal, "push/pull: zstd cannot make a dictionary");
    }
  }
  ~Dictionary() {
    ZSTD_freeCDict(compress);
    ZSTD_freeDDict(decompress);
  }
  Dictionary(const Dictionary&) = delete;
  Dictionary& operator=(const Dictionary&) = delete;
};

struct PushPullState::Compressor {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  Compressor() {
    if (!cctx) throw Error(Errc::internal, "push/pull: zstd cannot make a compression context");
  }
  ~Compressor() { ZSTD_freeCCtx(cctx); }
  std::string scratch;  // a frame as it is made, at the bound's size
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;
};

PushPullState::PushPullState() : compressor_(std::make_unique<Compressor>()) {}
PushPullState::~PushPullState() = default;

PushPullState::Line PushPullState::pack(TableId table, std::string_view key, const std::string& text,
                                        bool value, Dictionaries& dicts) {
  auto& dict = dicts.at(static_cast<size_t>(table));
  if (!dict && value) dict = std::make_shared<const Dictionary>(text);
  std::string& out = compressor_->scratch;
  out.resize(ZSTD_compressBound(text.size()));
  const size_t size =
      dict ? ZSTD_compress_usingCDict(compressor_->cctx, out.data(), out.size(), text.data(), text.size(),
                                      dict->compress)
           : ZSTD_compressCCtx(compressor_->cctx, out.data(), out.size(), text.data(), text.size(), kLevel);
  if (ZSTD_isError(size)) {
    throw Error(Errc::internal, std::string("push/pull: compressing a line: ") + ZSTD_getErrorName(size));
  }
  Line l{table, dict != nullptr, static_cast<uint32_t>(size), KeyDigest::of(key),
         std::make_unique_for_overwrite<char[]>(size)};
  std::memcpy(l.packed.get(), out.data(), size);
  return l;
}

void PushPullState::put(TableId table, const std::string& key, const std::optional<json::value>& line) {
  // dicts_ is written only on this thread, so it is read here without the
  // lock; a dictionary made for this line is published under it.
  Dictionaries dicts = dicts_;
  std::optional<Line> fresh;
  if (line) fresh = pack(table, key, json::serialize(*line), has_value(*line), dicts);
  const ByKey::Id id{table, fresh ? fresh->key : KeyDigest::of(key)};
  std::lock_guard lock(mu_);
  if (dicts != dicts_) dicts_ = std::move(dicts);
  if (auto it = lines_.find(id); it != lines_.end()) lines_.erase(it);
  if (fresh) lines_.insert(std::move(*fresh));
}

void PushPullState::reset(const std::vector<json::value>& lines) {
  Dictionaries dicts;
  // Each table's dictionary from its first line with a value, whatever the
  // order of the lines, so none of its lines is packed without it.
  for (const auto& line : lines) {
    if (!has_value(line)) continue;
    const auto table = parse_table(json_fields::required_string(line.as_object(), "table"));
    if (table && !dicts.at(static_cast<size_t>(*table))) {
      dicts.at(static_cast<size_t>(*table)) = std::make_shared<const Dictionary>(json::serialize(line));
    }
  }
  std::set<Line, ByKey> fresh;
  for (const auto& line : lines) {
    const auto& o = line.as_object();
    const auto table = parse_table(json_fields::required_string(o, "table"));
    if (!table) continue;
    Line l = pack(*table, json_fields::required_string(o, "key"), json::serialize(line), has_value(line), dicts);
    // A later line of the same key replaces an earlier one.
    if (auto it = fresh.find(ByKey::id(l)); it != fresh.end()) fresh.erase(it);
    fresh.insert(std::move(l));
  }
  std::lock_guard lock(mu_);
  lines_ = std::move(fresh);
  dicts_ = std::move(dicts);
}

void PushPullState::set_records(const json::object& records) {
  std::string text = json::serialize(records);
  // "{...}" -> "..." so it follows the entries inside one object.
  text = text.size() >= 2 ? text.substr(1, text.size() - 2) : std::string();
  std::lock_guard lock(mu_);
  records_ = std::move(text);
}

std::vector<uint8_t> PushPullState::bytes() const {
  // Under the lock, only a copy of the compressed lines (a few bytes each);
  // they are decompressed after it.
  struct Piece {
    const Dictionary* dict;
    size_t offset, size;
    size_t content = 0;  // the line's own size, from its frame's header
  };
  std::string packed;
  std::vector<Piece> pieces;
  Dictionaries dicts;
  std::string records;
  {
    std::lock_guard lock(mu_);
    size_t total = 0;
    for (const Line& l : lines_) total += l.size;
    packed.reserve(total);
    pieces.reserve(lines_.size());
    for (const Line& l : lines_) {
      pieces.push_back({l.with_dictionary ? dicts_.at(static_cast<size_t>(l.table)).get() : nullptr, packed.size(),
                        l.size});
      packed += l.frame();
    }
    dicts = dicts_;  // keeps the dictionaries the pieces point to
    records = records_;
  }

  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) throw Error(Errc::internal, "push/pull: zstd cannot make a decompression context");
  size_t size = 32 + records.size();
  for (Piece& p : pieces) {
    const unsigned long long n = ZSTD_getFrameContentSize(packed.data() + p.offset, p.size);
    if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN) {
      throw Error(Errc::internal, "push/pull: a compressed line without its size");
    }
    p.content = static_cast<size_t>(n);
    size += p.content + 1;
  }
  std::vector<uint8_t> out;
  out.reserve(size);
  auto append = [&](std::string_view s) { out.insert(out.end(), s.begin(), s.end()); };
  append("{\"entries\":[");
  bool first = true;
  for (const Piece& p : pieces) {
    if (!first) out.push_back(',');
    first = false;
    const char* src = packed.data() + p.offset;
    const size_t n = p.content;
    const size_t at = out.size();
    out.resize(at + n);
    const size_t got = p.dict ? ZSTD_decompress_usingDDict(dctx.get(), out.data() + at, n, src, p.size, p.dict->decompress)
                              : ZSTD_decompressDCtx(dctx.get(), out.data() + at, n, src, p.size);
    if (ZSTD_isError(got) || got != n) {
      throw Error(Errc::internal, std::string("push/pull: decompressing a line: ") +
                                      (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short"));
    }
  }
  out.push_back(']');
  if (!records.empty()) {
    out.push_back(',');
    append(records);
  }
  out.push_back('}');
  return out;
}

size_t PushPullState::entries() const {
  std::lock_guard lock(mu_);
  return lines_.size();
}

size_t PushPullState::held_bytes() const {
  // What malloc hands out for a set node and a string's buffer (its usable
  // size, rounded as glibc rounds it).
  auto block = [](size_t n) { return n == 0 ? 0 : std::max<size_t>(32, (n + 8 + 15) & ~size_t{15}); };
  std::lock_guard lock(mu_);
  size_t total = 0;
  for (const Line& l : lines_) {
    total += block(32 + sizeof(Line));
    total += block(l.size);
  }
  for (const auto& d : dicts_) {
    if (d) total += d->text.size() + ZSTD_sizeof_CDict(d->compress) + ZSTD_sizeof_DDict(d->decompress);
  }
  return total;
}

}  // namespace swarmnet::daemon
