#include "common/shared_string.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <ostream>
#include <unordered_map>
#include <vector>

namespace swarmnet {

// The texts held, by their own text (a view of the Text's, which does not
// move). A text no one holds any more is freed by a sweep when the table has
// doubled since the last one, so it stays within twice the texts in use.
struct SharedString::Table {
  std::mutex mutex;
  std::unordered_map<std::string_view, Text*> by_text;
  size_t sweep_at = 64;

  static Table& get() {
    static Table* t = new Table;  // never destroyed: SharedStrings may outlive static destruction order
    return *t;
  }
};

SharedString::Text* SharedString::intern(std::string_view text) {
  if (text.empty()) return nullptr;
  auto& t = Table::get();
  std::lock_guard lock(t.mutex);
  if (auto it = t.by_text.find(text); it != t.by_text.end()) {
    hold(it->second);  // from 0 too: not freed while the mutex is held
    return it->second;
  }
  if (t.by_text.size() >= t.sweep_at) {
    // Under the mutex no one can take up a text nobody holds: freeing it is
    // safe. Freed once out of the table, whose keys are views of them.
    std::vector<Text*> unheld;
    std::erase_if(t.by_text, [&](const auto& entry) {
      if (entry.second->holders.load(std::memory_order_acquire) != 0) return false;
      unheld.push_back(entry.second);
      return true;
    });
    for (Text* gone : unheld) delete gone;
    t.sweep_at = std::max<size_t>(64, 2 * t.by_text.size());
  }
  auto made = std::make_unique<Text>(text);
  t.by_text.emplace(std::string_view(made->text), made.get());
  hold(made.get());
  return made.release();
}

const std::string& SharedString::no_text() {
  static const std::string none;
  return none;
}

size_t SharedString::table_size() {
  auto& t = Table::get();
  std::lock_guard lock(t.mutex);
  return t.by_text.size();
}

size_t SharedString::held_texts() {
  auto& t = Table::get();
  std::lock_guard lock(t.mutex);
  return std::count_if(t.by_text.begin(), t.by_text.end(),
                       [](const auto& e) { return e.second->holders.load(std::memory_order_acquire) != 0; });
}

std::ostream& operator<<(std::ostream& out, const SharedString& s) { return out << s.str(); }

}  // namespace swarmnet
