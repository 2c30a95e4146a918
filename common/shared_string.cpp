#include "common/shared_string.hpp"

#include <algorithm>
#include <mutex>
#include <ostream>
#include <unordered_map>

namespace swarmnet {

namespace {

struct TextHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// The texts held, by their own text. An entry whose last holder went away is
// dropped by a sweep when the table has doubled since the last one, so the
// table stays within twice the texts in use.
struct Texts {
  std::mutex mutex;
  std::unordered_map<std::string, std::weak_ptr<const std::string>, TextHash, std::equal_to<>> by_text;
  size_t sweep_at = 64;
};

Texts& texts() {
  static Texts* t = new Texts;  // never destroyed: SharedStrings may outlive static destruction order
  return *t;
}

}  // namespace

std::shared_ptr<const std::string> SharedString::intern(std::string_view text) {
  if (text.empty()) return nullptr;
  Texts& t = texts();
  std::lock_guard lock(t.mutex);
  auto it = t.by_text.find(text);
  if (it != t.by_text.end()) {
    if (auto held = it->second.lock()) return held;
    auto made = std::make_shared<const std::string>(text);
    it->second = made;
    return made;
  }
  if (t.by_text.size() >= t.sweep_at) {
    std::erase_if(t.by_text, [](const auto& entry) { return entry.second.expired(); });
    t.sweep_at = std::max<size_t>(64, 2 * t.by_text.size());
  }
  auto made = std::make_shared<const std::string>(text);
  t.by_text.emplace(std::string(text), made);
  return made;
}

const std::string& SharedString::no_text() {
  static const std::string none;
  return none;
}

size_t SharedString::held_texts() {
  Texts& t = texts();
  std::lock_guard lock(t.mutex);
  return std::count_if(t.by_text.begin(), t.by_text.end(), [](const auto& e) { return !e.second.expired(); });
}

std::ostream& operator<<(std::ostream& out, const SharedString& s) { return out << s.str(); }

}  // namespace swarmnet
