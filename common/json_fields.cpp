#include "common/json_fields.hpp"

#include "common/error.hpp"

namespace swarmnet::json_fields {

namespace {
std::string kind_of(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "unknown";
}

[[noreturn]] void wrong_type(std::string_view key, const char* expected, const json::value& v) {
  throw Error(Errc::invalid_argument, "field \"" + std::string(key) + "\": expected " + expected +
                                          ", got " + kind_of(v));
}
}  // namespace

const json::object& as_object(const json::value& v, std::string_view what) {
  if (!v.is_object()) {
    throw Error(Errc::invalid_argument,
                std::string(what) + ": expected a JSON object, got " + kind_of(v));
  }
  return v.get_object();
}

const json::value* find(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->value();
}

std::optional<std::string> optional_string(const json::object& o, std::string_view key) {
  const json::value* v = find(o, key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) wrong_type(key, "a string", *v);
  return std::string(v->get_string());
}

std::string required_string(const json::object& o, std::string_view key) {
  auto s = optional_string(o, key);
  if (!s) throw Error(Errc::invalid_argument, "missing field \"" + std::string(key) + "\"");
  return *s;
}

std::string string_or(const json::object& o, std::string_view key, std::string fallback) {
  auto s = optional_string(o, key);
  return s ? *s : std::move(fallback);
}

bool bool_or(const json::object& o, std::string_view key, bool fallback) {
  const json::value* v = find(o, key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_bool()) wrong_type(key, "a boolean", *v);
  return v->get_bool();
}

std::optional<uint64_t> optional_uint(const json::object& o, std::string_view key, uint64_t max) {
  const json::value* v = find(o, key);
  if (!v || v->is_null()) return std::nullopt;
  uint64_t n = 0;
  if (v->is_uint64()) {
    n = v->get_uint64();
  } else if (v->is_int64() && v->get_int64() >= 0) {
    n = static_cast<uint64_t>(v->get_int64());
  } else {
    wrong_type(key, "a non-negative integer", *v);
  }
  if (n > max) {
    throw Error(Errc::invalid_argument, "field \"" + std::string(key) + "\": " +
                                            std::to_string(n) + " is above " + std::to_string(max));
  }
  return n;
}

std::vector<std::string> string_array(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  const json::value* v = find(o, key);
  if (!v || v->is_null()) return out;
  if (!v->is_array()) wrong_type(key, "an array of strings", *v);
  for (const auto& e : v->get_array()) {
    if (!e.is_string()) wrong_type(key, "an array of strings", e);
    out.emplace_back(e.get_string());
  }
  return out;
}

json::value parse(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) throw Error(Errc::invalid_argument, "invalid JSON in " + std::string(what) + ": " + ec.message());
  return v;
}

}  // namespace swarmnet::json_fields
