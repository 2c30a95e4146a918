// SharedString: an immutable string whose text is held once for every copy
// of it and every other SharedString made from the same text.
//
// For the fields that thousands of records repeat: a network's id, a node's
// id, a service's. Each is one pointer (8 bytes) to one shared, counted
// copy, where a std::string is 32 bytes plus, for a 32-character id, a
// 48-byte block of its own in every record (daemon_memory.sh: about 250
// bytes an endpoint; a shared_ptr, 16 bytes, cost 56 more).
//
// It reads like a const std::string (it converts to one, compares with
// strings and string literals, and has their common read members); only
// assigning it makes it look up the text. The texts are kept in a
// process-wide table, under a mutex; one no SharedString holds any more is
// freed by the next sweep of that table. Thread-safe like a shared_ptr:
// copies may be made and dropped on any thread (a copy or a drop is one
// atomic add, no lock).
#pragma once

#include <atomic>
#include <compare>
#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace swarmnet {

class SharedString {
 public:
  SharedString() = default;
  SharedString(std::string_view text) : text_(intern(text)) {}  // NOLINT: implicit, as std::string's
  SharedString(const std::string& text) : SharedString(std::string_view(text)) {}  // NOLINT
  SharedString(const char* text) : SharedString(std::string_view(text)) {}  // NOLINT
  SharedString(const SharedString& other) : text_(other.text_) { hold(text_); }
  SharedString(SharedString&& other) noexcept : text_(other.text_) { other.text_ = nullptr; }
  SharedString& operator=(SharedString other) noexcept {
    std::swap(text_, other.text_);
    return *this;
  }
  ~SharedString() { release(text_); }

  const std::string& str() const { return text_ ? text_->text : no_text(); }
  operator const std::string&() const { return str(); }  // NOLINT: reads as a string
  operator std::string_view() const { return str(); }     // NOLINT
  void clear() {
    release(text_);
    text_ = nullptr;
  }
  bool empty() const { return !text_; }
  size_t size() const { return str().size(); }
  const char* c_str() const { return str().c_str(); }
  const char* data() const { return str().data(); }
  std::string substr(size_t pos, size_t count = std::string::npos) const { return str().substr(pos, count); }
  bool starts_with(std::string_view prefix) const { return str().starts_with(prefix); }
  std::string_view view() const { return str(); }

  friend bool operator==(const SharedString& a, const SharedString& b) {
    return a.text_ == b.text_ || a.str() == b.str();
  }
  friend bool operator==(const SharedString& a, const std::string& b) { return a.str() == b; }
  friend bool operator==(const SharedString& a, std::string_view b) { return a.str() == b; }
  friend bool operator==(const SharedString& a, const char* b) { return a.str() == b; }
  friend std::strong_ordering operator<=>(const SharedString& a, const SharedString& b) {
    return a.str() <=> b.str();
  }
  friend std::strong_ordering operator<=>(const SharedString& a, const std::string& b) { return a.str() <=> b; }
  friend std::strong_ordering operator<=>(const SharedString& a, std::string_view b) {
    return std::string_view(a.str()) <=> b;
  }
  friend std::strong_ordering operator<=>(const SharedString& a, const char* b) {
    return std::string_view(a.str()) <=> std::string_view(b);
  }
  friend std::string operator+(const SharedString& a, std::string_view b) {
    std::string s = a.str();
    s += b;
    return s;
  }
  friend std::string operator+(std::string_view a, const SharedString& b) {
    std::string s(a);
    s += b.str();
    return s;
  }
  friend std::string operator+(const SharedString& a, const std::string& b) { return a.str() + b; }
  friend std::string operator+(const std::string& a, const SharedString& b) { return a + b.str(); }
  friend std::string operator+(const SharedString& a, const char* b) { return a.str() + b; }
  friend std::string operator+(const char* a, const SharedString& b) { return a + b.str(); }
  friend std::string operator+(const SharedString& a, char b) { return a.str() + b; }
  friend std::string operator+(std::string&& a, const SharedString& b) { return std::move(a) += b.str(); }
  friend std::ostream& operator<<(std::ostream& out, const SharedString& s);

  // How many different texts the process holds now (tests).
  static size_t held_texts();
  // How many texts its table has, held or waiting for the next sweep (tests).
  static size_t table_size();

 private:
  // One text and how many SharedStrings hold it. Freed only by the table's
  // sweep, under its mutex, once no one holds it: a SharedString that holds
  // it can be copied without the lock, and one that lets it go never looks
  // at it again, so neither can meet a freed text.
  struct Text {
    explicit Text(std::string_view t) : text(t) {}
    std::atomic<size_t> holders{0};
    const std::string text;
  };
  struct Table;  // the texts held, by their text (shared_string.cpp)
  // The text's shared copy, held once more for the caller; null for "".
  static Text* intern(std::string_view text);
  static void hold(Text* t) {
    if (t) t->holders.fetch_add(1, std::memory_order_relaxed);
  }
  static void release(Text* t) {
    if (t) t->holders.fetch_sub(1, std::memory_order_acq_rel);
  }
  static const std::string& no_text();

  Text* text_ = nullptr;  // null: ""
};

}  // namespace swarmnet

// Logged as its text.
template <>
struct fmt::formatter<swarmnet::SharedString> : fmt::formatter<std::string_view> {
  template <class Context>
  auto format(const swarmnet::SharedString& s, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(s.view(), ctx);
  }
};
