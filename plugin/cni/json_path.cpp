#include "plugin/cni/json_path.hpp"

#include "plugin/cni/protocol.hpp"

namespace swarmnet::cni::json_path {

std::string join(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return std::string(parent) + "." + std::string(key);
}

std::string index(std::string_view parent, size_t i) {
  return std::string(parent) + "[" + std::to_string(i) + "]";
}

std::string kind_of(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "unknown";
}

void wrong_type(std::string_view path, std::string_view expected, const json::value& v) {
  throw CniError(code::kInvalidConfig,
                 std::string(path) + ": expected " + std::string(expected) + ", got " + kind_of(v));
}

const json::object& object(const json::value& v, std::string_view path) {
  if (!v.is_object()) wrong_type(path, "an object", v);
  return v.get_object();
}

const json::array& array(const json::value& v, std::string_view path) {
  if (!v.is_array()) wrong_type(path, "an array", v);
  return v.get_array();
}

std::string_view string(const json::value& v, std::string_view path) {
  if (!v.is_string()) wrong_type(path, "a string", v);
  return v.get_string();
}

const json::value* field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}

std::optional<std::string> opt_string(const json::object& o, std::string_view parent,
                                      std::string_view key) {
  const json::value* v = field(o, key);
  if (!v) return std::nullopt;
  return std::string(string(*v, join(parent, key)));
}

std::optional<unsigned> opt_uint(const json::object& o, std::string_view parent,
                                 std::string_view key, unsigned max) {
  const json::value* v = field(o, key);
  if (!v) return std::nullopt;
  uint64_t n = 0;
  if (v->is_uint64()) {
    n = v->get_uint64();
  } else if (v->is_int64() && v->get_int64() >= 0) {
    n = static_cast<uint64_t>(v->get_int64());
  } else if (v->is_double() && v->get_double() >= 0 && v->get_double() <= max &&
             v->get_double() == static_cast<double>(static_cast<uint64_t>(v->get_double()))) {
    // JSON has one number type; 1450.0 is a fine MTU.
    n = static_cast<uint64_t>(v->get_double());
  } else {
    wrong_type(join(parent, key), "a non-negative integer", *v);
  }
  if (n > max) {
    throw CniError(code::kInvalidConfig, join(parent, key) + ": " + std::to_string(n) +
                                             " is above " + std::to_string(max));
  }
  return static_cast<unsigned>(n);
}

std::optional<int> opt_int(const json::object& o, std::string_view parent, std::string_view key) {
  const json::value* v = field(o, key);
  if (!v) return std::nullopt;
  if (v->is_int64() && v->get_int64() >= INT32_MIN && v->get_int64() <= INT32_MAX) {
    return static_cast<int>(v->get_int64());
  }
  if (v->is_uint64() && v->get_uint64() <= INT32_MAX) return static_cast<int>(v->get_uint64());
  wrong_type(join(parent, key), "an integer", *v);
}

std::vector<std::string> string_list(const json::object& o, std::string_view parent,
                                     std::string_view key) {
  std::vector<std::string> out;
  const json::value* v = field(o, key);
  if (!v) return out;
  std::string path = join(parent, key);
  const auto& a = array(*v, path);
  for (size_t i = 0; i < a.size(); ++i) out.emplace_back(string(a[i], index(path, i)));
  return out;
}

const json::object* opt_object(const json::object& o, std::string_view parent,
                               std::string_view key) {
  const json::value* v = field(o, key);
  if (!v) return nullptr;
  return &object(*v, join(parent, key));
}

const json::array* opt_array(const json::object& o, std::string_view parent, std::string_view key) {
  const json::value* v = field(o, key);
  if (!v) return nullptr;
  return &array(*v, join(parent, key));
}

}  // namespace swarmnet::cni::json_path
